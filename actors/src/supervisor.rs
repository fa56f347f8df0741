//! NodeSupervisor: the root of a node's supervision tree, and [`Node`], the handle request
//! handlers use.
//!
//! The supervisor starts the IndexWriter, CacheShard, ObjectUploader, PartitionManager and
//! ProduceBuffer, publishes their references in slots, and restarts any that fails. Losing
//! one of them never loses acknowledged data: they hold only work in progress, whose
//! producers get an error and retry. More than `max_restarts` failures within a minute stop
//! the node (the process exits non-zero so an orchestrator restarts it).

use crate::cache::{CacheArgs, CacheMsg, CacheShard};
use crate::consumer_group::SharedTopicLookup;
use crate::gateway::{self, Request, Response};
use crate::gateway::{Gateway, GatewayArgs};
use crate::group::{GroupLimits, GroupMsg};
use crate::group_manager::{GroupManager, GroupManagerArgs, GroupManagerMsg};
use crate::index_writer::{IndexMsg, IndexWriter, IndexWriterArgs};
use crate::lease::LeaseGuard;
use crate::mailbox::Post;
use crate::membership::{self, Membership, MembershipArgs, MembershipConfig, MembershipMsg};
use crate::mesh::{Mesh, MeshArgs, MeshConfig};
use crate::partition::PartitionOffsets;
use crate::partition_manager::{ManagerArgs, ManagerMsg, PartitionManager};
use crate::placement::LiveSet;
use crate::produce_buffer::{BufferMsg, PartAppend, ProduceBuffer, ProduceBufferArgs};
use crate::registry::{
    ActorDirectory, ActorSlot, PartitionHandle, PartitionRegistry, RestartBudget,
};
use crate::uploader::{ObjectUploader, UploadMsg, UploaderArgs};
use crate::{AppendError, ReadError, TopicPartition};
use bytes::Bytes;
use inkless_storage::blob::BlobStore;
use inkless_storage::metadata::{BatchCoordinate, SharedMetadataStore};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// Tunables of the actors of a node. Every buffer and queue has a bound here.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub node_id: i32,
    /// Seal an object when its data reaches this size.
    pub max_object_bytes: usize,
    /// Seal an object this long after its first byte.
    pub flush_interval: Duration,
    /// Concurrent object PUTs.
    pub max_uploads_in_flight: usize,
    /// Give up an upload after this long (producers then get an error).
    pub upload_timeout: Duration,
    /// Cache block size.
    pub cache_block_bytes: u64,
    /// Cache capacity.
    pub cache_capacity_bytes: u64,
    /// Batch coordinates kept in memory per partition.
    pub recent_batches_per_partition: usize,
    /// Appends per metadata transaction.
    pub max_appends_per_commit: usize,
    /// Restarts of one actor within a minute before escalating.
    pub max_restarts: u32,
    /// Consumer-group settings.
    pub groups: GroupLimits,
    /// This node's lease and its timing.
    pub membership: MembershipConfig,
    /// Cluster mode: hold a lease in the metadata store and own only what placement gives
    /// this node. Otherwise the node is alone and owns everything.
    pub cluster_mode: bool,
    /// The actor mesh to other nodes (cluster mode).
    pub mesh: Option<MeshConfig>,
    /// Longest wait for another node's answer.
    pub remote_timeout: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: 0,
            max_object_bytes: 8 * 1024 * 1024,
            flush_interval: Duration::from_millis(250),
            max_uploads_in_flight: 8,
            upload_timeout: Duration::from_secs(20),
            cache_block_bytes: 4 * 1024 * 1024,
            cache_capacity_bytes: 256 * 1024 * 1024,
            recent_batches_per_partition: 64,
            max_appends_per_commit: 4096,
            max_restarts: 10,
            groups: GroupLimits::default(),
            membership: MembershipConfig::default(),
            cluster_mode: false,
            mesh: None,
            remote_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// An actor failed to spawn.
    #[error("actor failed to start: {0}")]
    Spawn(String),
    /// The lease could not be registered.
    #[error("membership: {0}")]
    Membership(#[from] inkless_storage::metadata::MetaError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Child {
    Membership,
    Mesh,
    Gateway,
    IndexWriter,
    Cache,
    Uploader,
    Manager,
    Groups,
    Buffer,
}

