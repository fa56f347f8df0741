//! Cluster mode: keeps this node's actors placed as the live set and the topics change.
//!
//! On every live-set change, and every `topic_refresh_interval_ms` (to see topics created,
//! grown or deleted through other nodes), the node re-reads the topic catalog and asks its
//! managers to run exactly what placement gives it ([`Node::place`]).

use crate::catalog::Catalog;
use inkless_actors::Node;
use std::time::Duration;

/// Runs until the node stops.
pub async fn follow_placement(node: Node, catalog: Catalog, refresh: Duration) {
    let mut live = node.live_changes();
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = live.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
            _ = node.stopped() => return,
        }
        if let Err(e) = catalog.refresh().await {
            tracing::warn!(error = %e, "could not re-read topics; placing with the ones known");
        }
        let failed = node.place(catalog.partitions()).await;
        if !failed.is_empty() {
            tracing::warn!(failed = failed.len(), first = ?failed.first(), "partitions failed to start; retrying at the next placement");
        }
    }
}
