//! Metric families recorded by the actors: the stages of produce, the sources of fetch, the
//! cache, actor restarts, the lease and ownership changes.
//!
//! Process-wide statics (one process is one node), registered into the node's registry by
//! [`register`]; every series is resolved once, so recording is one or two atomic additions
//! and takes no lock. docs/operations.md lists every family with its labels.

use inkless_storage::metrics::prometheus_client::metrics::counter::Counter;
use inkless_storage::metrics::prometheus_client::metrics::family::Family;
use inkless_storage::metrics::prometheus_client::metrics::gauge::Gauge;
use inkless_storage::metrics::prometheus_client::registry::Registry;
use inkless_storage::metrics::{Histogram, HistogramFamily, Label};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::LazyLock;

/// The stages of a produce request, each a series of
/// `inkless_produce_stage_duration_seconds`.
#[derive(Debug)]
pub(crate) struct ProduceStages {
    /// From an object's first byte to its seal (the longest any batch of it waited).
    pub(crate) buffer_wait: Histogram,
    /// The PUT of a sealed object, retries included.
    pub(crate) object_put: Histogram,
    /// One group commit of appends into the metadata store.
    pub(crate) metadata_commit: Histogram,
    /// From handing a request's batches to the produce buffer to its last answer.
    pub(crate) ack: Histogram,
}

/// Where a fetch found what it read.
#[derive(Debug)]
pub(crate) struct FetchSources {
    /// Batch coordinates from the partition actor's memory.
    pub(crate) index_memory: Histogram,
    /// Batch coordinates read from the metadata store.
    pub(crate) index_metadata_store: Histogram,
    /// An object block found in the cache (or fetched by a concurrent reader).
    pub(crate) data_cache: Histogram,
    /// An object block read from the object store.
    pub(crate) data_object_store: Histogram,
}

/// The cache shards' counters.
#[derive(Debug, Default)]
pub(crate) struct CacheCounters {
    /// Block reads answered from the cache.
    pub(crate) hits: Counter,
    /// Block reads that had to GET the block.
    pub(crate) misses: Counter,
    /// Bytes of blocks read from the cache.
    pub(crate) hit_bytes: Counter,
    /// Bytes of blocks read from the object store.
    pub(crate) miss_bytes: Counter,
    /// Bytes written through into the cache after uploads.
    pub(crate) inserted_bytes: Counter,
    /// Blocks evicted.
    pub(crate) evictions: Counter,
    /// Bytes held, summed over this node's shards.
    pub(crate) bytes: Gauge,
}

/// Lease and ownership counters.
#[derive(Debug)]
pub(crate) struct ClusterCounters {
    /// Successful lease renewals.
    pub(crate) renewals: Counter,
    /// Failed lease renewals.
    pub(crate) renewal_failures: Counter,
    /// Unix time (ms) of the last successful renewal; 0 before the first.
    pub(crate) renewed_at_ms: AtomicI64,
    /// Partitions this node took over.
    pub(crate) partitions_acquired: Counter,
    /// Partitions this node gave up or lost.
    pub(crate) partitions_released: Counter,
}

/// The balancer's view of placement (ADR 0022), kept by the node that balances.
#[derive(Debug)]
pub(crate) struct BalanceGauges {
    /// Partitions moved by the balancer.
    pub(crate) moves: Counter,
    /// Most partitions on a node over the mean.
    pub(crate) by_count: Gauge<f64, AtomicU64>,
    /// Most bytes/s on a node over the mean.
    pub(crate) by_load: Gauge<f64, AtomicU64>,
}

/// Every family of this crate.
pub(crate) struct Metrics {
    stages: HistogramFamily,
    fetch: HistogramFamily<[(&'static str, &'static str); 2]>,
    pub(crate) produce: ProduceStages,
    pub(crate) read: FetchSources,
    pub(crate) cache: CacheCounters,
    pub(crate) cluster: ClusterCounters,
    pub(crate) balance: BalanceGauges,
    imbalance: Family<Label, Gauge<f64, AtomicU64>>,
    restarts: Family<Label, Counter>,
    ownership: Family<Label, Counter>,
}

fn stage(f: &HistogramFamily, stage: &'static str) -> Histogram {
    f.get_or_create(&[("stage", stage)]).clone()
}

