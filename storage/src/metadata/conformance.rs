//! The shared test suite every [`MetadataStore`] implementation must pass.
//!
//! Call [`run_all`] from an implementation's tests with a fresh, empty store. It panics on
//! the first failed expectation.
//!
//! [`batch`] makes a batch coordinate of 100 bytes for other tests of the stores.

mod check;
mod lifecycle;
mod txn;

pub use check::{corrupted_live_bytes_are_recounted, object_for_recount};

use super::*;

pub(crate) fn batch(
    base: i64,
    last: i64,
    key: &str,
    at: u64,
    producer: (i64, i16, i32),
) -> BatchCoordinate {
    BatchCoordinate {
        base_offset: base,
        last_offset: last,
        object_key: key.to_string(),
        object_size: 10_000,
        byte_offset: at,
        byte_len: 100,
        max_timestamp: 1_000 + base,
        producer_id: producer.0,
        producer_epoch: producer.1,
        base_sequence: producer.2,
        last_sequence: if producer.2 < 0 {
            -1
        } else {
            producer.2 + (last - base) as i32
        },
    }
}

/// Runs every check against `store`, which must be empty.
pub async fn run_all(store: SharedMetadataStore) {
    topics(&store).await;
    appends_reads_and_fencing(&store).await;
    producers_and_delete_records(&store).await;
    group_offsets(&store).await;
    leases(&store).await;
    ownership(&store).await;
    batch_claims(&store).await;
    pins(&store).await;
    balancer_pins(&store).await;
    group_states(&store).await;
    drains(&store).await;
    lifecycle::lifecycle(&store).await;
    check::producer_expiry(&store).await;
    check::storage_check_reads(&store).await;
    txn::transactions(&store).await;
}

fn lease(node_id: i32, az: &str) -> NodeLease {
    NodeLease {
        node_id,
        incarnation: Uuid::new_v4(),
        az: az.to_string(),
        kafka_addr: format!("127.0.0.{node_id}:9092"),
        cluster_addr: format!("127.0.0.{node_id}:9093"),
        admin_addr: String::new(),
    }
}

async fn leases(s: &SharedMetadataStore) {
    let a = lease(1, "az-a");
    let b = lease(2, "az-b");
    let seen = s.renew_lease(&a, 60_000).await.expect("register a").nodes;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].lease, a);
    assert!(seen[0].is_live() && seen[0].expires_in_ms <= 60_000);
    let seen = s.renew_lease(&b, 60_000).await.expect("register b").nodes;
    let ids: Vec<i32> = seen.iter().map(|n| n.lease.node_id).collect();
    assert_eq!(ids, vec![1, 2]);

    // A second process with node id 1 is refused while the first one's lease runs.
    let a2 = lease(1, "az-a");
    match s.renew_lease(&a2, 60_000).await {
        Err(MetaError::LeaseHeld {
            node_id: 1,
            expires_in_ms,
        }) => assert!(expires_in_ms > 0),
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    // The holder renews; a lease that has run out is taken over by a new incarnation.
    s.renew_lease(&a, 1).await.expect("renew a");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let seen = s.nodes().await.expect("nodes");
    assert!(!seen
        .iter()
        .find(|n| n.lease.node_id == 1)
        .expect("row")
        .is_live());
    let seen = s.renew_lease(&a2, 60_000).await.expect("take over").nodes;
    let one = seen.iter().find(|n| n.lease.node_id == 1).expect("row");
    assert_eq!(one.lease.incarnation, a2.incarnation);
    assert!(one.is_live());

    // Graceful leave removes only the caller's own incarnation.
    s.release_lease(1, a.incarnation)
        .await
        .expect("stale release");
    assert_eq!(s.nodes().await.expect("nodes").len(), 2);
    s.release_lease(1, a2.incarnation).await.expect("release");
    s.release_lease(2, b.incarnation).await.expect("release");
    assert!(s.nodes().await.expect("nodes").is_empty());

    // A renewal neither lists nor keeps a row that expired longer ago than rows are kept.
    let d = lease(4, "az-a");
    s.renew_lease(&d, 60_000).await.expect("register d");
    let old = lease(3, "az-c");
    let long_ago = -super::EXPIRED_LEASE_KEPT_MS - 60_000;
    s.renew_lease(&old, long_ago).await.expect("register old");
    let seen = s.renew_lease(&d, 60_000).await.expect("renew d").nodes;
    let ids: Vec<i32> = seen.iter().map(|n| n.lease.node_id).collect();
    assert_eq!(ids, vec![4]);
    let ids: Vec<i32> = s
        .nodes()
        .await
        .expect("nodes")
        .iter()
        .map(|n| n.lease.node_id)
        .collect();
    assert_eq!(ids, vec![4]);
    s.release_lease(4, d.incarnation).await.expect("release");
}

