//! Transactions in SQLite: the coordinator's records (compare-and-set on a version), offsets
//! staged by TxnOffsetCommit, and each partition's open and aborted transactions.

use super::db;
use crate::metadata::{
    decode_groups, decode_partitions, encode_groups, encode_partitions, AbortedTxn,
    CommittedOffset, MetaResult, PartitionKey, PartitionProducers, PartitionTxns, ProducerRecord,
    TxnEvent, TxnRecord, TxnState,
};
use rusqlite::{params, OptionalExtension, Transaction};
use uuid::Uuid;

const TXN_COLUMNS: &str = "transactional_id, producer_id, producer_epoch, state, timeout_ms, partitions, groups_list, txn_start_ms, last_update_ms, version, next_producer_id";

fn txn_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(TxnRecord, i64, String, String)> {
    Ok((
        TxnRecord {
            transactional_id: r.get(0)?,
            producer_id: r.get(1)?,
            producer_epoch: r.get::<_, i64>(2)? as i16,
            state: TxnState::Empty,
            timeout_ms: r.get::<_, i64>(4)? as i32,
            partitions: Vec::new(),
            groups: Vec::new(),
            txn_start_ms: r.get(7)?,
            last_update_ms: r.get(8)?,
            version: r.get(9)?,
            next_producer_id: r.get(10)?,
        },
        r.get(3)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn finish(row: (TxnRecord, i64, String, String)) -> MetaResult<TxnRecord> {
    let (mut rec, state, parts, groups) = row;
    rec.state = TxnState::from_code(state as i16)?;
    rec.partitions = decode_partitions(&parts)?;
    rec.groups = decode_groups(&groups);
    Ok(rec)
}

/// One transactional id's record.
pub(super) fn get(tx: &Transaction<'_>, id: &str) -> MetaResult<Option<TxnRecord>> {
    let row = tx
        .query_row(
            &format!("SELECT {TXN_COLUMNS} FROM transactions WHERE transactional_id = ?1"),
            params![id],
            txn_row,
        )
        .optional()
        .map_err(db)?;
    row.map(finish).transpose()
}

/// Every record.
pub(super) fn list(tx: &Transaction<'_>) -> MetaResult<Vec<TxnRecord>> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {TXN_COLUMNS} FROM transactions ORDER BY transactional_id"
        ))
        .map_err(db)?;
    let rows = stmt.query_map([], txn_row).map_err(db)?;
    let rows: Vec<_> = rows.collect::<Result<_, _>>().map_err(db)?;
    rows.into_iter().map(finish).collect()
}

/// What the coordinators' pass has work for (see `MetadataStore::due_transactions`): three
/// index range reads (`transactions_by_state`, `transactions_by_last_update`).
pub(super) fn due(
    tx: &Transaction<'_>,
    now_ms: i64,
    idle_before_ms: i64,
) -> MetaResult<Vec<TxnRecord>> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {TXN_COLUMNS} FROM transactions WHERE state IN (2, 3) \
             UNION ALL SELECT {TXN_COLUMNS} FROM transactions \
               WHERE state = 1 AND txn_start_ms >= 0 AND txn_start_ms < ?1 - timeout_ms \
             UNION ALL SELECT {TXN_COLUMNS} FROM transactions \
               WHERE last_update_ms < ?2 AND state IN (0, 4, 5) \
             ORDER BY transactional_id"
        ))
        .map_err(db)?;
    let rows = stmt
        .query_map(params![now_ms, idle_before_ms], txn_row)
        .map_err(db)?;
    let rows: Vec<_> = rows.collect::<Result<_, _>>().map_err(db)?;
    rows.into_iter().map(finish).collect()
}

/// Compare-and-set of a record on its version.
pub(super) fn put(tx: &Transaction<'_>, rec: &TxnRecord) -> MetaResult<Option<i64>> {
    let values = params![
        rec.transactional_id,
        rec.producer_id,
        rec.producer_epoch as i64,
        rec.state.code() as i64,
        rec.timeout_ms as i64,
        encode_partitions(&rec.partitions),
        encode_groups(&rec.groups),
        rec.txn_start_ms,
        rec.last_update_ms,
        rec.version,
        rec.next_producer_id,
    ];
    let changed = if rec.version == 0 {
        tx.execute(
            &format!("INSERT INTO transactions ({TXN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 + 1, ?11) ON CONFLICT (transactional_id) DO NOTHING"),
            values,
        )
    } else {
        tx.execute(
            "UPDATE transactions SET producer_id = ?2, producer_epoch = ?3, state = ?4, timeout_ms = ?5, partitions = ?6, groups_list = ?7, txn_start_ms = ?8, last_update_ms = ?9, version = ?10 + 1, next_producer_id = ?11 WHERE transactional_id = ?1 AND version = ?10",
            values,
        )
    }
    .map_err(db)?;
    Ok((changed == 1).then_some(rec.version + 1))
}

