//! Membership: this node's lease in the metadata store, and the live set it sees.
//!
//! Every `renew_interval` the actor renews the node's lease row (expiring `ttl` later on the
//! store's clock) and reads every other row; the live set is the rows with unexpired leases.
//! It is published on a watch channel whenever it changes; placement
//! ([`crate::placement::LiveSet`]) turns it into ownership.
//!
//! If the lease cannot be renewed for `ttl`, the other nodes consider this one gone and take
//! over its partitions; the actor then publishes a live set without this node, so it stops
//! serving too (its commits would be fenced anyway). It rejoins after the next successful
//! renewal. [`MembershipMsg::Leave`] ends the lease at once for a graceful exit.

use crate::mailbox::Post;
use crate::placement::LiveSet;
use inkless_storage::metadata::{MetaError, NodeLease, NodeStatus, SharedMetadataStore};
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
    /// End the lease (graceful leave); answered when the store has forgotten it.
    Leave(oneshot::Sender<()>),
}

// Local only: never sent to another node.
impl ractor::Message for MembershipMsg {}

/// Arguments of the [`Membership`] actor.
#[derive(Debug, Clone)]
pub struct MembershipArgs {
    /// Lease settings.
    pub config: MembershipConfig,
    /// Metadata store.
    pub store: SharedMetadataStore,
    /// Where the live set is published.
    pub live: Arc<watch::Sender<Arc<LiveSet>>>,
}

/// State of the actor.
pub struct MembershipState {
    args: MembershipArgs,
    /// When the last successful renewal was sent.
    renewed_at: Instant,
    left: bool,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct Membership;

/// Registers the lease, waiting while an earlier incarnation of this node id still holds
/// one (a restart after a crash), and returns the first live set.
pub async fn register(
    store: &SharedMetadataStore,
    config: &MembershipConfig,
) -> Result<LiveSet, MetaError> {
    loop {
        match store
            .renew_lease(&config.lease, config.ttl.as_millis() as i64)
            .await
        {
            Ok(rows) => return Ok(live_set(config.lease.node_id, &rows)),
            Err(MetaError::LeaseHeld { expires_in_ms, .. }) => {
                tracing::warn!(
                    node_id = config.lease.node_id,
                    expires_in_ms,
                    "another incarnation of this node id holds a lease; waiting for it to expire"
                );
                tokio::time::sleep(Duration::from_millis(expires_in_ms.clamp(10, 60_000) as u64))
                    .await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn live_set(me: i32, rows: &[NodeStatus]) -> LiveSet {
    let nodes: Vec<NodeLease> = rows
        .iter()
        .filter(|r| r.is_live())
        .map(|r| r.lease.clone())
        .collect();
    LiveSet {
        me,
        me_live: nodes.iter().any(|n| n.node_id == me),
        nodes,
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
            nodes: cur
                .nodes
                .iter()
                .filter(|n| n.node_id != cur.me)
                .cloned()
                .collect(),
        }
    }

    async fn renew(&mut self, myself: &ActorRef<MembershipMsg>) {
        let c = &self.args.config;
        let sent = Instant::now();
        let renewed = tokio::time::timeout(
            c.ttl,
            self.args
                .store
                .renew_lease(&c.lease, c.ttl.as_millis() as i64),
        )
        .await;
        match renewed {
            Ok(Ok(rows)) => {
                self.renewed_at = sent;
                // Look again right when the next peer lease runs out, not a tick later:
                // that is what a crashed node's partitions wait for.
                let next_expiry = rows
                    .iter()
                    .filter(|r| r.is_live() && r.lease.node_id != c.lease.node_id)
                    .map(|r| r.expires_in_ms)
                    .min();
                if let Some(ms) =
                    next_expiry.filter(|&ms| (ms as u128) < c.renew_interval.as_millis())
                {
                    myself.post_after(Duration::from_millis(ms as u64 + 5), || {
                        MembershipMsg::Renew
                    });
                }
                self.publish(live_set(c.lease.node_id, &rows));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "lease renewal failed");
                self.expire_if_due();
            }
            Err(_) => {
                tracing::warn!(timeout = ?c.ttl, "lease renewal timed out");
                self.expire_if_due();
            }
        }
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
        myself.post_interval(args.config.renew_interval, || MembershipMsg::Renew);
        Ok(MembershipState {
            args,
            renewed_at: Instant::now(),
            left: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::mailbox::taken(&myself);
        match msg {
            MembershipMsg::Renew if !state.left => state.renew(&myself).await,
            MembershipMsg::Renew => {}
            MembershipMsg::Leave(reply) => {
                state.left = true;
                let lease = &state.args.config.lease;
                if let Err(e) = state
                    .args
                    .store
                    .release_lease(lease.node_id, lease.incarnation)
                    .await
                {
                    tracing::warn!(error = %e, "could not release the lease; it will expire");
                }
                state.publish(state.without_me());
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}
