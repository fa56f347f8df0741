//! Reads, wherever the partition runs, and object bytes through the AZ's cache shards.

use super::{Node, Route};
use crate::cluster::gateway::{self, Request, Response};
use crate::partition::actor::PartitionOffsets;
use crate::{ReadError, TopicPartition};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use inkless_storage::metadata::BatchCoordinate;
use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

/// Bytes `start..end` of an object of `object_size` bytes.
#[derive(Debug, Clone, Copy)]
pub struct ObjectRange<'a> {
    /// The object's key.
    pub key: &'a str,
    /// Size of the whole object.
    pub object_size: u64,
    /// First byte wanted.
    pub start: u64,
    /// One past the last byte wanted.
    pub end: u64,
}

/// The blocks a range touches, each with the part of the range inside it.
fn pieces(r: &ObjectRange<'_>, block: u64) -> impl Iterator<Item = (u64, Range<u64>)> {
    let (start, end) = (r.start, r.end);
    let first = start / block;
    let last = end.saturating_sub(1) / block;
    (first..=last)
        .filter(move |_| start < end)
        .map(move |i| (i, start.max(i * block)..end.min((i + 1) * block)))
}

/// One range's bytes from the blocks' answers (each answer holds the union range asked of
/// its block).
fn assemble(
    r: &ObjectRange<'_>,
    block: u64,
    wanted: &HashMap<(&str, u64), (u64, Range<u64>)>,
    arrived: &HashMap<(&str, u64), Result<Bytes, ReadError>>,
) -> Option<Result<Bytes, ReadError>> {
    let mut parts = Vec::new();
    for (index, piece) in pieces(r, block) {
        let union = &wanted.get(&(r.key, index))?.1;
        let bytes = match arrived.get(&(r.key, index))? {
            Ok(b) => b,
            Err(e) => return Some(Err(e.clone())),
        };
        let at = (piece.start - union.start) as usize;
        let to = (piece.end - union.start) as usize;
        if to > bytes.len() {
            let e = format!("short read of {} at {}..{}", r.key, piece.start, piece.end);
            return Some(Err(ReadError::Storage(e)));
        }
        parts.push(bytes.slice(at..to));
    }
    Some(Ok(match parts.len() {
        0 => Bytes::new(),
        1 => parts.remove(0),
        _ => {
            let mut out = bytes::BytesMut::with_capacity((r.end - r.start) as usize);
            for p in parts {
                out.extend_from_slice(&p);
            }
            out.freeze()
        }
    }))
}

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

    /// Bytes `start..end` of an object, through the cache shards of this node's AZ (see
    /// [`Node::read_ranges`]).
    pub async fn object_range(
        &self,
        key: &str,
        object_size: u64,
        start: u64,
        end: u64,
    ) -> Result<Bytes, ReadError> {
        let range = ObjectRange {
            key,
            object_size,
            start,
            end,
        };
        match self.read_ranges(&[range], None).await.pop().flatten() {
            Some(read) => read,
            None => Err(ReadError::Storage(format!("read of {key} not answered"))),
        }
    }

    /// Reads many byte ranges of objects together (a fetch's batches of many partitions):
    /// each block they touch is asked of the cache shard that placement gives it (here or
    /// on a node of the AZ) once, for the union of the bytes wanted from it. One answer then
    /// carries at most a block, which the mesh's frame limit (two blocks and headers) always
    /// lets through. Answers each range in order: its bytes, the error of a block it needs,
    /// or `None` when one of its blocks had not arrived by `deadline`.
    pub async fn read_ranges(
        &self,
        ranges: &[ObjectRange<'_>],
        deadline: Option<tokio::time::Instant>,
    ) -> Vec<Option<Result<Bytes, ReadError>>> {
        let block = self.config.cache_block_bytes.max(1);
        let mut wanted: HashMap<(&str, u64), (u64, Range<u64>)> = HashMap::new();
        for r in ranges {
            for (index, piece) in pieces(r, block) {
                wanted
                    .entry((r.key, index))
                    .and_modify(|(_, u)| *u = u.start.min(piece.start)..u.end.max(piece.end))
                    .or_insert((r.object_size, piece));
            }
        }
        let live = self.live();
        let az = live.my_az();
        let mut reads: FuturesUnordered<_> = wanted
            .iter()
            .map(|(&(key, index), (object_size, union))| {
                let shard = live.cache_owner(key, index, az).unwrap_or(live.me);
                let read = self.cache_read(shard, key, *object_size, union.clone());
                read.map(move |bytes| ((key, index), bytes))
            })
            .collect();
        let mut arrived = HashMap::with_capacity(wanted.len());
        loop {
            let next = match deadline {
                Some(d) => tokio::time::timeout_at(d, reads.next())
                    .await
                    .ok()
                    .flatten(),
                None => reads.next().await,
            };
            let Some((block_key, bytes)) = next else {
                break;
            };
            arrived.insert(block_key, bytes);
        }
        // Reads still running are dropped here, not stopped: the cache shards finish their
        // GETs and keep the blocks.
        ranges
            .iter()
            .map(|r| assemble(r, block, &wanted, &arrived))
            .collect()
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
            let answer = self
                .slots
                .peers
                .call(shard, &request, self.config.remote_timeout)
                .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn range(key: &str, start: u64, end: u64) -> ObjectRange<'_> {
        ObjectRange {
            key,
            object_size: 100,
            start,
            end,
        }
    }

    #[test]
    fn a_range_is_cut_at_block_edges() {
        let cut: Vec<_> = pieces(&range("k", 5, 25), 10).collect();
        assert_eq!(cut, vec![(0, 5..10), (1, 10..20), (2, 20..25)]);
        assert_eq!(pieces(&range("k", 10, 20), 10).count(), 1);
        assert_eq!(pieces(&range("k", 7, 7), 10).count(), 0);
    }

    #[test]
    fn ranges_sharing_a_block_are_cut_from_its_one_answer() {
        let object: Vec<u8> = (0..100).collect();
        let block = 10;
        let ranges = [range("k", 2, 4), range("k", 6, 13), range("j", 0, 3)];
        let mut wanted: HashMap<(&str, u64), (u64, Range<u64>)> = HashMap::new();
        wanted.insert(("k", 0), (100, 2..10));
        wanted.insert(("k", 1), (100, 10..13));
        wanted.insert(("j", 0), (100, 0..3));
        let mut arrived = HashMap::new();
        arrived.insert(("k", 0), Ok(Bytes::copy_from_slice(&object[2..10])));
        arrived.insert(("k", 1), Ok(Bytes::copy_from_slice(&object[10..13])));
        let read = |r| assemble(r, block, &wanted, &arrived);
        assert_eq!(read(&ranges[0]), Some(Ok(Bytes::from_static(&[2, 3]))));
        let across = Bytes::copy_from_slice(&object[6..13]);
        assert_eq!(read(&ranges[1]), Some(Ok(across)));
        assert_eq!(read(&ranges[2]), None, "its block has not arrived");
        arrived.insert(("j", 0), Err(ReadError::Storage("down".into())));
        let read = |r| assemble(r, block, &wanted, &arrived);
        assert!(matches!(read(&ranges[2]), Some(Err(_))));
        arrived.insert(("j", 0), Ok(Bytes::from_static(&[0, 1])));
        let read = |r| assemble(r, block, &wanted, &arrived);
        assert!(matches!(read(&ranges[2]), Some(Err(_))), "a short answer");
    }
}
