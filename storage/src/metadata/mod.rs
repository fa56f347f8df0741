//! The metadata store: the control plane of Inkless.
//!
//! It holds topics and their configs; per partition the log start offset, high watermark and
//! owner epoch; the coordinates of every stored batch; idempotent-producer state; and the
//! objects those batches live in. One trait, [`MetadataStore`], with interchangeable
//! implementations chosen by URL (`sqlite://` now, `postgres://` for clusters); all share
//! one test suite ([`conformance`]).
//!
//! Ownership: a partition (or a consumer group) is claimed with
//! [`MetadataStore::claim_partition`] (many at once, in one transaction, with
//! [`MetadataStore::claim_partitions`]; a group with [`MetadataStore::claim_group`]) by a
//! [`Claimant`]: a node under one generation of its lease. A claim succeeds only when the
//! thing is free (never owned, or released), already the claimant's, or held under a lease
//! that has expired on the store's clock; taking it from an expired lease *breaks* that
//! lease (gives its row a new generation), so its holder learns at its next renewal that
//! everything it held under the old generation is gone. So at most one live lease holds a
//! thing at a time.
//!
//! Fencing: every write to a partition (or a group's offsets) carries the owner epoch its
//! writer claimed; a write with an older epoch is refused, so a stale owner can never write
//! after its partition moved.

pub mod conformance;
mod instrumented;
mod postgres;
mod sqlite;

pub use instrumented::Instrumented;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A topic with this name exists.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// No such topic.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// No such partition.
    #[error("unknown partition {1} of topic {0}")]
    UnknownPartition(Uuid, i32),
    /// The request is invalid (e.g. fewer partitions than exist).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The writer's owner epoch is stale.
    #[error("partition {1} of topic {0} is owned by a newer epoch")]
    Fenced(Uuid, i32),
    /// Another incarnation of this node id holds an unexpired lease.
    #[error("node {node_id} is registered by another process for {expires_in_ms} ms more")]
    LeaseHeld {
        /// The node id.
        node_id: i32,
        /// Time left on the other incarnation's lease.
        expires_in_ms: i64,
    },
    /// The thing is held by another node under a live lease: it must release it first.
    #[error("held by node {owner} under a live lease")]
    OwnedElsewhere {
        /// The node holding it.
        owner: i32,
    },
    /// The claimant's own lease is not live under the generation it claimed with.
    #[error("the lease of node {node_id} is not live under generation {generation}")]
    LeaseLost {
        /// The claimant.
        node_id: i32,
        /// The generation it claimed with.
        generation: i64,
    },
    /// A commit names an object that was deleted (its last live bytes were retired before
    /// this commit, or it was taken for an orphan): nothing of the commit is stored.
    #[error("object {0} was deleted")]
    ObjectDeleted(String),
    /// A newer balancer term started: this balancer's pins are refused.
    #[error("a newer balancer (epoch {0}) places partitions now")]
    BalancerFenced(i64),
    /// The group's offsets were written by a coordinator with a stale owner epoch.
    #[error("group {0} is coordinated under a newer epoch")]
    GroupFenced(String),
    /// The database failed.
    #[error("metadata database: {0}")]
    Database(String),
    /// The URL names no supported store.
    #[error("invalid metadata store URL {0:?}")]
    InvalidUrl(String),
}

/// Result of metadata-store calls.
pub type MetaResult<T> = Result<T, MetaError>;

/// A topic as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    /// Stable topic id (Kafka's topic UUID).
    pub id: Uuid,
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Topic-level configs that were set explicitly (Kafka names, e.g. `retention.ms`).
    pub configs: BTreeMap<String, String>,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Topic name (already validated).
    pub name: String,
    /// Partition count, at least 1.
    pub partitions: i32,
    /// Explicit configs.
    pub configs: BTreeMap<String, String>,
}

/// Where one stored batch is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchCoordinate {
    /// Offset assigned to its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// Object key.
    pub object_key: String,
    /// Size of the whole object (for block-aligned reads).
    pub object_size: u64,
    /// First byte of the batch in the object.
    pub byte_offset: u64,
    /// Bytes of the batch.
    pub byte_len: u32,
    /// Largest timestamp in the batch (after LogAppendTime stamping, if any).
    pub max_timestamp: i64,
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// First sequence, or -1.
    pub base_sequence: i32,
    /// Last sequence, or -1.
    pub last_sequence: i32,
}

/// Latest known state of one idempotent producer on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Producer id.
    pub producer_id: i64,
    /// Current epoch.
    pub producer_epoch: i16,
    /// Sequence of the last record written.
    pub last_sequence: i32,
    /// Offset of the last record written.
    pub last_offset: i64,
    /// When the partition's sequencer last appended a batch of this producer
    /// (milliseconds since the Unix epoch, the sequencing node's clock). Producer state
    /// idle for longer than `producer.id.expiration.ms` is expired (ADR 0015).
    pub last_write_ms: i64,
}

/// A committed consumer-group offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch the consumer saw, or -1.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
    /// When it was committed.
    pub commit_time_ms: i64,
}

/// Whether a claim takes partitions (a new owner epoch) or reloads those the claimant holds
/// ([`MetadataStore::claim_partitions`], [`MetadataStore::reload_partitions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimMode {
    /// Take what the ownership rules allow, bumping the owner epoch.
    Take,
    /// Read the rows the claimant holds under its lease generation, keeping the epoch.
    Reload,
}

