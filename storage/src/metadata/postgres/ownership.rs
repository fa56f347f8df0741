//! Exclusive ownership of partitions and consumer groups under node leases (PostgreSQL).
//!
//! A claim locks the owned rows, checks that the claimant may take them ([`may_take`], once
//! per holder of a batch of partitions), and records the claimant's node and lease
//! generation with a new owner epoch, all in one transaction. Taking something from an
//! expired lease gives that lease row a new generation in the same transaction: the renewal
//! that would revive the old lease is serialized with it on the row lock and returns the new
//! generation, so its holder learns that what it held is gone. See the module documentation
//! of [`crate::metadata`].

use super::{Tx, TxResult};
pub(super) use crate::metadata::ClaimMode;
use crate::metadata::{Claimant, MetaError, PartitionKey};
use std::collections::{BTreeMap, HashMap};
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

/// Whether `me` may take what `owner` holds under lease generation `owner_generation`: it
/// is free, already `me`'s, or held under a lease that is gone or expired (which is then
/// broken). The caller has checked `me`'s own lease ([`check_own_lease`]).
async fn may_take(tx: &Tx<'_>, owner: i32, owner_generation: i64, me: Claimant) -> TxResult<bool> {
    let Some(mine) = me.lease_generation else {
        return Ok(true);
    };
    if owner < 0 || (owner == me.node_id && owner_generation == mine) {
        return Ok(true);
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
        return Ok(true);
    }
    let held = tx
        .query_opt(
            "SELECT 1 FROM node_leases WHERE node_id = $1 AND generation = $2",
            &[&owner, &owner_generation],
        )
        .await?
        .is_some();
    Ok(!held)
}

/// Fails with [`MetaError::LeaseLost`] or [`MetaError::OwnedElsewhere`] unless `me` may
/// take what `owner` holds under lease generation `owner_generation` ([`may_take`]).
async fn take_check(tx: &Tx<'_>, owner: i32, owner_generation: i64, me: Claimant) -> TxResult<()> {
    check_own_lease(tx, me).await?;
    if may_take(tx, owner, owner_generation, me).await? {
        Ok(())
    } else {
        Err(MetaError::OwnedElsewhere { owner }.into())
    }
}

/// Locks the existing rows of `keys` until the end of `tx`, in key order (as the group
/// commit does, so the two cannot deadlock), and returns each one's holder (node, lease
/// generation). The statements by key never filter on the holder: statistics taken before
/// a node claimed its partitions make the planner believe that a holder has almost none,
/// and join the listed keys against each of its rows (seconds for a batch of 500 among
/// 10,000 partitions).
async fn lock_holders(
    tx: &Tx<'_>,
    keys: &[PartitionKey],
) -> TxResult<Vec<(PartitionKey, (i32, i64))>> {
    let (topics, indexes): (Vec<Uuid>, Vec<i32>) = keys.iter().copied().unzip();
    let lock = tx.prepare_cached(LOCK_OWNERS).await?;
    tx.query(&lock, &[&topics, &indexes])
        .await?
        .iter()
        .map(|row| {
            Ok((
                (row.try_get(0)?, row.try_get(1)?),
                (row.try_get(2)?, row.try_get(3)?),
            ))
        })
        .collect()
}

/// A partition row as claimed: new owner epoch, log start offset, high watermark.
pub(super) type ClaimedRow = (i64, i64, i64);

const LOCK_OWNERS: &str = "SELECT p.topic_id, p.partition, p.owner_node, p.owner_generation FROM partitions p JOIN UNNEST($1::uuid[], $2::int4[]) AS k(topic_id, partition) ON p.topic_id = k.topic_id AND p.partition = k.partition ORDER BY p.topic_id, p.partition FOR UPDATE OF p";
const READ_PARTITIONS: &str = "SELECT p.topic_id, p.partition, p.owner_epoch, p.log_start_offset, p.high_watermark FROM partitions p JOIN UNNEST($1::uuid[], $2::int4[]) AS k(topic_id, partition) ON p.topic_id = k.topic_id AND p.partition = k.partition";
const TAKE_PARTITIONS: &str = "UPDATE partitions p SET owner_epoch = p.owner_epoch + 1, epoch_changed_ms = (extract(epoch FROM now()) * 1000)::BIGINT, owner_node = $1, owner_generation = $2 FROM UNNEST($3::uuid[], $4::int4[]) AS k(topic_id, partition) WHERE p.topic_id = k.topic_id AND p.partition = k.partition RETURNING p.topic_id, p.partition, p.owner_epoch, p.log_start_offset, p.high_watermark";

