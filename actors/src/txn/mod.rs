//! Transactions (ADR 0018): the coordinator of transactional ids and its state machine.

pub(crate) mod coordinator;
pub(crate) mod error;
pub(crate) mod state;
