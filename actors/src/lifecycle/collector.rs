//! ObjectCollector: deletes the objects nothing references any more.
//!
//! Deletion is two-phase. An object whose last live byte was retired (retention,
//! DeleteRecords, DeleteTopics) is marked dead by the metadata store at that moment; every
//! `collect_interval` the collector asks the store to mark as deleted those dead for longer
//! than `delete_delay` (a grace period longer than any read that may still hold their
//! coordinates), then deletes them from the object store in bulk, paced to at most
//! `max_deletes_per_second`, and confirms each deletion. Once marked, an object can never be
//! named by a commit again (the store refuses it), so nothing acknowledged can come to depend
//! on a deleted object. A crash or a failure between the two phases leaves a mark without a
//! confirmation, which the store hands out again a few minutes later.
//!
//! Orphans (uploaded, never committed: a crash between PUT and commit)
//! are found every `orphan_scan_interval` by listing the object store: objects older than
//! `orphan_min_age` that the store has no row for are marked (the same fence) and deleted.
//!
//! One node of a cluster collects: the rendezvous owner of the collector
//! ([`LiveSet::collector_owner`]). Two nodes collecting for a moment after a membership
//! change is harmless: marking is a transaction, and deleting is idempotent.

use super::LifecycleStats;
use crate::cluster::placement::LiveSet;
use crate::tree::mailbox::{Mailbox, QueueCount};
use futures::StreamExt;
use inkless_storage::blob::BlobStore;
use inkless_storage::metadata::SharedMetadataStore;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Objects marked and deleted per round (S3 deletes up to 1,000 in one request).
const OBJECTS_PER_ROUND: usize = 1_000;

/// Messages of the [`ObjectCollector`].
#[derive(Debug)]
pub enum CollectorMsg {
    /// Run a pass now (sent to itself every `collect_interval`).
    Tick,
}

// Local only: never sent to another node.
impl ractor::Message for CollectorMsg {}

/// Timing and pace of the collector.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Time between passes.
    pub collect_interval: Duration,
    /// How long an object stays after its last live byte was retired (Kafka's
    /// `file.delete.delay.ms`).
    pub delete_delay: Duration,
    /// Time between listings of the object store for orphans.
    pub orphan_scan_interval: Duration,
    /// Objects younger than this are never taken for orphans (their commit may be running).
    pub orphan_min_age: Duration,
    /// Upper bound of object deletions per second.
    pub max_deletes_per_second: u32,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            collect_interval: Duration::from_secs(10),
            delete_delay: Duration::from_secs(60),
            orphan_scan_interval: Duration::from_secs(3600),
            orphan_min_age: Duration::from_secs(600),
            max_deletes_per_second: 1_000,
        }
    }
}

/// What the [`ObjectCollector`] works with.
#[derive(Debug, Clone)]
pub struct CollectorArgs {
    /// Its mailbox count.
    pub queued: QueueCount,
    /// The metadata store.
    pub store: SharedMetadataStore,
    /// The object store.
    pub blob: BlobStore,
    /// The live set, to know whether this node collects.
    pub live: watch::Receiver<Arc<LiveSet>>,
    /// Timing and pace.
    pub config: CollectorConfig,
    /// Counters.
    pub stats: Arc<LifecycleStats>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct ObjectCollector;

/// State of the collector.
#[derive(Debug)]
pub struct CollectorState {
    me: Mailbox<CollectorMsg>,
    args: CollectorArgs,
    last_sweep: Option<Instant>,
}

impl CollectorState {
    fn collects(&self) -> bool {
        let live = self.args.live.borrow();
        live.me_live && live.collector_owner() == Some(live.me)
    }

