//! Membership: this node's lease in the metadata store, and the live set it sees.
//!
//! Every `renew_interval` the actor renews the node's lease row (expiring `ttl` later on the
//! store's clock) and reads every other row; the live set is the rows with unexpired leases.
//! It is published on a watch channel whenever it changes; placement
//! ([`crate::cluster::placement::LiveSet`]) turns it into ownership. The partition pins
//! (ADR 0013, 0022) are read right after a renewal that reports a new version of them, and
//! published with the live set, so every node places with the same pins, one renewal after
//! they changed at the latest.
//!
//! Each successful renewal also moves this node's [`LeaseGuard`] forward, which is what lets
//! it serve. If the lease cannot be renewed, the guard runs out first (before the store's
//! expiry), then after `ttl` the actor publishes a live set without this node, so its
//! managers stop what they run. It rejoins after the next successful renewal; if another
//! node took something over meanwhile, the renewal returns a new lease generation and
//! nothing held under the old one is served again.
//!
//! After a lapse (the store was unreachable, or the node was frozen) the node keeps the
//! peers of its last view for one `ttl` even if their leases ran out too: they were most
//! likely cut off from the store as it was, and renew within a second. Without this, the
//! first node back after a metadata-store outage would see only itself and claim every
//! partition of the cluster. [`MembershipMsg::Leave`] stops renewing for a graceful exit.

use crate::cluster::lease::LeaseGuard;
use crate::cluster::placement::{LiveSet, Pins, LAPSED_LISTED};
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::TopicPartition;
use inkless_storage::metadata::{LeaseView, NodeLease};
use inkless_storage::metadata::{MetaError, NodeStatus, SharedMetadataStore};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Lease settings.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// What this node announces.
    pub lease: NodeLease,
    /// How often the lease is renewed.
    pub renew_interval: Duration,
    /// How long a lease lasts without renewal.
    pub ttl: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            lease: NodeLease::default(),
            renew_interval: Duration::from_secs(1),
            ttl: Duration::from_secs(3),
        }
    }
}

/// Messages of the [`Membership`] actor.
#[derive(Debug)]
pub enum MembershipMsg {
    /// Renew the lease now.
    Renew,
    /// Stop renewing and publish a live set without this node (graceful leave); the caller
    /// releases the lease once everything is handed off.
    Leave(oneshot::Sender<()>),
}

// Local only: never sent to another node.
impl ractor::Message for MembershipMsg {}

/// Arguments of the [`Membership`] actor.
#[derive(Debug, Clone)]
pub struct MembershipArgs {
    /// Its mailbox count (see [`crate::tree::mailbox`]).
    pub queued: QueueCount,
    /// Lease settings.
    pub config: MembershipConfig,
    /// Metadata store.
    pub store: SharedMetadataStore,
    /// Where the live set is published.
    pub live: Arc<watch::Sender<Arc<LiveSet>>>,
    /// This node's lease, as request handlers see it.
    pub guard: LeaseGuard,
    /// The version of the pins in the first live set ([`register`]).
    pub pins_version: Option<i64>,
}

