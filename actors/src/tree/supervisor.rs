//! NodeSupervisor: the root of a node's supervision tree. [`crate::Node`] starts it; it only
//! builds the tree and restarts what fails.
//!
//! The supervisor starts (in a cluster) Membership, Gateway, Mesh and Balancer, then the
//! IndexWriter, CacheShard, ObjectUploader, PartitionManager,
//! GroupManager, ProduceBuffer, Retention, ObjectCollector, Merger, Compactor and
//! TxnCoordinator, publishes
//! their references in slots, and restarts any that fails. Losing one of them never loses
//! acknowledged data: they hold only work in progress, whose producers get an error and
//! retry. More than `max_restarts` failures within a minute stop
//! the node (the process exits non-zero so an orchestrator restarts it).

use crate::cluster::balancer::{Balancer, BalancerArgs};
use crate::cluster::gateway::{Gateway, GatewayArgs};
use crate::cluster::membership::{Membership, MembershipArgs, MembershipMsg};
use crate::cluster::mesh::{Mesh, MeshArgs};
use crate::cluster::peers::Peers;
use crate::cluster::placement::LiveSet;
use crate::group::consumer::SharedTopicLookup;
use crate::group::manager::{GroupManager, GroupManagerArgs, GroupManagerMsg};
use crate::lifecycle::collector::{CollectorArgs, ObjectCollector};
use crate::lifecycle::compactor::{Compactor, CompactorArgs};
use crate::lifecycle::merger::{Merger, MergerArgs};
use crate::lifecycle::retention::{Retention, RetentionArgs};
use crate::lifecycle::LifecycleStats;
use crate::node::NodeConfig;
use crate::partition::manager::{ManagerArgs, ManagerMsg, PartitionManager};
use crate::partition::registry::PartitionRegistry;
use crate::read::cache::{CacheArgs, CacheMsg, CacheShard};
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::tree::registry::{ActorDirectory, ActorSlot, RestartBudget};
use crate::txn::coordinator::{TxnArgs, TxnCoordinator, TxnMsg};
use crate::write::index_writer::{IndexMsg, IndexWriter, IndexWriterArgs};
use crate::write::produce_buffer::{BufferMsg, ProduceBuffer, ProduceBufferArgs};
use crate::write::uploader::{ObjectUploader, UploadMsg, UploaderArgs};
use inkless_storage::blob::BlobStore;
use inkless_storage::metadata::SharedMetadataStore;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Child {
    Membership,
    Mesh,
    Gateway,
    Balancer,
    IndexWriter,
    Cache,
    Uploader,
    Manager,
    Groups,
    Buffer,
    Retention,
    Collector,
    Merger,
    Compactor,
    Txn,
}

impl Child {
    fn kind(self) -> &'static str {
        match self {
            Child::Membership => "membership",
            Child::Mesh => "mesh",
            Child::Gateway => "gateway",
            Child::Balancer => "balancer",
            Child::IndexWriter => "index-writer",
            Child::Cache => "cache-shard",
            Child::Uploader => "object-uploader",
            Child::Manager => "partition-manager",
            Child::Groups => "group-manager",
            Child::Buffer => "produce-buffer",
            Child::Retention => "retention",
            Child::Collector => "object-collector",
            Child::Merger => "merger",
            Child::Compactor => "compactor",
            Child::Txn => "txn-coordinator",
        }
    }
}

/// One actor of the supervision tree, as listed by [`Node::actor_tree`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActorInfo {
    /// ractor's id of the actor.
    pub id: String,
    /// Id of its supervisor.
    pub parent: Option<String>,
    /// Kind of actor.
    pub kind: String,
    /// Stable name within the node.
    pub name: String,
    /// Lifecycle status.
    pub status: String,
    /// Restarts of this name so far.
    pub restarts: u32,
    /// Messages waiting in its mailbox (counted by [`crate::tree::mailbox`]).
    pub mailbox: u64,
}

