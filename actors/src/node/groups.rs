//! Consumer-group coordinators, through typed handles.

use super::Node;
use crate::group::handle::{GroupHandle, GroupMiss};
use crate::group::manager::GroupManagerMsg;
use tokio::sync::oneshot;

impl Node {
    /// The coordinator of `group_id` this node runs. One that is not running is started
    /// (loading what the store holds of the group) if `create`, or if the store knows the
    /// group (stored members or offsets); else [`GroupMiss::Unknown`].
    /// [`GroupMiss::Unavailable`] while this node's lease does not hold (see
    /// [`crate::cluster::lease`]) or when the coordinator cannot start now.
    pub async fn group(&self, group_id: &str, create: bool) -> Result<GroupHandle, GroupMiss> {
        if !self.partitions.guard().is_valid() {
            return Err(GroupMiss::Unavailable);
        }
        let m = self.slots.groups.get().ok_or(GroupMiss::Unavailable)?;
        let (tx, rx) = oneshot::channel();
        m.post(GroupManagerMsg::Get {
            group_id: group_id.to_string(),
            create,
            reply: tx,
        })
        .map_err(|_| GroupMiss::Unavailable)?;
        let found = rx.await.map_err(|_| GroupMiss::Unavailable)?;
        found.map(GroupHandle::new)
    }

    /// Every running group coordinator.
    pub async fn groups(&self) -> Vec<(String, GroupHandle)> {
        let Some(m) = self.slots.groups.get() else {
            return Vec::new();
        };
        let (tx, rx) = oneshot::channel();
        if m.post(GroupManagerMsg::List(tx)).is_err() {
            return Vec::new();
        }
        let groups = rx.await.unwrap_or_default();
        groups
            .into_iter()
            .map(|(id, actor)| (id, GroupHandle::new(actor)))
            .collect()
    }
}
