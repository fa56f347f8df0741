//! Unit tests of the GroupCoordinator's classic-protocol state machine: each test spawns one
//! coordinator on a real SQLite metadata store in a temporary directory and talks to it
//! through its messages, as the node does.
//!
//! Timing: the coordinator's own Tick (every 100 ms while the group is active) expires
//! sessions and completes rebalances whose time came; the tests never send Tick
//! themselves. Timeouts that a test does not exercise are [`LONG`], so they never fire;
//! the ones it exercises are a few hundred milliseconds, and every wait has a deadline
//! ([`WAIT`]) instead of a fixed sleep. Messages posted one after another are handled in
//! that order, so an answer to a later one (usually a Describe) proves the earlier ones were
//! handled.

use crate::group::consumer::TopicLookup;
use crate::group::coordinator::{
    GroupArgs, GroupCoordinator, GroupDescription, GroupLimits, GroupMsg, JoinArgs, JoinResult,
    MemberRef, SyncArgs, SyncResult,
};
use crate::group::error::{GroupError, GroupResult};
use crate::group::handle::GroupHandle;
use crate::tree::mailbox::{spawn_for_test, Mailbox};
use bytes::Bytes;
use inkless_storage::metadata::{self, Claimant, CommittedOffset, NewTopic, SharedMetadataStore};

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;
use uuid::Uuid;

mod durable;

/// Session and rebalance timeout of members whose timeouts a test does not exercise.
const LONG: Duration = Duration::from_secs(30);
/// Deadline of every wait for something the coordinator should do.
const WAIT: Duration = Duration::from_secs(5);
const GROUP: &str = "g";

#[derive(Debug)]
struct NoTopics;

impl TopicLookup for NoTopics {
    fn lookup(&self, _name: &str) -> Option<(Uuid, i32)> {
        None
    }
    fn name_of(&self, _id: &Uuid) -> Option<String> {
        None
    }
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
    fn retention(&self, _: &Uuid) -> Option<crate::RetentionLimits> {
        None
    }
}

/// Limits that accept short sessions and complete a first rebalance at once.
fn limits() -> GroupLimits {
    GroupLimits {
        min_session_timeout: Duration::from_millis(10),
        initial_rebalance_delay: Duration::ZERO,
        ..GroupLimits::default()
    }
}

/// One running coordinator of group [`GROUP`] and its store.
struct Group {
    actor: Mailbox<GroupMsg>,
    handle: GroupHandle,
    stopped: tokio::task::JoinHandle<()>,
    store: SharedMetadataStore,
    topic: Uuid,
    _dir: tempfile::TempDir,
}

async fn start(limits: GroupLimits) -> Group {
    let dir = tempfile::tempdir().unwrap();
    let store = metadata::open("sqlite://meta.db", dir.path())
        .await
        .unwrap();
    let topic = store
        .create_topic(NewTopic {
            name: "t".into(),
            partitions: 1,
            configs: Default::default(),
        })
        .await
        .unwrap()
        .id;
    spawn_on(store, topic, dir, limits).await
}

/// A coordinator of group [`GROUP`] on `store` (which claims the group from any other).
async fn spawn_on(
    store: SharedMetadataStore,
    topic: Uuid,
    dir: tempfile::TempDir,
    limits: GroupLimits,
) -> Group {
    let args = |queued| GroupArgs {
        queued,
        group_id: GROUP.into(),
        store: store.clone(),
        limits,
        topics: Arc::new(NoTopics),
        claimant: Claimant::alone(1),
    };
    let (actor, stopped) = spawn_for_test(GroupCoordinator, args).await;
    Group {
        handle: GroupHandle::new(actor.clone()),
        actor,
        stopped,
        store,
        topic,
        _dir: dir,
    }
}

/// A JoinGroup of a dynamic member: client `client`, protocol `range` with metadata
/// `client`, session and rebalance timeouts [`LONG`].
fn join_args(client: &str, member_id: &str) -> JoinArgs {
    JoinArgs {
        member_id: member_id.into(),
        instance_id: None,
        client_id: client.into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: LONG,
        rebalance_timeout: LONG,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from(client.to_string()))],
        require_known_member_id: true,
    }
}

