//! `inkless topics`: kafka-topics.sh's `--list`, `--describe`, `--create`, `--alter
//! --partitions` and `--delete`, over the Kafka protocol (Metadata, DescribeConfigs,
//! CreateTopics, CreatePartitions, DeleteTopics), with kafka-topics' output.

use super::client::Client;
use super::{kafka_error, topic_name, OpsError};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::time::Duration;

/// `inkless topics` arguments (kafka-topics.sh's names).
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("action").required(true)
    .args(["list", "describe", "create", "alter", "delete"])))]
pub struct TopicsArgs {
    /// Broker(s) to connect to, host:port[,host:port...]: any node of the cluster.
    #[arg(long)]
    bootstrap_server: String,
    /// List all topics.
    #[arg(long)]
    list: bool,
    /// Describe the topic (or every topic without --topic).
    #[arg(long)]
    describe: bool,
    /// Create the topic.
    #[arg(long)]
    create: bool,
    /// Add partitions to the topic (--partitions is the new total).
    #[arg(long)]
    alter: bool,
    /// Delete the topic.
    #[arg(long)]
    delete: bool,
    /// The topic.
    #[arg(long)]
    topic: Option<String>,
    /// Partitions of the topic (--create: default the broker's num.partitions; --alter:
    /// the new total).
    #[arg(long)]
    partitions: Option<i32>,
    /// Accepted for compatibility: every partition has one copy, in the object store.
    #[arg(long)]
    replication_factor: Option<i16>,
    /// A topic config, name=value (repeatable).
    #[arg(long = "config")]
    configs: Vec<String>,
    /// How long to wait for each broker answer.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

impl TopicsArgs {
    fn topic(&self) -> Result<&str, OpsError> {
        self.topic
            .as_deref()
            .ok_or_else(|| OpsError::Usage("this action needs --topic".into()))
    }
}

/// Runs `inkless topics`.
pub async fn run_topics(args: TopicsArgs) -> Result<(), OpsError> {
    let mut client = Client::connect(
        &args.bootstrap_server,
        Duration::from_millis(args.timeout_ms),
    )
    .await?;
    if args.list {
        print!("{}", list(&mut client).await?);
    } else if args.describe {
        print!("{}", describe(&mut client, args.topic.as_deref()).await?);
    } else if args.create {
        create(&mut client, &args).await?;
        println!("Created topic {}.", args.topic()?);
    } else if args.alter {
        let n = args
            .partitions
            .ok_or_else(|| OpsError::Usage("--alter needs --partitions".into()))?;
        alter(&mut client, args.topic()?, n, args.timeout_ms).await?;
    } else if args.delete {
        delete(&mut client, args.topic()?, args.timeout_ms).await?;
    }
    Ok(())
}

/// Every topic name, one a line, in name order.
async fn list(client: &mut Client) -> Result<String, OpsError> {
    let md = client.metadata(None).await?;
    let mut names: Vec<String> = md.topics.iter().filter_map(name_of).collect();
    names.sort();
    Ok(names.into_iter().map(|n| n + "\n").collect())
}

fn name_of(t: &MetadataResponseTopic) -> Option<String> {
    t.name.as_ref().map(|n| n.0.to_string())
}

/// kafka-topics --describe of one topic or all.
async fn describe(client: &mut Client, topic: Option<&str>) -> Result<String, OpsError> {
    let md = client.metadata(topic.map(|t| vec![t.to_string()])).await?;
    let mut topics: Vec<&MetadataResponseTopic> = md.topics.iter().collect();
    topics.sort_by_key(|t| name_of(t));
    let mut out = String::new();
    for t in topics {
        let name = name_of(t).unwrap_or_default();
        if t.error_code == ResponseError::UnknownTopicOrPartition.code() {
            return Err(OpsError::Refused(format!(
                "Topic '{name}' does not exist as expected"
            )));
        }
        kafka_error(&format!("describing topic '{name}'"), t.error_code, None)?;
        let configs = topic_configs(client, &name).await?;
        out.push_str(&describe_topic(&name, t, &configs));
    }
    Ok(out)
}

/// The topic's configs that are not defaults, as name=value (kafka-topics' "Configs").
async fn topic_configs(client: &mut Client, topic: &str) -> Result<Vec<String>, OpsError> {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(None),
    ]);
    let resp: DescribeConfigsResponse = client.call(ApiKey::DescribeConfigs, 4, &req).await?;
    let mut out = Vec::new();
    for r in resp.results {
        let message = r.error_message.as_ref().map(|m| m.as_str());
        kafka_error(
            &format!("describing the configs of '{topic}'"),
            r.error_code,
            message,
        )?;
        for c in r
            .configs
            .iter()
            .filter(|c| c.config_source != DEFAULT_CONFIG)
        {
            let value = match (&c.value, c.is_sensitive) {
                (_, true) => "<sensitive>".to_string(),
                (Some(v), false) => v.to_string(),
                (None, false) => "null".to_string(),
            };
            out.push(format!("{}={value}", c.name.as_str()));
        }
    }
    Ok(out)
}

