//! Orchestrates one benchmark run: setup, consumers positioned at the end
//! of every partition, producers for warm-up plus the measured window, the
//! drain, the CPU and metrics samples around the window, and the report.
//!
//! Every phase is bounded: setup by fixed timeouts, the run by
//! `warmup + duration + drain` (the hard stop) plus a short grace period
//! after which remaining tasks are aborted and a partial report is printed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::Args;
use super::conn::Connection;
use super::consumer::{Consumer, ConsumerPlan};
use super::procstat;
use super::producer::{self, ProducerPlan};
use super::prom;
use super::report::{CounterDelta, IdleMemory, LatencySummary, Report};
use super::setup::{ensure_topic, Versions};
use super::stats::{get, Clock, Stats};

/// Timeout of the setup steps (connect, topic creation, consumer positioning).
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Time after the hard stop before tasks are aborted.
const ABORT_GRACE: Duration = Duration::from_secs(3);
/// Timeout of one metrics scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resource usage sampled at the window's start and end.
#[derive(Default)]
struct Sample {
    broker_cpu: Option<Result<f64>>,
    bench_cpu: Option<f64>,
    metrics: Option<Result<BTreeMap<String, f64>>>,
}

async fn sample(args: &Args) -> Sample {
    let broker_cpu = args
        .broker_pid
        .map(|pid| procstat::cpu_seconds(&pid.to_string()));
    let bench_cpu = procstat::cpu_seconds("self").ok();
    let metrics = match &args.metrics_url {
        Some(url) => Some(
            prom::http_get(url, SCRAPE_TIMEOUT)
                .await
                .map(|text| prom::counters(&text, "object_store")),
        ),
        None => None,
    };
    Sample {
        broker_cpu,
        bench_cpu,
        metrics,
    }
}