fn who(member_id: &str) -> MemberRef {
    MemberRef {
        member_id: member_id.into(),
        instance_id: None,
    }
}

fn sync_args(member_id: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncArgs {
    SyncArgs {
        member_id: member_id.into(),
        instance_id: None,
        generation,
        assignments: assignments
            .iter()
            .map(|(id, a)| (id.to_string(), Bytes::from(a.to_string())))
            .collect(),
    }
}

/// The answer on `rx`, which must come within [`WAIT`].
async fn answer<T>(rx: oneshot::Receiver<T>) -> T {
    tokio::time::timeout(WAIT, rx)
        .await
        .expect("the coordinator answers in time")
        .expect("the coordinator is alive")
}

fn is_pending<T>(rx: &mut oneshot::Receiver<T>) -> bool {
    matches!(rx.try_recv(), Err(TryRecvError::Empty))
}

impl Group {
    /// Posts a JoinGroup now and returns where its answer will come.
    fn post_join(&self, args: JoinArgs) -> oneshot::Receiver<JoinResult> {
        let (tx, rx) = oneshot::channel();
        self.actor.post(GroupMsg::Join(args, tx)).unwrap();
        rx
    }

    async fn join(&self, args: JoinArgs) -> JoinResult {
        answer(self.post_join(args)).await
    }

    fn post_sync(&self, args: SyncArgs) -> oneshot::Receiver<SyncResult> {
        let (tx, rx) = oneshot::channel();
        self.actor.post(GroupMsg::Sync(args, tx)).unwrap();
        rx
    }

    async fn sync(&self, args: SyncArgs) -> SyncResult {
        answer(self.post_sync(args)).await
    }

    /// The member id a new dynamic member gets with MEMBER_ID_REQUIRED.
    async fn new_member(&self, client: &str) -> String {
        let r = self.join(join_args(client, "")).await;
        assert_eq!(r.error, Some(GroupError::MemberIdRequired));
        assert!(r.member_id.starts_with(&format!("{client}-")), "{r:?}");
        r.member_id
    }

    async fn heartbeat(&self, member: MemberRef, generation: i32) -> GroupResult {
        self.handle.heartbeat(member, generation).await.unwrap()
    }

    async fn leave(&self, members: Vec<MemberRef>) -> Vec<GroupResult> {
        self.handle.leave(members).await.unwrap()
    }

    async fn commit(&self, member: MemberRef, generation: i32, offset: i64) -> GroupResult {
        let offsets = vec![CommittedOffset {
            topic_id: self.topic,
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_time_ms: 0,
        }];
        self.handle
            .commit(member, generation, offsets)
            .await
            .unwrap()
    }

    /// The offsets stored for the group.
    async fn stored_offsets(&self) -> Vec<i64> {
        let stored = self.store.fetch_offsets(GROUP).await.unwrap();
        stored.iter().map(|o| o.offset).collect()
    }

    async fn describe(&self) -> GroupDescription {
        self.handle.describe().await.unwrap()
    }

    async fn state(&self) -> &'static str {
        self.describe().await.state_name
    }

    /// Member ids (in join order) and assignments, as DescribeGroups shows them.
    async fn members(&self) -> Vec<(String, Bytes)> {
        self.describe()
            .await
            .members
            .into_iter()
            .map(|m| (m.member_id, m.assignment))
            .collect()
    }

    /// A first member `client` that joined alone and synced: generation 1, Stable.
    async fn stable_one(&self, client: &str) -> String {
        let a = self.new_member(client).await;
        let r = self.join(join_args(client, &a)).await;
        assert_eq!((r.error, r.generation, &r.leader), (None, 1, &a));
        let s = self.sync(sync_args(&a, 1, &[(&a, "A")])).await;
        assert_eq!((s.error, &s.assignment[..]), (None, &b"A"[..]));
        assert_eq!(self.state().await, "Stable");
        a
    }

    /// Members `a` (leader) and `b` of generation 2, Stable, with assignments "A" and "B".
    async fn stable_pair(&self) -> (String, String) {
        let a = self.stable_one("a").await;
        let b = self.new_member("b").await;
        let mut b_join = self.post_join(join_args("b", &b));
        assert_eq!(self.state().await, "PreparingRebalance");
        assert!(is_pending(&mut b_join), "b waits for a to rejoin");
        let ra = self.join(join_args("a", &a)).await;
        let rb = answer(b_join).await;
        assert_eq!((ra.error, ra.generation, &ra.leader), (None, 2, &a));
        assert_eq!((rb.error, rb.generation, &rb.leader), (None, 2, &a));
        let b_sync = self.post_sync(sync_args(&b, 2, &[]));
        let sa = self.sync(sync_args(&a, 2, &[(&a, "A"), (&b, "B")])).await;
        let sb = answer(b_sync).await;
        assert_eq!((sa.error, &sa.assignment[..]), (None, &b"A"[..]));
        assert_eq!((sb.error, &sb.assignment[..]), (None, &b"B"[..]));
        assert_eq!(self.state().await, "Stable");
        (a, b)
    }

    async fn stop(self) {
        self.actor.actor().stop(None);
        let _ = tokio::time::timeout(WAIT, self.stopped).await;
    }
}

