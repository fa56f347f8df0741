//! `inkless`: a Kafka-compatible broker whose topics live in object storage.
//!
//! `inkless serve` starts a node with the embedded default (Kafka listener on
//! 127.0.0.1:9092, local object files and a SQLite metadata store under `./data`).
//! `inkless serve --config FILE` reads a TOML file; `INKLESS__SECTION__KEY` environment
//! variables override any key. SIGINT/SIGTERM stop taking requests, seal and upload the open
//! object, wait for its commit, and exit 0.

mod admin;
mod catalog;
mod cluster;
mod config;
mod handlers;
mod metrics;
mod ops;
mod server;
mod storage_check;
mod telemetry;
mod ui;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::Config;
use handlers::Ctx;
use inkless_actors::Node;
use inkless_storage::blob::BlobStore;
use inkless_storage::metadata::NodeLease;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Oversized allocations requested by the protocol decoder must not abort the node.
#[global_allocator]
static ALLOCATOR: inkless_protocol::alloc_guard::LargeAllocGuard =
    inkless_protocol::alloc_guard::LargeAllocGuard;

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_logged_urls() {
        assert_eq!(
            super::redact_url("postgres://me:s3cret@db:5432/x"),
            "postgres://me:***@db:5432/x"
        );
        assert_eq!(
            super::redact_url("sqlite://metadata.db"),
            "sqlite://metadata.db"
        );
    }
}

#[derive(Parser)]
#[command(
    name = "inkless",
    version,
    about = "A Kafka-compatible broker whose topics live in object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node.
    Serve {
        /// TOML configuration file (see configs/single-node.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the effective configuration (defaults, file, environment) as TOML.
    Config {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Topics, over the Kafka protocol (kafka-topics.sh's options and output).
    Topics(ops::TopicsArgs),
    /// Consumer groups, over the Kafka protocol (kafka-consumer-groups.sh's options and
    /// output).
    Groups(ops::GroupsArgs),
    /// Inspect a running cluster through any node's admin endpoint, drain a node.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Compare the metadata store with the object store (docs/operations.md).
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
}

#[derive(Subcommand)]
enum StorageCommand {
    /// Report batches whose bytes are missing, unreferenced objects and wrong live-byte
    /// counts; exit 1 when problems are left, 2 when the check could not run.
    Check {
        /// TOML configuration file naming the stores (as for `serve`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Delete unreferenced objects older than the minimum age and recount wrong live
        /// bytes.
        #[arg(long)]
        repair: bool,
        /// With --repair: raise a partition's log start past missing batches at its start.
        #[arg(long, requires = "repair")]
        drop_missing: bool,
        /// Unreferenced objects younger than this are ignored (default:
        /// storage.orphan_min_age_ms).
        #[arg(long)]
        min_orphan_age_ms: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Nodes, their AZs and lease ages, and what actors run where.
    Status {
        /// Admin endpoint (host:port) of any node.
        #[arg(long, default_value = "127.0.0.1:9644")]
        admin: String,
        /// Also print every node's whole supervision tree.
        #[arg(long)]
        actors: bool,
        /// Print the raw JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Move every partition and group coordinator off a node before maintenance and keep
    /// it empty until `--cancel` (ADR 0021).
    Drain(ops::DrainArgs),
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Cache blocks (4 MiB), sealed objects and fetch responses are large buffers that come and
/// go many times a second. glibc serves every allocation over 128 KiB with a fresh mmap,
/// so each one costs page faults and kernel page zeroing, then a munmap. Serving them from
/// the heap instead measured +15-20 % catch-up consume throughput and -30 % broker CPU per
/// GiB (ConsumerPerformance, docs/benchmarks.md). Freed memory up to 256 MiB stays mapped.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's malloc parameters; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Config { config } => {
            let c = Config::load(config.as_deref())?;
            print!("{}", toml_string(&c)?);
            Ok(())
        }
        Command::Cluster {
            command:
                ClusterCommand::Status {
                    admin,
                    actors,
                    json,
                },
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(cluster::print_status(&admin, actors, json))
        }
        Command::Cluster {
            command: ClusterCommand::Drain(args),
        } => ops::run_command(ops::run_drain(args)),
        Command::Topics(args) => ops::run_command(ops::run_topics(args)),
        Command::Groups(args) => ops::run_command(ops::run_groups(args)),
        Command::Storage {
            command:
                StorageCommand::Check {
                    config,
                    json,
                    repair,
                    drop_missing,
                    min_orphan_age_ms,
                },
        } => {
            let c = Config::load(config.as_deref())?;
            init_tracing("warn");
            let opts = storage_check::CheckOptions {
                repair,
                drop_missing,
                min_orphan_age_ms: min_orphan_age_ms
                    .unwrap_or(c.storage.orphan_min_age_ms)
                    .min(i64::MAX as u64) as i64,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            match rt.block_on(storage_check(&c, &opts, json)) {
                Ok(0) => Ok(()),
                Ok(_) => std::process::exit(1),
                Err(e) => {
                    eprintln!("inkless storage check: {e:#}");
                    std::process::exit(2)
                }
            }
        }
        Command::Serve { config } => {
            let c = Config::load(config.as_deref())?;
            init_tracing(&c.log.level);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("inkless")
                .build()?;
            rt.block_on(serve(c))
        }
    }
}

/// Runs `inkless storage check`, prints its report and returns the problems left.
async fn storage_check(
    c: &Config,
    opts: &storage_check::CheckOptions,
    json: bool,
) -> anyhow::Result<u64> {
    let data_dir = c.storage.data_dir.clone();
    let store = inkless_storage::metadata::open(&c.storage.metadata, &data_dir)
        .await
        .with_context(|| format!("opening metadata store {}", redact_url(&c.storage.metadata)))?;
    let blob = BlobStore::open(&c.storage.object_store, &c.storage.s3, &data_dir)
        .with_context(|| format!("opening object store {}", c.storage.object_store))?;
    let report = storage_check::run(store, blob, opts).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", storage_check::human(&report, opts));
    }
    Ok(report.problems_left)
}

fn toml_string(c: &Config) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(c)?)
}

