//! The transaction coordinator's state machine, as pure functions over a stored
//! [`TxnRecord`]: each request either changes the record (the caller stores it with a
//! compare-and-set) or is refused with Kafka's error.
//!
//! ```text
//! Empty / CompleteCommit / CompleteAbort ── AddPartitions, AddOffsets ──▶ Ongoing
//! Ongoing ── EndTxn(commit) ──▶ PrepareCommit ── markers written ──▶ CompleteCommit
//! Ongoing ── EndTxn(abort), timeout, InitProducerId ──▶ PrepareAbort ── markers ──▶ CompleteAbort
//! ```

use crate::txn::error::TxnError;
use inkless_storage::metadata::{PartitionKey, TxnRecord, TxnState};

/// Epochs at or above this one are not handed out: the producer gets a new id instead.
pub(crate) const EPOCH_LIMIT: i16 = i16::MAX - 1;

/// The producer a client says it is (KIP-360 recovery), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
}

/// What InitProducerId must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitPlan {
    /// Store the record and answer its producer id and epoch.
    Ready(TxnRecord),
    /// Store the record (now PrepareAbort with a bumped epoch), write its abort markers,
    /// then run InitProducerId again.
    AbortFirst(TxnRecord),
    /// Like `Ready`, but with a newly allocated producer id (epoch 0).
    NeedsNewId(TxnRecord),
}

/// A fresh record for a transactional id never seen (or expired).
pub fn new_record(id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnRecord {
    TxnRecord {
        transactional_id: id.to_string(),
        producer_id,
        producer_epoch: 0,
        state: TxnState::Empty,
        timeout_ms,
        partitions: Vec::new(),
        groups: Vec::new(),
        txn_start_ms: -1,
        last_update_ms: now_ms,
        version: 0,
        next_producer_id: -1,
    }
}

/// InitProducerId for an existing record.
pub fn init(
    rec: &TxnRecord,
    claimed: Claimed,
    timeout_ms: i32,
    now_ms: i64,
) -> Result<InitPlan, TxnError> {
    if claimed.producer_id >= 0 {
        // KIP-360: the client must be the current producer (or the one just before a bump).
        if claimed.producer_id != rec.producer_id {
            return Err(TxnError::ProducerFenced);
        }
        if claimed.producer_epoch != rec.producer_epoch
            && claimed.producer_epoch + 1 != rec.producer_epoch
        {
            return Err(TxnError::ProducerFenced);
        }
    }
    match rec.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => Err(TxnError::ConcurrentTransactions),
        TxnState::Ongoing => Ok(InitPlan::AbortFirst(abort_with_bump(rec, now_ms))),
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            let mut next = rec.clone();
            next.state = TxnState::Empty;
            next.timeout_ms = timeout_ms;
            next.partitions.clear();
            next.groups.clear();
            next.txn_start_ms = -1;
            next.last_update_ms = now_ms;
            if rec.producer_epoch >= EPOCH_LIMIT {
                next.producer_epoch = 0;
                return Ok(InitPlan::NeedsNewId(next));
            }
            next.producer_epoch = rec.producer_epoch + 1;
            Ok(InitPlan::Ready(next))
        }
    }
}

/// The record aborting its ongoing transaction with the next epoch, which fences the
/// producer that ran it (a timeout or a new producer with the same transactional id).
pub fn abort_with_bump(rec: &TxnRecord, now_ms: i64) -> TxnRecord {
    let mut next = rec.clone();
    next.state = TxnState::PrepareAbort;
    next.producer_epoch = rec.producer_epoch.saturating_add(1).min(EPOCH_LIMIT);
    next.last_update_ms = now_ms;
    next
}

