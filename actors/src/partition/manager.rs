//! PartitionManager: starts, supervises and stops the PartitionActors of this node.
//!
//! Takes [`ManagerMsg::Ensure`] (start actors for these partitions if this node owns them
//! and they are not running), [`ManagerMsg::Place`] (run exactly the owned ones of all
//! partitions) and [`ManagerMsg::Remove`] (stop them, e.g. after a topic is deleted).
//! Ownership is the placement of the current live set ([`LiveSet`]), and the metadata store
//! must agree: an actor claims its partition when it starts, which succeeds only when the
//! partition is free or held under an expired lease (see [`inkless_storage::metadata`]); a
//! refused start is retried with backoff until the previous owner has released it. A
//! partition that moves away is drained (its in-flight commits finish) before its actor
//! stops, then released in the store so that its new owner may claim it. Actors claimed
//! under an older lease generation are stopped without a release: they were taken over.
//! Every placement also releases what the store says this node holds but does not run
//! (a claim whose answer was lost, an actor that failed after its partition moved), so no
//! partition stays held by a node that does not serve it. When a PartitionActor
//! fails (panic or commit failure) the manager restarts it, which reloads its state from the
//! metadata store; more than `max_restarts` failures of one partition within a minute
//! escalate: the manager fails and the NodeSupervisor decides.