/// Deletes a record at `version` and its staged offsets.
pub(super) fn delete(tx: &Transaction<'_>, id: &str, version: i64) -> MetaResult<bool> {
    let n = tx
        .execute(
            "DELETE FROM transactions WHERE transactional_id = ?1 AND version = ?2",
            params![id, version],
        )
        .map_err(db)?;
    if n == 1 {
        tx.execute(
            "DELETE FROM txn_offsets WHERE transactional_id = ?1",
            params![id],
        )
        .map_err(db)?;
    }
    Ok(n == 1)
}

/// Stages offsets of a transaction if it is Ongoing under `producer`.
pub(super) fn stage_offsets(
    tx: &Transaction<'_>,
    id: &str,
    producer: (i64, i16),
    group: &str,
    offsets: &[CommittedOffset],
) -> MetaResult<bool> {
    let ongoing: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM transactions WHERE transactional_id = ?1 AND producer_id = ?2 AND producer_epoch = ?3 AND state = ?4",
            params![id, producer.0, producer.1 as i64, TxnState::Ongoing.code() as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    if ongoing.is_none() {
        return Ok(false);
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO txn_offsets (transactional_id, group_id, topic_id, partition, committed_offset, leader_epoch, metadata, commit_time_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (transactional_id, group_id, topic_id, partition) DO UPDATE SET committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch, metadata = excluded.metadata, commit_time_ms = excluded.commit_time_ms",
        )
        .map_err(db)?;
    for o in offsets {
        stmt.execute(params![
            id,
            group,
            o.topic_id.to_string(),
            o.partition,
            o.offset,
            o.leader_epoch,
            o.metadata,
            o.commit_time_ms
        ])
        .map_err(db)?;
    }
    Ok(true)
}

/// Partitions of a group with staged offsets.
pub(super) fn pending_offsets(tx: &Transaction<'_>, group: &str) -> MetaResult<Vec<PartitionKey>> {
    let mut stmt = tx
        .prepare_cached("SELECT DISTINCT topic_id, partition FROM txn_offsets WHERE group_id = ?1")
        .map_err(db)?;
    let rows = stmt
        .query_map(params![group], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i32>(1)?))
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    rows.into_iter()
        .map(|(t, p)| Ok((Uuid::parse_str(&t).map_err(db)?, p)))
        .collect()
}

/// Commits (copies into `group_offsets`) or drops the staged offsets of a transaction.
pub(super) fn end_offsets(tx: &Transaction<'_>, id: &str, commit: bool) -> MetaResult<()> {
    if commit {
        tx.execute(
            "INSERT INTO group_offsets (group_id, topic_id, partition, committed_offset, leader_epoch, metadata, commit_time_ms) SELECT group_id, topic_id, partition, committed_offset, leader_epoch, metadata, commit_time_ms FROM txn_offsets WHERE transactional_id = ?1 ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch, metadata = excluded.metadata, commit_time_ms = excluded.commit_time_ms",
            params![id],
        )
        .map_err(db)?;
    }
    tx.execute(
        "DELETE FROM txn_offsets WHERE transactional_id = ?1",
        params![id],
    )
    .map_err(db)?;
    Ok(())
}

/// Applies the transaction events of a committed append.
pub(super) fn apply_events(
    tx: &Transaction<'_>,
    topic: &str,
    partition: i32,
    events: &[TxnEvent],
) -> MetaResult<()> {
    for e in events {
        match *e {
            TxnEvent::Opened {
                producer_id,
                first_offset,
            } => {
                tx.prepare_cached("INSERT INTO open_txns (topic_id, partition, producer_id, first_offset) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (topic_id, partition, producer_id) DO NOTHING")
                    .and_then(|mut s| s.execute(params![topic, partition, producer_id, first_offset]))
                    .map_err(db)?;
            }
            TxnEvent::Committed { producer_id } => close(tx, topic, partition, producer_id)?,
            TxnEvent::Aborted(a) => {
                close(tx, topic, partition, a.producer_id)?;
                tx.prepare_cached("INSERT INTO aborted_txns (topic_id, partition, producer_id, first_offset, last_offset) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING")
                    .and_then(|mut s| s.execute(params![topic, partition, a.producer_id, a.first_offset, a.last_offset]))
                    .map_err(db)?;
            }
        }
    }
    Ok(())
}

fn close(tx: &Transaction<'_>, topic: &str, partition: i32, producer_id: i64) -> MetaResult<()> {
    tx.prepare_cached(
        "DELETE FROM open_txns WHERE topic_id = ?1 AND partition = ?2 AND producer_id = ?3",
    )
    .and_then(|mut s| s.execute(params![topic, partition, producer_id]))
    .map_err(db)?;
    Ok(())
}

/// A partition's open transactions and the aborted ones ending at or after `from_offset`.
pub(super) fn partition_txns(
    tx: &Transaction<'_>,
    topic_id: Uuid,
    partition: i32,
    from_offset: i64,
) -> MetaResult<PartitionTxns> {
    let id = topic_id.to_string();
    let mut stmt = tx
        .prepare_cached("SELECT producer_id, first_offset FROM open_txns WHERE topic_id = ?1 AND partition = ?2 ORDER BY first_offset")
        .map_err(db)?;
    let open = stmt
        .query_map(params![id, partition], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    let mut stmt = tx
        .prepare_cached("SELECT producer_id, first_offset, last_offset FROM aborted_txns WHERE topic_id = ?1 AND partition = ?2 AND last_offset >= ?3 ORDER BY last_offset")
        .map_err(db)?;
    let aborted = stmt
        .query_map(params![id, partition, from_offset], aborted_txn)
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    Ok((open, aborted))
}

/// An `aborted_txns` row selected as (producer_id, first_offset, last_offset).
fn aborted_txn(r: &rusqlite::Row<'_>) -> rusqlite::Result<AbortedTxn> {
    Ok(AbortedTxn {
        producer_id: r.get(0)?,
        first_offset: r.get(1)?,
        last_offset: r.get(2)?,
    })
}

/// [`crate::metadata::MetadataStore::txn_read_state`].
pub(super) fn read_state(
    tx: &Transaction<'_>,
    topic_id: Uuid,
    partition: i32,
    from_offset: i64,
    to_offset: i64,
) -> MetaResult<(Option<i64>, Vec<AbortedTxn>)> {
    let id = topic_id.to_string();
    let first: Option<i64> = tx
        .query_row(
            "SELECT MIN(first_offset) FROM open_txns WHERE topic_id = ?1 AND partition = ?2",
            params![id, partition],
            |r| r.get(0),
        )
        .map_err(db)?;
    let mut stmt = tx
        .prepare_cached("SELECT producer_id, first_offset, last_offset FROM aborted_txns WHERE topic_id = ?1 AND partition = ?2 AND last_offset >= ?3 AND first_offset < ?4 ORDER BY first_offset")
        .map_err(db)?;
    let aborted = stmt
        .query_map(params![id, partition, from_offset, to_offset], aborted_txn)
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    Ok((first, aborted))
}

/// [`crate::metadata::MetadataStore::partition_producers`].
pub(super) fn producers(
    tx: &Transaction<'_>,
    topic_id: Uuid,
    partition: i32,
) -> MetaResult<PartitionProducers> {
    let id = topic_id.to_string();
    let mut stmt = tx
        .prepare_cached("SELECT producer_id, producer_epoch, last_sequence, last_offset, last_write_ms FROM producers WHERE topic_id = ?1 AND partition = ?2 ORDER BY producer_id")
        .map_err(db)?;
    let producers = stmt
        .query_map(params![id, partition], |r| {
            Ok(ProducerRecord {
                producer_id: r.get(0)?,
                producer_epoch: r.get::<_, i64>(1)? as i16,
                last_sequence: r.get::<_, i64>(2)? as i32,
                last_offset: r.get(3)?,
                last_write_ms: r.get(4)?,
            })
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    let (open, _) = partition_txns(tx, topic_id, partition, i64::MAX)?;
    Ok((producers, open))
}