/// Polls `f` until it returns `Some`, failing after [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_first_member_gets_member_id_required_then_joins_with_that_id() {
    let g = start(limits()).await;
    assert_eq!(g.state().await, "Empty");

    let first = g.join(join_args("c1", "")).await;
    assert_eq!(first.error, Some(GroupError::MemberIdRequired));
    assert_eq!(first.generation, -1);
    assert!(first.member_id.starts_with("c1-"), "{first:?}");
    // Handing out an id does not make a member.
    assert_eq!(g.state().await, "Empty");

    // An id the coordinator never gave out is refused.
    let unknown = g.join(join_args("c1", "c1-made-up")).await;
    assert_eq!(unknown.error, Some(GroupError::UnknownMemberId));

    let id = first.member_id;
    let r = g.join(join_args("c1", &id)).await;
    assert_eq!(r.error, None);
    assert_eq!(r.generation, 1);
    assert_eq!(r.member_id, id);
    assert_eq!(r.leader, id);
    assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members, vec![(id.clone(), None, Bytes::from("c1"))]);
    assert_eq!(g.state().await, "CompletingRebalance");
    assert_eq!(g.members().await, vec![(id, Bytes::new())]);
    g.stop().await;
}

#[tokio::test]
async fn two_members_join_and_the_leaders_sync_hands_out_assignments() {
    let delay = Duration::from_millis(200);
    let g = start(GroupLimits {
        initial_rebalance_delay: delay,
        ..limits()
    })
    .await;
    let a = g.new_member("a").await;
    let b = g.new_member("b").await;

    let mut a_join = g.post_join(join_args("a", &a));
    let t0 = Instant::now();
    let mut b_join = g.post_join(join_args("b", &b));
    // Both wait for the initial rebalance delay (which b's join extended).
    assert_eq!(g.state().await, "PreparingRebalance");
    assert!(is_pending(&mut a_join) && is_pending(&mut b_join));

    let ra = answer(a_join).await;
    let rb = answer(b_join).await;
    assert!(
        t0.elapsed() >= delay,
        "joined after {:?}, before the initial delay",
        t0.elapsed()
    );
    for r in [&ra, &rb] {
        assert_eq!(r.error, None);
        assert_eq!(r.generation, 1);
        assert_eq!(r.leader, a, "the first member to join leads");
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
    }
    assert_eq!((ra.member_id.as_str(), rb.member_id.as_str()), (&*a, &*b));
    // Only the leader learns the members and their metadata, in join order.
    assert_eq!(
        ra.members,
        vec![
            (a.clone(), None, Bytes::from("a")),
            (b.clone(), None, Bytes::from("b"))
        ]
    );
    assert!(rb.members.is_empty());
    assert_eq!(g.state().await, "CompletingRebalance");

    // The follower's sync waits for the leader's.
    let mut b_sync = g.post_sync(sync_args(&b, 1, &[]));
    assert_eq!(g.state().await, "CompletingRebalance");
    assert!(is_pending(&mut b_sync));
    let sa = g
        .sync(sync_args(&a, 1, &[(&a, "for a"), (&b, "for b")]))
        .await;
    let sb = answer(b_sync).await;
    assert_eq!(sa.error, None);
    assert_eq!(&sa.assignment[..], b"for a");
    assert_eq!(sa.protocol_name.as_deref(), Some("range"));
    assert_eq!(sb.error, None);
    assert_eq!(&sb.assignment[..], b"for b");
    assert_eq!(g.state().await, "Stable");
    assert_eq!(
        g.members().await,
        vec![
            (a.clone(), Bytes::from("for a")),
            (b.clone(), Bytes::from("for b"))
        ]
    );
    // A sync in Stable gets the member's assignment again.
    let again = g.sync(sync_args(&b, 1, &[])).await;
    assert_eq!((again.error, &again.assignment[..]), (None, &b"for b"[..]));
    g.stop().await;
}