use crate::cluster::gateway::{self, Request};
use crate::cluster::placement::LiveSet;
use crate::partition::actor::{PartitionActor, PartitionArgs, PartitionMsg, PartitionOffsets};
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::tree::registry::{
    ActorDirectory, ActorSlot, PartitionHandle, PartitionRegistry, RestartBudget,
};
use crate::write::index_writer::IndexMsg;
use crate::TopicPartition;
use inkless_storage::metadata::{PartitionKey, SharedMetadataStore};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// Longest wait for the partitions that move away to finish their in-flight commits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// First delay before retrying a partition whose start failed (e.g. not released yet).
const RESTART_RETRY_FIRST: Duration = Duration::from_millis(100);
/// How long a release notice to a new owner may take.
const RELEASE_NOTICE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest delay between retries of a partition's start.
const RESTART_RETRY_MAX: Duration = Duration::from_secs(2);

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
    /// Its mailbox count (see [`crate::tree::mailbox`]).
    pub queued: QueueCount,
    /// Metadata store.
    pub store: SharedMetadataStore,
    /// Where partition actors are published.
    pub partitions: PartitionRegistry,
    /// Commit target of the partition actors.
    pub index_writer: Arc<ActorSlot<IndexMsg>>,
    /// Appends the index writer may hold before partitions refuse more.
    pub max_pending_commits: u64,
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
    me: Mailbox<ManagerMsg>,
    args: ManagerArgs,
    children: HashMap<ActorId, TopicPartition>,
    offsets: HashMap<TopicPartition, Arc<watch::Sender<PartitionOffsets>>>,
    restarts: RestartBudget<TopicPartition>,
    /// Failed starts in a row, per partition, for the retry backoff.
    retries: HashMap<TopicPartition, u32>,
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
        let claimant = self.args.partitions.guard().claimant();
        let queued = QueueCount::default();
        let args = PartitionArgs {
            queued: queued.clone(),
            tp,
            claimant,
            store: self.args.store.clone(),
            index_writer: self.args.index_writer.clone(),
            max_pending_commits: self.args.max_pending_commits,
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
            queued.clone(),
        );
        self.args.partitions.insert(
            tp,
            PartitionHandle {
                actor: Mailbox::new(actor, queued),
                offsets: sender.subscribe(),
                generation: claimant.lease_generation.unwrap_or(0),
            },
        );
        self.retries.remove(&tp);
        Ok(())
    }

    /// Starts `tp`, or schedules another try with backoff if that fails.
    async fn start_or_retry(
        &mut self,
        myself: &ActorRef<ManagerMsg>,
        tp: TopicPartition,
    ) -> Result<(), String> {
        let r = self.start(myself, tp).await;
        if let Err(e) = &r {
            let n = self.retries.entry(tp).or_insert(0);
            *n += 1;
            let delay = (RESTART_RETRY_FIRST * 2u32.saturating_pow(*n - 1)).min(RESTART_RETRY_MAX);
            tracing::debug!(?tp, error = %e, attempt = *n, ?delay, "partition actor did not start; retrying");
            self.me.post_after(delay, move || ManagerMsg::Restart(tp));
        }
        r
    }

    /// Gives up partitions in the store (cluster mode), so that their new owner may claim
    /// them at once instead of waiting for this node's lease to expire.
    async fn release(&self, tps: Vec<PartitionKey>) {
        let claimant = self.args.partitions.guard().claimant();
        if claimant.lease_generation.is_none() || tps.is_empty() {
            return;
        }
        match self.args.store.release_partitions(claimant, tps).await {
            Ok(n) => tracing::debug!(released = n, "partitions released"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release partitions; they free up when this lease expires")
            }
        }
    }

    /// Releases what the store says this node holds but does not run.
    async fn release_strays(&self) {
        let claimant = self.args.partitions.guard().claimant();
        if claimant.lease_generation.is_none() {
            return;
        }
        match self.args.store.owned_partitions(claimant).await {
            Ok(held) => {
                let strays: Vec<PartitionKey> = held
                    .into_iter()
                    .filter(|(topic_id, partition)| {
                        !self.args.partitions.runs(&TopicPartition {
                            topic_id: *topic_id,
                            partition: *partition,
                        })
                    })
                    .collect();
                if !strays.is_empty() {
                    tracing::info!(
                        partitions = strays.len(),
                        "releasing partitions held but not run"
                    );
                    self.release(strays).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not list held partitions"),
        }
    }

    /// Stops the actors of `tps`: each finishes its in-flight commits first, and new
    /// appends find it gone from the registry.
    async fn stop_all(&mut self, tps: &[TopicPartition]) {
        let mut stopping = Vec::new();
        for tp in tps {
            let Some(h) = self.args.partitions.remove(tp) else {
                continue;
            };
            self.children.remove(&h.actor.id());
            self.args.directory.stopped(h.actor.id(), false);
            self.offsets.remove(tp);
            self.restarts.forget(tp);
            if h.actor.post(PartitionMsg::Drain).is_err() {
                h.actor.actor().stop(Some("removed".into()));
            }
            stopping.push(h.actor.actor().clone());
        }
        // Wait until they are gone (all together, one deadline), so a re-created topic or a
        // new owner never sees them.
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        futures::future::join_all(stopping.into_iter().map(|actor| async move {
            let gone = tokio::time::timeout_at(deadline, async {
                while actor.get_status() != ractor::ActorStatus::Stopped {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            if gone.is_err() {
                tracing::warn!(actor = %actor.get_id(), "partition did not drain in time; stopping it");
                actor.stop(Some("drain timed out".into()));
            }
        }))
        .await;
    }

    async fn ensure(
        &mut self,
        myself: &ActorRef<ManagerMsg>,
        tps: Vec<TopicPartition>,
    ) -> Vec<(TopicPartition, String)> {
        let live = self.args.live.borrow().clone();
        let mut failed = Vec::new();
        for tp in tps {
            if !live.owns_partition(&tp) || self.args.partitions.runs(&tp) {
                continue;
            }
            if let Err(e) = self.start_or_retry(myself, tp).await {
                failed.push((tp, e));
            }
        }
        failed
    }

    /// Runs exactly the owned ones of `all`: stops (draining, then releasing) those that
    /// moved away, stops those of an older lease generation, starts the missing ones.
    async fn place(
        &mut self,
        myself: &ActorRef<ManagerMsg>,
        all: Vec<TopicPartition>,
    ) -> Vec<(TopicPartition, String)> {
        let live = self.args.live.borrow().clone();
        let generation = self.args.partitions.guard().generation();
        let owned: HashSet<TopicPartition> = all
            .into_iter()
            .filter(|tp| live.owns_partition(tp))
            .collect();
        let mut moved = Vec::new();
        let mut taken_over = Vec::new();
        for tp in self.args.partitions.partitions() {
            let stale = self
                .args
                .partitions
                .running(&tp)
                .is_some_and(|h| h.generation != generation);
            if stale {
                taken_over.push(tp);
            } else if !owned.contains(&tp) {
                moved.push(tp);
            }
        }
        if !taken_over.is_empty() {
            tracing::warn!(
                partitions = taken_over.len(),
                "stopping partitions held under an older lease generation"
            );
        }
        if !moved.is_empty() {
            tracing::info!(partitions = moved.len(), "handing off partitions");
        }
        taken_over.extend(moved.iter().copied());
        self.stop_all(&taken_over).await;
        if live.me_live {
            self.release(moved.iter().map(|tp| (tp.topic_id, tp.partition)).collect())
                .await;
            tell_new_owners(&live, moved);
        }
        let failed = self.ensure(myself, owned.into_iter().collect()).await;
        if live.me_live {
            self.release_strays().await;
        }
        failed
    }
}

/// Tells each new owner which of its partitions were just released, so it claims them now
/// instead of at its next retry (best effort: the retry gets there anyway).
fn tell_new_owners(live: &LiveSet, released: Vec<TopicPartition>) {
    let mut by_owner: HashMap<i32, Vec<TopicPartition>> = HashMap::new();
    for tp in released {
        if let Some(owner) = live.partition_owner(&tp).filter(|o| *o != live.me) {
            by_owner.entry(owner).or_default().push(tp);
        }
    }
    for (owner, tps) in by_owner {
        let sent = gateway::send(owner, &Request::Released(tps), RELEASE_NOTICE_TIMEOUT);
        match sent {
            Ok(answer) => {
                tokio::spawn(answer);
            }
            Err(e) => tracing::debug!(owner, error = %e, "could not tell the new owner"),
        }
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
            me: Mailbox::new(myself.clone(), args.queued.clone()),
            restarts: RestartBudget::new(args.max_restarts),
            args,
            children: HashMap::new(),
            offsets: HashMap::new(),
            retries: HashMap::new(),
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
            let _ = state.start_or_retry(&myself, tp).await;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.me.taken();
        match msg {
            ManagerMsg::Ensure { tps, reply } => {
                let _ = reply.send(state.ensure(&myself, tps).await);
            }
            ManagerMsg::Place { all, reply } => {
                let _ = reply.send(state.place(&myself, all).await);
            }
            #[cfg(any(test, feature = "fault-injection"))]
            ManagerMsg::InjectPanic => panic!("injected panic in partition manager"),
            ManagerMsg::Restart(tp) => {
                if !state.args.partitions.runs(&tp)
                    && state.offsets.contains_key(&tp)
                    && state.args.live.borrow().owns_partition(&tp)
                {
                    let _ = state.start_or_retry(&myself, tp).await;
                } else {
                    state.retries.remove(&tp);
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
                    state.release(vec![(tp.topic_id, tp.partition)]).await;
                    return Ok(());
                }
                if budget.is_err() {
                    return Err(
                        format!("partition {tp:?} failed {count} times within a minute").into(),
                    );
                }
                let _ = state.start_or_retry(&myself, tp).await;
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(tp) = state.children.remove(&cell.get_id()) {
                    state.args.directory.stopped(cell.get_id(), false);
                    tracing::info!(?tp, ?reason, "partition actor stopped");
                    if state
                        .args
                        .partitions
                        .running(&tp)
                        .is_some_and(|h| h.actor.id() == cell.get_id())
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
