//! PostgreSQL implementation of [`MetadataStore`]: the shared store of a cluster.
//!
//! A deadpool-postgres pool of tokio-postgres connections (`pool_size` in the URL query,
//! default 8). Every call that writes is one READ COMMITTED transaction; one that reads with
//! a single statement runs without one. Calls that fail on a deadlock or a serialization
//! failure are retried from the start (the database rolled them back). Fencing is the same
//! as SQLite's: every write to a partition first locks its `partitions` row
//! (`SELECT ... FOR UPDATE`), so two nodes cannot interleave on one partition, and checks
//! the owner epoch and the high watermark under that lock.
//!
//! Schema changes are numbered migrations recorded in `schema_migrations`; missing ones are
//! applied in one transaction under a `pg_advisory_xact_lock`, so nodes starting at the same
//! time migrate once. The group commit ([`MetadataStore::commit_appends`]) locks all its
//! partitions in one statement, in key order, and writes all its rows with one `UNNEST`
//! statement per table, pipelined on one connection.

mod check;
mod lease;
mod lifecycle;
mod ownership;
mod pins;
mod txn;

use super::sqlite::PRODUCER_BATCHES_KEPT;
use super::*;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};

/// Pool size when the URL does not set `pool_size`.
const DEFAULT_POOL_SIZE: usize = 8;

/// Numbered schema migrations; index + 1 is the schema version after applying it.
/// Never edit a released one; append a new one.
///
/// Text that is sorted or compared (names, keys) uses the "C" collation, so order is that of
/// bytes, as in SQLite, whatever the database's locale.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE topics (
    topic_id UUID PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    partitions INTEGER NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE topic_configs (
    topic_id UUID NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (topic_id, key)
);
CREATE TABLE partitions (
    topic_id UUID NOT NULL,
    partition INTEGER NOT NULL,
    log_start_offset BIGINT NOT NULL,
    high_watermark BIGINT NOT NULL,
    owner_node INTEGER NOT NULL,
    owner_epoch BIGINT NOT NULL,
    PRIMARY KEY (topic_id, partition)
);
CREATE TABLE objects (
    object_key TEXT COLLATE "C" PRIMARY KEY,
    size_bytes BIGINT NOT NULL,
    live_bytes BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE batches (
    topic_id UUID NOT NULL,
    partition INTEGER NOT NULL,
    base_offset BIGINT NOT NULL,
    last_offset BIGINT NOT NULL,
    object_key TEXT COLLATE "C" NOT NULL,
    byte_offset BIGINT NOT NULL,
    byte_len BIGINT NOT NULL,
    max_timestamp BIGINT NOT NULL,
    producer_id BIGINT NOT NULL,
    producer_epoch SMALLINT NOT NULL,
    base_sequence INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
);
CREATE INDEX batches_by_last_offset ON batches (topic_id, partition, last_offset);
CREATE INDEX batches_by_producer ON batches (topic_id, partition, producer_id, base_offset);
CREATE TABLE producers (
    topic_id UUID NOT NULL,
    partition INTEGER NOT NULL,
    producer_id BIGINT NOT NULL,
    producer_epoch SMALLINT NOT NULL,
    last_sequence INTEGER NOT NULL,
    last_offset BIGINT NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
);
CREATE SEQUENCE producer_ids START WITH 1000;
CREATE TABLE cluster_settings (
    key TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE group_offsets (
    group_id TEXT COLLATE "C" NOT NULL,
    topic_id UUID NOT NULL,
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
    incarnation UUID NOT NULL,
    az TEXT NOT NULL,
    kafka_addr TEXT NOT NULL,
    cluster_addr TEXT NOT NULL,
    admin_addr TEXT NOT NULL,
    renewed_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
"#,
    r#"
CREATE SEQUENCE lease_generations START WITH 1;
ALTER TABLE node_leases ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE partitions ADD COLUMN owner_generation BIGINT NOT NULL DEFAULT 0;
CREATE INDEX partitions_by_owner ON partitions (owner_node, owner_generation);
CREATE TABLE group_owners (
    group_id TEXT COLLATE "C" PRIMARY KEY,
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
    topic_id UUID NOT NULL,
    partition INTEGER NOT NULL,
    node_id INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition)
);
"#,
    // Producer expiry (ADR 0015): rows that exist now count as written at the upgrade.
    r#"
ALTER TABLE producers ADD COLUMN last_write_ms BIGINT NOT NULL DEFAULT 0;
UPDATE producers SET last_write_ms = (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
CREATE INDEX producers_by_last_write ON producers (last_write_ms);
"#,
    // Transactions (ADR 0018).
    r#"
CREATE TABLE transactions (
    transactional_id TEXT COLLATE "C" PRIMARY KEY,
    producer_id BIGINT NOT NULL,
    producer_epoch INTEGER NOT NULL,
    state SMALLINT NOT NULL,
    timeout_ms INTEGER NOT NULL,
    partitions TEXT NOT NULL,
    groups_list TEXT NOT NULL,
    txn_start_ms BIGINT NOT NULL,
    last_update_ms BIGINT NOT NULL,
    version BIGINT NOT NULL,
    next_producer_id BIGINT NOT NULL
);
CREATE TABLE txn_offsets (
    transactional_id TEXT COLLATE "C" NOT NULL,
    group_id TEXT COLLATE "C" NOT NULL,
    topic_id UUID NOT NULL,
    partition INTEGER NOT NULL,
    committed_offset BIGINT NOT NULL,
    leader_epoch INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    commit_time_ms BIGINT NOT NULL,
    PRIMARY KEY (transactional_id, group_id, topic_id, partition)
);
CREATE TABLE open_txns (
    topic_id UUID NOT NULL,
    partition INTEGER NOT NULL,
    producer_id BIGINT NOT NULL,
    first_offset BIGINT NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
);
CREATE TABLE aborted_txns (
    topic_id UUID NOT NULL,
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
    group_id TEXT COLLATE "C" PRIMARY KEY,
    state BYTEA NOT NULL,
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
ALTER TABLE partition_pins ADD COLUMN by_balancer BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE node_loads (node_id INTEGER PRIMARY KEY, reported_ms BIGINT NOT NULL, load TEXT NOT NULL);
"#,
];

/// Key of the advisory lock that serializes migrations ("inkless" in ASCII).
const MIGRATION_LOCK: i64 = 0x0069_6e6b_6c65_7373;

/// Longest time one attempt of a call may take before it fails (the database, or the
/// network to it, stopped answering; without this a call would hang for TCP's timeouts).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts of one call that keeps hitting deadlocks or serialization failures.
const MAX_ATTEMPTS: u32 = 5;

/// Rows of one page of [`MetadataStore::read_batches`].
const READ_PAGE: i64 = 256;

/// The PostgreSQL metadata store. Cloning shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection config holds the password: show only the pool's shape.
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("pool_max_size", &status.max_size)
            .field("pool_size", &status.size)
            .finish_non_exhaustive()
    }
}

/// Why one transaction attempt ended without committing.
enum TxError {
    /// The store refused the call (unknown topic, fenced...): final.
    Meta(MetaError),
    /// The database failed: retried if it rolled the transaction back on a conflict.
    Pg(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        TxError::Pg(e)
    }
}

impl From<MetaError> for TxError {
    fn from(e: MetaError) -> Self {
        TxError::Meta(e)
    }
}

impl From<TxError> for MetaError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Meta(e) => e,
            TxError::Pg(e) => pg(e),
        }
    }
}

type TxResult<T> = Result<T, TxError>;

/// The transaction type handed to transaction bodies.
type Tx<'t> = deadpool_postgres::Transaction<'t>;

/// A database error as [`MetaError::Database`], with its cause and SQLSTATE (tokio-postgres
/// shows only "db error" at the top level).
fn pg(e: tokio_postgres::Error) -> MetaError {
    let mut msg = e.to_string();
    if let Some(code) = e.code() {
        msg.push_str(&format!(" [SQLSTATE {}]", code.code()));
    }
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    MetaError::Database(msg)
}

fn pool_error(e: PoolError) -> MetaError {
    match e {
        PoolError::Backend(e) => pg(e),
        e => MetaError::Database(format!("connection pool: {e}")),
    }
}

