//! Exclusive ownership of partitions and consumer groups under node leases (SQLite).
//!
//! The same rules as PostgreSQL's (see the module documentation of [`crate::metadata`]);
//! SQLite runs one transaction at a time, so a claim and a renewal never interleave.

use super::db;
use crate::metadata::{ClaimMode, Claimant, MetaError, MetaResult, PartitionKey};
use rusqlite::{params, OptionalExtension, Transaction};
use uuid::Uuid;

/// The generation recorded for a claimant (0: none, which no lease ever has).
pub(super) fn generation(c: Claimant) -> i64 {
    c.lease_generation.unwrap_or(0)
}

/// A new lease generation, never handed out before.
pub(super) fn next_generation(tx: &Transaction<'_>) -> MetaResult<i64> {
    tx.query_row(
        "UPDATE lease_generation_seq SET next = next + 1 RETURNING next - 1",
        [],
        |r| r.get(0),
    )
    .map_err(db)
}

/// Fails with [`MetaError::LeaseLost`] unless the claimant's lease is live under the
/// generation it claims with.
pub(super) fn check_own_lease(tx: &Transaction<'_>, me: Claimant) -> MetaResult<()> {
    let Some(mine) = me.lease_generation else {
        return Ok(());
    };
    let own_live = tx
        .query_row(
            "SELECT 1 FROM node_leases WHERE node_id = ?1 AND generation = ?2 AND expires_ms > ?3",
            params![me.node_id, mine, crate::now_ms()],
            |_| Ok(()),
        )
        .optional()
        .map_err(db)?;
    match own_live {
        Some(()) => Ok(()),
        None => Err(MetaError::LeaseLost {
            node_id: me.node_id,
            generation: mine,
        }),
    }
}

/// Fails with [`MetaError::OwnedElsewhere`] unless `me` may take what `owner` holds under
/// `owner_generation` (free, its own, or under a lease that is gone or expired, which is
/// then broken). The caller has checked `me`'s own lease ([`check_own_lease`]).
fn take_check(
    tx: &Transaction<'_>,
    owner: i32,
    owner_generation: i64,
    me: Claimant,
) -> MetaResult<()> {
    let Some(mine) = me.lease_generation else {
        return Ok(());
    };
    if owner < 0 || (owner == me.node_id && owner_generation == mine) {
        return Ok(());
    }
    let expires: Option<i64> = tx
        .query_row(
            "SELECT expires_ms FROM node_leases WHERE node_id = ?1 AND generation = ?2",
            params![owner, owner_generation],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    match expires {
        None => Ok(()),
        Some(e) if e <= crate::now_ms() => {
            let g = next_generation(tx)?;
            tx.execute(
                "UPDATE node_leases SET generation = ?3 WHERE node_id = ?1 AND generation = ?2",
                params![owner, owner_generation, g],
            )
            .map_err(db)?;
            Ok(())
        }
        Some(_) => Err(MetaError::OwnedElsewhere { owner }),
    }
}

/// Claims a partition's row (the caller reads its new state); in [`ClaimMode::Reload`]
/// only checks that `me` holds it. The caller has checked the claimant's own lease
/// ([`check_own_lease`]) in the same transaction.
pub(super) fn claim_partition_row(
    tx: &Transaction<'_>,
    topic_id: Uuid,
    partition: i32,
    me: Claimant,
    mode: ClaimMode,
) -> MetaResult<()> {
    let id = topic_id.to_string();
    let (owner, owner_generation): (i32, i64) = tx
        .prepare_cached(
            "SELECT owner_node, owner_generation FROM partitions WHERE topic_id = ?1 AND partition = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![id, partition], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db)?
        .ok_or(MetaError::UnknownPartition(topic_id, partition))?;
    if mode == ClaimMode::Reload {
        return if owner == me.node_id && owner_generation == generation(me) {
            Ok(())
        } else {
            Err(MetaError::OwnedElsewhere { owner })
        };
    }
    take_check(tx, owner, owner_generation, me)?;
    tx.prepare_cached(
        "UPDATE partitions SET owner_epoch = owner_epoch + 1, epoch_changed_ms = ?5, owner_node = ?3, owner_generation = ?4 WHERE topic_id = ?1 AND partition = ?2",
    )
    .and_then(|mut s| {
        s.execute(params![id, partition, me.node_id, generation(me), crate::now_ms()])
    })
    .map_err(db)?;
    Ok(())
}

/// Releases the listed partitions the claimant holds.
pub(super) fn release_partitions(
    tx: &Transaction<'_>,
    me: Claimant,
    partitions: &[PartitionKey],
) -> MetaResult<u64> {
    let mut stmt = tx
        .prepare_cached(
            "UPDATE partitions SET owner_node = -1, owner_generation = 0, owner_epoch = owner_epoch + 1, epoch_changed_ms = ?5 WHERE topic_id = ?1 AND partition = ?2 AND owner_node = ?3 AND owner_generation = ?4",
        )
        .map_err(db)?;
    let mut n = 0;
    let now = crate::now_ms();
    for (topic_id, partition) in partitions {
        n += stmt
            .execute(params![
                topic_id.to_string(),
                partition,
                me.node_id,
                generation(me),
                now
            ])
            .map_err(db)? as u64;
    }
    Ok(n)
}

/// The partitions the claimant holds.
pub(super) fn owned_partitions(
    tx: &Transaction<'_>,
    me: Claimant,
) -> MetaResult<Vec<PartitionKey>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT topic_id, partition FROM partitions WHERE owner_node = ?1 AND owner_generation = ?2",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![me.node_id, generation(me)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i32>(1)?))
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, partition) = row.map_err(db)?;
        out.push((Uuid::parse_str(&id).map_err(db)?, partition));
    }
    Ok(out)
}

