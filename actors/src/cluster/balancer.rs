//! Balancer: evens out the partitions' placement by count and by load (ADR 0022).
//!
//! Runs on every node of a cluster. Every `interval` each node reports the bytes per second
//! appended to its busiest partitions since its last report ([`LOAD_REPORTED`] at most).
//! On the node that wins the rendezvous of the balancer ([`LiveSet::balancer_owner`]) it
//! also runs a round, once the live set has not changed for one interval and the moves of
//! its last round are done (or [`STUCK_ROUNDS`] intervals passed): it reads every pin,
//! topic and load report, plans ([`crate::cluster::balance::plan`]) and writes the plan's
//! pins under its balancer epoch. Every node then places with them at its next renewal,
//! and each moved partition is handed off as in any move. A node that becomes the balancer
//! starts a new term (a higher epoch), so a previous balancer still running for a moment
//! has its writes refused. Placement never waits for it: crashes and joins are absorbed by
//! hashing, and the balancer only adjusts afterwards.

use crate::cluster::balance::{plan, Limits, Plan};
use crate::cluster::placement::{LiveSet, Pins};
use crate::partition::registry::PartitionRegistry;
use crate::tree::mailbox::{Mailbox, QueueCount};
use crate::TopicPartition;
use inkless_storage::metadata::{MetaError, PartitionKey, PartitionPin, SharedMetadataStore};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Partitions a node reports the load of, busiest first.
pub(crate) const LOAD_REPORTED: usize = 100;
/// A report older than this many intervals is not weighed (its node stopped reporting).
const REPORT_KEPT_INTERVALS: u32 = 3;
/// Rounds skipped at most while the last round's moves are still being made.
const STUCK_ROUNDS: u32 = 3;

/// Settings of the balancer.
#[derive(Debug, Clone)]
pub struct BalancerConfig {
    /// Whether the balancer runs (off: nodes do not report their load either).
    pub enabled: bool,
    /// Time between load reports and between rounds.
    pub interval: Duration,
    /// A node is balanced while its cost is at most this times the mean.
    pub max_imbalance: f64,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(30),
            max_imbalance: 1.1,
        }
    }
}

/// Messages of the [`Balancer`].
#[derive(Debug)]
pub enum BalancerMsg {
    /// Report the load and balance if due (sent to itself every interval).
    Tick,
}

// Local only: never sent to another node.
impl ractor::Message for BalancerMsg {}

/// What the [`Balancer`] works with.
#[derive(Debug, Clone)]
pub struct BalancerArgs {
    /// Its mailbox count.
    pub queued: QueueCount,
    /// The metadata store.
    pub store: SharedMetadataStore,
    /// The live set.
    pub live: watch::Receiver<Arc<LiveSet>>,
    /// This node's partitions, whose appended bytes are its load.
    pub partitions: PartitionRegistry,
    /// Settings.
    pub config: BalancerConfig,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct Balancer;

/// State of the balancer.
pub struct BalancerState {
    me: Mailbox<BalancerMsg>,
    args: BalancerArgs,
    /// Bytes appended per partition at the last report, and when.
    last_report: (Instant, HashMap<TopicPartition, u64>),
    /// The live nodes and drain marks last seen, and since when they are unchanged.
    membership: (Vec<i32>, Vec<i32>, Instant),
    /// This node's balancer term, while it balances.
    epoch: Option<i64>,
    /// Rounds skipped in a row because moves were in progress.
    skipped: u32,
    /// Whether the last report stored was empty.
    reported_idle: bool,
}

impl BalancerState {
    /// Reports the bytes/s appended to this node's busiest partitions since the last report.
    async fn report_load(&mut self) {
        let now = Instant::now();
        let counters: HashMap<TopicPartition, u64> =
            self.args.partitions.appended_bytes().into_iter().collect();
        let (then, before) = &self.last_report;
        let secs = now.duration_since(*then).as_secs_f64().max(0.001);
        let mut rates: Vec<(PartitionKey, u64)> = counters
            .iter()
            .map(|(tp, bytes)| {
                // A counter below the last one belongs to a partition claimed anew since.
                let base = before.get(tp).copied().filter(|b| b <= bytes).unwrap_or(0);
                let bps = ((bytes - base) as f64 / secs) as u64;
                ((tp.topic_id, tp.partition), bps)
            })
            .filter(|(_, bps)| *bps > 0)
            .collect();
        rates.sort_by_key(|(key, bps)| (std::cmp::Reverse(*bps), *key));
        rates.truncate(LOAD_REPORTED);
        self.last_report = (now, counters);
        // An idle node writes its empty report once, not every interval.
        if rates.is_empty() && self.reported_idle {
            return;
        }
        let me = self.args.live.borrow().me;
        let idle = rates.is_empty();
        match self.args.store.report_load(me, rates).await {
            Ok(()) => self.reported_idle = idle,
            Err(e) => tracing::debug!(error = %e, "could not report this node's load"),
        }
    }

    /// True if this node balances and the live set was unchanged for one interval.
    fn due(&mut self) -> bool {
        let live = self.args.live.borrow().clone();
        let nodes: Vec<i32> = live.nodes.iter().map(|n| n.node_id).collect();
        if (&nodes, &live.draining) != (&self.membership.0, &self.membership.1) {
            self.membership = (nodes, live.draining.clone(), Instant::now());
        }
        let balances = live.me_live && live.balancer_owner() == Some(live.me);
        if !balances {
            if self.epoch.take().is_some() {
                tracing::info!("no longer the cluster's balancer");
            }
            let m = &crate::metrics::get().balance;
            m.by_count.set(0.0);
            m.by_load.set(0.0);
            return false;
        }
        self.membership.2.elapsed() >= self.args.config.interval
    }