#[tokio::test]
async fn heartbeat_outcomes_follow_the_group_state() {
    let g = start(limits()).await;
    let a = g.new_member("a").await;
    let r = g.join(join_args("a", &a)).await;
    assert_eq!(r.generation, 1);
    assert_eq!(g.state().await, "CompletingRebalance");
    assert_eq!(g.heartbeat(who(&a), 1).await, Ok(()));

    let s = g.sync(sync_args(&a, 1, &[(&a, "A")])).await;
    assert_eq!(s.error, None);
    assert_eq!(g.state().await, "Stable");
    assert_eq!(g.heartbeat(who(&a), 1).await, Ok(()));
    assert_eq!(
        g.heartbeat(who("a-stranger"), 1).await,
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        g.heartbeat(who(&a), 0).await,
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        g.heartbeat(who(&a), 2).await,
        Err(GroupError::IllegalGeneration)
    );

    // A newcomer prepares a rebalance: the member must rejoin.
    let b = g.new_member("b").await;
    let b_join = g.post_join(join_args("b", &b));
    assert_eq!(g.state().await, "PreparingRebalance");
    assert_eq!(
        g.heartbeat(who(&a), 1).await,
        Err(GroupError::RebalanceInProgress)
    );
    // The newcomer is a member but has no generation yet.
    assert_eq!(
        g.heartbeat(who(&b), 1).await,
        Err(GroupError::RebalanceInProgress)
    );
    assert_eq!(
        g.heartbeat(who(&b), 0).await,
        Err(GroupError::IllegalGeneration)
    );

    let ra = g.join(join_args("a", &a)).await;
    let rb = answer(b_join).await;
    assert_eq!((ra.generation, rb.generation), (2, 2));
    assert_eq!(
        g.heartbeat(who(&a), 1).await,
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(g.heartbeat(who(&a), 2).await, Ok(()));
    assert_eq!(g.heartbeat(who(&b), 2).await, Ok(()));
    g.stop().await;
}

#[tokio::test]
async fn a_leaving_member_triggers_a_rebalance() {
    let g = start(limits()).await;
    let (a, b) = g.stable_pair().await;

    assert_eq!(g.leave(vec![who(&b)]).await, vec![Ok(())]);
    assert_eq!(g.state().await, "PreparingRebalance");
    assert_eq!(
        g.heartbeat(who(&a), 2).await,
        Err(GroupError::RebalanceInProgress)
    );
    assert_eq!(
        g.heartbeat(who(&b), 2).await,
        Err(GroupError::UnknownMemberId)
    );

    let r = g.join(join_args("a", &a)).await;
    assert_eq!(r.error, None);
    assert_eq!(r.generation, 3);
    assert_eq!(r.leader, a);
    assert_eq!(r.members, vec![(a.clone(), None, Bytes::from("a"))]);
    let ids: Vec<String> = g.members().await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, vec![a.clone()]);

    // Leaving twice, or as a stranger, is refused per member.
    assert_eq!(
        g.leave(vec![who(&b), who("nobody")]).await,
        vec![
            Err(GroupError::UnknownMemberId),
            Err(GroupError::UnknownMemberId)
        ]
    );
    // The last member leaving empties the group.
    assert_eq!(g.leave(vec![who(&a)]).await, vec![Ok(())]);
    assert_eq!(g.state().await, "Empty");
    assert_eq!(
        g.heartbeat(who(&a), 3).await,
        Err(GroupError::UnknownMemberId)
    );
    g.stop().await;
}

