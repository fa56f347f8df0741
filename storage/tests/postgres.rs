//! The PostgreSQL metadata store against a real PostgreSQL server, which each test starts by
//! itself (initdb + pg_ctl from /usr/lib/postgresql/<version>/bin, in a temporary directory,
//! on a free 127.0.0.1 port) and stops when it ends, even on failure.
//!
//! Missing PostgreSQL binaries fail the tests: run `scripts/install-test-deps.sh`.

use inkless_storage::metadata::{
    self, conformance, AppendOutcome, BatchCoordinate, Claimant, MetaError, MetadataStore,
    NewTopic, NodeLease, PartitionAppend, PostgresStore, SharedMetadataStore,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A PostgreSQL server in a temporary directory; stopped on drop.
struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres_user: bool,
    // Dropped after `drop` has stopped the server.
    dir: tempfile::TempDir,
}

/// The newest /usr/lib/postgresql/<version>/bin that holds initdb and pg_ctl.
fn find_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under \
             /usr/lib/postgresql/*/bin: run scripts/install-test-deps.sh"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn describe(o: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl PgServer {
    /// A PostgreSQL program, run as the `postgres` OS user when we are root (the server
    /// refuses to run as root).
    fn command(&self, program: &str) -> Command {
        pg_command(&self.bin, program, self.as_postgres_user)
    }

    fn start() -> PgServer {
        let bin = find_bin_dir();
        let as_postgres_user = is_root();
        let dir = tempfile::Builder::new()
            .prefix("inkless-pg")
            .tempdir()
            .expect("temp dir");
        if as_postgres_user {
            let out = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .output()
                .expect("run chown");
            assert!(
                out.status.success(),
                "chown of the temp dir to the postgres user failed (does the user exist? \
                 run scripts/install-test-deps.sh): {}",
                describe(&out)
            );
        }
        let data = dir.path().join("data");
        let mut server = PgServer {
            bin,
            data,
            port: 0,
            as_postgres_user,
            dir,
        };
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(&server.data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", describe(&out));
        // A free port can be taken between our probe and the server's bind: retry.
        let log = server.dir.path().join("server.log");
        for attempt in 1..=3 {
            server.port = free_port();
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                server.port,
                server.dir.path().display()
            );
            let out = server
                .command("pg_ctl")
                .arg("-D")
                .arg(&server.data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &options, "start"])
                .output()
                .expect("run pg_ctl start");
            if out.status.success() {
                return server;
            }
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                attempt < 3,
                "pg_ctl start failed: {}\nserver log:\n{log_text}",
                describe(&out)
            );
        }
        unreachable!()
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Waits until the server accepts connections, then creates `name`.
    async fn create_database(&self, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (client, connection) = loop {
            match tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("waiting for PostgreSQL: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("PostgreSQL does not accept connections: {e:?}"),
            }
        };
        let conn = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        drop(client);
        let _ = conn.await;
        self.url(name)
    }
}

fn pg_command(bin: &Path, program: &str, as_postgres_user: bool) -> Command {
    let path = bin.join(program);
    if as_postgres_user {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.port == 0 {
            return;
        }
        let stopped = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        match stopped {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("pg_ctl stop failed: {}", describe(&o)),
            Err(e) => eprintln!("pg_ctl stop failed: {e}"),
        }
    }
}

fn batch(base: i64, last: i64, key: &str) -> BatchCoordinate {
    BatchCoordinate {
        base_offset: base,
        last_offset: last,
        object_key: key.to_string(),
        object_size: 1_000,
        byte_offset: 0,
        byte_len: 10,
        max_timestamp: base,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        last_sequence: -1,
    }
}

#[tokio::test]
async fn postgres_passes_the_conformance_suite() {
    let pg = PgServer::start();
    let url = pg.create_database("conformance").await;
    // Through `open`, as the node does, with a pool size in the URL.
    let store = metadata::open(&format!("{url}?pool_size=4"), Path::new("."))
        .await
        .expect("open postgres store");
    conformance::run_all(store.clone()).await;

    // Live bytes corrupted behind the store's back are found and recounted.
    let key = conformance::object_for_recount(&store).await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let conn = tokio::spawn(connection);
    client
        .execute(
            "UPDATE objects SET live_bytes = 7 WHERE object_key = $1",
            &[&key],
        )
        .await
        .expect("corrupt");
    drop(client);
    let _ = conn.await;
    conformance::corrupted_live_bytes_are_recounted(&store, &key, 7).await;
}

#[tokio::test]
async fn two_handles_on_one_database_fence_each_other() {
    let pg = PgServer::start();
    let url = pg.create_database("fencing").await;
    let a = PostgresStore::connect(&url).await.expect("connect a");
    let b = PostgresStore::connect(&url).await.expect("connect b");
    let t = a
        .create_topic(NewTopic {
            name: "t".into(),
            partitions: 1,
            configs: Default::default(),
        })
        .await
        .expect("create");
    assert_eq!(b.list_topics().await.expect("list"), vec![t.clone()]);
    let append = |epoch, batches| PartitionAppend {
        topic_id: t.id,
        partition: 0,
        owner_epoch: epoch,
        batches,
        producers: vec![],
        txn_events: Vec::new(),
    };

    let first = a
        .claim_partition(t.id, 0, Claimant::alone(1))
        .await
        .expect("claim a");
    let out = a
        .commit_appends(vec![append(first.owner_epoch, vec![batch(0, 4, "o1")])])
        .await
        .expect("commit a");
    assert_eq!(out, vec![AppendOutcome::Committed]);

    let second = b
        .claim_partition(t.id, 0, Claimant::alone(2))
        .await
        .expect("claim b");
    assert!(second.owner_epoch > first.owner_epoch);
    assert_eq!(second.high_watermark, 5);
    let out = a
        .commit_appends(vec![append(first.owner_epoch, vec![batch(5, 5, "o2")])])
        .await
        .expect("commit a");
    assert_eq!(out, vec![AppendOutcome::Fenced], "the old owner is fenced");
    assert!(matches!(
        a.delete_records(t.id, 0, first.owner_epoch, 1).await,
        Err(MetaError::Fenced(..))
    ));
    let out = b
        .commit_appends(vec![append(second.owner_epoch, vec![batch(5, 7, "o3")])])
        .await
        .expect("commit b");
    assert_eq!(out, vec![AppendOutcome::Committed]);
    let read = a.read_batches(t.id, 0, 0, 1 << 20).await.expect("read");
    assert_eq!(
        read.iter()
            .map(|b| (b.base_offset, b.object_key.as_str()))
            .collect::<Vec<_>>(),
        vec![(0, "o1"), (5, "o3")]
    );
}

/// Nodes starting at once migrate once; two owners racing for one partition never both
/// commit at one offset; group commits over many partitions do not deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_nodes_migrate_once_and_never_interleave() {
    let pg = PgServer::start();
    let url = pg.create_database("race").await;
    let stores = futures::future::join_all((0..4).map(|_| PostgresStore::connect(&url))).await;
    let stores: Vec<SharedMetadataStore> = stores
        .into_iter()
        .map(|s| Arc::new(s.expect("concurrent connect")) as SharedMetadataStore)
        .collect();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let conn = tokio::spawn(connection);
    let versions: Vec<i64> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i64> = (1..=versions.len() as i64).collect();
    assert!(versions.len() >= 4, "every migration applied: {versions:?}");
    assert_eq!(versions, expected, "each migration applied once");

    let t = stores[0]
        .create_topic(NewTopic {
            name: "race".into(),
            partitions: 8,
            configs: Default::default(),
        })
        .await
        .expect("create");

    // Two owners of partition 0 claim and commit in a loop: each commit either lands
    // exactly at the high watermark its owner claimed, or is fenced.
    let racers = (0..2).map(|i| {
        let s = stores[i].clone();
        tokio::spawn(async move {
            let mut committed = 0;
            for round in 0..40 {
                let st = s
                    .claim_partition(t.id, 0, Claimant::alone(i as i32))
                    .await
                    .expect("claim");
                let hwm = st.high_watermark;
                let out = s
                    .commit_appends(vec![PartitionAppend {
                        topic_id: t.id,
                        partition: 0,
                        owner_epoch: st.owner_epoch,
                        batches: vec![batch(hwm, hwm, &format!("racer-{i}-{round}"))],
                        producers: vec![],
                        txn_events: Vec::new(),
                    }])
                    .await
                    .expect("commit");
                match out[..] {
                    [AppendOutcome::Committed] => committed += 1,
                    [AppendOutcome::Fenced] => {}
                    ref other => panic!("unexpected outcome {other:?}"),
                }
            }
            committed
        })
    });
    // Meanwhile two other nodes group-commit partitions 1..8, in opposite orders.
    let writers = (2..4).map(|i| {
        let s = stores[i].clone();
        tokio::spawn(async move {
            let mine: Vec<i32> = (1..8).filter(|p| p % 2 == (i as i32) % 2).collect();
            let mut epochs = Vec::new();
            for &p in &mine {
                epochs.push(
                    s.claim_partition(t.id, p, Claimant::alone(i as i32))
                        .await
                        .expect("claim"),
                );
            }
            for round in 0..40i64 {
                let mut appends: Vec<PartitionAppend> = mine
                    .iter()
                    .zip(&epochs)
                    .map(|(&p, st)| PartitionAppend {
                        topic_id: t.id,
                        partition: p,
                        owner_epoch: st.owner_epoch,
                        batches: vec![
                            batch(round * 2, round * 2, &format!("w{i}-{round}")),
                            batch(round * 2 + 1, round * 2 + 1, &format!("w{i}-{round}")),
                        ],
                        producers: vec![],
                        txn_events: Vec::new(),
                    })
                    .collect();
                if round % 2 == 1 {
                    appends.reverse();
                }
                let n = appends.len();
                let out = s.commit_appends(appends).await.expect("group commit");
                assert_eq!(out, vec![AppendOutcome::Committed; n]);
            }
        })
    });
    let writers: Vec<_> = writers.collect();
    let mut committed = 0;
    for r in racers {
        committed += r.await.expect("racer");
    }
    for w in writers {
        w.await.expect("writer");
    }
    let read = stores[0]
        .read_batches(t.id, 0, 0, u64::MAX)
        .await
        .expect("read");
    assert_eq!(read.len(), committed, "one batch per committed append");
    for (i, b) in read.iter().enumerate() {
        assert_eq!(b.base_offset, i as i64, "dense offsets");
    }
    for p in 1..8 {
        let st = stores[0]
            .claim_partition(t.id, p, Claimant::alone(9))
            .await
            .expect("claim");
        assert_eq!(st.high_watermark, 80);
    }
    drop(client);
    let _ = conn.await;
}

/// Three nodes under live leases race, round after round, to release what they hold and
/// claim every partition in one batch each (in different orders, on separate connections):
/// no batch fails (a release and a claim of the same rows wait for each other, they do not
/// deadlock), and in every round each partition goes to exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_batch_claims_and_releases_give_each_partition_to_one_node() {
    const PARTITIONS: i32 = 600;
    let pg = PgServer::start();
    let url = pg.create_database("batches").await;
    let stores = futures::future::join_all((0..3).map(|_| PostgresStore::connect(&url))).await;
    let stores: Vec<SharedMetadataStore> = stores
        .into_iter()
        .map(|s| Arc::new(s.expect("connect")) as SharedMetadataStore)
        .collect();
    let t = stores[0]
        .create_topic(NewTopic {
            name: "batches".into(),
            partitions: PARTITIONS,
            configs: Default::default(),
        })
        .await
        .expect("create");
    let mut claimants = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let lease = NodeLease {
            node_id: 40 + i as i32,
            incarnation: uuid::Uuid::new_v4(),
            ..NodeLease::default()
        };
        let view = s.renew_lease(&lease, 60_000).await.expect("register");
        claimants.push(Claimant {
            node_id: lease.node_id,
            lease_generation: Some(view.generation),
        });
    }
    let mut held: Vec<Vec<(uuid::Uuid, i32)>> = vec![Vec::new(); 3];
    for round in 0..8 {
        let racers = (0..3).map(|i| {
            let (s, me, mine) = (stores[i].clone(), claimants[i], held[i].clone());
            let mut all: Vec<(uuid::Uuid, i32)> = (0..PARTITIONS).map(|p| (t.id, p)).collect();
            all.rotate_left(i * PARTITIONS as usize / 3);
            if (round + i) % 2 == 1 {
                all.reverse();
            }
            tokio::spawn(async move {
                s.release_partitions(me, mine).await.expect("release");
                let out = s.claim_partitions(me, all.clone()).await.expect("claim");
                let mut won = Vec::new();
                for (key, r) in all.into_iter().zip(out) {
                    match r {
                        Ok(_) => won.push(key),
                        Err(MetaError::OwnedElsewhere { .. }) => {}
                        Err(e) => panic!("unexpected refusal {e}"),
                    }
                }
                won
            })
        });
        let won: Vec<Vec<(uuid::Uuid, i32)>> = futures::future::join_all(racers)
            .await
            .into_iter()
            .map(|r| r.expect("racer"))
            .collect();
        let mut every: Vec<(uuid::Uuid, i32)> = won.iter().flatten().copied().collect();
        every.sort();
        let expected: Vec<(uuid::Uuid, i32)> = (0..PARTITIONS).map(|p| (t.id, p)).collect();
        assert_eq!(
            every, expected,
            "round {round}: each partition to exactly one node"
        );
        for (i, w) in won.iter().enumerate() {
            let mut owned = stores[i]
                .owned_partitions(claimants[i])
                .await
                .expect("owned");
            owned.sort();
            let mut w = w.clone();
            w.sort();
            assert_eq!(owned, w, "round {round}: node {i} holds what it won");
        }
        held = won;
    }
}
