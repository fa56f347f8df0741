//! Consumer groups: one coordinator actor per group (classic and KIP-848 protocols), the
//! manager that claims and places them, the handle request handlers hold, and the stored
//! form of a group's membership that survives restarts and moves of its coordinator.

pub(crate) mod classic;
pub(crate) mod consumer;
pub(crate) mod coordinator;
pub(crate) mod error;
pub(crate) mod handle;
pub(crate) mod manager;
pub(crate) mod persist;

#[cfg(test)]
mod coordinator_tests;
