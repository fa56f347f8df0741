//! Compactor: key compaction of the partitions of compacted topics (`cleanup.policy`
//! `compact` or `compact,delete`) that a node owns, with Kafka's semantics.
//!
//! Every `interval`, for each such partition running here, the metadata store gives the
//! partition's rows from its first one, as long as their objects were committed at least
//! `min_age` ago (the tail a producer may still retry is never touched) and within
//! `max_run_bytes`; the run also stops before the first row with records younger than
//! `min.compaction.lag.ms`. Rows in objects this compactor wrote (`cmp/`) are clean, the
//! others dirty. The run is compacted when its dirty bytes exceed `min.cleanable.dirty.ratio`
//! of its bytes, when its oldest dirty row is older than `max.compaction.lag.ms`, or when a
//! delete horizon it wrote earlier has passed (tombstones to remove; a partition whose
//! horizons are unknown here, after a start or a move, is looked at once).
//!
//! Compaction reads the run through the node's cache, keeps the latest record of each key
//! at its offset and tombstones until their delete horizon
//! ([`inkless_protocol::compaction`]), writes one `cmp/` object and swaps it in through the
//! partition's actor exactly as the merger does ([`MetadataStore::rewrite_batches`]: refused
//! if anything under it changed). The new rows cover the run's offsets: the high watermark
//! and the log start do not move, and consumers see increasing offsets with gaps.
//!
//! [`MetadataStore::rewrite_batches`]: inkless_storage::metadata::MetadataStore::rewrite_batches

use super::rewrite::{self, RewriteError};
use super::LifecycleStats;
use crate::group::consumer::SharedTopicLookup;
use crate::partition::registry::PartitionRegistry;
use crate::read::cache::{self, CacheMsg};
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::tree::registry::ActorSlot;
use crate::TopicPartition;
use bytes::{Bytes, BytesMut};
use inkless_protocol::batch::{set_base_offset, BatchHeader};
use inkless_protocol::compaction::{self, CleanedBatch, CompactOptions};
use inkless_storage::blob::BlobStore;
use inkless_storage::metadata::{BatchCoordinate, SharedMetadataStore};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Key prefix of compacted objects: rows in them are clean.
pub const COMPACTED_PREFIX: &str = "cmp/";

/// A compacted topic's settings (Kafka's topic configs of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionPolicy {
    /// `min.cleanable.dirty.ratio`: compact when dirty bytes are more than this share.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty records older than this are compacted whatever the
    /// ratio.
    pub max_lag_ms: i64,
    /// `delete.retention.ms`: how long tombstones live after their first compaction.
    pub delete_retention_ms: i64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            min_cleanable_dirty_ratio: 0.5,
            min_lag_ms: 0,
            max_lag_ms: i64::MAX,
            delete_retention_ms: 86_400_000,
        }
    }
}

/// What the compactor does and how fast.
#[derive(Debug, Clone)]
pub struct CompactConfig {
    /// Compact at all.
    pub enabled: bool,
    /// Time between passes.
    pub interval: Duration,
    /// Rows whose object was committed more recently are left alone (a producer may still
    /// retry them).
    pub min_age: Duration,
    /// Largest run compacted at once (held in memory while it is compacted).
    pub max_run_bytes: u64,
    /// Adjacent batches become one row up to this size.
    pub max_row_bytes: u64,
    /// Pace: bytes read per second at most.
    pub max_bytes_per_second: u64,
}

impl Default for CompactConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(15),
            min_age: Duration::from_secs(30),
            max_run_bytes: 128 * 1024 * 1024,
            max_row_bytes: 1024 * 1024,
            max_bytes_per_second: 32 * 1024 * 1024,
        }
    }
}

/// Messages of the [`Compactor`].
#[derive(Debug)]
pub enum CompactorMsg {
    /// Run a pass now (sent to itself every `interval`).
    Tick,
}

// Local only: never sent to another node.
impl ractor::Message for CompactorMsg {}

