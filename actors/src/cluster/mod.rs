//! The cluster: this node's lease and the live set it sees (membership, lease guard),
//! placement as a function of the live set, the balancer that evens it out, and the actor mesh and gateway between nodes
//! with the versioned wire format of their messages.

pub(crate) mod balance;
pub(crate) mod balancer;
pub(crate) mod gateway;
pub(crate) mod lease;
pub(crate) mod membership;
pub(crate) mod mesh;
pub(crate) mod peers;
pub(crate) mod placement;
pub(crate) mod wire;
