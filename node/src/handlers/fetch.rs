//! Fetch: reads committed batches through the cache, writes their offsets into the batch
//! headers, and long-polls (min_bytes / max_wait_ms) on the partitions' high watermarks.
//!
//! Sessions (KIP-227): every answer carries session id 0, which tells clients that no
//! session was created, so each fetch is a full, sessionless fetch; an incremental fetch on
//! an unknown session gets FETCH_SESSION_ID_NOT_FOUND and the client starts over.

use super::{code, Ctx};
use bytes::{Bytes, BytesMut};
use futures::future::{join_all, select_all, try_join_all, FutureExt};
use inkless_actors::partition::PartitionOffsets;
use inkless_actors::{ReadError, TopicPartition};
use inkless_protocol::batch::set_base_offset;
use inkless_protocol::kafka_protocol::messages::fetch_request::FetchRequest;
use inkless_protocol::kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use inkless_protocol::kafka_protocol::messages::{BrokerId, TopicName};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Longest long-poll, whatever the request asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

struct PartReq {
    index: i32,
    tp: Option<TopicPartition>,
    fetch_offset: i64,
    max_bytes: i32,
}

struct TopicReq {
    name: TopicName,
    id: Uuid,
    unknown_code: i16,
    parts: Vec<PartReq>,
}

fn empty(index: i32, error: i16, offsets: PartitionOffsets) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error)
        .with_high_watermark(offsets.high_watermark)
        .with_last_stable_offset(offsets.high_watermark)
        .with_log_start_offset(offsets.log_start_offset)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()))
}

async fn read_partition(ctx: &Ctx, p: &PartReq, budget: i64) -> (PartitionData, usize) {
    let unknown = PartitionOffsets {
        log_start_offset: -1,
        high_watermark: -1,
    };
    let Some(tp) = p.tp else {
        return (empty(p.index, code::UNKNOWN_TOPIC_OR_PARTITION, unknown), 0);
    };
    let Some(handle) = ctx.node.partition(&tp) else {
        return (empty(p.index, code::NOT_LEADER_OR_FOLLOWER, unknown), 0);
    };
    if budget <= 0 || p.max_bytes <= 0 {
        return (empty(p.index, code::NONE, *handle.offsets.borrow()), 0);
    }
    let max = (p.max_bytes as i64).min(budget) as u64;
    let coords = match ctx.node.read(&tp, p.fetch_offset, max).await {
        Ok(c) => c,
        Err(e) => {
            let offsets = *handle.offsets.borrow();
            let c = match e {
                ReadError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
                ReadError::NotOwner => code::NOT_LEADER_OR_FOLLOWER,
                ReadError::Storage(m) => {
                    tracing::warn!(?tp, error = %m, "fetch read failed");
                    code::KAFKA_STORAGE_ERROR
                }
            };
            return (empty(p.index, c, offsets), 0);
        }
    };
    let reads = coords.iter().map(|c| ctx.node.batch_bytes(c));
    let batches = match try_join_all(reads).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(?tp, error = %e, "fetch read failed");
            return (
                empty(p.index, code::KAFKA_STORAGE_ERROR, *handle.offsets.borrow()),
                0,
            );
        }
    };
    let total: usize = batches.iter().map(Bytes::len).sum();
    let mut records = BytesMut::with_capacity(total);
    for (c, b) in coords.iter().zip(batches) {
        let at = records.len();
        records.extend_from_slice(&b);
        set_base_offset(&mut records[at..], c.base_offset);
    }
    let data =
        empty(p.index, code::NONE, *handle.offsets.borrow()).with_records(Some(records.freeze()));
    (data, total)
}

fn resolve(ctx: &Ctx, req: &FetchRequest, version: i16) -> Vec<TopicReq> {
    req.topics
        .iter()
        .map(|t| {
            let topic = if version >= 13 {
                ctx.catalog.by_id(&t.topic_id)
            } else {
                ctx.catalog.by_name(t.topic.0.as_str())
            };
            let unknown_code = if version >= 13 {
                code::UNKNOWN_TOPIC_ID
            } else {
                code::UNKNOWN_TOPIC_OR_PARTITION
            };
            let parts = t
                .partitions
                .iter()
                .map(|p| PartReq {
                    index: p.partition,
                    tp: topic
                        .as_ref()
                        .filter(|tt| p.partition >= 0 && p.partition < tt.record.partitions)
                        .map(|tt| TopicPartition {
                            topic_id: tt.record.id,
                            partition: p.partition,
                        }),
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                })
                .collect();
            TopicReq {
                name: t.topic.clone(),
                id: t.topic_id,
                unknown_code: if topic.is_some() {
                    code::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    unknown_code
                },
                parts,
            }
        })
        .collect()
}

/// Answers Fetch.
pub async fn handle(ctx: &Ctx, req: FetchRequest, version: i16) -> FetchResponse {
    if req.session_id != 0 {
        return FetchResponse::default().with_error_code(code::FETCH_SESSION_ID_NOT_FOUND);
    }
    let topics = resolve(ctx, &req, version);
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + wait;
    let mut watchers: Vec<watch::Receiver<PartitionOffsets>> = topics
        .iter()
        .flat_map(|t| t.parts.iter())
        .filter_map(|p| p.tp.and_then(|tp| ctx.node.partition(&tp)))
        .map(|h| h.offsets)
        .collect();
    loop {
        for w in &mut watchers {
            w.borrow_and_update();
        }
        let max_bytes = if req.max_bytes > 0 {
            req.max_bytes as i64
        } else {
            i64::MAX
        };
        // Read every partition at once, then keep them in request order within the
        // response budget (the first partition with data always keeps at least one batch).
        let reads = topics
            .iter()
            .flat_map(|t| t.parts.iter())
            .map(|p| read_partition(ctx, p, max_bytes));
        let mut read = join_all(reads).await.into_iter();
        let mut budget = max_bytes;
        let mut total = 0usize;
        let mut errored = false;
        let mut responses = Vec::with_capacity(topics.len());
        for t in &topics {
            let mut parts = Vec::with_capacity(t.parts.len());
            for p in &t.parts {
                let Some((mut data, mut n)) = read.next() else {
                    break;
                };
                if total > 0 && n as i64 > budget {
                    // Over the response budget: answer this one without records.
                    data = data.with_records(Some(Bytes::new()));
                    n = 0;
                }
                if p.tp.is_none() {
                    data = data.with_error_code(t.unknown_code);
                }
                errored |= data.error_code != code::NONE;
                budget -= n as i64;
                total += n;
                parts.push(data);
            }
            let mut r = FetchableTopicResponse::default().with_partitions(parts);
            r = if version >= 13 {
                r.with_topic_id(t.id)
            } else {
                r.with_topic(t.name.clone())
            };
            responses.push(r);
        }
        let done = total as i64 >= req.min_bytes as i64
            || errored
            || watchers.is_empty()
            || tokio::time::Instant::now() >= deadline;
        if done {
            return FetchResponse::default().with_responses(responses);
        }
        let changes = watchers.iter_mut().map(|w| w.changed().boxed());
        if tokio::time::timeout_at(deadline, select_all(changes))
            .await
            .is_err()
        {
            // Deadline reached: one last read answers with whatever arrived.
            watchers.clear();
        }
    }
}
