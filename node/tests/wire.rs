//! Wire-level tests of the `inkless` binary: every advertised API version answers, and bad
//! input gets Kafka's error code or a closed connection while the node keeps serving.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use inkless_protocol::kafka_protocol::messages::*;
use inkless_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use inkless_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use inkless_protocol::request::SUPPORTED_APIS;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Broker {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start(extra_env: &[(&str, &str)]) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_inkless"));
        cmd.arg("serve")
            .env("INKLESS__KAFKA__LISTEN", &addr)
            .env("INKLESS__STORAGE__DATA_DIR", dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "broker did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            child,
            addr,
            _dir: dir,
        }
    }

    fn conn(&self) -> Conn {
        let s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn { s, next: 1 }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Conn {
    s: TcpStream,
    next: i32,
}

impl Conn {
    fn send_raw(&mut self, frame: &[u8]) {
        self.s.write_all(frame).unwrap();
    }

    fn frame<T: Encodable>(&mut self, key: ApiKey, version: i16, body: &T) -> (BytesMut, i32) {
        let id = self.next;
        self.next += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("wire-test")))
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let n = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&n.to_be_bytes());
        (buf, id)
    }

    /// Reads one response frame; `None` when the broker closed the connection.
    fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp {
        let (frame, id) = self.frame(key, version, body);
        self.send_raw(&frame);
        let mut resp = self.read_frame().expect("response");
        let header =
            ResponseHeader::decode(&mut resp, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, id);
        Resp::decode(&mut resp, version).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"))
    }

    fn closed(&mut self) -> bool {
        self.read_frame().is_none()
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(c: &mut Conn, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let t = create_topics_request::CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    let r: CreateTopicsResponse = c.call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(5000),
    );
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

fn records(n: usize, value_bytes: usize) -> Bytes {
    let recs: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes; keep it
            // constant (and the batch's base sequence -1, as non-idempotent clients send).
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'v'; value_bytes])),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn produce(
    c: &mut Conn,
    topic: &str,
    partition: i32,
    recs: Bytes,
) -> produce_response::PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(recs)),
            ])]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &req);
    r.responses[0].partition_responses[0].clone()
}

fn fetch(
    c: &mut Conn,
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
) -> fetch_response::PartitionData {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
    r.responses[0].partitions[0].clone()
}

fn gid(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_string()))
}

/// Joins `group` as its only member (JoinGroup at `v`, then SyncGroup v3); returns
/// (member id, generation).
fn join_alone(c: &mut Conn, group: &str, v: i16) -> (String, i32) {
    join_alone_as(c, group, v, "consumer")
}

fn join_alone_as(c: &mut Conn, group: &str, v: i16, protocol_type: &str) -> (String, i32) {
    let mut member = String::new();
    for _ in 0..2 {
        let req = JoinGroupRequest::default()
            .with_group_id(gid(group))
            .with_session_timeout_ms(60_000)
            .with_rebalance_timeout_ms(60_000)
            .with_member_id(StrBytes::from_string(member.clone()))
            .with_protocol_type(StrBytes::from_string(protocol_type.to_string()))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"meta"))]);
        let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, v, &req);
        member = r.member_id.to_string();
        if r.error_code == 79 {
            continue; // MEMBER_ID_REQUIRED: rejoin with the id.
        }
        assert_eq!(r.error_code, 0, "join v{v}");
        assert_eq!(r.leader.as_str(), member, "v{v}");
        assert_eq!(r.members.len(), 1, "v{v}");
        return (member, r.generation_id);
    }
    panic!("join v{v} did not complete");
}

fn sync(c: &mut Conn, group: &str, member: &str, generation: i32, v: i16) -> SyncGroupResponse {
    let req = SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
        .with_protocol_name(Some(StrBytes::from_static_str("range")))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member.to_string()))
                .with_assignment(Bytes::from_static(b"assigned")),
        ]);
    c.call(ApiKey::SyncGroup, v, &req)
}

fn commit(
    c: &mut Conn,
    group: &str,
    member: &str,
    generation: i32,
    topic: &TopicName,
    offset: i64,
    v: i16,
) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic.clone())
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)
                        .with_committed_metadata(Some(StrBytes::from_static_str("md"))),
                ]),
        ]);
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, v, &req);
    r.topics[0].partitions[0].error_code
}

