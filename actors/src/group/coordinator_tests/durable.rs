//! Durable groups (ADR 0020): a coordinator started again on the same metadata store (as
//! after a node restart, a move or an actor restart) takes the group over as it was stored,
//! and a coordinator whose group was claimed by another can neither commit nor store.

use super::*;

impl Group {
    /// Stops this coordinator and starts another on the same store, as a restart or a move.
    async fn restart(self, limits: GroupLimits) -> Group {
        let Group {
            actor,
            stopped,
            store,
            topic,
            _dir,
            ..
        } = self;
        actor.actor().stop(None);
        let _ = tokio::time::timeout(WAIT, stopped).await;
        spawn_on(store, topic, _dir, limits).await
    }

    /// A second coordinator of the group on the same store, which takes the group over
    /// (a new owner epoch) while this one still runs.
    async fn usurper(&self) -> Group {
        let dir = tempfile::tempdir().unwrap();
        spawn_on(self.store.clone(), self.topic, dir, limits()).await
    }
}

#[tokio::test]
async fn a_stable_group_comes_back_stable_with_its_generation_members_and_assignments() {
    let g = start(limits()).await;
    let (a, b) = g.stable_pair().await;
    assert_eq!(g.commit(who(&b), 2, 7).await, Ok(()));
    let before = g.describe().await;
    let g = g.restart(limits()).await;

    let after = g.describe().await;
    assert_eq!(after.state_name, "Stable");
    assert_eq!(
        (after.protocol_type.as_str(), after.protocol_name.as_str()),
        ("consumer", "range")
    );
    let view = |d: &GroupDescription| -> Vec<(String, String, Bytes, Bytes)> {
        d.members
            .iter()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.client_id.clone(),
                    m.metadata.clone(),
                    m.assignment.clone(),
                )
            })
            .collect()
    };
    assert_eq!(view(&after), view(&before));
    assert_eq!(
        g.members().await,
        vec![(a.clone(), Bytes::from("A")), (b.clone(), Bytes::from("B"))]
    );
    // The members carry on in generation 2: heartbeats, commits, a rejoin without change.
    assert_eq!(g.heartbeat(who(&a), 2).await, Ok(()));
    assert_eq!(g.heartbeat(who(&b), 2).await, Ok(()));
    assert_eq!(g.commit(who(&a), 2, 9).await, Ok(()));
    let rb = g.join(join_args("b", &b)).await;
    assert_eq!((rb.error, rb.generation, &rb.leader), (None, 2, &a));
    let sb = g.sync(sync_args(&b, 2, &[])).await;
    assert_eq!((sb.error, &sb.assignment[..]), (None, &b"B"[..]));
    assert_eq!(g.state().await, "Stable");
    // The next rebalance continues the generations.
    assert_eq!(g.leave(vec![who(&b)]).await, vec![Ok(())]);
    let ra = g.join(join_args("a", &a)).await;
    assert_eq!((ra.error, ra.generation), (None, 3));
    g.stop().await;
}

#[tokio::test]
async fn a_restored_member_that_never_comes_back_expires_after_its_session_timeout() {
    let session = Duration::from_millis(300);
    let g = start(limits()).await;
    let a = g.new_member("a").await;
    let args = || JoinArgs {
        session_timeout: session,
        ..join_args("a", &a)
    };
    assert_eq!(g.join(args()).await.generation, 1);
    assert_eq!(g.sync(sync_args(&a, 1, &[(&a, "A")])).await.error, None);
    // The member's session would have run out during a slow restart: it starts afresh.
    tokio::time::sleep(session / 2).await;
    let t0 = Instant::now();
    let g = g.restart(limits()).await;
    assert_eq!(g.state().await, "Stable");
    tokio::time::sleep(session * 2 / 3).await;
    assert_eq!(
        g.heartbeat(who(&a), 1).await,
        Ok(()),
        "alive after {:?}",
        t0.elapsed()
    );
    // Then it goes silent: expired, the group empties (generation 2), and stays so.
    eventually("the silent member to expire", || async {
        (g.state().await == "Empty").then_some(())
    })
    .await;
    assert_eq!(
        g.heartbeat(who(&a), 1).await,
        Err(GroupError::UnknownMemberId)
    );
    let g = g.restart(limits()).await;
    assert_eq!(g.state().await, "Empty");
    let b = g.new_member("b").await;
    let rb = g.join(join_args("b", &b)).await;
    assert_eq!(
        (rb.error, rb.generation),
        (None, 3),
        "generations go on from 2"
    );
    g.stop().await;
}

