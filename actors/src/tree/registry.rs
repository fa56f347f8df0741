//! Where request handlers and the uploader find the live actors of this node.
//!
//! Actors are restarted by their supervisors, which gives them new references; supervisors
//! update these tables, so callers always look actors up here instead of keeping refs.
//!
//! Every lookup of a partition answers only while this node's lease holds the generation the
//! partition was claimed under ([`LeaseGuard::holds`]): a node whose lease ran out, or was
//! taken over, serves nothing it held, even before its managers stop those actors.

use crate::cluster::lease::LeaseGuard;
use crate::partition::actor::{PartitionMsg, PartitionOffsets};
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::{ReadError, TopicPartition};
use inkless_storage::metadata::{BatchCoordinate, BatchRewrite, RewriteOutcome};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// A running partition actor and a view of its offsets.
#[derive(Debug, Clone)]
pub struct PartitionHandle {
    /// The actor.
    pub actor: Mailbox<PartitionMsg>,
    /// Log start offset and high watermark, updated after every commit.
    pub offsets: watch::Receiver<PartitionOffsets>,
    /// The lease generation it was claimed under.
    pub generation: i64,
    /// The owner epoch its claim gave it: Kafka's leader epoch of the partition.
    pub owner_epoch: i64,
}

/// The partition actors running on this node.
#[derive(Debug, Clone)]
pub struct PartitionRegistry {
    inner: Arc<RwLock<HashMap<TopicPartition, PartitionHandle>>>,
    guard: LeaseGuard,
    /// Counts publications of new offsets by any local partition, so that a reader of many
    /// partitions waits on one channel instead of one per partition.
    published: Arc<watch::Sender<u64>>,
}

impl Default for PartitionRegistry {
    /// A registry of a node alone, without leases.
    fn default() -> Self {
        Self::new(LeaseGuard::unleased(0))
    }
}

/// Tells readers that a local partition published new offsets (see
/// [`PartitionRegistry::changes`]); held by every PartitionActor.
#[derive(Debug, Clone)]
pub struct PublishSignal(Arc<watch::Sender<u64>>);

