//! `inkless groups --reset-offsets`: kafka-consumer-groups' plan of new committed offsets
//! (`--to-earliest`, `--to-latest`, `--to-offset`, `--shift-by`, `--to-datetime`) for
//! `--topic T[:p,...]` or `--all-topics`, printed as Kafka prints it, and committed with
//! OffsetCommit only with `--execute` and only while the group has no members.

use super::client::Client;
use super::groups::{self, Tp};
use super::table;
use super::{kafka_error, topic_name, OpsError};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, BTreeSet};

/// The options of `--reset-offsets` (kafka-consumer-groups.sh's names).
#[derive(clap::Args, Debug, Default)]
#[command(group(clap::ArgGroup::new("spec")
    .args(["to_earliest", "to_latest", "to_offset", "shift_by", "to_datetime"])))]
#[command(group(clap::ArgGroup::new("scope").args(["topic", "all_topics"])))]
pub struct ResetArgs {
    /// A topic, or topic:p,q to name partitions (repeatable).
    #[arg(long)]
    topic: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// Reset to the earliest offset.
    #[arg(long)]
    to_earliest: bool,
    /// Reset to the latest offset.
    #[arg(long)]
    to_latest: bool,
    /// Reset to this offset (bounded by the earliest and latest).
    #[arg(long, allow_hyphen_values = true)]
    to_offset: Option<i64>,
    /// Move the committed offset by N (negative: back), bounded.
    #[arg(long, allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// Reset to the first offset at or after this time: YYYY-MM-DDTHH:mm:SS[.sss][zone]
    /// (UTC without a zone).
    #[arg(long)]
    to_datetime: Option<String>,
    /// Print the plan only (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    execute: bool,
}

/// Where each partition's offset goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    Earliest,
    Latest,
    Offset(i64),
    Shift(i64),
    Time(i64),
}

impl ResetArgs {
    fn spec(&self) -> Result<Spec, OpsError> {
        if self.to_earliest {
            Ok(Spec::Earliest)
        } else if self.to_latest {
            Ok(Spec::Latest)
        } else if let Some(o) = self.to_offset {
            Ok(Spec::Offset(o))
        } else if let Some(n) = self.shift_by {
            Ok(Spec::Shift(n))
        } else if let Some(t) = &self.to_datetime {
            Ok(Spec::Time(parse_datetime(t)?))
        } else {
            Err(OpsError::Usage(
                "--reset-offsets needs one of --to-earliest, --to-latest, --to-offset, \
                 --shift-by, --to-datetime"
                    .into(),
            ))
        }
    }
}

/// Milliseconds since the epoch of an ISO-8601 time (Kafka's --to-datetime format).
fn parse_datetime(s: &str) -> Result<i64, OpsError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%:z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, format) {
            return Ok(t.timestamp_millis());
        }
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc().timestamp_millis())
        .map_err(|_| {
            OpsError::Usage(format!(
                "--to-datetime {s:?} is not YYYY-MM-DDTHH:mm:SS.sss[zone]"
            ))
        })
}

/// Runs --reset-offsets for `group`.
pub async fn run(client: &mut Client, group: &str, args: &ResetArgs) -> Result<(), OpsError> {
    let spec = args.spec()?;
    if args.topic.is_empty() && !args.all_topics {
        return Err(OpsError::Usage(
            "--reset-offsets needs --topic or --all-topics".into(),
        ));
    }
    if !args.dry_run && !args.execute {
        eprintln!(
            "WARN: No action will be performed as the --execute option is missing. \
             You should add the --dry-run option explicitly if you are scripting this command \
             and want to keep the current default behavior without prompting."
        );
    }
    let g = groups::describe_group(client, group).await?;
    let state = g.group_state.to_string();
    if !matches!(state.as_str(), "Empty" | "Dead") {
        return Err(OpsError::Refused(format!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current state is {state}."
        )));
    }
    let committed = groups::committed(client, group).await?;
    let tps = partitions(client, args, &committed).await?;
    let plan = plan(client, &tps, &committed, spec).await?;
    if args.execute {
        commit(client, group, &plan).await?;
    }
    print!("{}", plan_table(group, &plan));
    Ok(())
}

/// The partitions to reset: those named (every partition of a bare topic name), or with
/// --all-topics every partition the group has an offset for.
async fn partitions(
    client: &mut Client,
    args: &ResetArgs,
    committed: &BTreeMap<Tp, i64>,
) -> Result<BTreeSet<Tp>, OpsError> {
    if args.all_topics {
        return Ok(committed.keys().cloned().collect());
    }
    let mut out = BTreeSet::new();
    for t in &args.topic {
        match t.split_once(':') {
            Some((name, parts)) => {
                for p in parts.split(',') {
                    let p = p.trim().parse::<i32>().map_err(|_| {
                        OpsError::Usage(format!("--topic {t:?}: {p:?} is not a partition"))
                    })?;
                    out.insert((name.to_string(), p));
                }
            }
            None => out.extend(all_partitions(client, t).await?),
        }
    }
    Ok(out)
}