fn source(
    f: &HistogramFamily<[(&'static str, &'static str); 2]>,
    step: &'static str,
    source: &'static str,
) -> Histogram {
    f.get_or_create(&[("step", step), ("source", source)])
        .clone()
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let stages = HistogramFamily::default();
    let fetch = HistogramFamily::default();
    let ownership: Family<Label, Counter> = Family::default();
    let change = |c| ownership.get_or_create(&[("change", c)]).clone();
    let cluster = ClusterCounters {
        renewals: Counter::default(),
        renewal_failures: Counter::default(),
        renewed_at_ms: AtomicI64::new(0),
        partitions_acquired: change("acquired"),
        partitions_released: change("released"),
    };
    let imbalance: Family<Label, Gauge<f64, AtomicU64>> = Family::default();
    // One series at a time: the family's lock guard ends with each call.
    let by = |what| imbalance.get_or_create(&[("by", what)]).clone();
    let balance = BalanceGauges {
        moves: Counter::default(),
        by_count: by("count"),
        by_load: by("load"),
    };
    Metrics {
        balance,
        imbalance,
        produce: ProduceStages {
            buffer_wait: stage(&stages, "buffer_wait"),
            object_put: stage(&stages, "object_put"),
            metadata_commit: stage(&stages, "metadata_commit"),
            ack: stage(&stages, "ack"),
        },
        read: FetchSources {
            index_memory: source(&fetch, "index", "memory"),
            index_metadata_store: source(&fetch, "index", "metadata_store"),
            data_cache: source(&fetch, "data", "cache"),
            data_object_store: source(&fetch, "data", "object_store"),
        },
        stages,
        fetch,
        cache: CacheCounters::default(),
        cluster,
        restarts: Family::default(),
        ownership,
    }
});

/// The families of this crate.
pub(crate) fn get() -> &'static Metrics {
    &METRICS
}

/// Notes an actor of `kind` started, and counts it if it is a restart, so that every kind
/// seen has a series from 0 on (a read lock of the family per start: starts are rare).
pub(crate) fn started(kind: &'static str, restart: bool) {
    let series = METRICS.restarts.get_or_create(&[("kind", kind)]);
    if restart {
        series.inc();
    }
}

/// Records a successful lease renewal now.
pub(crate) fn lease_renewed() {
    let c = &METRICS.cluster;
    c.renewals.inc();
    c.renewed_at_ms
        .store(inkless_storage::now_ms(), Ordering::Relaxed);
}

/// Seconds since this node last renewed its lease (`None` before the first renewal, and in
/// a node without leases).
pub fn lease_age_seconds() -> Option<f64> {
    let at = METRICS.cluster.renewed_at_ms.load(Ordering::Relaxed);
    (at > 0).then(|| (inkless_storage::now_ms() - at).max(0) as f64 / 1000.0)
}

/// Records the time a request's appends took from the produce buffer to their last answer.
pub fn produce_acked(took: std::time::Duration) {
    METRICS.produce.ack.observe(took);
}

/// Registers the families of this crate (see docs/operations.md).
pub fn register(r: &mut Registry) {
    let m = &*METRICS;
    r.register(
        "inkless_produce_stage_duration_seconds",
        "Time spent in each stage of produce: buffer_wait, object_put, metadata_commit, ack",
        m.stages.clone(),
    );
    r.register(
        "inkless_fetch_read_duration_seconds",
        "Time to read for fetches, by step (index, data) and source (memory, metadata_store, cache, object_store)",
        m.fetch.clone(),
    );
    r.register(
        "inkless_actor_restarts",
        "Actors restarted after a failure, by kind",
        m.restarts.clone(),
    );
    r.register(
        "inkless_partition_ownership_changes",
        "Partitions this node took over (acquired) or gave up or lost (released)",
        m.ownership.clone(),
    );
    register_cache(r, &m.cache);
    register_cluster(r, &m.cluster);
    r.register(
        "inkless_placement_imbalance",
        "Most partitions (by=count) or bytes/s (by=load) on a node over the mean per node, as the balancer last saw them (0 on nodes that do not balance)",
        m.imbalance.clone(),
    );
    r.register(
        "inkless_balancer_moves",
        "Partitions the balancer moved from this node's term",
        m.balance.moves.clone(),
    );
}

fn register_cache(r: &mut Registry, c: &CacheCounters) {
    let counters = [
        (
            "inkless_cache_hits",
            "Object block reads answered by the cache",
            &c.hits,
        ),
        (
            "inkless_cache_misses",
            "Object block reads that went to the object store",
            &c.misses,
        ),
        (
            "inkless_cache_hit_bytes",
            "Bytes of blocks read from the cache",
            &c.hit_bytes,
        ),
        (
            "inkless_cache_miss_bytes",
            "Bytes of blocks read from the object store by the cache",
            &c.miss_bytes,
        ),
        (
            "inkless_cache_inserted_bytes",
            "Bytes of uploaded objects written through into the cache",
            &c.inserted_bytes,
        ),
        (
            "inkless_cache_evictions",
            "Blocks evicted from the cache",
            &c.evictions,
        ),
    ];
    for (name, help, counter) in counters {
        r.register(name, help, counter.clone());
    }
    r.register(
        "inkless_cache_bytes",
        "Bytes held by this node's cache shards",
        c.bytes.clone(),
    );
}

fn register_cluster(r: &mut Registry, c: &ClusterCounters) {
    let counters = [
        (
            "inkless_cluster_lease_renewals",
            "Successful renewals of this node's lease",
            &c.renewals,
        ),
        (
            "inkless_cluster_lease_renewal_failures",
            "Failed renewals of this node's lease",
            &c.renewal_failures,
        ),
    ];
    for (name, help, counter) in counters {
        r.register(name, help, counter.clone());
    }
}