/// Who claims a partition or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimant {
    /// The claiming node.
    pub node_id: i32,
    /// The generation of the node's lease ([`LeaseView::generation`]); `None` for a node
    /// that runs alone without leases, whose claims always succeed.
    pub lease_generation: Option<i64>,
}

impl Claimant {
    /// A node alone, without leases.
    pub fn alone(node_id: i32) -> Self {
        Self {
            node_id,
            lease_generation: None,
        }
    }
}

/// A partition: topic id and index.
pub type PartitionKey = (Uuid, i32);

/// An operator's choice of node for a partition (Kafka's AlterPartitionReassignments), as
/// stored, with the node that holds the partition now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionPin {
    /// The partition.
    pub partition: PartitionKey,
    /// The node it is pinned to: placement gives it that node while the node is live.
    pub node_id: i32,
    /// The node whose claim holds the partition now (`None` while it is released).
    pub holder: Option<i32>,
    /// True if the cluster's balancer wrote it (ADR 0022), false for an operator's pin.
    /// An operator's pin always wins: the balancer never changes or removes one.
    pub by_balancer: bool,
}

/// What a node last reported of its partitions' load (ADR 0022), for the balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLoad {
    /// The reporting node.
    pub node_id: i32,
    /// How long ago it reported, on the store's clock.
    pub reported_ago_ms: i64,
    /// Its busiest partitions with the bytes per second appended to each, busiest first.
    pub partitions: Vec<(PartitionKey, u64)>,
}

/// [`NodeLoad::partitions`] as stored: `topic-id:partition:bytes-per-second`, joined by
/// commas.
pub(crate) fn encode_load(load: &[(PartitionKey, u64)]) -> String {
    load.iter()
        .map(|((t, p), bps)| format!("{t}:{p}:{bps}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The inverse of [`encode_load`].
pub(crate) fn decode_load(s: &str) -> MetaResult<Vec<(PartitionKey, u64)>> {
    let bad = |x: &str| MetaError::Invalid(format!("bad partition load {x}"));
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            let (key, bps) = x.rsplit_once(':').ok_or_else(|| bad(x))?;
            let bps = bps.parse().map_err(|_| bad(x))?;
            let key = decode_partitions(key)?.pop().ok_or_else(|| bad(x))?;
            Ok((key, bps))
        })
        .collect()
}

/// The refusal of a partition listed again in one [`MetadataStore::claim_partitions`].
fn listed_twice((topic_id, partition): PartitionKey) -> MetaError {
    MetaError::Invalid(format!(
        "partition {partition} of topic {topic_id} is listed twice in one claim"
    ))
}

/// What a lease renewal returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// The generation of this node's lease. It changes when another node took something
    /// from the lease after it expired, and for every new incarnation; whatever the node
    /// holds under an older generation is no longer its own.
    pub generation: i64,
    /// True when the lease had expired on the store's clock before this renewal.
    pub lapsed: bool,
    /// Every lease row, by node id.
    pub nodes: Vec<NodeStatus>,
    /// Node ids an operator marked draining ([`MetadataStore::set_node_draining`]), in
    /// order, live or not: placement gives them nothing new and moves off what they run.
    pub draining: Vec<i32>,
    /// Changes whenever a partition pin is written or removed (0 before the first): a node
    /// reads the pins ([`MetadataStore::partition_pins`]) only when it changed.
    pub pins_version: i64,
}

/// State of a partition when its owner claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Owner epoch now held by the claimant.
    pub owner_epoch: i64,
    /// First offset still readable.
    pub log_start_offset: i64,
    /// Next offset to assign; everything below is committed.
    pub high_watermark: i64,
    /// Producer state of the partition.
    pub producers: Vec<ProducerRecord>,
    /// The most recent batches of each producer (newest last), for duplicate detection.
    pub producer_batches: Vec<BatchCoordinate>,
    /// Transactions open on the partition: (producer id, first offset).
    pub open_txns: Vec<(i64, i64)>,
    /// Aborted transactions of the partition not yet below its log start.
    pub aborted_txns: Vec<AbortedTxn>,
}

/// An aborted transaction on one partition, as Fetch reports it to read_committed
/// consumers: records of `producer_id` between the two offsets are to be skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// Producer id.
    pub producer_id: i64,
    /// First offset of the transaction on the partition.
    pub first_offset: i64,
    /// Offset of its ABORT marker.
    pub last_offset: i64,
}

/// A partition's transactions as its next owner loads them: the open ones as (producer id,
/// first offset), and the aborted ones.
pub type PartitionTxns = (Vec<(i64, i64)>, Vec<AbortedTxn>);

/// A partition's committed producer state and its open transactions (producer id, first
/// offset), for DescribeProducers.
pub type PartitionProducers = (Vec<ProducerRecord>, Vec<(i64, i64)>);

/// A change of a partition's open transactions, committed with the append that makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEvent {
    /// The producer's first transactional batch of a transaction landed at `first_offset`.
    Opened {
        /// Producer id.
        producer_id: i64,
        /// Offset of its first record.
        first_offset: i64,
    },
    /// A COMMIT marker ended the producer's transaction.
    Committed {
        /// Producer id.
        producer_id: i64,
    },
    /// An ABORT marker ended the producer's transaction.
    Aborted(AbortedTxn),
}

