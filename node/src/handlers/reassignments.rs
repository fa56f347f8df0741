//! AlterPartitionReassignments and ListPartitionReassignments: what
//! `kafka-reassign-partitions` uses, mapped onto placement (ADR 0013).
//!
//! A partition has one replica, the node placement gives it. A reassignment pins the
//! partition to the first listed replica that is live (else the first listed): placement
//! gives it that node while it is live, and the old owner hands it over as in any move. A
//! null replica list cancels a reassignment in progress by removing the pin, so hashing
//! places the partition again. Replicas must name brokers that Metadata lists (live, or
//! lapsed a moment ago), each once, as Kafka requires of registered brokers.
//!
//! A partition is being reassigned while its pin names a live node that does not hold it
//! yet; ListPartitionReassignments then reports replicas = [target, holder], adding =
//! [target] and removing = [holder], as Kafka does between the two replica sets. Once the
//! target holds it, the reassignment is complete: Metadata reports replicas = [target],
//! which is what `kafka-reassign-partitions --verify` compares with.

use super::{refresh_if_unknown, s, Ctx, NONE};
use inkless_actors::{LiveSet, TopicPartition};
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::alter_partition_reassignments_request::AlterPartitionReassignmentsRequest;
use inkless_protocol::kafka_protocol::messages::alter_partition_reassignments_response::{
    AlterPartitionReassignmentsResponse, ReassignablePartitionResponse, ReassignableTopicResponse,
};
use inkless_protocol::kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsRequest;
use inkless_protocol::kafka_protocol::messages::list_partition_reassignments_response::{
    ListPartitionReassignmentsResponse, OngoingPartitionReassignment, OngoingTopicReassignment,
};
use inkless_protocol::kafka_protocol::messages::{BrokerId, TopicName};
use inkless_storage::metadata::{MetaError, PartitionPin};
use std::collections::{BTreeMap, HashMap};

/// A Kafka error code and message.
type Failure = (i16, String);

/// What one partition of an AlterPartitionReassignments asks for, once checked.
enum Change {
    /// Pin it to this node.
    Pin(i32),
    /// Remove its pin (a cancel).
    Cancel,
}

/// Pins and their holders, by partition.
type PinTable = HashMap<TopicPartition, PartitionPin>;

/// Answers AlterPartitionReassignments.
pub async fn alter(
    ctx: &Ctx,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    // Version 0 has no flag: changing the replication factor was always allowed.
    let allow_rf_change = version == 0 || req.allow_replication_factor_change;
    refresh_if_unknown(ctx, req.topics.iter().map(|t| t.name.0.as_str())).await;
    let cancels = req
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| p.replicas.is_none());
    let pins = if cancels {
        read_pins(ctx).await
    } else {
        Ok(PinTable::new())
    };
    let pins = match pins {
        Ok(p) => p,
        Err(failure) => return refused(&req, allow_rf_change, failure),
    };
    let (checked, changes) = check_all(ctx, &req, &pins, allow_rf_change);
    let stored = store(ctx, changes).await;
    let responses = checked
        .into_iter()
        .map(|(name, results)| {
            let partitions = results
                .into_iter()
                .map(|(p, r)| partition_response(p, r.and_then(|()| stored.clone())))
                .collect();
            ReassignableTopicResponse::default()
                .with_name(TopicName(s(name)))
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_error_code(NONE)
        .with_error_message(None)
        .with_responses(responses)
}

/// Each topic of a request with the outcome of checking each of its partitions.
type Checked = Vec<(String, Vec<(i32, Result<(), Failure>)>)>;

/// Checks every partition of the request; returns the outcomes and the accepted changes.
fn check_all(
    ctx: &Ctx,
    req: &AlterPartitionReassignmentsRequest,
    pins: &PinTable,
    allow_rf_change: bool,
) -> (Checked, Vec<(TopicPartition, Change)>) {
    let live = ctx.node.live();
    let mut changes = Vec::new();
    let checked = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.as_str();
            let results = t
                .partitions
                .iter()
                .map(|p| {
                    let outcome = rf_allowed(allow_rf_change, &p.replicas)
                        .and_then(|()| {
                            check(ctx, &live, pins, name, p.partition_index, &p.replicas)
                        })
                        .map(|change| changes.push(change));
                    (p.partition_index, outcome)
                })
                .collect();
            (name.to_string(), results)
        })
        .collect();
    (checked, changes)
}

