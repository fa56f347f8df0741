//! Gateway: the one actor of a node that other nodes send to (the side that sends is
//! [`crate::cluster::peers`]).
//!
//! Partition actors, cache shards and the rest are never visible to other nodes
//! (ractor_cluster would create a stub per remote actor per peer); only the gateway is, in
//! the process group `inkless.gateway.<node id>`, which ractor_cluster synchronises over the
//! mesh. A request is one [`Request`], answered by one [`Response`]; both cross the mesh in
//! the versioned wire format of [`crate::cluster::wire`] (bounded, so a corrupt or hostile
//! frame is an error, never a panic or a huge allocation). A peer that does not understand
//! the version of a request refuses it, and the call fails like one to an unreachable node.
//!
//! Order: requests to one node are sent in the caller's order over one session, and the
//! gateway forwards each to the local actor before it handles the next, so a partition sees
//! the appends of one uploader in seal order wherever they come from.

use crate::cluster::membership::MembershipMsg;
use crate::cluster::wire::{self, Reply, WireError};
use crate::partition::actor::{AppendAck, IncomingBatch, PartitionMsg, PartitionOffsets};
use crate::partition::manager::ManagerMsg;
use crate::partition::registry::PartitionRegistry;
use crate::read::cache::{read_through, CacheMsg};
use crate::tree::registry::ActorSlot;
use crate::{AppendError, ReadError, TopicPartition};
use inkless_storage::metadata::BatchCoordinate;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The process group of a node's gateway.
pub fn group_name(node_id: i32) -> String {
    format!("inkless.gateway.{node_id}")
}

/// The gateway's message: an encoded [`Request`], answered with an encoded [`Response`].
#[derive(RactorClusterMessage)]
pub enum GatewayMsg {
    /// One request.
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// What one node asks another (in memory; its wire form is [`wire::WireRequest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Sequence and commit batches stored in an object (the partition's owner answers).
    Append {
        /// Partition.
        tp: TopicPartition,
        /// Object holding the batches.
        object_key: String,
        /// Its size.
        object_size: u64,
        /// The batches.
        batches: Vec<IncomingBatch>,
    },
    /// Coordinates of committed batches from `offset`.
    Read {
        /// Partition.
        tp: TopicPartition,
        /// First offset wanted.
        offset: i64,
        /// Byte budget.
        max_bytes: u64,
    },
    /// The partition's offsets, once its high watermark passes `offset` or after `wait_ms`.
    Offsets {
        /// Partition.
        tp: TopicPartition,
        /// Answer early when the high watermark is above this.
        offset: i64,
        /// Longest wait.
        wait_ms: u64,
    },
    /// Raise the log start offset.
    DeleteRecords {
        /// Partition.
        tp: TopicPartition,
        /// New log start offset (`-1`: the high watermark).
        offset: i64,
    },
    /// The sender's membership changed (it is leaving): renew and re-read the leases now
    /// instead of at the next tick.
    MembershipChanged,
    /// Bytes of an object through the node's cache shard.
    CacheRead {
        /// Object key.
        key: String,
        /// Object size.
        object_size: u64,
        /// First byte.
        start: u64,
        /// End (exclusive).
        end: u64,
    },
    /// The sender released these partitions, which placement gives to the receiver: claim
    /// them now rather than at the next retry.
    Released(Vec<TopicPartition>),
}

/// The answer to a [`Request`] (in memory; its wire form is [`wire::WireResponse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// To [`Request::Append`].
    Append(Result<AppendAck, AppendError>),
    /// To [`Request::Read`]: the coordinates and the offsets after the read.
    Read(Result<(Vec<BatchCoordinate>, PartitionOffsets), ReadError>),
    /// To [`Request::Offsets`]: `None` if the partition does not run there.
    Offsets(Option<PartitionOffsets>),
    /// To [`Request::DeleteRecords`].
    DeleteRecords(Result<i64, ReadError>),
    /// To [`Request::CacheRead`].
    CacheRead(Result<Vec<u8>, ReadError>),
    /// To [`Request::MembershipChanged`].
    Ack,
    /// The request could not be decoded.
    Refused(String),
}

/// Most batch coordinates in one Read answer, so that it fits in a mesh frame
/// (see [`super::mesh::frame_limit`]).
pub const MAX_COORDINATES_PER_READ: usize = 16_384;

/// Why a remote call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// No session to that node (not connected yet, or gone).
    #[error("node {0} is not reachable")]
    Unreachable(i32),
    /// It did not answer in time, or the session dropped.
    #[error("node {0} did not answer")]
    NoAnswer(i32),
    /// The answer could not be decoded.
    #[error("bad answer from node {0}: {1}")]
    BadAnswer(i32, WireError),
    /// It does not understand the version of the request (a cluster of builds more than one
    /// release apart), so it did not execute it.
    #[error("node {node} refused protocol version {sent}: it understands up to {understood}", sent = wire::SENT_VERSION)]
    Unsupported {
        /// The node.
        node: i32,
        /// The newest version it understands.
        understood: u16,
    },
    /// The request could not be encoded (over the size limit); it was not sent.
    #[error("request to node {0} not sent: {1}")]
    Unsendable(i32, WireError),
}

