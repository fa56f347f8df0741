//! Fetch: reads committed batches through the cache, writes their offsets into the batch
//! headers, and long-polls (min_bytes / max_wait_ms) on the partitions' high watermarks.
//!
//! The partitions may run on other nodes: coordinates and high watermarks come from the
//! owner through its gateway, bytes from this node's AZ cache shards. A consumer that sends
//! its rack (KIP-392) to a node of another AZ gets `preferred_read_replica`: the node
//! serving the partition in its own AZ.
//!
//! Sessions (KIP-227, [`super::fetch_session`]): an incremental fetch reads its session's
//! partitions and answers only those that changed.

use super::fetch_session::{Wanted, WantedPart};
use super::Ctx;
use super::NONE;
use bytes::{Bytes, BytesMut};
use futures::future::{join_all, select_all, FutureExt};
use inkless_actors::{ObjectRange, PartitionOffsets, ReadError, TopicPartition, MAX_LONG_POLL};
use inkless_protocol::batch::{set_base_offset, stored_base_offset};
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::fetch_request::FetchRequest;
use inkless_protocol::kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, PartitionData,
};
use inkless_protocol::kafka_protocol::messages::{BrokerId, ProducerId, TopicName};
use inkless_storage::metadata::{AbortedTxn, BatchCoordinate, MetaError};
use std::time::Duration;
use uuid::Uuid;

/// Offsets answered for a partition whose offsets are not known here.
const UNKNOWN_OFFSETS: PartitionOffsets = PartitionOffsets {
    log_start_offset: -1,
    high_watermark: -1,
    last_stable_offset: -1,
    last_abort_offset: i64::MAX,
};

struct PartReq {
    index: i32,
    tp: Option<TopicPartition>,
    fetch_offset: i64,
    max_bytes: i32,
    /// The leader epoch the client knows (-1: none).
    current_leader_epoch: i32,
    /// FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH when the client's leader epoch is not
    /// the partition's (KIP-320; set by [`check_leader_epochs`]).
    epoch_error: Option<i16>,
    /// `isolation_level=1`: read below the last stable offset only, with the aborted
    /// transactions of the answer.
    read_committed: bool,
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
        .with_last_stable_offset(stable_or_hwm(offsets))
        .with_log_start_offset(offsets.log_start_offset)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()))
}

/// The last stable offset when known, else the high watermark.
fn stable_or_hwm(o: PartitionOffsets) -> i64 {
    if o.last_stable_offset >= 0 {
        o.last_stable_offset
    } else {
        o.high_watermark
    }
}

/// One partition's answer, its size in bytes, and the high watermark it saw (-1 if none).
type PartAnswer = (PartitionData, usize, i64);

/// True when a consumer of this rack is to be sent to a node of its own AZ (KIP-392).
fn rack_elsewhere(ctx: &Ctx, rack: &str) -> bool {
    if rack.is_empty() {
        return false;
    }
    let live = ctx.node.live();
    rack != live.my_az() && live.candidates().any(|n| n.az == rack)
}

/// The answer of a partition that needs no read: unknown, or running here (`published` are
/// its offsets) with the fetch offset at its high watermark (most partitions of a wide
/// fetch). `None`: it needs a read.
fn answer_at_once(p: &PartReq, published: Option<PartitionOffsets>) -> Option<PartAnswer> {
    if p.tp.is_none() {
        return Some((
            empty(
                p.index,
                ResponseError::UnknownTopicOrPartition.code(),
                UNKNOWN_OFFSETS,
            ),
            0,
            -1,
        ));
    }
    if let Some(c) = p.epoch_error {
        return Some((empty(p.index, c, UNKNOWN_OFFSETS), 0, -1));
    }
    let o = published?;
    let at_end = match p.read_committed {
        true => p.fetch_offset == o.last_stable_offset && p.fetch_offset >= o.log_start_offset,
        false => o.at_end(p.fetch_offset),
    };
    at_end.then(|| (empty(p.index, NONE, o), 0, o.high_watermark))
}

