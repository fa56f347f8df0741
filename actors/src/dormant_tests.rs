//! Dormant partitions (ADR 0024): held without an actor until used, woken by the first
//! message in the order messages came, put back to sleep when idle, with nothing lost.

use crate::tests::{answer, batch, node_with, produce, read_all, send};
use crate::{AppendError, NodeConfig, TopicPartition};
use std::time::Duration;

/// The partition kinds of the node's actor tree: (running, dormant).
fn tree_partitions(node: &crate::Node) -> (usize, usize) {
    let tree = node.actor_tree();
    let of = |status: &str| {
        tree.iter()
            .filter(|a| a.kind == "partition" && a.status == status)
            .count()
    };
    (of("Running"), of("Dormant"))
}

#[tokio::test]
async fn claimed_partitions_stay_dormant_until_a_message_needs_their_actor() {
    let (node, tp, _dir) = node_with(NodeConfig::default(), "memory://").await;
    let other = TopicPartition { partition: 1, ..tp };
    assert_eq!(node.running_partitions(), 2);
    assert_eq!(node.dormant_partitions(), 2, "claimed, no actor started");
    assert_eq!(tree_partitions(&node), (0, 2));
    let epoch = node.local_leader_epoch(&tp).expect("served while dormant");

    // A read at the end of the log is answered from the published offsets: no wake.
    let (coords, offsets) = node.read(&tp, 0, 1 << 20).await.unwrap();
    assert!(coords.is_empty());
    assert_eq!(offsets.high_watermark, 0);
    assert_eq!(node.dormant_partitions(), 2);

    // An append wakes it (reloaded from the store: the leader epoch stays), the other stays
    // dormant.
    assert_eq!(
        produce(&node, tp, batch(3, (-1, -1, -1)))
            .await
            .unwrap()
            .base_offset,
        0
    );
    assert_eq!(node.dormant_partitions(), 1);
    assert_eq!(tree_partitions(&node), (1, 1));
    assert_eq!(node.local_leader_epoch(&tp), Some(epoch));
    assert!(node.local_leader_epoch(&other).is_some());
    assert_eq!(read_all(&node, tp).await.len(), 1);
    node.stop().await;
}

#[tokio::test]
async fn an_idle_partition_sleeps_and_wakes_where_it_left_off() {
    let config = NodeConfig {
        partition_idle_stop: Some(Duration::from_millis(200)),
        ..NodeConfig::default()
    };
    let (node, tp, _dir) = node_with(config, "memory://").await;
    let idempotent = |seq| batch(2, (9, 0, seq));
    assert_eq!(
        produce(&node, tp, idempotent(0)).await.unwrap().base_offset,
        0
    );
    assert_eq!(
        produce(&node, tp, idempotent(2)).await.unwrap().base_offset,
        2
    );
    assert_eq!(node.dormant_partitions(), 1);

    let slept = tokio::time::timeout(Duration::from_secs(5), async {
        while node.dormant_partitions() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(slept.is_ok(), "the idle actor went dormant");
    assert_eq!(tree_partitions(&node), (0, 2));
    let published = node.local_offsets([Some(&tp)]);
    assert_eq!(published[0].map(|o| o.high_watermark), Some(4));

    // Woken from the store: the retried last batch is a duplicate, the next one follows.
    assert_eq!(
        produce(&node, tp, idempotent(2)).await.unwrap().base_offset,
        2
    );
    assert_eq!(
        produce(&node, tp, idempotent(4)).await.unwrap().base_offset,
        4
    );
    assert_eq!(
        produce(&node, tp, idempotent(8)).await,
        Err(AppendError::OutOfOrderSequence {
            got: 8,
            expected: 6
        })
    );
    let offsets: Vec<i64> = read_all(&node, tp).await.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, vec![0, 2, 4]);
    node.stop().await;
}

#[tokio::test]
async fn appends_that_arrive_while_a_partition_wakes_keep_their_order() {
    let (node, tp, _dir) = node_with(NodeConfig::default(), "memory://").await;
    // One idempotent producer's batches, sent without waiting: a gap in their order would
    // be an OUT_OF_ORDER_SEQUENCE answer.
    let sent: Vec<_> = (0..20)
        .map(|seq| send(&node, tp, batch(1, (5, 0, seq))))
        .collect();
    let mut bases = Vec::new();
    for rx in sent {
        bases.push(answer(rx).await.unwrap().base_offset);
    }
    assert_eq!(bases, (0..20).collect::<Vec<i64>>());
    node.stop().await;
}
