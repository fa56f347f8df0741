//! Metric families of the storage layer, and the lock-free histogram every crate records
//! latencies with.
//!
//! The families are process-wide statics (one process is one node), registered into the
//! node's [`Registry`] by [`register`]. Call sites resolve their label set once (see
//! [`ObjectStoreOp`] and [`MetadataOp`]) and then record with one or two atomic additions:
//!
//! ```
//! use inkless_storage::metrics::{self, ObjectStoreOp};
//! let started = std::time::Instant::now();
//! metrics::object_store(ObjectStoreOp::Put).done(started, 1024, true);
//! ```

pub use prometheus_client;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of latency buckets: 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A label set of one label whose value is fixed at compile time.
pub type Label = [(&'static str, &'static str); 1];

/// A histogram of durations made of atomics only, so that recording takes no lock
/// (prometheus-client's own histogram takes a mutex per observation).
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    /// One counter per bound, then one for +Inf.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new(LATENCY_BUCKETS)
    }
}

impl Histogram {
    /// An empty histogram with these bucket bounds (seconds, increasing).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            inner: Arc::new(HistogramInner {
                bounds,
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                count: AtomicU64::new(0),
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Records one duration.
    pub fn observe(&self, took: Duration) {
        let i = &self.inner;
        let secs = took.as_secs_f64();
        let at = i.bounds.partition_point(|b| *b < secs);
        i.buckets[at].fetch_add(1, Ordering::Relaxed);
        i.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        i.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Records the time since `started`.
    pub fn since(&self, started: Instant) {
        self.observe(started.elapsed());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let i = &self.inner;
        let buckets: Vec<(f64, u64)> = i
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(i.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|b| b.1).sum();
        let sum = i.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A family of histograms by label set.
pub type HistogramFamily<L = Label> = Family<L, Histogram>;

/// Operations against the object store, the `operation` label of its families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectStoreOp {
    /// Whole-object PUT.
    Put,
    /// Ranged GET.
    Get,
    /// Deletion of objects (one request may delete up to 1,000).
    Delete,
    /// A page of a listing.
    List,
    /// HEAD of one object.
    Head,
}

impl ObjectStoreOp {
    const ALL: [ObjectStoreOp; 5] = [Self::Put, Self::Get, Self::Delete, Self::List, Self::Head];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Get => "get",
            Self::Delete => "delete",
            Self::List => "list",
            Self::Head => "head",
        }
    }
}

/// The series of one object-store operation, resolved once.
#[derive(Debug, Clone)]
pub struct ObjectStoreSeries {
    requests: Counter,
    bytes: Counter,
    errors: Counter,
    duration: Histogram,
}

impl ObjectStoreSeries {
    /// Records one request that started at `started` and moved `bytes` bytes.
    pub fn done(&self, started: Instant, bytes: u64, ok: bool) {
        self.duration.since(started);
        self.requests.inc();
        if ok {
            self.bytes.inc_by(bytes);
        } else {
            self.errors.inc();
        }
    }

    /// Counts one request that was not timed (a page of a listing, which the object_store
    /// crate streams without telling when a page starts).
    pub fn untimed(&self, ok: bool) {
        self.requests.inc();
        if !ok {
            self.errors.inc();
        }
    }
}

struct ObjectStoreFamilies {
    requests: Family<Label, Counter>,
    bytes: Family<Label, Counter>,
    errors: Family<Label, Counter>,
    duration: HistogramFamily,
    series: Vec<ObjectStoreSeries>,
}

static OBJECT_STORE: LazyLock<ObjectStoreFamilies> = LazyLock::new(|| {
    let f = ObjectStoreFamilies {
        requests: Family::default(),
        bytes: Family::default(),
        errors: Family::default(),
        duration: HistogramFamily::default(),
        series: Vec::new(),
    };
    let series = ObjectStoreOp::ALL
        .iter()
        .map(|op| {
            let l = [("operation", op.as_str())];
            ObjectStoreSeries {
                requests: f.requests.get_or_create(&l).clone(),
                bytes: f.bytes.get_or_create(&l).clone(),
                errors: f.errors.get_or_create(&l).clone(),
                duration: f.duration.get_or_create(&l).clone(),
            }
        })
        .collect();
    ObjectStoreFamilies { series, ..f }
});

/// The series of an object-store operation.
pub fn object_store(op: ObjectStoreOp) -> &'static ObjectStoreSeries {
    &OBJECT_STORE.series[op as usize]
}

/// A metadata-store operation: the `operation` label (the store method's name).
pub type MetadataOp = &'static str;

/// The series of one metadata-store operation, resolved once per call site.
#[derive(Debug, Clone)]
pub struct MetadataSeries {
    duration: Histogram,
    errors: Counter,
}