pub(crate) fn walk(
    cell: &ActorCell,
    parent: Option<String>,
    dir: &ActorDirectory,
    out: &mut Vec<ActorInfo>,
) {
    let id = cell.get_id().to_string();
    let label = dir.label(&cell.get_id());
    out.push(ActorInfo {
        id: id.clone(),
        parent,
        // Unlabelled actors are ractor_cluster's own (server, listener, peer sessions).
        kind: label
            .as_ref()
            .map(|l| l.kind)
            .unwrap_or("mesh-internal")
            .to_string(),
        name: label
            .as_ref()
            .map(|l| l.name.clone())
            .or_else(|| cell.get_name())
            .unwrap_or_default(),
        status: format!("{:?}", cell.get_status()),
        restarts: label.as_ref().map_or(0, |l| l.restarts),
        mailbox: label.map_or(0, |l| l.queued.get()),
    });
    for child in cell.get_children() {
        walk(&child, Some(id.clone()), dir, out);
    }
}

#[derive(Debug, Default)]
pub(crate) struct Slots {
    pub(crate) membership: Arc<ActorSlot<MembershipMsg>>,
    pub(crate) index: Arc<ActorSlot<IndexMsg>>,
    pub(crate) cache: Arc<ActorSlot<CacheMsg>>,
    pub(crate) uploader: Arc<ActorSlot<UploadMsg>>,
    pub(crate) manager: Arc<ActorSlot<ManagerMsg>>,
    pub(crate) groups: Arc<ActorSlot<GroupManagerMsg>>,
    pub(crate) buffer: Arc<ActorSlot<BufferMsg>>,
    pub(crate) txn: Arc<ActorSlot<TxnMsg>>,
    /// Sends to other nodes (and holds the mesh's slot).
    pub(crate) peers: Peers,
}

pub(crate) struct SupervisorArgs {
    pub(crate) directory: ActorDirectory,
    pub(crate) config: NodeConfig,
    pub(crate) topics: SharedTopicLookup,
    pub(crate) store: SharedMetadataStore,
    pub(crate) blob: BlobStore,
    pub(crate) partitions: PartitionRegistry,
    pub(crate) slots: Arc<Slots>,
    pub(crate) live: Arc<watch::Sender<Arc<LiveSet>>>,
    pub(crate) lifecycle: Arc<LifecycleStats>,
    /// The version of the pins in the first live set (see [`MembershipArgs::pins_version`]).
    pub(crate) pins_version: Option<i64>,
}

/// Root actor of a node; see the module documentation.
pub(crate) struct NodeSupervisor;

pub(crate) struct SupervisorState {
    args: SupervisorArgs,
    children: HashMap<ractor::ActorId, Child>,
    restarts: RestartBudget<Child>,
}

