//! `inkless groups`: kafka-consumer-groups.sh's `--list`, `--describe --group` (offsets and
//! lag per partition) and `--reset-offsets` ([`super::reset`]), over the Kafka protocol
//! (ListGroups on every broker, FindCoordinator, DescribeGroups, OffsetFetch, ListOffsets
//! to each partition's leader), with kafka-consumer-groups' output.

use super::client::Client;
use super::reset::{self, ResetArgs};
use super::table;
use super::{kafka_error, topic_name, OpsError};
use bytes::Buf;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A partition by topic name.
pub type Tp = (String, i32);

/// `inkless groups` arguments (kafka-consumer-groups.sh's names).
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("action").required(true)
    .args(["list", "describe", "reset_offsets"])))]
pub struct GroupsArgs {
    /// Broker(s) to connect to, host:port[,host:port...]: any node of the cluster.
    #[arg(long)]
    bootstrap_server: String,
    /// List all consumer groups.
    #[arg(long)]
    list: bool,
    /// Describe the group: committed offset, log end offset and lag per partition.
    #[arg(long, requires = "group")]
    describe: bool,
    /// Reset the group's committed offsets (a plan only, unless --execute).
    #[arg(long, requires = "group")]
    reset_offsets: bool,
    /// The consumer group.
    #[arg(long)]
    group: Option<String>,
    #[command(flatten)]
    reset: ResetArgs,
    /// How long to wait for each broker answer.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

/// Runs `inkless groups`.
pub async fn run_groups(args: GroupsArgs) -> Result<(), OpsError> {
    let mut client = Client::connect(
        &args.bootstrap_server,
        Duration::from_millis(args.timeout_ms),
    )
    .await?;
    let group = args.group.as_deref().unwrap_or_default();
    if args.list {
        for g in list(&mut client).await? {
            println!("{g}");
        }
        Ok(())
    } else if args.describe {
        describe(&mut client, group).await
    } else {
        reset::run(&mut client, group, &args.reset).await
    }
}

/// Every consumer group of the cluster (ListGroups on every broker), in name order.
async fn list(client: &mut Client) -> Result<BTreeSet<String>, OpsError> {
    let md = client.metadata(Some(Vec::new())).await?;
    let mut groups = BTreeSet::new();
    for b in &md.brokers {
        let resp: ListGroupsResponse = client
            .call_node(
                b.node_id.0,
                ApiKey::ListGroups,
                4,
                &ListGroupsRequest::default(),
            )
            .await?;
        kafka_error("listing groups", resp.error_code, None)?;
        groups.extend(
            resp.groups
                .into_iter()
                .filter(|g| matches!(g.protocol_type.as_str(), "consumer" | ""))
                .map(|g| g.group_id.0.to_string()),
        );
    }
    Ok(groups)
}

/// DescribeGroups (v5) of one group, at its coordinator.
pub(super) async fn describe_group(
    client: &mut Client,
    group: &str,
) -> Result<DescribedGroup, OpsError> {
    let coordinator = client.coordinator(group).await?;
    let req = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let resp: DescribeGroupsResponse = client
        .call_node(coordinator, ApiKey::DescribeGroups, 5, &req)
        .await?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| OpsError::Protocol("DescribeGroups answered no group".into()))?;
    let message = g.error_message.as_ref().map(|m| m.as_str());
    kafka_error(
        &format!("describing group '{group}'"),
        g.error_code,
        message,
    )?;
    Ok(g)
}

/// The group's committed offsets (OffsetFetch v7, every partition), at its coordinator.
pub(super) async fn committed(
    client: &mut Client,
    group: &str,
) -> Result<BTreeMap<Tp, i64>, OpsError> {
    let coordinator = client.coordinator(group).await?;
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(None);
    let resp: OffsetFetchResponse = client
        .call_node(coordinator, ApiKey::OffsetFetch, 7, &req)
        .await?;
    kafka_error(
        &format!("fetching the offsets of '{group}'"),
        resp.error_code,
        None,
    )?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions.into_iter().filter(|p| p.committed_offset >= 0) {
            out.insert(
                (t.name.0.to_string(), p.partition_index),
                p.committed_offset,
            );
        }
    }
    Ok(out)
}

