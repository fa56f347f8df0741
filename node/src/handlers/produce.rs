//! Produce: validates batches, hands them to the ProduceBuffer and answers once they are
//! durable (object stored and metadata committed), or not at all for acks=0.
//!
//! Validation happens here, before anything is buffered: magic 2, lengths and record
//! count, CRC-32C, `max.message.bytes`, no control batches from clients, transactional
//! batches only in transactional requests and only for partitions of the producer's running
//! transaction (KIP-890 verification against the coordinator's record in the store); topics with `message.timestamp.type=LogAppendTime`
//! get the append time stamped into their batches. Batches are decompressed only for
//! compacted topics, whose records must all have a key (else INVALID_RECORD, as Kafka).
//! Node-wide back-pressure: a request waits for `produce.max_bytes_in_flight` budget before
//! it is buffered.

use super::{s, Ctx};
use inkless_actors::{AppendAck, AppendError, PartAppend, TopicPartition, TxnError};
use inkless_protocol::batch::{self, BatchError, BatchHeader, ValidatedBatch};
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::produce_request::ProduceRequest;
use inkless_protocol::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use inkless_storage::metadata::TxnRecord;
use std::time::Duration;
use tokio::sync::oneshot;

/// Shortest wait for an acknowledgement, whatever the request's timeout says.
const MIN_ACK_WAIT: Duration = Duration::from_secs(1);

fn error(index: i32, c: i16, msg: impl Into<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(c)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(Some(s(msg)))
}

/// Maps an append failure to Kafka's error code.
pub fn append_error_code(e: &AppendError) -> i16 {
    match e {
        AppendError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber.code(),
        AppendError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch.code(),
        AppendError::NotOwner | AppendError::Unavailable(_) => {
            ResponseError::NotLeaderOrFollower.code()
        }
        AppendError::Storage(_) | AppendError::Metadata(_) => {
            ResponseError::KafkaStorageError.code()
        }
        AppendError::TimedOut | AppendError::Indeterminate(_) => {
            ResponseError::RequestTimedOut.code()
        }
    }
}

fn batch_error_code(e: &BatchError) -> i16 {
    match e {
        BatchError::InvalidRecordCount { .. } => ResponseError::InvalidRecord.code(),
        _ => ResponseError::CorruptMessage.code(),
    }
}

/// Validates one partition's records; returns the batches ready to buffer and the append
/// time stamped into them (LogAppendTime topics).
fn validate(
    records: Option<&bytes::Bytes>,
    topic: &crate::catalog::Topic,
    transactional: bool,
) -> Result<(Vec<ValidatedBatch>, i64), (i16, String)> {
    let max_message_bytes = topic.max_message_bytes;
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Err((
            ResponseError::CorruptMessage.code(),
            "Produce request has no records".into(),
        ));
    };
    let mut batches =
        batch::split_and_validate(records).map_err(|e| (batch_error_code(&e), e.to_string()))?;
    if batches.len() != 1 {
        // As Kafka since Produce v3: exactly one batch per partition per request.
        return Err((
            ResponseError::InvalidRecord.code(),
            "Produce requests must have exactly one record batch per partition".into(),
        ));
    }
    for b in &batches {
        if b.bytes.len() as i64 > max_message_bytes {
            return Err((
                ResponseError::MessageTooLarge.code(),
                format!(
                    "Batch of {} bytes exceeds max.message.bytes {max_message_bytes}",
                    b.bytes.len()
                ),
            ));
        }
        if b.header.is_control() {
            return Err((
                ResponseError::InvalidRecord.code(),
                "Clients cannot write control batches".into(),
            ));
        }
        if b.header.is_transactional() != transactional {
            return Err((
                ResponseError::InvalidRecord.code(),
                match transactional {
                    true => "A transactional produce request holds only transactional batches",
                    false => "Transactional batches need the request's transactional id",
                }
                .into(),
            ));
        }
        if topic.compaction.is_some() {
            require_keys(b)?;
        }
    }
    let mut append_time = -1;
    if topic.log_append_time {
        append_time = inkless_storage::now_ms();
        for b in &mut batches {
            b.bytes = batch::set_log_append_time(&b.bytes, append_time);
            b.header = BatchHeader::parse(&b.bytes)
                .map_err(|e| (ResponseError::CorruptMessage.code(), e.to_string()))?;
        }
    }
    Ok((batches, append_time))
}

/// The transactional id's record as read for a transactional request.
type TxnLookup = Result<Option<TxnRecord>, inkless_storage::metadata::MetaError>;

