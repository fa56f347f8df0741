//! IndexWriter: group-commits the appends of every partition of this node.
//!
//! Takes [`IndexMsg::Commit`] from PartitionActors. While one transaction runs, new appends
//! queue; when it finishes, everything queued (up to `max_appends_per_commit`) goes into the
//! next transaction. One transaction at a time keeps each partition's commits in the order
//! its actor sent them. Each partition is answered with [`PartitionMsg::Committed`].
//! If the metadata store fails, every partition in that group is told so and reloads; the
//! writer itself keeps running. If the writer crashes, the NodeSupervisor restarts it.

use crate::partition::actor::PartitionMsg;
use crate::tree::mailbox::{Mailbox, QueueCount};
use inkless_storage::metadata::{AppendOutcome, PartitionAppend, SharedMetadataStore};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::VecDeque;

/// Messages of the [`IndexWriter`].
#[derive(Debug)]
pub enum IndexMsg {
    /// Commit one partition's append.
    Commit {
        /// The append.
        append: PartitionAppend,
        /// Who to answer.
        reply_to: Mailbox<PartitionMsg>,
        /// Echoed back in the answer.
        token: u64,
    },
    /// A transaction finished (sent by the writer to itself).
    Done {
        /// Who to answer, in order.
        waiters: Vec<(Mailbox<PartitionMsg>, u64)>,
        /// The outcome per append, or the error of the whole transaction.
        result: Result<Vec<AppendOutcome>, String>,
    },
}

// Local only: never sent to another node.
impl ractor::Message for IndexMsg {}

/// Arguments of the [`IndexWriter`].
#[derive(Debug, Clone)]
pub struct IndexWriterArgs {
    /// Its mailbox count (see [`crate::tree::mailbox`]).
    pub queued: QueueCount,
    /// The metadata store.
    pub store: SharedMetadataStore,
    /// Upper bound of appends in one transaction.
    pub max_appends_per_commit: usize,
}

/// State of the writer.
#[derive(Debug)]
pub struct IndexWriterState {
    me: Mailbox<IndexMsg>,
    args: IndexWriterArgs,
    pending: VecDeque<(PartitionAppend, Mailbox<PartitionMsg>, u64)>,
    committing: bool,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct IndexWriter;

impl IndexWriterState {
    fn start_commit(&mut self) {
        if self.committing || self.pending.is_empty() {
            return;
        }
        let n = self.pending.len().min(self.args.max_appends_per_commit);
        let mut appends = Vec::with_capacity(n);
        let mut waiters = Vec::with_capacity(n);
        for (a, r, t) in self.pending.drain(..n) {
            appends.push(a);
            waiters.push((r, t));
        }
        self.committing = true;
        let store = self.args.store.clone();
        let me = self.me.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let result = store
                .commit_appends(appends)
                .await
                .map_err(|e| e.to_string());
            crate::metrics::get().produce.metadata_commit.since(started);
            if let Err(e) = &result {
                tracing::error!(error = %e, "metadata commit failed");
            }
            let _ = me.post(IndexMsg::Done { waiters, result });
        });
    }
}

impl Actor for IndexWriter {
    type Msg = IndexMsg;
    type State = IndexWriterState;
    type Arguments = IndexWriterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: IndexWriterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(IndexWriterState {
            me: Mailbox::new(myself.clone(), args.queued.clone()),
            args,
            pending: VecDeque::new(),
            committing: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // Counted out when answered: the writer's count is its backlog of appends.
            IndexMsg::Commit {
                append,
                reply_to,
                token,
            } => {
                state.pending.push_back((append, reply_to, token));
            }
            IndexMsg::Done { waiters, result } => {
                state.me.taken();
                state.committing = false;
                for (i, (reply_to, token)) in waiters.into_iter().enumerate() {
                    let outcome = match &result {
                        Ok(v) => v
                            .get(i)
                            .cloned()
                            .ok_or_else(|| "missing commit outcome".to_string()),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = reply_to.post(PartitionMsg::Committed { token, outcome });
                    state.me.taken();
                }
            }
        }
        state.start_commit();
        Ok(())
    }
}