#[tokio::test]
async fn a_member_that_stops_heartbeating_is_removed_after_its_session_timeout() {
    let session = Duration::from_millis(300);
    let g = start(limits()).await;
    let (a, b) = g.stable_pair().await;

    // b rejoins with a short session (a follower rejoining in Stable with the same
    // protocols gets the current generation, without a rebalance), then goes silent.
    let t0 = Instant::now();
    let rb = g
        .join(JoinArgs {
            session_timeout: session,
            ..join_args("b", &b)
        })
        .await;
    assert_eq!(
        (rb.error, rb.generation, rb.leader.as_str()),
        (None, 2, &*a)
    );
    assert!(rb.members.is_empty());
    assert_eq!(g.state().await, "Stable");

    // a keeps heartbeating until it is told to rejoin.
    let (group, leader) = (&g, &a);
    let told = eventually("b's session to expire", move || async move {
        match group.heartbeat(who(leader), 2).await {
            Ok(()) => None,
            other => Some(other),
        }
    })
    .await;
    let after = t0.elapsed();
    assert_eq!(told, Err(GroupError::RebalanceInProgress));
    assert!(
        after > session,
        "b removed after {after:?}, before its session timeout"
    );
    assert_eq!(
        g.heartbeat(who(&b), 2).await,
        Err(GroupError::UnknownMemberId)
    );

    let ra = g.join(join_args("a", &a)).await;
    assert_eq!((ra.error, ra.generation), (None, 3));
    assert_eq!(ra.members, vec![(a.clone(), None, Bytes::from("a"))]);
    g.stop().await;
}

#[tokio::test]
async fn a_rebalance_timeout_removes_a_member_that_does_not_rejoin() {
    let rebalance = Duration::from_millis(300);
    let g = start(limits()).await;
    let (a, b) = g.stable_pair().await;

    // b takes a short rebalance timeout (a follower's rejoin in Stable changes nothing
    // else); a, the leader, rejoins with one too, which starts a rebalance b never joins.
    let rb = g
        .join(JoinArgs {
            rebalance_timeout: rebalance,
            ..join_args("b", &b)
        })
        .await;
    assert_eq!((rb.error, rb.generation), (None, 2));
    assert_eq!(g.state().await, "Stable");
    let t0 = Instant::now();
    let mut a_join = g.post_join(JoinArgs {
        rebalance_timeout: rebalance,
        ..join_args("a", &a)
    });
    assert_eq!(g.state().await, "PreparingRebalance");
    assert!(is_pending(&mut a_join), "a waits for b until the timeout");

    let ra = answer(a_join).await;
    let after = t0.elapsed();
    assert!(
        after >= rebalance,
        "rebalance completed after {after:?}, before its timeout"
    );
    assert_eq!(ra.error, None);
    assert_eq!(ra.generation, 3);
    assert_eq!(ra.leader, a);
    assert_eq!(ra.members, vec![(a.clone(), None, Bytes::from("a"))]);
    assert_eq!(g.state().await, "CompletingRebalance");
    assert_eq!(
        g.heartbeat(who(&b), 2).await,
        Err(GroupError::UnknownMemberId)
    );
    let late = g.join(join_args("b", &b)).await;
    assert_eq!(late.error, Some(GroupError::UnknownMemberId));
    g.stop().await;
}