/// Whether the database rolled the transaction back because of a conflict with another one,
/// so running it again is safe.
fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// `url` with its password replaced by `***`, for error messages.
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..start],
                &authority[..colon],
                &url[start + at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Splits a `postgres://` URL into the connection config and the pool size (`pool_size`
/// query parameter, removed before tokio-postgres parses the rest).
pub(crate) fn parse_url(url: &str) -> MetaResult<(tokio_postgres::Config, usize)> {
    let invalid = |why: &str| MetaError::InvalidUrl(format!("{}: {why}", redact(url)));
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid("not a postgres:// URL"));
    }
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut pool_size = DEFAULT_POOL_SIZE;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("pool_size", v)) => {
                pool_size = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| invalid("pool_size must be a positive integer"))?;
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        let mut why = e.to_string();
        if let Some(s) = std::error::Error::source(&e) {
            why.push_str(&format!(": {s}"));
        }
        invalid(&why)
    })?;
    if config.get_application_name().is_none() {
        config.application_name("inkless");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    Ok((config, pool_size))
}

impl PostgresStore {
    /// Connects to the database named by `url` (`postgres://user:password@host:port/db`,
    /// any tokio-postgres parameter in the query, plus `pool_size`, default 8) and applies
    /// the missing schema migrations. TLS is not supported yet (`sslmode=require` fails).
    pub async fn connect(url: &str) -> MetaResult<Self> {
        let (config, pool_size) = parse_url(url)?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(15)))
            .wait_timeout(Some(Duration::from_secs(60)))
            .build()
            .map_err(|e| MetaError::Database(format!("connection pool: {e}")))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the missing migrations in one transaction, under an advisory lock so that
    /// concurrent starts apply each one once.
    async fn migrate(&self) -> MetaResult<()> {
        self.with_tx(|tx| {
            Box::pin(async move {
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                    .await?;
                // Quiet the "already exists, skipping" notice of every later start.
                tx.batch_execute(
                    "SET LOCAL client_min_messages = warning; CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
                )
                .await?;
                let current: i64 = tx
                    .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
                    .await?
                    .try_get(0)?;
                if current > MIGRATIONS.len() as i64 {
                    tracing::warn!(
                        schema_version = current,
                        known = MIGRATIONS.len(),
                        "metadata schema is newer than this binary"
                    );
                }
                let now = crate::now_ms();
                for (i, sql) in MIGRATIONS.iter().enumerate() {
                    let version = i as i64 + 1;
                    if version <= current {
                        continue;
                    }
                    tx.batch_execute(sql).await?;
                    tx.execute(
                        "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
                        &[&version, &now],
                    )
                    .await?;
                    tracing::info!(version, "applied metadata schema migration");
                }
                Ok(())
            })
        })
        .await
    }

    async fn client(&self) -> MetaResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Runs `body` in one READ COMMITTED transaction, retrying it from the start when the
    /// database rolled it back on a deadlock or serialization failure. An attempt that takes
    /// longer than [`CALL_TIMEOUT`] (a database that stopped answering) fails, and its
    /// connection is taken out of the pool, since it may still be inside the transaction.
    async fn with_tx<T, F>(&self, mut body: F) -> MetaResult<T>
    where
        T: Send,
        F: for<'t> FnMut(&'t Tx<'t>) -> BoxFuture<'t, TxResult<T>> + Send,
    {
        let mut attempt = 1;
        loop {
            let mut client = self.client().await?;
            let result = tokio::time::timeout(CALL_TIMEOUT, async {
                let tx = client.transaction().await?;
                let out = body(&tx).await?;
                tx.commit().await?;
                Ok(out)
            })
            .await;
            let result: TxResult<T> = match result {
                Ok(r) => r,
                Err(_) => {
                    drop(deadpool_postgres::Object::take(client));
                    return Err(timed_out());
                }
            };
            match result {
                Err(TxError::Pg(e)) if attempt < MAX_ATTEMPTS && is_retryable(&e) => {
                    tracing::debug!(attempt, error = %pg(e), "metadata transaction conflict; retrying");
                    drop(client);
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => return other.map_err(MetaError::from),
            }
        }
    }

    /// Like [`Self::query`], as an unnamed statement that PostgreSQL plans for the values
    /// given (in one round trip): for a statement whose best plan depends on them.
    async fn query_planned_each_time(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> MetaResult<Vec<Row>> {
        let client = self.client().await?;
        let result = tokio::time::timeout(CALL_TIMEOUT, client.query_typed(sql, params)).await;
        match result {
            Ok(r) => r.map_err(pg),
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(timed_out())
            }
        }
    }

    /// Runs one read statement outside any explicit transaction (bounded like [`Self::with_tx`]).
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> MetaResult<Vec<Row>> {
        let client = self.client().await?;
        let result = tokio::time::timeout(CALL_TIMEOUT, async {
            let stmt = client.prepare_cached(sql).await.map_err(pg)?;
            client.query(&stmt, params).await.map_err(pg)
        })
        .await;
        match result {
            Ok(r) => r,
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(timed_out())
            }
        }
    }
}

fn timed_out() -> MetaError {
    MetaError::Database(format!(
        "no answer from the database within {} s",
        CALL_TIMEOUT.as_secs()
    ))
}

/// Columns of a [`BatchCoordinate`], in [`batch_row`] order, from `batches b JOIN objects o`.
const BATCH_COLUMNS: &str = "b.base_offset, b.last_offset, b.object_key, o.size_bytes, b.byte_offset, b.byte_len, b.max_timestamp, b.producer_id, b.producer_epoch, b.base_sequence, b.last_sequence";

fn batch_row(r: &Row) -> Result<BatchCoordinate, tokio_postgres::Error> {
    batch_row_at(r, 0)
}

/// A [`BatchCoordinate`] from [`BATCH_COLUMNS`] starting at column `first` of `r`.
fn batch_row_at(r: &Row, first: usize) -> Result<BatchCoordinate, tokio_postgres::Error> {
    Ok(BatchCoordinate {
        base_offset: r.try_get(first)?,
        last_offset: r.try_get(first + 1)?,
        object_key: r.try_get(first + 2)?,
        object_size: r.try_get::<_, i64>(first + 3)? as u64,
        byte_offset: r.try_get::<_, i64>(first + 4)? as u64,
        byte_len: r.try_get::<_, i64>(first + 5)? as u32,
        max_timestamp: r.try_get(first + 6)?,
        producer_id: r.try_get(first + 7)?,
        producer_epoch: r.try_get(first + 8)?,
        base_sequence: r.try_get(first + 9)?,
        last_sequence: r.try_get(first + 10)?,
    })
}

fn batch_rows(rows: &[Row]) -> Result<Vec<BatchCoordinate>, tokio_postgres::Error> {
    rows.iter().map(batch_row).collect()
}

fn batch_query(tail: &str) -> String {
    format!("SELECT {BATCH_COLUMNS} FROM batches b JOIN objects o ON o.object_key = b.object_key {tail}")
}

/// The topic named `name`, its row locked until the end of the transaction when `lock`.
async fn topic_by_name(tx: &Tx<'_>, name: &str, lock: bool) -> TxResult<TopicRecord> {
    let sql = if lock {
        "SELECT topic_id, partitions FROM topics WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT topic_id, partitions FROM topics WHERE name = $1"
    };
    let stmt = tx.prepare_cached(sql).await?;
    let row = tx
        .query_opt(&stmt, &[&name])
        .await?
        .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
    let id: Uuid = row.try_get(0)?;
    let partitions: i32 = row.try_get(1)?;
    let stmt = tx
        .prepare_cached("SELECT key, value FROM topic_configs WHERE topic_id = $1")
        .await?;
    let configs = tx
        .query(&stmt, &[&id])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok(TopicRecord {
        id,
        name: name.to_string(),
        partitions,
        configs,
    })
}

async fn insert_partitions(tx: &Tx<'_>, id: Uuid, from: i32, to: i32) -> TxResult<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO partitions (topic_id, partition, log_start_offset, high_watermark, owner_node, owner_epoch) SELECT $1::uuid, p, 0, 0, -1, 0 FROM generate_series($2::int4, $3::int4 - 1) AS p",
        )
        .await?;
    tx.execute(&stmt, &[&id, &from, &to]).await?;
    Ok(())
}

