//! Consumer groups, classic protocol: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups and
//! OffsetDelete. Membership lives in the group's GroupCoordinator actor; committed offsets
//! live in the metadata store.

use super::NONE;
use super::{group_code, group_outcome, not_coordinator, s, Ctx, AUTHORIZED_OPERATIONS_OMITTED};
use inkless_actors::{GroupMiss, JoinArgs, MemberRef, OffsetToDelete, SyncArgs};
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use inkless_protocol::kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use inkless_protocol::kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use inkless_protocol::kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use inkless_protocol::kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use inkless_protocol::kafka_protocol::messages::find_coordinator_response::{
    Coordinator, FindCoordinatorResponse,
};
use inkless_protocol::kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use inkless_protocol::kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use inkless_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequest;
use inkless_protocol::kafka_protocol::messages::join_group_response::{
    JoinGroupResponse, JoinGroupResponseMember,
};
use inkless_protocol::kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use inkless_protocol::kafka_protocol::messages::leave_group_response::{
    LeaveGroupResponse, MemberResponse,
};
use inkless_protocol::kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use inkless_protocol::kafka_protocol::messages::list_groups_response::{
    ListGroupsResponse, ListedGroup,
};
use inkless_protocol::kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use inkless_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use inkless_protocol::kafka_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use inkless_protocol::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use inkless_protocol::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use inkless_protocol::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use inkless_protocol::kafka_protocol::messages::{BrokerId, GroupId, TopicName};
use inkless_storage::metadata::CommittedOffset;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use uuid::Uuid;