async fn all_partitions(client: &mut Client, topic: &str) -> Result<Vec<Tp>, OpsError> {
    let md = client.metadata(Some(vec![topic.to_string()])).await?;
    let mut out = Vec::new();
    for t in md.topics {
        kafka_error(&format!("describing topic '{topic}'"), t.error_code, None)?;
        out.extend(
            t.partitions
                .iter()
                .map(|p| (topic.to_string(), p.partition_index)),
        );
    }
    Ok(out)
}

/// The new offset of each partition.
async fn plan(
    client: &mut Client,
    tps: &BTreeSet<Tp>,
    committed: &BTreeMap<Tp, i64>,
    spec: Spec,
) -> Result<BTreeMap<Tp, i64>, OpsError> {
    let earliest = groups::log_offsets(client, tps, -2).await?;
    let latest = groups::log_offsets(client, tps, -1).await?;
    let at_time = match spec {
        Spec::Time(ms) => Some(groups::log_offsets(client, tps, ms).await?),
        _ => None,
    };
    let mut out = BTreeMap::new();
    for tp in tps {
        let (lo, hi) = (earliest.get(tp).copied(), latest.get(tp).copied());
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Err(OpsError::Refused(format!(
                "no offsets known for {}-{}",
                tp.0, tp.1
            )));
        };
        let target = match spec {
            Spec::Earliest => lo,
            Spec::Latest => hi,
            Spec::Offset(o) => o,
            Spec::Shift(n) => match committed.get(tp) {
                Some(c) => c.saturating_add(n),
                None => {
                    return Err(OpsError::Refused(format!(
                        "Cannot shift offset for partition {}-{} since there is no current committed offset",
                        tp.0, tp.1
                    )))
                }
            },
            Spec::Time(_) => match at_time.as_ref().and_then(|m| m.get(tp)).copied() {
                Some(o) if o >= 0 => o,
                _ => {
                    println!(
                        "\nWarn: Partition {} from topic {} is empty. Falling back to latest known offset.",
                        tp.1, tp.0
                    );
                    hi
                }
            },
        };
        out.insert(tp.clone(), target.clamp(lo, hi.max(lo)));
    }
    Ok(out)
}

/// OffsetCommit (v8) of the plan, as an admin client commits (no member, generation -1).
async fn commit(
    client: &mut Client,
    group: &str,
    plan: &BTreeMap<Tp, i64>,
) -> Result<(), OpsError> {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), o) in plan {
        topics.entry(t).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1),
        );
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, parts)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(parts)
                })
                .collect(),
        );
    let coordinator = client.coordinator(group).await?;
    let resp: OffsetCommitResponse = client
        .call_node(coordinator, ApiKey::OffsetCommit, 8, &req)
        .await?;
    for t in resp.topics {
        for p in t.partitions {
            let what = format!(
                "committing the offset of {}-{}",
                t.name.0, p.partition_index
            );
            kafka_error(&what, p.error_code, None)?;
        }
    }
    Ok(())
}

/// The plan as kafka-consumer-groups prints it.
fn plan_table(group: &str, plan: &BTreeMap<Tp, i64>) -> String {
    if plan.is_empty() {
        return String::new();
    }
    let widths = [
        table::width(15, std::iter::once(group)),
        table::width(15, plan.keys().map(|(t, _)| t.as_str())),
        10,
    ];
    let mut out = format!(
        "\n{}",
        table::row(&widths, &["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"])
    );
    for ((t, p), o) in plan {
        out.push('\n');
        out.push_str(&table::row(
            &widths,
            &[group, t, &p.to_string(), &o.to_string()],
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_are_read_as_kafka_writes_them() {
        assert_eq!(parse_datetime("1970-01-01T00:00:01.500").ok(), Some(1_500));
        assert_eq!(parse_datetime("1970-01-01T00:00:01").ok(), Some(1_000));
        assert_eq!(
            parse_datetime("1970-01-01T01:00:00.000+01:00").ok(),
            Some(0)
        );
        assert_eq!(parse_datetime("1970-01-01T01:00:00.000+0100").ok(), Some(0));
        assert_eq!(parse_datetime("1970-01-01T00:00:02Z").ok(), Some(2_000));
        assert!(matches!(
            parse_datetime("yesterday"),
            Err(OpsError::Usage(_))
        ));
    }

    #[test]
    fn the_plan_is_printed_like_kafka_prints_it() {
        let plan = BTreeMap::from([
            (("orders".to_string(), 0), 5),
            (("orders".to_string(), 1), 0),
        ]);
        assert_eq!(
            plan_table("g", &plan),
            "\nGROUP           TOPIC           PARTITION  NEW-OFFSET\n\
             g               orders          0          5\n\
             g               orders          1          0\n"
        );
        assert_eq!(plan_table("g", &BTreeMap::new()), "");
    }
}
