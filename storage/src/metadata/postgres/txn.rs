//! Transactions in PostgreSQL: the coordinator's records (compare-and-set on a version),
//! offsets staged by TxnOffsetCommit, and each partition's open and aborted transactions.

use super::{Tx, TxResult};
use crate::metadata::{
    decode_groups, decode_partitions, encode_groups, encode_partitions, AbortedTxn,
    CommittedOffset, MetaError, PartitionKey, PartitionTxns, TxnEvent, TxnRecord, TxnState,
};
use std::collections::HashMap;
use tokio_postgres::Row;
use uuid::Uuid;

/// Columns of a transaction record, in [`txn_row`] order.
pub(super) const TXN_COLUMNS: &str = "transactional_id, producer_id, producer_epoch, state, timeout_ms, partitions, groups_list, txn_start_ms, last_update_ms, version, next_producer_id";

/// A row of [`TXN_COLUMNS`].
pub(super) fn txn_row(r: &Row) -> Result<TxnRecord, MetaError> {
    let get = |e: tokio_postgres::Error| MetaError::Database(e.to_string());
    let parts: String = r.try_get(5).map_err(get)?;
    let groups: String = r.try_get(6).map_err(get)?;
    Ok(TxnRecord {
        transactional_id: r.try_get(0).map_err(get)?,
        producer_id: r.try_get(1).map_err(get)?,
        producer_epoch: r.try_get::<_, i32>(2).map_err(get)? as i16,
        state: TxnState::from_code(r.try_get::<_, i16>(3).map_err(get)?)?,
        timeout_ms: r.try_get(4).map_err(get)?,
        partitions: decode_partitions(&parts)?,
        groups: decode_groups(&groups),
        txn_start_ms: r.try_get(7).map_err(get)?,
        last_update_ms: r.try_get(8).map_err(get)?,
        version: r.try_get(9).map_err(get)?,
        next_producer_id: r.try_get(10).map_err(get)?,
    })
}

/// Compare-and-set of a record on its version.
pub(super) async fn put(tx: &Tx<'_>, rec: &TxnRecord) -> TxResult<Option<i64>> {
    let parts = encode_partitions(&rec.partitions);
    let groups = encode_groups(&rec.groups);
    let epoch = i32::from(rec.producer_epoch);
    let state = rec.state.code();
    let sql = if rec.version == 0 {
        format!("INSERT INTO transactions ({TXN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::int8 + 1, $11) ON CONFLICT (transactional_id) DO NOTHING")
    } else {
        "UPDATE transactions SET producer_id = $2, producer_epoch = $3, state = $4, timeout_ms = $5, partitions = $6, groups_list = $7, txn_start_ms = $8, last_update_ms = $9, version = $10::int8 + 1, next_producer_id = $11 WHERE transactional_id = $1 AND version = $10".to_string()
    };
    let n = tx
        .execute(
            sql.as_str(),
            &[
                &rec.transactional_id,
                &rec.producer_id,
                &epoch,
                &state,
                &rec.timeout_ms,
                &parts,
                &groups,
                &rec.txn_start_ms,
                &rec.last_update_ms,
                &rec.version,
                &rec.next_producer_id,
            ],
        )
        .await?;
    Ok((n == 1).then_some(rec.version + 1))
}

/// Deletes a record at `version` and its staged offsets.
pub(super) async fn delete(tx: &Tx<'_>, id: &str, version: i64) -> TxResult<bool> {
    let n = tx
        .execute(
            "DELETE FROM transactions WHERE transactional_id = $1 AND version = $2",
            &[&id, &version],
        )
        .await?;
    if n == 1 {
        tx.execute(
            "DELETE FROM txn_offsets WHERE transactional_id = $1",
            &[&id],
        )
        .await?;
    }
    Ok(n == 1)
}

