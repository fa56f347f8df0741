//! Benchmark setup: protocol version negotiation, topic lookup/creation and
//! the ListOffsets calls that position the consumers.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::{
    create_partitions_request::CreatePartitionsTopic,
    create_topics_request::CreatableTopic,
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
    CreatePartitionsRequest, CreateTopicsRequest, FetchRequest, ListOffsetsRequest,
    MetadataRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::conn::{BrokerVersions, Connection};

/// Kafka error code UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Kafka error code TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Kafka error code POLICY_VIOLATION: KRaft refuses to create more than about 10,000
/// partition records in one request ("excessively large batch operation").
const POLICY_VIOLATION: i16 = 44;
/// Partitions per request when a topic is created in steps.
const PARTITIONS_PER_STEP: i32 = 5_000;

/// Protocol versions used for the run.
#[derive(Debug, Clone, Copy)]
pub struct Versions {
    /// Produce (v3..=12; v13 would need topic ids in produce).
    pub produce: i16,
    /// Fetch (v4..=16; v13+ only when the topic id is known).
    pub fetch: i16,
    /// Metadata (v1..=12).
    pub metadata: i16,
    /// ListOffsets (v1..=10).
    pub list_offsets: i16,
    /// CreateTopics (v2..=7).
    pub create_topics: i16,
    /// CreatePartitions (v0..=3).
    pub create_partitions: i16,
}

impl Versions {
    /// Picks the highest version both sides support within the caps.
    pub fn negotiate(broker: &BrokerVersions) -> Result<Self> {
        Ok(Versions {
            produce: broker.pick::<ProduceRequest>(3, 12)?,
            fetch: broker.pick::<FetchRequest>(4, 16)?,
            metadata: broker.pick::<MetadataRequest>(1, 12)?,
            list_offsets: broker.pick::<ListOffsetsRequest>(1, 10)?,
            create_topics: broker.pick::<CreateTopicsRequest>(2, 7)?,
            create_partitions: broker.pick::<CreatePartitionsRequest>(0, 3)?,
        })
    }
}

/// The topic under test.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    /// Topic name.
    pub name: TopicName,
    /// Topic id (nil when the broker's metadata version has none).
    pub id: Uuid,
    /// Partition indexes, sorted.
    pub partitions: Vec<i32>,
    /// Whether this run created the topic.
    pub created: bool,
    /// Brokers in the cluster metadata.
    pub brokers: usize,
}

/// Name as the protocol type.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

enum Lookup {
    Missing,
    NotReady(String),
    Ready(TopicInfo),
}

async fn lookup(conn: &mut Connection, v: &Versions, name: &TopicName) -> Result<Lookup> {
    let mut req = MetadataRequest::default();
    let mut t = MetadataRequestTopic::default();
    t.name = Some(name.clone());
    req.topics = Some(vec![t]);
    if v.metadata >= 4 {
        req.allow_auto_topic_creation = false;
    }
    let resp = conn.call(&req, v.metadata).await?;
    let Some(topic) = resp.topics.iter().find(|t| t.name.as_ref() == Some(name)) else {
        return Ok(Lookup::Missing);
    };
    if topic.error_code == UNKNOWN_TOPIC_OR_PARTITION {
        return Ok(Lookup::Missing);
    }
    if topic.error_code != 0 {
        return Ok(Lookup::NotReady(format!(
            "topic error code {}",
            topic.error_code
        )));
    }
    if topic.partitions.is_empty() {
        return Ok(Lookup::NotReady("no partitions yet".into()));
    }
    if let Some(p) = topic
        .partitions
        .iter()
        .find(|p| p.error_code != 0 || p.leader_id.0 < 0)
    {
        return Ok(Lookup::NotReady(format!(
            "partition {} error {} leader {}",
            p.partition_index, p.error_code, p.leader_id.0
        )));
    }
    let mut partitions: Vec<i32> = topic.partitions.iter().map(|p| p.partition_index).collect();
    partitions.sort_unstable();
    Ok(Lookup::Ready(TopicInfo {
        name: name.clone(),
        id: topic.topic_id,
        partitions,
        created: false,
        brokers: resp.brokers.len(),
    }))
}

