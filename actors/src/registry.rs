//! Where request handlers and the uploader find the live actors of this node.
//!
//! Actors are restarted by their supervisors, which gives them new references; supervisors
//! update these tables, so callers always look actors up here instead of keeping refs.

use crate::partition::{PartitionMsg, PartitionOffsets};
use crate::TopicPartition;
use parking_lot::RwLock;
use ractor::ActorRef;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// A running partition actor and a view of its offsets.
#[derive(Debug, Clone)]
pub struct PartitionHandle {
    /// The actor.
    pub actor: ActorRef<PartitionMsg>,
    /// Log start offset and high watermark, updated after every commit.
    pub offsets: watch::Receiver<PartitionOffsets>,
}

/// The partition actors running on this node.
#[derive(Debug, Default, Clone)]
pub struct PartitionRegistry {
    inner: Arc<RwLock<HashMap<TopicPartition, PartitionHandle>>>,
}

impl PartitionRegistry {
    /// The handle of a partition, if its actor runs here.
    pub fn get(&self, tp: &TopicPartition) -> Option<PartitionHandle> {
        self.inner.read().get(tp).cloned()
    }

    /// Records a (re)started actor.
    pub fn insert(&self, tp: TopicPartition, handle: PartitionHandle) {
        self.inner.write().insert(tp, handle);
    }

    /// Forgets a partition, returning its handle.
    pub fn remove(&self, tp: &TopicPartition) -> Option<PartitionHandle> {
        self.inner.write().remove(tp)
    }

    /// All partitions running here.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.inner.read().keys().copied().collect()
    }

    /// Number of running partition actors.
    pub fn len(&self) -> usize {
        self.inner.read().len()
    }

    /// True when no partition actor runs.
    pub fn is_empty(&self) -> bool {
        self.inner.read().is_empty()
    }
}

/// A slot holding the current reference of a restartable singleton actor.
#[derive(Debug)]
pub struct ActorSlot<M: ractor::Message> {
    inner: RwLock<Option<ActorRef<M>>>,
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
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.inner.read().clone()
    }

    /// Replaces the current actor.
    pub fn set(&self, actor: Option<ActorRef<M>>) {
        *self.inner.write() = actor;
    }
}
