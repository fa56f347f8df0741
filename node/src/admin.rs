//! The admin HTTP endpoint (`admin.listen`): `GET /metrics` in Prometheus text format,
//! `GET /actors` (the node's live supervision tree as JSON: id, parent, kind, name, status,
//! restarts, mailbox length), `GET /cluster` (every lease row in the metadata store, with its AZ, addresses
//! and age, and the live set this node acts on), `GET /cluster/actors` (the supervision tree
//! of every live node, fetched from their admin endpoints) and `GET /health`. A deliberately small HTTP/1.1 responder: one request per connection,
//! request head capped at 8 KiB.

use crate::handlers::Ctx;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Serves admin requests until the task is dropped.
pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &ctx).await {
                        tracing::debug!(error = %e, "admin request failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, ctx: &Ctx) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow request"))??;
        if n == 0 || head.len() + n > MAX_HEAD_BYTES {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    const TEXT: &str = "text/plain; version=0.0.4";
    let (status, content_type, body) = match path {
        "/metrics" => ("200 OK", TEXT, metrics(ctx)),
        "/health" => ("200 OK", TEXT, "ok\n".to_string()),
        "/actors" => match serde_json::to_string_pretty(&actor_tree(ctx)) {
            Ok(json) => ("200 OK", "application/json", json),
            Err(e) => ("500 Internal Server Error", TEXT, format!("{e}\n")),
        },
        "/cluster" => match cluster(ctx).await {
            Ok(json) => ("200 OK", "application/json", json),
            Err(e) => ("503 Service Unavailable", TEXT, format!("{e}\n")),
        },
        "/cluster/actors" => ("200 OK", "application/json", cluster_actors(ctx).await),
        _ => ("404 Not Found", TEXT, "not found\n".to_string()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

/// What `/cluster` answers.
#[derive(serde::Serialize)]
struct ClusterView {
    /// The node that answered.
    node_id: i32,
    /// Whether it counts itself live (its lease is current).
    me_live: bool,
    /// Node ids of the live set it places actors by.
    live: Vec<i32>,
    /// Every lease row in the metadata store.
    nodes: Vec<inkless_storage::metadata::NodeStatus>,
}

async fn cluster(ctx: &Ctx) -> Result<String, String> {
    let live = ctx.node.live();
    let nodes = ctx.node.store().nodes().await.map_err(|e| e.to_string())?;
    let view = ClusterView {
        node_id: live.me,
        me_live: live.me_live,
        live: live.nodes.iter().map(|n| n.node_id).collect(),
        nodes,
    };
    serde_json::to_string_pretty(&view).map_err(|e| e.to_string())
}

/// This node's actors, partitions with the name of their topic (`topic`) when the catalog
/// knows it.
fn actor_tree(ctx: &Ctx) -> Vec<serde_json::Value> {
    ctx.node
        .actor_tree()
        .into_iter()
        .map(|a| {
            let topic = (a.kind == "partition")
                .then(|| a.name.split('/').nth(1)?.parse::<uuid::Uuid>().ok())
                .flatten()
                .and_then(|id| ctx.catalog.by_id(&id))
                .map(|t| t.record.name.clone());
            let mut v = serde_json::to_value(a).unwrap_or_default();
            if let (Some(topic), Some(o)) = (topic, v.as_object_mut()) {
                o.insert("topic".into(), topic.into());
            }
            v
        })
        .collect()
}

/// Every live node's `/actors`, by node id; a node that does not answer gets its error.
async fn cluster_actors(ctx: &Ctx) -> String {
    let live = ctx.node.live();
    let mut trees = serde_json::Map::new();
    for n in &live.nodes {
        let value = if n.node_id == live.me {
            serde_json::Value::Array(actor_tree(ctx))
        } else if n.admin_addr.is_empty() {
            serde_json::json!({"error": "no admin endpoint"})
        } else {
            match http_get(&n.admin_addr, "/actors").await {
                Ok(body) => serde_json::from_str(&body)
                    .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            }
        };
        trees.insert(n.node_id.to_string(), value);
    }
    serde_json::Value::Object(trees).to_string()
}

/// A plain HTTP/1.1 GET of another node's admin endpoint; the body.
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let io = async {
        let mut stream = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        if !head.starts_with("HTTP/1.1 200") {
            let status = head.lines().next().unwrap_or("no status line");
            return Err(std::io::Error::other(format!("{addr}{path}: {status}")));
        }
        Ok(body.to_string())
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), io)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{addr}{path}")))?
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Counters of retention and object deletion.
fn lifecycle_metrics(ctx: &Ctx, out: &mut String) {
    let l = ctx.node.lifecycle_stats();
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    counter(
        out,
        "inkless_retention_passes_total",
        "Retention passes over the partitions owned here.",
        n(&l.retention_passes),
    );
    counter(
        out,
        "inkless_retention_log_start_advances_total",
        "Times retention raised a partition's log start offset.",
        n(&l.log_start_advances),
    );
    counter(
        out,
        "inkless_collector_objects_deleted_total",
        "Objects deleted after their last live byte was retired.",
        n(&l.objects_deleted),
    );
    counter(
        out,
        "inkless_collector_orphans_deleted_total",
        "Orphaned objects (uploaded, never committed) deleted.",
        n(&l.orphans_deleted),
    );
    counter(
        out,
        "inkless_collector_delete_errors_total",
        "Object deletions that failed (retried by a later orphan sweep).",
        n(&l.delete_errors),
    );
    counter(
        out,
        "inkless_merger_merges_total",
        "Runs of batches merged into a new object.",
        n(&l.merges),
    );
    counter(
        out,
        "inkless_merger_written_bytes_total",
        "Bytes written by merging.",
        n(&l.merged_bytes),
    );
    counter(
        out,
        "inkless_merger_replaced_rows_total",
        "Batch rows replaced by merging.",
        n(&l.merged_rows),
    );
    counter(
        out,
        "inkless_merger_conflicts_total",
        "Merges refused because their rows changed or the partition moved.",
        n(&l.merge_conflicts),
    );
    counter(
        out,
        "inkless_compactor_compactions_total",
        "Runs of compacted topics rewritten by key compaction.",
        n(&l.compactions),
    );
    counter(
        out,
        "inkless_compactor_read_bytes_total",
        "Bytes of the runs key compaction rewrote.",
        n(&l.compacted_bytes_read),
    );
    counter(
        out,
        "inkless_compactor_written_bytes_total",
        "Bytes written by key compaction.",
        n(&l.compacted_bytes_written),
    );
    counter(
        out,
        "inkless_compactor_removed_records_total",
        "Records removed by key compaction.",
        n(&l.compacted_records_removed),
    );
    counter(
        out,
        "inkless_compactor_conflicts_total",
        "Compactions refused because their rows changed or the partition moved.",
        n(&l.compaction_conflicts),
    );
    if let Some(o) = *l.objects.lock() {
        gauge(
            out,
            "inkless_metadata_batch_rows",
            "Batch rows in the metadata store (as the object collector last counted).",
            o.batches,
        );
        gauge(
            out,
            "inkless_metadata_live_objects",
            "Objects holding live bytes.",
            o.live_objects,
        );
        gauge(
            out,
            "inkless_metadata_live_object_bytes",
            "Bytes of the objects holding live bytes.",
            o.live_object_bytes,
        );
        gauge(
            out,
            "inkless_metadata_live_bytes",
            "Bytes referenced by batch rows.",
            o.live_bytes,
        );
        gauge(
            out,
            "inkless_metadata_dead_objects",
            "Objects without live bytes, waiting for their grace period.",
            o.dead_objects,
        );
        gauge(
            out,
            "inkless_metadata_deleted_objects",
            "Objects marked deleted, remembered for an hour.",
            o.deleted_objects,
        );
    }
    counter(
        out,
        "inkless_collector_orphan_sweeps_total",
        "Listings of the object store for orphans completed.",
        n(&l.orphan_sweeps),
    );
    counter(
        out,
        "inkless_producers_expired_total",
        "Idle producer-state rows deleted (producer.id.expiration.ms).",
        n(&l.producers_expired),
    );
}

/// The metrics page.
pub fn metrics(ctx: &Ctx) -> String {
    let m = ctx.node.blob().metrics();
    let mut out = String::new();
    counter(
        &mut out,
        "inkless_object_store_put_requests_total",
        "Successful object PUT requests.",
        m.put_requests.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "inkless_object_store_put_bytes_total",
        "Bytes written by object PUTs.",
        m.put_bytes.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "inkless_object_store_get_requests_total",
        "Successful ranged object GET requests.",
        m.get_requests.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "inkless_object_store_get_bytes_total",
        "Bytes read by object GETs.",
        m.get_bytes.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "inkless_object_store_errors_total",
        "Failed object-store requests.",
        m.errors.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "inkless_object_store_deleted_objects_total",
        "Objects deleted from the object store.",
        m.deleted_objects.load(Ordering::Relaxed),
    );
    lifecycle_metrics(ctx, &mut out);
    gauge(
        &mut out,
        "inkless_partitions",
        "Partition actors running on this node.",
        ctx.node.running_partitions() as u64,
    );
    gauge(
        &mut out,
        "inkless_cluster_live_nodes",
        "Nodes in the live set this node places actors by.",
        ctx.node.live().nodes.len() as u64,
    );
    gauge(
        &mut out,
        "inkless_topics",
        "Topics known to this node.",
        ctx.catalog.all().len() as u64,
    );
    let budget = ctx.config.produce_budget_permits() as usize;
    let in_flight = budget.saturating_sub(ctx.produce_budget.available_permits());
    ctx.requests.render(&mut out);
    gauge(
        &mut out,
        "inkless_produce_bytes_in_flight",
        "Produce bytes accepted and not yet answered.",
        in_flight as u64,
    );
    fetch_session_metrics(ctx, &mut out);
    out
}

/// Kafka's FetchSessionCache metrics, under Prometheus names.
fn fetch_session_metrics(ctx: &Ctx, out: &mut String) {
    let s = &ctx.fetch_sessions;
    gauge(
        out,
        "inkless_fetch_sessions",
        "Incremental fetch sessions cached on this node.",
        s.len() as u64,
    );
    gauge(
        out,
        "inkless_fetch_session_partitions",
        "Partitions of all cached fetch sessions.",
        s.partitions() as u64,
    );
    counter(
        out,
        "inkless_fetch_session_evictions_total",
        "Fetch sessions evicted to make room for new ones.",
        s.evictions(),
    );
    counter(
        out,
        "inkless_fetch_incremental_requests_total",
        "Fetch requests answered within an incremental fetch session.",
        s.incremental_fetches(),
    );
}
