//! Reads, wherever the partition runs, and object bytes through the AZ's cache shards.

use super::{Node, Route};
use crate::cluster::gateway::{self, Request, Response};
use crate::partition::actor::PartitionOffsets;
use crate::{ReadError, TopicPartition};
use bytes::Bytes;
use inkless_storage::metadata::BatchCoordinate;
use std::time::Duration;

impl Node {
    /// Coordinates of committed batches of `tp` from `offset`, and the partition's offsets
    /// after the read, wherever the partition runs.
    pub async fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: u64,
    ) -> Result<(Vec<BatchCoordinate>, PartitionOffsets), ReadError> {
        match self.route(tp) {
            Route::Nowhere => Err(ReadError::NotOwner),
            Route::Local => self.partitions.read(tp, offset, max_bytes).await,
            Route::Remote(owner) => {
                let request = Request::Read {
                    tp: *tp,
                    offset,
                    max_bytes,
                };
                match self.remote(owner, request).await? {
                    Response::Read(r) => r,
                    _ => Err(ReadError::NotOwner),
                }
            }
        }
    }

    /// The offsets of `tp`, as soon as its high watermark is above `above` or after `wait`
    /// (at once when `wait` is zero), wherever it runs.
    pub async fn offsets(
        &self,
        tp: &TopicPartition,
        above: i64,
        wait: Duration,
    ) -> Result<PartitionOffsets, ReadError> {
        match self.route(tp) {
            Route::Nowhere => Err(ReadError::NotOwner),
            Route::Local => self
                .partitions
                .offsets(tp, above, wait)
                .await
                .ok_or(ReadError::NotOwner),
            Route::Remote(owner) => {
                let request = Request::Offsets {
                    tp: *tp,
                    offset: above,
                    wait_ms: wait.as_millis() as u64,
                };
                match self.remote(owner, request).await? {
                    Response::Offsets(Some(o)) => Ok(o),
                    _ => Err(ReadError::NotOwner),
                }
            }
        }
    }

    /// The stored bytes of one batch (see [`Node::object_range`]).
    pub async fn batch_bytes(&self, b: &BatchCoordinate) -> Result<Bytes, ReadError> {
        let end = b.byte_offset + b.byte_len as u64;
        self.object_range(&b.object_key, b.object_size, b.byte_offset, end)
            .await
    }

    /// Bytes `start..end` of an object, through the cache shards of this node's AZ: each
    /// block is read by the shard that placement gives it, here or on a node of the AZ.
    pub async fn object_range(
        &self,
        key: &str,
        object_size: u64,
        start: u64,
        end: u64,
    ) -> Result<Bytes, ReadError> {
        let live = self.live();
        let az = live.my_az();
        let block = self.config.cache_block_bytes;
        // Split the range where the shard changes, and at every block for another node's
        // shard: one answer then carries at most a block, which the mesh's frame limit
        // (two blocks and headers) always lets through.
        let mut pieces: Vec<(i32, u64, u64)> = Vec::new();
        let mut at = start;
        while at < end {
            let index = at / block;
            let piece_end = ((index + 1) * block).min(end);
            let shard = live.cache_owner(key, index, az).unwrap_or(live.me);
            match pieces.last_mut() {
                Some(last) if last.0 == shard && shard == live.me => last.2 = piece_end,
                _ => pieces.push((shard, at, piece_end)),
            }
            at = piece_end;
        }
        let reads = pieces
            .into_iter()
            .map(|(shard, from, to)| self.cache_read(shard, key, object_size, from..to));
        let mut parts = futures::future::try_join_all(reads).await?;
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        let mut out = bytes::BytesMut::with_capacity(end.saturating_sub(start) as usize);
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(out.freeze())
    }

    async fn cache_read(
        &self,
        shard: i32,
        key: &str,
        object_size: u64,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, ReadError> {
        if shard != self.config.node_id {
            let request = Request::CacheRead {
                key: key.to_string(),
                object_size,
                start: range.start,
                end: range.end,
            };
            let answer = gateway::call(shard, &request, self.config.remote_timeout).await;
            match answer {
                Ok(Response::CacheRead(r)) => return r.map(Bytes::from),
                Ok(other) => tracing::warn!(shard, ?other, "unexpected cache answer"),
                // No session to the shard's node: read through the local shard instead.
                Err(e @ gateway::RemoteError::Unreachable(_)) => {
                    tracing::debug!(shard, error = %e, "remote cache shard unreachable")
                }
                // It is slow or went away mid-read. A second GET of the block here would
                // add load where the object store is already slow; the caller retries.
                Err(e) => return Err(ReadError::Storage(e.to_string())),
            }
        }
        crate::read::cache::read_through(&self.slots.cache, key, object_size, range).await
    }

    /// Raises the log start offset of `tp`, wherever it runs.
    pub async fn delete_records(&self, tp: &TopicPartition, offset: i64) -> Result<i64, ReadError> {
        match self.route(tp) {
            Route::Nowhere => Err(ReadError::NotOwner),
            Route::Local => self.partitions.delete_records(tp, offset).await,
            Route::Remote(owner) => match self
                .remote(owner, Request::DeleteRecords { tp: *tp, offset })
                .await?
            {
                Response::DeleteRecords(r) => r,
                _ => Err(ReadError::NotOwner),
            },
        }
    }
}
