//! Partition pins in SQLite: an operator's (ADR 0013) and the balancer's (ADR 0022), the
//! balancer's epoch, and the nodes' load reports.

use super::db;
use crate::metadata::{
    decode_load, encode_load, MetaError, MetaResult, NodeLoad, PartitionKey, PartitionPin,
};
use rusqlite::{params, OptionalExtension, Transaction};
use uuid::Uuid;

/// The `cluster_settings` key of the balancer's epoch.
const BALANCER_EPOCH: &str = "balancer.epoch";

/// The `cluster_settings` key of the pins' version.
const PINS_VERSION: &str = "pins.version";

/// A counter in `cluster_settings` (0 while it has no row).
fn setting(tx: &Transaction<'_>, key: &str) -> MetaResult<i64> {
    let value: Option<String> = tx
        .query_row(
            "SELECT value FROM cluster_settings WHERE key = ?1",
            params![key],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    value.map_or(Ok(0), |v| {
        v.parse()
            .map_err(|_| MetaError::Database(format!("bad {key} {v:?}")))
    })
}

/// Adds one to a counter in `cluster_settings`; returns its new value.
fn bump(tx: &Transaction<'_>, key: &str) -> MetaResult<i64> {
    let next = setting(tx, key)? + 1;
    tx.execute(
        "INSERT INTO cluster_settings (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, next.to_string()],
    )
    .map_err(db)?;
    Ok(next)
}

/// The pins' version (see [`crate::metadata::LeaseView::pins_version`]).
pub(in crate::metadata) fn pins_version(tx: &Transaction<'_>) -> MetaResult<i64> {
    setting(tx, PINS_VERSION)
}

/// Counts a change of the pins, in the transaction that made it.
pub(in crate::metadata) fn bump_pins_version(tx: &Transaction<'_>) -> MetaResult<()> {
    bump(tx, PINS_VERSION).map(|_| ())
}

/// Whether a partition exists.
fn partition_exists(tx: &Transaction<'_>, key: &str, partition: i32) -> MetaResult<bool> {
    tx.prepare_cached("SELECT 1 FROM partitions WHERE topic_id = ?1 AND partition = ?2")
        .and_then(|mut s| s.query_row(params![key, partition], |_| Ok(())).optional())
        .map(|r| r.is_some())
        .map_err(db)
}

/// An operator's pins and removals: every partition must exist; a pin replaces the
/// balancer's, a removal removes whichever pin the partition has.
pub(super) fn set_operator_pins(
    tx: &Transaction<'_>,
    pins: Vec<(PartitionKey, Option<i32>)>,
) -> MetaResult<()> {
    for ((id, partition), node) in pins {
        let key = id.to_string();
        if !partition_exists(tx, &key, partition)? {
            return Err(MetaError::UnknownPartition(id, partition));
        }
        match node {
            Some(node) => tx.execute(
                "INSERT INTO partition_pins (topic_id, partition, node_id, by_balancer) \
                 VALUES (?1, ?2, ?3, 0) ON CONFLICT (topic_id, partition) \
                 DO UPDATE SET node_id = excluded.node_id, by_balancer = 0",
                params![key, partition, node],
            ),
            None => tx.execute(
                "DELETE FROM partition_pins WHERE topic_id = ?1 AND partition = ?2",
                params![key, partition],
            ),
        }
        .map_err(db)?;
    }
    bump_pins_version(tx)
}

/// Every pin, in partition order, with its partition's holder.
pub(super) fn all_pins(tx: &Transaction<'_>) -> MetaResult<Vec<PartitionPin>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT p.topic_id, p.partition, p.node_id, q.owner_node, p.by_balancer \
             FROM partition_pins p \
             JOIN partitions q ON q.topic_id = p.topic_id AND q.partition = p.partition \
             ORDER BY p.topic_id, p.partition",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, i32>(2)?,
                r.get::<_, i32>(3)?,
                r.get::<_, bool>(4)?,
            ))
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, partition, node_id, owner, by_balancer) = row.map_err(db)?;
        out.push(PartitionPin {
            partition: (Uuid::parse_str(&id).map_err(db)?, partition),
            node_id,
            holder: (owner >= 0).then_some(owner),
            by_balancer,
        });
    }
    Ok(out)
}

pub(super) fn claim_balancer_epoch(tx: &Transaction<'_>) -> MetaResult<i64> {
    bump(tx, BALANCER_EPOCH)
}

/// The balancer's pins and removals under `epoch` (see the trait).
pub(super) fn set_balancer_pins(
    tx: &Transaction<'_>,
    epoch: i64,
    pins: Vec<(PartitionKey, Option<i32>)>,
) -> MetaResult<usize> {
    let current = setting(tx, BALANCER_EPOCH)?;
    if current != epoch {
        return Err(MetaError::BalancerFenced(current));
    }
    let mut changed = 0;
    for ((id, partition), node) in pins {
        let key = id.to_string();
        if !partition_exists(tx, &key, partition)? {
            continue;
        }
        changed += match node {
            Some(node) => tx.execute(
                "INSERT INTO partition_pins (topic_id, partition, node_id, by_balancer) \
                 VALUES (?1, ?2, ?3, 1) ON CONFLICT (topic_id, partition) \
                 DO UPDATE SET node_id = excluded.node_id WHERE by_balancer = 1",
                params![key, partition, node],
            ),
            None => tx.execute(
                "DELETE FROM partition_pins \
                 WHERE topic_id = ?1 AND partition = ?2 AND by_balancer = 1",
                params![key, partition],
            ),
        }
        .map_err(db)?;
    }
    if changed > 0 {
        bump_pins_version(tx)?;
    }
    Ok(changed)
}

pub(super) fn report_load(
    tx: &Transaction<'_>,
    node_id: i32,
    load: &[(PartitionKey, u64)],
) -> MetaResult<()> {
    tx.execute(
        "INSERT INTO node_loads (node_id, reported_ms, load) VALUES (?1, ?2, ?3) \
         ON CONFLICT (node_id) DO UPDATE SET reported_ms = excluded.reported_ms, load = excluded.load",
        params![node_id, crate::now_ms(), encode_load(load)],
    )
    .map_err(db)?;
    Ok(())
}

pub(super) fn node_loads(tx: &Transaction<'_>) -> MetaResult<Vec<NodeLoad>> {
    let now = crate::now_ms();
    let mut stmt = tx
        .prepare_cached("SELECT node_id, reported_ms, load FROM node_loads ORDER BY node_id")
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i32>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (node_id, reported_ms, load) = row.map_err(db)?;
        out.push(NodeLoad {
            node_id,
            reported_ago_ms: now - reported_ms,
            partitions: decode_load(&load)?,
        });
    }
    Ok(out)
}
