//! TxnCoordinator: the transaction coordinator of the transactional ids this node owns by
//! placement (rendezvous over the live nodes, as consumer groups).
//!
//! One actor per node, under the NodeSupervisor. Its state is not in memory: every request
//! reads the transactional id's [`TxnRecord`] from the metadata store and writes the next
//! one with a compare-and-set on its version, so a node that takes an id over (a move, a
//! restart) resumes exactly where the last owner stopped, and a stale owner's write is
//! refused. Messages:
//! - `Init`, `AddPartitions`, `AddOffsets`, `End`: the client requests (see [`state`]).
//! - `MarkersDone`: the markers of a Prepare state were written (or not: `Resume` tries
//!   again 500 ms later).
//! - `Tick` (every `abort_check_interval`): completes Prepare states no task is writing
//!   (crash recovery, moves), aborts transactions past their timeout with a bumped epoch,
//!   and forgets ids idle for `transactional.id.expiration.ms`; it reads only the ids due
//!   for one of those (`MetadataStore::due_transactions`), not every id.
//!
//! Markers are control batches handed to this node's ProduceBuffer like any produce
//! request: they share the node's next object and reach each partition's actor, wherever it
//! runs, through the uploader. A Prepare state is stored before any marker is written; the
//! record becomes Complete only when every partition acknowledged its marker. If the actor
//! fails, the supervisor restarts it and its first tick resumes the pending markers.
//!
//! [`state`]: crate::txn::state

use crate::cluster::placement::LiveSet;
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::tree::registry::ActorSlot;
use crate::txn::error::{TxnError, TxnResult};
use crate::txn::state::{self, Claimed, EndPlan, InitPlan};
use crate::write::produce_buffer::{BufferMsg, PartAppend};
use crate::{AppendError, TopicPartition};
use inkless_storage::metadata::{PartitionKey, SharedMetadataStore, TxnRecord, TxnState};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// Wait before writing a transaction's markers again after an attempt failed (a partition
/// moving, an upload failing); the periodic pass retries too.
const MARKER_RETRY_DELAY: Duration = Duration::from_millis(500);

/// Attempts of a request whose compare-and-set lost to another writer.
const CAS_ATTEMPTS: usize = 3;

/// Settings of the transaction coordinators.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// Kafka's `transaction.max.timeout.ms`: longer producer timeouts are refused.
    pub max_timeout_ms: i32,
    /// Kafka's `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
    /// Kafka's `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_check_interval: Duration,
    /// Longest wait for the markers of one transaction before trying again.
    pub marker_timeout: Duration,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            abort_check_interval: Duration::from_secs(10),
            marker_timeout: Duration::from_secs(30),
        }
    }
}

/// Reply channel of a coordinator request.
pub(crate) type TxnReply<T> = oneshot::Sender<TxnResult<T>>;

/// An EndTxn request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EndRequest {
    /// The producer id the client sent.
    pub producer_id: i64,
    /// The epoch the client sent.
    pub epoch: i16,
    /// Commit (else abort).
    pub commit: bool,
    /// EndTxn v5 (KIP-890 transaction version 2): the decision takes the next epoch.
    pub bump: bool,
}

/// Messages of the [`TxnCoordinator`].
#[derive(Debug)]
pub(crate) enum TxnMsg {
    /// InitProducerId with a transactional id; answers (producer id, epoch).
    Init {
        id: String,
        timeout_ms: i32,
        claimed: Claimed,
        reply: TxnReply<(i64, i16)>,
    },
    /// AddPartitionsToTxn.
    AddPartitions {
        id: String,
        producer_id: i64,
        epoch: i16,
        parts: Vec<PartitionKey>,
        reply: TxnReply<()>,
    },
    /// AddOffsetsToTxn.
    AddOffsets {
        id: String,
        producer_id: i64,
        epoch: i16,
        group: String,
        reply: TxnReply<()>,
    },
    /// EndTxn; answers the producer id and epoch the client continues with.
    End {
        id: String,
        req: EndRequest,
        reply: TxnReply<(i64, i16)>,
    },
    /// The marker task of `id` ended; `ok` when every marker was written.
    MarkersDone { id: String, ok: bool },
    /// Try the markers of `id` again (after a failed attempt).
    Resume { id: String },
    /// Periodic recovery, timeouts and expiry.
    Tick,
}

