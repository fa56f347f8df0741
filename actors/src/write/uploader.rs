//! ObjectUploader: PUTs sealed objects and hands each partition its slice.
//!
//! Takes [`UploadMsg::Upload`] from the ProduceBuffer. Up to `max_uploads_in_flight` PUTs
//! run at once, each retried with exponential backoff until `upload_timeout`. Completed
//! uploads are delivered in seal order, so an idempotent producer's batches reach their
//! partition in the order it sent them even when PUTs finish out of order. After a PUT the
//! object is written through to the cache and every partition's slice goes to its
//! PartitionActor. A failed upload answers its producers with a storage error; nothing of it
//! becomes visible. If the uploader crashes, producers waiting on it get an error and retry.
//!
//! Its mailbox count is its backlog: an `Upload` is counted out when its object is
//! delivered or given up, so the ProduceBuffer can hold back at `max_objects_waiting`.

use crate::cluster::gateway::{Request, Response};
use crate::cluster::peers::Peers;
use crate::cluster::placement::LiveSet;
use crate::partition::actor::{AppendReply, IncomingBatch, PartitionMsg};
use crate::partition::registry::{NotPosted, PartitionRegistry};
use crate::read::cache::CacheMsg;
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::tree::registry::ActorSlot;
use crate::{AppendError, TopicPartition};
use bytes::Bytes;
use inkless_storage::blob::BlobStore;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One partition's batches in a sealed object.
#[derive(Debug)]
pub struct SealedPart {
    /// The partition.
    pub tp: TopicPartition,
    /// Its batches and their positions.
    pub batches: Vec<IncomingBatch>,
    /// The producer waiting for them.
    pub reply: AppendReply,
}

/// An object ready to upload.
#[derive(Debug)]
pub struct SealedObject {
    /// Object key (`wal/<uuid-v7>`).
    pub key: String,
    /// Whole object.
    pub bytes: Bytes,
    /// Partition slices.
    pub parts: Vec<SealedPart>,
}

/// Messages of the [`ObjectUploader`].
#[derive(Debug)]
pub enum UploadMsg {
    /// Upload a sealed object.
    Upload(SealedObject),
    /// An upload finished (sent by the uploader to itself).
    Uploaded {
        /// Sequence number given on receipt.
        seq: u64,
        /// Success or the last error.
        result: Result<(), String>,
    },
}

// Local only: never sent to another node.
impl ractor::Message for UploadMsg {}

/// Arguments of the [`ObjectUploader`].
#[derive(Debug, Clone)]
pub struct UploaderArgs {
    /// Its mailbox count (see [`crate::tree::mailbox`]).
    pub queued: QueueCount,
    /// The object store.
    pub blob: BlobStore,
    /// Partition actors of this node.
    pub partitions: PartitionRegistry,
    /// Write-through target.
    pub cache: Arc<ActorSlot<CacheMsg>>,
    /// Concurrent PUTs.
    pub max_uploads_in_flight: usize,
    /// Give up on an object after this long.
    pub upload_timeout: Duration,
    /// Cache block size (to write through only the blocks this node's shard serves).
    pub block_bytes: u64,
    /// The live set: owners of partitions that do not run here.
    pub live: watch::Receiver<Arc<LiveSet>>,
    /// Sends to those owners.
    pub peers: Peers,
}

struct Tracked {
    key: String,
    bytes: Bytes,
    parts: Vec<SealedPart>,
    result: Option<Result<(), String>>,
}

