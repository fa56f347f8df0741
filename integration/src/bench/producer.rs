//! One producer connection: accumulates records into per-partition batches
//! (magic v2), sends produce requests pipelined up to `max_in_flight`, and
//! reads the in-order responses on a separate task.
//!
//! Records are spread round-robin over all partitions. A partition's batch
//! is ready when it holds `batch_records` records or its oldest record has
//! waited `linger`. As in the Java producer, once any batch is ready the
//! next request takes all pending batches (full ones first, then oldest
//! first) up to `max_request_bytes` of record payload.
//!
//! With a target rate the schedule is open-loop: record `k` is due at
//! `start + k / rate` and carries that scheduled time as its send timestamp,
//! so time spent waiting for a free in-flight slot shows up in the
//! end-to-end latency instead of silently lowering the rate. At full speed
//! records carry the time they were created.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::{
    produce_request::{PartitionProduceData, TopicProduceData},
    ProduceRequest, TopicName,
};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::conn::{decode_response, encode_request, read_frame, Connection};
use super::stats::{add, record_us, Clock, Stats};

/// Everything one producer task needs.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    /// Producer index (also the first partition it writes to).
    pub id: usize,
    /// Broker address.
    pub bootstrap: String,
    /// Topic name.
    pub topic: TopicName,
    /// Partition indexes of the topic.
    pub partitions: Arc<Vec<i32>>,
    /// Record value size.
    pub record_bytes: usize,
    /// Records per full batch.
    pub batch_records: usize,
    /// Max wait of a partial batch.
    pub linger: Duration,
    /// Records per second for this producer (0 = unlimited).
    pub rate: f64,
    /// Produce acks.
    pub acks: i16,
    /// Pipelined requests per connection.
    pub max_in_flight: usize,
    /// Record payload bytes per request (upper bound).
    pub max_request_bytes: usize,
    /// Client and broker timeout of one request.
    pub request_timeout: Duration,
    /// Batch compression.
    pub compression: Compression,
    /// Produce request version.
    pub version: i16,
    /// Shared clock for the timestamps in record values.
    pub clock: Clock,
    /// When sending starts.
    pub start: Instant,
    /// End of the warm-up.
    pub warmup_end: Instant,
    /// When producers stop creating records.
    pub end: Instant,
    /// Last moment for anything (flush, acks).
    pub hard_stop: Instant,
}

/// One produce request awaiting its response.
struct InFlight {
    correlation_id: i32,
    sent_at: Instant,
    /// (partition, record count) per batch.
    batches: Vec<(i32, u64)>,
    records: u64,
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Default)]
struct Accumulator {
    records: Vec<Record>,
    first_at: Option<Instant>,
    queued_full: bool,
}

/// Fills record values with pseudo-random letters (4 bits of entropy per
/// byte), so compression ratios are realistic rather than perfect. The
/// letters come from a pool generated once; each value copies a slice at a
/// pseudo-random position, so the records of one batch do not repeat each
/// other.
struct Filler {
    pool: Vec<u8>,
    state: u64,
}

/// Size of the random pool, before the record length is added.
const FILLER_POOL: usize = 1 << 20;

impl Filler {
    fn new(seed: u64, record_bytes: usize) -> Self {
        let mut f = Filler {
            pool: Vec::new(),
            state: seed | 1,
        };
        let len = FILLER_POOL + record_bytes;
        let mut pool = Vec::with_capacity(len + 8);
        while pool.len() < len {
            let x = (f.next() & 0x0f0f_0f0f_0f0f_0f0f) | 0x6060_6060_6060_6060;
            pool.extend_from_slice(&x.to_le_bytes());
        }
        f.pool = pool;
        f
    }