#[test]
fn every_advertised_version_answers() {
    let b = Broker::start(&[("INKLESS__GROUPS__INITIAL_REBALANCE_DELAY_MS", "0")]);
    let mut c = b.conn();
    let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.api_keys.len(), SUPPORTED_APIS.len());
    create_topic(&mut c, "versions", 2, &[]);
    produce(&mut c, "versions", 0, records(3, 10));
    let t = name("versions");
    for api in SUPPORTED_APIS {
        for v in api.min..=api.max {
            match api.key {
                ApiKey::ApiVersions => {
                    let r: ApiVersionsResponse = c.call(api.key, v, &ApiVersionsRequest::default());
                    assert_eq!(r.error_code, 0);
                }
                ApiKey::Metadata => {
                    let req = MetadataRequest::default()
                        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                        )
                        .with_name(Some(t.clone()))]));
                    let r: MetadataResponse = c.call(api.key, v, &req);
                    assert_eq!(r.topics[0].partitions.len(), 2, "v{v}");
                }
                ApiKey::Produce => {
                    let req = ProduceRequest::default()
                        .with_acks(1)
                        .with_timeout_ms(5000)
                        .with_topic_data(vec![produce_request::TopicProduceData::default()
                            .with_name(t.clone())
                            .with_partition_data(vec![
                                produce_request::PartitionProduceData::default()
                                    .with_index(1)
                                    .with_records(Some(records(1, 5))),
                            ])]);
                    let r: ProduceResponse = c.call(api.key, v, &req);
                    assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "v{v}");
                }
                ApiKey::Fetch => {
                    let mut topic = fetch_request::FetchTopic::default().with_partitions(vec![
                        fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_partition_max_bytes(1 << 20),
                    ]);
                    if v >= 13 {
                        let m: MetadataResponse = c.call(
                            ApiKey::Metadata,
                            12,
                            &MetadataRequest::default().with_topics(Some(vec![
                                metadata_request::MetadataRequestTopic::default()
                                    .with_name(Some(t.clone())),
                            ])),
                        );
                        topic = topic.with_topic_id(m.topics[0].topic_id);
                    } else {
                        topic = topic.with_topic(t.clone());
                    }
                    let req = FetchRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_max_bytes(1 << 20)
                        .with_session_epoch(-1)
                        .with_topics(vec![topic]);
                    let r: FetchResponse = c.call(api.key, v, &req);
                    let p = &r.responses[0].partitions[0];
                    assert_eq!((p.error_code, p.high_watermark), (0, 3), "v{v}");
                    assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()), "v{v}");
                }
                ApiKey::ListOffsets => {
                    let req = ListOffsetsRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                            .with_name(t.clone())
                            .with_partitions(vec![
                                list_offsets_request::ListOffsetsPartition::default()
                                    .with_partition_index(0)
                                    .with_timestamp(-1),
                            ])]);
                    let r: ListOffsetsResponse = c.call(api.key, v, &req);
                    assert_eq!(r.topics[0].partitions[0].offset, 3, "v{v}");
                }
                ApiKey::CreateTopics => create_topic(&mut c, &format!("ct-{v}"), 1, &[]),
                ApiKey::DeleteTopics => {
                    let n = format!("ct-{}", v + 1);
                    let req = if v >= 6 {
                        DeleteTopicsRequest::default()
                            .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                                .with_name(Some(name(&n)))])
                    } else {
                        DeleteTopicsRequest::default().with_topic_names(vec![name(&n)])
                    };
                    let r: DeleteTopicsResponse = c.call(api.key, v, &req);
                    assert_eq!(r.responses[0].error_code, 0, "v{v}");
                }
                ApiKey::DeleteRecords => {
                    let req = DeleteRecordsRequest::default().with_topics(vec![
                        delete_records_request::DeleteRecordsTopic::default()
                            .with_name(t.clone())
                            .with_partitions(vec![
                                delete_records_request::DeleteRecordsPartition::default()
                                    .with_partition_index(0)
                                    .with_offset(1),
                            ]),
                    ]);
                    let r: DeleteRecordsResponse = c.call(api.key, v, &req);
                    assert_eq!(r.topics[0].partitions[0].low_watermark, 1, "v{v}: {:?}", r);
                }
                ApiKey::InitProducerId => {
                    let req = InitProducerIdRequest::default()
                        .with_transactional_id(None)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1);
                    let r: InitProducerIdResponse = c.call(api.key, v, &req);
                    assert!(r.error_code == 0 && r.producer_id.0 >= 0, "v{v}");
                }
                ApiKey::OffsetForLeaderEpoch => {
                    let req = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderTopic::default().with_topic(t.clone()).with_partitions(vec![
                            offset_for_leader_epoch_request::OffsetForLeaderPartition::default().with_partition(0),
                        ]),
                    ]);
                    let r: OffsetForLeaderEpochResponse = c.call(api.key, v, &req);
                    assert_eq!(r.topics[0].partitions[0].end_offset, 3, "v{v}");
                }
                ApiKey::DescribeConfigs => {
                    let req = DescribeConfigsRequest::default().with_resources(vec![
                        describe_configs_request::DescribeConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_static_str("versions"))
                            .with_configuration_keys(None),
                    ]);
                    let r: DescribeConfigsResponse = c.call(api.key, v, &req);
                    assert!(
                        r.results[0]
                            .configs
                            .iter()
                            .any(|c| c.name.as_str() == "retention.ms"),
                        "v{v}"
                    );
                }
                ApiKey::CreatePartitions => {
                    let req = CreatePartitionsRequest::default().with_topics(vec![
                        create_partitions_request::CreatePartitionsTopic::default()
                            .with_name(t.clone())
                            .with_count(3 + v as i32),
                    ]);
                    let r: CreatePartitionsResponse = c.call(api.key, v, &req);
                    assert_eq!(
                        r.results[0].error_code, 0,
                        "v{v}: {:?}",
                        r.results[0].error_message
                    );
                }
                ApiKey::IncrementalAlterConfigs => {
                    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                        incremental_alter_configs_request::AlterConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_static_str("versions"))
                            .with_configs(vec![
                                incremental_alter_configs_request::AlterableConfig::default()
                                    .with_name(StrBytes::from_static_str("retention.ms"))
                                    .with_config_operation(0)
                                    .with_value(Some(StrBytes::from_static_str("1234"))),
                            ]),
                    ]);
                    let r: IncrementalAlterConfigsResponse = c.call(api.key, v, &req);
                    assert_eq!(r.responses[0].error_code, 0, "v{v}");
                }
                ApiKey::DescribeCluster => {
                    let r: DescribeClusterResponse =
                        c.call(api.key, v, &DescribeClusterRequest::default());
                    assert_eq!(r.brokers.len(), 1, "v{v}");
                }
                ApiKey::FindCoordinator => {
                    let req = if v >= 4 {
                        FindCoordinatorRequest::default()
                            .with_coordinator_keys(vec![StrBytes::from_static_str("g")])
                    } else {
                        FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
                    };
                    let r: FindCoordinatorResponse = c.call(api.key, v, &req);
                    let port = if v >= 4 {
                        r.coordinators[0].port
                    } else {
                        r.port
                    };
                    assert_eq!(port.to_string(), b.addr.rsplit(':').next().unwrap(), "v{v}");
                }
                ApiKey::JoinGroup => {
                    join_alone(&mut c, &format!("join-{v}"), v);
                }
                ApiKey::SyncGroup => {
                    let g = format!("sync-{v}");
                    let (m, gen) = join_alone(&mut c, &g, 5);
                    let r = sync(&mut c, &g, &m, gen, v);
                    assert_eq!(
                        (r.error_code, &r.assignment[..]),
                        (0, &b"assigned"[..]),
                        "v{v}"
                    );
                }
                ApiKey::Heartbeat => {
                    let g = format!("hb-{v}");
                    let (m, gen) = join_alone(&mut c, &g, 5);
                    sync(&mut c, &g, &m, gen, 3);
                    let req = HeartbeatRequest::default()
                        .with_group_id(gid(&g))
                        .with_generation_id(gen)
                        .with_member_id(StrBytes::from_string(m.clone()));
                    let r: HeartbeatResponse = c.call(api.key, v, &req);
                    assert_eq!(r.error_code, 0, "v{v}");
                    let r: HeartbeatResponse = c.call(api.key, v, &req.with_generation_id(gen + 7));
                    assert_eq!(r.error_code, 22, "ILLEGAL_GENERATION v{v}");
                }
                ApiKey::LeaveGroup => {
                    let g = format!("leave-{v}");
                    let (m, gen) = join_alone(&mut c, &g, 5);
                    sync(&mut c, &g, &m, gen, 3);
                    let req = if v >= 3 {
                        LeaveGroupRequest::default()
                            .with_group_id(gid(&g))
                            .with_members(vec![leave_group_request::MemberIdentity::default()
                                .with_member_id(StrBytes::from_string(m.clone()))])
                    } else {
                        LeaveGroupRequest::default()
                            .with_group_id(gid(&g))
                            .with_member_id(StrBytes::from_string(m.clone()))
                    };
                    let r: LeaveGroupResponse = c.call(api.key, v, &req);
                    let code = if v >= 3 {
                        r.members[0].error_code
                    } else {
                        r.error_code
                    };
                    assert_eq!(code, 0, "v{v}");
                }
                ApiKey::OffsetCommit => {
                    let g = format!("commit-{v}");
                    assert_eq!(
                        commit(&mut c, &g, "", -1, &t, 2, v),
                        0,
                        "standalone commit v{v}"
                    );
                    let (m, gen) = join_alone(&mut c, &g, 5);
                    sync(&mut c, &g, &m, gen, 3);
                    assert_eq!(
                        commit(&mut c, &g, &m, gen, &t, 3, v),
                        0,
                        "member commit v{v}"
                    );
                    assert_eq!(
                        commit(&mut c, &g, &m, gen + 1, &t, 3, v),
                        22,
                        "ILLEGAL_GENERATION v{v}"
                    );
                    assert_eq!(
                        commit(&mut c, &g, "nobody", gen, &t, 3, v),
                        25,
                        "UNKNOWN_MEMBER_ID v{v}"
                    );
                }
                ApiKey::OffsetFetch => {
                    let g = format!("fetch-{v}");
                    assert_eq!(commit(&mut c, &g, "", -1, &t, 2, 8), 0);
                    let r: OffsetFetchResponse = if v >= 8 {
                        c.call(
                            api.key,
                            v,
                            &OffsetFetchRequest::default().with_groups(vec![
                                offset_fetch_request::OffsetFetchRequestGroup::default()
                                    .with_group_id(gid(&g))
                                    .with_topics(None),
                            ]),
                        )
                    } else {
                        c.call(
                            api.key,
                            v,
                            &OffsetFetchRequest::default()
                                .with_group_id(gid(&g))
                                .with_topics(None),
                        )
                    };
                    let offset = if v >= 8 {
                        r.groups[0].topics[0].partitions[0].committed_offset
                    } else {
                        r.topics[0].partitions[0].committed_offset
                    };
                    assert_eq!(offset, 2, "v{v}");
                }
                ApiKey::ListGroups => {
                    let r: ListGroupsResponse = c.call(api.key, v, &ListGroupsRequest::default());
                    assert!(
                        r.groups.iter().any(|g| g.group_id.0.as_str() == "join-0"),
                        "v{v}"
                    );
                }
                ApiKey::DescribeGroups => {
                    let req = DescribeGroupsRequest::default()
                        .with_groups(vec![gid("sync-0"), gid("never")]);
                    let r: DescribeGroupsResponse = c.call(api.key, v, &req);
                    assert_eq!(r.groups[0].group_state.as_str(), "Stable", "v{v}");
                    assert_eq!(r.groups[0].members.len(), 1, "v{v}");
                    assert_eq!(r.groups[1].group_state.as_str(), "Dead", "v{v}");
                }
                ApiKey::DeleteGroups => {
                    let g = format!("delete-{v}");
                    assert_eq!(commit(&mut c, &g, "", -1, &t, 1, 8), 0);
                    let req = DeleteGroupsRequest::default()
                        .with_groups_names(vec![gid(&g), gid("sync-0")]);
                    let r: DeleteGroupsResponse = c.call(api.key, v, &req);
                    assert_eq!(r.results[0].error_code, 0, "v{v}");
                    assert_eq!(r.results[1].error_code, 68, "NON_EMPTY_GROUP v{v}");
                }
                ApiKey::OffsetDelete => {
                    assert_eq!(commit(&mut c, "odel", "", -1, &t, 1, 8), 0);
                    let req = OffsetDeleteRequest::default()
                        .with_group_id(gid("odel"))
                        .with_topics(vec![
                            offset_delete_request::OffsetDeleteRequestTopic::default()
                                .with_name(t.clone())
                                .with_partitions(vec![
                                    offset_delete_request::OffsetDeleteRequestPartition::default()
                                        .with_partition_index(0),
                                ]),
                        ]);
                    let r: OffsetDeleteResponse = c.call(api.key, v, &req);
                    assert_eq!(
                        (r.error_code, r.topics[0].partitions[0].error_code),
                        (0, 0),
                        "v{v}"
                    );
                }
                ApiKey::ConsumerGroupHeartbeat => {
                    let member = if v >= 1 {
                        uuid::Uuid::new_v4().to_string()
                    } else {
                        String::new()
                    };
                    let req = ConsumerGroupHeartbeatRequest::default()
                        .with_group_id(gid(&format!("cg-{v}")))
                        .with_member_id(StrBytes::from_string(member))
                        .with_member_epoch(0)
                        .with_rebalance_timeout_ms(30_000)
                        .with_subscribed_topic_names(Some(vec![t.clone()]))
                        .with_topic_partitions(Some(vec![]));
                    let r: ConsumerGroupHeartbeatResponse = c.call(api.key, v, &req);
                    assert_eq!(r.error_code, 0, "v{v}: {:?}", r.error_message);
                    assert!(r.member_epoch > 0, "v{v}");
                    let assigned: usize = r
                        .assignment
                        .map(|a| a.topic_partitions.iter().map(|t| t.partitions.len()).sum())
                        .unwrap_or(0);
                    assert!(assigned >= 3, "the only member gets every partition, v{v}");
                }
                ApiKey::ConsumerGroupDescribe => {
                    let req = ConsumerGroupDescribeRequest::default()
                        .with_group_ids(vec![gid("cg-0"), gid("nope")]);
                    let r: ConsumerGroupDescribeResponse = c.call(api.key, v, &req);
                    assert_eq!(
                        (r.groups[0].error_code, r.groups[0].members.len()),
                        (0, 1),
                        "v{v}"
                    );
                    assert_eq!(r.groups[1].error_code, 69, "GROUP_ID_NOT_FOUND v{v}");
                }
                ApiKey::AlterConfigs => {
                    let r: AlterConfigsResponse = c.call(
                        api.key,
                        v,
                        &legacy_alter("versions", &[("retention.ms", "99")]),
                    );
                    assert_eq!(r.responses[0].error_code, 0, "v{v}");
                }
                ApiKey::DescribeLogDirs => {
                    let r: DescribeLogDirsResponse = c.call(
                        api.key,
                        v,
                        &DescribeLogDirsRequest::default().with_topics(None),
                    );
                    let dir = &r.results[0];
                    assert_eq!((r.error_code, dir.error_code), (0, 0), "v{v}");
                    let t = dir.topics.iter().find(|t| t.name == name("versions"));
                    let p0 = t.and_then(|t| t.partitions.iter().find(|p| p.partition_index == 0));
                    assert!(p0.is_some_and(|p| p.partition_size > 0), "v{v}: {r:?}");
                }
                ApiKey::ElectLeaders => {
                    let election = if v == 0 { 0 } else { 1 };
                    let r: ElectLeadersResponse =
                        c.call(api.key, v, &elect(election, Some(("versions", 0))));
                    let p = &r.replica_election_results[0].partition_result[0];
                    assert_eq!(p.error_code, 84, "ELECTION_NOT_NEEDED v{v}");
                }
                ApiKey::DescribeTopicPartitions => {
                    let r = describe_partitions(&mut c, &["versions"], 100, None);
                    assert_eq!(r.topics[0].error_code, 0, "v{v}");
                    assert!(r.topics[0].partitions.len() >= 2, "v{v}");
                    assert_eq!(r.topics[0].partitions[0].leader_id, BrokerId(0), "v{v}");
                }
                ApiKey::AlterPartitionReassignments => {
                    let codes = |r: &AlterPartitionReassignmentsResponse| -> Vec<i16> {
                        r.responses[0]
                            .partitions
                            .iter()
                            .map(|p| p.error_code)
                            .collect()
                    };
                    // The only broker (0), an unknown one, an unknown partition, a cancel of
                    // nothing, and (v1, refused) two replicas.
                    let r: AlterPartitionReassignmentsResponse = c.call(
                        api.key,
                        v,
                        &reassign(
                            v,
                            "versions",
                            &[
                                (0, Some(&[0][..])),
                                (1, Some(&[7][..])),
                                (99, Some(&[0][..])),
                                (1, None),
                                (0, Some(&[0, 0][..])),
                            ],
                        ),
                    );
                    assert_eq!(r.error_code, 0, "v{v}");
                    assert_eq!(codes(&r), [0, 39, 3, 85, 39], "v{v}: {r:?}");
                }
                ApiKey::ListPartitionReassignments => {
                    // Partition 0 is pinned to the node that holds it: nothing in progress.
                    let r: ListPartitionReassignmentsResponse = c.call(
                        api.key,
                        v,
                        &ListPartitionReassignmentsRequest::default().with_topics(None),
                    );
                    assert_eq!((r.error_code, r.topics.len()), (0, 0), "v{v}: {r:?}");
                }
                ApiKey::AddPartitionsToTxn
                | ApiKey::AddOffsetsToTxn
                | ApiKey::EndTxn
                | ApiKey::TxnOffsetCommit
                | ApiKey::DescribeTransactions
                | ApiKey::ListTransactions
                | ApiKey::DescribeProducers => txn_api_answers(&mut c, api.key, v),
                other => panic!("no test for advertised API {other:?}"),
            }
        }
    }
}

