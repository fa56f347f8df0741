//! Node configuration: defaults, then an optional TOML file, then environment variables
//! `INKLESS__SECTION__KEY` (e.g. `INKLESS__KAFKA__LISTEN=0.0.0.0:9092`).
//!
//! Every key, its default and its meaning are listed in `configs/single-node.toml` and
//! `docs/configuration.md`.

use inkless_storage::blob::S3Options;
use inkless_storage::metadata::NodeLease;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The fewest blocks the fetch cache must hold (`fetch.cache_capacity_bytes` over
/// `fetch.cache_block_bytes`).
pub const MIN_CACHE_BLOCKS: u64 = 8;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Identity of this node.
    pub node: NodeSection,
    /// Kafka listener and protocol limits.
    pub kafka: KafkaSection,
    /// Where data and metadata live.
    pub storage: StorageSection,
    /// The produce path.
    pub produce: ProduceSection,
    /// The fetch path.
    pub fetch: FetchSection,
    /// Partition actors.
    pub partitions: PartitionsSection,
    /// Consumer groups.
    pub groups: GroupsSection,
    /// Retention defaults of topics.
    pub retention: RetentionSection,
    /// Merging of small objects.
    pub merge: MergeSection,
    /// Key compaction of compacted topics.
    pub compact: CompactSection,
    /// Transaction coordinators.
    pub transactions: TransactionsSection,
    /// Admin HTTP endpoint.
    pub admin: AdminSection,
    /// Cluster membership.
    pub cluster: ClusterSection,
    /// Logging.
    pub log: LogSection,
}

/// `[partitions]`: partition actors.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartitionsSection {
    /// A partition without a produce, a read of records or a records deletion for this
    /// long goes dormant: its actor stops, the node keeps the partition, and the next
    /// request starts the actor again (a claim transaction). 0 keeps actors running.
    pub idle_stop_ms: u64,
}

impl Default for PartitionsSection {
    fn default() -> Self {
        Self {
            idle_stop_ms: 600_000,
        }
    }
}

/// `[retention]`: Kafka's `log.retention.*` broker settings, the defaults of topics that do
/// not set `retention.ms` / `retention.bytes`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSection {
    /// `log.retention.ms`: batches older than this are retired; -1 keeps them forever.
    pub ms: i64,
    /// `log.retention.bytes`: a partition keeps about this many bytes; -1 for no limit.
    pub bytes: i64,
    /// `log.retention.check.interval.ms`: time between retention passes.
    pub check_interval_ms: u64,
}

impl Default for RetentionSection {
    fn default() -> Self {
        Self {
            ms: 7 * 24 * 3600 * 1000,
            bytes: -1,
            check_interval_ms: 30_000,
        }
    }
}

/// `[merge]`: rewriting small produce objects into large per-partition objects.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MergeSection {
    /// Merge at all.
    pub enabled: bool,
    /// Time between passes over the partitions a node owns.
    pub interval_ms: u64,
    /// Batches committed more recently are left alone.
    pub min_age_ms: u64,
    /// A partition with less than half an object of mergeable data is merged once its oldest
    /// such batch is this old.
    pub max_delay_ms: u64,
    /// Size of the objects merging writes.
    pub target_object_bytes: u64,
    /// Adjacent batches become one metadata row up to this size.
    pub max_row_bytes: u64,
    /// Bytes rewritten per second at most, per node.
    pub max_bytes_per_second: u64,
    /// Share (0 to 1) of a node's object-store GETs and PUTs merging may take, per minute.
    pub max_request_share: f64,
    /// Requests per second merging may make whatever the share (an idle node merges too).
    pub min_requests_per_second: u32,
}

impl Default for MergeSection {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 30_000,
            min_age_ms: 180_000,
            max_delay_ms: 600_000,
            target_object_bytes: 16 * 1024 * 1024,
            max_row_bytes: 1024 * 1024,
            max_bytes_per_second: 64 * 1024 * 1024,
            max_request_share: 0.3,
            min_requests_per_second: 10,
        }
    }
}

