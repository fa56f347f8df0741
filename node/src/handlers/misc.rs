//! ListOffsets, DeleteRecords, InitProducerId, OffsetForLeaderEpoch and DescribeCluster.

use super::{s, Ctx, AUTHORIZED_OPERATIONS_OMITTED};
use inkless_actors::{ReadError, TopicPartition};
use inkless_protocol::batch::{record_timestamps, BatchHeader};
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::delete_records_request::DeleteRecordsRequest;
use inkless_protocol::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use inkless_protocol::kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use inkless_protocol::kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use inkless_protocol::kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use inkless_protocol::kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use inkless_protocol::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use inkless_protocol::kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use inkless_protocol::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use inkless_protocol::kafka_protocol::messages::{BrokerId, ProducerId};
use inkless_storage::metadata::BatchCoordinate;
use std::time::Duration;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

fn tp_of(ctx: &Ctx, topic: &str, partition: i32) -> Option<TopicPartition> {
    ctx.catalog
        .by_name(topic)
        .filter(|t| partition >= 0 && partition < t.record.partitions)
        .map(|t| TopicPartition {
            topic_id: t.record.id,
            partition,
        })
}

async fn list_one(
    ctx: &Ctx,
    tp: TopicPartition,
    timestamp: i64,
    read_committed: bool,
) -> Result<(i64, i64), i16> {
    let offsets = ctx
        .node
        .offsets(&tp, i64::MAX, Duration::ZERO)
        .await
        .map_err(|_| ResponseError::NotLeaderOrFollower.code())?;
    let store = ctx.node.store();
    let storage = |e: inkless_storage::metadata::MetaError| {
        tracing::warn!(?tp, error = %e, "list offsets failed");
        ResponseError::KafkaStorageError.code()
    };
    match timestamp {
        LATEST if read_committed => last_stable_offset(ctx, tp, offsets)
            .await
            .map(|o| (-1, o))
            .map_err(storage),
        LATEST => Ok((-1, offsets.high_watermark)),
        EARLIEST | EARLIEST_LOCAL => Ok((-1, offsets.log_start_offset)),
        MAX_TIMESTAMP => {
            let found = store
                .batch_with_max_timestamp(tp.topic_id, tp.partition)
                .await
                .map_err(storage)?;
            let Some(b) = found else {
                return Ok((-1, -1));
            };
            let max = b.max_timestamp;
            Ok(record_at(ctx, &b, |t| t >= max)
                .await
                .unwrap_or((max, b.last_offset)))
        }
        ts if ts >= 0 => {
            let found = store
                .batch_for_timestamp(tp.topic_id, tp.partition, ts)
                .await
                .map_err(storage)?;
            let Some(b) = found else {
                return Ok((-1, -1));
            };
            let (t, offset) = record_at(ctx, &b, |t| t >= ts)
                .await
                .unwrap_or((b.max_timestamp, b.base_offset));
            Ok((t, offset.max(offsets.log_start_offset)))
        }
        _ => Err(ResponseError::InvalidRequest.code()),
    }
}

/// A partition's last stable offset: published by its actor when it runs here, else the
/// store's oldest open transaction (or the high watermark).
async fn last_stable_offset(
    ctx: &Ctx,
    tp: TopicPartition,
    offsets: inkless_actors::PartitionOffsets,
) -> Result<i64, inkless_storage::metadata::MetaError> {
    if offsets.last_stable_offset >= 0 {
        return Ok(offsets.last_stable_offset);
    }
    let hwm = offsets.high_watermark;
    let (open, _) = ctx
        .node
        .store()
        .txn_read_state(tp.topic_id, tp.partition, hwm, hwm)
        .await?;
    Ok(open.map_or(hwm, |o| o.min(hwm)))
}

/// The first record of row `b` whose timestamp satisfies `pick`, as (timestamp, offset). A
/// merged row holds several batches, each header carrying its real base offset. Records of
/// uncompressed batches are inspected one by one; a compressed batch (whose records would
/// need decompressing client data of unbounded size) answers with its first offset and its
/// largest timestamp. `None` when no batch can be read; callers fall back to the row's bounds.
async fn record_at(
    ctx: &Ctx,
    b: &BatchCoordinate,
    pick: impl Fn(i64) -> bool,
) -> Option<(i64, i64)> {
    let bytes = ctx.node.batch_bytes(b).await.ok()?;
    let first_base = BatchHeader::parse(&bytes).ok()?.base_offset;
    let mut at = 0usize;
    while at < bytes.len() {
        let h = BatchHeader::parse(&bytes[at..]).ok()?;
        let batch = bytes.get(at..at.checked_add(h.total_bytes())?)?;
        let base = b.base_offset + (h.base_offset - first_base);
        match record_timestamps(batch) {
            Some(records) => {
                if let Some((delta, t)) = records.into_iter().find(|&(_, t)| pick(t)) {
                    return Some((t, base + i64::from(delta)));
                }
            }
            None if pick(h.max_timestamp) => return Some((h.max_timestamp, base)),
            None => {}
        }
        at += h.total_bytes();
    }
    None
}

