//! Partitions: one actor per owned partition (offsets, producer state, the high
//! watermark), the manager that claims, wakes, puts to sleep, hands off and releases them,
//! and the registry where the rest of the node finds them.

pub(crate) mod actor;
pub(crate) mod error;
pub(crate) mod manager;
pub(crate) mod registry;