#[tokio::test]
async fn a_static_member_rejoining_with_its_instance_id_replaces_the_old_member_id() {
    let g = start(limits()).await;
    let instance = Some("instance-1".to_string());
    let static_join = |member_id: &str| JoinArgs {
        instance_id: instance.clone(),
        ..join_args("s", member_id)
    };
    let as_static = |member_id: &str| MemberRef {
        member_id: member_id.into(),
        instance_id: instance.clone(),
    };

    // A static member gets its id at once, without MEMBER_ID_REQUIRED.
    let r1 = g.join(static_join("")).await;
    assert_eq!(r1.error, None);
    assert_eq!(r1.generation, 1);
    let old = r1.member_id;
    assert!(old.starts_with("s-"), "{old}");
    assert_eq!(r1.leader, old);
    assert_eq!(
        r1.members,
        vec![(old.clone(), instance.clone(), Bytes::from("s"))]
    );
    let s1 = g
        .sync(SyncArgs {
            instance_id: instance.clone(),
            ..sync_args(&old, 1, &[(&old, "S")])
        })
        .await;
    assert_eq!((s1.error, &s1.assignment[..]), (None, &b"S"[..]));
    assert_eq!(g.state().await, "Stable");

    // The same instance restarts and joins without its member id: it replaces the old one.
    let r2 = g.join(static_join("")).await;
    assert_eq!(r2.error, None);
    let new = r2.member_id;
    assert_ne!(new, old);
    assert_eq!(r2.generation, 2);
    assert_eq!(r2.leader, new);
    assert_eq!(
        r2.members,
        vec![(new.clone(), instance.clone(), Bytes::from("s"))]
    );
    let described = g.describe().await;
    let members: Vec<_> = described
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.instance_id.clone()))
        .collect();
    assert_eq!(members, vec![(new.clone(), instance.clone())]);

    // The old member id is fenced everywhere.
    let fenced = Err(GroupError::FencedInstanceId);
    assert_eq!(g.heartbeat(as_static(&old), 1).await, fenced);
    assert_eq!(g.heartbeat(as_static(&old), 2).await, fenced);
    assert_eq!(g.commit(as_static(&old), 2, 1).await, fenced);
    let sync_old = g
        .sync(SyncArgs {
            instance_id: instance.clone(),
            ..sync_args(&old, 2, &[])
        })
        .await;
    assert_eq!(sync_old.error, Some(GroupError::FencedInstanceId));
    let join_old = g.join(static_join(&old)).await;
    assert_eq!(join_old.error, Some(GroupError::FencedInstanceId));
    assert_eq!(g.leave(vec![as_static(&old)]).await, vec![fenced]);
    assert!(g.stored_offsets().await.is_empty());

    // The new id is the member.
    assert_eq!(g.heartbeat(as_static(&new), 2).await, Ok(()));
    // A leave by instance id alone removes it.
    assert_eq!(
        g.leave(vec![MemberRef {
            member_id: String::new(),
            instance_id: instance.clone(),
        }])
        .await,
        vec![Ok(())]
    );
    assert_eq!(g.state().await, "Empty");
    g.stop().await;
}

#[tokio::test]
async fn offset_commits_are_validated_against_membership() {
    let g = start(limits()).await;
    let a = g.new_member("a").await;
    assert_eq!(g.join(join_args("a", &a)).await.generation, 1);
    // Between join and sync the assignment is not known yet.
    assert_eq!(
        g.commit(who(&a), 1, 1).await,
        Err(GroupError::RebalanceInProgress)
    );
    let s = g.sync(sync_args(&a, 1, &[(&a, "A")])).await;
    assert_eq!(s.error, None);
    assert_eq!(g.state().await, "Stable");

    assert_eq!(
        g.commit(who("a-stranger"), 1, 2).await,
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        g.commit(who(&a), 0, 3).await,
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        g.commit(who(&a), 2, 4).await,
        Err(GroupError::IllegalGeneration)
    );
    // A standalone commit is refused while the group has members.
    assert_eq!(
        g.commit(who(""), -1, 5).await,
        Err(GroupError::UnknownMemberId)
    );
    assert!(
        g.stored_offsets().await.is_empty(),
        "refused commits store nothing"
    );

    assert_eq!(g.commit(who(&a), 1, 6).await, Ok(()));
    assert_eq!(g.stored_offsets().await, vec![6]);
    g.stop().await;
}

