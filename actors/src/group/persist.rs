//! Durable group membership (ADR 0020): the form in which a GroupCoordinator keeps its
//! group in the metadata store, so that a restart or a move of the coordinator does not
//! force a rebalance (Kafka keeps the same in its offsets topic).
//!
//! [`StoredGroup`] is what is stored: for the classic protocol the phase (Empty, Rebalancing
//! or Stable), generation, protocol, leader, and, once Stable, every member with its
//! protocols and assignment; for the consumer protocol (KIP-848) the epochs, the members
//! with their epochs, subscriptions and assignments, the target assignment and the topic
//! metadata it was computed from; and when the group lost its last member (offset expiry).
//! It holds no timers: a loaded member's session starts afresh, so a member that is gone is
//! expired after its session timeout and the group rebalances as usual.
//!
//! The bytes are bincode behind a format version byte; the store keeps them unread. The
//! coordinator writes them ([`GroupCoordinatorState::persist`]) after every message that may
//! change them, when they did, under its owner epoch; SyncGroup answers of a new generation
//! wait for that write. A group stored mid-rebalance loads as Empty with its generation: its
//! members rejoin.

use crate::group::consumer::{Assignment, ConsumerGroup, Member as ConsumerMember, TopicRegex};
use crate::group::coordinator::{GroupCoordinatorState, GroupState, Member, SyncResult};
use crate::group::error::GroupError;
use bytes::Bytes;
use inkless_storage::metadata::{MetaError, MetaResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Version byte in front of the bincode of a [`StoredGroup`].
const FORMAT_VERSION: u8 = 1;

/// A group as stored; see the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredGroup {
    /// The classic-protocol side.
    pub classic: StoredClassic,
    /// The consumer-protocol side, when the group was used through it.
    pub consumer: Option<StoredConsumer>,
    /// True when the group was last used through the consumer protocol.
    pub consumer_type: bool,
    /// Wall-clock ms when the group lost its last member.
    pub emptied_ms: i64,
}

/// Phase of a classic group as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClassicPhase {
    /// No members.
    Empty,
    /// A rebalance was in progress (loads as Empty: the members rejoin).
    Rebalancing,
    /// Members have their assignments.
    Stable,
}

/// The classic-protocol side of a stored group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredClassic {
    /// Phase.
    pub phase: ClassicPhase,
    /// Generation.
    pub generation: i32,
    /// Protocol type (`consumer`, `connect`, ...).
    pub protocol_type: Option<String>,
    /// Chosen protocol (Stable only).
    pub protocol_name: Option<String>,
    /// Leader's member id (Stable only).
    pub leader: Option<String>,
    /// Members in join order (Stable only).
    pub members: Vec<StoredMember>,
}

/// A classic member as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: u64,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: u64,
    /// Protocols with their metadata, in preference order.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// Assignment.
    pub assignment: Vec<u8>,
}

/// The consumer-protocol side of a stored group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredConsumer {
    /// Group epoch.
    pub group_epoch: i32,
    /// Assignment epoch.
    pub assignment_epoch: i32,
    /// Assignor.
    pub assignor: String,
    /// Members.
    pub members: Vec<StoredConsumerMember>,
    /// Target assignment by member id.
    pub target: BTreeMap<String, Assignment>,
    /// Topic metadata the target was computed from.
    pub metadata: BTreeMap<String, (Uuid, i32)>,
}

/// A consumer-protocol member as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredConsumerMember {
    /// Member id.
    pub member_id: String,
    /// Epoch.
    pub epoch: i32,
    /// Previous epoch.
    pub previous_epoch: i32,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Rack.
    pub rack_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: u64,
    /// Subscribed topic names.
    pub subscribed: Vec<String>,
    /// Subscription regular expression.
    pub regex: Option<String>,
    /// Owned partitions.
    pub assigned: Assignment,
    /// Partitions being revoked.
    pub revoking: Assignment,
}

