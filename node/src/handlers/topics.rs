//! CreateTopics, DeleteTopics and CreatePartitions.
//!
//! Diskless topics have no replicas: any replication factor (or -1) is accepted and the
//! object store provides durability; Metadata reports the single leader as the only replica.

use super::{s, Ctx};
use crate::catalog::{
    validate_topic_config, validate_topic_config_set, validate_topic_name, Topic, OFFSETS_TOPIC,
};
use inkless_actors::TopicPartition;
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use inkless_protocol::kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use inkless_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use inkless_protocol::kafka_protocol::messages::create_topics_request::CreateTopicsRequest;
use inkless_protocol::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use inkless_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use inkless_protocol::kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use inkless_protocol::kafka_protocol::messages::TopicName;
use inkless_storage::metadata::{MetaError, NewTopic};
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::Arc;

/// Largest partition count of one topic.
const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

/// A Kafka error code and message.
pub type Failure = (i16, String);

fn meta_failure(e: MetaError) -> Failure {
    match e {
        MetaError::TopicExists(n) => (
            ResponseError::TopicAlreadyExists.code(),
            format!("Topic '{n}' already exists."),
        ),
        MetaError::UnknownTopic(n) => (
            ResponseError::UnknownTopicOrPartition.code(),
            format!("Topic '{n}' does not exist."),
        ),
        MetaError::Invalid(m) => (ResponseError::InvalidPartitions.code(), m),
        other => (ResponseError::UnknownServerError.code(), other.to_string()),
    }
}

fn partitions_of(t: &Topic, from: i32) -> Vec<TopicPartition> {
    (from..t.record.partitions)
        .map(|partition| TopicPartition {
            topic_id: t.record.id,
            partition,
        })
        .collect()
}

/// Creates a topic and starts its partition actors.
pub async fn create_topic(
    ctx: &Ctx,
    name: &str,
    partitions: i32,
    configs: BTreeMap<String, String>,
) -> Result<Arc<Topic>, Failure> {
    let t = ctx
        .catalog
        .create(NewTopic {
            name: name.to_string(),
            partitions,
            configs,
        })
        .await
        .map_err(meta_failure)?;
    start_partitions(ctx, &t, 0).await?;
    Ok(t)
}

/// Creates `__consumer_offsets` if it does not exist yet (a race between nodes ends with the
/// first one's topic).
pub async fn ensure_offsets_topic(ctx: &Ctx) {
    if ctx.catalog.by_name(OFFSETS_TOPIC).is_some() {
        return;
    }
    let partitions = ctx.config.groups.offsets_topic_num_partitions;
    let configs = [("cleanup.policy".to_string(), "compact".to_string())].into();
    match create_topic(ctx, OFFSETS_TOPIC, partitions, configs).await {
        Ok(_) => tracing::info!(topic = OFFSETS_TOPIC, partitions, "internal topic created"),
        // Another node made it first; this node's catalog learns of it at its next refresh.
        Err((c, m)) if c == ResponseError::TopicAlreadyExists.code() => {
            tracing::debug!(error = %m, "internal topic created meanwhile")
        }
        Err((_, m)) => {
            tracing::warn!(topic = OFFSETS_TOPIC, error = %m, "internal topic not created")
        }
    }
}

async fn start_partitions(ctx: &Ctx, t: &Topic, from: i32) -> Result<(), Failure> {
    let failed = ctx.node.ensure_partitions(partitions_of(t, from)).await;
    if ctx.config.cluster.enabled {
        // The topic exists; a partition another node claimed first (views of the live set
        // differ for a moment) or that could not be claimed yet is retried by the partition
        // manager and served wherever placement settles (ADR 0009).
        if !failed.is_empty() {
            tracing::info!(topic = %t.record.name, partitions = failed.len(), "partitions not started here yet; retrying");
        }
        return Ok(());
    }
    match failed.first() {
        None => Ok(()),
        Some((tp, e)) => Err((
            ResponseError::UnknownServerError.code(),
            format!("partition {} failed to start: {e}", tp.partition),
        )),
    }
}

