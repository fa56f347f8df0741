//! DescribeConfigs (topics and the broker), IncrementalAlterConfigs and the legacy
//! AlterConfigs (topics).

use super::{s, Ctx};
use crate::catalog::{
    topic_config_def, validate_topic_config, validate_topic_config_set, Topic, TOPIC_CONFIGS,
};
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::alter_configs_request::{
    AlterConfigsRequest, AlterConfigsResource,
};
use inkless_protocol::kafka_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse as LegacyResourceResponse, AlterConfigsResponse,
};
use inkless_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsRequest;
use inkless_protocol::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};
use inkless_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterableConfig, IncrementalAlterConfigsRequest,
};
use inkless_protocol::kafka_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A Kafka error code and message.
type Failure = (i16, String);

/// Kafka's resource type of topics.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's resource type of brokers.
pub const RESOURCE_BROKER: i8 = 4;
/// Config source: set on the topic.
pub const SOURCE_TOPIC: i8 = 1;
/// Config source: static broker config.
pub const SOURCE_STATIC_BROKER: i8 = 4;
/// Config source: default.
pub const SOURCE_DEFAULT: i8 = 5;

struct Entry {
    name: String,
    value: String,
    source: i8,
    kind: i8,
    doc: &'static str,
    read_only: bool,
}

fn entry_result(e: Entry, synonyms: bool, docs: bool) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(s(e.name.clone()))
        .with_value(Some(s(e.value.clone())))
        .with_read_only(e.read_only)
        .with_config_source(e.source)
        .with_config_type(e.kind);
    if synonyms {
        r = r.with_synonyms(vec![DescribeConfigsSynonym::default()
            .with_name(s(e.name))
            .with_value(Some(s(e.value)))
            .with_source(e.source)]);
    }
    if docs {
        r = r.with_documentation(Some(s(e.doc)));
    }
    r
}

fn broker_entries(ctx: &Ctx) -> Vec<Entry> {
    let k = &ctx.config.kafka;
    let p = &ctx.config.produce;
    let items: Vec<(&str, String, i8, &'static str)> = vec![
        ("broker.id", ctx.config.node.id.to_string(), 3, "Node id."),
        (
            "broker.rack",
            ctx.config.node.rack.clone(),
            2,
            "Availability zone.",
        ),
        (
            "auto.create.topics.enable",
            k.auto_create_topics_enable.to_string(),
            1,
            "Create unknown topics on Metadata.",
        ),
        (
            "num.partitions",
            k.num_partitions.to_string(),
            3,
            "Partitions of auto-created topics.",
        ),
        (
            "message.max.bytes",
            k.message_max_bytes.to_string(),
            3,
            "Default max.message.bytes of topics.",
        ),
        (
            "socket.request.max.bytes",
            k.max_frame_bytes.to_string(),
            3,
            "Largest request.",
        ),
        (
            "inkless.produce.max.object.bytes",
            p.max_object_bytes.to_string(),
            3,
            "Object size that triggers a seal.",
        ),
        (
            "inkless.produce.flush.interval.ms",
            p.flush_interval_ms.to_string(),
            5,
            "Longest wait before a seal.",
        ),
    ];
    items
        .into_iter()
        .map(|(name, value, kind, doc)| Entry {
            name: name.into(),
            value,
            source: SOURCE_STATIC_BROKER,
            kind,
            doc,
            read_only: true,
        })
        .collect()
}

