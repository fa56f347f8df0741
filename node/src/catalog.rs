//! The node's view of topics: an in-memory copy of the metadata store's topics, kept in step
//! by the handlers that change them, plus Kafka's topic-config rules (names, defaults,
//! validation).

use inkless_actors::{CompactionPolicy, RetentionLimits};
use inkless_storage::metadata::{MetaError, NewTopic, SharedMetadataStore, TopicRecord};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// Largest topic name Kafka accepts.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// How far before the previous read of the owner epochs (store clock) the next one starts: a
/// change carries the time its transaction started, which may be before that read if the
/// transaction committed after it. Longer than any claim or release transaction.
const EPOCH_READ_OVERLAP_MS: i64 = 60_000;

/// Time between reads of every partition's owner epoch: the backstop for a change the reads by
/// change missed (a transaction that stayed open longer than the overlap).
const EPOCH_FULL_READ_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Kinds of config values, as DescribeConfigs reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// `true` / `false`.
    Boolean = 1,
    /// A string.
    String = 2,
    /// A 32-bit integer.
    Int = 3,
    /// A 64-bit integer.
    Long = 5,
    /// A double-precision number.
    Double = 6,
}

/// A topic config Inkless knows: its Kafka name, default, type and whether it is enforced.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    /// Kafka name.
    pub name: &'static str,
    /// Default value.
    pub default: &'static str,
    /// Value type.
    pub kind: ConfigType,
    /// Allowed values for enumerations.
    pub allowed: &'static [&'static str],
    /// One-line meaning.
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    default: &'static str,
    kind: ConfigType,
    allowed: &'static [&'static str],
    doc: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        default,
        kind,
        allowed,
        doc,
    }
}

/// Topic configs accepted by CreateTopics and IncrementalAlterConfigs.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        "delete",
        ConfigType::String,
        &[],
        "delete: retention retires old batches; compact: the latest record of each key is kept (both: compact,delete).",
    ),
    def(
        "retention.ms",
        "604800000",
        ConfigType::Long,
        &[],
        "Batches whose largest timestamp is older are retired (-1: never).",
    ),
    def(
        "retention.bytes",
        "-1",
        ConfigType::Long,
        &[],
        "A partition keeps about this many bytes; the oldest batches go first (-1: no limit).",
    ),
    def(
        "max.message.bytes",
        "1048588",
        ConfigType::Int,
        &[],
        "Largest record batch accepted.",
    ),
    def(
        "message.timestamp.type",
        "CreateTime",
        ConfigType::String,
        &["CreateTime", "LogAppendTime"],
        "Producer's timestamp or the broker's append time.",
    ),
    def(
        "compression.type",
        "producer",
        ConfigType::String,
        &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"],
        "Stored; batches are kept as the producer compressed them.",
    ),
    def(
        "segment.bytes",
        "1073741824",
        ConfigType::Int,
        &[],
        "Accepted for compatibility; objects replace segments.",
    ),
    def(
        "segment.ms",
        "604800000",
        ConfigType::Long,
        &[],
        "Accepted for compatibility; objects replace segments.",
    ),
    def(
        "min.insync.replicas",
        "1",
        ConfigType::Int,
        &[],
        "Accepted for compatibility; the object store replicates.",
    ),
    def(
        "unclean.leader.election.enable",
        "false",
        ConfigType::Boolean,
        &[],
        "Accepted for compatibility; there are no replicas.",
    ),
    def(
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        ConfigType::Long,
        &[],
        "Stored.",
    ),
    def(
        "message.timestamp.after.max.ms",
        "3600000",
        ConfigType::Long,
        &[],
        "Stored.",
    ),
    def(
        "delete.retention.ms",
        "86400000",
        ConfigType::Long,
        &[],
        "Compacted topics: a tombstone lives this long after its first compaction.",
    ),
    def(
        "min.compaction.lag.ms",
        "0",
        ConfigType::Long,
        &[],
        "Compacted topics: records younger than this are not compacted.",
    ),
    def(
        "max.compaction.lag.ms",
        "9223372036854775807",
        ConfigType::Long,
        &[],
        "Compacted topics: records not compacted after this long are compacted whatever the dirty ratio.",
    ),
    def(
        "min.cleanable.dirty.ratio",
        "0.5",
        ConfigType::Double,
        &[],
        "Compacted topics: compact once uncompacted bytes are more than this share of the log.",
    ),
];

