//! CacheShard: a byte-weighted block cache of objects for fetches.
//!
//! Objects are read in aligned blocks of `block_bytes`. Takes [`CacheMsg::Read`] (a byte
//! range of an object) and [`CacheMsg::Insert`] (write-through of a freshly uploaded
//! object). A miss is one ranged GET per block; concurrent misses of the same block wait on
//! one GET (quick_cache placeholders), and at most `max_concurrent_gets` GETs run at once
//! (further misses wait for a turn). Reads run in tasks so the shard never blocks on the
//! object store. The cache holds only copies: a restart by the NodeSupervisor loses nothing.

use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::tree::registry::ActorSlot;
use crate::ReadError;
use bytes::{Bytes, BytesMut};
use inkless_storage::blob::BlobStore;
use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, Weighter};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::ops::Range;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::{oneshot, Semaphore};

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
    /// Its mailbox count (see [`crate::tree::mailbox`]).
    pub queued: QueueCount,
    /// The object store.
    pub blob: BlobStore,
    /// Block size (alignment of reads).
    pub block_bytes: u64,
    /// Cache capacity in bytes.
    pub capacity_bytes: u64,
    /// GETs running at once.
    pub max_concurrent_gets: usize,
}

#[derive(Clone)]
struct ByteWeighter;

impl Weighter<(String, u64), Bytes> for ByteWeighter {
    fn weight(&self, _key: &(String, u64), val: &Bytes) -> u64 {
        val.len() as u64
    }
}

/// Counts evictions ([`crate::metrics`]).
#[derive(Clone, Default)]
struct CountEvictions;

impl quick_cache::Lifecycle<(String, u64), Bytes> for CountEvictions {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _state: &mut (), _key: (String, u64), _val: Bytes) {
        crate::metrics::get().cache.evictions.inc();
    }
}

type BlockCache =
    Cache<(String, u64), Bytes, ByteWeighter, quick_cache::DefaultHashBuilder, CountEvictions>;

/// Publishes a shard's new weight into the node's `inkless_cache_bytes` (a sum over shards).
fn publish_weight(cache: &BlockCache, published: &AtomicI64) {
    let weight = cache.weight() as i64;
    let before = published.swap(weight, Ordering::Relaxed);
    crate::metrics::get().cache.bytes.inc_by(weight - before);
}

/// State of a shard.
pub struct CacheState {
    me: Mailbox<CacheMsg>,
    args: CacheArgs,
    cache: Arc<BlockCache>,
    gets: Arc<Semaphore>,
    /// This shard's share of `inkless_cache_bytes`.
    weight: Arc<AtomicI64>,
}

