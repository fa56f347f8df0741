//! Metadata: brokers, topics and partition leaders; creates unknown topics when
//! `auto.create.topics.enable` and the request allow it.
//!
//! A single node leads every partition. The leader epoch is always 0: partitions have no
//! replicas to diverge, so there is never a log to truncate (see docs/adr/0003).

use super::{code, s, Ctx, AUTHORIZED_OPERATIONS_OMITTED};
use crate::catalog::{validate_topic_name, Topic};
use inkless_protocol::kafka_protocol::messages::metadata_request::MetadataRequest;
use inkless_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use inkless_protocol::kafka_protocol::messages::{BrokerId, TopicName};
use std::collections::BTreeMap;

/// The partitions of a topic as Metadata reports them.
fn partitions(ctx: &Ctx, t: &Topic) -> Vec<MetadataResponsePartition> {
    let me = BrokerId(ctx.config.node.id);
    (0..t.record.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(me)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![me])
                .with_isr_nodes(vec![me])
        })
        .collect()
}

fn topic_entry(ctx: &Ctx, t: &Topic) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(t.record.name.clone()))))
        .with_topic_id(t.record.id)
        .with_partitions(partitions(ctx, t))
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn error_entry(name: Option<String>, error: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(s(n))))
        .with_error_code(error)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// Answers a Metadata request.
pub async fn handle(ctx: &Ctx, req: MetadataRequest, version: i16) -> MetadataResponse {
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(ctx.config.node.id))
        .with_host(s(ctx.advertised_host.clone()))
        .with_port(ctx.advertised_port)
        .with_rack((!ctx.config.node.rack.is_empty()).then(|| s(ctx.config.node.rack.clone())));
    // v0 used an empty list to mean "all topics"; later versions use null.
    let wanted = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    let topics = match wanted {
        None => ctx
            .catalog
            .all()
            .iter()
            .map(|t| topic_entry(ctx, t))
            .collect(),
        Some(list) => {
            let auto_create = ctx.config.kafka.auto_create_topics_enable
                && (version < 4 || req.allow_auto_topic_creation);
            let mut out = Vec::with_capacity(list.len());
            for want in list {
                let name = match want.name {
                    Some(n) => n.0.to_string(),
                    None => match ctx.catalog.by_id(&want.topic_id) {
                        Some(t) => {
                            out.push(topic_entry(ctx, &t));
                            continue;
                        }
                        None => {
                            out.push(
                                error_entry(None, code::UNKNOWN_TOPIC_ID)
                                    .with_topic_id(want.topic_id),
                            );
                            continue;
                        }
                    },
                };
                if let Some(t) = ctx.catalog.by_name(&name) {
                    out.push(topic_entry(ctx, &t));
                    continue;
                }
                if validate_topic_name(&name).is_err() {
                    out.push(error_entry(Some(name), code::INVALID_TOPIC_EXCEPTION));
                    continue;
                }
                if !auto_create {
                    out.push(error_entry(Some(name), code::UNKNOWN_TOPIC_OR_PARTITION));
                    continue;
                }
                let partitions = ctx.config.kafka.num_partitions;
                match super::topics::create_topic(ctx, &name, partitions, BTreeMap::new()).await {
                    Ok(t) => {
                        tracing::info!(topic = %name, partitions, "topic auto-created");
                        out.push(topic_entry(ctx, &t))
                    }
                    Err((code, _)) if code == super::code::TOPIC_ALREADY_EXISTS => {
                        match ctx.catalog.by_name(&name) {
                            Some(t) => out.push(topic_entry(ctx, &t)),
                            None => {
                                out.push(error_entry(Some(name), code::UNKNOWN_TOPIC_OR_PARTITION))
                            }
                        }
                    }
                    Err((code, msg)) => {
                        tracing::warn!(topic = %name, error = %msg, "auto-create failed");
                        out.push(error_entry(Some(name), code));
                    }
                }
            }
            out
        }
    };
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(s(ctx.cluster_id.clone())))
        .with_controller_id(BrokerId(ctx.config.node.id))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
