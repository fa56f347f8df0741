//! Where request handlers find the live singleton actors of this node, the restart budgets
//! of supervisors and the labels of the actor tree (partitions have their own registry,
//! [`crate::partition::registry`]).
//!
//! Actors are restarted by their supervisors, which gives them new references; supervisors
//! update these tables, so callers always look actors up here instead of keeping refs.

use crate::tree::mailbox::{Mailbox, QueueCount};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
