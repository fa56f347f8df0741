//! SQLite implementation of [`MetadataStore`]: the embedded default for one node.
//!
//! One connection behind a mutex, used from `spawn_blocking`; WAL journal with
//! `synchronous=NORMAL`, so a committed transaction survives the process being killed
//! (not an OS crash; see docs/configuration.md). Schema changes are numbered migrations
//! recorded in `PRAGMA user_version`.

mod check;
mod lifecycle;
mod ownership;
mod pins;
mod txn;

use super::*;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// Numbered schema migrations; index + 1 is the schema version after applying it.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE topics (
    topic_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE topic_configs (
    topic_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (topic_id, key)
);
CREATE TABLE partitions (
    topic_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    log_start_offset BIGINT NOT NULL,
    high_watermark BIGINT NOT NULL,
    owner_node INTEGER NOT NULL,
    owner_epoch BIGINT NOT NULL,
    PRIMARY KEY (topic_id, partition)
);
CREATE TABLE objects (
    object_key TEXT PRIMARY KEY,
    size_bytes BIGINT NOT NULL,
    live_bytes BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE batches (
    topic_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    base_offset BIGINT NOT NULL,
    last_offset BIGINT NOT NULL,
    object_key TEXT NOT NULL,
    byte_offset BIGINT NOT NULL,
    byte_len INTEGER NOT NULL,
    max_timestamp BIGINT NOT NULL,
    producer_id BIGINT NOT NULL,
    producer_epoch INTEGER NOT NULL,
    base_sequence INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
);
CREATE INDEX batches_by_last_offset ON batches (topic_id, partition, last_offset);
CREATE INDEX batches_by_producer ON batches (topic_id, partition, producer_id, base_offset);
CREATE TABLE producers (
    topic_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    producer_id BIGINT NOT NULL,
    producer_epoch INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL,
    last_offset BIGINT NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
);
CREATE TABLE producer_id_sequence (next_id BIGINT NOT NULL);
INSERT INTO producer_id_sequence (next_id) VALUES (1000);
"#,
    r#"
CREATE TABLE cluster_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"#,
    r#"
CREATE TABLE group_offsets (
    group_id TEXT NOT NULL,
    topic_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    committed_offset BIGINT NOT NULL,
    leader_epoch INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    commit_time_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, topic_id, partition)
);
CREATE INDEX group_offsets_by_topic ON group_offsets (topic_id);
"#,
    r#"
CREATE TABLE node_leases (
    node_id INTEGER PRIMARY KEY,
    incarnation TEXT NOT NULL,
    az TEXT NOT NULL,
    kafka_addr TEXT NOT NULL,
    cluster_addr TEXT NOT NULL,
    admin_addr TEXT NOT NULL,
    renewed_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
"#,
    r#"
CREATE TABLE lease_generation_seq (next BIGINT NOT NULL);
INSERT INTO lease_generation_seq (next) VALUES (1);
ALTER TABLE node_leases ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE partitions ADD COLUMN owner_generation BIGINT NOT NULL DEFAULT 0;
CREATE INDEX partitions_by_owner ON partitions (owner_node, owner_generation);
CREATE TABLE group_owners (
    group_id TEXT PRIMARY KEY,
    owner_node INTEGER NOT NULL,
    owner_generation BIGINT NOT NULL,
    owner_epoch BIGINT NOT NULL
);
CREATE INDEX group_owners_by_owner ON group_owners (owner_node, owner_generation);
"#,
    r#"
ALTER TABLE objects ADD COLUMN dead_since_ms BIGINT;
ALTER TABLE objects ADD COLUMN deleted_ms BIGINT;
UPDATE objects SET dead_since_ms = created_ms WHERE live_bytes <= 0;
CREATE INDEX objects_dead ON objects (dead_since_ms) WHERE dead_since_ms IS NOT NULL;
CREATE INDEX objects_deleted ON objects (deleted_ms) WHERE deleted_ms IS NOT NULL;
"#,
    r#"
CREATE TABLE partition_pins (
    topic_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    node_id INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition)
);
"#,
    // Producer expiry (ADR 0015): rows that exist now count as written at the upgrade.
    r#"
ALTER TABLE producers ADD COLUMN last_write_ms BIGINT NOT NULL DEFAULT 0;
UPDATE producers SET last_write_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);
CREATE INDEX producers_by_last_write ON producers (last_write_ms);
"#,
    // Transactions (ADR 0018).
    r#"
CREATE TABLE transactions (
    transactional_id TEXT PRIMARY KEY,
    producer_id BIGINT NOT NULL,
    producer_epoch INTEGER NOT NULL,
    state INTEGER NOT NULL,
    timeout_ms INTEGER NOT NULL,
    partitions TEXT NOT NULL,
    groups_list TEXT NOT NULL,
    txn_start_ms BIGINT NOT NULL,
    last_update_ms BIGINT NOT NULL,
    version BIGINT NOT NULL,
    next_producer_id BIGINT NOT NULL
);
CREATE TABLE txn_offsets (
    transactional_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    topic_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    committed_offset BIGINT NOT NULL,
    leader_epoch INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    commit_time_ms BIGINT NOT NULL,
    PRIMARY KEY (transactional_id, group_id, topic_id, partition)
);
CREATE TABLE open_txns (
    topic_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    producer_id BIGINT NOT NULL,
    first_offset BIGINT NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
);
CREATE TABLE aborted_txns (
    topic_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    producer_id BIGINT NOT NULL,
    first_offset BIGINT NOT NULL,
    last_offset BIGINT NOT NULL,
    PRIMARY KEY (topic_id, partition, last_offset)
);
"#,
    // The coordinators' pass reads only the ids it has work for (due_transactions).
    r#"
CREATE INDEX transactions_by_state ON transactions (state);
CREATE INDEX transactions_by_last_update ON transactions (last_update_ms);
"#,
    // Durable consumer groups (ADR 0020).
    r#"
CREATE TABLE group_states (
    group_id TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    updated_ms BIGINT NOT NULL
);
"#,
    // Node drains (ADR 0021).
    r#"
