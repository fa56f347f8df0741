//! Exclusive ownership of partitions and consumer groups under node leases (PostgreSQL).
//!
//! A claim locks the owned row, checks that the claimant may take it ([`take_check`]), and
//! records the claimant's node and lease generation with a new owner epoch, all in one
//! transaction. Taking something from an expired lease gives that lease row a new
//! generation in the same transaction: the renewal that would revive the old lease is
//! serialized with it on the row lock and returns the new generation, so its holder learns
//! that what it held is gone. See the module documentation of [`crate::metadata`].

use super::{Tx, TxResult};
use crate::metadata::{Claimant, MetaError, PartitionKey};
use uuid::Uuid;

/// Milliseconds since the Unix epoch on the database's clock, as an SQL expression.
pub(super) const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

/// The generation recorded for a claimant (0: none, which no lease ever has).
pub(super) fn generation(c: Claimant) -> i64 {
    c.lease_generation.unwrap_or(0)
}

/// Fails with [`MetaError::LeaseLost`] unless the claimant's lease is live under the
/// generation it claims with.
async fn check_own_lease(tx: &Tx<'_>, me: Claimant) -> TxResult<()> {
    let Some(g) = me.lease_generation else {
        return Ok(());
    };
    let sql = format!(
        "SELECT 1 FROM node_leases WHERE node_id = $1 AND generation = $2 AND expires_ms > {NOW_MS}"
    );
    if tx.query_opt(&sql, &[&me.node_id, &g]).await?.is_none() {
        return Err(MetaError::LeaseLost {
            node_id: me.node_id,
            generation: g,
        }
        .into());
    }
    Ok(())
}

/// Fails with [`MetaError::OwnedElsewhere`] unless `me` may take what `owner` holds under
/// lease generation `owner_generation`: it is free, already `me`'s, or held under a lease
/// that is gone or expired (which is then broken).
async fn take_check(tx: &Tx<'_>, owner: i32, owner_generation: i64, me: Claimant) -> TxResult<()> {
    check_own_lease(tx, me).await?;
    let Some(mine) = me.lease_generation else {
        return Ok(());
    };
    if owner < 0 || (owner == me.node_id && owner_generation == mine) {
        return Ok(());
    }
    let break_expired = format!(
        "UPDATE node_leases SET generation = nextval('lease_generations') WHERE node_id = $1 AND generation = $2 AND expires_ms <= {NOW_MS}"
    );
    if tx
        .execute(&break_expired, &[&owner, &owner_generation])
        .await?
        > 0
    {
        tracing::info!(
            owner,
            owner_generation,
            claimant = me.node_id,
            "took over from an expired lease"
        );
        return Ok(());
    }
    let held = tx
        .query_opt(
            "SELECT 1 FROM node_leases WHERE node_id = $1 AND generation = $2",
            &[&owner, &owner_generation],
        )
        .await?
        .is_some();
    if held {
        return Err(MetaError::OwnedElsewhere { owner }.into());
    }
    Ok(())
}

/// Claims a partition's row (locked until the end of `tx`); returns its new owner epoch,
/// log start offset and high watermark.
pub(super) async fn claim_partition_row(
    tx: &Tx<'_>,
    topic_id: Uuid,
    partition: i32,
    me: Claimant,
) -> TxResult<(i64, i64, i64)> {
    let row = tx
        .query_opt(
            "SELECT owner_node, owner_generation FROM partitions WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
            &[&topic_id, &partition],
        )
        .await?
        .ok_or(MetaError::UnknownPartition(topic_id, partition))?;
    take_check(tx, row.try_get(0)?, row.try_get(1)?, me).await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE partitions SET owner_epoch = owner_epoch + 1, owner_node = $3, owner_generation = $4 WHERE topic_id = $1 AND partition = $2 RETURNING owner_epoch, log_start_offset, high_watermark",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[&topic_id, &partition, &me.node_id, &generation(me)],
        )
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// Releases the listed partitions the claimant holds.
pub(super) async fn release_partitions(
    tx: &Tx<'_>,
    me: Claimant,
    partitions: &[PartitionKey],
) -> TxResult<u64> {
    let (topics, indexes): (Vec<Uuid>, Vec<i32>) = partitions.iter().copied().unzip();
    Ok(tx
        .execute(
            "UPDATE partitions p SET owner_node = -1, owner_generation = 0, owner_epoch = p.owner_epoch + 1 FROM UNNEST($3::uuid[], $4::int4[]) AS k(topic_id, partition) WHERE p.topic_id = k.topic_id AND p.partition = k.partition AND p.owner_node = $1 AND p.owner_generation = $2",
            &[&me.node_id, &generation(me), &topics, &indexes],
        )
        .await?)
}

/// Claims a group, creating its ownership row on first use; returns its new owner epoch.
pub(super) async fn claim_group(tx: &Tx<'_>, group: &str, me: Claimant) -> TxResult<i64> {
    tx.execute(
        "INSERT INTO group_owners (group_id, owner_node, owner_generation, owner_epoch) VALUES ($1, -1, 0, 0) ON CONFLICT (group_id) DO NOTHING",
        &[&group],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT owner_node, owner_generation FROM group_owners WHERE group_id = $1 FOR UPDATE",
            &[&group],
        )
        .await?;
    take_check(tx, row.try_get(0)?, row.try_get(1)?, me).await?;
    let row = tx
        .query_one(
            "UPDATE group_owners SET owner_epoch = owner_epoch + 1, owner_node = $2, owner_generation = $3 WHERE group_id = $1 RETURNING owner_epoch",
            &[&group, &me.node_id, &generation(me)],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Releases the listed groups the claimant coordinates.
pub(super) async fn release_groups(tx: &Tx<'_>, me: Claimant, groups: &[String]) -> TxResult<u64> {
    Ok(tx
        .execute(
            "UPDATE group_owners SET owner_node = -1, owner_generation = 0, owner_epoch = owner_epoch + 1 WHERE group_id = ANY($3::text[]) AND owner_node = $1 AND owner_generation = $2",
            &[&me.node_id, &generation(me), &groups],
        )
        .await?)
}

/// Fails with [`MetaError::GroupFenced`] unless `owner_epoch` is the group's owner epoch;
/// the row stays share-locked until the end of `tx`, so no claim can slip in.
pub(super) async fn check_group_epoch(tx: &Tx<'_>, group: &str, owner_epoch: i64) -> TxResult<()> {
    let row = tx
        .query_opt(
            "SELECT owner_epoch FROM group_owners WHERE group_id = $1 FOR SHARE",
            &[&group],
        )
        .await?;
    match row {
        Some(r) if r.try_get::<_, i64>(0)? == owner_epoch => Ok(()),
        _ => Err(MetaError::GroupFenced(group.to_string()).into()),
    }
}
