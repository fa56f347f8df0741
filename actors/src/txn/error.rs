//! [`TxnError`]: why a transaction coordinator refused a request.

/// Why a transaction request was refused. Each variant is one outcome a Kafka client
/// knows; the node maps it to the protocol's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// Another node coordinates the transactional id now.
    #[error("not the coordinator")]
    NotCoordinator,
    /// The transaction is completing (markers being written): retry shortly.
    #[error("concurrent transactions")]
    ConcurrentTransactions,
    /// A newer producer with the same transactional id took over.
    #[error("producer fenced")]
    ProducerFenced,
    /// The producer id is not the transactional id's.
    #[error("invalid producer id mapping")]
    InvalidProducerIdMapping,
    /// The request does not fit the transaction's state.
    #[error("invalid transaction state")]
    InvalidTxnState,
    /// `transaction.timeout.ms` above `transaction.max.timeout.ms` (or not positive).
    #[error("invalid transaction timeout")]
    InvalidTransactionTimeout,
    /// The metadata store failed.
    #[error("metadata store failed: {0}")]
    Storage(String),
    /// The coordinator is not running.
    #[error("coordinator unavailable")]
    Unavailable,
}

/// What a transaction request that returns nothing else ends with.
pub type TxnResult<T = ()> = Result<T, TxnError>;