/// Why stored bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty group state")]
    Empty,
    /// Written by a newer (or unknown) format.
    #[error("unknown group state format {0}")]
    Version(u8),
    /// Not a valid encoding.
    #[error("corrupt group state: {0}")]
    Corrupt(#[from] bincode::Error),
}

impl StoredGroup {
    /// The stored bytes.
    pub fn encode(&self) -> Result<Vec<u8>, bincode::Error> {
        let mut out = vec![FORMAT_VERSION];
        bincode::serialize_into(&mut out, self)?;
        Ok(out)
    }

    /// Reads stored bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            None => Err(DecodeError::Empty),
            Some((&FORMAT_VERSION, rest)) => Ok(bincode::deserialize(rest)?),
            Some((&v, _)) => Err(DecodeError::Version(v)),
        }
    }
}

/// Outcome of [`GroupCoordinatorState::persist`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persisted {
    /// Stored (or nothing to store).
    Done,
    /// The store failed; the next Tick tries again.
    Failed,
    /// Another coordinator holds the group: this one must stop.
    Fenced,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl GroupCoordinatorState {
    /// The group as it would be stored now.
    pub(super) fn stored(&self) -> StoredGroup {
        let stable = self.state == GroupState::Stable;
        let phase = match self.state {
            GroupState::Empty | GroupState::Dead => ClassicPhase::Empty,
            GroupState::Stable => ClassicPhase::Stable,
            GroupState::PreparingRebalance | GroupState::CompletingRebalance => {
                ClassicPhase::Rebalancing
            }
        };
        let members = if stable {
            self.order
                .iter()
                .filter_map(|id| self.members.get(id).map(|m| stored_member(id, m)))
                .collect()
        } else {
            Vec::new()
        };
        let consumer = (self.consumer_type || self.consumer.has_members())
            .then(|| stored_consumer(&self.consumer));
        StoredGroup {
            classic: StoredClassic {
                phase,
                generation: self.generation,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol_name.clone().filter(|_| stable),
                leader: self.leader.clone().filter(|_| stable),
                members,
            },
            consumer,
            consumer_type: self.consumer_type,
            emptied_ms: self.emptied_ms,
        }
    }

    /// Takes over a stored group; sessions start now.
    pub(super) fn restore(&mut self, g: StoredGroup, now: Instant) {
        let c = g.classic;
        self.generation = c.generation;
        self.protocol_type = c.protocol_type;
        self.consumer_type = g.consumer_type;
        self.emptied_ms = g.emptied_ms;
        if c.phase == ClassicPhase::Stable && !c.members.is_empty() {
            self.state = GroupState::Stable;
            self.protocol_name = c.protocol_name;
            self.leader = c.leader;
            for m in c.members {
                if let Some(i) = &m.instance_id {
                    self.static_members.insert(i.clone(), m.member_id.clone());
                }
                self.order.push(m.member_id.clone());
                self.members.insert(m.member_id.clone(), member(m, now));
            }
        } else if c.phase == ClassicPhase::Rebalancing {
            // Its members are expected back at once: offsets' retention starts now.
            self.emptied_ms = inkless_storage::now_ms();
        }
        if let Some(sc) = g.consumer {
            restore_consumer(&mut self.consumer, sc, now);
        }
    }

    /// Loads the stored group, if any (an unreadable one is logged and ignored: its
    /// members rejoin), and starts offset retention from its last use.
    pub(super) async fn load(&mut self) -> MetaResult<()> {
        let group = self.args.group_id.clone();
        if let Some(bytes) = self.args.store.load_group_state(&group).await? {
            match StoredGroup::decode(&bytes) {
                Ok(g) => {
                    self.restore(g, Instant::now());
                    tracing::info!(group = %group, generation = self.generation, state = self.state.name(), members = self.members.len(), "group loaded");
                }
                Err(e) => {
                    tracing::warn!(group = %group, error = %e, "stored group unreadable; starting empty")
                }
            }
            self.saved = Some(bytes);
        }
        let stored = self.saved.is_some();
        if !stored {
            // Nothing to write until the group changes.
            self.saved = self.stored().encode().ok();
        }
        if self.is_empty_group() {
            let offsets = self.args.store.fetch_offsets(&group).await?;
            let last_commit = offsets.iter().map(|o| o.commit_time_ms).max();
            self.empty_since_ms = match (stored, last_commit) {
                (true, c) => self.emptied_ms.max(c.unwrap_or(i64::MIN)),
                (false, Some(c)) => c,
                (false, None) => self.empty_since_ms,
            };
        }
        Ok(())
    }

    fn is_empty_group(&self) -> bool {
        self.state == GroupState::Empty && !self.consumer.has_members()
    }

    /// Stores the group if its stored form changed, under the owner epoch, then sends the
    /// SyncGroup answers that waited for it (refusals if the write failed).
    pub(super) async fn persist(&mut self) -> Persisted {
        let outcome = self.write().await;
        let error = match outcome {
            Persisted::Done => None,
            Persisted::Failed => Some(GroupError::CoordinatorNotAvailable),
            Persisted::Fenced => Some(GroupError::NotCoordinator),
        };
        let held = std::mem::take(&mut self.held_syncs);
        let refused = error.is_some() && !held.is_empty();
        for (tx, answer) in held {
            let _ = tx.send(match error {
                None => answer,
                Some(e) => SyncResult {
                    error: Some(e),
                    ..Default::default()
                },
            });
        }
        if refused && outcome == Persisted::Failed {
            // The members were not told their assignments: they must join again.
            self.prepare_rebalance("the new generation could not be stored");
        }
        outcome
    }

    async fn write(&mut self) -> Persisted {
        let bytes = match self.stored().encode() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(group = %self.args.group_id, error = %e, "group state not encodable");
                return Persisted::Failed;
            }
        };
        if self.saved.as_ref() == Some(&bytes) {
            self.write_failed = false;
            return Persisted::Done;
        }
        let result = self
            .args
            .store
            .save_group_state(&self.args.group_id, self.owner_epoch, Some(bytes.clone()))
            .await;
        match result {
            Ok(()) => {
                self.saved = Some(bytes);
                self.write_failed = false;
                Persisted::Done
            }
            Err(MetaError::GroupFenced(_)) => {
                tracing::warn!(group = %self.args.group_id, "group is coordinated elsewhere now; stopping");
                Persisted::Fenced
            }
            Err(e) => {
                tracing::warn!(group = %self.args.group_id, error = %e, "group state write failed");
                self.write_failed = true;
                Persisted::Failed
            }
        }
    }
}