/// Batches of one partition to commit atomically with its new high watermark.
#[derive(Debug, Clone)]
pub struct PartitionAppend {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// The writer's owner epoch.
    pub owner_epoch: i64,
    /// Batches in offset order; the first one's base offset must equal the stored high
    /// watermark (appends are contiguous).
    pub batches: Vec<BatchCoordinate>,
    /// Producer states changed by these batches.
    pub producers: Vec<ProducerRecord>,
    /// Transactions these batches open or end.
    pub txn_events: Vec<TxnEvent>,
}

impl PartitionAppend {
    /// High watermark after this append.
    pub fn end_offset(&self) -> Option<i64> {
        self.batches.last().map(|b| b.last_offset + 1)
    }
}

/// Outcome of one partition's append inside a group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Committed; the high watermark is now the end of the append.
    Committed,
    /// The writer's epoch is stale: it must stop.
    Fenced,
    /// The append does not start at the stored high watermark: the writer must reload.
    OffsetMismatch {
        /// The stored high watermark.
        high_watermark: i64,
    },
    /// The topic or partition no longer exists.
    UnknownPartition,
}

/// Separates group ids in a stored [`TxnRecord::groups`] list; group ids holding it are
/// refused by the coordinator.
pub const GROUP_LIST_SEPARATOR: char = '\u{1f}';

/// [`TxnRecord::partitions`] as stored: `topic-id:partition` joined by commas.
pub(crate) fn encode_partitions(parts: &[PartitionKey]) -> String {
    parts
        .iter()
        .map(|(t, p)| format!("{t}:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The inverse of [`encode_partitions`].
pub(crate) fn decode_partitions(s: &str) -> MetaResult<Vec<PartitionKey>> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            let (t, p) = x
                .split_once(':')
                .ok_or_else(|| MetaError::Invalid(format!("bad partition {x}")))?;
            let t = Uuid::parse_str(t).map_err(|e| MetaError::Invalid(e.to_string()))?;
            let p = p
                .parse()
                .map_err(|_| MetaError::Invalid(format!("bad partition {x}")))?;
            Ok((t, p))
        })
        .collect()
}

/// [`TxnRecord::groups`] as stored.
pub(crate) fn encode_groups(groups: &[String]) -> String {
    groups.join(&GROUP_LIST_SEPARATOR.to_string())
}

/// The inverse of [`encode_groups`].
pub(crate) fn decode_groups(s: &str) -> Vec<String> {
    s.split(GROUP_LIST_SEPARATOR)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// Kafka's transaction states (the transaction coordinator's state machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    /// No transaction in progress.
    Empty,
    /// Partitions or offsets were added: a transaction is running.
    Ongoing,
    /// Commit decided; markers are being written.
    PrepareCommit,
    /// Abort decided; markers are being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TxnState {
    /// The stored code.
    pub fn code(self) -> i16 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
        }
    }

    /// The state of a stored code.
    pub fn from_code(c: i16) -> MetaResult<TxnState> {
        Ok(match c {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            _ => return Err(MetaError::Invalid(format!("unknown transaction state {c}"))),
        })
    }

    /// Kafka's name of the state (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }
}

/// A transactional id's coordinator state, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// The client's `transactional.id`.
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// Current producer epoch.
    pub producer_epoch: i16,
    /// State.
    pub state: TxnState,
    /// The producer's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// Partitions of the running (or completing) transaction.
    pub partitions: Vec<PartitionKey>,
    /// Consumer groups whose offsets the transaction commits.
    pub groups: Vec<String>,
    /// When the running transaction started (ms), or -1.
    pub txn_start_ms: i64,
    /// When the record last changed (ms).
    pub last_update_ms: i64,
    /// Row version for compare-and-set; 0 for a record not stored yet.
    pub version: i64,
    /// The producer id the client continues with once this Prepare state completes, when
    /// its epochs ran out (KIP-890 epoch bump per transaction), else -1.
    pub next_producer_id: i64,
}

/// What a node announces in its membership lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeLease {
    /// Broker id.
    pub node_id: i32,
    /// Random per process start: tells a restarted node from the one that held the lease.
    pub incarnation: Uuid,
    /// Availability zone ("" for none).
    pub az: String,
    /// host:port Kafka clients connect to.
    pub kafka_addr: String,
    /// host:port of the node's cluster (actor mesh) listener.
    pub cluster_addr: String,
    /// host:port of the node's admin HTTP endpoint ("" if disabled).
    pub admin_addr: String,
}

/// A lease row as seen at one moment of the store's clock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// The lease.
    pub lease: NodeLease,
    /// Milliseconds since the node last renewed.
    pub renewed_ago_ms: i64,
    /// Milliseconds until the lease expires; zero or negative once expired.
    pub expires_in_ms: i64,
}

impl NodeStatus {
    /// True while the lease is unexpired.
    pub fn is_live(&self) -> bool {
        self.expires_in_ms > 0
    }
}

impl NodeStatus {
    /// Builds a status from a stored row read at `now_ms` of the store's clock.
    pub(crate) fn from_row(
        lease: NodeLease,
        renewed_ms: i64,
        expires_ms: i64,
        now_ms: i64,
    ) -> Self {
        Self {
            lease,
            renewed_ago_ms: now_ms - renewed_ms,
            expires_in_ms: expires_ms - now_ms,
        }
    }
}

