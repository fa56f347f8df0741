//! Request metrics: per Kafka API, a request counter and a latency histogram, and the
//! partition-level error codes answered (Produce, Fetch, ListOffsets, OffsetForLeaderEpoch:
//! the answers that tell a client its leader moved), rendered in Prometheus text format by
//! the admin endpoint.

use inkless_protocol::kafka_protocol::error::ParseResponseErrorCode;
use inkless_protocol::kafka_protocol::messages::{ApiKey, ResponseKind};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// API keys are small non-negative numbers; this covers every key Kafka defines today.
const MAX_API_KEY: usize = 128;

#[derive(Default)]
struct ApiStats {
    count: AtomicU64,
    sum_micros: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
}

/// Counters of every API, indexed by API key.
pub struct RequestMetrics {
    apis: Vec<ApiStats>,
    /// Partition-level error codes answered, by (API key, error code); errors are rare, so
    /// one lock taken only when a response carries one is cheap.
    partition_errors: Mutex<BTreeMap<(i16, i16), u64>>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            apis: (0..MAX_API_KEY).map(|_| ApiStats::default()).collect(),
            partition_errors: Mutex::default(),
        }
    }
}

/// The partition-level error codes of a response to count (0 included; the caller skips it).
fn partition_codes(r: &ResponseKind) -> Vec<i16> {
    match r {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::Fetch(r) => r
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        _ => Vec::new(),
    }
}

/// Kafka's name of an error code (NOT_LEADER_OR_FOLLOWER), or the number.
fn error_name(code: i16) -> String {
    let Some(e) = code.err() else {
        return code.to_string();
    };
    let mut out = String::new();
    for (i, c) in format!("{e:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl RequestMetrics {
    /// Records one answered request.
    pub fn observe(&self, api: ApiKey, took: Duration) {
        let Some(s) = self.apis.get(api as i16 as usize) else {
            return;
        };
        s.count.fetch_add(1, Ordering::Relaxed);
        s.sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            s.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts the partition-level errors of one response (see the module documentation).
    pub fn count_errors(&self, api: ApiKey, response: Option<&ResponseKind>) {
        let codes = response.map(partition_codes).unwrap_or_default();
        if codes.iter().all(|c| *c == 0) {
            return;
        }
        let mut errors = self.partition_errors.lock();
        for code in codes.into_iter().filter(|c| *c != 0) {
            *errors.entry((api as i16, code)).or_default() += 1;
        }
    }

    /// Appends the partition error counters in Prometheus text format.
    fn render_errors(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP inkless_partition_errors_total Partition-level error codes answered, by API and error."
        );
        let _ = writeln!(out, "# TYPE inkless_partition_errors_total counter");
        for ((api, code), n) in self.partition_errors.lock().iter() {
            let Ok(api) = ApiKey::try_from(*api) else {
                continue;
            };
            let _ = writeln!(
                out,
                "inkless_partition_errors_total{{api=\"{api:?}\",error=\"{}\"}} {n}",
                error_name(*code)
            );
        }
    }

    /// Appends the metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        self.render_errors(out);
        let _ = writeln!(
            out,
            "# HELP inkless_requests_total Kafka requests answered, by API."
        );
        let _ = writeln!(out, "# TYPE inkless_requests_total counter");
        let used: Vec<(String, &ApiStats)> = self
            .apis
            .iter()
            .enumerate()
            .filter(|(_, s)| s.count.load(Ordering::Relaxed) > 0)
            .filter_map(|(k, s)| {
                ApiKey::try_from(k as i16)
                    .ok()
                    .map(|a| (format!("{a:?}"), s))
            })
            .collect();
        for (api, s) in &used {
            let _ = writeln!(
                out,
                "inkless_requests_total{{api=\"{api}\"}} {}",
                s.count.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP inkless_request_duration_seconds Time from decoding a request to its response, by API.");
        let _ = writeln!(out, "# TYPE inkless_request_duration_seconds histogram");
        for (api, s) in &used {
            let mut cumulative = 0;
            for (b, n) in BUCKETS.iter().zip(&s.buckets) {
                cumulative += n.load(Ordering::Relaxed);
                let _ = writeln!(out, "inkless_request_duration_seconds_bucket{{api=\"{api}\",le=\"{b}\"}} {cumulative}");
            }
            let count = s.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "inkless_request_duration_seconds_bucket{{api=\"{api}\",le=\"+Inf\"}} {count}"
            );
            let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "inkless_request_duration_seconds_sum{{api=\"{api}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "inkless_request_duration_seconds_count{{api=\"{api}\"}} {count}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_errors_are_counted_by_api_and_name() {
        use inkless_protocol::kafka_protocol::messages::produce_response::*;
        let m = RequestMetrics::default();
        let part = |code| PartitionProduceResponse::default().with_error_code(code);
        let r = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default().with_partition_responses(vec![
                part(6),
                part(0),
                part(6),
            ]),
        ]));
        m.count_errors(ApiKey::Produce, Some(&r));
        m.count_errors(ApiKey::Produce, None);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains(
                "inkless_partition_errors_total{api=\"Produce\",error=\"NOT_LEADER_OR_FOLLOWER\"} 2"
            ),
            "{out}"
        );
        assert_eq!(error_name(74), "FENCED_LEADER_EPOCH");
    }

    #[test]
    fn histogram_is_cumulative_with_sum_and_count() {
        let m = RequestMetrics::default();
        m.observe(ApiKey::Produce, Duration::from_millis(3));
        m.observe(ApiKey::Produce, Duration::from_millis(300));
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("inkless_requests_total{api=\"Produce\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("inkless_request_duration_seconds_bucket{api=\"Produce\",le=\"0.005\"} 1")
        );
        assert!(
            out.contains("inkless_request_duration_seconds_bucket{api=\"Produce\",le=\"0.5\"} 2")
        );
        assert!(out.contains("inkless_request_duration_seconds_count{api=\"Produce\"} 2"));
        assert!(!out.contains("Fetch"));
    }
}