/// State of the uploader.
pub struct UploaderState {
    me: Mailbox<UploadMsg>,
    args: UploaderArgs,
    next_seq: u64,
    next_delivery: u64,
    in_flight: usize,
    waiting: VecDeque<u64>,
    tracked: BTreeMap<u64, Tracked>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct ObjectUploader;

async fn put_with_retry(
    blob: BlobStore,
    key: String,
    bytes: Bytes,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let err = match tokio::time::timeout(left, blob.put(&key, bytes.clone())).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        if Instant::now() + delay >= deadline {
            return Err(format!("upload of {key} failed: {err}"));
        }
        tracing::warn!(%key, error = %err, retry_in_ms = delay.as_millis() as u64, "object upload failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

impl UploaderState {
    fn start_uploads(&mut self) {
        while self.in_flight < self.args.max_uploads_in_flight {
            let Some(seq) = self.waiting.pop_front() else {
                return;
            };
            let Some(t) = self.tracked.get(&seq) else {
                continue;
            };
            self.in_flight += 1;
            let (blob, key, bytes) = (self.args.blob.clone(), t.key.clone(), t.bytes.clone());
            let timeout = self.args.upload_timeout;
            let me = self.me.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = put_with_retry(blob, key, bytes, timeout).await;
                crate::metrics::get().produce.object_put.since(started);
                let _ = me.post(UploadMsg::Uploaded { seq, result });
            });
        }
    }

    fn deliver_ready(&mut self) {
        while let Some(entry) = self.tracked.first_entry() {
            if *entry.key() != self.next_delivery || entry.get().result.is_none() {
                return;
            }
            let t = entry.remove();
            self.next_delivery += 1;
            self.me.taken();
            match t.result {
                Some(Ok(())) => self.deliver(t),
                Some(Err(e)) => {
                    tracing::error!(key = %t.key, error = %e, "object upload gave up");
                    for p in t.parts {
                        let _ = p.reply.send(Err(AppendError::Storage(e.clone())));
                    }
                }
                None => {}
            }
        }
    }

    fn deliver(&self, t: Tracked) {
        let size = t.bytes.len() as u64;
        let live = self.args.live.borrow().clone();
        if let Some(cache) = self.args.cache.get() {
            let az = live.my_az();
            let blocks = (0..size.div_ceil(self.args.block_bytes))
                .filter(|&b| live.cache_owner(&t.key, b, az).is_none_or(|o| o == live.me))
                .collect();
            let _ = cache.post(CacheMsg::Insert {
                key: t.key.clone(),
                bytes: t.bytes.clone(),
                blocks,
            });
        }
        for p in t.parts {
            if !self.args.partitions.contains(&p.tp) {
                // Relayed only while this node's lease holds (its view may be stale else).
                let relay = self.args.partitions.guard().is_valid();
                match live.partition_owner(&p.tp) {
                    Some(owner) if owner != live.me && relay => append_remote(
                        &self.args.peers,
                        owner,
                        &t.key,
                        size,
                        p,
                        self.args.upload_timeout,
                    ),
                    _ => {
                        let _ = p.reply.send(Err(AppendError::NotOwner));
                    }
                }
                continue;
            }
            let msg = PartitionMsg::Append {
                object_key: t.key.clone(),
                object_size: size,
                batches: p.batches,
                reply: p.reply,
            };
            // A message lost with the actor's mailbox drops its reply: the same NotOwner.
            if let Err(NotPosted(Some(PartitionMsg::Append { reply, .. }))) =
                self.args.partitions.post(&p.tp, msg)
            {
                let _ = reply.send(Err(AppendError::NotOwner));
            }
        }
    }
}

/// Hands a partition's slice to its owner on another node. The request is sent before this
/// returns, so slices reach the owner in seal order.
fn append_remote(
    peers: &Peers,
    owner: i32,
    key: &str,
    object_size: u64,
    p: SealedPart,
    timeout: Duration,
) {
    let request = Request::Append {
        tp: p.tp,
        object_key: key.to_string(),
        object_size,
        batches: p.batches,
    };
    match peers.send(owner, &request, timeout) {
        Err(e) => {
            tracing::debug!(owner, error = %e, "partition owner unreachable");
            let _ = p.reply.send(Err(AppendError::NotOwner));
        }
        Ok(answer) => {
            tokio::spawn(async move {
                let r = match answer.await {
                    Ok(Response::Append(r)) => r,
                    Ok(other) => Err(AppendError::Unavailable(format!(
                        "unexpected answer from node {owner}: {other:?}"
                    ))),
                    // Sent, but no answer: the owner may have appended it.
                    Err(e) => Err(AppendError::Indeterminate(e.to_string())),
                };
                let _ = p.reply.send(r);
            });
        }
    }
}

impl Actor for ObjectUploader {
    type Msg = UploadMsg;
    type State = UploaderState;
    type Arguments = UploaderArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: UploaderArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(UploaderState {
            me: Mailbox::new(myself.clone(), args.queued.clone()),
            args,
            next_seq: 0,
            next_delivery: 0,
            in_flight: 0,
            waiting: VecDeque::new(),
            tracked: BTreeMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // Counted out when delivered (see the module documentation).
            UploadMsg::Upload(obj) => {
                let seq = state.next_seq;
                state.next_seq += 1;
                state.tracked.insert(
                    seq,
                    Tracked {
                        key: obj.key,
                        bytes: obj.bytes,
                        parts: obj.parts,
                        result: None,
                    },
                );
                state.waiting.push_back(seq);
            }
            UploadMsg::Uploaded { seq, result } => {
                state.me.taken();
                state.in_flight = state.in_flight.saturating_sub(1);
                if let Some(t) = state.tracked.get_mut(&seq) {
                    t.result = Some(result);
                }
                state.deliver_ready();
            }
        }
        state.start_uploads();
        Ok(())
    }
}