/// Produce v12+ from a transactional producer (KIP-890 transaction version 2): the client
/// sends no AddPartitionsToTxn, so the partitions of the request join its transaction here
/// (starting it if none runs) before they are verified. The producer is the one of the
/// request's first batch; a refusal leaves the record as it was, and verification answers.
async fn add_implicitly(ctx: &Ctx, id: &str, req: &ProduceRequest) -> TxnLookup {
    let mut keys = Vec::new();
    let mut producer = None;
    for t in &req.topic_data {
        let Some(topic) = ctx.catalog.by_name(t.name.0.as_str()) else {
            continue;
        };
        for p in t.partition_data.iter().filter(|p| p.index >= 0) {
            if p.index < topic.record.partitions {
                keys.push((topic.record.id, p.index));
            }
            let first = p.records.as_ref().and_then(|r| BatchHeader::parse(r).ok());
            producer = producer.or(first.map(|h| (h.producer_id, h.producer_epoch)));
        }
    }
    if let Some((pid, epoch)) = producer {
        if let Err(e) = super::txn::add_partitions_direct(ctx, id, pid, epoch, &keys).await {
            tracing::debug!(transactional_id = %id, error = %e, "implicit AddPartitionsToTxn refused");
        }
    }
    ctx.node.store().get_transaction(id).await
}

/// KIP-890's verification of transactional batches: the partition must be in the
/// producer's running transaction (AddPartitionsToTxn came first), with its current
/// producer id and epoch; otherwise nothing is written.
fn verify(
    txn: Option<&TxnLookup>,
    batches: &[ValidatedBatch],
    tp: TopicPartition,
) -> Result<(), (i16, String)> {
    let Some(lookup) = txn else {
        return Ok(());
    };
    let rec = match lookup {
        Ok(Some(rec)) => rec,
        Ok(None) => {
            return Err((
                ResponseError::InvalidProducerIdMapping.code(),
                "Unknown transactional id".into(),
            ))
        }
        Err(e) => return Err((ResponseError::KafkaStorageError.code(), e.to_string())),
    };
    for b in batches {
        let h = &b.header;
        if let Err(e) = inkless_actors::verify_partition(
            rec,
            h.producer_id,
            h.producer_epoch,
            &(tp.topic_id, tp.partition),
        ) {
            let code = match &e {
                TxnError::ProducerFenced => ResponseError::InvalidProducerEpoch.code(),
                other => super::txn::txn_code(other),
            };
            return Err((code, format!("Transaction verification failed: {e}")));
        }
    }
    Ok(())
}

/// Refuses a batch with a record without a key (compacted topics).
fn require_keys(b: &ValidatedBatch) -> Result<(), (i16, String)> {
    match inkless_protocol::records::all_records_keyed(&b.bytes) {
        Ok(true) => Ok(()),
        Ok(false) => Err((
            ResponseError::InvalidRecord.code(),
            "Compacted topic cannot accept message without key".into(),
        )),
        Err(e) => Err((ResponseError::CorruptMessage.code(), e.to_string())),
    }
}

enum Slot {
    Done(PartitionProduceResponse),
    Waiting {
        index: i32,
        append_time: i64,
        rx: oneshot::Receiver<Result<AppendAck, AppendError>>,
    },
}

/// A produce request whose batches were handed to the produce buffer; [`Submitted::finish`]
/// waits for the answers.
pub struct Submitted {
    acks: i16,
    deadline: tokio::time::Instant,
    topics: Vec<(String, Vec<Slot>)>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// When the batches went to the produce buffer (the `ack` stage starts).
    handed_at: Option<std::time::Instant>,
}

