//! ProduceBuffer: gathers batches of all partitions and all clients into one open object.
//!
//! Takes [`BufferMsg::Append`] from request handlers. Seals the open object when its data
//! reaches `max_object_bytes` or `flush_interval` after its first byte, and hands it to the
//! ObjectUploader. While the uploader already holds `max_objects_waiting` objects the seal
//! waits (retried every flush interval) and the open object keeps filling: slow uploads
//! make fewer, larger objects, and the node's produce budget bounds the bytes held. Inside the object a partition's batches are contiguous, in arrival
//! order. The buffer holds no acknowledged data: if it crashes, the producers waiting on
//! its open object get an error and retry; the NodeSupervisor restarts it empty.

use crate::partition::actor::{AppendReply, IncomingBatch};
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::tree::registry::ActorSlot;
use crate::write::uploader::{SealedObject, SealedPart, UploadMsg};
use crate::{AppendError, TopicPartition};
use inkless_protocol::batch::{BatchHeader, ValidatedBatch};
use inkless_storage::object::ObjectBuilder;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::Duration;

/// The batches of one partition from one produce request.
#[derive(Debug)]
pub struct PartAppend {
    /// The partition.
    pub tp: TopicPartition,
    /// Validated batches, in the order the producer sent them.
    pub batches: Vec<ValidatedBatch>,
    /// Answered once the batches are committed (or failed).
    pub reply: AppendReply,
}

/// Messages of the [`ProduceBuffer`].
#[derive(Debug)]
pub enum BufferMsg {
    /// Add batches to the open object.
    Append(Vec<PartAppend>),
    /// The flush timer of object `generation` fired.
    FlushTimer {
        /// Which open object armed the timer.
        generation: u64,
    },
    /// Seal the open object now (shutdown).
    FlushNow,
}

// Local only: never sent to another node.
impl ractor::Message for BufferMsg {}

/// Arguments of the [`ProduceBuffer`].
#[derive(Debug, Clone)]
pub struct ProduceBufferArgs {
    /// Its mailbox count (see [`crate::tree::mailbox`]).
    pub queued: QueueCount,
    /// Seal when the data reaches this many bytes.
    pub max_object_bytes: usize,
    /// Seal this long after the first byte.
    pub flush_interval: Duration,
    /// Objects the uploader may hold (uploading or waiting) before sealing waits.
    pub max_objects_waiting: u64,
    /// Where sealed objects go.
    pub uploader: Arc<ActorSlot<UploadMsg>>,
}

struct OpenPart {
    tp: TopicPartition,
    batches: Vec<(usize, BatchHeader)>,
    reply: AppendReply,
}

/// State of the buffer.
pub struct ProduceBufferState {
    me: Mailbox<BufferMsg>,
    args: ProduceBufferArgs,
    builder: ObjectBuilder,
    parts: Vec<OpenPart>,
    generation: u64,
    /// When the open object took its first byte.
    opened_at: Option<std::time::Instant>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct ProduceBuffer;

impl ProduceBufferState {
    /// Seals the open object unless the uploader is full; then the flush timer of this
    /// object is armed again, so exactly one timer stays pending while the object is open.
    fn seal_or_wait(&mut self, rearm: bool) {
        let backlog = self.args.uploader.get().map_or(0, |u| u.backlog());
        if backlog < self.args.max_objects_waiting {
            return self.seal();
        }
        tracing::debug!(backlog, "uploader full; the open object keeps filling");
        if rearm {
            self.arm_flush_timer();
        }
    }

    fn arm_flush_timer(&self) {
        let generation = self.generation;
        self.me
            .post_after(self.args.flush_interval, move || BufferMsg::FlushTimer {
                generation,
            });
    }

    fn seal(&mut self) {
        if self.builder.is_empty() {
            return;
        }
        self.generation += 1;
        if let Some(t) = self.opened_at.take() {
            crate::metrics::get().produce.buffer_wait.since(t);
        }
        let builder = std::mem::take(&mut self.builder);
        let parts = std::mem::take(&mut self.parts);
        let (bytes, positions) = builder.finish();
        let sealed_parts: Vec<SealedPart> = parts
            .into_iter()
            .map(|p| {
                let pos = positions.get(&(p.tp.topic_id, p.tp.partition));
                let batches = p
                    .batches
                    .into_iter()
                    .filter_map(|(i, header)| {
                        pos.and_then(|v| v.get(i))
                            .map(|&position| IncomingBatch { header, position })
                    })
                    .collect();
                SealedPart {
                    tp: p.tp,
                    batches,
                    reply: p.reply,
                }
            })
            .collect();
        let key = format!(
            "{}{}",
            crate::lifecycle::merger::PRODUCED_PREFIX,
            uuid::Uuid::now_v7()
        );
        let sealed = SealedObject {
            key,
            bytes,
            parts: sealed_parts,
        };
        match self.args.uploader.get() {
            Some(u) => {
                if let Err(e) = u.post(UploadMsg::Upload(sealed)) {
                    tracing::error!(error = %e, "uploader unavailable; failing sealed object");
                }
            }
            None => {
                for p in sealed.parts {
                    let _ = p
                        .reply
                        .send(Err(AppendError::Unavailable("object uploader".into())));
                }
            }
        }
    }
}

impl Actor for ProduceBuffer {
    type Msg = BufferMsg;
    type State = ProduceBufferState;
    type Arguments = ProduceBufferArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ProduceBufferArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ProduceBufferState {
            me: Mailbox::new(myself.clone(), args.queued.clone()),
            args,
            builder: ObjectBuilder::new(),
            parts: Vec::new(),
            generation: 0,
            opened_at: None,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.me.taken();
        match msg {
            BufferMsg::Append(parts) => {
                let was_empty = state.builder.is_empty();
                for part in parts {
                    let batches = part
                        .batches
                        .into_iter()
                        .map(|b| {
                            let i =
                                state
                                    .builder
                                    .push(part.tp.topic_id, part.tp.partition, b.bytes);
                            (i, b.header)
                        })
                        .collect();
                    state.parts.push(OpenPart {
                        tp: part.tp,
                        batches,
                        reply: part.reply,
                    });
                }
                if was_empty && !state.builder.is_empty() {
                    state.opened_at = Some(std::time::Instant::now());
                    state.arm_flush_timer();
                }
                if state.builder.data_bytes() >= state.args.max_object_bytes {
                    // A refused seal leaves the timer armed above (or earlier) pending.
                    state.seal_or_wait(false);
                }
            }
            BufferMsg::FlushTimer { generation } => {
                if generation == state.generation {
                    state.seal_or_wait(true);
                }
            }
            BufferMsg::FlushNow => state.seal(),
        }
        Ok(())
    }
}
