//! Transaction requests of [`Node`]: handed to this node's TxnCoordinator.

use super::Node;
use crate::txn::coordinator::{EndRequest, TxnMsg, TxnReply};
use crate::txn::error::{TxnError, TxnResult};
use crate::txn::state::Claimed;
use inkless_storage::metadata::PartitionKey;
use tokio::sync::oneshot;

impl Node {
    async fn ask_txn<T>(&self, msg: impl FnOnce(TxnReply<T>) -> TxnMsg) -> TxnResult<T> {
        let coordinator = self.slots.txn.get().ok_or(TxnError::Unavailable)?;
        let (tx, rx) = oneshot::channel();
        coordinator
            .post(msg(tx))
            .map_err(|_| TxnError::Unavailable)?;
        rx.await.map_err(|_| TxnError::Unavailable)?
    }

    /// InitProducerId with a transactional id: (producer id, epoch).
    pub async fn txn_init(
        &self,
        id: &str,
        timeout_ms: i32,
        claimed: Claimed,
    ) -> TxnResult<(i64, i16)> {
        self.ask_txn(|reply| TxnMsg::Init {
            id: id.to_string(),
            timeout_ms,
            claimed,
            reply,
        })
        .await
    }

    /// AddPartitionsToTxn.
    pub async fn txn_add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        parts: Vec<PartitionKey>,
    ) -> TxnResult {
        self.ask_txn(|reply| TxnMsg::AddPartitions {
            id: id.to_string(),
            producer_id,
            epoch,
            parts,
            reply,
        })
        .await
    }

    /// AddOffsetsToTxn.
    pub async fn txn_add_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> TxnResult {
        self.ask_txn(|reply| TxnMsg::AddOffsets {
            id: id.to_string(),
            producer_id,
            epoch,
            group: group.to_string(),
            reply,
        })
        .await
    }

    /// EndTxn: answered once the Prepare state is durable; markers follow. `bump` (EndTxn
    /// v5) gives the decision the next epoch. Answers the producer id and epoch the client
    /// continues with.
    pub async fn txn_end(
        &self,
        id: &str,
        producer: (i64, i16),
        commit: bool,
        bump: bool,
    ) -> TxnResult<(i64, i16)> {
        let req = EndRequest {
            producer_id: producer.0,
            epoch: producer.1,
            commit,
            bump,
        };
        self.ask_txn(|reply| TxnMsg::End {
            id: id.to_string(),
            req,
            reply,
        })
        .await
    }
}
