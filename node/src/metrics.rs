//! Request metrics: per Kafka API, a request counter and a latency histogram, rendered in
//! Prometheus text format by the admin endpoint.

use inkless_protocol::kafka_protocol::messages::ApiKey;
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
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            apis: (0..MAX_API_KEY).map(|_| ApiStats::default()).collect(),
        }
    }
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

    /// Appends the metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
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