fn check_new_topic(
    ctx: &Ctx,
    t: &CreatableTopic,
) -> Result<(i32, BTreeMap<String, String>), Failure> {
    let name = t.name.0.as_str();
    validate_topic_name(name).map_err(|m| (ResponseError::InvalidTopicException.code(), m))?;
    if ctx.catalog.by_name(name).is_some() {
        return Err((
            ResponseError::TopicAlreadyExists.code(),
            format!("Topic '{name}' already exists."),
        ));
    }
    if !t.assignments.is_empty() {
        let partitions = check_assignments(ctx, t)?;
        return Ok((partitions, check_configs(t)?));
    }
    let partitions = match t.num_partitions {
        -1 => ctx.config.kafka.num_partitions,
        n if (1..=MAX_PARTITIONS_PER_TOPIC).contains(&n) => n,
        n => {
            return Err((
                ResponseError::InvalidPartitions.code(),
                format!("Number of partitions {n} is invalid."),
            ))
        }
    };
    if t.replication_factor == 0 || t.replication_factor < -1 {
        return Err((
            ResponseError::InvalidReplicationFactor.code(),
            format!("Replication factor {} is invalid.", t.replication_factor),
        ));
    }
    Ok((partitions, check_configs(t)?))
}

fn check_configs(t: &CreatableTopic) -> Result<BTreeMap<String, String>, Failure> {
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        let Some(v) = &c.value else { continue };
        validate_topic_config(c.name.as_str(), v.as_str())
            .map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
        configs.insert(c.name.to_string(), v.to_string());
    }
    validate_topic_config_set(&configs).map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
    Ok(configs)
}

/// Checks a manual replica assignment as Kafka does and returns the partition count. The
/// assignment places nothing (the object store holds every partition's data; placement
/// decides which node serves it), but it must name brokers that exist, as with Kafka.
fn check_assignments(ctx: &Ctx, t: &CreatableTopic) -> Result<i32, Failure> {
    let invalid = |m: String| Err((ResponseError::InvalidReplicaAssignment.code(), m));
    if t.num_partitions != -1 || t.replication_factor != -1 {
        return Err((
            ResponseError::InvalidRequest.code(),
            "A manual partition assignment was specified, but numPartitions or replicationFactor was not set to -1.".into(),
        ));
    }
    let brokers: HashSet<i32> = super::brokers(ctx, &ctx.node.live())
        .iter()
        .map(|b| b.id)
        .collect();
    let replicas = t.assignments[0].broker_ids.len();
    for (expected, a) in t.assignments.iter().enumerate() {
        if a.partition_index != expected as i32 {
            return invalid("Partitions should be a consecutive 0-based integer sequence.".into());
        }
        if a.broker_ids.is_empty() {
            return invalid(
                "The manual partition assignment includes an empty replica list.".into(),
            );
        }
        let distinct: HashSet<i32> = a.broker_ids.iter().map(|b| b.0).collect();
        if distinct.len() != a.broker_ids.len() {
            return invalid(format!(
                "The manual partition assignment of partition {expected} includes a duplicate broker."
            ));
        }
        if let Some(b) = distinct.iter().find(|b| !brokers.contains(b)) {
            return invalid(format!(
                "The manual partition assignment includes broker {b}, but no such broker is registered."
            ));
        }
        if a.broker_ids.len() != replicas {
            return invalid(
                "All partitions in the manual partition assignment must have the same number of replicas.".into(),
            );
        }
    }
    if t.assignments.len() > MAX_PARTITIONS_PER_TOPIC as usize {
        return Err((
            ResponseError::InvalidPartitions.code(),
            format!("Number of partitions {} is invalid.", t.assignments.len()),
        ));
    }
    Ok(t.assignments.len() as i32)
}