/// Kafka's key type of consumer groups in FindCoordinator.
const KEY_TYPE_GROUP: i8 = 0;
/// Kafka's key type of transactional ids in FindCoordinator.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Answers FindCoordinator with the node that owns the group or transactional id by
/// placement.
pub async fn find_coordinator(
    ctx: &Ctx,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    super::topics::ensure_offsets_topic(ctx).await;
    let live = ctx.node.live();
    let brokers = super::brokers(ctx, &live);
    // (error, message, node id, host, port) for one key.
    let answer = |key: &str| -> (i16, Option<String>, i32, String, i32) {
        let owner = match req.key_type {
            KEY_TYPE_GROUP => live.group_owner(key),
            KEY_TYPE_TRANSACTION => live.txn_owner(key),
            _ => {
                return (
                    ResponseError::InvalidRequest.code(),
                    Some(format!("Unknown coordinator key type {}", req.key_type)),
                    -1,
                    String::new(),
                    -1,
                )
            }
        };
        match owner.and_then(|id| brokers.iter().find(|b| b.id == id)) {
            Some(b) => (NONE, None, b.id, b.host.clone(), b.port),
            None => (
                ResponseError::CoordinatorNotAvailable.code(),
                Some("no live node".into()),
                -1,
                String::new(),
                -1,
            ),
        }
    };
    if version < 4 {
        let (c, msg, id, host, port) = answer(req.key.as_str());
        let r = FindCoordinatorResponse::default()
            .with_error_code(c)
            .with_node_id(BrokerId(id))
            .with_host(s(host))
            .with_port(port);
        return if version >= 1 {
            r.with_error_message(msg.map(s))
        } else {
            r
        };
    }
    let coordinators = req
        .coordinator_keys
        .iter()
        .map(|k| {
            let (c, msg, id, host, port) = answer(k.as_str());
            Coordinator::default()
                .with_key(k.clone())
                .with_error_code(c)
                .with_error_message(msg.map(s))
                .with_node_id(BrokerId(id))
                .with_host(s(host))
                .with_port(port)
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

fn group_limits_ok(group_id: &str) -> bool {
    !group_id.is_empty()
}

/// Answers JoinGroup.
pub async fn join(
    ctx: &Ctx,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> JoinGroupResponse {
    let fail = |c: i16| {
        JoinGroupResponse::default()
            .with_error_code(c)
            .with_generation_id(-1)
            .with_member_id(req.member_id.clone())
    };
    if !group_limits_ok(&req.group_id.0) {
        return fail(ResponseError::InvalidGroupId.code());
    }
    if let Some(c) = not_coordinator(ctx, &req.group_id.0) {
        return fail(c);
    }
    let Ok(actor) = ctx.node.group(&req.group_id.0, true).await else {
        return fail(ResponseError::CoordinatorNotAvailable.code());
    };
    let args = JoinArgs {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: client_id.to_string(),
        client_host: format!("/{}", peer.ip()),
        session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout: Duration::from_millis(
            if version >= 1 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            }
            .max(0) as u64,
        ),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let Some(r) = actor.join(args).await.ok() else {
        return fail(ResponseError::CoordinatorNotAvailable.code());
    };
    JoinGroupResponse::default()
        .with_error_code(r.error.map_or(NONE, group_code))
        .with_generation_id(r.generation)
        .with_protocol_type(if version >= 7 {
            r.protocol_type.map(s)
        } else {
            None
        })
        .with_protocol_name(r.protocol_name.map(s))
        .with_leader(s(r.leader))
        .with_member_id(s(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(instance.map(s))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}

/// The error code of a Sync, Heartbeat or Leave that found no coordinator: the member is
/// unknown when the store knows nothing of the group; else the client retries.
fn miss_code(miss: GroupMiss) -> i16 {
    match miss {
        GroupMiss::Unknown => ResponseError::UnknownMemberId.code(),
        GroupMiss::Unavailable => ResponseError::CoordinatorNotAvailable.code(),
    }
}

/// Answers SyncGroup.
pub async fn sync(
    ctx: &Ctx,
    req: inkless_protocol::kafka_protocol::messages::sync_group_request::SyncGroupRequest,
    version: i16,
) -> inkless_protocol::kafka_protocol::messages::sync_group_response::SyncGroupResponse {
    use inkless_protocol::kafka_protocol::messages::sync_group_response::SyncGroupResponse;
    if let Some(c) = not_coordinator(ctx, &req.group_id.0) {
        return SyncGroupResponse::default().with_error_code(c);
    }
    let actor = match ctx.node.group(&req.group_id.0, false).await {
        Ok(actor) => actor,
        Err(miss) => return SyncGroupResponse::default().with_error_code(miss_code(miss)),
    };
    let args = SyncArgs {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        generation: req.generation_id,
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let Some(r) = actor.sync(args).await.ok() else {
        return SyncGroupResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code());
    };
    let r2 = SyncGroupResponse::default()
        .with_error_code(r.error.map_or(NONE, group_code))
        .with_assignment(r.assignment);
    if version >= 5 {
        r2.with_protocol_type(r.protocol_type.map(s))
            .with_protocol_name(r.protocol_name.map(s))
    } else {
        r2
    }
}

/// Answers Heartbeat.
pub async fn heartbeat(ctx: &Ctx, req: HeartbeatRequest) -> HeartbeatResponse {
    if let Some(c) = not_coordinator(ctx, &req.group_id.0) {
        return HeartbeatResponse::default().with_error_code(c);
    }
    let c = match ctx.node.group(&req.group_id.0, false).await {
        Err(miss) => miss_code(miss),
        Ok(actor) => {
            let member = MemberRef {
                member_id: req.member_id.to_string(),
                instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
            };
            actor
                .heartbeat(member, req.generation_id)
                .await
                .map_or(ResponseError::CoordinatorNotAvailable.code(), group_outcome)
        }
    };
    HeartbeatResponse::default().with_error_code(c)
}

/// Answers LeaveGroup (one member before v3, a batch after).
pub async fn leave(ctx: &Ctx, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let members: Vec<MemberRef> = if version >= 3 {
        req.members
            .iter()
            .map(|m| MemberRef {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
            })
            .collect()
    } else {
        vec![MemberRef {
            member_id: req.member_id.to_string(),
            instance_id: None,
        }]
    };
    if let Some(c) = not_coordinator(ctx, &req.group_id.0) {
        return LeaveGroupResponse::default().with_error_code(c);
    }
    let codes = match ctx.node.group(&req.group_id.0, false).await {
        Err(miss) => vec![miss_code(miss); members.len()],
        Ok(actor) => {
            let n = members.len();
            match actor.leave(members.clone()).await {
                Ok(outcomes) => outcomes.into_iter().map(group_outcome).collect(),
                Err(_) => vec![ResponseError::CoordinatorNotAvailable.code(); n],
            }
        }
    };
    if version >= 3 {
        let out = members
            .into_iter()
            .zip(codes)
            .map(|(m, c)| {
                MemberResponse::default()
                    .with_member_id(s(m.member_id))
                    .with_group_instance_id(m.instance_id.map(s))
                    .with_error_code(c)
            })
            .collect();
        LeaveGroupResponse::default().with_members(out)
    } else {
        LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(NONE))
    }
}

/// A partition of an offset commit and, when it was refused before reaching the group, why.
type PartitionVerdict = (i32, Option<i16>);

/// One partition's offset as an OffsetCommit or a TxnOffsetCommit gives it.
pub(super) struct OffsetInRequest<'a> {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<&'a str>,
}

/// The offsets to store for the partitions that exist, and each partition's verdict by
/// topic (UNKNOWN_TOPIC_OR_PARTITION for the others).
pub(super) fn plan_offsets<'a>(
    ctx: &Ctx,
    topics: impl Iterator<Item = (&'a TopicName, Vec<OffsetInRequest<'a>>)>,
) -> (
    Vec<CommittedOffset>,
    Vec<(TopicName, Vec<PartitionVerdict>)>,
) {
    let now = inkless_storage::now_ms();
    let mut offsets = Vec::new();
    let mut plan = Vec::new();
    for (name, partitions) in topics {
        let topic = ctx.catalog.by_name(name.0.as_str());
        let mut verdicts = Vec::new();
        for p in partitions {
            match &topic {
                Some(t) if (0..t.record.partitions).contains(&p.partition) => {
                    offsets.push(CommittedOffset {
                        topic_id: t.record.id,
                        partition: p.partition,
                        offset: p.offset,
                        leader_epoch: p.leader_epoch,
                        metadata: p.metadata.unwrap_or_default().to_string(),
                        commit_time_ms: now,
                    });
                    verdicts.push((p.partition, None));
                }
                _ => verdicts.push((
                    p.partition,
                    Some(ResponseError::UnknownTopicOrPartition.code()),
                )),
            }
        }
        plan.push((name.clone(), verdicts));
    }
    (offsets, plan)
}

/// Answers OffsetCommit.
pub async fn offset_commit(ctx: &Ctx, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let topics = req.topics.iter().map(|t| {
        let parts = t.partitions.iter().map(|p| OffsetInRequest {
            partition: p.partition_index,
            offset: p.committed_offset,
            leader_epoch: p.committed_leader_epoch,
            metadata: p.committed_metadata.as_deref(),
        });
        (&t.name, parts.collect())
    });
    let (offsets, plan) = plan_offsets(ctx, topics);
    let group_code = if !group_limits_ok(&req.group_id.0) {
        ResponseError::InvalidGroupId.code()
    } else if let Some(c) = not_coordinator(ctx, &req.group_id.0) {
        c
    } else {
        match ctx
            .node
            .group(&req.group_id.0, req.generation_id_or_member_epoch < 0)
            .await
        {
            Err(GroupMiss::Unknown) => ResponseError::IllegalGeneration.code(),
            Err(GroupMiss::Unavailable) => ResponseError::CoordinatorNotAvailable.code(),
            Ok(actor) => {
                let member = MemberRef {
                    member_id: req.member_id.to_string(),
                    instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
                };
                let generation = req.generation_id_or_member_epoch;
                actor
                    .commit(member, generation, offsets)
                    .await
                    .map_or(ResponseError::CoordinatorNotAvailable.code(), group_outcome)
            }
        }
    };
    let topics = plan
        .into_iter()
        .map(|(name, parts)| {
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, c)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(c.unwrap_or(group_code))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's committed offsets, as (topic name, partition) → offset, optionally filtered.
async fn committed(
    ctx: &Ctx,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>, i16> {
    let stored = ctx
        .node
        .store()
        .fetch_offsets(group_id)
        .await
        .map_err(|e| {
            tracing::warn!(group = %group_id, error = %e, "offset fetch failed");
            ResponseError::KafkaStorageError.code()
        })?;
    let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> = BTreeMap::new();
    match wanted {
        None => {
            for o in stored {
                if let Some(t) = ctx.catalog.by_id(&o.topic_id) {
                    by_topic
                        .entry(t.record.name.clone())
                        .or_default()
                        .push((o.partition, Some(o)));
                }
            }
            Ok(by_topic.into_iter().collect())
        }
        Some(list) => Ok(list
            .into_iter()
            .map(|(name, parts)| {
                let id = ctx
                    .catalog
                    .by_name(&name)
                    .map(|t| t.record.id)
                    .unwrap_or(Uuid::nil());
                let found = parts
                    .into_iter()
                    .map(|p| {
                        (
                            p,
                            stored
                                .iter()
                                .find(|o| o.topic_id == id && o.partition == p)
                                .cloned(),
                        )
                    })
                    .collect();
                (name, found)
            })
            .collect()),
    }
}

/// One group's committed offsets in the v8+ response form. Unknown offsets are -1.
async fn fetch_group(
    ctx: &Ctx,
    group_id: GroupId,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> OffsetFetchResponseGroup {
    let r = OffsetFetchResponseGroup::default().with_group_id(group_id.clone());
    if let Some(c) = not_coordinator(ctx, &group_id.0) {
        return r.with_error_code(c);
    }
    let list = match committed(ctx, &group_id.0, wanted).await {
        Ok(list) => list,
        Err(c) => return r.with_error_code(c),
    };
    let unstable = match require_stable {
        true => match unstable_partitions(ctx, &group_id.0).await {
            Ok(u) => u,
            Err(c) => return r.with_error_code(c),
        },
        false => Vec::new(),
    };
    r.with_topics(
        list.into_iter()
            .map(|(name, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|(p, o)| {
                        if unstable.contains(&(name.clone(), p)) {
                            // KIP-447: a transaction will change it; the client retries.
                            return OffsetFetchResponsePartitions::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_committed_leader_epoch(-1)
                                .with_error_code(ResponseError::UnstableOffsetCommit.code());
                        }
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(p)
                            .with_committed_offset(o.as_ref().map_or(-1, |o| o.offset))
                            .with_committed_leader_epoch(o.as_ref().map_or(-1, |o| o.leader_epoch))
                            .with_metadata(Some(s(o.map(|o| o.metadata).unwrap_or_default())))
                    })
                    .collect();
                OffsetFetchResponseTopics::default()
                    .with_name(TopicName(s(name)))
                    .with_partitions(partitions)
            })
            .collect(),
    )
}

/// The partitions (by topic name) of a group with offsets staged by a running transaction.
async fn unstable_partitions(ctx: &Ctx, group: &str) -> Result<Vec<(String, i32)>, i16> {
    let pending = ctx
        .node
        .store()
        .pending_txn_offsets(group)
        .await
        .map_err(|e| {
            tracing::warn!(group = %group, error = %e, "pending offsets read failed");
            ResponseError::KafkaStorageError.code()
        })?;
    Ok(pending
        .into_iter()
        .filter_map(|(t, p)| ctx.catalog.by_id(&t).map(|t| (t.record.name.clone(), p)))
        .collect())
}

/// Answers OffsetFetch (one group before v8, several after).
pub async fn offset_fetch(ctx: &Ctx, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let names = |ts: Vec<(TopicName, Vec<i32>)>| {
        ts.into_iter().map(|(n, p)| (n.0.to_string(), p)).collect()
    };
    if version >= 8 {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let wanted = g.topics.map(|ts| {
                names(
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect(),
                )
            });
            groups.push(fetch_group(ctx, g.group_id, wanted, req.require_stable).await);
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    // Before v8: one group, in the older response layout.
    let wanted = req.topics.map(|ts| {
        names(
            ts.into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect(),
        )
    });
    let g = fetch_group(
        ctx,
        req.group_id,
        wanted,
        version >= 7 && req.require_stable,
    )
    .await;
    let topics = g
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_committed_offset(p.committed_offset)
                        .with_committed_leader_epoch(p.committed_leader_epoch)
                        .with_metadata(p.metadata)
                        .with_error_code(p.error_code)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    let error = if version >= 2 { g.error_code } else { 0 };
    OffsetFetchResponse::default()
        .with_topics(topics)
        .with_error_code(error)
}

/// Answers ListGroups, with the state (v4+) and type (v5+) filters.
pub async fn list(ctx: &Ctx, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let states: Vec<String> = req.states_filter.iter().map(|x| x.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|x| x.to_lowercase()).collect();
    let mut out = Vec::new();
    for (id, actor) in ctx.node.groups().await {
        let Some(d) = actor.describe().await.ok() else {
            continue;
        };
        if version >= 4 && !states.is_empty() && !states.contains(&d.state_name.to_lowercase()) {
            continue;
        }
        if version >= 5 && !types.is_empty() && !types.contains(&d.group_type.to_string()) {
            continue;
        }
        let mut g = ListedGroup::default()
            .with_group_id(GroupId(s(id)))
            .with_protocol_type(s(d.protocol_type));
        if version >= 4 {
            g = g.with_group_state(s(d.state_name));
        }
        if version >= 5 {
            g = g.with_group_type(s(d.group_type));
        }
        out.push(g);
    }
    ListGroupsResponse::default().with_groups(out)
}

/// Answers DescribeGroups; unknown groups are reported as Dead, as Kafka does.
pub async fn describe(
    ctx: &Ctx,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut out = Vec::with_capacity(req.groups.len());
    for g in req.groups {
        let base = DescribedGroup::default().with_group_id(g.clone());
        let base = if version >= 3 {
            base.with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
        } else {
            base
        };
        if let Some(c) = not_coordinator(ctx, &g.0) {
            out.push(base.with_error_code(c));
            continue;
        }
        let d = match ctx.node.group(&g.0, false).await {
            Ok(actor) => actor.describe().await.ok(),
            Err(GroupMiss::Unknown) => None,
            Err(GroupMiss::Unavailable) => {
                out.push(base.with_error_code(ResponseError::CoordinatorNotAvailable.code()));
                continue;
            }
        };
        let Some(d) = d else {
            out.push(base.with_group_state(s("Dead")));
            continue;
        };
        let members = d
            .members
            .into_iter()
            .map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(s(m.member_id))
                    .with_group_instance_id(if version >= 4 {
                        m.instance_id.map(s)
                    } else {
                        None
                    })
                    .with_client_id(s(m.client_id))
                    .with_client_host(s(m.client_host))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment)
            })
            .collect();
        out.push(
            base.with_group_state(s(d.state_name))
                .with_protocol_type(s(d.protocol_type))
                .with_protocol_data(s(d.protocol_name))
                .with_members(members),
        );
    }
    DescribeGroupsResponse::default().with_groups(out)
}

/// Answers DeleteGroups.
pub async fn delete(ctx: &Ctx, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut out = Vec::with_capacity(req.groups_names.len());
    for g in req.groups_names {
        let c = match ctx.node.group(&g.0, false).await {
            _ if not_coordinator(ctx, &g.0).is_some() => ResponseError::NotCoordinator.code(),
            Err(GroupMiss::Unknown) => ResponseError::GroupIdNotFound.code(),
            Err(GroupMiss::Unavailable) => ResponseError::CoordinatorNotAvailable.code(),
            Ok(actor) => actor
                .delete()
                .await
                .map_or(ResponseError::GroupIdNotFound.code(), group_outcome),
        };
        out.push(
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(c),
        );
    }
    DeleteGroupsResponse::default().with_results(out)
}

/// Answers OffsetDelete: refused for topics the group is consuming.
pub async fn offset_delete(ctx: &Ctx, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    if let Some(c) = not_coordinator(ctx, &req.group_id.0) {
        return OffsetDeleteResponse::default().with_error_code(c);
    }
    let actor = match ctx.node.group(&req.group_id.0, false).await {
        Ok(actor) => actor,
        Err(GroupMiss::Unknown) => {
            return OffsetDeleteResponse::default()
                .with_error_code(ResponseError::GroupIdNotFound.code())
        }
        Err(GroupMiss::Unavailable) => {
            return OffsetDeleteResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }
    };
    // Known topics go to the coordinator in one message; unknown ones are answered here.
    let ids: Vec<Option<Uuid>> = req
        .topics
        .iter()
        .map(|t| ctx.catalog.by_name(&t.name.0).map(|x| x.record.id))
        .collect();
    let mut known = Vec::new();
    for (t, id) in req.topics.iter().zip(&ids) {
        if let Some(topic_id) = *id {
            known.extend(t.partitions.iter().map(|p| OffsetToDelete {
                topic: t.name.0.to_string(),
                topic_id,
                partition: p.partition_index,
            }));
        }
    }
    let Ok(outcomes) = actor.delete_offsets(known).await else {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code());
    };
    let mut outcomes = outcomes.into_iter();
    let topics = req
        .topics
        .into_iter()
        .zip(ids)
        .map(|(t, id)| {
            let known = id.is_some();
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let c = match known.then(|| outcomes.next()).flatten() {
                        Some(outcome) => group_outcome(outcome),
                        None => ResponseError::UnknownTopicOrPartition.code(),
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(c)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(parts)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