/// A legacy AlterConfigs request for one topic.
fn legacy_alter(topic: &str, configs: &[(&str, &str)]) -> AlterConfigsRequest {
    AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ])
}

/// An AlterPartitionReassignments request for partitions of one topic: a replica list
/// each, or `None` to cancel.
fn reassign(
    version: i16,
    topic: &str,
    partitions: &[(i32, Option<&[i32]>)],
) -> AlterPartitionReassignmentsRequest {
    use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    let partitions = partitions
        .iter()
        .map(|(p, replicas)| {
            ReassignablePartition::default()
                .with_partition_index(*p)
                .with_replicas(replicas.map(|r| r.iter().map(|b| BrokerId(*b)).collect()))
        })
        .collect();
    AlterPartitionReassignmentsRequest::default()
        // Version 0 has no flag (always allowed); from 1 a replication factor change is refused.
        .with_allow_replication_factor_change(version == 0)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(name(topic))
            .with_partitions(partitions)])
}

/// An ElectLeaders request of `election_type` for one partition, or for all (`None`).
fn elect(election_type: i8, partition: Option<(&str, i32)>) -> ElectLeadersRequest {
    ElectLeadersRequest::default()
        .with_election_type(election_type)
        .with_timeout_ms(5000)
        .with_topic_partitions(partition.map(|(t, p)| {
            vec![elect_leaders_request::TopicPartitions::default()
                .with_topic(name(t))
                .with_partitions(vec![p])]
        }))
}

fn describe_partitions(
    c: &mut Conn,
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> DescribeTopicPartitionsResponse {
    let req = DescribeTopicPartitionsRequest::default()
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    describe_topic_partitions_request::TopicRequest::default().with_name(name(t))
                })
                .collect(),
        )
        .with_response_partition_limit(limit)
        .with_cursor(cursor.map(|(t, p)| {
            describe_topic_partitions_request::Cursor::default()
                .with_topic_name(name(t))
                .with_partition_index(p)
        }));
    c.call(ApiKey::DescribeTopicPartitions, 0, &req)
}

/// (topic, error code, partition indexes) of each topic of a DescribeTopicPartitions answer,
/// and its next cursor.
type Page = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);