/// Checks that a request comes from the record's current producer.
pub fn check_producer(rec: &TxnRecord, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
    if producer_id != rec.producer_id {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if epoch != rec.producer_epoch {
        return Err(TxnError::ProducerFenced);
    }
    Ok(())
}

/// Makes the record Ongoing (starting a transaction if none runs), for AddPartitionsToTxn
/// and AddOffsetsToTxn.
fn begin(
    rec: &TxnRecord,
    producer_id: i64,
    epoch: i16,
    now_ms: i64,
) -> Result<TxnRecord, TxnError> {
    check_producer(rec, producer_id, epoch)?;
    let mut next = rec.clone();
    match rec.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => {
            return Err(TxnError::ConcurrentTransactions)
        }
        TxnState::Ongoing => {}
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            next.state = TxnState::Ongoing;
            next.partitions.clear();
            next.groups.clear();
            next.txn_start_ms = now_ms;
        }
    }
    next.last_update_ms = now_ms;
    Ok(next)
}

/// AddPartitionsToTxn: `None` when every partition is in the transaction already.
pub fn add_partitions(
    rec: &TxnRecord,
    producer_id: i64,
    epoch: i16,
    parts: &[PartitionKey],
    now_ms: i64,
) -> Result<Option<TxnRecord>, TxnError> {
    if rec.state == TxnState::Ongoing && parts.iter().all(|p| rec.partitions.contains(p)) {
        check_producer(rec, producer_id, epoch)?;
        return Ok(None);
    }
    let mut next = begin(rec, producer_id, epoch, now_ms)?;
    for p in parts {
        if !next.partitions.contains(p) {
            next.partitions.push(*p);
        }
    }
    Ok(Some(next))
}

/// The check of KIP-890's verification: the partition is in the producer's running
/// transaction.
pub fn verify_partition(
    rec: &TxnRecord,
    producer_id: i64,
    epoch: i16,
    part: &PartitionKey,
) -> Result<(), TxnError> {
    check_producer(rec, producer_id, epoch)?;
    if rec.state != TxnState::Ongoing || !rec.partitions.contains(part) {
        return Err(TxnError::InvalidTxnState);
    }
    Ok(())
}

/// AddOffsetsToTxn: `None` when the group is in the transaction already.
pub fn add_offsets(
    rec: &TxnRecord,
    producer_id: i64,
    epoch: i16,
    group: &str,
    now_ms: i64,
) -> Result<Option<TxnRecord>, TxnError> {
    if rec.state == TxnState::Ongoing && rec.groups.iter().any(|g| g == group) {
        check_producer(rec, producer_id, epoch)?;
        return Ok(None);
    }
    let mut next = begin(rec, producer_id, epoch, now_ms)?;
    next.groups.push(group.to_string());
    Ok(Some(next))
}

/// What EndTxn must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndPlan {
    /// Store the record (PrepareCommit or PrepareAbort), answer, and write the markers.
    Prepare(TxnRecord),
    /// Like `Prepare`, but the producer's epochs ran out: the caller sets
    /// `next_producer_id` to a new producer id first.
    PrepareWithNewId(TxnRecord),
    /// A retry of an EndTxn that was decided already: answer success from this record,
    /// change nothing.
    AlreadyDone(TxnRecord),
    /// EndTxn v5 aborting no transaction (KIP-890: legal, it only bumps the epoch): store
    /// the record, which has nothing to write, and answer from it. Its epoch may have run
    /// out: the caller then moves it to a new producer id.
    EmptyAbort(TxnRecord),
}

/// The producer id and epoch a client continues with after EndTxn decided `rec`.
pub fn continues_as(rec: &TxnRecord) -> (i64, i16) {
    if rec.next_producer_id >= 0 {
        (rec.next_producer_id, 0)
    } else {
        (rec.producer_id, rec.producer_epoch)
    }
}

/// True when `rec` holds the decision `commit` (being written or written).
fn decided(rec: &TxnRecord, commit: bool) -> bool {
    matches!(
        (rec.state, commit),
        (TxnState::PrepareCommit | TxnState::CompleteCommit, true)
            | (TxnState::PrepareAbort | TxnState::CompleteAbort, false)
    )
}

