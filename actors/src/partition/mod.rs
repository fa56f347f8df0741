//! Partitions: one actor per owned partition (offsets, producer state, the high
//! watermark), and the manager that claims, starts, hands off and releases them.

pub(crate) mod actor;
pub(crate) mod error;
pub(crate) mod manager;