/// What a read of a shard uses.
#[derive(Clone)]
struct Reader {
    cache: Arc<BlockCache>,
    blob: BlobStore,
    gets: Arc<Semaphore>,
    block_bytes: u64,
    weight: Arc<AtomicI64>,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct CacheShard;

async fn block(r: &Reader, key: &str, index: u64, object_size: u64) -> Result<Bytes, ReadError> {
    let k = (key.to_string(), index);
    let m = crate::metrics::get();
    let started = std::time::Instant::now();
    match r.cache.get_value_or_guard_async(&k).await {
        Ok(b) => {
            m.read.data_cache.since(started);
            m.cache.hits.inc();
            m.cache.hit_bytes.inc_by(b.len() as u64);
            Ok(b)
        }
        Err(guard) => {
            let start = index * r.block_bytes;
            let end = (start + r.block_bytes).min(object_size);
            let _turn = r
                .gets
                .acquire()
                .await
                .map_err(|_| ReadError::Storage("cache closed".into()))?;
            let bytes = r
                .blob
                .get_range(key, start..end)
                .await
                .map_err(|e| ReadError::Storage(e.to_string()))?;
            // The cache keeps its own copy, sized exactly: the bytes of a small GET are a
            // slice of the HTTP connection's read buffer, and a cached slice would keep that
            // whole buffer alive while the cache weighs only the slice (RSS grew several
            // times faster than `inkless_cache_bytes` in the soak; docs/benchmarks.md).
            let bytes = Bytes::copy_from_slice(&bytes);
            let _ = guard.insert(bytes.clone());
            m.read.data_object_store.since(started);
            m.cache.misses.inc();
            m.cache.miss_bytes.inc_by(bytes.len() as u64);
            publish_weight(&r.cache, &r.weight);
            Ok(bytes)
        }
    }
}

async fn read_range(
    r: Reader,
    key: String,
    object_size: u64,
    range: Range<u64>,
) -> Result<Bytes, ReadError> {
    let block_bytes = r.block_bytes;
    if range.start >= range.end || range.end > object_size {
        return Err(ReadError::Storage(format!(
            "range {range:?} outside object {key} of {object_size} bytes"
        )));
    }
    let first = range.start / block_bytes;
    let last = (range.end - 1) / block_bytes;
    if first == last {
        let b = block(&r, &key, first, object_size).await?;
        let at = (range.start - first * block_bytes) as usize;
        let len = (range.end - range.start) as usize;
        if at + len > b.len() {
            return Err(ReadError::Storage(format!("short block of {key}")));
        }
        return Ok(b.slice(at..at + len));
    }
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    for i in first..=last {
        let b = block(&r, &key, i, object_size).await?;
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
        myself: ActorRef<Self::Msg>,
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
            CountEvictions,
        ));
        Ok(CacheState {
            weight: Arc::default(),
            me: Mailbox::new(myself, args.queued.clone()),
            gets: Arc::new(Semaphore::new(args.max_concurrent_gets)),
            args,
            cache,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.me.taken();
        match msg {
            CacheMsg::Read {
                key,
                object_size,
                range,
                reply,
            } => {
                let reader = Reader {
                    cache: state.cache.clone(),
                    blob: state.args.blob.clone(),
                    gets: state.gets.clone(),
                    block_bytes: state.args.block_bytes,
                    weight: state.weight.clone(),
                };
                tokio::spawn(async move {
                    let _ = reply.send(read_range(reader, key, object_size, range).await);
                });
            }
            CacheMsg::Insert { key, bytes, blocks } => {
                let bs = state.args.block_bytes as usize;
                // A block kept as a slice keeps the whole object alive: when this shard keeps
                // only some of the blocks, it keeps copies (weighed as what they hold).
                let partial = blocks.len() < bytes.len().div_ceil(bs.max(1));
                for index in blocks {
                    let at = index as usize * bs;
                    if at >= bytes.len() {
                        continue;
                    }
                    let end = (at + bs).min(bytes.len());
                    let block = if partial {
                        Bytes::copy_from_slice(&bytes[at..end])
                    } else {
                        bytes.slice(at..end)
                    };
                    state.cache.insert((key.clone(), index), block);
                    crate::metrics::get()
                        .cache
                        .inserted_bytes
                        .inc_by((end - at) as u64);
                }
                publish_weight(&state.cache, &state.weight);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let held = state.weight.swap(0, Ordering::Relaxed);
        crate::metrics::get().cache.bytes.dec_by(held);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inkless_storage::blob::S3Options;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_misses_of_one_block_make_one_get() {
        let dir = tempfile::tempdir().unwrap();
        let blob = BlobStore::open("memory://", &S3Options::default(), dir.path()).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        blob.put("o", Bytes::from(data.clone())).await.unwrap();
        let (shard, _h) = crate::tree::mailbox::spawn_for_test(CacheShard, |queued| CacheArgs {
            queued,
            blob: blob.clone(),
            block_bytes: 4096,
            capacity_bytes: 1 << 20,
            max_concurrent_gets: 64,
        })
        .await;
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
        shard.actor().stop(None);
    }

    #[tokio::test]
    async fn written_through_blocks_survive_until_a_lagging_reader_gets_them() {
        let dir = tempfile::tempdir().unwrap();
        let blob = BlobStore::open("memory://", &S3Options::default(), dir.path()).unwrap();
        let (shard, _h) = crate::tree::mailbox::spawn_for_test(CacheShard, |queued| CacheArgs {
            queued,
            blob: blob.clone(),
            block_bytes: 4096,
            capacity_bytes: 64 * 4096,
            max_concurrent_gets: 64,
        })
        .await;
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
        shard.actor().stop(None);
    }

    #[tokio::test]
    async fn misses_wait_for_a_turn_at_the_get_limit() {
        const GET: Duration = Duration::from_millis(100);
        let dir = tempfile::tempdir().unwrap();
        let slow = inkless_storage::latency::LatencyModel {
            enabled: true,
            put_p50_ms: 0.0,
            put_p99_ms: 0.0,
            get_p50_ms: GET.as_millis() as f64,
            get_p99_ms: GET.as_millis() as f64,
        };
        let blob = BlobStore::open("memory://", &S3Options::default(), dir.path())
            .unwrap()
            .with_latency(slow);
        for i in 0..6 {
            blob.put(&format!("o{i}"), Bytes::from(vec![i as u8; 4096]))
                .await
                .unwrap();
        }
        let (shard, _h) = crate::tree::mailbox::spawn_for_test(CacheShard, |queued| CacheArgs {
            queued,
            blob: blob.clone(),
            block_bytes: 4096,
            capacity_bytes: 1 << 20,
            max_concurrent_gets: 2,
        })
        .await;
        // Six misses of different objects at once: two GETs at a time make three rounds.
        let started = std::time::Instant::now();
        let reads: Vec<_> = (0..6)
            .map(|i| {
                let (tx, rx) = oneshot::channel();
                shard
                    .post(CacheMsg::Read {
                        key: format!("o{i}"),
                        object_size: 4096,
                        range: 0..4096,
                        reply: tx,
                    })
                    .unwrap();
                (i, rx)
            })
            .collect();
        for (i, rx) in reads {
            assert_eq!(rx.await.unwrap().unwrap()[0], i as u8);
        }
        assert!(
            started.elapsed() >= GET * 3,
            "six GETs of {GET:?} finished in {:?}: more than two ran at once",
            started.elapsed()
        );
        assert_eq!(blob.metrics().get_requests.load(Ordering::Relaxed), 6);
        shard.actor().stop(None);
    }
}