/// Where a partition's answer stands after its coordinates were looked up.
// Lives for one round in a Vec with one entry per partition to read; boxing the large
// variant would cost an allocation for each of them.
#[allow(clippy::large_enum_variant)]
enum Located {
    /// Answered without records (error, redirect, nothing new).
    Done(PartAnswer),
    /// Committed batches to read, with the partition's offsets and, for read_committed,
    /// the aborted transactions they overlap.
    Batches(
        Vec<BatchCoordinate>,
        PartitionOffsets,
        Option<Vec<AbortedTxn>>,
    ),
}

impl Located {
    /// Bytes the batches would add to the response.
    fn bytes(&self) -> usize {
        match self {
            Located::Done(_) => 0,
            Located::Batches(coords, ..) => coords.iter().map(|c| c.byte_len as usize).sum(),
        }
    }
}

/// The answer for a partition whose read result went missing (an internal error: one result
/// is collected per read started, so this is never expected).
fn lost(p: &PartReq) -> PartAnswer {
    (
        empty(
            p.index,
            ResponseError::UnknownServerError.code(),
            UNKNOWN_OFFSETS,
        ),
        0,
        -1,
    )
}

/// How long looking up one partition's batches may take before the partition is answered
/// with KAFKA_STORAGE_ERROR (retriable): the owner or the metadata store not answering must
/// not hold the whole response past the clients' request timeouts (30 s for Java).
const LOCATE_DEADLINE: Duration = Duration::from_secs(10);

/// Looks up the batch coordinates of one partition from its fetch offset (no object bytes),
/// within [`LOCATE_DEADLINE`].
async fn locate(ctx: &Ctx, p: &PartReq, budget: i64, rack: &str) -> Located {
    match tokio::time::timeout(LOCATE_DEADLINE, locate_now(ctx, p, budget, rack)).await {
        Ok(located) => located,
        Err(_) => {
            tracing::warn!(tp = ?p.tp, "fetch: no batch coordinates within {LOCATE_DEADLINE:?}");
            let code = ResponseError::KafkaStorageError.code();
            Located::Done((empty(p.index, code, UNKNOWN_OFFSETS), 0, -1))
        }
    }
}

async fn locate_now(ctx: &Ctx, p: &PartReq, budget: i64, rack: &str) -> Located {
    let unknown = UNKNOWN_OFFSETS;
    let Some(tp) = p.tp else {
        return Located::Done((
            empty(
                p.index,
                ResponseError::UnknownTopicOrPartition.code(),
                unknown,
            ),
            0,
            -1,
        ));
    };
    if let Some(c) = p.epoch_error {
        return Located::Done((empty(p.index, c, unknown), 0, -1));
    }
    let node = &ctx.node;
    // KIP-392: a consumer in another AZ is sent to the node serving the partition there.
    if !rack.is_empty() {
        let live = node.live();
        if rack != live.my_az() && live.candidates().any(|n| n.az == rack) {
            if let Some(replica) = live.zone_leader(&tp, rack).filter(|&r| r != live.me) {
                return Located::Done(match node.offsets(&tp, i64::MAX, Duration::ZERO).await {
                    Ok(o) => (
                        empty(p.index, NONE, o).with_preferred_read_replica(BrokerId(replica)),
                        0,
                        o.high_watermark,
                    ),
                    Err(_) => (
                        empty(p.index, ResponseError::NotLeaderOrFollower.code(), unknown),
                        0,
                        -1,
                    ),
                });
            }
        }
    }
    let max = if budget <= 0 || p.max_bytes <= 0 {
        0
    } else {
        (p.max_bytes as i64).min(budget) as u64
    };
    let read = if max == 0 {
        node.offsets(&tp, i64::MAX, Duration::ZERO)
            .await
            .map(|o| (Vec::new(), o))
    } else {
        node.read(&tp, p.fetch_offset, max).await
    };
    let (coords, offsets) = match read {
        Ok(r) => r,
        Err(e) => {
            let (c, offsets) = match e {
                ReadError::OffsetOutOfRange {
                    log_start_offset,
                    high_watermark,
                } => (
                    ResponseError::OffsetOutOfRange.code(),
                    PartitionOffsets {
                        log_start_offset,
                        high_watermark,
                        last_stable_offset: -1,
                        last_abort_offset: i64::MAX,
                    },
                ),
                ReadError::NotOwner => (ResponseError::NotLeaderOrFollower.code(), unknown),
                ReadError::Storage(m) => {
                    tracing::warn!(?tp, error = %m, "fetch read failed");
                    (ResponseError::KafkaStorageError.code(), unknown)
                }
            };
            return Located::Done((empty(p.index, c, offsets), 0, offsets.high_watermark));
        }
    };
    let (coords, offsets, aborted) = match p.read_committed {
        true => match committed_only(ctx, tp, p.fetch_offset, coords, offsets).await {
            Ok((coords, offsets, aborted)) => (coords, offsets, Some(aborted)),
            Err(e) => {
                tracing::warn!(?tp, error = %e, "read_committed state unavailable");
                let c = ResponseError::KafkaStorageError.code();
                return Located::Done((empty(p.index, c, offsets), 0, offsets.high_watermark));
            }
        },
        false => (coords, offsets, None),
    };
    if coords.is_empty() {
        return Located::Done((empty(p.index, NONE, offsets), 0, offsets.high_watermark));
    }
    Located::Batches(coords, offsets, aborted)
}

