//! One consumer connection: fetches its share of the partitions from the
//! offsets they had before the run (ListOffsets latest), decodes the record
//! batches and records each record's end-to-end latency (send timestamp in
//! the value to the arrival of the fetch response).
//!
//! Once the producers are done the consumer asks for the partitions' end
//! offsets again and stops when it has read up to them, or when the drain
//! time is over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::{
    fetch_request::{FetchPartition, FetchTopic},
    FetchRequest, TopicName,
};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::sync::watch;
use uuid::Uuid;

use super::conn::Connection;
use super::setup::{latest_offsets, Versions};
use super::stats::{add, record_us, Clock, Stats};

/// Everything one consumer task needs.
#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    /// Consumer index.
    pub id: usize,
    /// Broker address.
    pub bootstrap: String,
    /// Topic name.
    pub topic: TopicName,
    /// Topic id (needed for fetch v13+).
    pub topic_id: Uuid,
    /// Partitions assigned to this consumer.
    pub partitions: Vec<i32>,
    /// Negotiated versions.
    pub versions: Versions,
    /// Fetch max wait.
    pub max_wait_ms: i32,
    /// Fetch min bytes.
    pub min_bytes: i32,
    /// Fetch max bytes per partition.
    pub partition_max_bytes: i32,
    /// Client-side timeout of one request.
    pub request_timeout: Duration,
    /// Shared clock of the value timestamps.
    pub clock: Clock,
    /// How long to keep reading after the producers are done.
    pub drain: Duration,
}

/// A connected consumer positioned at the partitions' end offsets.
pub struct Consumer {
    plan: ConsumerPlan,
    conn: Connection,
    /// (partition, next offset to read)
    positions: Vec<(i32, i64)>,
}

/// Kafka's record batch header: base offset (8) + length (4) precede the
/// rest; the magic byte is at 16 and the last offset delta at 23..27.
const BATCH_PREFIX: usize = 12;
const MAGIC_OFFSET: usize = 16;
const LAST_OFFSET_DELTA: usize = 23;

impl Consumer {
    /// Connects and looks up the starting offsets.
    pub async fn prepare(plan: ConsumerPlan) -> Result<Self> {
        let mut conn = Connection::connect(&plan.bootstrap, plan.request_timeout).await?;
        let positions = latest_offsets(
            &mut conn,
            &plan.versions,
            &plan.topic,
            &plan.partitions,
            // Thousands of partitions can take Kafka a while to elect every leader.
            Duration::from_secs(60),
        )
        .await?;
        Ok(Consumer {
            plan,
            conn,
            positions,
        })
    }

