//! Transactions (ADR 0018): InitProducerId with a transactional id, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn, TxnOffsetCommit, DescribeTransactions, ListTransactions and
//! DescribeProducers.
//!
//! The coordinator requests go to this node's TxnCoordinator, which answers
//! NOT_COORDINATOR for ids placed elsewhere; TxnOffsetCommit goes to the group's
//! coordinator (this node, or NOT_COORDINATOR) and stages the offsets in the metadata
//! store until the transaction commits. The Describe and List requests read the store.

use super::groups::{plan_offsets, OffsetInRequest};
use super::{group_outcome, not_coordinator, s, Ctx, NONE};
use inkless_actors::{Claimed, GroupMiss, MemberRef, TxnError};
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
use inkless_protocol::kafka_protocol::messages::add_offsets_to_txn_response::AddOffsetsToTxnResponse;
use inkless_protocol::kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnTopic,
};
use inkless_protocol::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResponse, AddPartitionsToTxnResult,
    AddPartitionsToTxnTopicResult,
};
use inkless_protocol::kafka_protocol::messages::describe_producers_request::DescribeProducersRequest;
use inkless_protocol::kafka_protocol::messages::describe_producers_response::{
    self, DescribeProducersResponse,
};
use inkless_protocol::kafka_protocol::messages::describe_transactions_request::DescribeTransactionsRequest;
use inkless_protocol::kafka_protocol::messages::describe_transactions_response::{
    DescribeTransactionsResponse, TopicData, TransactionState,
};
use inkless_protocol::kafka_protocol::messages::end_txn_request::EndTxnRequest;
use inkless_protocol::kafka_protocol::messages::end_txn_response::EndTxnResponse;
use inkless_protocol::kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use inkless_protocol::kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use inkless_protocol::kafka_protocol::messages::list_transactions_request::ListTransactionsRequest;
use inkless_protocol::kafka_protocol::messages::list_transactions_response::{
    self, ListTransactionsResponse,
};
use inkless_protocol::kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequest;
use inkless_protocol::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponse, TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use inkless_protocol::kafka_protocol::messages::{ProducerId, TopicName, TransactionalId};
use inkless_storage::metadata::{PartitionKey, TxnRecord, GROUP_LIST_SEPARATOR};
use std::collections::BTreeMap;

/// Kafka's error code of a coordinator refusal.
pub fn txn_code(e: &TxnError) -> i16 {
    let kafka = match e {
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::ProducerFenced => ResponseError::ProducerFenced,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        TxnError::Storage(_) => ResponseError::CoordinatorNotAvailable,
        TxnError::Unavailable => ResponseError::CoordinatorNotAvailable,
    };
    kafka.code()
}

/// Older clients know PRODUCER_FENCED only from these versions on; before, the same
/// refusal is INVALID_PRODUCER_EPOCH (as Kafka answers).
fn fenced_code(code: i16, version: i16, first_with_fenced: i16) -> i16 {
    if code == ResponseError::ProducerFenced.code() && version < first_with_fenced {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        code
    }
}

/// InitProducerId with a transactional id.
pub async fn init_producer_id(
    ctx: &Ctx,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let r = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let Some(id) = req.transactional_id.as_ref().map(|t| t.0.to_string()) else {
        return r.with_error_code(ResponseError::InvalidRequest.code());
    };
    if id.is_empty() {
        return r.with_error_code(ResponseError::InvalidRequest.code());
    }
    let claimed = Claimed {
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
    };
    match ctx
        .node
        .txn_init(&id, req.transaction_timeout_ms, claimed)
        .await
    {
        Ok((pid, epoch)) => r
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        Err(e) => {
            tracing::debug!(transactional_id = %id, error = %e, "InitProducerId refused");
            r.with_error_code(fenced_code(txn_code(&e), version, 4))
        }
    }
}

/// The partitions of `topics` as keys, with an error for those that do not exist.
fn partition_keys(
    ctx: &Ctx,
    topics: &[AddPartitionsToTxnTopic],
) -> (Vec<PartitionKey>, Vec<(TopicName, i32, i16)>) {
    let mut keys = Vec::new();
    let mut unknown = Vec::new();
    for t in topics {
        let topic = ctx.catalog.by_name(t.name.0.as_str());
        for &p in &t.partitions {
            match &topic {
                Some(tt) if p >= 0 && p < tt.record.partitions => keys.push((tt.record.id, p)),
                _ => unknown.push((
                    t.name.clone(),
                    p,
                    ResponseError::UnknownTopicOrPartition.code(),
                )),
            }
        }
    }
    (keys, unknown)
}