/// A read_committed answer: the batches below the last stable offset (asked of the store
/// for a partition running elsewhere) and the aborted transactions they overlap.
async fn committed_only(
    ctx: &Ctx,
    tp: TopicPartition,
    fetch_offset: i64,
    mut coords: Vec<BatchCoordinate>,
    mut offsets: PartitionOffsets,
) -> Result<(Vec<BatchCoordinate>, PartitionOffsets, Vec<AbortedTxn>), MetaError> {
    let store = ctx.node.store();
    if offsets.last_stable_offset < 0 {
        let (open, _) = store
            .txn_read_state(tp.topic_id, tp.partition, fetch_offset, fetch_offset)
            .await?;
        let hwm = offsets.high_watermark;
        offsets.last_stable_offset = open.map_or(hwm, |o| o.min(hwm));
    }
    let lso = offsets.last_stable_offset;
    coords.retain(|c| c.base_offset < lso);
    debug_assert!(coords.iter().all(|c| c.last_offset < lso));
    let Some(last) = coords.last() else {
        return Ok((coords, offsets, Vec::new()));
    };
    if offsets.last_abort_offset < fetch_offset {
        // No abort at or after the fetch offset: nothing to ask the store.
        return Ok((coords, offsets, Vec::new()));
    }
    let (_, aborted) = store
        .txn_read_state(
            tp.topic_id,
            tp.partition,
            fetch_offset,
            last.last_offset + 1,
        )
        .await?;
    Ok((coords, offsets, aborted))
}

/// Bytes `start..end` of one object, holding `batches` consecutive located batches.
struct Span<'a> {
    key: &'a str,
    object_size: u64,
    start: u64,
    end: u64,
    batches: usize,
}

/// A partition's batches of one object are contiguous in it: one read per object run.
fn spans(coords: &[BatchCoordinate]) -> Vec<Span<'_>> {
    let mut spans: Vec<Span<'_>> = Vec::new();
    for c in coords {
        match spans.last_mut() {
            Some(s) if s.key == c.object_key && s.end == c.byte_offset => {
                s.end += c.byte_len as u64;
                s.batches += 1;
            }
            _ => spans.push(Span {
                key: &c.object_key,
                object_size: c.object_size,
                start: c.byte_offset,
                end: c.byte_offset + c.byte_len as u64,
                batches: 1,
            }),
        }
    }
    spans
}