#[tokio::test]
async fn a_group_stored_mid_rebalance_comes_back_empty_and_its_members_rejoin() {
    let g = start(limits()).await;
    let (a, b) = g.stable_pair().await;
    assert_eq!(g.leave(vec![who(&b)]).await, vec![Ok(())]);
    assert_eq!(g.state().await, "PreparingRebalance");
    let g = g.restart(limits()).await;
    assert_eq!(g.state().await, "Empty");
    assert_eq!(
        g.heartbeat(who(&a), 2).await,
        Err(GroupError::UnknownMemberId)
    );
    let a2 = g.new_member("a").await;
    let r = g.join(join_args("a", &a2)).await;
    assert_eq!((r.error, r.generation), (None, 3));
    g.stop().await;
}

#[tokio::test]
async fn a_stale_coordinator_can_neither_commit_nor_store_a_generation() {
    let g = start(limits()).await;
    let a = g.stable_one("a").await;
    assert_eq!(g.commit(who(&a), 1, 5).await, Ok(()));
    // b joins, a rejoins: generation 2 waits for the leader's SyncGroup.
    let b = g.new_member("b").await;
    let b_join = g.post_join(join_args("b", &b));
    assert_eq!(g.join(join_args("a", &a)).await.generation, 2);
    assert_eq!(answer(b_join).await.generation, 2);

    // Another coordinator takes the group over (what a move does), from the store.
    let usurper = g.usurper().await;
    assert_eq!(usurper.state().await, "Empty", "stored mid-rebalance");

    let s = g.sync(sync_args(&a, 2, &[(&a, "A"), (&b, "B")])).await;
    assert_eq!(s.error, Some(GroupError::NotCoordinator));
    tokio::time::timeout(WAIT, g.stopped)
        .await
        .expect("a fenced coordinator stops")
        .unwrap();
    assert_eq!(g.store.fetch_offsets(GROUP).await.unwrap().len(), 1);
    let usurper = usurper.restart(limits()).await;
    assert_eq!(usurper.state().await, "Empty");
    usurper.stop().await;
}

#[tokio::test]
async fn a_stale_coordinator_commit_is_refused_with_not_coordinator() {
    let g = start(limits()).await;
    let a = g.stable_one("a").await;
    assert_eq!(g.commit(who(&a), 1, 5).await, Ok(()));
    let usurper = g.usurper().await;
    assert_eq!(usurper.state().await, "Stable");
    assert_eq!(
        g.commit(who(&a), 1, 6).await,
        Err(GroupError::NotCoordinator)
    );
    tokio::time::timeout(WAIT, g.stopped)
        .await
        .expect("a fenced coordinator stops")
        .unwrap();
    assert_eq!(usurper.stored_offsets().await, vec![5]);
    // The new coordinator has the member: its commit goes through.
    assert_eq!(usurper.commit(who(&a), 1, 6).await, Ok(()));
    assert_eq!(usurper.stored_offsets().await, vec![6]);
    usurper.stop().await;
}

#[tokio::test]
async fn offset_retention_counts_from_before_a_restart() {
    let retention = Duration::from_millis(2000);
    let short = || GroupLimits {
        offsets_retention: retention,
        ..limits()
    };
    let g = start(short()).await;
    // Expiry follows the wall clock (commit times are stored), which may run at another
    // rate than Instant's (a clock being slewed): measured on the wall clock too.
    let committed_ms = inkless_storage::now_ms();
    let offsets = vec![CommittedOffset {
        topic_id: g.topic,
        partition: 0,
        offset: 3,
        leader_epoch: -1,
        metadata: String::new(),
        commit_time_ms: committed_ms,
    }];
    assert_eq!(g.handle.commit(who(""), -1, offsets).await.unwrap(), Ok(()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let g = g.restart(short()).await;
    // 2 s from the commit, not from the restart (3.5 s).
    tokio::time::timeout(Duration::from_secs(5), g.stopped)
        .await
        .expect("the offsets expire")
        .unwrap();
    let after_ms = inkless_storage::now_ms() - committed_ms;
    assert!(
        after_ms >= retention.as_millis() as i64,
        "expired early, after {after_ms} ms"
    );
    assert!(after_ms < 3200, "expired after {after_ms} ms");
    assert!(g.store.fetch_offsets(GROUP).await.unwrap().is_empty());
}
