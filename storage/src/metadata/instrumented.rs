//! Metrics of every metadata-store call: [`Instrumented`] wraps a store and times each
//! method under its own name (`operation` label of
//! `inkless_metadata_store_request_duration_seconds`), counts database failures
//! ([`MetaError::Database`]; refusals such as a fenced epoch are answers, not failures) and
//! the calls in flight. [`super::open`] wraps every store it opens.
//!
//! A method added to [`MetadataStore`] must be added here too (the compiler says so).

use super::*;
use crate::metrics::{self, MetadataSeries};
use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

/// A metadata store whose calls are measured; see the module documentation.
#[derive(Debug)]
pub struct Instrumented {
    inner: SharedMetadataStore,
}

impl Instrumented {
    /// Wraps `inner`.
    pub fn new(inner: SharedMetadataStore) -> Self {
        Self { inner }
    }
}

/// Runs `call`, timing it in `series`.
async fn timed<T>(
    series: &OnceLock<MetadataSeries>,
    op: metrics::MetadataOp,
    call: impl Future<Output = MetaResult<T>>,
) -> MetaResult<T> {
    let series = series.get_or_init(|| metrics::metadata_op(op));
    let in_flight = metrics::metadata_in_flight();
    in_flight.inc();
    let started = Instant::now();
    let result = call.await;
    in_flight.dec();
    let failed = matches!(result, Err(MetaError::Database(_)));
    series.done(started, failed);
    result
}

/// Times one delegated call under the method's name.
macro_rules! timed {
    ($op:literal, $call:expr) => {{
        static SERIES: OnceLock<MetadataSeries> = OnceLock::new();
        timed(&SERIES, $op, $call).await
    }};
}