/// Reads `node`'s answer: a refusal becomes [`RemoteError::Unsupported`].
pub(crate) fn read_answer(node: i32, bytes: &[u8]) -> Result<Response, RemoteError> {
    match wire::decode_response(bytes) {
        Ok(Reply::Answered(response)) => Ok(response),
        Ok(Reply::Unsupported { understood }) => Err(RemoteError::Unsupported { node, understood }),
        Err(e) => Err(RemoteError::BadAnswer(node, e)),
    }
}

/// Arguments of the [`Gateway`].
#[derive(Debug, Clone)]
pub struct GatewayArgs {
    /// This node.
    pub node_id: i32,
    /// Local partition actors.
    pub partitions: PartitionRegistry,
    /// Local cache shard.
    pub cache: Arc<ActorSlot<CacheMsg>>,
    /// Local membership actor.
    pub membership: Arc<ActorSlot<MembershipMsg>>,
    /// Local partition manager.
    pub manager: Arc<ActorSlot<ManagerMsg>>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct Gateway;

/// Where the answer to one request goes, and the version to write it in (the request's).
struct Replier {
    port: RpcReplyPort<Vec<u8>>,
    version: u16,
}

fn reply(to: Replier, r: Response) {
    let _ = to.port.send(wire::encode_answer(r, to.version));
}

/// Answers with what `answer` computes, without holding up the gateway.
fn answer_later<F>(to: Replier, answer: F)
where
    F: std::future::Future<Output = Response> + Send + 'static,
{
    tokio::spawn(async move { reply(to, answer.await) });
}

/// Answers a request that did not decode (a refusal if its version is not understood).
fn refuse(port: RpcReplyPort<Vec<u8>>, error: &WireError) {
    tracing::warn!(%error, "undecodable gateway request");
    let _ = port.send(wire::answer_to_undecodable(error));
}

impl GatewayArgs {
    fn handle(&self, request: Request, to: Replier) {
        let partitions = self.partitions.clone();
        match request {
            Request::Append {
                tp,
                object_key,
                object_size,
                batches,
            } => {
                // Sent before the next request is handled: appends keep their seal order.
                let (tx, rx) = oneshot::channel();
                let sent = partitions
                    .post(
                        &tp,
                        PartitionMsg::Append {
                            object_key,
                            object_size,
                            batches,
                            reply: tx,
                        },
                    )
                    .is_ok();
                if !sent {
                    return reply(to, Response::Append(Err(AppendError::NotOwner)));
                }
                answer_later(to, async move {
                    Response::Append(rx.await.unwrap_or(Err(AppendError::NotOwner)))
                });
            }
            Request::Read {
                tp,
                offset,
                max_bytes,
            } => answer_later(to, async move {
                let mut read = partitions.read(&tp, offset, max_bytes).await;
                if let Ok((coords, _)) = &mut read {
                    // A fetch of tiny batches with a huge byte budget; the rest comes next time.
                    coords.truncate(MAX_COORDINATES_PER_READ);
                }
                Response::Read(read)
            }),
            Request::Offsets {
                tp,
                offset,
                wait_ms,
            } => answer_later(to, async move {
                let wait = Duration::from_millis(wait_ms).min(crate::MAX_LONG_POLL);
                Response::Offsets(partitions.offsets(&tp, offset, wait).await)
            }),
            Request::DeleteRecords { tp, offset } => answer_later(to, async move {
                Response::DeleteRecords(partitions.delete_records(&tp, offset).await)
            }),
            Request::Released(tps) => {
                if let Some(m) = self.manager.get() {
                    let _ = m.post(ManagerMsg::Released(tps));
                }
                reply(to, Response::Ack);
            }
            Request::MembershipChanged => {
                if let Some(m) = self.membership.get() {
                    let _ = m.post(MembershipMsg::Renew);
                }
                reply(to, Response::Ack);
            }
            Request::CacheRead {
                key,
                object_size,
                start,
                end,
            } => {
                let cache = self.cache.clone();
                answer_later(to, async move {
                    let bytes = read_through(&cache, &key, object_size, start..end).await;
                    Response::CacheRead(bytes.map(|b| b.to_vec()))
                })
            }
        }
    }
}

impl Actor for Gateway {
    type Msg = GatewayMsg;
    type State = GatewayArgs;
    type Arguments = GatewayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: GatewayArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(group_name(args.node_id), vec![myself.get_cell()]);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let GatewayMsg::Call(bytes, port) = msg;
        match wire::decode_request(&bytes) {
            Ok(call) => {
                let version = call.version;
                state.handle(call.request, Replier { port, version })
            }
            Err(e) => refuse(port, &e),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::leave(group_name(state.node_id), vec![myself.get_cell()]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_fails_the_call_like_an_unreachable_node() {
        let refusal = wire::encode_refusal();
        assert_eq!(
            read_answer(4, &refusal),
            Err(RemoteError::Unsupported {
                node: 4,
                understood: wire::NEWEST_UNDERSTOOD
            })
        );
    }

    #[test]
    fn an_undecodable_answer_is_a_typed_error() {
        assert!(matches!(
            read_answer(4, &[wire::MAGIC]),
            Err(RemoteError::BadAnswer(4, WireError::Truncated { len: 1 }))
        ));
        let ack = wire::encode_answer(Response::Ack, wire::SENT_VERSION);
        assert_eq!(read_answer(4, &ack), Ok(Response::Ack));
    }
}