/// The definition of a topic config.
pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// The smallest value Kafka accepts for a numeric topic config, where it sets one.
fn min_value(name: &str) -> Option<i64> {
    match name {
        "retention.ms" => Some(-1),
        "max.message.bytes"
        | "delete.retention.ms"
        | "min.compaction.lag.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.after.max.ms" => Some(0),
        "segment.bytes" => Some(14),
        "segment.ms" | "min.insync.replicas" | "max.compaction.lag.ms" => Some(1),
        _ => None,
    }
}

/// Checks what single values cannot show: Kafka refuses `min.compaction.lag.ms` above
/// `max.compaction.lag.ms`. The error is the message for INVALID_CONFIG.
pub fn validate_topic_config_set(configs: &BTreeMap<String, String>) -> Result<(), String> {
    let long = |name: &str, default: i64| {
        configs
            .get(name)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(default)
    };
    let (min, max) = (
        long("min.compaction.lag.ms", 0),
        long("max.compaction.lag.ms", i64::MAX),
    );
    if min > max {
        return Err(format!(
            "conflict topic config setting min.compaction.lag.ms ({min}) > max.compaction.lag.ms ({max})"
        ));
    }
    Ok(())
}

/// Checks a config name and value; the error is the message for INVALID_CONFIG.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    let d = topic_config_def(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    let at_least = |n: i64| min_value(name).is_none_or(|min| n >= min);
    let ok = match d.kind {
        ConfigType::Boolean => value == "true" || value == "false",
        ConfigType::Int => value
            .trim()
            .parse::<i32>()
            .is_ok_and(|n| at_least(n.into())),
        ConfigType::Long => value.trim().parse::<i64>().is_ok_and(at_least),
        // min.cleanable.dirty.ratio, the only double, is a share: [0, 1].
        ConfigType::Double => value
            .trim()
            .parse::<f64>()
            .is_ok_and(|x| (0.0..=1.0).contains(&x)),
        ConfigType::String if name == "cleanup.policy" => cleanup_policy(value).is_some(),
        ConfigType::String => d.allowed.is_empty() || d.allowed.contains(&value),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("Invalid value {value} for configuration {name}"))
    }
}

/// `(compact, delete)` of a `cleanup.policy` value (a comma-separated list of `compact` and
/// `delete`); `None` when it is not one.
pub fn cleanup_policy(value: &str) -> Option<(bool, bool)> {
    let (mut compact, mut delete) = (false, false);
    for item in value.split(',').map(str::trim) {
        match item {
            "compact" => compact = true,
            "delete" => delete = true,
            _ => return None,
        }
    }
    Some((compact, delete))
}

/// Kafka's group offsets topic. Offsets live in the metadata store, not in this topic: it
/// exists, empty, because clients and tools expect it (regex consumers skip it, tools list
/// it as internal, KIP-848 regular expressions may match it). Created, as Kafka does, by
/// the first FindCoordinator ([`crate::handlers::topics::ensure_offsets_topic`]).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// True for the topics Kafka treats as internal: listed as such, closed to client produce
/// and deletion.
pub fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC
}

/// Checks a topic name as Kafka does; the error is the message for INVALID_TOPIC_EXCEPTION.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!(
            "Topic name is longer than {MAX_TOPIC_NAME_LEN} characters"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return Err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The broker's defaults of topic configs that Kafka lets the broker set
/// (`message.max.bytes`, `log.retention.ms`, `log.retention.bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerDefaults {
    /// Default `max.message.bytes`.
    pub max_message_bytes: i64,
    /// Default `retention.ms`.
    pub retention_ms: i64,
    /// Default `retention.bytes`.
    pub retention_bytes: i64,
}

impl BrokerDefaults {
    /// The broker's default of a topic config it sets, if it sets this one.
    fn value(&self, name: &str) -> Option<i64> {
        match name {
            "max.message.bytes" => Some(self.max_message_bytes),
            "retention.ms" => Some(self.retention_ms),
            "retention.bytes" => Some(self.retention_bytes),
            _ => None,
        }
    }
}

/// A topic with its effective settings.
#[derive(Debug, Clone)]
pub struct Topic {
    /// As stored.
    pub record: TopicRecord,
    /// Largest batch accepted.
    pub max_message_bytes: i64,
    /// True for `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    /// What retention retires (nothing for a topic that is only compacted).
    pub retention: RetentionLimits,
    /// Key compaction, for compacted topics.
    pub compaction: Option<CompactionPolicy>,
}

