//! The object store, chosen by URL, with request counters.
//!
//! - `file:///abs/dir` or `file://rel/dir`: local files (the embedded default);
//! - `s3://bucket/prefix`: any S3 API (endpoint, region, credentials, path style in
//!   [`S3Options`]);
//! - `memory://`: in process, for tests.
//!
//! Every request is counted ([`BlobMetrics`]) so operators and tests can see object-store
//! cost: PUTs per GiB written, GETs per GiB read; and timed, by operation, in the node's
//! metric families ([`crate::metrics::object_store`]).

use crate::metrics::{self, ObjectStoreOp};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// S3 connection settings beside an `s3://bucket/prefix` URL.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Options {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000` for MinIO; empty means AWS.
    pub endpoint: String,
    /// Region name.
    pub region: String,
    /// Access key id; empty means the standard `AWS_*` environment variables (and then the
    /// instance's credentials).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Use path-style requests (`endpoint/bucket/key`), as MinIO and most local servers need.
    pub path_style: bool,
    /// Allow plain HTTP endpoints.
    pub allow_http: bool,
}

/// Why the object store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The URL scheme or shape is not supported.
    #[error("invalid object store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store answered with an error.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Local directory could not be created.
    #[error("object store directory: {0}")]
    Io(#[from] std::io::Error),
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Last-modified time, milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

/// Counters of object-store requests since start.
#[derive(Debug, Default)]
pub struct BlobMetrics {
    /// PUT requests that succeeded.
    pub put_requests: AtomicU64,
    /// Bytes written by successful PUTs.
    pub put_bytes: AtomicU64,
    /// Ranged GET requests that succeeded.
    pub get_requests: AtomicU64,
    /// Bytes read by successful GETs.
    pub get_bytes: AtomicU64,
    /// Objects deleted (S3 deletes up to 1,000 in one request).
    pub deleted_objects: AtomicU64,
    /// Objects listed.
    pub listed_objects: AtomicU64,
    /// Requests that failed.
    pub errors: AtomicU64,
}

/// The object store of a node.
#[derive(Debug, Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    metrics: Arc<BlobMetrics>,
    latency: Arc<crate::latency::LatencyModel>,
}

