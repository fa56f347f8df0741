//! PartitionManager: claims the partitions of this node, starts, supervises, puts to sleep
//! and stops their PartitionActors.
//!
//! Takes [`ManagerMsg::Ensure`] (claim these partitions if this node owns them and does not
//! hold them), [`ManagerMsg::Place`] (hold exactly the owned ones of all partitions) and
//! [`ManagerMsg::Remove`] (stop them, e.g. after a topic is deleted).
//! Ownership is the placement of the current live set ([`LiveSet`]), and the metadata store
//! must agree: the manager claims the partitions it holds, in batches of [`CLAIM_BATCH`]
//! (one transaction each), and each claim succeeds only when the partition is free or held
//! under an expired lease (see [`inkless_storage::metadata`]); those refused are retried
//! together, with backoff, until the previous owner has released them (its notice,
//! [`ManagerMsg::Released`], makes that at once).
//!
//! A claimed partition is held *dormant*, without an actor (ADR 0024): the registry keeps
//! its epoch and publishes the offsets its claim read. The first message for it wakes it
//! ([`ManagerMsg::Wake`]): the manager reloads the waking partitions from the store, in
//! batches (checking that this node still holds them; the owner epoch stays), and starts
//! each actor from the state it read. An actor without a message for
//! `idle_stop` is drained and stopped, and its partition is dormant again
//! ([`ManagerMsg::SleepIdle`]). Partitions that move away are all drained
//! at once (their in-flight commits finish) within one [`DRAIN_TIMEOUT`], then released in
//! the store in batches so that their new owner may claim them. Actors claimed under an
//! older lease generation are stopped without a release: they were taken over. Every
//! placement also releases what the store says this node holds but does not run (a claim
//! whose answer was lost, an actor that failed after its partition moved), so no partition
//! stays held by a node that does not serve it. When a PartitionActor fails (panic or commit
//! failure) the manager claims its partition again (allowed: it is still this node's under
//! the same lease generation) and restarts it from the state that claim read; more than
//! `max_restarts` failures of one partition within a minute escalate: the manager fails and
//! the NodeSupervisor decides.
//!
//! Ensure and Place answer with exactly the owned partitions that do not run afterwards,
//! each with why ([`StartError`]).

use crate::cluster::gateway::Request;
use crate::cluster::peers::Peers;
use crate::cluster::placement::{HashedOwners, LiveSet};
use crate::partition::actor::{
    PartitionActor, PartitionArgs, PartitionMsg, PartitionOffsets, PartitionStart,
};
use crate::partition::error::StartError;
use crate::partition::registry::{PartitionHandle, PartitionRegistry};
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::tree::registry::{ActorDirectory, ActorSlot, RestartBudget};
use crate::write::index_writer::IndexMsg;
use crate::TopicPartition;
use inkless_storage::metadata::{
    ClaimMode, Claimant, PartitionKey, PartitionState, SharedMetadataStore,
};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// Longest wait for all the partitions that move away to finish their in-flight commits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Partitions claimed, or released, in one metadata transaction.
pub(crate) const CLAIM_BATCH: usize = 500;
/// First delay before retrying a partition whose start failed (e.g. not released yet).
const RESTART_RETRY_FIRST: Duration = Duration::from_millis(100);
/// How long a release notice to a new owner may take.
const RELEASE_NOTICE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest delay between retries of a partition's start.
const RESTART_RETRY_MAX: Duration = Duration::from_secs(2);

/// Owned partitions that did not start, each with why.
pub type StartFailures = Vec<(TopicPartition, StartError)>;

