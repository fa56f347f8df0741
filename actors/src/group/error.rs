//! [`GroupError`]: why a group coordinator refused a request.

/// Why a group coordinator refused a request (classic or KIP-848 protocol). Each variant is
/// one outcome a Kafka client knows; the node maps it to the protocol's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The member id is not (or no longer) a member of the group.
    #[error("unknown member")]
    UnknownMemberId,
    /// The member's generation is not the group's.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing; the member must rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// Another member with the same group.instance.id took over.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// The member's protocols share none with the group's.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// The session timeout is outside the broker's bounds.
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    /// A new member must rejoin with the id it was given.
    #[error("member id required")]
    MemberIdRequired,
    /// The group has as many members as it may have.
    #[error("group is full")]
    GroupMaxSizeReached,
    /// The group still has members.
    #[error("group is not empty")]
    NonEmptyGroup,
    /// OffsetDelete of a topic the group consumes.
    #[error("the group consumes the topic")]
    GroupSubscribedToTopic,
    /// Offset metadata longer than allowed.
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    /// Another node coordinates the group now.
    #[error("not the coordinator")]
    NotCoordinator,
    /// The metadata store failed.
    #[error("metadata store failed")]
    Storage,
    /// The coordinator could not store the group's new generation; the members rejoin.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// A KIP-848 request that breaks the protocol's rules.
    #[error("invalid request")]
    InvalidRequest,
    /// A KIP-848 member epoch ahead of the group's (the member must rejoin).
    #[error("fenced member epoch")]
    FencedMemberEpoch,
    /// A KIP-848 member epoch behind the group's.
    #[error("stale member epoch")]
    StaleMemberEpoch,
    /// A KIP-848 server-side assignor this broker does not have.
    #[error("unsupported assignor")]
    UnsupportedAssignor,
    /// A KIP-848 subscription regular expression that does not compile.
    #[error("invalid regular expression")]
    InvalidRegularExpression,
}

/// What a group request that returns nothing else ends with.
pub type GroupResult = Result<(), GroupError>;
