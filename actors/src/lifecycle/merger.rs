//! Merger: rewrites the small produce objects of the partitions a node owns into large
//! per-partition objects, so that a read from far back costs one GET per cache block
//! instead of one per small object, and many batch rows become few.
//!
//! Every `interval`, for each partition running here, the metadata store gives the oldest
//! run of its batches still in produce objects (`wal/`), committed at least `min_age` ago,
//! up to `target_object_bytes`. A run is merged when it reaches that size, or when its
//! oldest batch is older than `max_delay` (so quiet partitions are merged too). The merger
//! reads the run's bytes through the node's cache (one GET per block of each source object
//! however many partitions share it), stamps each batch's real base offset into it, writes
//! one `seg/` object, and hands the swap to the partition's actor, which commits it under
//! its owner epoch ([`MetadataStore::rewrite_batches`]: refused if anything under it
//! changed) and drops the coordinates it cached for the run. Adjacent batches become one row
//! of up to `max_row_bytes`. Readers holding old coordinates still find the old objects:
//! they are deleted only after the collector's grace period. The merger is paced to
//! `max_bytes_per_second` and to `max_request_share` of the node's object-store requests
//! ([`RequestShare`]).
//!
//! Merging is placed like partitions: only a partition's owner merges it, so two nodes never
//! rewrite the same rows, and a merge that races a move is fenced.
//!
//! [`MetadataStore::rewrite_batches`]: inkless_storage::metadata::MetadataStore::rewrite_batches

use super::request_share::RequestShare;
use super::{rewrite, LifecycleStats};
use crate::partition::registry::PartitionRegistry;
use crate::read::cache::{self, CacheMsg};
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::tree::registry::ActorSlot;
use crate::TopicPartition;
use bytes::{Bytes, BytesMut};
use inkless_protocol::batch::set_base_offset;
use inkless_storage::blob::BlobStore;
use inkless_storage::metadata::{BatchCoordinate, SharedMetadataStore};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Key prefix of the objects produce writes (the merger's input).
pub const PRODUCED_PREFIX: &str = "wal/";
/// Key prefix of merged objects.
pub const MERGED_PREFIX: &str = "seg/";

/// What merging does and how fast.
#[derive(Debug, Clone)]
pub struct MergeConfig {
    /// Merge at all.
    pub enabled: bool,
    /// Time between passes.
    pub interval: Duration,
    /// Batches committed more recently are left alone (a producer may still retry them).
    pub min_age: Duration,
    /// A run shorter than `target_object_bytes` is merged once its oldest batch is this old.
    pub max_delay: Duration,
    /// Size of the objects merging writes.
    pub target_object_bytes: u64,
    /// Adjacent batches become one row up to this size.
    pub max_row_bytes: u64,
    /// Pace: bytes rewritten per second at most.
    pub max_bytes_per_second: u64,
    /// Pace: share (0 to 1) of the node's object-store GETs and PUTs merging may take.
    pub max_request_share: f64,
    /// ... but at least this many requests per second (an idle node merges too).
    pub min_requests_per_second: u32,
}

impl Default for MergeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(30),
            min_age: Duration::from_secs(180),
            max_delay: Duration::from_secs(600),
            target_object_bytes: 16 * 1024 * 1024,
            max_row_bytes: 1024 * 1024,
            max_bytes_per_second: 64 * 1024 * 1024,
            max_request_share: 0.3,
            min_requests_per_second: 10,
        }
    }
}

/// Messages of the [`Merger`].
#[derive(Debug)]
pub enum MergerMsg {
    /// Run a pass now (sent to itself every `interval`).
    Tick,
}

// Local only: never sent to another node.
impl ractor::Message for MergerMsg {}

/// What the [`Merger`] works with.
#[derive(Debug, Clone)]
pub struct MergerArgs {
    /// Its mailbox count.
    pub queued: QueueCount,
    /// The metadata store.
    pub store: SharedMetadataStore,
    /// The object store (for the merged objects).
    pub blob: BlobStore,
    /// The node's cache (for reading the runs).
    pub cache: Arc<ActorSlot<CacheMsg>>,
    /// The partitions running here.
    pub partitions: PartitionRegistry,
    /// What to merge and how fast.
    pub config: MergeConfig,
    /// Counters.
    pub stats: Arc<LifecycleStats>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct Merger;

/// State of the merger.
#[derive(Debug)]
pub struct MergerState {
    me: Mailbox<MergerMsg>,
    args: MergerArgs,
    requests: RequestShare,
}

impl MergerState {
    /// Rounds over every partition running here, one run each per round, until none has a
    /// run to merge (round robin: partitions' oldest runs cover about the same objects, which
    /// the cache then holds for all of them).
    async fn pass(&mut self) {
        loop {
            let mut merged = 0;
            for tp in self.args.partitions.partitions() {
                self.requests.wait_turn().await;
                let Some(run) = self.run_of(&tp).await else {
                    continue;
                };
                let started = Instant::now();
                let gets_before = self.requests.gets_so_far();
                let bytes: u64 = run.iter().map(|b| u64::from(b.byte_len)).sum();
                let result = self.merge(&tp, run).await;
                self.requests.charge(gets_before, 1);
                match result {
                    Ok(true) => merged += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(?tp, error = %e, "merge failed; the next pass retries")
                    }
                }
                let rate = self.args.config.max_bytes_per_second.max(1) as f64;
                let budget = Duration::from_secs_f64(bytes as f64 / rate);
                tokio::time::sleep(budget.saturating_sub(started.elapsed())).await;
            }
            if merged == 0 {
                return;
            }
        }
    }

