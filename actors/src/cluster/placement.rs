//! Placement: which node runs what, as a pure function of the live set and the partition
//! pins.
//!
//! Rendezvous (highest random weight) hashing: every candidate node gets a weight from
//! `hash(key, node)` and the heaviest wins. Every node computes the same answer from the
//! same live set, so no leader is needed, and a membership change moves only the keys whose
//! winner joined or left. The hash is fixed here (FNV-1a and a SplitMix64 finalizer), not
//! taken from the standard library, so that nodes built by different compilers agree.
//!
//! A partition an operator pinned to a node (Kafka's AlterPartitionReassignments, ADR 0013)
//! belongs to that node while it is live, and falls back to rendezvous hashing while it is
//! not. The pins are read from the metadata store with the leases, so every node places
//! with the same ones. The cluster's balancer (ADR 0022, [`crate::cluster::balancer`])
//! moves partitions with pins of its own, which work the same way.
//!
//! A node an operator marked draining (`inkless cluster drain`, ADR 0021) is live but no
//! candidate: hashing, zone leaders and cache shards skip it and its pins are dormant, so it
//! gives up what it runs and takes nothing new until the mark is taken off. If every live
//! node is draining, the marks are ignored (something must run the partitions).

use crate::TopicPartition;
use inkless_storage::metadata::NodeLease;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Partitions pinned to a node by an operator, with the node each is pinned to.
pub type Pins = Arc<BTreeMap<TopicPartition, i32>>;

/// The cluster's live members as this node last saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSet {
    /// This node's id.
    pub me: i32,
    /// False while this node cannot renew its own lease: it must own nothing.
    pub me_live: bool,
    /// The generation of this node's lease (see [`crate::cluster::lease`]); 0 without leases.
    pub generation: i64,
    /// Live nodes, by node id (this node included while `me_live`).
    pub nodes: Vec<NodeLease>,
    /// Nodes whose leases ran out less than [`LAPSED_LISTED`] ago without a graceful leave,
    /// by node id. They own nothing, but Metadata still lists them as brokers: a client
    /// drops a broker missing from Metadata and gives up the requests in flight to it as
    /// "not persisted", so a node that was only frozen or cut off for a moment would see
    /// batches it had appended sent again elsewhere (duplicates without idempotence).
    pub lapsed: Vec<NodeLease>,
    /// Partitions pinned to a node (see the module documentation), as of the last renewal.
    pub pins: Pins,
    /// Node ids marked draining (see the module documentation), in order, as of the last
    /// renewal; live or not.
    pub draining: Vec<i32>,
}

/// How long a node whose lease ran out stays listed as a broker (see [`LiveSet::lapsed`]).
pub const LAPSED_LISTED: std::time::Duration = std::time::Duration::from_secs(60);

impl LiveSet {
    /// A cluster of one: this node.
    pub fn single(lease: NodeLease) -> Self {
        Self {
            me: lease.node_id,
            me_live: true,
            generation: 0,
            nodes: vec![lease],
            lapsed: Vec::new(),
            pins: Pins::default(),
            draining: Vec::new(),
        }
    }

    /// The live nodes that placement may give work: the live nodes not marked draining, or
    /// all live nodes if every one is.
    pub fn candidates(&self) -> impl Iterator<Item = &NodeLease> + Clone {
        let all_draining = self
            .nodes
            .iter()
            .all(|n| self.draining.binary_search(&n.node_id).is_ok());
        self.nodes
            .iter()
            .filter(move |n| all_draining || self.draining.binary_search(&n.node_id).is_err())
    }

    /// True if the node is live and marked draining (and some live node is not).
    pub fn is_draining(&self, id: i32) -> bool {
        self.node(id).is_some() && !self.candidates().any(|n| n.node_id == id)
    }

    /// The lease of a live node.
    pub fn node(&self, id: i32) -> Option<&NodeLease> {
        self.nodes.iter().find(|n| n.node_id == id)
    }

    /// This node's own lease.
    pub fn me(&self) -> Option<&NodeLease> {
        self.node(self.me)
    }