impl SupervisorState {
    async fn spawn(&mut self, me: ActorCell, child: Child) -> Result<(), ActorProcessingErr> {
        let a = &self.args;
        let c = &a.config;
        let queued = QueueCount::default();
        let cell = match child {
            Child::Mesh => {
                let Some(config) = c.mesh.clone() else {
                    return Err("mesh without a [cluster] listen address".into());
                };
                let args = MeshArgs {
                    queued: queued.clone(),
                    node_id: c.node_id,
                    config,
                    block_bytes: c.cache_block_bytes,
                    live: a.live.subscribe(),
                };
                let (r, _) = Actor::spawn_linked(None, Mesh, args, me).await?;
                a.slots
                    .peers
                    .mesh_slot()
                    .set(Some(Mailbox::new(r.clone(), queued.clone())));
                r.get_cell()
            }
            Child::Balancer => {
                let args = BalancerArgs {
                    queued: queued.clone(),
                    store: a.store.clone(),
                    live: a.live.subscribe(),
                    partitions: a.partitions.clone(),
                    config: c.balancer.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, Balancer, args, me).await?;
                r.get_cell()
            }
            Child::Gateway => {
                let args = GatewayArgs {
                    node_id: c.node_id,
                    partitions: a.partitions.clone(),
                    cache: a.slots.cache.clone(),
                    membership: a.slots.membership.clone(),
                    manager: a.slots.manager.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, Gateway, args, me).await?;
                r.get_cell()
            }
            Child::Membership => {
                let args = MembershipArgs {
                    queued: queued.clone(),
                    config: c.membership.clone(),
                    store: a.store.clone(),
                    live: a.live.clone(),
                    guard: a.partitions.guard().clone(),
                    pins_version: a.pins_version,
                };
                let (r, _) = Actor::spawn_linked(None, Membership, args, me).await?;
                a.slots
                    .membership
                    .set(Some(Mailbox::new(r.clone(), queued.clone())));
                r.get_cell()
            }
            Child::IndexWriter => {
                let args = IndexWriterArgs {
                    queued: queued.clone(),
                    store: a.store.clone(),
                    max_appends_per_commit: c.max_appends_per_commit,
                };
                let (r, _) = Actor::spawn_linked(None, IndexWriter, args, me).await?;
                a.slots
                    .index
                    .set(Some(Mailbox::new(r.clone(), queued.clone())));
                r.get_cell()
            }
            Child::Cache => {
                let args = CacheArgs {
                    queued: queued.clone(),
                    blob: a.blob.clone(),
                    block_bytes: c.cache_block_bytes,
                    capacity_bytes: c.cache_capacity_bytes,
                    max_concurrent_gets: c.max_concurrent_gets,
                };
                let (r, _) = Actor::spawn_linked(None, CacheShard, args, me).await?;
                a.slots
                    .cache
                    .set(Some(Mailbox::new(r.clone(), queued.clone())));
                r.get_cell()
            }
            Child::Uploader => {
                let args = UploaderArgs {
                    queued: queued.clone(),
                    blob: a.blob.clone(),
                    partitions: a.partitions.clone(),
                    cache: a.slots.cache.clone(),
                    max_uploads_in_flight: c.max_uploads_in_flight,
                    upload_timeout: c.upload_timeout,
                    block_bytes: c.cache_block_bytes,
                    live: a.live.subscribe(),
                    peers: a.slots.peers.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, ObjectUploader, args, me).await?;
                a.slots
                    .uploader
                    .set(Some(Mailbox::new(r.clone(), queued.clone())));
                r.get_cell()
            }
            Child::Manager => {
                let args = ManagerArgs {
                    queued: queued.clone(),
                    store: a.store.clone(),
                    partitions: a.partitions.clone(),
                    index_writer: a.slots.index.clone(),
                    max_pending_commits: c.max_pending_commits,
                    recent_batches_max: c.recent_batches_per_partition,
                    producer_id_expiration: c.producer_id_expiration,
                    max_restarts: c.max_restarts,
                    directory: a.directory.clone(),
                    live: a.live.subscribe(),
                    idle_stop: c.partition_idle_stop,
                    peers: a.slots.peers.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, PartitionManager, args, me).await?;
                a.slots
                    .manager
                    .set(Some(Mailbox::new(r.clone(), queued.clone())));
                r.get_cell()
            }
            Child::Groups => {
                let args = GroupManagerArgs {
                    queued: queued.clone(),
                    store: a.store.clone(),
                    limits: c.groups.clone(),
                    topics: a.topics.clone(),
                    directory: a.directory.clone(),
                    live: a.live.subscribe(),
                    max_restarts: c.max_restarts,
                    guard: a.partitions.guard().clone(),
                };
                let (r, _) = Actor::spawn_linked(None, GroupManager, args, me).await?;
                a.slots
                    .groups
                    .set(Some(Mailbox::new(r.clone(), queued.clone())));
                r.get_cell()
            }
            Child::Buffer => {
                let args = ProduceBufferArgs {
                    queued: queued.clone(),
                    max_object_bytes: c.max_object_bytes,
                    flush_interval: c.flush_interval,
                    max_objects_waiting: c.max_objects_waiting,
                    uploader: a.slots.uploader.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, ProduceBuffer, args, me).await?;
                a.slots
                    .buffer
                    .set(Some(Mailbox::new(r.clone(), queued.clone())));
                r.get_cell()
            }
            Child::Retention => {
                let args = RetentionArgs {
                    queued: queued.clone(),
                    store: a.store.clone(),
                    partitions: a.partitions.clone(),
                    topics: a.topics.clone(),
                    check_interval: c.retention_check_interval,
                    live: a.live.subscribe(),
                    producer_id_expiration: c.producer_id_expiration,
                    stats: a.lifecycle.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, Retention, args, me).await?;
                r.get_cell()
            }
            Child::Collector => {
                let args = CollectorArgs {
                    queued: queued.clone(),
                    store: a.store.clone(),
                    blob: a.blob.clone(),
                    live: a.live.subscribe(),
                    config: c.collector.clone(),
                    stats: a.lifecycle.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, ObjectCollector, args, me).await?;
                r.get_cell()
            }
            Child::Merger => {
                let args = MergerArgs {
                    queued: queued.clone(),
                    store: a.store.clone(),
                    blob: a.blob.clone(),
                    cache: a.slots.cache.clone(),
                    partitions: a.partitions.clone(),
                    config: c.merge.clone(),
                    stats: a.lifecycle.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, Merger, args, me).await?;
                r.get_cell()
            }
            Child::Compactor => {
                let args = CompactorArgs {
                    queued: queued.clone(),
                    store: a.store.clone(),
                    blob: a.blob.clone(),
                    cache: a.slots.cache.clone(),
                    partitions: a.partitions.clone(),
                    topics: a.topics.clone(),
                    config: c.compact.clone(),
                    stats: a.lifecycle.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, Compactor, args, me).await?;
                r.get_cell()
            }
            Child::Txn => {
                let args = TxnArgs {
                    queued: queued.clone(),
                    store: a.store.clone(),
                    buffer: a.slots.buffer.clone(),
                    live: a.live.subscribe(),
                    config: c.transactions.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, TxnCoordinator, args, me).await?;
                a.slots
                    .txn
                    .set(Some(Mailbox::new(r.clone(), queued.clone())));
                r.get_cell()
            }
        };
        self.args.directory.started(
            cell.get_id(),
            child.kind(),
            child.kind().to_string(),
            queued,
        );
        self.children.insert(cell.get_id(), child);
        Ok(())
    }
}