fn page_of(r: &DescribeTopicPartitionsResponse) -> Page {
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let n = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            let ps = t.partitions.iter().map(|p| p.partition_index).collect();
            (n, t.error_code, ps)
        })
        .collect();
    let next = r
        .next_cursor
        .as_ref()
        .map(|c| (c.topic_name.0.to_string(), c.partition_index));
    (topics, next)
}

#[test]
fn describe_topic_partitions_pages_through_topics_in_name_order() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    for (t, n) in [("dtp-a", 3), ("dtp-b", 2), ("dtp-c", 1)] {
        create_topic(&mut c, t, n, &[]);
    }
    let asked = ["dtp-c", "missing", "dtp-a", "bad name!", "dtp-b"];
    let owned = |v: Vec<(&str, i16, Vec<i32>)>| -> Vec<(String, i16, Vec<i32>)> {
        v.into_iter()
            .map(|(n, e, p)| (n.to_string(), e, p))
            .collect()
    };
    // INVALID_TOPIC_EXCEPTION sorts first; two partitions fill the page.
    let r = describe_partitions(&mut c, &asked, 2, None);
    assert_eq!(
        page_of(&r),
        (
            owned(vec![("bad name!", 17, vec![]), ("dtp-a", 0, vec![0, 1])]),
            Some(("dtp-a".into(), 2))
        )
    );
    let p = &r.topics[1].partitions[0];
    assert_eq!(p.leader_id, BrokerId(0));
    assert!(p.leader_epoch > 0, "the owner epoch of its claim");
    assert_eq!(
        (&p.replica_nodes[..], &p.isr_nodes[..]),
        (&[BrokerId(0)][..], &[BrokerId(0)][..])
    );
    assert_eq!(p.eligible_leader_replicas.as_deref(), Some(&[][..]));
    assert!(!r.topics[1].topic_id.is_nil());
    let r = describe_partitions(&mut c, &asked, 2, Some(("dtp-a", 2)));
    assert_eq!(
        page_of(&r),
        (
            owned(vec![("dtp-a", 0, vec![2]), ("dtp-b", 0, vec![0])]),
            Some(("dtp-b".into(), 1))
        )
    );
    // The page is full after dtp-c: the cursor names the next topic, known or not.
    let r = describe_partitions(&mut c, &asked, 2, Some(("dtp-b", 1)));
    assert_eq!(
        page_of(&r),
        (
            owned(vec![("dtp-b", 0, vec![1]), ("dtp-c", 0, vec![0])]),
            Some(("missing".into(), 0))
        )
    );
    let r = describe_partitions(&mut c, &asked, 2, Some(("missing", 0)));
    assert_eq!(page_of(&r), (owned(vec![("missing", 3, vec![])]), None));
    // Every topic: unknown ones cannot be named; a limit of 0 still answers one partition.
    let r = describe_partitions(&mut c, &[], 0, Some(("dtp-b", 1)));
    assert_eq!(
        page_of(&r),
        (
            owned(vec![("dtp-b", 0, vec![1])]),
            Some(("dtp-c".into(), 0))
        )
    );
    // A cursor outside the list, or with a negative partition, is INVALID_REQUEST.
    let r = describe_partitions(&mut c, &["dtp-a"], 10, Some(("dtp-b", 0)));
    assert_eq!(page_of(&r), (owned(vec![("dtp-a", 42, vec![])]), None));
    let r = describe_partitions(&mut c, &["dtp-a"], 10, Some(("dtp-a", -1)));
    assert_eq!(page_of(&r), (owned(vec![("dtp-a", 42, vec![])]), None));
}

#[test]
fn describe_log_dirs_reports_the_bytes_of_each_partition() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    create_topic(&mut c, "sizes", 2, &[]);
    let (first, second) = (records(3, 100), records(2, 10));
    let total = (first.len() + second.len()) as i64;
    assert_eq!(produce(&mut c, "sizes", 0, first.clone()).error_code, 0);
    assert_eq!(produce(&mut c, "sizes", 0, second.clone()).error_code, 0);
    let sizes = |c: &mut Conn, topics: Option<Vec<(&str, Vec<i32>)>>| -> Vec<(String, i32, i64)> {
        let req = DescribeLogDirsRequest::default().with_topics(topics.map(|ts| {
            ts.into_iter()
                .map(|(t, ps)| {
                    describe_log_dirs_request::DescribableLogDirTopic::default()
                        .with_topic(name(t))
                        .with_partitions(ps)
                })
                .collect()
        }));
        let r: DescribeLogDirsResponse = c.call(ApiKey::DescribeLogDirs, 4, &req);
        assert_eq!(r.results.len(), 1, "one pseudo log dir");
        let dir = &r.results[0];
        assert_eq!(
            (dir.error_code, dir.total_bytes, dir.usable_bytes),
            (0, -1, -1)
        );
        assert!(
            dir.log_dir.starts_with("file:///"),
            "{}",
            dir.log_dir.as_str()
        );
        dir.topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    assert_eq!((p.offset_lag, p.is_future_key), (0, false));
                    (t.name.0.to_string(), p.partition_index, p.partition_size)
                })
            })
            .collect()
    };
    let s = |p: i32, n: i64| ("sizes".to_string(), p, n);
    assert_eq!(sizes(&mut c, None), vec![s(0, total), s(1, 0)]);
    assert_eq!(
        sizes(&mut c, Some(vec![("sizes", vec![1, 7]), ("nope", vec![0])])),
        vec![s(1, 0)],
        "only partitions that exist, as asked"
    );
    // DeleteRecords past the first batch drops its bytes.
    let req = DeleteRecordsRequest::default().with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(name("sizes"))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(3),
            ]),
    ]);
    let r: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &req);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        sizes(&mut c, Some(vec![("sizes", vec![0])])),
        vec![s(0, second.len() as i64)]
    );
}

#[test]
fn elect_leaders_answers_that_no_election_is_needed() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    create_topic(&mut c, "elect", 2, &[]);
    let codes = |r: &ElectLeadersResponse| -> Vec<(String, Vec<(i32, i16)>)> {
        r.replica_election_results
            .iter()
            .map(|t| {
                let ps = t
                    .partition_result
                    .iter()
                    .map(|p| (p.partition_id, p.error_code))
                    .collect();
                (t.topic.0.to_string(), ps)
            })
            .collect()
    };
    for election in [0, 1] {
        let r: ElectLeadersResponse = c.call(
            ApiKey::ElectLeaders,
            2,
            &elect(election, Some(("elect", 1))),
        );
        assert_eq!(r.error_code, 0);
        assert_eq!(
            codes(&r),
            vec![("elect".to_string(), vec![(1, 84)])],
            "ELECTION_NOT_NEEDED"
        );
        // Every partition: those that needed no election are left out.
        let r: ElectLeadersResponse = c.call(ApiKey::ElectLeaders, 2, &elect(election, None));
        assert_eq!(codes(&r), vec![("elect".to_string(), vec![])]);
    }
    for (topic, p) in [("elect", 2), ("elect", -1), ("nope", 0)] {
        let r: ElectLeadersResponse = c.call(ApiKey::ElectLeaders, 2, &elect(0, Some((topic, p))));
        let res = &r.replica_election_results[0].partition_result[0];
        assert_eq!(
            res.error_code, 3,
            "UNKNOWN_TOPIC_OR_PARTITION for {topic}-{p}"
        );
        assert!(
            res.error_message
                .as_ref()
                .is_some_and(|m| m.contains("No such")),
            "{res:?}"
        );
    }
    let r: ElectLeadersResponse = c.call(ApiKey::ElectLeaders, 2, &elect(7, Some(("elect", 0))));
    assert_eq!(
        r.error_code, 42,
        "INVALID_REQUEST for an unknown election type"
    );
    assert_eq!(codes(&r), vec![("elect".to_string(), vec![(0, 42)])]);
}

