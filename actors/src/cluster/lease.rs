//! The lease guard: whether this node may serve what it holds, right now.
//!
//! In cluster mode a node holds partitions and groups under one generation of its lease
//! (see [`inkless_storage::metadata`]). Another node may take them once the lease has
//! expired on the store's clock, so this node stops serving them earlier on its own clock:
//! `valid_until` is the send time of the last successful renewal plus the TTL minus a safety
//! margin. A node frozen (SIGSTOP, a stalled VM) past that instant finds itself invalid the
//! moment it runs again, before it answers anything. A renewal that returns a new generation
//! (the lease was broken by a takeover) invalidates everything held under the old one.
//!
//! Every local lookup of a partition goes through [`crate::partition::registry::PartitionRegistry`],
//! which asks [`LeaseGuard::holds`] with the generation the partition was claimed under.

use inkless_storage::metadata::Claimant;
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The share of the TTL kept as a margin between this node's own expiry and the store's.
const MARGIN_DIVISOR: u32 = 8;

#[derive(Debug)]
struct State {
    generation: i64,
    valid_until: Instant,
    /// Renewals that found the lease lapsed (deadline passed) or taken over.
    lapses: u64,
}

/// Shared view of this node's lease; cheap to clone.
#[derive(Debug, Clone)]
pub struct LeaseGuard {
    node_id: i32,
    /// `None`: a node alone, without leases, always valid.
    state: Option<Arc<RwLock<State>>>,
}

impl LeaseGuard {
    /// A node without leases (single node): it holds everything, always.
    pub fn unleased(node_id: i32) -> Self {
        Self {
            node_id,
            state: None,
        }
    }

    /// A node whose lease of `generation` was renewed by a request sent at `sent`.
    pub fn leased(node_id: i32, generation: i64, sent: Instant, ttl: Duration) -> Self {
        Self {
            node_id,
            state: Some(Arc::new(RwLock::new(State {
                generation,
                valid_until: deadline(sent, ttl),
                lapses: 0,
            }))),
        }
    }

    /// Who this node is when it claims something now.
    pub fn claimant(&self) -> Claimant {
        Claimant {
            node_id: self.node_id,
            lease_generation: self.state.as_ref().map(|s| s.read().generation),
        }
    }

    /// The current generation (0 without leases).
    pub fn generation(&self) -> i64 {
        self.state.as_ref().map_or(0, |s| s.read().generation)
    }

    /// True while the lease is valid on this node's clock.
    pub fn is_valid(&self) -> bool {
        self.serving().is_some()
    }

    /// The generation whose holdings may be served now, if any (0 without leases).
    pub fn serving(&self) -> Option<i64> {
        match &self.state {
            None => Some(0),
            Some(s) => {
                let s = s.read();
                (Instant::now() < s.valid_until).then_some(s.generation)
            }
        }
    }

    /// Records a successful renewal sent at `sent`; returns the previous generation.
    pub(crate) fn renewed(&self, generation: i64, sent: Instant, ttl: Duration) -> i64 {
        let Some(s) = &self.state else {
            return 0;
        };
        let mut s = s.write();
        let previous = s.generation;
        if previous != generation || Instant::now() >= s.valid_until {
            s.lapses += 1;
        }
        s.generation = generation;
        s.valid_until = deadline(sent, ttl);
        previous
    }

    /// How many times the lease was renewed after it had lapsed or been taken over (0
    /// without leases). A connection opened at another count may hold requests that waited
    /// through the lapse (a frozen process reads them after it resumes): they must not be
    /// served.
    pub fn lapses(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.read().lapses)
    }

    /// Stops serving at once (graceful leave).
    pub fn revoke(&self) {
        if let Some(s) = &self.state {
            s.write().valid_until = Instant::now();
        }
    }
}

fn deadline(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl - ttl / MARGIN_DIVISOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_its_generation_until_its_deadline() {
        let ttl = Duration::from_millis(80);
        let g = LeaseGuard::leased(3, 7, Instant::now(), ttl);
        assert!(g.serving() == Some(7));
        assert!(g.serving() != Some(6), "another generation is never held");
        assert_eq!(g.claimant().lease_generation, Some(7));
        std::thread::sleep(ttl);
        assert!(
            g.serving() != Some(7),
            "past its deadline a lease holds nothing"
        );
        assert_eq!(g.renewed(8, Instant::now(), ttl), 7);
        assert!(g.serving() != Some(7) && g.serving() == Some(8));
        assert_eq!(g.lapses(), 1, "renewed after a lapse");
        g.renewed(8, Instant::now(), ttl);
        assert_eq!(g.lapses(), 1, "a renewal in time is no lapse");
        g.revoke();
        assert!(!g.is_valid());
        let alone = LeaseGuard::unleased(1);
        assert!(alone.serving() == Some(0) && alone.claimant().lease_generation.is_none());
    }
}
