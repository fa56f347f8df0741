//! The benchmark result: a human-readable table and one JSON line
//! (prefixed `RESULT_JSON `) for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use kafka_protocol::ResponseError;
use serde_json::{json, Value};

/// Bytes in a GiB.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// Bytes in a mebibyte.
const MIB: f64 = 1024.0 * 1024.0;

/// Percentiles of a latency histogram (recorded in µs), in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl LatencySummary {
    /// Summarises a µs histogram.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }

    fn json(&self) -> Value {
        json!({
            "count": self.count,
            "p50": round3(self.p50_ms),
            "p99": round3(self.p99_ms),
            "p999": round3(self.p999_ms),
            "max": round3(self.max_ms),
            "mean": round3(self.mean_ms),
        })
    }

    fn line(&self) -> String {
        if self.count == 0 {
            return "n/a (no samples)".into();
        }
        format!(
            "p50 {:.3} ms   p99 {:.3} ms   p99.9 {:.3} ms   max {:.3} ms   ({} samples)",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One counter delta from the metrics endpoint.
#[derive(Debug, Clone)]
pub struct CounterDelta {
    /// Series (`name{labels}`).
    pub series: String,
    /// After minus before.
    pub delta: f64,
}

/// The broker's resident memory before the run created its topic and once every
/// partition of it had answered, before anything was produced.
#[derive(Debug, Clone, Copy)]
pub struct IdleMemory {
    /// RSS before CreateTopics, in bytes.
    pub rss_before_topic: u64,
    /// RSS with the topic's partitions idle, in bytes.
    pub rss_with_topic: u64,
    /// Partitions of the topic.
    pub partitions: usize,
}

impl IdleMemory {
    /// Growth per partition in bytes (0 if memory shrank).
    pub fn per_partition_bytes(&self) -> f64 {
        self.rss_with_topic.saturating_sub(self.rss_before_topic) as f64
            / self.partitions.max(1) as f64
    }
}

/// Everything measured in one run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Workload description, echoed in the output.
    pub workload: BTreeMap<&'static str, Value>,
    /// Negotiated protocol versions.
    pub versions: BTreeMap<&'static str, i16>,
    /// Measured window in seconds.
    pub window_secs: f64,
    /// Records put in produce requests.
    pub records_sent: u64,
    /// Records acknowledged without error (= sent with acks=0).
    pub records_acked: u64,
    /// Sent records in error responses or on a failed connection.
    pub records_failed: u64,
    /// Records created but never sent (run cut short).
    pub records_unsent: u64,
    /// Records read back by the consumers.
    pub records_consumed: u64,
    /// Produce requests written.
    pub produce_requests: u64,
    /// Fetch requests answered.
    pub fetch_requests: u64,
    /// Records sent in the measured window.
    pub measured_sent: u64,
    /// Records acked whose request was sent in the measured window.
    pub measured_acked: u64,
    /// Value bytes of `measured_acked`.
    pub measured_acked_bytes: u64,
    /// Records consumed that were sent in the measured window.
    pub measured_consumed: u64,
    /// Produce ack latency per request.
    pub produce_latency: LatencySummary,
    /// End-to-end latency per record.
    pub e2e_latency: LatencySummary,
    /// Kafka error codes by (API, code).
    pub kafka_errors: BTreeMap<(&'static str, i16), u64>,
    /// Client-side failures.
    pub client_errors: BTreeMap<String, u64>,
    /// Whether consumers ran.
    pub consumers_enabled: bool,
    /// Broker CPU seconds in the window.
    pub broker_cpu_secs: Option<f64>,
    /// Why the broker CPU is missing, when asked for.
    pub broker_cpu_error: Option<String>,
    /// This process's CPU seconds in the window.
    pub bench_cpu_secs: Option<f64>,
    /// Object-store counter deltas in the window.
    pub object_store: Option<Vec<CounterDelta>>,
    /// Why the metrics are missing, when asked for.
    pub metrics_error: Option<String>,
    /// Broker memory of the idle topic, when the run created it and knows the pid.
    pub idle_memory: Option<IdleMemory>,
    /// False when the run was cut short by the hard deadline.
    pub finished: bool,
}

impl Report {
    /// Sent records with neither an ack nor a failure (still in flight at
    /// the deadline).
    pub fn records_unanswered(&self) -> u64 {
        self.records_sent
            .saturating_sub(self.records_acked)
            .saturating_sub(self.records_failed)
    }

    /// Produce throughput in records/s over the measured window.
    pub fn records_per_sec(&self) -> f64 {
        if self.window_secs > 0.0 {
            self.measured_acked as f64 / self.window_secs
        } else {
            0.0
        }
    }

    /// Produce throughput in MB/s (10^6 bytes of record values) over the window.
    pub fn mb_per_sec(&self) -> f64 {
        if self.window_secs > 0.0 {
            self.measured_acked_bytes as f64 / 1e6 / self.window_secs
        } else {
            0.0
        }
    }

    /// GiB of record values acked in the window.
    pub fn gib(&self) -> f64 {
        self.measured_acked_bytes as f64 / GIB
    }

    /// Consumers read exactly what was acknowledged.
    pub fn consumed_matches(&self) -> bool {
        !self.consumers_enabled || self.records_consumed == self.records_acked
    }

    fn per_gib(&self, x: f64) -> Option<f64> {
        let g = self.gib();
        (g > 0.0).then(|| x / g)
    }

    fn error_name(code: i16) -> String {
        match ResponseError::try_from_code(code) {
            Some(ResponseError::Unknown(_)) | None => "UNKNOWN".into(),
            Some(e) => format!("{e:?}"),
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "== inkless-bench results ==");
        let workload: Vec<String> = self
            .workload
            .iter()
            .map(|(k, v)| match v {
                Value::String(x) => format!("{k}={x}"),
                other => format!("{k}={other}"),
            })
            .collect();
        let _ = writeln!(s, "workload            {}", workload.join(" "));
        let versions: Vec<String> = self
            .versions
            .iter()
            .map(|(k, v)| format!("{k} v{v}"))
            .collect();
        let _ = writeln!(s, "protocol            {}", versions.join(", "));
        let _ = writeln!(s, "measured window     {:.1} s", self.window_secs);
        let _ = writeln!(
            s,
            "records sent        {} ({} in window, {} requests)",
            self.records_sent, self.measured_sent, self.produce_requests
        );
        let _ = writeln!(
            s,
            "records acked       {} ({} in window){}{}{}",
            self.records_acked,
            self.measured_acked,
            if self.records_failed > 0 {
                format!(", {} failed", self.records_failed)
            } else {
                String::new()
            },
            if self.records_unanswered() > 0 {
                format!(", {} unanswered", self.records_unanswered())
            } else {
                String::new()
            },
            if self.records_unsent > 0 {
                format!(", {} created but not sent", self.records_unsent)
            } else {
                String::new()
            }
        );
        if self.consumers_enabled {
            let _ = writeln!(
                s,
                "records consumed    {} ({} in window, {} fetches)  consumed == acked: {}",
                self.records_consumed,
                self.measured_consumed,
                self.fetch_requests,
                if self.consumed_matches() { "yes" } else { "NO" }
            );
        } else {
            let _ = writeln!(s, "records consumed    (no consumers)");
        }
        let _ = writeln!(
            s,
            "produce throughput  {:.2} MB/s   {:.0} records/s",
            self.mb_per_sec(),
            self.records_per_sec()
        );
        let _ = writeln!(s, "produce ack latency {}", self.produce_latency.line());
        if self.consumers_enabled {
            let _ = writeln!(s, "end-to-end latency  {}", self.e2e_latency.line());
        }
        if self.kafka_errors.is_empty() && self.client_errors.is_empty() {
            let _ = writeln!(s, "errors              none");
        } else {
            let _ = writeln!(s, "errors");
            for ((api, code), n) in &self.kafka_errors {
                let _ = writeln!(
                    s,
                    "  {api:<8} {code:>4} {:<32} {n}",
                    Self::error_name(*code)
                );
            }
            for (what, n) in &self.client_errors {
                let _ = writeln!(s, "  client   {what}: {n}");
            }
        }
        if let Some(cpu) = self.broker_cpu_secs {
            let per = self
                .per_gib(cpu)
                .map(|x| format!("{x:.2} CPU s/GiB"))
                .unwrap_or_else(|| "n/a per GiB".into());
            let _ = writeln!(s, "broker CPU          {cpu:.2} s   {per}");
        } else if let Some(e) = &self.broker_cpu_error {
            let _ = writeln!(s, "broker CPU          unavailable: {e}");
        }
        if let Some(cpu) = self.bench_cpu_secs {
            let _ = writeln!(s, "bench CPU           {cpu:.2} s");
        }
        if let Some(m) = &self.idle_memory {
            let _ = writeln!(
                s,
                "broker RSS          {:.1} MiB before the topic, {:.1} MiB with {} idle partitions: {:.1} KiB per partition",
                m.rss_before_topic as f64 / MIB,
                m.rss_with_topic as f64 / MIB,
                m.partitions,
                m.per_partition_bytes() / 1024.0
            );
        }
        if let Some(deltas) = &self.object_store {
            if deltas.is_empty() {
                let _ = writeln!(s, "object store        no counters matching 'object_store'");
            } else {
                let _ = writeln!(s, "object store        delta        per GiB");
                for d in deltas {
                    let per = self
                        .per_gib(d.delta)
                        .map(|x| format!("{x:.2}"))
                        .unwrap_or_else(|| "n/a".into());
                    let _ = writeln!(s, "  {:<60} {:>12} {:>12}", d.series, d.delta, per);
                }
            }
        } else if let Some(e) = &self.metrics_error {
            let _ = writeln!(s, "object store        unavailable: {e}");
        }
        if !self.finished {
            let _ = writeln!(s, "WARNING: run cut short at the hard deadline");
        }
        s
    }

    /// The machine-readable result.
    pub fn json(&self) -> Value {
        let kafka_errors: Vec<Value> = self
            .kafka_errors
            .iter()
            .map(|((api, code), n)| {
                json!({"api": api, "code": code, "name": Self::error_name(*code), "count": n})
            })
            .collect();
        let object_store = self.object_store.as_ref().map(|d| {
            d.iter()
                .map(|c| {
                    (
                        c.series.clone(),
                        json!({"delta": c.delta, "per_gib": self.per_gib(c.delta)}),
                    )
                })
                .collect::<serde_json::Map<String, Value>>()
        });
        json!({
            "workload": self.workload,
            "versions": self.versions,
            "window_secs": round3(self.window_secs),
            "records_sent": self.records_sent,
            "records_acked": self.records_acked,
            "records_failed": self.records_failed,
            "records_unanswered": self.records_unanswered(),
            "records_unsent": self.records_unsent,
            "records_consumed": if self.consumers_enabled { Some(self.records_consumed) } else { None },
            "produce_requests": self.produce_requests,
            "fetch_requests": self.fetch_requests,
            "measured": {
                "records_sent": self.measured_sent,
                "records_acked": self.measured_acked,
                "bytes_acked": self.measured_acked_bytes,
                "records_consumed": self.measured_consumed,
            },
            "produce_records_per_sec": round3(self.records_per_sec()),
            "produce_mb_per_sec": round3(self.mb_per_sec()),
            "produce_latency_ms": self.produce_latency.json(),
            "e2e_latency_ms": self.e2e_latency.json(),
            "consumed_equals_acked": self.consumed_matches(),
            "kafka_errors": kafka_errors,
            "client_errors": self.client_errors,
            "broker_cpu_seconds": self.broker_cpu_secs.map(round3),
            "broker_cpu_seconds_per_gib": self.broker_cpu_secs.and_then(|c| self.per_gib(c)).map(round3),
            "bench_cpu_seconds": self.bench_cpu_secs.map(round3),
            "broker_rss_before_topic_bytes": self.idle_memory.map(|m| m.rss_before_topic),
            "broker_rss_idle_topic_bytes": self.idle_memory.map(|m| m.rss_with_topic),
            "broker_rss_per_idle_partition_bytes": self.idle_memory.map(|m| m.per_partition_bytes().round()),
            "object_store": object_store,
            "finished": self.finished,
        })
    }
}