/// One transaction's AddPartitionsToTxn (or its verification, KIP-890): the result of
/// every partition.
async fn add_one(
    ctx: &Ctx,
    id: &str,
    producer_id: i64,
    epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
    version: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let (keys, unknown) = partition_keys(ctx, topics);
    let code = if !unknown.is_empty() {
        // As Kafka: nothing is added; the others are OPERATION_NOT_ATTEMPTED.
        ResponseError::OperationNotAttempted.code()
    } else if verify_only {
        match verify(ctx, id, producer_id, epoch, &keys).await {
            Ok(()) => NONE,
            Err(e) => txn_code(&e),
        }
    } else {
        match ctx
            .node
            .txn_add_partitions(id, producer_id, epoch, keys)
            .await
        {
            Ok(()) => NONE,
            Err(e) => fenced_code(txn_code(&e), version, 3),
        }
    };
    let mut by_topic: BTreeMap<String, Vec<AddPartitionsToTxnPartitionResult>> = BTreeMap::new();
    for t in topics {
        for &p in &t.partitions {
            let c = unknown
                .iter()
                .find(|(n, up, _)| n == &t.name && *up == p)
                .map_or(code, |u| u.2);
            by_topic.entry(t.name.0.to_string()).or_default().push(
                AddPartitionsToTxnPartitionResult::default()
                    .with_partition_index(p)
                    .with_partition_error_code(c),
            );
        }
    }
    by_topic
        .into_iter()
        .map(|(name, parts)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(s(name)))
                .with_results_by_partition(parts)
        })
        .collect()
}

