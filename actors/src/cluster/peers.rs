//! Peers: the client side of the gateway protocol. Sends a [`Request`] to another node's
//! gateway over the mesh, and dials that node first when there is no session to it yet.
//!
//! Sessions are opened on demand (ADR 0026): a node has sessions only to the peers it has
//! sent to or that sent to it, not to every live node. The first request to a peer without a
//! session is queued, the mesh is asked to dial, and the queue is sent, in order, as soon as
//! the peer's gateway appears (ractor_cluster synchronises it once the session is ready), or
//! failed as [`RemoteError::Unreachable`] — never sent — after [`DIAL_WAIT`]. Requests to
//! that peer made meanwhile join the queue, so requests to one node keep the caller's order
//! whichever path they take.
//!
//! Broadcasts that are only hints (a membership change: every peer learns it from the
//! leases at its next renewal anyway) go to the peers that have a session, without dialling.

use crate::cluster::gateway::{
    group_name, read_answer, GatewayMsg, RemoteError, Request, Response,
};
use crate::cluster::mesh::MeshMsg;
use crate::cluster::wire;
use crate::tree::registry::ActorSlot;
use parking_lot::Mutex;
use ractor::{ActorRef, RpcReplyPort};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Longest wait for a session to a peer being dialled; requests queued for it fail
/// (unsent) after it.
pub const DIAL_WAIT: Duration = Duration::from_secs(3);

/// How often a waiter looks for the dialled peer's gateway.
const DIAL_POLL: Duration = Duration::from_millis(5);

/// A request waiting for a session.
struct Queued {
    bytes: Vec<u8>,
    answer: oneshot::Sender<Vec<u8>>,
    deadline: Instant,
    /// `true` once sent, `false` if it never will be.
    dispatched: oneshot::Sender<bool>,
}

/// The client side of the mesh; cheap to clone (all clones share the queues).
#[derive(Default, Clone)]
pub struct Peers {
    inner: Arc<PeersInner>,
}

#[derive(Default)]
struct PeersInner {
    /// The mesh, which dials; empty without one (a single node, or tests of one process).
    mesh: ActorSlot<MeshMsg>,
    /// Requests per peer being dialled.
    dialling: Mutex<HashMap<i32, Vec<Queued>>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").finish_non_exhaustive()
    }
}

/// The gateway of `node`, if a session to it is ready (or it runs in this process).
fn gateway_of(node: i32) -> Option<ActorRef<GatewayMsg>> {
    ractor::pg::get_members(&group_name(node))
        .into_iter()
        .next()
        .map(Into::into)
}

/// Sends `bytes` to `gateway`; the answer goes to `answer`. The port carries the timeout
/// across the mesh: ractor_cluster's bridge task for the answer (and its pending-request
/// entry) then ends with it. Without one, an answer that never comes (a session that broke
/// with the request in it) kept both forever.
fn post(
    gateway: &ActorRef<GatewayMsg>,
    bytes: Vec<u8>,
    answer: oneshot::Sender<Vec<u8>>,
    timeout: Duration,
) -> bool {
    gateway
        .send_message(GatewayMsg::Call(
            bytes,
            RpcReplyPort::from((answer, timeout)),
        ))
        .is_ok()
}

impl Peers {
    /// The slot the mesh publishes itself in.
    pub(crate) fn mesh_slot(&self) -> &ActorSlot<MeshMsg> {
        &self.inner.mesh
    }

    /// Sends `request` to `node`'s gateway now, or queues it behind the dial of a session to
    /// it (so that requests to one node keep their order), and returns the future answer.
    /// `Err` (and an `Unreachable` answer) mean it was not sent.
    pub fn send(
        &self,
        node: i32,
        request: &Request,
        timeout: Duration,
    ) -> Result<impl Future<Output = Result<Response, RemoteError>> + use<>, RemoteError> {
        let bytes = wire::encode_request(request).map_err(|e| RemoteError::Unsendable(node, e))?;
        let deadline = Instant::now() + timeout;
        let (answer, answered) = oneshot::channel();
        let dispatched = {
            let mut dialling = self.inner.dialling.lock();
            match (dialling.get_mut(&node), gateway_of(node)) {
                (None, Some(gateway)) => {
                    if !post(&gateway, bytes, answer, timeout) {
                        return Err(RemoteError::Unreachable(node));
                    }
                    None
                }
                (queue, _) => {
                    let (dispatched, was_dispatched) = oneshot::channel();
                    let item = Queued {
                        bytes,
                        answer,
                        deadline,
                        dispatched,
                    };
                    match queue {
                        Some(queue) => queue.push(item),
                        None => {
                            self.dial(node)?;
                            dialling.insert(node, vec![item]);
                            tokio::spawn(self.clone().await_session(node));
                        }
                    }
                    Some(was_dispatched)
                }
            }
        };
        Ok(async move {
            if let Some(sent) = dispatched {
                if sent.await != Ok(true) {
                    return Err(RemoteError::Unreachable(node));
                }
            }
            match tokio::time::timeout_at(deadline, answered).await {
                Ok(Ok(bytes)) => read_answer(node, &bytes),
                _ => Err(RemoteError::NoAnswer(node)),
            }
        })
    }