    /// One round (see the module documentation).
    async fn round(&mut self) -> Result<(), MetaError> {
        let store = &self.args.store;
        let pins = store.partition_pins().await?;
        if self.moves_in_progress(&pins) && self.skipped < STUCK_ROUNDS {
            self.skipped += 1;
            return Ok(());
        }
        self.skipped = 0;
        let all: Vec<TopicPartition> = store
            .list_topics()
            .await?
            .iter()
            .flat_map(|t| {
                (0..t.partitions).map(move |partition| TopicPartition {
                    topic_id: t.id,
                    partition,
                })
            })
            .collect();
        let load = self.reported_load().await?;
        let tp = |p: &PartitionPin| TopicPartition {
            topic_id: p.partition.0,
            partition: p.partition.1,
        };
        let operator: HashSet<TopicPartition> =
            pins.iter().filter(|p| !p.by_balancer).map(tp).collect();
        let balancer: BTreeMap<TopicPartition, i32> = pins
            .iter()
            .filter(|p| p.by_balancer)
            .map(|p| (tp(p), p.node_id))
            .collect();
        let mut live = (*self.args.live.borrow().clone()).clone();
        live.pins = Pins::new(pins.iter().map(|p| (tp(p), p.node_id)).collect());
        let limits = Limits {
            max_imbalance: self.args.config.max_imbalance,
            max_moves: (all.len() / 100).max(10),
        };
        let plan = plan(&live, &all, &load, &operator, &balancer, limits);
        self.write(plan).await
    }

    /// True if a balancer pin names a node that takes work but does not hold it yet.
    fn moves_in_progress(&self, pins: &[PartitionPin]) -> bool {
        let live = self.args.live.borrow();
        pins.iter().any(|p| {
            p.by_balancer
                && p.holder != Some(p.node_id)
                && live.candidates().any(|n| n.node_id == p.node_id)
        })
    }

    /// The bytes/s of every partition in the live nodes' recent reports.
    async fn reported_load(&self) -> Result<HashMap<TopicPartition, u64>, MetaError> {
        let kept = (self.args.config.interval * REPORT_KEPT_INTERVALS).as_millis() as i64;
        let live = self.args.live.borrow().clone();
        let mut load = HashMap::new();
        for report in self.args.store.node_loads().await? {
            // An idle node's empty report is not renewed: an old empty one still holds.
            let stale = report.reported_ago_ms > kept && !report.partitions.is_empty();
            if stale || live.node(report.node_id).is_none() {
                continue;
            }
            for ((topic_id, partition), bps) in report.partitions {
                let tp = TopicPartition {
                    topic_id,
                    partition,
                };
                // A partition that moved is reported by both nodes for a moment.
                let e = load.entry(tp).or_insert(0);
                *e = (*e).max(bps);
            }
        }
        Ok(load)
    }

    /// Writes the plan's pins under this node's term, starting one if needed.
    async fn write(&mut self, plan: Plan) -> Result<(), MetaError> {
        let m = &crate::metrics::get().balance;
        m.by_count.set(plan.before.by_count);
        m.by_load.set(plan.before.by_load);
        if plan.changes.is_empty() {
            return Ok(());
        }
        let epoch = match self.epoch {
            Some(e) => e,
            None => {
                let e = self.args.store.claim_balancer_epoch().await?;
                tracing::info!(epoch = e, "this node balances the cluster");
                *self.epoch.insert(e)
            }
        };
        let changes: Vec<(PartitionKey, Option<i32>)> = plan
            .changes
            .iter()
            .map(|(tp, pin)| ((tp.topic_id, tp.partition), *pin))
            .collect();
        match self.args.store.set_balancer_pins(epoch, changes).await {
            Ok(written) => {
                m.moves.inc_by(plan.moves as u64);
                tracing::info!(
                    moves = plan.moves,
                    pins_written = written,
                    count_before = plan.before.by_count,
                    count_after = plan.after.by_count,
                    load_before = plan.before.by_load,
                    load_after = plan.after.by_load,
                    "balanced partitions"
                );
                Ok(())
            }
            Err(e @ MetaError::BalancerFenced(_)) => {
                self.epoch = None;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

impl Actor for Balancer {
    type Msg = BalancerMsg;
    type State = BalancerState;
    type Arguments = BalancerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: BalancerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let me = Mailbox::new(myself, args.queued.clone());
        me.post_interval(args.config.interval, || BalancerMsg::Tick);
        let now = Instant::now();
        Ok(BalancerState {
            me,
            args,
            last_report: (now, HashMap::new()),
            membership: (Vec::new(), Vec::new(), now),
            epoch: None,
            skipped: 0,
            reported_idle: false,
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
            BalancerMsg::Tick if !state.args.config.enabled => {}
            BalancerMsg::Tick => {
                state.report_load().await;
                if state.due() {
                    if let Err(e) = state.round().await {
                        tracing::warn!(error = %e, "balancing round failed");
                    }
                }
            }
        }
        Ok(())
    }
}