#[test]
fn legacy_alter_configs_replaces_the_whole_set() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    create_topic(
        &mut c,
        "legacy",
        1,
        &[("retention.ms", "1000"), ("cleanup.policy", "compact")],
    );
    let explicit = |c: &mut Conn| -> Vec<(String, String)> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("legacy"))
                .with_configuration_keys(None),
        ]);
        let r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req);
        let mut set: Vec<(String, String)> = r.results[0]
            .configs
            .iter()
            .filter(|e| e.config_source == 1)
            .map(|e| {
                (
                    e.name.to_string(),
                    e.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        set.sort();
        set
    };
    let alter = |c: &mut Conn, req: &AlterConfigsRequest| -> (i16, Option<String>) {
        let r: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, 2, req);
        let res = &r.responses[0];
        (
            res.error_code,
            res.error_message.as_ref().map(|m| m.to_string()),
        )
    };
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    // Refused requests change nothing.
    assert_eq!(
        alter(
            &mut c,
            &legacy_alter("legacy", &[("retention.bytes", "5"), ("no.such", "1")])
        )
        .0,
        40
    );
    assert_eq!(
        alter(&mut c, &legacy_alter("legacy", &[("retention.ms", "soon")])).0,
        40
    );
    assert_eq!(
        alter(&mut c, &legacy_alter("nope", &[("retention.ms", "1")])).0,
        3
    );
    let mut broker = legacy_alter("0", &[("num.partitions", "3")]);
    broker.resources[0].resource_type = 4;
    assert_eq!(alter(&mut c, &broker).0, 42);
    assert_eq!(
        alter(
            &mut c,
            &legacy_alter("legacy", &[("retention.bytes", "5")]).with_validate_only(true)
        ),
        (0, None)
    );
    assert_eq!(
        explicit(&mut c),
        vec![
            pair("cleanup.policy", "compact"),
            pair("retention.ms", "1000")
        ]
    );
    // The configs sent replace the set: the others return to their defaults.
    assert_eq!(
        alter(
            &mut c,
            &legacy_alter(
                "legacy",
                &[("retention.bytes", "5"), ("retention.ms", "2000")]
            )
        ),
        (0, None)
    );
    assert_eq!(
        explicit(&mut c),
        vec![pair("retention.bytes", "5"), pair("retention.ms", "2000")]
    );
    let mut no_value = legacy_alter("legacy", &[("segment.ms", "1"), ("retention.ms", "3000")]);
    no_value.resources[0].configs[0].value = None;
    assert_eq!(alter(&mut c, &no_value), (0, None));
    assert_eq!(explicit(&mut c), vec![pair("retention.ms", "3000")]);
    assert_eq!(alter(&mut c, &legacy_alter("legacy", &[])), (0, None));
    assert_eq!(explicit(&mut c), vec![]);
}

#[test]
fn bad_frames_close_the_connection_and_the_node_keeps_serving() {
    let mut b = Broker::start(&[("INKLESS__KAFKA__MAX_FRAME_BYTES", "65536")]);
    let mut healthy = b.conn();
    let ok = |c: &mut Conn| {
        let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert_eq!(r.error_code, 0);
    };
    // Over the frame limit.
    let mut c = b.conn();
    c.send_raw(&(1_000_000i32).to_be_bytes());
    assert!(c.closed());
    // A frame shorter than a request header.
    let mut c = b.conn();
    c.send_raw(&[0, 0, 0, 3, 0, 18, 0]);
    assert!(c.closed());
    // Random bytes.
    let mut c = b.conn();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    c.send_raw(&[0, 0, 16, 0]);
    c.send_raw(&noise);
    assert!(c.closed());
    // Unknown API key.
    let mut c = b.conn();
    c.send_raw(&[0, 0, 0, 10, 0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert!(c.closed());
    // Unsupported version of a known API.
    let mut c = b.conn();
    let (mut frame, _) = c.frame(ApiKey::Metadata, 4, &MetadataRequest::default());
    frame[6..8].copy_from_slice(&99i16.to_be_bytes());
    c.send_raw(&frame);
    assert!(c.closed());
    // An array count far beyond the frame (would allocate hundreds of GiB if trusted).
    let mut c = b.conn();
    let (mut frame, _) = c.frame(
        ApiKey::Metadata,
        1,
        &MetadataRequest::default().with_topics(Some(vec![])),
    );
    let n = frame.len();
    frame[n - 4..].copy_from_slice(&0x7fff_fff0i32.to_be_bytes());
    c.send_raw(&frame);
    assert!(c.closed());
    // ApiVersions at an unknown version is answered with UNSUPPORTED_VERSION in v0.
    let mut c = b.conn();
    let (mut frame, id) = c.frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    frame[6..8].copy_from_slice(&77i16.to_be_bytes());
    c.send_raw(&frame);
    let mut resp = c.read_frame().expect("answer");
    assert_eq!(resp.get_i32(), id);
    let r = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(r.error_code, 35);
    assert!(!r.api_keys.is_empty());

    ok(&mut healthy);
    ok(&mut b.conn());
    assert!(b.alive());
}

#[test]
fn produce_errors_use_kafka_codes() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    create_topic(&mut c, "small", 1, &[("max.message.bytes", "2000")]);
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("small"))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("max.message.bytes")])),
    ]);
    let d: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req);
    assert_eq!(d.results[0].configs[0].value.as_deref(), Some("2000"));
    // Corrupt CRC.
    let mut bad = BytesMut::from(&records(2, 10)[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    assert_eq!(produce(&mut c, "small", 0, bad.freeze()).error_code, 2);
    // Over max.message.bytes.
    assert_eq!(produce(&mut c, "small", 0, records(10, 500)).error_code, 10);
    // Two batches for one partition in one request.
    let mut two = BytesMut::from(&records(1, 5)[..]);
    two.extend_from_slice(&records(1, 5));
    assert_eq!(produce(&mut c, "small", 0, two.freeze()).error_code, 87);
    // Unknown topic, unknown partition.
    assert_eq!(produce(&mut c, "nope", 0, records(1, 1)).error_code, 3);
    assert_eq!(produce(&mut c, "small", 5, records(1, 1)).error_code, 3);
    // None of that became visible.
    let p = fetch(&mut c, "small", 0, 0, 0);
    assert_eq!((p.error_code, p.high_watermark), (0, 0));
    // Fetch beyond the end.
    assert_eq!(fetch(&mut c, "small", 0, 5, 0).error_code, 1);
}

#[test]
fn fetch_long_polls_until_data_arrives() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    create_topic(&mut c, "poll", 1, &[]);
    let addr = b.addr.clone();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let s = TcpStream::connect(addr).unwrap();
        let mut p = Conn { s, next: 100 };
        produce(&mut p, "poll", 0, records(4, 100))
    });
    let started = Instant::now();
    let data = fetch(&mut c, "poll", 0, 0, 10_000);
    let waited = started.elapsed();
    assert_eq!(producer.join().unwrap().error_code, 0);
    assert_eq!(data.high_watermark, 4);
    assert!(data.records.is_some_and(|r| r.len() > 400));
    assert!(
        waited >= Duration::from_millis(400),
        "waited for data: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "answered when data came: {waited:?}"
    );
}

#[test]
fn fetch_long_poll_ignores_commits_to_other_partitions() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    create_topic(&mut c, "idle", 1, &[]);
    create_topic(&mut c, "busy", 1, &[]);
    let addr = b.addr.clone();
    // Commits to another topic during the whole long poll wake it; it must wait on.
    let producer = std::thread::spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        let mut p = Conn { s, next: 100 };
        let until = Instant::now() + Duration::from_millis(1200);
        let mut sent = 0;
        while Instant::now() < until {
            assert_eq!(produce(&mut p, "busy", 0, records(1, 10)).error_code, 0);
            sent += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        sent
    });
    let started = Instant::now();
    let data = fetch(&mut c, "idle", 0, 0, 1500);
    let waited = started.elapsed();
    assert!(producer.join().unwrap() > 5);
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 0);
    assert!(data.records.is_none_or(|r| r.is_empty()));
    assert!(
        waited >= Duration::from_millis(1400),
        "answered before max_wait_ms with nothing to return: {waited:?}"
    );
}

