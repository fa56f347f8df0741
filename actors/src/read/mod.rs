//! The read path: the block cache shard that serves object bytes to fetches.

pub(crate) mod cache;
