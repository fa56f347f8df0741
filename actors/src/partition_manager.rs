//! PartitionManager: starts, supervises and stops the PartitionActors of this node.
//!
//! Takes [`ManagerMsg::Ensure`] (start actors for these partitions if this node owns them
//! and they are not running), [`ManagerMsg::Place`] (run exactly the owned ones of all
//! partitions) and [`ManagerMsg::Remove`] (stop them, e.g. after a topic is deleted).
//! Ownership is the placement of the current live set ([`LiveSet`]); a partition that moves
//! away is drained (its in-flight commits finish) before its actor stops. When a PartitionActor
//! fails (panic or commit failure) the manager restarts it, which reloads its state from the
//! metadata store; more than `max_restarts` failures of one partition within a minute
//! escalate: the manager fails and the NodeSupervisor decides.

use crate::index_writer::IndexMsg;
use crate::mailbox::Post;
use crate::partition::{PartitionActor, PartitionArgs, PartitionMsg, PartitionOffsets};
use crate::placement::LiveSet;
use crate::registry::{
    ActorDirectory, ActorSlot, PartitionHandle, PartitionRegistry, RestartBudget,
};
use crate::TopicPartition;
use inkless_storage::metadata::SharedMetadataStore;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// Longest wait for a partition that moves away to finish its in-flight commits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Delay before retrying a partition whose restart failed (e.g. metadata store down).
const RESTART_RETRY: Duration = Duration::from_secs(1);

/// Messages of the [`PartitionManager`].
#[derive(Debug)]
pub enum ManagerMsg {
    /// Make sure these partitions have running actors; answers when they do.
    Ensure {
        /// Partitions.
        tps: Vec<TopicPartition>,
        /// Answered with the partitions that failed to start.
        reply: oneshot::Sender<Vec<(TopicPartition, String)>>,
    },
    /// Retry starting a partition whose restart failed.
    Restart(TopicPartition),
    /// Panics inside the manager (fault-injection tests only).
    #[cfg(any(test, feature = "fault-injection"))]
    InjectPanic,
    /// Run actors for the owned ones of `all` (every partition of the cluster) and stop
    /// the others.
    Place {
        /// Every partition.
        all: Vec<TopicPartition>,
        /// Answered with the partitions that failed to start.
        reply: oneshot::Sender<Vec<(TopicPartition, String)>>,
    },
    /// Stop the actors of these partitions.
    Remove {
        /// Partitions.
        tps: Vec<TopicPartition>,
        /// Answered when they are stopped.
        reply: oneshot::Sender<()>,
    },
}

// Local only: never sent to another node.
impl ractor::Message for ManagerMsg {}

/// Arguments of the [`PartitionManager`].
#[derive(Debug, Clone)]
pub struct ManagerArgs {
    /// This node.
    pub node_id: i32,
    /// Metadata store.
    pub store: SharedMetadataStore,
    /// Where partition actors are published.
    pub partitions: PartitionRegistry,
    /// Commit target of the partition actors.
    pub index_writer: Arc<ActorSlot<IndexMsg>>,
    /// Recent coordinates kept per partition.
    pub recent_batches_max: usize,
    /// Failures of one partition per minute before escalating.
    pub max_restarts: u32,
    /// Labels for the actor tree listing.
    pub directory: ActorDirectory,
    /// The live set, which decides what this node owns.
    pub live: watch::Receiver<Arc<LiveSet>>,
}

/// State of the manager.
pub struct ManagerState {
    args: ManagerArgs,
    children: HashMap<ActorId, TopicPartition>,
    offsets: HashMap<TopicPartition, Arc<watch::Sender<PartitionOffsets>>>,
    restarts: RestartBudget<TopicPartition>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct PartitionManager;

impl ManagerState {
    async fn start(
        &mut self,
        myself: &ActorRef<ManagerMsg>,
        tp: TopicPartition,
    ) -> Result<(), String> {
        let sender = self
            .offsets
            .entry(tp)
            .or_insert_with(|| Arc::new(watch::channel(PartitionOffsets::default()).0))
            .clone();
        let args = PartitionArgs {
            tp,
            node_id: self.args.node_id,
            store: self.args.store.clone(),
            index_writer: self.args.index_writer.clone(),
            offsets: sender.clone(),
            published: self.args.partitions.publish_signal(),
            recent_batches_max: self.args.recent_batches_max,
        };
        let (actor, _) = Actor::spawn_linked(None, PartitionActor, args, myself.get_cell())
            .await
            .map_err(|e| e.to_string())?;
        self.children.insert(actor.get_id(), tp);
        self.args.directory.started(
            actor.get_id(),
            "partition",
            format!("partition/{}/{}", tp.topic_id, tp.partition),
        );
        self.args.partitions.insert(
            tp,
            PartitionHandle {
                actor,
                offsets: sender.subscribe(),
            },
        );
        Ok(())
    }