    fn next(&mut self) -> u64 {
        // xorshift64
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// A value of `len` bytes (at least 8) starting with `ts_nanos`.
    fn value(&mut self, ts_nanos: u64, len: usize) -> Bytes {
        let start = (self.next() % FILLER_POOL as u64) as usize;
        let rest = len.saturating_sub(8);
        let mut v = BytesMut::with_capacity(8 + rest);
        v.put_u64(ts_nanos);
        // The pool holds FILLER_POOL + record_bytes bytes.
        v.put_slice(&self.pool[start..start + rest]);
        v.freeze()
    }
}

/// A non-idempotent, keyless record at `offset` within its batch.
pub(crate) fn bench_record(offset: i64, unix_ms: i64, value: Bytes) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        // The encoder starts a new batch whenever offset - sequence changes;
        // keeping it constant gives one batch with base sequence -1.
        sequence: (offset as i32).wrapping_sub(1),
        timestamp: unix_ms,
        key: None,
        value: Some(value),
        headers: IndexMap::new(),
    }
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runs one producer until `plan.end` (plus the flush and the acks of what
/// is in flight, bounded by `plan.hard_stop`). Failures are counted in
/// `stats`, not returned.
pub async fn run(plan: ProducerPlan, stats: Arc<Stats>) {
    if let Err(e) = run_inner(&plan, &stats).await {
        stats.client_error(format!("producer: {e:#}"));
    }
}

struct Producer<'a> {
    plan: &'a ProducerPlan,
    accs: Vec<Accumulator>,
    full: VecDeque<usize>,
    next_partition: usize,
    filler: Filler,
    batch_estimate: usize,
}

impl Producer<'_> {
    fn append(&mut self, created: Instant, unix_ms: i64) {
        let i = self.next_partition;
        self.next_partition = (self.next_partition + 1) % self.accs.len();
        let ts = self.plan.clock.nanos_at(created);
        let value = self.filler.value(ts, self.plan.record_bytes);
        let acc = &mut self.accs[i];
        let offset = acc.records.len() as i64;
        if acc.first_at.is_none() {
            acc.first_at = Some(created);
        }
        acc.records.push(bench_record(offset, unix_ms, value));
        if acc.records.len() >= self.plan.batch_records && !acc.queued_full {
            acc.queued_full = true;
            self.full.push_back(i);
        }
    }

    /// At full speed: appends records until a request's worth of batches is full, or every
    /// partition has a full batch (a request carries one batch per partition, so with few
    /// partitions the first condition alone would never hold). Returns the records appended.
    fn fill(&mut self, now: Instant, unix_ms: i64) -> u64 {
        let mut appended = 0;
        while self.full.len() < self.accs.len()
            && (self.full.is_empty() || self.full_bytes() < self.plan.max_request_bytes)
        {
            self.append(now, unix_ms);
            appended += 1;
        }
        appended
    }

    /// Payload bytes of the batches in the full queue.
    fn full_bytes(&self) -> usize {
        self.full.len() * self.batch_estimate
    }

    /// Picks the batches of the next request. Like the Java producer, once
    /// any batch is ready (full, lingered long enough, or `flush`) the
    /// request takes every non-empty batch: full ones first, then the
    /// others oldest first, up to `max_request_bytes`.
    fn take_ready(&mut self, now: Instant, flush: bool) -> Vec<usize> {
        let linger = self.plan.linger;
        let any_ready = flush
            || !self.full.is_empty()
            || self.accs.iter().any(|a| {
                a.first_at
                    .is_some_and(|t| now.saturating_duration_since(t) >= linger)
            });
        if !any_ready {
            return Vec::new();
        }
        let mut chosen = Vec::new();
        let mut bytes = 0usize;
        while let Some(i) = self.full.pop_front() {
            chosen.push(i);
            bytes += self.accs[i].records.len() * self.plan.record_bytes;
            if bytes >= self.plan.max_request_bytes {
                return chosen;
            }
        }
        let mut partial: Vec<(Instant, usize)> = self
            .accs
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.queued_full && !a.records.is_empty())
            .filter_map(|(i, a)| a.first_at.map(|t| (t, i)))
            .collect();
        partial.sort_unstable();
        for (_, i) in partial {
            chosen.push(i);
            bytes += self.accs[i].records.len() * self.plan.record_bytes;
            if bytes >= self.plan.max_request_bytes {
                break;
            }
        }
        chosen
    }

    /// Earliest moment a partial batch becomes ready.
    fn next_linger_deadline(&self) -> Option<Instant> {
        self.accs
            .iter()
            .filter_map(|a| a.first_at)
            .min()
            .map(|t| t + self.plan.linger)
    }

    fn is_empty(&self) -> bool {
        self.accs.iter().all(|a| a.records.is_empty())
    }

    /// Encodes the chosen batches into one produce request.
    fn build_request(&mut self, chosen: &[usize]) -> Result<(ProduceRequest, Vec<(i32, u64)>)> {
        let options = RecordEncodeOptions {
            version: 2,
            compression: self.plan.compression,
        };
        let mut data = Vec::with_capacity(chosen.len());
        let mut meta = Vec::with_capacity(chosen.len());
        for &i in chosen {
            let acc = &mut self.accs[i];
            let records = std::mem::take(&mut acc.records);
            acc.first_at = None;
            acc.queued_full = false;
            if records.is_empty() {
                continue;
            }
            let mut buf =
                BytesMut::with_capacity(records.len() * (self.plan.record_bytes + 24) + 64);
            RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
                .context("encoding record batch")?;
            let partition = self.plan.partitions[i];
            let mut p = PartitionProduceData::default();
            p.index = partition;
            p.records = Some(buf.freeze());
            data.push(p);
            meta.push((partition, records.len() as u64));
        }
        let mut topic = TopicProduceData::default();
        topic.name = self.plan.topic.clone();
        topic.partition_data = data;
        let mut req = ProduceRequest::default();
        req.acks = self.plan.acks;
        req.timeout_ms = i32::try_from(self.plan.request_timeout.as_millis()).unwrap_or(i32::MAX);
        req.topic_data = vec![topic];
        Ok((req, meta))
    }
}