    /// Sends and waits.
    pub async fn call(
        &self,
        node: i32,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, RemoteError> {
        self.send(node, request, timeout)?.await
    }

    /// Sends `request` to `node` only if a session to it is ready; never dials.
    pub fn send_if_connected(
        &self,
        node: i32,
        request: &Request,
        timeout: Duration,
    ) -> Result<impl Future<Output = Result<Response, RemoteError>> + use<>, RemoteError> {
        if gateway_of(node).is_none() {
            return Err(RemoteError::Unreachable(node));
        }
        self.send(node, request, timeout)
    }

    fn dial(&self, node: i32) -> Result<(), RemoteError> {
        let mesh = self
            .inner
            .mesh
            .get()
            .ok_or(RemoteError::Unreachable(node))?;
        mesh.post(MeshMsg::Dial(node))
            .map_err(|_| RemoteError::Unreachable(node))
    }

    /// Waits (at most [`DIAL_WAIT`]) for `node`'s gateway, then sends what queued for it in
    /// order, or fails it all.
    async fn await_session(self, node: i32) {
        let give_up = Instant::now() + DIAL_WAIT;
        let mut gateway = gateway_of(node);
        while gateway.is_none() && Instant::now() < give_up {
            tokio::time::sleep(DIAL_POLL).await;
            gateway = gateway_of(node);
        }
        let mut dialling = self.inner.dialling.lock();
        let queued = dialling.remove(&node).unwrap_or_default();
        if gateway.is_none() {
            tracing::debug!(
                peer = node,
                requests = queued.len(),
                "no session to the peer"
            );
        }
        for q in queued {
            let now = Instant::now();
            let sent = match &gateway {
                Some(g) if q.deadline > now => post(g, q.bytes, q.answer, q.deadline - now),
                _ => false,
            };
            let _ = q.dispatched.send(sent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_mesh_an_unknown_peer_is_unreachable_at_once() {
        let peers = Peers::default();
        let sent = peers.send(987_654, &Request::MembershipChanged, Duration::from_secs(1));
        assert!(matches!(sent, Err(RemoteError::Unreachable(987_654))));
        assert!(peers.inner.dialling.lock().is_empty());
    }

    #[tokio::test]
    async fn queued_requests_fail_unsent_when_no_session_comes() {
        let (peers, mesh) = with_null_mesh().await;
        let first = peers
            .send(
                987_655,
                &Request::MembershipChanged,
                Duration::from_secs(10),
            )
            .unwrap();
        let second = peers
            .send(
                987_655,
                &Request::MembershipChanged,
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(peers.inner.dialling.lock()[&987_655].len(), 2);
        assert_eq!(first.await, Err(RemoteError::Unreachable(987_655)));
        assert_eq!(second.await, Err(RemoteError::Unreachable(987_655)));
        assert!(peers.inner.dialling.lock().is_empty());
        mesh.stop(None);
    }

    #[tokio::test]
    async fn requests_queued_behind_a_dial_are_sent_in_order_once_the_session_is_ready() {
        let node = 987_656;
        let (peers, mesh) = with_null_mesh().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (gateway, _) = ractor::Actor::spawn(None, FakeGateway, seen.clone())
            .await
            .unwrap();
        let delete = |offset| Request::DeleteRecords {
            tp: crate::TopicPartition {
                topic_id: uuid::Uuid::nil(),
                partition: 0,
            },
            offset,
        };
        let timeout = Duration::from_secs(5);
        let mut answers = Vec::new();
        for offset in 1..=3 {
            answers.push(peers.send(node, &delete(offset), timeout).unwrap());
        }
        // The session becomes ready: the peer's gateway appears in its group.
        tokio::time::sleep(Duration::from_millis(50)).await;
        answers.push(peers.send(node, &delete(4), timeout).unwrap());
        ractor::pg::join(group_name(node), vec![gateway.get_cell()]);
        for answer in answers {
            assert_eq!(answer.await, Ok(Response::Ack));
        }
        // Now sent directly.
        assert_eq!(
            peers.call(node, &delete(5), timeout).await,
            Ok(Response::Ack)
        );
        assert_eq!(*seen.lock(), vec![1, 2, 3, 4, 5]);
        ractor::pg::leave(group_name(node), vec![gateway.get_cell()]);
        gateway.stop(None);
        mesh.stop(None);
    }

    /// Records the offsets of the DeleteRecords it gets and acknowledges everything.
    struct FakeGateway;

    impl ractor::Actor for FakeGateway {
        type Msg = GatewayMsg;
        type State = Arc<Mutex<Vec<i64>>>;
        type Arguments = Arc<Mutex<Vec<i64>>>;

        async fn pre_start(
            &self,
            _: ActorRef<GatewayMsg>,
            seen: Self::Arguments,
        ) -> Result<Self::State, ractor::ActorProcessingErr> {
            Ok(seen)
        }

        async fn handle(
            &self,
            _: ActorRef<GatewayMsg>,
            msg: GatewayMsg,
            seen: &mut Self::State,
        ) -> Result<(), ractor::ActorProcessingErr> {
            let GatewayMsg::Call(bytes, port) = msg;
            if let Ok(call) = wire::decode_request(&bytes) {
                if let Request::DeleteRecords { offset, .. } = call.request {
                    seen.lock().push(offset);
                }
            }
            let _ = port.send(wire::encode_answer(Response::Ack, wire::SENT_VERSION));
            Ok(())
        }
    }

    /// Peers whose mesh takes dial requests and never dials.
    async fn with_null_mesh() -> (Peers, ActorRef<MeshMsg>) {
        let peers = Peers::default();
        let (mesh, _) = ractor::Actor::spawn(None, NullMesh, ()).await.unwrap();
        let mailbox = crate::tree::mailbox::Mailbox::new(mesh.clone(), Default::default());
        peers.inner.mesh.set(Some(mailbox));
        (peers, mesh)
    }

    struct NullMesh;

    impl ractor::Actor for NullMesh {
        type Msg = MeshMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _: ActorRef<MeshMsg>,
            _: (),
        ) -> Result<(), ractor::ActorProcessingErr> {
            Ok(())
        }
    }
}
