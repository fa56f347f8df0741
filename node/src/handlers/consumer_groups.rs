//! The consumer group protocol of KIP-848: ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe. Assignments are computed by the group's coordinator actor.

use super::{group_code, s, Ctx, AUTHORIZED_OPERATIONS_OMITTED, NONE};
use inkless_actors::{Assignment, ConsumerHeartbeat as Heartbeat, GroupMiss};
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::consumer_group_describe_request::ConsumerGroupDescribeRequest;
use inkless_protocol::kafka_protocol::messages::consumer_group_describe_response::{
    self as describe, ConsumerGroupDescribeResponse, DescribedGroup, Member,
};
use inkless_protocol::kafka_protocol::messages::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use inkless_protocol::kafka_protocol::messages::consumer_group_heartbeat_response::{
    self as heartbeat, ConsumerGroupHeartbeatResponse,
};
use inkless_protocol::kafka_protocol::messages::TopicName;
use std::net::SocketAddr;

fn to_wire(a: &Assignment) -> Vec<heartbeat::TopicPartitions> {
    a.iter()
        .map(|(t, ps)| {
            heartbeat::TopicPartitions::default()
                .with_topic_id(*t)
                .with_partitions(ps.iter().copied().collect())
        })
        .collect()
}

/// Answers ConsumerGroupHeartbeat.
pub async fn heartbeat(
    ctx: &Ctx,
    req: ConsumerGroupHeartbeatRequest,
    client_id: &str,
    peer: SocketAddr,
) -> ConsumerGroupHeartbeatResponse {
    let fail = |c: i16, m: &str| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(c)
            .with_error_message(Some(s(m)))
    };
    if req.group_id.0.is_empty() {
        return fail(
            ResponseError::InvalidGroupId.code(),
            "Group id must not be empty",
        );
    }
    if let Some(c) = super::not_coordinator(ctx, &req.group_id.0) {
        return fail(c, "This node is not the group's coordinator");
    }
    let actor = match ctx.node.group(&req.group_id.0, req.member_epoch == 0).await {
        Ok(actor) => actor,
        Err(GroupMiss::Unknown) => {
            return fail(
                ResponseError::UnknownMemberId.code(),
                "Unknown group or member",
            )
        }
        Err(GroupMiss::Unavailable) => {
            return fail(
                ResponseError::CoordinatorNotAvailable.code(),
                "The group's coordinator is not available",
            )
        }
    };
    let hb = Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|x| x.to_string()),
        rack_id: req.rack_id.as_ref().map(|x| x.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topics: req
            .subscribed_topic_names
            .map(|v| v.into_iter().map(|t| t.0.to_string()).collect()),
        subscribed_regex: req.subscribed_topic_regex.map(|r| r.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|x| x.to_string()),
        owned: req.topic_partitions.map(|v| {
            v.into_iter()
                .map(|tp| (tp.topic_id, tp.partitions.into_iter().collect()))
                .collect()
        }),
        client_id: client_id.to_string(),
        client_host: format!("/{}", peer.ip()),
    };
    let Ok(a) = actor.consumer_heartbeat(hb).await else {
        return fail(
            ResponseError::CoordinatorNotAvailable.code(),
            "Coordinator unavailable",
        );
    };
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(a.error.map_or(NONE, group_code))
        .with_error_message(a.message.map(s))
        .with_member_id(Some(s(a.member_id)))
        .with_member_epoch(a.member_epoch)
        .with_heartbeat_interval_ms(a.heartbeat_interval_ms)
        .with_assignment(
            a.assignment
                .map(|x| heartbeat::Assignment::default().with_topic_partitions(to_wire(&x))),
        )
}

fn describe_assignment(ctx: &Ctx, a: &Assignment) -> describe::Assignment {
    describe::Assignment::default().with_topic_partitions(
        a.iter()
            .map(|(t, ps)| {
                describe::TopicPartitions::default()
                    .with_topic_id(*t)
                    .with_topic_name(TopicName(s(ctx
                        .catalog
                        .by_id(t)
                        .map(|x| x.record.name.clone())
                        .unwrap_or_default())))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

/// Answers ConsumerGroupDescribe.
pub async fn describe(
    ctx: &Ctx,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut out = Vec::with_capacity(req.group_ids.len());
    for g in req.group_ids {
        let base = DescribedGroup::default()
            .with_group_id(g.clone())
            .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
        if let Some(c) = super::not_coordinator(ctx, &g.0) {
            out.push(base.with_error_code(c));
            continue;
        }
        let d = match ctx.node.group(&g.0, false).await {
            Err(GroupMiss::Unknown) => None,
            Err(GroupMiss::Unavailable) => {
                out.push(base.with_error_code(ResponseError::CoordinatorNotAvailable.code()));
                continue;
            }
            Ok(actor) => actor.consumer_describe().await.ok(),
        };
        let Some(d) = d.filter(|d| d.state != "Dead") else {
            out.push(
                base.with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(s(format!("Group {} not found.", g.0))))
                    .with_group_state(s("Dead")),
            );
            continue;
        };
        let members = d
            .members
            .iter()
            .map(|m| {
                Member::default()
                    .with_member_id(s(m.member_id.clone()))
                    .with_instance_id(m.instance_id.clone().map(s))
                    .with_rack_id(m.rack_id.clone().map(s))
                    .with_member_epoch(m.member_epoch)
                    .with_client_id(s(m.client_id.clone()))
                    .with_client_host(s(m.client_host.clone()))
                    .with_subscribed_topic_names(
                        m.subscribed
                            .iter()
                            .map(|t| TopicName(s(t.clone())))
                            .collect(),
                    )
                    .with_subscribed_topic_regex(m.subscribed_regex.clone().map(s))
                    .with_assignment(describe_assignment(ctx, &m.assignment))
                    .with_target_assignment(describe_assignment(ctx, &m.target))
            })
            .collect();
        out.push(
            base.with_group_state(s(d.state))
                .with_group_epoch(d.group_epoch)
                .with_assignment_epoch(d.assignment_epoch)
                .with_assignor_name(s(d.assignor))
                .with_members(members),
        );
    }
    ConsumerGroupDescribeResponse::default().with_groups(out)
}