async fn serve(c: Config) -> anyhow::Result<()> {
    // No directory is created here: only relative file:// and sqlite:// URLs use data_dir
    // (and create what they need), so a cluster node on PostgreSQL and S3 writes no file.
    let data_dir = c.storage.data_dir.clone();
    let store = inkless_storage::metadata::open(&c.storage.metadata, &data_dir)
        .await
        .with_context(|| format!("opening metadata store {}", c.storage.metadata))?;
    let blob = BlobStore::open(&c.storage.object_store, &c.storage.s3, &data_dir)
        .with_context(|| format!("opening object store {}", c.storage.object_store))?
        .with_latency(c.storage.latency.clone());
    let cluster_id = store.cluster_id().await?;
    let catalog = catalog::Catalog::load(store.clone(), c.broker_defaults()).await?;

    let listener = tokio::net::TcpListener::bind(&c.kafka.listen)
        .await
        .with_context(|| format!("binding {}", c.kafka.listen))?;
    let bound = listener.local_addr()?;
    let advertised = if c.kafka.advertised.is_empty() {
        bound.to_string()
    } else {
        c.kafka.advertised.clone()
    };
    let (host, port) = handlers::split_host_port(&advertised)
        .with_context(|| format!("kafka.advertised {advertised:?} is not host:port"))?;
    let admin_listener = if c.admin.listen.is_empty() {
        None
    } else {
        Some(
            tokio::net::TcpListener::bind(&c.admin.listen)
                .await
                .with_context(|| format!("binding admin.listen {}", c.admin.listen))?,
        )
    };
    let lease = NodeLease {
        node_id: c.node.id,
        incarnation: uuid::Uuid::new_v4(),
        az: c.node.rack.clone(),
        kafka_addr: advertised.clone(),
        cluster_addr: if !c.cluster.enabled {
            String::new()
        } else if c.cluster.advertised.is_empty() {
            c.cluster.listen.clone()
        } else {
            c.cluster.advertised.clone()
        },
        admin_addr: match &admin_listener {
            Some(_) if !c.admin.advertised.is_empty() => c.admin.advertised.clone(),
            Some(l) => l.local_addr()?.to_string(),
            None => String::new(),
        },
    };
    if c.cluster.enabled {
        tracing::info!(node_id = c.node.id, az = %c.node.rack, "joining the cluster");
    }
    let node = Node::start(c.node_config(lease), store, blob, Arc::new(catalog.clone())).await?;
    let failed = node.place(catalog.partitions()).await;
    if c.cluster.enabled {
        // Partitions still held by their previous owners start once those release them
        // (the partition manager retries).
        if !failed.is_empty() {
            tracing::info!(
                partitions = failed.len(),
                "partitions not claimed yet; retrying"
            );
        }
    } else {
        anyhow::ensure!(failed.is_empty(), "partitions failed to start: {failed:?}");
    }
    let started = node.running_partitions();
    if c.cluster.enabled {
        tokio::spawn(cluster::follow_placement(
            node.clone(),
            catalog.clone(),
            Duration::from_millis(c.cluster.topic_refresh_interval_ms),
        ));
    }

    let budget = c.produce_budget_permits();
    let ctx = Arc::new(Ctx {
        config: c.clone(),
        node: node.clone(),
        catalog,
        cluster_id,
        advertised_host: host,
        advertised_port: port,
        produce_budget: Arc::new(Semaphore::new(budget as usize)),
        requests: metrics::RequestMetrics::default(),
        fetch_sessions: handlers::fetch_session::FetchSessions::new(
            c.fetch.max_sessions,
            Duration::from_millis(c.fetch.session_eviction_ms),
        ),
    });
    tracing::info!(listen = %bound, advertised = %advertised, object_store = %c.storage.object_store,
        metadata = %redact_url(&c.storage.metadata), partitions = started, "inkless node ready");

    let admin = match admin_listener {
        Some(l) => {
            tracing::info!(listen = %l.local_addr()?, "admin endpoint ready");
            Some(tokio::spawn(admin::serve(l, ctx.clone())))
        }
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(server::serve(listener, ctx.clone(), stop_rx));
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutdown requested"),
        _ = node.stopped() => anyhow::bail!("actor tree stopped unexpectedly"),
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    // Seal the open object and wait until every accepted produce has been answered.
    node.flush();
    let drained = tokio::time::timeout(
        Duration::from_millis(c.produce.upload_timeout_ms + 5_000),
        ctx.produce_budget.acquire_many(budget),
    )
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight produce requests did not finish before the shutdown deadline");
    }
    // Hand everything off: end the lease, so the other nodes take over at their next
    // renewal, and stop this node's partitions and groups once their commits are done.
    node.leave().await;
    node.stop().await;
    if let Some(a) = admin {
        a.abort();
    }
    tracing::info!("inkless node stopped");
    Ok(())
}

/// A URL with its password (if any) replaced, for logs.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