    /// The run of `tp` to merge now, if any.
    async fn run_of(&self, tp: &TopicPartition) -> Option<Vec<BatchCoordinate>> {
        let c = &self.args.config;
        let key = (tp.topic_id, tp.partition);
        let ms = |d: Duration| d.as_millis() as i64;
        let store = &self.args.store;
        let mut run = store
            .merge_candidates(key, PRODUCED_PREFIX, ms(c.min_age), c.target_object_bytes)
            .await
            .ok()?;
        // Never past the last stable offset: a merged row must not hold records of an
        // open transaction next to readable ones (read_committed reads whole rows).
        let lso = self
            .args
            .partitions
            .get(tp)?
            .offsets
            .borrow()
            .last_stable_offset;
        run.retain(|b| b.last_offset < lso);
        if run.is_empty() {
            return None;
        }
        let bytes: u64 = run.iter().map(|b| u64::from(b.byte_len)).sum();
        if bytes >= c.target_object_bytes / 2 {
            return Some(run);
        }
        // Short: merged only when its oldest part has waited long enough.
        let overdue = store
            .merge_candidates(key, PRODUCED_PREFIX, ms(c.max_delay), c.target_object_bytes)
            .await
            .ok()?;
        (!overdue.is_empty()).then_some(run)
    }

    /// Rewrites one run into a new object and swaps it in through the partition's actor;
    /// false if the swap was refused.
    async fn merge(&self, tp: &TopicPartition, run: Vec<BatchCoordinate>) -> Result<bool, String> {
        let (bytes, rows) = self.rewrite(&run).await?;
        let a = &self.args;
        let swapped =
            rewrite::swap_in(&a.blob, &a.partitions, tp, MERGED_PREFIX, &run, bytes, rows)
                .await
                .map_err(|e| e.to_string())?;
        let stats = &a.stats;
        match swapped {
            Some(size) => {
                LifecycleStats::add(&stats.merges, 1);
                LifecycleStats::add(&stats.merged_bytes, size);
                LifecycleStats::add(&stats.merged_rows, run.len() as u64);
                Ok(true)
            }
            None => {
                LifecycleStats::add(&stats.merge_conflicts, 1);
                Ok(false)
            }
        }
    }

    /// The bytes of a run with their real base offsets, and its new rows (adjacent batches
    /// coalesced up to `max_row_bytes`; object key and size left for the caller).
    async fn rewrite(
        &self,
        run: &[BatchCoordinate],
    ) -> Result<(Bytes, Vec<BatchCoordinate>), String> {
        let mut out = BytesMut::new();
        let mut rows: Vec<BatchCoordinate> = Vec::new();
        for b in run {
            let end = b.byte_offset + u64::from(b.byte_len);
            let batch = cache::read_through(
                &self.args.cache,
                &b.object_key,
                b.object_size,
                b.byte_offset..end,
            )
            .await
            .map_err(|e| e.to_string())?;
            if batch.len() != b.byte_len as usize {
                return Err(format!(
                    "short read of {} at {}",
                    b.object_key, b.byte_offset
                ));
            }
            let at = out.len() as u64;
            out.extend_from_slice(&batch);
            set_base_offset(&mut out[at as usize..], b.base_offset);
            let row = BatchCoordinate {
                byte_offset: at,
                ..b.clone()
            };
            rewrite::push_row(&mut rows, row, self.args.config.max_row_bytes);
        }
        Ok((out.freeze(), rows))
    }
}

impl Actor for Merger {
    type Msg = MergerMsg;
    type State = MergerState;
    type Arguments = MergerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: MergerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let me = Mailbox::new(myself, args.queued.clone());
        if args.config.enabled {
            me.post_after(args.config.interval, || MergerMsg::Tick);
        }
        let requests = RequestShare::new(
            args.blob.metrics().clone(),
            args.config.max_request_share,
            args.config.min_requests_per_second,
        );
        Ok(MergerState { me, args, requests })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.me.taken();
        match msg {
            MergerMsg::Tick => {
                state.pass().await;
                let interval = state.args.config.interval;
                state.me.post_after(interval, || MergerMsg::Tick);
            }
        }
        Ok(())
    }
}
