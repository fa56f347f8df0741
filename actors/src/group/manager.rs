//! GroupManager: starts, supervises and finds the GroupCoordinators of this node.
//!
//! Takes [`GroupManagerMsg::Get`] (the coordinator of a group, started on demand: for a
//! JoinGroup, or for any request about a group the store knows),
//! [`GroupManagerMsg::List`] and [`GroupManagerMsg::Place`]. It runs coordinators only for
//! the groups this node owns by placement of the live set ([`LiveSet`]). On start, and on
//! every placement, it starts a coordinator for every owned group that has committed
//! offsets or stored membership, so they show up in ListGroups, their members carry on
//! (each coordinator loads its group, ADR 0020) and their offsets can expire; coordinators
//! of groups that moved away are stopped (their members rejoin at the new owner) and
//! released in the metadata store, so their new owner may claim them at once. A coordinator
//! claims its group when it starts, which fails while another node's live lease holds it
//! (clients get NOT_COORDINATOR and retry); coordinators started under an older lease
//! generation are stopped (they were taken over). Every placement also releases the groups
//! the store says this node holds but does not run.
//! A coordinator that fails is restarted (it reloads its group from the store);
//! more than `max_restarts` failures of one group within a minute escalate to the
//! NodeSupervisor. One that stops (deleted, offsets expired, moved) is forgotten.

use crate::cluster::lease::LeaseGuard;
use crate::cluster::placement::LiveSet;
use crate::group::consumer::SharedTopicLookup;
use crate::group::coordinator::{GroupArgs, GroupCoordinator, GroupLimits, GroupMsg};
use crate::group::handle::GroupMiss;
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::tree::registry::{ActorDirectory, RestartBudget};
use inkless_storage::metadata::SharedMetadataStore;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

/// Longest group id accepted.
const MAX_GROUP_ID_BYTES: usize = 255 * 4;

/// Messages of the [`GroupManager`].
#[derive(Debug)]
pub enum GroupManagerMsg {
    /// The coordinator of a group; started if not running and `create` or the store knows
    /// the group (stored members or offsets).
    Get {
        /// Group id.
        group_id: String,
        /// Start it if absent, known or not.
        create: bool,
        /// The coordinator, or why there is none.
        reply: oneshot::Sender<Result<Mailbox<GroupMsg>, GroupMiss>>,
    },
    /// Every running coordinator.
    List(oneshot::Sender<Vec<(String, Mailbox<GroupMsg>)>>),
    /// Apply the current live set: stop coordinators of groups owned elsewhere, start those
    /// of owned groups with committed offsets.
    Place(oneshot::Sender<()>),
}

// Local only: never sent to another node.
impl ractor::Message for GroupManagerMsg {}

/// Arguments of the [`GroupManager`].
#[derive(Debug, Clone)]
pub struct GroupManagerArgs {
    /// Its mailbox count (see [`crate::tree::mailbox`]).
    pub queued: QueueCount,
    /// Metadata store.
    pub store: SharedMetadataStore,
    /// Group settings.
    pub limits: GroupLimits,
    /// Topic names to ids (consumer protocol).
    pub topics: SharedTopicLookup,
    /// Labels for the actor tree listing.
    pub directory: ActorDirectory,
    /// The live set, which decides which groups this node coordinates.
    pub live: watch::Receiver<Arc<LiveSet>>,
    /// Failures of one group's coordinator per minute before escalating.
    pub max_restarts: u32,
    /// This node's lease: coordinators claim their groups under it.
    pub guard: LeaseGuard,
}

/// State of the manager.
pub struct GroupManagerState {
    me: Mailbox<GroupManagerMsg>,
    args: GroupManagerArgs,
    groups: BTreeMap<String, Mailbox<GroupMsg>>,
    by_actor: HashMap<ActorId, String>,
    restarts: RestartBudget<String>,
    /// The lease generation the running coordinators claimed their groups under.
    generation: i64,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct GroupManager;

impl GroupManagerState {
    async fn start(
        &mut self,
        myself: &ActorRef<GroupManagerMsg>,
        group_id: &str,
    ) -> Option<Mailbox<GroupMsg>> {
        if self.groups.is_empty() {
            self.generation = self.args.guard.generation();
        }
        let queued = QueueCount::default();
        let args = GroupArgs {
            queued: queued.clone(),
            group_id: group_id.to_string(),
            store: self.args.store.clone(),
            limits: self.args.limits.clone(),
            topics: self.args.topics.clone(),
            claimant: self.args.guard.claimant(),
        };
        match Actor::spawn_linked(None, GroupCoordinator, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.by_actor.insert(actor.get_id(), group_id.to_string());
                self.args.directory.started(
                    actor.get_id(),
                    "group",
                    format!("group/{group_id}"),
                    queued.clone(),
                );
                let actor = Mailbox::new(actor, queued);
                self.groups.insert(group_id.to_string(), actor.clone());
                Some(actor)
            }
            Err(e) => {
                tracing::info!(group = %group_id, error = %e, "group coordinator did not start");
                None
            }
        }
    }
}

