//! CacheShard: a byte-weighted block cache of objects for fetches.
//!
//! Objects are read in aligned blocks of `block_bytes`. Takes [`CacheMsg::Read`] (a byte
//! range of an object) and [`CacheMsg::Insert`] (write-through of a freshly uploaded
//! object). A miss is one ranged GET per block; concurrent misses of the same block wait on
//! one GET (quick_cache placeholders). Reads run in tasks so the shard never blocks on the
//! object store. The cache holds only copies: a restart by the NodeSupervisor loses nothing.

use crate::tree::mailbox::Post;
use crate::tree::registry::ActorSlot;
use crate::ReadError;
use bytes::{Bytes, BytesMut};
use inkless_storage::blob::BlobStore;
use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, Weighter};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::ops::Range;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Messages of a [`CacheShard`].
#[derive(Debug)]
pub enum CacheMsg {
    /// Read `range` of object `key` (of `object_size` bytes).
    Read {
        /// Object key.
        key: String,
        /// Size of the whole object.
        object_size: u64,
        /// Bytes wanted.
        range: Range<u64>,
        /// The bytes.
        reply: oneshot::Sender<Result<Bytes, ReadError>>,
    },
    /// Cache the blocks this shard serves of an object that was just uploaded.
    Insert {
        /// Object key.
        key: String,
        /// Whole object.
        bytes: Bytes,
        /// Indexes of the blocks to keep (in a cluster, the others belong to other shards).
        blocks: Vec<u64>,
    },
}

// Local only: never sent to another node.
impl ractor::Message for CacheMsg {}

/// Reads `range` of object `key` through the shard in `slot`.
pub async fn read_through(
    slot: &ActorSlot<CacheMsg>,
    key: &str,
    object_size: u64,
    range: Range<u64>,
) -> Result<Bytes, ReadError> {
    let cache = slot
        .get()
        .ok_or_else(|| ReadError::Storage("cache unavailable".into()))?;
    let (tx, rx) = oneshot::channel();
    cache
        .post(CacheMsg::Read {
            key: key.to_string(),
            object_size,
            range,
            reply: tx,
        })
        .map_err(|_| ReadError::Storage("cache unavailable".into()))?;
    rx.await
        .map_err(|_| ReadError::Storage("cache stopped".into()))?
}

/// Arguments of a [`CacheShard`].
#[derive(Debug, Clone)]
pub struct CacheArgs {
    /// The object store.
    pub blob: BlobStore,
    /// Block size (alignment of reads).
    pub block_bytes: u64,
    /// Cache capacity in bytes.
    pub capacity_bytes: u64,
}

#[derive(Clone)]
struct ByteWeighter;

impl Weighter<(String, u64), Bytes> for ByteWeighter {
    fn weight(&self, _key: &(String, u64), val: &Bytes) -> u64 {
        val.len() as u64
    }
}

type BlockCache = Cache<(String, u64), Bytes, ByteWeighter>;

