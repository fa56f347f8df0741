//! GroupCoordinator: one actor per consumer group, running Kafka's classic group protocol
//! (its state machine is in [`crate::group::classic`]) and the consumer protocol of KIP-848
//! ([`crate::group::consumer`]).
//!
//! Owns the group's membership, generation, chosen protocol and assignments and validates
//! offset commits against them; committed offsets live in the metadata store, and so does
//! the membership (module [`crate::group::persist`], ADR 0020): it is written when a
//! generation completes, when members leave or expire and when the group empties, always
//! under the owner epoch the coordinator claimed the group with (a stale coordinator's
//! writes and commits are refused: it answers NOT_COORDINATOR and stops). Takes [`GroupMsg`]: Join, Sync, Heartbeat, Leave,
//! Commit, Describe, Delete, and its own Tick, which expires sessions, completes rebalances
//! and expires the offsets of groups left empty for `offsets_retention`.
//!
//! States follow Kafka: Empty → PreparingRebalance → CompletingRebalance → Stable. The
//! broker does not interpret protocol metadata or assignments (Kafka Connect's `connect`
//! groups work the same as consumers). When the actor starts (node start, coordinator move,
//! restart after a failure) it loads the stored membership: a Stable group comes back
//! Stable with the same generation, members and assignments, and its members' session
//! timers start afresh; a group stored mid-rebalance comes back Empty (its members rejoin).

use crate::group::consumer::{
    ConsumerGroup, ConsumerGroupSettings, Heartbeat as ConsumerHeartbeat, HeartbeatAnswer,
    MemberView, SharedTopicLookup,
};
use crate::group::error::{GroupError, GroupResult};
use crate::group::persist::Persisted;
use crate::tree::mailbox::{Mailbox, QueueCount};
use bytes::Bytes;
use inkless_storage::metadata::{Claimant, CommittedOffset, MetaError, SharedMetadataStore};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Group settings (Kafka's `group.*` and `offsets.*` broker configs).
#[derive(Debug, Clone)]
pub struct GroupLimits {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout: Duration,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay: Duration,
    /// `group.max.size`
    pub max_size: usize,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes`
    pub offsets_retention: Duration,
    /// `group.consumer.session.timeout.ms` (consumer protocol)
    pub consumer_session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms` (consumer protocol)
    pub consumer_heartbeat_interval: Duration,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(1800),
            initial_rebalance_delay: Duration::from_secs(3),
            max_size: i32::MAX as usize,
            offset_metadata_max_bytes: 4096,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            consumer_session_timeout: Duration::from_secs(45),
            consumer_heartbeat_interval: Duration::from_secs(5),
        }
    }
}

/// Group states, named as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
    /// Deleted.
    Dead,
}