impl GroupManagerState {
    /// The running coordinator of an owned group, else one started if `create` or the
    /// store knows the group (a coordinator loads what is stored when it starts).
    async fn get(
        &mut self,
        myself: &ActorRef<GroupManagerMsg>,
        group_id: &str,
        create: bool,
    ) -> Result<Mailbox<GroupMsg>, GroupMiss> {
        if !self.args.live.borrow().owns_group(group_id) {
            return Err(GroupMiss::Unavailable);
        }
        if let Some(a) = self.groups.get(group_id) {
            return Ok(a.clone());
        }
        if group_id.is_empty() || group_id.len() > MAX_GROUP_ID_BYTES {
            return Err(GroupMiss::Unknown);
        }
        if !create && !self.known(group_id).await? {
            return Err(GroupMiss::Unknown);
        }
        self.start(myself, group_id)
            .await
            .ok_or(GroupMiss::Unavailable)
    }

    /// True when the store holds members or offsets of the group.
    async fn known(&self, group_id: &str) -> Result<bool, GroupMiss> {
        let store = &self.args.store;
        let unavailable = |e| {
            tracing::warn!(group = %group_id, error = %e, "could not look the group up");
            GroupMiss::Unavailable
        };
        if store
            .load_group_state(group_id)
            .await
            .map_err(unavailable)?
            .is_some()
        {
            return Ok(true);
        }
        let offsets = store.fetch_offsets(group_id).await.map_err(unavailable)?;
        Ok(!offsets.is_empty())
    }

    async fn place(
        &mut self,
        myself: &ActorRef<GroupManagerMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let live = self.args.live.borrow().clone();
        if self.generation != self.args.guard.generation() {
            for (g, actor) in std::mem::take(&mut self.groups) {
                tracing::info!(group = %g, "group was held under an older lease generation; stopping its coordinator");
                actor.actor().stop(Some("taken over".into()));
            }
            self.generation = self.args.guard.generation();
        }
        let lost: Vec<String> = self
            .groups
            .keys()
            .filter(|g| !live.owns_group(g))
            .cloned()
            .collect();
        for g in &lost {
            if let Some(actor) = self.groups.remove(g) {
                tracing::info!(group = %g, "group moved to another node; stopping its coordinator");
                actor.actor().stop(Some("moved".into()));
            }
        }
        if !live.me_live {
            return Ok(());
        }
        let claimant = self.args.guard.claimant();
        if claimant.lease_generation.is_some() {
            self.args.store.release_groups(claimant, lost).await?;
        }
        for g in self.args.store.offset_groups().await? {
            if live.owns_group(&g) && !self.groups.contains_key(&g) {
                self.start(myself, &g).await;
            }
        }
        if claimant.lease_generation.is_some() {
            let strays: Vec<String> = self
                .args
                .store
                .owned_groups(claimant)
                .await?
                .into_iter()
                .filter(|g| !self.groups.contains_key(g))
                .collect();
            self.args.store.release_groups(claimant, strays).await?;
        }
        Ok(())
    }
}

impl Actor for GroupManager {
    type Msg = GroupManagerMsg;
    type State = GroupManagerState;
    type Arguments = GroupManagerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: GroupManagerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = GroupManagerState {
            me: Mailbox::new(myself.clone(), args.queued.clone()),
            restarts: RestartBudget::new(args.max_restarts),
            generation: args.guard.generation(),
            args,
            groups: BTreeMap::new(),
            by_actor: HashMap::new(),
        };
        state.place(&myself).await?;
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
            GroupManagerMsg::Get {
                group_id,
                create,
                reply,
            } => {
                let _ = reply.send(state.get(&myself, &group_id, create).await);
            }
            GroupManagerMsg::Place(reply) => {
                if let Err(e) = state.place(&myself).await {
                    tracing::warn!(error = %e, "could not list groups with offsets");
                }
                let _ = reply.send(());
            }
            GroupManagerMsg::List(reply) => {
                let _ = reply.send(
                    state
                        .groups
                        .iter()
                        .map(|(g, a)| (g.clone(), a.clone()))
                        .collect(),
                );
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
                if let Some(g) = state.by_actor.remove(&cell.get_id()) {
                    state.args.directory.stopped(cell.get_id(), true);
                    tracing::warn!(group = %g, error = %err, "group coordinator failed; restarting");
                    state.groups.remove(&g);
                    if let Err(n) = state.restarts.record(g.clone()) {
                        return Err(format!("group {g} failed {n} times within a minute").into());
                    }
                    if state.args.live.borrow().owns_group(&g) {
                        state.start(&myself, &g).await;
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(g) = state.by_actor.remove(&cell.get_id()) {
                    state.args.directory.stopped(cell.get_id(), false);
                    tracing::info!(group = %g, ?reason, "group coordinator stopped");
                    if state
                        .groups
                        .get(&g)
                        .is_some_and(|a| a.id() == cell.get_id())
                    {
                        state.groups.remove(&g);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