/// `[compact]`: key compaction of topics with `cleanup.policy=compact` (Kafka's
/// `log.cleaner.*`); the per-topic settings are topic configs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactSection {
    /// Compact at all (`log.cleaner.enable`).
    pub enabled: bool,
    /// Time between passes over the compacted partitions a node owns
    /// (`log.cleaner.backoff.ms`).
    pub interval_ms: u64,
    /// Rows committed more recently are left alone (the tail producers may still retry).
    pub min_age_ms: u64,
    /// Largest run of a partition compacted at once, held in memory
    /// (`log.cleaner.dedupe.buffer.size` plays this part in Kafka).
    pub max_run_bytes: u64,
    /// Bytes read per second at most, per node (`log.cleaner.io.max.bytes.per.second`).
    pub max_bytes_per_second: u64,
}

impl Default for CompactSection {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 15_000,
            min_age_ms: 30_000,
            max_run_bytes: 128 * 1024 * 1024,
            max_bytes_per_second: 32 * 1024 * 1024,
        }
    }
}

/// `[transactions]`: Kafka's `transaction.*` broker settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransactionsSection {
    /// `transaction.max.timeout.ms`: longer producer `transaction.timeout.ms` are refused
    /// with INVALID_TRANSACTION_TIMEOUT.
    pub max_timeout_ms: u64,
    /// `transactional.id.expiration.ms`: an id without a transaction for this long is
    /// forgotten.
    pub id_expiration_ms: u64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: time between passes
    /// that abort timed-out transactions (and finish interrupted ones).
    pub abort_check_interval_ms: u64,
}

impl Default for TransactionsSection {
    fn default() -> Self {
        Self {
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            abort_check_interval_ms: 10_000,
        }
    }
}

/// `[groups]`: Kafka's `group.*` and `offsets.*` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsSection {
    /// `group.initial.rebalance.delay.ms`: wait for more members when a group first forms.
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: u64,
    /// `group.max.size`: members per group.
    pub max_size: usize,
    /// `offsets.retention.minutes`: offsets of a group empty this long are deleted.
    pub offsets_retention_minutes: u64,
    /// `offset.metadata.max.bytes`: largest metadata string of a committed offset.
    pub offset_metadata_max_bytes: usize,
    /// `group.consumer.session.timeout.ms`: consumer-protocol (KIP-848) session timeout.
    pub consumer_session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms`: consumer-protocol heartbeat interval.
    pub consumer_heartbeat_interval_ms: u64,
    /// `offsets.topic.num.partitions`: partitions of the (empty) `__consumer_offsets` topic
    /// created when missing.
    pub offsets_topic_num_partitions: i32,
}

impl Default for GroupsSection {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
            offsets_retention_minutes: 7 * 24 * 60,
            offset_metadata_max_bytes: 4096,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            offsets_topic_num_partitions: 50,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Address of the admin HTTP endpoint (`/metrics`, `/health`); empty disables it.
    pub listen: String,
    /// host:port other nodes and the cluster CLI reach it at; "" means the bound address.
    pub advertised: String,
    /// Most partitions whose per-partition series (log end, log start, size) a node exports,
    /// and most (group, partition) pairs of consumer lag; beyond it the rest are left out
    /// and `inkless_metrics_series_dropped` says how many.
    pub partition_metrics_max: usize,
    /// How often partition sizes and consumer lag are recomputed for /metrics (each time one
    /// metadata-store query for the sizes and one per group coordinated here).
    pub metrics_refresh_interval_ms: u64,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: String::new(),
            advertised: String::new(),
            partition_metrics_max: 2_000,
            metrics_refresh_interval_ms: 30_000,
        }
    }
}

/// `[node]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Broker id given to clients.
    pub id: i32,
    /// Availability zone (Kafka's `broker.rack`); empty for none.
    pub rack: String,
}

