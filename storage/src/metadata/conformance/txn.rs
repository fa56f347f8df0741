//! Transactions: coordinator records with compare-and-set, staged offsets, and a
//! partition's open and aborted transactions as its next owner claims them.

use super::*;

fn record(id: &str) -> TxnRecord {
    TxnRecord {
        transactional_id: id.to_string(),
        producer_id: 42,
        producer_epoch: 0,
        state: TxnState::Empty,
        timeout_ms: 60_000,
        partitions: Vec::new(),
        groups: Vec::new(),
        txn_start_ms: -1,
        last_update_ms: 1_000,
        version: 0,
        next_producer_id: -1,
    }
}

/// Runs the transaction checks.
pub(super) async fn transactions(s: &SharedMetadataStore) {
    records(s).await;
    due(s).await;
    staged_offsets(s).await;
    partition_txns(s).await;
}

async fn records(s: &SharedMetadataStore) {
    assert_eq!(s.get_transaction("t1").await.expect("get"), None);
    let v1 = s.put_transaction(record("t1")).await.expect("insert");
    assert_eq!(v1, Some(1));
    // A second insert of the same id loses.
    assert_eq!(s.put_transaction(record("t1")).await.expect("insert"), None);
    let mut r = s.get_transaction("t1").await.expect("get").expect("row");
    assert_eq!(r.version, 1);
    let topic = Uuid::new_v4();
    r.state = TxnState::Ongoing;
    r.partitions = vec![(topic, 0), (topic, 3)];
    r.groups = vec!["g one".into(), "g:2,x".into()];
    r.txn_start_ms = 2_000;
    r.next_producer_id = 77;
    assert_eq!(s.put_transaction(r.clone()).await.expect("cas"), Some(2));
    // A stale version is refused and changes nothing.
    let mut stale = r.clone();
    stale.state = TxnState::PrepareAbort;
    assert_eq!(s.put_transaction(stale).await.expect("cas"), None);
    let back = s.get_transaction("t1").await.expect("get").expect("row");
    assert_eq!(back, TxnRecord { version: 2, ..r });
    s.put_transaction(record("t0")).await.expect("insert");
    let ids: Vec<String> = s
        .list_transactions()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.transactional_id)
        .collect();
    assert_eq!(ids, vec!["t0".to_string(), "t1".to_string()]);
    assert!(!s.delete_transaction("t1", 1).await.expect("stale delete"));
    assert!(s.delete_transaction("t1", 2).await.expect("delete"));
    assert!(s.delete_transaction("t0", 1).await.expect("delete"));
    assert!(s.list_transactions().await.expect("list").is_empty());
}

/// `due_transactions` answers exactly the ids the coordinators' pass acts on: Prepare
/// states, Ongoing past their timeout (strictly), idle ended ids (strictly before the cut).
async fn due(s: &SharedMetadataStore) {
    let now = 70_000;
    let cases = [
        ("d-empty-old", TxnState::Empty, -1, 1_000, true),
        ("d-empty-cut", TxnState::Empty, -1, 5_000, false),
        ("d-empty-new", TxnState::Empty, -1, 9_000, false),
        ("d-commit-old", TxnState::CompleteCommit, 500, 1_000, true),
        ("d-abort-old", TxnState::CompleteAbort, 500, 1_000, true),
        ("d-abort-new", TxnState::CompleteAbort, 500, 69_000, false),
        (
            "d-prep-commit",
            TxnState::PrepareCommit,
            60_000,
            69_000,
            true,
        ),
        ("d-prep-abort", TxnState::PrepareAbort, 60_000, 69_000, true),
        ("d-ongoing-late", TxnState::Ongoing, 1_000, 1_000, true),
        ("d-ongoing-edge", TxnState::Ongoing, 10_000, 10_000, false),
        ("d-ongoing-fresh", TxnState::Ongoing, 20_000, 1_000, false),
        ("d-ongoing-unstarted", TxnState::Ongoing, -1, 1_000, false),
    ];
    for (id, state, start, last, _) in cases {
        let rec = TxnRecord {
            state,
            txn_start_ms: start,
            last_update_ms: last,
            ..record(id)
        };
        s.put_transaction(rec).await.expect("insert");
    }
    let got = s.due_transactions(now, 5_000).await.expect("due");
    let ids: Vec<&str> = got.iter().map(|r| r.transactional_id.as_str()).collect();
    let mut want: Vec<&str> = cases.iter().filter(|c| c.4).map(|c| c.0).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    let late = got
        .iter()
        .find(|r| r.transactional_id == "d-ongoing-late")
        .expect("late row");
    assert_eq!(late.state, TxnState::Ongoing);
    assert_eq!((late.txn_start_ms, late.version), (1_000, 1));
    for (id, ..) in cases {
        assert!(s.delete_transaction(id, 1).await.expect("delete"));
    }
    assert!(s.due_transactions(now, now).await.expect("due").is_empty());
}

