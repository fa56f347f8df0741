//! Cluster mode: keeps this node's actors placed as the live set and the topics change,
//! and `inkless cluster status`, the operator's view of a running cluster.
//!
//! On every live-set change, and every `topic_refresh_interval_ms` (to see topics created,
//! grown or deleted through other nodes), the node re-reads the topic catalog and asks its
//! managers to run exactly what placement gives it ([`Node::place`]).

use crate::catalog::Catalog;
use inkless_actors::{Node, StartError, TopicPartition};
use std::time::Duration;

/// Time between placements when neither the live set nor the topics changed: what those
/// catch up with (a claim whose answer was lost, a stray holding in the store) is rare, and
/// placing costs every partition times every node in hashes.
const IDLE_PLACEMENT_INTERVAL: Duration = Duration::from_secs(30);

/// Runs until the node stops: places on every live-set change, when a refresh finds the
/// topics' partitions changed, and every [`IDLE_PLACEMENT_INTERVAL`] otherwise.
pub async fn follow_placement(node: Node, catalog: Catalog, refresh: Duration) {
    let mut live = node.live_changes();
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut placed: Option<(Vec<(uuid::Uuid, i32)>, tokio::time::Instant)> = None;
    loop {
        let live_changed = tokio::select! {
            changed = live.changed() => if changed.is_err() { return } else { true },
            _ = tick.tick() => false,
            _ = node.stopped() => return,
        };
        if let Err(e) = catalog.refresh().await {
            tracing::warn!(error = %e, "could not re-read topics; placing with the ones known");
        }
        if let Err(e) = catalog.refresh_epochs().await {
            tracing::debug!(error = %e, "could not re-read leader epochs");
        }
        let layout = catalog.layout();
        let due = match &placed {
            Some((last, at)) => {
                live_changed || *last != layout || at.elapsed() >= IDLE_PLACEMENT_INTERVAL
            }
            None => true,
        };
        if !due {
            continue;
        }
        placed = Some((layout, tokio::time::Instant::now()));
        let failed = node.place(catalog.partitions()).await;
        log_not_started(&failed);
    }
}

/// Logs the owned partitions a placement could not start (the partition manager retries
/// them): a warning if any failed for another reason than a previous owner that has not
/// released it yet, which is the normal course of a hand-off.
fn log_not_started(failed: &[(TopicPartition, StartError)]) {
    let Some(first) = failed.first() else {
        return;
    };
    let unexpected = failed
        .iter()
        .find(|(_, e)| !matches!(e, StartError::OwnedElsewhere { .. }));
    match unexpected {
        Some((tp, error)) => tracing::warn!(
            failed = failed.len(),
            ?tp,
            %error,
            "partitions failed to start; retrying"
        ),
        None => tracing::debug!(
            waiting = failed.len(),
            first = ?first.0,
            "partitions not released by their previous owner yet; retrying"
        ),
    }
}

/// `inkless cluster status`: asks one node's admin endpoint for the lease rows and every
/// live node's actor tree, and prints them.
pub async fn print_status(admin: &str, all_actors: bool, json: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let cluster: serde_json::Value = serde_json::from_str(
        &crate::admin::http_get(admin, "/cluster")
            .await
            .with_context(|| format!("asking {admin} for /cluster"))?,
    )?;
    let trees: serde_json::Value = serde_json::from_str(
        &crate::admin::http_get(admin, "/cluster/actors")
            .await
            .with_context(|| format!("asking {admin} for /cluster/actors"))?,
    )?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"cluster": cluster, "actors": trees})
            )?
        );
        return Ok(());
    }
    println!(
        "asked node {} (live set: {})",
        cluster["node_id"], cluster["live"]
    );
    if cluster["draining"]
        .as_array()
        .is_some_and(|d| !d.is_empty())
    {
        println!("draining (inkless cluster drain): {}", cluster["draining"]);
    }
    println!(
        "{:>5}  {:<8} {:<22} {:<22} {:>11} {:>11}  {:<5} actors",
        "node", "az", "kafka", "admin", "renewed", "expires in", "live"
    );
    let empty = Vec::new();
    for n in cluster["nodes"].as_array().unwrap_or(&empty) {
        let lease = &n["lease"];
        let id = lease["node_id"].to_string();
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for a in trees[&id].as_array().unwrap_or(&empty) {
            *kinds
                .entry(a["kind"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        let summary = if kinds.is_empty() {
            trees[&id]["error"].as_str().unwrap_or("-").to_string()
        } else {
            kinds
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "{:>5}  {:<8} {:<22} {:<22} {:>9}ms {:>9}ms  {:<5} {}",
            id,
            lease["az"].as_str().unwrap_or(""),
            lease["kafka_addr"].as_str().unwrap_or(""),
            lease["admin_addr"].as_str().unwrap_or(""),
            n["renewed_ago_ms"],
            n["expires_in_ms"],
            n["expires_in_ms"].as_i64().unwrap_or(0) > 0,
            summary
        );
    }
    if all_actors {
        for (id, tree) in trees.as_object().into_iter().flatten() {
            println!("\nnode {id}:");
            for a in tree.as_array().unwrap_or(&empty) {
                println!(
                    "  {:<18} {:<48} {:<10} restarts={} mailbox={} parent={}",
                    a["kind"].as_str().unwrap_or(""),
                    a["name"].as_str().unwrap_or(""),
                    a["status"].as_str().unwrap_or(""),
                    a["restarts"],
                    a["mailbox"],
                    a["parent"].as_str().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}