async fn run_inner(plan: &ProducerPlan, stats: &Arc<Stats>) -> Result<()> {
    let conn = Connection::connect(&plan.bootstrap, plan.request_timeout).await?;
    let (rd, mut wr, mut correlation_id) = conn.into_split();
    let sem = Arc::new(Semaphore::new(plan.max_in_flight));
    let (tx, rx) = mpsc::unbounded_channel::<InFlight>();
    let reader = if plan.acks != 0 {
        Some(tokio::spawn(ack_reader(
            rd,
            rx,
            plan.clone(),
            Arc::clone(stats),
            Arc::clone(&sem),
        )))
    } else {
        drop(rx);
        None
    };

    let n = plan.partitions.len();
    let mut p = Producer {
        plan,
        accs: (0..n).map(|_| Accumulator::default()).collect(),
        full: VecDeque::new(),
        next_partition: plan.id % n,
        filler: Filler::new(
            0x9e37_79b9_7f4a_7c15 ^ ((plan.id as u64 + 1) << 32),
            plan.record_bytes,
        ),
        batch_estimate: plan.batch_records * plan.record_bytes,
    };
    let mut generated: u64 = 0;
    let per_loop_budget = plan.max_request_bytes / plan.record_bytes + 1;

    let result: Result<()> = async {
        let mut flushing = false;
        loop {
            let now = Instant::now();
            if !flushing && now >= plan.end {
                flushing = true;
            }
            if flushing && p.is_empty() {
                break;
            }
            if !flushing {
                let unix_ms = unix_millis();
                if plan.rate > 0.0 {
                    let elapsed = now.saturating_duration_since(plan.start).as_secs_f64();
                    let due = (elapsed * plan.rate) as u64;
                    let mut budget = per_loop_budget;
                    while generated < due && budget > 0 {
                        let at = plan.start + Duration::from_secs_f64(generated as f64 / plan.rate);
                        p.append(at, unix_ms);
                        generated += 1;
                        budget -= 1;
                    }
                } else {
                    generated += p.fill(now, unix_ms);
                }
            }
            let chosen = p.take_ready(now, flushing);
            if chosen.is_empty() {
                let mut wake = plan.end;
                if plan.rate > 0.0 {
                    let next_due =
                        plan.start + Duration::from_secs_f64((generated + 1) as f64 / plan.rate);
                    wake = wake.min(next_due);
                }
                if let Some(t) = p.next_linger_deadline() {
                    wake = wake.min(t);
                }
                tokio::time::sleep_until(wake.max(now).into()).await;
                continue;
            }
            let permit = if plan.acks != 0 {
                tokio::select! {
                    permit = Arc::clone(&sem).acquire_owned() => match permit {
                        Ok(permit) => Some(permit),
                        // The reader closed the semaphore after a failure.
                        Err(_) => return Err(anyhow!("connection failed")),
                    },
                    _ = tokio::time::sleep_until(plan.hard_stop.into()) => {
                        return Err(anyhow!("no free in-flight slot before the deadline"));
                    }
                }
            } else {
                None
            };
            let (req, batches) = p.build_request(&chosen)?;
            let records: u64 = batches.iter().map(|b| b.1).sum();
            if records == 0 {
                continue;
            }
            let id = correlation_id;
            correlation_id = correlation_id.wrapping_add(1);
            let frame = encode_request(id, plan.version, &req)?;
            let sent_at = Instant::now();
            tokio::time::timeout(plan.request_timeout, wr.write_all(&frame))
                .await
                .map_err(|_| anyhow!("timed out writing a produce request"))?
                .context("writing produce request")?;
            add(&stats.sent_records, records);
            add(&stats.sent_requests, 1);
            let measured = sent_at >= plan.warmup_end;
            if measured {
                add(&stats.measured_sent_records, records);
            }
            if plan.acks == 0 {
                // No response will come: count the records as acknowledged.
                add(&stats.acked_records, records);
                if measured {
                    add(&stats.measured_acked_records, records);
                    add(
                        &stats.measured_acked_bytes,
                        records * plan.record_bytes as u64,
                    );
                }
            } else if tx
                .send(InFlight {
                    correlation_id: id,
                    sent_at,
                    batches,
                    records,
                    _permit: permit,
                })
                .is_err()
            {
                return Err(anyhow!("response reader stopped"));
            }
        }
        Ok(())
    }
    .await;

    // Records that were created but never sent.
    let unsent: usize = p.accs.iter().map(|a| a.records.len()).sum();
    if unsent > 0 {
        stats.client_error("records created but not sent (run stopped)");
        add(&stats.unsent_records, unsent as u64);
    }
    drop(tx);
    if let Some(reader) = reader {
        let abort = reader.abort_handle();
        if tokio::time::timeout_at(plan.hard_stop.into(), reader)
            .await
            .is_err()
        {
            // What is still in flight is reported as unanswered.
            abort.abort();
            stats.client_error("produce acks still outstanding at the deadline");
        }
    }
    let _ = wr.shutdown().await;
    result
}

