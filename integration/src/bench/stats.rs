//! Shared counters, latency histograms and the benchmark clock.
//!
//! Every record's value starts with its send time in nanoseconds since a
//! process-wide monotonic origin ([`Clock`]); producers and consumers run in
//! the same process, so end-to-end latency is exact. Results are split by
//! phase: anything sent before the end of the warm-up is counted in the
//! totals but not in the measured throughput and latency.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Monotonic time since the start of the process, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Nanoseconds since the origin.
    pub fn nanos(&self) -> u64 {
        self.nanos_at(Instant::now())
    }

    /// Nanoseconds from the origin to `t` (0 if `t` is earlier).
    pub fn nanos_at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `nanos` after the origin.
    pub fn instant(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Latencies are recorded in microseconds, 1 µs .. 10 min, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Counters and histograms shared by all tasks.
pub struct Stats {
    /// Records handed to produce requests (all phases).
    pub sent_records: AtomicU64,
    /// Produce requests written.
    pub sent_requests: AtomicU64,
    /// Records whose partition response had no error (all phases).
    pub acked_records: AtomicU64,
    /// Records acked whose request was sent after the warm-up.
    pub measured_acked_records: AtomicU64,
    /// Record value bytes of `measured_acked_records`.
    pub measured_acked_bytes: AtomicU64,
    /// Records sent after the warm-up (acked or not).
    pub measured_sent_records: AtomicU64,
    /// Sent records in error responses or on a failed connection.
    pub failed_records: AtomicU64,
    /// Records created but never sent (run cut short).
    pub unsent_records: AtomicU64,
    /// Fetch requests answered.
    pub fetch_requests: AtomicU64,
    /// Records consumed (all phases).
    pub consumed_records: AtomicU64,
    /// Records consumed that were sent after the warm-up.
    pub measured_consumed_records: AtomicU64,
    /// Produce request latency, send to response, µs (measured phase).
    pub produce_latency: Mutex<Histogram<u64>>,
    /// Record latency, send timestamp to fetch response, µs (measured phase).
    pub e2e_latency: Mutex<Histogram<u64>>,
    /// Kafka error codes seen, keyed by (API, code).
    pub kafka_errors: Mutex<BTreeMap<(&'static str, i16), u64>>,
    /// Client-side failures (I/O, decoding, timeouts), keyed by description.
    pub client_errors: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        Stats {
            sent_records: AtomicU64::new(0),
            sent_requests: AtomicU64::new(0),
            acked_records: AtomicU64::new(0),
            measured_acked_records: AtomicU64::new(0),
            measured_acked_bytes: AtomicU64::new(0),
            measured_sent_records: AtomicU64::new(0),
            failed_records: AtomicU64::new(0),
            unsent_records: AtomicU64::new(0),
            fetch_requests: AtomicU64::new(0),
            consumed_records: AtomicU64::new(0),
            measured_consumed_records: AtomicU64::new(0),
            produce_latency: Mutex::new(new_histogram()),
            e2e_latency: Mutex::new(new_histogram()),
            kafka_errors: Mutex::new(BTreeMap::new()),
            client_errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts a Kafka error code returned by `api`.
    pub fn kafka_error(&self, api: &'static str, code: i16) {
        *self.kafka_errors.lock().entry((api, code)).or_insert(0) += 1;
    }

    /// Counts a client-side failure.
    pub fn client_error(&self, what: impl Into<String>) {
        *self.client_errors.lock().entry(what.into()).or_insert(0) += 1;
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// Shorthand for a relaxed atomic add.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Shorthand for a relaxed atomic load.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Records `value_us` (clamped into the histogram's range).
pub fn record_us(h: &mut Histogram<u64>, value_us: u64) {
    h.saturating_record(value_us.max(1));
}
