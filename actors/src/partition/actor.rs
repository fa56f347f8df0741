//! PartitionActor: the single sequencer of one partition.
//!
//! Owns the partition's offsets (log start, next offset, high watermark), its idempotent
//! producer state and a small cache of its most recent batch coordinates. It takes:
//! - [`PartitionMsg::Append`]: batches already stored in an object; checks producer
//!   sequences, assigns offsets and sends the coordinates to the IndexWriter. The producer
//!   is answered only when [`PartitionMsg::Committed`] comes back.
//! - [`PartitionMsg::Read`]: coordinates of committed batches from an offset.
//! - [`PartitionMsg::DeleteRecords`]: raises the log start offset.
//! - [`PartitionMsg::Rewrite`]: swaps a merged run of batches in.
//!
//! Idempotent-producer state expires (Kafka's `producer.id.expiration.ms`, ADR 0015): a
//! producer whose last append here is older than the expiration counts as unknown, exactly
//! as after a restart from a store whose expiry sweep has deleted its row, so a running
//! actor and a reloaded one accept and refuse the same batches.
//!
//! It starts from a claim the PartitionManager made for it (in a batch with others): the
//! claim succeeded only if no live lease held the partition elsewhere, bumped the owner
//! epoch, which fences any older owner, and read the partition's state, which the actor
//! loads without another call to the store. If a commit is fenced it stops; if a commit
//! fails otherwise it fails, and the PartitionManager claims the partition again (allowed:
//! it is this node's under the same lease generation) and restarts it from that state.

use crate::partition::registry::PublishSignal;
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::tree::registry::ActorSlot;
use crate::write::index_writer::IndexMsg;
use crate::{AppendError, ReadError, TopicPartition};
use inkless_protocol::batch::BatchHeader;
use inkless_storage::metadata::{
    AbortedTxn, AppendOutcome, BatchCoordinate, BatchRewrite, PartitionAppend,
    PartitionState as ClaimedState, ProducerRecord, RewriteOutcome, SharedMetadataStore, TxnEvent,
};
use inkless_storage::object::BatchPosition;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

/// Batches per producer remembered for duplicate detection (as Kafka).
const PRODUCER_BATCHES_KEPT: usize = 5;

/// How often a running partition drops the expired producers from its memory.
const PRODUCER_PRUNE_INTERVAL_MS: i64 = 60_000;

/// Offsets visible to readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionOffsets {
    /// First readable offset.
    pub log_start_offset: i64,
    /// Everything below is committed and readable.
    pub high_watermark: i64,
    /// Kafka's last stable offset: the first offset of the oldest open transaction, else
    /// the high watermark; read_committed consumers read below it. -1 when not known here
    /// (offsets relayed from another node, whose LSO the store tells).
    pub last_stable_offset: i64,
    /// Offset of the newest ABORT marker of the partition (-1: none since its log start;
    /// `i64::MAX`: not known here). A read_committed read from above it has no aborted
    /// transaction to report, and asks the store for none.
    pub last_abort_offset: i64,
}

impl PartitionOffsets {
    /// The offsets a claim read, as the partition's actor publishes them when it starts
    /// from that claim (a dormant partition publishes them without an actor).
    pub fn claimed(st: &ClaimedState) -> Self {
        let hwm = st.high_watermark;
        let oldest_open = st.open_txns.iter().map(|(_, first)| *first).min();
        Self {
            log_start_offset: st.log_start_offset,
            high_watermark: hwm,
            last_stable_offset: oldest_open.map_or(hwm, |o| o.min(hwm)),
            last_abort_offset: st
                .aborted_txns
                .iter()
                .map(|a| a.last_offset)
                .max()
                .unwrap_or(-1),
        }
    }

    /// A read from `offset` is at the end of the log: valid, with nothing to return yet.
    pub fn at_end(&self, offset: i64) -> bool {
        offset == self.high_watermark && offset >= self.log_start_offset
    }
}

/// One batch of an append: its header and where it sits in the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingBatch {
    /// Header as validated by the handler (LogAppendTime already stamped).
    pub header: BatchHeader,
    /// Position in the object.
    pub position: BatchPosition,
}