    /// The node that owns a partition: the node it is pinned to if that is live, else the
    /// rendezvous winner among the live nodes.
    pub fn partition_owner(&self, tp: &TopicPartition) -> Option<i32> {
        self.pinned_owner(tp).or_else(|| self.hashed_owner(tp))
    }

    /// The node a partition is pinned to, if it has a pin and that node is live.
    pub fn pinned_owner(&self, tp: &TopicPartition) -> Option<i32> {
        self.pins
            .get(tp)
            .copied()
            .filter(|id| self.node(*id).is_some() && !self.is_draining(*id))
    }

    /// The node rendezvous hashing gives a partition, pins aside.
    pub fn hashed_owner(&self, tp: &TopicPartition) -> Option<i32> {
        owner(partition_key(tp), self.candidate_ids())
    }

    pub(crate) fn candidate_ids(&self) -> impl Iterator<Item = i32> + Clone + '_ {
        self.candidates().map(|n| n.node_id)
    }

    /// True if this node owns the partition.
    pub fn owns_partition(&self, tp: &TopicPartition) -> bool {
        self.me_live && self.partition_owner(tp) == Some(self.me)
    }

    /// The node that coordinates a consumer group.
    pub fn group_owner(&self, group_id: &str) -> Option<i32> {
        owner(fnv1a(b"group", group_id.as_bytes()), self.candidate_ids())
    }

    /// True if this node coordinates the group.
    pub fn owns_group(&self, group_id: &str) -> bool {
        self.me_live && self.group_owner(group_id) == Some(self.me)
    }

    /// The node that coordinates a transactional id: the same rendezvous as groups, over
    /// its own key space.
    pub fn txn_owner(&self, transactional_id: &str) -> Option<i32> {
        owner(
            fnv1a(b"txn", transactional_id.as_bytes()),
            self.candidate_ids(),
        )
    }

    /// True if this node coordinates the transactional id.
    pub fn owns_txn(&self, transactional_id: &str) -> bool {
        self.me_live && self.txn_owner(transactional_id) == Some(self.me)
    }

    /// The node of availability zone `az` that serves a partition's clients in that zone:
    /// its owner if that is in the zone, else rendezvous over the zone's live nodes, or over
    /// all nodes if the zone has none.
    pub fn zone_leader(&self, tp: &TopicPartition, az: &str) -> Option<i32> {
        // The owner itself when it is in the zone: one hop less.
        if let Some(o) = self.partition_owner(tp).and_then(|o| self.node(o)) {
            if o.az == az {
                return Some(o.node_id);
            }
        }
        let key = partition_key(tp) ^ 0x5a6f_6e65; // "Zone": a different order than ownership.
        self.in_zone_or_anywhere(key, az)
    }
}

impl LiveSet {
    /// The node of availability zone `az` whose cache shard holds block `block` of object
    /// `key` (over all live nodes if the zone has none).
    pub fn cache_owner(&self, key: &str, block: u64, az: &str) -> Option<i32> {
        self.in_zone_or_anywhere(fnv1a(key.as_bytes(), &block.to_be_bytes()), az)
    }

    /// The winner of `key` among the candidates of zone `az`, or among all candidates if
    /// the zone has none.
    fn in_zone_or_anywhere(&self, key: u64, az: &str) -> Option<i32> {
        owner(
            key,
            self.candidates().filter(|n| n.az == az).map(|n| n.node_id),
        )
        .or_else(|| owner(key, self.candidate_ids()))
    }

    /// The node that runs the cluster's object collector.
    pub fn collector_owner(&self) -> Option<i32> {
        owner(fnv1a(b"object-collector", b""), self.candidate_ids())
    }

    /// The node that runs the cluster's balancer (ADR 0022).
    pub fn balancer_owner(&self) -> Option<i32> {
        owner(fnv1a(b"balancer", b""), self.candidate_ids())
    }

    /// This node's availability zone.
    pub fn my_az(&self) -> &str {
        self.me().map(|n| n.az.as_str()).unwrap_or("")
    }
}