// Local only: never sent to another node.
impl ractor::Message for TxnMsg {}

/// What the coordinator works with.
#[derive(Debug, Clone)]
pub(crate) struct TxnArgs {
    /// Its mailbox count.
    pub queued: QueueCount,
    /// The metadata store.
    pub store: SharedMetadataStore,
    /// Where markers go.
    pub buffer: Arc<ActorSlot<BufferMsg>>,
    /// The live set, for ownership.
    pub live: watch::Receiver<Arc<LiveSet>>,
    /// Settings.
    pub config: TxnConfig,
}

/// State of the coordinator.
pub(crate) struct TxnCoordinatorState {
    me: Mailbox<TxnMsg>,
    args: TxnArgs,
    /// Ids whose markers a task of this actor is writing.
    writing: HashSet<String>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct TxnCoordinator;

fn storage(e: inkless_storage::metadata::MetaError) -> TxnError {
    TxnError::Storage(e.to_string())
}

impl TxnCoordinatorState {
    fn owns(&self, id: &str) -> bool {
        self.args.live.borrow().owns_txn(id)
    }

    async fn get(&self, id: &str) -> TxnResult<Option<TxnRecord>> {
        self.args.store.get_transaction(id).await.map_err(storage)
    }

    /// Stores `rec` if nobody changed it since it was read; false when someone did.
    async fn put(&self, rec: &TxnRecord) -> TxnResult<bool> {
        let stored = self
            .args
            .store
            .put_transaction(rec.clone())
            .await
            .map_err(storage)?;
        Ok(stored.is_some())
    }

    async fn init(&mut self, id: &str, timeout_ms: i32, claimed: Claimed) -> TxnResult<(i64, i16)> {
        if timeout_ms <= 0 || timeout_ms > self.args.config.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        for _ in 0..CAS_ATTEMPTS {
            let now = inkless_storage::now_ms();
            let next = match self.get(id).await? {
                None => {
                    let pid = self.allocate().await?;
                    state::new_record(id, pid, timeout_ms, now)
                }
                Some(rec) => match state::init(&rec, claimed, timeout_ms, now)? {
                    InitPlan::Ready(next) => next,
                    InitPlan::NeedsNewId(mut next) => {
                        next.producer_id = self.allocate().await?;
                        next
                    }
                    InitPlan::AbortFirst(abort) => {
                        if self.put(&abort).await? {
                            tracing::info!(transactional_id = %id, "aborting the previous producer's transaction");
                            self.start_markers(abort);
                        }
                        return Err(TxnError::ConcurrentTransactions);
                    }
                },
            };
            if self.put(&next).await? {
                return Ok((next.producer_id, next.producer_epoch));
            }
        }
        Err(TxnError::ConcurrentTransactions)
    }

    async fn allocate(&self) -> TxnResult<i64> {
        self.args
            .store
            .allocate_producer_id()
            .await
            .map_err(storage)
    }