/// A successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    /// Offset of the first record of the first batch.
    pub base_offset: i64,
    /// Log start offset at the time of the append.
    pub log_start_offset: i64,
}

/// Reply channel of an append.
pub type AppendReply = oneshot::Sender<Result<AppendAck, AppendError>>;

/// Messages of a [`PartitionActor`].
#[derive(Debug)]
pub enum PartitionMsg {
    /// Sequence and commit batches stored in `object_key`.
    Append {
        /// Object holding the batches.
        object_key: String,
        /// Size of that object.
        object_size: u64,
        /// The batches, in the order the producer sent them.
        batches: Vec<IncomingBatch>,
        /// Answered after the metadata commit.
        reply: AppendReply,
    },
    /// Outcome of a commit sent to the IndexWriter.
    Committed {
        /// Token of the pending commit.
        token: u64,
        /// What the metadata store said.
        outcome: Result<AppendOutcome, String>,
    },
    /// Coordinates of committed batches from `offset`, up to about `max_bytes`.
    Read {
        /// Fetch offset.
        offset: i64,
        /// Byte budget.
        max_bytes: u64,
        /// Answer.
        reply: oneshot::Sender<Result<Vec<BatchCoordinate>, ReadError>>,
    },
    /// Raise the log start offset to `offset` (`-1` means the high watermark).
    DeleteRecords {
        /// New log start offset.
        offset: i64,
        /// The resulting log start offset.
        reply: oneshot::Sender<Result<i64, ReadError>>,
    },
    /// Swap a run of batch rows for rows of a new object (merging), under this actor's
    /// owner epoch, and forget the coordinates it cached for the run.
    Rewrite {
        /// The rewrite (its owner epoch is set here).
        rewrite: BatchRewrite,
        /// What the store said.
        reply: oneshot::Sender<Result<RewriteOutcome, ReadError>>,
    },
    /// The partition moves away: refuse new appends, finish the pending commits, then stop.
    Drain,
    /// Panics inside the actor (fault-injection tests only).
    #[cfg(any(test, feature = "fault-injection"))]
    InjectPanic,
}

// Local only: never sent to another node.
impl ractor::Message for PartitionMsg {}

/// What a PartitionActor starts from: the claim made for it, and what it keeps.
#[derive(Debug)]
pub struct PartitionStart {
    /// The partition's state as claimed for this node (owner epoch, offsets, producers).
    pub claimed: ClaimedState,
    /// Everything else.
    pub args: PartitionArgs,
}

/// What a running PartitionActor keeps from its start.
#[derive(Debug)]
pub struct PartitionArgs {
    /// Its mailbox count (see [`crate::tree::mailbox`]).
    pub queued: QueueCount,
    /// The partition.
    pub tp: TopicPartition,
    /// Metadata store.
    pub store: SharedMetadataStore,
    /// Where commits go.
    pub index_writer: Arc<ActorSlot<IndexMsg>>,
    /// Appends the index writer may hold before appends are refused (back-pressure).
    pub max_pending_commits: u64,
    /// Offsets published to readers (kept across restarts by the manager).
    pub offsets: Arc<watch::Sender<PartitionOffsets>>,
    /// Raised after each publication, for readers of many partitions.
    pub published: PublishSignal,
    /// Recent coordinates kept in memory.
    pub recent_batches_max: usize,
    /// Producer state not written for longer than this (ms) is expired.
    pub producer_expiration_ms: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    last_sequence: i32,
    last_offset: i64,
    /// When this partition last appended a batch of the producer (ms, this node's clock).
    last_write_ms: i64,
    /// (first sequence, last sequence, base offset), oldest first.
    recent: VecDeque<(i32, i32, i64)>,
}

impl ProducerEntry {
    /// Whether the state has expired at `now_ms`: idle for longer than `expiration_ms`.
    fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        now_ms.saturating_sub(self.last_write_ms) > expiration_ms
    }
}

#[derive(Debug)]
struct PendingCommit {
    token: u64,
    base_offset: i64,
    end_offset: i64,
    coords: Vec<BatchCoordinate>,
    /// Transactions the commit opens or ends.
    txn_events: Vec<TxnEvent>,
    replies: Vec<(AppendReply, AppendAck)>,
}