/// What retention allows to retire of one partition, by whole batches as Kafka does by
/// segments (only ever a prefix of the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionQuery {
    /// The partition.
    pub partition: PartitionKey,
    /// `now - retention.ms`: a batch whose largest timestamp is below this has expired, and
    /// so has every batch before the first one that has not. `None`: no time limit.
    pub expire_before: Option<i64>,
    /// `retention.bytes`: the oldest batches are retired while what remains without them is
    /// still at least this big. `None`: no size limit.
    pub max_bytes: Option<u64>,
}

/// A batch row as a rewrite read it (see [`MetadataStore::rewrite_batches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRef {
    /// First offset of the row.
    pub base_offset: i64,
    /// The object it was read from.
    pub object_key: String,
    /// Where in that object.
    pub byte_offset: u64,
}

impl From<&BatchCoordinate> for RowRef {
    fn from(b: &BatchCoordinate) -> Self {
        Self {
            base_offset: b.base_offset,
            object_key: b.object_key.clone(),
            byte_offset: b.byte_offset,
        }
    }
}

/// The rewrite of a run of one partition's batch rows into rows of one new object (merging;
/// key compaction later).
#[derive(Debug, Clone)]
pub struct BatchRewrite {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// The rewriter's owner epoch.
    pub owner_epoch: i64,
    /// The rows read, in offset order: every row of the partition from the first one's base
    /// offset to the last one's.
    pub old: Vec<RowRef>,
    /// The rows that replace them, in offset order, all in one new object, covering the
    /// same offsets (a row may hold several adjacent batches).
    pub new: Vec<BatchCoordinate>,
}

/// What a well-formed [`BatchRewrite`] covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RewriteShape {
    /// Base offset of the first old row (and of the first new row).
    pub(crate) first_base: i64,
    /// Base offset of the last old row.
    pub(crate) last_old_base: i64,
    /// Last offset of the new rows (the store checks it is the old rows' last offset).
    pub(crate) last_offset: i64,
    /// The new object and its size.
    pub(crate) object: (String, u64),
    /// Bytes of the new rows.
    pub(crate) live_bytes: i64,
}

impl BatchRewrite {
    /// Checks what the store does not need to read: both sides non-empty and in offset
    /// order, the new rows contiguous, in one object, starting where the old ones start.
    pub(crate) fn shape(&self) -> MetaResult<RewriteShape> {
        let invalid = |why: &str| MetaError::Invalid(format!("rewrite: {why}"));
        let (Some(first_old), Some(last_old)) = (self.old.first(), self.old.last()) else {
            return Err(invalid("no rows to replace"));
        };
        let (Some(first_new), Some(last_new)) = (self.new.first(), self.new.last()) else {
            return Err(invalid("no new rows"));
        };
        if self
            .old
            .windows(2)
            .any(|w| w[0].base_offset >= w[1].base_offset)
        {
            return Err(invalid("old rows out of order"));
        }
        let contiguous = self
            .new
            .windows(2)
            .all(|w| w[1].base_offset == w[0].last_offset + 1)
            && self.new.iter().all(|b| b.last_offset >= b.base_offset);
        if !contiguous || first_new.base_offset != first_old.base_offset {
            return Err(invalid("new rows do not cover the old ones' offsets"));
        }
        if self
            .new
            .iter()
            .any(|b| b.object_key != first_new.object_key)
        {
            return Err(invalid("new rows in more than one object"));
        }
        Ok(RewriteShape {
            first_base: first_old.base_offset,
            last_old_base: last_old.base_offset,
            last_offset: last_new.last_offset,
            object: (first_new.object_key.clone(), first_new.object_size),
            live_bytes: self.new.iter().map(|b| i64::from(b.byte_len)).sum(),
        })
    }
}

/// Outcome of a [`MetadataStore::rewrite_batches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteOutcome {
    /// The new rows replaced the old ones.
    Replaced,
    /// The rewriter's epoch is stale.
    Fenced,
    /// The rows are no longer those read (retired, or rewritten by someone else): nothing
    /// changed, and the new object is referenced by nothing.
    Changed,
}

/// Counts of the object table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectStats {
    /// Objects with live bytes.
    pub live_objects: u64,
    /// Bytes of those objects, live or not.
    pub live_object_bytes: u64,
    /// Live bytes (referenced by batches) over all objects.
    pub live_bytes: u64,
    /// Objects without live bytes, waiting for their grace period.
    pub dead_objects: u64,
    /// Objects marked deleted and still remembered (see
    /// [`MetadataStore::retire_dead_objects`]).
    pub deleted_objects: u64,
    /// Batch rows.
    pub batches: u64,
}

/// An object as the metadata store records it (for `inkless storage check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Object key.
    pub key: String,
    /// Size recorded by the first commit that named it (0 for an orphan's mark).
    pub size_bytes: u64,
    /// Bytes of it that batches reference, as maintained by commits and deletions.
    pub live_bytes: i64,
    /// When its row was created (store clock, ms).
    pub created_ms: i64,
    /// Since when it has had no live bytes, if so.
    pub dead_since_ms: Option<i64>,
    /// When it was marked deleted (a retired dead object or an orphan), if so.
    pub deleted_ms: Option<i64>,
}