/// Messages of the [`PartitionManager`].
#[derive(Debug)]
pub enum ManagerMsg {
    /// Make sure these partitions have running actors; answers when they do.
    Ensure {
        /// Partitions.
        tps: Vec<TopicPartition>,
        /// Answered with the owned partitions that did not start, and why.
        reply: oneshot::Sender<StartFailures>,
    },
    /// Retry the starts that are due (the manager's own backoff timer).
    RetryDue,
    /// Dormant partitions got messages: start their actors.
    Wake,
    /// Put the actors idle for `idle_stop` to sleep (the manager's own timer).
    SleepIdle,
    /// Their previous owner released these partitions: claim the owned ones now.
    Released(Vec<TopicPartition>),
    /// Panics inside the manager (fault-injection tests only).
    #[cfg(any(test, feature = "fault-injection"))]
    InjectPanic,
    /// Run actors for the owned ones of `all` (every partition of the cluster) and stop
    /// the others.
    Place {
        /// Every partition.
        all: Vec<TopicPartition>,
        /// Answered with the owned partitions that did not start, and why.
        reply: oneshot::Sender<StartFailures>,
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
    /// Idempotent-producer state idle this long is expired.
    pub producer_id_expiration: Duration,
    /// Failures of one partition per minute before escalating.
    pub max_restarts: u32,
    /// Labels for the actor tree listing.
    pub directory: ActorDirectory,
    /// The live set, which decides what this node owns.
    pub live: watch::Receiver<Arc<LiveSet>>,
    /// A partition actor without a message this long goes dormant (`None`: never).
    pub idle_stop: Option<Duration>,
    /// Tells new owners of released partitions.
    pub peers: Peers,
}

/// The backoff of a partition whose start failed.
#[derive(Debug, Clone, Copy)]
struct Retry {
    /// Failed starts in a row.
    attempts: u32,
    /// When to try again.
    due: Instant,
}

/// State of the manager.
pub struct ManagerState {
    me: Mailbox<ManagerMsg>,
    args: ManagerArgs,
    children: HashMap<ActorId, TopicPartition>,
    offsets: HashMap<TopicPartition, Arc<watch::Sender<PartitionOffsets>>>,
    restarts: RestartBudget<TopicPartition>,
    /// Owned partitions whose start failed, retried together when due.
    retries: HashMap<TopicPartition, Retry>,
    /// When the pending [`ManagerMsg::RetryDue`] arrives, if one is pending.
    retry_timer: Option<Instant>,
    /// Rendezvous winners kept across placements: a placement after a membership change
    /// hashes in proportion to the change, not to every partition times every node.
    hashed: HashedOwners,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct PartitionManager;

/// The keys of `tps` in the store.
fn keys(tps: &[TopicPartition]) -> Vec<PartitionKey> {
    tps.iter().map(|tp| (tp.topic_id, tp.partition)).collect()
}

impl ManagerState {
    /// Claims (or, in [`ClaimMode::Reload`], reloads) `tps` for `claimant`, [`CLAIM_BATCH`]
    /// partitions per transaction; one outcome per partition, in order.
    async fn claim(
        &self,
        claimant: Claimant,
        tps: &[TopicPartition],
        mode: ClaimMode,
    ) -> Vec<Result<PartitionState, StartError>> {
        let mut out = Vec::with_capacity(tps.len());
        for chunk in tps.chunks(CLAIM_BATCH) {
            if let Some(Err(e @ StartError::LeaseLost { .. })) = out.last() {
                // The lease does not come back within one placement: claim nothing more.
                let e = e.clone();
                out.extend(chunk.iter().map(|_| Err(e.clone())));
                continue;
            }
            let store = &self.args.store;
            let claimed = match mode {
                ClaimMode::Take => store.claim_partitions(claimant, keys(chunk)).await,
                ClaimMode::Reload => store.reload_partitions(claimant, keys(chunk)).await,
            };
            match claimed {
                Ok(results) if results.len() == chunk.len() => {
                    out.extend(results.into_iter().map(|r| r.map_err(StartError::from)));
                }
                Ok(results) => {
                    let e = StartError::Store(format!(
                        "{} outcomes for {} claims",
                        results.len(),
                        chunk.len()
                    ));
                    out.extend(chunk.iter().map(|_| Err(e.clone())));
                }
                Err(e) => {
                    let e = StartError::from(e);
                    out.extend(chunk.iter().map(|_| Err(e.clone())));
                }
            }
        }
        out
    }

    /// The sender of `tp`'s published offsets, which outlives its actors.
    fn offsets_sender(&mut self, tp: TopicPartition) -> Arc<watch::Sender<PartitionOffsets>> {
        self.offsets
            .entry(tp)
            .or_insert_with(|| Arc::new(watch::channel(PartitionOffsets::default()).0))
            .clone()
    }