impl GroupState {
    /// Kafka's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup request.
#[derive(Debug)]
pub struct JoinArgs {
    /// Member id, empty on first join.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id of the connection.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Protocol type (`consumer`, `connect`, …).
    pub protocol_type: String,
    /// Supported protocols with their metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member must first get its id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    /// Why the request was refused, if it was.
    pub error: Option<GroupError>,
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// For the leader: every member (id, instance id, metadata of the chosen protocol).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// A SyncGroup request.
#[derive(Debug)]
pub struct SyncArgs {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Generation the member believes in.
    pub generation: i32,
    /// Assignments (leader only).
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    /// Why the request was refused, if it was.
    pub error: Option<GroupError>,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub struct MemberRef {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Metadata of the chosen protocol.
    pub metadata: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}

/// A group as DescribeGroups and ListGroups show it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// Kafka's name of the state, for either group type.
    pub state_name: &'static str,
    /// `classic` or `consumer` (KIP-848).
    pub group_type: &'static str,
    /// Protocol type, empty when none.
    pub protocol_type: String,
    /// Chosen protocol, empty when none.
    pub protocol_name: String,
    /// Members.
    pub members: Vec<MemberDescription>,
    /// Topics the members of a consumer-protocol group subscribe to (classic groups carry
    /// theirs in the members' metadata).
    pub subscribed_topics: Vec<String>,
}

/// A consumer-protocol group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct ConsumerGroupDescription {
    /// State name.
    pub state: &'static str,
    /// Group epoch.
    pub group_epoch: i32,
    /// Assignment epoch.
    pub assignment_epoch: i32,
    /// Assignor.
    pub assignor: String,
    /// Members.
    pub members: Vec<MemberView>,
}

/// Messages of a [`GroupCoordinator`].
#[derive(Debug)]
pub enum GroupMsg {
    /// JoinGroup.
    Join(JoinArgs, oneshot::Sender<JoinResult>),
    /// SyncGroup.
    Sync(SyncArgs, oneshot::Sender<SyncResult>),
    /// Heartbeat.
    Heartbeat {
        /// Sender.
        member: MemberRef,
        /// Its generation.
        generation: i32,
        /// Error code.
        reply: oneshot::Sender<GroupResult>,
    },
    /// LeaveGroup for these members; one error code each.
    Leave {
        /// Leaving members (by member id, or by instance id when the member id is empty).
        members: Vec<MemberRef>,
        /// Error code per member.
        reply: oneshot::Sender<Vec<GroupResult>>,
    },
    /// OffsetCommit, validated against membership then stored.
    Commit {
        /// Sender (empty member id with generation -1 for standalone consumers).
        member: MemberRef,
        /// Its generation.
        generation: i32,
        /// Offsets to store.
        offsets: Vec<CommittedOffset>,
        /// Error code for the whole commit.
        reply: oneshot::Sender<GroupResult>,
    },
    /// The group's state.
    Describe(oneshot::Sender<GroupDescription>),
    /// ConsumerGroupHeartbeat (KIP-848).
    ConsumerHeartbeat(ConsumerHeartbeat, oneshot::Sender<HeartbeatAnswer>),
    /// ConsumerGroupDescribe (KIP-848).
    ConsumerDescribe(oneshot::Sender<ConsumerGroupDescription>),
    /// DeleteGroups: NON_EMPTY_GROUP unless empty; otherwise drops offsets and stops.
    Delete(oneshot::Sender<GroupResult>),
    /// OffsetDelete: drops the committed offsets of these partitions, except those of
    /// topics the group consumes (one outcome each, in order). Decided and done in one
    /// message, so no member can subscribe in between.
    DeleteOffsets {
        /// The partitions, with their topic's name (what subscriptions name).
        partitions: Vec<OffsetToDelete>,
        /// One outcome per partition.
        reply: oneshot::Sender<Vec<GroupResult>>,
    },
    /// Timer.
    Tick,
}

// Local only: never sent to another node.
impl ractor::Message for GroupMsg {}

/// A partition whose committed offset OffsetDelete drops.
#[derive(Debug, Clone)]
pub struct OffsetToDelete {
    /// Topic name.
    pub topic: String,
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
}

/// Arguments of a [`GroupCoordinator`].
#[derive(Debug, Clone)]
pub struct GroupArgs {
    /// Its mailbox count (see [`crate::tree::mailbox`]).
    pub queued: QueueCount,
    /// Group id.
    pub group_id: String,
    /// Metadata store (committed offsets).
    pub store: SharedMetadataStore,
    /// Settings.
    pub limits: GroupLimits,
    /// Topic names to ids (consumer protocol).
    pub topics: SharedTopicLookup,
    /// This node under its current lease: the coordinator claims the group with it.
    pub claimant: Claimant,
}

#[derive(Debug)]
pub(super) struct Member {
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) last_heartbeat: Instant,
    pub(super) awaiting_join: Option<oneshot::Sender<JoinResult>>,
    pub(super) awaiting_sync: Option<oneshot::Sender<SyncResult>>,
}

/// State of a group.
#[derive(Debug)]
pub struct GroupCoordinatorState {
    pub(super) me: Mailbox<GroupMsg>,
    pub(super) args: GroupArgs,
    /// The group's owner epoch this coordinator claimed; its offset commits and membership
    /// writes carry it.
    pub(super) owner_epoch: i64,
    pub(super) state: GroupState,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol_name: Option<String>,
    pub(super) leader: Option<String>,
    /// Member ids in join order.
    pub(super) order: Vec<String>,
    pub(super) members: HashMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or time out.
    pub(super) pending: HashMap<String, Instant>,
    pub(super) static_members: HashMap<String, String>,
    pub(super) rebalance_deadline: Instant,
    pub(super) initial_delay_until: Option<Instant>,
    /// Wall-clock ms since the group was last used while empty (offsets expire
    /// `offsets_retention` after it).
    pub(super) empty_since_ms: i64,
    /// Wall-clock ms when the group last lost its last member (stored, so that offset
    /// expiry survives a move).
    pub(super) emptied_ms: i64,
    /// The KIP-848 side of the group; a group has members of one protocol at a time.
    pub(super) consumer: ConsumerGroup,
    /// True when the group was last used through the consumer protocol.
    pub(super) consumer_type: bool,
    /// The stored form last written (or loaded); a change of it is written.
    pub(super) saved: Option<Vec<u8>>,
    /// SyncGroup answers of a completed generation, sent once it is stored.
    pub(super) held_syncs: Vec<(oneshot::Sender<SyncResult>, SyncResult)>,
    /// The last write failed; the next Tick tries again.
    pub(super) write_failed: bool,
}