/// EndTxn. With `bump` (EndTxn v5, KIP-890's transaction version 2) the decision takes the
/// next epoch, which its markers carry: a late batch of the ended transaction is refused by
/// every partition that has the marker.
pub fn end(
    rec: &TxnRecord,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
    bump: bool,
) -> Result<EndPlan, TxnError> {
    if producer_id != rec.producer_id {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    // A retry of a v5 EndTxn whose answer (with the bumped epoch) was lost.
    if bump && epoch.checked_add(1) == Some(rec.producer_epoch) && decided(rec, commit) {
        return Ok(EndPlan::AlreadyDone(rec.clone()));
    }
    // A retry after a timeout abort bumped the epoch: the producer is fenced.
    if epoch != rec.producer_epoch {
        return Err(TxnError::ProducerFenced);
    }
    match (rec.state, commit) {
        (TxnState::Ongoing, _) => {
            let mut next = rec.clone();
            next.state = if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            };
            next.last_update_ms = now_ms;
            if !bump {
                return Ok(EndPlan::Prepare(next));
            }
            next.producer_epoch = rec.producer_epoch.saturating_add(1);
            if next.producer_epoch >= EPOCH_LIMIT {
                return Ok(EndPlan::PrepareWithNewId(next));
            }
            Ok(EndPlan::Prepare(next))
        }
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            Err(TxnError::ConcurrentTransactions)
        }
        // With epoch bumps the request is for the next transaction, whichever it decides:
        // it waits for the previous one's markers, as with Kafka.
        (TxnState::PrepareCommit | TxnState::PrepareAbort, _) if bump => {
            Err(TxnError::ConcurrentTransactions)
        }
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if !bump => {
            Ok(EndPlan::AlreadyDone(rec.clone()))
        }
        (TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort, false) if bump => {
            let mut next = rec.clone();
            next.state = TxnState::CompleteAbort;
            next.producer_epoch = rec.producer_epoch.saturating_add(1);
            next.last_update_ms = now_ms;
            Ok(EndPlan::EmptyAbort(next))
        }
        _ => Err(TxnError::InvalidTxnState),
    }
}

/// The record once every marker of its Prepare state is written (and the client moves to
/// its next producer id, if its epochs ran out).
pub fn complete(rec: &TxnRecord, now_ms: i64) -> Option<TxnRecord> {
    let state = match rec.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        TxnState::PrepareAbort => TxnState::CompleteAbort,
        _ => return None,
    };
    let mut next = rec.clone();
    next.state = state;
    next.partitions.clear();
    next.groups.clear();
    next.txn_start_ms = -1;
    next.last_update_ms = now_ms;
    if rec.next_producer_id >= 0 {
        next.producer_id = rec.next_producer_id;
        next.producer_epoch = 0;
        next.next_producer_id = -1;
    }
    Some(next)
}

/// True when the record's transaction has run longer than its timeout.
pub fn timed_out(rec: &TxnRecord, now_ms: i64) -> bool {
    rec.state == TxnState::Ongoing
        && rec.txn_start_ms >= 0
        && now_ms.saturating_sub(rec.txn_start_ms) > i64::from(rec.timeout_ms)
}

