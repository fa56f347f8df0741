//! DescribeLogDirs: what `kafka-log-dirs --describe` shows.
//!
//! A node keeps no partition on local disk, so it reports one pseudo log dir, named by the
//! object store's URL (`storage.object_store`, a relative `file://` path resolved against
//! `storage.data_dir`), that holds every partition this node leads.
//! A partition's size is the bytes of its batches in the object store (summed by the
//! metadata store; batches wholly below the log start offset are gone), its offset lag 0
//! (there are no followers to lag), and the dir's total and usable bytes are unknown (-1).

use super::{s, Ctx, NONE};
use crate::catalog::Topic;
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::describe_log_dirs_request::DescribeLogDirsRequest;
use inkless_protocol::kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResponse, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use inkless_protocol::kafka_protocol::messages::TopicName;
use inkless_storage::metadata::PartitionKey;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Kafka's value for a volume size it does not know.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

/// The partitions a request names, by topic; `None` asks for all of them.
type Wanted = Option<BTreeMap<String, BTreeSet<i32>>>;

/// Answers DescribeLogDirs.
pub async fn describe(ctx: &Ctx, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted: Wanted = req.topics.map(|topics| {
        let mut m: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        for t in topics {
            m.entry(t.topic.0.to_string())
                .or_default()
                .extend(t.partitions);
        }
        m
    });
    let led = led_partitions(ctx, &wanted);
    let keys: Vec<PartitionKey> = led
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(|&p| (t.record.id, p)))
        .collect();
    let dir = DescribeLogDirsResult::default()
        .with_log_dir(s(log_dir_name(ctx)))
        .with_total_bytes(UNKNOWN_VOLUME_BYTES)
        .with_usable_bytes(UNKNOWN_VOLUME_BYTES);
    let dir = match ctx.node.store().partition_sizes(keys).await {
        Ok(sizes) => dir
            .with_error_code(NONE)
            .with_topics(topic_entries(&led, &sizes)),
        Err(e) => {
            tracing::warn!(error = %e, "describe log dirs: partition sizes unavailable");
            dir.with_error_code(ResponseError::KafkaStorageError.code())
        }
    };
    DescribeLogDirsResponse::default()
        .with_error_code(NONE)
        .with_results(vec![dir])
}

/// The name of the pseudo log dir: the object store's URL.
fn log_dir_name(ctx: &Ctx) -> String {
    let storage = &ctx.config.storage;
    match storage.object_store.strip_prefix("file://") {
        Some(path) if !std::path::Path::new(path).is_absolute() => {
            format!("file://{}", storage.data_dir.join(path).display())
        }
        _ => storage.object_store.clone(),
    }
}

/// The wanted partitions this node leads, by topic name (topics without one left out).
fn led_partitions(ctx: &Ctx, wanted: &Wanted) -> Vec<(Arc<Topic>, Vec<i32>)> {
    let live = ctx.node.live();
    let topics: Vec<Arc<Topic>> = match wanted {
        None => ctx.catalog.all(),
        Some(m) => m.keys().filter_map(|n| ctx.catalog.by_name(n)).collect(),
    };
    topics
        .into_iter()
        .map(|t| {
            let asked = wanted.as_ref().and_then(|m| m.get(&t.record.name));
            let partitions = (0..t.record.partitions)
                .filter(|p| asked.is_none_or(|a| a.contains(p)))
                .filter(|&partition| {
                    live.owns_partition(&inkless_actors::TopicPartition {
                        topic_id: t.record.id,
                        partition,
                    })
                })
                .collect();
            (t, partitions)
        })
        .filter(|(_, ps): &(_, Vec<i32>)| !ps.is_empty())
        .collect()
}

/// The response's topics; `sizes` holds one size per partition of `led`, in order.
fn topic_entries(led: &[(Arc<Topic>, Vec<i32>)], sizes: &[u64]) -> Vec<DescribeLogDirsTopic> {
    let mut sizes = sizes.iter();
    led.iter()
        .map(|(t, ps)| {
            let partitions = ps
                .iter()
                .map(|&p| {
                    let size = sizes.next().copied().unwrap_or(0);
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p)
                        .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                        .with_offset_lag(0)
                        .with_is_future_key(false)
                })
                .collect();
            DescribeLogDirsTopic::default()
                .with_name(TopicName(s(t.record.name.clone())))
                .with_partitions(partitions)
        })
        .collect()
}