/// Answers DescribeConfigs.
pub fn describe(ctx: &Ctx, req: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let synonyms = version >= 1 && req.include_synonyms;
    let docs = version >= 3 && req.include_documentation;
    let mut results = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.to_string();
        let base = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let entries = match res.resource_type {
            RESOURCE_TOPIC => match ctx.catalog.by_name(&name) {
                None => {
                    results.push(
                        base.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(s(format!("Topic '{name}' does not exist.")))),
                    );
                    continue;
                }
                Some(t) => TOPIC_CONFIGS
                    .iter()
                    .map(|d| {
                        let (value, explicit) = t.config_value(d, ctx.catalog.defaults());
                        Entry {
                            name: d.name.into(),
                            value,
                            source: if explicit {
                                SOURCE_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            },
                            kind: d.kind as i8,
                            doc: d.doc,
                            read_only: false,
                        }
                    })
                    .collect::<Vec<_>>(),
            },
            RESOURCE_BROKER if name.is_empty() || name == ctx.config.node.id.to_string() => {
                broker_entries(ctx)
            }
            RESOURCE_BROKER => {
                results.push(
                    base.with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(s(format!("Unknown broker {name}")))),
                );
                continue;
            }
            other => {
                results.push(
                    base.with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(s(format!(
                            "Resource type {other} is not supported"
                        )))),
                );
                continue;
            }
        };
        let keys = res
            .configuration_keys
            .map(|k| k.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        let configs = entries
            .into_iter()
            .filter(|e| keys.as_ref().is_none_or(|k| k.contains(&e.name)))
            .map(|e| entry_result(e, synonyms, docs))
            .collect();
        results.push(base.with_configs(configs));
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// Operations of IncrementalAlterConfigs.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Kafka's replication throttles (KIP-73) and log-dir move throttle, which
/// `kafka-reassign-partitions --verify` clears from the brokers and topics when a
/// reassignment completes. Nothing replicates or moves between log dirs here, so nothing is
/// throttled: deleting them is a no-op, for brokers as for topics.
const REPLICATION_THROTTLES: [&str; 5] = [
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
    "leader.replication.throttled.replicas",
    "follower.replication.throttled.replicas",
];

/// True for an operation that deletes a replication throttle (see [`REPLICATION_THROTTLES`]).
fn clears_throttle(c: &AlterableConfig) -> bool {
    c.config_operation == OP_DELETE && REPLICATION_THROTTLES.contains(&c.name.as_str())
}

/// Answers IncrementalAlterConfigs (topic configs only; broker configs are static, except
/// that deleting replication throttles is accepted, as a no-op).
pub async fn incremental_alter(
    ctx: &Ctx,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut out = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.to_string();
        let r = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let outcome: Result<(), Failure> = async {
            if res.resource_type == RESOURCE_BROKER && res.configs.iter().all(clears_throttle) {
                return Ok(());
            }
            let topic = alterable_topic(ctx, res.resource_type, &name)?;
            let mut changes = Vec::with_capacity(res.configs.len());
            for c in res.configs.iter().filter(|c| !clears_throttle(c)) {
                let key = c.name.to_string();
                let def = topic_config_def(&key).ok_or((
                    ResponseError::InvalidConfig.code(),
                    format!("Unknown topic config name: {key}"),
                ))?;
                let current = topic.config_value(def, ctx.catalog.defaults()).0;
                let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                let list = |v: &str| -> Vec<String> {
                    v.split(',')
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect()
                };
                let new = match c.config_operation {
                    OP_SET => Some(value),
                    OP_DELETE => None,
                    OP_APPEND => {
                        let mut l = list(&current);
                        for v in list(&value) {
                            if !l.contains(&v) {
                                l.push(v);
                            }
                        }
                        Some(l.join(","))
                    }
                    OP_SUBTRACT => {
                        let remove = list(&value);
                        Some(
                            list(&current)
                                .into_iter()
                                .filter(|v| !remove.contains(v))
                                .collect::<Vec<_>>()
                                .join(","),
                        )
                    }
                    op => {
                        return Err((
                            ResponseError::InvalidRequest.code(),
                            format!("Unknown config operation {op}"),
                        ))
                    }
                };
                if let Some(v) = &new {
                    validate_topic_config(&key, v)
                        .map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
                }
                changes.push((key, new));
            }
            apply(ctx, &name, changes, req.validate_only).await
        }
        .await;
        out.push(match outcome {
            Ok(()) => r,
            Err((c, m)) => r.with_error_code(c).with_error_message(Some(s(m))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(out)
}

/// The topic named by an alter request's resource: only topics can be altered.
fn alterable_topic(ctx: &Ctx, resource_type: i8, name: &str) -> Result<Arc<Topic>, Failure> {
    if resource_type != RESOURCE_TOPIC {
        return Err((
            ResponseError::InvalidRequest.code(),
            "Only topic configs can be altered; broker configs are static".into(),
        ));
    }
    ctx.catalog.by_name(name).ok_or((
        ResponseError::UnknownTopicOrPartition.code(),
        format!("Topic '{name}' does not exist."),
    ))
}

/// Stores validated config changes (`None` removes the explicit value) unless only
/// validating.
async fn apply(
    ctx: &Ctx,
    name: &str,
    changes: Vec<(String, Option<String>)>,
    validate_only: bool,
) -> Result<(), Failure> {
    if let Some(topic) = ctx.catalog.by_name(name) {
        let mut after = topic.record.configs.clone();
        for (k, v) in &changes {
            match v {
                Some(v) => after.insert(k.clone(), v.clone()),
                None => after.remove(k),
            };
        }
        validate_topic_config_set(&after).map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
    }
    if validate_only {
        return Ok(());
    }
    ctx.catalog
        .alter(name, changes)
        .await
        .map(|_| ())
        .map_err(|e| (ResponseError::UnknownServerError.code(), e.to_string()))
}

/// Answers the legacy AlterConfigs: a topic's configs in the request replace its whole
/// explicit set, as in Kafka. A config left out, or sent without a value, returns to its
/// default.
pub async fn alter(ctx: &Ctx, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut out = Vec::with_capacity(req.resources.len());
    for res in &req.resources {
        let r = LegacyResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        out.push(match replace_configs(ctx, res, req.validate_only).await {
            Ok(()) => r.with_error_message(None),
            Err((c, m)) => r.with_error_code(c).with_error_message(Some(s(m))),
        });
    }
    AlterConfigsResponse::default().with_responses(out)
}

/// Replaces the explicit configs of the topic `res` names with those of `res`.
async fn replace_configs(
    ctx: &Ctx,
    res: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), Failure> {
    let name = res.resource_name.to_string();
    let topic = alterable_topic(ctx, res.resource_type, &name)?;
    // A name given twice keeps its last value, as in Kafka.
    let mut wanted: BTreeMap<String, Option<String>> = BTreeMap::new();
    for c in &res.configs {
        let key = c.name.to_string();
        let value = c.value.as_ref().map(|v| v.to_string());
        match &value {
            Some(v) => validate_topic_config(&key, v),
            None => topic_config_def(&key)
                .map(|_| ())
                .ok_or_else(|| format!("Unknown topic config name: {key}")),
        }
        .map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
        wanted.insert(key, value);
    }
    // Every other config, known or stored, is removed: the set is replaced in one change.
    let others: BTreeSet<String> = TOPIC_CONFIGS
        .iter()
        .map(|d| d.name.to_string())
        .chain(topic.record.configs.keys().cloned())
        .filter(|k| !wanted.contains_key(k))
        .collect();
    let changes = others
        .into_iter()
        .map(|k| (k, None))
        .chain(wanted)
        .collect();
    apply(ctx, &name, changes, validate_only).await
}