/// `[kafka]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSection {
    /// Address to bind.
    pub listen: String,
    /// Address given to clients; empty means the bound address.
    pub advertised: String,
    /// Largest request frame (Kafka's `socket.request.max.bytes`).
    pub max_frame_bytes: usize,
    /// Requests of one connection processed at once (responses stay in order).
    pub max_in_flight_requests_per_connection: usize,
    /// Open connections at most; more are refused.
    pub max_connections: usize,
    /// Create topics on Metadata requests for unknown topics (`auto.create.topics.enable`).
    pub auto_create_topics_enable: bool,
    /// Partitions of automatically created topics (`num.partitions`).
    pub num_partitions: i32,
    /// Default `max.message.bytes` of topics (Kafka's `message.max.bytes`).
    pub message_max_bytes: i64,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9092".into(),
            advertised: String::new(),
            max_frame_bytes: inkless_protocol::frame::DEFAULT_MAX_FRAME_BYTES,
            max_in_flight_requests_per_connection: 64,
            max_connections: 10_000,
            auto_create_topics_enable: true,
            num_partitions: 1,
            message_max_bytes: 1_048_588,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// Base directory for relative `file://` and `sqlite://` URLs.
    pub data_dir: PathBuf,
    /// Object store URL: `file://…`, `s3://bucket/prefix`, `memory://`.
    pub object_store: String,
    /// Metadata store URL: `sqlite://…` or `postgres://…`.
    pub metadata: String,
    /// S3 settings used with an `s3://` object store.
    pub s3: S3Options,
    /// Simulated object-store latency (benchmarks on local disks).
    pub latency: inkless_storage::latency::LatencyModel,
    /// Kafka's `log.segment.delete.delay.ms`: an object whose last live byte was retired is
    /// deleted this long afterwards (reads in flight may still hold its coordinates).
    pub object_delete_delay_ms: u64,
    /// Time between passes of the object collector.
    pub collect_interval_ms: u64,
    /// Time between listings of the object store for orphans (objects never committed).
    pub orphan_scan_interval_ms: u64,
    /// Objects younger than this are never taken for orphans.
    pub orphan_min_age_ms: u64,
    /// Object deletions per second at most.
    pub max_object_deletes_per_second: u32,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            object_store: "file://objects".into(),
            metadata: "sqlite://metadata.db".into(),
            s3: S3Options::default(),
            latency: inkless_storage::latency::LatencyModel::default(),
            object_delete_delay_ms: 60_000,
            collect_interval_ms: 10_000,
            orphan_scan_interval_ms: 3_600_000,
            orphan_min_age_ms: 600_000,
            max_object_deletes_per_second: 1_000,
        }
    }
}

/// `[produce]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProduceSection {
    /// Seal an object when it holds this many bytes.
    pub max_object_bytes: usize,
    /// Seal an object this long after its first byte.
    pub flush_interval_ms: u64,
    /// Concurrent object uploads.
    pub max_uploads_in_flight: usize,
    /// Give up an upload after this long; producers then get KAFKA_STORAGE_ERROR.
    pub upload_timeout_ms: u64,
    /// Produce bytes accepted but not yet answered, node-wide; beyond it requests wait.
    pub max_bytes_in_flight: usize,
    /// Appends in one metadata transaction.
    pub max_appends_per_commit: usize,
    /// Sealed objects waiting for or in upload; beyond it the open object keeps filling
    /// (fewer, larger objects) until one is delivered.
    pub max_objects_waiting: u64,
    /// Appends waiting for the metadata store; beyond it produces get REQUEST_TIMED_OUT
    /// (retriable, nothing written).
    pub max_pending_commits: u64,
    /// Kafka's `producer.id.expiration.ms`: idempotent-producer state of a partition not
    /// written for this long is forgotten (the producer counts as new there).
    pub producer_id_expiration_ms: u64,
}

impl Default for ProduceSection {
    fn default() -> Self {
        Self {
            max_object_bytes: 8 * 1024 * 1024,
            flush_interval_ms: 5,
            max_uploads_in_flight: 8,
            upload_timeout_ms: 20_000,
            max_bytes_in_flight: 256 * 1024 * 1024,
            max_appends_per_commit: 4096,
            max_objects_waiting: 64,
            max_pending_commits: 100_000,
            producer_id_expiration_ms: 86_400_000,
        }
    }
}