/// Reads the located partitions' batches and answers each: every partition's spans go into
/// one [`inkless_actors::Node::read_ranges`], so a block many partitions share (a wide
/// fetch of one upload's batches) is read once. A partition's answer holds its batches
/// whose bytes arrived by `deadline`, from the first one on: a slow object store shortens
/// answers rather than holding them past the client's timeout.
async fn read_located(
    ctx: &Ctx,
    parts: &[&PartReq],
    located: Vec<Located>,
    deadline: tokio::time::Instant,
) -> Vec<PartAnswer> {
    let mut ranges = Vec::new();
    // Per partition, the number of batches in each of its spans.
    let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(located.len());
    for l in &located {
        let spans = match l {
            Located::Batches(coords, ..) => spans(coords),
            Located::Done(_) => Vec::new(),
        };
        shapes.push(spans.iter().map(|s| s.batches).collect());
        ranges.extend(spans.into_iter().map(|s| ObjectRange {
            key: s.key,
            object_size: s.object_size,
            start: s.start,
            end: s.end,
        }));
    }
    let mut reads = ctx
        .node
        .read_ranges(&ranges, Some(deadline))
        .await
        .into_iter();
    located
        .into_iter()
        .zip(parts)
        .zip(&shapes)
        .map(|((l, p), shape)| {
            let chunks: Vec<_> = reads.by_ref().take(shape.len()).collect();
            match l {
                Located::Done(answer) => answer,
                Located::Batches(coords, offsets, aborted) => {
                    answer_batches(ctx, p, &coords, shape, chunks, offsets, aborted)
                }
            }
        })
        .collect()
}

/// One partition's answer from the reads of its spans (`shape`: batches per span).
fn answer_batches(
    ctx: &Ctx,
    p: &PartReq,
    coords: &[BatchCoordinate],
    shape: &[usize],
    reads: Vec<Option<Result<Bytes, ReadError>>>,
    offsets: PartitionOffsets,
    aborted: Option<Vec<AbortedTxn>>,
) -> PartAnswer {
    let mut chunks = Vec::with_capacity(reads.len());
    let mut failed = None;
    for read in reads {
        match read {
            Some(Ok(bytes)) => chunks.push(bytes),
            Some(Err(e)) => {
                failed = Some(e);
                break;
            }
            None => break,
        }
    }
    if chunks.len() < shape.len() {
        ctx.requests.partial_read(failed.is_some());
    }
    if chunks.is_empty() {
        let code = match failed {
            Some(e) => {
                tracing::warn!(tp = ?p.tp, error = %e, "fetch read failed");
                ResponseError::KafkaStorageError.code()
            }
            None => NONE,
        };
        return (empty(p.index, code, offsets), 0, offsets.high_watermark);
    }
    let read: usize = shape[..chunks.len()].iter().sum();
    let records = stamped(chunks, &coords[..read]);
    let total = records.len();
    let aborted = aborted.map(|list| {
        list.into_iter()
            .map(|a| {
                AbortedTransaction::default()
                    .with_producer_id(ProducerId(a.producer_id))
                    .with_first_offset(a.first_offset)
            })
            .collect()
    });
    let data = empty(p.index, NONE, offsets)
        .with_records(Some(records))
        .with_aborted_transactions(aborted);
    (data, total, offsets.high_watermark)
}

/// The located batches' bytes as one buffer with their base offsets stamped. Bytes that
/// already carry them (a merged object's, ADR 0016) in one read are answered as they are,
/// sharing the cache's memory; others are copied once, which makes the headers writable.
fn stamped(chunks: Vec<Bytes>, coords: &[BatchCoordinate]) -> Bytes {
    if let [one] = chunks.as_slice() {
        let mut at = 0usize;
        let carried = coords.iter().all(|c| {
            let ok = one
                .get(at..)
                .and_then(stored_base_offset)
                .is_some_and(|o| o == c.base_offset);
            at += c.byte_len as usize;
            ok
        });
        if carried && at == one.len() {
            return one.clone();
        }
    }
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let mut records = BytesMut::with_capacity(total);
    for chunk in &chunks {
        records.extend_from_slice(chunk);
    }
    let mut at = 0usize;
    for c in coords {
        if at >= records.len() {
            break;
        }
        set_base_offset(&mut records[at..], c.base_offset);
        at += c.byte_len as usize;
    }
    records.freeze()
}

