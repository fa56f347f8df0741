//! Mesh: this node's ractor_cluster server and its sessions to the peers it talks to.
//!
//! Sessions are opened on demand (ADR 0026): [`crate::cluster::peers`] asks the mesh to dial
//! a live node when it has a request for it and no session, so a node holds sessions only to
//! the peers it sends to or that send to it, however many nodes are live. ractor_cluster has
//! no reconnection of its own; a session that breaks is dialled again by the next request.
//! Peers authenticate with the shared cookie. Failure detection is the lease's job, not the
//! mesh's: a node without a session is only unreachable for remote calls, which then fail
//! and are retried by clients.
//!
//! Nodes are named `inkless-<node id>` on the mesh (ractor_cluster's own node ids are
//! per-session counters and mean nothing across nodes).

use crate::cluster::placement::LiveSet;
use crate::tree::mailbox::{Mailbox, QueueCount};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster::{NodeServer, NodeServerMessage};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Largest cache block a node may be configured with (`fetch.cache_block_bytes`); it sizes
/// the mesh's frames.
pub const MAX_BLOCK_BYTES: u64 = 32 * 1024 * 1024;

/// Longest a dial (TCP connect and the cookie handshake) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Room in a frame beside the cache block it may carry: envelopes, and the coordinates of a
/// Read answer (at most [`super::gateway::MAX_COORDINATES_PER_READ`], ~100 bytes each).
const FRAME_OVERHEAD_BYTES: u64 = 4 * 1024 * 1024;

/// The one size limit of the mesh: the largest frame a node accepts from a peer, and the
/// largest message body it encodes or decodes, for cache blocks of `block_bytes` (a block
/// crosses the mesh as bincode, which may take up to twice its size).
pub const fn frame_limit(block_bytes: u64) -> u64 {
    block_bytes * 2 + FRAME_OVERHEAD_BYTES
}

/// Mesh settings.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Address the cluster listener binds.
    pub listen: SocketAddr,
    /// Shared secret of the cluster.
    pub cookie: String,
}

/// Messages of the [`Mesh`].
#[derive(Debug)]
pub enum MeshMsg {
    /// Dial this live node unless a session to it exists.
    Dial(i32),
}

impl ractor::Message for MeshMsg {}

/// Arguments of the [`Mesh`].
#[derive(Debug, Clone)]
pub struct MeshArgs {
    /// Its mailbox count (see [`crate::tree::mailbox`]).
    pub queued: QueueCount,
    /// This node.
    pub node_id: i32,
    /// Settings.
    pub config: MeshConfig,
    /// The node's cache block size, which sizes the frames ([`frame_limit`]).
    pub block_bytes: u64,
    /// The live set.
    pub live: watch::Receiver<Arc<LiveSet>>,
}

/// State of the mesh.
pub struct MeshState {
    me: Mailbox<MeshMsg>,
    args: MeshArgs,
    server: ActorRef<NodeServerMessage>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct Mesh;

/// The mesh name of a node.
pub fn node_name(node_id: i32) -> String {
    format!("inkless-{node_id}")
}

/// The node id in a peer's mesh name (`inkless-<id>@host`).
fn peer_id(name: &str) -> Option<i32> {
    name.split('@')
        .next()?
        .strip_prefix("inkless-")?
        .parse()
        .ok()
}

impl MeshState {
    async fn connected_peers(&self) -> HashSet<i32> {
        let sessions = ractor::call_t!(self.server, NodeServerMessage::GetSessions, 2_000);
        match sessions {
            Ok(map) => map
                .values()
                .filter_map(|s| s.peer_name.as_ref().and_then(|n| peer_id(&n.name)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "mesh server did not list its sessions");
                HashSet::new()
            }
        }
    }

    async fn dial(&self, node: i32) {
        let live = self.args.live.borrow().clone();
        let Some(peer) = live.nodes.iter().find(|n| n.node_id == node) else {
            tracing::debug!(peer = node, "not dialled: not a live node");
            return;
        };
        if node == self.args.node_id
            || peer.cluster_addr.is_empty()
            || self.connected_peers().await.contains(&node)
        {
            return;
        }
        let server = self.server.clone();
        let addr = peer.cluster_addr.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(
                DIAL_TIMEOUT,
                ractor_cluster::client_connect(&server, addr.as_str()),
            )
            .await
            {
                Ok(Ok(())) => tracing::info!(peer = node, %addr, "mesh session opened"),
                Ok(Err(e)) => tracing::debug!(peer = node, %addr, error = %e, "mesh dial failed"),
                Err(_) => tracing::debug!(peer = node, %addr, "mesh dial timed out"),
            }
        });
    }
}

impl Actor for Mesh {
    type Msg = MeshMsg;
    type State = MeshState;
    type Arguments = MeshArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: MeshArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let c = &args.config;
        let server = NodeServer::new(
            c.listen.port(),
            c.cookie.clone(),
            node_name(args.node_id),
            c.listen.ip().to_string(),
            None,
            Some(ractor_cluster::node::NodeConnectionMode::Isolated),
        )
        .with_listen_addr(c.listen.ip())
        .with_max_inbound_frame_size(frame_limit(args.block_bytes));
        let (server, _) = Actor::spawn_linked(None, server, (), myself.get_cell()).await?;
        let me = Mailbox::new(myself, args.queued.clone());
        Ok(MeshState { me, args, server })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.me.taken();
        match msg {
            MeshMsg::Dial(node) => state.dial(node).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            // The server is the mesh: if it ends, fail so the NodeSupervisor restarts both.
            SupervisionEvent::ActorFailed(_, err) => {
                Err(format!("mesh server failed: {err}").into())
            }
            SupervisionEvent::ActorTerminated(_, _, reason) => {
                Err(format!("mesh server stopped: {reason:?}").into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn peer_names_map_to_node_ids() {
        assert_eq!(super::peer_id("inkless-7@127.0.0.17"), Some(7));
        assert_eq!(super::peer_id("inkless-12"), Some(12));
        assert_eq!(super::peer_id("other-7@h"), None);
        assert_eq!(super::peer_id("inkless-x@h"), None);
    }
}
