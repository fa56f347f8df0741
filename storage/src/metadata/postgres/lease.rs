//! Node leases in PostgreSQL: registration, renewal and the read of every lease row.
//!
//! Every node renews every `lease_renew_interval_ms`, and each renewal reads all N rows, so
//! the common case — a live lease renewed by the incarnation that holds it — is one
//! statement ([`RENEW_HELD`]): it extends the row and reads the rows and the drain marks in
//! one round trip. Anything else (a first registration, a lapsed lease, a takeover by a new
//! incarnation, a generation broken by a claim) takes the locking transaction of
//! [`renew_lease_tx`].

use super::{Tx, TxResult};
use crate::metadata::{LeaseView, MetaError, NodeLease, NodeStatus, EXPIRED_LEASE_KEPT_MS};
use tokio_postgres::Row;
use uuid::Uuid;

/// Renews the lease of `$1` (node id) held by `$2` (incarnation) for `$3` ms if it is live
/// and unbroken, and reads every lease row and the drain marks: one row per lease row,
/// none if the lease was not renewed. The rows are read from the statement's snapshot, which
/// has this node's row as it was before the update ([`held_view`] corrects it).
pub(super) const RENEW_HELD: &str = "WITH c AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT AS now_ms), \
     renewed AS (UPDATE node_leases l SET renewed_ms = c.now_ms, expires_ms = c.now_ms + $3 FROM c \
         WHERE l.node_id = $1 AND l.incarnation = $2 AND l.expires_ms > c.now_ms AND l.generation > 0 \
         RETURNING l.generation) \
     SELECT r.generation, c.now_ms, ARRAY(SELECT node_id FROM node_drains ORDER BY node_id), \
         COALESCE((SELECT value::BIGINT FROM cluster_settings WHERE key = 'pins.version'), 0), \
         n.node_id, n.incarnation, n.az, n.kafka_addr, n.cluster_addr, n.admin_addr, n.renewed_ms, n.expires_ms \
     FROM c CROSS JOIN renewed r CROSS JOIN node_leases n ORDER BY n.node_id";

/// Lease rows expired this long ago are deleted ([`RENEW_HELD`] leaves them to this).
pub(super) const PRUNE_EXPIRED: &str = "DELETE FROM node_leases WHERE expires_ms < $1";

/// What [`RENEW_HELD`] returned.
pub(super) struct HeldRenewal {
    /// The view, as [`renew_lease_tx`] would have returned it.
    pub(super) view: LeaseView,
    /// Some lease rows expired before this store time and should be deleted.
    pub(super) prune_before: Option<i64>,
}

/// Reads the answer of [`RENEW_HELD`] for `lease`: `None` if the lease was not renewed.
pub(super) fn held_view(
    lease: &NodeLease,
    ttl_ms: i64,
    rows: &[Row],
) -> Result<Option<HeldRenewal>, tokio_postgres::Error> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let generation: i64 = first.try_get(0)?;
    let now: i64 = first.try_get(1)?;
    let draining: Vec<i32> = first.try_get(2)?;
    let pins_version: i64 = first.try_get(3)?;
    let kept_since = now - EXPIRED_LEASE_KEPT_MS;
    let mut nodes = Vec::with_capacity(rows.len());
    let mut prune = false;
    for r in rows {
        let node = lease_at(r, 4)?;
        let (mut renewed, mut expires): (i64, i64) = (r.try_get(10)?, r.try_get(11)?);
        if node.node_id == lease.node_id {
            // The snapshot predates this statement's own update.
            (renewed, expires) = (now, now + ttl_ms);
        }
        if expires < kept_since {
            // What the transaction's pruning would have deleted before reading.
            prune = true;
            continue;
        }
        nodes.push(NodeStatus::from_row(node, renewed, expires, now));
    }
    Ok(Some(HeldRenewal {
        view: LeaseView {
            generation,
            lapsed: false,
            nodes,
            draining,
            pins_version,
        },
        prune_before: prune.then_some(kept_since),
    }))
}