    /// Stops the actors of `tps`: each finishes its in-flight commits first, and new
    /// appends find it gone from the registry.
    async fn stop_all(&mut self, tps: &[TopicPartition]) {
        let mut stopping = Vec::new();
        for tp in tps {
            let Some(h) = self.args.partitions.remove(tp) else {
                continue;
            };
            self.children.remove(&h.actor.get_id());
            self.args.directory.stopped(h.actor.get_id(), false);
            self.offsets.remove(tp);
            self.restarts.forget(tp);
            if h.actor.post(PartitionMsg::Drain).is_err() {
                h.actor.stop(Some("removed".into()));
            }
            stopping.push(h.actor);
        }
        // Wait until they are gone, so a re-created topic or a new owner never sees them.
        for actor in stopping {
            let gone = tokio::time::timeout(DRAIN_TIMEOUT, async {
                while actor.get_status() != ractor::ActorStatus::Stopped {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            if gone.is_err() {
                tracing::warn!(actor = %actor.get_id(), "partition did not drain in time; stopping it");
                actor.stop(Some("drain timed out".into()));
            }
        }
    }

    async fn ensure(
        &mut self,
        myself: &ActorRef<ManagerMsg>,
        tps: Vec<TopicPartition>,
    ) -> Vec<(TopicPartition, String)> {
        let live = self.args.live.borrow().clone();
        let mut failed = Vec::new();
        for tp in tps {
            if !live.owns_partition(&tp) || self.args.partitions.contains(&tp) {
                continue;
            }
            if let Err(e) = self.start(myself, tp).await {
                tracing::error!(?tp, error = %e, "partition actor failed to start");
                failed.push((tp, e));
            }
        }
        failed
    }
}

impl Actor for PartitionManager {
    type Msg = ManagerMsg;
    type State = ManagerState;
    type Arguments = ManagerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ManagerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = ManagerState {
            restarts: RestartBudget::new(args.max_restarts),
            args,
            children: HashMap::new(),
            offsets: HashMap::new(),
        };
        // After a restart of the manager its old children are gone (they were linked to the
        // previous instance): take over every partition the registry still lists.
        let owned = state.args.partitions.partitions();
        for tp in &owned {
            state.args.partitions.remove(tp);
        }
        let live = state.args.live.borrow().clone();
        let owned: Vec<TopicPartition> = owned
            .into_iter()
            .filter(|tp| live.owns_partition(tp))
            .collect();
        for tp in owned {
            if let Err(e) = state.start(&myself, tp).await {
                tracing::error!(?tp, error = %e, "partition actor failed to start; retrying");
                myself.post_after(RESTART_RETRY, move || ManagerMsg::Restart(tp));
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::mailbox::taken(&myself);
        match msg {
            ManagerMsg::Ensure { tps, reply } => {
                let _ = reply.send(state.ensure(&myself, tps).await);
            }
            ManagerMsg::Place { all, reply } => {
                let live = state.args.live.borrow().clone();
                let owned: HashSet<TopicPartition> = all
                    .into_iter()
                    .filter(|tp| live.owns_partition(tp))
                    .collect();
                let lost: Vec<TopicPartition> = state
                    .args
                    .partitions
                    .partitions()
                    .into_iter()
                    .filter(|tp| !owned.contains(tp))
                    .collect();
                if !lost.is_empty() {
                    tracing::info!(partitions = lost.len(), "handing off partitions");
                }
                state.stop_all(&lost).await;
                let _ = reply.send(state.ensure(&myself, owned.into_iter().collect()).await);
            }
            #[cfg(any(test, feature = "fault-injection"))]
            ManagerMsg::InjectPanic => panic!("injected panic in partition manager"),
            ManagerMsg::Restart(tp) => {
                if !state.args.partitions.contains(&tp)
                    && state.offsets.contains_key(&tp)
                    && state.args.live.borrow().owns_partition(&tp)
                {
                    if let Err(e) = state.start(&myself, tp).await {
                        tracing::error!(?tp, error = %e, "partition actor restart failed; retrying");
                        myself.post_after(RESTART_RETRY, move || ManagerMsg::Restart(tp));
                    }
                }
            }
            ManagerMsg::Remove { tps, reply } => {
                state.stop_all(&tps).await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(tp) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                state.args.directory.stopped(cell.get_id(), true);
                let budget = state.restarts.record(tp);
                let count = budget.unwrap_or_else(|n| n);
                tracing::warn!(?tp, error = %err, restarts = count, "partition actor failed; restarting");
                state.args.partitions.remove(&tp);
                if !state.args.live.borrow().owns_partition(&tp) {
                    state.offsets.remove(&tp);
                    return Ok(());
                }
                if budget.is_err() {
                    return Err(
                        format!("partition {tp:?} failed {count} times within a minute").into(),
                    );
                }
                if let Err(e) = state.start(&myself, tp).await {
                    tracing::error!(?tp, error = %e, "partition actor restart failed; retrying");
                    myself.post_after(RESTART_RETRY, move || ManagerMsg::Restart(tp));
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(tp) = state.children.remove(&cell.get_id()) {
                    state.args.directory.stopped(cell.get_id(), false);
                    tracing::info!(?tp, ?reason, "partition actor stopped");
                    if state
                        .args
                        .partitions
                        .get(&tp)
                        .is_some_and(|h| h.actor.get_id() == cell.get_id())
                    {
                        state.args.partitions.remove(&tp);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
