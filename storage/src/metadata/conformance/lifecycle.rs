//! Conformance of the data lifecycle: retention offsets, exact live bytes, and the two
//! phases of object deletion with the fence that keeps a deleted object from coming back.

use super::batch;
use crate::metadata::*;

/// An hour in milliseconds: marks of deleted objects are kept that long here.
const HOUR: i64 = 3_600_000;

/// Objects dead for `grace_ms`, unconfirmed marks retried after five minutes, confirmed
/// marks of objects older than `forget_ms` forgotten.
fn dead(grace_ms: i64, forget_ms: i64) -> DeadObjects {
    DeadObjects {
        grace_ms,
        retry_ms: 300_000,
        forget_ms,
        limit: 100,
    }
}

/// Ten-offset batches of 100 bytes: `[0, 10)` and `[10, 20)` in object `a`, `[20, 30)` in
/// `b`; largest timestamps 1000, 1010, 1020.
fn three_batches(a: &str, b: &str) -> Vec<BatchCoordinate> {
    vec![
        batch(0, 9, a, 0, (-1, -1, -1)),
        batch(10, 19, a, 100, (-1, -1, -1)),
        batch(20, 29, b, 0, (-1, -1, -1)),
    ]
}

fn append(t: Uuid, epoch: i64, batches: Vec<BatchCoordinate>) -> PartitionAppend {
    PartitionAppend {
        topic_id: t,
        partition: 0,
        owner_epoch: epoch,
        batches,
        producers: Vec::new(),
        txn_events: Vec::new(),
    }
}

fn query(t: Uuid, expire_before: Option<i64>, max_bytes: Option<u64>) -> RetentionQuery {
    RetentionQuery {
        partition: (t, 0),
        expire_before,
        max_bytes,
    }
}

pub(super) async fn lifecycle(s: &SharedMetadataStore) {
    retention_and_deletion(s).await;
    merging(s).await;
}

fn row(base: i64, last: i64, key: &str, len: u32) -> BatchCoordinate {
    BatchCoordinate {
        byte_len: len,
        object_size: u64::from(len),
        ..batch(base, last, key, 0, (-1, -1, -1))
    }
}