fn stored_member(id: &str, m: &Member) -> StoredMember {
    StoredMember {
        member_id: id.to_string(),
        instance_id: m.instance_id.clone(),
        client_id: m.client_id.clone(),
        client_host: m.client_host.clone(),
        session_timeout_ms: millis(m.session_timeout),
        rebalance_timeout_ms: millis(m.rebalance_timeout),
        protocols: m
            .protocols
            .iter()
            .map(|(n, b)| (n.clone(), b.to_vec()))
            .collect(),
        assignment: m.assignment.to_vec(),
    }
}

fn member(m: StoredMember, now: Instant) -> Member {
    Member {
        instance_id: m.instance_id,
        client_id: m.client_id,
        client_host: m.client_host,
        session_timeout: Duration::from_millis(m.session_timeout_ms),
        rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
        protocols: m
            .protocols
            .into_iter()
            .map(|(n, b)| (n, Bytes::from(b)))
            .collect(),
        assignment: Bytes::from(m.assignment),
        last_heartbeat: now,
        awaiting_join: None,
        awaiting_sync: None,
    }
}

fn stored_consumer(g: &ConsumerGroup) -> StoredConsumer {
    StoredConsumer {
        group_epoch: g.group_epoch,
        assignment_epoch: g.assignment_epoch,
        assignor: g.assignor.clone(),
        members: g
            .members
            .iter()
            .map(|(id, m)| StoredConsumerMember {
                member_id: id.clone(),
                epoch: m.epoch,
                previous_epoch: m.previous_epoch,
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: millis(m.rebalance_timeout),
                subscribed: m.subscribed.clone(),
                regex: m.regex.as_ref().map(|r| r.source.clone()),
                assigned: m.assigned.clone(),
                revoking: m.revoking.clone(),
            })
            .collect(),
        target: g.target.clone(),
        metadata: g.metadata.clone(),
    }
}

