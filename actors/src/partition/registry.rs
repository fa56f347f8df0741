//! Where request handlers, the uploader and the lifecycle actors find the partitions this
//! node serves, whether their actors run or not (ADR 0024).
//!
//! A partition the node has claimed is *awake* (its PartitionActor runs) or *dormant* (no
//! actor: the entry keeps its lease generation, owner epoch and last published offsets).
//! Every message for a partition goes through [`PartitionRegistry::post`]: the first one for
//! a dormant partition makes it *waking* (messages wait in the entry, in order) and asks the
//! PartitionManager to claim it again and start its actor, which then gets them first. The
//! manager puts actors without a message for a while back to sleep.
//!
//! Every lookup answers only while this node's lease holds the generation the partition was
//! claimed under ([`LeaseGuard::holds`]): a node whose lease ran out, or was taken over,
//! serves nothing it held, even before its managers stop those actors.

use crate::cluster::lease::LeaseGuard;
use crate::partition::actor::{PartitionMsg, PartitionOffsets};
use crate::partition::manager::ManagerMsg;
use crate::tree::mailbox::Mailbox;
use crate::tree::registry::ActorSlot;
use crate::{ReadError, TopicPartition};
use inkless_storage::metadata::{BatchCoordinate, BatchRewrite, RewriteOutcome};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Whether a served partition's actor runs.
#[derive(Debug)]
enum Run {
    /// It runs.
    Awake(Mailbox<PartitionMsg>),
    /// No actor; the first message wakes it.
    Dormant,
    /// The manager is starting its actor; these messages wait for it, in order.
    Waking(Vec<PartitionMsg>),
}

/// One partition this node serves.
#[derive(Debug)]
struct Entry {
    run: Run,
    offsets: watch::Receiver<PartitionOffsets>,
    generation: i64,
    owner_epoch: i64,
    /// Milliseconds since the registry was made, at the last message posted.
    last_used_ms: AtomicU64,
    /// Bytes of the batches appended to it since it was claimed here: its load, which the
    /// balancer weighs (ADR 0022).
    appended_bytes: AtomicU64,
}

/// Bytes of the batches a message appends (0 for every other message).
fn appended_by(msg: &PartitionMsg) -> u64 {
    match msg {
        PartitionMsg::Append { batches, .. } => {
            batches.iter().map(|b| u64::from(b.position.len)).sum()
        }
        _ => 0,
    }
}

/// A message [`PartitionRegistry::post`] could not deliver: the partition is not served
/// here (now), or its actor stopped. The message comes back unless the actor's mailbox
/// closed with it.
#[derive(Debug)]
pub struct NotPosted(pub Option<PartitionMsg>);

/// Posts to a running actor, the message back if it is gone.
fn post_to(actor: &Mailbox<PartitionMsg>, msg: PartitionMsg) -> Result<(), NotPosted> {
    actor.post(msg).map_err(|e| match e {
        ractor::MessagingErr::SendErr(m) => NotPosted(Some(m)),
        _ => NotPosted(None),
    })
}

