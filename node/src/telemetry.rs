//! The node's metric registry: one prometheus-client [`Registry`] per node, holding the
//! storage and actor families (recorded where things happen) and a collector that reads
//! what is cheapest to read at scrape time (gauges of the node, per-partition offsets,
//! actors by kind, the lease) or was computed in the background (partition sizes and
//! consumer lag, every `admin.metrics_refresh_interval_ms`).
//!
//! Per-partition and per-group series are capped by `admin.partition_metrics_max`; what the
//! cap leaves out is counted in `inkless_metrics_series_dropped`. docs/operations.md lists
//! every family.

use crate::handlers::Ctx;
use inkless_actors::TopicPartition;
use inkless_storage::metrics::prometheus_client;
use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::fmt::Result as FmtResult;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Kafka connections of this node.
#[derive(Debug, Default)]
pub struct Connections {
    /// Connections open now.
    pub open: Gauge,
    /// Connections accepted since start.
    pub accepted: Counter,
    /// Connections refused at `kafka.max_connections`.
    pub refused: Counter,
}

/// The node's connection counters.
pub static CONNECTIONS: LazyLock<Connections> = LazyLock::new(Connections::default);

/// One (group, partition) of consumer lag.
#[derive(Debug, Clone)]
struct Lag {
    group: String,
    topic: String,
    partition: i32,
    committed: i64,
    lag: i64,
}

/// What the background refresh computed.
#[derive(Debug, Default)]
struct Snapshot {
    sizes: HashMap<TopicPartition, u64>,
    lag: Vec<Lag>,
    lag_dropped: usize,
}

/// The collector of scrape-time series.
struct NodeCollector {
    ctx: Arc<Ctx>,
    snapshot: Arc<RwLock<Snapshot>>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").finish_non_exhaustive()
    }
}

/// Builds the node's registry and starts the background refresh of sizes and lag (it
/// stops when the registry is dropped).
pub fn registry(ctx: Arc<Ctx>) -> Registry {
    let mut r = Registry::default();
    inkless_storage::metrics::register(&mut r);
    inkless_actors::metrics::register(&mut r);
    let c = &*CONNECTIONS;
    r.register(
        "inkless_connections",
        "Kafka connections open",
        c.open.clone(),
    );
    r.register(
        "inkless_connections_accepted",
        "Kafka connections accepted",
        c.accepted.clone(),
    );
    r.register(
        "inkless_connections_refused",
        "Kafka connections refused at kafka.max_connections",
        c.refused.clone(),
    );
    let snapshot = Arc::new(RwLock::new(Snapshot::default()));
    tokio::spawn(refresh(ctx.clone(), Arc::downgrade(&snapshot)));
    r.register_collector(Box::new(NodeCollector { ctx, snapshot }));
    r
}

