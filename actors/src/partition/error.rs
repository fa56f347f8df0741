//! [`StartError`]: why a partition this node owns does not run here.

use inkless_storage::metadata::MetaError;

/// Why a partition that this node owns did not start. Reported per partition by
/// [`Node::place`](crate::Node::place) and [`Node::ensure_partitions`](crate::Node::ensure_partitions);
/// every one is retried by the partition manager with backoff while the node owns it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// Another node holds the partition under a live lease and has not released it yet
    /// (it hands it off once it sees this node in the live set).
    #[error("held by node {owner} under a live lease")]
    OwnedElsewhere {
        /// The node holding it.
        owner: i32,
    },
    /// This node's lease is not live under the generation it claimed with (it lapsed, or
    /// another node took something from it): nothing is claimed until the next renewal.
    #[error("this node's lease is not live under generation {generation}")]
    LeaseLost {
        /// The generation the claim was made with.
        generation: i64,
    },
    /// The metadata store has no such partition (its topic was deleted meanwhile).
    #[error("unknown partition")]
    UnknownPartition,
    /// The metadata store failed or refused the claim for another reason.
    #[error("metadata store: {0}")]
    Store(String),
    /// The partition was claimed but its actor did not start.
    #[error("partition actor did not start: {0}")]
    Spawn(String),
    /// The partition manager is not running (it is being restarted) or stopped answering.
    #[error("partition manager unavailable")]
    ManagerUnavailable,
}

impl From<MetaError> for StartError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::OwnedElsewhere { owner } => Self::OwnedElsewhere { owner },
            MetaError::LeaseLost { generation, .. } => Self::LeaseLost { generation },
            MetaError::UnknownPartition(..) => Self::UnknownPartition,
            e => Self::Store(e.to_string()),
        }
    }
}
