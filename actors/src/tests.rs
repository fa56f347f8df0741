//! Tests of the whole actor tree on an in-memory object store and SQLite.

use crate::partition::actor::AppendAck;
use crate::write::produce_buffer::PartAppend;
use crate::{AppendError, Node, NodeConfig, ReadError, TopicPartition};
use bytes::{Bytes, BytesMut};
use inkless_protocol::batch::{split_and_validate, BatchHeader};
use inkless_storage::blob::{BlobStore, S3Options};
use inkless_storage::metadata::{self, NewTopic};
use std::time::Duration;
use tokio::sync::oneshot;

/// A minimal valid magic-2 batch with `count` records (record bodies are opaque to the
/// broker, so the bytes after the header only need a correct CRC).
pub(crate) fn batch(count: i32, producer: (i64, i16, i32)) -> Bytes {
    let mut b = BytesMut::zeroed(61 + 8);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[16] = 2;
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[27..35].copy_from_slice(&1_000i64.to_be_bytes());
    b[35..43].copy_from_slice(&1_000i64.to_be_bytes());
    b[43..51].copy_from_slice(&producer.0.to_be_bytes());
    b[51..53].copy_from_slice(&producer.1.to_be_bytes());
    b[53..57].copy_from_slice(&producer.2.to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

fn crc32c(data: &[u8]) -> u32 {
    // Bitwise CRC-32C (Castagnoli), independent of the crate under test.
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[derive(Debug)]
pub(crate) struct NoTopics;

impl crate::group::consumer::TopicLookup for NoTopics {
    fn lookup(&self, _name: &str) -> Option<(uuid::Uuid, i32)> {
        None
    }
    fn name_of(&self, _id: &uuid::Uuid) -> Option<String> {
        None
    }
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
    fn retention(&self, _: &uuid::Uuid) -> Option<crate::RetentionLimits> {
        None
    }
}

async fn node() -> (Node, TopicPartition, tempfile::TempDir) {
    node_with(NodeConfig::default(), "memory://").await
}

/// A node with `config` (flushing every 5 ms) on the object store `blob_url`, running both
/// partitions of topic `t`.
pub(crate) async fn node_with(
    config: NodeConfig,
    blob_url: &str,
) -> (Node, TopicPartition, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = metadata::open("sqlite://meta.db", dir.path())
        .await
        .unwrap();
    let blob = BlobStore::open(blob_url, &S3Options::default(), dir.path()).unwrap();
    let t = store
        .create_topic(NewTopic {
            name: "t".into(),
            partitions: 2,
            configs: Default::default(),
        })
        .await
        .unwrap();
    let config = NodeConfig {
        flush_interval: Duration::from_millis(5),
        ..config
    };
    let node = Node::start(config, store, blob, std::sync::Arc::new(NoTopics))
        .await
        .unwrap();
    let tp = TopicPartition {
        topic_id: t.id,
        partition: 0,
    };
    let tps = vec![tp, TopicPartition { partition: 1, ..tp }];
    assert!(node.ensure_partitions(tps).await.is_empty());
    (node, tp, dir)
}

pub(crate) async fn produce(
    node: &Node,
    tp: TopicPartition,
    b: Bytes,
) -> Result<AppendAck, AppendError> {
    answer(send(node, tp, b)).await
}

pub(crate) type Answer = oneshot::Receiver<Result<AppendAck, AppendError>>;

/// Hands `b` to the node's produce buffer; the answer comes on the receiver.
pub(crate) fn send(node: &Node, tp: TopicPartition, b: Bytes) -> Answer {
    let (tx, rx) = oneshot::channel();
    let batches = split_and_validate(&b).unwrap();
    node.produce(vec![PartAppend {
        tp,
        batches,
        reply: tx,
    }])
    .unwrap();
    rx
}

pub(crate) async fn answer(rx: Answer) -> Result<AppendAck, AppendError> {
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("answered in time")
        .expect("reply not dropped")
}

pub(crate) async fn read_all(node: &Node, tp: TopicPartition) -> Vec<(i64, BatchHeader)> {
    let (coords, _) = node.read(&tp, 0, 1 << 30).await.unwrap();
    let mut out = Vec::new();
    for c in coords {
        let bytes = node.batch_bytes(&c).await.unwrap();
        out.push((c.base_offset, BatchHeader::parse(&bytes).unwrap()));
    }
    out
}

#[tokio::test]
async fn appends_are_sequenced_committed_and_readable() {
    let (node, tp, _dir) = node().await;
    let a = produce(&node, tp, batch(3, (-1, -1, -1))).await.unwrap();
    let b = produce(&node, tp, batch(2, (-1, -1, -1))).await.unwrap();
    assert_eq!((a.base_offset, b.base_offset), (0, 3));
    let got = read_all(&node, tp).await;
    assert_eq!(
        got.iter()
            .map(|(o, h)| (*o, h.record_count))
            .collect::<Vec<_>>(),
        vec![(0, 3), (3, 2)]
    );
    assert_eq!(
        node.partition(&tp)
            .await
            .unwrap()
            .offsets
            .borrow()
            .high_watermark,
        5
    );
    // At the end of the log: nothing, with the offsets; past it: out of range; inside it:
    // the batches from the one holding the offset.
    let (at_end, offsets) = node.read(&tp, 5, 1 << 20).await.unwrap();
    assert!(at_end.is_empty());
    assert_eq!((offsets.log_start_offset, offsets.high_watermark), (0, 5));
    assert!(matches!(
        node.read(&tp, 6, 1 << 20).await,
        Err(ReadError::OffsetOutOfRange {
            high_watermark: 5,
            ..
        })
    ));
    let (inside, _) = node.read(&tp, 4, 1 << 20).await.unwrap();
    assert_eq!(
        inside.iter().map(|c| c.base_offset).collect::<Vec<_>>(),
        vec![3]
    );
    node.stop().await;
}

#[tokio::test]
async fn idempotent_producer_duplicates_gaps_and_fencing() {
    let (node, tp, _dir) = node().await;
    let first = produce(&node, tp, batch(2, (7, 0, 0))).await.unwrap();
    let dup = produce(&node, tp, batch(2, (7, 0, 0))).await.unwrap();
    assert_eq!(
        dup.base_offset, first.base_offset,
        "a retried batch gets its original offset"
    );
    let gap = produce(&node, tp, batch(1, (7, 0, 5))).await;
    assert!(matches!(
        gap,
        Err(AppendError::OutOfOrderSequence {
            got: 5,
            expected: 2
        })
    ));
    produce(&node, tp, batch(1, (7, 1, 0))).await.unwrap();
    let old = produce(&node, tp, batch(1, (7, 0, 2))).await;
    assert!(matches!(
        old,
        Err(AppendError::InvalidProducerEpoch { got: 0, current: 1 })
    ));
    assert_eq!(
        read_all(&node, tp).await.len(),
        2,
        "the duplicate was not stored twice"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_panicking_partition_restarts_from_the_store_and_loses_nothing() {
    let (node, tp, _dir) = node().await;
    for i in 0..5 {
        produce(&node, tp, batch(1, (9, 0, i))).await.unwrap();
    }
    let before = node.partition(&tp).await.unwrap().actor.id();
    assert!(node.inject_partition_panic(&tp));
    let restarted = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(h) = node.partition(&tp).await {
                if h.actor.id() != before {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(restarted.is_ok(), "partition actor was restarted");
    // Acknowledged data is there, and producer state survived: a retry of the last batch is
    // a duplicate and the next sequence continues.
    assert_eq!(read_all(&node, tp).await.len(), 5);
    let dup = produce(&node, tp, batch(1, (9, 0, 4))).await.unwrap();
    assert_eq!(dup.base_offset, 4);
    let next = produce(&node, tp, batch(1, (9, 0, 5))).await.unwrap();
    assert_eq!(next.base_offset, 5);
    node.stop().await;
}

/// Waits until the partition runs under a new actor (after a failure).
async fn restarted(node: &Node, tp: TopicPartition, before: ractor::ActorId) {
    let restarted = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if node
                .partition(&tp)
                .await
                .is_some_and(|h| h.actor.id() != before)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(restarted.is_ok(), "partition actor was restarted");
}

#[tokio::test]
async fn an_expired_producer_counts_as_new_whether_the_partition_ran_on_or_restarted() {
    let config = NodeConfig {
        producer_id_expiration: Duration::from_millis(300),
        ..NodeConfig::default()
    };
    let (node, tp, _dir) = node_with(config, "memory://").await;
    produce(&node, tp, batch(1, (9, 0, 0))).await.unwrap();
    produce(&node, tp, batch(1, (9, 0, 1))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let forgotten = |r: Result<AppendAck, AppendError>| {
        matches!(
            r,
            Err(AppendError::OutOfOrderSequence {
                got: 2,
                expected: 0
            })
        )
    };
    // The running actor still holds the state in memory, but it has expired.
    assert!(forgotten(produce(&node, tp, batch(1, (9, 0, 2))).await));
    // Reloaded from the store (whose row is still there: the sweep waits for a margin),
    // the partition answers the same.
    let before = node.partition(&tp).await.unwrap().actor.id();
    assert!(node.inject_partition_panic(&tp));
    restarted(&node, tp, before).await;
    assert!(forgotten(produce(&node, tp, batch(1, (9, 0, 2))).await));
    // The producer starts again (a new epoch after the client's reset): tracked afresh.
    let first = produce(&node, tp, batch(1, (9, 1, 0))).await.unwrap();
    let dup = produce(&node, tp, batch(1, (9, 1, 0))).await.unwrap();
    assert_eq!((first.base_offset, dup.base_offset), (2, 2));
    produce(&node, tp, batch(1, (9, 1, 1))).await.unwrap();
    assert_eq!(read_all(&node, tp).await.len(), 4);
    node.stop().await;
}

#[tokio::test]
async fn offsets_of_an_empty_group_expire_after_the_retention() {
    use crate::group::coordinator::{
        GroupArgs, GroupCoordinator, GroupLimits, GroupMsg, MemberRef,
    };
    use inkless_storage::metadata::CommittedOffset;
    let dir = tempfile::tempdir().unwrap();
    let store = metadata::open("sqlite://meta.db", dir.path())
        .await
        .unwrap();
    let t = store
        .create_topic(NewTopic {
            name: "t".into(),
            partitions: 1,
            configs: Default::default(),
        })
        .await
        .unwrap();
    let args = |queued| GroupArgs {
        queued,
        group_id: "g".into(),
        store: store.clone(),
        limits: GroupLimits {
            offsets_retention: Duration::from_millis(300),
            ..GroupLimits::default()
        },
        topics: std::sync::Arc::new(NoTopics),
        claimant: inkless_storage::metadata::Claimant::alone(1),
    };
    let (g, handle) = crate::tree::mailbox::spawn_for_test(GroupCoordinator, args).await;
    let (tx, rx) = oneshot::channel();
    let offsets = vec![CommittedOffset {
        topic_id: t.id,
        partition: 0,
        offset: 42,
        leader_epoch: -1,
        metadata: String::new(),
        commit_time_ms: 0,
    }];
    let member = MemberRef {
        member_id: String::new(),
        instance_id: None,
    };
    g.post(GroupMsg::Commit {
        member,
        generation: -1,
        offsets,
        reply: tx,
    })
    .unwrap();
    assert_eq!(rx.await.unwrap(), Ok(()));
    assert_eq!(store.fetch_offsets("g").await.unwrap().len(), 1);
    // The coordinator deletes the offsets and stops once the group stayed empty that long.
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("coordinator stopped")
        .unwrap();
    assert!(store.fetch_offsets("g").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_restarted_partition_manager_brings_every_partition_back() {
    let (node, tp, _dir) = node().await;
    let other = TopicPartition { partition: 1, ..tp };
    produce(&node, tp, batch(2, (-1, -1, -1))).await.unwrap();
    let before = node.partition(&tp).await.unwrap().actor.id();
    assert!(node.inject_manager_panic());
    let back = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let mut fresh = true;
            for t in [&tp, &other] {
                fresh &= node.partition(t).await.is_some_and(|h| {
                    h.actor.id() != before
                        && h.actor.actor().get_status() == ractor::ActorStatus::Running
                });
            }
            if fresh {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        back.is_ok(),
        "both partitions run again under the new manager"
    );
    assert_eq!(read_all(&node, tp).await.len(), 1);
    let next = produce(&node, other, batch(1, (-1, -1, -1))).await.unwrap();
    assert_eq!(next.base_offset, 0);
    node.stop().await;
}

#[tokio::test]
async fn a_stale_owner_is_fenced_once_another_node_claims_the_partition() {
    // Two nodes on one metadata store, both believing they own the partition (as during a
    // network partition): the later claim wins and the earlier owner can no longer commit.
    let (a, tp, dir) = node().await;
    assert_eq!(
        produce(&a, tp, batch(2, (-1, -1, -1)))
            .await
            .unwrap()
            .base_offset,
        0
    );
    let store = metadata::open("sqlite://meta.db", dir.path())
        .await
        .unwrap();
    let b = Node::start(
        NodeConfig {
            node_id: 2,
            flush_interval: Duration::from_millis(5),
            ..NodeConfig::default()
        },
        store,
        a.blob().clone(),
        std::sync::Arc::new(NoTopics),
    )
    .await
    .unwrap();
    assert!(b.ensure_partitions(vec![tp]).await.is_empty());

    assert_eq!(
        produce(&a, tp, batch(1, (-1, -1, -1))).await,
        Err(AppendError::NotOwner)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a.partition(&tp).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fenced actor keeps running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        produce(&b, tp, batch(3, (-1, -1, -1)))
            .await
            .unwrap()
            .base_offset,
        2
    );
    let got: Vec<(i64, i32)> = read_all(&b, tp)
        .await
        .iter()
        .map(|(o, h)| (*o, h.record_count))
        .collect();
    assert_eq!(got, vec![(0, 2), (2, 3)], "the refused append left nothing");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn appends_beyond_the_metadata_writers_backlog_limit_are_refused_unwritten() {
    let config = NodeConfig {
        max_pending_commits: 2,
        ..NodeConfig::default()
    };
    let (node, tp, dir) = node_with(config, "memory://").await;
    // Awake before the store locks up (waking claims the partition in the store).
    assert!(node.partition(&tp).await.is_some());
    // Another connection holds the database's write lock: the writer's first transaction
    // waits, and the appends behind it stay in its backlog.
    let lock = rusqlite::Connection::open(dir.path().join("meta.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let sent: Vec<Answer> = (0..3)
        .map(|_| send(&node, tp, batch(1, (-1, -1, -1))))
        .collect();
    let mut sent = sent.into_iter();
    let (first, second, third) = (
        sent.next().unwrap(),
        sent.next().unwrap(),
        sent.next().unwrap(),
    );
    assert_eq!(
        answer(third).await,
        Err(AppendError::TimedOut),
        "the third append found two waiting and was refused"
    );
    lock.execute_batch("COMMIT").unwrap();
    let (a, b) = (answer(first).await.unwrap(), answer(second).await.unwrap());
    assert_eq!((a.base_offset, b.base_offset), (0, 1));
    assert_eq!(
        read_all(&node, tp).await.len(),
        2,
        "nothing of the refused one"
    );
    node.stop().await;
}

#[tokio::test]
async fn the_open_object_keeps_filling_while_the_uploader_is_full() {
    let config = NodeConfig {
        max_objects_waiting: 1,
        upload_timeout: Duration::from_secs(30),
        ..NodeConfig::default()
    };
    let (node, tp, dir) = node_with(config, "file://objects").await;
    // `objects/wal` as a regular file: PUTs fail (and are retried) until it is removed.
    let wal = dir.path().join("objects/wal");
    std::fs::create_dir_all(wal.parent().unwrap()).unwrap();
    std::fs::write(&wal, b"not a directory").unwrap();
    let first = send(&node, tp, batch(1, (-1, -1, -1)));
    // Each later produce comes several flush intervals after the one before: with room in
    // the uploader each would be an object of its own.
    let mut later = Vec::new();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        later.push(send(&node, tp, batch(1, (-1, -1, -1))));
    }
    std::fs::remove_file(&wal).unwrap();
    assert_eq!(answer(first).await.unwrap().base_offset, 0);
    for rx in later {
        answer(rx).await.unwrap();
    }
    let objects: std::collections::BTreeSet<String> = node
        .read(&tp, 0, 1 << 20)
        .await
        .unwrap()
        .0
        .into_iter()
        .map(|c| c.object_key)
        .collect();
    assert_eq!(
        objects.len(),
        2,
        "the two produces made while the uploader was full share one object"
    );
    node.stop().await;
}

/// ADR 0020: after a restart of the node, a stored group's coordinator answers a group request
/// as before the restart (same generation, member and assignment); a group the store does
/// not know is not started by a request that cannot create it.
#[tokio::test]
async fn a_group_request_restarts_the_coordinator_of_a_stored_group_only() {
    use crate::group::coordinator::{JoinArgs, MemberRef, SyncArgs};
    use crate::GroupMiss;
    let (node, _tp, _dir) = node().await;
    assert_eq!(
        node.group("nobody", false).await.err(),
        Some(GroupMiss::Unknown)
    );
    let g = node.group("g", true).await.unwrap();
    let joined = g
        .join(JoinArgs {
            member_id: String::new(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(30),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: false,
        })
        .await
        .unwrap();
    let (member, generation) = (joined.member_id.clone(), joined.generation);
    let synced = g
        .sync(SyncArgs {
            member_id: member.clone(),
            instance_id: None,
            generation,
            assignments: vec![(member.clone(), Bytes::from_static(b"A"))],
        })
        .await
        .unwrap();
    assert_eq!(synced.error, None);
    let (store, blob) = (node.store().clone(), node.blob().clone());
    node.stop().await;

    let node = Node::start(
        NodeConfig::default(),
        store,
        blob,
        std::sync::Arc::new(NoTopics),
    )
    .await
    .unwrap();
    let g = node.group("g", false).await.expect("a stored group starts");
    let who = MemberRef {
        member_id: member.clone(),
        instance_id: None,
    };
    assert_eq!(g.heartbeat(who, generation).await.unwrap(), Ok(()));
    let d = g.describe().await.unwrap();
    assert_eq!(d.state_name, "Stable");
    assert_eq!(d.members[0].assignment, Bytes::from_static(b"A"));
    assert_eq!(
        node.group("nobody", false).await.err(),
        Some(GroupMiss::Unknown)
    );
    node.stop().await;
}