    async fn pass(&mut self) {
        if !self.collects() {
            return;
        }
        let grace_ms = self.args.config.delete_delay.as_millis() as i64;
        // A commit trails its object's upload by less than the orphan age (else the object
        // would have been collected as an orphan): older marks guard against nothing.
        let forget_ms = self.args.config.orphan_min_age.as_millis() as i64;
        loop {
            let keys = match self
                .args
                .store
                .retire_dead_objects(grace_ms, forget_ms, OBJECTS_PER_ROUND)
                .await
            {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(error = %e, "object collector: metadata store failed");
                    return;
                }
            };
            let full = keys.len() == OBJECTS_PER_ROUND;
            self.delete(keys, &self.args.stats.objects_deleted).await;
            if !full {
                break;
            }
        }
        match self.args.store.object_stats().await {
            Ok(counts) => *self.args.stats.objects.lock() = Some(counts),
            Err(e) => tracing::debug!(error = %e, "object collector: counting objects failed"),
        }
        let sweep_due = self
            .last_sweep
            .is_none_or(|t| t.elapsed() >= self.args.config.orphan_scan_interval);
        if sweep_due {
            self.sweep_orphans().await;
            self.last_sweep = Some(Instant::now());
        }
    }

    /// Deletes objects already marked deleted, at the configured pace, and confirms each
    /// deletion to the store (one not confirmed is handed out again a few minutes later).
    async fn delete(&self, keys: Vec<String>, counter: &AtomicU64) {
        if keys.is_empty() {
            return;
        }
        let started = Instant::now();
        let n = keys.len();
        let (deleted, error) = self.args.blob.delete_many(keys).await;
        let done = deleted.len() as u64;
        LifecycleStats::add(counter, done);
        if let Some(e) = error {
            LifecycleStats::add(&self.args.stats.delete_errors, n as u64 - done);
            tracing::warn!(error = %e, failed = n as u64 - done, "object deletion failed; retried later");
        }
        if let Err(e) = self.args.store.confirm_deleted(deleted).await {
            tracing::debug!(error = %e, "confirming deletions failed; they are retried later");
        }
        let rate = f64::from(self.args.config.max_deletes_per_second.max(1));
        let budget = Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep(budget.saturating_sub(started.elapsed())).await;
    }

    /// Lists the object store and deletes objects no commit ever named.
    async fn sweep_orphans(&self) {
        let cutoff = inkless_storage::now_ms() - self.args.config.orphan_min_age.as_millis() as i64;
        let mut listing = self.args.blob.list();
        let mut old = Vec::with_capacity(OBJECTS_PER_ROUND);
        while let Some(item) = listing.next().await {
            match item {
                Ok((key, modified_ms)) if modified_ms < cutoff => old.push(key),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "orphan sweep: listing failed");
                    return;
                }
            }
            if old.len() == OBJECTS_PER_ROUND && !self.retire_orphans(&mut old).await {
                return;
            }
        }
        if self.retire_orphans(&mut old).await {
            LifecycleStats::add(&self.args.stats.orphan_sweeps, 1);
        }
    }

    /// Marks and deletes the orphans among `keys` (emptied); false if the store failed.
    async fn retire_orphans(&self, keys: &mut Vec<String>) -> bool {
        if keys.is_empty() {
            return true;
        }
        match self.args.store.retire_orphans(std::mem::take(keys)).await {
            Ok(orphans) => {
                if !orphans.is_empty() {
                    tracing::info!(count = orphans.len(), "deleting orphaned objects");
                }
                self.delete(orphans, &self.args.stats.orphans_deleted).await;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "orphan sweep: metadata store failed");
                false
            }
        }
    }
}

impl Actor for ObjectCollector {
    type Msg = CollectorMsg;
    type State = CollectorState;
    type Arguments = CollectorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: CollectorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let me = Mailbox::new(myself, args.queued.clone());
        me.post_after(args.config.collect_interval, || CollectorMsg::Tick);
        Ok(CollectorState {
            me,
            args,
            last_sweep: None,
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
            CollectorMsg::Tick => {
                state.pass().await;
                let interval = state.args.config.collect_interval;
                state.me.post_after(interval, || CollectorMsg::Tick);
            }
        }
        Ok(())
    }
}