/// State of a running partition.
#[derive(Debug)]
pub struct PartitionState {
    me: Mailbox<PartitionMsg>,
    args: PartitionArgs,
    owner_epoch: i64,
    next_offset: i64,
    committed: PartitionOffsets,
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions as sequenced: producer id → offset of its first record.
    open_txns: HashMap<i64, i64>,
    /// Open transactions as committed (what the last stable offset is computed from).
    stable_open: HashMap<i64, i64>,
    /// Offset of the newest committed ABORT marker, or -1.
    last_abort: i64,
    /// When expired producers were last dropped from `producers`.
    producers_pruned_ms: i64,
    recent: VecDeque<BatchCoordinate>,
    pending: VecDeque<PendingCommit>,
    next_token: u64,
    draining: bool,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct PartitionActor;

enum Sequenced {
    New,
    Duplicate(i64),
}

/// Applies transaction events to a map of open transactions (producer id → first offset).
fn apply_events(open: &mut HashMap<i64, i64>, events: &[TxnEvent]) {
    for e in events {
        match *e {
            TxnEvent::Opened {
                producer_id,
                first_offset,
            } => {
                open.insert(producer_id, first_offset);
            }
            TxnEvent::Committed { producer_id } => {
                open.remove(&producer_id);
            }
            TxnEvent::Aborted(a) => {
                open.remove(&a.producer_id);
            }
        }
    }
}

/// What a transaction marker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkerKind {
    Commit,
    Abort,
}