impl PublishSignal {
    /// Wakes every reader waiting on [`PartitionRegistry::changes`].
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl PartitionRegistry {
    /// An empty registry whose lookups answer while `guard` holds.
    pub fn new(guard: LeaseGuard) -> Self {
        Self {
            inner: Arc::default(),
            guard,
            published: Arc::new(watch::channel(0).0),
        }
    }

    /// The lease guard lookups obey.
    pub fn guard(&self) -> &LeaseGuard {
        &self.guard
    }

    /// The handle of `tp` if it may be served now.
    fn serving<'m>(
        &self,
        map: &'m HashMap<TopicPartition, PartitionHandle>,
        tp: &TopicPartition,
    ) -> Option<&'m PartitionHandle> {
        let generation = self.guard.serving()?;
        map.get(tp).filter(|h| h.generation == generation)
    }

    /// The signal partition actors raise after publishing offsets.
    pub fn publish_signal(&self) -> PublishSignal {
        PublishSignal(self.published.clone())
    }

    /// A receiver that sees every publication after this call: subscribe, check the
    /// partitions' offsets, then await `changed()`, and no publication is missed.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// The published offsets of partitions (`None`: unknown or not running here), without
    /// waiting or messaging their actors, under one lock for all of them (a wide fetch asks
    /// for thousands at a time, from several threads).
    pub fn published_offsets<'a>(
        &self,
        tps: impl IntoIterator<Item = Option<&'a TopicPartition>>,
    ) -> Vec<Option<PartitionOffsets>> {
        let map = self.inner.read();
        let Some(generation) = self.guard.serving() else {
            return tps.into_iter().map(|_| None).collect();
        };
        tps.into_iter()
            .map(|tp| {
                tp.and_then(|tp| map.get(tp))
                    .filter(|h| h.generation == generation)
                    .map(|h| *h.offsets.borrow())
            })
            .collect()
    }

    /// The handle of a partition, if its actor runs here and may serve.
    pub fn get(&self, tp: &TopicPartition) -> Option<PartitionHandle> {
        self.serving(&self.inner.read(), tp).cloned()
    }

    /// The owner epoch of a partition that runs here and may serve.
    pub fn owner_epoch(&self, tp: &TopicPartition) -> Option<i64> {
        self.serving(&self.inner.read(), tp).map(|h| h.owner_epoch)
    }

    /// The owner epochs of partitions that run here and may serve (`None` otherwise), under
    /// one lock for all of them (a wide fetch checks thousands).
    pub fn owner_epochs<'a>(
        &self,
        tps: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Vec<Option<i64>> {
        let map = self.inner.read();
        tps.into_iter()
            .map(|tp| self.serving(&map, tp).map(|h| h.owner_epoch))
            .collect()
    }

    /// True if the partition's actor runs here and may serve (no handle is cloned).
    pub fn contains(&self, tp: &TopicPartition) -> bool {
        self.serving(&self.inner.read(), tp).is_some()
    }

    /// True if an actor of the partition runs here, whether or not it may serve.
    pub fn runs(&self, tp: &TopicPartition) -> bool {
        self.inner.read().contains_key(tp)
    }

    /// The handle of a running actor, whether or not it may serve (its supervisor's view).
    pub fn running(&self, tp: &TopicPartition) -> Option<PartitionHandle> {
        self.inner.read().get(tp).cloned()
    }

    /// Records a (re)started actor.
    pub fn insert(&self, tp: TopicPartition, handle: PartitionHandle) {
        if self.inner.write().insert(tp, handle).is_none() {
            crate::metrics::get().cluster.partitions_acquired.inc();
        }
    }

    /// Forgets a partition, returning its handle.
    pub fn remove(&self, tp: &TopicPartition) -> Option<PartitionHandle> {
        let removed = self.inner.write().remove(tp);
        if removed.is_some() {
            crate::metrics::get().cluster.partitions_released.inc();
        }
        removed
    }

    /// All partitions running here.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.inner.read().keys().copied().collect()
    }

    /// Coordinates of committed batches of a local partition from `offset`, and its offsets
    /// after the read.
    pub async fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: u64,
    ) -> Result<(Vec<BatchCoordinate>, PartitionOffsets), ReadError> {
        let h = {
            let map = self.inner.read();
            let h = self.serving(&map, tp).ok_or(ReadError::NotOwner)?;
            // A consumer at the end of the log (most partitions of a wide fetch) is answered
            // from the published offsets, without a message to the actor. They may lag the
            // actor's by one commit; then this answer is merely one commit early.
            let published = *h.offsets.borrow();
            if published.at_end(offset) {
                return Ok((Vec::new(), published));
            }
            h.clone()
        };
        let (tx, rx) = oneshot::channel();
        h.actor
            .post(PartitionMsg::Read {
                offset,
                max_bytes,
                reply: tx,
            })
            .map_err(|_| ReadError::NotOwner)?;
        let coords = rx.await.map_err(|_| ReadError::NotOwner)??;
        let offsets = *h.offsets.borrow();
        Ok((coords, offsets))
    }

    /// The offsets of a local partition once its high watermark is above `above` or after
    /// `wait` (at once when `wait` is zero); `None` if it does not run here.
    pub async fn offsets(
        &self,
        tp: &TopicPartition,
        above: i64,
        wait: Duration,
    ) -> Option<PartitionOffsets> {
        let mut rx = {
            let map = self.inner.read();
            let offsets = &self.serving(&map, tp)?.offsets;
            let now = *offsets.borrow();
            if wait.is_zero() || now.high_watermark > above {
                return Some(now);
            }
            offsets.clone()
        };
        let _ = tokio::time::timeout(wait, rx.wait_for(|o| o.high_watermark > above)).await;
        // The wait may have outlived the lease (a frozen node resumes here).
        let now = *rx.borrow();
        self.contains(tp).then_some(now)
    }

    /// Raises the log start offset of a local partition.
    pub async fn delete_records(&self, tp: &TopicPartition, offset: i64) -> Result<i64, ReadError> {
        let h = self.get(tp).ok_or(ReadError::NotOwner)?;
        let (tx, rx) = oneshot::channel();
        h.actor
            .post(PartitionMsg::DeleteRecords { offset, reply: tx })
            .map_err(|_| ReadError::NotOwner)?;
        rx.await.map_err(|_| ReadError::NotOwner)?
    }

    /// Swaps a rewritten run of a local partition's batches in, through its actor.
    pub async fn rewrite(
        &self,
        tp: &TopicPartition,
        rewrite: BatchRewrite,
    ) -> Result<RewriteOutcome, ReadError> {
        let h = self.get(tp).ok_or(ReadError::NotOwner)?;
        let (tx, rx) = oneshot::channel();
        h.actor
            .post(PartitionMsg::Rewrite { rewrite, reply: tx })
            .map_err(|_| ReadError::NotOwner)?;
        rx.await.map_err(|_| ReadError::NotOwner)?
    }

    /// Number of running partition actors.
    pub fn len(&self) -> usize {
        self.inner.read().len()
    }
}

/// Restarts of each child of a supervisor within a sliding minute: more than the budget is
/// a crash loop, which the supervisor escalates instead of restarting again.
#[derive(Debug)]
pub struct RestartBudget<K> {
    max: u32,
    counts: HashMap<K, (u32, Instant)>,
}