/// The actor; see the module documentation.
#[derive(Debug, Default)]
pub struct GroupCoordinator;

const ACTIVE_TICK: Duration = Duration::from_millis(100);
const IDLE_TICK: Duration = Duration::from_secs(5);

impl GroupCoordinatorState {
    /// A coordinator of a group that has nothing stored yet.
    fn fresh(me: Mailbox<GroupMsg>, args: GroupArgs, owner_epoch: i64) -> Self {
        let now = Instant::now();
        let now_ms = inkless_storage::now_ms();
        let consumer = ConsumerGroup::new(
            ConsumerGroupSettings {
                session_timeout: args.limits.consumer_session_timeout,
                heartbeat_interval: args.limits.consumer_heartbeat_interval,
                max_size: args.limits.max_size,
            },
            args.topics.clone(),
        );
        Self {
            me,
            args,
            owner_epoch,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            order: Vec::new(),
            members: HashMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: now,
            initial_delay_until: None,
            empty_since_ms: now_ms,
            emptied_ms: now_ms,
            consumer,
            consumer_type: false,
            saved: None,
            held_syncs: Vec::new(),
            write_failed: false,
        }
    }

    /// OffsetCommit: checked against the membership, then stored under the owner epoch.
    /// Fenced: NOT_COORDINATOR, and the caller stops the actor (true).
    async fn commit(
        &mut self,
        member: MemberRef,
        generation: i32,
        offsets: Vec<CommittedOffset>,
        reply: oneshot::Sender<GroupResult>,
    ) -> bool {
        let mut c = self.check_commit(&member, generation, &offsets);
        if c.is_ok() && !offsets.is_empty() {
            let committed = self
                .args
                .store
                .commit_offsets(&self.args.group_id, self.owner_epoch, offsets)
                .await;
            match committed {
                Ok(()) => {}
                Err(MetaError::GroupFenced(_)) => {
                    tracing::warn!(group = %self.args.group_id, "group is coordinated elsewhere now; stopping");
                    let _ = reply.send(Err(GroupError::NotCoordinator));
                    return true;
                }
                Err(e) => {
                    tracing::warn!(group = %self.args.group_id, error = %e, "offset commit failed");
                    c = Err(GroupError::Storage);
                }
            }
        }
        if self.is_empty() {
            self.empty_since_ms = inkless_storage::now_ms();
        }
        let _ = reply.send(c);
        false
    }

    fn consumer_heartbeat(&mut self, hb: ConsumerHeartbeat) -> HeartbeatAnswer {
        let had_members = self.consumer.has_members();
        let answer = if hb.member_epoch == 0 && !self.members.is_empty() {
            HeartbeatAnswer {
                error: Some(GroupError::InconsistentGroupProtocol),
                message: Some("The group has members of the classic protocol".into()),
                member_id: hb.member_id.clone(),
                member_epoch: -1,
                ..Default::default()
            }
        } else {
            if hb.member_epoch == 0 {
                self.consumer_type = true;
            }
            self.consumer.heartbeat(hb, Instant::now())
        };
        if !self.consumer.has_members() {
            self.empty_since_ms = inkless_storage::now_ms();
            if had_members {
                self.emptied_ms = self.empty_since_ms;
            }
        }
        answer
    }

    fn consumer_describe(&self) -> ConsumerGroupDescription {
        let c = &self.consumer;
        ConsumerGroupDescription {
            state: if self.consumer_type {
                c.state_name()
            } else {
                "Dead"
            },
            group_epoch: c.group_epoch(),
            assignment_epoch: c.assignment_epoch(),
            assignor: c.assignor().to_string(),
            members: c.members(),
        }
    }

    /// DeleteGroups: drops the stored membership (fenced) and the offsets of an empty group.
    /// `Err(NotCoordinator)` when fenced.
    async fn delete(&mut self) -> GroupResult {
        if !self.is_empty() {
            return Err(GroupError::NonEmptyGroup);
        }
        self.forget().await.map_err(|e| {
            tracing::warn!(group = %self.args.group_id, error = %e, "group delete failed");
            match e {
                MetaError::GroupFenced(_) => GroupError::NotCoordinator,
                _ => GroupError::Storage,
            }
        })
    }