    /// Reads the record of `id` and stores what `change` makes of it (nothing when it
    /// returns `None`), retrying when another writer got there first.
    async fn update(
        &mut self,
        id: &str,
        change: impl Fn(&TxnRecord, i64) -> TxnResult<Option<TxnRecord>>,
    ) -> TxnResult<()> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(rec) = self.get(id).await? else {
                return Err(TxnError::InvalidProducerIdMapping);
            };
            let Some(next) = change(&rec, inkless_storage::now_ms())? else {
                return Ok(());
            };
            if self.put(&next).await? {
                return Ok(());
            }
        }
        Err(TxnError::ConcurrentTransactions)
    }

    /// EndTxn; answers the producer id and epoch the client continues with.
    async fn end(&mut self, id: &str, req: EndRequest) -> TxnResult<(i64, i16)> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(rec) = self.get(id).await? else {
                return Err(TxnError::InvalidProducerIdMapping);
            };
            let now = inkless_storage::now_ms();
            let mut next =
                match state::end(&rec, req.producer_id, req.epoch, req.commit, now, req.bump)? {
                    EndPlan::AlreadyDone(rec) => return Ok(state::continues_as(&rec)),
                    EndPlan::EmptyAbort(mut next) => {
                        if next.producer_epoch >= state::EPOCH_LIMIT {
                            next.producer_id = self.allocate().await?;
                            next.producer_epoch = 0;
                        }
                        if self.put(&next).await? {
                            return Ok((next.producer_id, next.producer_epoch));
                        }
                        continue;
                    }
                    EndPlan::Prepare(next) => next,
                    EndPlan::PrepareWithNewId(mut next) => {
                        next.next_producer_id = self.allocate().await?;
                        next
                    }
                };
            if self.put(&next).await? {
                next.version += 1;
                let answer = state::continues_as(&next);
                self.start_markers(next);
                return Ok(answer);
            }
        }
        Err(TxnError::ConcurrentTransactions)
    }

    /// Writes the markers of a Prepare record in a task, unless one is running already.
    fn start_markers(&mut self, rec: TxnRecord) {
        if !self.writing.insert(rec.transactional_id.clone()) {
            return;
        }
        let me = self.me.clone();
        let buffer = self.args.buffer.clone();
        let store = self.args.store.clone();
        let wait = self.args.config.marker_timeout;
        tokio::spawn(async move {
            let ok = write_markers(&buffer, &store, &rec, wait).await;
            let _ = me.post(TxnMsg::MarkersDone {
                id: rec.transactional_id,
                ok,
            });
        });
    }

    /// Every marker of `id`'s Prepare state is written: make its offsets visible (commit)
    /// or drop them (abort), then store the Complete state.
    async fn complete(&mut self, id: &str) -> TxnResult<()> {
        let Some(rec) = self.get(id).await? else {
            return Ok(());
        };
        let commit = match rec.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return Ok(()),
        };
        self.args
            .store
            .end_txn_offsets(id, commit)
            .await
            .map_err(storage)?;
        if let Some(next) = state::complete(&rec, inkless_storage::now_ms()) {
            if !self.put(&next).await? {
                tracing::debug!(transactional_id = %id, "completion lost to another writer");
            }
        }
        Ok(())
    }

    /// Writes the markers of `id` again if it is still in a Prepare state, owned here, and
    /// no task writes them.
    async fn resume(&mut self, id: &str) -> TxnResult<()> {
        if !self.owns(id) || self.writing.contains(id) {
            return Ok(());
        }
        if let Some(rec) = self.get(id).await? {
            if matches!(rec.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                self.start_markers(rec);
            }
        }
        Ok(())
    }

    /// Resumes Prepare states, aborts timed-out transactions and forgets expired ids, for
    /// the ids this node owns. Reads only the ids due for one of those (not every id).
    async fn tick(&mut self) -> TxnResult<()> {
        let now = inkless_storage::now_ms();
        let idle_before = now.saturating_sub(self.args.config.id_expiration_ms);
        let due = self
            .args
            .store
            .due_transactions(now, idle_before)
            .await
            .map_err(storage)?;
        for rec in due {
            let id = rec.transactional_id.clone();
            if !self.owns(&id) || self.writing.contains(&id) {
                continue;
            }
            match rec.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => self.start_markers(rec),
                TxnState::Ongoing if state::timed_out(&rec, now) => {
                    let mut abort = state::abort_with_bump(&rec, now);
                    if self.put(&abort).await? {
                        tracing::info!(transactional_id = %id, timeout_ms = rec.timeout_ms, "aborting a timed-out transaction");
                        abort.version += 1;
                        self.start_markers(abort);
                    }
                }
                _ if state::expired(&rec, now, self.args.config.id_expiration_ms) => {
                    self.args
                        .store
                        .delete_transaction(&id, rec.version)
                        .await
                        .map_err(storage)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Hands one marker per partition of `rec` to the produce buffer and waits for all;
/// true when every partition has its marker (or a newer epoch of the producer already, or
/// no longer exists: its topic was deleted).
async fn write_markers(
    buffer: &ActorSlot<BufferMsg>,
    store: &SharedMetadataStore,
    rec: &TxnRecord,
    wait: Duration,
) -> bool {
    let commit = rec.state == TxnState::PrepareCommit;
    let now = inkless_storage::now_ms();
    let mut waits = Vec::with_capacity(rec.partitions.len());
    let mut parts = Vec::with_capacity(rec.partitions.len());
    for &(topic_id, partition) in &rec.partitions {
        let (tx, rx) = oneshot::channel();
        let batch = inkless_protocol::control::marker_batch(
            rec.producer_id,
            rec.producer_epoch,
            commit,
            0,
            now,
        );
        parts.push(PartAppend {
            tp: TopicPartition {
                topic_id,
                partition,
            },
            batches: vec![batch],
            reply: tx,
        });
        waits.push(rx);
    }
    if !parts.is_empty() {
        let Some(b) = buffer.get() else {
            return false;
        };
        if b.post(BufferMsg::Append(parts)).is_err() {
            return false;
        }
    }
    let mut failed = Vec::new();
    for (rx, &tp) in waits.into_iter().zip(&rec.partitions) {
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Ok(_))) | Ok(Ok(Err(AppendError::InvalidProducerEpoch { .. }))) => {}
            other => {
                tracing::warn!(transactional_id = %rec.transactional_id, partition = ?tp, outcome = ?other, "transaction marker not written; retrying later");
                failed.push(tp);
            }
        }
    }
    failed.is_empty() || all_deleted(store, &failed).await
}