/// Deletes the batches selected by `filter` (over `batches`, parameters from `$1`) and
/// subtracts their bytes from their objects' live bytes, marking the time an object lost its
/// last live byte (the start of its grace period), in one statement.
async fn delete_batches(tx: &Tx<'_>, filter: &str, params: &[&(dyn ToSql + Sync)]) -> TxResult<()> {
    let sql = format!(
        "WITH gone AS (DELETE FROM batches WHERE {filter} RETURNING object_key, byte_len), \
         freed AS (SELECT object_key, SUM(byte_len)::int8 AS bytes FROM gone GROUP BY object_key) \
         UPDATE objects o SET live_bytes = o.live_bytes - f.bytes, \
         dead_since_ms = CASE WHEN o.live_bytes - f.bytes <= 0 THEN {now} ELSE NULL END \
         FROM freed f WHERE o.object_key = f.object_key",
        now = ownership::NOW_MS
    );
    let stmt = tx.prepare_cached(&sql).await?;
    tx.execute(&stmt, params).await?;
    Ok(())
}

/// Locked state of one partition during a group commit.
struct Locked {
    epoch: i64,
    hwm: i64,
    changed: bool,
}

/// Rows a group commit writes, one vector per column (bound as arrays to `UNNEST`).
#[derive(Default)]
struct AppendRows<'a> {
    b_topic: Vec<Uuid>,
    b_partition: Vec<i32>,
    b_base: Vec<i64>,
    b_last: Vec<i64>,
    b_key: Vec<&'a str>,
    b_at: Vec<i64>,
    b_len: Vec<i64>,
    b_ts: Vec<i64>,
    b_pid: Vec<i64>,
    b_pepoch: Vec<i16>,
    b_bseq: Vec<i32>,
    b_lseq: Vec<i32>,
    /// Object key → (size, bytes added); sorted, so object rows are locked in key order.
    objects: BTreeMap<&'a str, (i64, i64)>,
    /// (topic, partition, producer) → state; the last one of the commit wins.
    producers: BTreeMap<(Uuid, i32, i64), &'a ProducerRecord>,
}

const LOCK_PARTITIONS: &str = "SELECT p.topic_id, p.partition, p.owner_epoch, p.high_watermark FROM partitions p JOIN UNNEST($1::uuid[], $2::int4[]) AS k(topic_id, partition) ON p.topic_id = k.topic_id AND p.partition = k.partition ORDER BY p.topic_id, p.partition FOR UPDATE OF p";
const UPSERT_OBJECTS: &str = "INSERT INTO objects (object_key, size_bytes, live_bytes, created_ms) SELECT k, s, l, $4::int8 FROM UNNEST($1::text[], $2::int8[], $3::int8[]) AS u(k, s, l) ON CONFLICT (object_key) DO UPDATE SET live_bytes = objects.live_bytes + excluded.live_bytes, dead_since_ms = NULL WHERE objects.deleted_ms IS NULL";
const INSERT_BATCHES: &str = "INSERT INTO batches (topic_id, partition, base_offset, last_offset, object_key, byte_offset, byte_len, max_timestamp, producer_id, producer_epoch, base_sequence, last_sequence) SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::int8[], $4::int8[], $5::text[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int2[], $11::int4[], $12::int4[])";
const UPSERT_PRODUCERS: &str = "INSERT INTO producers (topic_id, partition, producer_id, producer_epoch, last_sequence, last_offset, last_write_ms) SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::int8[], $4::int2[], $5::int4[], $6::int8[], $7::int8[]) ON CONFLICT (topic_id, partition, producer_id) DO UPDATE SET producer_epoch = excluded.producer_epoch, last_sequence = excluded.last_sequence, last_offset = excluded.last_offset, last_write_ms = excluded.last_write_ms";
const UPDATE_HWMS: &str = "UPDATE partitions p SET high_watermark = u.hwm FROM UNNEST($1::uuid[], $2::int4[], $3::int8[]) AS u(topic_id, partition, hwm) WHERE p.topic_id = u.topic_id AND p.partition = u.partition";

/// Bytes of each listed partition's batches, in the order of the arrays.
const PARTITION_SIZES: &str = "SELECT COALESCE((SELECT SUM(b.byte_len) FROM batches b WHERE b.topic_id = k.topic_id AND b.partition = k.partition), 0)::int8 FROM UNNEST($1::uuid[], $2::int4[]) WITH ORDINALITY AS k(topic_id, partition, i) ORDER BY k.i";

/// The group commit: locks every partition of `appends` (in key order, so concurrent
/// commits cannot deadlock on them), decides each append's outcome as SQLite does, in order
/// (a partition appearing twice sees the first append's new high watermark), then writes
/// every committed append with one statement per table.
async fn commit_appends_tx(
    tx: &Tx<'_>,
    appends: &[PartitionAppend],
) -> TxResult<Vec<AppendOutcome>> {
    let (lock, upsert_objects, insert_batches, upsert_producers, update_hwms) = futures::try_join!(
        tx.prepare_cached(LOCK_PARTITIONS),
        tx.prepare_cached(UPSERT_OBJECTS),
        tx.prepare_cached(INSERT_BATCHES),
        tx.prepare_cached(UPSERT_PRODUCERS),
        tx.prepare_cached(UPDATE_HWMS),
    )?;

    let mut keys: Vec<(Uuid, i32)> = appends.iter().map(|a| (a.topic_id, a.partition)).collect();
    keys.sort_unstable();
    keys.dedup();
    let (topics, partitions): (Vec<Uuid>, Vec<i32>) = keys.into_iter().unzip();
    let mut locked = HashMap::with_capacity(topics.len());
    for row in tx.query(&lock, &[&topics, &partitions]).await? {
        let key: (Uuid, i32) = (row.try_get(0)?, row.try_get(1)?);
        locked.insert(
            key,
            Locked {
                epoch: row.try_get(2)?,
                hwm: row.try_get(3)?,
                changed: false,
            },
        );
    }

    let mut rows = AppendRows::default();
    let mut events = Vec::new();
    let mut outcomes = Vec::with_capacity(appends.len());
    for a in appends {
        let Some(state) = locked.get_mut(&(a.topic_id, a.partition)) else {
            outcomes.push(AppendOutcome::UnknownPartition);
            continue;
        };
        if state.epoch != a.owner_epoch {
            outcomes.push(AppendOutcome::Fenced);
            continue;
        }
        let (Some(first), Some(end)) = (a.batches.first(), a.end_offset()) else {
            outcomes.push(AppendOutcome::Committed);
            continue;
        };
        if first.base_offset != state.hwm {
            outcomes.push(AppendOutcome::OffsetMismatch {
                high_watermark: state.hwm,
            });
            continue;
        }
        for b in &a.batches {
            debug_assert!(b.last_offset >= b.base_offset);
            rows.b_topic.push(a.topic_id);
            rows.b_partition.push(a.partition);
            rows.b_base.push(b.base_offset);
            rows.b_last.push(b.last_offset);
            rows.b_key.push(&b.object_key);
            rows.b_at.push(b.byte_offset as i64);
            rows.b_len.push(i64::from(b.byte_len));
            rows.b_ts.push(b.max_timestamp);
            rows.b_pid.push(b.producer_id);
            rows.b_pepoch.push(b.producer_epoch);
            rows.b_bseq.push(b.base_sequence);
            rows.b_lseq.push(b.last_sequence);
            rows.objects
                .entry(&b.object_key)
                .or_insert((b.object_size as i64, 0))
                .1 += i64::from(b.byte_len);
        }
        for p in &a.producers {
            rows.producers
                .insert((a.topic_id, a.partition, p.producer_id), p);
        }
        state.hwm = end;
        state.changed = true;
        events.extend(a.txn_events.iter().map(|e| (a.topic_id, a.partition, *e)));
        outcomes.push(AppendOutcome::Committed);
    }
    if rows.b_topic.is_empty() {
        return Ok(outcomes);
    }

    let (o_key, o_size, o_live) = rows.objects.iter().fold(
        (Vec::new(), Vec::new(), Vec::new()),
        |(mut k, mut s, mut l), (key, (size, live))| {
            k.push(*key);
            s.push(*size);
            l.push(*live);
            (k, s, l)
        },
    );
    let mut p_topic = Vec::with_capacity(rows.producers.len());
    let mut p_partition = Vec::with_capacity(rows.producers.len());
    let mut p_id = Vec::with_capacity(rows.producers.len());
    let mut p_epoch = Vec::with_capacity(rows.producers.len());
    let mut p_seq = Vec::with_capacity(rows.producers.len());
    let mut p_offset = Vec::with_capacity(rows.producers.len());
    let mut p_write = Vec::with_capacity(rows.producers.len());
    for ((topic, partition, id), p) in &rows.producers {
        p_topic.push(*topic);
        p_partition.push(*partition);
        p_id.push(*id);
        p_epoch.push(p.producer_epoch);
        p_seq.push(p.last_sequence);
        p_offset.push(p.last_offset);
        p_write.push(p.last_write_ms);
    }
    let mut h_topic = Vec::new();
    let mut h_partition = Vec::new();
    let mut h_hwm = Vec::new();
    for ((topic, partition), state) in &locked {
        if state.changed {
            h_topic.push(*topic);
            h_partition.push(*partition);
            h_hwm.push(state.hwm);
        }
    }
    let now = crate::now_ms();
    let r = &rows;
    let object_params: [&(dyn ToSql + Sync); 4] = [&o_key, &o_size, &o_live, &now];
    let batch_params: [&(dyn ToSql + Sync); 12] = [
        &r.b_topic,
        &r.b_partition,
        &r.b_base,
        &r.b_last,
        &r.b_key,
        &r.b_at,
        &r.b_len,
        &r.b_ts,
        &r.b_pid,
        &r.b_pepoch,
        &r.b_bseq,
        &r.b_lseq,
    ];
    let producer_params: [&(dyn ToSql + Sync); 7] = [
        &p_topic,
        &p_partition,
        &p_id,
        &p_epoch,
        &p_seq,
        &p_offset,
        &p_write,
    ];
    let hwm_params: [&(dyn ToSql + Sync); 3] = [&h_topic, &h_partition, &h_hwm];
    // Independent statements: pipelined on the connection, one round trip for all.
    let (objects_stored, ..) = futures::try_join!(
        tx.execute(&upsert_objects, &object_params),
        tx.execute(&insert_batches, &batch_params),
        async {
            if p_id.is_empty() {
                return Ok(0);
            }
            tx.execute(&upsert_producers, &producer_params).await
        },
        tx.execute(&update_hwms, &hwm_params),
    )?;
    if objects_stored < o_key.len() as u64 {
        // An object marked deleted is never revived: the whole commit rolls back.
        let row = tx
            .query_one(
                "SELECT object_key FROM objects WHERE object_key = ANY($1) AND deleted_ms IS NOT NULL LIMIT 1",
                &[&o_key],
            )
            .await?;
        return Err(MetaError::ObjectDeleted(row.try_get(0)?).into());
    }
    txn::apply_events(tx, &events).await?;
    Ok(outcomes)
}

