//! Metadata: brokers, topics and partition leaders; creates unknown topics when
//! `auto.create.topics.enable` and the request allow it.
//!
//! A partition's "leader" is the node that owns it, or, for a client that names its AZ with
//! `inkless_az=<az>` in its client.id, a node of that AZ: the owner when it is in that AZ,
//! else the AZ node placement picks for it. That node accepts produce and fetch and relays
//! only batch coordinates to the owner, so data bytes stay in the AZ. Without the hint the
//! AZ is not taken from the node asked: clients refresh metadata from any broker they know,
//! and leaders that depend on it would flip between AZs and reorder a producer's batches
//! (docs/adr/0007). Consumers still read in their AZ without the hint (Fetch rack_id). The
//! leader epoch is the partition's owner epoch (docs/adr/0012).

use super::{s, Ctx, AUTHORIZED_OPERATIONS_OMITTED};
use crate::catalog::{validate_topic_name, Topic};
use inkless_actors::{LiveSet, TopicPartition};
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::metadata_request::MetadataRequest;
use inkless_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use inkless_protocol::kafka_protocol::messages::{BrokerId, TopicName};
use std::collections::BTreeMap;

/// The leader of partition `p` of `t` as reported to a client in `az` ("" for none): its
/// owner, or the node of that AZ that serves it. `None` while no node is live.
pub fn leader(live: &LiveSet, t: &Topic, p: i32, az: &str) -> Option<i32> {
    let tp = TopicPartition {
        topic_id: t.record.id,
        partition: p,
    };
    if az.is_empty() {
        live.partition_owner(&tp)
    } else {
        live.zone_leader(&tp, az)
    }
}

/// The partitions of a topic as Metadata reports them to a client in `az`.
fn partitions(ctx: &Ctx, live: &LiveSet, t: &Topic, az: &str) -> Vec<MetadataResponsePartition> {
    let tps: Vec<TopicPartition> = (0..t.record.partitions)
        .map(|partition| TopicPartition {
            topic_id: t.record.id,
            partition,
        })
        .collect();
    let epochs = super::leader_epochs(ctx, &tps);
    (0..t.record.partitions)
        .zip(epochs)
        .map(|(p, epoch)| {
            let entry = MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_epoch(epoch);
            match leader(live, t, p, az) {
                Some(owner) => entry
                    .with_leader_id(BrokerId(owner))
                    .with_replica_nodes(vec![BrokerId(owner)])
                    .with_isr_nodes(vec![BrokerId(owner)]),
                None => entry
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1)),
            }
        })
        .collect()
}

fn topic_entry(ctx: &Ctx, live: &LiveSet, t: &Topic, az: &str) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(t.record.name.clone()))))
        .with_topic_id(t.record.id)
        .with_is_internal(crate::catalog::is_internal(&t.record.name))
        .with_partitions(partitions(ctx, live, t, az))
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn error_entry(name: Option<String>, error: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(s(n))))
        .with_error_code(error)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// The AZ a client names with `inkless_az=<az>` in its client.id ("" if none).
pub fn client_az(client_id: &str) -> &str {
    client_id
        .split([',', ';', ' '])
        .find_map(|part| part.trim().strip_prefix("inkless_az="))
        .unwrap_or("")
}

/// Answers a Metadata request.
pub async fn handle(
    ctx: &Ctx,
    req: MetadataRequest,
    version: i16,
    client_id: &str,
) -> MetadataResponse {
    let live = ctx.node.live();
    let az = client_az(client_id);
    let brokers = super::brokers(ctx, &live)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(s(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(s))
        })
        .collect();
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
            .map(|t| topic_entry(ctx, &live, t, az))
            .collect(),
        Some(list) => {
            let auto_create = ctx.config.kafka.auto_create_topics_enable
                && (version < 4 || req.allow_auto_topic_creation);
            let mut out = Vec::with_capacity(list.len());
            // In a cluster another node may have just created the topic: look once more.
            let mut refreshed = !ctx.config.cluster.enabled;
            for want in list {
                let name = match want.name {
                    Some(n) => n.0.to_string(),
                    None => match ctx.catalog.by_id(&want.topic_id) {
                        Some(t) => {
                            out.push(topic_entry(ctx, &live, &t, az));
                            continue;
                        }
                        None => {
                            out.push(
                                error_entry(None, ResponseError::UnknownTopicId.code())
                                    .with_topic_id(want.topic_id),
                            );
                            continue;
                        }
                    },
                };
                if ctx.catalog.by_name(&name).is_none() && !refreshed {
                    refreshed = true;
                    if let Err(e) = ctx.catalog.refresh().await {
                        tracing::warn!(error = %e, "could not re-read topics");
                    }
                }
                if let Some(t) = ctx.catalog.by_name(&name) {
                    out.push(topic_entry(ctx, &live, &t, az));
                    continue;
                }
                if validate_topic_name(&name).is_err() {
                    out.push(error_entry(
                        Some(name),
                        ResponseError::InvalidTopicException.code(),
                    ));
                    continue;
                }
                if !auto_create {
                    out.push(error_entry(
                        Some(name),
                        ResponseError::UnknownTopicOrPartition.code(),
                    ));
                    continue;
                }
                let partitions = ctx.config.kafka.num_partitions;
                match super::topics::create_topic(ctx, &name, partitions, BTreeMap::new()).await {
                    Ok(t) => {
                        tracing::info!(topic = %name, partitions, "topic auto-created");
                        out.push(topic_entry(ctx, &live, &t, az))
                    }
                    Err((code, _)) if code == ResponseError::TopicAlreadyExists.code() => {
                        match ctx.catalog.by_name(&name) {
                            Some(t) => out.push(topic_entry(ctx, &live, &t, az)),
                            None => out.push(error_entry(
                                Some(name),
                                ResponseError::UnknownTopicOrPartition.code(),
                            )),
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
        .with_brokers(brokers)
        .with_cluster_id(Some(s(ctx.cluster_id.clone())))
        .with_controller_id(BrokerId(ctx.config.node.id))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
