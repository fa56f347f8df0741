//! Consumer-group coordinators, through typed handles.

use super::Node;
use crate::group::handle::GroupHandle;
use crate::group::manager::GroupManagerMsg;
use tokio::sync::oneshot;

impl Node {
    /// The coordinator of `group_id`, started if `create` and not running; `None` while
    /// this node's lease does not hold (see [`crate::cluster::lease`]).
    pub async fn group(&self, group_id: &str, create: bool) -> Option<GroupHandle> {
        if !self.partitions.guard().is_valid() {
            return None;
        }
        let m = self.slots.groups.get()?;
        let (tx, rx) = oneshot::channel();
        m.post(GroupManagerMsg::Get {
            group_id: group_id.to_string(),
            create,
            reply: tx,
        })
        .ok()?;
        rx.await.ok().flatten().map(GroupHandle::new)
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
