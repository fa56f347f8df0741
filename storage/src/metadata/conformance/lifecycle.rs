//! Conformance of the data lifecycle: retention offsets, exact live bytes, and the two
//! phases of object deletion with the fence that keeps a deleted object from coming back.

use super::batch;
use crate::metadata::*;

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
        .retire_dead_objects(0, 100)
        .await
        .expect("retire")
        .is_empty());
    s.delete_records(t.id, 0, epoch, 20).await.expect("delete");
    assert!(
        s.retire_dead_objects(60_000, 100)
            .await
            .expect("retire")
            .is_empty(),
        "within its grace period"
    );
    assert_eq!(
        s.retire_dead_objects(0, 100).await.expect("retire"),
        vec![a]
    );
    assert!(s
        .retire_dead_objects(0, 100)
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
        s.retire_dead_objects(0, 100).await.expect("retire"),
        vec![b]
    );
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