/// State of a shard.
pub struct CacheState {
    args: CacheArgs,
    cache: Arc<BlockCache>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct CacheShard;

async fn block(
    cache: &BlockCache,
    blob: &BlobStore,
    key: &str,
    index: u64,
    block_bytes: u64,
    object_size: u64,
) -> Result<Bytes, ReadError> {
    let k = (key.to_string(), index);
    match cache.get_value_or_guard_async(&k).await {
        Ok(b) => Ok(b),
        Err(guard) => {
            let start = index * block_bytes;
            let end = (start + block_bytes).min(object_size);
            let bytes = blob
                .get_range(key, start..end)
                .await
                .map_err(|e| ReadError::Storage(e.to_string()))?;
            let _ = guard.insert(bytes.clone());
            Ok(bytes)
        }
    }
}

async fn read_range(
    cache: Arc<BlockCache>,
    blob: BlobStore,
    key: String,
    object_size: u64,
    range: Range<u64>,
    block_bytes: u64,
) -> Result<Bytes, ReadError> {
    if range.start >= range.end || range.end > object_size {
        return Err(ReadError::Storage(format!(
            "range {range:?} outside object {key} of {object_size} bytes"
        )));
    }
    let first = range.start / block_bytes;
    let last = (range.end - 1) / block_bytes;
    if first == last {
        let b = block(&cache, &blob, &key, first, block_bytes, object_size).await?;
        let at = (range.start - first * block_bytes) as usize;
        let len = (range.end - range.start) as usize;
        if at + len > b.len() {
            return Err(ReadError::Storage(format!("short block of {key}")));
        }
        return Ok(b.slice(at..at + len));
    }
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    for i in first..=last {
        let b = block(&cache, &blob, &key, i, block_bytes, object_size).await?;
        let block_start = i * block_bytes;
        let from = range.start.max(block_start) - block_start;
        let to = (range.end.min(block_start + b.len() as u64)) - block_start;
        if from > to || to as usize > b.len() {
            return Err(ReadError::Storage(format!("short block of {key}")));
        }
        out.extend_from_slice(&b[from as usize..to as usize]);
    }
    Ok(out.freeze())
}

impl Actor for CacheShard {
    type Msg = CacheMsg;
    type State = CacheState;
    type Arguments = CacheArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: CacheArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let blocks = (args.capacity_bytes / args.block_bytes.max(1)).max(16);
        // Few shards, so each holds many blocks; a small hot share, so freshly written blocks
        // (the tail consumers are about to read) are not the first to go when the cache is
        // full of blocks already consumed.
        let options = OptionsBuilder::new()
            .estimated_items_capacity(blocks as usize)
            .weight_capacity(args.capacity_bytes)
            .shards(2)
            .hot_allocation(0.1)
            .build()
            .map_err(|e| format!("cache options: {e:?}"))?;
        let cache = Arc::new(Cache::with_options(
            options,
            ByteWeighter,
            Default::default(),
            Default::default(),
        ));
        Ok(CacheState { args, cache })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::tree::mailbox::taken(&myself);
        match msg {
            CacheMsg::Read {
                key,
                object_size,
                range,
                reply,
            } => {
                let (cache, blob) = (state.cache.clone(), state.args.blob.clone());
                let block_bytes = state.args.block_bytes;
                tokio::spawn(async move {
                    let r = read_range(cache, blob, key, object_size, range, block_bytes).await;
                    let _ = reply.send(r);
                });
            }
            CacheMsg::Insert { key, bytes, blocks } => {
                let bs = state.args.block_bytes as usize;
                for index in blocks {
                    let at = index as usize * bs;
                    if at >= bytes.len() {
                        continue;
                    }
                    let end = (at + bs).min(bytes.len());
                    state
                        .cache
                        .insert((key.clone(), index), bytes.slice(at..end));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inkless_storage::blob::S3Options;
    use std::sync::atomic::Ordering;

    #[tokio::test]
    async fn concurrent_misses_of_one_block_make_one_get() {
        let dir = tempfile::tempdir().unwrap();
        let blob = BlobStore::open("memory://", &S3Options::default(), dir.path()).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        blob.put("o", Bytes::from(data.clone())).await.unwrap();
        let (shard, _h) = Actor::spawn(
            None,
            CacheShard,
            CacheArgs {
                blob: blob.clone(),
                block_bytes: 4096,
                capacity_bytes: 1 << 20,
            },
        )
        .await
        .unwrap();
        let mut waits = Vec::new();
        for i in 0..20u64 {
            let (tx, rx) = oneshot::channel();
            shard
                .post(CacheMsg::Read {
                    key: "o".into(),
                    object_size: 10_000,
                    range: (100 + i)..(3000 + i),
                    reply: tx,
                })
                .unwrap();
            waits.push((i, rx));
        }
        for (i, rx) in waits {
            let got = rx.await.unwrap().unwrap();
            assert_eq!(&got[..], &data[(100 + i) as usize..(3000 + i) as usize]);
        }
        assert_eq!(blob.metrics().get_requests.load(Ordering::Relaxed), 1);
        // A range spanning blocks 0..2 needs the two blocks not yet cached.
        let (tx, rx) = oneshot::channel();
        shard
            .post(CacheMsg::Read {
                key: "o".into(),
                object_size: 10_000,
                range: 4000..9000,
                reply: tx,
            })
            .unwrap();
        assert_eq!(&rx.await.unwrap().unwrap()[..], &data[4000..9000]);
        assert_eq!(blob.metrics().get_requests.load(Ordering::Relaxed), 3);
        shard.stop(None);
    }

    #[tokio::test]
    async fn written_through_blocks_survive_until_a_lagging_reader_gets_them() {
        let dir = tempfile::tempdir().unwrap();
        let blob = BlobStore::open("memory://", &S3Options::default(), dir.path()).unwrap();
        let (shard, _h) = Actor::spawn(
            None,
            CacheShard,
            CacheArgs {
                blob: blob.clone(),
                block_bytes: 4096,
                capacity_bytes: 64 * 4096,
            },
        )
        .await
        .unwrap();
        // 200 objects of one block each through a cache of 64 blocks; the reader stays 8
        // objects behind the writer, as a consumer tailing the log does.
        let lag = 8;
        for i in 0..200u32 {
            let key = format!("o{i}");
            let bytes = Bytes::from(vec![i as u8; 4096]);
            blob.put(&key, bytes.clone()).await.unwrap();
            shard
                .post(CacheMsg::Insert {
                    key,
                    bytes,
                    blocks: vec![0],
                })
                .unwrap();
            if i >= lag {
                let (tx, rx) = oneshot::channel();
                let key = format!("o{}", i - lag);
                shard
                    .post(CacheMsg::Read {
                        key,
                        object_size: 4096,
                        range: 0..4096,
                        reply: tx,
                    })
                    .unwrap();
                assert_eq!(rx.await.unwrap().unwrap()[0], (i - lag) as u8);
            }
        }
        assert_eq!(
            blob.metrics().get_requests.load(Ordering::Relaxed),
            0,
            "every tail read hit the cache"
        );
        shard.stop(None);
    }
}