/// State of the actor.
pub struct MembershipState {
    me: Mailbox<MembershipMsg>,
    args: MembershipArgs,
    /// When the last successful renewal was sent.
    renewed_at: Instant,
    /// Until then, peers of the last view are kept although their leases ran out.
    settling_until: Option<Instant>,
    /// The version of the pins published (`None`: read them at the next renewal).
    pins_version: Option<i64>,
    left: bool,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct Membership;

/// Registers the lease, waiting while an earlier incarnation of this node id still holds
/// one (a restart after a crash), and returns the first live set, the lease guard and the
/// version of the pins in it (`None` if they could not be read).
pub async fn register(
    store: &SharedMetadataStore,
    config: &MembershipConfig,
) -> Result<(LiveSet, LeaseGuard, Option<i64>), MetaError> {
    let me = config.lease.node_id;
    let give_up = Instant::now() + REGISTER_DB_PATIENCE;
    loop {
        let sent = Instant::now();
        match store
            .renew_lease(&config.lease, config.ttl.as_millis() as i64)
            .await
        {
            Ok(view) => {
                let guard = LeaseGuard::leased(me, view.generation, sent, config.ttl);
                let mut set = live_set(me, &view);
                let pins = read_pins(store, config.renew_interval).await;
                let version = pins.is_some().then_some(view.pins_version);
                set.pins = pins.unwrap_or_default();
                return Ok((set, guard, version));
            }
            Err(MetaError::LeaseHeld { expires_in_ms, .. }) => {
                tracing::warn!(
                    node_id = me,
                    expires_in_ms,
                    "another incarnation of this node id holds a lease; waiting for it to expire"
                );
                tokio::time::sleep(Duration::from_millis(expires_in_ms.clamp(10, 60_000) as u64))
                    .await;
            }
            // The database may be restarting or briefly unreachable: keep trying a while.
            Err(MetaError::Database(e)) if Instant::now() < give_up => {
                tracing::warn!(node_id = me, error = %e, "could not register the lease; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long registration retries a failing metadata store before the node gives up.
const REGISTER_DB_PATIENCE: Duration = Duration::from_secs(60);

/// Every partition pin, or `None` when the store does not answer within `patience` (the
/// lease is renewed already; a slow read must not delay the next renewal much): the caller
/// places with the pins it knows and reads again next time.
async fn read_pins(store: &SharedMetadataStore, patience: Duration) -> Option<Pins> {
    match tokio::time::timeout(patience, store.partition_pins()).await {
        Ok(Ok(rows)) => Some(Arc::new(
            rows.into_iter()
                .map(|p| {
                    let (topic_id, partition) = p.partition;
                    let tp = TopicPartition {
                        topic_id,
                        partition,
                    };
                    (tp, p.node_id)
                })
                .collect(),
        )),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not read partition pins; placing with the known ones");
            None
        }
        Err(_) => {
            tracing::warn!(
                ?patience,
                "reading partition pins timed out; placing with the known ones"
            );
            None
        }
    }
}

fn live_set(me: i32, view: &LeaseView) -> LiveSet {
    let nodes: Vec<NodeLease> = view
        .nodes
        .iter()
        .filter(|r| r.is_live())
        .map(|r| r.lease.clone())
        .collect();
    let listed_ms = LAPSED_LISTED.as_millis() as i64;
    let lapsed = view
        .nodes
        .iter()
        .filter(|r| !r.is_live() && r.expires_in_ms > -listed_ms && r.lease.node_id != me)
        .map(|r| r.lease.clone())
        .collect();
    LiveSet {
        me,
        me_live: nodes.iter().any(|n| n.node_id == me),
        generation: view.generation,
        nodes,
        lapsed,
        pins: Default::default(),
        draining: view.draining.clone(),
    }
}

impl MembershipState {
    fn publish(&self, set: LiveSet) {
        self.args.live.send_if_modified(|cur| {
            if **cur == set {
                return false;
            }
            tracing::info!(
                live = ?set.nodes.iter().map(|n| n.node_id).collect::<Vec<_>>(),
                me_live = set.me_live,
                pins = set.pins.len(),
                draining = ?set.draining,
                "live set changed"
            );
            *cur = Arc::new(set);
            true
        });
    }

    /// The current live set without this node.
    fn without_me(&self) -> LiveSet {
        let cur = self.args.live.borrow().clone();
        LiveSet {
            me: cur.me,
            me_live: false,
            generation: cur.generation,
            nodes: cur
                .nodes
                .iter()
                .filter(|n| n.node_id != cur.me)
                .cloned()
                .collect(),
            lapsed: cur.lapsed.clone(),
            pins: cur.pins.clone(),
            draining: cur.draining.clone(),
        }
    }

    async fn renew(&mut self) {
        let c = self.args.config.clone();
        let sent = Instant::now();
        let renewed = tokio::time::timeout(
            c.ttl,
            self.args
                .store
                .renew_lease(&c.lease, c.ttl.as_millis() as i64),
        )
        .await;
        match renewed {
            Ok(Ok(view)) => {
                crate::metrics::lease_renewed();
                self.renewed(&view, sent);
                // Look again right when the next peer lease runs out, not a tick later:
                // that is what a crashed node's partitions wait for.
                let next_expiry = view
                    .nodes
                    .iter()
                    .filter(|r| r.is_live() && r.lease.node_id != c.lease.node_id)
                    .map(|r| r.expires_in_ms)
                    .min();
                if let Some(ms) =
                    next_expiry.filter(|&ms| (ms as u128) < c.renew_interval.as_millis())
                {
                    self.me
                        .post_after(Duration::from_millis(ms as u64 + 5), || {
                            MembershipMsg::Renew
                        });
                }
                let mut set = live_set(c.lease.node_id, &view);
                set.pins = self.args.live.borrow().pins.clone();
                if self.pins_version != Some(view.pins_version) {
                    let read = read_pins(&self.args.store, c.renew_interval / 2).await;
                    if let Some(pins) = read {
                        self.pins_version = Some(view.pins_version);
                        set.pins = pins;
                    }
                }
                if self.settling_until.is_some_and(|t| Instant::now() < t) {
                    self.keep_previous_peers(&mut set, &view.nodes);
                }
                self.publish(set);
            }
            Ok(Err(e)) => {
                crate::metrics::get().cluster.renewal_failures.inc();
                tracing::warn!(error = %e, "lease renewal failed");
                self.expire_if_due();
            }
            Err(_) => {
                crate::metrics::get().cluster.renewal_failures.inc();
                tracing::warn!(timeout = ?c.ttl, "lease renewal timed out");
                self.expire_if_due();
            }
        }
    }

    /// Moves the guard forward; notes a broken lease and starts settling after a lapse.
    fn renewed(&mut self, view: &LeaseView, sent: Instant) {
        let ttl = self.args.config.ttl;
        let was_valid = self.args.guard.is_valid();
        let previous = self.args.guard.renewed(view.generation, sent, ttl);
        self.renewed_at = sent;
        if previous != view.generation {
            tracing::warn!(
                previous,
                generation = view.generation,
                "lease was taken over while it had expired: nothing held under the previous generation is served again"
            );
        }
        if !was_valid || view.lapsed {
            tracing::info!(
                lapsed_in_store = view.lapsed,
                "lease renewed after a lapse; keeping the last view's peers for one TTL"
            );
            self.settling_until = Some(Instant::now() + ttl);
        }
    }

    /// Adds the peers of the last published view whose lease rows still exist (they ran
    /// out, but were not released by a graceful leave).
    fn keep_previous_peers(&self, set: &mut LiveSet, rows: &[NodeStatus]) {
        let cur = self.args.live.borrow().clone();
        for n in &cur.nodes {
            let has_row = rows.iter().any(|r| r.lease.node_id == n.node_id);
            if n.node_id != set.me && has_row && set.node(n.node_id).is_none() {
                set.nodes.push(n.clone());
                set.lapsed.retain(|l| l.node_id != n.node_id);
            }
        }
        set.nodes.sort_by_key(|n| n.node_id);
    }

    fn expire_if_due(&self) {
        if self.renewed_at.elapsed() >= self.args.config.ttl {
            tracing::error!("lease expired: this node gives up everything it owns until it renews");
            self.publish(self.without_me());
        }
    }
}

impl Actor for Membership {
    type Msg = MembershipMsg;
    type State = MembershipState;
    type Arguments = MembershipArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: MembershipArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let me = Mailbox::new(myself, args.queued.clone());
        me.post_interval(args.config.renew_interval, || MembershipMsg::Renew);
        Ok(MembershipState {
            me,
            pins_version: args.pins_version,
            args,
            renewed_at: Instant::now(),
            settling_until: None,
            left: false,
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
            MembershipMsg::Renew if !state.left => state.renew().await,
            MembershipMsg::Renew => {}
            MembershipMsg::Leave(reply) => {
                state.left = true;
                state.publish(state.without_me());
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node_id: i32, expires_in_ms: i64) -> NodeStatus {
        NodeStatus {
            lease: NodeLease {
                node_id,
                ..NodeLease::default()
            },
            renewed_ago_ms: 0,
            expires_in_ms,
        }
    }

    #[test]
    fn nodes_that_lapsed_a_moment_ago_stay_listed_but_own_nothing() {
        let listed = LAPSED_LISTED.as_millis() as i64;
        let view = LeaseView {
            generation: 7,
            lapsed: false,
            nodes: vec![
                row(1, 2_000),
                row(2, -500),              // frozen a moment ago
                row(3, -(listed + 1_000)), // gone for longer
                row(4, 100),
            ],
            draining: vec![4],
            pins_version: 0,
        };
        let set = live_set(1, &view);
        let ids = |v: &[NodeLease]| v.iter().map(|n| n.node_id).collect::<Vec<_>>();
        assert_eq!(ids(&set.nodes), [1, 4]);
        assert_eq!(ids(&set.lapsed), [2]);
        assert!(set.me_live && set.generation == 7);
        assert_eq!(set.draining, [4]);
        // This node's own expired row is never "lapsed": it lists itself regardless.
        let set = live_set(2, &view);
        assert!(!set.me_live && set.lapsed.is_empty());
    }
}