async fn merging(s: &SharedMetadataStore) {
    let t = s
        .create_topic(NewTopic {
            name: "merging".into(),
            partitions: 1,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create");
    let epoch = s
        .claim_partition(t.id, 0, Claimant::alone(1))
        .await
        .expect("claim")
        .owner_epoch;
    let produced = vec![
        batch(0, 9, "wal/m1", 0, (-1, -1, -1)),
        batch(10, 19, "wal/m2", 0, (-1, -1, -1)),
        batch(20, 29, "wal/m3", 0, (-1, -1, -1)),
    ];
    s.commit_appends(vec![append(t.id, epoch, produced.clone())])
        .await
        .expect("commit");
    let key = (t.id, 0);
    let young = s.merge_candidates(key, "wal/", 60_000, 1 << 20).await;
    assert!(young.expect("candidates").is_empty(), "too young to merge");
    let run = s
        .merge_candidates(key, "wal/", 0, 250)
        .await
        .expect("candidates");
    assert_eq!(
        run,
        produced[..2].to_vec(),
        "the oldest run within 250 bytes"
    );
    let before = s.object_stats().await.expect("stats");

    // Two batches become one row of a new object.
    let rewrite = |epoch: i64, new: Vec<BatchCoordinate>| BatchRewrite {
        topic_id: t.id,
        partition: 0,
        owner_epoch: epoch,
        old: run.iter().map(RowRef::from).collect(),
        new,
    };
    let merged = row(0, 19, "seg/a", 200);
    let out = s
        .rewrite_batches(rewrite(epoch, vec![merged.clone()]))
        .await;
    assert_eq!(out.expect("rewrite"), RewriteOutcome::Replaced);
    let rows = s.read_batches(t.id, 0, 0, u64::MAX).await.expect("read");
    assert_eq!(rows, vec![merged.clone(), produced[2].clone()]);
    let after = s.object_stats().await.expect("stats");
    assert_eq!(
        after.dead_objects,
        before.dead_objects + 2,
        "both sources are dead"
    );
    assert_eq!(after.batches + 1, before.batches);
    assert_eq!(after.live_bytes, before.live_bytes);
    let next = s.merge_candidates(key, "wal/", 0, 1 << 20).await;
    assert_eq!(next.expect("candidates"), produced[2..].to_vec());

    // The same rows again: changed; a stale owner: fenced; a bad shape: invalid.
    let again = s.rewrite_batches(rewrite(epoch, vec![row(0, 19, "seg/b", 200)]));
    assert_eq!(again.await.expect("rewrite"), RewriteOutcome::Changed);
    let gap = vec![row(0, 8, "seg/c", 90), row(10, 19, "seg/c", 100)];
    assert!(matches!(
        s.rewrite_batches(rewrite(epoch, gap)).await,
        Err(MetaError::Invalid(_))
    ));
    let epoch2 = s
        .claim_partition(t.id, 0, Claimant::alone(1))
        .await
        .expect("claim again")
        .owner_epoch;
    let tail = |epoch: i64, key: &str| BatchRewrite {
        topic_id: t.id,
        partition: 0,
        owner_epoch: epoch,
        old: vec![RowRef::from(&produced[2])],
        new: vec![row(20, 29, key, 100)],
    };
    let stale = s.rewrite_batches(tail(epoch, "seg/d")).await;
    assert_eq!(stale.expect("rewrite"), RewriteOutcome::Fenced);
    // A new object taken for an orphan before the swap is never referenced.
    s.retire_orphans(vec!["seg/e".into()])
        .await
        .expect("orphan");
    let gone = s.rewrite_batches(tail(epoch2, "seg/e")).await;
    assert!(matches!(gone, Err(MetaError::ObjectDeleted(_))), "{gone:?}");
    assert_eq!(
        s.rewrite_batches(tail(epoch2, "seg/f"))
            .await
            .expect("rewrite"),
        RewriteOutcome::Replaced
    );
    let rows = s.read_batches(t.id, 0, 0, u64::MAX).await.expect("read");
    assert_eq!(rows, vec![merged, row(20, 29, "seg/f", 100)]);
    s.delete_topic("merging").await.expect("delete");
}

async fn retention_and_deletion(s: &SharedMetadataStore) {
    let before = s.object_stats().await.expect("stats");
    let t = s
        .create_topic(NewTopic {
            name: "lifecycle".into(),
            partitions: 1,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create");
    let epoch = s
        .claim_partition(t.id, 0, Claimant::alone(1))
        .await
        .expect("claim")
        .owner_epoch;
    let (a, b) = ("life/a", "life/b");
    let out = s
        .commit_appends(vec![append(t.id, epoch, three_batches(a, b))])
        .await
        .expect("commit");
    assert_eq!(out, vec![AppendOutcome::Committed]);

    retention_offsets(s, t.id).await;

    // Retiring the batches of `a` one by one: it is dead only once both are gone, and then
    // deleted only after its grace period.
    s.delete_records(t.id, 0, epoch, 10).await.expect("delete");
    assert!(s
        .retire_dead_objects(dead(0, HOUR))
        .await
        .expect("retire")
        .is_empty());
    s.delete_records(t.id, 0, epoch, 20).await.expect("delete");
    assert!(
        s.retire_dead_objects(dead(60_000, HOUR))
            .await
            .expect("retire")
            .is_empty(),
        "within its grace period"
    );
    assert_eq!(
        s.retire_dead_objects(dead(0, HOUR)).await.expect("retire"),
        vec![a]
    );
    let again = s.retire_dead_objects(dead(0, HOUR)).await.expect("retire");
    assert!(
        again.is_empty(),
        "handed out again only if unconfirmed for minutes"
    );
    let take_over = DeadObjects {
        retry_ms: 0,
        ..dead(0, HOUR)
    };
    assert_eq!(
        s.retire_dead_objects(take_over).await.expect("retire"),
        vec![a],
        "a collector that has just started takes every unconfirmed mark"
    );
    s.confirm_deleted(vec![a.into()]).await.expect("confirm");
    assert!(s
        .retire_dead_objects(take_over)
        .await
        .expect("retire")
        .is_empty());

    // A commit naming a deleted object is refused as a whole.
    let late = s
        .commit_appends(vec![append(
            t.id,
            epoch,
            vec![batch(30, 39, a, 200, (-1, -1, -1))],
        )])
        .await;
    assert!(
        matches!(&late, Err(MetaError::ObjectDeleted(k)) if k == a),
        "{late:?}"
    );

    // Orphans: only keys the store never heard of are taken, and stay fenced.
    let orphans = s
        .retire_orphans(vec![a.into(), b.into(), "life/orphan".into()])
        .await
        .expect("orphans");
    assert_eq!(orphans, vec!["life/orphan".to_string()]);
    let late = s
        .commit_appends(vec![append(
            t.id,
            epoch,
            vec![batch(30, 39, "life/orphan", 0, (-1, -1, -1))],
        )])
        .await;
    assert!(
        matches!(&late, Err(MetaError::ObjectDeleted(_))),
        "{late:?}"
    );
    let batches = s.read_batches(t.id, 0, 0, u64::MAX).await.expect("read");
    assert_eq!(batches.len(), 1, "nothing of a refused commit is stored");

    let now = s.object_stats().await.expect("stats");
    assert_eq!(now.live_objects, before.live_objects + 1);
    assert_eq!(now.live_bytes, before.live_bytes + 100);
    assert_eq!(now.deleted_objects, before.deleted_objects + 2);
    assert_eq!(now.batches, before.batches + 1);

    // Deleting the topic kills its last object.
    s.delete_topic("lifecycle").await.expect("delete topic");
    let after = s.object_stats().await.expect("stats");
    assert_eq!(after.dead_objects, before.dead_objects + 1);
    assert_eq!(
        s.retire_dead_objects(dead(0, HOUR)).await.expect("retire"),
        vec![b]
    );

    // A confirmed mark is forgotten once its object is older than `forget_ms`; unconfirmed
    // marks (b, the orphan) stay.
    let marked = s.object_stats().await.expect("stats").deleted_objects;
    assert!(s
        .retire_dead_objects(dead(HOUR, 0))
        .await
        .expect("retire")
        .is_empty());
    let left = s.object_stats().await.expect("stats").deleted_objects;
    assert_eq!(left, marked - 1, "the mark of a is forgotten");
}

async fn retention_offsets(s: &SharedMetadataStore, t: Uuid) {
    let nowhere = Uuid::new_v4();
    let got = s
        .retention_offsets(vec![
            query(t, None, None),
            query(t, Some(1_005), None),
            query(t, Some(1_020), None),
            query(t, Some(5_000), None),
            query(t, None, Some(200)),
            query(t, None, Some(201)),
            query(t, None, Some(50)),
            query(t, None, Some(1_000)),
            query(t, Some(1_005), Some(50)),
            RetentionQuery {
                partition: (nowhere, 0),
                expire_before: Some(5_000),
                max_bytes: None,
            },
        ])
        .await
        .expect("retention offsets");
    // Time: up to the first batch not expired, or the whole log. Bytes: the oldest batches
    // go while what remains still holds the limit.
    assert_eq!(got, vec![0, 10, 20, 30, 10, 0, 20, 0, 20, 0]);
    assert!(s
        .retention_offsets(Vec::new())
        .await
        .expect("none")
        .is_empty());
}