impl MetadataSeries {
    /// Records one call that started at `started`; `failed` when the database failed.
    pub fn done(&self, started: Instant, failed: bool) {
        self.duration.since(started);
        if failed {
            self.errors.inc();
        }
    }
}

struct MetadataFamilies {
    duration: HistogramFamily,
    errors: Family<Label, Counter>,
    in_flight: Gauge,
    pool_size: Gauge,
    pool_available: Gauge,
    pool_max: Gauge,
    pool_waiting: Gauge,
}

static METADATA: LazyLock<MetadataFamilies> = LazyLock::new(|| MetadataFamilies {
    duration: HistogramFamily::default(),
    errors: Family::default(),
    in_flight: Gauge::default(),
    pool_size: Gauge::default(),
    pool_available: Gauge::default(),
    pool_max: Gauge::default(),
    pool_waiting: Gauge::default(),
});

/// The series of a metadata-store operation (takes the family's lock: resolve once and
/// keep the result, as [`crate::metadata`]'s instrumentation does).
pub fn metadata_op(op: MetadataOp) -> MetadataSeries {
    let l = [("operation", op)];
    MetadataSeries {
        duration: METADATA.duration.get_or_create(&l).clone(),
        errors: METADATA.errors.get_or_create(&l).clone(),
    }
}

/// Calls in progress against the metadata store.
pub fn metadata_in_flight() -> &'static Gauge {
    &METADATA.in_flight
}

/// A snapshot of a connection pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open.
    pub size: usize,
    /// Connections open and idle.
    pub available: usize,
    /// Largest number of connections.
    pub max_size: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

/// Publishes the metadata store's pool use (called before each scrape).
pub fn set_pool_status(s: PoolStatus) {
    let m = &*METADATA;
    m.pool_size.set(s.size as i64);
    m.pool_available.set(s.available as i64);
    m.pool_max.set(s.max_size as i64);
    m.pool_waiting.set(s.waiting as i64);
}

/// Registers the storage families (see docs/operations.md for each).
pub fn register(r: &mut Registry) {
    let o = &*OBJECT_STORE;
    r.register(
        "inkless_object_store_requests",
        "Object-store requests, by operation (failed ones included)",
        o.requests.clone(),
    );
    r.register(
        "inkless_object_store_request_bytes",
        "Bytes moved by successful object-store requests, by operation",
        o.bytes.clone(),
    );
    r.register(
        "inkless_object_store_errors",
        "Failed object-store requests, by operation",
        o.errors.clone(),
    );
    r.register(
        "inkless_object_store_request_duration_seconds",
        "Latency of object-store requests, by operation",
        o.duration.clone(),
    );
    let m = &*METADATA;
    r.register(
        "inkless_metadata_store_request_duration_seconds",
        "Latency of metadata-store calls, by operation",
        m.duration.clone(),
    );
    r.register(
        "inkless_metadata_store_errors",
        "Metadata-store calls that failed in the database, by operation",
        m.errors.clone(),
    );
    r.register(
        "inkless_metadata_store_in_flight",
        "Metadata-store calls in progress",
        m.in_flight.clone(),
    );
    register_pool(r, m);
}

fn register_pool(r: &mut Registry, m: &MetadataFamilies) {
    r.register(
        "inkless_metadata_store_pool_connections",
        "Connections the metadata store's pool holds open (PostgreSQL; 0 for SQLite)",
        m.pool_size.clone(),
    );
    r.register(
        "inkless_metadata_store_pool_idle_connections",
        "Open pool connections not in use",
        m.pool_available.clone(),
    );
    r.register(
        "inkless_metadata_store_pool_max_connections",
        "Largest number of pool connections (pool_size)",
        m.pool_max.clone(),
    );
    r.register(
        "inkless_metadata_store_pool_waiting",
        "Calls waiting for a pool connection",
        m.pool_waiting.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_store_operation_has_its_own_series() {
        for (i, op) in ObjectStoreOp::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "ALL is in declaration order");
        }
        let before = object_store(ObjectStoreOp::Head).requests.get();
        object_store(ObjectStoreOp::Head).done(Instant::now(), 0, false);
        assert_eq!(object_store(ObjectStoreOp::Head).requests.get(), before + 1);
        assert!(object_store(ObjectStoreOp::Head).errors.get() >= 1);
    }

    #[test]
    fn histogram_buckets_are_cumulative_in_the_text_format() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(60));
        let mut r = Registry::default();
        r.register("t_seconds", "test", h.clone());
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        assert!(out.contains("t_seconds_bucket{le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("t_seconds_count 3\n"), "{out}");
        assert_eq!(h.count(), 3);
    }
}