/// The kind of a marker written by a transaction coordinator: inside the broker its base
/// sequence carries the control record's type (0 ABORT, 1 COMMIT, as the record key says),
/// so that the sequencer, which sees only batch headers, need not read the object.
fn marker_kind(h: &BatchHeader) -> MarkerKind {
    if h.base_sequence == inkless_protocol::control::COMMIT {
        MarkerKind::Commit
    } else {
        MarkerKind::Abort
    }
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// Checks one batch against a producer's state, updating the working copy on success.
fn check_sequence(
    entry: &mut Option<ProducerEntry>,
    h: &BatchHeader,
) -> Result<Sequenced, AppendError> {
    let Some(e) = entry else {
        // A producer this partition has never seen starts at sequence 0 (as in Kafka): a
        // later first batch means earlier ones were refused (e.g. while the partition
        // moved) and are being retried, so this one must wait for them.
        if h.base_sequence != 0 {
            return Err(AppendError::OutOfOrderSequence {
                got: h.base_sequence,
                expected: 0,
            });
        }
        return Ok(Sequenced::New);
    };
    if h.producer_epoch < e.epoch {
        return Err(AppendError::InvalidProducerEpoch {
            got: h.producer_epoch,
            current: e.epoch,
        });
    }
    if h.producer_epoch > e.epoch {
        if h.base_sequence != 0 {
            return Err(AppendError::OutOfOrderSequence {
                got: h.base_sequence,
                expected: 0,
            });
        }
        return Ok(Sequenced::New);
    }
    if let Some(&(_, _, base)) = e
        .recent
        .iter()
        .find(|(first, last, _)| *first == h.base_sequence && *last == h.last_sequence())
    {
        return Ok(Sequenced::Duplicate(base));
    }
    let expected = next_sequence(e.last_sequence);
    if h.base_sequence != expected {
        return Err(AppendError::OutOfOrderSequence {
            got: h.base_sequence,
            expected,
        });
    }
    Ok(Sequenced::New)
}

fn record_sequence(
    entry: &mut Option<ProducerEntry>,
    h: &BatchHeader,
    base_offset: i64,
    now_ms: i64,
) {
    let last_offset = base_offset + h.last_offset_delta as i64;
    let e = entry.get_or_insert_with(|| ProducerEntry {
        epoch: h.producer_epoch,
        last_sequence: -1,
        last_offset,
        last_write_ms: now_ms,
        recent: VecDeque::new(),
    });
    e.last_write_ms = now_ms;
    if h.producer_epoch != e.epoch {
        e.epoch = h.producer_epoch;
        e.recent.clear();
    }
    e.last_sequence = h.last_sequence();
    e.last_offset = last_offset;
    e.recent
        .push_back((h.base_sequence, h.last_sequence(), base_offset));
    while e.recent.len() > PRODUCER_BATCHES_KEPT {
        e.recent.pop_front();
    }
}

impl PartitionState {
    fn publish(&mut self) {
        let oldest_open = self.stable_open.values().min().copied();
        let hwm = self.committed.high_watermark;
        self.committed.last_stable_offset = oldest_open.map_or(hwm, |o| o.min(hwm));
        self.committed.last_abort_offset = self.last_abort;
        self.args.offsets.send_replace(self.committed);
        self.args.published.notify();
    }

    fn ack(&self, base_offset: i64) -> AppendAck {
        AppendAck {
            base_offset,
            log_start_offset: self.committed.log_start_offset,
        }
    }

    fn fail_pending(&mut self, err: AppendError) {
        for p in self.pending.drain(..) {
            for (reply, _) in p.replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }

    /// Routes a duplicate to the commit that holds it, or answers at once if committed.
    fn answer_duplicate(&mut self, base: i64, reply: AppendReply) {
        let ack = self.ack(base);
        match self
            .pending
            .iter_mut()
            .find(|p| base >= p.base_offset && base < p.end_offset)
        {
            Some(p) => p.replies.push((reply, ack)),
            None => {
                let _ = reply.send(Ok(ack));
            }
        }
    }

    /// Drops expired producers from memory, at most once per [`PRODUCER_PRUNE_INTERVAL_MS`]
    /// (they are ignored from the moment they expire; this only bounds memory).
    fn prune_producers(&mut self, now_ms: i64) {
        if now_ms.saturating_sub(self.producers_pruned_ms) < PRODUCER_PRUNE_INTERVAL_MS {
            return;
        }
        let expiration = self.args.producer_expiration_ms;
        self.producers.retain(|_, e| !e.expired(now_ms, expiration));
        self.producers_pruned_ms = now_ms;
    }

    /// Checks a transaction marker (a control batch written by a transaction coordinator)
    /// of the producer whose working state is `entry`, to be written at `offset`, and says
    /// which open transaction it ends. A marker of an older epoch than the partition knows
    /// is refused (a fenced coordinator or producer); a newer epoch (the coordinator bumped
    /// it, KIP-890 / timeout aborts) becomes the producer's epoch here, so batches of the
    /// old epoch are refused from now on.
    fn marker(
        &self,
        entry: &mut Option<ProducerEntry>,
        h: &BatchHeader,
        offset: i64,
        opened: &mut HashMap<i64, i64>,
        now_ms: i64,
    ) -> Result<Option<TxnEvent>, AppendError> {
        let pid = h.producer_id;
        match entry {
            Some(e) if h.producer_epoch < e.epoch => {
                return Err(AppendError::InvalidProducerEpoch {
                    got: h.producer_epoch,
                    current: e.epoch,
                })
            }
            Some(e) => {
                if h.producer_epoch > e.epoch {
                    e.epoch = h.producer_epoch;
                    e.last_sequence = -1;
                    e.recent.clear();
                }
                e.last_write_ms = now_ms;
            }
            None => {
                *entry = Some(ProducerEntry {
                    epoch: h.producer_epoch,
                    last_sequence: -1,
                    last_offset: offset,
                    last_write_ms: now_ms,
                    recent: VecDeque::new(),
                })
            }
        }
        let first = opened
            .remove(&pid)
            .or_else(|| self.open_txns.get(&pid).copied());
        Ok(first.map(|first_offset| match marker_kind(h) {
            MarkerKind::Commit => TxnEvent::Committed { producer_id: pid },
            MarkerKind::Abort => TxnEvent::Aborted(AbortedTxn {
                producer_id: pid,
                first_offset,
                last_offset: offset,
            }),
        }))
    }

    /// The index writer holds `max_pending_commits` appends already.
    fn writer_full(&self) -> bool {
        self.args
            .index_writer
            .get()
            .is_some_and(|w| w.backlog() >= self.args.max_pending_commits)
    }

    fn append(
        &mut self,
        object_key: String,
        object_size: u64,
        batches: Vec<IncomingBatch>,
        reply: AppendReply,
    ) {
        if self.draining {
            let _ = reply.send(Err(AppendError::NotOwner));
            return;
        }
        if self.writer_full() {
            // Refused before any offset is given: the producer retries after its backoff.
            let _ = reply.send(Err(AppendError::TimedOut));
            return;
        }
        let now = inkless_storage::now_ms();
        self.prune_producers(now);
        let expiration = self.args.producer_expiration_ms;
        // Check every batch on working copies first: a refused part changes nothing. An
        // expired producer starts from nothing, as it would after a reload.
        let mut working: HashMap<i64, Option<ProducerEntry>> = HashMap::new();
        let mut offset = self.next_offset;
        let mut coords = Vec::with_capacity(batches.len());
        let mut txn_events = Vec::new();
        let mut opened: HashMap<i64, i64> = HashMap::new();
        for b in &batches {
            let h = &b.header;
            if !h.is_idempotent() {
                coords.push((b, offset));
                offset += h.record_count as i64;
                continue;
            }
            let entry = working.entry(h.producer_id).or_insert_with(|| {
                self.producers
                    .get(&h.producer_id)
                    .filter(|e| !e.expired(now, expiration))
                    .cloned()
            });
            if h.is_control() {
                match self.marker(entry, h, offset, &mut opened, now) {
                    Ok(event) => txn_events.extend(event),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
                coords.push((b, offset));
                offset += h.record_count as i64;
                continue;
            }
            match check_sequence(entry, h) {
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return;
                }
                Ok(Sequenced::Duplicate(base)) => {
                    self.answer_duplicate(base, reply);
                    return;
                }
                Ok(Sequenced::New) => {
                    record_sequence(entry, h, offset, now);
                    if h.is_transactional()
                        && !self.open_txns.contains_key(&h.producer_id)
                        && !opened.contains_key(&h.producer_id)
                    {
                        opened.insert(h.producer_id, offset);
                        txn_events.push(TxnEvent::Opened {
                            producer_id: h.producer_id,
                            first_offset: offset,
                        });
                    }
                    coords.push((b, offset));
                    offset += h.record_count as i64;
                }
            }
        }
        let Some(writer) = self.args.index_writer.get() else {
            let _ = reply.send(Err(AppendError::Unavailable("index writer".into())));
            return;
        };
        let base_offset = self.next_offset;
        debug_assert!(
            offset > base_offset,
            "an append assigns at least one offset"
        );
        let coords: Vec<BatchCoordinate> = coords
            .into_iter()
            .map(|(b, base)| BatchCoordinate {
                base_offset: base,
                last_offset: base + b.header.last_offset_delta as i64,
                object_key: object_key.clone(),
                object_size,
                byte_offset: b.position.offset,
                byte_len: b.position.len,
                max_timestamp: b.header.max_timestamp,
                producer_id: b.header.producer_id,
                producer_epoch: b.header.producer_epoch,
                base_sequence: b.header.base_sequence,
                last_sequence: b.header.last_sequence(),
            })
            .collect();
        let mut producers = Vec::new();
        for (pid, entry) in working {
            if let Some(e) = entry {
                producers.push(ProducerRecord {
                    producer_id: pid,
                    producer_epoch: e.epoch,
                    last_sequence: e.last_sequence,
                    last_offset: e.last_offset,
                    last_write_ms: e.last_write_ms,
                });
                self.producers.insert(pid, e);
            }
        }
        apply_events(&mut self.open_txns, &txn_events);
        let token = self.next_token;
        self.next_token += 1;
        self.next_offset = offset;
        let append = PartitionAppend {
            topic_id: self.args.tp.topic_id,
            partition: self.args.tp.partition,
            owner_epoch: self.owner_epoch,
            batches: coords.clone(),
            producers,
            txn_events: txn_events.clone(),
        };
        let ack = self.ack(base_offset);
        self.pending.push_back(PendingCommit {
            token,
            base_offset,
            end_offset: offset,
            coords,
            txn_events,
            replies: vec![(reply, ack)],
        });
        if writer
            .post(IndexMsg::Commit {
                append,
                reply_to: self.me.clone(),
                token,
            })
            .is_err()
        {
            // The writer is gone: our offsets are now uncertain; let the failure path reload.
            let _ = self.me.post(PartitionMsg::Committed {
                token,
                outcome: Err("index writer stopped".into()),
            });
        }
    }

    fn committed(
        &mut self,
        myself: &ActorRef<PartitionMsg>,
        token: u64,
        outcome: Result<AppendOutcome, String>,
    ) -> Result<(), ActorProcessingErr> {
        let Some(front) = self.pending.front() else {
            return Ok(());
        };
        if front.token != token {
            return Err(format!(
                "commit token {token} out of order (expected {})",
                front.token
            )
            .into());
        }
        match outcome {
            Ok(AppendOutcome::Committed) => {
                let Some(p) = self.pending.pop_front() else {
                    return Ok(());
                };
                debug_assert_eq!(p.base_offset, self.committed.high_watermark);
                self.committed.high_watermark = p.end_offset;
                apply_events(&mut self.stable_open, &p.txn_events);
                for e in &p.txn_events {
                    if let TxnEvent::Aborted(a) = e {
                        self.last_abort = self.last_abort.max(a.last_offset);
                    }
                }
                self.recent.extend(p.coords);
                while self.recent.len() > self.args.recent_batches_max {
                    self.recent.pop_front();
                }
                self.publish();
                for (reply, ack) in p.replies {
                    let _ = reply.send(Ok(ack));
                }
                if self.draining && self.pending.is_empty() {
                    myself.stop(Some("handed off".into()));
                }
                Ok(())
            }
            Ok(AppendOutcome::Fenced) | Ok(AppendOutcome::UnknownPartition) => {
                tracing::warn!(tp = ?self.args.tp, "partition fenced or gone; stopping");
                self.fail_pending(AppendError::NotOwner);
                myself.stop(Some("fenced".into()));
                Ok(())
            }
            Ok(AppendOutcome::OffsetMismatch { high_watermark }) => {
                self.fail_pending(AppendError::Metadata("offset mismatch".into()));
                Err(format!("stored high watermark {high_watermark} differs; reloading").into())
            }
            Err(e) => {
                self.fail_pending(AppendError::Metadata(e.clone()));
                Err(format!("commit failed: {e}; reloading").into())
            }
        }
    }

    fn read(
        &self,
        offset: i64,
        max_bytes: u64,
        reply: oneshot::Sender<Result<Vec<BatchCoordinate>, ReadError>>,
    ) {
        let c = self.committed;
        if offset < c.log_start_offset || offset > c.high_watermark {
            let _ = reply.send(Err(ReadError::OffsetOutOfRange {
                log_start_offset: c.log_start_offset,
                high_watermark: c.high_watermark,
            }));
            return;
        }
        if offset == c.high_watermark {
            let _ = reply.send(Ok(Vec::new()));
            return;
        }
        let started = std::time::Instant::now();
        if self.recent.front().is_some_and(|b| b.base_offset <= offset) {
            let mut out = Vec::new();
            let mut bytes = 0u64;
            for b in self.recent.iter().filter(|b| b.last_offset >= offset) {
                if !out.is_empty() && bytes + b.byte_len as u64 > max_bytes {
                    break;
                }
                bytes += b.byte_len as u64;
                out.push(b.clone());
            }
            crate::metrics::get().read.index_memory.since(started);
            let _ = reply.send(Ok(out));
            return;
        }
        let store = self.args.store.clone();
        let tp = self.args.tp;
        tokio::spawn(async move {
            let r = store
                .read_batches(tp.topic_id, tp.partition, offset, max_bytes)
                .await
                .map(|v| {
                    v.into_iter()
                        .filter(|b| b.base_offset < c.high_watermark)
                        .collect()
                })
                .map_err(|e| ReadError::Storage(e.to_string()));
            crate::metrics::get()
                .read
                .index_metadata_store
                .since(started);
            let _ = reply.send(r);
        });
    }

    async fn delete_records(&mut self, offset: i64) -> Result<i64, ReadError> {
        let c = self.committed;
        let offset = if offset == -1 {
            c.high_watermark
        } else {
            offset
        };
        if offset < 0 || offset > c.high_watermark {
            return Err(ReadError::OffsetOutOfRange {
                log_start_offset: c.log_start_offset,
                high_watermark: c.high_watermark,
            });
        }
        let tp = self.args.tp;
        let start = self
            .args
            .store
            .delete_records(tp.topic_id, tp.partition, self.owner_epoch, offset)
            .await
            .map_err(|e| ReadError::Storage(e.to_string()))?;
        self.committed.log_start_offset = start;
        while self.recent.front().is_some_and(|b| b.last_offset < start) {
            self.recent.pop_front();
        }
        self.publish();
        Ok(start)
    }
}

impl PartitionState {
    async fn rewrite(&mut self, mut rewrite: BatchRewrite) -> Result<RewriteOutcome, ReadError> {
        rewrite.owner_epoch = self.owner_epoch;
        let last = rewrite.new.last().map(|b| b.last_offset);
        let outcome = self
            .args
            .store
            .rewrite_batches(rewrite)
            .await
            .map_err(|e| ReadError::Storage(e.to_string()))?;
        if let (RewriteOutcome::Replaced, Some(last)) = (outcome, last) {
            // Reads of the run now go to the store, which has its new coordinates.
            while self.recent.front().is_some_and(|b| b.base_offset <= last) {
                self.recent.pop_front();
            }
        }
        Ok(outcome)
    }
}

impl Actor for PartitionActor {
    type Msg = PartitionMsg;
    type State = PartitionState;
    type Arguments = PartitionStart;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        start: PartitionStart,
    ) -> Result<Self::State, ActorProcessingErr> {
        let PartitionStart { claimed: st, args } = start;
        let tp = args.tp;
        let mut producers: HashMap<i64, ProducerEntry> = st
            .producers
            .iter()
            .map(|p| {
                (
                    p.producer_id,
                    ProducerEntry {
                        epoch: p.producer_epoch,
                        last_sequence: p.last_sequence,
                        last_offset: p.last_offset,
                        last_write_ms: p.last_write_ms,
                        recent: VecDeque::new(),
                    },
                )
            })
            .collect();
        for b in &st.producer_batches {
            if let Some(e) = producers.get_mut(&b.producer_id) {
                if b.producer_epoch == e.epoch {
                    e.recent
                        .push_back((b.base_sequence, b.last_sequence, b.base_offset));
                }
            }
        }
        let committed = PartitionOffsets::claimed(&st);
        tracing::debug!(
            ?tp,
            epoch = st.owner_epoch,
            hwm = st.high_watermark,
            "partition started"
        );
        let mut state = PartitionState {
            me: Mailbox::new(myself, args.queued.clone()),
            args,
            owner_epoch: st.owner_epoch,
            next_offset: st.high_watermark,
            committed,
            producers,
            open_txns: st.open_txns.iter().copied().collect(),
            stable_open: st.open_txns.iter().copied().collect(),
            last_abort: committed.last_abort_offset,
            producers_pruned_ms: inkless_storage::now_ms(),
            recent: VecDeque::new(),
            pending: VecDeque::new(),
            next_token: 0,
            draining: false,
        };
        state.publish();
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.me.taken();
        match msg {
            PartitionMsg::Append {
                object_key,
                object_size,
                batches,
                reply,
            } => state.append(object_key, object_size, batches, reply),
            PartitionMsg::Committed { token, outcome } => {
                return state.committed(&myself, token, outcome)
            }
            PartitionMsg::Read {
                offset,
                max_bytes,
                reply,
            } => state.read(offset, max_bytes, reply),
            PartitionMsg::DeleteRecords { offset, reply } => {
                let _ = reply.send(state.delete_records(offset).await);
            }
            PartitionMsg::Rewrite { rewrite, reply } => {
                let _ = reply.send(state.rewrite(rewrite).await);
            }
            PartitionMsg::Drain => {
                state.draining = true;
                if state.pending.is_empty() {
                    myself.stop(Some("handed off".into()));
                }
            }
            #[cfg(any(test, feature = "fault-injection"))]
            PartitionMsg::InjectPanic => panic!("injected panic in partition actor"),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Commits still pending may yet land in the store: their outcome is unknown.
        state.fail_pending(AppendError::Indeterminate(
            "the partition stopped with the commit in flight".into(),
        ));
        Ok(())
    }
}