CREATE TABLE node_drains (node_id INTEGER PRIMARY KEY, since_ms BIGINT NOT NULL);
"#,
    // Owner epochs are read by what changed since the last read (partition_epochs).
    r#"
ALTER TABLE partitions ADD COLUMN epoch_changed_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX partitions_by_epoch_change ON partitions (epoch_changed_ms);
"#,
    // Balanced placement (ADR 0022): the balancer's pins, and the nodes' load reports.
    r#"
ALTER TABLE partition_pins ADD COLUMN by_balancer INTEGER NOT NULL DEFAULT 0;
CREATE TABLE node_loads (node_id INTEGER PRIMARY KEY, reported_ms BIGINT NOT NULL, load TEXT NOT NULL);
"#,
];

/// Batches per producer kept for duplicate detection (Kafka keeps 5).
pub(crate) const PRODUCER_BATCHES_KEPT: i64 = 5;

/// The SQLite metadata store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Stops the background checkpointer when the last handle goes.
    _checkpointer: Option<Arc<Checkpointer>>,
}

/// The size the WAL file is cut back to when it restarts (SQLite's `journal_size_limit`).
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// How often the background checkpointer copies the WAL into the database.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Checkpoints the WAL from a thread of its own, so the fsyncs of a checkpoint never stall
/// a metadata commit (SQLite's auto-checkpoint would run inside the committing transaction).
#[derive(Debug)]
struct Checkpointer {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Checkpointer {
    fn start(path: &std::path::Path) -> MetaResult<Self> {
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(CHECKPOINT_INTERVAL);
                    // PASSIVE never blocks writers; frames it cannot copy wait for the next round.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "sqlite checkpoint failed");
                    }
                }
            })
            .map_err(db)?;
        Ok(Self { stop })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn db<E: std::fmt::Display>(e: E) -> MetaError {
    MetaError::Database(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub fn open(path: &std::path::Path) -> MetaResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(db)?;
        }
        let mut store = Self::init(Connection::open(path).map_err(db)?)?;
        {
            let conn = store.conn.lock();
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(db)?;
            // When the WAL restarts after a checkpoint, cut it back to this size: a burst
            // (a large delete, a backlog of commits) must not leave a WAL of gigabytes.
            conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
                .map_err(db)?;
        }
        store._checkpointer = Some(Arc::new(Checkpointer::start(path)?));
        Ok(store)
    }

    /// A private in-memory database (tests).
    pub fn open_in_memory() -> MetaResult<Self> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(mut conn: Connection) -> MetaResult<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "OFF")
            .map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db)?;
        let tx = conn.transaction().map_err(db)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(db)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            _checkpointer: None,
        })
    }

    async fn with_tx<T, F>(&self, f: F) -> MetaResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> MetaResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock();
            // Immediate: the write lock is taken (waiting up to the busy timeout) at BEGIN. A
            // deferred transaction that reads first fails at once with "database is locked"
            // when it upgrades while another connection (an operator's sqlite3, a backup)
            // writes; this connection is the store's only writer, so nothing is serialised
            // that was not already.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db)?;
            let out = f(&tx)?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
        .map_err(db)?
    }
}

fn topic_by_name(tx: &Transaction<'_>, name: &str) -> MetaResult<TopicRecord> {
    let row = tx
        .query_row(
            "SELECT topic_id, partitions FROM topics WHERE name = ?1",
            params![name],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i32>(1)?)),
        )
        .optional()
        .map_err(db)?;
    let (id, partitions) = row.ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
    let id = Uuid::parse_str(&id).map_err(db)?;
    Ok(TopicRecord {
        id,
        name: name.to_string(),
        partitions,
        configs: topic_configs(tx, id)?,
    })
}