/// The rendezvous winners of many partitions, kept across live-set changes (ADR 0022), so
/// that a placement after a change costs work in proportion to the change: when nodes leave,
/// only the partitions they won are hashed again over all candidates; when nodes join, each
/// kept winner is compared with the newcomers only. Pins and drains are not in it: callers
/// ask [`LiveSet::pinned_owner`] first, and a drain mark changes the candidates.
#[derive(Debug, Default)]
pub struct HashedOwners {
    /// The candidates the winners were computed over, by node id, each with its mixed id.
    candidates: Vec<(i32, u64)>,
    /// Partition -> (weight, node) of its winner among `candidates`.
    winners: HashMap<TopicPartition, (u64, i32)>,
}

impl HashedOwners {
    /// Brings the kept winners up to date with `live`'s candidates.
    pub fn update(&mut self, live: &LiveSet) {
        let mut now: Vec<(i32, u64)> = live.candidate_ids().map(|id| (id, mix_node(id))).collect();
        now.sort_unstable();
        if now == self.candidates {
            return;
        }
        let gone: HashSet<i32> = self
            .candidates
            .iter()
            .filter(|c| now.binary_search(c).is_err())
            .map(|(id, _)| *id)
            .collect();
        let joined: Vec<(i32, u64)> = now
            .iter()
            .filter(|c| self.candidates.binary_search(c).is_err())
            .copied()
            .collect();
        self.candidates = now;
        if self.candidates.is_empty() {
            self.winners.clear();
            return;
        }
        for (tp, winner) in self.winners.iter_mut() {
            let key = partition_key(tp);
            *winner = if gone.contains(&winner.1) {
                // Not empty (checked above): there is a winner.
                heaviest(key, &self.candidates).unwrap_or(*winner)
            } else {
                heaviest(key, &joined).map_or(*winner, |w| heavier(w, *winner))
            };
        }
    }

    /// The node rendezvous hashing gives `tp` among the candidates of the last
    /// [`Self::update`] (computed once, then kept).
    pub fn owner(&mut self, tp: &TopicPartition) -> Option<i32> {
        if let Some((_, node)) = self.winners.get(tp) {
            return Some(*node);
        }
        let (weight, node) = heaviest(partition_key(tp), &self.candidates)?;
        self.winners.insert(*tp, (weight, node));
        Some(node)
    }

    /// True if `live` gives `tp` to this node: its pin if it has a live one, else the kept
    /// winner (`live` must be the set of the last [`Self::update`]).
    pub fn owned_by_me(&mut self, live: &LiveSet, tp: &TopicPartition) -> bool {
        live.me_live && live.pinned_owner(tp).or_else(|| self.owner(tp)) == Some(live.me)
    }

    /// Forgets the partitions not in `all` (deleted topics) once it keeps more than `all`.
    pub fn retain(&mut self, all: &[TopicPartition]) {
        if self.winners.len() > all.len() {
            let keep: HashSet<&TopicPartition> = all.iter().collect();
            self.winners.retain(|tp, _| keep.contains(tp));
        }
    }
}

/// The winner of two (weight, node): the heavier, or on equal weights the lower node id.
fn heavier(a: (u64, i32), b: (u64, i32)) -> (u64, i32) {
    let rank = |(w, n): (u64, i32)| (w, std::cmp::Reverse(n));
    if rank(a) >= rank(b) {
        a
    } else {
        b
    }
}

/// The winner of `key` among `candidates` (node id, mixed id), as [`owner`] computes it.
fn heaviest(key: u64, candidates: &[(i32, u64)]) -> Option<(u64, i32)> {
    candidates
        .iter()
        .map(|&(node, mixed)| (mix(key ^ mixed), node))
        .reduce(heavier)
}

/// A node id as [`owner`] mixes it.
fn mix_node(node: i32) -> u64 {
    mix(node as u32 as u64)
}

/// The hash key of a partition.
pub fn partition_key(tp: &TopicPartition) -> u64 {
    fnv1a(tp.topic_id.as_bytes(), &tp.partition.to_be_bytes())
}

/// The winner of `key` among `candidates` (ties, which need equal 64-bit weights, go to
/// the lower node id).
pub fn owner(key: u64, candidates: impl Iterator<Item = i32>) -> Option<i32> {
    candidates
        .map(|node| (mix(key ^ mix_node(node)), node))
        .reduce(heavier)
        .map(|(_, node)| node)
}

