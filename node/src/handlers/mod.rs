//! Request handlers: one module per API family. Each turns a decoded request into a
//! response by talking to the catalog and the node's actors.

pub mod api_versions;
pub mod configs;
pub mod consumer_groups;
pub mod elect_leaders;
pub mod fetch;
pub mod fetch_session;
pub mod groups;
pub mod log_dirs;
pub mod metadata;
pub mod misc;
pub mod produce;
pub mod reassignments;
pub mod topic_partitions;
pub mod topics;
pub mod txn;

use crate::catalog::Catalog;
use crate::config::Config;
use inkless_actors::{GroupError, GroupResult, LiveSet, Node};
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::{RequestKind, ResponseKind};
use inkless_protocol::kafka_protocol::protocol::StrBytes;
use inkless_protocol::request::DecodedRequest;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The error code of success.
pub const NONE: i16 = 0;

/// The Kafka error code of a group coordinator's refusal: the one place they are mapped.
pub fn group_code(e: GroupError) -> i16 {
    let kafka = match e {
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::Storage => ResponseError::KafkaStorageError,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::InvalidRequest => ResponseError::InvalidRequest,
        GroupError::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
        GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
        GroupError::UnsupportedAssignor => ResponseError::UnsupportedAssignor,
        GroupError::InvalidRegularExpression => ResponseError::InvalidRegularExpression,
    };
    kafka.code()
}

/// The error code of a group request's outcome (`NONE` when it succeeded).
pub fn group_outcome(outcome: GroupResult) -> i16 {
    outcome.err().map_or(NONE, group_code)
}

/// Everything a handler needs.
pub struct Ctx {
    /// Configuration.
    pub config: Config,
    /// The actors.
    pub node: Node,
    /// Topics.
    pub catalog: Catalog,
    /// Cluster id given to clients.
    pub cluster_id: String,
    /// Host given to clients.
    pub advertised_host: String,
    /// Port given to clients.
    pub advertised_port: i32,
    /// Produce bytes accepted and not yet answered (back-pressure).
    pub produce_budget: Arc<Semaphore>,
    /// Per-API request counters and latencies.
    pub requests: crate::metrics::RequestMetrics,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: fetch_session::FetchSessions,
}

/// Splits `host:port` (an IPv6 host may be in brackets) as Kafka's broker entries need.
pub fn split_host_port(addr: &str) -> Option<(String, i32)> {
    let (h, p) = addr.rsplit_once(':')?;
    let port = p.parse::<u16>().ok()?;
    Some((h.trim_matches(['[', ']']).to_string(), port as i32))
}

/// A broker as clients see it: id, host, port, rack.
pub struct BrokerEntry {
    /// Node id.
    pub id: i32,
    /// Host clients connect to.
    pub host: String,
    /// Port clients connect to.
    pub port: i32,
    /// Availability zone, if any.
    pub rack: Option<String>,
}

/// The brokers clients may use: every live node, nodes whose leases ran out a moment ago
/// (see [`LiveSet::lapsed`]), and this node even while it is not live (so a client that
/// bootstrapped here can learn the others).
pub fn brokers(ctx: &Ctx, live: &LiveSet) -> Vec<BrokerEntry> {
    let mut out: Vec<BrokerEntry> = live
        .nodes
        .iter()
        .chain(&live.lapsed)
        .filter(|n| n.node_id != ctx.config.node.id)
        .filter_map(|n| {
            let (host, port) = split_host_port(&n.kafka_addr)?;
            Some(BrokerEntry {
                id: n.node_id,
                host,
                port,
                rack: (!n.az.is_empty()).then(|| n.az.clone()),
            })
        })
        .collect();
    out.push(BrokerEntry {
        id: ctx.config.node.id,
        host: ctx.advertised_host.clone(),
        port: ctx.advertised_port,
        rack: (!ctx.config.node.rack.is_empty()).then(|| ctx.config.node.rack.clone()),
    });
    out.sort_by_key(|b| b.id);
    out
}

/// NOT_COORDINATOR when another node coordinates `group_id`, or this node's lease does not
/// hold right now (it may have been taken over while this node was cut off or frozen).
pub fn not_coordinator(ctx: &Ctx, group_id: &str) -> Option<i16> {
    let mine = ctx.node.live().owns_group(group_id) && ctx.node.lease_valid();
    (!mine).then_some(ResponseError::NotCoordinator.code())
}

/// In a cluster another node may have just created a topic: re-reads the topics once when
/// one of `names` is unknown here.
pub async fn refresh_if_unknown<'a>(ctx: &Ctx, mut names: impl Iterator<Item = &'a str>) {
    if ctx.config.cluster.enabled && names.any(|n| ctx.catalog.by_name(n).is_none()) {
        if let Err(e) = ctx.catalog.refresh().await {
            tracing::warn!(error = %e, "could not re-read topics");
        }
    }
}

