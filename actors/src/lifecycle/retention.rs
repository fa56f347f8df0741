//! Retention: every `check_interval` (Kafka's `log.retention.check.interval.ms`), the
//! partitions this node owns give up their expired batches. The metadata store computes, for
//! all of them in a few calls, how far each log start may rise under its topic's
//! `retention.ms` and `retention.bytes` (by whole batches, as Kafka does by segments); each
//! partition whose log start rises is sent a DeleteRecords, the path a client's
//! DeleteRecords takes, so its actor publishes the new log start and the store releases
//! the batches' bytes from their objects (which the object collector then deletes).
//!
//! On the node that runs the object collector ([`LiveSet::collector_owner`]), each pass
//! also deletes the producer rows idle for longer than `producer.id.expiration.ms` plus
//! [`PRODUCER_EXPIRY_MARGIN_MS`], a bounded number per call. Partition actors already
//! ignore a producer from the moment it expires; the margin covers clock differences
//! between nodes, so a row is never deleted while a running actor still counts it live.

use super::LifecycleStats;
use crate::cluster::placement::LiveSet;
use crate::group::consumer::SharedTopicLookup;
use crate::partition::registry::PartitionRegistry;
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::TopicPartition;
use futures::StreamExt;
use inkless_storage::metadata::{RetentionQuery, SharedMetadataStore};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Partitions per call to the metadata store.
const QUERIES_PER_CALL: usize = 1_000;
/// Partitions whose log start is being raised at once.
const PARTITIONS_AT_ONCE: usize = 16;
/// Producer rows deleted per call to the metadata store.
const PRODUCERS_PER_CALL: usize = 10_000;
/// Calls per pass at most (the rest waits for the next pass).
const PRODUCER_CALLS_PER_PASS: usize = 10;
/// Producer rows are deleted this long after they expired: more than the clock difference
/// between two nodes may be.
pub const PRODUCER_EXPIRY_MARGIN_MS: i64 = 10 * 60 * 1000;

/// A topic's retention limits (Kafka's `retention.ms` and `retention.bytes`; `None` for
/// `-1`, no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionLimits {
    /// Batches whose largest timestamp is older than this are retired.
    pub max_age_ms: Option<i64>,
    /// The oldest batches are retired while the rest still holds this many bytes.
    pub max_bytes: Option<u64>,
}

impl RetentionLimits {
    /// True when nothing is ever retired.
    pub fn unlimited(&self) -> bool {
        self.max_age_ms.is_none() && self.max_bytes.is_none()
    }
}

/// Messages of the [`Retention`] actor.
#[derive(Debug)]
pub enum RetentionMsg {
    /// Run a pass now (sent to itself every `check_interval`).
    Tick,
}

// Local only: never sent to another node.
impl ractor::Message for RetentionMsg {}

/// What the [`Retention`] actor works with.
#[derive(Debug, Clone)]
pub struct RetentionArgs {
    /// Its mailbox count.
    pub queued: QueueCount,
    /// The metadata store.
    pub store: SharedMetadataStore,
    /// The partitions running here.
    pub partitions: PartitionRegistry,
    /// Topic limits.
    pub topics: SharedTopicLookup,
    /// Time between passes.
    pub check_interval: Duration,
    /// The live set, to know whether this node expires producer rows.
    pub live: watch::Receiver<Arc<LiveSet>>,
    /// Kafka's `producer.id.expiration.ms`.
    pub producer_id_expiration: Duration,
    /// Counters.
    pub stats: Arc<LifecycleStats>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct Retention;

/// State of the actor.
#[derive(Debug)]
pub struct RetentionState {
    me: Mailbox<RetentionMsg>,
    args: RetentionArgs,
}

impl RetentionState {
    /// One pass over every partition running here.
    async fn pass(&self) {
        let now = inkless_storage::now_ms();
        let mut targets: Vec<(TopicPartition, RetentionQuery)> = Vec::new();
        for tp in self.args.partitions.partitions() {
            let Some(limits) = self.args.topics.retention(&tp.topic_id) else {
                continue;
            };
            if limits.unlimited() {
                continue;
            }
            let query = RetentionQuery {
                partition: (tp.topic_id, tp.partition),
                expire_before: limits.max_age_ms.map(|ms| now.saturating_sub(ms)),
                max_bytes: limits.max_bytes,
            };
            targets.push((tp, query));
        }
        for chunk in targets.chunks(QUERIES_PER_CALL) {
            let queries = chunk.iter().map(|(_, q)| q.clone()).collect();
            let offsets = match self.args.store.retention_offsets(queries).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "retention: metadata store failed; next pass retries");
                    return;
                }
            };
            self.retire(chunk, &offsets).await;
        }
        LifecycleStats::add(&self.args.stats.retention_passes, 1);
    }

    /// True on the node that runs the object collector.
    fn expires_producers(&self) -> bool {
        let live = self.args.live.borrow();
        live.me_live && live.collector_owner() == Some(live.me)
    }

    /// Deletes producer rows idle past their expiration and the margin.
    async fn expire_producers(&self) {
        if !self.expires_producers() {
            return;
        }
        let expiration = self.args.producer_id_expiration.as_millis();
        let idle_ms =
            (expiration.min(i64::MAX as u128) as i64).saturating_add(PRODUCER_EXPIRY_MARGIN_MS);
        for _ in 0..PRODUCER_CALLS_PER_PASS {
            match self
                .args
                .store
                .expire_producers(idle_ms, PRODUCERS_PER_CALL)
                .await
            {
                Ok(n) => {
                    LifecycleStats::add(&self.args.stats.producers_expired, n);
                    if n < PRODUCERS_PER_CALL as u64 {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "producer expiry: metadata store failed; next pass retries");
                    return;
                }
            }
        }
    }

    /// Raises the log start of the partitions whose retention offset is above it.
    async fn retire(&self, chunk: &[(TopicPartition, RetentionQuery)], offsets: &[i64]) {
        debug_assert_eq!(chunk.len(), offsets.len());
        let starts = self
            .args
            .partitions
            .published_offsets(chunk.iter().map(|(tp, _)| Some(tp)));
        let due = chunk
            .iter()
            .zip(offsets)
            .zip(starts)
            .filter(|((_, offset), start)| start.is_some_and(|s| **offset > s.log_start_offset))
            .map(|(((tp, _), offset), _)| (*tp, *offset));
        futures::stream::iter(due)
            .for_each_concurrent(PARTITIONS_AT_ONCE, |(tp, offset)| async move {
                match self.args.partitions.delete_records(&tp, offset).await {
                    Ok(new_start) => {
                        tracing::debug!(?tp, new_start, "retention raised the log start");
                        LifecycleStats::add(&self.args.stats.log_start_advances, 1);
                    }
                    // Moved away or stopping: its next owner applies retention.
                    Err(e) => tracing::debug!(?tp, error = %e, "retention skipped a partition"),
                }
            })
            .await;
    }
}

impl Actor for Retention {
    type Msg = RetentionMsg;
    type State = RetentionState;
    type Arguments = RetentionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RetentionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let me = Mailbox::new(myself, args.queued.clone());
        me.post_after(args.check_interval, || RetentionMsg::Tick);
        Ok(RetentionState { me, args })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.me.taken();
        match msg {
            RetentionMsg::Tick => {
                state.pass().await;
                state.expire_producers().await;
                // The next pass starts a whole interval after this one ended.
                state
                    .me
                    .post_after(state.args.check_interval, || RetentionMsg::Tick);
            }
        }
        Ok(())
    }
}