/// What the [`Compactor`] works with.
#[derive(Debug, Clone)]
pub struct CompactorArgs {
    /// Its mailbox count.
    pub queued: QueueCount,
    /// The metadata store.
    pub store: SharedMetadataStore,
    /// The object store (for the compacted objects).
    pub blob: BlobStore,
    /// The node's cache (for reading the runs).
    pub cache: Arc<ActorSlot<CacheMsg>>,
    /// The partitions running here.
    pub partitions: PartitionRegistry,
    /// Topic settings.
    pub topics: SharedTopicLookup,
    /// What to compact and how fast.
    pub config: CompactConfig,
    /// Counters.
    pub stats: Arc<LifecycleStats>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct Compactor;

/// State of the compactor.
#[derive(Debug)]
pub struct CompactorState {
    me: Mailbox<CompactorMsg>,
    args: CompactorArgs,
    /// Per partition compacted here, the earliest delete horizon still holding tombstones
    /// (`None`: none).
    horizons: HashMap<TopicPartition, Option<i64>>,
}

/// Why a compaction failed (the next pass retries).
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Reading the run failed.
    #[error("reading the run: {0}")]
    Read(String),
    /// The run's records could not be compacted.
    #[error("compacting: {0}")]
    Records(#[from] inkless_protocol::records::RecordError),
    /// Writing the new object or swapping it in failed (a swap's outcome is then unknown:
    /// the orphan sweep decides).
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
}

/// A run chosen for compaction.
struct Candidate {
    run: Vec<BatchCoordinate>,
    bytes: u64,
}

impl CompactorState {
    async fn pass(&mut self) {
        let partitions = self.args.partitions.partitions();
        self.horizons.retain(|tp, _| partitions.contains(tp));
        for tp in partitions {
            let Some(policy) = self.args.topics.compaction(&tp.topic_id) else {
                continue;
            };
            let Some(c) = self.candidate(&tp, &policy).await else {
                continue;
            };
            let started = Instant::now();
            match self.compact(&tp, c.run, &policy).await {
                Ok(horizon) => {
                    self.horizons.insert(tp, horizon);
                }
                Err(e) => {
                    tracing::warn!(?tp, error = %e, "compaction failed; the next pass retries")
                }
            }
            let rate = self.args.config.max_bytes_per_second.max(1) as f64;
            let budget = Duration::from_secs_f64(c.bytes as f64 / rate);
            tokio::time::sleep(budget.saturating_sub(started.elapsed())).await;
        }
    }

    /// The run of `tp` to compact now, if it is due.
    async fn candidate(&self, tp: &TopicPartition, p: &CompactionPolicy) -> Option<Candidate> {
        let c = &self.args.config;
        let key = (tp.topic_id, tp.partition);
        let min_age = c.min_age.as_millis() as i64;
        let mut run = self
            .args
            .store
            .merge_candidates(key, "", min_age, c.max_run_bytes)
            .await
            .ok()?;
        // Never past the last stable offset (as Kafka's cleaner).
        let lso = self
            .args
            .partitions
            .get(tp)?
            .offsets
            .borrow()
            .last_stable_offset;
        run.retain(|b| b.last_offset < lso);
        let now = inkless_storage::now_ms();
        if p.min_lag_ms > 0 {
            let young = now.saturating_sub(p.min_lag_ms);
            if let Some(at) = run.iter().position(|b| b.max_timestamp > young) {
                run.truncate(at);
            }
        }
        let bytes: u64 = run.iter().map(|b| u64::from(b.byte_len)).sum();
        let dirty: Vec<&BatchCoordinate> = run
            .iter()
            .filter(|b| !b.object_key.starts_with(COMPACTED_PREFIX))
            .collect();
        let dirty_bytes: u64 = dirty.iter().map(|b| u64::from(b.byte_len)).sum();
        let ratio = dirty_bytes as f64 / bytes.max(1) as f64;
        let overdue = dirty
            .iter()
            .map(|b| b.max_timestamp)
            .min()
            .is_some_and(|oldest| oldest < now.saturating_sub(p.max_lag_ms));
        let horizon = match self.horizons.get(tp) {
            Some(h) => h.is_some_and(|h| h <= now),
            None => dirty.len() < run.len(), // unknown here: look once at what was compacted
        };
        let due = (dirty_bytes > 0 && (ratio > p.min_cleanable_dirty_ratio || overdue)) || horizon;
        (due && !run.is_empty()).then_some(Candidate { run, bytes })
    }

    /// Compacts one run and swaps it in; returns the earliest delete horizon left.
    async fn compact(
        &self,
        tp: &TopicPartition,
        run: Vec<BatchCoordinate>,
        p: &CompactionPolicy,
    ) -> Result<Option<i64>, CompactError> {
        let batches = self.read(&run).await?;
        let opts = CompactOptions {
            now_ms: inkless_storage::now_ms(),
            delete_retention_ms: p.delete_retention_ms,
        };
        let cleaned = tokio::task::spawn_blocking(move || compaction::compact(&batches, opts))
            .await
            .map_err(|e| CompactError::Read(e.to_string()))??;
        if !cleaned.changed {
            return Ok(cleaned.next_horizon);
        }
        let stats = &self.args.stats;
        LifecycleStats::add(
            &stats.compacted_records_removed,
            cleaned.records_in - cleaned.records_out,
        );
        if self.swap(tp, &run, &cleaned.batches).await? {
            Ok(cleaned.next_horizon)
        } else {
            // Refused: the horizons written are not stored; look again next pass.
            Ok(Some(i64::MIN))
        }
    }

    /// Every batch of the run with its real base offset.
    async fn read(&self, run: &[BatchCoordinate]) -> Result<Vec<Bytes>, CompactError> {
        let mut out = Vec::new();
        for b in run {
            let end = b.byte_offset + u64::from(b.byte_len);
            let range = b.byte_offset..end;
            let row = cache::read_through(&self.args.cache, &b.object_key, b.object_size, range)
                .await
                .map_err(|e| CompactError::Read(e.to_string()))?;
            if row.len() != b.byte_len as usize {
                return Err(CompactError::Read(format!(
                    "short read of {}",
                    b.object_key
                )));
            }
            split_row(row, b, &mut out)?;
        }
        Ok(out)
    }