#[test]
fn metrics_count_object_store_requests() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = format!("127.0.0.1:{port}");
    let b = Broker::start(&[("INKLESS__ADMIN__LISTEN", admin.as_str())]);
    let mut c = b.conn();
    create_topic(&mut c, "m", 1, &[]);
    assert_eq!(produce(&mut c, "m", 0, records(5, 100)).error_code, 0);
    let mut s = TcpStream::connect(&admin).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let value = |name: &str| -> u64 {
        page.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(value("inkless_object_store_put_requests_total"), 1);
    assert!(value("inkless_object_store_put_bytes_total") > 500);
    assert_eq!(value("inkless_partitions"), 1);
    assert!(
        page.contains("inkless_requests_total{api=\"Produce\"} 1"),
        "{page}"
    );
    assert!(page.contains("inkless_request_duration_seconds_count{api=\"CreateTopics\"} 1"));

    // The live supervision tree, with a group coordinator once a group exists.
    assert_eq!(commit(&mut c, "tree-group", "", -1, &name("m"), 1, 8), 0);
    let mut s = TcpStream::connect(&admin).unwrap();
    s.write_all(b"GET /actors HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    let body = page.split("\r\n\r\n").nth(1).unwrap();
    let tree: Vec<serde_json::Value> = serde_json::from_str(body).unwrap();
    let kinds: Vec<&str> = tree.iter().filter_map(|a| a["kind"].as_str()).collect();
    for k in [
        "node-supervisor",
        "partition-manager",
        "partition",
        "group-manager",
        "group",
        "index-writer",
        "produce-buffer",
        "object-uploader",
        "cache-shard",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    assert!(tree[0]["parent"].is_null(), "the root comes first");
    assert!(tree.iter().skip(1).all(|a| a["parent"].is_string()));
    // Every actor reports its mailbox length; an idle broker's are (nearly: a timer tick
    // may be on its way) empty.
    assert!(
        tree.iter()
            .all(|a| a["mailbox"].as_u64().is_some_and(|n| n <= 1)),
        "{tree:?}"
    );
}

#[test]
fn list_offsets_finds_records_by_timestamp() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    create_topic(&mut c, "times", 1, &[]);
    // Two batches of 5 records, timestamps 1_700_000_000_000 + 0..5 each.
    assert_eq!(produce(&mut c, "times", 0, records(5, 10)).error_code, 0);
    assert_eq!(produce(&mut c, "times", 0, records(5, 10)).error_code, 0);
    let lookup = |c: &mut Conn, ts: i64| {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(name("times"))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(ts),
                ])]);
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 8, &req);
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    };
    let base = 1_700_000_000_000;
    assert_eq!(
        lookup(&mut c, base + 2),
        (0, 2, base + 2),
        "exact record inside the first batch"
    );
    assert_eq!(lookup(&mut c, base + 4), (0, 4, base + 4));
    assert_eq!(lookup(&mut c, base + 99), (0, -1, -1), "nothing that late");
    assert_eq!(lookup(&mut c, -2).1, 0, "earliest");
    assert_eq!(lookup(&mut c, -1).1, 10, "latest");
    assert_eq!(
        lookup(&mut c, -3),
        (0, 4, base + 4),
        "max timestamp: first record holding it"
    );
}

#[test]
fn log_append_time_topics_stamp_the_broker_time() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    create_topic(
        &mut c,
        "stamped",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let r = produce(&mut c, "stamped", 0, records(3, 10));
    assert_eq!(r.error_code, 0);
    assert!(
        r.log_append_time_ms >= before,
        "the ack carries the append time"
    );
    let data = fetch(&mut c, "stamped", 0, 0, 0);
    let mut bytes = data.records.unwrap();
    // Clients read every record's timestamp of a LogAppendTime batch from its max timestamp.
    let header = inkless_protocol::batch::BatchHeader::parse(&bytes).unwrap();
    assert_eq!(header.max_timestamp, r.log_append_time_ms);
    let batches =
        inkless_protocol::kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
    assert!(batches
        .records
        .iter()
        .all(|rec| rec.timestamp_type == TimestampType::LogAppend));
    assert_eq!(batches.records.len(), 3);
}

#[test]
fn metadata_auto_creates_valid_topics_and_refuses_invalid_names() {
    let b = Broker::start(&[("INKLESS__KAFKA__NUM_PARTITIONS", "3")]);
    let mut c = b.conn();
    let ask = |c: &mut Conn, topic: &str, allow: bool| -> MetadataResponse {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(name(topic)))]))
            .with_allow_auto_topic_creation(allow);
        c.call(ApiKey::Metadata, 12, &req)
    };
    let r = ask(&mut c, "made-on-demand", true);
    assert_eq!(
        (r.topics[0].error_code, r.topics[0].partitions.len()),
        (0, 3)
    );
    assert!(!r.topics[0].topic_id.is_nil());
    assert_eq!(
        ask(&mut c, "bad name!", true).topics[0].error_code,
        17,
        "INVALID_TOPIC_EXCEPTION"
    );
    assert_eq!(
        ask(&mut c, "not-allowed", false).topics[0].error_code,
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
}

#[test]
fn connect_groups_are_coordinated_without_interpreting_assignments() {
    let b = Broker::start(&[("INKLESS__GROUPS__INITIAL_REBALANCE_DELAY_MS", "0")]);
    let mut c = b.conn();
    let (member, generation) = join_alone_as(&mut c, "connect-cluster", 7, "connect");
    let r = sync(&mut c, "connect-cluster", &member, generation, 5);
    assert_eq!((r.error_code, &r.assignment[..]), (0, &b"assigned"[..]));
    let d: DescribeGroupsResponse = c.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![gid("connect-cluster")]),
    );
    assert_eq!(d.groups[0].protocol_type.as_str(), "connect");
    assert_eq!(&d.groups[0].members[0].member_assignment[..], b"assigned");
}

#[test]
fn fetch_respects_the_response_byte_budget_across_partitions() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    create_topic(&mut c, "budget", 2, &[]);
    for p in 0..2 {
        for _ in 0..3 {
            assert_eq!(produce(&mut c, "budget", p, records(1, 1000)).error_code, 0);
        }
    }
    let part = |p: i32| {
        fetch_request::FetchPartition::default()
            .with_partition(p)
            .with_partition_max_bytes(1 << 20)
    };
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(1500)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name("budget"))
            .with_partitions(vec![part(0), part(1)])]);
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
    let (p0, p1) = (&r.responses[0].partitions[0], &r.responses[0].partitions[1]);
    let len = |d: &fetch_response::PartitionData| d.records.as_ref().map_or(0, |r| r.len());
    assert!(
        len(p0) > 1000 && len(p0) < 1500,
        "the first partition gets one batch: {}",
        len(p0)
    );
    assert_eq!(len(p1), 0, "no room left for the second partition");
    assert_eq!((p0.high_watermark, p1.high_watermark), (3, 3));
}

