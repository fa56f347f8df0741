//! `inkless cluster drain --node N`: marks a node draining through any node's admin
//! endpoint (ADR 0021), then waits until the node runs no partition and no group
//! coordinator. `--cancel` takes the mark off; placement then gives the node its share
//! again.

use super::OpsError;
use std::time::{Duration, Instant};

/// `inkless cluster drain` arguments.
#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    /// Admin endpoint (host:port) of any node.
    #[arg(long, default_value = "127.0.0.1:9644")]
    admin: String,
    /// The node to drain.
    #[arg(long)]
    node: i32,
    /// Take the drain mark off instead: the node takes partitions and groups again.
    #[arg(long)]
    cancel: bool,
    /// Return once the mark is stored, without waiting for the node to be empty.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the node to be empty.
    #[arg(long, default_value_t = 120_000)]
    timeout_ms: u64,
}

/// Actor kinds a drained node must not run.
const MOVED_KINDS: [&str; 2] = ["partition", "group"];

/// Runs `inkless cluster drain`.
pub async fn run_drain(args: DrainArgs) -> Result<(), OpsError> {
    let path = format!("/cluster/drain/{}", args.node);
    let method = if args.cancel {
        reqwest::Method::DELETE
    } else {
        reqwest::Method::POST
    };
    let answer = crate::admin::http_call(method, &args.admin, &path)
        .await
        .map_err(|e| OpsError::Admin(e.to_string()))?;
    let answer: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| OpsError::Admin(format!("{path}: {e}")))?;
    let changed = answer["changed"].as_bool().unwrap_or(false);
    if args.cancel {
        println!(
            "Node {} is no longer draining{}.",
            args.node,
            if changed { "" } else { " (it was not)" }
        );
        return Ok(());
    }
    println!(
        "Node {} is draining{}.",
        args.node,
        if changed { "" } else { " (it already was)" }
    );
    if args.no_wait {
        return Ok(());
    }
    wait_empty(&args).await
}

/// Polls the cluster's actor trees until the node runs none of [`MOVED_KINDS`].
async fn wait_empty(args: &DrainArgs) -> Result<(), OpsError> {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(args.timeout_ms);
    let mut last = None;
    loop {
        let left = remaining(&args.admin, args.node).await?;
        if left.values().all(|n| *n == 0) {
            println!(
                "Node {} is drained: it runs no partitions and no group coordinators ({:.1} s).",
                args.node,
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if last.as_ref() != Some(&left) {
            println!("  still on node {}: {}", args.node, summary(&left));
            last = Some(left.clone());
        }
        if Instant::now() >= deadline {
            return Err(OpsError::Timeout(format!(
                "node {} still runs {} after {} ms",
                args.node,
                summary(&left),
                args.timeout_ms
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How many actors of each moved kind the node runs, from `/cluster/actors`. A node that
/// is not live runs nothing.
async fn remaining(
    admin: &str,
    node: i32,
) -> Result<std::collections::BTreeMap<&'static str, usize>, OpsError> {
    let body = crate::admin::http_get(admin, "/cluster/actors")
        .await
        .map_err(|e| OpsError::Admin(e.to_string()))?;
    let trees: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| OpsError::Admin(format!("/cluster/actors: {e}")))?;
    let entry = &trees[node.to_string()];
    if entry.get("error").is_some() {
        // The node is live but its admin endpoint did not answer: ask again.
        return Ok([("unanswered /actors", 1)].into_iter().collect());
    }
    let actors = entry.as_array().cloned().unwrap_or_default();
    Ok(MOVED_KINDS
        .iter()
        .map(|k| (*k, actors.iter().filter(|a| a["kind"] == *k).count()))
        .collect())
}

fn summary(left: &std::collections::BTreeMap<&'static str, usize>) -> String {
    left.iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