fn fnv1a(a: &[u8], b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.iter().chain([0xffu8].iter()).chain(b) {
        h ^= *byte as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finalizer: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn lease(id: i32, az: &str) -> NodeLease {
        NodeLease {
            node_id: id,
            incarnation: Uuid::nil(),
            az: az.into(),
            kafka_addr: String::new(),
            cluster_addr: String::new(),
            admin_addr: String::new(),
        }
    }

    fn set(ids: &[i32]) -> LiveSet {
        LiveSet {
            me: ids[0],
            me_live: true,
            generation: 0,
            nodes: ids
                .iter()
                .map(|&i| lease(i, if i % 2 == 0 { "a" } else { "b" }))
                .collect(),
            lapsed: Vec::new(),
            pins: Pins::default(),
            draining: Vec::new(),
        }
    }

    fn tps(n: i32) -> Vec<TopicPartition> {
        let topic_id = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        (0..n)
            .map(|partition| TopicPartition {
                topic_id,
                partition,
            })
            .collect()
    }

    #[test]
    fn the_answer_is_stable_across_builds() {
        // Pinned values: a change of the hash would move every partition of a live cluster
        // during a rolling upgrade.
        let s = set(&[1, 2, 3, 4, 5, 6]);
        let owners: Vec<i32> = tps(8)
            .iter()
            .map(|tp| s.partition_owner(tp).unwrap())
            .collect();
        assert_eq!(owners, PINNED_OWNERS);
        assert_eq!(s.group_owner("orders"), Some(PINNED_GROUP_OWNER));
    }

    const PINNED_OWNERS: [i32; 8] = [5, 1, 3, 1, 5, 5, 6, 3];
    const PINNED_GROUP_OWNER: i32 = 2;

    #[test]
    fn load_is_spread_and_a_leave_moves_only_the_leavers_keys() {
        let before = set(&[1, 2, 3, 4, 5, 6]);
        let after = set(&[1, 2, 3, 5, 6]);
        let all = tps(6000);
        let mut per_node = std::collections::HashMap::new();
        for tp in &all {
            let a = before.partition_owner(tp).unwrap();
            *per_node.entry(a).or_insert(0) += 1;
            let b = after.partition_owner(tp).unwrap();
            if a != 4 {
                assert_eq!(a, b, "only node 4's partitions move");
            } else {
                assert_ne!(b, 4);
            }
        }
        for (node, n) in per_node {
            assert!((850..1150).contains(&n), "node {node} got {n} of 6000");
        }
    }

    #[test]
    fn zone_leaders_stay_in_the_zone_and_fall_back_when_it_is_empty() {
        let s = set(&[1, 2, 3, 4]);
        for tp in tps(100) {
            let a = s.zone_leader(&tp, "a").unwrap();
            assert!(a % 2 == 0);
            let b = s.zone_leader(&tp, "b").unwrap();
            assert!(b % 2 == 1);
            assert!(s.zone_leader(&tp, "c").is_some());
        }
    }

    #[test]
    fn a_node_that_is_not_live_owns_nothing() {
        let mut s = set(&[1]);
        assert!(s.owns_partition(&tps(1)[0]));
        assert!(s.owns_group("g"));
        s.me_live = false;
        assert!(!s.owns_partition(&tps(1)[0]));
        assert!(!s.owns_group("g"));
        assert_eq!(owner(7, std::iter::empty()), None);
    }

    #[test]
    fn a_pinned_partition_goes_to_its_node_while_that_is_live() {
        let all = tps(200);
        let mut s = set(&[1, 2, 3]);
        let unpinned: Vec<i32> = all
            .iter()
            .map(|tp| s.partition_owner(tp).unwrap())
            .collect();
        // Pin every partition that hashing gives to node 1 or 3 onto node 2.
        let pins: BTreeMap<TopicPartition, i32> = all
            .iter()
            .zip(&unpinned)
            .filter(|(_, o)| **o != 2)
            .map(|(tp, _)| (*tp, 2))
            .collect();
        s.pins = Arc::new(pins.clone());
        for tp in &all {
            assert_eq!(s.partition_owner(tp), Some(2));
            assert_eq!(s.zone_leader(tp, "a"), Some(2), "the owner, in its zone");
        }
        assert!(!s.owns_partition(&all[0]), "node 1 owns nothing now");

        // Node 2 leaves: its pins are dormant and hashing decides, as without pins.
        let mut without_2 = set(&[1, 3]);
        without_2.pins = Arc::new(pins.clone());
        let hashed = set(&[1, 3]);
        for tp in &all {
            assert_eq!(without_2.partition_owner(tp), hashed.partition_owner(tp));
            assert_eq!(without_2.pinned_owner(tp), None);
        }

        // A pin to a node that is not live at all changes nothing either; unpinned
        // partitions keep their hashed owner.
        let mut s = set(&[1, 2, 3]);
        s.pins = Arc::new(BTreeMap::from([(all[0], 9), (all[1], 3)]));
        assert_eq!(s.partition_owner(&all[0]), Some(unpinned[0]));
        assert_eq!(s.partition_owner(&all[1]), Some(3));
        for (tp, o) in all.iter().zip(&unpinned).skip(2) {
            assert_eq!(s.partition_owner(tp), Some(*o));
        }
    }

    #[test]
    fn a_draining_node_gets_nothing_and_its_pins_are_dormant() {
        let all = tps(300);
        let mut s = set(&[1, 2, 3, 4]);
        s.pins = Arc::new(BTreeMap::from([(all[0], 2)]));
        s.draining = vec![2];
        let without_2 = set(&[1, 3, 4]);
        for tp in &all {
            assert_eq!(s.partition_owner(tp), without_2.partition_owner(tp));
            for az in ["a", "b", "c"] {
                assert_ne!(s.zone_leader(tp, az), Some(2));
            }
        }
        assert_eq!(
            s.pinned_owner(&all[0]),
            None,
            "a pin to a draining node is dormant"
        );
        for g in 0..100 {
            let g = format!("group-{g}");
            assert_eq!(s.group_owner(&g), without_2.group_owner(&g));
            assert_eq!(s.txn_owner(&g), without_2.txn_owner(&g));
            assert_ne!(s.cache_owner(&g, 0, "a"), Some(2));
        }
        assert_ne!(s.collector_owner(), Some(2));
        assert!(s.is_draining(2) && !s.is_draining(1));
        // A mark on a node that is not live changes nothing for the others.
        s.draining = vec![2, 9];
        assert_eq!(s.hashed_owner(&all[1]), without_2.hashed_owner(&all[1]));
        assert!(!s.is_draining(9));
        // Every live node draining: the marks are ignored.
        s.draining = vec![1, 2, 3, 4];
        let unmarked = set(&[1, 2, 3, 4]);
        for tp in &all {
            assert_eq!(s.hashed_owner(tp), unmarked.hashed_owner(tp));
        }
        assert!(!s.is_draining(2));
    }

    #[test]
    fn kept_winners_follow_joins_leaves_and_drains_as_a_full_placement_does() {
        let all = tps(2_000);
        let mut cache = HashedOwners::default();
        // Node sets in turn: start, one leaves, two join, several leave and join at once,
        // a drain, every node draining, a single node, back to many.
        let steps: [(&[i32], &[i32]); 9] = [
            (&[1, 2, 3, 4, 5, 6], &[]),
            (&[1, 2, 3, 5, 6], &[]),
            (&[1, 2, 3, 5, 6, 7, 8], &[]),
            (&[2, 3, 7, 9, 10], &[]),
            (&[2, 3, 7, 9, 10], &[3]),
            (&[2, 3, 7, 9, 10], &[2, 3, 7, 9, 10]),
            (&[4], &[]),
            (&[], &[]),
            (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], &[5]),
        ];
        for (ids, draining) in steps {
            let mut live = if ids.is_empty() {
                let mut s = set(&[1]);
                s.nodes.clear();
                s
            } else {
                set(ids)
            };
            live.draining = draining.to_vec();
            cache.update(&live);
            for tp in &all {
                assert_eq!(
                    cache.owner(tp),
                    live.hashed_owner(tp),
                    "{ids:?} draining {draining:?}"
                );
            }
        }
        cache.retain(&all[..10]);
        assert_eq!(cache.winners.len(), 10);
    }
}