/// Stages offsets of a transaction if it is Ongoing under `producer` (its row locked
/// meanwhile, so the coordinator's next change waits for this staging).
pub(super) async fn stage_offsets(
    tx: &Tx<'_>,
    id: &str,
    producer: (i64, i16),
    group: &str,
    offsets: &[CommittedOffset],
) -> TxResult<bool> {
    let epoch = i32::from(producer.1);
    let state = TxnState::Ongoing.code();
    let ongoing = tx
        .query_opt(
            "SELECT 1 FROM transactions WHERE transactional_id = $1 AND producer_id = $2 AND producer_epoch = $3 AND state = $4 FOR SHARE",
            &[&id, &producer.0, &epoch, &state],
        )
        .await?;
    if ongoing.is_none() {
        return Ok(false);
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO txn_offsets (transactional_id, group_id, topic_id, partition, committed_offset, leader_epoch, metadata, commit_time_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (transactional_id, group_id, topic_id, partition) DO UPDATE SET committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch, metadata = excluded.metadata, commit_time_ms = excluded.commit_time_ms",
        )
        .await?;
    for o in offsets {
        tx.execute(
            &stmt,
            &[
                &id,
                &group,
                &o.topic_id,
                &o.partition,
                &o.offset,
                &o.leader_epoch,
                &o.metadata,
                &o.commit_time_ms,
            ],
        )
        .await?;
    }
    Ok(true)
}

/// Commits (copies into `group_offsets`) or drops the staged offsets of a transaction.
pub(super) async fn end_offsets(tx: &Tx<'_>, id: &str, commit: bool) -> TxResult<()> {
    if commit {
        tx.execute(
            "INSERT INTO group_offsets (group_id, topic_id, partition, committed_offset, leader_epoch, metadata, commit_time_ms) SELECT group_id, topic_id, partition, committed_offset, leader_epoch, metadata, commit_time_ms FROM txn_offsets WHERE transactional_id = $1 ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch, metadata = excluded.metadata, commit_time_ms = excluded.commit_time_ms",
            &[&id],
        )
        .await?;
    }
    tx.execute(
        "DELETE FROM txn_offsets WHERE transactional_id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Applies the transaction events of committed appends (rare: one statement each).
pub(super) async fn apply_events(tx: &Tx<'_>, events: &[(Uuid, i32, TxnEvent)]) -> TxResult<()> {
    for (topic, partition, e) in events {
        match *e {
            TxnEvent::Opened {
                producer_id,
                first_offset,
            } => {
                tx.execute("INSERT INTO open_txns (topic_id, partition, producer_id, first_offset) VALUES ($1, $2, $3, $4) ON CONFLICT (topic_id, partition, producer_id) DO NOTHING", &[topic, partition, &producer_id, &first_offset]).await?;
            }
            TxnEvent::Committed { producer_id } => {
                close(tx, *topic, *partition, producer_id).await?
            }
            TxnEvent::Aborted(a) => {
                close(tx, *topic, *partition, a.producer_id).await?;
                tx.execute("INSERT INTO aborted_txns (topic_id, partition, producer_id, first_offset, last_offset) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING", &[topic, partition, &a.producer_id, &a.first_offset, &a.last_offset]).await?;
            }
        }
    }
    Ok(())
}

async fn close(tx: &Tx<'_>, topic: Uuid, partition: i32, producer_id: i64) -> TxResult<()> {
    tx.execute(
        "DELETE FROM open_txns WHERE topic_id = $1 AND partition = $2 AND producer_id = $3",
        &[&topic, &partition, &producer_id],
    )
    .await?;
    Ok(())
}

/// Open and aborted transactions (the latter ending at or after each partition's log
/// start) of the claimed partitions.
pub(super) async fn claimed_txns(
    tx: &Tx<'_>,
    keys: &[(PartitionKey, i64)],
) -> TxResult<HashMap<PartitionKey, PartitionTxns>> {
    let mut out: HashMap<PartitionKey, PartitionTxns> = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let topics: Vec<Uuid> = keys.iter().map(|k| k.0 .0).collect();
    let parts: Vec<i32> = keys.iter().map(|k| k.0 .1).collect();
    let starts: Vec<i64> = keys.iter().map(|k| k.1).collect();
    let open = tx
        .query(
            "SELECT o.topic_id, o.partition, o.producer_id, o.first_offset FROM open_txns o JOIN UNNEST($1::uuid[], $2::int4[]) AS k(topic_id, partition) ON o.topic_id = k.topic_id AND o.partition = k.partition ORDER BY o.first_offset",
            &[&topics, &parts],
        )
        .await?;
    for r in &open {
        out.entry((r.try_get(0)?, r.try_get(1)?))
            .or_default()
            .0
            .push((r.try_get(2)?, r.try_get(3)?));
    }
    let aborted = tx
        .query(
            "SELECT a.topic_id, a.partition, a.producer_id, a.first_offset, a.last_offset FROM aborted_txns a JOIN UNNEST($1::uuid[], $2::int4[], $3::int8[]) AS k(topic_id, partition, start) ON a.topic_id = k.topic_id AND a.partition = k.partition AND a.last_offset >= k.start ORDER BY a.last_offset",
            &[&topics, &parts, &starts],
        )
        .await?;
    for r in &aborted {
        out.entry((r.try_get(0)?, r.try_get(1)?))
            .or_default()
            .1
            .push(AbortedTxn {
                producer_id: r.try_get(2)?,
                first_offset: r.try_get(3)?,
                last_offset: r.try_get(4)?,
            });
    }
    Ok(out)
}