/// Answers CreateTopics.
pub async fn create(ctx: &Ctx, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatableTopicResult::default().with_name(TopicName(s(name.clone())));
        let outcome = match check_new_topic(ctx, &t) {
            Err(f) => Err(f),
            Ok((partitions, configs)) if req.validate_only => Ok((partitions, configs, None)),
            Ok((partitions, configs)) => create_topic(ctx, &name, partitions, configs.clone())
                .await
                .map(|topic| (partitions, configs, Some(topic))),
        };
        match outcome {
            Ok((partitions, configs, topic)) => {
                r = r
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)
                    .with_topic_id(topic.map(|t| t.record.id).unwrap_or_default());
                if version >= 5 {
                    r = r.with_configs(Some(created_configs(ctx, &configs)));
                }
            }
            Err((code, msg)) => {
                r = r
                    .with_error_code(code)
                    .with_error_message(Some(s(msg)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1);
            }
        }
        results.push(r);
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn created_configs(ctx: &Ctx, explicit: &BTreeMap<String, String>) -> Vec<CreatableTopicConfigs> {
    crate::catalog::TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let (value, source) = match explicit.get(d.name) {
                Some(v) => (v.clone(), super::configs::SOURCE_TOPIC),
                None if d.name == "max.message.bytes" => (
                    ctx.config.kafka.message_max_bytes.to_string(),
                    super::configs::SOURCE_DEFAULT,
                ),
                None => (d.default.to_string(), super::configs::SOURCE_DEFAULT),
            };
            CreatableTopicConfigs::default()
                .with_name(s(d.name))
                .with_value(Some(s(value)))
                .with_config_source(source)
        })
        .collect()
}

/// Answers DeleteTopics (by name, or by id from v6).
pub async fn delete(ctx: &Ctx, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut out = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let topic = match &name {
            Some(n) => ctx.catalog.by_name(n),
            None => ctx.catalog.by_id(&id),
        };
        let mut r = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(s(n))))
            .with_topic_id(id);
        let Some(topic) = topic else {
            let c = if name.is_none() {
                ResponseError::UnknownTopicId.code()
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            };
            out.push(r.with_error_code(c));
            continue;
        };
        if crate::catalog::is_internal(&topic.record.name) {
            out.push(
                r.with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message(Some(s("Internal topics cannot be deleted"))),
            );
            continue;
        }
        ctx.node.remove_partitions(partitions_of(&topic, 0)).await;
        match ctx.catalog.delete(&topic.record.name).await {
            Ok(t) => {
                tracing::info!(topic = %t.record.name, "topic deleted");
                r = r
                    .with_name(Some(TopicName(s(t.record.name.clone()))))
                    .with_topic_id(t.record.id);
            }
            Err(e) => {
                let (c, m) = meta_failure(e);
                r = r.with_error_code(c).with_error_message(Some(s(m)));
            }
        }
        out.push(r);
    }
    DeleteTopicsResponse::default().with_responses(out)
}

/// Refuses a new partition count that is not an increase (with Kafka's messages) or is
/// above the limit.
fn check_partition_increase(name: &str, before: i32, count: i32) -> Result<(), Failure> {
    let refused = |m: String| Err((ResponseError::InvalidPartitions.code(), m));
    if count == before {
        return refused(format!("Topic already has {before} partition(s)."));
    }
    if count < before {
        return refused(format!(
            "The topic {name} currently has {before} partition(s); {count} would not be an increase."
        ));
    }
    if count > MAX_PARTITIONS_PER_TOPIC {
        return refused(format!(
            "{count} partitions is above the limit of {MAX_PARTITIONS_PER_TOPIC} per topic."
        ));
    }
    Ok(())
}

/// Answers CreatePartitions.
pub async fn create_partitions(
    ctx: &Ctx,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let r = CreatePartitionsTopicResult::default().with_name(TopicName(s(name.clone())));
        let outcome: Result<(), Failure> = async {
            let topic = ctx.catalog.by_name(&name).ok_or((
                ResponseError::UnknownTopicOrPartition.code(),
                format!("Topic '{name}' does not exist."),
            ))?;
            if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
                return Err((
                    ResponseError::InvalidReplicaAssignment.code(),
                    "Manual replica assignment is not supported.".to_string(),
                ));
            }
            let before = topic.record.partitions;
            check_partition_increase(&name, before, t.count)?;
            if req.validate_only {
                return Ok(());
            }
            let grown = ctx
                .catalog
                .grow(&name, t.count)
                .await
                .map_err(meta_failure)?;
            start_partitions(ctx, &grown, before).await
        }
        .await;
        results.push(match outcome {
            Ok(()) => r,
            Err((c, m)) => r.with_error_code(c).with_error_message(Some(s(m))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
