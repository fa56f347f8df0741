//! [`GroupHandle`]: what request handlers hold of a running group coordinator.

use crate::group::consumer::{Heartbeat as ConsumerHeartbeat, HeartbeatAnswer};
use crate::group::coordinator::{
    ConsumerGroupDescription, GroupDescription, GroupMsg, JoinArgs, JoinResult, MemberRef,
    OffsetToDelete, SyncArgs, SyncResult,
};
use crate::group::error::GroupResult;
use crate::tree::mailbox::Mailbox;
use inkless_storage::metadata::CommittedOffset;
use tokio::sync::oneshot;

/// The coordinator stopped before it answered (it moved, was deleted, or failed). The
/// client should look the coordinator up again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the group coordinator is gone")]
pub struct CoordinatorGone;

/// Why [`crate::Node::group`] found no coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupMiss {
    /// The group has nothing stored (no members, no offsets) and was not to be created.
    #[error("unknown group")]
    Unknown,
    /// The group's coordinator could not start here now (another node still holds the
    /// group, the metadata store failed, or this node is not its coordinator): the client
    /// should retry (COORDINATOR_NOT_AVAILABLE).
    #[error("the group coordinator is not available")]
    Unavailable,
}

/// A running consumer-group coordinator on this node.
#[derive(Debug, Clone)]
pub struct GroupHandle {
    actor: Mailbox<GroupMsg>,
}

impl GroupHandle {
    pub(crate) fn new(actor: Mailbox<GroupMsg>) -> Self {
        Self { actor }
    }

    async fn ask<T>(
        &self,
        msg: impl FnOnce(oneshot::Sender<T>) -> GroupMsg,
    ) -> Result<T, CoordinatorGone> {
        let (tx, rx) = oneshot::channel();
        self.actor.post(msg(tx)).map_err(|_| CoordinatorGone)?;
        rx.await.map_err(|_| CoordinatorGone)
    }

    /// JoinGroup; answers when the rebalance completes (or the member must retry).
    pub async fn join(&self, args: JoinArgs) -> Result<JoinResult, CoordinatorGone> {
        self.ask(|tx| GroupMsg::Join(args, tx)).await
    }

    /// SyncGroup; answers when the leader's assignment is known.
    pub async fn sync(&self, args: SyncArgs) -> Result<SyncResult, CoordinatorGone> {
        self.ask(|tx| GroupMsg::Sync(args, tx)).await
    }

    /// Heartbeat of a classic-protocol member.
    pub async fn heartbeat(
        &self,
        member: MemberRef,
        generation: i32,
    ) -> Result<GroupResult, CoordinatorGone> {
        self.ask(|reply| GroupMsg::Heartbeat {
            member,
            generation,
            reply,
        })
        .await
    }

    /// LeaveGroup; one outcome per member.
    pub async fn leave(
        &self,
        members: Vec<MemberRef>,
    ) -> Result<Vec<GroupResult>, CoordinatorGone> {
        self.ask(|reply| GroupMsg::Leave { members, reply }).await
    }

    /// OffsetCommit, validated against membership then stored.
    pub async fn commit(
        &self,
        member: MemberRef,
        generation: i32,
        offsets: Vec<CommittedOffset>,
    ) -> Result<GroupResult, CoordinatorGone> {
        self.ask(|reply| GroupMsg::Commit {
            member,
            generation,
            offsets,
            reply,
        })
        .await
    }

    /// The group's state and members.
    pub async fn describe(&self) -> Result<GroupDescription, CoordinatorGone> {
        self.ask(GroupMsg::Describe).await
    }

    /// ConsumerGroupHeartbeat (KIP-848).
    pub async fn consumer_heartbeat(
        &self,
        hb: ConsumerHeartbeat,
    ) -> Result<HeartbeatAnswer, CoordinatorGone> {
        self.ask(|tx| GroupMsg::ConsumerHeartbeat(hb, tx)).await
    }

    /// ConsumerGroupDescribe (KIP-848).
    pub async fn consumer_describe(&self) -> Result<ConsumerGroupDescription, CoordinatorGone> {
        self.ask(GroupMsg::ConsumerDescribe).await
    }

    /// OffsetDelete: one outcome per partition, in order.
    pub async fn delete_offsets(
        &self,
        partitions: Vec<OffsetToDelete>,
    ) -> Result<Vec<GroupResult>, CoordinatorGone> {
        self.ask(|reply| GroupMsg::DeleteOffsets { partitions, reply })
            .await
    }

    /// DeleteGroups: NON_EMPTY_GROUP unless empty, else drops the offsets and stops.
    pub async fn delete(&self) -> Result<GroupResult, CoordinatorGone> {
        self.ask(GroupMsg::Delete).await
    }
}