/// The partitions a request names, in its order.
fn requested(req: &FetchRequest) -> Vec<Wanted> {
    req.topics
        .iter()
        .map(|t| Wanted {
            name: t.topic.clone(),
            id: t.topic_id,
            parts: t
                .partitions
                .iter()
                .map(|p| WantedPart {
                    partition: p.partition,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                })
                .collect(),
        })
        .collect()
}

/// Resolves the wanted partitions against the catalog.
fn resolve(ctx: &Ctx, wanted: &[Wanted], version: i16, read_committed: bool) -> Vec<TopicReq> {
    wanted
        .iter()
        .map(|w| {
            let topic = if version >= 13 {
                ctx.catalog.by_id(&w.id)
            } else {
                ctx.catalog.by_name(w.name.0.as_str())
            };
            let unknown_code = if topic.is_none() && version >= 13 {
                ResponseError::UnknownTopicId.code()
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            };
            let parts = w
                .parts
                .iter()
                .map(|p| {
                    let tp = topic
                        .as_ref()
                        .filter(|t| p.partition >= 0 && p.partition < t.record.partitions)
                        .map(|t| TopicPartition {
                            topic_id: t.record.id,
                            partition: p.partition,
                        });
                    PartReq {
                        index: p.partition,
                        tp,
                        fetch_offset: p.fetch_offset,
                        max_bytes: p.max_bytes,
                        current_leader_epoch: p.current_leader_epoch,
                        epoch_error: None,
                        read_committed,
                    }
                })
                .collect();
            TopicReq {
                name: w.name.clone(),
                id: w.id,
                unknown_code,
                parts,
            }
        })
        .collect()
}

/// Checks the leader epochs the client sent against the partitions running here, under one
/// registry lock for all of them.
fn check_leader_epochs(ctx: &Ctx, topics: &mut [TopicReq]) {
    let mut checked: Vec<&mut PartReq> = topics
        .iter_mut()
        .flat_map(|t| t.parts.iter_mut())
        .filter(|p| p.tp.is_some() && p.current_leader_epoch >= 0)
        .collect();
    if checked.is_empty() {
        return;
    }
    let current = ctx
        .node
        .local_leader_epochs(checked.iter().filter_map(|p| p.tp.as_ref()));
    for (p, current) in checked.iter_mut().zip(current) {
        p.epoch_error = super::epoch_error(p.current_leader_epoch, current);
    }
}

/// What one round of a fetch reads.
struct Round<'a> {
    topics: &'a [TopicReq],
    parts: Vec<&'a PartReq>,
    max_bytes: i64,
    min_bytes: i64,
    rack: &'a str,
    version: i16,
}

/// Answers Fetch, within its fetch session if it has one.
pub async fn handle(ctx: &Ctx, req: FetchRequest, version: i16) -> FetchResponse {
    let (plan, wanted) = match ctx.fetch_sessions.begin(&req, version, requested(&req)) {
        Ok(p) => p,
        Err(code) => return FetchResponse::default().with_error_code(code),
    };
    let response = answer(ctx, &req, version, &wanted).await;
    ctx.fetch_sessions.finish(plan, version, wanted, response)
}