async fn group_offsets(s: &SharedMetadataStore) {
    let t = s
        .create_topic(NewTopic {
            name: "offsets".into(),
            partitions: 2,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create");
    let o = |p: i32, offset: i64| CommittedOffset {
        topic_id: t.id,
        partition: p,
        offset,
        leader_epoch: 0,
        metadata: format!("m{offset}"),
        commit_time_ms: 1_000 + offset,
    };
    let g1 = s
        .claim_group("g1", Claimant::alone(1))
        .await
        .expect("claim");
    let g2 = s
        .claim_group("g2", Claimant::alone(1))
        .await
        .expect("claim");
    s.commit_offsets("g1", g1, vec![o(0, 5), o(1, 7)])
        .await
        .expect("commit");
    s.commit_offsets("g1", g1, vec![o(0, 9)])
        .await
        .expect("recommit");
    s.commit_offsets("g2", g2, vec![o(1, 1)])
        .await
        .expect("commit");
    assert_eq!(
        s.fetch_offsets("g1").await.expect("fetch"),
        vec![o(0, 9), o(1, 7)]
    );
    assert_eq!(
        s.offset_groups().await.expect("groups"),
        vec!["g1".to_string(), "g2".to_string()]
    );
    assert_eq!(
        s.delete_offsets("g1", Some(vec![(t.id, 1)]))
            .await
            .expect("delete"),
        1
    );
    assert_eq!(s.fetch_offsets("g1").await.expect("fetch"), vec![o(0, 9)]);
    s.delete_topic("offsets").await.expect("delete topic");
    assert!(
        s.fetch_offsets("g1").await.expect("fetch").is_empty(),
        "a deleted topic's offsets go with it"
    );
    assert!(s.offset_groups().await.expect("groups").is_empty());
}

/// Durable group membership (ADR 0020): stored, replaced, read back and deleted under the
/// group's owner epoch; a stale coordinator's write (and offset commit) is refused.
async fn group_states(s: &SharedMetadataStore) {
    let (la, ca) = registered(s, 21).await;
    let (lb, cb) = registered(s, 22).await;
    assert_eq!(s.load_group_state("gs").await.expect("load"), None);
    let e1 = s.claim_group("gs", ca).await.expect("claim");
    s.save_group_state("gs", e1, Some(vec![1, 2, 3]))
        .await
        .expect("save");
    s.save_group_state("gs", e1, Some(vec![4, 0, 5]))
        .await
        .expect("replace");
    assert_eq!(
        s.load_group_state("gs").await.expect("load"),
        Some(vec![4, 0, 5])
    );
    let listed = s.offset_groups().await.expect("groups");
    assert!(
        listed.contains(&"gs".to_string()),
        "a group with members and no offsets is listed: {listed:?}"
    );
    // Another node takes the group over (the first released it): the old owner's writes
    // are refused, the new owner's go through.
    s.release_groups(ca, vec!["gs".into()])
        .await
        .expect("release");
    let e2 = s.claim_group("gs", cb).await.expect("claim b");
    assert!(e2 > e1);
    assert!(matches!(
        s.save_group_state("gs", e1, Some(vec![9])).await,
        Err(MetaError::GroupFenced(_))
    ));
    assert!(matches!(
        s.save_group_state("gs", e1, None).await,
        Err(MetaError::GroupFenced(_))
    ));
    assert_eq!(
        s.load_group_state("gs").await.expect("load"),
        Some(vec![4, 0, 5]),
        "a refused write changes nothing"
    );
    assert!(matches!(
        s.save_group_state("never-claimed", 0, Some(vec![1])).await,
        Err(MetaError::GroupFenced(_))
    ));
    s.save_group_state("gs", e2, Some(Vec::new()))
        .await
        .expect("save b");
    assert_eq!(
        s.load_group_state("gs").await.expect("load"),
        Some(Vec::new())
    );
    s.save_group_state("gs", e2, None).await.expect("delete");
    assert_eq!(s.load_group_state("gs").await.expect("load"), None);
    assert!(!s
        .offset_groups()
        .await
        .expect("groups")
        .contains(&"gs".to_string()));
    s.release_groups(cb, vec!["gs".into()])
        .await
        .expect("release");
    s.release_lease(21, la.incarnation).await.expect("leave");
    s.release_lease(22, lb.incarnation).await.expect("leave");
}

async fn topics(s: &SharedMetadataStore) {
    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_string(), "1000".to_string());
    let t = s
        .create_topic(NewTopic {
            name: "alpha".into(),
            partitions: 3,
            configs: configs.clone(),
        })
        .await
        .expect("create");
    assert_eq!((t.partitions, &t.configs), (3, &configs));
    let again = s
        .create_topic(NewTopic {
            name: "alpha".into(),
            partitions: 1,
            configs: BTreeMap::new(),
        })
        .await;
    assert!(matches!(again, Err(MetaError::TopicExists(_))));
    let t = s
        .alter_topic_configs(
            "alpha",
            vec![
                ("retention.ms".into(), None),
                ("cleanup.policy".into(), Some("delete".into())),
            ],
        )
        .await
        .expect("alter");
    assert_eq!(
        t.configs.get("cleanup.policy").map(String::as_str),
        Some("delete")
    );
    assert!(!t.configs.contains_key("retention.ms"));
    assert!(matches!(
        s.create_partitions("alpha", 2).await,
        Err(MetaError::Invalid(_))
    ));
    let t = s.create_partitions("alpha", 5).await.expect("grow");
    assert_eq!(t.partitions, 5);
    s.claim_partition(t.id, 4, Claimant::alone(1))
        .await
        .expect("new partition exists");
    assert_eq!(s.list_topics().await.expect("list"), vec![t.clone()]);
    s.delete_topic("alpha").await.expect("delete");
    assert!(s.list_topics().await.expect("list").is_empty());
    assert!(matches!(
        s.delete_topic("alpha").await,
        Err(MetaError::UnknownTopic(_))
    ));
    assert!(matches!(
        s.claim_partition(t.id, 0, Claimant::alone(1)).await,
        Err(MetaError::UnknownPartition(..))
    ));
}

async fn appends_reads_and_fencing(s: &SharedMetadataStore) {
    let t = s
        .create_topic(NewTopic {
            name: "beta".into(),
            partitions: 2,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create");
    let first = s
        .claim_partition(t.id, 0, Claimant::alone(1))
        .await
        .expect("claim");
    assert_eq!((first.high_watermark, first.log_start_offset), (0, 0));
    let append = |epoch, batches| PartitionAppend {
        topic_id: t.id,
        partition: 0,
        owner_epoch: epoch,
        batches,
        producers: vec![],
        txn_events: Vec::new(),
    };
    let out = s
        .commit_appends(vec![
            append(
                first.owner_epoch,
                vec![
                    batch(0, 4, "o1", 0, (-1, -1, -1)),
                    batch(5, 5, "o1", 100, (-1, -1, -1)),
                ],
            ),
            PartitionAppend {
                partition: 7,
                ..append(
                    first.owner_epoch,
                    vec![batch(0, 0, "o1", 200, (-1, -1, -1))],
                )
            },
        ])
        .await
        .expect("commit");
    assert_eq!(
        out,
        vec![AppendOutcome::Committed, AppendOutcome::UnknownPartition]
    );
    let gap = s
        .commit_appends(vec![append(
            first.owner_epoch,
            vec![batch(9, 9, "o2", 0, (-1, -1, -1))],
        )])
        .await
        .expect("commit");
    assert_eq!(
        gap,
        vec![AppendOutcome::OffsetMismatch { high_watermark: 6 }]
    );

    let read = s.read_batches(t.id, 0, 3, 1 << 20).await.expect("read");
    assert_eq!(
        read.iter().map(|b| b.base_offset).collect::<Vec<_>>(),
        vec![0, 5]
    );
    assert_eq!(read[0].object_size, 10_000);
    let one = s.read_batches(t.id, 0, 0, 1).await.expect("read");
    assert_eq!(one.len(), 1, "at least one batch even over max_bytes");
    assert!(s
        .read_batches(t.id, 0, 6, 1 << 20)
        .await
        .expect("read")
        .is_empty());

    let ts = s.batch_for_timestamp(t.id, 0, 1_003).await.expect("ts");
    assert_eq!(ts.map(|b| b.base_offset), Some(5));
    let max = s.batch_with_max_timestamp(t.id, 0).await.expect("max");
    assert_eq!(max.map(|b| b.base_offset), Some(5));

    // A new owner fences the old one.
    let second = s
        .claim_partition(t.id, 0, Claimant::alone(2))
        .await
        .expect("claim");
    assert!(second.owner_epoch > first.owner_epoch);
    assert_eq!(second.high_watermark, 6);
    let stale = s
        .commit_appends(vec![append(
            first.owner_epoch,
            vec![batch(6, 6, "o3", 0, (-1, -1, -1))],
        )])
        .await
        .expect("commit");
    assert_eq!(stale, vec![AppendOutcome::Fenced]);
    assert!(matches!(
        s.delete_records(t.id, 0, first.owner_epoch, 1).await,
        Err(MetaError::Fenced(..))
    ));
}

async fn producers_and_delete_records(s: &SharedMetadataStore) {
    let id = s.cluster_id().await.expect("cluster id");
    assert_eq!(id.len(), 22);
    assert_eq!(s.cluster_id().await.expect("cluster id"), id, "stable");
    let a = s.allocate_producer_id().await.expect("pid");
    let b = s.allocate_producer_id().await.expect("pid");
    assert!(b > a && a >= 0);
    let t = s
        .create_topic(NewTopic {
            name: "gamma".into(),
            partitions: 1,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create");
    let st = s
        .claim_partition(t.id, 0, Claimant::alone(1))
        .await
        .expect("claim");
    let batches: Vec<_> = (0..7)
        .map(|i| batch(i * 2, i * 2 + 1, "p", i as u64 * 100, (a, 3, i as i32 * 2)))
        .collect();
    let out = s
        .commit_appends(vec![PartitionAppend {
            topic_id: t.id,
            partition: 0,
            owner_epoch: st.owner_epoch,
            batches,
            producers: vec![ProducerRecord {
                producer_id: a,
                producer_epoch: 3,
                last_sequence: 13,
                last_offset: 13,
                last_write_ms: crate::now_ms(),
            }],
            txn_events: Vec::new(),
        }])
        .await
        .expect("commit");
    assert_eq!(out, vec![AppendOutcome::Committed]);
    // Seven batches of 100 bytes; unknown partitions count 0; the order is the request's.
    let nowhere = Uuid::new_v4();
    assert_eq!(
        s.partition_sizes(vec![(t.id, 0), (nowhere, 0), (t.id, 1), (t.id, 0)])
            .await
            .expect("sizes"),
        vec![700, 0, 0, 700]
    );
    assert_eq!(
        s.partition_sizes(vec![]).await.expect("no sizes"),
        Vec::<u64>::new()
    );
    let st = s
        .claim_partition(t.id, 0, Claimant::alone(1))
        .await
        .expect("reclaim");
    assert_eq!(st.producers.len(), 1);
    assert_eq!(st.producers[0].last_sequence, 13);
    let seqs: Vec<i32> = st
        .producer_batches
        .iter()
        .map(|b| b.base_sequence)
        .collect();
    assert_eq!(
        seqs,
        vec![4, 6, 8, 10, 12],
        "last five batches, oldest first"
    );

    assert_eq!(
        s.delete_records(t.id, 0, st.owner_epoch, 5)
            .await
            .expect("delete"),
        5
    );
    let left = s.read_batches(t.id, 0, 0, 1 << 20).await.expect("read");
    assert_eq!(
        left.first().map(|b| b.base_offset),
        Some(4),
        "batch 4..5 still holds offset 5"
    );
    assert_eq!(
        s.partition_sizes(vec![(t.id, 0)]).await.expect("sizes"),
        vec![500],
        "the two batches wholly below offset 5 no longer count"
    );
    assert_eq!(
        s.delete_records(t.id, 0, st.owner_epoch, 2)
            .await
            .expect("no-op"),
        5
    );
    assert!(matches!(
        s.delete_records(t.id, 0, st.owner_epoch, 99).await,
        Err(MetaError::Invalid(_))
    ));
    let st = s
        .claim_partition(t.id, 0, Claimant::alone(1))
        .await
        .expect("reclaim");
    assert_eq!((st.log_start_offset, st.high_watermark), (5, 14));
}

/// Exclusive claims under leases: what a live lease holds cannot be taken, a release or an
/// expiry frees it, and taking it from an expired lease breaks that lease.
async fn ownership(s: &SharedMetadataStore) {
    let t = s
        .create_topic(NewTopic {
            name: "owned".into(),
            partitions: 2,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create");
    let (a, b) = (lease(11, "az-a"), lease(12, "az-b"));
    let ga = s
        .renew_lease(&a, 60_000)
        .await
        .expect("register a")
        .generation;
    let gb = s
        .renew_lease(&b, 60_000)
        .await
        .expect("register b")
        .generation;
    assert_ne!(ga, gb, "every lease gets its own generation");
    let ca = Claimant {
        node_id: 11,
        lease_generation: Some(ga),
    };
    let cb = Claimant {
        node_id: 12,
        lease_generation: Some(gb),
    };

    // A live holder keeps it; its own re-claim (an actor restart) is allowed.
    let first = s.claim_partition(t.id, 0, ca).await.expect("claim a");
    match s.claim_partition(t.id, 0, cb).await {
        Err(MetaError::OwnedElsewhere { owner: 11 }) => {}
        other => panic!("expected OwnedElsewhere, got {other:?}"),
    }
    let again = s.claim_partition(t.id, 0, ca).await.expect("reclaim a");
    assert_eq!(again.owner_epoch, first.owner_epoch + 1);
    let read = s.partition_epochs(i64::MIN).await.expect("epochs");
    let epochs = read.epochs;
    assert!(
        epochs.contains(&((t.id, 0), again.owner_epoch)),
        "{epochs:?}"
    );
    assert!(
        epochs.contains(&((t.id, 1), 0)),
        "never claimed: {epochs:?}"
    );
    assert_eq!(
        s.owned_partitions(ca).await.expect("owned"),
        vec![(t.id, 0)]
    );

    // A release frees it, and fences the releaser's epoch.
    assert_eq!(
        s.release_partitions(cb, vec![(t.id, 0)])
            .await
            .expect("no-op"),
        0
    );
    assert_eq!(
        s.release_partitions(ca, vec![(t.id, 0)])
            .await
            .expect("release"),
        1
    );
    let append = PartitionAppend {
        topic_id: t.id,
        partition: 0,
        owner_epoch: again.owner_epoch,
        batches: vec![batch(0, 0, "o1", 0, (-1, -1, -1))],
        producers: vec![],
        txn_events: Vec::new(),
    };
    assert_eq!(
        s.commit_appends(vec![append]).await.expect("commit"),
        vec![AppendOutcome::Fenced]
    );
    let taken = s
        .claim_partition(t.id, 0, cb)
        .await
        .expect("claim b after release");
    assert!(s.owned_partitions(ca).await.expect("owned").is_empty());
    // Read again from the first read's clock: the partition claimed and released since, with
    // its newest epoch; not the one never claimed.
    let changed = s.partition_epochs(read.as_of_ms).await.expect("changes");
    assert!(changed.as_of_ms >= read.as_of_ms, "{changed:?}");
    assert!(
        changed.epochs.contains(&((t.id, 0), taken.owner_epoch)),
        "{changed:?}"
    );
    assert!(
        !changed.epochs.iter().any(|(k, _)| *k == (t.id, 1)),
        "{changed:?}"
    );

    // A claim under a generation the claimant no longer holds is refused.
    let stale = Claimant {
        node_id: 11,
        lease_generation: Some(ga + 1000),
    };
    assert!(matches!(
        s.claim_partition(t.id, 1, stale).await,
        Err(MetaError::LeaseLost { node_id: 11, .. })
    ));

    // A lapse nobody took advantage of keeps the generation.
    s.renew_lease(&a, 1).await.expect("short renewal");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let view = s.renew_lease(&a, 60_000).await.expect("renew after lapse");
    assert_eq!((view.generation, view.lapsed), (ga, true));

    // Taking from an expired lease breaks it: its holder renews into a new generation.
    s.claim_partition(t.id, 1, ca).await.expect("claim a");
    s.renew_lease(&a, 1).await.expect("short renewal");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.claim_partition(t.id, 1, cb)
        .await
        .expect("take from the expired lease");
    let view = s
        .renew_lease(&a, 60_000)
        .await
        .expect("renew after the break");
    assert_ne!(view.generation, ga);
    assert!(matches!(
        s.claim_partition(t.id, 1, ca).await,
        Err(MetaError::LeaseLost { .. })
    ));
    let ca = Claimant {
        node_id: 11,
        lease_generation: Some(view.generation),
    };

    // Groups follow the same rules, and a stale coordinator's commits are fenced.
    let e1 = s.claim_group("owned-g", ca).await.expect("claim group");
    assert!(matches!(
        s.claim_group("owned-g", cb).await,
        Err(MetaError::OwnedElsewhere { owner: 11 })
    ));
    let o = CommittedOffset {
        topic_id: t.id,
        partition: 0,
        offset: 3,
        leader_epoch: 0,
        metadata: String::new(),
        commit_time_ms: 1,
    };
    s.commit_offsets("owned-g", e1, vec![o.clone()])
        .await
        .expect("commit");
    assert_eq!(
        s.owned_groups(ca).await.expect("owned"),
        vec!["owned-g".to_string()]
    );
    assert_eq!(
        s.release_groups(ca, vec!["owned-g".into()])
            .await
            .expect("release"),
        1
    );
    let e2 = s.claim_group("owned-g", cb).await.expect("claim b");
    assert!(e2 > e1);
    assert!(matches!(
        s.commit_offsets("owned-g", e1, vec![o.clone()]).await,
        Err(MetaError::GroupFenced(_))
    ));
    s.commit_offsets("owned-g", e2, vec![o])
        .await
        .expect("commit b");

    // A new incarnation of a node id gets a new generation.
    s.release_lease(11, a.incarnation).await.expect("leave");
    let a2 = lease(11, "az-a");
    let g2 = s
        .renew_lease(&a2, 60_000)
        .await
        .expect("re-register")
        .generation;
    assert!(g2 != ga && g2 != view.generation);
    s.release_lease(11, a2.incarnation).await.expect("leave");
    s.release_lease(12, b.incarnation).await.expect("leave");
}

/// A node under a lease registered for a minute.
async fn registered(s: &SharedMetadataStore, node_id: i32) -> (NodeLease, Claimant) {
    let l = lease(node_id, "az-a");
    let generation = s
        .renew_lease(&l, 60_000)
        .await
        .expect("register")
        .generation;
    let c = Claimant {
        node_id,
        lease_generation: Some(generation),
    };
    (l, c)
}

/// The claim outcomes of a batch, as comparable values: the owner epoch, or the refusal.
fn outcomes(r: &[MetaResult<PartitionState>]) -> Vec<Result<i64, String>> {
    r.iter()
        .map(|o| match o {
            Ok(st) => Ok(st.owner_epoch),
            Err(MetaError::OwnedElsewhere { owner }) => Err(format!("owned by {owner}")),
            Err(MetaError::UnknownPartition(..)) => Err("unknown".into()),
            Err(MetaError::Invalid(_)) => Err("invalid".into()),
            Err(e) => Err(format!("unexpected {e}")),
        })
        .collect()
}

/// Claims in batches: each partition is decided on its own under the rules of a single
/// claim (exclusive under live leases, an expired lease broken once), the state comes with
/// the claim, and a claimant whose lease is gone claims nothing at all.
async fn batch_claims(s: &SharedMetadataStore) {
    let t = s
        .create_topic(NewTopic {
            name: "batch".into(),
            partitions: 4,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create");
    let p = |i: i32| (t.id, i);
    let ((a, ca), (b, cb), (c, cc)) = (
        registered(s, 21).await,
        registered(s, 22).await,
        registered(s, 23).await,
    );
    let first = s
        .claim_partitions(ca, vec![p(0), p(1)])
        .await
        .expect("claim a");
    assert!(
        first.iter().all(|r| r.is_ok()),
        "free partitions: {first:?}"
    );
    let e0 = first[0].as_ref().map(|st| st.owner_epoch).expect("p0");
    let e1 = first[1].as_ref().map(|st| st.owner_epoch).expect("p1");
    s.claim_partitions(cc, vec![p(2)]).await.expect("claim c")[0]
        .as_ref()
        .expect("p2 is free");

    // Each partition on its own, in the order given.
    let unknown = (Uuid::new_v4(), 0);
    let mixed = s
        .claim_partitions(cb, vec![p(0), p(2), p(3), unknown, p(3)])
        .await
        .expect("claim b");
    let e3 = mixed[2]
        .as_ref()
        .map(|st| st.owner_epoch)
        .expect("p3 is free");
    assert_eq!(
        outcomes(&mixed),
        vec![
            Err("owned by 21".into()),
            Err("owned by 23".into()),
            Ok(e3),
            Err("unknown".into()),
            Err("invalid".into()),
        ]
    );
    // The holder's own re-claim (a restarted actor) is allowed and bumps the epoch.
    let again = s
        .claim_partitions(ca, vec![p(1), p(0)])
        .await
        .expect("reclaim a");
    assert_eq!(outcomes(&again), vec![Ok(e1 + 1), Ok(e0 + 1)]);

    // The claim returns the partition's state: offsets and idempotent producers.
    let pid = s.allocate_producer_id().await.expect("pid");
    let out = s
        .commit_appends(vec![PartitionAppend {
            topic_id: t.id,
            partition: 1,
            owner_epoch: e1 + 1,
            batches: (0..7)
                .map(|i| batch(i, i, "bc", i as u64 * 100, (pid, 0, i as i32)))
                .collect(),
            producers: vec![ProducerRecord {
                producer_id: pid,
                producer_epoch: 0,
                last_sequence: 6,
                last_offset: 6,
                last_write_ms: crate::now_ms(),
            }],
            txn_events: Vec::new(),
        }])
        .await
        .expect("commit");
    assert_eq!(out, vec![AppendOutcome::Committed]);
    let loaded = s
        .claim_partitions(ca, vec![p(0), p(1)])
        .await
        .expect("reclaim a");
    let (s0, s1) = match &loaded[..] {
        [Ok(s0), Ok(s1)] => (s0, s1),
        other => panic!("expected two claims, got {other:?}"),
    };
    assert_eq!((s0.high_watermark, s0.producers.len()), (0, 0));
    assert_eq!((s1.owner_epoch, s1.high_watermark), (e1 + 2, 7));
    assert_eq!(s1.producers.len(), 1);
    assert_eq!(s1.producers[0].last_sequence, 6);
    assert_eq!(
        s1.producer_batches
            .iter()
            .map(|b| b.base_sequence)
            .collect::<Vec<_>>(),
        vec![2, 3, 4, 5, 6],
        "last five batches, oldest first"
    );

    // A reload (a dormant partition waking) reads the holder's own partitions, epochs
    // unchanged, with their state; anyone else's is refused.
    let reloaded = s
        .reload_partitions(ca, vec![p(1), p(2), p(3), unknown])
        .await
        .expect("reload a");
    assert_eq!(
        outcomes(&reloaded),
        vec![
            Ok(e1 + 2),
            Err("owned by 23".into()),
            Err("owned by 22".into()),
            Err("unknown".into()),
        ]
    );
    match &reloaded[0] {
        Ok(st) => assert_eq!((st.high_watermark, st.producers.len()), (7, 1)),
        other => panic!("expected p1's state, got {other:?}"),
    }
    assert_eq!(
        outcomes(&s.reload_partitions(ca, vec![p(1)]).await.expect("again")),
        vec![Ok(e1 + 2)],
        "a reload never moves the epoch"
    );

    // An expired holder is taken over (its lease broken), a live one is not.
    s.renew_lease(&c, 1).await.expect("short renewal");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let taken = s
        .claim_partitions(cb, vec![p(0), p(2)])
        .await
        .expect("claim b");
    assert!(matches!(
        taken[0],
        Err(MetaError::OwnedElsewhere { owner: 21 })
    ));
    assert!(taken[1].is_ok(), "from the expired lease: {:?}", taken[1]);
    let view = s.renew_lease(&c, 60_000).await.expect("renew c");
    assert_ne!(
        Some(view.generation),
        cc.lease_generation,
        "c's lease was broken"
    );

    // A claimant whose lease is gone claims nothing, not even free partitions.
    let held_by_b = {
        let mut v = s.owned_partitions(cb).await.expect("owned");
        v.sort();
        v
    };
    assert_eq!(held_by_b, vec![p(2), p(3)]);
    for stale in [
        cc,
        Claimant {
            lease_generation: ca.lease_generation.map(|g| g + 1000),
            ..ca
        },
    ] {
        assert!(matches!(
            s.claim_partitions(stale, vec![p(3), p(2)]).await,
            Err(MetaError::LeaseLost { .. })
        ));
        assert!(matches!(
            s.reload_partitions(stale, vec![p(3)]).await,
            Err(MetaError::LeaseLost { .. })
        ));
    }
    let mut after = s.owned_partitions(cb).await.expect("owned");
    after.sort();
    assert_eq!(after, held_by_b);

    // A batch release frees only the releaser's own, and fences its epochs.
    assert_eq!(
        s.release_partitions(ca, vec![p(0), p(1), p(2)])
            .await
            .expect("release"),
        2
    );
    assert_eq!(
        outcomes(&s.reload_partitions(ca, vec![p(0)]).await.expect("reload")),
        vec![Err("owned by -1".into())],
        "released: no longer the releaser's to reload"
    );
    let moved = s
        .claim_partitions(cb, vec![p(0), p(1)])
        .await
        .expect("claim b");
    assert!(moved.iter().all(|r| r.is_ok()), "released: {moved:?}");
    let stale = PartitionAppend {
        topic_id: t.id,
        partition: 1,
        owner_epoch: e1 + 2,
        batches: vec![batch(7, 7, "bc2", 0, (-1, -1, -1))],
        producers: vec![],
        txn_events: Vec::new(),
    };
    assert_eq!(
        s.commit_appends(vec![stale]).await.expect("commit"),
        vec![AppendOutcome::Fenced]
    );
    let mut all = s.owned_partitions(cb).await.expect("owned");
    all.sort();
    assert_eq!(all, vec![p(0), p(1), p(2), p(3)]);
    assert!(s
        .claim_partitions(cb, Vec::new())
        .await
        .expect("empty")
        .is_empty());

    for l in [a, b, c] {
        s.release_lease(l.node_id, l.incarnation)
            .await
            .expect("leave");
    }
}

/// Partition pins (AlterPartitionReassignments): set, replaced, removed all at once or not
/// at all, read with the partition's holder, and deleted with their topic.
async fn pins(s: &SharedMetadataStore) {
    let t = s
        .create_topic(NewTopic {
            name: "pinned".into(),
            partitions: 3,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create");
    assert_eq!(s.partition_pins().await.expect("no pins"), vec![]);
    s.set_partition_pins(vec![((t.id, 1), Some(12)), ((t.id, 0), Some(11))])
        .await
        .expect("pin");
    s.claim_partition(t.id, 0, Claimant::alone(7))
        .await
        .expect("claim");
    let pin = |p: i32, node_id: i32, holder: Option<i32>| PartitionPin {
        partition: (t.id, p),
        node_id,
        holder,
        by_balancer: false,
    };
    assert_eq!(
        s.partition_pins().await.expect("pins"),
        vec![pin(0, 11, Some(7)), pin(1, 12, None)]
    );

    // Replaced and removed in one call; removing a pin that does not exist is no error.
    s.set_partition_pins(vec![
        ((t.id, 1), Some(13)),
        ((t.id, 0), None),
        ((t.id, 2), None),
    ])
    .await
    .expect("replace and remove");
    assert_eq!(
        s.partition_pins().await.expect("pins"),
        vec![pin(1, 13, None)]
    );

    // A partition that does not exist refuses the whole call.
    match s
        .set_partition_pins(vec![((t.id, 0), Some(11)), ((t.id, 3), Some(11))])
        .await
    {
        Err(MetaError::UnknownPartition(id, 3)) if id == t.id => {}
        other => panic!("expected UnknownPartition, got {other:?}"),
    }
    assert_eq!(
        s.partition_pins().await.expect("pins"),
        vec![pin(1, 13, None)],
        "nothing changed"
    );

    s.delete_topic("pinned").await.expect("delete");
    assert_eq!(s.partition_pins().await.expect("pins"), vec![]);
}

/// The balancer's pins (ADR 0022): written only under the latest balancer epoch, never over
/// or instead of an operator's pin, skipped for partitions that no longer exist; an operator's
/// pin replaces the balancer's. Load reports are replaced per node and read back.
async fn balancer_pins(s: &SharedMetadataStore) {
    let t = s
        .create_topic(NewTopic {
            name: "balanced".into(),
            partitions: 3,
            configs: BTreeMap::new(),
        })
        .await
        .expect("create");
    let pin = |p: i32, node_id: i32, by_balancer: bool| PartitionPin {
        partition: (t.id, p),
        node_id,
        holder: None,
        by_balancer,
    };
    // Every renewal says which version of the pins is stored: it changes with every change.
    let me = lease(50, "a");
    let version = || async {
        s.renew_lease(&me, 60_000)
            .await
            .expect("renew")
            .pins_version
    };
    let v0 = version().await;
    assert_eq!(version().await, v0, "a renewal changes nothing");
    let first = s.claim_balancer_epoch().await.expect("epoch");
    s.set_partition_pins(vec![((t.id, 0), Some(5))])
        .await
        .expect("operator pin");
    let v1 = version().await;
    assert!(v1 > v0, "an operator's pin changes the version");
    let written = s
        .set_balancer_pins(
            first,
            vec![
                ((t.id, 0), Some(6)),
                ((t.id, 1), Some(6)),
                ((t.id, 2), Some(7)),
                ((t.id, 9), Some(7)),
            ],
        )
        .await
        .expect("balancer pins");
    assert_eq!(
        written, 2,
        "not over the operator's pin, not on a missing partition"
    );
    let v2 = version().await;
    assert!(v2 > v1, "the balancer's pins change the version");
    let written = s
        .set_balancer_pins(first, vec![((t.id, 0), Some(6))])
        .await
        .expect("nothing to write");
    assert_eq!(
        (written, version().await),
        (0, v2),
        "no change, same version"
    );
    assert_eq!(
        s.partition_pins().await.expect("pins"),
        vec![pin(0, 5, false), pin(1, 6, true), pin(2, 7, true)]
    );
    // The balancer moves its own pin and removes another; it cannot remove the operator's.
    let written = s
        .set_balancer_pins(
            first,
            vec![((t.id, 0), None), ((t.id, 1), Some(8)), ((t.id, 2), None)],
        )
        .await
        .expect("move and remove");
    assert_eq!(written, 2);
    assert_eq!(
        s.partition_pins().await.expect("pins"),
        vec![pin(0, 5, false), pin(1, 8, true)]
    );
    // A new term fences the old one.
    let second = s.claim_balancer_epoch().await.expect("epoch");
    assert!(second > first);
    match s.set_balancer_pins(first, vec![((t.id, 2), Some(6))]).await {
        Err(MetaError::BalancerFenced(e)) if e == second => {}
        other => panic!("expected BalancerFenced({second}), got {other:?}"),
    }
    // An operator's pin takes the balancer's place.
    s.set_partition_pins(vec![((t.id, 1), Some(9))])
        .await
        .expect("operator over balancer");
    assert_eq!(
        s.partition_pins().await.expect("pins"),
        vec![pin(0, 5, false), pin(1, 9, false)]
    );

    s.report_load(3, vec![((t.id, 1), 1_000), ((t.id, 0), 7)])
        .await
        .expect("report");
    s.report_load(2, vec![]).await.expect("report");
    s.report_load(3, vec![((t.id, 2), 500)])
        .await
        .expect("report again");
    let loads = s.node_loads().await.expect("loads");
    let got: Vec<(i32, Vec<(PartitionKey, u64)>)> = loads
        .iter()
        .map(|l| (l.node_id, l.partitions.clone()))
        .collect();
    assert_eq!(got, vec![(2, vec![]), (3, vec![((t.id, 2), 500)])]);
    assert!(loads
        .iter()
        .all(|l| (-1_000..60_000).contains(&l.reported_ago_ms)));
    let before_delete = version().await;
    s.delete_topic("balanced").await.expect("delete");
    assert!(version().await > before_delete, "a topic's pins go with it");
    s.release_lease(me.node_id, me.incarnation)
        .await
        .expect("leave");
}

/// Node drains (ADR 0021): marked and unmarked once (the second call changes nothing), any
/// node id accepted, listed in order, and returned with every lease renewal.
async fn drains(s: &SharedMetadataStore) {
    assert_eq!(s.draining_nodes().await.expect("none"), Vec::<i32>::new());
    assert!(s.set_node_draining(12, true).await.expect("mark"));
    assert!(!s.set_node_draining(12, true).await.expect("again"));
    assert!(s
        .set_node_draining(3, true)
        .await
        .expect("a node never seen"));
    assert_eq!(s.draining_nodes().await.expect("two"), vec![3, 12]);
    let lease = NodeLease {
        node_id: 3,
        incarnation: Uuid::new_v4(),
        ..NodeLease::default()
    };
    let view = s.renew_lease(&lease, 5_000).await.expect("renew");
    assert_eq!(view.draining, vec![3, 12], "a renewal returns the marks");
    assert!(s.set_node_draining(3, false).await.expect("unmark"));
    assert!(!s.set_node_draining(3, false).await.expect("unmark again"));
    let view = s.renew_lease(&lease, 5_000).await.expect("renew");
    assert_eq!(view.draining, vec![12]);
    assert!(s.set_node_draining(12, false).await.expect("unmark"));
    assert_eq!(s.draining_nodes().await.expect("none"), Vec::<i32>::new());
    s.release_lease(3, lease.incarnation).await.expect("leave");
}
