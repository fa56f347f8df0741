//! Mailbox lengths, for the actor tree listing (`GET /actors`).
//!
//! ractor does not expose how many messages wait in an actor's queue, so this crate counts
//! them itself. Every local actor is reached through a [`Mailbox`]: its reference plus a
//! counter that belongs to that one actor. [`Mailbox::post`] counts a message in; the actor
//! counts one out as it starts handling a message ([`Mailbox::taken`], called first thing
//! in every `handle`). The actor holds its own `Mailbox` (built in `pre_start` from the
//! [`QueueCount`] its spawner passed in) and sends to itself through it, so timers and
//! tasks that report back are counted too. The counter lives as long as the actor's
//! handles: nothing global, nothing to forget when the actor stops.
//!
//! An actor whose messages stand for work it keeps after taking them (the uploader's
//! objects, the index writer's appends) counts each out when that work is done instead of
//! when it is taken, so its count is its backlog, which its senders read
//! ([`Mailbox::backlog`]) to hold back at a configured limit.
//!
//! Messages ractor or ractor_cluster deliver on their own (supervision events, requests
//! from peers to the gateway) are not counted, so a gateway's count stays at zero.

use ractor::{ActorId, ActorRef, Message, MessagingErr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The count of messages waiting in one actor's mailbox; made by its spawner, shared by its
/// [`Mailbox`] handles and the actor directory.
#[derive(Debug, Clone, Default)]
pub struct QueueCount(Arc<AtomicU64>);

impl QueueCount {
    /// Messages waiting now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn count_in(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count_out(&self) {
        let left = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        debug_assert!(
            left.is_ok(),
            "a message was handled that was never counted in"
        );
    }
}

/// A typed handle of a local actor: where to send, and its mailbox count.
#[derive(Debug)]
pub struct Mailbox<M: Message> {
    actor: ActorRef<M>,
    queued: QueueCount,
}

impl<M: Message> Clone for Mailbox<M> {
    fn clone(&self) -> Self {
        Self {
            actor: self.actor.clone(),
            queued: self.queued.clone(),
        }
    }
}

impl<M: Message> Mailbox<M> {
    /// The handle of `actor`, whose spawner made `queued` for it.
    pub fn new(actor: ActorRef<M>, queued: QueueCount) -> Self {
        Self { actor, queued }
    }

    /// The actor's reference (to link, stop or identify it, never to send uncounted).
    pub fn actor(&self) -> &ActorRef<M> {
        &self.actor
    }

    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.actor.get_id()
    }

    /// Messages counted in and not yet out: waiting, or (for actors that count out when
    /// done) still being worked on.
    pub fn backlog(&self) -> u64 {
        self.queued.get()
    }

    /// Call first thing in the actor's `handle`: one message left the mailbox (or, for an
    /// actor counting its backlog, when the work a message brought is done).
    pub fn taken(&self) {
        self.queued.count_out();
    }

    /// Sends `msg` now, counting it in.
    pub fn post(&self, msg: M) -> Result<(), MessagingErr<M>> {
        self.queued.count_in();
        self.actor
            .send_message(msg)
            .inspect_err(|_| self.queued.count_out())
    }

    /// Sends `make()` after `delay`.
    pub fn post_after<F>(&self, delay: Duration, make: F) -> JoinHandle<()>
    where
        F: FnOnce() -> M + Send + 'static,
    {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.post(make());
        })
    }

    /// Sends `make()` every `period` until the actor is gone.
    pub fn post_interval<F>(&self, period: Duration, make: F) -> JoinHandle<()>
    where
        F: Fn() -> M + Send + 'static,
    {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if me.post(make()).is_err() {
                    break;
                }
            }
        })
    }
}

/// Spawns `actor` unsupervised with the arguments `args` makes from its mailbox count
/// (unit tests of one actor).
#[cfg(test)]
pub(crate) async fn spawn_for_test<A: ractor::Actor>(
    actor: A,
    args: impl FnOnce(QueueCount) -> A::Arguments,
) -> (Mailbox<A::Msg>, ractor::concurrency::JoinHandle<()>) {
    let queued = QueueCount::default();
    let (actor, handle) = ractor::Actor::spawn(None, actor, args(queued.clone()))
        .await
        .expect("test actor starts");
    (Mailbox::new(actor, queued), handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::{Actor, ActorProcessingErr};
    use tokio::sync::Semaphore;

    struct Slow;
    #[derive(Debug)]
    struct Work;
    impl Message for Work {}

    impl Actor for Slow {
        type Msg = Work;
        type State = (Mailbox<Work>, Arc<Semaphore>);
        type Arguments = (QueueCount, Arc<Semaphore>);
        async fn pre_start(
            &self,
            myself: ActorRef<Work>,
            (queued, gate): Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok((Mailbox::new(myself, queued), gate))
        }
        async fn handle(
            &self,
            _: ActorRef<Work>,
            _: Work,
            (me, gate): &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            me.taken();
            gate.acquire().await?.forget();
            Ok(())
        }
    }

    async fn wait_for(queued: &QueueCount, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while queued.get() != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "count never reached {n}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn posted_messages_are_counted_until_handled() {
        let gate = Arc::new(Semaphore::new(0));
        let queued = QueueCount::default();
        let (actor, handle) = Actor::spawn(None, Slow, (queued.clone(), gate.clone()))
            .await
            .unwrap();
        let mailbox = Mailbox::new(actor, queued.clone());
        for _ in 0..4 {
            mailbox.post(Work).unwrap();
        }
        // One is being handled (blocked on the gate), three wait.
        wait_for(&queued, 3).await;
        gate.add_permits(4);
        wait_for(&queued, 0).await;
        mailbox.actor().stop(None);
        handle.await.unwrap();
        assert!(mailbox.post(Work).is_err());
        assert_eq!(queued.get(), 0, "a refused send is not counted");
    }
}
