//! The classic group protocol's state machine of a [`GroupCoordinator`]: JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, the validation of offset commits, DescribeGroups,
//! session expiry and OffsetDelete. Pure state changes on [`GroupCoordinatorState`], without
//! I/O except OffsetDelete's; the actor (`coordinator.rs`) calls them and stores the result
//! (`persist.rs`).
//!
//! [`GroupCoordinator`]: crate::group::coordinator::GroupCoordinator

use crate::group::coordinator::{
    GroupCoordinatorState, GroupDescription, GroupState, JoinArgs, JoinResult, Member,
    MemberDescription, MemberRef, OffsetToDelete, SyncArgs, SyncResult,
};
use crate::group::error::{GroupError, GroupResult};
use bytes::Bytes;
use inkless_protocol::consumer_protocol::subscription_topics;
use inkless_storage::metadata::CommittedOffset;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use uuid::Uuid;

impl GroupCoordinatorState {
    fn new_member_id(client_id: &str) -> String {
        format!("{client_id}-{}", uuid::Uuid::new_v4())
    }

    fn is_fenced(&self, m: &MemberRef) -> bool {
        match &m.instance_id {
            Some(i) => self
                .static_members
                .get(i)
                .is_some_and(|id| *id != m.member_id),
            None => false,
        }
    }

    fn remove_member(&mut self, id: &str, error: GroupError) {
        if let Some(m) = self.members.remove(id) {
            self.order.retain(|x| x != id);
            if let Some(i) = &m.instance_id {
                if self.static_members.get(i).is_some_and(|x| x == id) {
                    self.static_members.remove(i);
                }
            }
            if let Some(tx) = m.awaiting_join {
                let _ = tx.send(JoinResult {
                    error: Some(error),
                    member_id: id.to_string(),
                    generation: -1,
                    ..Default::default()
                });
            }
            if let Some(tx) = m.awaiting_sync {
                let _ = tx.send(SyncResult {
                    error: Some(error),
                    ..Default::default()
                });
            }
            if self.leader.as_deref() == Some(id) {
                self.leader = None;
            }
        }
    }

