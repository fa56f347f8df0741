//! The supervision tree: the node's root supervisor, the registry of singleton
//! actors and the actor directory, and mailbox accounting.

pub(crate) mod mailbox;
pub(crate) mod registry;
pub(crate) mod supervisor;