impl Topic {
    fn new(record: TopicRecord, defaults: &BrokerDefaults) -> Self {
        let number = |name: &str| -> i64 {
            record
                .configs
                .get(name)
                .and_then(|v| v.trim().parse().ok())
                .or_else(|| defaults.value(name))
                .unwrap_or(-1)
        };
        let max_message_bytes = number("max.message.bytes");
        let (compact, delete) = record
            .configs
            .get("cleanup.policy")
            .and_then(|v| cleanup_policy(v))
            .unwrap_or((false, true));
        // -1 (or any negative value) is "no limit", as in Kafka.
        let retention = match delete {
            true => RetentionLimits {
                max_age_ms: Some(number("retention.ms")).filter(|ms| *ms >= 0),
                max_bytes: u64::try_from(number("retention.bytes")).ok(),
            },
            false => RetentionLimits::default(),
        };
        let compaction = compact.then(|| compaction_policy(&record));
        let log_append_time = record
            .configs
            .get("message.timestamp.type")
            .is_some_and(|v| v == "LogAppendTime");
        Self {
            record,
            max_message_bytes,
            log_append_time,
            retention,
            compaction,
        }
    }

    /// The effective value of a config: explicit, else the broker's default, else Kafka's.
    pub fn config_value(&self, d: &TopicConfigDef, defaults: &BrokerDefaults) -> (String, bool) {
        match self.record.configs.get(d.name) {
            Some(v) => (v.clone(), true),
            None => match defaults.value(d.name) {
                Some(v) => (v.to_string(), false),
                None => (d.default.to_string(), false),
            },
        }
    }
}

/// The compaction settings of a compacted topic: its configs, else Kafka's defaults.
fn compaction_policy(record: &TopicRecord) -> CompactionPolicy {
    let d = CompactionPolicy::default();
    let get = |name: &str| record.configs.get(name).map(|v| v.trim());
    let long = |name: &str, default: i64| {
        get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(default)
    };
    CompactionPolicy {
        min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|x| x.is_finite())
            .unwrap_or(d.min_cleanable_dirty_ratio),
        min_lag_ms: long("min.compaction.lag.ms", d.min_lag_ms),
        max_lag_ms: long("max.compaction.lag.ms", d.max_lag_ms),
        delete_retention_ms: long("delete.retention.ms", d.delete_retention_ms),
    }
}

#[derive(Debug, Default)]
struct Tables {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
    /// Bumped by every local change, so a refresh never undoes one it did not see.
    generation: u64,
}

/// Topics known to this node.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: SharedMetadataStore,
    tables: Arc<RwLock<Tables>>,
    /// Every partition's owner epoch (Kafka's leader epoch) as of the last load or refresh.
    epochs: Arc<RwLock<HashMap<inkless_actors::TopicPartition, i64>>>,
    /// The store's clock at the last read of the epochs, and when the last full read was
    /// (None: not read yet).
    epochs_as_of: Arc<parking_lot::Mutex<Option<(i64, std::time::Instant)>>>,
    defaults: BrokerDefaults,
}

impl Catalog {
    /// Loads every topic from the store.
    pub async fn load(
        store: SharedMetadataStore,
        defaults: BrokerDefaults,
    ) -> Result<Self, MetaError> {
        let c = Self {
            store,
            tables: Arc::default(),
            epochs: Arc::default(),
            epochs_as_of: Arc::default(),
            defaults,
        };
        for t in c.store.list_topics().await? {
            c.put(t);
        }
        Ok(c)
    }

    /// The broker's defaults of topic configs.
    pub fn defaults(&self) -> &BrokerDefaults {
        &self.defaults
    }

    fn put(&self, record: TopicRecord) -> Arc<Topic> {
        let t = Arc::new(Topic::new(record, &self.defaults));
        let mut w = self.tables.write();
        w.generation += 1;
        w.by_name.insert(t.record.name.clone(), t.clone());
        w.by_id.insert(t.record.id, t.clone());
        t
    }

