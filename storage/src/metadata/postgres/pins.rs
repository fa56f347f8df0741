//! Partition pins in PostgreSQL: an operator's (ADR 0013) and the balancer's (ADR 0022),
//! the balancer's epoch, and the nodes' load reports.
//!
//! Every pin write share-locks its partition's row first, so a pin never outlives a topic
//! deleted concurrently. The balancer's writes share-lock its epoch's row, which a new term
//! ([`CLAIM_BALANCER_EPOCH`]) updates: a term starts only between two writes, and every
//! write after it under the old epoch is refused.

use super::{pg, Tx, TxResult};
use crate::metadata::{decode_load, MetaError, MetaResult, NodeLoad, PartitionKey, PartitionPin};
use tokio_postgres::Row;

/// Every pin, in partition order, with its partition's holder. Each pin looks its
/// partition's row up by key: without the `OFFSET 0` fence PostgreSQL flattens the lateral
/// subquery into a hash join that scans every partition (a 100,000-row table for a few
/// hundred pins).
pub(super) const ALL_PINS: &str =
    "SELECT p.topic_id, p.partition, p.node_id, q.owner_node, p.by_balancer \
     FROM partition_pins p CROSS JOIN LATERAL (SELECT owner_node FROM partitions q \
     WHERE q.topic_id = p.topic_id AND q.partition = p.partition OFFSET 0) q \
     ORDER BY p.topic_id, p.partition";

/// Starts a balancer term: the epoch after the last one.
pub(super) const CLAIM_BALANCER_EPOCH: &str =
    "INSERT INTO cluster_settings (key, value) VALUES ('balancer.epoch', '1') \
     ON CONFLICT (key) DO UPDATE SET value = (cluster_settings.value::BIGINT + 1)::TEXT \
     RETURNING value::BIGINT";

/// Counts a change of the pins (see [`crate::metadata::LeaseView::pins_version`]).
const BUMP_PINS_VERSION: &str =
    "INSERT INTO cluster_settings (key, value) VALUES ('pins.version', '1') \
     ON CONFLICT (key) DO UPDATE SET value = (cluster_settings.value::BIGINT + 1)::TEXT";

/// Counts a change of the pins, in the transaction that made it.
pub(super) async fn bump_pins_version(tx: &Tx<'_>) -> TxResult<()> {
    tx.execute(BUMP_PINS_VERSION, &[]).await?;
    Ok(())
}