    /// Deletes what the store holds of the group: its membership (under the owner epoch,
    /// so a stale coordinator deletes nothing) and then its offsets.
    async fn forget(&mut self) -> Result<(), MetaError> {
        let store = &self.args.store;
        store
            .save_group_state(&self.args.group_id, self.owner_epoch, None)
            .await?;
        self.saved = None;
        store.delete_offsets(&self.args.group_id, None).await?;
        Ok(())
    }

    /// The Tick: sessions, rebalances, offset expiry; true when the actor must stop.
    async fn on_tick(&mut self) -> Result<bool, ActorProcessingErr> {
        let mut changed = self.tick();
        if self.consumer.tick(Instant::now()) {
            changed = true;
            if !self.consumer.has_members() {
                self.emptied_ms = inkless_storage::now_ms();
                self.empty_since_ms = self.emptied_ms;
            }
        }
        let retention_ms = self.args.limits.offsets_retention.as_millis() as i64;
        if self.is_empty() && inkless_storage::now_ms() - self.empty_since_ms > retention_ms {
            tracing::info!(group = %self.args.group_id, "offsets expired");
            match self.forget().await {
                Ok(()) => {}
                Err(MetaError::GroupFenced(_)) => {
                    tracing::warn!(group = %self.args.group_id, "group is coordinated elsewhere now; stopping");
                }
                Err(e) => return Err(e.into()),
            }
            self.state = GroupState::Dead;
            return Ok(true);
        }
        if (changed || self.write_failed) && self.persist().await == Persisted::Fenced {
            return Ok(true);
        }
        let next = if self.is_active() {
            ACTIVE_TICK
        } else {
            // Idle, but on time for the expiry.
            let left_ms = self.empty_since_ms + retention_ms - inkless_storage::now_ms();
            IDLE_TICK.min(Duration::from_millis(left_ms.max(0) as u64 + 1))
        };
        self.me.post_after(next, || GroupMsg::Tick);
        Ok(false)
    }
}

impl Actor for GroupCoordinator {
    type Msg = GroupMsg;
    type State = GroupCoordinatorState;
    type Arguments = GroupArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: GroupArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Claimed first: while another live coordinator holds the group this start fails,
        // and the client is told NOT_COORDINATOR.
        let owner_epoch = args
            .store
            .claim_group(&args.group_id, args.claimant)
            .await?;
        let me = Mailbox::new(myself, args.queued.clone());
        me.post_after(ACTIVE_TICK, || GroupMsg::Tick);
        let mut state = GroupCoordinatorState::fresh(me, args, owner_epoch);
        state.load().await?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.me.taken();
        let stop = match msg {
            GroupMsg::Join(a, reply) => {
                state.join(a, reply);
                state.persist().await == Persisted::Fenced
            }
            GroupMsg::Sync(a, reply) => {
                state.sync(a, reply);
                state.persist().await == Persisted::Fenced
            }
            GroupMsg::Heartbeat {
                member,
                generation,
                reply,
            } => {
                let _ = reply.send(state.heartbeat(&member, generation));
                false
            }
            GroupMsg::Leave { members, reply } => {
                let _ = reply.send(state.leave(members));
                state.persist().await == Persisted::Fenced
            }
            GroupMsg::Commit {
                member,
                generation,
                offsets,
                reply,
            } => state.commit(member, generation, offsets, reply).await,
            GroupMsg::Describe(reply) => {
                let _ = reply.send(state.describe());
                false
            }
            GroupMsg::ConsumerHeartbeat(hb, reply) => {
                let answer = state.consumer_heartbeat(hb);
                let fenced = state.persist().await == Persisted::Fenced;
                let _ = reply.send(if fenced {
                    HeartbeatAnswer {
                        error: Some(GroupError::NotCoordinator),
                        member_epoch: -1,
                        ..answer
                    }
                } else {
                    answer
                });
                fenced
            }
            GroupMsg::ConsumerDescribe(reply) => {
                let _ = reply.send(state.consumer_describe());
                false
            }
            GroupMsg::DeleteOffsets { partitions, reply } => {
                let _ = reply.send(state.delete_offsets(partitions).await);
                false
            }
            GroupMsg::Delete(reply) => {
                let c = state.delete().await;
                let _ = reply.send(c);
                match c {
                    Ok(()) => {
                        state.state = GroupState::Dead;
                        true
                    }
                    Err(e) => e == GroupError::NotCoordinator,
                }
            }
            GroupMsg::Tick => state.on_tick().await?,
        };
        if stop {
            let reason = match state.state {
                GroupState::Dead => "deleted",
                _ => "fenced",
            };
            myself.stop(Some(reason.into()));
        }
        Ok(())
    }
}
