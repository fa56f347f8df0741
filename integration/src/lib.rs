//! Integration tooling for Inkless: the `inkless-bench` benchmark (module
//! [`bench`]) and end-to-end tests against real Kafka clients.

pub mod bench;