/// The pins' version (see [`crate::metadata::LeaseView::pins_version`]).
pub(super) async fn pins_version(tx: &Tx<'_>) -> TxResult<i64> {
    let row = tx
        .query_opt(
            "SELECT value::BIGINT FROM cluster_settings WHERE key = 'pins.version'",
            &[],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
}

/// Replaces node `$1`'s load report with `$2`.
pub(super) const REPORT_LOAD: &str = "INSERT INTO node_loads (node_id, reported_ms, load) \
     VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT, $2) \
     ON CONFLICT (node_id) DO UPDATE SET reported_ms = EXCLUDED.reported_ms, load = EXCLUDED.load";

/// Every load report, with its age on the store's clock.
pub(super) const NODE_LOADS: &str = "SELECT node_id, \
     (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT - reported_ms, load \
     FROM node_loads ORDER BY node_id";

pub(super) fn pins_from_rows(rows: &[Row]) -> MetaResult<Vec<PartitionPin>> {
    rows.iter()
        .map(|r| {
            let owner: i32 = r.try_get(3)?;
            Ok(PartitionPin {
                partition: (r.try_get(0)?, r.try_get(1)?),
                node_id: r.try_get(2)?,
                holder: (owner >= 0).then_some(owner),
                by_balancer: r.try_get(4)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(pg)
}

pub(super) fn epoch_from_rows(rows: &[Row]) -> MetaResult<i64> {
    let row = rows
        .first()
        .ok_or_else(|| MetaError::Database("no balancer epoch returned".into()))?;
    row.try_get(0).map_err(pg)
}

pub(super) fn loads_from_rows(rows: &[Row]) -> MetaResult<Vec<NodeLoad>> {
    rows.iter()
        .map(|r| {
            let load: String = r.try_get(2).map_err(pg)?;
            Ok(NodeLoad {
                node_id: r.try_get(0).map_err(pg)?,
                reported_ago_ms: r.try_get(1).map_err(pg)?,
                partitions: decode_load(&load)?,
            })
        })
        .collect()
}

/// Share-locks a partition's row; false if it does not exist.
async fn lock_partition(tx: &Tx<'_>, (id, partition): PartitionKey) -> TxResult<bool> {
    let lock = tx
        .prepare_cached(
            "SELECT 1 FROM partitions WHERE topic_id = $1 AND partition = $2 FOR KEY SHARE",
        )
        .await?;
    Ok(tx.query_opt(&lock, &[&id, &partition]).await?.is_some())
}

/// An operator's pins and removals, in partition order: every partition must exist; a pin
/// replaces the balancer's, a removal removes whichever pin the partition has.
pub(super) async fn set_operator_pins(
    tx: &Tx<'_>,
    mut pins: Vec<(PartitionKey, Option<i32>)>,
) -> TxResult<()> {
    pins.sort_by_key(|(key, _)| *key);
    let upsert = tx
        .prepare_cached(
            "INSERT INTO partition_pins (topic_id, partition, node_id, by_balancer) \
             VALUES ($1, $2, $3, FALSE) ON CONFLICT (topic_id, partition) \
             DO UPDATE SET node_id = EXCLUDED.node_id, by_balancer = FALSE",
        )
        .await?;
    let delete = tx
        .prepare_cached("DELETE FROM partition_pins WHERE topic_id = $1 AND partition = $2")
        .await?;
    for ((id, partition), node) in pins {
        if !lock_partition(tx, (id, partition)).await? {
            return Err(MetaError::UnknownPartition(id, partition).into());
        }
        match node {
            Some(node) => tx.execute(&upsert, &[&id, &partition, &node]).await?,
            None => tx.execute(&delete, &[&id, &partition]).await?,
        };
    }
    bump_pins_version(tx).await
}

/// The balancer's pins and removals under `epoch`, in partition order (see the trait).
pub(super) async fn set_balancer_pins(
    tx: &Tx<'_>,
    epoch: i64,
    mut pins: Vec<(PartitionKey, Option<i32>)>,
) -> TxResult<usize> {
    let current: i64 = tx
        .query_opt(
            "SELECT value::BIGINT FROM cluster_settings WHERE key = 'balancer.epoch' FOR SHARE",
            &[],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    if current != epoch {
        return Err(MetaError::BalancerFenced(current).into());
    }
    pins.sort_by_key(|(key, _)| *key);
    let upsert = tx
        .prepare_cached(
            "INSERT INTO partition_pins (topic_id, partition, node_id, by_balancer) \
             VALUES ($1, $2, $3, TRUE) ON CONFLICT (topic_id, partition) \
             DO UPDATE SET node_id = EXCLUDED.node_id WHERE partition_pins.by_balancer",
        )
        .await?;
    let delete = tx
        .prepare_cached(
            "DELETE FROM partition_pins WHERE topic_id = $1 AND partition = $2 AND by_balancer",
        )
        .await?;
    let mut changed = 0;
    for ((id, partition), node) in pins {
        if !lock_partition(tx, (id, partition)).await? {
            continue;
        }
        changed += match node {
            Some(node) => tx.execute(&upsert, &[&id, &partition, &node]).await?,
            None => tx.execute(&delete, &[&id, &partition]).await?,
        };
    }
    if changed > 0 {
        bump_pins_version(tx).await?;
    }
    Ok(changed as usize)
}
