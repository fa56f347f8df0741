//! Command-line options of `inkless-bench`.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use kafka_protocol::records::Compression;

/// Kafka produce/consume benchmark speaking the wire protocol directly.
///
/// Producers write fixed-size records (the value starts with the send
/// timestamp) to all partitions of a topic; consumers read this run's
/// records back and measure end-to-end latency.
#[derive(Debug, Clone, Parser)]
#[command(name = "inkless-bench", version)]
pub struct Args {
    /// Broker address, HOST:PORT. All requests go to this broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,

    /// Topic to produce to and consume from.
    #[arg(long, default_value = "bench")]
    pub topic: String,

    /// Partitions of the topic when it has to be created. An existing
    /// topic keeps its own partition count.
    #[arg(long, default_value_t = 100)]
    pub partitions: i32,

    /// Replication factor when the topic has to be created.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,

    /// Size of each record value in bytes (at least 8: the timestamp).
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,

    /// Producer connections.
    #[arg(long, default_value_t = 4)]
    pub producers: usize,

    /// Consumer connections (partitions are divided among them; 0 = none).
    #[arg(long, default_value_t = 4)]
    pub consumers: usize,

    /// Measured duration in seconds (after the warm-up).
    #[arg(long, default_value_t = 30)]
    pub duration_secs: u64,

    /// Warm-up in seconds: records sent then are not counted in the
    /// throughput and latency results.
    #[arg(long, default_value_t = 0)]
    pub warmup_secs: u64,

    /// Target records per second over all producers (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,

    /// Records per partition batch; a full batch is sent at once.
    #[arg(long, default_value_t = 16)]
    pub batch_records: usize,

    /// How long a partial batch may wait for more records, in ms.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,

    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,

    /// Produce acks: -1 (all), 1 (leader) or 0 (no response).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub acks: i16,

    /// Produce requests in flight per producer connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,

    /// Upper bound of the record bytes in one produce request.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_request_bytes: usize,

    /// Request timeout in ms (sent as the produce timeout and used
    /// client-side for every response).
    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// Fetch max wait in ms.
    #[arg(long, default_value_t = 100)]
    pub fetch_max_wait_ms: i32,

    /// Fetch min bytes (the broker answers once this much is available or
    /// the max wait is over).
    #[arg(long, default_value_t = 1)]
    pub fetch_min_bytes: i32,

    /// Fetch max bytes per partition.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub fetch_partition_max_bytes: i32,

    /// After the producers stop: how long in-flight acks and consumers may
    /// take to finish, in seconds.
    #[arg(long, default_value_t = 10)]
    pub drain_secs: u64,

    /// PID of the broker process: report its CPU seconds (from
    /// /proc/PID/stat) over the measured window.
    #[arg(long)]
    pub broker_pid: Option<u32>,

    /// Prometheus text endpoint (http://...): report deltas of counters
    /// whose names contain `object_store` over the measured window.
    #[arg(long)]
    pub metrics_url: Option<String>,

    /// Seconds between progress lines on stderr (0 = none).
    #[arg(long, default_value_t = 5)]
    pub progress_secs: u64,
}

/// `--compression` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// No compression.
    None,
    /// LZ4 frames.
    Lz4,
    /// Zstandard.
    Zstd,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing).
    Snappy,
}

impl CompressionArg {
    /// The record-batch compression codec.
    pub fn codec(self) -> Compression {
        match self {
            CompressionArg::None => Compression::None,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
        }
    }

    /// Lower-case name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            CompressionArg::None => "none",
            CompressionArg::Lz4 => "lz4",
            CompressionArg::Zstd => "zstd",
            CompressionArg::Gzip => "gzip",
            CompressionArg::Snappy => "snappy",
        }
    }
}

impl Args {
    /// Rejects inconsistent options.
    pub fn validate(&self) -> Result<()> {
        if self.record_bytes < 8 {
            bail!("--record-bytes must be at least 8 (the timestamp)");
        }
        if self.producers == 0 {
            bail!("--producers must be at least 1");
        }
        if self.partitions < 1 {
            bail!("--partitions must be at least 1");
        }
        if self.batch_records == 0 {
            bail!("--batch-records must be at least 1");
        }
        if self.max_in_flight == 0 {
            bail!("--max-in-flight must be at least 1");
        }
        if !matches!(self.acks, -1..=1) {
            bail!("--acks must be -1, 0 or 1");
        }
        if self.duration_secs == 0 {
            bail!("--duration-secs must be at least 1");
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            bail!("--rate must be a non-negative number");
        }
        if self.fetch_max_wait_ms < 0
            || self.fetch_min_bytes < 0
            || self.fetch_partition_max_bytes <= 0
        {
            bail!("--fetch-max-wait-ms, --fetch-min-bytes and --fetch-partition-max-bytes must be positive");
        }
        Ok(())
    }

    /// Client-side timeout for any single response.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }
}