/// One batch row, reduced to what a storage check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    /// The partition.
    pub partition: PartitionKey,
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// Object key.
    pub object_key: String,
    /// First byte in the object.
    pub byte_offset: u64,
    /// Bytes of the batch.
    pub byte_len: u32,
}

impl StoredBatch {
    /// Where the next page of [`MetadataStore::batches_page`] starts after this batch.
    pub fn cursor(&self) -> BatchCursor {
        (self.partition.0, self.partition.1, self.base_offset)
    }
}

/// A position in the batch table: (topic id, partition, base offset).
pub type BatchCursor = (Uuid, i32, i64);

/// An object whose recorded live bytes differ from the bytes of the batches naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBytesMismatch {
    /// Object key.
    pub key: String,
    /// Live bytes recorded in its row (`None`: batches name an object without a row).
    pub stored: Option<i64>,
    /// Sum of the sizes of the batches that name it.
    pub batches: i64,
}

/// What [`MetadataStore::retire_dead_objects`] marks, hands out and forgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadObjects {
    /// Objects without live bytes for at least this long are marked (the grace period that
    /// covers reads in flight).
    pub grace_ms: i64,
    /// Marks whose deletion was not confirmed within this long are handed out again (0:
    /// all of them, as a collector that has just started takes over what a crashed one left).
    pub retry_ms: i64,
    /// Confirmed marks of objects first committed longer ago than this are forgotten.
    pub forget_ms: i64,
    /// Most objects handed out.
    pub limit: usize,
}

/// Lease rows expired longer than this are deleted by the next renewal of any node.
pub const EXPIRED_LEASE_KEPT_MS: i64 = 10 * 60 * 1000;

/// Owner epochs read by [`MetadataStore::partition_epochs`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochChanges {
    /// Each partition read, with its owner epoch.
    pub epochs: Vec<(PartitionKey, i64)>,
    /// The store's clock (ms) before the read.
    pub as_of_ms: i64,
}

