//! What a node is started with.

use crate::cluster::balancer::BalancerConfig;
use crate::cluster::membership::MembershipConfig;
use crate::cluster::mesh::MeshConfig;
use crate::group::coordinator::GroupLimits;
use crate::lifecycle::collector::CollectorConfig;
use crate::lifecycle::compactor::CompactConfig;
use crate::lifecycle::merger::MergeConfig;
use crate::txn::coordinator::TxnConfig;
use std::time::Duration;

/// The longest a read waits for new records (a Fetch's `max_wait_ms`, and the same wait
/// relayed to the partition's owner), whatever the client asks.
pub const MAX_LONG_POLL: Duration = Duration::from_secs(30);

/// Tunables of the actors of a node. Every buffer and queue has a bound here.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub node_id: i32,
    /// Seal an object when its data reaches this size.
    pub max_object_bytes: usize,
    /// Seal an object this long after its first byte.
    pub flush_interval: Duration,
    /// Concurrent object PUTs.
    pub max_uploads_in_flight: usize,
    /// Sealed objects the uploader may hold (uploading or waiting for delivery); beyond it
    /// the open object keeps filling instead of being sealed.
    pub max_objects_waiting: u64,
    /// Appends waiting for the metadata writer; beyond it partitions refuse new appends
    /// with a retriable error.
    pub max_pending_commits: u64,
    /// Concurrent object GETs of the block cache; further misses wait.
    pub max_concurrent_gets: usize,
    /// Give up an upload after this long (producers then get an error).
    pub upload_timeout: Duration,
    /// Cache block size.
    pub cache_block_bytes: u64,
    /// Cache capacity.
    pub cache_capacity_bytes: u64,
    /// Batch coordinates kept in memory per partition.
    pub recent_batches_per_partition: usize,
    /// Appends per metadata transaction.
    pub max_appends_per_commit: usize,
    /// Restarts of one actor within a minute before escalating.
    pub max_restarts: u32,
    /// Consumer-group settings.
    pub groups: GroupLimits,
    /// This node's lease and its timing.
    pub membership: MembershipConfig,
    /// Cluster mode: hold a lease in the metadata store and own only what placement gives
    /// this node. Otherwise the node is alone and owns everything.
    pub cluster_mode: bool,
    /// The actor mesh to other nodes (cluster mode).
    pub mesh: Option<MeshConfig>,
    /// Longest wait for another node's answer.
    pub remote_timeout: Duration,
    /// Time between retention passes (Kafka's `log.retention.check.interval.ms`).
    pub retention_check_interval: Duration,
    /// Timing and pace of object deletion.
    pub collector: CollectorConfig,
    /// Balanced placement (ADR 0022; in a cluster only).
    pub balancer: BalancerConfig,
    /// What merging does and how fast.
    pub merge: MergeConfig,
    /// Kafka's `producer.id.expiration.ms`: an idempotent producer that has not written to
    /// a partition for this long is forgotten there (ADR 0015).
    pub producer_id_expiration: Duration,
    /// What key compaction does and how fast.
    pub compact: CompactConfig,
    /// Transaction coordinator settings.
    pub transactions: TxnConfig,
    /// A partition whose actor got no message for this long goes dormant: its actor stops,
    /// the node keeps its claim, and the next message starts it again (ADR 0024). `None`:
    /// actors, once started, run until their partition moves.
    pub partition_idle_stop: Option<Duration>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: 0,
            max_object_bytes: 8 * 1024 * 1024,
            flush_interval: Duration::from_millis(250),
            max_uploads_in_flight: 8,
            max_objects_waiting: 64,
            max_pending_commits: 100_000,
            max_concurrent_gets: 64,
            upload_timeout: Duration::from_secs(20),
            cache_block_bytes: 4 * 1024 * 1024,
            cache_capacity_bytes: 1024 * 1024 * 1024,
            recent_batches_per_partition: 64,
            max_appends_per_commit: 4096,
            max_restarts: 10,
            groups: GroupLimits::default(),
            membership: MembershipConfig::default(),
            cluster_mode: false,
            mesh: None,
            remote_timeout: Duration::from_secs(10),
            retention_check_interval: Duration::from_secs(30),
            collector: CollectorConfig::default(),
            balancer: BalancerConfig::default(),
            merge: MergeConfig::default(),
            producer_id_expiration: Duration::from_secs(24 * 3600),
            compact: CompactConfig::default(),
            transactions: TxnConfig::default(),
            partition_idle_stop: Some(Duration::from_secs(600)),
        }
    }
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// An actor failed to spawn.
    #[error("actor failed to start: {0}")]
    Spawn(String),
    /// The lease could not be registered.
    #[error("membership: {0}")]
    Membership(#[from] inkless_storage::metadata::MetaError),
}