/// `[fetch]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchSection {
    /// Object block size read and cached at once.
    pub cache_block_bytes: u64,
    /// Block cache capacity.
    pub cache_capacity_bytes: u64,
    /// Batch coordinates kept in memory per partition.
    pub recent_batches_per_partition: usize,
    /// Concurrent object GETs of the block cache; further misses wait their turn.
    pub max_concurrent_gets: usize,
    /// Incremental fetch sessions cached (Kafka's `max.incremental.fetch.session.cache.slots`).
    pub max_sessions: usize,
    /// A cached fetch session unused this long may be evicted for a new one.
    pub session_eviction_ms: u64,
    /// A fetch waits this long (or its `max_wait_ms`, if longer) for object bytes; what has
    /// not arrived by then is answered by a later fetch (the reads go on into the cache).
    pub read_wait_ms: u64,
}

impl Default for FetchSection {
    fn default() -> Self {
        Self {
            cache_block_bytes: 4 * 1024 * 1024,
            cache_capacity_bytes: 1024 * 1024 * 1024,
            recent_batches_per_partition: 64,
            max_concurrent_gets: 64,
            max_sessions: 1000,
            session_eviction_ms: 120_000,
            read_wait_ms: 1000,
        }
    }
}

/// `[cluster]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// Join a cluster: hold a lease in the (shared) metadata store and own only the
    /// partitions and groups placement gives this node. Off: the node is alone.
    pub enabled: bool,
    /// Address (ip:port) of the actor mesh listener other nodes connect to.
    pub listen: String,
    /// host:port other nodes dial; "" means `listen`.
    pub advertised: String,
    /// Shared secret every node of the cluster must present on the mesh.
    pub cookie: String,
    /// Longest wait for another node's answer (appends, reads, cache blocks).
    pub remote_timeout_ms: u64,
    /// How often the node renews its lease.
    pub lease_renew_interval_ms: u64,
    /// A node whose lease is not renewed for this long is considered gone.
    pub lease_ttl_ms: u64,
    /// How often topics are re-read from the metadata store, to place partitions created
    /// or deleted through other nodes.
    pub topic_refresh_interval_ms: u64,
    /// Move partitions to even out the nodes' partition counts and load (ADR 0022).
    pub balance: bool,
    /// Time between the balancer's rounds and the nodes' load reports.
    pub balance_interval_ms: u64,
    /// A node is balanced while it carries at most this times the mean (partitions, and
    /// bytes/s appended).
    pub balance_max_imbalance: f64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:9093".into(),
            advertised: String::new(),
            cookie: String::new(),
            remote_timeout_ms: 10_000,
            lease_renew_interval_ms: 1_000,
            lease_ttl_ms: 3_000,
            topic_refresh_interval_ms: 1_000,
            balance: true,
            balance_interval_ms: 30_000,
            balance_max_imbalance: 1.1,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `tracing` filter, e.g. `info` or `inkless=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Loads defaults, then `file` if given, then `INKLESS__…` environment variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let defaults = config::Config::try_from(&Config::default())?;
        let mut b = config::Config::builder().add_source(defaults);
        if let Some(f) = file {
            b = b.add_source(config::File::from(f).format(config::FileFormat::Toml));
        }
        b = b.add_source(
            config::Environment::with_prefix("INKLESS")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let c: Config = b.build()?.try_deserialize()?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.merge.interval_ms >= 1
                && self.merge.max_bytes_per_second >= 1
                && self.merge.target_object_bytes >= 1024
                && (1024..=self.fetch.cache_block_bytes).contains(&self.merge.max_row_bytes)
                && (0.0..=1.0).contains(&self.merge.max_request_share),
            "merge.interval_ms and merge.max_bytes_per_second must be at least 1, merge.target_object_bytes at least 1024, merge.max_row_bytes between 1024 and fetch.cache_block_bytes, and merge.max_request_share between 0 and 1"
        );
        anyhow::ensure!(
            self.compact.interval_ms >= 1
                && self.compact.max_bytes_per_second >= 1
                && self.compact.max_run_bytes >= 1024,
            "compact.interval_ms and compact.max_bytes_per_second must be at least 1, compact.max_run_bytes at least 1024"
        );
        anyhow::ensure!(
            self.retention.ms >= -1 && self.retention.bytes >= -1,
            "retention.ms and retention.bytes must be -1 (no limit) or more"
        );
        anyhow::ensure!(
            self.retention.check_interval_ms >= 1
                && self.storage.collect_interval_ms >= 1
                && self.storage.orphan_scan_interval_ms >= 1
                && self.storage.max_object_deletes_per_second >= 1,
            "retention.check_interval_ms, storage.collect_interval_ms, storage.orphan_scan_interval_ms and storage.max_object_deletes_per_second must be at least 1"
        );
        anyhow::ensure!(
            self.produce.producer_id_expiration_ms >= 1
                && self.produce.producer_id_expiration_ms <= i64::MAX as u64,
            "produce.producer_id_expiration_ms must be at least 1"
        );
        anyhow::ensure!(
            self.groups.offsets_topic_num_partitions >= 1,
            "groups.offsets_topic_num_partitions must be at least 1"
        );
        anyhow::ensure!(
            self.kafka.num_partitions >= 1,
            "kafka.num_partitions must be at least 1"
        );
        anyhow::ensure!(
            self.kafka.max_frame_bytes >= 1024,
            "kafka.max_frame_bytes is too small"
        );
        anyhow::ensure!(
            self.produce.max_object_bytes >= 1024,
            "produce.max_object_bytes is too small"
        );
        anyhow::ensure!(
            self.produce.max_uploads_in_flight >= 1,
            "produce.max_uploads_in_flight must be at least 1"
        );
        anyhow::ensure!(
            self.produce.max_objects_waiting >= 1
                && self.produce.max_pending_commits >= 1
                && self.fetch.max_concurrent_gets >= 1,
            "produce.max_objects_waiting, produce.max_pending_commits and fetch.max_concurrent_gets must be at least 1"
        );
        anyhow::ensure!(
            (4096..=inkless_actors::MAX_BLOCK_BYTES).contains(&self.fetch.cache_block_bytes),
            "fetch.cache_block_bytes must be between 4096 and {}",
            inkless_actors::MAX_BLOCK_BYTES
        );
        // A cache of a few blocks evicts each one before it is used up (one heavier than half
        // the cache is not kept at all), so nearly every read is a GET of a whole block.
        anyhow::ensure!(
            self.fetch.cache_capacity_bytes / self.fetch.cache_block_bytes >= MIN_CACHE_BLOCKS,
            "fetch.cache_capacity_bytes must hold at least {MIN_CACHE_BLOCKS} blocks of fetch.cache_block_bytes"
        );
        anyhow::ensure!(
            self.kafka.max_in_flight_requests_per_connection >= 1,
            "kafka.max_in_flight_requests_per_connection must be at least 1"
        );
        anyhow::ensure!(
            self.cluster.lease_renew_interval_ms >= 10
                && self.cluster.lease_ttl_ms >= 2 * self.cluster.lease_renew_interval_ms,
            "cluster.lease_ttl_ms must be at least twice cluster.lease_renew_interval_ms (>= 10)"
        );
        anyhow::ensure!(
            self.cluster.balance_interval_ms >= 100 && self.cluster.balance_max_imbalance >= 1.0,
            "cluster.balance_interval_ms must be at least 100 and cluster.balance_max_imbalance at least 1.0"
        );
        if self.cluster.enabled {
            anyhow::ensure!(
                self.cluster.listen.parse::<std::net::SocketAddr>().is_ok(),
                "cluster.listen {:?} is not ip:port",
                self.cluster.listen
            );
            anyhow::ensure!(
                !self.cluster.cookie.is_empty(),
                "cluster.cookie must be set (the same secret on every node) when cluster.enabled"
            );
        }
        anyhow::ensure!(
            self.cluster.topic_refresh_interval_ms >= 10,
            "cluster.topic_refresh_interval_ms must be at least 10"
        );
        Ok(())
    }

    /// Permits of the node-wide produce budget (`produce.max_bytes_in_flight`, in bytes).
    pub fn produce_budget_permits(&self) -> u32 {
        self.produce.max_bytes_in_flight.clamp(1, u32::MAX as usize) as u32
    }

    /// The broker's defaults of topic configs.
    pub fn broker_defaults(&self) -> crate::catalog::BrokerDefaults {
        crate::catalog::BrokerDefaults {
            max_message_bytes: self.kafka.message_max_bytes,
            retention_ms: self.retention.ms,
            retention_bytes: self.retention.bytes,
        }
    }

    /// The actor tunables; `lease` is what this node announces to the cluster.
    pub fn node_config(&self, lease: NodeLease) -> inkless_actors::NodeConfig {
        inkless_actors::NodeConfig {
            node_id: self.node.id,
            cluster_mode: self.cluster.enabled,
            remote_timeout: Duration::from_millis(self.cluster.remote_timeout_ms),
            mesh: self
                .cluster
                .listen
                .parse()
                .ok()
                .filter(|_| self.cluster.enabled)
                .map(|listen| inkless_actors::MeshConfig {
                    listen,
                    cookie: self.cluster.cookie.clone(),
                }),
            membership: inkless_actors::MembershipConfig {
                lease,
                renew_interval: Duration::from_millis(self.cluster.lease_renew_interval_ms),
                ttl: Duration::from_millis(self.cluster.lease_ttl_ms),
            },
            balancer: inkless_actors::BalancerConfig {
                enabled: self.cluster.balance,
                interval: Duration::from_millis(self.cluster.balance_interval_ms),
                max_imbalance: self.cluster.balance_max_imbalance,
            },
            max_object_bytes: self.produce.max_object_bytes,
            flush_interval: Duration::from_millis(self.produce.flush_interval_ms),
            max_uploads_in_flight: self.produce.max_uploads_in_flight,
            upload_timeout: Duration::from_millis(self.produce.upload_timeout_ms),
            cache_block_bytes: self.fetch.cache_block_bytes,
            cache_capacity_bytes: self.fetch.cache_capacity_bytes,
            recent_batches_per_partition: self.fetch.recent_batches_per_partition,
            max_appends_per_commit: self.produce.max_appends_per_commit,
            max_objects_waiting: self.produce.max_objects_waiting,
            max_pending_commits: self.produce.max_pending_commits,
            max_concurrent_gets: self.fetch.max_concurrent_gets,
            groups: inkless_actors::GroupLimits {
                min_session_timeout: Duration::from_millis(self.groups.min_session_timeout_ms),
                max_session_timeout: Duration::from_millis(self.groups.max_session_timeout_ms),
                initial_rebalance_delay: Duration::from_millis(
                    self.groups.initial_rebalance_delay_ms,
                ),
                max_size: self.groups.max_size.max(1),
                offset_metadata_max_bytes: self.groups.offset_metadata_max_bytes,
                offsets_retention: Duration::from_secs(
                    self.groups.offsets_retention_minutes.saturating_mul(60),
                ),
                consumer_session_timeout: Duration::from_millis(
                    self.groups.consumer_session_timeout_ms,
                ),
                consumer_heartbeat_interval: Duration::from_millis(
                    self.groups.consumer_heartbeat_interval_ms,
                ),
            },
            retention_check_interval: Duration::from_millis(self.retention.check_interval_ms),
            producer_id_expiration: Duration::from_millis(self.produce.producer_id_expiration_ms),
            partition_idle_stop: Some(Duration::from_millis(self.partitions.idle_stop_ms))
                .filter(|d| !d.is_zero()),
            collector: inkless_actors::CollectorConfig {
                collect_interval: Duration::from_millis(self.storage.collect_interval_ms),
                delete_delay: Duration::from_millis(self.storage.object_delete_delay_ms),
                orphan_scan_interval: Duration::from_millis(self.storage.orphan_scan_interval_ms),
                orphan_min_age: Duration::from_millis(self.storage.orphan_min_age_ms),
                max_deletes_per_second: self.storage.max_object_deletes_per_second,
            },
            merge: inkless_actors::MergeConfig {
                enabled: self.merge.enabled,
                interval: Duration::from_millis(self.merge.interval_ms),
                min_age: Duration::from_millis(self.merge.min_age_ms),
                max_delay: Duration::from_millis(self.merge.max_delay_ms),
                target_object_bytes: self.merge.target_object_bytes,
                max_row_bytes: self.merge.max_row_bytes,
                max_bytes_per_second: self.merge.max_bytes_per_second,
                max_request_share: self.merge.max_request_share,
                min_requests_per_second: self.merge.min_requests_per_second,
            },
            compact: inkless_actors::CompactConfig {
                enabled: self.compact.enabled,
                interval: Duration::from_millis(self.compact.interval_ms),
                min_age: Duration::from_millis(self.compact.min_age_ms),
                max_run_bytes: self.compact.max_run_bytes,
                max_row_bytes: self.merge.max_row_bytes,
                max_bytes_per_second: self.compact.max_bytes_per_second,
            },
            transactions: inkless_actors::TxnConfig {
                max_timeout_ms: self.transactions.max_timeout_ms.min(i32::MAX as u64) as i32,
                id_expiration_ms: self.transactions.id_expiration_ms.min(i64::MAX as u64) as i64,
                abort_check_interval: Duration::from_millis(
                    self.transactions.abort_check_interval_ms.max(1),
                ),
                ..inkless_actors::TxnConfig::default()
            },
            ..inkless_actors::NodeConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_single_node_example_lists_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/single-node.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let listed: toml::Value = toml::from_str(&text).unwrap();
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        assert_eq!(
            listed, defaults,
            "configs/single-node.toml must list every key with its default"
        );
    }

    #[test]
    fn the_cluster_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/cluster/node.toml");
        let c = Config::load(Some(&path)).unwrap();
        assert!(c.cluster.enabled);
        assert!(c.storage.metadata.starts_with("postgres://"));
        assert!(c.node_config(NodeLease::default()).mesh.is_some());
    }

    #[test]
    fn file_then_environment_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[kafka]\nlisten = \"127.0.0.1:1234\"\n[produce]\nflush_interval_ms = 77\n",
        )
        .unwrap();
        // SAFETY: this test is the only one touching this variable.
        unsafe { std::env::set_var("INKLESS__STORAGE__DATA_DIR", "/tmp/elsewhere") };
        let c = Config::load(Some(&f)).unwrap();
        unsafe { std::env::remove_var("INKLESS__STORAGE__DATA_DIR") };
        assert_eq!(c.kafka.listen, "127.0.0.1:1234");
        assert_eq!(c.produce.flush_interval_ms, 77);
        assert_eq!(c.storage.data_dir, PathBuf::from("/tmp/elsewhere"));
        assert_eq!(c.kafka.num_partitions, 1);
        std::fs::write(&f, "[kafka]\nlisten_typo = 1\n").unwrap();
        assert!(Config::load(Some(&f)).is_err(), "unknown keys are refused");
    }

    #[test]
    fn the_cache_holds_at_least_eight_blocks() {
        let mut c = Config::default();
        c.fetch.cache_block_bytes = 4 << 20;
        c.fetch.cache_capacity_bytes = 32 << 20;
        assert!(c.validate().is_ok());
        c.fetch.cache_capacity_bytes = (32 << 20) - 1;
        let refused = c.validate().unwrap_err().to_string();
        assert!(refused.contains("at least 8 blocks"), "{refused}");
    }
}
