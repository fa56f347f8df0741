//! Request metrics: per Kafka API, a request counter and a latency histogram, and the
//! error codes answered (partition-level for Produce, Fetch, ListOffsets,
//! OffsetForLeaderEpoch and OffsetCommit: the answers that tell a client its leader moved;
//! top-level for the group APIs), encoded into the node's registry ([`crate::telemetry`]).

use inkless_protocol::kafka_protocol::error::ParseResponseErrorCode;
use inkless_protocol::kafka_protocol::messages::{ApiKey, ResponseKind};
use inkless_storage::metrics::prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use inkless_storage::metrics::prometheus_client::metrics::counter::ConstCounter;
use inkless_storage::metrics::prometheus_client::metrics::MetricType;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// API keys are small non-negative numbers; this covers every key Kafka defines today.
const MAX_API_KEY: usize = 128;

#[derive(Debug, Default)]
struct ApiStats {
    count: AtomicU64,
    sum_micros: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
}

/// Counters of every API, indexed by API key.
#[derive(Debug)]
pub struct RequestMetrics {
    apis: Vec<ApiStats>,
    /// Partition-level error codes answered, by (API key, error code); errors are rare, so
    /// one lock taken only when a response carries one is cheap.
    partition_errors: Mutex<BTreeMap<(i16, i16), u64>>,
    /// Partition reads of a fetch answered with fewer batches than were located, because
    /// the bytes had not arrived by the read deadline ([0]) or a read failed ([1]).
    partial_reads: [AtomicU64; 2],
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            apis: (0..MAX_API_KEY).map(|_| ApiStats::default()).collect(),
            partition_errors: Mutex::default(),
            partial_reads: Default::default(),
        }
    }
}

/// Calls `f` with each error code of a response to count (0 included; the caller skips
/// it), without allocating: a fetch answer may carry thousands of partitions.
fn for_each_code(r: &ResponseKind, f: &mut dyn FnMut(i16)) {
    match r {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| f(p.error_code)),
        ResponseKind::Fetch(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::JoinGroup(r) => f(r.error_code),
        ResponseKind::SyncGroup(r) => f(r.error_code),
        ResponseKind::Heartbeat(r) => f(r.error_code),
        ResponseKind::FindCoordinator(r) => f(r.error_code),
        _ => {}
    }
}

/// Kafka's name of an error code (NOT_LEADER_OR_FOLLOWER), or the number.
pub(crate) fn error_name(code: i16) -> String {
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

    /// Counts a partition read of a fetch cut short: by a failed read or by the deadline.
    pub fn partial_read(&self, failed: bool) {
        self.partial_reads[failed as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the partition-level errors of one response (see the module documentation).
    pub fn count_errors(&self, api: ApiKey, response: Option<&ResponseKind>) {
        let Some(response) = response else {
            return;
        };
        let mut any = false;
        for_each_code(response, &mut |c| any |= c != 0);
        if !any {
            return;
        }
        let mut errors = self.partition_errors.lock();
        for_each_code(response, &mut |code| {
            if code != 0 {
                *errors.entry((api as i16, code)).or_default() += 1;
            }
        });
    }

    /// Encodes the error counters.
    fn encode_errors(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let mut m = enc.encode_descriptor(
            "inkless_partition_errors",
            "Error codes answered, by API and error (partition-level, and the group APIs' top-level code)",
            None,
            MetricType::Counter,
        )?;
        for ((api, code), n) in self.partition_errors.lock().iter() {
            let Ok(api) = ApiKey::try_from(*api) else {
                continue;
            };
            let labels = [("api", format!("{api:?}")), ("error", error_name(*code))];
            ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// Encodes the metrics into a scrape.
    pub fn encode(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        self.encode_errors(enc)?;
        let mut m = enc.encode_descriptor(
            "inkless_fetch_partial_reads",
            "Partition reads of a fetch answered with fewer batches than located: the bytes were not read by fetch.read_wait_ms (deadline), or a read failed (error)",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in ["deadline", "error"].iter().zip(&self.partial_reads) {
            let n = ConstCounter::new(n.load(Ordering::Relaxed));
            n.encode(m.encode_family(&[("reason", *reason)])?)?;
        }
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
        let mut m = enc.encode_descriptor(
            "inkless_requests",
            "Kafka requests answered, by API",
            None,
            MetricType::Counter,
        )?;
        for (api, s) in &used {
            let count = ConstCounter::new(s.count.load(Ordering::Relaxed));
            count.encode(m.encode_family(&[("api", api.as_str())])?)?;
        }
        let mut m = enc.encode_descriptor(
            "inkless_request_duration_seconds",
            "Time from decoding a request to its response, by API",
            None,
            MetricType::Histogram,
        )?;
        for (api, s) in &used {
            let buckets: Vec<(f64, u64)> = BUCKETS
                .iter()
                .zip(&s.buckets)
                .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
                .collect();
            let count = s.count.load(Ordering::Relaxed);
            let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            m.encode_family(&[("api", api.as_str())])?
                .encode_histogram::<inkless_storage::metrics::prometheus_client::encoding::NoLabelSet>(
                    sum, count, &buckets, None,
                )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inkless_storage::metrics::prometheus_client::collector::Collector;
    use inkless_storage::metrics::prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Only(std::sync::Arc<RequestMetrics>);

    impl Collector for Only {
        fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
            self.0.encode(&mut enc)
        }
    }

    fn render(m: &std::sync::Arc<RequestMetrics>) -> String {
        let mut r = Registry::default();
        r.register_collector(Box::new(Only(m.clone())));
        let mut out = String::new();
        inkless_storage::metrics::prometheus_client::encoding::prometheus_text::encode(
            &mut out, &r,
        )
        .unwrap();
        out
    }

    #[test]
    fn partition_errors_are_counted_by_api_and_name() {
        use inkless_protocol::kafka_protocol::messages::produce_response::*;
        let m = std::sync::Arc::new(RequestMetrics::default());
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
        let out = render(&m);
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
        let m = std::sync::Arc::new(RequestMetrics::default());
        m.observe(ApiKey::Produce, Duration::from_millis(3));
        m.observe(ApiKey::Produce, Duration::from_millis(300));
        let out = render(&m);
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