    /// Reads the owner epochs that changed since the last read (all of them the first time
    /// and every [`EPOCH_FULL_READ_INTERVAL`]), so a refresh costs what changed rather than
    /// every partition of the cluster
    /// (cluster mode: a node's own partitions' epochs are in its registry, so only other
    /// nodes' are read from here). Epochs of deleted topics are dropped.
    pub async fn refresh_epochs(&self) -> Result<(), MetaError> {
        let last = *self.epochs_as_of.lock();
        let full_read_at = last
            .map(|(_, at)| at)
            .filter(|at| at.elapsed() < EPOCH_FULL_READ_INTERVAL);
        let since = match (last, full_read_at) {
            (Some((as_of, _)), Some(_)) => as_of.saturating_sub(EPOCH_READ_OVERLAP_MS),
            _ => i64::MIN,
        };
        let changes = self.store.partition_epochs(since).await?;
        let topics: HashSet<Uuid> = self.tables.read().by_id.keys().copied().collect();
        let mut epochs = self.epochs.write();
        if full_read_at.is_none() {
            epochs.clear();
        }
        for ((topic_id, partition), epoch) in changes.epochs {
            let tp = inkless_actors::TopicPartition {
                topic_id,
                partition,
            };
            epochs.insert(tp, epoch);
        }
        epochs.retain(|tp, _| topics.contains(&tp.topic_id));
        let full_read_at = full_read_at.unwrap_or_else(std::time::Instant::now);
        *self.epochs_as_of.lock() = Some((changes.as_of_ms, full_read_at));
        Ok(())
    }

    /// The owner epochs of partitions as of the last refresh (other nodes' partitions:
    /// this node's own are known exactly by its registry), under one lock.
    pub fn owner_epochs<'a>(
        &self,
        tps: impl IntoIterator<Item = &'a inkless_actors::TopicPartition>,
    ) -> Vec<Option<i64>> {
        let epochs = self.epochs.read();
        tps.into_iter().map(|tp| epochs.get(tp).copied()).collect()
    }

    /// Re-reads every topic from the store, picking up other nodes' creations, deletions
    /// and config changes. Skipped (returns false) when a local change raced with it.
    pub async fn refresh(&self) -> Result<bool, MetaError> {
        let generation = self.tables.read().generation;
        let records = self.store.list_topics().await?;
        let mut fresh = Tables {
            generation,
            ..Tables::default()
        };
        let old = self.tables.read();
        for r in records {
            // Keep the parsed topic when nothing changed, so readers keep sharing it.
            let t = match old.by_id.get(&r.id) {
                Some(t) if t.record == r => t.clone(),
                _ => Arc::new(Topic::new(r, &self.defaults)),
            };
            fresh.by_name.insert(t.record.name.clone(), t.clone());
            fresh.by_id.insert(t.record.id, t);
        }
        drop(old);
        let mut w = self.tables.write();
        if w.generation != generation {
            return Ok(false);
        }
        *w = fresh;
        Ok(true)
    }

    /// Every topic's id and partition count, in id order: what placement depends on.
    pub fn layout(&self) -> Vec<(Uuid, i32)> {
        let mut layout: Vec<(Uuid, i32)> = self
            .tables
            .read()
            .by_id
            .values()
            .map(|t| (t.record.id, t.record.partitions))
            .collect();
        layout.sort_unstable();
        layout
    }

    /// Every partition of every topic.
    pub fn partitions(&self) -> Vec<inkless_actors::TopicPartition> {
        self.tables
            .read()
            .by_id
            .values()
            .flat_map(|t| {
                (0..t.record.partitions).map(|partition| inkless_actors::TopicPartition {
                    topic_id: t.record.id,
                    partition,
                })
            })
            .collect()
    }

    /// A topic by name.
    pub fn by_name(&self, name: &str) -> Option<Arc<Topic>> {
        self.tables.read().by_name.get(name).cloned()
    }

    /// A topic by id.
    pub fn by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.tables.read().by_id.get(id).cloned()
    }

    /// Every topic, by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.tables.read().by_name.values().cloned().collect();
        v.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        v
    }

    /// Creates a topic in the store and the catalog.
    pub async fn create(&self, t: NewTopic) -> Result<Arc<Topic>, MetaError> {
        let r = self.store.create_topic(t).await?;
        Ok(self.put(r))
    }

    /// Deletes a topic.
    pub async fn delete(&self, name: &str) -> Result<Arc<Topic>, MetaError> {
        let r = self.store.delete_topic(name).await?;
        let mut w = self.tables.write();
        w.generation += 1;
        w.by_name.remove(&r.name);
        Ok(w.by_id
            .remove(&r.id)
            .unwrap_or_else(|| Arc::new(Topic::new(r, &self.defaults))))
    }

    /// Changes topic configs.
    pub async fn alter(
        &self,
        name: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> Result<Arc<Topic>, MetaError> {
        let r = self.store.alter_topic_configs(name, changes).await?;
        Ok(self.put(r))
    }

    /// Raises the partition count.
    pub async fn grow(&self, name: &str, total: i32) -> Result<Arc<Topic>, MetaError> {
        let r = self.store.create_partitions(name, total).await?;
        Ok(self.put(r))
    }
}