/// Answers ListOffsets; `latest` under read_committed is the last stable offset.
/// Timestamp lookups are exact for uncompressed batches and at batch
/// granularity for compressed ones (the batch's first offset; see docs/configuration.md).
pub async fn list_offsets(ctx: &Ctx, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let read_committed = req.isolation_level == 1;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let r = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_leader_epoch(-1);
            let tp = tp_of(ctx, t.name.0.as_str(), p.partition_index);
            // Leader epochs exist from v4; earlier versions leave the field at its default.
            let r = match tp.filter(|_| version >= 4) {
                Some(tp) => r.with_leader_epoch(super::leader_epoch(ctx, &tp)),
                None => r,
            };
            let fenced =
                tp.and_then(|tp| super::leader_epoch_error(ctx, &tp, p.current_leader_epoch));
            let r = match (tp, fenced) {
                (None, _) => r
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_offset(-1)
                    .with_timestamp(-1),
                (Some(_), Some(c)) => r.with_error_code(c).with_offset(-1).with_timestamp(-1),
                (Some(tp), None) => match list_one(ctx, tp, p.timestamp, read_committed).await {
                    Ok((ts, offset)) => r.with_timestamp(ts).with_offset(offset),
                    Err(c) => r.with_error_code(c).with_offset(-1).with_timestamp(-1),
                },
            };
            parts.push(r);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// Answers DeleteRecords.
pub async fn delete_records(ctx: &Ctx, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let r = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let r = match tp_of(ctx, t.name.0.as_str(), p.partition_index) {
                None => r.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                Some(tp) => match ctx.node.delete_records(&tp, p.offset).await {
                    Ok(low) => r.with_low_watermark(low),
                    Err(ReadError::OffsetOutOfRange { .. }) => {
                        r.with_error_code(ResponseError::OffsetOutOfRange.code())
                    }
                    Err(ReadError::NotOwner) => {
                        r.with_error_code(ResponseError::NotLeaderOrFollower.code())
                    }
                    Err(ReadError::Storage(m)) => {
                        tracing::warn!(?tp, error = %m, "delete records failed");
                        r.with_error_code(ResponseError::KafkaStorageError.code())
                    }
                },
            };
            parts.push(r);
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Answers InitProducerId for idempotent producers (transactional ones are answered by
/// [`super::txn::init_producer_id`]). An existing producer asking for an epoch bump
/// (KIP-360) keeps its id with the next epoch; otherwise a new id is allocated.
pub async fn init_producer_id(ctx: &Ctx, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let r = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return r
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match ctx.node.store().allocate_producer_id().await {
        Ok(id) => r.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "producer id allocation failed");
            r.with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}

/// Answers OffsetForLeaderEpoch. A partition's log never diverges between owners (there are
/// no replicas to truncate), so the end offset of any epoch up to the current one is the
/// high watermark: a client that checks its position after a leader change (KIP-320) never
/// finds a truncation. An epoch above the current one is unknown (-1, -1), as with Kafka.
pub async fn offset_for_leader_epoch(
    ctx: &Ctx,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let r = EpochEndOffset::default().with_partition(p.partition);
            let found = match tp_of(ctx, t.topic.0.as_str(), p.partition) {
                None => Err(ResponseError::UnknownTopicOrPartition.code()),
                Some(tp) => match super::leader_epoch_error(ctx, &tp, p.current_leader_epoch) {
                    Some(c) => Err(c),
                    None => ctx
                        .node
                        .offsets(&tp, i64::MAX, Duration::ZERO)
                        .await
                        .map(|o| (super::leader_epoch(ctx, &tp), o))
                        .map_err(|_| ResponseError::NotLeaderOrFollower.code()),
                },
            };
            parts.push(match found {
                Ok((current, _)) if p.leader_epoch > current => {
                    r.with_leader_epoch(-1).with_end_offset(-1)
                }
                Ok((current, o)) => r
                    .with_leader_epoch(p.leader_epoch.clamp(0, current))
                    .with_end_offset(o.high_watermark),
                Err(c) => r
                    .with_error_code(c)
                    .with_leader_epoch(-1)
                    .with_end_offset(-1),
            });
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(parts),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// Answers DescribeCluster.
pub fn describe_cluster(ctx: &Ctx) -> DescribeClusterResponse {
    let brokers = super::brokers(ctx, &ctx.node.live())
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(s(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(s))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(s(ctx.cluster_id.clone()))
        .with_controller_id(BrokerId(ctx.config.node.id))
        .with_endpoint_type(1)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
        .with_brokers(brokers)
}