impl Actor for NodeSupervisor {
    type Msg = ();
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            restarts: RestartBudget::new(args.config.max_restarts),
            args,
            children: HashMap::new(),
        };
        if state.args.config.cluster_mode {
            state.spawn(myself.get_cell(), Child::Membership).await?;
            state.spawn(myself.get_cell(), Child::Gateway).await?;
            if state.args.config.mesh.is_some() {
                state.spawn(myself.get_cell(), Child::Mesh).await?;
            }
            state.spawn(myself.get_cell(), Child::Balancer).await?;
        }
        for child in [
            Child::IndexWriter,
            Child::Cache,
            Child::Uploader,
            Child::Manager,
            Child::Groups,
            Child::Buffer,
            Child::Retention,
            Child::Collector,
            Child::Merger,
            Child::Compactor,
            Child::Txn,
        ] {
            state.spawn(myself.get_cell(), child).await?;
        }
        Ok(state)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let Some(child) = state.children.remove(&cell.get_id()) else {
            return Ok(());
        };
        state.args.directory.stopped(cell.get_id(), true);
        if let Err(n) = state.restarts.record(child) {
            return Err(format!("{child:?} failed {n} times within a minute: {why}").into());
        }
        tracing::warn!(?child, reason = %why, "node actor ended; restarting");
        state.spawn(myself.get_cell(), child).await
    }
}