/// How long an implicit add (Produce v12+, TxnOffsetCommit v5+) waits for the previous
/// transaction's markers (CONCURRENT_TRANSACTIONS) before giving up.
const IMPLICIT_ADD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Changes the transactional id's record with `change` (compare-and-set, retried), waiting
/// out a previous transaction still writing its markers: the partitions or groups a
/// transaction-version-2 client names without AddPartitionsToTxn / AddOffsetsToTxn join its
/// transaction, from whichever node takes the request.
async fn change_directly(
    ctx: &Ctx,
    id: &str,
    change: impl Fn(&TxnRecord, i64) -> Result<Option<TxnRecord>, TxnError>,
) -> Result<(), TxnError> {
    let store = ctx.node.store();
    let storage = |e: inkless_storage::metadata::MetaError| TxnError::Storage(e.to_string());
    let deadline = tokio::time::Instant::now() + IMPLICIT_ADD_WAIT;
    loop {
        let rec = store
            .get_transaction(id)
            .await
            .map_err(storage)?
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        let outcome = match change(&rec, inkless_storage::now_ms()) {
            Ok(None) => return Ok(()),
            Ok(Some(next)) => store
                .put_transaction(next)
                .await
                .map_err(storage)?
                .map(|_| ()),
            Err(TxnError::ConcurrentTransactions) => None,
            Err(e) => return Err(e),
        };
        if outcome.is_some() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(TxnError::ConcurrentTransactions);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The implicit AddPartitionsToTxn of a transaction-version-2 Produce.
pub async fn add_partitions_direct(
    ctx: &Ctx,
    id: &str,
    producer_id: i64,
    epoch: i16,
    keys: &[PartitionKey],
) -> Result<(), TxnError> {
    change_directly(ctx, id, |rec, now| {
        inkless_actors::add_partitions(rec, producer_id, epoch, keys, now)
    })
    .await
}

/// KIP-890 verification: every partition is in the producer's running transaction.
pub async fn verify(
    ctx: &Ctx,
    id: &str,
    producer_id: i64,
    epoch: i16,
    keys: &[PartitionKey],
) -> Result<(), TxnError> {
    let rec = ctx
        .node
        .store()
        .get_transaction(id)
        .await
        .map_err(|e| TxnError::Storage(e.to_string()))?
        .ok_or(TxnError::InvalidProducerIdMapping)?;
    for k in keys {
        inkless_actors::verify_partition(&rec, producer_id, epoch, k)?;
    }
    Ok(())
}

/// AddPartitionsToTxn: v0–v3 from producers (one transaction), v4+ batched (brokers'
/// verification, KIP-890).
pub async fn add_partitions(
    ctx: &Ctx,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if version <= 3 {
        let results = add_one(
            ctx,
            req.v3_and_below_transactional_id.0.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            false,
            &req.v3_and_below_topics,
            version,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let results = add_one(
            ctx,
            t.transactional_id.0.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            t.verify_only,
            &t.topics,
            version,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

/// AddOffsetsToTxn.
pub async fn add_offsets(
    ctx: &Ctx,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let group = req.group_id.0.as_str();
    let code = if group.is_empty() || group.contains(GROUP_LIST_SEPARATOR) {
        ResponseError::InvalidGroupId.code()
    } else {
        match ctx
            .node
            .txn_add_offsets(
                req.transactional_id.0.as_str(),
                req.producer_id.0,
                req.producer_epoch,
                group,
            )
            .await
        {
            Ok(()) => NONE,
            Err(e) => fenced_code(txn_code(&e), version, 3),
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// EndTxn: answered once the decision is durable; markers are written after. From v5
/// (KIP-890 transaction version 2) the decision bumps the epoch, and the answer names the
/// producer id and epoch the client continues with.
pub async fn end(ctx: &Ctx, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let r = EndTxnResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let producer = (req.producer_id.0, req.producer_epoch);
    match ctx
        .node
        .txn_end(
            req.transactional_id.0.as_str(),
            producer,
            req.committed,
            version >= 5,
        )
        .await
    {
        Ok((pid, epoch)) => r
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        Err(e) => {
            tracing::debug!(transactional_id = %req.transactional_id.0, ?producer, commit = req.committed, version, error = %e, "EndTxn refused");
            r.with_error_code(fenced_code(txn_code(&e), version, 3))
        }
    }
}

/// Why a TxnOffsetCommit is refused before its offsets are staged, if it is.
async fn txn_offset_commit_refusal(ctx: &Ctx, req: &TxnOffsetCommitRequest) -> Option<i16> {
    let group = req.group_id.0.as_str();
    if let Some(c) = not_coordinator(ctx, group) {
        return Some(c);
    }
    let id = req.transactional_id.0.as_str();
    let rec = match ctx.node.store().get_transaction(id).await {
        Ok(Some(rec)) => rec,
        Ok(None) => return Some(ResponseError::InvalidProducerIdMapping.code()),
        Err(e) => {
            tracing::warn!(error = %e, "transaction read failed");
            return Some(ResponseError::CoordinatorNotAvailable.code());
        }
    };
    if let Err(e) = inkless_actors::check_producer(&rec, req.producer_id.0, req.producer_epoch) {
        return Some(txn_code(&e));
    }
    if rec.state != inkless_actors::TxnState::Ongoing || !rec.groups.iter().any(|g| g == group) {
        return Some(ResponseError::InvalidTxnState.code());
    }
    if req.generation_id < 0 && req.member_id.is_empty() {
        return None;
    }
    let actor = match ctx.node.group(group, false).await {
        Ok(actor) => actor,
        Err(GroupMiss::Unknown) => return None,
        Err(GroupMiss::Unavailable) => return Some(ResponseError::CoordinatorNotAvailable.code()),
    };
    let member = MemberRef {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
    };
    match actor.commit(member, req.generation_id, Vec::new()).await {
        Ok(outcome) => Some(group_outcome(outcome)).filter(|c| *c != NONE),
        Err(_) => Some(ResponseError::CoordinatorNotAvailable.code()),
    }
}

/// TxnOffsetCommit: offsets staged until the transaction commits. From v5 (KIP-890
/// transaction version 2) the client sends no AddOffsetsToTxn: the group joins the
/// transaction here.
pub async fn offset_commit(
    ctx: &Ctx,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    if version >= 5 && !req.group_id.0.contains(GROUP_LIST_SEPARATOR) {
        let (pid, epoch, group) = (
            req.producer_id.0,
            req.producer_epoch,
            req.group_id.0.as_str(),
        );
        let added = change_directly(ctx, req.transactional_id.0.as_str(), |rec, now| {
            inkless_actors::add_offsets(rec, pid, epoch, group, now)
        })
        .await;
        if let Err(e) = added {
            tracing::debug!(error = %e, "implicit AddOffsetsToTxn refused");
        }
    }
    let topics = req.topics.iter().map(|t| {
        let parts = t.partitions.iter().map(|p| OffsetInRequest {
            partition: p.partition_index,
            offset: p.committed_offset,
            leader_epoch: p.committed_leader_epoch,
            metadata: p.committed_metadata.as_deref(),
        });
        (&t.name, parts.collect())
    });
    let (offsets, plan) = plan_offsets(ctx, topics);
    let code = match txn_offset_commit_refusal(ctx, &req).await {
        Some(c) => {
            tracing::debug!(transactional_id = %req.transactional_id.0, code = c, version, "TxnOffsetCommit refused");
            c
        }
        None => match ctx
            .node
            .store()
            .stage_txn_offsets(
                req.transactional_id.0.as_str(),
                (req.producer_id.0, req.producer_epoch),
                req.group_id.0.as_str(),
                offsets,
            )
            .await
        {
            Ok(true) => NONE,
            // The transaction ended (or was fenced) since it was checked.
            Ok(false) => ResponseError::InvalidTxnState.code(),
            Err(e) => {
                tracing::warn!(error = %e, "staging transactional offsets failed");
                ResponseError::CoordinatorNotAvailable.code()
            }
        },
    };
    let topics = plan
        .into_iter()
        .map(|(name, parts)| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, c)| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(c.unwrap_or(code))
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// The topics of a record, by name, for DescribeTransactions.
fn topic_data(ctx: &Ctx, rec: &TxnRecord) -> Vec<TopicData> {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic_id, p) in &rec.partitions {
        if let Some(t) = ctx.catalog.by_id(topic_id) {
            by_topic.entry(t.record.name.clone()).or_default().push(*p);
        }
    }
    by_topic
        .into_iter()
        .map(|(name, partitions)| {
            TopicData::default()
                .with_topic(TopicName(s(name)))
                .with_partitions(partitions)
        })
        .collect()
}

/// DescribeTransactions.
pub async fn describe(ctx: &Ctx, req: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let mut out = Vec::with_capacity(req.transactional_ids.len());
    for id in &req.transactional_ids {
        let base = TransactionState::default()
            .with_transactional_id(id.clone())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        let st = if !ctx.node.live().owns_txn(id.0.as_str()) {
            base.with_error_code(ResponseError::NotCoordinator.code())
        } else {
            match ctx.node.store().get_transaction(id.0.as_str()).await {
                Ok(Some(rec)) => base
                    .with_transaction_state(s(rec.state.name()))
                    .with_transaction_timeout_ms(rec.timeout_ms)
                    .with_transaction_start_time_ms(rec.txn_start_ms)
                    .with_producer_id(ProducerId(rec.producer_id))
                    .with_producer_epoch(rec.producer_epoch)
                    .with_topics(topic_data(ctx, &rec)),
                Ok(None) => base.with_error_code(ResponseError::TransactionalIdNotFound.code()),
                Err(e) => {
                    tracing::warn!(error = %e, "transaction read failed");
                    base.with_error_code(ResponseError::CoordinatorNotAvailable.code())
                }
            }
        };
        out.push(st);
    }
    DescribeTransactionsResponse::default().with_transaction_states(out)
}

/// ListTransactions: the ids this node coordinates, filtered as asked.
pub async fn list(ctx: &Ctx, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let known = [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
    ];
    let unknown: Vec<_> = req
        .state_filters
        .iter()
        .filter(|f| !known.contains(&f.as_str()))
        .cloned()
        .collect();
    let all = match ctx.node.store().list_transactions().await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "transaction list failed");
            return ListTransactionsResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code());
        }
    };
    let live = ctx.node.live();
    let now = inkless_storage::now_ms();
    let states = all
        .into_iter()
        .filter(|r| live.owns_txn(&r.transactional_id))
        .filter(|r| {
            req.state_filters.is_empty()
                || req
                    .state_filters
                    .iter()
                    .any(|f| f.as_str() == r.state.name())
        })
        .filter(|r| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.contains(&ProducerId(r.producer_id))
        })
        .filter(|r| {
            req.duration_filter < 0
                || (r.txn_start_ms >= 0 && now - r.txn_start_ms >= req.duration_filter)
        })
        .map(|r| {
            list_transactions_response::TransactionState::default()
                .with_transactional_id(TransactionalId(s(r.transactional_id)))
                .with_producer_id(ProducerId(r.producer_id))
                .with_transaction_state(s(r.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}

/// DescribeProducers: each partition's producers as committed in the metadata store (any
/// node can answer, whichever runs the partition), with their open transaction's start.
pub async fn describe_producers(
    ctx: &Ctx,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = ctx.catalog.by_name(t.name.0.as_str());
        let mut parts = Vec::with_capacity(t.partition_indexes.len());
        for &p in &t.partition_indexes {
            let r =
                describe_producers_response::PartitionResponse::default().with_partition_index(p);
            let Some(tt) = topic
                .as_ref()
                .filter(|tt| p >= 0 && p < tt.record.partitions)
            else {
                parts.push(r.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            parts.push(
                match ctx.node.store().partition_producers(tt.record.id, p).await {
                    Ok((producers, open)) => r.with_active_producers(
                        producers
                            .into_iter()
                            .map(|pr| {
                                let start = open
                                    .iter()
                                    .find(|(pid, _)| *pid == pr.producer_id)
                                    .map_or(-1, |o| o.1);
                                describe_producers_response::ProducerState::default()
                                    .with_producer_id(ProducerId(pr.producer_id))
                                    .with_producer_epoch(i32::from(pr.producer_epoch))
                                    .with_last_sequence(pr.last_sequence)
                                    .with_last_timestamp(pr.last_write_ms)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(start)
                            })
                            .collect(),
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "producer state read failed");
                        r.with_error_code(ResponseError::KafkaStorageError.code())
                    }
                },
            );
        }
        topics.push(
            describe_producers_response::TopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}