/// Producer state and recent batches of the partitions in `keys` (sorted), by partition.
type ClaimedProducers = (
    HashMap<PartitionKey, Vec<ProducerRecord>>,
    HashMap<PartitionKey, Vec<BatchCoordinate>>,
);

/// Every producer of the partitions in `keys` and the last [`PRODUCER_BATCHES_KEPT`]
/// batches of each, oldest first: two statements for the whole batch.
async fn claimed_producers(tx: &Tx<'_>, keys: &[PartitionKey]) -> TxResult<ClaimedProducers> {
    let mut producers: HashMap<PartitionKey, Vec<ProducerRecord>> = HashMap::new();
    let mut batches: HashMap<PartitionKey, Vec<BatchCoordinate>> = HashMap::new();
    if keys.is_empty() {
        return Ok((producers, batches));
    }
    const OF_KEYS: &str = "FROM producers p JOIN UNNEST($1::uuid[], $2::int4[]) AS k(topic_id, partition) ON p.topic_id = k.topic_id AND p.partition = k.partition";
    let producers_sql = format!("SELECT p.topic_id, p.partition, p.producer_id, p.producer_epoch, p.last_sequence, p.last_offset, p.last_write_ms {OF_KEYS} ORDER BY p.topic_id, p.partition, p.producer_id");
    let batches_sql = format!(
        "SELECT p.topic_id, p.partition, x.* {OF_KEYS} CROSS JOIN LATERAL ({}) x ORDER BY p.topic_id, p.partition, p.producer_id, x.base_offset",
        batch_query(
            "WHERE b.topic_id = p.topic_id AND b.partition = p.partition AND b.producer_id = p.producer_id ORDER BY b.base_offset DESC LIMIT $3"
        )
    );
    let (producers_stmt, batches_stmt) = futures::try_join!(
        tx.prepare_cached(&producers_sql),
        tx.prepare_cached(&batches_sql)
    )?;
    let (topics, indexes): (Vec<Uuid>, Vec<i32>) = keys.iter().copied().unzip();
    let producer_params: [&(dyn ToSql + Sync); 2] = [&topics, &indexes];
    let batch_params: [&(dyn ToSql + Sync); 3] = [&topics, &indexes, &PRODUCER_BATCHES_KEPT];
    let (producer_rows, batch_rows_) = futures::try_join!(
        tx.query(&producers_stmt, &producer_params),
        tx.query(&batches_stmt, &batch_params),
    )?;
    for r in &producer_rows {
        producers
            .entry((r.try_get(0)?, r.try_get(1)?))
            .or_default()
            .push(ProducerRecord {
                producer_id: r.try_get(2)?,
                producer_epoch: r.try_get(3)?,
                last_sequence: r.try_get(4)?,
                last_offset: r.try_get(5)?,
                last_write_ms: r.try_get(6)?,
            });
    }
    for r in &batch_rows_ {
        batches
            .entry((r.try_get(0)?, r.try_get(1)?))
            .or_default()
            .push(batch_row_at(r, 2)?);
    }
    Ok((producers, batches))
}

impl PostgresStore {
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
        let partitions = Arc::new(partitions);
        self.with_tx(move |tx| {
            let partitions = partitions.clone();
            Box::pin(async move { claim_partitions_tx(tx, claimant, &partitions, mode).await })
        })
        .await
    }
}

/// [`MetadataStore::claim_partitions`] in one transaction: the ownership decision for all
/// rows ([`ownership::claim_partition_rows`]), then the state of those claimed. Their rows
/// stay locked until commit, so no append can slip in between.
async fn claim_partitions_tx(
    tx: &Tx<'_>,
    claimant: Claimant,
    keys: &[PartitionKey],
    mode: ClaimMode,
) -> TxResult<Vec<MetaResult<PartitionState>>> {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut rows = ownership::claim_partition_rows(tx, claimant, &sorted, mode).await?;
    sorted.retain(|k| rows.get(k).is_some_and(|r| r.is_ok()));
    let (mut producers, mut batches) = claimed_producers(tx, &sorted).await?;
    let starts: Vec<(PartitionKey, i64)> = sorted
        .iter()
        .filter_map(|k| rows.get(k).and_then(|r| r.as_ref().ok()).map(|r| (*k, r.1)))
        .collect();
    let mut txns = txn::claimed_txns(tx, &starts).await?;
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    Ok(keys
        .iter()
        .map(|&key| {
            if !seen.insert(key) {
                return Err(listed_twice(key));
            }
            let (owner_epoch, log_start_offset, high_watermark) = rows
                .remove(&key)
                .unwrap_or(Err(MetaError::UnknownPartition(key.0, key.1)))?;
            Ok(PartitionState {
                owner_epoch,
                log_start_offset,
                high_watermark,
                producers: producers.remove(&key).unwrap_or_default(),
                producer_batches: batches.remove(&key).unwrap_or_default(),
                open_txns: txns
                    .get_mut(&key)
                    .map(|t| std::mem::take(&mut t.0))
                    .unwrap_or_default(),
                aborted_txns: txns.remove(&key).map(|t| t.1).unwrap_or_default(),
            })
        })
        .collect())
}