/// The leader epoch clients are told for a partition: its owner epoch, which grows with every
/// claim (a move to another node, or a restart of its actor). Exact for partitions running
/// here; for others, as of this node's last catalog refresh.
pub fn leader_epoch(ctx: &Ctx, tp: &inkless_actors::TopicPartition) -> i32 {
    leader_epochs(ctx, std::slice::from_ref(tp))[0]
}

/// [`leader_epoch`] of many partitions, under one lock of each map for all of them
/// (Metadata reports every partition of the cluster).
pub fn leader_epochs(ctx: &Ctx, tps: &[inkless_actors::TopicPartition]) -> Vec<i32> {
    let local = ctx.node.local_leader_epochs(tps);
    let missing: Vec<_> = tps
        .iter()
        .zip(&local)
        .filter(|(_, e)| e.is_none())
        .map(|(tp, _)| tp)
        .collect();
    let mut stored = ctx.catalog.owner_epochs(missing).into_iter();
    local
        .into_iter()
        .map(|e| {
            let epoch = e.or_else(|| stored.next().flatten()).unwrap_or(0);
            epoch.clamp(0, i32::MAX as i64) as i32
        })
        .collect()
}

/// Kafka's check of a request's `current_leader_epoch` (KIP-320) for a partition running
/// here: an older epoch is FENCED_LEADER_EPOCH (the client's metadata is stale), a newer one
/// UNKNOWN_LEADER_EPOCH (this node's is). -1 skips the check, as do partitions running
/// elsewhere (their owner checks).
pub fn leader_epoch_error(
    ctx: &Ctx,
    tp: &inkless_actors::TopicPartition,
    requested: i32,
) -> Option<i16> {
    if requested < 0 {
        return None;
    }
    epoch_error(requested, ctx.node.local_leader_epoch(tp))
}

/// The check of [`leader_epoch_error`] of a client's epoch (not -1) against `current`, the
/// local epoch if the partition runs here.
pub fn epoch_error(requested: i32, current: Option<i64>) -> Option<i16> {
    let current = current?;
    match (requested as i64).cmp(&current) {
        std::cmp::Ordering::Less => Some(ResponseError::FencedLeaderEpoch.code()),
        std::cmp::Ordering::Greater => Some(ResponseError::UnknownLeaderEpoch.code()),
        std::cmp::Ordering::Equal => None,
    }
}

/// Kafka's "no authorized operations reported" value.
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Turns a `String` into the protocol's string type.
pub fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Answers one request; `None` means no response is sent (Produce with acks=0).
pub async fn handle(ctx: &Ctx, req: DecodedRequest, peer: SocketAddr) -> Option<ResponseKind> {
    let v = req.header.request_api_version;
    let client_id = req
        .header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let r = match req.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(ctx, r, v, &client_id).await)
        }
        RequestKind::Produce(r) => {
            ResponseKind::Produce(produce::submit(ctx, r, v).await.finish().await?)
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, r, v).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(misc::list_offsets(ctx, r, v).await)
        }
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(topics::create(ctx, r, v).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(topics::delete(ctx, r, v).await),
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(topics::create_partitions(ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(ctx, r, v))
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(ctx, r).await)
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(ctx, r).await),
        RequestKind::DescribeTopicPartitions(r) => ResponseKind::DescribeTopicPartitions(
            topic_partitions::handle(ctx, r, &client_id).await,
        ),
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(log_dirs::describe(ctx, r).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(ctx, r, v).await)
        }
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(reassignments::alter(ctx, r, v).await)
        }
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(reassignments::list(ctx, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(misc::delete_records(ctx, r).await)
        }
        RequestKind::InitProducerId(r) if r.transactional_id.is_some() => {
            ResponseKind::InitProducerId(txn::init_producer_id(ctx, r, v).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(misc::init_producer_id(ctx, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions(ctx, r, v).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(txn::add_offsets(ctx, r, v).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end(ctx, r, v).await),
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn::offset_commit(ctx, r, v).await)
        }
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(txn::describe(ctx, r).await)
        }
        RequestKind::ListTransactions(r) => ResponseKind::ListTransactions(txn::list(ctx, r).await),
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(txn::describe_producers(ctx, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(misc::offset_for_leader_epoch(ctx, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(ctx, r, v).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join(ctx, r, v, &client_id, peer).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(ctx, r, v).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(ctx, r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave(ctx, r, v).await),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(groups::offset_commit(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(ctx, r, v).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list(ctx, r, v).await),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe(ctx, r, v).await)
        }
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(groups::delete(ctx, r).await),
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(groups::offset_delete(ctx, r).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
            consumer_groups::heartbeat(ctx, r, &client_id, peer).await,
        ),
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(consumer_groups::describe(ctx, r).await)
        }
        RequestKind::DescribeCluster(_) => {
            ResponseKind::DescribeCluster(misc::describe_cluster(ctx))
        }
        other => {
            // decode_request only admits the APIs above; reaching here is a broker bug.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for decoded request");
            return None;
        }
    };
    Some(r)
}