#[async_trait::async_trait]
impl MetadataStore for Instrumented {
    async fn create_topic(&self, topic: NewTopic) -> MetaResult<TopicRecord> {
        timed!("create_topic", self.inner.create_topic(topic))
    }
    async fn delete_topic(&self, name: &str) -> MetaResult<TopicRecord> {
        timed!("delete_topic", self.inner.delete_topic(name))
    }
    async fn list_topics(&self) -> MetaResult<Vec<TopicRecord>> {
        timed!("list_topics", self.inner.list_topics())
    }
    async fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> MetaResult<TopicRecord> {
        timed!(
            "alter_topic_configs",
            self.inner.alter_topic_configs(name, changes)
        )
    }
    async fn create_partitions(&self, name: &str, total: i32) -> MetaResult<TopicRecord> {
        timed!(
            "create_partitions",
            self.inner.create_partitions(name, total)
        )
    }
    async fn claim_partitions(
        &self,
        claimant: Claimant,
        partitions: Vec<PartitionKey>,
    ) -> MetaResult<Vec<MetaResult<PartitionState>>> {
        timed!(
            "claim_partitions",
            self.inner.claim_partitions(claimant, partitions)
        )
    }
    async fn reload_partitions(
        &self,
        claimant: Claimant,
        partitions: Vec<PartitionKey>,
    ) -> MetaResult<Vec<MetaResult<PartitionState>>> {
        timed!(
            "reload_partitions",
            self.inner.reload_partitions(claimant, partitions)
        )
    }
    async fn release_partitions(
        &self,
        claimant: Claimant,
        partitions: Vec<PartitionKey>,
    ) -> MetaResult<u64> {
        timed!(
            "release_partitions",
            self.inner.release_partitions(claimant, partitions)
        )
    }
    async fn owned_partitions(&self, claimant: Claimant) -> MetaResult<Vec<PartitionKey>> {
        timed!("owned_partitions", self.inner.owned_partitions(claimant))
    }
    async fn claim_group(&self, group: &str, claimant: Claimant) -> MetaResult<i64> {
        timed!("claim_group", self.inner.claim_group(group, claimant))
    }
    async fn release_groups(&self, claimant: Claimant, groups: Vec<String>) -> MetaResult<u64> {
        timed!(
            "release_groups",
            self.inner.release_groups(claimant, groups)
        )
    }
    async fn owned_groups(&self, claimant: Claimant) -> MetaResult<Vec<String>> {
        timed!("owned_groups", self.inner.owned_groups(claimant))
    }
    async fn commit_appends(
        &self,
        appends: Vec<PartitionAppend>,
    ) -> MetaResult<Vec<AppendOutcome>> {
        timed!("commit_appends", self.inner.commit_appends(appends))
    }
    async fn read_batches(
        &self,
        topic_id: Uuid,
        partition: i32,
        from_offset: i64,
        max_bytes: u64,
    ) -> MetaResult<Vec<BatchCoordinate>> {
        timed!(
            "read_batches",
            self.inner
                .read_batches(topic_id, partition, from_offset, max_bytes)
        )
    }
    async fn batch_for_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        timestamp: i64,
    ) -> MetaResult<Option<BatchCoordinate>> {
        timed!(
            "batch_for_timestamp",
            self.inner
                .batch_for_timestamp(topic_id, partition, timestamp)
        )
    }
    async fn batch_with_max_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> MetaResult<Option<BatchCoordinate>> {
        timed!(
            "batch_with_max_timestamp",
            self.inner.batch_with_max_timestamp(topic_id, partition)
        )
    }
    async fn partition_sizes(&self, partitions: Vec<PartitionKey>) -> MetaResult<Vec<u64>> {
        timed!("partition_sizes", self.inner.partition_sizes(partitions))
    }
    async fn partition_epochs(&self, since_ms: i64) -> MetaResult<EpochChanges> {
        timed!("partition_epochs", self.inner.partition_epochs(since_ms))
    }
    async fn set_partition_pins(&self, pins: Vec<(PartitionKey, Option<i32>)>) -> MetaResult<()> {
        timed!("set_partition_pins", self.inner.set_partition_pins(pins))
    }
    async fn partition_pins(&self) -> MetaResult<Vec<PartitionPin>> {
        timed!("partition_pins", self.inner.partition_pins())
    }
    async fn claim_balancer_epoch(&self) -> MetaResult<i64> {
        timed!("claim_balancer_epoch", self.inner.claim_balancer_epoch())
    }
    async fn set_balancer_pins(
        &self,
        epoch: i64,
        pins: Vec<(PartitionKey, Option<i32>)>,
    ) -> MetaResult<usize> {
        timed!(
            "set_balancer_pins",
            self.inner.set_balancer_pins(epoch, pins)
        )
    }
    async fn report_load(&self, node_id: i32, load: Vec<(PartitionKey, u64)>) -> MetaResult<()> {
        timed!("report_load", self.inner.report_load(node_id, load))
    }
    async fn node_loads(&self) -> MetaResult<Vec<NodeLoad>> {
        timed!("node_loads", self.inner.node_loads())
    }
    async fn delete_records(
        &self,
        topic_id: Uuid,
        partition: i32,
        owner_epoch: i64,
        offset: i64,
    ) -> MetaResult<i64> {
        timed!(
            "delete_records",
            self.inner
                .delete_records(topic_id, partition, owner_epoch, offset)
        )
    }
    async fn commit_offsets(
        &self,
        group: &str,
        owner_epoch: i64,
        offsets: Vec<CommittedOffset>,
    ) -> MetaResult<()> {
        timed!(
            "commit_offsets",
            self.inner.commit_offsets(group, owner_epoch, offsets)
        )
    }
    async fn fetch_offsets(&self, group: &str) -> MetaResult<Vec<CommittedOffset>> {
        timed!("fetch_offsets", self.inner.fetch_offsets(group))
    }
    async fn save_group_state(
        &self,
        group: &str,
        owner_epoch: i64,
        state: Option<Vec<u8>>,
    ) -> MetaResult<()> {
        timed!(
            "save_group_state",
            self.inner.save_group_state(group, owner_epoch, state)
        )
    }
    async fn load_group_state(&self, group: &str) -> MetaResult<Option<Vec<u8>>> {
        timed!("load_group_state", self.inner.load_group_state(group))
    }
    async fn delete_offsets(
        &self,
        group: &str,
        which: Option<Vec<(Uuid, i32)>>,
    ) -> MetaResult<u64> {
        timed!("delete_offsets", self.inner.delete_offsets(group, which))
    }
    async fn offset_groups(&self) -> MetaResult<Vec<String>> {
        timed!("offset_groups", self.inner.offset_groups())
    }
    async fn retention_offsets(&self, queries: Vec<RetentionQuery>) -> MetaResult<Vec<i64>> {
        timed!("retention_offsets", self.inner.retention_offsets(queries))
    }
    async fn retire_dead_objects(&self, q: DeadObjects) -> MetaResult<Vec<String>> {
        timed!("retire_dead_objects", self.inner.retire_dead_objects(q))
    }
    async fn confirm_deleted(&self, keys: Vec<String>) -> MetaResult<()> {
        timed!("confirm_deleted", self.inner.confirm_deleted(keys))
    }
    async fn retire_orphans(&self, keys: Vec<String>) -> MetaResult<Vec<String>> {
        timed!("retire_orphans", self.inner.retire_orphans(keys))
    }
    async fn merge_candidates(
        &self,
        partition: PartitionKey,
        prefix: &str,
        min_age_ms: i64,
        max_bytes: u64,
    ) -> MetaResult<Vec<BatchCoordinate>> {
        timed!(
            "merge_candidates",
            self.inner
                .merge_candidates(partition, prefix, min_age_ms, max_bytes)
        )
    }
    async fn rewrite_batches(&self, rewrite: BatchRewrite) -> MetaResult<RewriteOutcome> {
        timed!("rewrite_batches", self.inner.rewrite_batches(rewrite))
    }
    async fn object_stats(&self) -> MetaResult<ObjectStats> {
        timed!("object_stats", self.inner.object_stats())
    }
    async fn expire_producers(&self, idle_ms: i64, limit: usize) -> MetaResult<u64> {
        timed!(
            "expire_producers",
            self.inner.expire_producers(idle_ms, limit)
        )
    }
    async fn objects_page(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> MetaResult<Vec<StoredObject>> {
        timed!("objects_page", self.inner.objects_page(after, limit))
    }
    async fn batches_page(
        &self,
        after: Option<BatchCursor>,
        limit: usize,
    ) -> MetaResult<Vec<StoredBatch>> {
        timed!("batches_page", self.inner.batches_page(after, limit))
    }
    async fn recount_live_bytes(
        &self,
        keys: Vec<String>,
        fix: bool,
    ) -> MetaResult<Vec<LiveBytesMismatch>> {
        timed!(
            "recount_live_bytes",
            self.inner.recount_live_bytes(keys, fix)
        )
    }
    async fn cluster_id(&self) -> MetaResult<String> {
        timed!("cluster_id", self.inner.cluster_id())
    }
    async fn allocate_producer_id(&self) -> MetaResult<i64> {
        timed!("allocate_producer_id", self.inner.allocate_producer_id())
    }
    async fn renew_lease(&self, lease: &NodeLease, ttl_ms: i64) -> MetaResult<LeaseView> {
        timed!("renew_lease", self.inner.renew_lease(lease, ttl_ms))
    }
    async fn release_lease(&self, node_id: i32, incarnation: Uuid) -> MetaResult<()> {
        timed!(
            "release_lease",
            self.inner.release_lease(node_id, incarnation)
        )
    }
    async fn nodes(&self) -> MetaResult<Vec<NodeStatus>> {
        timed!("nodes", self.inner.nodes())
    }
    async fn set_node_draining(&self, node_id: i32, draining: bool) -> MetaResult<bool> {
        timed!(
            "set_node_draining",
            self.inner.set_node_draining(node_id, draining)
        )
    }
    async fn draining_nodes(&self) -> MetaResult<Vec<i32>> {
        timed!("draining_nodes", self.inner.draining_nodes())
    }
    fn pool_status(&self) -> Option<metrics::PoolStatus> {
        self.inner.pool_status()
    }
    async fn get_transaction(&self, transactional_id: &str) -> MetaResult<Option<TxnRecord>> {
        timed!(
            "get_transaction",
            self.inner.get_transaction(transactional_id)
        )
    }
    async fn put_transaction(&self, rec: TxnRecord) -> MetaResult<Option<i64>> {
        timed!("put_transaction", self.inner.put_transaction(rec))
    }
    async fn list_transactions(&self) -> MetaResult<Vec<TxnRecord>> {
        timed!("list_transactions", self.inner.list_transactions())
    }

    async fn due_transactions(
        &self,
        now_ms: i64,
        idle_before_ms: i64,
    ) -> MetaResult<Vec<TxnRecord>> {
        timed!(
            "due_transactions",
            self.inner.due_transactions(now_ms, idle_before_ms)
        )
    }
    async fn delete_transaction(&self, transactional_id: &str, version: i64) -> MetaResult<bool> {
        timed!(
            "delete_transaction",
            self.inner.delete_transaction(transactional_id, version)
        )
    }
    async fn stage_txn_offsets(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        group: &str,
        offsets: Vec<CommittedOffset>,
    ) -> MetaResult<bool> {
        timed!(
            "stage_txn_offsets",
            self.inner
                .stage_txn_offsets(transactional_id, producer, group, offsets)
        )
    }
    async fn pending_txn_offsets(&self, group: &str) -> MetaResult<Vec<PartitionKey>> {
        timed!("pending_txn_offsets", self.inner.pending_txn_offsets(group))
    }
    async fn txn_read_state(
        &self,
        topic_id: Uuid,
        partition: i32,
        from_offset: i64,
        to_offset: i64,
    ) -> MetaResult<(Option<i64>, Vec<AbortedTxn>)> {
        timed!(
            "txn_read_state",
            self.inner
                .txn_read_state(topic_id, partition, from_offset, to_offset)
        )
    }
    async fn partition_producers(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> MetaResult<PartitionProducers> {
        timed!(
            "partition_producers",
            self.inner.partition_producers(topic_id, partition)
        )
    }
    async fn end_txn_offsets(&self, transactional_id: &str, commit: bool) -> MetaResult<()> {
        timed!(
            "end_txn_offsets",
            self.inner.end_txn_offsets(transactional_id, commit)
        )
    }
}
