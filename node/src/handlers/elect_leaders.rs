//! ElectLeaders: what `kafka-leader-election` asks for.
//!
//! A partition's only replica is the node placement picks for it (see [`super::metadata`]),
//! so it is always led by its preferred leader while any node is live, and there is no
//! other replica to elect. Both election types therefore answer ELECTION_NOT_NEEDED for a
//! partition with a leader, as Kafka does for a partition whose preferred leader leads; a
//! partition without one (no live node) gets PREFERRED_LEADER_NOT_AVAILABLE or
//! ELIGIBLE_LEADERS_NOT_AVAILABLE. Asked for every partition (a null list), Kafka leaves
//! out the partitions that needed no election, and so does this.

use super::metadata::leader;
use super::{s, Ctx, NONE};
use inkless_actors::LiveSet;
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::elect_leaders_request::ElectLeadersRequest;
use inkless_protocol::kafka_protocol::messages::elect_leaders_response::{
    ElectLeadersResponse, PartitionResult, ReplicaElectionResult,
};
use inkless_protocol::kafka_protocol::messages::TopicName;

/// Election type: the first replica of the assignment.
const PREFERRED: i8 = 0;
/// Election type: any replica, in sync or not.
const UNCLEAN: i8 = 1;

/// Answers ElectLeaders (version 0 has no election type: it is a preferred election).
pub async fn handle(ctx: &Ctx, req: ElectLeadersRequest, version: i16) -> ElectLeadersResponse {
    let election = if version == 0 {
        PREFERRED
    } else {
        req.election_type
    };
    if election != PREFERRED && election != UNCLEAN {
        return refused(&req, &format!("Unknown election type {election}"));
    }
    let live = ctx.node.live();
    let results = match &req.topic_partitions {
        None => every_partition(ctx, &live, election),
        Some(topics) => {
            super::refresh_if_unknown(ctx, topics.iter().map(|t| t.topic.0.as_str())).await;
            topics
                .iter()
                .map(|t| {
                    let name = t.topic.0.as_str();
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|&p| result(p, outcome(ctx, &live, name, p, election)))
                        .collect();
                    topic_result(name, partitions)
                })
                .collect()
        }
    };
    ElectLeadersResponse::default()
        .with_error_code(NONE)
        .with_replica_election_results(results)
}

/// Every topic, with the partitions whose election was needed (none while nodes are live).
fn every_partition(ctx: &Ctx, live: &LiveSet, election: i8) -> Vec<ReplicaElectionResult> {
    let not_needed = ResponseError::ElectionNotNeeded.code();
    ctx.catalog
        .all()
        .iter()
        .map(|t| {
            let name = t.record.name.as_str();
            let partitions = (0..t.record.partitions)
                .map(|p| (p, outcome(ctx, live, name, p, election)))
                .filter(|(_, (code, _))| *code != not_needed)
                .map(|(p, o)| result(p, o))
                .collect();
            topic_result(name, partitions)
        })
        .collect()
}

/// The error code and message of electing a leader for partition `p` of `topic`.
fn outcome(ctx: &Ctx, live: &LiveSet, topic: &str, p: i32, election: i8) -> (i16, String) {
    let Some(t) = ctx.catalog.by_name(topic) else {
        return (
            ResponseError::UnknownTopicOrPartition.code(),
            format!("No such topic as {topic}"),
        );
    };
    if p < 0 || p >= t.record.partitions {
        return (
            ResponseError::UnknownTopicOrPartition.code(),
            format!("No such partition as {topic}-{p}"),
        );
    }
    match (leader(live, &t, p, ""), election) {
        (Some(_), _) => (
            ResponseError::ElectionNotNeeded.code(),
            "Leader election not needed for topic partition.".into(),
        ),
        (None, PREFERRED) => (
            ResponseError::PreferredLeaderNotAvailable.code(),
            "The preferred leader was not available.".into(),
        ),
        (None, _) => (
            ResponseError::EligibleLeadersNotAvailable.code(),
            "Eligible topic partition leaders are not available.".into(),
        ),
    }
}

fn result(partition: i32, (code, message): (i16, String)) -> PartitionResult {
    PartitionResult::default()
        .with_partition_id(partition)
        .with_error_code(code)
        .with_error_message(Some(s(message)))
}

fn topic_result(name: &str, partitions: Vec<PartitionResult>) -> ReplicaElectionResult {
    ReplicaElectionResult::default()
        .with_topic(TopicName(s(name)))
        .with_partition_result(partitions)
}

/// The answer to an invalid request: the error at the top and for every partition named.
fn refused(req: &ElectLeadersRequest, msg: &str) -> ElectLeadersResponse {
    let code = ResponseError::InvalidRequest.code();
    let results = req
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|&p| result(p, (code, msg.to_string())))
                .collect();
            topic_result(t.topic.0.as_str(), partitions)
        })
        .collect();
    ElectLeadersResponse::default()
        .with_error_code(code)
        .with_replica_election_results(results)
}
