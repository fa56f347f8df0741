//! Gateway: the one actor of a node that other nodes send to, and the client side that
//! sends to other nodes' gateways.
//!
//! Partition actors, cache shards and the rest are never visible to other nodes
//! (ractor_cluster would create a stub per remote actor per peer); only the gateway is, in
//! the process group `inkless.gateway.<node id>`, which ractor_cluster synchronises over the
//! mesh. A request is one [`Request`] encoded with bincode (bounded, so a corrupt or hostile
//! frame is an error, never a panic or a huge allocation), answered by one [`Response`].
//!
//! Order: requests to one node are sent in the caller's order over one session, and the
//! gateway forwards each to the local actor before it handles the next, so a partition sees
//! the appends of one uploader in seal order wherever they come from.

use crate::cluster::membership::MembershipMsg;
use crate::partition::actor::{AppendAck, IncomingBatch, PartitionMsg, PartitionOffsets};
use crate::partition::manager::ManagerMsg;
use crate::read::cache::{read_through, CacheMsg};
use crate::tree::mailbox::Post;
use crate::tree::registry::{ActorSlot, PartitionRegistry};
use crate::{AppendError, ReadError, TopicPartition};
use bincode::Options;
use inkless_storage::metadata::BatchCoordinate;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Largest encoded request or response (a cache block plus headers).
const MAX_MESSAGE_BYTES: u64 = 64 * 1024 * 1024;

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

/// What one node asks another.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// The answer to a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
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

fn codec() -> impl Options {
    bincode::DefaultOptions::new().with_limit(MAX_MESSAGE_BYTES)
}

/// Encodes a request or response.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own types into memory cannot fail except over the size limit, which
    // the callers' bounds (object and block sizes) keep far away.
    codec().serialize(v).unwrap_or_default()
}

/// Decodes a request or response.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    codec().deserialize(bytes).map_err(|e| e.to_string())
}

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
    BadAnswer(i32, String),
}

/// Sends `request` to `node`'s gateway now (so that requests to one node keep their
/// order) and returns the future answer.
pub fn send(
    node: i32,
    request: &Request,
    timeout: Duration,
) -> Result<impl Future<Output = Result<Response, RemoteError>>, RemoteError> {
    let cell = ractor::pg::get_members(&group_name(node))
        .into_iter()
        .next()
        .ok_or(RemoteError::Unreachable(node))?;
    let gateway: ActorRef<GatewayMsg> = cell.into();
    let (tx, rx) = oneshot::channel();
    gateway
        .send_message(GatewayMsg::Call(encode(request), RpcReplyPort::from(tx)))
        .map_err(|_| RemoteError::Unreachable(node))?;
    Ok(async move {
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(bytes)) => decode(&bytes).map_err(|e| RemoteError::BadAnswer(node, e)),
            _ => Err(RemoteError::NoAnswer(node)),
        }
    })
}

/// Sends and waits.
pub async fn call(
    node: i32,
    request: &Request,
    timeout: Duration,
) -> Result<Response, RemoteError> {
    send(node, request, timeout)?.await
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

fn reply(port: RpcReplyPort<Vec<u8>>, r: Response) {
    let _ = port.send(encode(&r));
}

/// Answers `port` with what `answer` computes, without holding up the gateway.
fn answer_later<F>(port: RpcReplyPort<Vec<u8>>, answer: F)
where
    F: std::future::Future<Output = Response> + Send + 'static,
{
    tokio::spawn(async move { reply(port, answer.await) });
}

impl GatewayArgs {
    fn handle(&self, request: Request, port: RpcReplyPort<Vec<u8>>) {
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
                let sent = partitions.get(&tp).is_some_and(|h| {
                    h.actor
                        .post(PartitionMsg::Append {
                            object_key,
                            object_size,
                            batches,
                            reply: tx,
                        })
                        .is_ok()
                });
                if !sent {
                    return reply(port, Response::Append(Err(AppendError::NotOwner)));
                }
                answer_later(port, async move {
                    Response::Append(rx.await.unwrap_or(Err(AppendError::NotOwner)))
                });
            }
            Request::Read {
                tp,
                offset,
                max_bytes,
            } => answer_later(port, async move {
                Response::Read(partitions.read(&tp, offset, max_bytes).await)
            }),
            Request::Offsets {
                tp,
                offset,
                wait_ms,
            } => answer_later(port, async move {
                let wait = Duration::from_millis(wait_ms).min(crate::MAX_LONG_POLL);
                Response::Offsets(partitions.offsets(&tp, offset, wait).await)
            }),
            Request::DeleteRecords { tp, offset } => answer_later(port, async move {
                Response::DeleteRecords(partitions.delete_records(&tp, offset).await)
            }),
            Request::Released(tps) => {
                if let Some(m) = self.manager.get() {
                    let _ = m.post(ManagerMsg::Released(tps));
                }
                reply(port, Response::Ack);
            }
            Request::MembershipChanged => {
                if let Some(m) = self.membership.get() {
                    let _ = m.post(MembershipMsg::Renew);
                }
                reply(port, Response::Ack);
            }
            Request::CacheRead {
                key,
                object_size,
                start,
                end,
            } => {
                let cache = self.cache.clone();
                answer_later(port, async move {
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
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::tree::mailbox::taken(&myself);
        let GatewayMsg::Call(bytes, port) = msg;
        match decode::<Request>(&bytes) {
            Ok(request) => state.handle(request, port),
            Err(e) => {
                tracing::warn!(error = %e, "undecodable gateway request");
                reply(port, Response::Refused(e));
            }
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
    fn garbage_is_an_error_not_a_panic_or_a_huge_allocation() {
        assert!(decode::<Request>(&[]).is_err());
        assert!(decode::<Request>(&[0xff; 64]).is_err());
        // A length prefix claiming 2^60 bytes of object key.
        let mut evil = vec![0u8; 4];
        evil.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode::<Request>(&evil).is_err());
        let r = Request::Offsets {
            tp: TopicPartition {
                topic_id: uuid::Uuid::nil(),
                partition: 3,
            },
            offset: 7,
            wait_ms: 10,
        };
        let back: Request = decode(&encode(&r)).unwrap();
        assert!(matches!(back, Request::Offsets { offset: 7, .. }));
    }
}