    /// Fetches until the producers are done and everything up to the end
    /// offsets then is read, or until `hard_stop`. Failures are counted in
    /// `stats`.
    pub async fn run(
        mut self,
        stats: Arc<Stats>,
        warmup_end_nanos: u64,
        mut producers_done: watch::Receiver<bool>,
        hard_stop: Instant,
    ) {
        let mut targets: Option<Vec<(i32, i64)>> = None;
        let mut drain_deadline = hard_stop;
        loop {
            let now = Instant::now();
            if targets.is_none() && *producers_done.borrow_and_update() {
                let parts: Vec<i32> = self.positions.iter().map(|p| p.0).collect();
                match latest_offsets(
                    &mut self.conn,
                    &self.plan.versions,
                    &self.plan.topic,
                    &parts,
                    Duration::from_secs(5),
                )
                .await
                {
                    Ok(t) => targets = Some(t),
                    Err(e) => {
                        stats.client_error(format!("consumer end offsets: {e:#}"));
                        return;
                    }
                }
                drain_deadline = hard_stop.min(now + self.plan.drain);
            }
            if let Some(t) = &targets {
                let missing = self.missing(t);
                if missing == 0 {
                    return;
                }
                if now >= drain_deadline {
                    stats.client_error(format!(
                        "consumer {}: stopped at the drain deadline",
                        self.plan.id
                    ));
                    return;
                }
            } else if now >= hard_stop {
                stats.client_error(format!(
                    "consumer {}: producers not done at the deadline",
                    self.plan.id
                ));
                return;
            }
            let started = Instant::now();
            match self.fetch_once(&stats, warmup_end_nanos).await {
                Ok(0) if started.elapsed() < Duration::from_millis(1) => {
                    // A broker that answers empty fetches at once: don't spin.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Ok(_) => {}
                Err(e) => {
                    stats.client_error(format!("fetch: {e:#}"));
                    return;
                }
            }
        }
    }

    /// Records still to read to reach `targets`.
    fn missing(&self, targets: &[(i32, i64)]) -> i64 {
        targets
            .iter()
            .map(|&(p, end)| {
                let pos = self
                    .positions
                    .iter()
                    .find(|x| x.0 == p)
                    .map(|x| x.1)
                    .unwrap_or(end);
                (end - pos).max(0)
            })
            .sum()
    }

    /// One fetch round trip; returns the number of new records.
    async fn fetch_once(&mut self, stats: &Stats, warmup_end_nanos: u64) -> Result<u64> {
        let version = self.plan.versions.fetch;
        let mut topic = FetchTopic::default();
        if version >= 13 {
            topic.topic_id = self.plan.topic_id;
        } else {
            topic.topic = self.plan.topic.clone();
        }
        topic.partitions = self
            .positions
            .iter()
            .map(|&(p, offset)| {
                let mut fp = FetchPartition::default();
                fp.partition = p;
                fp.fetch_offset = offset;
                fp.partition_max_bytes = self.plan.partition_max_bytes;
                fp
            })
            .collect();
        let mut req = FetchRequest::default();
        req.max_wait_ms = self.plan.max_wait_ms;
        req.min_bytes = self.plan.min_bytes;
        req.max_bytes = 64 * 1024 * 1024;
        req.isolation_level = 0;
        req.session_id = 0;
        req.session_epoch = -1;
        req.topics = vec![topic];
        let resp = self.conn.call(&req, version).await?;
        add(&stats.fetch_requests, 1);
        let polled = self.plan.clock.nanos();
        if resp.error_code != 0 {
            stats.kafka_error("Fetch", resp.error_code);
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Ok(0);
        }
        let mut latencies = Vec::new();
        let mut total = 0u64;
        let mut measured = 0u64;
        let mut had_error = false;
        for t in resp.responses {
            for p in t.partitions {
                if p.error_code != 0 {
                    stats.kafka_error("Fetch", p.error_code);
                    had_error = true;
                    continue;
                }
                let Some(records) = p.records else { continue };
                let Some(pos) = self.positions.iter_mut().find(|x| x.0 == p.partition_index) else {
                    stats.client_error("fetch response for a partition not requested");
                    continue;
                };
                let mut counts = Counts::default();
                decode_records(
                    records,
                    &mut pos.1,
                    polled,
                    warmup_end_nanos,
                    &mut latencies,
                    &mut counts,
                )?;
                total += counts.records;
                measured += counts.measured;
                if counts.short_values > 0 {
                    stats.client_error("record value shorter than the 8-byte timestamp");
                }
            }
        }
        add(&stats.consumed_records, total);
        add(&stats.measured_consumed_records, measured);
        if !latencies.is_empty() {
            let mut h = stats.e2e_latency.lock();
            for us in latencies {
                record_us(&mut h, us);
            }
        }
        if had_error {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(total)
    }
}

#[derive(Default)]
struct Counts {
    records: u64,
    measured: u64,
    short_values: u64,
}

/// Decodes the record batches of one partition, skipping records before
/// `*next` and a truncated batch at the end, and advances `*next`.
fn decode_records(
    mut buf: Bytes,
    next: &mut i64,
    polled_nanos: u64,
    warmup_end_nanos: u64,
    latencies: &mut Vec<u64>,
    counts: &mut Counts,
) -> Result<()> {
    while buf.len() >= BATCH_PREFIX {
        let base_offset = (&buf[0..8]).get_i64();
        let len = (&buf[8..12]).get_i32();
        let len = usize::try_from(len).map_err(|_| anyhow!("negative batch length {len}"))?;
        let total = BATCH_PREFIX + len;
        if buf.len() < total {
            break; // partial batch at the end of the response
        }
        let mut batch = buf.split_to(total);
        if batch.len() < LAST_OFFSET_DELTA + 4 {
            bail!("record batch of {} bytes is too short", batch.len());
        }
        if batch[MAGIC_OFFSET] != 2 {
            bail!(
                "record batch magic {} is not supported",
                batch[MAGIC_OFFSET]
            );
        }
        let last_delta = (&batch[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4]).get_i32();
        let batch_end = base_offset + i64::from(last_delta) + 1;
        if batch_end <= *next {
            continue; // entirely before the position
        }
        let set = RecordBatchDecoder::decode(&mut batch)?;
        for r in set.records {
            if r.control || r.offset < *next {
                continue;
            }
            counts.records += 1;
            match r.value.as_ref() {
                Some(v) if v.len() >= 8 => {
                    let ts = (&v[0..8]).get_u64();
                    if ts >= warmup_end_nanos {
                        counts.measured += 1;
                        latencies.push(polled_nanos.saturating_sub(ts) / 1000);
                    }
                }
                _ => counts.short_values += 1,
            }
        }
        *next = (*next).max(batch_end);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::producer::bench_record;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};

    fn batch(first_offset: i64, n: i64, ts: u64) -> BytesMut {
        let records: Vec<_> = (first_offset..first_offset + n)
            .map(|o| {
                let mut v = BytesMut::new();
                v.put_u64(ts);
                v.put_slice(b"payload");
                bench_record(o, 0, v.freeze())
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::Lz4,
        };
        RecordBatchEncoder::encode(&mut buf, records.iter(), &options).unwrap();
        buf
    }

    #[test]
    fn skips_old_records_and_truncated_tail() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&batch(0, 10, 1_000)); // before the warm-up end
        buf.extend_from_slice(&batch(10, 5, 9_000_000));
        let third = batch(15, 5, 9_000_000);
        buf.extend_from_slice(&third[..third.len() - 3]); // cut short
        let mut next = 4;
        let mut lat = Vec::new();
        let mut counts = Counts::default();
        decode_records(
            buf.freeze(),
            &mut next,
            10_000_000,
            5_000,
            &mut lat,
            &mut counts,
        )
        .unwrap();
        assert_eq!(next, 15);
        assert_eq!(counts.records, 11); // offsets 4..15
        assert_eq!(counts.measured, 5);
        assert_eq!(lat, vec![1_000; 5]); // (10 ms - 9 ms) in µs
        assert_eq!(counts.short_values, 0);
    }

    #[test]
    fn rejects_garbage() {
        let mut next = 0;
        let mut counts = Counts::default();
        let garbage = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1]);
        assert!(decode_records(garbage, &mut next, 0, 0, &mut Vec::new(), &mut counts).is_err());
    }
}
