//! The share of a node's object-store requests that background rewriting may take.
//!
//! Within each window of [`WINDOW`], the rewriter may issue at most the larger of `share` of
//! all the node's GET and PUT requests in that window (its own included) and `floor` requests
//! per second (so that an idle node still merges). What a rewrite costs is its own PUTs and
//! every GET the node made while it ran (its reads go through the shared cache, so its own
//! misses cannot be told apart): an upper bound, so the more the node's consumers read from
//! the object store, the more the rewriter yields. Producers' PUTs are not charged to it.

use inkless_storage::blob::BlobMetrics;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Length of an accounting window.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// The rewriter's account over the current window.
#[derive(Debug)]
pub(crate) struct RequestShare {
    metrics: Arc<BlobMetrics>,
    share: f64,
    floor_per_second: u32,
    window_start: Instant,
    all_at_start: u64,
    mine: u64,
}

impl RequestShare {
    /// An account of at most `share` (0 to 1) of the requests counted by `metrics`, and at
    /// least `floor_per_second`.
    pub(crate) fn new(metrics: Arc<BlobMetrics>, share: f64, floor_per_second: u32) -> Self {
        assert!((0.0..=1.0).contains(&share), "share {share} outside 0..=1");
        let all_at_start = total(&metrics);
        Self {
            metrics,
            share,
            floor_per_second,
            window_start: Instant::now(),
            all_at_start,
            mine: 0,
        }
    }

    /// GET requests the node has made so far.
    pub(crate) fn gets_so_far(&self) -> u64 {
        self.metrics.get_requests.load(Ordering::Relaxed)
    }

    /// Charges the GETs made since `gets_before` (a [`Self::gets_so_far`]) and `puts`.
    pub(crate) fn charge(&mut self, gets_before: u64, puts: u64) {
        self.mine += self.gets_so_far().saturating_sub(gets_before) + puts;
    }

    /// Whether the rewriter may issue more requests now.
    pub(crate) fn allows(&mut self) -> bool {
        if self.window_start.elapsed() >= WINDOW {
            self.window_start = Instant::now();
            self.all_at_start = total(&self.metrics);
            self.mine = 0;
        }
        if self.share >= 1.0 {
            return true;
        }
        let all = total(&self.metrics).saturating_sub(self.all_at_start);
        let floor = u64::from(self.floor_per_second) * WINDOW.as_secs();
        let allowed = ((all as f64 * self.share) as u64).max(floor);
        self.mine < allowed
    }

    /// Waits (a second at a time) until [`Self::allows`].
    pub(crate) async fn wait_turn(&mut self) {
        while !self.allows() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn total(m: &BlobMetrics) -> u64 {
    m.get_requests.load(Ordering::Relaxed) + m.put_requests.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(m: &BlobMetrics, n: u64) {
        m.get_requests.fetch_add(n, Ordering::Relaxed);
    }

    #[test]
    fn the_rewriter_gets_its_share_of_all_requests_and_the_floor_when_idle() {
        let m = Arc::new(BlobMetrics::default());
        let mut acct = RequestShare::new(m.clone(), 0.25, 1);
        // Idle: the floor (60 a window) allows 60 of its own.
        let before = acct.gets_so_far();
        requests(&m, 58);
        m.put_requests.fetch_add(1, Ordering::Relaxed);
        acct.charge(before, 1);
        assert!(acct.allows());
        let before = acct.gets_so_far();
        requests(&m, 1);
        acct.charge(before, 0);
        assert!(!acct.allows(), "60 of its own used the floor");
        // Producers' PUTs are not charged to it, but count among all requests.
        let before = acct.gets_so_far();
        m.put_requests.fetch_add(100, Ordering::Relaxed);
        acct.charge(before, 0);
        assert!(!acct.allows(), "60 of 160 is more than a quarter");
        m.put_requests.fetch_add(80, Ordering::Relaxed);
        assert!(!acct.allows(), "60 of 240 is a quarter");
        requests(&m, 4);
        assert!(acct.allows(), "60 < 244 / 4");
    }

    #[test]
    fn a_share_of_one_never_waits() {
        let m = Arc::new(BlobMetrics::default());
        let mut acct = RequestShare::new(m.clone(), 1.0, 0);
        let before = acct.gets_so_far();
        requests(&m, 1_000);
        acct.charge(before, 1);
        assert!(acct.allows());
    }
}