impl inkless_actors::TopicLookup for Catalog {
    fn lookup(&self, name: &str) -> Option<(Uuid, i32)> {
        self.by_name(name)
            .map(|t| (t.record.id, t.record.partitions))
    }

    fn name_of(&self, id: &Uuid) -> Option<String> {
        self.by_id(id).map(|t| t.record.name.clone())
    }

    fn names(&self) -> Vec<String> {
        self.all().iter().map(|t| t.record.name.clone()).collect()
    }

    fn retention(&self, id: &Uuid) -> Option<RetentionLimits> {
        self.by_id(id).map(|t| t.retention)
    }

    fn compaction(&self, id: &Uuid) -> Option<CompactionPolicy> {
        self.by_id(id).and_then(|t| t.compaction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "has space", "ünïcode", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_values_are_typed() {
        assert!(validate_topic_config("retention.ms", "1000").is_ok());
        assert!(validate_topic_config("retention.ms", "soon").is_err());
        assert!(validate_topic_config("retention.ms", "-1").is_ok());
        let set = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(validate_topic_config_set(&set(&[("min.compaction.lag.ms", "10")])).is_ok());
        assert!(validate_topic_config_set(&set(&[
            ("min.compaction.lag.ms", "10"),
            ("max.compaction.lag.ms", "5")
        ]))
        .is_err());
        assert!(validate_topic_config("retention.ms", "-2").is_err());
        assert!(validate_topic_config("retention.bytes", "-1").is_ok());
        assert!(validate_topic_config("segment.ms", "0").is_err());
        assert!(validate_topic_config("max.message.bytes", "-5").is_err());
        assert!(validate_topic_config("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate_topic_config("message.timestamp.type", "Whenever").is_err());
        assert!(validate_topic_config("no.such.config", "1").is_err());
    }

    #[test]
    fn compaction_configs_follow_kafka_bounds() {
        for ok in ["compact", "delete", "compact,delete", "delete, compact"] {
            assert!(validate_topic_config("cleanup.policy", ok).is_ok(), "{ok}");
        }
        for bad in ["", "compacted", "compact,,delete", "none"] {
            assert!(
                validate_topic_config("cleanup.policy", bad).is_err(),
                "{bad}"
            );
        }
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "0.01").is_ok());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "1").is_ok());
        for bad in ["1.5", "-0.1", "NaN", "half"] {
            assert!(validate_topic_config("min.cleanable.dirty.ratio", bad).is_err());
        }
        assert!(validate_topic_config("max.compaction.lag.ms", "0").is_err());
        assert!(validate_topic_config("min.compaction.lag.ms", "-1").is_err());
        assert!(validate_topic_config("delete.retention.ms", "-1").is_err());
        assert!(validate_topic_config("delete.retention.ms", "0").is_ok());
    }

    #[test]
    fn compact_only_topics_have_no_retention() {
        let topic = |policy: &str| {
            let record = TopicRecord {
                id: Uuid::new_v4(),
                name: "t".into(),
                partitions: 1,
                configs: [
                    ("cleanup.policy".to_string(), policy.to_string()),
                    ("retention.ms".to_string(), "1000".to_string()),
                    ("min.cleanable.dirty.ratio".to_string(), "0.2".to_string()),
                ]
                .into(),
            };
            let defaults = BrokerDefaults {
                max_message_bytes: 1,
                retention_ms: 5,
                retention_bytes: -1,
            };
            Topic::new(record, &defaults)
        };
        let compact = topic("compact");
        assert!(compact.retention.unlimited());
        assert_eq!(
            compact.compaction.map(|c| c.min_cleanable_dirty_ratio),
            Some(0.2)
        );
        let both = topic("compact,delete");
        assert_eq!(both.retention.max_age_ms, Some(1000));
        assert!(both.compaction.is_some());
        assert!(topic("delete").compaction.is_none());
    }
}