/// Publishes what is read just before a scrape (the metadata store's pool).
pub fn before_scrape(ctx: &Ctx) {
    if let Some(pool) = ctx.node.store().pool_status() {
        inkless_storage::metrics::set_pool_status(pool);
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> FmtResult {
    let name = name.strip_suffix("_total").unwrap_or(name);
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> FmtResult {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

/// A gauge family from rows of (labels, value).
fn gauges<L: EncodeLabelSet, V>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, V)>,
) -> FmtResult
where
    ConstGauge<V>: EncodeMetric,
{
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> FmtResult {
        let ctx = &*self.ctx;
        object_store_totals(ctx, &mut enc)?;
        lifecycle(ctx, &mut enc)?;
        node_gauges(ctx, &mut enc)?;
        ctx.requests.encode(&mut enc)?;
        fetch_sessions(ctx, &mut enc)?;
        actors(ctx, &mut enc)?;
        lease(ctx, &mut enc)?;
        let snapshot = self.snapshot.read();
        partitions(ctx, &snapshot, &mut enc)?;
        lag(ctx, &snapshot, &mut enc)
    }
}

/// The object store's totals since start (the names before per-operation families).
fn object_store_totals(ctx: &Ctx, enc: &mut DescriptorEncoder) -> FmtResult {
    let m = ctx.node.blob().metrics();
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let rows = [
        (
            "inkless_object_store_put_requests_total",
            "Successful object PUT requests",
            n(&m.put_requests),
        ),
        (
            "inkless_object_store_put_bytes_total",
            "Bytes written by object PUTs",
            n(&m.put_bytes),
        ),
        (
            "inkless_object_store_get_requests_total",
            "Successful ranged object GET requests",
            n(&m.get_requests),
        ),
        (
            "inkless_object_store_get_bytes_total",
            "Bytes read by object GETs",
            n(&m.get_bytes),
        ),
        (
            "inkless_object_store_deleted_objects_total",
            "Objects deleted from the object store",
            n(&m.deleted_objects),
        ),
    ];
    for (name, help, v) in rows {
        counter(enc, name, help, v)?;
    }
    Ok(())
}

/// Counters of retention, deletion, merging and compaction, and the collector's counts.
fn lifecycle(ctx: &Ctx, enc: &mut DescriptorEncoder) -> FmtResult {
    let l = ctx.node.lifecycle_stats();
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let rows = [
        (
            "inkless_retention_passes_total",
            "Retention passes over the partitions owned here",
            n(&l.retention_passes),
        ),
        (
            "inkless_retention_log_start_advances_total",
            "Times retention raised a partition's log start offset",
            n(&l.log_start_advances),
        ),
        (
            "inkless_collector_objects_deleted_total",
            "Objects deleted after their last live byte was retired",
            n(&l.objects_deleted),
        ),
        (
            "inkless_collector_orphans_deleted_total",
            "Orphaned objects (uploaded, never committed) deleted",
            n(&l.orphans_deleted),
        ),
        (
            "inkless_collector_delete_errors_total",
            "Object deletions that failed (retried by a later orphan sweep)",
            n(&l.delete_errors),
        ),
        (
            "inkless_collector_orphan_sweeps_total",
            "Listings of the object store for orphans completed",
            n(&l.orphan_sweeps),
        ),
        (
            "inkless_merger_merges_total",
            "Runs of batches merged into a new object",
            n(&l.merges),
        ),
        (
            "inkless_merger_written_bytes_total",
            "Bytes written by merging",
            n(&l.merged_bytes),
        ),
        (
            "inkless_merger_replaced_rows_total",
            "Batch rows replaced by merging",
            n(&l.merged_rows),
        ),
        (
            "inkless_merger_conflicts_total",
            "Merges refused because their rows changed or the partition moved",
            n(&l.merge_conflicts),
        ),
        (
            "inkless_compactor_compactions_total",
            "Runs of compacted topics rewritten by key compaction",
            n(&l.compactions),
        ),
        (
            "inkless_compactor_read_bytes_total",
            "Bytes of the runs key compaction rewrote",
            n(&l.compacted_bytes_read),
        ),
        (
            "inkless_compactor_written_bytes_total",
            "Bytes written by key compaction",
            n(&l.compacted_bytes_written),
        ),
        (
            "inkless_compactor_removed_records_total",
            "Records removed by key compaction",
            n(&l.compacted_records_removed),
        ),
        (
            "inkless_compactor_conflicts_total",
            "Compactions refused because their rows changed or the partition moved",
            n(&l.compaction_conflicts),
        ),
        (
            "inkless_producers_expired_total",
            "Idle producer-state rows deleted (producer.id.expiration.ms)",
            n(&l.producers_expired),
        ),
    ];
    for (name, help, v) in rows {
        counter(enc, name, help, v)?;
    }
    let Some(o) = *l.objects.lock() else {
        return Ok(());
    };
    let rows = [
        (
            "inkless_metadata_batch_rows",
            "Batch rows in the metadata store (as the object collector last counted)",
            o.batches,
        ),
        (
            "inkless_metadata_live_objects",
            "Objects holding live bytes",
            o.live_objects,
        ),
        (
            "inkless_metadata_live_object_bytes",
            "Bytes of the objects holding live bytes",
            o.live_object_bytes,
        ),
        (
            "inkless_metadata_live_bytes",
            "Bytes referenced by batch rows",
            o.live_bytes,
        ),
        (
            "inkless_metadata_dead_objects",
            "Objects without live bytes, waiting for their grace period",
            o.dead_objects,
        ),
        (
            "inkless_metadata_deleted_objects",
            "Objects marked deleted and still remembered (commits naming them are refused)",
            o.deleted_objects,
        ),
    ];
    for (name, help, v) in rows {
        gauge(enc, name, help, v as i64)?;
    }
    Ok(())
}

fn node_gauges(ctx: &Ctx, enc: &mut DescriptorEncoder) -> FmtResult {
    let budget = ctx.config.produce_budget_permits() as usize;
    let in_flight = budget.saturating_sub(ctx.produce_budget.available_permits());
    let rows = [
        (
            "inkless_partitions",
            "Partitions this node serves, with a running actor or dormant",
            ctx.node.running_partitions(),
        ),
        (
            "inkless_partitions_dormant",
            "Partitions this node serves without a running actor (idle; the next request starts it)",
            ctx.node.dormant_partitions(),
        ),
        (
            "inkless_cluster_live_nodes",
            "Nodes in the live set this node places actors by",
            ctx.node.live().nodes.len(),
        ),
        (
            "inkless_topics",
            "Topics known to this node",
            ctx.catalog.all().len(),
        ),
        (
            "inkless_produce_bytes_in_flight",
            "Produce bytes accepted and not yet answered",
            in_flight,
        ),
    ];
    for (name, help, v) in rows {
        gauge(enc, name, help, v as i64)?;
    }
    Ok(())
}

/// Kafka's FetchSessionCache metrics, under Prometheus names.
fn fetch_sessions(ctx: &Ctx, enc: &mut DescriptorEncoder) -> FmtResult {
    let s = &ctx.fetch_sessions;
    gauge(
        enc,
        "inkless_fetch_sessions",
        "Incremental fetch sessions cached on this node",
        s.len() as i64,
    )?;
    gauge(
        enc,
        "inkless_fetch_session_partitions",
        "Partitions of all cached fetch sessions",
        s.partitions() as i64,
    )?;
    counter(
        enc,
        "inkless_fetch_session_evictions_total",
        "Fetch sessions evicted to make room for new ones",
        s.evictions(),
    )?;
    counter(
        enc,
        "inkless_fetch_incremental_requests_total",
        "Fetch requests answered within an incremental fetch session",
        s.incremental_fetches(),
    )
}

/// Live actors, their mailboxes, by kind (a bounded set of names).
fn actors(ctx: &Ctx, enc: &mut DescriptorEncoder) -> FmtResult {
    let kinds = ctx.node.actor_kinds();
    let rows = |f: fn(&inkless_actors::ActorKindStats) -> u64| {
        kinds
            .iter()
            .map(move |k| ([("kind", k.kind)], f(k) as i64))
            .collect::<Vec<_>>()
    };
    gauges(
        enc,
        "inkless_actors",
        "Live actors, by kind",
        rows(|k| k.actors),
    )?;
    gauges(
        enc,
        "inkless_actor_mailbox_messages",
        "Messages waiting in the mailboxes of the actors of a kind, summed",
        rows(|k| k.mailbox_messages),
    )?;
    gauges(
        enc,
        "inkless_actor_mailbox_max_messages",
        "The longest mailbox among the actors of a kind",
        rows(|k| k.mailbox_max),
    )
}

fn lease(ctx: &Ctx, enc: &mut DescriptorEncoder) -> FmtResult {
    let valid = i64::from(ctx.node.lease_valid());
    gauge(
        enc,
        "inkless_cluster_lease_valid",
        "1 while this node's lease holds (it may serve what it owns)",
        valid,
    )?;
    counter(
        enc,
        "inkless_cluster_lease_lapses_total",
        "Renewals that found this node's lease lapsed or taken over",
        ctx.node.lease_lapses(),
    )?;
    // A node without leases (single node) never renews: 0.
    let age = inkless_actors::metrics::lease_age_seconds().unwrap_or(0.0);
    let m = enc.encode_descriptor(
        "inkless_cluster_lease_age_seconds",
        "Seconds since this node last renewed its lease (0 for a single node without leases)",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(age).encode(m)
}

type PartitionLabels = ([(&'static str, String); 1], [(&'static str, i32); 1]);

/// Log end (high watermark), log start and size of the partitions running here, by topic
/// name and partition, at most `admin.partition_metrics_max` of them.
fn partitions(ctx: &Ctx, snapshot: &Snapshot, enc: &mut DescriptorEncoder) -> FmtResult {
    let mut tps = ctx.node.local_partitions();
    tps.sort();
    let max = ctx.config.admin.partition_metrics_max;
    let dropped = tps.len().saturating_sub(max);
    tps.truncate(max);
    let offsets = ctx.node.local_offsets(tps.iter().map(Some));
    let mut rows: Vec<(
        PartitionLabels,
        TopicPartition,
        inkless_actors::PartitionOffsets,
    )> = Vec::with_capacity(tps.len());
    for (tp, o) in tps.iter().zip(offsets) {
        let (Some(o), Some(topic)) = (o, ctx.catalog.by_id(&tp.topic_id)) else {
            continue;
        };
        let labels = (
            [("topic", topic.record.name.clone())],
            [("partition", tp.partition)],
        );
        rows.push((labels, *tp, o));
    }
    let with = |f: &dyn Fn(&TopicPartition, &inkless_actors::PartitionOffsets) -> i64| {
        rows.iter()
            .map(|(l, tp, o)| (l.clone(), f(tp, o)))
            .collect::<Vec<_>>()
    };
    gauges(
        enc,
        "inkless_log_end_offset",
        "High watermark (Kafka's LogEndOffset) of each partition running here",
        with(&|_, o| o.high_watermark),
    )?;
    gauges(
        enc,
        "inkless_log_start_offset",
        "Log start offset of each partition running here",
        with(&|_, o| o.log_start_offset),
    )?;
    let sizes = with(&|tp, _| snapshot.sizes.get(tp).map_or(-1, |s| *s as i64));
    gauges(enc, "inkless_log_size_bytes", "Bytes stored for each partition running here (refreshed every admin.metrics_refresh_interval_ms; -1 until measured)", sizes)?;
    let dropped = [
        ([("family", "partition")], dropped as i64),
        ([("family", "consumer_lag")], snapshot.lag_dropped as i64),
    ];
    gauges(enc, "inkless_metrics_series_dropped", "Partitions or (group, partition) pairs left out of per-partition families by admin.partition_metrics_max", dropped)
}

type LagLabels = ([(&'static str, String); 2], [(&'static str, i32); 1]);

/// Consumer lag of the groups this node coordinates, by group, topic and partition.
fn lag(_ctx: &Ctx, snapshot: &Snapshot, enc: &mut DescriptorEncoder) -> FmtResult {
    let labels = |l: &Lag| -> LagLabels {
        (
            [("group", l.group.clone()), ("topic", l.topic.clone())],
            [("partition", l.partition)],
        )
    };
    gauges(
        enc,
        "inkless_consumergroup_lag",
        "High watermark minus committed offset, per group coordinated here and partition",
        snapshot.lag.iter().map(|l| (labels(l), l.lag)),
    )?;
    gauges(
        enc,
        "inkless_consumergroup_committed_offset",
        "Committed offset, per group coordinated here and partition",
        snapshot.lag.iter().map(|l| (labels(l), l.committed)),
    )
}

/// Recomputes sizes and lag every `admin.metrics_refresh_interval_ms` until the snapshot
/// is dropped.
async fn refresh(ctx: Arc<Ctx>, snapshot: std::sync::Weak<RwLock<Snapshot>>) {
    let every = Duration::from_millis(ctx.config.admin.metrics_refresh_interval_ms.max(100));
    loop {
        let sizes = sizes(&ctx).await;
        let (lag, lag_dropped) = consumer_lag(&ctx).await;
        let Some(s) = snapshot.upgrade() else {
            return;
        };
        *s.write() = Snapshot {
            sizes,
            lag,
            lag_dropped,
        };
        drop(s);
        tokio::time::sleep(every).await;
    }
}

async fn sizes(ctx: &Ctx) -> HashMap<TopicPartition, u64> {
    let mut tps = ctx.node.local_partitions();
    tps.sort();
    tps.truncate(ctx.config.admin.partition_metrics_max);
    let keys = tps.iter().map(|tp| (tp.topic_id, tp.partition)).collect();
    match ctx.node.store().partition_sizes(keys).await {
        Ok(sizes) => tps.into_iter().zip(sizes).collect(),
        Err(e) => {
            tracing::debug!(error = %e, "partition sizes for metrics");
            HashMap::new()
        }
    }
}

/// Lag of every group with committed offsets that this node coordinates, and how many
/// (group, partition) pairs the cap left out.
async fn consumer_lag(ctx: &Ctx) -> (Vec<Lag>, usize) {
    let live = ctx.node.live();
    let groups = match ctx.node.store().offset_groups().await {
        Ok(g) => g,
        Err(e) => {
            tracing::debug!(error = %e, "groups for consumer lag");
            return (Vec::new(), 0);
        }
    };
    let max = ctx.config.admin.partition_metrics_max;
    let (mut out, mut dropped) = (Vec::new(), 0);
    for group in groups
        .into_iter()
        .filter(|g| live.group_owner(g) == Some(live.me))
    {
        let Ok(offsets) = ctx.node.store().fetch_offsets(&group).await else {
            continue;
        };
        for c in offsets {
            if out.len() >= max {
                dropped += 1;
                continue;
            }
            if let Some(l) = lag_of(ctx, &group, &c).await {
                out.push(l);
            }
        }
    }
    (out, dropped)
}

async fn lag_of(
    ctx: &Ctx,
    group: &str,
    c: &inkless_storage::metadata::CommittedOffset,
) -> Option<Lag> {
    let topic = ctx.catalog.by_id(&c.topic_id)?;
    let tp = TopicPartition {
        topic_id: c.topic_id,
        partition: c.partition,
    };
    let o = ctx.node.offsets(&tp, i64::MAX, Duration::ZERO).await.ok()?;
    Some(Lag {
        group: group.to_string(),
        topic: topic.record.name.clone(),
        partition: c.partition,
        committed: c.offset,
        lag: (o.high_watermark - c.offset).max(0),
    })
}
