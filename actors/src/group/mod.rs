//! Consumer groups: one coordinator actor per group (classic and KIP-848 protocols), the
//! manager that claims and places them, and the handle request handlers hold.

pub(crate) mod consumer;
pub(crate) mod coordinator;
pub(crate) mod error;
pub(crate) mod handle;
pub(crate) mod manager;

#[cfg(test)]
mod coordinator_tests;