    /// Writes the cleaned batches into a new object and swaps it in for the run; false when
    /// the swap was refused (the rows changed or the partition moved).
    async fn swap(
        &self,
        tp: &TopicPartition,
        run: &[BatchCoordinate],
        cleaned: &[CleanedBatch],
    ) -> Result<bool, CompactError> {
        let (bytes, rows) = layout(cleaned, self.args.config.max_row_bytes);
        let a = &self.args;
        let swapped = rewrite::swap_in(
            &a.blob,
            &a.partitions,
            tp,
            COMPACTED_PREFIX,
            run,
            bytes,
            rows,
        )
        .await?;
        let stats = &a.stats;
        match swapped {
            Some(size) => {
                LifecycleStats::add(&stats.compactions, 1);
                let read: u64 = run.iter().map(|b| u64::from(b.byte_len)).sum();
                LifecycleStats::add(&stats.compacted_bytes_read, read);
                LifecycleStats::add(&stats.compacted_bytes_written, size);
                Ok(true)
            }
            None => {
                LifecycleStats::add(&stats.compaction_conflicts, 1);
                Ok(false)
            }
        }
    }
}

/// Splits a row into its batches, stamping each one's real base offset (the first is the
/// row's; each next one starts after the last offset of the one before).
fn split_row(row: Bytes, b: &BatchCoordinate, out: &mut Vec<Bytes>) -> Result<(), CompactError> {
    let bad = |why: &str| {
        CompactError::Read(format!(
            "row at {} of {}: {why}",
            b.base_offset, b.object_key
        ))
    };
    let mut row = BytesMut::from(&row[..]);
    let (mut at, mut base) = (0usize, b.base_offset);
    while at < row.len() {
        let h = BatchHeader::parse(&row[at..]).map_err(|e| bad(&e.to_string()))?;
        let end = at + h.total_bytes();
        if end > row.len() {
            return Err(bad("truncated batch"));
        }
        set_base_offset(&mut row[at..], base);
        base += i64::from(h.last_offset_delta) + 1;
        at = end;
    }
    if base != b.last_offset + 1 {
        return Err(bad("its batches do not cover its offsets"));
    }
    let row = row.freeze();
    let mut at = 0usize;
    while at < row.len() {
        let len = BatchHeader::parse(&row[at..])
            .map_err(|e| bad(&e.to_string()))?
            .total_bytes();
        out.push(row.slice(at..at + len));
        at += len;
    }
    Ok(())
}

/// The new object's bytes and its rows (adjacent batches coalesced up to `max_row_bytes`;
/// object key and size left for the caller).
fn layout(cleaned: &[CleanedBatch], max_row_bytes: u64) -> (Bytes, Vec<BatchCoordinate>) {
    let mut out = BytesMut::new();
    let mut rows: Vec<BatchCoordinate> = Vec::new();
    for b in cleaned {
        let row = BatchCoordinate {
            base_offset: b.base_offset,
            last_offset: b.last_offset,
            object_key: String::new(),
            object_size: 0,
            byte_offset: out.len() as u64,
            byte_len: b.bytes.len() as u32,
            max_timestamp: b.max_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            last_sequence: -1,
        };
        out.extend_from_slice(&b.bytes);
        rewrite::push_row(&mut rows, row, max_row_bytes);
    }
    (out.freeze(), rows)
}

impl Actor for Compactor {
    type Msg = CompactorMsg;
    type State = CompactorState;
    type Arguments = CompactorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: CompactorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let me = Mailbox::new(myself, args.queued.clone());
        if args.config.enabled {
            me.post_after(args.config.interval, || CompactorMsg::Tick);
        }
        Ok(CompactorState {
            me,
            args,
            horizons: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.me.taken();
        match msg {
            CompactorMsg::Tick => {
                state.pass().await;
                let interval = state.args.config.interval;
                state.me.post_after(interval, || CompactorMsg::Tick);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(base: i64, last: i64, len: usize) -> CleanedBatch {
        CleanedBatch {
            bytes: Bytes::from(vec![0u8; len]),
            base_offset: base,
            last_offset: last,
            max_timestamp: base * 10,
        }
    }

    #[test]
    fn layout_coalesces_adjacent_batches_into_rows() {
        let batches = [cleaned(0, 4, 100), cleaned(5, 9, 100), cleaned(10, 10, 100)];
        let (bytes, rows) = layout(&batches, 200);
        assert_eq!(bytes.len(), 300);
        let spans: Vec<_> = rows
            .iter()
            .map(|r| (r.base_offset, r.last_offset, r.byte_offset, r.byte_len))
            .collect();
        assert_eq!(spans, vec![(0, 9, 0, 200), (10, 10, 200, 100)]);
        assert_eq!(rows[0].max_timestamp, 50);
    }
}