#[test]
fn the_offsets_topic_is_listed_internal_and_closed_to_clients() {
    let b = Broker::start(&[("INKLESS__GROUPS__OFFSETS_TOPIC_NUM_PARTITIONS", "4")]);
    let mut c = b.conn();
    // As with Kafka, the first FindCoordinator creates it.
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
    let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 3, &req);
    assert_eq!(r.error_code, 0);
    let req = MetadataRequest::default().with_topics(None);
    let r: MetadataResponse = c.call(ApiKey::Metadata, 12, &req);
    let t = r
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("__consumer_offsets"))
        .expect("__consumer_offsets is listed");
    assert_eq!(
        (t.error_code, t.is_internal, t.partitions.len()),
        (0, true, 4)
    );
    let refused = produce(&mut c, "__consumer_offsets", 0, records(1, 10));
    assert_eq!(refused.error_code, 17, "INVALID_TOPIC_EXCEPTION");
    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![name("__consumer_offsets")])
        .with_timeout_ms(5_000);
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 5, &req);
    assert_eq!(r.responses[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
    // A fetch finds it empty, as Kafka's is to a consumer of any group-less client.
    let p = fetch(&mut c, "__consumer_offsets", 0, 0, 0);
    assert_eq!((p.error_code, p.high_watermark), (0, 0));
}

#[test]
fn create_topics_takes_replica_assignments_naming_live_brokers() {
    let b = Broker::start(&[("INKLESS__NODE__ID", "3")]);
    let mut c = b.conn();
    let create = |c: &mut Conn, topic: &str, partitions: i32, rf: i16, brokers: &[&[i32]]| {
        let t = create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_assignments(
                brokers
                    .iter()
                    .enumerate()
                    .map(|(i, ids)| {
                        create_topics_request::CreatableReplicaAssignment::default()
                            .with_partition_index(i as i32)
                            .with_broker_ids(ids.iter().map(|&b| BrokerId(b)).collect())
                    })
                    .collect(),
            );
        let req = CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(5000);
        let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
        (r.topics[0].error_code, r.topics[0].num_partitions)
    };
    assert_eq!(create(&mut c, "assigned", -1, -1, &[&[3], &[3]]), (0, 2));
    let p = produce(&mut c, "assigned", 1, records(1, 10));
    assert_eq!(p.error_code, 0, "the assigned topic serves");
    assert_eq!(
        create(&mut c, "unknown-broker", -1, -1, &[&[3], &[9]]).0,
        39,
        "INVALID_REPLICA_ASSIGNMENT"
    );
    assert_eq!(
        create(&mut c, "uneven", -1, -1, &[&[3], &[3, 3]]).0,
        39,
        "INVALID_REPLICA_ASSIGNMENT (a duplicate broker)"
    );
    assert_eq!(
        create(&mut c, "with-count", 2, -1, &[&[3], &[3]]).0,
        42,
        "INVALID_REQUEST: numPartitions must be -1 with an assignment"
    );
}

#[test]
fn leader_epochs_are_owner_epochs_and_stale_ones_are_fenced() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    create_topic(&mut c, "epochs", 1, &[]);
    assert_eq!(produce(&mut c, "epochs", 0, records(3, 10)).error_code, 0);
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name("epochs"))),
    ]));
    let md: MetadataResponse = c.call(ApiKey::Metadata, 12, &req);
    let epoch = md.topics[0].partitions[0].leader_epoch;
    assert!(epoch > 0, "a claimed partition has an owner epoch");

    let fetch_at = |c: &mut Conn, current: i32| -> i16 {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name("epochs"))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(current)
                    .with_partition_max_bytes(1 << 20)])]);
        let r: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
        r.responses[0].partitions[0].error_code
    };
    assert_eq!(fetch_at(&mut c, epoch), 0);
    assert_eq!(fetch_at(&mut c, -1), 0, "no epoch: no check");
    assert_eq!(fetch_at(&mut c, epoch - 1), 74, "FENCED_LEADER_EPOCH");
    assert_eq!(fetch_at(&mut c, epoch + 1), 75, "UNKNOWN_LEADER_EPOCH");

    let list_at = |c: &mut Conn, current: i32| -> (i16, i32, i64) {
        let req = ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(name("epochs"))
                .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_current_leader_epoch(current)
                    .with_timestamp(-1)]),
        ]);
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req);
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.leader_epoch, p.offset)
    };
    assert_eq!(list_at(&mut c, epoch), (0, epoch, 3));
    assert_eq!(list_at(&mut c, epoch - 1).0, 74, "FENCED_LEADER_EPOCH");

    let end_of = |c: &mut Conn, leader_epoch: i32| -> (i16, i32, i64) {
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name("epochs"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(epoch)
                            .with_leader_epoch(leader_epoch),
                    ]),
            ]);
        let r: OffsetForLeaderEpochResponse = c.call(ApiKey::OffsetForLeaderEpoch, 4, &req);
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.leader_epoch, p.end_offset)
    };
    assert_eq!(
        end_of(&mut c, epoch),
        (0, epoch, 3),
        "the log never diverges"
    );
    assert_eq!(end_of(&mut c, epoch - 1), (0, epoch - 1, 3));
    assert_eq!(
        end_of(&mut c, epoch + 1),
        (0, -1, -1),
        "a future epoch is unknown"
    );
}

/// Kafka's INVALID_PRODUCER_ID_MAPPING.
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
/// Kafka's INVALID_TXN_STATE.
const INVALID_TXN_STATE: i16 = 48;
/// Kafka's INVALID_PRODUCER_EPOCH.
const INVALID_PRODUCER_EPOCH: i16 = 47;
/// Kafka's PRODUCER_FENCED.
const PRODUCER_FENCED: i16 = 90;

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

/// The transaction APIs answer every advertised version; an unknown transactional id gets
/// Kafka's error.
fn txn_api_answers(c: &mut Conn, key: ApiKey, v: i16) {
    let nope = txn_id("no-such-txn");
    match key {
        ApiKey::AddPartitionsToTxn => {
            let topics = vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(name("versions"))
                    .with_partitions(vec![0]),
            ];
            let req = if v <= 3 {
                AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(nope)
                    .with_v3_and_below_producer_id(ProducerId(1))
                    .with_v3_and_below_topics(topics)
            } else {
                AddPartitionsToTxnRequest::default().with_transactions(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                        .with_transactional_id(nope)
                        .with_producer_id(ProducerId(1))
                        .with_verify_only(true)
                        .with_topics(topics),
                ])
            };
            let r: AddPartitionsToTxnResponse = c.call(key, v, &req);
            let topics = if v <= 3 {
                &r.results_by_topic_v3_and_below
            } else {
                &r.results_by_transaction[0].topic_results
            };
            let code = topics[0].results_by_partition[0].partition_error_code;
            assert_eq!(code, INVALID_PRODUCER_ID_MAPPING, "v{v}: {r:?}");
        }
        ApiKey::AddOffsetsToTxn => {
            let req = AddOffsetsToTxnRequest::default()
                .with_transactional_id(nope)
                .with_producer_id(ProducerId(1))
                .with_group_id(gid("g"));
            let r: AddOffsetsToTxnResponse = c.call(key, v, &req);
            assert_eq!(r.error_code, INVALID_PRODUCER_ID_MAPPING, "v{v}");
        }
        ApiKey::EndTxn => {
            let req = EndTxnRequest::default()
                .with_transactional_id(nope)
                .with_producer_id(ProducerId(1))
                .with_committed(true);
            let r: EndTxnResponse = c.call(key, v, &req);
            assert_eq!(r.error_code, INVALID_PRODUCER_ID_MAPPING, "v{v}");
        }
        ApiKey::TxnOffsetCommit => {
            let req = TxnOffsetCommitRequest::default()
                .with_transactional_id(nope)
                .with_group_id(gid("g"))
                .with_producer_id(ProducerId(1))
                .with_generation_id(-1)
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(name("versions"))
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]);
            let r: TxnOffsetCommitResponse = c.call(key, v, &req);
            let code = r.topics[0].partitions[0].error_code;
            assert_eq!(code, INVALID_PRODUCER_ID_MAPPING, "v{v}");
        }
        ApiKey::DescribeTransactions => {
            let req = DescribeTransactionsRequest::default().with_transactional_ids(vec![nope]);
            let r: DescribeTransactionsResponse = c.call(key, v, &req);
            assert_eq!(
                r.transaction_states[0].error_code, 105,
                "TRANSACTIONAL_ID_NOT_FOUND v{v}"
            );
        }
        ApiKey::ListTransactions => {
            let r: ListTransactionsResponse = c.call(
                key,
                v,
                &ListTransactionsRequest::default().with_duration_filter(-1),
            );
            assert_eq!(r.error_code, 0, "v{v}");
        }
        ApiKey::DescribeProducers => {
            let req = DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(name("versions"))
                    .with_partition_indexes(vec![0, 99]),
            ]);
            let r: DescribeProducersResponse = c.call(key, v, &req);
            let codes: Vec<i16> = r.topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect();
            assert_eq!(codes, [0, 3], "v{v}");
        }
        other => panic!("not a transaction API: {other:?}"),
    }
}

/// A batch of `n` transactional records of producer (`pid`, `epoch`) from `sequence`.
fn txn_records(n: usize, pid: i64, epoch: i16, sequence: i32) -> Bytes {
    let recs: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: true,
            control: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: sequence + i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from_static(b"txn")),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// A transactional Produce of `recs` to partition 0 of `topic`.
fn txn_produce(c: &mut Conn, id: &str, topic: &str, recs: Bytes) -> i16 {
    let req = ProduceRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(recs)),
            ])]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &req);
    r.responses[0].partition_responses[0].error_code
}

/// InitProducerId (v3) for a transactional id: (error, producer id, epoch).
fn txn_init(c: &mut Conn, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 3, &req);
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// A Fetch of partition 0 of `topic` from `offset` at `isolation`.
fn fetch_isolated(
    c: &mut Conn,
    topic: &str,
    offset: i64,
    isolation: i8,
) -> fetch_response::PartitionData {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
    r.responses[0].partitions[0].clone()
}

/// ListOffsets latest of partition 0 at `isolation`.
fn latest(c: &mut Conn, topic: &str, isolation: i8) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
            ])]);
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 5, &req);
    r.topics[0].partitions[0].offset
}