impl Child {
    fn kind(self) -> &'static str {
        match self {
            Child::Membership => "membership",
            Child::Mesh => "mesh",
            Child::Gateway => "gateway",
            Child::IndexWriter => "index-writer",
            Child::Cache => "cache-shard",
            Child::Uploader => "object-uploader",
            Child::Manager => "partition-manager",
            Child::Groups => "group-manager",
            Child::Buffer => "produce-buffer",
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
    /// Messages waiting in its mailbox (counted by [`crate::mailbox`]).
    pub mailbox: u64,
}

fn walk(cell: &ActorCell, parent: Option<String>, dir: &ActorDirectory, out: &mut Vec<ActorInfo>) {
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
        restarts: label.map(|l| l.restarts).unwrap_or(0),
        mailbox: crate::mailbox::queued(&cell.get_id()),
    });
    for child in cell.get_children() {
        walk(&child, Some(id.clone()), dir, out);
    }
}

#[derive(Debug, Default)]
struct Slots {
    membership: Arc<ActorSlot<MembershipMsg>>,
    index: Arc<ActorSlot<IndexMsg>>,
    cache: Arc<ActorSlot<CacheMsg>>,
    uploader: Arc<ActorSlot<UploadMsg>>,
    manager: Arc<ActorSlot<ManagerMsg>>,
    groups: Arc<ActorSlot<GroupManagerMsg>>,
    buffer: Arc<ActorSlot<BufferMsg>>,
}

struct SupervisorArgs {
    directory: ActorDirectory,
    config: NodeConfig,
    topics: SharedTopicLookup,
    store: SharedMetadataStore,
    blob: BlobStore,
    partitions: PartitionRegistry,
    slots: Arc<Slots>,
    live: Arc<watch::Sender<Arc<LiveSet>>>,
}

/// Root actor of a node; see the module documentation.
struct NodeSupervisor;

struct SupervisorState {
    args: SupervisorArgs,
    children: HashMap<ractor::ActorId, Child>,
    restarts: RestartBudget<Child>,
}