async fn delete_records_tx(
    tx: &Tx<'_>,
    topic_id: Uuid,
    partition: i32,
    owner_epoch: i64,
    offset: i64,
) -> TxResult<i64> {
    let stmt = tx
        .prepare_cached(
            "SELECT owner_epoch, log_start_offset, high_watermark FROM partitions WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
        )
        .await?;
    let row = tx
        .query_opt(&stmt, &[&topic_id, &partition])
        .await?
        .ok_or(MetaError::UnknownPartition(topic_id, partition))?;
    let (epoch, start, hwm): (i64, i64, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    if epoch != owner_epoch {
        return Err(MetaError::Fenced(topic_id, partition).into());
    }
    if offset > hwm || offset < 0 {
        return Err(MetaError::Invalid(format!("offset {offset} is outside [0, {hwm}]")).into());
    }
    let new_start = start.max(offset);
    delete_batches(
        tx,
        "topic_id = $1 AND partition = $2 AND last_offset < $3",
        &[&topic_id, &partition, &new_start],
    )
    .await?;
    // Aborted transactions wholly below the log start have nothing left to filter.
    tx.execute(
        "DELETE FROM aborted_txns WHERE topic_id = $1 AND partition = $2 AND last_offset < $3",
        &[&topic_id, &partition, &new_start],
    )
    .await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE partitions SET log_start_offset = $3 WHERE topic_id = $1 AND partition = $2",
        )
        .await?;
    tx.execute(&stmt, &[&topic_id, &partition, &new_start])
        .await?;
    Ok(new_start)
}

async fn delete_topic_tx(tx: &Tx<'_>, name: &str) -> TxResult<TopicRecord> {
    let t = topic_by_name(tx, name, true).await?;
    // Partitions first: this waits for any group commit holding their rows, whose batches
    // the following statements then see and delete; later commits find no partition.
    tx.execute("DELETE FROM partitions WHERE topic_id = $1", &[&t.id])
        .await?;
    delete_batches(tx, "topic_id = $1", &[&t.id]).await?;
    for table in [
        "producers",
        "topic_configs",
        "topics",
        "group_offsets",
        "partition_pins",
        "open_txns",
        "aborted_txns",
        "txn_offsets",
    ] {
        tx.execute(
            format!("DELETE FROM {table} WHERE topic_id = $1").as_str(),
            &[&t.id],
        )
        .await?;
    }
    // Its pins went with it.
    pins::bump_pins_version(tx).await?;
    Ok(t)
}

#[async_trait::async_trait]
impl MetadataStore for PostgresStore {
    fn pool_status(&self) -> Option<crate::metrics::PoolStatus> {
        let s = self.pool.status();
        Some(crate::metrics::PoolStatus {
            size: s.size,
            available: s.available,
            max_size: s.max_size,
            waiting: s.waiting,
        })
    }

    async fn create_topic(&self, t: NewTopic) -> MetaResult<TopicRecord> {
        if t.partitions < 1 {
            return Err(MetaError::Invalid(
                "partition count must be at least 1".into(),
            ));
        }
        let t = Arc::new(t);
        self.with_tx(move |tx| {
            let t = t.clone();
            Box::pin(async move {
                let id = Uuid::new_v4();
                let inserted = tx
                    .query_opt(
                        "INSERT INTO topics (topic_id, name, partitions, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING topic_id",
                        &[&id, &t.name, &t.partitions, &crate::now_ms()],
                    )
                    .await?;
                if inserted.is_none() {
                    return Err(MetaError::TopicExists(t.name.clone()).into());
                }
                if !t.configs.is_empty() {
                    let keys: Vec<&str> = t.configs.keys().map(String::as_str).collect();
                    let values: Vec<&str> = t.configs.values().map(String::as_str).collect();
                    tx.execute(
                        "INSERT INTO topic_configs (topic_id, key, value) SELECT $1::uuid, k, v FROM UNNEST($2::text[], $3::text[]) AS c(k, v)",
                        &[&id, &keys, &values],
                    )
                    .await?;
                }
                insert_partitions(tx, id, 0, t.partitions).await?;
                Ok(TopicRecord {
                    id,
                    name: t.name.clone(),
                    partitions: t.partitions,
                    configs: t.configs.clone(),
                })
            })
        })
        .await
    }

    async fn delete_topic(&self, name: &str) -> MetaResult<TopicRecord> {
        let name: Arc<str> = name.into();
        self.with_tx(move |tx| {
            let name = name.clone();
            Box::pin(async move { delete_topic_tx(tx, &name).await })
        })
        .await
    }

    async fn list_topics(&self) -> MetaResult<Vec<TopicRecord>> {
        // One statement: one snapshot.
        let rows = self
            .query(
                "SELECT t.topic_id, t.name, t.partitions, c.key, c.value FROM topics t LEFT JOIN topic_configs c ON c.topic_id = t.topic_id ORDER BY t.name, c.key",
                &[],
            )
            .await?;
        let mut out: Vec<TopicRecord> = Vec::new();
        for r in &rows {
            let id: Uuid = r.try_get(0).map_err(pg)?;
            if out.last().map(|t| t.id) != Some(id) {
                out.push(TopicRecord {
                    id,
                    name: r.try_get(1).map_err(pg)?,
                    partitions: r.try_get(2).map_err(pg)?,
                    configs: BTreeMap::new(),
                });
            }
            let key: Option<String> = r.try_get(3).map_err(pg)?;
            let value: Option<String> = r.try_get(4).map_err(pg)?;
            if let (Some(k), Some(v), Some(t)) = (key, value, out.last_mut()) {
                t.configs.insert(k, v);
            }
        }
        Ok(out)
    }

    async fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> MetaResult<TopicRecord> {
        let name: Arc<str> = name.into();
        let changes = Arc::new(changes);
        self.with_tx(move |tx| {
            let (name, changes) = (name.clone(), changes.clone());
            Box::pin(async move {
                let t = topic_by_name(tx, &name, true).await?;
                for (k, v) in changes.iter() {
                    if let Some(v) = v {
                        tx.execute(
                            "INSERT INTO topic_configs (topic_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (topic_id, key) DO UPDATE SET value = excluded.value",
                            &[&t.id, k, v],
                        )
                        .await?;
                    } else {
                        tx.execute(
                            "DELETE FROM topic_configs WHERE topic_id = $1 AND key = $2",
                            &[&t.id, k],
                        )
                        .await?;
                    }
                }
                topic_by_name(tx, &name, false).await
            })
        })
        .await
    }