/// Runs the benchmark described by `args` and returns its report.
pub async fn run(args: Args) -> Result<Report> {
    args.validate()?;
    let request_timeout = args.request_timeout();

    // --- setup ---
    let mut admin = Connection::connect(&args.bootstrap, SETUP_TIMEOUT)
        .await
        .context("connecting to the bootstrap broker")?;
    let mut versions = Versions::negotiate(&admin.versions)?;
    let rss_before_topic = broker_rss(&args);
    let topic = ensure_topic(
        &mut admin,
        &versions,
        &args.topic,
        args.partitions,
        args.replication_factor,
        SETUP_TIMEOUT,
    )
    .await?;
    drop(admin);
    if topic.id.is_nil() && versions.fetch >= 13 {
        // Fetch v13+ addresses topics by id only.
        versions.fetch = 12;
    }
    if topic.brokers > 1 {
        eprintln!(
            "warning: {} brokers in the cluster; every request goes to {}",
            topic.brokers, args.bootstrap
        );
    }
    if i32::try_from(topic.partitions.len()).ok() != Some(args.partitions) {
        eprintln!(
            "note: topic {} has {} partitions (not {})",
            args.topic,
            topic.partitions.len(),
            args.partitions
        );
    }
    eprintln!(
        "topic {} ({} partitions{}), produce v{} fetch v{} metadata v{} list_offsets v{}",
        args.topic,
        topic.partitions.len(),
        if topic.created { ", created" } else { "" },
        versions.produce,
        versions.fetch,
        versions.metadata,
        versions.list_offsets
    );

    let clock = Clock::new();
    let stats = Arc::new(Stats::new());
    let partitions = Arc::new(topic.partitions.clone());
    let drain = Duration::from_secs(args.drain_secs);

    // --- consumers: connect and position before anything is produced ---
    let n_consumers = args.consumers.min(partitions.len());
    let mut prepared = Vec::with_capacity(n_consumers);
    {
        let mut handles = Vec::with_capacity(n_consumers);
        for id in 0..n_consumers {
            let plan = ConsumerPlan {
                id,
                bootstrap: args.bootstrap.clone(),
                topic: topic.name.clone(),
                topic_id: topic.id,
                partitions: partitions
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % n_consumers == id)
                    .map(|(_, &p)| p)
                    .collect(),
                versions,
                max_wait_ms: args.fetch_max_wait_ms,
                min_bytes: args.fetch_min_bytes,
                partition_max_bytes: args.fetch_partition_max_bytes,
                request_timeout,
                clock,
                drain,
            };
            handles.push(tokio::spawn(Consumer::prepare(plan)));
        }
        for h in handles {
            let c = tokio::time::timeout(SETUP_TIMEOUT, h)
                .await
                .map_err(|_| anyhow!("consumer setup timed out"))?
                .map_err(|e| anyhow!("consumer setup task failed: {e}"))?
                .context("consumer setup")?;
            prepared.push(c);
        }
    }

    // Every partition has answered ListOffsets and nothing is produced yet: what the
    // broker holds now is the cost of idle partitions.
    let idle_memory = match (rss_before_topic, broker_rss(&args)) {
        (Some(before), Some(after)) if topic.created => Some(IdleMemory {
            rss_before_topic: before,
            rss_with_topic: after,
            partitions: partitions.len(),
        }),
        _ => None,
    };

    // --- the run ---
    let start = Instant::now();
    let warmup_end = start + Duration::from_secs(args.warmup_secs);
    let end = warmup_end + Duration::from_secs(args.duration_secs);
    let hard_stop = end + drain;
    let abort_at = hard_stop + ABORT_GRACE;
    let warmup_end_nanos = clock.nanos_at(warmup_end);

    let (done_tx, done_rx) = watch::channel(false);
    let mut consumer_tasks: Vec<JoinHandle<()>> = prepared
        .into_iter()
        .map(|c| {
            tokio::spawn(c.run(
                Arc::clone(&stats),
                warmup_end_nanos,
                done_rx.clone(),
                hard_stop,
            ))
        })
        .collect();

    let sampler = {
        let args = args.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(warmup_end.into()).await;
            let before = sample(&args).await;
            tokio::time::sleep_until(end.into()).await;
            let after = sample(&args).await;
            (before, after)
        })
    };

    let per_producer_rate = args.rate / args.producers as f64;
    let mut producer_tasks: Vec<JoinHandle<()>> = (0..args.producers)
        .map(|id| {
            let plan = ProducerPlan {
                id,
                bootstrap: args.bootstrap.clone(),
                topic: topic.name.clone(),
                partitions: Arc::clone(&partitions),
                record_bytes: args.record_bytes,
                batch_records: args.batch_records,
                linger: Duration::from_millis(args.linger_ms),
                rate: per_producer_rate,
                acks: args.acks,
                max_in_flight: args.max_in_flight,
                max_request_bytes: args.max_request_bytes,
                request_timeout,
                compression: args.compression.codec(),
                version: versions.produce,
                clock,
                start,
                warmup_end,
                end,
                hard_stop,
            };
            tokio::spawn(producer::run(plan, Arc::clone(&stats)))
        })
        .collect();

    let progress = (args.progress_secs > 0).then(|| {
        let stats = Arc::clone(&stats);
        let every = Duration::from_secs(args.progress_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at((start + every).into(), every);
            let (mut last_acked, mut last_consumed) = (0u64, 0u64);
            loop {
                tick.tick().await;
                let acked = get(&stats.acked_records);
                let consumed = get(&stats.consumed_records);
                eprintln!(
                    "[{:>5.1}s] sent {} acked {} ({:.0}/s) consumed {} ({:.0}/s) failed {}",
                    start.elapsed().as_secs_f64(),
                    get(&stats.sent_records),
                    acked,
                    (acked - last_acked) as f64 / every.as_secs_f64(),
                    consumed,
                    (consumed - last_consumed) as f64 / every.as_secs_f64(),
                    get(&stats.failed_records),
                );
                last_acked = acked;
                last_consumed = consumed;
            }
        })
    });

    let mut finished = true;
    finished &= join_until(&mut producer_tasks, abort_at).await;
    if args.acks == 0 {
        // Nothing tells when the broker has appended unacknowledged records.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = done_tx.send(true);
    finished &= join_until(&mut consumer_tasks, abort_at).await;
    if let Some(p) = progress {
        p.abort();
    }
    let (before, after) =
        match tokio::time::timeout_at((abort_at + SCRAPE_TIMEOUT).into(), sampler).await {
            Ok(Ok(x)) => x,
            _ => (Sample::default(), Sample::default()),
        };

    // --- report ---
    let mut r = Report {
        window_secs: end.saturating_duration_since(warmup_end).as_secs_f64(),
        records_sent: get(&stats.sent_records),
        records_acked: get(&stats.acked_records),
        records_failed: get(&stats.failed_records),
        records_unsent: get(&stats.unsent_records),
        records_consumed: get(&stats.consumed_records),
        fetch_requests: get(&stats.fetch_requests),
        produce_requests: get(&stats.sent_requests),
        measured_sent: get(&stats.measured_sent_records),
        measured_acked: get(&stats.measured_acked_records),
        measured_acked_bytes: get(&stats.measured_acked_bytes),
        measured_consumed: get(&stats.measured_consumed_records),
        produce_latency: LatencySummary::from_histogram(&stats.produce_latency.lock()),
        e2e_latency: LatencySummary::from_histogram(&stats.e2e_latency.lock()),
        kafka_errors: stats.kafka_errors.lock().clone(),
        client_errors: stats.client_errors.lock().clone(),
        consumers_enabled: n_consumers > 0,
        idle_memory,
        finished,
        ..Report::default()
    };
    r.workload = BTreeMap::from([
        ("bootstrap", json!(args.bootstrap)),
        ("topic", json!(args.topic)),
        ("partitions", json!(partitions.len())),
        ("producers", json!(args.producers)),
        ("consumers", json!(n_consumers)),
        ("record_bytes", json!(args.record_bytes)),
        ("batch_records", json!(args.batch_records)),
        ("linger_ms", json!(args.linger_ms)),
        ("acks", json!(args.acks)),
        ("max_in_flight", json!(args.max_in_flight)),
        ("compression", json!(args.compression.name())),
        ("fetch_min_bytes", json!(args.fetch_min_bytes)),
        ("fetch_max_wait_ms", json!(args.fetch_max_wait_ms)),
        (
            "rate",
            if args.rate > 0.0 {
                json!(args.rate)
            } else {
                json!("max")
            },
        ),
        ("duration_secs", json!(args.duration_secs)),
        ("warmup_secs", json!(args.warmup_secs)),
    ]);
    r.versions = BTreeMap::from([
        ("produce", versions.produce),
        ("fetch", versions.fetch),
        ("metadata", versions.metadata),
        ("list_offsets", versions.list_offsets),
    ]);
    match (before.broker_cpu, after.broker_cpu) {
        (Some(Ok(b)), Some(Ok(a))) => r.broker_cpu_secs = Some(a - b),
        (Some(Err(e)), _) | (_, Some(Err(e))) => r.broker_cpu_error = Some(format!("{e:#}")),
        (Some(_), None) | (None, Some(_)) => {
            r.broker_cpu_error = Some("sample missing (run cut short)".into())
        }
        (None, None) if args.broker_pid.is_some() => {
            r.broker_cpu_error = Some("sample missing (run cut short)".into())
        }
        (None, None) => {}
    }
    if let (Some(b), Some(a)) = (before.bench_cpu, after.bench_cpu) {
        r.bench_cpu_secs = Some(a - b);
    }
    match (before.metrics, after.metrics) {
        (Some(Ok(b)), Some(Ok(a))) => {
            r.object_store = Some(
                a.iter()
                    .map(|(series, after)| CounterDelta {
                        series: series.clone(),
                        delta: after - b.get(series).copied().unwrap_or(0.0),
                    })
                    .collect(),
            )
        }
        (Some(Err(e)), _) | (_, Some(Err(e))) => r.metrics_error = Some(format!("{e:#}")),
        _ if args.metrics_url.is_some() => {
            r.metrics_error = Some("scrape missing (run cut short)".into())
        }
        _ => {}
    }
    Ok(r)
}

/// The broker's resident memory, when its pid is known and readable.
fn broker_rss(args: &Args) -> Option<u64> {
    let pid = args.broker_pid?;
    match procstat::rss_bytes(&pid.to_string()) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            eprintln!("warning: broker memory unavailable: {e:#}");
            None
        }
    }
}

/// Awaits the tasks until `deadline`, aborting the ones still running then.
/// Returns false if any had to be aborted.
async fn join_until(tasks: &mut Vec<JoinHandle<()>>, deadline: Instant) -> bool {
    let mut all = true;
    for t in tasks.drain(..) {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(deadline.into(), t).await {
            Ok(_) => {}
            Err(_) => {
                abort.abort();
                all = false;
            }
        }
    }
    all
}