    pub(super) fn prepare_rebalance(&mut self, reason: &str) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        tracing::info!(group = %self.args.group_id, generation = self.generation, reason, "rebalance");
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult {
                    error: Some(GroupError::RebalanceInProgress),
                    ..Default::default()
                });
            }
        }
        let now = Instant::now();
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60));
        self.rebalance_deadline = now + timeout;
        self.initial_delay_until = (self.state == GroupState::Empty)
            .then(|| now + self.args.limits.initial_rebalance_delay);
        self.state = GroupState::PreparingRebalance;
    }

    fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn maybe_complete_join(&mut self) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let now = Instant::now();
        let delay_over = self.initial_delay_until.is_none_or(|t| now >= t);
        if !(now >= self.rebalance_deadline || (self.all_joined() && delay_over)) {
            return;
        }
        let missing: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.awaiting_join.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in missing {
            self.remove_member(&id, GroupError::UnknownMemberId);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            self.emptied_ms = inkless_storage::now_ms();
            self.empty_since_ms = self.emptied_ms;
            return;
        }
        self.protocol_name = self.select_protocol();
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            _ => self.order[0].clone(),
        };
        self.leader = Some(leader.clone());
        self.state = GroupState::CompletingRebalance;
        let proto = self.protocol_name.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .order
            .iter()
            .filter_map(|id| self.members.get(id).map(|m| (id, m)))
            .map(|(id, m)| (id.clone(), m.instance_id.clone(), metadata_for(m, &proto)))
            .collect();
        for (id, m) in self.members.iter_mut() {
            m.last_heartbeat = now;
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinResult {
                    error: None,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
        tracing::info!(group = %self.args.group_id, generation = self.generation, members = self.members.len(), protocol = %proto, "rebalance joined");
    }

    /// The protocol supported by every member with the most first-preference votes.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(p, _)| candidates.contains(&p)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        // Most votes wins; ties go to the earlier protocol in the first member's preference.
        let mut best: Option<(&String, usize)> = None;
        for n in candidates {
            let v = votes.get(n).copied().unwrap_or(0);
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((n, v));
            }
        }
        best.map(|(n, _)| n.clone())
    }

    fn supports_current_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        match &self.protocol_name {
            Some(p) if !self.members.is_empty() => protocols.iter().any(|(n, _)| n == p),
            _ => {
                // Every current member must share at least one protocol with the newcomer.
                self.members.is_empty()
                    || protocols.iter().any(|(n, _)| {
                        self.members
                            .values()
                            .all(|m| m.protocols.iter().any(|(p, _)| p == n))
                    })
            }
        }
    }

    pub(super) fn join(&mut self, a: JoinArgs, reply: oneshot::Sender<JoinResult>) {
        let l = &self.args.limits;
        if a.session_timeout < l.min_session_timeout || a.session_timeout > l.max_session_timeout {
            return join_failed(reply, GroupError::InvalidSessionTimeout, a.member_id);
        }
        if a.protocol_type.is_empty() || a.protocols.is_empty() || self.consumer.has_members() {
            return join_failed(reply, GroupError::InconsistentGroupProtocol, a.member_id);
        }
        self.consumer_type = false;
        if self.state != GroupState::Empty
            && (self.protocol_type.as_deref() != Some(a.protocol_type.as_str())
                || !self.supports_current_protocols(&a.protocols))
        {
            return join_failed(reply, GroupError::InconsistentGroupProtocol, a.member_id);
        }
        let now = Instant::now();
        let member_id = match self.joining_member_id(&a, now) {
            Ok(id) => id,
            Err((error, id)) => return join_failed(reply, error, id),
        };
        if self.members.contains_key(&member_id) {
            self.rejoin(member_id, a, reply, now);
        } else {
            self.add_member(member_id, a, reply, now);
        }
    }

    /// The member id a JoinGroup joins as: its own, a new one (a static member's replaces
    /// and fences its old id), or the refusal (MEMBER_ID_REQUIRED carries the new id).
    fn joining_member_id(
        &mut self,
        a: &JoinArgs,
        now: Instant,
    ) -> Result<String, (GroupError, String)> {
        if !a.member_id.is_empty() {
            let fenced = a.instance_id.as_ref().is_some_and(|instance| {
                self.static_members
                    .get(instance)
                    .is_some_and(|id| *id != a.member_id)
            });
            if fenced {
                return Err((GroupError::FencedInstanceId, a.member_id.clone()));
            }
            return Ok(a.member_id.clone());
        }
        let new_id = Self::new_member_id(&a.client_id);
        if let Some(instance) = &a.instance_id {
            self.replace_static(instance, &new_id);
            return Ok(new_id);
        }
        if self.members.len() + self.pending.len() >= self.args.limits.max_size {
            return Err((GroupError::GroupMaxSizeReached, String::new()));
        }
        if a.require_known_member_id {
            self.pending.insert(new_id.clone(), now + a.session_timeout);
            return Err((GroupError::MemberIdRequired, new_id));
        }
        Ok(new_id)
    }

    /// Gives static member `instance` the id `new_id`, removing and fencing its old member.
    fn replace_static(&mut self, instance: &str, new_id: &str) {
        if let Some(old) = self.static_members.get(instance).cloned() {
            self.order.retain(|x| *x != old);
            if let Some(m) = self.members.remove(&old) {
                if let Some(tx) = m.awaiting_join {
                    join_failed(tx, GroupError::FencedInstanceId, old.clone());
                }
                if let Some(tx) = m.awaiting_sync {
                    let _ = tx.send(SyncResult {
                        error: Some(GroupError::FencedInstanceId),
                        ..Default::default()
                    });
                }
            }
            if self.leader.as_deref() == Some(old.as_str()) {
                self.leader = None;
            }
        }
        self.static_members
            .insert(instance.to_string(), new_id.to_string());
    }

    /// A member that is not in the group yet joins it, starting (or extending) a rebalance.
    fn add_member(
        &mut self,
        member_id: String,
        a: JoinArgs,
        reply: oneshot::Sender<JoinResult>,
        now: Instant,
    ) {
        let was_pending = self.pending.remove(&member_id).is_some();
        let is_static_new = a
            .instance_id
            .as_ref()
            .is_some_and(|i| self.static_members.get(i) == Some(&member_id));
        if !was_pending && !is_static_new && !a.member_id.is_empty() {
            return join_failed(reply, GroupError::UnknownMemberId, member_id);
        }
        if self.members.len() >= self.args.limits.max_size {
            if let Some(i) = &a.instance_id {
                self.static_members.remove(i);
            }
            return join_failed(reply, GroupError::GroupMaxSizeReached, member_id);
        }
        self.members.insert(
            member_id.clone(),
            Member {
                instance_id: a.instance_id,
                client_id: a.client_id,
                client_host: a.client_host,
                session_timeout: a.session_timeout,
                rebalance_timeout: a.rebalance_timeout,
                protocols: a.protocols,
                assignment: Bytes::new(),
                last_heartbeat: now,
                awaiting_join: Some(reply),
                awaiting_sync: None,
            },
        );
        self.order.push(member_id);
        self.protocol_type = Some(a.protocol_type);
        if self.state == GroupState::PreparingRebalance {
            // A newcomer during the initial delay extends it, up to the rebalance timeout.
            if let Some(until) = self.initial_delay_until.as_mut() {
                *until =
                    (now + self.args.limits.initial_rebalance_delay).min(self.rebalance_deadline);
            }
        } else {
            self.prepare_rebalance("member joined");
        }
        self.maybe_complete_join();
    }

    /// A known member joins again: it waits for the rebalance in progress, starts one (its
    /// protocols changed, or it leads a stable group), or gets the current generation.
    fn rejoin(
        &mut self,
        member_id: String,
        a: JoinArgs,
        reply: oneshot::Sender<JoinResult>,
        now: Instant,
    ) {
        let Some(m) = self.members.get_mut(&member_id) else {
            return join_failed(reply, GroupError::UnknownMemberId, member_id);
        };
        let protocols_changed = m.protocols != a.protocols;
        m.session_timeout = a.session_timeout;
        m.rebalance_timeout = a.rebalance_timeout;
        m.protocols = a.protocols;
        m.last_heartbeat = now;
        match self.state {
            GroupState::PreparingRebalance => {
                if let Some(old) = m.awaiting_join.replace(reply) {
                    join_failed(old, GroupError::UnknownMemberId, member_id.clone());
                }
                self.maybe_complete_join();
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let is_leader = self.leader.as_deref() == Some(member_id.as_str());
                if protocols_changed || (is_leader && self.state == GroupState::Stable) {
                    m.awaiting_join = Some(reply);
                    self.prepare_rebalance(if protocols_changed {
                        "member protocols changed"
                    } else {
                        "leader rejoined"
                    });
                    self.maybe_complete_join();
                } else {
                    let _ = reply.send(self.current_generation(member_id, is_leader));
                }
            }
            GroupState::Empty | GroupState::Dead => {
                join_failed(reply, GroupError::UnknownMemberId, member_id)
            }
        }
    }

    /// The JoinGroup answer of the current generation (the members only for the leader).
    fn current_generation(&self, member_id: String, is_leader: bool) -> JoinResult {
        let proto = self.protocol_name.clone().unwrap_or_default();
        let members = if is_leader {
            self.order
                .iter()
                .filter_map(|id| {
                    self.members
                        .get(id)
                        .map(|m| (id.clone(), m.instance_id.clone(), metadata_for(m, &proto)))
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id,
            members,
        }
    }

    pub(super) fn sync(&mut self, a: SyncArgs, reply: oneshot::Sender<SyncResult>) {
        let err = |reply: oneshot::Sender<SyncResult>, error: GroupError| {
            let _ = reply.send(SyncResult {
                error: Some(error),
                ..Default::default()
            });
        };
        let who = MemberRef {
            member_id: a.member_id.clone(),
            instance_id: a.instance_id.clone(),
        };
        if self.is_fenced(&who) {
            return err(reply, GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(&a.member_id) {
            return err(reply, GroupError::UnknownMemberId);
        }
        if a.generation != self.generation {
            return err(reply, GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::PreparingRebalance => err(reply, GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(&a.member_id) {
                    m.last_heartbeat = Instant::now();
                    m.awaiting_sync = Some(reply);
                }
                if self.leader.as_deref() == Some(a.member_id.as_str()) {
                    let mut given: HashMap<String, Bytes> = a.assignments.into_iter().collect();
                    for (id, m) in self.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    tracing::info!(group = %self.args.group_id, generation = self.generation, "group stable");
                    // Answered once the generation is stored (see `persist`).
                    for m in self.members.values_mut() {
                        if let Some(tx) = m.awaiting_sync.take() {
                            let answer = SyncResult {
                                error: None,
                                protocol_type: self.protocol_type.clone(),
                                protocol_name: self.protocol_name.clone(),
                                assignment: m.assignment.clone(),
                            };
                            self.held_syncs.push((tx, answer));
                        }
                    }
                }
            }
            GroupState::Stable => {
                let assignment = self
                    .members
                    .get(&a.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                let _ = reply.send(SyncResult {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment,
                });
            }
            GroupState::Empty | GroupState::Dead => err(reply, GroupError::UnknownMemberId),
        }
    }

    pub(super) fn heartbeat(&mut self, who: &MemberRef, generation: i32) -> GroupResult {
        if self.is_fenced(who) {
            return Err(GroupError::FencedInstanceId);
        }
        let state = self.state;
        let current = self.generation;
        let Some(m) = self.members.get_mut(&who.member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if generation != current {
            return Err(GroupError::IllegalGeneration);
        }
        m.last_heartbeat = Instant::now();
        match state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
        }
    }

    pub(super) fn leave(&mut self, members: Vec<MemberRef>) -> Vec<GroupResult> {
        let mut out = Vec::with_capacity(members.len());
        let mut removed = false;
        for who in members {
            let id = if who.member_id.is_empty() {
                who.instance_id
                    .as_ref()
                    .and_then(|i| self.static_members.get(i).cloned())
            } else {
                Some(who.member_id.clone())
            };
            match id {
                Some(id)
                    if self.is_fenced(&MemberRef {
                        member_id: id.clone(),
                        instance_id: who.instance_id.clone(),
                    }) =>
                {
                    out.push(Err(GroupError::FencedInstanceId))
                }
                Some(id) if self.members.contains_key(&id) => {
                    self.remove_member(&id, GroupError::UnknownMemberId);
                    removed = true;
                    out.push(Ok(()));
                }
                Some(id) if self.pending.remove(&id).is_some() => out.push(Ok(())),
                _ => out.push(Err(GroupError::UnknownMemberId)),
            }
        }
        if removed {
            self.prepare_rebalance("member left");
            self.maybe_complete_join();
        }
        out
    }

    pub(super) fn check_commit(
        &self,
        who: &MemberRef,
        generation: i32,
        offsets: &[CommittedOffset],
    ) -> GroupResult {
        if offsets
            .iter()
            .any(|o| o.metadata.len() > self.args.limits.offset_metadata_max_bytes)
        {
            return Err(GroupError::OffsetMetadataTooLarge);
        }
        if self.consumer.has_members() {
            return self.consumer.check_commit(&who.member_id, generation);
        }
        if generation < 0 && who.member_id.is_empty() && self.state == GroupState::Empty {
            return Ok(());
        }
        if self.is_fenced(who) {
            return Err(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(&who.member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::Stable | GroupState::PreparingRebalance => Ok(()),
            GroupState::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
        }
    }

    pub(super) fn describe(&self) -> GroupDescription {
        let proto = self.protocol_name.clone().unwrap_or_default();
        // As Kafka: every member, but their metadata and assignments only once Stable
        // (before, the assignments are the previous generation's).
        let stable = self.state == GroupState::Stable;
        let members = self
            .order
            .iter()
            .filter_map(|id| self.members.get(id).map(|m| (id, m)))
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    metadata_for(m, &proto)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        if self.consumer_type {
            return GroupDescription {
                state_name: self.consumer.state_name(),
                group_type: "consumer",
                protocol_type: "consumer".into(),
                protocol_name: self.consumer.assignor().to_string(),
                members: Vec::new(),
                subscribed_topics: self
                    .consumer
                    .members()
                    .into_iter()
                    .flat_map(|m| m.subscribed)
                    .collect(),
            };
        }
        GroupDescription {
            state_name: self.state.name(),
            group_type: "classic",
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: if self.state == GroupState::Stable {
                proto
            } else {
                String::new()
            },
            members,
            subscribed_topics: Vec::new(),
        }
    }

    /// Expires sessions and pending member ids, and completes a rebalance whose time came;
    /// true when the group's state, generation or members changed.
    pub(super) fn tick(&mut self) -> bool {
        let before = (self.state, self.generation, self.members.len());
        let now = Instant::now();
        self.pending.retain(|_, until| *until > now);
        // In every state, as Kafka: a member whose JoinGroup or SyncGroup the coordinator
        // holds is alive; any other member is gone once its session times out, also in the
        // middle of a rebalance (else a dead member holds the rebalance for its whole
        // rebalance timeout).
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
            .filter(|(_, m)| now.duration_since(m.last_heartbeat) > m.session_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = %self.args.group_id, member = %id, "session expired");
                self.remove_member(id, GroupError::UnknownMemberId);
            }
            self.prepare_rebalance("session expired");
        }
        self.maybe_complete_join();
        before != (self.state, self.generation, self.members.len())
    }

    pub(super) fn is_active(&self) -> bool {
        !self.members.is_empty()
            || !self.pending.is_empty()
            || self.state != GroupState::Empty
            || self.consumer.has_members()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.state == GroupState::Empty && !self.consumer.has_members()
    }
}

impl GroupCoordinatorState {
    /// Topics some member consumes: the subscriptions in classic consumers' JoinGroup
    /// metadata (every protocol a member offers carries the same one, so the first is read)
    /// and KIP-848 members' subscribed topics.
    fn subscribed_topics(&self) -> HashSet<String> {
        let mut out: HashSet<String> = self
            .consumer
            .members()
            .into_iter()
            .flat_map(|m| m.subscribed)
            .collect();
        if self.protocol_type.as_deref() != Some("consumer") {
            return out;
        }
        for (id, m) in &self.members {
            let Some((_, metadata)) = m.protocols.first() else {
                continue;
            };
            match subscription_topics(metadata) {
                Ok(topics) => out.extend(topics),
                Err(e) => {
                    tracing::debug!(group = %self.args.group_id, member = %id, error = %e, "unreadable subscription")
                }
            }
        }
        out
    }

    pub(super) async fn delete_offsets(
        &mut self,
        partitions: Vec<OffsetToDelete>,
    ) -> Vec<GroupResult> {
        let subscribed = self.subscribed_topics();
        let mut out: Vec<GroupResult> = partitions
            .iter()
            .map(|p| {
                if subscribed.contains(&p.topic) {
                    Err(GroupError::GroupSubscribedToTopic)
                } else {
                    Ok(())
                }
            })
            .collect();
        let deletable: Vec<(Uuid, i32)> = partitions
            .iter()
            .zip(&out)
            .filter(|(_, o)| o.is_ok())
            .map(|(p, _)| (p.topic_id, p.partition))
            .collect();
        if deletable.is_empty() {
            return out;
        }
        let deleted = self
            .args
            .store
            .delete_offsets(&self.args.group_id, Some(deletable))
            .await;
        if let Err(e) = deleted {
            tracing::warn!(group = %self.args.group_id, error = %e, "offset delete failed");
            for o in out.iter_mut().filter(|o| o.is_ok()) {
                *o = Err(GroupError::Storage);
            }
        }
        out
    }
}

fn metadata_for(m: &Member, protocol: &str) -> Bytes {
    m.protocols
        .iter()
        .find(|(n, _)| n == protocol)
        .map(|(_, b)| b.clone())
        .unwrap_or_default()
}

/// Answers a JoinGroup with `error` (generation -1).
fn join_failed(reply: oneshot::Sender<JoinResult>, error: GroupError, member_id: String) {
    let _ = reply.send(JoinResult {
        error: Some(error),
        member_id,
        generation: -1,
        ..Default::default()
    });
}