/// Checks one partition of the request: the partition, and the replicas it names.
fn check(
    ctx: &Ctx,
    live: &LiveSet,
    pins: &PinTable,
    topic: &str,
    partition: i32,
    replicas: &Option<Vec<BrokerId>>,
) -> Result<(TopicPartition, Change), Failure> {
    let unknown = || {
        (
            ResponseError::UnknownTopicOrPartition.code(),
            format!("Unknown topic or partition: {topic}-{partition}."),
        )
    };
    let t = ctx.catalog.by_name(topic).ok_or_else(unknown)?;
    if partition < 0 || partition >= t.record.partitions {
        return Err(unknown());
    }
    let tp = TopicPartition {
        topic_id: t.record.id,
        partition,
    };
    match replicas {
        Some(replicas) => Ok((tp, Change::Pin(target(live, replicas)?))),
        None if in_progress(live, pins.get(&tp)) => Ok((tp, Change::Cancel)),
        None => Err((
            ResponseError::NoReassignmentInProgress.code(),
            format!("No ongoing reassignment for partition {topic}-{partition}."),
        )),
    }
}

/// The node a replica list pins its partition to: the first listed live broker, else the
/// first listed. Refused as Kafka refuses a manual assignment: empty, naming a broker twice,
/// or naming one that is not registered (here: that Metadata does not list).
fn target(live: &LiveSet, replicas: &[BrokerId]) -> Result<i32, Failure> {
    let invalid = |m: String| (ResponseError::InvalidReplicaAssignment.code(), m);
    let Some(first) = replicas.first() else {
        return Err(invalid(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    };
    let mut sorted: Vec<i32> = replicas.iter().map(|b| b.0).collect();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(invalid(format!(
            "The manual partition assignment includes the broker {} more than once.",
            w[0]
        )));
    }
    let known = |id: i32| live.node(id).is_some() || live.lapsed.iter().any(|n| n.node_id == id);
    if let Some(id) = sorted.iter().find(|id| !known(**id)) {
        return Err(invalid(format!(
            "The manual partition assignment includes broker {id}, but no such broker is registered."
        )));
    }
    Ok(replicas
        .iter()
        .map(|b| b.0)
        .find(|id| live.node(*id).is_some())
        .unwrap_or(first.0))
}

/// Kafka's check of `allow_replication_factor_change` (KIP-860): every partition has one
/// replica, so a list of another length changes the replication factor.
fn rf_allowed(allowed: bool, replicas: &Option<Vec<BrokerId>>) -> Result<(), Failure> {
    match replicas {
        Some(r) if !allowed && r.len() != 1 => Err((
            ResponseError::InvalidReplicaAssignment.code(),
            format!(
                "The replication factor is changed from 1 to {} but the request disallows it.",
                r.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// True while a pin names a live node that does not hold its partition yet (and is not
/// draining: a pin to a draining node is dormant, ADR 0021).
fn in_progress(live: &LiveSet, pin: Option<&PartitionPin>) -> bool {
    pin.is_some_and(|p| {
        live.node(p.node_id).is_some()
            && !live.is_draining(p.node_id)
            && p.holder != Some(p.node_id)
    })
}

/// Stores every accepted change in one transaction.
async fn store(ctx: &Ctx, changes: Vec<(TopicPartition, Change)>) -> Result<(), Failure> {
    if changes.is_empty() {
        return Ok(());
    }
    let pins = changes
        .into_iter()
        .map(|(tp, c)| match c {
            Change::Pin(node) => (tp, Some(node)),
            Change::Cancel => (tp, None),
        })
        .collect();
    ctx.node.set_partition_pins(pins).await.map_err(|e| {
        tracing::warn!(error = %e, "could not store partition reassignments");
        meta_failure(e)
    })
}

fn meta_failure(e: MetaError) -> Failure {
    match e {
        // A topic deleted meanwhile.
        MetaError::UnknownPartition(..) => {
            (ResponseError::UnknownTopicOrPartition.code(), e.to_string())
        }
        other => (ResponseError::UnknownServerError.code(), other.to_string()),
    }
}

/// Every pin, by partition.
async fn read_pins(ctx: &Ctx) -> Result<PinTable, Failure> {
    let pins = ctx
        .node
        .store()
        .partition_pins()
        .await
        .map_err(meta_failure)?;
    Ok(pins
        .into_iter()
        .map(|p| {
            let (topic_id, partition) = p.partition;
            let tp = TopicPartition {
                topic_id,
                partition,
            };
            (tp, p)
        })
        .collect())
}

fn partition_response(partition: i32, r: Result<(), Failure>) -> ReassignablePartitionResponse {
    let (code, message) = match r {
        Ok(()) => (NONE, None),
        Err((code, m)) => (code, Some(s(m))),
    };
    ReassignablePartitionResponse::default()
        .with_partition_index(partition)
        .with_error_code(code)
        .with_error_message(message)
}

/// The answer when nothing could be checked: the error for every partition named.
fn refused(
    req: &AlterPartitionReassignmentsRequest,
    allow_rf_change: bool,
    (code, message): Failure,
) -> AlterPartitionReassignmentsResponse {
    let responses = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| partition_response(p.partition_index, Err((code, message.clone()))))
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_error_code(NONE)
        .with_error_message(None)
        .with_responses(responses)
}

/// Answers ListPartitionReassignments: the partitions whose pin names a live node that does
/// not hold them yet, among those asked for (all with a null topic list). Partitions that do
/// not exist are left out, as Kafka does.
pub async fn list(
    ctx: &Ctx,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let pins = match read_pins(ctx).await {
        Ok(p) => p,
        Err((code, message)) => {
            return ListPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(Some(s(message)))
        }
    };
    let live = ctx.node.live();
    let wanted: Option<HashMap<&str, &[i32]>> = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.0.as_str(), t.partition_indexes.as_slice()))
            .collect()
    });
    let mut ongoing: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    for pin in pins.values().filter(|p| in_progress(&live, Some(p))) {
        let Some(t) = ctx.catalog.by_id(&pin.partition.0) else {
            continue;
        };
        let name = t.record.name.as_str();
        let asked = wanted
            .as_ref()
            .is_none_or(|w| w.get(name).is_some_and(|ps| ps.contains(&pin.partition.1)));
        if asked {
            ongoing
                .entry(name.to_string())
                .or_default()
                .push(ongoing_partition(pin));
        }
    }
    let topics = ongoing
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            OngoingTopicReassignment::default()
                .with_name(TopicName(s(name)))
                .with_partitions(partitions)
        })
        .collect();
    ListPartitionReassignmentsResponse::default()
        .with_error_code(NONE)
        .with_error_message(None)
        .with_topics(topics)
}

/// A reassignment in progress as Kafka reports one: the target and the current holder are
/// both replicas; the target is being added, the holder removed.
fn ongoing_partition(pin: &PartitionPin) -> OngoingPartitionReassignment {
    let target = BrokerId(pin.node_id);
    let holder = pin.holder.filter(|h| *h != pin.node_id).map(BrokerId);
    OngoingPartitionReassignment::default()
        .with_partition_index(pin.partition.1)
        .with_replicas([Some(target), holder].into_iter().flatten().collect())
        .with_adding_replicas(vec![target])
        .with_removing_replicas(holder.into_iter().collect())
}