impl SupervisorState {
    async fn spawn(&mut self, me: ActorCell, child: Child) -> Result<(), ActorProcessingErr> {
        let a = &self.args;
        let c = &a.config;
        let cell = match child {
            Child::Mesh => {
                let Some(config) = c.mesh.clone() else {
                    return Err("mesh without a [cluster] listen address".into());
                };
                let args = MeshArgs {
                    node_id: c.node_id,
                    config,
                    live: a.live.subscribe(),
                };
                let (r, _) = Actor::spawn_linked(None, Mesh, args, me).await?;
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
                    config: c.membership.clone(),
                    store: a.store.clone(),
                    live: a.live.clone(),
                    guard: a.partitions.guard().clone(),
                };
                let (r, _) = Actor::spawn_linked(None, Membership, args, me).await?;
                a.slots.membership.set(Some(r.clone()));
                r.get_cell()
            }
            Child::IndexWriter => {
                let args = IndexWriterArgs {
                    store: a.store.clone(),
                    max_appends_per_commit: c.max_appends_per_commit,
                };
                let (r, _) = Actor::spawn_linked(None, IndexWriter, args, me).await?;
                a.slots.index.set(Some(r.clone()));
                r.get_cell()
            }
            Child::Cache => {
                let args = CacheArgs {
                    blob: a.blob.clone(),
                    block_bytes: c.cache_block_bytes,
                    capacity_bytes: c.cache_capacity_bytes,
                };
                let (r, _) = Actor::spawn_linked(None, CacheShard, args, me).await?;
                a.slots.cache.set(Some(r.clone()));
                r.get_cell()
            }
            Child::Uploader => {
                let args = UploaderArgs {
                    blob: a.blob.clone(),
                    partitions: a.partitions.clone(),
                    cache: a.slots.cache.clone(),
                    max_uploads_in_flight: c.max_uploads_in_flight,
                    upload_timeout: c.upload_timeout,
                    block_bytes: c.cache_block_bytes,
                    live: a.live.subscribe(),
                };
                let (r, _) = Actor::spawn_linked(None, ObjectUploader, args, me).await?;
                a.slots.uploader.set(Some(r.clone()));
                r.get_cell()
            }
            Child::Manager => {
                let args = ManagerArgs {
                    store: a.store.clone(),
                    partitions: a.partitions.clone(),
                    index_writer: a.slots.index.clone(),
                    recent_batches_max: c.recent_batches_per_partition,
                    max_restarts: c.max_restarts,
                    directory: a.directory.clone(),
                    live: a.live.subscribe(),
                };
                let (r, _) = Actor::spawn_linked(None, PartitionManager, args, me).await?;
                a.slots.manager.set(Some(r.clone()));
                r.get_cell()
            }
            Child::Groups => {
                let args = GroupManagerArgs {
                    store: a.store.clone(),
                    limits: c.groups.clone(),
                    topics: a.topics.clone(),
                    directory: a.directory.clone(),
                    live: a.live.subscribe(),
                    max_restarts: c.max_restarts,
                    guard: a.partitions.guard().clone(),
                };
                let (r, _) = Actor::spawn_linked(None, GroupManager, args, me).await?;
                a.slots.groups.set(Some(r.clone()));
                r.get_cell()
            }
            Child::Buffer => {
                let args = ProduceBufferArgs {
                    max_object_bytes: c.max_object_bytes,
                    flush_interval: c.flush_interval,
                    uploader: a.slots.uploader.clone(),
                };
                let (r, _) = Actor::spawn_linked(None, ProduceBuffer, args, me).await?;
                a.slots.buffer.set(Some(r.clone()));
                r.get_cell()
            }
        };
        self.args
            .directory
            .started(cell.get_id(), child.kind(), child.kind().to_string());
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
        }
        for child in [
            Child::IndexWriter,
            Child::Cache,
            Child::Uploader,
            Child::Manager,
            Child::Groups,
            Child::Buffer,
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

/// Tells the peers that this node joined, so that they re-read the leases (and hand over
/// its partitions) now rather than at their next renewal. The mesh dials them in the
/// background, so this tries for about two seconds.
async fn announce_join(live: watch::Receiver<Arc<LiveSet>>) {
    let mut told = std::collections::HashSet::new();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let set = live.borrow().clone();
        let peers: Vec<i32> = set
            .nodes
            .iter()
            .map(|n| n.node_id)
            .filter(|id| *id != set.me && !told.contains(id))
            .collect();
        if peers.is_empty() && !told.is_empty() {
            return;
        }
        for peer in peers {
            if let Ok(answer) =
                gateway::send(peer, &Request::MembershipChanged, Duration::from_secs(1))
            {
                tokio::spawn(answer);
                told.insert(peer);
            }
        }
    }
}

/// Where a partition is served from, as seen by this node.
enum Route {
    /// Its actor runs here.
    Local,
    /// It runs on this live node.
    Remote(i32),
    /// Nowhere this node knows of.
    Nowhere,
}

/// A running node: the handle request handlers use to reach its actors.
#[derive(Clone)]
pub struct Node {
    directory: ActorDirectory,
    config: NodeConfig,
    store: SharedMetadataStore,
    blob: BlobStore,
    partitions: PartitionRegistry,
    slots: Arc<Slots>,
    supervisor: ActorRef<()>,
    stopped: watch::Receiver<bool>,
    live: watch::Receiver<Arc<LiveSet>>,
}

impl Node {
    /// Starts the supervision tree. In cluster mode it first registers the node's lease,
    /// waiting while an earlier incarnation of the same node id still holds one.
    pub async fn start(
        config: NodeConfig,
        store: SharedMetadataStore,
        blob: BlobStore,
        topics: SharedTopicLookup,
    ) -> Result<Node, NodeError> {
        let slots = Arc::new(Slots::default());
        let directory = ActorDirectory::default();
        let (first, guard) = if config.cluster_mode {
            membership::register(&store, &config.membership).await?
        } else {
            (
                LiveSet::single(config.membership.lease.clone()),
                LeaseGuard::unleased(config.node_id),
            )
        };
        let partitions = PartitionRegistry::new(guard);
        let (live_tx, live) = watch::channel(Arc::new(first));
        let args = SupervisorArgs {
            live: Arc::new(live_tx),
            directory: directory.clone(),
            config: config.clone(),
            topics,
            store: store.clone(),
            blob: blob.clone(),
            partitions: partitions.clone(),
            slots: slots.clone(),
        };
        let (supervisor, handle) = Actor::spawn(None, NodeSupervisor, args)
            .await
            .map_err(|e| NodeError::Spawn(e.to_string()))?;
        directory.started(
            supervisor.get_id(),
            "node-supervisor",
            format!("node-{}", config.node_id),
        );
        let (tx, stopped) = watch::channel(false);
        tokio::spawn(async move {
            let _ = handle.await;
            let _ = tx.send(true);
        });
        if config.cluster_mode {
            tokio::spawn(announce_join(live.clone()));
        }
        Ok(Node {
            directory,
            config,
            store,
            blob,
            partitions,
            slots,
            supervisor,
            stopped,
            live,
        })
    }