    async fn create_partitions(&self, name: &str, total: i32) -> MetaResult<TopicRecord> {
        let name: Arc<str> = name.into();
        self.with_tx(move |tx| {
            let name = name.clone();
            Box::pin(async move {
                let t = topic_by_name(tx, &name, true).await?;
                if total <= t.partitions {
                    return Err(MetaError::Invalid(format!(
                        "topic {name} has {} partitions; the new count {total} must be larger",
                        t.partitions
                    ))
                    .into());
                }
                insert_partitions(tx, t.id, t.partitions, total).await?;
                tx.execute(
                    "UPDATE topics SET partitions = $2 WHERE topic_id = $1",
                    &[&t.id, &total],
                )
                .await?;
                topic_by_name(tx, &name, false).await
            })
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
        if partitions.is_empty() {
            return Ok(0);
        }
        let partitions = Arc::new(partitions);
        self.with_tx(move |tx| {
            let partitions = partitions.clone();
            Box::pin(async move { ownership::release_partitions(tx, claimant, &partitions).await })
        })
        .await
    }

    async fn owned_partitions(&self, claimant: Claimant) -> MetaResult<Vec<PartitionKey>> {
        let rows = self
            .query(
                "SELECT topic_id, partition FROM partitions WHERE owner_node = $1 AND owner_generation = $2",
                &[&claimant.node_id, &ownership::generation(claimant)],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(pg)
    }

    async fn claim_group(&self, group: &str, claimant: Claimant) -> MetaResult<i64> {
        let group: Arc<str> = group.into();
        self.with_tx(move |tx| {
            let group = group.clone();
            Box::pin(async move { ownership::claim_group(tx, &group, claimant).await })
        })
        .await
    }

    async fn release_groups(&self, claimant: Claimant, groups: Vec<String>) -> MetaResult<u64> {
        if groups.is_empty() {
            return Ok(0);
        }
        let groups = Arc::new(groups);
        self.with_tx(move |tx| {
            let groups = groups.clone();
            Box::pin(async move { ownership::release_groups(tx, claimant, &groups).await })
        })
        .await
    }

    async fn owned_groups(&self, claimant: Claimant) -> MetaResult<Vec<String>> {
        let rows = self
            .query(
                "SELECT group_id FROM group_owners WHERE owner_node = $1 AND owner_generation = $2 ORDER BY group_id",
                &[&claimant.node_id, &ownership::generation(claimant)],
            )
            .await?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(pg)
    }

    async fn commit_appends(
        &self,
        appends: Vec<PartitionAppend>,
    ) -> MetaResult<Vec<AppendOutcome>> {
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        let appends = Arc::new(appends);
        self.with_tx(move |tx| {
            let appends = appends.clone();
            Box::pin(async move { commit_appends_tx(tx, &appends).await })
        })
        .await
    }

    async fn read_batches(
        &self,
        topic_id: Uuid,
        partition: i32,
        from_offset: i64,
        max_bytes: u64,
    ) -> MetaResult<Vec<BatchCoordinate>> {
        // Pages are separate statements: appends only add batches after the last page read
        // and DeleteRecords only removes batches before it, so the result is always a
        // contiguous run of committed batches.
        let sql = batch_query(
            "WHERE b.topic_id = $1 AND b.partition = $2 AND b.last_offset >= $3 ORDER BY b.base_offset LIMIT $4",
        );
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(pg)?;
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut from = from_offset;
        loop {
            let rows = client
                .query(&stmt, &[&topic_id, &partition, &from, &READ_PAGE])
                .await
                .map_err(pg)?;
            let full = rows.len() as i64 == READ_PAGE;
            for b in batch_rows(&rows).map_err(pg)? {
                if !out.is_empty() && bytes + u64::from(b.byte_len) > max_bytes {
                    return Ok(out);
                }
                bytes += u64::from(b.byte_len);
                from = b.last_offset + 1;
                out.push(b);
            }
            if !full || bytes >= max_bytes {
                return Ok(out);
            }
        }
    }

    async fn batch_for_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        timestamp: i64,
    ) -> MetaResult<Option<BatchCoordinate>> {
        let rows = self
            .query(
                &batch_query("WHERE b.topic_id = $1 AND b.partition = $2 AND b.max_timestamp >= $3 ORDER BY b.base_offset LIMIT 1"),
                &[&topic_id, &partition, &timestamp],
            )
            .await?;
        Ok(batch_rows(&rows).map_err(pg)?.pop())
    }

    async fn batch_with_max_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> MetaResult<Option<BatchCoordinate>> {
        let rows = self
            .query(
                &batch_query("WHERE b.topic_id = $1 AND b.partition = $2 ORDER BY b.max_timestamp DESC, b.base_offset ASC LIMIT 1"),
                &[&topic_id, &partition],
            )
            .await?;
        Ok(batch_rows(&rows).map_err(pg)?.pop())
    }

    async fn partition_sizes(&self, partitions: Vec<PartitionKey>) -> MetaResult<Vec<u64>> {
        let ids: Vec<Uuid> = partitions.iter().map(|k| k.0).collect();
        let indexes: Vec<i32> = partitions.iter().map(|k| k.1).collect();
        let rows = self.query(PARTITION_SIZES, &[&ids, &indexes]).await?;
        rows.iter()
            .map(|r| r.try_get::<_, i64>(0).map(|n| n.max(0) as u64))
            .collect::<Result<_, _>>()
            .map_err(pg)
    }

    async fn retention_offsets(&self, queries: Vec<RetentionQuery>) -> MetaResult<Vec<i64>> {
        let queries = Arc::new(queries);
        self.with_tx(move |tx| {
            let queries = queries.clone();
            Box::pin(async move { lifecycle::retention_offsets(tx, &queries).await })
        })
        .await
    }

    async fn retire_dead_objects(&self, q: DeadObjects) -> MetaResult<Vec<String>> {
        self.with_tx(move |tx| Box::pin(lifecycle::retire_dead_objects(tx, q)))
            .await
    }

    async fn confirm_deleted(&self, keys: Vec<String>) -> MetaResult<()> {
        let keys = Arc::new(keys);
        self.with_tx(move |tx| {
            let keys = keys.clone();
            Box::pin(async move { lifecycle::confirm_deleted(tx, &keys).await })
        })
        .await
    }

    async fn retire_orphans(&self, keys: Vec<String>) -> MetaResult<Vec<String>> {
        let keys = Arc::new(keys);
        self.with_tx(move |tx| {
            let keys = keys.clone();
            Box::pin(async move { lifecycle::retire_orphans(tx, &keys).await })
        })
        .await
    }

    async fn merge_candidates(
        &self,
        partition: PartitionKey,
        prefix: &str,
        min_age_ms: i64,
        max_bytes: u64,
    ) -> MetaResult<Vec<BatchCoordinate>> {
        let prefix: Arc<str> = prefix.into();
        self.with_tx(move |tx| {
            let prefix = prefix.clone();
            Box::pin(async move {
                lifecycle::merge_candidates(tx, partition, &prefix, min_age_ms, max_bytes).await
            })
        })
        .await
    }

    async fn rewrite_batches(&self, rewrite: BatchRewrite) -> MetaResult<RewriteOutcome> {
        let rewrite = Arc::new(rewrite);
        self.with_tx(move |tx| {
            let rewrite = rewrite.clone();
            Box::pin(async move { lifecycle::rewrite_batches(tx, &rewrite).await })
        })
        .await
    }

    async fn object_stats(&self) -> MetaResult<ObjectStats> {
        let rows = self.query(lifecycle::OBJECT_STATS, &[]).await?;
        let row = rows
            .first()
            .ok_or_else(|| MetaError::Database("no row of object counts".into()))?;
        lifecycle::object_stats(row).map_err(pg)
    }

    async fn expire_producers(&self, idle_ms: i64, limit: usize) -> MetaResult<u64> {
        self.with_tx(move |tx| Box::pin(lifecycle::expire_producers(tx, idle_ms, limit)))
            .await
    }

    async fn objects_page(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> MetaResult<Vec<StoredObject>> {
        let rows = self
            .query(check::OBJECTS_PAGE, &[&after, &(limit as i64)])
            .await?;
        rows.iter()
            .map(check::object_row)
            .collect::<Result<_, _>>()
            .map_err(pg)
    }

    async fn batches_page(
        &self,
        after: Option<BatchCursor>,
        limit: usize,
    ) -> MetaResult<Vec<StoredBatch>> {
        let (topic, partition, base) = after.unwrap_or((Uuid::nil(), i32::MIN, i64::MIN));
        let rows = self
            .query(
                check::BATCHES_PAGE,
                &[&topic, &partition, &base, &(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(check::batch_row)
            .collect::<Result<_, _>>()
            .map_err(pg)
    }

    async fn recount_live_bytes(
        &self,
        keys: Vec<String>,
        fix: bool,
    ) -> MetaResult<Vec<LiveBytesMismatch>> {
        let keys = Arc::new(keys);
        self.with_tx(move |tx| {
            let keys = keys.clone();
            Box::pin(async move { check::recount_live_bytes(tx, &keys, fix).await })
        })
        .await
    }

    async fn partition_epochs(&self, since_ms: i64) -> MetaResult<EpochChanges> {
        // One row with the clock and no partition when nothing changed. Planned for each
        // `since_ms`: a cached generic plan, chosen after reads that followed a placement
        // (when every partition had changed), scanned every partition once per second
        // and node for good.
        let rows = self
            .query_planned_each_time(
                "SELECT c.now_ms, p.topic_id, p.partition, p.owner_epoch \
                 FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT AS now_ms) c \
                 LEFT JOIN partitions p ON p.epoch_changed_ms >= $1",
                &[(&since_ms, Type::INT8)],
            )
            .await?;
        let mut changes = EpochChanges::default();
        for r in &rows {
            changes.as_of_ms = r.try_get(0).map_err(pg)?;
            if let Some(topic_id) = r.try_get::<_, Option<Uuid>>(1).map_err(pg)? {
                let key = (topic_id, r.try_get(2).map_err(pg)?);
                changes.epochs.push((key, r.try_get(3).map_err(pg)?));
            }
        }
        if rows.is_empty() {
            return Err(MetaError::Database("no clock reading".into()));
        }
        Ok(changes)
    }

    async fn set_partition_pins(&self, pins: Vec<(PartitionKey, Option<i32>)>) -> MetaResult<()> {
        let pins = Arc::new(pins);
        self.with_tx(move |tx| {
            let pins = pins.as_ref().clone();
            Box::pin(async move { pins::set_operator_pins(tx, pins).await })
        })
        .await
    }

    async fn partition_pins(&self) -> MetaResult<Vec<PartitionPin>> {
        let rows = self.query(pins::ALL_PINS, &[]).await?;
        pins::pins_from_rows(&rows)
    }

    async fn claim_balancer_epoch(&self) -> MetaResult<i64> {
        let rows = self.query(pins::CLAIM_BALANCER_EPOCH, &[]).await?;
        pins::epoch_from_rows(&rows)
    }

    async fn set_balancer_pins(
        &self,
        epoch: i64,
        pins: Vec<(PartitionKey, Option<i32>)>,
    ) -> MetaResult<usize> {
        let pins = Arc::new(pins);
        self.with_tx(move |tx| {
            let pins = pins.as_ref().clone();
            Box::pin(async move { pins::set_balancer_pins(tx, epoch, pins).await })
        })
        .await
    }

    async fn report_load(&self, node_id: i32, load: Vec<(PartitionKey, u64)>) -> MetaResult<()> {
        self.query(pins::REPORT_LOAD, &[&node_id, &encode_load(&load)])
            .await?;
        Ok(())
    }

    async fn node_loads(&self) -> MetaResult<Vec<NodeLoad>> {
        let rows = self.query(pins::NODE_LOADS, &[]).await?;
        pins::loads_from_rows(&rows)
    }

    async fn delete_records(
        &self,
        topic_id: Uuid,
        partition: i32,
        owner_epoch: i64,
        offset: i64,
    ) -> MetaResult<i64> {
        self.with_tx(move |tx| {
            Box::pin(delete_records_tx(
                tx,
                topic_id,
                partition,
                owner_epoch,
                offset,
            ))
        })
        .await
    }

    async fn commit_offsets(
        &self,
        group: &str,
        owner_epoch: i64,
        offsets: Vec<CommittedOffset>,
    ) -> MetaResult<()> {
        // One row per partition (the last one wins, as with one upsert after another).
        let mut last: BTreeMap<(Uuid, i32), CommittedOffset> = BTreeMap::new();
        for o in offsets {
            last.insert((o.topic_id, o.partition), o);
        }
        let mut cols = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for o in last.into_values() {
            cols.0.push(o.topic_id);
            cols.1.push(o.partition);
            cols.2.push(o.offset);
            cols.3.push(o.leader_epoch);
            cols.4.push(o.metadata);
            cols.5.push(o.commit_time_ms);
        }
        let cols = Arc::new(cols);
        let group: Arc<str> = group.into();
        self.with_tx(move |tx| {
            let (cols, group) = (cols.clone(), group.clone());
            Box::pin(async move {
                ownership::check_group_epoch(tx, &group, owner_epoch).await?;
                if cols.0.is_empty() {
                    return Ok(());
                }
                let stmt = tx
                    .prepare_cached(
                        "INSERT INTO group_offsets (group_id, topic_id, partition, committed_offset, leader_epoch, metadata, commit_time_ms) SELECT $1::text, t, p, o, e, m, c FROM UNNEST($2::uuid[], $3::int4[], $4::int8[], $5::int4[], $6::text[], $7::int8[]) AS u(t, p, o, e, m, c) ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch, metadata = excluded.metadata, commit_time_ms = excluded.commit_time_ms",
                    )
                    .await?;
                tx.execute(
                    &stmt,
                    &[&&*group, &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn fetch_offsets(&self, group: &str) -> MetaResult<Vec<CommittedOffset>> {
        let rows = self
            .query(
                "SELECT topic_id, partition, committed_offset, leader_epoch, metadata, commit_time_ms FROM group_offsets WHERE group_id = $1 ORDER BY topic_id, partition",
                &[&group],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CommittedOffset {
                    topic_id: r.try_get(0)?,
                    partition: r.try_get(1)?,
                    offset: r.try_get(2)?,
                    leader_epoch: r.try_get(3)?,
                    metadata: r.try_get(4)?,
                    commit_time_ms: r.try_get(5)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(pg)
    }

    async fn delete_offsets(
        &self,
        group: &str,
        which: Option<Vec<(Uuid, i32)>>,
    ) -> MetaResult<u64> {
        let client = self.client().await?;
        // One statement each way: no explicit transaction needed.
        let n = match which {
            None => client
                .execute("DELETE FROM group_offsets WHERE group_id = $1", &[&group])
                .await
                .map_err(pg)?,
            Some(list) => {
                if list.is_empty() {
                    return Ok(0);
                }
                let (topics, partitions): (Vec<Uuid>, Vec<i32>) = list.into_iter().unzip();
                let stmt = client
                    .prepare_cached(
                        "DELETE FROM group_offsets g USING UNNEST($2::uuid[], $3::int4[]) AS u(topic_id, partition) WHERE g.group_id = $1 AND g.topic_id = u.topic_id AND g.partition = u.partition",
                    )
                    .await
                    .map_err(pg)?;
                client
                    .execute(&stmt, &[&group, &topics, &partitions])
                    .await
                    .map_err(pg)?
            }
        };
        Ok(n)
    }

    async fn offset_groups(&self) -> MetaResult<Vec<String>> {
        let rows = self
            .query(
                "SELECT group_id FROM group_offsets UNION SELECT group_id FROM group_states ORDER BY group_id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(pg)
    }

    async fn save_group_state(
        &self,
        group: &str,
        owner_epoch: i64,
        state: Option<Vec<u8>>,
    ) -> MetaResult<()> {
        let group: Arc<str> = group.into();
        let state = Arc::new(state);
        self.with_tx(move |tx| {
            let (group, state) = (group.clone(), state.clone());
            Box::pin(async move {
                ownership::check_group_epoch(tx, &group, owner_epoch).await?;
                match &*state {
                    Some(bytes) => {
                        let sql = format!(
                            "INSERT INTO group_states (group_id, state, updated_ms) VALUES ($1, $2, {}) ON CONFLICT (group_id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
                            ownership::NOW_MS
                        );
                        tx.execute(sql.as_str(), &[&&*group, bytes]).await?
                    }
                    None => {
                        tx.execute("DELETE FROM group_states WHERE group_id = $1", &[&&*group])
                            .await?
                    }
                };
                Ok(())
            })
        })
        .await
    }

    async fn load_group_state(&self, group: &str) -> MetaResult<Option<Vec<u8>>> {
        let rows = self
            .query(
                "SELECT state FROM group_states WHERE group_id = $1",
                &[&group],
            )
            .await?;
        rows.first().map(|r| r.try_get(0)).transpose().map_err(pg)
    }

    async fn cluster_id(&self) -> MetaResult<String> {
        self.with_tx(|tx| {
            Box::pin(async move {
                // Two statements: under READ COMMITTED the SELECT sees a row a concurrent
                // caller committed while the INSERT waited on it.
                tx.execute(
                    "INSERT INTO cluster_settings (key, value) VALUES ('cluster.id', $1) ON CONFLICT (key) DO NOTHING",
                    &[&new_cluster_id()],
                )
                .await?;
                Ok(tx
                    .query_one(
                        "SELECT value FROM cluster_settings WHERE key = 'cluster.id'",
                        &[],
                    )
                    .await?
                    .try_get(0)?)
            })
        })
        .await
    }

    async fn allocate_producer_id(&self) -> MetaResult<i64> {
        // A sequence never hands out a value twice, even across rolled-back transactions.
        let rows = self.query("SELECT nextval('producer_ids')", &[]).await?;
        rows.first()
            .ok_or_else(|| MetaError::Database("nextval returned no row".into()))?
            .try_get(0)
            .map_err(pg)
    }

    async fn renew_lease(&self, lease: &NodeLease, ttl_ms: i64) -> MetaResult<LeaseView> {
        let held = self
            .query(
                lease::RENEW_HELD,
                &[&lease.node_id, &lease.incarnation, &ttl_ms],
            )
            .await?;
        if let Some(renewal) = lease::held_view(lease, ttl_ms, &held).map_err(pg)? {
            if let Some(before) = renewal.prune_before {
                self.query(lease::PRUNE_EXPIRED, &[&before]).await?;
            }
            return Ok(renewal.view);
        }
        let lease = lease.clone();
        self.with_tx(move |tx| {
            let lease = lease.clone();
            Box::pin(async move { lease::renew_lease_tx(tx, &lease, ttl_ms).await })
        })
        .await
    }

    async fn release_lease(&self, node_id: i32, incarnation: Uuid) -> MetaResult<()> {
        self.query(
            "DELETE FROM node_leases WHERE node_id = $1 AND incarnation = $2",
            &[&node_id, &incarnation],
        )
        .await?;
        Ok(())
    }

    async fn get_transaction(&self, transactional_id: &str) -> MetaResult<Option<TxnRecord>> {
        let sql = format!(
            "SELECT {} FROM transactions WHERE transactional_id = $1",
            txn::TXN_COLUMNS
        );
        let rows = self.query(&sql, &[&transactional_id]).await?;
        rows.first().map(txn::txn_row).transpose()
    }

    async fn put_transaction(&self, rec: TxnRecord) -> MetaResult<Option<i64>> {
        let rec = Arc::new(rec);
        self.with_tx(move |tx| {
            let rec = rec.clone();
            Box::pin(async move { txn::put(tx, &rec).await })
        })
        .await
    }

    async fn list_transactions(&self) -> MetaResult<Vec<TxnRecord>> {
        let sql = format!(
            "SELECT {} FROM transactions ORDER BY transactional_id",
            txn::TXN_COLUMNS
        );
        let rows = self.query(&sql, &[]).await?;
        rows.iter().map(txn::txn_row).collect()
    }

    async fn due_transactions(
        &self,
        now_ms: i64,
        idle_before_ms: i64,
    ) -> MetaResult<Vec<TxnRecord>> {
        let c = txn::TXN_COLUMNS;
        // Three index range reads (transactions_by_state, transactions_by_last_update).
        let sql = format!(
            "SELECT {c} FROM transactions WHERE state IN (2, 3) \
             UNION ALL SELECT {c} FROM transactions \
               WHERE state = 1 AND txn_start_ms >= 0 AND txn_start_ms < $1::int8 - timeout_ms \
             UNION ALL SELECT {c} FROM transactions \
               WHERE last_update_ms < $2::int8 AND state IN (0, 4, 5) \
             ORDER BY transactional_id"
        );
        let rows = self.query(&sql, &[&now_ms, &idle_before_ms]).await?;
        rows.iter().map(txn::txn_row).collect()
    }

    async fn delete_transaction(&self, transactional_id: &str, version: i64) -> MetaResult<bool> {
        let id: Arc<str> = transactional_id.into();
        self.with_tx(move |tx| {
            let id = id.clone();
            Box::pin(async move { txn::delete(tx, &id, version).await })
        })
        .await
    }

    async fn stage_txn_offsets(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        group: &str,
        offsets: Vec<CommittedOffset>,
    ) -> MetaResult<bool> {
        let args: Arc<(String, String, Vec<CommittedOffset>)> =
            Arc::new((transactional_id.into(), group.into(), offsets));
        self.with_tx(move |tx| {
            let a = args.clone();
            Box::pin(async move { txn::stage_offsets(tx, &a.0, producer, &a.1, &a.2).await })
        })
        .await
    }

    async fn pending_txn_offsets(&self, group: &str) -> MetaResult<Vec<PartitionKey>> {
        let rows = self
            .query(
                "SELECT DISTINCT topic_id, partition FROM txn_offsets WHERE group_id = $1",
                &[&group],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(pg)
    }

    async fn txn_read_state(
        &self,
        topic_id: Uuid,
        partition: i32,
        from_offset: i64,
        to_offset: i64,
    ) -> MetaResult<(Option<i64>, Vec<AbortedTxn>)> {
        let open = self
            .query(
                "SELECT MIN(first_offset) FROM open_txns WHERE topic_id = $1 AND partition = $2",
                &[&topic_id, &partition],
            )
            .await?;
        let first: Option<i64> = match open.first() {
            Some(r) => r.try_get(0).map_err(pg)?,
            None => None,
        };
        let rows = self
            .query(
                "SELECT producer_id, first_offset, last_offset FROM aborted_txns WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3 AND first_offset < $4 ORDER BY first_offset",
                &[&topic_id, &partition, &from_offset, &to_offset],
            )
            .await?;
        let aborted = rows
            .iter()
            .map(|r| {
                Ok(AbortedTxn {
                    producer_id: r.try_get(0)?,
                    first_offset: r.try_get(1)?,
                    last_offset: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(pg)?;
        Ok((first, aborted))
    }

    async fn partition_producers(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> MetaResult<PartitionProducers> {
        let rows = self
            .query(
                "SELECT producer_id, producer_epoch, last_sequence, last_offset, last_write_ms FROM producers WHERE topic_id = $1 AND partition = $2 ORDER BY producer_id",
                &[&topic_id, &partition],
            )
            .await?;
        let producers = rows
            .iter()
            .map(|r| {
                Ok(ProducerRecord {
                    producer_id: r.try_get(0)?,
                    producer_epoch: r.try_get(1)?,
                    last_sequence: r.try_get(2)?,
                    last_offset: r.try_get(3)?,
                    last_write_ms: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(pg)?;
        let rows = self
            .query(
                "SELECT producer_id, first_offset FROM open_txns WHERE topic_id = $1 AND partition = $2 ORDER BY first_offset",
                &[&topic_id, &partition],
            )
            .await?;
        let open = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(pg)?;
        Ok((producers, open))
    }

    async fn end_txn_offsets(&self, transactional_id: &str, commit: bool) -> MetaResult<()> {
        let id: Arc<str> = transactional_id.into();
        self.with_tx(move |tx| {
            let id = id.clone();
            Box::pin(async move { txn::end_offsets(tx, &id, commit).await })
        })
        .await
    }

    async fn nodes(&self) -> MetaResult<Vec<NodeStatus>> {
        self.with_tx(|tx| {
            Box::pin(async move {
                let now = lease::store_now(tx).await?;
                lease::all_nodes(tx, now).await
            })
        })
        .await
    }

    async fn set_node_draining(&self, node_id: i32, draining: bool) -> MetaResult<bool> {
        self.with_tx(move |tx| {
            Box::pin(async move {
                let changed = if draining {
                    let now = lease::store_now(tx).await?;
                    tx.execute(
                        "INSERT INTO node_drains (node_id, since_ms) VALUES ($1, $2) \
                         ON CONFLICT (node_id) DO NOTHING",
                        &[&node_id, &now],
                    )
                    .await?
                } else {
                    tx.execute("DELETE FROM node_drains WHERE node_id = $1", &[&node_id])
                        .await?
                };
                Ok(changed > 0)
            })
        })
        .await
    }

    async fn draining_nodes(&self) -> MetaResult<Vec<i32>> {
        let rows = self
            .query("SELECT node_id FROM node_drains ORDER BY node_id", &[])
            .await?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(pg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_pool_size_is_split_off() {
        let (c, n) = parse_url("postgres://u:pw@db.example:6543/meta?pool_size=3").unwrap();
        assert_eq!(n, 3);
        assert_eq!(c.get_user(), Some("u"));
        assert_eq!(c.get_dbname(), Some("meta"));
        assert_eq!(c.get_ports(), &[6543]);
        let (c, n) =
            parse_url("postgresql://u@h/meta?application_name=x&pool_size=12&connect_timeout=3")
                .unwrap();
        assert_eq!(n, 12);
        assert_eq!(c.get_application_name(), Some("x"));
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
        let (c, n) = parse_url("postgres://u@h/meta").unwrap();
        assert_eq!(n, DEFAULT_POOL_SIZE);
        assert_eq!(c.get_application_name(), Some("inkless"));
    }

    /// The form docs/operations/postgresql.md gives for a primary with standbys: every host
    /// is tried in turn and only a writable one is kept.
    #[test]
    fn a_url_may_list_several_hosts_and_ask_for_the_writable_one() {
        let url =
            "postgres://u:pw@pg-a:5432,pg-b:5433/meta?target_session_attrs=read-write&pool_size=4";
        let (c, n) = parse_url(url).unwrap();
        assert_eq!(n, 4);
        assert_eq!(c.get_hosts().len(), 2);
        assert_eq!(c.get_ports(), &[5432, 5433]);
        assert_eq!(
            c.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
    }

    #[test]
    fn bad_urls_are_refused_without_showing_the_password() {
        for url in [
            "postgres://u:secret@h/db?pool_size=0",
            "postgres://u:secret@h/db?pool_size=many",
            "postgres://u:secret@h/db?no_such_option=1",
        ] {
            match parse_url(url) {
                Err(MetaError::InvalidUrl(msg)) => {
                    assert!(!msg.contains("secret"), "{msg}");
                    assert!(msg.contains("u:***@h"), "{msg}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(matches!(
            parse_url("mysql://h/db"),
            Err(MetaError::InvalidUrl(_))
        ));
    }
}
