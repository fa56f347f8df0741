//! The balancer's plan (ADR 0022): which partitions to move, and the pins that move them.
//!
//! A pure function of the live set, the pins, every partition and the load the owners
//! reported. Load first: while the busiest node carries more than `max_imbalance` times the
//! mean bytes per second, the partition that best evens it out with the idlest node moves
//! there (only if that lowers the busiest by more than the imbalance allowed and more than
//! [`LOAD_FLOOR_BPS`], so noise in the measured rates moves nothing). Then count: while the fullest node runs more
//! than `max_imbalance` times the mean number of partitions (rounded up), its idlest
//! partition moves to the emptiest node, unless that would make a node busier than the
//! busiest is. At most `max_moves` moves in all. An operator's pin is never moved. The balancer's own pins are
//! removed where hashing alone gives the same node, or where they name a node that takes no
//! work (gone or draining), so pins stay as few as the moves that made them.

use crate::cluster::placement::LiveSet;
use crate::TopicPartition;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A move by load must lower the busiest node by more than this many bytes/s: less is
/// not worth a client's metadata refresh, and is within the noise of one interval's rates.
pub(crate) const LOAD_FLOOR_BPS: f64 = 1_048_576.0;

/// How far a round may go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// A node whose cost is at most this times the mean is balanced.
    pub(crate) max_imbalance: f64,
    /// Partitions moved per round at most.
    pub(crate) max_moves: usize,
}

/// The most loaded node over the mean, by partition count and by bytes per second (1 when
/// there is nothing to weigh).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Imbalance {
    /// Most partitions on a node over the mean per node.
    pub(crate) by_count: f64,
    /// Most bytes/s on a node over the mean per node.
    pub(crate) by_load: f64,
}

/// What a round does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// Pins to write (`Some(node)`) and balancer pins to remove (`None`).
    pub(crate) changes: Vec<(TopicPartition, Option<i32>)>,
    /// Partitions whose owner the changes move.
    pub(crate) moves: usize,
    /// The placement now.
    pub(crate) before: Imbalance,
    /// The placement once the changes are made.
    pub(crate) after: Imbalance,
}

/// Where every partition runs, with what it costs; the nodes that take work.
struct Placement<'a> {
    candidates: Vec<i32>,
    owner: HashMap<TopicPartition, i32>,
    load: &'a HashMap<TopicPartition, u64>,
}

impl Placement<'_> {
    fn imbalance(&self) -> Imbalance {
        let n = self.candidates.len().max(1) as f64;
        let mut count: HashMap<i32, f64> = HashMap::new();
        let mut bps: HashMap<i32, f64> = HashMap::new();
        for (tp, node) in &self.owner {
            *count.entry(*node).or_default() += 1.0;
            *bps.entry(*node).or_default() += self.load.get(tp).copied().unwrap_or(0) as f64;
        }
        let over_mean = |per_node: &HashMap<i32, f64>| {
            let total: f64 = per_node.values().sum();
            let max = per_node.values().copied().fold(0.0, f64::max);
            if total > 0.0 {
                max / (total / n)
            } else {
                1.0
            }
        };
        Imbalance {
            by_count: over_mean(&count),
            by_load: over_mean(&bps),
        }
    }
}

/// The plan for `all` partitions, placed by `live` (whose pins are every pin now), with
/// `operator_pinned` fixed and `balancer_pins` the balancer's own pins.
pub(crate) fn plan(
    live: &LiveSet,
    all: &[TopicPartition],
    load: &HashMap<TopicPartition, u64>,
    operator_pinned: &HashSet<TopicPartition>,
    balancer_pins: &BTreeMap<TopicPartition, i32>,
    limits: Limits,
) -> Plan {
    let mut placement = Placement {
        candidates: live.candidates().map(|n| n.node_id).collect(),
        owner: all
            .iter()
            .filter_map(|tp| live.partition_owner(tp).map(|o| (*tp, o)))
            .collect(),
        load,
    };
    let before = placement.imbalance();
    let moved = if placement.candidates.len() < 2 {
        BTreeMap::new()
    } else {
        moves(&mut placement, operator_pinned, limits)
    };
    let mut changes: BTreeMap<TopicPartition, Option<i32>> = BTreeMap::new();
    for (tp, &node) in balancer_pins {
        let hashed = live.hashed_owner(tp) == Some(node);
        if hashed || !placement.candidates.contains(&node) {
            changes.insert(*tp, None);
        }
    }
    for (tp, &node) in &moved {
        let pin = (live.hashed_owner(tp) != Some(node)).then_some(node);
        if pin.is_some() || balancer_pins.contains_key(tp) {
            changes.insert(*tp, pin);
        } else {
            changes.remove(tp);
        }
    }
    Plan {
        changes: changes.into_iter().collect(),
        moves: moved.len(),
        before,
        after: placement.imbalance(),
    }
}