/// Claims the rows of `keys` (sorted, distinct) that `me` may take, in one go: locks them
/// all (in key order, as the group commit does, so the two cannot deadlock), decides once
/// per holder whether its lease lets go (breaking expired ones, in holder order), and takes
/// every row whose holder does. Returns each existing row's outcome; rows stay locked until
/// the end of `tx`. Fails as a whole with [`MetaError::LeaseLost`]. In
/// [`ClaimMode::Reload`] only the rows `me` holds are read, and none is changed.
pub(super) async fn claim_partition_rows(
    tx: &Tx<'_>,
    me: Claimant,
    keys: &[PartitionKey],
    mode: ClaimMode,
) -> TxResult<HashMap<PartitionKey, Result<ClaimedRow, MetaError>>> {
    check_own_lease(tx, me).await?;
    let mut holders: BTreeMap<(i32, i64), Vec<PartitionKey>> = BTreeMap::new();
    for (key, holder) in lock_holders(tx, keys).await? {
        holders.entry(holder).or_default().push(key);
    }
    let mut out = HashMap::with_capacity(keys.len());
    let mut take = Vec::with_capacity(keys.len());
    for ((owner, owner_generation), held) in holders {
        let allowed = match mode {
            ClaimMode::Reload => owner == me.node_id && owner_generation == generation(me),
            ClaimMode::Take => may_take(tx, owner, owner_generation, me).await?,
        };
        if allowed {
            take.extend(held);
        } else {
            out.extend(
                held.into_iter()
                    .map(|k| (k, Err(MetaError::OwnedElsewhere { owner }))),
            );
        }
    }
    if take.is_empty() {
        return Ok(out);
    }
    let (topics, indexes): (Vec<Uuid>, Vec<i32>) = take.into_iter().unzip();
    let rows = match mode {
        ClaimMode::Take => {
            let stmt = tx.prepare_cached(TAKE_PARTITIONS).await?;
            tx.query(&stmt, &[&me.node_id, &generation(me), &topics, &indexes])
                .await?
        }
        ClaimMode::Reload => {
            let stmt = tx.prepare_cached(READ_PARTITIONS).await?;
            tx.query(&stmt, &[&topics, &indexes]).await?
        }
    };
    for row in rows {
        let key = (row.try_get(0)?, row.try_get(1)?);
        out.insert(key, Ok((row.try_get(2)?, row.try_get(3)?, row.try_get(4)?)));
    }
    Ok(out)
}

const RELEASE: &str = "UPDATE partitions p SET owner_node = -1, owner_generation = 0, owner_epoch = p.owner_epoch + 1, epoch_changed_ms = (extract(epoch FROM now()) * 1000)::BIGINT FROM UNNEST($1::uuid[], $2::int4[]) AS k(topic_id, partition) WHERE p.topic_id = k.topic_id AND p.partition = k.partition";

/// Releases the listed partitions the claimant holds. Their rows are locked first, in key
/// order ([`lock_holders`]; an UPDATE locks in no particular order), so that a release and
/// a batch claim or a group commit of the same partitions wait for each other instead of
/// deadlocking; then those the claimant holds are released.
pub(super) async fn release_partitions(
    tx: &Tx<'_>,
    me: Claimant,
    partitions: &[PartitionKey],
) -> TxResult<u64> {
    let mine = (me.node_id, generation(me));
    let (topics, indexes): (Vec<Uuid>, Vec<i32>) = lock_holders(tx, partitions)
        .await?
        .into_iter()
        .filter(|(_, holder)| *holder == mine)
        .map(|(key, _)| key)
        .unzip();
    if topics.is_empty() {
        return Ok(0);
    }
    let release = tx.prepare_cached(RELEASE).await?;
    Ok(tx.execute(&release, &[&topics, &indexes]).await?)
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