/// Finds the topic, creating it when absent, and waits (up to `timeout`)
/// until every partition has a leader.
pub async fn ensure_topic(
    conn: &mut Connection,
    v: &Versions,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    timeout: Duration,
) -> Result<TopicInfo> {
    let name = topic_name(name);
    let deadline = Instant::now() + timeout;
    let mut created = false;
    let mut last = String::new();
    while Instant::now() < deadline {
        match lookup(conn, v, &name).await? {
            // A topic grown in steps shows its first step before the rest.
            Lookup::Ready(info) if created && (info.partitions.len() as i32) < partitions => {
                last = format!(
                    "{} of {partitions} partitions visible",
                    info.partitions.len()
                );
            }
            Lookup::Ready(mut info) => {
                info.created = created;
                return Ok(info);
            }
            Lookup::Missing if !created => {
                let first = create(conn, v, &name, partitions, replication_factor).await?;
                if first == POLICY_VIOLATION && partitions > PARTITIONS_PER_STEP {
                    // Kafka: create part of it, then grow it step by step.
                    create(conn, v, &name, PARTITIONS_PER_STEP, replication_factor).await?;
                    let mut total = PARTITIONS_PER_STEP;
                    while total < partitions {
                        total = (total + PARTITIONS_PER_STEP).min(partitions);
                        grow(conn, v, &name, total).await?;
                    }
                    eprintln!(
                        "created topic {} with {partitions} partitions in steps",
                        name.0.as_str()
                    );
                }
                created = true;
                continue;
            }
            Lookup::Missing => last = "topic not visible in metadata yet".into(),
            Lookup::NotReady(why) => last = why,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(anyhow!(
        "topic {} not ready after {timeout:?}: {last}",
        name.0.as_str()
    ))
}

/// One CreateTopics; returns POLICY_VIOLATION (to retry in steps) or 0, fails otherwise.
async fn create(
    conn: &mut Connection,
    v: &Versions,
    name: &TopicName,
    partitions: i32,
    replication_factor: i16,
) -> Result<i16> {
    let mut topic = CreatableTopic::default();
    topic.name = name.clone();
    topic.num_partitions = partitions;
    topic.replication_factor = replication_factor;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![topic];
    req.timeout_ms = 30_000;
    let resp = conn.call(&req, v.create_topics).await?;
    for t in &resp.topics {
        if t.error_code == POLICY_VIOLATION {
            return Ok(POLICY_VIOLATION);
        }
        if t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS {
            bail!(
                "CreateTopics {}: error code {} {}",
                t.name.0.as_str(),
                t.error_code,
                t.error_message.as_ref().map(|m| m.as_str()).unwrap_or("")
            );
        }
        if t.error_code == 0 {
            eprintln!(
                "created topic {} with {partitions} partitions",
                t.name.0.as_str()
            );
        }
    }
    Ok(0)
}

/// Raises the topic's partition count to `total`.
async fn grow(conn: &mut Connection, v: &Versions, name: &TopicName, total: i32) -> Result<()> {
    let mut topic = CreatePartitionsTopic::default();
    topic.name = name.clone();
    topic.count = total;
    // Null, not empty: let the controller place the new partitions.
    topic.assignments = None;
    let mut req = CreatePartitionsRequest::default();
    req.topics = vec![topic];
    req.timeout_ms = 60_000;
    let resp = conn.call(&req, v.create_partitions).await?;
    for r in &resp.results {
        if r.error_code != 0 {
            bail!(
                "CreatePartitions {} to {total}: error code {} {}",
                r.name.0.as_str(),
                r.error_code,
                r.error_message.as_ref().map(|m| m.as_str()).unwrap_or("")
            );
        }
    }
    Ok(())
}

/// Latest offset (the log end / high watermark) of each partition, retrying
/// retriable errors until `timeout`.
pub async fn latest_offsets(
    conn: &mut Connection,
    v: &Versions,
    topic: &TopicName,
    partitions: &[i32],
    timeout: Duration,
) -> Result<Vec<(i32, i64)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut req = ListOffsetsRequest::default();
        req.replica_id = (-1).into();
        req.isolation_level = 0;
        if v.list_offsets >= 10 {
            req.timeout_ms = 30_000;
        }
        let mut t = ListOffsetsTopic::default();
        t.name = topic.clone();
        t.partitions = partitions
            .iter()
            .map(|&p| {
                let mut lp = ListOffsetsPartition::default();
                lp.partition_index = p;
                lp.timestamp = -1; // LATEST
                lp
            })
            .collect();
        req.topics = vec![t];
        let resp = conn.call(&req, v.list_offsets).await?;
        let mut out = Vec::with_capacity(partitions.len());
        let mut failed = None;
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    failed = Some((p.partition_index, p.error_code));
                } else {
                    out.push((p.partition_index, p.offset));
                }
            }
        }
        if failed.is_none() && out.len() == partitions.len() {
            return Ok(out);
        }
        if Instant::now() >= deadline {
            bail!(
                "ListOffsets incomplete after {timeout:?}: got {} of {} partitions, last error {:?}",
                out.len(),
                partitions.len(),
                failed
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