/// The partitions this node serves.
#[derive(Debug, Clone)]
pub struct PartitionRegistry {
    inner: Arc<RwLock<HashMap<TopicPartition, Entry>>>,
    guard: LeaseGuard,
    /// Counts publications of new offsets by any local partition, so that a reader of many
    /// partitions waits on one channel instead of one per partition.
    published: Arc<watch::Sender<u64>>,
    /// The PartitionManager, which wakes dormant partitions.
    waker: Arc<ActorSlot<ManagerMsg>>,
    /// Partitions made waking since the manager last took them ([`Self::waking`]): it finds
    /// them without a scan of every partition held (one per wake made it quadratic).
    wake_queue: Arc<Mutex<Vec<TopicPartition>>>,
    /// The zero of `last_used_ms`.
    epoch: Instant,
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
            waker: Arc::default(),
            wake_queue: Arc::default(),
            epoch: Instant::now(),
        }
    }

    /// The lease guard lookups obey.
    pub fn guard(&self) -> &LeaseGuard {
        &self.guard
    }

    /// Sets the PartitionManager that wakes dormant partitions. A new manager takes over
    /// every held partition, so what its predecessor left queued is dropped (a queue left
    /// non-empty would hold back the next Wake).
    pub fn set_waker(&self, manager: Mailbox<ManagerMsg>) {
        self.wake_queue.lock().clear();
        self.waker.set(Some(manager));
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The entry of `tp` if it may be served now.
    fn serving<'m>(
        &self,
        map: &'m HashMap<TopicPartition, Entry>,
        tp: &TopicPartition,
    ) -> Option<&'m Entry> {
        let generation = self.guard.serving()?;
        map.get(tp).filter(|e| e.generation == generation)
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

    /// The published offsets of partitions (`None`: unknown or not served here), without
    /// waiting or messaging their actors, under one lock for all of them (a wide fetch asks
    /// for thousands at a time, from several threads).
    pub fn published_offsets<'a>(
        &self,
        tps: impl IntoIterator<Item = Option<&'a TopicPartition>>,
    ) -> Vec<Option<PartitionOffsets>> {
        self.each_served(tps, |e| *e.offsets.borrow())
    }

    /// `f` of each partition served here (`None` for one that is not, or for `None`), under
    /// one lock of the map and one look at the lease for all of them.
    fn each_served<'a, T>(
        &self,
        tps: impl IntoIterator<Item = Option<&'a TopicPartition>>,
        f: impl Fn(&Entry) -> T,
    ) -> Vec<Option<T>> {
        let map = self.inner.read();
        let generation = self.guard.serving();
        tps.into_iter()
            .map(|tp| {
                let e = map.get(tp?)?;
                (Some(e.generation) == generation).then(|| f(e))
            })
            .collect()
    }

    /// The handle of a partition whose actor runs here and may serve.
    pub fn get(&self, tp: &TopicPartition) -> Option<PartitionHandle> {
        let map = self.inner.read();
        let e = self.serving(&map, tp)?;
        match &e.run {
            Run::Awake(actor) => Some(PartitionHandle {
                actor: actor.clone(),
                offsets: e.offsets.clone(),
                generation: e.generation,
                owner_epoch: e.owner_epoch,
            }),
            Run::Dormant | Run::Waking(_) => None,
        }
    }

    /// The owner epoch of a partition served here.
    pub fn owner_epoch(&self, tp: &TopicPartition) -> Option<i64> {
        self.serving(&self.inner.read(), tp).map(|e| e.owner_epoch)
    }

    /// The owner epochs of partitions served here (`None` otherwise), under one lock for all
    /// of them (a wide fetch checks thousands).
    pub fn owner_epochs<'a>(
        &self,
        tps: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Vec<Option<i64>> {
        self.each_served(tps.into_iter().map(Some), |e| e.owner_epoch)
    }

    /// True if the partition is served here, awake or dormant.
    pub fn contains(&self, tp: &TopicPartition) -> bool {
        self.serving(&self.inner.read(), tp).is_some()
    }

    /// True if this node holds the partition (awake or dormant), whether or not it may serve.
    pub fn runs(&self, tp: &TopicPartition) -> bool {
        self.inner.read().contains_key(tp)
    }

    /// The lease generation a held partition was claimed under (its supervisor's view).
    pub fn generation(&self, tp: &TopicPartition) -> Option<i64> {
        self.inner.read().get(tp).map(|e| e.generation)
    }

    /// Records a dormant partition claimed under `generation` with `owner_epoch`, whose
    /// offsets are published on `offsets`. Replaces what was held (its waiting messages
    /// are dropped, so their senders see the partition gone).
    pub fn insert_dormant(
        &self,
        tp: TopicPartition,
        offsets: watch::Receiver<PartitionOffsets>,
        generation: i64,
        owner_epoch: i64,
    ) {
        let entry = Entry {
            run: Run::Dormant,
            offsets,
            generation,
            owner_epoch,
            last_used_ms: AtomicU64::new(self.now_ms()),
            appended_bytes: AtomicU64::new(0),
        };
        if self.inner.write().insert(tp, entry).is_none() {
            crate::metrics::get().cluster.partitions_acquired.inc();
        }
    }

    /// Records the started actor of a partition: it becomes awake and gets the messages
    /// that waited for it first, in order. False (and nothing changes) if the partition is
    /// no longer held here.
    pub fn awaken(&self, tp: TopicPartition, handle: PartitionHandle) -> bool {
        let mut map = self.inner.write();
        let Some(e) = map.get_mut(&tp) else {
            return false;
        };
        let waiting = match std::mem::replace(&mut e.run, Run::Awake(handle.actor.clone())) {
            Run::Waking(msgs) => msgs,
            Run::Dormant | Run::Awake(_) => Vec::new(),
        };
        e.generation = handle.generation;
        e.owner_epoch = handle.owner_epoch;
        e.offsets = handle.offsets;
        e.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        for msg in waiting {
            // A failure drops the message, and its sender sees the partition gone.
            let _ = handle.actor.post(msg);
        }
        true
    }

    /// The partitions made waking since the last call, that still wait for their actor,
    /// each once (one held dormant anew while waking is queued again when it wakes).
    pub fn waking(&self) -> Vec<TopicPartition> {
        let mut queued = std::mem::take(&mut *self.wake_queue.lock());
        queued.sort_unstable();
        queued.dedup();
        let map = self.inner.read();
        queued.retain(|tp| map.get(tp).is_some_and(|e| matches!(e.run, Run::Waking(_))));
        queued
    }

    /// Makes the awake partitions without a message for `idle` dormant and returns their
    /// actors, which the caller drains and stops.
    pub fn put_to_sleep(&self, idle: Duration) -> Vec<(TopicPartition, Mailbox<PartitionMsg>)> {
        let before = self.now_ms().saturating_sub(idle.as_millis() as u64);
        let mut map = self.inner.write();
        let mut asleep = Vec::new();
        for (tp, e) in map.iter_mut() {
            if !matches!(e.run, Run::Awake(_)) || e.last_used_ms.load(Ordering::Relaxed) > before {
                continue;
            }
            if let Run::Awake(actor) = std::mem::replace(&mut e.run, Run::Dormant) {
                asleep.push((*tp, actor));
            }
        }
        asleep
    }

    /// Sends `msg` to the partition's actor, waking it first if it is dormant (the message
    /// then waits in order with any others). Posting happens under the registry's lock, so
    /// a partition put to sleep or moved away never gets a message after its last one.
    pub fn post(&self, tp: &TopicPartition, msg: PartitionMsg) -> Result<(), NotPosted> {
        let appended = appended_by(&msg);
        {
            let map = self.inner.read();
            let Some(e) = self.serving(&map, tp) else {
                return Err(NotPosted(Some(msg)));
            };
            if let Run::Awake(actor) = &e.run {
                e.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
                e.appended_bytes.fetch_add(appended, Ordering::Relaxed);
                return post_to(actor, msg);
            }
        }
        let generation = self.guard.serving();
        let mut map = self.inner.write();
        let Some(e) = map.get_mut(tp).filter(|e| Some(e.generation) == generation) else {
            return Err(NotPosted(Some(msg)));
        };
        e.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        e.appended_bytes.fetch_add(appended, Ordering::Relaxed);
        match &mut e.run {
            Run::Awake(actor) => post_to(actor, msg),
            Run::Waking(waiting) => {
                waiting.push(msg);
                Ok(())
            }
            Run::Dormant => {
                e.run = Run::Waking(vec![msg]);
                // One Wake per batch: the manager takes every queued partition at once.
                let first = {
                    let mut queue = self.wake_queue.lock();
                    queue.push(*tp);
                    queue.len() == 1
                };
                drop(map);
                // A manager that is down takes over every held partition when it restarts,
                // which drops the waiting messages: their senders see the partition gone.
                if first {
                    if let Some(manager) = self.waker.get() {
                        let _ = manager.post(ManagerMsg::Wake);
                    }
                }
                Ok(())
            }
        }
    }

    /// Forgets a partition: `None` if it was not held, else its actor if it was awake.
    pub fn remove(&self, tp: &TopicPartition) -> Option<Option<Mailbox<PartitionMsg>>> {
        let removed = self.inner.write().remove(tp)?;
        crate::metrics::get().cluster.partitions_released.inc();
        Some(match removed.run {
            Run::Awake(actor) => Some(actor),
            Run::Dormant | Run::Waking(_) => None,
        })
    }

    /// Forgets a partition if `actor` is its awake actor (it stopped on its own).
    pub fn remove_actor(&self, tp: &TopicPartition, actor: ractor::ActorId) -> bool {
        let mut map = self.inner.write();
        let mine = matches!(map.get(tp), Some(Entry { run: Run::Awake(a), .. }) if a.id() == actor);
        if mine {
            map.remove(tp);
            crate::metrics::get().cluster.partitions_released.inc();
        }
        mine
    }

    /// All partitions held here, awake or dormant.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.inner.read().keys().copied().collect()
    }

    /// The dormant (or waking) partitions held here.
    pub fn dormant(&self) -> Vec<TopicPartition> {
        self.inner
            .read()
            .iter()
            .filter(|(_, e)| !matches!(e.run, Run::Awake(_)))
            .map(|(tp, _)| *tp)
            .collect()
    }

    /// The partitions held here that were appended to since they were claimed here, with
    /// the bytes appended to each (a counter that only grows while the partition stays).
    pub fn appended_bytes(&self) -> Vec<(TopicPartition, u64)> {
        self.inner
            .read()
            .iter()
            .map(|(tp, e)| (*tp, e.appended_bytes.load(Ordering::Relaxed)))
            .filter(|(_, bytes)| *bytes > 0)
            .collect()
    }

    /// How many dormant (or waking) partitions are held here.
    pub fn dormant_count(&self) -> usize {
        self.inner
            .read()
            .values()
            .filter(|e| !matches!(e.run, Run::Awake(_)))
            .count()
    }

    /// Asks the partition's actor (waking it) and waits for the answer `ask` gets.
    async fn ask<T>(
        &self,
        tp: &TopicPartition,
        ask: impl FnOnce(oneshot::Sender<T>) -> PartitionMsg,
    ) -> Result<T, ReadError> {
        let (tx, rx) = oneshot::channel();
        self.post(tp, ask(tx)).map_err(|_| ReadError::NotOwner)?;
        rx.await.map_err(|_| ReadError::NotOwner)
    }

    /// Coordinates of committed batches of a local partition from `offset`, and its offsets
    /// after the read.
    pub async fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: u64,
    ) -> Result<(Vec<BatchCoordinate>, PartitionOffsets), ReadError> {
        let offsets = {
            let map = self.inner.read();
            let e = self.serving(&map, tp).ok_or(ReadError::NotOwner)?;
            // A consumer at the end of the log (most partitions of a wide fetch) is answered
            // from the published offsets, without a message to the actor (nor waking it).
            // They may lag the actor's by one commit; then this answer is one commit early.
            let published = *e.offsets.borrow();
            if published.at_end(offset) {
                return Ok((Vec::new(), published));
            }
            e.offsets.clone()
        };
        let coords = self
            .ask(tp, |reply| PartitionMsg::Read {
                offset,
                max_bytes,
                reply,
            })
            .await??;
        let offsets = *offsets.borrow();
        Ok((coords, offsets))
    }

    /// The offsets of a local partition once its high watermark is above `above` or after
    /// `wait` (at once when `wait` is zero); `None` if it is not served here.
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
        self.ask(tp, |reply| PartitionMsg::DeleteRecords { offset, reply })
            .await?
    }

    /// Swaps a rewritten run of a local partition's batches in, through its actor.
    pub async fn rewrite(
        &self,
        tp: &TopicPartition,
        rewrite: BatchRewrite,
    ) -> Result<RewriteOutcome, ReadError> {
        self.ask(tp, |reply| PartitionMsg::Rewrite { rewrite, reply })
            .await?
    }

    /// Records a running actor directly (unit tests of other actors).
    #[cfg(test)]
    pub fn insert(&self, tp: TopicPartition, handle: PartitionHandle) {
        self.insert_dormant(
            tp,
            handle.offsets.clone(),
            handle.generation,
            handle.owner_epoch,
        );
        self.awaken(tp, handle);
    }

    /// Number of partitions held here, awake or dormant.
    pub fn len(&self) -> usize {
        self.inner.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(token: u64) -> PartitionMsg {
        PartitionMsg::Committed {
            token,
            outcome: Err("test".into()),
        }
    }

    #[test]
    fn waking_partitions_are_taken_once_without_a_scan() {
        let r = PartitionRegistry::default();
        let tp = |partition| TopicPartition {
            topic_id: uuid::Uuid::nil(),
            partition,
        };
        let (_offsets, rx) = watch::channel(PartitionOffsets::default());
        for p in 0..3 {
            r.insert_dormant(tp(p), rx.clone(), 0, 1);
        }
        r.post(&tp(1), committed(1)).unwrap();
        r.post(&tp(1), committed(2)).unwrap();
        // Held dormant anew while it waits (a new claim), then used again: queued twice.
        r.insert_dormant(tp(1), rx.clone(), 0, 2);
        r.post(&tp(1), committed(3)).unwrap();
        r.post(&tp(2), committed(4)).unwrap();
        assert_eq!(
            r.waking(),
            vec![tp(1), tp(2)],
            "each once, the untouched one not"
        );
        assert!(r.waking().is_empty(), "taken");
        // Removed while queued: not handed out.
        r.post(&tp(0), committed(5)).unwrap();
        r.remove(&tp(0));
        assert!(r.waking().is_empty());
    }
}
