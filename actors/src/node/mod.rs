//! [`Node`]: the one way into a node's actors. Request handlers hold a `Node` and the
//! typed handles it gives out ([`GroupHandle`](crate::GroupHandle)); the actors, their
//! messages and their references stay private to this crate.

mod config;
mod groups;
mod read;
mod txn;

pub use config::{NodeConfig, NodeError, MAX_LONG_POLL};
pub use read::ObjectRange;

use crate::cluster::gateway::{self, Request, Response};
use crate::cluster::lease::LeaseGuard;
use crate::cluster::membership::{self, MembershipMsg};
use crate::cluster::placement::LiveSet;
use crate::group::consumer::SharedTopicLookup;
use crate::group::manager::GroupManagerMsg;
use crate::lifecycle::LifecycleStats;
use crate::partition::actor::PartitionOffsets;
use crate::partition::manager::ManagerMsg;
use crate::partition::registry::PartitionRegistry;
use crate::tree::registry::{ActorDirectory, ActorKindStats};
use crate::tree::supervisor::{self, ActorInfo, NodeSupervisor, Slots, SupervisorArgs};
use crate::write::produce_buffer::{BufferMsg, PartAppend};
use crate::{AppendError, ReadError, StartError, TopicPartition};
use inkless_storage::blob::BlobStore;
use inkless_storage::metadata::{MetaError, SharedMetadataStore};
use ractor::{Actor, ActorRef};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

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
    lifecycle: Arc<LifecycleStats>,
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
        let (first, guard, pins_version) = if config.cluster_mode {
            membership::register(&store, &config.membership).await?
        } else {
            (
                LiveSet::single(config.membership.lease.clone()),
                LeaseGuard::unleased(config.node_id),
                None,
            )
        };
        let partitions = PartitionRegistry::new(guard);
        let (live_tx, live) = watch::channel(Arc::new(first));
        let lifecycle = Arc::new(LifecycleStats::default());
        let args = SupervisorArgs {
            lifecycle: lifecycle.clone(),
            live: Arc::new(live_tx),
            directory: directory.clone(),
            config: config.clone(),
            topics,
            store: store.clone(),
            blob: blob.clone(),
            partitions: partitions.clone(),
            slots: slots.clone(),
            pins_version,
        };
        let (supervisor, handle) = Actor::spawn(None, NodeSupervisor, args)
            .await
            .map_err(|e| NodeError::Spawn(e.to_string()))?;
        directory.started(
            supervisor.get_id(),
            "node-supervisor",
            format!("node-{}", config.node_id),
            // The supervisor only hears from ractor (supervision events): nothing to count.
            crate::tree::mailbox::QueueCount::default(),
        );
        let (tx, stopped) = watch::channel(false);
        tokio::spawn(async move {
            let _ = handle.await;
            let _ = tx.send(true);
        });
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
            lifecycle,
        })
    }

    /// Counters of retention and object deletion.
    pub fn lifecycle_stats(&self) -> &LifecycleStats {
        &self.lifecycle
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
    /// stops, after draining, those it no longer owns. Returns exactly the owned partitions
    /// that do not run afterwards, each with why (the partition manager keeps retrying
    /// them): every owned one when the partition manager is down (it is being restarted).
    pub async fn place(&self, all: Vec<TopicPartition>) -> Vec<(TopicPartition, StartError)> {
        let failed = match self.slots.manager.get() {
            Some(m) => {
                let (tx, rx) = oneshot::channel();
                match m.post(ManagerMsg::Place {
                    all: all.clone(),
                    reply: tx,
                }) {
                    Ok(()) => match rx.await {
                        Ok(failed) => failed,
                        Err(_) => self.unplaced(&all),
                    },
                    Err(_) => self.unplaced(&all),
                }
            }
            None => self.unplaced(&all),
        };
        if let Some(g) = self.slots.groups.get() {
            let (tx, rx) = oneshot::channel();
            if g.post(GroupManagerMsg::Place(tx)).is_ok() {
                let _ = rx.await;
            }
        }
        failed
    }

    /// The owned ones of `tps`, distinct, as not started because the partition manager is
    /// unavailable.
    fn unplaced(&self, tps: &[TopicPartition]) -> Vec<(TopicPartition, StartError)> {
        let live = self.live();
        let mut seen = std::collections::HashSet::new();
        tps.iter()
            .filter(|tp| live.owns_partition(tp) && seen.insert(**tp))
            .map(|tp| (*tp, StartError::ManagerUnavailable))
            .collect()
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
        // Tell the peers it talks to, so they re-read the leases now rather than at their
        // next renewal, and wait (at most a second) until they heard it: a process that
        // exits right away would close its sessions with the notices still unsent.
        let answers = self.announce_membership_change();
        for answer in futures::future::join_all(answers).await {
            if let Err(e) = answer {
                tracing::debug!(error = %e, "a peer did not acknowledge the leave");
            }
        }
    }

    /// Sends `MembershipChanged` to every live peer this node has a session with (the others
    /// learn it at their next renewal); returns their answers.
    fn announce_membership_change(
        &self,
    ) -> Vec<impl std::future::Future<Output = Result<Response, gateway::RemoteError>> + use<>>
    {
        let live = self.live();
        live.nodes
            .iter()
            .filter(|n| n.node_id != live.me)
            .filter_map(|peer| {
                self.slots
                    .peers
                    .send_if_connected(
                        peer.node_id,
                        &Request::MembershipChanged,
                        Duration::from_secs(1),
                    )
                    .ok()
            })
            .collect()
    }

    /// Pins partitions to nodes (`Some`) or removes their pins (`None`) in the metadata
    /// store (ADR 0013), then re-reads the pins here and tells the peers to, so that every
    /// node places with them now rather than at its next lease renewal.
    pub async fn set_partition_pins(
        &self,
        pins: Vec<(TopicPartition, Option<i32>)>,
    ) -> Result<(), MetaError> {
        let rows = pins
            .into_iter()
            .map(|(tp, node)| ((tp.topic_id, tp.partition), node))
            .collect();
        self.store.set_partition_pins(rows).await?;
        self.announce_placement_inputs();
        Ok(())
    }

    /// Marks a node draining or takes the mark off (ADR 0021) in the metadata store, then
    /// re-reads the marks here and tells the peers to, as for pins. Returns whether the
    /// mark changed.
    pub async fn set_node_draining(&self, node_id: i32, draining: bool) -> Result<bool, MetaError> {
        let changed = self.store.set_node_draining(node_id, draining).await?;
        self.announce_placement_inputs();
        Ok(changed)
    }

    /// Renews this node's lease now (which re-reads pins and drain marks) and sends the
    /// peers it has sessions with `MembershipChanged`, which makes them do the same (the
    /// others do at their next renewal).
    fn announce_placement_inputs(&self) {
        if let Some(m) = self.slots.membership.get() {
            let _ = m.post(MembershipMsg::Renew);
        }
        for answer in self.announce_membership_change() {
            tokio::spawn(answer);
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

    /// The partition's actor handle, if it is served here, waking it if it is dormant
    /// (crate tests look inside).
    #[cfg(test)]
    pub(crate) async fn partition(
        &self,
        tp: &TopicPartition,
    ) -> Option<crate::partition::registry::PartitionHandle> {
        if self.partitions.contains(tp) && self.partitions.get(tp).is_none() {
            // Any message wakes it; a read from before the log start is answered at once.
            let _ = self.partitions.read(tp, -1, 0).await;
        }
        self.partitions.get(tp)
    }

    /// How many partitions this node holds, with a running actor or dormant.
    pub fn running_partitions(&self) -> usize {
        self.partitions.len()
    }

    /// The partitions this node holds, with a running actor or dormant.
    pub fn local_partitions(&self) -> Vec<TopicPartition> {
        self.partitions.partitions()
    }

    /// Ticks whenever a partition running here publishes new offsets.
    pub fn local_changes(&self) -> watch::Receiver<u64> {
        self.partitions.changes()
    }

    /// The published offsets of partitions that run and may be served here (`None`
    /// otherwise), without messaging their actors.
    pub fn local_offsets<'a>(
        &self,
        tps: impl IntoIterator<Item = Option<&'a TopicPartition>>,
    ) -> Vec<Option<PartitionOffsets>> {
        self.partitions.published_offsets(tps)
    }

    /// The leader epoch (owner epoch) of a partition that runs and may be served here.
    pub fn local_leader_epoch(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.owner_epoch(tp)
    }

    /// [`Node::local_leader_epoch`] of many partitions at once.
    pub fn local_leader_epochs<'a>(
        &self,
        tps: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Vec<Option<i64>> {
        self.partitions.owner_epochs(tps)
    }

    /// How many times this node's lease lapsed so far: a request that waited through a
    /// lapse may have lost its partition meanwhile (see [`crate::cluster::lease`]).
    pub fn lease_lapses(&self) -> u64 {
        self.partitions.guard().lapses()
    }

    /// True while this node's lease holds, so that it may serve what it owns.
    pub fn lease_valid(&self) -> bool {
        self.partitions.guard().is_valid()
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

    /// Starts actors for the partitions of `tps` that this node owns and does not run yet.
    /// Returns exactly the owned ones that do not run afterwards, each with why (the
    /// partition manager keeps retrying them): every owned one when the partition manager
    /// is down.
    pub async fn ensure_partitions(
        &self,
        tps: Vec<TopicPartition>,
    ) -> Vec<(TopicPartition, StartError)> {
        let Some(m) = self.slots.manager.get() else {
            return self.unplaced(&tps);
        };
        let (tx, rx) = oneshot::channel();
        match m.post(ManagerMsg::Ensure {
            tps: tps.clone(),
            reply: tx,
        }) {
            Ok(()) => match rx.await {
                Ok(failed) => failed,
                Err(_) => self.unplaced(&tps),
            },
            Err(_) => self.unplaced(&tps),
        }
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
        self.slots
            .peers
            .call(owner, &request, self.config.remote_timeout)
            .await
            .map_err(|e| {
                tracing::debug!(owner, error = %e, "remote partition call failed");
                ReadError::NotOwner
            })
    }

    /// Injects a panic into a partition actor (fault-injection builds only).
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn inject_partition_panic(&self, tp: &TopicPartition) -> bool {
        self.partitions.get(tp).is_some_and(|h| {
            h.actor
                .post(crate::partition::actor::PartitionMsg::InjectPanic)
                .is_ok()
        })
    }

    /// Injects a panic into the partition manager (fault-injection builds only).
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn inject_manager_panic(&self) -> bool {
        self.slots
            .manager
            .get()
            .is_some_and(|m| m.post(ManagerMsg::InjectPanic).is_ok())
    }

    /// Live actors of this node by kind: how many, and their mailbox lengths (summed and
    /// the longest), in kind order, without walking the tree.
    pub fn actor_kinds(&self) -> Vec<ActorKindStats> {
        self.directory.by_kind()
    }

    /// The live supervision tree of this node, depth first from the root. The dormant
    /// partitions (held without an actor, ADR 0024) are listed as the first children of the
    /// partition manager, with status `Dormant`.
    pub fn actor_tree(&self) -> Vec<ActorInfo> {
        let mut out = Vec::new();
        supervisor::walk(&self.supervisor.get_cell(), None, &self.directory, &mut out);
        let manager = self.slots.manager.get().map(|m| m.id().to_string());
        let Some(at) = out.iter().position(|a| Some(&a.id) == manager.as_ref()) else {
            return out; // the manager is restarting: it holds nothing now
        };
        let dormant = self.partitions.dormant().into_iter().map(|tp| {
            let name = format!("partition/{}/{}", tp.topic_id, tp.partition);
            ActorInfo {
                id: format!("dormant:{name}"),
                parent: manager.clone(),
                kind: "partition".into(),
                name,
                status: "Dormant".into(),
                restarts: 0,
                mailbox: 0,
            }
        });
        out.splice(at + 1..at + 1, dormant);
        out
    }

    /// How many partitions this node holds without a running actor.
    pub fn dormant_partitions(&self) -> usize {
        self.partitions.dormant_count()
    }

    /// Stops the whole tree and waits for it.
    pub async fn stop(&self) {
        self.supervisor.stop(Some("shutdown".into()));
        self.stopped().await;
    }
}