/// The window of [`RestartBudget`].
const RESTART_WINDOW: Duration = Duration::from_secs(60);

impl<K: Hash + Eq> RestartBudget<K> {
    /// At most `max` restarts of one child per minute.
    pub fn new(max: u32) -> Self {
        Self {
            max,
            counts: HashMap::new(),
        }
    }

    /// Counts one more restart of `key`: `Ok(n)` with the restarts in the window so far,
    /// or `Err(n)` when that is over the budget.
    pub fn record(&mut self, key: K) -> Result<u32, u32> {
        let now = Instant::now();
        let entry = self.counts.entry(key).or_insert((0, now));
        if now.duration_since(entry.1) > RESTART_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 > self.max {
            Err(entry.0)
        } else {
            Ok(entry.0)
        }
    }

    /// Forgets a child that is gone for good.
    pub fn forget(&mut self, key: &K) {
        self.counts.remove(key);
    }
}

/// A slot holding the current reference of a restartable singleton actor.
#[derive(Debug)]
pub struct ActorSlot<M: ractor::Message> {
    inner: RwLock<Option<Mailbox<M>>>,
}

impl<M: ractor::Message> Default for ActorSlot<M> {
    fn default() -> Self {
        Self {
            inner: RwLock::new(None),
        }
    }
}

impl<M: ractor::Message> ActorSlot<M> {
    /// The current actor, if running.
    pub fn get(&self) -> Option<Mailbox<M>> {
        self.inner.read().clone()
    }

    /// Replaces the current actor.
    pub fn set(&self, actor: Option<Mailbox<M>>) {
        *self.inner.write() = actor;
    }
}

/// The live actors of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorKindStats {
    /// Kind (`partition`, `group`, `index-writer`, …).
    pub kind: &'static str,
    /// Live actors of this kind.
    pub actors: u64,
    /// Messages waiting in their mailboxes, summed.
    pub mailbox_messages: u64,
    /// The longest of their mailboxes.
    pub mailbox_max: u64,
}

/// What the actor tree listing knows about one actor.
#[derive(Debug, Clone)]
pub struct ActorLabel {
    /// Kind (`partition`, `group`, `index-writer`, …).
    pub kind: &'static str,
    /// Stable name within the node, e.g. `partition/orders/3`.
    pub name: String,
    /// Restarts of this name so far.
    pub restarts: u32,
    /// Its mailbox count.
    pub queued: QueueCount,
}

/// Labels of the live actors of this node, kept by their supervisors, so the supervision
/// tree can be listed with names (ractor's own registry is global to the process and its
/// names cannot be reused while a failed actor is being replaced).
#[derive(Debug, Default, Clone)]
pub struct ActorDirectory {
    labels: Arc<RwLock<HashMap<ractor::ActorId, ActorLabel>>>,
    restarts: Arc<RwLock<HashMap<String, u32>>>,
}

impl ActorDirectory {
    /// Records a started actor; a name seen before counts as a restart.
    pub fn started(
        &self,
        id: ractor::ActorId,
        kind: &'static str,
        name: String,
        queued: QueueCount,
    ) {
        let restarts = {
            let mut r = self.restarts.write();
            let n = r.entry(name.clone()).or_insert(0);
            let seen = *n;
            *n += 1;
            seen
        };
        crate::metrics::started(kind, restarts > 0);
        self.labels.write().insert(
            id,
            ActorLabel {
                kind,
                name,
                restarts,
                queued,
            },
        );
    }

    /// Forgets a stopped actor; `keep_history` keeps its restart count for a successor.
    pub fn stopped(&self, id: ractor::ActorId, keep_history: bool) {
        if let Some(l) = self.labels.write().remove(&id) {
            if !keep_history {
                self.restarts.write().remove(&l.name);
            }
        }
    }

    /// The label of an actor.
    pub fn label(&self, id: &ractor::ActorId) -> Option<ActorLabel> {
        self.labels.read().get(id).cloned()
    }

    /// Live actors by kind, in kind order (see [`ActorKindStats`]).
    pub fn by_kind(&self) -> Vec<ActorKindStats> {
        let mut kinds: BTreeMap<&'static str, ActorKindStats> = BTreeMap::new();
        for l in self.labels.read().values() {
            let k = kinds.entry(l.kind).or_insert(ActorKindStats {
                kind: l.kind,
                ..Default::default()
            });
            let queued = l.queued.get();
            k.actors += 1;
            k.mailbox_messages += queued;
            k.mailbox_max = k.mailbox_max.max(queued);
        }
        kinds.into_values().collect()
    }
}