/// Reads the wanted partitions, long-polling as the request asks.
async fn answer(ctx: &Ctx, req: &FetchRequest, version: i16, wanted: &[Wanted]) -> FetchResponse {
    let mut topics = resolve(ctx, wanted, version, req.isolation_level == 1);
    check_leader_epochs(ctx, &mut topics);
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_LONG_POLL);
    let deadline = tokio::time::Instant::now() + wait;
    let round = Round {
        topics: &topics,
        parts: topics.iter().flat_map(|t| t.parts.iter()).collect(),
        max_bytes: if req.max_bytes > 0 {
            req.max_bytes as i64
        } else {
            i64::MAX
        },
        min_bytes: req.min_bytes as i64,
        rack: if version >= 11 {
            req.rack_id.as_str()
        } else {
            ""
        },
        version,
    };
    let nothing_to_wait_for = round.parts.iter().all(|p| p.tp.is_none());
    loop {
        // Subscribed before reading, so a commit during the read still wakes the wait.
        let mut local_changes = ctx.node.local_changes();
        // The partitions running here, with their offsets: answered at once when at their
        // end, and waited for through `local_changes`.
        let published = ctx
            .node
            .local_offsets(round.parts.iter().map(|p| p.tp.as_ref()));
        // Object bytes not read by then are left to a later fetch (`fetch.read_wait_ms`).
        let read_wait = Duration::from_millis(ctx.config.fetch.read_wait_ms);
        let read_deadline = deadline.max(tokio::time::Instant::now() + read_wait);
        let (response, done, seen) = round.read(ctx, &published, read_deadline).await;
        let now = tokio::time::Instant::now();
        if done || nothing_to_wait_for || now >= deadline {
            return response;
        }
        // Long poll until a local partition publishes new offsets, or a remote one's high
        // watermark passes what this round saw, then read again. Local partitions share
        // one wait, so a wide fetch does not register one waiter per partition.
        let left = deadline - now;
        let mut waits: Vec<_> = round
            .parts
            .iter()
            .zip(&seen)
            .zip(&published)
            .filter_map(|((p, hwm), local)| {
                let tp = p.tp?;
                if local.is_some() {
                    return None;
                }
                let above = p.fetch_offset.max(*hwm);
                Some(async move { ctx.node.offsets(&tp, above, left).await.map(|_| ()) }.boxed())
            })
            .collect();
        waits.push(
            async move {
                if local_changes.changed().await.is_err() {
                    // The registry is gone (shutdown): only the deadline ends the wait.
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
            .boxed(),
        );
        let _ = tokio::time::timeout_at(deadline, select_all(waits)).await;
    }
}

impl Round<'_> {
    /// Reads every partition and answers them in request order within the response budget
    /// (the first partition with data always keeps at least one batch); partitions at their
    /// end are answered without a task. Returns the response, whether it is final (min_bytes
    /// reached, an error, or a redirect), and each partition's high watermark as seen.
    async fn read(
        &self,
        ctx: &Ctx,
        published: &[Option<PartitionOffsets>],
        read_deadline: tokio::time::Instant,
    ) -> (FetchResponse, bool, Vec<i64>) {
        let quick: Vec<Option<PartAnswer>> = if rack_elsewhere(ctx, self.rack) {
            self.parts.iter().map(|_| None).collect()
        } else {
            self.parts
                .iter()
                .zip(published)
                .map(|(p, o)| answer_at_once(p, *o))
                .collect()
        };
        // Only the partitions without a quick answer (few, in a wide fetch) are located;
        // quick answers carry no bytes, so the budget runs over these in request order.
        let slow: Vec<&PartReq> = self
            .parts
            .iter()
            .zip(&quick)
            .filter(|(_, q)| q.is_none())
            .map(|(p, _)| *p)
            .collect();
        let lookups = slow
            .iter()
            .map(|p| locate(ctx, p, self.max_bytes, self.rack));
        let mut located: Vec<Located> = join_all(lookups).await;
        self.keep_within_budget(&mut located, &slow);
        let mut read = read_located(ctx, &slow, located, read_deadline)
            .await
            .into_iter();
        let answers = quick
            .into_iter()
            .zip(&self.parts)
            .map(|(q, p)| q.or_else(|| read.next()).unwrap_or_else(|| lost(p)))
            .collect();
        self.assemble(answers)
    }

    /// The partitions may ask for more than the response holds (a catch-up read): the
    /// budget is applied to their coordinates in request order before anything is read, so
    /// no block is fetched (or evicted from the cache) for bytes that would be dropped.
    fn keep_within_budget(&self, located: &mut [Located], parts: &[&PartReq]) {
        let mut budget = self.max_bytes;
        let mut first = true;
        for (l, p) in located.iter_mut().zip(parts) {
            let n = l.bytes() as i64;
            if n == 0 {
                continue;
            }
            if !first && n > budget {
                // Over the response budget: answer this one without records.
                if let Located::Batches(_, offsets, _) = l {
                    let offsets = *offsets;
                    *l = Located::Done((empty(p.index, NONE, offsets), 0, offsets.high_watermark));
                }
                continue;
            }
            first = false;
            budget -= n;
        }
    }

    /// The response from the partitions' answers, in request order; the budget as in
    /// [`Round::read`] (a no-op after `keep_within_budget`).
    fn assemble(&self, answers: Vec<PartAnswer>) -> (FetchResponse, bool, Vec<i64>) {
        let mut answers = answers.into_iter();
        let mut budget = self.max_bytes;
        let mut total = 0usize;
        let mut errored = false;
        let mut redirected = false;
        let mut seen = Vec::with_capacity(self.parts.len());
        let mut responses = Vec::with_capacity(self.topics.len());
        for t in self.topics {
            let mut out = Vec::with_capacity(t.parts.len());
            for p in &t.parts {
                let Some((mut data, mut n, hwm)) = answers.next() else {
                    break;
                };
                if total > 0 && n as i64 > budget {
                    // Over the response budget: answer this one without records.
                    data = data.with_records(Some(Bytes::new()));
                    n = 0;
                }
                budget -= n as i64;
                if p.tp.is_none() {
                    data = data.with_error_code(t.unknown_code);
                }
                errored |= data.error_code != NONE;
                redirected |= data.preferred_read_replica.0 >= 0;
                total += n;
                seen.push(hwm);
                out.push(data);
            }
            let mut r = FetchableTopicResponse::default().with_partitions(out);
            r = if self.version >= 13 {
                r.with_topic_id(t.id)
            } else {
                r.with_topic(t.name.clone())
            };
            responses.push(r);
        }
        let done = total as i64 >= self.min_bytes || errored || redirected;
        (
            FetchResponse::default().with_responses(responses),
            done,
            seen,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coord(base_offset: i64, byte_len: u32) -> BatchCoordinate {
        BatchCoordinate {
            base_offset,
            last_offset: base_offset,
            object_key: "k".into(),
            object_size: 0,
            byte_offset: 0,
            byte_len,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            last_sequence: -1,
        }
    }

    fn batches(bases: &[i64]) -> Bytes {
        let mut b = BytesMut::new();
        for base in bases {
            b.extend_from_slice(&base.to_be_bytes());
            b.extend_from_slice(&[0u8; 56]);
        }
        b.freeze()
    }

    #[test]
    fn bytes_that_carry_their_offsets_are_shared_and_others_stamped() {
        let coords = [coord(10, 64), coord(11, 64)];
        let merged = batches(&[10, 11]);
        let out = stamped(vec![merged.clone()], &coords);
        assert_eq!(
            out.as_ptr(),
            merged.as_ptr(),
            "a merged object's bytes are not copied"
        );

        let produced = batches(&[0, 0]);
        let out = stamped(vec![produced.clone()], &coords);
        assert_ne!(out.as_ptr(), produced.as_ptr());
        assert_eq!(out, batches(&[10, 11]));

        let two_reads = stamped(vec![batches(&[10]), batches(&[11])], &coords);
        assert_eq!(two_reads, batches(&[10, 11]));
    }
}