/// What a node runs, as the plan goes.
#[derive(Default)]
struct NodeWork {
    count: usize,
    bps: f64,
    /// Partitions the balancer may move, with their bytes/s.
    movable: Vec<(TopicPartition, f64)>,
}

/// The node with the most (`max`) or least of `key`, ties to the lower id.
fn extreme(work: &BTreeMap<i32, NodeWork>, key: impl Fn(&NodeWork) -> f64, max: bool) -> i32 {
    let mut best: Option<(i32, f64)> = None;
    for (n, w) in work {
        let k = key(w);
        if best.is_none_or(|(_, b)| if max { k > b } else { k < b }) {
            best = Some((*n, k));
        }
    }
    best.map_or(0, |(n, _)| n)
}

/// Moves partitions in `placement` (see the module documentation); returns each moved
/// partition with its new node.
fn moves(
    placement: &mut Placement<'_>,
    operator_pinned: &HashSet<TopicPartition>,
    limits: Limits,
) -> BTreeMap<TopicPartition, i32> {
    let mut work: BTreeMap<i32, NodeWork> = placement
        .candidates
        .iter()
        .map(|n| (*n, NodeWork::default()))
        .collect();
    for (tp, node) in &placement.owner {
        let w = work.entry(*node).or_default();
        let bps = placement.load.get(tp).copied().unwrap_or(0) as f64;
        w.count += 1;
        w.bps += bps;
        if !operator_pinned.contains(tp) {
            w.movable.push((*tp, bps));
        }
    }
    let n = work.len() as f64;
    let mean_bps = work.values().map(|w| w.bps).sum::<f64>() / n;
    let mean_count = placement.owner.len() as f64 / n;
    let mut moved = BTreeMap::new();
    let mut shift = |work: &mut BTreeMap<i32, NodeWork>, hi: i32, lo: i32, i: usize| {
        let Some(from) = work.get_mut(&hi) else {
            return;
        };
        let (tp, bps) = from.movable.swap_remove(i);
        from.count -= 1;
        from.bps -= bps;
        let to = work.entry(lo).or_default();
        to.count += 1;
        to.bps += bps;
        to.movable.push((tp, bps));
        placement.owner.insert(tp, lo);
        moved.insert(tp, lo);
    };
    // By load: the partition nearest half the gap from the busiest node to the idlest, if
    // moving it lowers the busiest by a margin (what the busiest may carry over the mean,
    // and at least LOAD_FLOOR_BPS), so that the noise of measured rates, and differences
    // too small to matter, do not move partitions back and forth.
    let margin = ((limits.max_imbalance - 1.0) * mean_bps).max(LOAD_FLOOR_BPS);
    let mut moves_left = limits.max_moves;
    while moves_left > 0 && mean_bps > 0.0 {
        let hi = extreme(&work, |w| w.bps, true);
        let lo = extreme(&work, |w| w.bps, false);
        let (hi_bps, lo_bps) = (work[&hi].bps, work[&lo].bps);
        if hi_bps <= limits.max_imbalance * mean_bps {
            break;
        }
        let half_gap = (hi_bps - lo_bps) / 2.0;
        let best = work[&hi]
            .movable
            .iter()
            .enumerate()
            .filter(|(_, (_, b))| *b > 0.0 && (hi_bps - b).max(lo_bps + b) < hi_bps - margin)
            .min_by(|x, y| {
                (x.1 .1 - half_gap)
                    .abs()
                    .total_cmp(&(y.1 .1 - half_gap).abs())
            });
        let Some((i, _)) = best else {
            break;
        };
        shift(&mut work, hi, lo, i);
        moves_left -= 1;
    }
    // By count: the idlest partition of the fullest node to the emptiest, if that does not
    // raise the busiest node's load.
    let count_limit = mean_count
        .ceil()
        .max((mean_count * limits.max_imbalance).floor()) as usize;
    let load_limit = work
        .values()
        .map(|w| w.bps)
        .fold(limits.max_imbalance * mean_bps, f64::max);
    while moves_left > 0 {
        let hi = extreme(&work, |w| w.count as f64, true);
        let lo = extreme(&work, |w| w.count as f64, false);
        let (hi_count, lo_count) = (work[&hi].count, work[&lo].count);
        if hi_count <= count_limit || hi_count < lo_count + 2 {
            break;
        }
        let lo_bps = work[&lo].bps;
        let best = work[&hi]
            .movable
            .iter()
            .enumerate()
            .filter(|(_, (_, b))| lo_bps + b <= load_limit)
            .min_by(|x, y| x.1 .1.total_cmp(&y.1 .1));
        let Some((i, _)) = best else {
            break;
        };
        shift(&mut work, hi, lo, i);
        moves_left -= 1;
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::placement::Pins;
    use inkless_storage::metadata::NodeLease;
    use uuid::Uuid;

    fn live(ids: &[i32], pins: &BTreeMap<TopicPartition, i32>) -> LiveSet {
        LiveSet {
            me: ids[0],
            me_live: true,
            generation: 1,
            nodes: ids
                .iter()
                .map(|&node_id| NodeLease {
                    node_id,
                    ..NodeLease::default()
                })
                .collect(),
            lapsed: Vec::new(),
            pins: Pins::new(pins.clone()),
            draining: Vec::new(),
        }
    }

    fn tps(n: i32) -> Vec<TopicPartition> {
        let topic_id = Uuid::from_u128(7);
        (0..n)
            .map(|partition| TopicPartition {
                topic_id,
                partition,
            })
            .collect()
    }

    const LIMITS: Limits = Limits {
        max_imbalance: 1.1,
        max_moves: 1_000,
    };

    /// The plan without load reports or operator pins, `pins` being the balancer's.
    fn by_count(
        set: &LiveSet,
        all: &[TopicPartition],
        pins: &BTreeMap<TopicPartition, i32>,
        limits: Limits,
    ) -> Plan {
        plan(set, all, &HashMap::new(), &HashSet::new(), pins, limits)
    }

    /// The pins after applying `plan` to `pins`.
    fn apply(pins: &BTreeMap<TopicPartition, i32>, plan: &Plan) -> BTreeMap<TopicPartition, i32> {
        let mut out = pins.clone();
        for (tp, change) in &plan.changes {
            match change {
                Some(n) => out.insert(*tp, *n),
                None => out.remove(tp),
            };
        }
        out
    }

    fn counts(set: &LiveSet, all: &[TopicPartition]) -> BTreeMap<i32, usize> {
        let mut out = BTreeMap::new();
        for tp in all {
            *out.entry(set.partition_owner(tp).unwrap()).or_default() += 1;
        }
        out
    }

    #[test]
    fn an_idle_cluster_is_balanced_by_count_with_few_moves() {
        let all = tps(12);
        let nodes = [1, 2, 3];
        let none = BTreeMap::new();
        let hashed = counts(&live(&nodes, &none), &all);
        let plan = by_count(&live(&nodes, &none), &all, &none, LIMITS);
        let pins = apply(&none, &plan);
        let after = counts(&live(&nodes, &pins), &all);
        assert!(after.values().all(|&n| n == 4), "{hashed:?} -> {after:?}");
        let max = *hashed.values().max().unwrap();
        let excess: usize = hashed.values().map(|&n| n.saturating_sub(4)).sum();
        assert_eq!(plan.moves, excess, "only what nodes hold over the mean");
        assert_eq!(pins.len(), plan.moves);
        assert!((plan.after.by_count - 1.0).abs() < 1e-9);
        assert!((plan.before.by_count - max as f64 / 4.0).abs() < 1e-9);

        // A balanced placement asks for nothing more.
        let again = by_count(&live(&nodes, &pins), &all, &pins, LIMITS);
        assert_eq!(again.changes, vec![]);
        assert_eq!(again.moves, 0);
    }

    #[test]
    fn hot_partitions_are_spread_and_operator_pins_stay() {
        let all = tps(30);
        let nodes = [1, 2, 3];
        // Three hot partitions that hashing put on one node.
        let none = BTreeMap::new();
        let set = live(&nodes, &none);
        let on_2: Vec<TopicPartition> = all
            .iter()
            .filter(|tp| set.partition_owner(tp) == Some(2))
            .take(3)
            .copied()
            .collect();
        assert_eq!(on_2.len(), 3);
        let load: HashMap<TopicPartition, u64> = on_2.iter().map(|tp| (*tp, 10_000_000)).collect();
        let plan = plan(&set, &all, &load, &HashSet::new(), &none, LIMITS);
        let pins = apply(&none, &plan);
        let after = live(&nodes, &pins);
        let hot_owners: HashSet<i32> = on_2
            .iter()
            .map(|tp| after.partition_owner(tp).unwrap())
            .collect();
        assert_eq!(hot_owners.len(), 3, "one hot partition per node");
        assert!(plan.after.by_load < 1.01, "{:?}", plan.after);
        assert!(plan.before.by_load > 2.9, "{:?}", plan.before);
        assert!(
            plan.after.by_count <= 1.1,
            "counts even too: {:?}",
            plan.after
        );

        // The same with the hot ones pinned by an operator: nothing of theirs moves.
        let fixed: HashSet<TopicPartition> = on_2.iter().copied().collect();
        let plan = super::plan(&set, &all, &load, &fixed, &none, LIMITS);
        assert!(plan.changes.iter().all(|(tp, _)| !fixed.contains(tp)));
    }

    #[test]
    fn moves_per_round_are_bounded_and_the_max_never_rises() {
        let all = tps(3_000);
        let nodes: Vec<i32> = (1..=30).collect();
        let none = BTreeMap::new();
        let limits = Limits {
            max_imbalance: 1.1,
            max_moves: 30,
        };
        let mut pins = none.clone();
        let mut last = f64::MAX;
        for _ in 0..20 {
            let set = live(&nodes, &pins);
            let plan = by_count(&set, &all, &pins, limits);
            assert!(plan.moves <= 30);
            assert!(plan.after.by_count <= plan.before.by_count + 1e-9);
            assert!(plan.before.by_count <= last + 1e-9);
            last = plan.after.by_count;
            pins = apply(&pins, &plan);
        }
        assert!(last <= 1.1, "balanced after 20 rounds: {last}");
        assert!(
            pins.len() < 3_000 / 5,
            "pins stay few: {} for 3000 partitions",
            pins.len()
        );
    }

    #[test]
    fn pins_to_nodes_that_take_no_work_or_that_hashing_agrees_with_are_removed() {
        let all = tps(60);
        let set = live(&[1, 2, 3], &BTreeMap::new());
        let agrees = all[0];
        let hashed = set.hashed_owner(&agrees).unwrap();
        let balancer = BTreeMap::from([(agrees, hashed), (all[1], 9)]);
        let mut draining = live(&[1, 2, 3, 4], &balancer);
        draining.draining = vec![4];
        let balancer = BTreeMap::from([(agrees, hashed), (all[1], 9), (all[2], 4)]);
        let plan = by_count(
            &draining,
            &all,
            &balancer,
            Limits {
                max_imbalance: 100.0,
                max_moves: 0,
            },
        );
        assert_eq!(
            plan.changes,
            vec![(agrees, None), (all[1], None), (all[2], None)]
        );
        assert_eq!(plan.moves, 0);
    }

    #[test]
    fn one_node_needs_nothing() {
        let all = tps(10);
        let none = BTreeMap::new();
        let plan = by_count(&live(&[1], &none), &all, &none, LIMITS);
        assert_eq!((plan.changes.len(), plan.moves), (0, 0));
        assert_eq!(plan.before.by_count, 1.0);
    }

    #[test]
    fn noise_in_measured_rates_moves_nothing() {
        let all = tps(12);
        let nodes = [1, 2, 3];
        let none = BTreeMap::new();
        let first = by_count(&live(&nodes, &none), &all, &none, LIMITS);
        let pins = apply(&none, &first);
        let set = live(&nodes, &pins);
        // Equal partitions, measured 10 MB/s ± 15 %: four per node, one node 14 % over.
        let load: HashMap<TopicPartition, u64> = all
            .iter()
            .map(|tp| {
                let noise = match set.partition_owner(tp) {
                    Some(1) => 11_500_000,
                    Some(2) => 8_500_000,
                    _ => 10_000_000,
                };
                (*tp, noise)
            })
            .collect();
        let again = plan(&set, &all, &load, &HashSet::new(), &pins, LIMITS);
        assert_eq!(again.moves, 0, "{again:?}");
        assert!(again.before.by_load > 1.1);
        // Hot partitions of a few KB/s are not worth moving either.
        let small: HashMap<TopicPartition, u64> =
            all.iter().take(4).map(|tp| (*tp, 5_000)).collect();
        let idle = plan(&set, &all, &small, &HashSet::new(), &pins, LIMITS);
        assert_eq!(idle.moves, 0, "{idle:?}");
    }
}