/// The batch headers of a Fetch answer's records.
fn headers_of(records: &Bytes) -> Vec<inkless_protocol::batch::BatchHeader> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        let h = inkless_protocol::batch::BatchHeader::parse(&records[at..]).unwrap();
        at += h.total_bytes();
        out.push(h);
    }
    out
}

/// AddPartitionsToTxn (v3) of partition 0 of `topic`.
fn txn_add(c: &mut Conn, id: &str, pid: i64, epoch: i16, topic: &str) -> i16 {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(id))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![0]),
        ]);
    let r: AddPartitionsToTxnResponse = c.call(ApiKey::AddPartitionsToTxn, 3, &req);
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

/// EndTxn (v3).
fn txn_end(c: &mut Conn, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let r: EndTxnResponse = c.call(ApiKey::EndTxn, 3, &req);
    r.error_code
}

#[test]
fn transactional_batches_need_their_partition_in_the_transaction() {
    let mut b = Broker::start(&[]);
    let mut c = b.conn();
    create_topic(&mut c, "txw", 1, &[]);
    assert_eq!(
        txn_init(&mut c, "w1", 1_000_000).0,
        50,
        "INVALID_TRANSACTION_TIMEOUT"
    );
    let (code, pid, epoch) = txn_init(&mut c, "w1", 60_000);
    assert_eq!((code, epoch), (0, 0));
    // Before AddPartitionsToTxn, in a request without a transactional id, with a wrong
    // epoch, or a control batch from a client: refused, nothing written.
    assert_eq!(
        txn_produce(&mut c, "w1", "txw", txn_records(3, pid, 0, 0)),
        INVALID_TXN_STATE
    );
    assert_eq!(
        produce(&mut c, "txw", 0, txn_records(3, pid, 0, 0)).error_code,
        87
    );
    assert_eq!(
        txn_produce(&mut c, "unknown-id", "txw", txn_records(3, pid, 0, 0)),
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(txn_add(&mut c, "w1", pid, 0, "txw"), 0);
    assert_eq!(
        txn_produce(&mut c, "w1", "txw", txn_records(3, pid, 7, 0)),
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        txn_produce(&mut c, "w1", "txw", txn_records(3, pid + 1, 0, 0)),
        INVALID_PRODUCER_ID_MAPPING
    );
    let marker = inkless_protocol::control::marker_batch(pid, 0, true, 0, 1);
    assert_eq!(txn_produce(&mut c, "w1", "txw", marker.bytes), 87);
    assert_eq!(fetch(&mut c, "txw", 0, 0, 0).high_watermark, 0);
    // EndTxn for an unknown id, with a stale epoch.
    assert_eq!(
        txn_end(&mut c, "nope", pid, 0, true),
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(txn_end(&mut c, "w1", pid, 3, true), PRODUCER_FENCED);
    assert!(b.alive());
}

#[test]
fn read_committed_stops_at_the_last_stable_offset_and_lists_aborts() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    create_topic(&mut c, "txr", 1, &[]);
    let (_, pid, epoch) = txn_init(&mut c, "r1", 60_000);
    assert_eq!(txn_add(&mut c, "r1", pid, epoch, "txr"), 0);
    assert_eq!(
        txn_produce(&mut c, "r1", "txr", txn_records(3, pid, epoch, 0)),
        0
    );
    // Open transaction: read_committed sees nothing, its end is the LSO.
    assert_eq!((latest(&mut c, "txr", 0), latest(&mut c, "txr", 1)), (3, 0));
    let p = fetch_isolated(&mut c, "txr", 0, 1);
    assert_eq!((p.high_watermark, p.last_stable_offset), (3, 0));
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
    assert_eq!(txn_end(&mut c, "r1", pid, epoch, false), 0);
    // The abort marker lands at offset 3; read_committed then gets both batches and the
    // aborted transaction to filter.
    let deadline = Instant::now() + Duration::from_secs(20);
    let p = loop {
        let p = fetch_isolated(&mut c, "txr", 0, 1);
        if p.last_stable_offset == 4 {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the abort marker never landed: {p:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let hs = headers_of(p.records.as_ref().unwrap());
    assert_eq!(hs.len(), 2);
    assert!(hs[0].is_transactional() && !hs[0].is_control());
    assert!(hs[1].is_control() && hs[1].base_offset == 3);
    let aborted = p.aborted_transactions.unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].producer_id.0, aborted[0].first_offset),
        (pid, 0)
    );
    // A second transaction commits: no aborted transaction in its range.
    assert_eq!(txn_add(&mut c, "r1", pid, epoch, "txr"), 0);
    assert_eq!(
        txn_produce(&mut c, "r1", "txr", txn_records(2, pid, epoch, 3)),
        0
    );
    assert_eq!(txn_end(&mut c, "r1", pid, epoch, true), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while latest(&mut c, "txr", 1) != 7 {
        assert!(Instant::now() < deadline, "the commit marker never landed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let p = fetch_isolated(&mut c, "txr", 4, 1);
    assert_eq!(p.aborted_transactions.map(|a| a.len()), Some(0));
    // DescribeProducers shows the producer, no transaction open.
    let req = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(name("txr"))
            .with_partition_indexes(vec![0]),
    ]);
    let r: DescribeProducersResponse = c.call(ApiKey::DescribeProducers, 0, &req);
    let active = &r.topics[0].partitions[0].active_producers;
    assert_eq!(active.len(), 1, "{r:?}");
    assert_eq!(
        (active[0].producer_id.0, active[0].current_txn_start_offset),
        (pid, -1)
    );
    // A new producer with the same id bumps the epoch and fences the old one.
    let (code, pid2, epoch2) = txn_init(&mut c, "r1", 60_000);
    assert_eq!((code, pid2, epoch2), (0, pid, epoch + 1));
    assert_eq!(txn_add(&mut c, "r1", pid, epoch, "txr"), PRODUCER_FENCED);
}

/// A transactional Produce v12 (transaction version 2) of `recs` to partition 0.
fn txn_produce_v12(c: &mut Conn, id: &str, topic: &str, recs: Bytes) -> i16 {
    let req = ProduceRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(recs)),
            ])]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 12, &req);
    r.responses[0].partition_responses[0].error_code
}

/// EndTxn v5: (error, producer id, epoch the client continues with).
fn txn_end_v5(c: &mut Conn, id: &str, pid: i64, epoch: i16, commit: bool) -> (i16, i64, i16) {
    let req = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let r: EndTxnResponse = c.call(ApiKey::EndTxn, 5, &req);
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

#[test]
fn transaction_version_2_adds_partitions_on_produce_and_bumps_the_epoch() {
    let b = Broker::start(&[]);
    let mut c = b.conn();
    let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let tv = r
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == "transaction.version");
    assert_eq!(tv.map(|f| f.max_version_level), Some(2));
    create_topic(&mut c, "tv2", 1, &[]);
    let (_, pid, epoch) = txn_init(&mut c, "v2", 60_000);
    // No AddPartitionsToTxn: Produce v12 adds the partition.
    assert_eq!(
        txn_produce_v12(&mut c, "v2", "tv2", txn_records(2, pid, epoch, 0)),
        0
    );
    assert_eq!(latest(&mut c, "tv2", 1), 0, "the transaction is open");
    assert_eq!(
        txn_end_v5(&mut c, "v2", pid, epoch, true),
        (0, pid, epoch + 1)
    );
    // A retry of the same EndTxn (its answer lost) gets the same answer.
    assert_eq!(
        txn_end_v5(&mut c, "v2", pid, epoch, true),
        (0, pid, epoch + 1)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while latest(&mut c, "tv2", 1) != 3 {
        assert!(Instant::now() < deadline, "the commit marker never landed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A late batch of the ended transaction (old epoch) is refused; the next transaction
    // runs with the bumped epoch from sequence 0.
    assert_eq!(
        txn_produce_v12(&mut c, "v2", "tv2", txn_records(1, pid, epoch, 2)),
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        txn_produce_v12(&mut c, "v2", "tv2", txn_records(1, pid, epoch + 1, 0)),
        0
    );
    assert_eq!(
        txn_end_v5(&mut c, "v2", pid, epoch + 1, false),
        (0, pid, epoch + 2)
    );
}