    /// Holds `tp`, claimed under lease `generation` with state `claimed`, dormant: its
    /// offsets are published (the caller raises the publish signal once for a batch), its
    /// actor starts on the first message.
    fn hold_dormant(&mut self, tp: TopicPartition, generation: i64, claimed: &PartitionState) {
        let sender = self.offsets_sender(tp);
        sender.send_replace(PartitionOffsets::claimed(claimed));
        self.args.partitions.insert_dormant(
            tp,
            sender.subscribe(),
            generation,
            claimed.owner_epoch,
        );
    }

    /// Starts the actor of `tp`, claimed under lease `generation` with state `claimed`.
    async fn spawn(
        &mut self,
        myself: &ActorRef<ManagerMsg>,
        tp: TopicPartition,
        generation: i64,
        claimed: PartitionState,
    ) -> Result<PartitionHandle, StartError> {
        let sender = self.offsets_sender(tp);
        let queued = QueueCount::default();
        let owner_epoch = claimed.owner_epoch;
        let start = PartitionStart {
            claimed,
            args: PartitionArgs {
                queued: queued.clone(),
                tp,
                store: self.args.store.clone(),
                index_writer: self.args.index_writer.clone(),
                max_pending_commits: self.args.max_pending_commits,
                offsets: sender.clone(),
                published: self.args.partitions.publish_signal(),
                recent_batches_max: self.args.recent_batches_max,
                producer_expiration_ms: self
                    .args
                    .producer_id_expiration
                    .as_millis()
                    .min(i64::MAX as u128) as i64,
            },
        };
        let (actor, _) = Actor::spawn_linked(None, PartitionActor, start, myself.get_cell())
            .await
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        self.children.insert(actor.get_id(), tp);
        self.args.directory.started(
            actor.get_id(),
            "partition",
            format!("partition/{}/{}", tp.topic_id, tp.partition),
            queued.clone(),
        );
        Ok(PartitionHandle {
            actor: Mailbox::new(actor, queued),
            offsets: sender.subscribe(),
            generation,
            owner_epoch,
        })
    }

    /// Holds `tps` (distinct, owned, none held): claims them in batches and holds each
    /// claimed one dormant. Returns those that are not held, and why; they are retried with
    /// backoff (except a partition the store does not know).
    async fn start_all(&mut self, tps: Vec<TopicPartition>) -> StartFailures {
        if tps.is_empty() {
            return Vec::new();
        }
        let claimant = self.args.partitions.guard().claimant();
        let generation = claimant.lease_generation.unwrap_or(0);
        let claims = self.claim(claimant, &tps, ClaimMode::Take).await;
        let mut failed = Vec::new();
        for (tp, claim) in tps.into_iter().zip(claims) {
            let started = claim.map(|claimed| self.hold_dormant(tp, generation, &claimed));
            match started {
                Ok(()) => {
                    self.retries.remove(&tp);
                }
                Err(StartError::UnknownPartition) => {
                    self.retries.remove(&tp);
                    failed.push((tp, StartError::UnknownPartition));
                }
                Err(e) => {
                    self.retry_later(tp);
                    failed.push((tp, e));
                }
            }
        }
        // Readers of many partitions wait on one signal: once for the whole batch.
        self.args.partitions.publish_signal().notify();
        if let Some((tp, error)) = failed.first() {
            tracing::debug!(failed = failed.len(), first = ?tp, %error, "partitions did not start; retrying");
        }
        self.schedule_retries();
        failed
    }

    /// Backs off `tp`'s next start.
    fn retry_later(&mut self, tp: TopicPartition) {
        let now = Instant::now();
        let r = self.retries.entry(tp).or_insert(Retry {
            attempts: 0,
            due: now,
        });
        r.attempts = r.attempts.saturating_add(1);
        let delay =
            (RESTART_RETRY_FIRST * 2u32.saturating_pow(r.attempts - 1)).min(RESTART_RETRY_MAX);
        r.due = now + delay;
    }