/// Claims a group, creating its ownership row on first use; returns its new owner epoch.
pub(super) fn claim_group(tx: &Transaction<'_>, group: &str, me: Claimant) -> MetaResult<i64> {
    tx.execute(
        "INSERT INTO group_owners (group_id, owner_node, owner_generation, owner_epoch) VALUES (?1, -1, 0, 0) ON CONFLICT (group_id) DO NOTHING",
        params![group],
    )
    .map_err(db)?;
    let (owner, owner_generation): (i32, i64) = tx
        .query_row(
            "SELECT owner_node, owner_generation FROM group_owners WHERE group_id = ?1",
            params![group],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db)?;
    check_own_lease(tx, me)?;
    take_check(tx, owner, owner_generation, me)?;
    tx.query_row(
        "UPDATE group_owners SET owner_epoch = owner_epoch + 1, owner_node = ?2, owner_generation = ?3 WHERE group_id = ?1 RETURNING owner_epoch",
        params![group, me.node_id, generation(me)],
        |r| r.get(0),
    )
    .map_err(db)
}

/// Releases the listed groups the claimant coordinates.
pub(super) fn release_groups(
    tx: &Transaction<'_>,
    me: Claimant,
    groups: &[String],
) -> MetaResult<u64> {
    let mut stmt = tx
        .prepare_cached(
            "UPDATE group_owners SET owner_node = -1, owner_generation = 0, owner_epoch = owner_epoch + 1 WHERE group_id = ?1 AND owner_node = ?2 AND owner_generation = ?3",
        )
        .map_err(db)?;
    let mut n = 0;
    for g in groups {
        n += stmt
            .execute(params![g, me.node_id, generation(me)])
            .map_err(db)? as u64;
    }
    Ok(n)
}

/// The groups the claimant coordinates.
pub(super) fn owned_groups(tx: &Transaction<'_>, me: Claimant) -> MetaResult<Vec<String>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT group_id FROM group_owners WHERE owner_node = ?1 AND owner_generation = ?2 ORDER BY group_id",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![me.node_id, generation(me)], |r| r.get(0))
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// Fails with [`MetaError::GroupFenced`] unless `owner_epoch` is the group's owner epoch.
pub(super) fn check_group_epoch(
    tx: &Transaction<'_>,
    group: &str,
    owner_epoch: i64,
) -> MetaResult<()> {
    let epoch: Option<i64> = tx
        .query_row(
            "SELECT owner_epoch FROM group_owners WHERE group_id = ?1",
            params![group],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    if epoch == Some(owner_epoch) {
        Ok(())
    } else {
        Err(MetaError::GroupFenced(group.to_string()))
    }
}