    /// The live set as this node sees it now.
    pub fn live(&self) -> Arc<LiveSet> {
        self.live.borrow().clone()
    }

    /// Changes of the live set.
    pub fn live_changes(&self) -> watch::Receiver<Arc<LiveSet>> {
        self.live.clone()
    }

    /// Runs the actors this node owns among `all` partitions (and the groups it owns) and
    /// stops, after draining, those it no longer owns. Returns partitions that failed.
    pub async fn place(&self, all: Vec<TopicPartition>) -> Vec<(TopicPartition, String)> {
        let failed = match self.slots.manager.get() {
            Some(m) => {
                let (tx, rx) = oneshot::channel();
                match m.post(ManagerMsg::Place { all, reply: tx }) {
                    Ok(()) => rx.await.unwrap_or_default(),
                    Err(_) => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        if let Some(g) = self.slots.groups.get() {
            let (tx, rx) = oneshot::channel();
            if g.post(GroupManagerMsg::Place(tx)).is_ok() {
                let _ = rx.await;
            }
        }
        failed
    }

    /// Graceful leave: stops serving, stops renewing, drains every partition and group, then
    /// ends the lease, which frees everything held under it, so other nodes take over at
    /// once. A no-op outside cluster mode.
    pub async fn leave(&self) {
        let Some(m) = self.slots.membership.get() else {
            return;
        };
        self.partitions.guard().revoke();
        let (tx, rx) = oneshot::channel();
        if m.post(MembershipMsg::Leave(tx)).is_ok() {
            let _ = rx.await;
        }
        self.place(Vec::new()).await;
        let lease = &self.config.membership.lease;
        if let Err(e) = self
            .store
            .release_lease(lease.node_id, lease.incarnation)
            .await
        {
            tracing::warn!(error = %e, "could not release the lease; it will expire");
        }
        // Tell the others, so they re-read the leases now rather than at their next renewal.
        let live = self.live();
        for peer in live.nodes.iter().filter(|n| n.node_id != live.me) {
            let sent = gateway::send(
                peer.node_id,
                &Request::MembershipChanged,
                Duration::from_secs(1),
            );
            if let Err(e) = sent {
                tracing::debug!(peer = peer.node_id, error = %e, "could not announce the leave");
            }
        }
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The metadata store.
    pub fn store(&self) -> &SharedMetadataStore {
        &self.store
    }

    /// The object store.
    pub fn blob(&self) -> &BlobStore {
        &self.blob
    }

    /// Partition actors running here.
    pub fn partitions(&self) -> &PartitionRegistry {
        &self.partitions
    }

    /// The partition's actor handle, if it runs here.
    pub fn partition(&self, tp: &TopicPartition) -> Option<PartitionHandle> {
        self.partitions.get(tp)
    }

    /// Resolves when the supervision tree has stopped (shutdown or escalation).
    pub async fn stopped(&self) {
        let mut rx = self.stopped.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Hands batches to the produce buffer. Each part is answered on its reply channel.
    pub fn produce(&self, parts: Vec<PartAppend>) -> Result<(), AppendError> {
        let buffer = self
            .slots
            .buffer
            .get()
            .ok_or_else(|| AppendError::Unavailable("produce buffer".into()))?;
        buffer
            .post(BufferMsg::Append(parts))
            .map_err(|_| AppendError::Unavailable("produce buffer".into()))
    }

    /// Seals the open object now.
    pub fn flush(&self) {
        if let Some(b) = self.slots.buffer.get() {
            let _ = b.post(BufferMsg::FlushNow);
        }
    }

    /// Starts actors for these partitions; returns those that failed.
    pub async fn ensure_partitions(
        &self,
        tps: Vec<TopicPartition>,
    ) -> Vec<(TopicPartition, String)> {
        let Some(m) = self.slots.manager.get() else {
            return tps
                .into_iter()
                .map(|tp| (tp, "no partition manager".into()))
                .collect();
        };
        let (tx, rx) = oneshot::channel();
        let failed: Vec<(TopicPartition, String)> = tps
            .iter()
            .map(|tp| (*tp, "partition manager stopped".into()))
            .collect();
        if m.post(ManagerMsg::Ensure { tps, reply: tx }).is_err() {
            return failed;
        }
        rx.await.unwrap_or(failed)
    }

    /// Stops the actors of these partitions.
    pub async fn remove_partitions(&self, tps: Vec<TopicPartition>) {
        if let Some(m) = self.slots.manager.get() {
            let (tx, rx) = oneshot::channel();
            if m.post(ManagerMsg::Remove { tps, reply: tx }).is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Where `tp` is served: here, on another node, or nowhere.
    fn route(&self, tp: &TopicPartition) -> Route {
        if self.partitions.contains(tp) {
            return Route::Local;
        }
        // Without a valid lease this node's view may be stale: it relays nothing either.
        if !self.partitions.guard().is_valid() {
            return Route::Nowhere;
        }
        let live = self.live();
        match live.partition_owner(tp) {
            Some(owner) if owner != live.me && live.me_live => Route::Remote(owner),
            _ => Route::Nowhere,
        }
    }

    /// True if a produce for `tp` can be accepted here: it runs here or on a live node.
    pub fn serves(&self, tp: &TopicPartition) -> bool {
        !matches!(self.route(tp), Route::Nowhere)
    }

    async fn remote(&self, owner: i32, request: Request) -> Result<Response, ReadError> {
        gateway::call(owner, &request, self.config.remote_timeout)
            .await
            .map_err(|e| {
                tracing::debug!(owner, error = %e, "remote partition call failed");
                ReadError::NotOwner
            })
    }

    /// Coordinates of committed batches of `tp` from `offset`, and the partition's offsets
    /// after the read, wherever the partition runs.
    pub async fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: u64,
    ) -> Result<(Vec<BatchCoordinate>, PartitionOffsets), ReadError> {
        match self.route(tp) {
            Route::Nowhere => Err(ReadError::NotOwner),
            Route::Local => self.partitions.read(tp, offset, max_bytes).await,
            Route::Remote(owner) => {
                let request = Request::Read {
                    tp: *tp,
                    offset,
                    max_bytes,
                };
                match self.remote(owner, request).await? {
                    Response::Read(r) => r,
                    _ => Err(ReadError::NotOwner),
                }
            }
        }
    }

    /// The offsets of `tp`, as soon as its high watermark is above `above` or after `wait`
    /// (at once when `wait` is zero), wherever it runs.
    pub async fn offsets(
        &self,
        tp: &TopicPartition,
        above: i64,
        wait: Duration,
    ) -> Result<PartitionOffsets, ReadError> {
        match self.route(tp) {
            Route::Nowhere => Err(ReadError::NotOwner),
            Route::Local => self
                .partitions
                .offsets(tp, above, wait)
                .await
                .ok_or(ReadError::NotOwner),
            Route::Remote(owner) => {
                let request = Request::Offsets {
                    tp: *tp,
                    offset: above,
                    wait_ms: wait.as_millis() as u64,
                };
                match self.remote(owner, request).await? {
                    Response::Offsets(Some(o)) => Ok(o),
                    _ => Err(ReadError::NotOwner),
                }
            }
        }
    }

    /// The stored bytes of one batch (see [`Node::object_range`]).
    pub async fn batch_bytes(&self, b: &BatchCoordinate) -> Result<Bytes, ReadError> {
        let end = b.byte_offset + b.byte_len as u64;
        self.object_range(&b.object_key, b.object_size, b.byte_offset, end)
            .await
    }

    /// Bytes `start..end` of an object, through the cache shards of this node's AZ: each
    /// block is read by the shard that placement gives it, here or on a node of the AZ.
    pub async fn object_range(
        &self,
        key: &str,
        object_size: u64,
        start: u64,
        end: u64,
    ) -> Result<Bytes, ReadError> {
        let live = self.live();
        let az = live.my_az();
        let block = self.config.cache_block_bytes;
        // Split the range where the shard changes.
        let mut pieces: Vec<(i32, u64, u64)> = Vec::new();
        let mut at = start;
        while at < end {
            let index = at / block;
            let piece_end = ((index + 1) * block).min(end);
            let shard = live.cache_owner(key, index, az).unwrap_or(live.me);
            match pieces.last_mut() {
                Some(last) if last.0 == shard => last.2 = piece_end,
                _ => pieces.push((shard, at, piece_end)),
            }
            at = piece_end;
        }
        let reads = pieces
            .into_iter()
            .map(|(shard, from, to)| self.cache_read(shard, key, object_size, from..to));
        let mut parts = futures::future::try_join_all(reads).await?;
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        let mut out = bytes::BytesMut::with_capacity(end.saturating_sub(start) as usize);
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(out.freeze())
    }

    async fn cache_read(
        &self,
        shard: i32,
        key: &str,
        object_size: u64,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, ReadError> {
        if shard != self.config.node_id {
            let request = Request::CacheRead {
                key: key.to_string(),
                object_size,
                start: range.start,
                end: range.end,
            };
            let answer = gateway::call(shard, &request, self.config.remote_timeout).await;
            match answer {
                Ok(Response::CacheRead(r)) => return r.map(Bytes::from),
                Ok(other) => tracing::warn!(shard, ?other, "unexpected cache answer"),
                // The shard's node is unreachable: read through the local shard instead.
                Err(e) => tracing::debug!(shard, error = %e, "remote cache shard unreachable"),
            }
        }
        crate::cache::read_through(&self.slots.cache, key, object_size, range).await
    }

    /// Raises the log start offset of `tp`, wherever it runs.
    pub async fn delete_records(&self, tp: &TopicPartition, offset: i64) -> Result<i64, ReadError> {
        match self.route(tp) {
            Route::Nowhere => Err(ReadError::NotOwner),
            Route::Local => self.partitions.delete_records(tp, offset).await,
            Route::Remote(owner) => match self
                .remote(owner, Request::DeleteRecords { tp: *tp, offset })
                .await?
            {
                Response::DeleteRecords(r) => r,
                _ => Err(ReadError::NotOwner),
            },
        }
    }

    /// Injects a panic into a partition actor (fault-injection builds only).
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn inject_partition_panic(&self, tp: &TopicPartition) -> bool {
        self.partitions.get(tp).is_some_and(|h| {
            h.actor
                .post(crate::partition::PartitionMsg::InjectPanic)
                .is_ok()
        })
    }

    /// The coordinator of `group_id`, started if `create` and not running; `None` while
    /// this node's lease does not hold (see [`crate::lease`]).
    pub async fn group(&self, group_id: &str, create: bool) -> Option<ActorRef<GroupMsg>> {
        if !self.partitions.guard().is_valid() {
            return None;
        }
        let m = self.slots.groups.get()?;
        let (tx, rx) = oneshot::channel();
        m.post(GroupManagerMsg::Get {
            group_id: group_id.to_string(),
            create,
            reply: tx,
        })
        .ok()?;
        rx.await.ok().flatten()
    }

    /// Every running group coordinator.
    pub async fn groups(&self) -> Vec<(String, ActorRef<GroupMsg>)> {
        let Some(m) = self.slots.groups.get() else {
            return Vec::new();
        };
        let (tx, rx) = oneshot::channel();
        if m.post(GroupManagerMsg::List(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Injects a panic into the partition manager (fault-injection builds only).
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn inject_manager_panic(&self) -> bool {
        self.slots
            .manager
            .get()
            .is_some_and(|m| m.post(ManagerMsg::InjectPanic).is_ok())
    }

    /// The live supervision tree of this node, root first.
    pub fn actor_tree(&self) -> Vec<ActorInfo> {
        let mut out = Vec::new();
        walk(&self.supervisor.get_cell(), None, &self.directory, &mut out);
        out
    }

    /// Stops the whole tree and waits for it.
    pub async fn stop(&self) {
        self.supervisor.stop(Some("shutdown".into()));
        self.stopped().await;
    }
}