/// Whether every one of `partitions` belongs to a topic that no longer exists (a deleted
/// topic needs no marker; waiting for one would hold the transaction forever).
async fn all_deleted(store: &SharedMetadataStore, partitions: &[PartitionKey]) -> bool {
    let Ok(topics) = store.list_topics().await else {
        return false;
    };
    partitions.iter().all(|(id, p)| {
        !topics
            .iter()
            .any(|t| t.id == *id && (0..t.partitions).contains(p))
    })
}

impl Actor for TxnCoordinator {
    type Msg = TxnMsg;
    type State = TxnCoordinatorState;
    type Arguments = TxnArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: TxnArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let me = Mailbox::new(myself, args.queued.clone());
        // The first tick resumes whatever a previous owner left in a Prepare state.
        me.post_after(Duration::from_millis(200), || TxnMsg::Tick);
        Ok(TxnCoordinatorState {
            me,
            args,
            writing: HashSet::new(),
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
            TxnMsg::Init {
                id,
                timeout_ms,
                claimed,
                reply,
            } => {
                let r = match state.owns(&id) {
                    true => state.init(&id, timeout_ms, claimed).await,
                    false => Err(TxnError::NotCoordinator),
                };
                let _ = reply.send(r);
            }
            TxnMsg::AddPartitions {
                id,
                producer_id,
                epoch,
                parts,
                reply,
            } => {
                let r = match state.owns(&id) {
                    true => {
                        state
                            .update(&id, |rec, now| {
                                state::add_partitions(rec, producer_id, epoch, &parts, now)
                            })
                            .await
                    }
                    false => Err(TxnError::NotCoordinator),
                };
                let _ = reply.send(r);
            }
            TxnMsg::AddOffsets {
                id,
                producer_id,
                epoch,
                group,
                reply,
            } => {
                let r = match state.owns(&id) {
                    true => {
                        state
                            .update(&id, |rec, now| {
                                state::add_offsets(rec, producer_id, epoch, &group, now)
                            })
                            .await
                    }
                    false => Err(TxnError::NotCoordinator),
                };
                let _ = reply.send(r);
            }
            TxnMsg::End { id, req, reply } => {
                let r = match state.owns(&id) {
                    true => state.end(&id, req).await,
                    false => Err(TxnError::NotCoordinator),
                };
                let _ = reply.send(r);
            }
            TxnMsg::MarkersDone { id, ok } => {
                state.writing.remove(&id);
                if ok {
                    if let Err(e) = state.complete(&id).await {
                        tracing::warn!(transactional_id = %id, error = %e, "completing a transaction failed; retrying later");
                    }
                } else {
                    // Soon again: the producer waits for this transaction to complete.
                    state
                        .me
                        .post_after(MARKER_RETRY_DELAY, move || TxnMsg::Resume { id });
                }
            }
            TxnMsg::Resume { id } => {
                if let Err(e) = state.resume(&id).await {
                    tracing::warn!(transactional_id = %id, error = %e, "resuming markers failed; the next pass retries");
                }
            }
            TxnMsg::Tick => {
                if let Err(e) = state.tick().await {
                    tracing::warn!(error = %e, "transaction coordinator pass failed");
                }
                let every = state.args.config.abort_check_interval;
                state.me.post_after(every, || TxnMsg::Tick);
            }
        }
        Ok(())
    }
}