fn topic_configs(tx: &Transaction<'_>, id: Uuid) -> MetaResult<BTreeMap<String, String>> {
    let mut stmt = tx
        .prepare_cached("SELECT key, value FROM topic_configs WHERE topic_id = ?1")
        .map_err(db)?;
    let rows = stmt
        .query_map(params![id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

fn insert_partitions(tx: &Transaction<'_>, id: Uuid, from: i32, to: i32) -> MetaResult<()> {
    for p in from..to {
        tx.execute(
            "INSERT INTO partitions (topic_id, partition, log_start_offset, high_watermark, owner_node, owner_epoch) VALUES (?1, ?2, 0, 0, -1, 0)",
            params![id.to_string(), p],
        )
        .map_err(db)?;
    }
    Ok(())
}

const BATCH_COLUMNS: &str = "b.base_offset, b.last_offset, b.object_key, o.size_bytes, b.byte_offset, b.byte_len, b.max_timestamp, b.producer_id, b.producer_epoch, b.base_sequence, b.last_sequence";

fn batch_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BatchCoordinate> {
    Ok(BatchCoordinate {
        base_offset: r.get(0)?,
        last_offset: r.get(1)?,
        object_key: r.get(2)?,
        object_size: r.get::<_, i64>(3)? as u64,
        byte_offset: r.get::<_, i64>(4)? as u64,
        byte_len: r.get::<_, i64>(5)? as u32,
        max_timestamp: r.get(6)?,
        producer_id: r.get(7)?,
        producer_epoch: r.get::<_, i64>(8)? as i16,
        base_sequence: r.get::<_, i64>(9)? as i32,
        last_sequence: r.get::<_, i64>(10)? as i32,
    })
}

fn query_batches(
    tx: &Transaction<'_>,
    sql_tail: &str,
    args: &[&dyn rusqlite::ToSql],
) -> MetaResult<Vec<BatchCoordinate>> {
    let sql = format!(
        "SELECT {BATCH_COLUMNS} FROM batches b JOIN objects o ON o.object_key = b.object_key {sql_tail}"
    );
    let mut stmt = tx.prepare_cached(&sql).map_err(db)?;
    let rows = stmt.query_map(args, batch_row).map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

fn partition_row(
    tx: &Transaction<'_>,
    id: Uuid,
    partition: i32,
) -> MetaResult<Option<(i64, i64, i64)>> {
    tx.prepare_cached(
        "SELECT owner_epoch, log_start_offset, high_watermark FROM partitions WHERE topic_id = ?1 AND partition = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![id.to_string(), partition], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
    })
    .map_err(db)
}

impl SqliteStore {
    /// [`MetadataStore::claim_partitions`] or [`MetadataStore::reload_partitions`], by `mode`.
    async fn claim_in(
        &self,
        claimant: Claimant,
        partitions: Vec<PartitionKey>,
        mode: ClaimMode,
    ) -> MetaResult<Vec<MetaResult<PartitionState>>> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        self.with_tx(move |tx| {
            ownership::check_own_lease(tx, claimant)?;
            let mut seen = std::collections::HashSet::with_capacity(partitions.len());
            partitions
                .into_iter()
                .map(|key| {
                    if !seen.insert(key) {
                        return Ok(Err(listed_twice(key)));
                    }
                    claim_one(tx, key, claimant, mode)
                })
                .collect()
        })
        .await
    }
}

/// Claims one partition of a batch: its state, or why it was refused (the outer error is
/// a failure of the whole transaction).
fn claim_one(
    tx: &Transaction<'_>,
    (topic_id, partition): PartitionKey,
    claimant: Claimant,
    mode: ClaimMode,
) -> MetaResult<MetaResult<PartitionState>> {
    match ownership::claim_partition_row(tx, topic_id, partition, claimant, mode) {
        Ok(()) => claimed_state(tx, topic_id, partition).map(Ok),
        Err(e @ (MetaError::OwnedElsewhere { .. } | MetaError::UnknownPartition(..))) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

/// The state of a partition just claimed: offsets, owner epoch, producers and each
/// producer's most recent batches.
fn claimed_state(
    tx: &Transaction<'_>,
    topic_id: Uuid,
    partition: i32,
) -> MetaResult<PartitionState> {
    let id = topic_id.to_string();
    let (owner_epoch, log_start_offset, high_watermark) =
        partition_row(tx, topic_id, partition)?
            .ok_or(MetaError::UnknownPartition(topic_id, partition))?;
    let producers: Vec<ProducerRecord> = {
        let mut stmt = tx
            .prepare_cached("SELECT producer_id, producer_epoch, last_sequence, last_offset, last_write_ms FROM producers WHERE topic_id = ?1 AND partition = ?2")
            .map_err(db)?;
        let rows = stmt
            .query_map(params![id, partition], |r| {
                Ok(ProducerRecord {
                    producer_id: r.get(0)?,
                    producer_epoch: r.get::<_, i64>(1)? as i16,
                    last_sequence: r.get::<_, i64>(2)? as i32,
                    last_offset: r.get(3)?,
                    last_write_ms: r.get(4)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)?
    };
    let mut producer_batches = Vec::new();
    for p in &producers {
        let mut recent = query_batches(
            tx,
            "WHERE b.topic_id = ?1 AND b.partition = ?2 AND b.producer_id = ?3 ORDER BY b.base_offset DESC LIMIT ?4",
            &[&id, &partition, &p.producer_id, &PRODUCER_BATCHES_KEPT],
        )?;
        recent.reverse();
        producer_batches.extend(recent);
    }
    let (open_txns, aborted_txns) = txn::partition_txns(tx, topic_id, partition, log_start_offset)?;
    Ok(PartitionState {
        owner_epoch,
        log_start_offset,
        high_watermark,
        producers,
        producer_batches,
        open_txns,
        aborted_txns,
    })
}

/// Subtracts the bytes of the batches selected by `filter` from their objects' live bytes,
/// and marks the time an object lost its last live byte (the start of its grace period).
fn release_object_bytes(
    tx: &Transaction<'_>,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> MetaResult<()> {
    // One pass over the selected batches, grouped by object: a correlated subquery per
    // object would scan the batches once per object (minutes for a large topic, with the
    // store's one connection held all along).
    let sql = format!(
        "UPDATE objects SET live_bytes = objects.live_bytes - freed.bytes, \
         dead_since_ms = CASE WHEN objects.live_bytes - freed.bytes <= 0 THEN {now} ELSE NULL END \
         FROM (SELECT b.object_key AS object_key, SUM(b.byte_len) AS bytes FROM batches b \
               WHERE {filter} GROUP BY b.object_key) AS freed \
         WHERE objects.object_key = freed.object_key",
        now = crate::now_ms()
    );
    tx.execute(&sql, args).map_err(db)?;
    Ok(())
}

/// Records `bytes` more live bytes of an object (creating its row). An object marked deleted
/// is never revived: the whole transaction fails instead.
fn store_object(
    tx: &Transaction<'_>,
    key: &str,
    size: u64,
    bytes: i64,
    now: i64,
) -> MetaResult<()> {
    let stored = tx
        .prepare_cached(
            "INSERT INTO objects (object_key, size_bytes, live_bytes, created_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (object_key) DO UPDATE SET live_bytes = objects.live_bytes + excluded.live_bytes, dead_since_ms = NULL WHERE objects.deleted_ms IS NULL",
        )
        .and_then(|mut s| s.execute(params![key, size as i64, bytes, now]))
        .map_err(db)?;
    if stored == 0 {
        return Err(MetaError::ObjectDeleted(key.to_string()));
    }
    Ok(())
}

/// Inserts one batch row.
fn insert_batch(
    tx: &Transaction<'_>,
    topic: &str,
    partition: i32,
    b: &BatchCoordinate,
) -> MetaResult<()> {
    debug_assert!(b.last_offset >= b.base_offset);
    tx.prepare_cached(
        "INSERT INTO batches (topic_id, partition, base_offset, last_offset, object_key, byte_offset, byte_len, max_timestamp, producer_id, producer_epoch, base_sequence, last_sequence) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut s| {
        s.execute(params![
            topic,
            partition,
            b.base_offset,
            b.last_offset,
            b.object_key,
            b.byte_offset as i64,
            b.byte_len as i64,
            b.max_timestamp,
            b.producer_id,
            b.producer_epoch as i64,
            b.base_sequence as i64,
            b.last_sequence as i64
        ])
    })
    .map_err(db)?;
    Ok(())
}

fn commit_one(tx: &Transaction<'_>, a: &PartitionAppend) -> MetaResult<AppendOutcome> {
    let Some((epoch, _, hwm)) = partition_row(tx, a.topic_id, a.partition)? else {
        return Ok(AppendOutcome::UnknownPartition);
    };
    if epoch != a.owner_epoch {
        return Ok(AppendOutcome::Fenced);
    }
    let (Some(first), Some(end)) = (a.batches.first(), a.end_offset()) else {
        return Ok(AppendOutcome::Committed);
    };
    if first.base_offset != hwm {
        return Ok(AppendOutcome::OffsetMismatch {
            high_watermark: hwm,
        });
    }
    let topic = a.topic_id.to_string();
    let now = crate::now_ms();
    // One upsert per object, not per batch: an append's batches usually share one object.
    let mut live: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
    for b in &a.batches {
        let e = live.entry(&b.object_key).or_insert((b.object_size, 0));
        e.1 += b.byte_len as i64;
    }
    for (key, (size, bytes)) in live {
        store_object(tx, key, size, bytes, now)?;
    }
    for b in &a.batches {
        insert_batch(tx, &topic, a.partition, b)?;
    }
    for p in &a.producers {
        tx.prepare_cached(
            "INSERT INTO producers (topic_id, partition, producer_id, producer_epoch, last_sequence, last_offset, last_write_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (topic_id, partition, producer_id) DO UPDATE SET producer_epoch = excluded.producer_epoch, last_sequence = excluded.last_sequence, last_offset = excluded.last_offset, last_write_ms = excluded.last_write_ms",
        )
        .and_then(|mut s| {
            s.execute(params![
                topic,
                a.partition,
                p.producer_id,
                p.producer_epoch as i64,
                p.last_sequence as i64,
                p.last_offset,
                p.last_write_ms
            ])
        })
        .map_err(db)?;
    }
    txn::apply_events(tx, &topic, a.partition, &a.txn_events)?;
    tx.prepare_cached(
        "UPDATE partitions SET high_watermark = ?3 WHERE topic_id = ?1 AND partition = ?2",
    )
    .and_then(|mut s| s.execute(params![topic, a.partition, end]))
    .map_err(db)?;
    Ok(AppendOutcome::Committed)
}

#[async_trait::async_trait]
impl MetadataStore for SqliteStore {
    async fn create_topic(&self, t: NewTopic) -> MetaResult<TopicRecord> {
        if t.partitions < 1 {
            return Err(MetaError::Invalid(
                "partition count must be at least 1".into(),
            ));
        }
        self.with_tx(move |tx| {
            let exists: Option<i64> = tx
                .query_row("SELECT 1 FROM topics WHERE name = ?1", params![t.name], |r| r.get(0))
                .optional()
                .map_err(db)?;
            if exists.is_some() {
                return Err(MetaError::TopicExists(t.name));
            }
            let id = Uuid::new_v4();
            tx.execute(
                "INSERT INTO topics (topic_id, name, partitions, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id.to_string(), t.name, t.partitions, crate::now_ms()],
            )
            .map_err(db)?;
            for (k, v) in &t.configs {
                tx.execute(
                    "INSERT INTO topic_configs (topic_id, key, value) VALUES (?1, ?2, ?3)",
                    params![id.to_string(), k, v],
                )
                .map_err(db)?;
            }
            insert_partitions(tx, id, 0, t.partitions)?;
            Ok(TopicRecord {
                id,
                name: t.name,
                partitions: t.partitions,
                configs: t.configs,
            })
        })
        .await
    }

    async fn delete_topic(&self, name: &str) -> MetaResult<TopicRecord> {
        let name = name.to_string();
        self.with_tx(move |tx| {
            let t = topic_by_name(tx, &name)?;
            let id = t.id.to_string();
            release_object_bytes(tx, "b.topic_id = ?1", &[&id])?;
            for table in [
                "batches",
                "producers",
                "partitions",
                "topic_configs",
                "topics",
                "group_offsets",
                "partition_pins",
                "open_txns",
                "aborted_txns",
                "txn_offsets",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE topic_id = ?1"),
                    params![id],
                )
                .map_err(db)?;
            }
            // Its pins went with it.
            pins::bump_pins_version(tx)?;
            Ok(t)
        })
        .await
    }

    async fn list_topics(&self) -> MetaResult<Vec<TopicRecord>> {
        self.with_tx(|tx| {
            let names: Vec<String> = {
                let mut stmt = tx
                    .prepare("SELECT name FROM topics ORDER BY name")
                    .map_err(db)?;
                let rows = stmt.query_map([], |r| r.get(0)).map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)?
            };
            names.iter().map(|n| topic_by_name(tx, n)).collect()
        })
        .await
    }

    async fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> MetaResult<TopicRecord> {
        let name = name.to_string();
        self.with_tx(move |tx| {
            let t = topic_by_name(tx, &name)?;
            for (k, v) in changes {
                match v {
                    Some(v) => tx.execute(
                        "INSERT INTO topic_configs (topic_id, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (topic_id, key) DO UPDATE SET value = excluded.value",
                        params![t.id.to_string(), k, v],
                    ),
                    None => tx.execute(
                        "DELETE FROM topic_configs WHERE topic_id = ?1 AND key = ?2",
                        params![t.id.to_string(), k],
                    ),
                }
                .map_err(db)?;
            }
            topic_by_name(tx, &name)
        })
        .await
    }

    async fn create_partitions(&self, name: &str, total: i32) -> MetaResult<TopicRecord> {
        let name = name.to_string();
        self.with_tx(move |tx| {
            let t = topic_by_name(tx, &name)?;
            if total <= t.partitions {
                return Err(MetaError::Invalid(format!(
                    "topic {name} has {} partitions; the new count {total} must be larger",
                    t.partitions
                )));
            }
            insert_partitions(tx, t.id, t.partitions, total)?;
            tx.execute(
                "UPDATE topics SET partitions = ?2 WHERE topic_id = ?1",
                params![t.id.to_string(), total],
            )
            .map_err(db)?;
            topic_by_name(tx, &name)
        })
        .await
    }

    async fn claim_partitions(
        &self,
        claimant: Claimant,
        partitions: Vec<PartitionKey>,
    ) -> MetaResult<Vec<MetaResult<PartitionState>>> {
        self.claim_in(claimant, partitions, ClaimMode::Take).await
    }

    async fn reload_partitions(
        &self,
        claimant: Claimant,
        partitions: Vec<PartitionKey>,
    ) -> MetaResult<Vec<MetaResult<PartitionState>>> {
        self.claim_in(claimant, partitions, ClaimMode::Reload).await
    }

    async fn release_partitions(
        &self,
        claimant: Claimant,
        partitions: Vec<PartitionKey>,
    ) -> MetaResult<u64> {
        self.with_tx(move |tx| ownership::release_partitions(tx, claimant, &partitions))
            .await
    }

    async fn owned_partitions(&self, claimant: Claimant) -> MetaResult<Vec<PartitionKey>> {
        self.with_tx(move |tx| ownership::owned_partitions(tx, claimant))
            .await
    }

    async fn claim_group(&self, group: &str, claimant: Claimant) -> MetaResult<i64> {
        let group = group.to_string();
        self.with_tx(move |tx| ownership::claim_group(tx, &group, claimant))
            .await
    }

    async fn release_groups(&self, claimant: Claimant, groups: Vec<String>) -> MetaResult<u64> {
        self.with_tx(move |tx| ownership::release_groups(tx, claimant, &groups))
            .await
    }

    async fn owned_groups(&self, claimant: Claimant) -> MetaResult<Vec<String>> {
        self.with_tx(move |tx| ownership::owned_groups(tx, claimant))
            .await
    }

    async fn commit_appends(
        &self,
        appends: Vec<PartitionAppend>,
    ) -> MetaResult<Vec<AppendOutcome>> {
        self.with_tx(move |tx| appends.iter().map(|a| commit_one(tx, a)).collect())
            .await
    }

    async fn read_batches(
        &self,
        topic_id: Uuid,
        partition: i32,
        from_offset: i64,
        max_bytes: u64,
    ) -> MetaResult<Vec<BatchCoordinate>> {
        self.with_tx(move |tx| {
            let id = topic_id.to_string();
            let mut out = Vec::new();
            let mut bytes = 0u64;
            let mut from = from_offset;
            // Page through so a large max_bytes does not load the whole partition at once.
            loop {
                let page = query_batches(
                    tx,
                    "WHERE b.topic_id = ?1 AND b.partition = ?2 AND b.last_offset >= ?3 ORDER BY b.base_offset LIMIT 256",
                    &[&id, &partition, &from],
                )?;
                let full = page.len() == 256;
                for b in page {
                    if !out.is_empty() && bytes + b.byte_len as u64 > max_bytes {
                        return Ok(out);
                    }
                    bytes += b.byte_len as u64;
                    from = b.last_offset + 1;
                    out.push(b);
                }
                if !full || bytes >= max_bytes {
                    return Ok(out);
                }
            }
        })
        .await
    }

    async fn batch_for_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        timestamp: i64,
    ) -> MetaResult<Option<BatchCoordinate>> {
        self.with_tx(move |tx| {
            let id = topic_id.to_string();
            Ok(query_batches(
                tx,
                "WHERE b.topic_id = ?1 AND b.partition = ?2 AND b.max_timestamp >= ?3 ORDER BY b.base_offset LIMIT 1",
                &[&id, &partition, &timestamp],
            )?
            .pop())
        })
        .await
    }

    async fn batch_with_max_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> MetaResult<Option<BatchCoordinate>> {
        self.with_tx(move |tx| {
            let id = topic_id.to_string();
            Ok(query_batches(
                tx,
                "WHERE b.topic_id = ?1 AND b.partition = ?2 ORDER BY b.max_timestamp DESC, b.base_offset ASC LIMIT 1",
                &[&id, &partition],
            )?
            .pop())
        })
        .await
    }

    async fn partition_sizes(&self, partitions: Vec<PartitionKey>) -> MetaResult<Vec<u64>> {
        self.with_tx(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT COALESCE(SUM(byte_len), 0) FROM batches WHERE topic_id = ?1 AND partition = ?2",
                )
                .map_err(db)?;
            partitions
                .iter()
                .map(|(id, p)| {
                    stmt.query_row(params![id.to_string(), p], |r| r.get::<_, i64>(0))
                        .map(|n| n.max(0) as u64)
                        .map_err(db)
                })
                .collect()
        })
        .await
    }

    async fn partition_epochs(&self, since_ms: i64) -> MetaResult<EpochChanges> {
        self.with_tx(move |tx| {
            // One writer at a time here: a change is committed before this read or after it.
            let as_of_ms = crate::now_ms();
            let mut stmt = tx
                .prepare_cached(
                    "SELECT topic_id, partition, owner_epoch FROM partitions WHERE epoch_changed_ms >= ?1",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([since_ms], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i32>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(db)?;
            let mut epochs = Vec::new();
            for row in rows {
                let (id, partition, epoch) = row.map_err(db)?;
                epochs.push(((Uuid::parse_str(&id).map_err(db)?, partition), epoch));
            }
            Ok(EpochChanges { epochs, as_of_ms })
        })
        .await
    }

    async fn set_partition_pins(&self, pins: Vec<(PartitionKey, Option<i32>)>) -> MetaResult<()> {
        self.with_tx(move |tx| pins::set_operator_pins(tx, pins))
            .await
    }

    async fn partition_pins(&self) -> MetaResult<Vec<PartitionPin>> {
        self.with_tx(pins::all_pins).await
    }

    async fn claim_balancer_epoch(&self) -> MetaResult<i64> {
        self.with_tx(pins::claim_balancer_epoch).await
    }

    async fn set_balancer_pins(
        &self,
        epoch: i64,
        pins: Vec<(PartitionKey, Option<i32>)>,
    ) -> MetaResult<usize> {
        self.with_tx(move |tx| pins::set_balancer_pins(tx, epoch, pins))
            .await
    }

    async fn report_load(&self, node_id: i32, load: Vec<(PartitionKey, u64)>) -> MetaResult<()> {
        self.with_tx(move |tx| pins::report_load(tx, node_id, &load))
            .await
    }

    async fn node_loads(&self) -> MetaResult<Vec<NodeLoad>> {
        self.with_tx(pins::node_loads).await
    }

    async fn delete_records(
        &self,
        topic_id: Uuid,
        partition: i32,
        owner_epoch: i64,
        offset: i64,
    ) -> MetaResult<i64> {
        self.with_tx(move |tx| {
            let (epoch, start, hwm) = partition_row(tx, topic_id, partition)?
                .ok_or(MetaError::UnknownPartition(topic_id, partition))?;
            if epoch != owner_epoch {
                return Err(MetaError::Fenced(topic_id, partition));
            }
            if offset > hwm || offset < 0 {
                return Err(MetaError::Invalid(format!(
                    "offset {offset} is outside [0, {hwm}]"
                )));
            }
            let new_start = start.max(offset);
            let id = topic_id.to_string();
            let filter = "b.topic_id = ?1 AND b.partition = ?2 AND b.last_offset < ?3";
            release_object_bytes(tx, filter, &[&id, &partition, &new_start])?;
            tx.execute(
                "DELETE FROM batches WHERE topic_id = ?1 AND partition = ?2 AND last_offset < ?3",
                params![id, partition, new_start],
            )
            .map_err(db)?;
            // Aborted transactions wholly below the log start have nothing left to filter.
            tx.execute(
                "DELETE FROM aborted_txns WHERE topic_id = ?1 AND partition = ?2 AND last_offset < ?3",
                params![id, partition, new_start],
            )
            .map_err(db)?;
            tx.execute(
                "UPDATE partitions SET log_start_offset = ?3 WHERE topic_id = ?1 AND partition = ?2",
                params![id, partition, new_start],
            )
            .map_err(db)?;
            Ok(new_start)
        })
        .await
    }

    async fn commit_offsets(
        &self,
        group: &str,
        owner_epoch: i64,
        offsets: Vec<CommittedOffset>,
    ) -> MetaResult<()> {
        let group = group.to_string();
        self.with_tx(move |tx| {
            ownership::check_group_epoch(tx, &group, owner_epoch)?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO group_offsets (group_id, topic_id, partition, committed_offset, leader_epoch, metadata, commit_time_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch, metadata = excluded.metadata, commit_time_ms = excluded.commit_time_ms",
                )
                .map_err(db)?;
            for o in &offsets {
                stmt.execute(params![
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
            Ok(())
        })
        .await
    }

    async fn fetch_offsets(&self, group: &str) -> MetaResult<Vec<CommittedOffset>> {
        let group = group.to_string();
        self.with_tx(move |tx| {
            let mut stmt = tx
                .prepare_cached("SELECT topic_id, partition, committed_offset, leader_epoch, metadata, commit_time_ms FROM group_offsets WHERE group_id = ?1 ORDER BY topic_id, partition")
                .map_err(db)?;
            let rows = stmt
                .query_map(params![group], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        CommittedOffset {
                            topic_id: Uuid::nil(),
                            partition: r.get(1)?,
                            offset: r.get(2)?,
                            leader_epoch: r.get(3)?,
                            metadata: r.get(4)?,
                            commit_time_ms: r.get(5)?,
                        },
                    ))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, mut o) = row.map_err(db)?;
                o.topic_id = Uuid::parse_str(&id).map_err(db)?;
                out.push(o);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_offsets(
        &self,
        group: &str,
        which: Option<Vec<(Uuid, i32)>>,
    ) -> MetaResult<u64> {
        let group = group.to_string();
        self.with_tx(move |tx| {
            let n = match which {
                None => tx
                    .execute("DELETE FROM group_offsets WHERE group_id = ?1", params![group])
                    .map_err(db)?,
                Some(list) => {
                    let mut n = 0;
                    for (t, p) in list {
                        n += tx
                            .execute(
                                "DELETE FROM group_offsets WHERE group_id = ?1 AND topic_id = ?2 AND partition = ?3",
                                params![group, t.to_string(), p],
                            )
                            .map_err(db)?;
                    }
                    n
                }
            };
            Ok(n as u64)
        })
        .await
    }

    async fn offset_groups(&self) -> MetaResult<Vec<String>> {
        self.with_tx(|tx| {
            let mut stmt = tx
                .prepare_cached("SELECT group_id FROM group_offsets UNION SELECT group_id FROM group_states ORDER BY group_id")
                .map_err(db)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
        .await
    }

    async fn save_group_state(
        &self,
        group: &str,
        owner_epoch: i64,
        state: Option<Vec<u8>>,
    ) -> MetaResult<()> {
        let group = group.to_string();
        self.with_tx(move |tx| {
            ownership::check_group_epoch(tx, &group, owner_epoch)?;
            match state {
                Some(state) => tx.execute(
                    "INSERT INTO group_states (group_id, state, updated_ms) VALUES (?1, ?2, ?3) ON CONFLICT (group_id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
                    params![group, state, crate::now_ms()],
                ),
                None => tx.execute("DELETE FROM group_states WHERE group_id = ?1", params![group]),
            }
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn load_group_state(&self, group: &str) -> MetaResult<Option<Vec<u8>>> {
        let group = group.to_string();
        self.with_tx(move |tx| {
            tx.query_row(
                "SELECT state FROM group_states WHERE group_id = ?1",
                params![group],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn retention_offsets(&self, queries: Vec<RetentionQuery>) -> MetaResult<Vec<i64>> {
        self.with_tx(move |tx| {
            queries
                .iter()
                .map(|q| lifecycle::retention_offset(tx, q))
                .collect()
        })
        .await
    }

    async fn retire_dead_objects(&self, q: DeadObjects) -> MetaResult<Vec<String>> {
        self.with_tx(move |tx| lifecycle::retire_dead_objects(tx, q))
            .await
    }

    async fn confirm_deleted(&self, keys: Vec<String>) -> MetaResult<()> {
        self.with_tx(move |tx| lifecycle::confirm_deleted(tx, &keys))
            .await
    }

    async fn retire_orphans(&self, keys: Vec<String>) -> MetaResult<Vec<String>> {
        self.with_tx(move |tx| lifecycle::retire_orphans(tx, &keys))
            .await
    }

    async fn merge_candidates(
        &self,
        partition: PartitionKey,
        prefix: &str,
        min_age_ms: i64,
        max_bytes: u64,
    ) -> MetaResult<Vec<BatchCoordinate>> {
        let prefix = prefix.to_string();
        self.with_tx(move |tx| {
            lifecycle::merge_candidates(tx, partition, &prefix, min_age_ms, max_bytes)
        })
        .await
    }

    async fn rewrite_batches(&self, rewrite: BatchRewrite) -> MetaResult<RewriteOutcome> {
        self.with_tx(move |tx| lifecycle::rewrite_batches(tx, &rewrite))
            .await
    }

    async fn object_stats(&self) -> MetaResult<ObjectStats> {
        self.with_tx(lifecycle::object_stats).await
    }

    async fn expire_producers(&self, idle_ms: i64, limit: usize) -> MetaResult<u64> {
        self.with_tx(move |tx| lifecycle::expire_producers(tx, idle_ms, limit))
            .await
    }

    async fn objects_page(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> MetaResult<Vec<StoredObject>> {
        self.with_tx(move |tx| check::objects_page(tx, after.as_deref(), limit))
            .await
    }

    async fn batches_page(
        &self,
        after: Option<BatchCursor>,
        limit: usize,
    ) -> MetaResult<Vec<StoredBatch>> {
        self.with_tx(move |tx| check::batches_page(tx, after, limit))
            .await
    }

    async fn recount_live_bytes(
        &self,
        keys: Vec<String>,
        fix: bool,
    ) -> MetaResult<Vec<LiveBytesMismatch>> {
        self.with_tx(move |tx| check::recount_live_bytes(tx, &keys, fix))
            .await
    }

    async fn cluster_id(&self) -> MetaResult<String> {
        self.with_tx(|tx| {
            let candidate = new_cluster_id();
            tx.execute(
                "INSERT INTO cluster_settings (key, value) VALUES ('cluster.id', ?1) ON CONFLICT (key) DO NOTHING",
                params![candidate],
            )
            .map_err(db)?;
            tx.query_row("SELECT value FROM cluster_settings WHERE key = 'cluster.id'", [], |r| r.get(0))
                .map_err(db)
        })
        .await
    }

    async fn allocate_producer_id(&self) -> MetaResult<i64> {
        self.with_tx(|tx| {
            tx.query_row(
                "UPDATE producer_id_sequence SET next_id = next_id + 1 RETURNING next_id - 1",
                [],
                |r| r.get(0),
            )
            .map_err(db)
        })
        .await
    }

    async fn renew_lease(&self, lease: &NodeLease, ttl_ms: i64) -> MetaResult<LeaseView> {
        let lease = lease.clone();
        self.with_tx(move |tx| renew_lease_tx(tx, &lease, ttl_ms))
            .await
    }

    async fn release_lease(&self, node_id: i32, incarnation: Uuid) -> MetaResult<()> {
        self.with_tx(move |tx| {
            tx.execute(
                "DELETE FROM node_leases WHERE node_id = ?1 AND incarnation = ?2",
                params![node_id, incarnation.to_string()],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn get_transaction(&self, transactional_id: &str) -> MetaResult<Option<TxnRecord>> {
        let id = transactional_id.to_string();
        self.with_tx(move |tx| txn::get(tx, &id)).await
    }

    async fn put_transaction(&self, rec: TxnRecord) -> MetaResult<Option<i64>> {
        self.with_tx(move |tx| txn::put(tx, &rec)).await
    }

    async fn list_transactions(&self) -> MetaResult<Vec<TxnRecord>> {
        self.with_tx(txn::list).await
    }

    async fn due_transactions(
        &self,
        now_ms: i64,
        idle_before_ms: i64,
    ) -> MetaResult<Vec<TxnRecord>> {
        self.with_tx(move |tx| txn::due(tx, now_ms, idle_before_ms))
            .await
    }

    async fn delete_transaction(&self, transactional_id: &str, version: i64) -> MetaResult<bool> {
        let id = transactional_id.to_string();
        self.with_tx(move |tx| txn::delete(tx, &id, version)).await
    }

    async fn stage_txn_offsets(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        group: &str,
        offsets: Vec<CommittedOffset>,
    ) -> MetaResult<bool> {
        let (id, group) = (transactional_id.to_string(), group.to_string());
        self.with_tx(move |tx| txn::stage_offsets(tx, &id, producer, &group, &offsets))
            .await
    }

    async fn pending_txn_offsets(&self, group: &str) -> MetaResult<Vec<PartitionKey>> {
        let group = group.to_string();
        self.with_tx(move |tx| txn::pending_offsets(tx, &group))
            .await
    }

    async fn txn_read_state(
        &self,
        topic_id: Uuid,
        partition: i32,
        from_offset: i64,
        to_offset: i64,
    ) -> MetaResult<(Option<i64>, Vec<AbortedTxn>)> {
        self.with_tx(move |tx| txn::read_state(tx, topic_id, partition, from_offset, to_offset))
            .await
    }

    async fn partition_producers(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> MetaResult<PartitionProducers> {
        self.with_tx(move |tx| txn::producers(tx, topic_id, partition))
            .await
    }

    async fn end_txn_offsets(&self, transactional_id: &str, commit: bool) -> MetaResult<()> {
        let id = transactional_id.to_string();
        self.with_tx(move |tx| txn::end_offsets(tx, &id, commit))
            .await
    }

    async fn nodes(&self) -> MetaResult<Vec<NodeStatus>> {
        self.with_tx(|tx| all_nodes(tx, crate::now_ms())).await
    }

    async fn set_node_draining(&self, node_id: i32, draining: bool) -> MetaResult<bool> {
        self.with_tx(move |tx| {
            let changed = if draining {
                tx.execute(
                    "INSERT INTO node_drains (node_id, since_ms) VALUES (?1, ?2) \
                     ON CONFLICT (node_id) DO NOTHING",
                    params![node_id, crate::now_ms()],
                )
            } else {
                tx.execute(
                    "DELETE FROM node_drains WHERE node_id = ?1",
                    params![node_id],
                )
            };
            Ok(changed.map_err(db)? > 0)
        })
        .await
    }

    async fn draining_nodes(&self) -> MetaResult<Vec<i32>> {
        self.with_tx(draining_tx).await
    }
}

/// Registers or renews a lease (see PostgreSQL's `renew_lease_tx` for the rules).
fn renew_lease_tx(tx: &Transaction<'_>, lease: &NodeLease, ttl_ms: i64) -> MetaResult<LeaseView> {
    let now = crate::now_ms();
    tx.execute(
        "DELETE FROM node_leases WHERE expires_ms < ?1",
        params![now - EXPIRED_LEASE_KEPT_MS],
    )
    .map_err(db)?;
    let before: Option<(String, i64, i64)> = tx
        .query_row(
            "SELECT incarnation, expires_ms, generation FROM node_leases WHERE node_id = ?1",
            params![lease.node_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db)?;
    let mine = lease.incarnation.to_string();
    let (generation, lapsed) = match before {
        Some((inc, expires, _)) if inc != mine && expires > now => {
            return Err(MetaError::LeaseHeld {
                node_id: lease.node_id,
                expires_in_ms: expires - now,
            })
        }
        Some((inc, expires, generation)) if inc == mine && generation > 0 => {
            (generation, expires <= now)
        }
        _ => (ownership::next_generation(tx)?, false),
    };
    tx.execute(
        "INSERT INTO node_leases (node_id, incarnation, az, kafka_addr, cluster_addr, admin_addr, renewed_ms, expires_ms, generation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (node_id) DO UPDATE SET incarnation = excluded.incarnation, az = excluded.az,
             kafka_addr = excluded.kafka_addr, cluster_addr = excluded.cluster_addr,
             admin_addr = excluded.admin_addr, renewed_ms = excluded.renewed_ms,
             expires_ms = excluded.expires_ms, generation = excluded.generation",
        params![
            lease.node_id,
            mine,
            lease.az,
            lease.kafka_addr,
            lease.cluster_addr,
            lease.admin_addr,
            now,
            now + ttl_ms,
            generation
        ],
    )
    .map_err(db)?;
    Ok(LeaseView {
        generation,
        lapsed,
        nodes: all_nodes(tx, now)?,
        draining: draining_tx(tx)?,
        pins_version: pins::pins_version(tx)?,
    })
}

/// The node ids marked draining, in order.
fn draining_tx(tx: &Transaction<'_>) -> MetaResult<Vec<i32>> {
    let mut stmt = tx
        .prepare_cached("SELECT node_id FROM node_drains ORDER BY node_id")
        .map_err(db)?;
    let rows = stmt.query_map([], |r| r.get::<_, i32>(0)).map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

fn all_nodes(tx: &Transaction<'_>, now: i64) -> MetaResult<Vec<NodeStatus>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT node_id, incarnation, az, kafka_addr, cluster_addr, admin_addr, renewed_ms, expires_ms
             FROM node_leases ORDER BY node_id",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (node_id, inc, az, kafka_addr, cluster_addr, admin_addr, renewed, expires) =
            row.map_err(db)?;
        let incarnation = Uuid::parse_str(&inc).map_err(db)?;
        let lease = NodeLease {
            node_id,
            incarnation,
            az,
            kafka_addr,
            cluster_addr,
            admin_addr,
        };
        out.push(NodeStatus::from_row(lease, renewed, expires, now));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_passes_the_conformance_suite() {
        conformance::run_all(Arc::new(SqliteStore::open_in_memory().unwrap())).await;
    }

    /// Live bytes of every object, by key.
    fn live_bytes(s: &SqliteStore) -> Vec<(String, i64)> {
        let conn = s.conn.lock();
        let mut stmt = conn
            .prepare("SELECT object_key, live_bytes FROM objects ORDER BY object_key")
            .unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[tokio::test]
    async fn deletions_release_the_bytes_of_the_batches_they_drop() {
        let s = SqliteStore::open_in_memory().unwrap();
        let t = s
            .create_topic(NewTopic {
                name: "t".into(),
                partitions: 1,
                configs: Default::default(),
            })
            .await
            .unwrap();
        let st = s
            .claim_partition(t.id, 0, Claimant::alone(1))
            .await
            .unwrap();
        // Offsets 0-1 and 2-3 in object a, 4-5 in object b; 100 bytes each.
        let batches = vec![
            conformance::batch(0, 1, "a", 0, (-1, -1, -1)),
            conformance::batch(2, 3, "a", 100, (-1, -1, -1)),
            conformance::batch(4, 5, "b", 0, (-1, -1, -1)),
        ];
        let append = PartitionAppend {
            topic_id: t.id,
            partition: 0,
            owner_epoch: st.owner_epoch,
            batches,
            producers: vec![],
            txn_events: Vec::new(),
        };
        s.commit_appends(vec![append]).await.unwrap();
        let before = live_bytes(&s);
        s.delete_records(t.id, 0, st.owner_epoch, 2).await.unwrap();
        let after_records = live_bytes(&s);
        s.delete_topic("t").await.unwrap();
        let after_topic = live_bytes(&s);
        let drop = |v: &[(String, i64)], key: &str, by: i64| -> Vec<(String, i64)> {
            v.iter()
                .map(|(k, n)| (k.clone(), if k == key { n - by } else { *n }))
                .collect()
        };
        assert_eq!(after_records, drop(&before, "a", 100), "offsets 0-1 freed");
        assert_eq!(
            after_topic,
            drop(&drop(&after_records, "a", 100), "b", 100),
            "the rest freed"
        );
    }

    #[tokio::test]
    async fn wrong_live_bytes_are_recounted() {
        let s = SqliteStore::open_in_memory().unwrap();
        let shared: SharedMetadataStore = Arc::new(s.clone());
        let key = conformance::object_for_recount(&shared).await;
        s.conn
            .lock()
            .execute(
                "UPDATE objects SET live_bytes = 7 WHERE object_key = ?1",
                params![key],
            )
            .unwrap();
        conformance::corrupted_live_bytes_are_recounted(&shared, &key, 7).await;
    }

    #[tokio::test]
    async fn sqlite_file_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta/inkless.db");
        let s = SqliteStore::open(&path).unwrap();
        let t = s
            .create_topic(NewTopic {
                name: "t".into(),
                partitions: 2,
                configs: Default::default(),
            })
            .await
            .unwrap();
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.list_topics().await.unwrap(), vec![t]);
    }
}