    /// Makes sure a [`ManagerMsg::RetryDue`] arrives when the earliest retry is due.
    fn schedule_retries(&mut self) {
        let Some(next) = self.retries.values().map(|r| r.due).min() else {
            return;
        };
        if self.retry_timer.is_some_and(|t| t <= next) {
            return;
        }
        self.retry_timer = Some(next);
        self.me
            .post_after(next.saturating_duration_since(Instant::now()), || {
                ManagerMsg::RetryDue
            });
    }

    /// Starts the retries that are due, of partitions this node still owns and does not
    /// run; forgets the others.
    async fn retry_due(&mut self) {
        let now = Instant::now();
        if self.retry_timer.is_some_and(|t| t <= now) {
            self.retry_timer = None;
        }
        let live = self.args.live.borrow().clone();
        let partitions = &self.args.partitions;
        let mut due = Vec::new();
        self.retries.retain(|tp, r| {
            let wanted = live.owns_partition(tp) && !partitions.runs(tp);
            if wanted && r.due <= now {
                due.push(*tp);
            }
            wanted
        });
        self.start_all(due).await;
        self.schedule_retries();
    }

    /// Their previous owner released `tps`: starts at once those this node is retrying.
    async fn released(&mut self, tps: Vec<TopicPartition>) {
        let live = self.args.live.borrow().clone();
        let now: Vec<TopicPartition> = tps
            .into_iter()
            .filter(|tp| {
                self.retries.contains_key(tp)
                    && live.owns_partition(tp)
                    && !self.args.partitions.runs(tp)
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        self.start_all(now).await;
    }

    /// Gives up partitions in the store (cluster mode), [`CLAIM_BATCH`] per transaction, so
    /// that their new owner may claim them at once instead of waiting for this node's lease
    /// to expire.
    async fn release(&self, tps: Vec<PartitionKey>) {
        let claimant = self.args.partitions.guard().claimant();
        if claimant.lease_generation.is_none() || tps.is_empty() {
            return;
        }
        let mut released = 0;
        for chunk in tps.chunks(CLAIM_BATCH) {
            match self
                .args
                .store
                .release_partitions(claimant, chunk.to_vec())
                .await
            {
                Ok(n) => released += n,
                Err(e) => tracing::warn!(
                    partitions = chunk.len(),
                    error = %e,
                    "could not release partitions; they free up when this lease expires"
                ),
            }
        }
        tracing::debug!(released, "partitions released");
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

    /// Stops the partitions `tps` (they move away or are deleted): forgets them, and the
    /// awake ones are drained (see [`drain_all`]).
    async fn stop_all(&mut self, tps: &[TopicPartition]) {
        let mut stopping = Vec::new();
        for tp in tps {
            self.retries.remove(tp);
            self.offsets.remove(tp);
            let Some(awake) = self.args.partitions.remove(tp) else {
                continue;
            };
            self.restarts.forget(tp);
            if let Some(actor) = awake {
                self.children.remove(&actor.id());
                self.args.directory.stopped(actor.id(), false);
                stopping.push(actor);
            }
        }
        drain_all(stopping).await;
    }

    /// Wakes the partitions that got a message while dormant: reloads them (in batches) and
    /// starts each actor from what it read; the messages that waited go to it first. A
    /// partition that cannot be reloaded is no longer held (its messages are dropped, so
    /// their senders see it gone) and is claimed again like a failed start.
    async fn wake(&mut self, myself: &ActorRef<ManagerMsg>) {
        let live = self.args.live.borrow().clone();
        let mut tps = Vec::new();
        for tp in self.args.partitions.waking() {
            if live.owns_partition(&tp) {
                tps.push(tp);
            } else {
                // Moving away: the next placement releases it.
                self.args.partitions.remove(&tp);
            }
        }
        if tps.is_empty() {
            return;
        }
        let claimant = self.args.partitions.guard().claimant();
        let generation = claimant.lease_generation.unwrap_or(0);
        // Nothing of an earlier actor is in flight (it drained before the partition went
        // dormant, or was claimed anew), so the owner epoch, Kafka's leader epoch, stays.
        let claims = self.claim(claimant, &tps, ClaimMode::Reload).await;
        let mut failed = 0;
        for (tp, claim) in tps.into_iter().zip(claims) {
            let started = match claim {
                Ok(claimed) => self.spawn(myself, tp, generation, claimed).await,
                Err(e) => Err(e),
            };
            match started {
                Ok(handle) => {
                    let actor = handle.actor.clone();
                    if !self.args.partitions.awaken(tp, handle) {
                        // Removed while it started (a topic deleted meanwhile).
                        self.children.remove(&actor.id());
                        self.args.directory.stopped(actor.id(), false);
                        drain_all(vec![actor]).await;
                    }
                }
                Err(e) => {
                    failed += 1;
                    tracing::debug!(?tp, error = %e, "partition did not wake");
                    self.args.partitions.remove(&tp);
                    if e != StartError::UnknownPartition {
                        self.retry_later(tp);
                    }
                }
            }
        }
        if failed > 0 {
            tracing::info!(failed, "partitions did not wake; retrying");
            self.schedule_retries();
        }
    }

    /// Puts the actors without a message for `idle_stop` to sleep: their partitions are
    /// dormant (a message wakes them), and the actors drain and stop.
    async fn sleep_idle(&mut self) {
        let Some(idle) = self.args.idle_stop else {
            return;
        };
        let asleep = self.args.partitions.put_to_sleep(idle);
        if asleep.is_empty() {
            return;
        }
        tracing::debug!(partitions = asleep.len(), "idle partitions going dormant");
        let by_actor: HashMap<ActorId, TopicPartition> =
            asleep.iter().map(|(tp, actor)| (actor.id(), *tp)).collect();
        // The supervision event of each stop forgets the child.
        let late = drain_all(asleep.into_iter().map(|(_, actor)| actor).collect()).await;
        // A commit of an actor stopped before it drained may still land: those partitions
        // are claimed anew (a new epoch fences it) instead of being reloaded when they wake.
        let live = self.args.live.borrow().clone();
        let mut fence = Vec::new();
        for tp in late.iter().filter_map(|id| by_actor.get(id)) {
            self.args.partitions.remove(tp);
            if live.owns_partition(tp) {
                fence.push(*tp);
            }
        }
        self.start_all(fence).await;
    }

    /// Holds the owned ones of `tps` that are not held.
    async fn ensure(&mut self, tps: Vec<TopicPartition>) -> StartFailures {
        let live = self.args.live.borrow().clone();
        let mut seen = HashSet::with_capacity(tps.len());
        let to_start: Vec<TopicPartition> = tps
            .into_iter()
            .filter(|tp| {
                live.owns_partition(tp) && !self.args.partitions.runs(tp) && seen.insert(*tp)
            })
            .collect();
        self.start_all(to_start).await
    }

    /// Holds exactly the owned ones of `all`: stops (draining, then releasing) those that
    /// moved away, stops those of an older lease generation, claims the missing ones.
    async fn place(&mut self, all: Vec<TopicPartition>) -> StartFailures {
        let live = self.args.live.borrow().clone();
        let generation = self.args.partitions.guard().generation();
        self.hashed.update(&live);
        self.hashed.retain(&all);
        let owned: HashSet<TopicPartition> = all
            .iter()
            .filter(|tp| self.hashed.owned_by_me(&live, tp))
            .copied()
            .collect();
        debug_assert!(
            all.iter()
                .all(|tp| owned.contains(tp) == live.owns_partition(tp)),
            "kept winners agree with a full placement"
        );
        self.retries.retain(|tp, _| owned.contains(tp));
        let mut moved = Vec::new();
        let mut taken_over = Vec::new();
        for tp in self.args.partitions.partitions() {
            let stale = self
                .args
                .partitions
                .generation(&tp)
                .is_some_and(|g| g != generation);
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
            self.release(keys(&moved)).await;
            tell_new_owners(&self.args.peers, &live, moved);
        }
        let failed = self.ensure(owned.into_iter().collect()).await;
        if live.me_live {
            self.release_strays().await;
        }
        failed
    }
}

/// Drains `actors` at once (each finishes its in-flight commits and stops; they get no new
/// message: they are no longer in the registry, or dormant there) and waits for them
/// together within one [`DRAIN_TIMEOUT`], so that a new owner, a re-created topic or the
/// next actor of the partition never sees them; those still running then are stopped, and
/// returned (what they had in flight may still commit).
async fn drain_all(actors: Vec<Mailbox<PartitionMsg>>) -> Vec<ActorId> {
    if actors.is_empty() {
        return Vec::new();
    }
    for actor in &actors {
        if actor.post(PartitionMsg::Drain).is_err() {
            actor.actor().stop(Some("removed".into()));
        }
    }
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    let gone = futures::future::join_all(
        actors
            .iter()
            .map(|actor| tokio::time::timeout_at(deadline, actor.actor().wait(None))),
    )
    .await;
    let mut late = Vec::new();
    for (actor, gone) in actors.iter().zip(gone) {
        if gone.is_err() {
            late.push(actor.id());
            actor.actor().stop(Some("drain timed out".into()));
        }
    }
    if !late.is_empty() {
        tracing::warn!(
            partitions = late.len(),
            timeout = ?DRAIN_TIMEOUT,
            "partitions did not drain in time; stopped them"
        );
    }
    late
}

/// Tells each new owner which of its partitions were just released, so it claims them now
/// instead of at its next retry (best effort: the retry gets there anyway).
fn tell_new_owners(peers: &Peers, live: &LiveSet, released: Vec<TopicPartition>) {
    let mut by_owner: HashMap<i32, Vec<TopicPartition>> = HashMap::new();
    for tp in released {
        if let Some(owner) = live.partition_owner(&tp).filter(|o| *o != live.me) {
            by_owner.entry(owner).or_default().push(tp);
        }
    }
    for (owner, tps) in by_owner {
        let sent = peers.send(owner, &Request::Released(tps), RELEASE_NOTICE_TIMEOUT);
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
            retry_timer: None,
            hashed: HashedOwners::default(),
        };
        state.args.partitions.set_waker(state.me.clone());
        if let Some(idle) = state.args.idle_stop {
            // Checked four times per idle period: an actor sleeps within 1.25 periods.
            state
                .me
                .post_interval((idle / 4).max(Duration::from_millis(100)), || {
                    ManagerMsg::SleepIdle
                });
        }
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
        state.start_all(owned).await;
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
                let _ = reply.send(state.ensure(tps).await);
            }
            ManagerMsg::Place { all, reply } => {
                let _ = reply.send(state.place(all).await);
            }
            ManagerMsg::Wake => state.wake(&myself).await,
            ManagerMsg::SleepIdle => state.sleep_idle().await,
            #[cfg(any(test, feature = "fault-injection"))]
            ManagerMsg::InjectPanic => panic!("injected panic in partition manager"),
            ManagerMsg::RetryDue => state.retry_due().await,
            ManagerMsg::Released(tps) => state.released(tps).await,
            ManagerMsg::Remove { tps, reply } => {
                state.stop_all(&tps).await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(tp) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                state.args.directory.stopped(cell.get_id(), true);
                if !state.args.partitions.remove_actor(&tp, cell.get_id()) {
                    // It was going to sleep: its partition is dormant, the next message
                    // claims it again.
                    tracing::warn!(?tp, error = %err, "partition actor failed while going dormant");
                    return Ok(());
                }
                let budget = state.restarts.record(tp);
                let count = budget.unwrap_or_else(|n| n);
                tracing::warn!(?tp, error = %err, restarts = count, "partition actor failed; restarting");
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
                // Claimed again (the new epoch fences what the failed actor left in flight)
                // and held dormant: the next message starts a new actor.
                state.start_all(vec![tp]).await;
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(tp) = state.children.remove(&cell.get_id()) {
                    state.args.directory.stopped(cell.get_id(), false);
                    tracing::debug!(?tp, ?reason, "partition actor stopped");
                    state.args.partitions.remove_actor(&tp, cell.get_id());
                }
            }
            _ => {}
        }
        Ok(())
    }
}
