//! Conformance of producer expiry and of what `inkless storage check` reads and repairs.

use super::batch;
use crate::metadata::*;

/// A producer's record as written at `last_write_ms`.
fn producer(id: i64, last_sequence: i32, last_offset: i64, last_write_ms: i64) -> ProducerRecord {
    ProducerRecord {
        producer_id: id,
        producer_epoch: 0,
        last_sequence,
        last_offset,
        last_write_ms,
    }
}

async fn claimed_topic(s: &SharedMetadataStore, name: &str) -> (Uuid, i64) {
    let t = s
        .create_topic(NewTopic {
            name: name.into(),
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
    (t.id, epoch)
}

async fn commit(
    s: &SharedMetadataStore,
    (t, epoch): (Uuid, i64),
    batches: Vec<BatchCoordinate>,
    producers: Vec<ProducerRecord>,
) {
    let out = s
        .commit_appends(vec![PartitionAppend {
            topic_id: t,
            partition: 0,
            owner_epoch: epoch,
            batches,
            producers,
            txn_events: Vec::new(),
        }])
        .await
        .expect("commit");
    assert_eq!(out, vec![AppendOutcome::Committed]);
}

/// Producer rows idle longer than the limit go, a bounded number per call; a write
/// refreshes a row; a claim no longer sees an expired producer or its batches.
pub(super) async fn producer_expiry(s: &SharedMetadataStore) {
    let (t, epoch) = claimed_topic(s, "expiry").await;
    let now = crate::now_ms();
    let old = now - 100_000;
    let batches = (0..4)
        .map(|i| batch(i, i, "expiry/a", i as u64 * 100, (100 + i, 0, 0)))
        .collect();
    let producers = (0..4)
        .map(|i| producer(100 + i, 0, i, if i == 0 { now } else { old }))
        .collect();
    commit(s, (t, epoch), batches, producers).await;
    // Producer 101 writes again: its row is fresh.
    commit(
        s,
        (t, epoch),
        vec![batch(4, 4, "expiry/a", 400, (101, 0, 1))],
        vec![producer(101, 1, 4, now)],
    )
    .await;

    assert_eq!(s.expire_producers(50_000, 1).await.expect("expire"), 1);
    assert_eq!(s.expire_producers(50_000, 10).await.expect("expire"), 1);
    assert_eq!(s.expire_producers(50_000, 10).await.expect("expire"), 0);

    let st = s
        .claim_partition(t, 0, Claimant::alone(1))
        .await
        .expect("reclaim");
    let mut ids: Vec<i64> = st.producers.iter().map(|p| p.producer_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![100, 101], "the idle producers are gone");
    let fresh = st
        .producers
        .iter()
        .find(|p| p.producer_id == 101)
        .expect("producer 101");
    assert_eq!(fresh, &producer(101, 1, 4, now), "the last write is stored");
    assert!(
        st.producer_batches
            .iter()
            .all(|b| b.producer_id == 100 || b.producer_id == 101),
        "no batch of an expired producer is loaded"
    );
    s.delete_topic("expiry").await.expect("delete topic");
}

/// Pages of objects and batches, and a recount that finds nothing on a consistent store.
pub(super) async fn storage_check_reads(s: &SharedMetadataStore) {
    let (t, epoch) = claimed_topic(s, "check").await;
    let batches = vec![
        batch(0, 9, "check/a", 0, (-1, -1, -1)),
        batch(10, 19, "check/a", 100, (-1, -1, -1)),
        batch(20, 29, "check/b", 0, (-1, -1, -1)),
    ];
    commit(s, (t, epoch), batches.clone(), Vec::new()).await;

    let mut objects = Vec::new();
    let mut after = None;
    loop {
        let page = s.objects_page(after.clone(), 2).await.expect("objects");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        objects.extend(page);
    }
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "key order: {keys:?}");
    let a = objects
        .iter()
        .find(|o| o.key == "check/a")
        .expect("check/a");
    assert_eq!(
        (a.size_bytes, a.live_bytes, a.deleted_ms),
        (10_000, 200, None)
    );

    let mut mine = Vec::new();
    let mut after = None;
    loop {
        let page = s.batches_page(after, 2).await.expect("batches");
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        mine.extend(page.into_iter().filter(|b| b.partition == (t, 0)));
    }
    let expected: Vec<StoredBatch> = batches
        .iter()
        .map(|b| StoredBatch {
            partition: (t, 0),
            base_offset: b.base_offset,
            last_offset: b.last_offset,
            object_key: b.object_key.clone(),
            byte_offset: b.byte_offset,
            byte_len: b.byte_len,
        })
        .collect();
    assert_eq!(mine, expected);

    let every: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
    assert_eq!(
        s.recount_live_bytes(every.clone(), false)
            .await
            .expect("recount"),
        Vec::new(),
        "live bytes are exact"
    );
    assert_eq!(
        s.recount_live_bytes(vec!["check/never".into()], true)
            .await
            .expect("recount"),
        Vec::new(),
        "an unknown key is neither reported nor created"
    );
    s.delete_topic("check").await.expect("delete topic");
    assert_eq!(
        s.recount_live_bytes(every, false).await.expect("recount"),
        Vec::new(),
        "deleting a topic releases exactly its bytes"
    );
}

/// Sets up an object for [`corrupted_live_bytes_are_recounted`]: topic `recount` with two
/// batches of 100 bytes in object `recount/a`, whose key it returns. The caller then
/// corrupts the object's live bytes in its store's own way.
pub async fn object_for_recount(s: &SharedMetadataStore) -> String {
    let (t, epoch) = claimed_topic(s, "recount").await;
    let batches = vec![
        batch(0, 9, "recount/a", 0, (-1, -1, -1)),
        batch(10, 19, "recount/a", 100, (-1, -1, -1)),
    ];
    commit(s, (t, epoch), batches, Vec::new()).await;
    "recount/a".into()
}

/// After the live bytes of `key` (from [`object_for_recount`]) were set to `corrupted`: a
/// recount reports them, a fix restores the sum of the batches, and then nothing is
/// reported.
pub async fn corrupted_live_bytes_are_recounted(
    s: &SharedMetadataStore,
    key: &str,
    corrupted: i64,
) {
    let wrong = vec![LiveBytesMismatch {
        key: key.into(),
        stored: Some(corrupted),
        batches: 200,
    }];
    assert_eq!(
        s.recount_live_bytes(vec![key.into()], false)
            .await
            .expect("recount"),
        wrong
    );
    assert_eq!(
        s.recount_live_bytes(vec![key.into()], false)
            .await
            .expect("recount"),
        wrong,
        "a recount without fix changes nothing"
    );
    assert_eq!(
        s.recount_live_bytes(vec![key.into()], true)
            .await
            .expect("fix"),
        wrong
    );
    assert!(s
        .recount_live_bytes(vec![key.into()], false)
        .await
        .expect("recount")
        .is_empty());
    let stored = s
        .objects_page(None, usize::MAX >> 1)
        .await
        .expect("objects")
        .into_iter()
        .find(|o| o.key == key)
        .expect("row");
    assert_eq!((stored.live_bytes, stored.dead_since_ms), (200, None));
}
