//! Kafka wire protocol for Inkless.
//!
//! Architecture invariant: this crate does no I/O and knows nothing about actors or storage.
//! It turns bytes into requests and responses into bytes, and inspects record batches
//! (header fields, CRC-32C) without decompressing them.
//!
//! - [`frame`]: length-prefixed framing with a size cap.
//! - [`request`]: request header parsing, the table of supported APIs and versions, and
//!   request decoding / response encoding.
//! - [`response_frame`]: encoded responses that reference a Fetch answer's records instead of
//!   copying them.
//! - [`batch`]: record-batch (magic 2) header inspection, validation and rewriting.
//! - [`records`]: records inside batches (decompressed with kafka-protocol's codecs), for
//!   the paths that need keys.
//! - [`compaction`]: key compaction of a run of batches.
//! - [`consumer_protocol`]: the subscription bytes classic consumers send in JoinGroup.

pub mod alloc_guard;
pub mod batch;
pub mod compaction;
pub mod consumer_protocol;
pub mod control;
pub mod frame;
pub mod records;
pub mod request;
pub mod response_frame;

pub use kafka_protocol;
