//! Writes the seed corpus of the fuzz targets into `seeds/<target>/`.
//!
//!     cd protocol/fuzz && cargo run --example gen_seeds
//!
//! decode_request: every supported API at its lowest and highest version with a default
//! body, plus realistic ApiVersions v3, Metadata v12, Produce v9 (one batch) and Fetch v12.
//! frames: a few of those, each with its size prefix, after the 2-byte target header.
//! record_batches: valid batches (1 and 3 records, two concatenated).

use bytes::{Bytes, BytesMut};
use inkless_protocol::frame::encode_frame;
use inkless_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use inkless_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use inkless_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use inkless_protocol::kafka_protocol::messages::*;
use inkless_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use inkless_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use inkless_protocol::request::{decode_request, SUPPORTED_APIS};
use std::fs;
use std::path::Path;

fn request(key: ApiKey, version: i16, body: &RequestKind) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("seed")))
        .encode(&mut buf, key.request_header_version(version))
        .ok()?;
    body.encode(&mut buf, version).ok()?;
    let frame = buf.freeze();
    decode_request(frame.clone()).expect("seed must decode");
    Some(frame)
}

fn default_body(key: ApiKey) -> RequestKind {
    match key {
        ApiKey::Produce => RequestKind::Produce(Default::default()),
        ApiKey::Fetch => RequestKind::Fetch(Default::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(Default::default()),
        ApiKey::Metadata => RequestKind::Metadata(Default::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(Default::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(Default::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(Default::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(Default::default()),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(Default::default()),
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(Default::default()),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(Default::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(Default::default()),
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(Default::default()),
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(Default::default()),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(Default::default()),
        ApiKey::AlterPartitionReassignments => {
            RequestKind::AlterPartitionReassignments(Default::default())
        }
        ApiKey::ListPartitionReassignments => {
            RequestKind::ListPartitionReassignments(Default::default())
        }
        other => panic!("add a default body for {other:?}"),
    }
}

fn batch(n: i64, producer_id: i64) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

fn topic(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

fn realistic() -> Vec<(&'static str, Bytes)> {
    let api_versions = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("librdkafka"))
        .with_client_software_version(StrBytes::from_static_str("2.6.0"));
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic("orders"))),
            MetadataRequestTopic::default().with_name(Some(topic("payments"))),
        ]))
        .with_allow_auto_topic_creation(true);
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("orders"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(3, 1000)))])]);
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(52_428_800)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic("orders"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(0)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(1_048_576)])])
        .with_rack_id(StrBytes::from_static_str(""));
    vec![
        (
            "api_versions_v3",
            request(
                ApiKey::ApiVersions,
                3,
                &RequestKind::ApiVersions(api_versions),
            )
            .unwrap(),
        ),
        (
            "metadata_v12",
            request(ApiKey::Metadata, 12, &RequestKind::Metadata(metadata)).unwrap(),
        ),
        (
            "produce_v9",
            request(ApiKey::Produce, 9, &RequestKind::Produce(produce)).unwrap(),
        ),
        (
            "fetch_v12",
            request(ApiKey::Fetch, 12, &RequestKind::Fetch(fetch)).unwrap(),
        ),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let decode = root.join("decode_request");
    let _ = fs::remove_dir_all(&root);

    let realistic = realistic();
    for (name, frame) in &realistic {
        write(&decode, name, frame);
    }
    let mut n = 0;
    for api in SUPPORTED_APIS {
        for v in [api.min, api.max] {
            if let Some(frame) = request(api.key, v, &default_body(api.key)) {
                write(&decode, &format!("{:?}_v{v}_default", api.key), &frame);
                n += 1;
            }
        }
    }

    // frames: [max frame bytes, chunk size - 1] ++ stream of size-prefixed frames.
    let frames = root.join("frames");
    let mut stream = BytesMut::new();
    for (name, frame) in &realistic {
        if frame.len() <= 255 {
            let mut one = BytesMut::from(&[255u8, 7][..]);
            encode_frame(frame, &mut one);
            write(&frames, name, &one);
            encode_frame(frame, &mut stream);
        }
    }
    let mut all = BytesMut::from(&[255u8, 63][..]);
    all.extend_from_slice(&stream);
    write(&frames, "pipelined", &all);

    let batches = root.join("record_batches");
    write(&batches, "one_record", &batch(1, -1));
    write(&batches, "three_records_idempotent", &batch(3, 7));
    let mut two = BytesMut::from(&batch(2, -1)[..]);
    two.extend_from_slice(&batch(1, -1));
    write(&batches, "two_batches", &two);

    println!(
        "wrote {} decode_request seeds ({n} default bodies), frames and record_batches seeds under {}",
        realistic.len() + n,
        root.display()
    );
}