/// Registers or renews a lease. The row is locked by the update, so a claim that breaks this
/// lease either commits first (and the renewal returns the new generation) or waits and
/// finds the lease renewed. A row is taken over by a new incarnation only when expired, and
/// gets a new generation; a renewal of the same incarnation keeps its generation.
pub(super) async fn renew_lease_tx(
    tx: &Tx<'_>,
    lease: &NodeLease,
    ttl_ms: i64,
) -> TxResult<LeaseView> {
    // The database's clock, so that nodes with skewed clocks agree on expiry.
    let now = store_now(tx).await?;
    tx.execute(PRUNE_EXPIRED, &[&(now - EXPIRED_LEASE_KEPT_MS)])
        .await?;
    let before = tx
        .query_opt(
            "SELECT incarnation, expires_ms, generation FROM node_leases WHERE node_id = $1 FOR UPDATE",
            &[&lease.node_id],
        )
        .await?;
    // The row stays locked: the generation read here is the one a takeover left.
    let (kept, lapsed) = match &before {
        Some(r) => {
            let (incarnation, expires, generation): (Uuid, i64, i64) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            if incarnation != lease.incarnation && expires > now {
                return Err(MetaError::LeaseHeld {
                    node_id: lease.node_id,
                    expires_in_ms: expires - now,
                }
                .into());
            }
            let mine = incarnation == lease.incarnation;
            (
                (mine && generation > 0).then_some(generation),
                mine && expires <= now,
            )
        }
        None => (None, false),
    };
    let generation: i64 = match kept {
        Some(g) => g,
        None => tx
            .query_one("SELECT nextval('lease_generations')", &[])
            .await?
            .try_get(0)?,
    };
    let row = tx
        .query_opt(
            "INSERT INTO node_leases (node_id, incarnation, az, kafka_addr, cluster_addr, admin_addr, renewed_ms, expires_ms, generation)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (node_id) DO UPDATE SET incarnation = excluded.incarnation, az = excluded.az,
                 kafka_addr = excluded.kafka_addr, cluster_addr = excluded.cluster_addr,
                 admin_addr = excluded.admin_addr, renewed_ms = excluded.renewed_ms,
                 expires_ms = excluded.expires_ms, generation = excluded.generation
             WHERE node_leases.incarnation = excluded.incarnation OR node_leases.expires_ms <= $7
             RETURNING generation",
            &[
                &lease.node_id,
                &lease.incarnation,
                &lease.az,
                &lease.kafka_addr,
                &lease.cluster_addr,
                &lease.admin_addr,
                &now,
                &(now + ttl_ms),
                &generation,
            ],
        )
        .await?
        // Another incarnation registered between our read and our write.
        .ok_or(MetaError::LeaseHeld {
            node_id: lease.node_id,
            expires_in_ms: ttl_ms,
        })?;
    Ok(LeaseView {
        generation: row.try_get(0)?,
        lapsed,
        nodes: all_nodes(tx, now).await?,
        draining: draining_tx(tx).await?,
        pins_version: super::pins::pins_version(tx).await?,
    })
}

/// The node ids marked draining, in order.
async fn draining_tx(tx: &Tx<'_>) -> TxResult<Vec<i32>> {
    let stmt = tx
        .prepare_cached("SELECT node_id FROM node_drains ORDER BY node_id")
        .await?;
    let rows = tx.query(&stmt, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Milliseconds since the Unix epoch on the database's clock.
pub(super) async fn store_now(tx: &Tx<'_>) -> TxResult<i64> {
    Ok(tx
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT",
            &[],
        )
        .await?
        .try_get(0)?)
}

pub(super) async fn all_nodes(tx: &Tx<'_>, now: i64) -> TxResult<Vec<NodeStatus>> {
    let rows = tx
        .query(
            "SELECT node_id, incarnation, az, kafka_addr, cluster_addr, admin_addr, renewed_ms, expires_ms
             FROM node_leases ORDER BY node_id",
            &[],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(NodeStatus::from_row(
            lease_at(&r, 0)?,
            r.try_get(6)?,
            r.try_get(7)?,
            now,
        ));
    }
    Ok(out)
}

/// The lease in six columns of a row from `first` on: node id, incarnation, AZ, and the
/// Kafka, mesh and admin addresses.
fn lease_at(r: &Row, first: usize) -> Result<NodeLease, tokio_postgres::Error> {
    Ok(NodeLease {
        node_id: r.try_get(first)?,
        incarnation: r.try_get(first + 1)?,
        az: r.try_get(first + 2)?,
        kafka_addr: r.try_get(first + 3)?,
        cluster_addr: r.try_get(first + 4)?,
        admin_addr: r.try_get(first + 5)?,
    })
}