async fn staged_offsets(s: &SharedMetadataStore) {
    let t = s
        .create_topic(NewTopic {
            name: "txn-offsets".into(),
            partitions: 2,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create");
    let o = |p: i32, offset: i64| CommittedOffset {
        topic_id: t.id,
        partition: p,
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_time_ms: 5,
    };
    // Staging needs the transaction Ongoing under the producer.
    let producer = (42, 0);
    assert!(!s
        .stage_txn_offsets("tx", producer, "tg", vec![o(0, 1)])
        .await
        .expect("stage"));
    let mut rec = record("tx");
    rec.state = TxnState::Ongoing;
    s.put_transaction(rec).await.expect("insert");
    assert!(!s
        .stage_txn_offsets("tx", (42, 1), "tg", vec![o(0, 1)])
        .await
        .expect("stage"));
    assert!(s
        .stage_txn_offsets("tx", producer, "tg", vec![o(0, 10), o(1, 20)])
        .await
        .expect("stage"));
    assert!(s.fetch_offsets("tg").await.expect("fetch").is_empty());
    let mut pending = s.pending_txn_offsets("tg").await.expect("pending");
    pending.sort();
    assert_eq!(pending, vec![(t.id, 0), (t.id, 1)]);
    // Aborted: the staged offsets go away, nothing becomes visible.
    s.end_txn_offsets("tx", false).await.expect("abort");
    s.end_txn_offsets("tx", true).await.expect("commit nothing");
    assert!(s.fetch_offsets("tg").await.expect("fetch").is_empty());
    assert!(s
        .pending_txn_offsets("tg")
        .await
        .expect("pending")
        .is_empty());
    s.stage_txn_offsets("tx", producer, "tg", vec![o(0, 11)])
        .await
        .expect("stage");
    s.stage_txn_offsets("tx", producer, "tg", vec![o(0, 12)])
        .await
        .expect("restage");
    s.end_txn_offsets("tx", true).await.expect("commit");
    let got = s.fetch_offsets("tg").await.expect("fetch");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].partition, got[0].offset), (0, 12));
    assert!(s.delete_transaction("tx", 1).await.expect("delete"));
    s.delete_topic("txn-offsets").await.expect("delete");
}

async fn partition_txns(s: &SharedMetadataStore) {
    let t = s
        .create_topic(NewTopic {
            name: "txn-log".into(),
            partitions: 1,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create");
    let st = s
        .claim_partition(t.id, 0, Claimant::alone(1))
        .await
        .expect("claim");
    assert!(st.open_txns.is_empty() && st.aborted_txns.is_empty());
    let append = |base: i64, events: Vec<TxnEvent>| PartitionAppend {
        topic_id: t.id,
        partition: 0,
        owner_epoch: st.owner_epoch,
        batches: vec![batch(base, base, "txn-obj", base as u64 * 100, (7, 0, -1))],
        producers: vec![],
        txn_events: events,
    };
    let aborted = AbortedTxn {
        producer_id: 7,
        first_offset: 0,
        last_offset: 1,
    };
    for a in [
        append(
            0,
            vec![TxnEvent::Opened {
                producer_id: 7,
                first_offset: 0,
            }],
        ),
        append(1, vec![TxnEvent::Aborted(aborted)]),
        append(
            2,
            vec![TxnEvent::Opened {
                producer_id: 7,
                first_offset: 2,
            }],
        ),
        append(
            3,
            vec![TxnEvent::Opened {
                producer_id: 8,
                first_offset: 3,
            }],
        ),
        append(4, vec![TxnEvent::Committed { producer_id: 7 }]),
    ] {
        assert_eq!(
            s.commit_appends(vec![a]).await.expect("commit"),
            vec![AppendOutcome::Committed]
        );
    }
    let producer = ProducerRecord {
        producer_id: 7,
        producer_epoch: 0,
        last_sequence: 4,
        last_offset: 5,
        last_write_ms: 1_234,
    };
    let with_producer = PartitionAppend {
        producers: vec![producer.clone()],
        ..append(5, vec![])
    };
    s.commit_appends(vec![with_producer]).await.expect("commit");
    let again = s
        .claim_partition(t.id, 0, Claimant::alone(1))
        .await
        .expect("reclaim");
    assert_eq!(again.open_txns, vec![(8, 3)]);
    assert_eq!(again.aborted_txns, vec![aborted]);
    let (producers, open) = s.partition_producers(t.id, 0).await.expect("producers");
    assert_eq!(producers, vec![producer]);
    assert_eq!(open, vec![(8, 3)]);
    let read = s.txn_read_state(t.id, 0, 0, 5).await.expect("read state");
    assert_eq!(read, (Some(3), vec![aborted]));
    let read = s.txn_read_state(t.id, 0, 2, 5).await.expect("read state");
    assert_eq!(read, (Some(3), vec![]));
    let read = s.txn_read_state(t.id, 0, 0, 0).await.expect("read state");
    assert_eq!(read, (Some(3), vec![]));
    // Aborted transactions below the log start are not loaded.
    s.delete_records(t.id, 0, again.owner_epoch, 2)
        .await
        .expect("delete records");
    let third = s
        .claim_partition(t.id, 0, Claimant::alone(1))
        .await
        .expect("reclaim");
    assert!(third.aborted_txns.is_empty());
    let read = s.txn_read_state(t.id, 0, 0, 10).await.expect("read state");
    assert_eq!(
        read.1,
        vec![],
        "the aborted row below the log start is gone"
    );
    s.delete_topic("txn-log").await.expect("delete");
}
