//! Storage for Inkless: where bytes and facts live.
//!
//! Architecture invariant: this crate knows nothing about actors or the Kafka wire protocol
//! beyond record-batch bytes. It offers three things:
//! - [`object`]: the format of a produce object (batches grouped by partition, footer index);
//! - [`blob`]: the object store (local files, S3, memory) chosen by URL, with request counters;
//! - [`metrics`]: the storage metric families and the lock-free histogram;
//! - [`metadata`]: the metadata store trait (topics, partitions, batch coordinates, producer
//!   state) and its SQLite implementation.

pub mod blob;
pub mod latency;
pub mod metadata;
pub mod metrics;
pub mod object;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