/// ListOffsets (v7) at `timestamp` (-1 latest, -2 earliest, else the first offset at or
/// after it; -1 when there is none) of each partition, asked of its leader.
pub(super) async fn log_offsets(
    client: &mut Client,
    tps: &BTreeSet<Tp>,
    timestamp: i64,
) -> Result<BTreeMap<Tp, i64>, OpsError> {
    let topics: BTreeSet<String> = tps.iter().map(|(t, _)| t.clone()).collect();
    let md = client.metadata(Some(topics.into_iter().collect())).await?;
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for t in &md.topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        for p in &t.partitions {
            if tps.contains(&(name.clone(), p.partition_index)) {
                let leader = by_leader.entry(p.leader_id.0).or_default();
                leader
                    .entry(name.clone())
                    .or_default()
                    .push(p.partition_index);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (leader, topics) in by_leader {
        let req = list_offsets_request(&topics, timestamp);
        let resp: ListOffsetsResponse = client
            .call_node(leader, ApiKey::ListOffsets, 7, &req)
            .await?;
        for t in resp.topics {
            for p in t.partitions {
                let what = format!("listing offsets of {}-{}", t.name.0, p.partition_index);
                kafka_error(&what, p.error_code, None)?;
                out.insert((t.name.0.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

fn list_offsets_request(topics: &BTreeMap<String, Vec<i32>>, timestamp: i64) -> ListOffsetsRequest {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            topics
                .iter()
                .map(|(name, parts)| {
                    ListOffsetsTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(
                            parts
                                .iter()
                                .map(|&p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(p)
                                        .with_current_leader_epoch(-1)
                                        .with_timestamp(timestamp)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// The partitions in a member's assignment (the consumer protocol's bytes).
fn assigned(member_assignment: &bytes::Bytes) -> Vec<Tp> {
    let mut buf = member_assignment.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// One line of --describe: a partition (or none) and who consumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OffsetRow {
    tp: Option<Tp>,
    current: Option<i64>,
    log_end: Option<i64>,
    consumer: Option<(String, String, String)>,
}

/// kafka-consumer-groups --describe --group.
async fn describe(client: &mut Client, group: &str) -> Result<(), OpsError> {
    let g = describe_group(client, group).await?;
    let state = g.group_state.to_string();
    if state == "Dead" {
        return Err(OpsError::Refused(format!(
            "Consumer group '{group}' does not exist."
        )));
    }
    let committed = committed(client, group).await?;
    let rows = offset_rows(client, &g, &committed).await?;
    match state.as_str() {
        "Empty" => eprintln!("\nConsumer group '{group}' has no active members."),
        "PreparingRebalance" | "CompletingRebalance" => {
            eprintln!("\nWarning: Consumer group '{group}' is rebalancing.")
        }
        _ => {}
    }
    if !rows.is_empty() {
        print!("{}", offsets_table(group, &rows));
    }
    Ok(())
}

/// The rows of --describe: the members' partitions (the member with most partitions
/// first), then committed partitions no member has.
async fn offset_rows(
    client: &mut Client,
    g: &DescribedGroup,
    committed: &BTreeMap<Tp, i64>,
) -> Result<Vec<OffsetRow>, OpsError> {
    let mut members: Vec<(Vec<Tp>, (String, String, String))> = g
        .members
        .iter()
        .map(|m| {
            let mut tps = assigned(&m.member_assignment);
            tps.sort();
            let who = (
                m.member_id.to_string(),
                m.client_host.to_string(),
                m.client_id.to_string(),
            );
            (tps, who)
        })
        .filter(|(tps, _)| !tps.is_empty())
        .collect();
    members.sort_by_key(|(tps, _)| std::cmp::Reverse(tps.len()));
    let mut all: BTreeSet<Tp> = committed.keys().cloned().collect();
    all.extend(members.iter().flat_map(|(tps, _)| tps.iter().cloned()));
    let ends = log_offsets(client, &all, -1).await?;
    let row = |tp: &Tp, consumer: Option<(String, String, String)>| OffsetRow {
        tp: Some(tp.clone()),
        current: committed.get(tp).copied(),
        log_end: ends.get(tp).copied().filter(|o| *o >= 0),
        consumer,
    };
    let mut rows = Vec::new();
    for (tps, who) in &members {
        rows.extend(tps.iter().map(|tp| row(tp, Some(who.clone()))));
    }
    let taken: BTreeSet<&Tp> = members.iter().flat_map(|(tps, _)| tps.iter()).collect();
    rows.extend(
        committed
            .keys()
            .filter(|tp| !taken.contains(tp))
            .map(|tp| row(tp, None)),
    );
    Ok(rows)
}

/// The --describe table, as kafka-consumer-groups prints it.
pub(super) fn offsets_table(group: &str, rows: &[OffsetRow]) -> String {
    let dash = || "-".to_string();
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let (consumer, host, client) = r
                .consumer
                .clone()
                .unwrap_or_else(|| (dash(), dash(), dash()));
            let lag = match (r.current, r.log_end) {
                (Some(c), Some(e)) => (e - c).to_string(),
                _ => dash(),
            };
            [
                group.to_string(),
                r.tp.as_ref().map(|t| t.0.clone()).unwrap_or_else(dash),
                r.tp.as_ref().map(|t| t.1.to_string()).unwrap_or_else(dash),
                r.current.map(|o| o.to_string()).unwrap_or_else(dash),
                r.log_end.map(|o| o.to_string()).unwrap_or_else(dash),
                lag,
                consumer,
                host,
                client,
            ]
        })
        .collect();
    let w = |i: usize| table::width(15, cells.iter().map(|c| c[i].as_str()));
    let widths = [w(0), w(1), 10, 15, 15, 15, w(6), w(7)];
    let header = [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ];
    let mut out = format!("\n{}", table::row(&widths, &header));
    for c in &cells {
        let values: Vec<&str> = c.iter().map(String::as_str).collect();
        out.push('\n');
        out.push_str(&table::row(&widths, &values));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_prints_kafka_consumer_groups_columns() {
        let rows = vec![
            OffsetRow {
                tp: Some(("orders".into(), 0)),
                current: Some(4),
                log_end: Some(10),
                consumer: Some(("c-1".into(), "/127.0.0.1".into(), "app".into())),
            },
            OffsetRow {
                tp: Some(("orders".into(), 1)),
                current: None,
                log_end: Some(3),
                consumer: None,
            },
        ];
        let out = offsets_table("g", &rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "");
        assert_eq!(
            lines[1],
            "GROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID     HOST            CLIENT-ID"
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            [
                "g",
                "orders",
                "0",
                "4",
                "10",
                "6",
                "c-1",
                "/127.0.0.1",
                "app"
            ]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["g", "orders", "1", "-", "3", "-", "-", "-", "-"]
        );
    }

    #[test]
    fn assignments_are_read_from_the_consumer_protocol() {
        use bytes::BufMut;
        use kafka_protocol::protocol::Encodable;
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![2, 0]),
        ]);
        let mut buf = bytes::BytesMut::new();
        buf.put_i16(1);
        a.encode(&mut buf, 1).expect("encode");
        assert_eq!(assigned(&buf.freeze()), [("t".into(), 2), ("t".into(), 0)]);
        assert!(assigned(&bytes::Bytes::new()).is_empty());
    }
}
