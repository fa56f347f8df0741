//! DescribeTopicPartitions (KIP-966): the partitions of many topics, in pages. Kafka's
//! admin client uses it for describeTopics (so `kafka-topics --describe`) from 3.8 on.
//!
//! Topics are answered in name order, at most `response_partition_limit` partitions (capped
//! at [`MAX_PARTITIONS`]) per response; `next_cursor` names the first partition left out.
//! Leaders are those Metadata reports (see [`super::metadata`]); a partition has no replica
//! besides its leader, so replicas and ISR are the leader and the eligible-leader sets are
//! empty.

use super::metadata::{client_az, leader};
use super::{s, Ctx, AUTHORIZED_OPERATIONS_OMITTED, NONE};
use crate::catalog::{validate_topic_name, Topic};
use inkless_actors::LiveSet;
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::describe_topic_partitions_request::DescribeTopicPartitionsRequest;
use inkless_protocol::kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponse, DescribeTopicPartitionsResponsePartition,
    DescribeTopicPartitionsResponseTopic,
};
use inkless_protocol::kafka_protocol::messages::{BrokerId, TopicName};
use std::collections::BTreeSet;

/// Most partitions in one response (Kafka's `max.request.partition.size.limit` default).
pub const MAX_PARTITIONS: i32 = 2000;

/// Where a page starts: a topic name and the first partition of that topic.
struct Start {
    topic: String,
    partition: i32,
}

/// Answers DescribeTopicPartitions.
pub async fn handle(
    ctx: &Ctx,
    req: DescribeTopicPartitionsRequest,
    client_id: &str,
) -> DescribeTopicPartitionsResponse {
    let start = req.cursor.as_ref().map(|c| Start {
        topic: c.topic_name.0.to_string(),
        partition: c.partition_index,
    });
    let every_topic = req.topics.is_empty();
    let names = match topic_names(ctx, &req, start.as_ref()).await {
        Ok(names) => names,
        Err(msg) => return refused(&req, &msg),
    };
    let limit = req.response_partition_limit.clamp(1, MAX_PARTITIONS);
    let live = ctx.node.live();
    page(
        ctx,
        &live,
        client_az(client_id),
        names,
        start.as_ref(),
        limit,
        every_topic,
    )
}

/// The topics to describe, sorted, from the cursor's topic on; an error message when the
/// cursor is invalid (INVALID_REQUEST for the whole request, as in Kafka).
async fn topic_names(
    ctx: &Ctx,
    req: &DescribeTopicPartitionsRequest,
    start: Option<&Start>,
) -> Result<Vec<String>, String> {
    let from = start.map_or("", |c| c.topic.as_str());
    let names: BTreeSet<String> = if req.topics.is_empty() {
        ctx.catalog
            .all()
            .iter()
            .map(|t| t.record.name.clone())
            .collect()
    } else {
        let asked: BTreeSet<String> = req.topics.iter().map(|t| t.name.0.to_string()).collect();
        if let Some(c) = start.filter(|c| !asked.contains(&c.topic)) {
            return Err(format!(
                "DescribeTopicPartitionsRequest topic list should contain the cursor topic: {}",
                c.topic
            ));
        }
        super::refresh_if_unknown(ctx, asked.iter().map(String::as_str)).await;
        asked
    };
    if let Some(c) = start.filter(|c| c.partition < 0) {
        return Err(format!(
            "DescribeTopicPartitionsRequest cursor partition must be valid: {}-{}",
            c.topic, c.partition
        ));
    }
    Ok(names.into_iter().filter(|n| n.as_str() >= from).collect())
}

/// One page of `names`: topics in order until `limit` partitions are answered. Unknown
/// topics are reported only when they were asked for by name.
fn page(
    ctx: &Ctx,
    live: &LiveSet,
    az: &str,
    names: Vec<String>,
    start: Option<&Start>,
    limit: i32,
    every_topic: bool,
) -> DescribeTopicPartitionsResponse {
    let mut remaining = limit;
    let mut topics = Vec::new();
    let mut next = None;
    for name in names {
        if remaining == 0 {
            next = Some(cursor(&name, 0));
            break;
        }
        let Some(t) = ctx.catalog.by_name(&name) else {
            if !every_topic {
                topics.push(unknown_topic(name));
            }
            continue;
        };
        let first = start.filter(|c| c.topic == name).map_or(0, |c| c.partition);
        let end = t.record.partitions.min(first.saturating_add(remaining));
        let partitions: Vec<_> = (first..end)
            .map(|p| partition(ctx, live, &t, p, az))
            .collect();
        let answered = partitions.len() as i32;
        topics.push(topic_entry(&t, partitions));
        if end < t.record.partitions {
            next = Some(cursor(&name, end));
            break;
        }
        remaining -= answered;
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next)
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(TopicName(s(topic)))
        .with_partition_index(partition)
}

fn partition(
    ctx: &Ctx,
    live: &LiveSet,
    t: &Topic,
    p: i32,
    az: &str,
) -> DescribeTopicPartitionsResponsePartition {
    let replicas: Vec<BrokerId> = leader(live, t, p, az).map(BrokerId).into_iter().collect();
    DescribeTopicPartitionsResponsePartition::default()
        .with_error_code(NONE)
        .with_partition_index(p)
        .with_leader_id(replicas.first().copied().unwrap_or(BrokerId(-1)))
        .with_leader_epoch(super::leader_epoch(
            ctx,
            &inkless_actors::TopicPartition {
                topic_id: t.record.id,
                partition: p,
            },
        ))
        .with_replica_nodes(replicas.clone())
        .with_isr_nodes(replicas)
        .with_eligible_leader_replicas(Some(Vec::new()))
        .with_last_known_elr(Some(Vec::new()))
}

fn topic_entry(
    t: &Topic,
    partitions: Vec<DescribeTopicPartitionsResponsePartition>,
) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(NONE)
        .with_name(Some(TopicName(s(t.record.name.clone()))))
        .with_topic_id(t.record.id)
        .with_is_internal(crate::catalog::is_internal(&t.record.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn unknown_topic(name: String) -> DescribeTopicPartitionsResponseTopic {
    let code = if validate_topic_name(&name).is_ok() {
        ResponseError::UnknownTopicOrPartition.code()
    } else {
        ResponseError::InvalidTopicException.code()
    };
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(code)
        .with_name(Some(TopicName(s(name))))
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// The answer to an invalid request: INVALID_REQUEST for every topic asked for.
fn refused(req: &DescribeTopicPartitionsRequest, msg: &str) -> DescribeTopicPartitionsResponse {
    tracing::debug!(reason = msg, "DescribeTopicPartitions refused");
    let topics = req
        .topics
        .iter()
        .map(|t| {
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_name(Some(t.name.clone()))
                .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
        })
        .collect();
    DescribeTopicPartitionsResponse::default().with_topics(topics)
}