/// True when an idle id may be forgotten (`transactional.id.expiration.ms`).
pub fn expired(rec: &TxnRecord, now_ms: i64, expiration_ms: i64) -> bool {
    matches!(
        rec.state,
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
    ) && now_ms.saturating_sub(rec.last_update_ms) > expiration_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const NONE: Claimed = Claimed {
        producer_id: -1,
        producer_epoch: -1,
    };

    fn ongoing() -> TxnRecord {
        let rec = new_record("t", 5, 1_000, 0);
        let p = (Uuid::nil(), 0);
        add_partitions(&rec, 5, 0, &[p], 10)
            .expect("add")
            .expect("changed")
    }

    #[test]
    fn a_transaction_runs_from_empty_to_complete() {
        let rec = ongoing();
        assert_eq!(rec.state, TxnState::Ongoing);
        assert_eq!(rec.txn_start_ms, 10);
        // Adding it again changes nothing.
        assert_eq!(
            add_partitions(&rec, 5, 0, &[(Uuid::nil(), 0)], 20),
            Ok(None)
        );
        let rec = add_offsets(&rec, 5, 0, "g", 20)
            .expect("offsets")
            .expect("changed");
        assert_eq!(rec.groups, vec!["g".to_string()]);
        let EndPlan::Prepare(prep) = end(&rec, 5, 0, true, 30, false).expect("end") else {
            panic!("expected a prepare");
        };
        assert_eq!(prep.state, TxnState::PrepareCommit);
        // While markers are written, the producer waits.
        assert_eq!(
            add_partitions(&prep, 5, 0, &[(Uuid::nil(), 1)], 31),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            end(&prep, 5, 0, true, 31, false),
            Err(TxnError::ConcurrentTransactions)
        );
        let done = complete(&prep, 40).expect("complete");
        assert_eq!(done.state, TxnState::CompleteCommit);
        assert!(done.partitions.is_empty() && done.groups.is_empty());
        // A retried EndTxn succeeds; the opposite decision is refused.
        assert_eq!(
            end(&done, 5, 0, true, 41, false),
            Ok(EndPlan::AlreadyDone(done.clone()))
        );
        assert_eq!(
            end(&done, 5, 0, false, 41, false),
            Err(TxnError::InvalidTxnState)
        );
        // The next transaction starts from the completed one.
        let next = add_partitions(&done, 5, 0, &[(Uuid::nil(), 2)], 50)
            .expect("add")
            .expect("changed");
        assert_eq!(next.partitions, vec![(Uuid::nil(), 2)]);
        assert_eq!(next.txn_start_ms, 50);
    }

    #[test]
    fn zombies_are_fenced() {
        let rec = ongoing();
        assert_eq!(
            add_partitions(&rec, 5, 1, &[(Uuid::nil(), 0)], 20),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(
            add_partitions(&rec, 6, 0, &[(Uuid::nil(), 0)], 20),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            end(&rec, 5, 1, true, 20, false),
            Err(TxnError::ProducerFenced)
        );
        // A new producer with the same id aborts the ongoing transaction with a new epoch.
        let Ok(InitPlan::AbortFirst(abort)) = init(&rec, NONE, 1_000, 30) else {
            panic!("expected an abort first");
        };
        assert_eq!(abort.state, TxnState::PrepareAbort);
        assert_eq!(abort.producer_epoch, 1);
        assert_eq!(
            init(&abort, NONE, 1_000, 31),
            Err(TxnError::ConcurrentTransactions)
        );
        let done = complete(&abort, 40).expect("complete");
        let Ok(InitPlan::Ready(fresh)) = init(&done, NONE, 2_000, 41) else {
            panic!("expected ready");
        };
        assert_eq!((fresh.producer_epoch, fresh.timeout_ms), (2, 2_000));
        // The old producer (epoch 0) is fenced everywhere.
        assert_eq!(
            end(&fresh, 5, 0, false, 42, false),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(
            verify_partition(&fresh, 5, 0, &(Uuid::nil(), 0)),
            Err(TxnError::ProducerFenced)
        );
    }

    #[test]
    fn kip_360_recovery_accepts_only_the_current_producer() {
        let rec = complete(&end_prepare(&ongoing()), 50).expect("complete");
        let me = Claimed {
            producer_id: 5,
            producer_epoch: 0,
        };
        assert!(
            matches!(init(&rec, me, 1_000, 60), Ok(InitPlan::Ready(r)) if r.producer_epoch == 1)
        );
        let other = Claimed {
            producer_id: 9,
            producer_epoch: 0,
        };
        assert_eq!(init(&rec, other, 1_000, 60), Err(TxnError::ProducerFenced));
        let old = Claimed {
            producer_id: 5,
            producer_epoch: -5,
        };
        assert_eq!(init(&rec, old, 1_000, 60), Err(TxnError::ProducerFenced));
    }

    fn end_prepare(rec: &TxnRecord) -> TxnRecord {
        match end(rec, rec.producer_id, rec.producer_epoch, false, 40, false) {
            Ok(EndPlan::Prepare(r)) => r,
            other => panic!("expected prepare, got {other:?}"),
        }
    }

    #[test]
    fn end_txn_v5_bumps_the_epoch_per_transaction() {
        let rec = ongoing();
        let Ok(EndPlan::Prepare(prep)) = end(&rec, 5, 0, true, 30, true) else {
            panic!("expected a prepare");
        };
        // The markers carry epoch 1; the client continues with it.
        assert_eq!(
            (prep.state, prep.producer_epoch),
            (TxnState::PrepareCommit, 1)
        );
        assert_eq!(continues_as(&prep), (5, 1));
        // A retry with the old epoch is answered from the decision, in either state.
        assert_eq!(
            end(&prep, 5, 0, true, 31, true),
            Ok(EndPlan::AlreadyDone(prep.clone()))
        );
        // The next transaction's EndTxn (the new epoch) waits for the markers.
        assert_eq!(
            end(&prep, 5, 1, false, 31, true),
            Err(TxnError::ConcurrentTransactions)
        );
        let done = complete(&prep, 40).expect("complete");
        assert_eq!(
            end(&done, 5, 0, true, 41, true),
            Ok(EndPlan::AlreadyDone(done.clone()))
        );
        assert_eq!(
            end(&done, 5, 0, false, 41, true),
            Err(TxnError::ProducerFenced)
        );
        // The next transaction runs with epoch 1; epoch 0 is fenced.
        assert_eq!(
            add_partitions(&done, 5, 0, &[(Uuid::nil(), 0)], 50),
            Err(TxnError::ProducerFenced)
        );
        assert!(add_partitions(&done, 5, 1, &[(Uuid::nil(), 0)], 50).is_ok());
        // An abort of no transaction only bumps the epoch (KIP-890 part 2).
        let Ok(EndPlan::EmptyAbort(empty)) = end(&done, 5, 1, false, 60, true) else {
            panic!("expected an empty abort");
        };
        assert_eq!(
            (empty.state, empty.producer_epoch),
            (TxnState::CompleteAbort, 2)
        );
        assert_eq!(
            end(&done, 5, 1, false, 60, false),
            Err(TxnError::InvalidTxnState)
        );
    }

    #[test]
    fn end_txn_v5_moves_to_a_new_producer_id_when_epochs_run_out() {
        let mut rec = ongoing();
        rec.producer_epoch = EPOCH_LIMIT - 1;
        let Ok(EndPlan::PrepareWithNewId(mut prep)) =
            end(&rec, 5, EPOCH_LIMIT - 1, false, 30, true)
        else {
            panic!("expected a prepare with a new id");
        };
        assert_eq!(prep.producer_epoch, EPOCH_LIMIT);
        prep.next_producer_id = 9;
        assert_eq!(continues_as(&prep), (9, 0));
        let done = complete(&prep, 40).expect("complete");
        assert_eq!(
            (done.producer_id, done.producer_epoch, done.next_producer_id),
            (9, 0, -1)
        );
    }

    #[test]
    fn epochs_wrap_to_a_new_producer_id() {
        let mut rec = new_record("t", 5, 1_000, 0);
        rec.producer_epoch = EPOCH_LIMIT;
        assert!(
            matches!(init(&rec, NONE, 1_000, 1), Ok(InitPlan::NeedsNewId(r)) if r.producer_epoch == 0)
        );
    }

    #[test]
    fn verification_needs_the_partition_in_the_running_transaction() {
        let rec = ongoing();
        assert_eq!(verify_partition(&rec, 5, 0, &(Uuid::nil(), 0)), Ok(()));
        assert_eq!(
            verify_partition(&rec, 5, 0, &(Uuid::nil(), 1)),
            Err(TxnError::InvalidTxnState)
        );
        let done = complete(&end_prepare(&rec), 50).expect("complete");
        assert_eq!(
            verify_partition(&done, 5, 0, &(Uuid::nil(), 0)),
            Err(TxnError::InvalidTxnState)
        );
    }

    #[test]
    fn timeouts_and_expiry() {
        let rec = ongoing();
        assert!(!timed_out(&rec, 1_010));
        assert!(timed_out(&rec, 1_011));
        let abort = abort_with_bump(&rec, 1_011);
        assert_eq!(
            (abort.state, abort.producer_epoch),
            (TxnState::PrepareAbort, 1)
        );
        assert!(!expired(&abort, 10_000_000, 1));
        let done = complete(&abort, 2_000).expect("complete");
        assert!(!expired(&done, 2_500, 1_000));
        assert!(expired(&done, 3_001, 1_000));
    }
}