/// Reads produce responses in order and accounts for them.
async fn ack_reader(
    mut rd: OwnedReadHalf,
    mut rx: mpsc::UnboundedReceiver<InFlight>,
    plan: ProducerPlan,
    stats: Arc<Stats>,
    sem: Arc<Semaphore>,
) {
    while let Some(inf) = rx.recv().await {
        match handle_response(&mut rd, &inf, &plan, &stats).await {
            Ok(()) => {}
            Err(e) => {
                stats.client_error(format!("produce response: {e:#}"));
                add(&stats.failed_records, inf.records);
                // Stop the writer and fail whatever is still queued.
                sem.close();
                rx.close();
                while let Ok(rest) = rx.try_recv() {
                    add(&stats.failed_records, rest.records);
                }
                return;
            }
        }
    }
}

async fn handle_response(
    rd: &mut OwnedReadHalf,
    inf: &InFlight,
    plan: &ProducerPlan,
    stats: &Stats,
) -> Result<()> {
    let frame = tokio::time::timeout(plan.request_timeout, read_frame(rd))
        .await
        .map_err(|_| anyhow!("no response within {:?}", plan.request_timeout))??;
    let received = Instant::now();
    let (got, resp) = decode_response::<ProduceRequest>(frame, plan.version)?;
    if got != inf.correlation_id {
        return Err(anyhow!(
            "correlation id mismatch: expected {}, got {got}",
            inf.correlation_id
        ));
    }
    let measured = inf.sent_at >= plan.warmup_end;
    if measured {
        let us = received.saturating_duration_since(inf.sent_at).as_micros();
        record_us(
            &mut stats.produce_latency.lock(),
            u64::try_from(us).unwrap_or(u64::MAX),
        );
    }
    let mut pending: HashMap<i32, u64> = inf.batches.iter().copied().collect();
    for topic in &resp.responses {
        for pr in &topic.partition_responses {
            let Some(n) = pending.remove(&pr.index) else {
                stats.client_error("produce response for a partition not sent");
                continue;
            };
            if pr.error_code == 0 {
                add(&stats.acked_records, n);
                if measured {
                    add(&stats.measured_acked_records, n);
                    add(&stats.measured_acked_bytes, n * plan.record_bytes as u64);
                }
            } else {
                stats.kafka_error("Produce", pr.error_code);
                add(&stats.failed_records, n);
            }
        }
    }
    for (_, n) in pending {
        stats.client_error("produce response missing a partition");
        add(&stats.failed_records, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::RecordBatchDecoder;

    fn plan(partitions: usize) -> ProducerPlan {
        let now = Instant::now();
        ProducerPlan {
            id: 0,
            bootstrap: String::new(),
            topic: TopicName(StrBytes::from_static_str("t")),
            partitions: Arc::new((0..partitions as i32).collect()),
            record_bytes: 1024,
            batch_records: 64,
            linger: Duration::from_millis(5),
            rate: 0.0,
            acks: -1,
            max_in_flight: 5,
            max_request_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
            compression: Compression::None,
            version: 9,
            clock: Clock::new(),
            start: now,
            warmup_end: now,
            end: now,
            hard_stop: now,
        }
    }

    fn producer(plan: &ProducerPlan) -> Producer<'_> {
        Producer {
            plan,
            accs: (0..plan.partitions.len())
                .map(|_| Accumulator::default())
                .collect(),
            full: VecDeque::new(),
            next_partition: 0,
            filler: Filler::new(7, plan.record_bytes),
            batch_estimate: plan.batch_records * plan.record_bytes,
        }
    }

    #[test]
    fn full_speed_fills_one_request_whatever_the_partition_count() {
        // One partition: one full batch (it used to append forever).
        let one = plan(1);
        let mut p = producer(&one);
        assert_eq!(p.fill(Instant::now(), 0), 64);
        assert_eq!(p.take_ready(Instant::now(), false), vec![0]);
        // Many partitions: stops at a request's worth (16 full batches of 64 KiB).
        let many = plan(100);
        let mut p = producer(&many);
        let n = p.fill(Instant::now(), 0);
        assert!(p.full_bytes() >= many.max_request_bytes, "{n} records");
        assert!(n <= 100 * 64, "{n} records");
    }

    #[test]
    fn records_encode_into_one_non_idempotent_batch() {
        let mut filler = Filler::new(42, 100);
        let records: Vec<Record> = (0..16)
            .map(|i| bench_record(i, 1_700_000_000_000, filler.value(1234 + i as u64, 100)))
            .collect();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, records.iter(), &options).unwrap();
        let mut bytes = buf.freeze();
        let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].record_count, 16);
        assert_eq!(info[0].base_sequence, -1);
        assert_eq!(info[0].producer_id, -1);
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        let v = set.records[3].value.as_ref().unwrap();
        assert_eq!(v.len(), 100);
        assert_eq!(u64::from_be_bytes(v[..8].try_into().unwrap()), 1237);
        assert!(v[8..].iter().all(|b| (0x60..=0x6f).contains(b)));
    }
}