/// The metadata store. All methods are safe to call concurrently.
#[async_trait::async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    /// Creates a topic and its partitions.
    async fn create_topic(&self, topic: NewTopic) -> MetaResult<TopicRecord>;
    /// Deletes a topic, its partitions, batches, producer state and configs.
    async fn delete_topic(&self, name: &str) -> MetaResult<TopicRecord>;
    /// Every topic.
    async fn list_topics(&self) -> MetaResult<Vec<TopicRecord>>;
    /// Sets (`Some`) or removes (`None`) topic configs.
    async fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> MetaResult<TopicRecord>;
    /// Raises the partition count to `total`.
    async fn create_partitions(&self, name: &str, total: i32) -> MetaResult<TopicRecord>;
    /// Takes ownership of a partition (see the module documentation for when that is
    /// allowed; otherwise [`MetaError::OwnedElsewhere`] or [`MetaError::LeaseLost`]): bumps
    /// its owner epoch and returns its state. A batch of one
    /// ([`MetadataStore::claim_partitions`]).
    async fn claim_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
        claimant: Claimant,
    ) -> MetaResult<PartitionState> {
        self.claim_partitions(claimant, vec![(topic_id, partition)])
            .await?
            .pop()
            .unwrap_or_else(|| Err(MetaError::Database("a claim without an outcome".into())))
    }
    /// Claims many partitions in one transaction, each under the rules of
    /// [`MetadataStore::claim_partition`] and on its own: one result per listed partition,
    /// in the order given, either its state under its new owner epoch or why it was refused
    /// ([`MetaError::OwnedElsewhere`], [`MetaError::UnknownPartition`], or
    /// [`MetaError::Invalid`] for a partition listed twice, whose first listing counts).
    /// Fails as a whole, claiming nothing, with [`MetaError::LeaseLost`] when the claimant's
    /// lease is not live under its generation, or when the database fails.
    async fn claim_partitions(
        &self,
        claimant: Claimant,
        partitions: Vec<PartitionKey>,
    ) -> MetaResult<Vec<MetaResult<PartitionState>>>;
    /// Reloads partitions the claimant already holds under its lease generation, in one
    /// transaction, keeping their owner epochs: a node starting the actor of a partition it
    /// kept dormant (nothing of an earlier actor is in flight then). One result per listed
    /// partition, as [`MetadataStore::claim_partitions`]; a partition held by anyone else,
    /// or by no one, is [`MetaError::OwnedElsewhere`] (its holder, -1 for none).
    async fn reload_partitions(
        &self,
        claimant: Claimant,
        partitions: Vec<PartitionKey>,
    ) -> MetaResult<Vec<MetaResult<PartitionState>>>;
    /// Gives up partitions the claimant holds (others are left alone), bumping their owner
    /// epochs so that nothing in flight from the old owner can commit. Returns how many.
    async fn release_partitions(
        &self,
        claimant: Claimant,
        partitions: Vec<PartitionKey>,
    ) -> MetaResult<u64>;
    /// The partitions the claimant holds.
    async fn owned_partitions(&self, claimant: Claimant) -> MetaResult<Vec<PartitionKey>>;
    /// Takes the coordination of a consumer group (same rules as a partition) and returns
    /// the group's new owner epoch, which [`MetadataStore::commit_offsets`] checks.
    async fn claim_group(&self, group: &str, claimant: Claimant) -> MetaResult<i64>;
    /// Gives up groups the claimant coordinates. Returns how many.
    async fn release_groups(&self, claimant: Claimant, groups: Vec<String>) -> MetaResult<u64>;
    /// The groups the claimant coordinates.
    async fn owned_groups(&self, claimant: Claimant) -> MetaResult<Vec<String>>;
    /// Commits appends of many partitions in one transaction. Each partition is checked on
    /// its own (epoch, contiguity); the others still commit.
    async fn commit_appends(&self, appends: Vec<PartitionAppend>)
        -> MetaResult<Vec<AppendOutcome>>;
    /// Batches that hold offsets at or after `from_offset`, in offset order, stopping once
    /// `max_bytes` is reached (at least one batch is returned if any exists).
    async fn read_batches(
        &self,
        topic_id: Uuid,
        partition: i32,
        from_offset: i64,
        max_bytes: u64,
    ) -> MetaResult<Vec<BatchCoordinate>>;
    /// The first batch whose max timestamp is at or after `timestamp`.
    async fn batch_for_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        timestamp: i64,
    ) -> MetaResult<Option<BatchCoordinate>>;
    /// The batch with the largest timestamp (the earliest such batch on ties).
    async fn batch_with_max_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> MetaResult<Option<BatchCoordinate>>;
    /// The bytes stored for each of `partitions` (the sum of its batches' sizes), in the
    /// same order; 0 for a partition without batches or that does not exist. Summed by the
    /// database, without reading the batches out.
    async fn partition_sizes(&self, partitions: Vec<PartitionKey>) -> MetaResult<Vec<u64>>;
    /// The owner epoch (it grows with every claim and release: Kafka's leader epoch) of every
    /// partition whose epoch changed at or after `since_ms` on the store's clock (`i64::MIN`:
    /// of every partition), and the store's clock before the read. A change carries the
    /// time its transaction started, so a reader that asks next from `as_of_ms` minus the
    /// longest claim transaction sees every change since this read.
    async fn partition_epochs(&self, since_ms: i64) -> MetaResult<EpochChanges>;
    /// Pins partitions to nodes (`Some(node_id)`, replacing an earlier pin) or removes their
    /// pins (`None`; a partition without one is left alone), all in one transaction. Fails
    /// with [`MetaError::UnknownPartition`], changing nothing, if a partition does not
    /// exist. Deleting a topic deletes its pins.
    async fn set_partition_pins(&self, pins: Vec<(PartitionKey, Option<i32>)>) -> MetaResult<()>;
    /// Every pin, in partition order, with the node holding each partition now.
    async fn partition_pins(&self) -> MetaResult<Vec<PartitionPin>>;
    /// Starts a new balancer term (ADR 0022): returns its epoch, higher than any before.
    /// Pins written under an older epoch are refused from then on.
    async fn claim_balancer_epoch(&self) -> MetaResult<i64>;
    /// The balancer's pins (`Some(node_id)`) and removals of its pins (`None`), in one
    /// transaction, if `epoch` is still the latest ([`MetaError::BalancerFenced`] if not).
    /// An operator's pin is never changed or removed, and a partition that no longer exists
    /// is skipped. Returns how many pins were written or removed.
    async fn set_balancer_pins(
        &self,
        epoch: i64,
        pins: Vec<(PartitionKey, Option<i32>)>,
    ) -> MetaResult<usize>;
    /// Replaces what `node_id` last reported of its partitions' load.
    async fn report_load(&self, node_id: i32, load: Vec<(PartitionKey, u64)>) -> MetaResult<()>;
    /// Every node's last load report, by node id.
    async fn node_loads(&self) -> MetaResult<Vec<NodeLoad>>;
    /// Raises the log start offset to `offset` (bounded by the high watermark) and drops
    /// batches wholly below it. Returns the new log start offset.
    async fn delete_records(
        &self,
        topic_id: Uuid,
        partition: i32,
        owner_epoch: i64,
        offset: i64,
    ) -> MetaResult<i64>;
    /// Stores (replacing) committed offsets of a consumer group, if `owner_epoch` is the
    /// group's current owner epoch (else [`MetaError::GroupFenced`]).
    async fn commit_offsets(
        &self,
        group: &str,
        owner_epoch: i64,
        offsets: Vec<CommittedOffset>,
    ) -> MetaResult<()>;
    /// Every committed offset of a group.
    async fn fetch_offsets(&self, group: &str) -> MetaResult<Vec<CommittedOffset>>;
    /// Deletes a group's offsets (all, or the listed partitions); returns how many.
    async fn delete_offsets(&self, group: &str, which: Option<Vec<(Uuid, i32)>>)
        -> MetaResult<u64>;
    /// Groups that have committed offsets or a stored membership state
    /// ([`MetadataStore::save_group_state`]).
    async fn offset_groups(&self) -> MetaResult<Vec<String>>;
    /// Stores (replacing) the membership state of a consumer group, as its coordinator
    /// encoded it (the store does not read it), if `owner_epoch` is the group's current owner
    /// epoch (else [`MetaError::GroupFenced`]); `None` deletes it.
    async fn save_group_state(
        &self,
        group: &str,
        owner_epoch: i64,
        state: Option<Vec<u8>>,
    ) -> MetaResult<()>;
    /// The membership state last stored for a group by [`MetadataStore::save_group_state`].
    async fn load_group_state(&self, group: &str) -> MetaResult<Option<Vec<u8>>>;
    /// For each query, the offset its partition's log start may be raised to under the
    /// query's retention limits ([`RetentionQuery`]): never below the stored log start,
    /// never above the high watermark; 0 for a partition that does not exist.
    async fn retention_offsets(&self, queries: Vec<RetentionQuery>) -> MetaResult<Vec<i64>>;
    /// The first phase of object deletion: marks as deleted up to `q.limit` objects that
    /// have had no live bytes for at least `q.grace_ms` (the store's clock), and returns them
    /// with the objects marked more than `q.retry_ms` ago whose deletion was never confirmed
    /// ([`MetadataStore::confirm_deleted`]: a crash or a failure in between). From the mark
    /// on, a commit naming one of them is refused ([`MetaError::ObjectDeleted`]), so the
    /// caller may delete them from the object store. Also forgets the marks of confirmed
    /// deletions of objects first committed more than `q.forget_ms` ago: longer than any
    /// commit can trail its object's upload (the bound orphan collection also relies on),
    /// so no commit naming them can still come.
    async fn retire_dead_objects(&self, q: DeadObjects) -> MetaResult<Vec<String>>;
    /// The second phase: records that objects marked deleted are gone from the object store.
    async fn confirm_deleted(&self, keys: Vec<String>) -> MetaResult<()>;
    /// Marks as deleted those of `keys` that the store has no row for (objects found in the
    /// object store that no commit ever named: orphans) and returns them; the keys it knows
    /// are left alone. Like [`MetadataStore::retire_dead_objects`], a later commit naming
    /// a returned key is refused.
    async fn retire_orphans(&self, keys: Vec<String>) -> MetaResult<Vec<String>>;
    /// The oldest run of a partition's batch rows that merging may rewrite: rows, in offset
    /// order, from the first one whose object key starts with `prefix` (objects written by
    /// produce), as long as their object was committed at least `min_age_ms` ago (the
    /// node's clock) and their bytes stay within `max_bytes` (at least one row).
    async fn merge_candidates(
        &self,
        partition: PartitionKey,
        prefix: &str,
        min_age_ms: i64,
        max_bytes: u64,
    ) -> MetaResult<Vec<BatchCoordinate>>;
    /// Replaces a run of a partition's rows by rows in a new object, in one transaction
    /// that is refused if the owner epoch is stale ([`RewriteOutcome::Fenced`]) or if the
    /// rows are not exactly those read ([`RewriteOutcome::Changed`]). The old rows' bytes
    /// are released from their objects (marking those left without live bytes), and the new
    /// object is recorded with its live bytes (refused with [`MetaError::ObjectDeleted`] if
    /// it was taken for an orphan meanwhile). Refused with [`MetaError::Invalid`] unless the
    /// new rows cover exactly the old rows' offsets in one object.
    async fn rewrite_batches(&self, rewrite: BatchRewrite) -> MetaResult<RewriteOutcome>;
    /// Counts of the object table, for metrics and checks.
    async fn object_stats(&self) -> MetaResult<ObjectStats>;
    /// Deletes up to `limit` producer rows whose last write
    /// ([`ProducerRecord::last_write_ms`]) is more than `idle_ms` before now (the caller's
    /// clock) and returns how many it deleted. A row written meanwhile by a commit stays.
    async fn expire_producers(&self, idle_ms: i64, limit: usize) -> MetaResult<u64>;
    /// Up to `limit` object rows with keys after `after` (all when `None`), in key order.
    async fn objects_page(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> MetaResult<Vec<StoredObject>>;
    /// Up to `limit` batch rows after `after` (all when `None`), in (topic id, partition,
    /// base offset) order.
    async fn batches_page(
        &self,
        after: Option<BatchCursor>,
        limit: usize,
    ) -> MetaResult<Vec<StoredBatch>>;
    /// For each of `keys`, in one transaction: compares the object's recorded live bytes
    /// with the sum of its batches' sizes and returns those that differ (a key with
    /// neither a row nor batches is left out). With `fix`, sets each differing row's live
    /// bytes to the sum, marking it dead (or alive again) accordingly; a key without a row
    /// is only reported. No commit or deletion touching these objects interleaves.
    async fn recount_live_bytes(
        &self,
        keys: Vec<String>,
        fix: bool,
    ) -> MetaResult<Vec<LiveBytesMismatch>>;
    /// The cluster id, created on first call and stable afterwards.
    async fn cluster_id(&self) -> MetaResult<String>;
    /// A new, never used producer id.
    async fn allocate_producer_id(&self) -> MetaResult<i64>;
    /// Registers or renews this node's lease until `ttl_ms` from now (the store's clock) and
    /// returns its generation and every lease row. Refused with [`MetaError::LeaseHeld`]
    /// while another incarnation of the same node id holds an unexpired lease.
    async fn renew_lease(&self, lease: &NodeLease, ttl_ms: i64) -> MetaResult<LeaseView>;
    /// Ends this incarnation's lease at once (graceful leave).
    async fn release_lease(&self, node_id: i32, incarnation: Uuid) -> MetaResult<()>;
    /// Every lease row, live or recently expired, by node id.
    async fn nodes(&self) -> MetaResult<Vec<NodeStatus>>;
    /// Marks a node draining (`true`) or takes the mark off (`false`); returns whether the
    /// mark changed. The mark is the operator's and outlives the node's lease (a drained
    /// node that restarts stays drained), so any node id is accepted. Read with every
    /// renewal ([`LeaseView::draining`]).
    async fn set_node_draining(&self, node_id: i32, draining: bool) -> MetaResult<bool>;
    /// The node ids marked draining, in order.
    async fn draining_nodes(&self) -> MetaResult<Vec<i32>>;
    /// The use of the store's connection pool, if it has one (for metrics).
    fn pool_status(&self) -> Option<crate::metrics::PoolStatus> {
        None
    }
    /// A transactional id's state, if stored.
    async fn get_transaction(&self, transactional_id: &str) -> MetaResult<Option<TxnRecord>>;
    /// Stores `rec` if the stored version is still `rec.version` (0: not stored yet) and
    /// returns the new version, or `None` when another writer changed it first.
    async fn put_transaction(&self, rec: TxnRecord) -> MetaResult<Option<i64>>;
    /// Every stored transactional id's state.
    async fn list_transactions(&self) -> MetaResult<Vec<TxnRecord>>;
    /// The ids the coordinators' periodic pass has work for, by id: every PrepareCommit or
    /// PrepareAbort; every Ongoing transaction that started (`txn_start_ms >= 0`) more than
    /// its `timeout_ms` before `now_ms`; every Empty, CompleteCommit or CompleteAbort id
    /// last updated before `idle_before_ms` (now minus `transactional.id.expiration.ms`).
    /// Read through indexes on the state and the last update, not a scan of every id.
    async fn due_transactions(
        &self,
        now_ms: i64,
        idle_before_ms: i64,
    ) -> MetaResult<Vec<TxnRecord>>;
    /// Deletes a transactional id's state (and its staged offsets) if its version is still
    /// `version`; true when it was deleted.
    async fn delete_transaction(&self, transactional_id: &str, version: i64) -> MetaResult<bool>;
    /// Stages offsets of `group` committed inside the transaction of `transactional_id`,
    /// in one transaction with a check that it is still Ongoing under `producer` (id,
    /// epoch): false, staging nothing, when it is not. They are invisible until
    /// [`MetadataStore::end_txn_offsets`] commits them.
    async fn stage_txn_offsets(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        group: &str,
        offsets: Vec<CommittedOffset>,
    ) -> MetaResult<bool>;
    /// The partitions of `group` with offsets staged by a transaction not ended yet
    /// (OffsetFetch's `require_stable`, KIP-447).
    async fn pending_txn_offsets(&self, group: &str) -> MetaResult<Vec<PartitionKey>>;
    /// What a read_committed reader of a partition needs from the store: the first offset
    /// of its oldest open transaction (committed rows only), then the aborted transactions
    /// ending at or after `from_offset` and starting before `to_offset`. Read in that order,
    /// so an abort whose open row is gone is in the list.
    async fn txn_read_state(
        &self,
        topic_id: Uuid,
        partition: i32,
        from_offset: i64,
        to_offset: i64,
    ) -> MetaResult<(Option<i64>, Vec<AbortedTxn>)>;
    /// The producer state of a partition as committed (DescribeProducers), with its open
    /// transactions as (producer id, first offset).
    async fn partition_producers(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> MetaResult<PartitionProducers>;
    /// Ends the staged offsets of `transactional_id`: with `commit`, in one transaction,
    /// moves them into the groups' committed offsets; otherwise drops them.
    async fn end_txn_offsets(&self, transactional_id: &str, commit: bool) -> MetaResult<()>;
}

/// A new cluster id in Kafka's form: a random UUID in URL-safe base64 without padding.
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| {
            let shift = 128i32 - 6 * (i + 1);
            let v = if shift >= 0 {
                (bits >> shift) & 63
            } else {
                (bits << -shift) & 63
            };
            ALPHABET[v as usize] as char
        })
        .collect()
}

/// A shared metadata store.
pub type SharedMetadataStore = Arc<dyn MetadataStore>;

/// `store` behind [`Instrumented`], so that every call is measured.
fn instrumented(store: impl MetadataStore + 'static) -> SharedMetadataStore {
    Arc::new(Instrumented::new(Arc::new(store)))
}

/// Opens the store named by `url`: `sqlite://path` (relative to `base_dir`),
/// `sqlite::memory:`, or `postgres://user:password@host:port/database` (also
/// `postgresql://`; tokio-postgres parameters in the query, plus `pool_size`, default 8).
/// Applies missing schema migrations. Every call of the store it returns is measured
/// ([`Instrumented`]).
pub async fn open(url: &str, base_dir: &std::path::Path) -> MetaResult<SharedMetadataStore> {
    if url == "sqlite::memory:" || url == "sqlite://:memory:" {
        return Ok(instrumented(SqliteStore::open_in_memory()?));
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        let p = std::path::Path::new(path);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base_dir.join(p)
        };
        return Ok(instrumented(SqliteStore::open(&p)?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(instrumented(PostgresStore::connect(url).await?));
    }
    Err(MetaError::InvalidUrl(url.to_string()))
}