/// DescribeConfigs' source of a default value (Kafka's ConfigEntry.isDefault).
const DEFAULT_CONFIG: i8 = 5;

/// One topic as kafka-topics prints it: a header line, then a line per partition.
fn describe_topic(name: &str, t: &MetadataResponseTopic, configs: &[String]) -> String {
    let mut parts: Vec<_> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    let rf = parts.first().map(|p| p.replica_nodes.len()).unwrap_or(0);
    let mut out = format!(
        "Topic: {name}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {}\n",
        kafka_uuid(&t.topic_id),
        parts.len(),
        configs.join(",")
    );
    let ids = |v: &[BrokerId]| {
        v.iter()
            .map(|b| b.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    for p in parts {
        let leader = match p.leader_id.0 {
            -1 => "none".to_string(),
            id => id.to_string(),
        };
        out.push_str(&format!(
            "\tTopic: {name}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}\tElr: \tLastKnownElr: \n",
            p.partition_index,
            ids(&p.replica_nodes),
            ids(&p.isr_nodes)
        ));
    }
    out
}

/// A UUID as Kafka prints it (org.apache.kafka.common.Uuid: URL-safe base64, no padding).
pub(crate) fn kafka_uuid(id: &uuid::Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// CreateTopics (v7) of one topic.
async fn create(client: &mut Client, args: &TopicsArgs) -> Result<(), OpsError> {
    let topic = args.topic()?;
    let configs = args
        .configs
        .iter()
        .map(|kv| parse_config(kv))
        .collect::<Result<Vec<_>, _>>()?;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(args.partitions.unwrap_or(-1))
            .with_replication_factor(args.replication_factor.unwrap_or(-1))
            .with_configs(configs)])
        .with_timeout_ms(args.timeout_ms.min(i32::MAX as u64) as i32);
    let resp: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &req).await?;
    for t in resp.topics {
        let message = t.error_message.as_ref().map(|m| m.as_str());
        kafka_error(&format!("creating topic '{topic}'"), t.error_code, message)?;
    }
    Ok(())
}

/// `name=value` as a CreateTopics config.
fn parse_config(kv: &str) -> Result<create_topics_request::CreatableTopicConfig, OpsError> {
    let (k, v) = kv
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| OpsError::Usage(format!("--config {kv:?} is not name=value")))?;
    Ok(create_topics_request::CreatableTopicConfig::default()
        .with_name(StrBytes::from_string(k.to_string()))
        .with_value(Some(StrBytes::from_string(v.to_string()))))
}

/// CreatePartitions (v3): the topic grows to `total` partitions.
async fn alter(
    client: &mut Client,
    topic: &str,
    total: i32,
    timeout_ms: u64,
) -> Result<(), OpsError> {
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(total),
        ])
        .with_timeout_ms(timeout_ms.min(i32::MAX as u64) as i32);
    let resp: CreatePartitionsResponse = client.call(ApiKey::CreatePartitions, 3, &req).await?;
    for r in resp.results {
        let message = r.error_message.as_ref().map(|m| m.as_str());
        kafka_error(
            &format!("adding partitions to '{topic}'"),
            r.error_code,
            message,
        )?;
    }
    Ok(())
}

/// DeleteTopics (v5) of one topic.
async fn delete(client: &mut Client, topic: &str, timeout_ms: u64) -> Result<(), OpsError> {
    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic_name(topic)])
        .with_timeout_ms(timeout_ms.min(i32::MAX as u64) as i32);
    let resp: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, 5, &req).await?;
    for r in resp.responses {
        if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
            return Err(OpsError::Refused(format!(
                "Topic '{topic}' does not exist as expected"
            )));
        }
        let message = r.error_message.as_ref().map(|m| m.as_str());
        kafka_error(&format!("deleting topic '{topic}'"), r.error_code, message)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_described_like_kafka_topics_does() {
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let part = |i: i32, leader: i32| {
            metadata_response::MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(BrokerId(leader))
                .with_replica_nodes(vec![BrokerId(leader)])
                .with_isr_nodes(vec![BrokerId(leader)])
        };
        let t = MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_partitions(vec![part(1, 3), part(0, 2)]);
        let out = describe_topic("orders", &t, &["retention.ms=1000".into()]);
        assert_eq!(
            out,
            "Topic: orders\tTopicId: ASNFZ4mrze8BI0VniavN7w\tPartitionCount: 2\t\
             ReplicationFactor: 1\tConfigs: retention.ms=1000\n\
             \tTopic: orders\tPartition: 0\tLeader: 2\tReplicas: 2\tIsr: 2\tElr: \tLastKnownElr: \n\
             \tTopic: orders\tPartition: 1\tLeader: 3\tReplicas: 3\tIsr: 3\tElr: \tLastKnownElr: \n"
        );
    }

    #[test]
    fn configs_must_be_name_value() {
        assert!(parse_config("retention.ms=5").is_ok());
        assert!(parse_config("a=").is_ok());
        assert!(matches!(parse_config("=5"), Err(OpsError::Usage(_))));
        assert!(matches!(parse_config("nothing"), Err(OpsError::Usage(_))));
    }
}
