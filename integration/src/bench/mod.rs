//! `inkless-bench`: a Kafka produce/consume benchmark that speaks the wire
//! protocol itself (kafka-protocol crate over tokio TCP), so it measures the
//! broker rather than a client library.
//!
//! See [`run::run`] for the phases of a run and [`report::Report`] for what
//! is measured.

pub mod config;
pub mod conn;
pub mod consumer;
pub mod procstat;
pub mod producer;
pub mod prom;
pub mod report;
pub mod run;
pub mod setup;
pub mod stats;
