//! Mailbox lengths, for the actor tree listing (`GET /actors`).
//!
//! ractor does not expose how many messages wait in an actor's queue, so this crate counts
//! them itself: every message sent to a local actor goes through [`Post`] (which counts it
//! in), and every actor counts one out as it starts handling a message ([`taken`]).
//! Messages ractor or ractor_cluster deliver on their own (supervision events, requests
//! from peers to the gateway) are not counted, so a gateway's count stays at zero.

use parking_lot::RwLock;
use ractor::{ActorId, ActorRef, Message, MessagingErr};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::task::JoinHandle;

static QUEUED: LazyLock<RwLock<HashMap<ActorId, Arc<AtomicU64>>>> = LazyLock::new(Default::default);

fn counter(id: ActorId) -> Arc<AtomicU64> {
    if let Some(c) = QUEUED.read().get(&id) {
        return c.clone();
    }
    QUEUED.write().entry(id).or_default().clone()
}

fn count_out(c: &AtomicU64) {
    let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(1))
    });
}

/// Messages waiting in the mailbox of actor `id` (0 if none was ever counted).
pub fn queued(id: &ActorId) -> u64 {
    QUEUED
        .read()
        .get(id)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Call at the start of every `handle`: one message left the mailbox.
pub fn taken<M: Message>(actor: &ActorRef<M>) {
    if let Some(c) = QUEUED.read().get(&actor.get_id()) {
        count_out(c);
    }
}

/// Forgets a stopped actor's count.
pub fn forget(id: &ActorId) {
    QUEUED.write().remove(id);
}

/// Counted sends to local actors.
pub trait Post<M: Message> {
    /// Sends `msg` now, counting it in the actor's mailbox.
    fn post(&self, msg: M) -> Result<(), MessagingErr<M>>;
    /// Sends `make()` after `delay`.
    fn post_after<F>(&self, delay: Duration, make: F) -> JoinHandle<()>
    where
        F: FnOnce() -> M + Send + 'static;
    /// Sends `make()` every `period` until the actor is gone.
    fn post_interval<F>(&self, period: Duration, make: F) -> JoinHandle<()>
    where
        F: Fn() -> M + Send + 'static;
}

impl<M: Message> Post<M> for ActorRef<M> {
    fn post(&self, msg: M) -> Result<(), MessagingErr<M>> {
        let c = counter(self.get_id());
        c.fetch_add(1, Ordering::Relaxed);
        self.send_message(msg).inspect_err(|_| count_out(&c))
    }

    fn post_after<F>(&self, delay: Duration, make: F) -> JoinHandle<()>
    where
        F: FnOnce() -> M + Send + 'static,
    {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.post(make());
        })
    }

    fn post_interval<F>(&self, period: Duration, make: F) -> JoinHandle<()>
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

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::{Actor, ActorProcessingErr};
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    struct Slow;
    #[derive(Debug)]
    struct Work;
    impl Message for Work {}

    impl Actor for Slow {
        type Msg = Work;
        type State = Arc<Semaphore>;
        type Arguments = Arc<Semaphore>;
        async fn pre_start(
            &self,
            _: ActorRef<Work>,
            gate: Arc<Semaphore>,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(gate)
        }
        async fn handle(
            &self,
            myself: ActorRef<Work>,
            _: Work,
            gate: &mut Arc<Semaphore>,
        ) -> Result<(), ActorProcessingErr> {
            taken(&myself);
            gate.acquire().await?.forget();
            Ok(())
        }
    }

    #[tokio::test]
    async fn posted_messages_are_counted_until_handled() {
        let gate = Arc::new(Semaphore::new(0));
        let (actor, handle) = Actor::spawn(None, Slow, gate.clone()).await.unwrap();
        for _ in 0..4 {
            actor.post(Work).unwrap();
        }
        // One is being handled (blocked on the gate), three wait.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while queued(&actor.get_id()) != 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "count never reached 3"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gate.add_permits(4);
        while queued(&actor.get_id()) != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "count never drained"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        actor.stop(None);
        handle.await.unwrap();
        forget(&actor.get_id());
        assert_eq!(queued(&actor.get_id()), 0);
    }
}
