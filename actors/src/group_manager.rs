//! GroupManager: starts, supervises and finds the GroupCoordinators of this node.
//!
//! Takes [`GroupManagerMsg::Get`] (the coordinator of a group, started on demand) and
//! [`GroupManagerMsg::List`]. On start it starts a coordinator for every group that has
//! committed offsets, so they show up (Empty) in ListGroups and their offsets can expire.
//! A coordinator that fails is restarted empty (members rejoin; offsets are in the store);
//! one that stops (deleted, offsets expired) is forgotten.

use crate::consumer_group::SharedTopicLookup;
use crate::group::{GroupArgs, GroupCoordinator, GroupLimits, GroupMsg};
use crate::registry::ActorDirectory;
use inkless_storage::metadata::SharedMetadataStore;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::oneshot;

/// Longest group id accepted.
const MAX_GROUP_ID_BYTES: usize = 255 * 4;

/// Messages of the [`GroupManager`].
#[derive(Debug)]
pub enum GroupManagerMsg {
    /// The coordinator of a group; started if `create` and not running.
    Get {
        /// Group id.
        group_id: String,
        /// Start it if absent.
        create: bool,
        /// The coordinator, if running.
        reply: oneshot::Sender<Option<ActorRef<GroupMsg>>>,
    },
    /// Every running coordinator.
    List(oneshot::Sender<Vec<(String, ActorRef<GroupMsg>)>>),
}

/// Arguments of the [`GroupManager`].
#[derive(Debug, Clone)]
pub struct GroupManagerArgs {
    /// Metadata store.
    pub store: SharedMetadataStore,
    /// Group settings.
    pub limits: GroupLimits,
    /// Topic names to ids (consumer protocol).
    pub topics: SharedTopicLookup,
    /// Labels for the actor tree listing.
    pub directory: ActorDirectory,
}

/// State of the manager.
pub struct GroupManagerState {
    args: GroupManagerArgs,
    groups: BTreeMap<String, ActorRef<GroupMsg>>,
    by_actor: HashMap<ActorId, String>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct GroupManager;

impl GroupManagerState {
    async fn start(
        &mut self,
        myself: &ActorRef<GroupManagerMsg>,
        group_id: &str,
    ) -> Option<ActorRef<GroupMsg>> {
        let args = GroupArgs {
            group_id: group_id.to_string(),
            store: self.args.store.clone(),
            limits: self.args.limits.clone(),
            topics: self.args.topics.clone(),
        };
        match Actor::spawn_linked(None, GroupCoordinator, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.by_actor.insert(actor.get_id(), group_id.to_string());
                self.args
                    .directory
                    .started(actor.get_id(), "group", format!("group/{group_id}"));
                self.groups.insert(group_id.to_string(), actor.clone());
                Some(actor)
            }
            Err(e) => {
                tracing::error!(group = %group_id, error = %e, "group coordinator failed to start");
                None
            }
        }
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
        let known = args.store.offset_groups().await?;
        let mut state = GroupManagerState {
            args,
            groups: BTreeMap::new(),
            by_actor: HashMap::new(),
        };
        for g in known {
            state.start(&myself, &g).await;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GroupManagerMsg::Get {
                group_id,
                create,
                reply,
            } => {
                let found = state.groups.get(&group_id).cloned();
                let actor = match found {
                    Some(a) => Some(a),
                    None if create
                        && !group_id.is_empty()
                        && group_id.len() <= MAX_GROUP_ID_BYTES =>
                    {
                        state.start(&myself, &group_id).await
                    }
                    None => None,
                };
                let _ = reply.send(actor);
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
                    state.start(&myself, &g).await;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(g) = state.by_actor.remove(&cell.get_id()) {
                    state.args.directory.stopped(cell.get_id(), false);
                    tracing::info!(group = %g, ?reason, "group coordinator stopped");
                    if state
                        .groups
                        .get(&g)
                        .is_some_and(|a| a.get_id() == cell.get_id())
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