impl BlobStore {
    /// Opens the store named by `url`. Relative `file://` paths are resolved against
    /// `base_dir`.
    pub fn open(url: &str, s3: &S3Options, base_dir: &std::path::Path) -> Result<Self, BlobError> {
        let invalid = |reason: &str| BlobError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let store: Arc<dyn ObjectStore> = if let Some(path) = url.strip_prefix("file://") {
            let dir = if path.starts_with('/') {
                std::path::PathBuf::from(path)
            } else {
                base_dir.join(path)
            };
            std::fs::create_dir_all(&dir)?;
            Arc::new(LocalFileSystem::new_with_prefix(&dir)?)
        } else if url == "memory://" || url == "memory:" {
            Arc::new(InMemory::new())
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("missing bucket"));
            }
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_virtual_hosted_style_request(!s3.path_style)
                .with_allow_http(s3.allow_http);
            if !s3.endpoint.is_empty() {
                b = b.with_endpoint(&s3.endpoint);
            }
            if !s3.region.is_empty() {
                b = b.with_region(&s3.region);
            }
            if !s3.access_key_id.is_empty() {
                b = b
                    .with_access_key_id(&s3.access_key_id)
                    .with_secret_access_key(&s3.secret_access_key);
            }
            let s3_store = b.build()?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                Arc::new(s3_store)
            } else {
                Arc::new(PrefixStore::new(s3_store, prefix))
            }
        } else {
            return Err(invalid("expected file://, s3:// or memory://"));
        };
        Ok(Self::from_store(store))
    }

    /// Wraps an existing store (tests, latency models).
    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            metrics: Arc::new(BlobMetrics::default()),
            latency: Arc::new(crate::latency::LatencyModel::default()),
        }
    }

    /// Adds simulated request latency (see [`crate::latency`]).
    pub fn with_latency(mut self, model: crate::latency::LatencyModel) -> Self {
        self.latency = Arc::new(model);
        self
    }

    /// Request counters.
    pub fn metrics(&self) -> &Arc<BlobMetrics> {
        &self.metrics
    }

    /// Writes a whole object.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        let len = bytes.len() as u64;
        let delay = self.latency.put_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let started = Instant::now();
        let result = self
            .store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await;
        metrics::object_store(ObjectStoreOp::Put).done(started, len, result.is_ok());
        match result {
            Ok(_) => {
                self.metrics.put_requests.fetch_add(1, Ordering::Relaxed);
                self.metrics.put_bytes.fetch_add(len, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// Reads `range` of an object.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, BlobError> {
        let delay = self.latency.get_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let started = Instant::now();
        let result = self.store.get_range(&Path::from(key), range).await;
        let got = result.as_ref().map_or(0, |b| b.len() as u64);
        metrics::object_store(ObjectStoreOp::Get).done(started, got, result.is_ok());
        match result {
            Ok(b) => {
                self.metrics.get_requests.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .get_bytes
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(b)
            }
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// Deletes an object.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let started = Instant::now();
        let result = self.store.delete(&Path::from(key)).await;
        let ok = matches!(result, Ok(()) | Err(object_store::Error::NotFound { .. }));
        metrics::object_store(ObjectStoreOp::Delete).done(started, 0, ok);
        result.map_err(Into::into)
    }

    /// Deletes objects in bulk (S3's DeleteObjects, up to 1,000 keys a request, retried on
    /// throttling by the client); a key already gone counts as deleted. Returns the keys
    /// deleted and the first failure, if any.
    pub async fn delete_many(&self, keys: Vec<String>) -> (Vec<String>, Option<BlobError>) {
        let started = Instant::now();
        let paths: Vec<_> = keys.iter().map(|k| Ok(Path::from(k.as_str()))).collect();
        let mut results = self
            .store
            .delete_stream(futures::stream::iter(paths).boxed());
        // A key already gone is deleted too, but the error may not name it as it was given
        // (a local store names the file): without other failures, every key is deleted.
        let (mut deleted, mut first_error) = (Vec::new(), None);
        while let Some(r) = results.next().await {
            match r {
                Ok(path) => deleted.push(path.to_string()),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert(e.into());
                }
            }
        }
        let ok = first_error.is_none();
        metrics::object_store(ObjectStoreOp::Delete).done(started, 0, ok);
        if ok {
            deleted = keys;
        }
        self.metrics
            .deleted_objects
            .fetch_add(deleted.len() as u64, Ordering::Relaxed);
        (deleted, first_error)
    }

    /// Every object of the store, as its key and last-modified time (milliseconds since the
    /// Unix epoch), in no particular order, page by page.
    pub fn list(&self) -> BoxStream<'static, Result<(String, i64), BlobError>> {
        self.list_objects()
            .map(|r| r.map(|o| (o.key, o.modified_ms)))
            .boxed()
    }

    /// The size of an object, or `None` if it does not exist (one HEAD request).
    pub async fn size_of(&self, key: &str) -> Result<Option<u64>, BlobError> {
        let started = Instant::now();
        let result = self.store.head(&Path::from(key)).await;
        let ok = matches!(result, Ok(_) | Err(object_store::Error::NotFound { .. }));
        metrics::object_store(ObjectStoreOp::Head).done(started, 0, ok);
        match result {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// Every object of the store with its size and last-modified time, in no particular
    /// order, page by page.
    pub fn list_objects(&self) -> BoxStream<'static, Result<ListedObject, BlobError>> {
        let counters = self.metrics.clone();
        let mut listed = 0u64;
        self.store
            .list(None)
            .map(move |r| match r {
                Ok(meta) => {
                    counters.listed_objects.fetch_add(1, Ordering::Relaxed);
                    // S3 lists 1,000 keys a page: count a request per page started.
                    if listed.is_multiple_of(1000) {
                        metrics::object_store(ObjectStoreOp::List).untimed(true);
                    }
                    listed += 1;
                    Ok(ListedObject {
                        key: meta.location.to_string(),
                        size: meta.size,
                        modified_ms: meta.last_modified.timestamp_millis(),
                    })
                }
                Err(e) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    metrics::object_store(ObjectStoreOp::List).untimed(false);
                    Err(e.into())
                }
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_and_memory_round_trip_with_counters() {
        let dir = tempfile::tempdir().unwrap();
        for url in ["file://objects", "memory://"] {
            let s = BlobStore::open(url, &S3Options::default(), dir.path()).unwrap();
            s.put("wal/a", Bytes::from_static(b"0123456789"))
                .await
                .unwrap();
            assert_eq!(&s.get_range("wal/a", 2..5).await.unwrap()[..], b"234");
            assert_eq!(s.metrics().put_requests.load(Ordering::Relaxed), 1);
            assert_eq!(s.metrics().get_bytes.load(Ordering::Relaxed), 3);
            assert!(s.get_range("wal/missing", 0..1).await.is_err());
        }
        assert!(dir.path().join("objects/wal/a").exists());
        for url in ["file://listed", "memory://"] {
            let s = BlobStore::open(url, &S3Options::default(), dir.path()).unwrap();
            for k in ["wal/x", "wal/y", "merged/z"] {
                s.put(k, Bytes::from_static(b"1")).await.unwrap();
            }
            let mut keys: Vec<String> = s.list().map(|r| r.unwrap().0).collect().await;
            keys.sort();
            assert_eq!(keys, ["merged/z", "wal/x", "wal/y"]);
            let (mut deleted, err) = s
                .delete_many(vec!["wal/x".into(), "merged/z".into(), "wal/never".into()])
                .await;
            assert!(err.is_none(), "{err:?}");
            deleted.sort();
            assert_eq!(deleted, ["merged/z", "wal/never", "wal/x"]);
            let keys: Vec<String> = s.list().map(|r| r.unwrap().0).collect().await;
            assert_eq!(keys, ["wal/y"]);
        }
        assert!(BlobStore::open("ftp://x", &S3Options::default(), dir.path()).is_err());
    }
}