/// Validates a Produce request and hands its batches to the produce buffer. Requests of one
/// connection must be submitted in the order they arrived (the connection does this before
/// processing the next request), so that an idempotent producer's pipelined batches reach
/// their partitions in sequence order.
pub async fn submit(ctx: &Ctx, req: ProduceRequest, version: i16) -> Submitted {
    let acks = req.acks;
    let txn = match &req.transactional_id {
        Some(id) if version >= 12 => Some(add_implicitly(ctx, id.0.as_str(), &req).await),
        Some(id) => Some(ctx.node.store().get_transaction(id.0.as_str()).await),
        None => None,
    };
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut parts = Vec::new();
    let mut bytes_total = 0usize;
    for t in req.topic_data {
        let name = t.name.0.to_string();
        let topic = ctx.catalog.by_name(&name);
        let mut slots = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let index = p.index;
            let slot = if crate::catalog::is_internal(&name) {
                Slot::Done(error(
                    index,
                    ResponseError::InvalidTopicException.code(),
                    format!("Cannot append to internal topic {name}"),
                ))
            } else if !matches!(acks, -1..=1) {
                Slot::Done(error(
                    index,
                    ResponseError::InvalidRequiredAcks.code(),
                    format!("Invalid acks {acks}"),
                ))
            } else {
                let tp = topic.as_ref().map(|t| TopicPartition {
                    topic_id: t.record.id,
                    partition: index,
                });
                match (&topic, tp) {
                    // No live node owns it (it is moving): the client refreshes metadata.
                    (Some(topic), Some(tp))
                        if index >= 0
                            && index < topic.record.partitions
                            && !ctx.node.serves(&tp) =>
                    {
                        Slot::Done(error(
                            index,
                            ResponseError::NotLeaderOrFollower.code(),
                            "This node does not lead the partition.",
                        ))
                    }
                    (Some(topic), Some(tp)) if index >= 0 && index < topic.record.partitions => {
                        let checked = validate(p.records.as_ref(), topic, txn.is_some())
                            .and_then(|v| verify(txn.as_ref(), &v.0, tp).map(|()| v));
                        match checked {
                            Ok((batches, append_time)) => {
                                bytes_total += batches.iter().map(|b| b.bytes.len()).sum::<usize>();
                                let (tx, rx) = oneshot::channel();
                                parts.push(PartAppend {
                                    tp,
                                    batches,
                                    reply: tx,
                                });
                                Slot::Waiting {
                                    index,
                                    append_time,
                                    rx,
                                }
                            }
                            Err((c, m)) => {
                                tracing::debug!(topic = %name, partition = index, error = %m, "produce refused");
                                Slot::Done(error(index, c, m))
                            }
                        }
                    }
                    _ => Slot::Done(error(
                        index,
                        ResponseError::UnknownTopicOrPartition.code(),
                        "This server does not host this topic-partition.",
                    )),
                }
            };
            slots.push(slot);
        }
        topics.push((name, slots));
    }

    let wait = Duration::from_millis(req.timeout_ms.max(0) as u64).max(MIN_ACK_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let mut permit = None;
    let mut handed_at = None;
    if !parts.is_empty() {
        let want = bytes_total.clamp(1, ctx.config.produce_budget_permits() as usize) as u32;
        let budget = ctx.produce_budget.clone().acquire_many_owned(want);
        match tokio::time::timeout_at(deadline, budget).await {
            Ok(Ok(p)) => {
                permit = Some(p);
                handed_at = Some(std::time::Instant::now());
                if let Err(e) = ctx.node.produce(parts) {
                    tracing::warn!(error = %e, "produce buffer unavailable");
                }
            }
            _ => {
                tracing::warn!(
                    bytes = bytes_total,
                    "produce back-pressure: no budget within the request timeout"
                );
                for p in parts {
                    let _ = p.reply.send(Err(AppendError::TimedOut));
                }
            }
        }
    }

    Submitted {
        acks,
        deadline,
        topics,
        permit,
        handed_at,
    }
}

impl Submitted {
    /// Waits for every partition's outcome; `None` for acks=0.
    pub async fn finish(self) -> Option<ProduceResponse> {
        let Submitted {
            acks,
            deadline,
            topics,
            permit,
            handed_at,
        } = self;
        if acks == 0 {
            // No answer; keep the budget until the appends settle.
            tokio::spawn(async move {
                for (_, slots) in topics {
                    for slot in slots {
                        if let Slot::Waiting { rx, .. } = slot {
                            let _ = rx.await;
                        }
                    }
                }
                drop(permit);
            });
            return None;
        }

        let mut responses = Vec::with_capacity(topics.len());
        for (name, slots) in topics {
            let mut out = Vec::with_capacity(slots.len());
            for slot in slots {
                out.push(match slot {
                    Slot::Done(r) => r,
                    Slot::Waiting {
                        index,
                        append_time,
                        rx,
                    } => match tokio::time::timeout_at(deadline, rx).await {
                        Ok(Ok(Ok(ack))) => PartitionProduceResponse::default()
                            .with_index(index)
                            .with_base_offset(ack.base_offset)
                            .with_log_append_time_ms(append_time)
                            .with_log_start_offset(ack.log_start_offset),
                        Ok(Ok(Err(e))) => error(index, append_error_code(&e), e.to_string()),
                        // Dropped on the way: it may have been committed, so not NOT_LEADER
                        // (which tells the client it was not, and makes it resend freely).
                        Ok(Err(_)) => error(
                            index,
                            ResponseError::RequestTimedOut.code(),
                            "append outcome unknown; retry",
                        ),
                        Err(_) => error(
                            index,
                            ResponseError::RequestTimedOut.code(),
                            "append not durable within the request timeout",
                        ),
                    },
                });
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(inkless_protocol::kafka_protocol::messages::TopicName(s(
                        name,
                    )))
                    .with_partition_responses(out),
            );
        }
        drop(permit);
        if let Some(t) = handed_at {
            inkless_actors::metrics::produce_acked(t.elapsed());
        }
        Some(ProduceResponse::default().with_responses(responses))
    }
}