/// Takes over a stored consumer-protocol group. The next heartbeat of each member gets its
/// assignment again (the client may have missed the last answer); a member still revoking
/// has its rebalance timeout from now.
fn restore_consumer(g: &mut ConsumerGroup, s: StoredConsumer, now: Instant) {
    g.group_epoch = s.group_epoch;
    g.assignment_epoch = s.assignment_epoch;
    g.assignor = s.assignor;
    g.target = s.target;
    g.metadata = s.metadata;
    g.members = s
        .members
        .into_iter()
        .map(|m| {
            let member = ConsumerMember {
                epoch: m.epoch,
                previous_epoch: m.previous_epoch,
                instance_id: m.instance_id,
                rack_id: m.rack_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                subscribed: m.subscribed,
                regex: m.regex.as_deref().and_then(TopicRegex::new),
                revoking_since: (!m.revoking.is_empty()).then_some(now),
                assigned: m.assigned,
                revoking: m.revoking,
                last_heartbeat: now,
                last_sent: None,
            };
            (m.member_id, member)
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::consumer::Heartbeat as ConsumerHeartbeat;

    fn sample() -> StoredGroup {
        let mut assigned = Assignment::new();
        assigned.insert(Uuid::from_u128(7), [0, 2].into_iter().collect());
        StoredGroup {
            classic: StoredClassic {
                phase: ClassicPhase::Stable,
                generation: 12,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                leader: Some("a-1".into()),
                members: vec![StoredMember {
                    member_id: "a-1".into(),
                    instance_id: Some("i".into()),
                    client_id: "a".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: 6000,
                    rebalance_timeout_ms: 30_000,
                    protocols: vec![("range".into(), vec![0, 1, 2])],
                    assignment: vec![9, 9],
                }],
            },
            consumer: Some(StoredConsumer {
                group_epoch: 3,
                assignment_epoch: 3,
                assignor: "uniform".into(),
                members: vec![StoredConsumerMember {
                    member_id: "m".into(),
                    epoch: 3,
                    previous_epoch: 2,
                    instance_id: None,
                    rack_id: Some("az1".into()),
                    client_id: "c".into(),
                    client_host: "/h".into(),
                    rebalance_timeout_ms: 1000,
                    subscribed: vec!["t".into()],
                    regex: Some("t.*".into()),
                    assigned: assigned.clone(),
                    revoking: Assignment::new(),
                }],
                target: [("m".to_string(), assigned)].into_iter().collect(),
                metadata: [("t".to_string(), (Uuid::from_u128(7), 3))]
                    .into_iter()
                    .collect(),
            }),
            consumer_type: false,
            emptied_ms: 1_700_000_000_000,
        }
    }

    #[derive(Debug)]
    struct Topics;
    impl crate::group::consumer::TopicLookup for Topics {
        fn lookup(&self, name: &str) -> Option<(Uuid, i32)> {
            (name == "t").then_some((Uuid::from_u128(1), 4))
        }
        fn name_of(&self, _id: &Uuid) -> Option<String> {
            Some("t".into())
        }
        fn names(&self) -> Vec<String> {
            vec!["t".into()]
        }
        fn retention(&self, _: &Uuid) -> Option<crate::RetentionLimits> {
            None
        }
    }

    fn heartbeat(id: &str, epoch: i32, owned: Option<&Assignment>) -> ConsumerHeartbeat {
        ConsumerHeartbeat {
            member_id: id.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: if epoch == 0 { 30_000 } else { -1 },
            subscribed_topics: (epoch == 0).then(|| vec!["t".to_string()]),
            owned: owned.cloned(),
            ..Default::default()
        }
    }

    fn consumer_group() -> ConsumerGroup {
        ConsumerGroup::new(Default::default(), std::sync::Arc::new(Topics))
    }

    #[test]
    fn a_stable_consumer_protocol_group_is_restored_without_a_new_epoch() {
        let mut g = consumer_group();
        let now = Instant::now();
        let a = g.heartbeat(heartbeat("a", 0, None), now);
        let owned_a = a.assignment.clone().unwrap();
        let b = g.heartbeat(heartbeat("b", 0, None), now);
        let kept = g
            .heartbeat(heartbeat("a", a.member_epoch, Some(&owned_a)), now)
            .assignment
            .unwrap();
        let a2 = g.heartbeat(heartbeat("a", a.member_epoch, Some(&kept)), now);
        let b2 = g.heartbeat(
            heartbeat("b", b.member_epoch, Some(&Assignment::new())),
            now,
        );
        let owned_b = b2.assignment.clone().unwrap();
        assert_eq!(g.state_name(), "Stable");
        let stored = stored_consumer(&g);
        let bytes = StoredGroup {
            classic: StoredClassic {
                phase: ClassicPhase::Empty,
                generation: 0,
                protocol_type: None,
                protocol_name: None,
                leader: None,
                members: Vec::new(),
            },
            consumer: Some(stored.clone()),
            consumer_type: true,
            emptied_ms: 0,
        }
        .encode()
        .unwrap();
        let back = StoredGroup::decode(&bytes).unwrap().consumer.unwrap();

        let mut g2 = consumer_group();
        restore_consumer(&mut g2, back, Instant::now());
        assert_eq!(stored_consumer(&g2), stored);
        assert_eq!(g2.state_name(), "Stable");
        let epoch = g2.group_epoch();
        // Each member carries on at its epoch and is told its (unchanged) assignment again.
        let a3 = g2.heartbeat(heartbeat("a", a2.member_epoch, Some(&kept)), Instant::now());
        assert_eq!((a3.error, a3.member_epoch), (None, a2.member_epoch));
        assert_eq!(a3.assignment, Some(kept));
        let b3 = g2.heartbeat(
            heartbeat("b", b2.member_epoch, Some(&owned_b)),
            Instant::now(),
        );
        assert_eq!((b3.error, b3.member_epoch), (None, b2.member_epoch));
        assert_eq!(b3.assignment, Some(owned_b));
        assert_eq!(g2.group_epoch(), epoch, "no new group epoch: no rebalance");
        assert_eq!(g2.check_commit("b", b2.member_epoch), Ok(()));
    }

    #[test]
    fn a_stored_group_reads_back_the_same() {
        let g = sample();
        let bytes = g.encode().unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(StoredGroup::decode(&bytes).unwrap(), g);
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        let mut bytes = sample().encode().unwrap();
        assert!(matches!(StoredGroup::decode(&[]), Err(DecodeError::Empty)));
        bytes[0] = 99;
        assert!(matches!(
            StoredGroup::decode(&bytes),
            Err(DecodeError::Version(99))
        ));
        assert!(matches!(
            StoredGroup::decode(&[FORMAT_VERSION, 1, 2]),
            Err(DecodeError::Corrupt(_))
        ));
        let good = sample().encode().unwrap();
        assert!(StoredGroup::decode(&good[..good.len() - 3]).is_err());
    }
}