#[tokio::test]
async fn a_standalone_commit_to_an_empty_group_is_stored() {
    let g = start(limits()).await;
    assert_eq!(g.commit(who(""), -1, 42).await, Ok(()));
    assert_eq!(g.stored_offsets().await, vec![42]);
    assert_eq!(g.state().await, "Empty");
    assert_eq!(g.commit(who(""), -1, 43).await, Ok(()));
    assert_eq!(g.stored_offsets().await, vec![43]);
    g.stop().await;
}

#[tokio::test]
async fn delete_refuses_a_group_with_members() {
    let g = start(limits()).await;
    let a = g.stable_one("a").await;
    assert_eq!(g.commit(who(&a), 1, 5).await, Ok(()));

    assert_eq!(
        g.handle.delete().await.unwrap(),
        Err(GroupError::NonEmptyGroup)
    );
    assert_eq!(g.state().await, "Stable", "the coordinator keeps running");
    assert_eq!(g.stored_offsets().await, vec![5], "the offsets stay");

    assert_eq!(g.leave(vec![who(&a)]).await, vec![Ok(())]);
    assert_eq!(g.state().await, "Empty");
    assert_eq!(g.handle.delete().await.unwrap(), Ok(()));
    tokio::time::timeout(WAIT, g.stopped)
        .await
        .expect("a deleted group's coordinator stops")
        .unwrap();
    assert!(g.store.fetch_offsets(GROUP).await.unwrap().is_empty());
}

#[tokio::test]
/// As Kafka's `GroupMetadata.summary`: outside Stable, members without metadata or assignment.
async fn describe_during_a_rebalance_shows_no_assignment_of_the_previous_generation() {
    let g = start(limits()).await;
    let (a, b) = g.stable_pair().await;
    assert_eq!(g.leave(vec![who(&b)]).await, vec![Ok(())]);
    let r = g.join(join_args("a", &a)).await;
    assert_eq!((r.error, r.generation), (None, 3));
    assert_eq!(g.state().await, "CompletingRebalance");
    // Generation 3 has no assignment yet; "A" was generation 2's.
    assert_eq!(g.members().await, vec![(a.clone(), Bytes::new())]);
    g.stop().await;
}

#[tokio::test]
async fn a_member_that_dies_during_a_rebalance_is_dropped_after_its_session_timeout() {
    // b's session is short, its rebalance timeout long: a Kafka Streams instance closed
    // without leaving. The rebalance must not wait out the rebalance timeout for it.
    let session = Duration::from_millis(300);
    let g = start(limits()).await;
    let (a, b) = g.stable_pair().await;
    let rb = g
        .join(JoinArgs {
            session_timeout: session,
            ..join_args("b", &b)
        })
        .await;
    assert_eq!((rb.error, rb.generation), (None, 2));
    // b dies now; a rejoins (long rebalance timeout), which starts a rebalance.
    let t0 = Instant::now();
    let a_join = g.post_join(join_args("a", &a));
    assert_eq!(g.state().await, "PreparingRebalance");
    let ra = tokio::time::timeout(Duration::from_secs(5), answer(a_join))
        .await
        .expect("the rebalance waited for a dead member beyond its session timeout");
    let after = t0.elapsed();
    assert!(after < LONG, "completed after {after:?}");
    assert_eq!(
        (ra.error, ra.generation, ra.leader.as_str()),
        (None, 3, &*a)
    );
    assert_eq!(ra.members, vec![(a.clone(), None, Bytes::from("a"))]);
    assert_eq!(
        g.heartbeat(who(&b), 2).await,
        Err(GroupError::UnknownMemberId)
    );
    g.stop().await;
}
