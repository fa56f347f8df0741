//! Incremental fetch sessions (KIP-227).
//!
//! A consumer that fetches the same partitions again and again opens a session with a full
//! fetch (session id 0, epoch 0). The node remembers the session's partitions (each with
//! its fetch offset and the offsets last sent), answers with a session id, and from then on
//! the client sends only what changed (new or moved partitions, and `forgotten_topics_data`)
//! with the next epoch, and the node answers only the partitions that have records or whose
//! offsets or error changed. Sessions live in this node's memory: after a restart, or when
//! the client moves to another node, the client gets FETCH_SESSION_ID_NOT_FOUND and starts
//! a new one, as with Kafka.
//!
//! The cache is bounded (`fetch.max_sessions`). When it is full, a new session takes the
//! place of the least recently used one if that one has been idle for
//! `fetch.session_eviction_ms`, else of the smallest one if the new one is larger; otherwise
//! no session is created and the client goes on with full fetches (Kafka's rule, without
//! its privileged follower sessions).

use super::NONE;
use indexmap::IndexMap;
use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::fetch_request::FetchRequest;
use inkless_protocol::kafka_protocol::messages::fetch_response::FetchResponse;
use inkless_protocol::kafka_protocol::messages::TopicName;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// `session_epoch` of a request that opens a session.
const INITIAL_EPOCH: i32 = 0;
/// `session_epoch` of a request that closes its session (or asks for none).
const FINAL_EPOCH: i32 = -1;
/// The session id that means "no session".
const NO_SESSION: i32 = 0;

/// The partitions a fetch asks for of one topic: from the request, or remembered by its
/// session.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// Topic name (requests before version 13).
    pub name: TopicName,
    /// Topic id (requests from version 13).
    pub id: Uuid,
    /// Its partitions.
    pub parts: Vec<WantedPart>,
}

/// One partition a fetch asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantedPart {
    /// Partition index.
    pub partition: i32,
    /// Offset to read from.
    pub fetch_offset: i64,
    /// Byte limit of this partition.
    pub max_bytes: i32,
    /// The leader epoch the client knows (-1: none; KIP-320).
    pub current_leader_epoch: i32,
}

/// A topic's identity within a session: (topic id, topic name). A session uses ids or
/// names, never both, so the unused one is always empty.
type TopicKey = (Uuid, TopicName);

/// What the node last told the client of a partition, to answer only changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    high_watermark: i64,
    log_start_offset: i64,
}

#[derive(Debug)]
struct CachedPart {
    wanted: WantedPart,
    sent: Option<Sent>,
}

/// A session's partitions of each topic, in the order they were added (as Kafka keeps them).
type CachedTopics = IndexMap<TopicKey, IndexMap<i32, CachedPart>>;

#[derive(Debug)]
struct Session {
    /// The epoch the next request must carry.
    epoch: i32,
    /// Topics named by id (version 13 and later).
    by_id: bool,
    topics: CachedTopics,
    last_used: Instant,
}

impl Session {
    fn len(&self) -> usize {
        self.topics.values().map(IndexMap::len).sum()
    }

    /// Adds or updates the partitions of `wanted`.
    fn want(&mut self, wanted: Vec<Wanted>) {
        for w in wanted {
            let parts = self.topics.entry((w.id, w.name)).or_default();
            for p in w.parts {
                match parts.get_mut(&p.partition) {
                    Some(cached) => cached.wanted = p,
                    None => {
                        let cached = CachedPart {
                            wanted: p,
                            sent: None,
                        };
                        parts.insert(p.partition, cached);
                    }
                }
            }
        }
    }

    /// Drops the partitions the request says the client forgot.
    fn forget(&mut self, req: &FetchRequest) {
        for t in &req.forgotten_topics_data {
            let k = (t.topic_id, t.topic.clone());
            if let Some(parts) = self.topics.get_mut(&k) {
                for p in &t.partitions {
                    parts.shift_remove(p);
                }
                if parts.is_empty() {
                    self.topics.shift_remove(&k);
                }
            }
        }
    }

    /// What the session reads.
    fn wanted(&self) -> Vec<Wanted> {
        self.topics
            .iter()
            .map(|((id, name), parts)| Wanted {
                name: name.clone(),
                id: *id,
                parts: parts.values().map(|c| c.wanted).collect(),
            })
            .collect()
    }
}

/// How a fetch relates to a session, decided before it is read.
#[derive(Debug)]
pub enum Plan {
    /// No session: answer everything, with session id 0.
    Sessionless,
    /// Answer everything, then open a session over these partitions.
    Open,
    /// Answer the changes of this session's partitions.
    Incremental(i32),
}

/// The fetch sessions of this node.
pub struct FetchSessions {
    sessions: Mutex<HashMap<i32, Session>>,
    max_sessions: usize,
    eviction_idle: Duration,
    evictions: AtomicU64,
    incremental_fetches: AtomicU64,
}

impl FetchSessions {
    /// An empty cache of at most `max_sessions` sessions.
    pub fn new(max_sessions: usize, eviction_idle: Duration) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            max_sessions,
            eviction_idle,
            evictions: AtomicU64::new(0),
            incremental_fetches: AtomicU64::new(0),
        }
    }

    /// Decides how `req` is answered and which partitions it reads: the request's own, or
    /// (incremental) its session's after applying the request's changes. `Err` is the
    /// top-level error code of the answer.
    pub fn begin(
        &self,
        req: &FetchRequest,
        version: i16,
        requested: Vec<Wanted>,
    ) -> Result<(Plan, Vec<Wanted>), i16> {
        let (id, epoch) = (req.session_id, req.session_epoch);
        if version < 7 {
            return Ok((Plan::Sessionless, requested));
        }
        if epoch == FINAL_EPOCH || epoch == INITIAL_EPOCH {
            if id != NO_SESSION {
                self.sessions.lock().remove(&id);
            }
            let plan = if epoch == FINAL_EPOCH {
                Plan::Sessionless
            } else {
                Plan::Open
            };
            return Ok((plan, requested));
        }
        if id == NO_SESSION {
            return Err(ResponseError::InvalidFetchSessionEpoch.code());
        }
        let mut sessions = self.sessions.lock();
        let session = sessions
            .get_mut(&id)
            .ok_or(ResponseError::FetchSessionIdNotFound.code())?;
        if session.epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch.code());
        }
        if session.by_id != (version >= 13) {
            return Err(ResponseError::FetchSessionTopicIdError.code());
        }
        session.epoch = next_epoch(epoch);
        session.last_used = Instant::now();
        session.want(requested);
        session.forget(req);
        self.incremental_fetches.fetch_add(1, Ordering::Relaxed);
        Ok((Plan::Incremental(id), session.wanted()))
    }

    /// Completes the answer of a fetch planned by [`FetchSessions::begin`]: opens the
    /// session, or keeps only the changed partitions of an incremental answer.
    pub fn finish(
        &self,
        plan: Plan,
        version: i16,
        wanted: Vec<Wanted>,
        response: FetchResponse,
    ) -> FetchResponse {
        match plan {
            Plan::Sessionless => response.with_session_id(NO_SESSION),
            Plan::Open => {
                let id = self.open(version >= 13, wanted, &response);
                response.with_session_id(id)
            }
            Plan::Incremental(id) => {
                let mut sessions = self.sessions.lock();
                match sessions.get_mut(&id) {
                    Some(session) => only_changes(session, response).with_session_id(id),
                    // Evicted or closed meanwhile: the whole answer is still true.
                    None => response.with_session_id(id),
                }
            }
        }
    }

    /// Opens a session over `wanted` as answered in `response`; its id, or 0 when the
    /// cache is full of sessions that may not be evicted.
    fn open(&self, by_id: bool, wanted: Vec<Wanted>, response: &FetchResponse) -> i32 {
        let mut sessions = self.sessions.lock();
        let size = wanted.iter().map(|w| w.parts.len()).sum();
        if sessions.len() >= self.max_sessions && !self.evict_for(&mut sessions, size) {
            return NO_SESSION;
        }
        let mut session = Session {
            epoch: next_epoch(INITIAL_EPOCH),
            by_id,
            topics: IndexMap::new(),
            last_used: Instant::now(),
        };
        session.want(wanted);
        record_sent(&mut session, response);
        let id = loop {
            // Random, so a client of a restarted node does not find someone else's session.
            let id = (Uuid::new_v4().as_u128() as u32 >> 1) as i32;
            if id != NO_SESSION && !sessions.contains_key(&id) {
                break id;
            }
        };
        sessions.insert(id, session);
        id
    }

    /// Makes room for a session of `size` partitions; false if no session may go.
    fn evict_for(&self, sessions: &mut HashMap<i32, Session>, size: usize) -> bool {
        let now = Instant::now();
        let stale = sessions
            .iter()
            .min_by_key(|(_, s)| s.last_used)
            .filter(|(_, s)| now.duration_since(s.last_used) >= self.eviction_idle)
            .map(|(&id, _)| id);
        let smaller = || {
            sessions
                .iter()
                .min_by_key(|(_, s)| (s.len(), s.last_used))
                .filter(|(_, s)| s.len() < size)
                .map(|(&id, _)| id)
        };
        let Some(victim) = stale.or_else(smaller) else {
            return false;
        };
        sessions.remove(&victim);
        self.evictions.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Sessions cached now.
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Partitions of all cached sessions.
    pub fn partitions(&self) -> usize {
        self.sessions.lock().values().map(Session::len).sum()
    }

    /// Sessions evicted to make room for new ones, since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Incremental fetches answered, since start.
    pub fn incremental_fetches(&self) -> u64 {
        self.incremental_fetches.load(Ordering::Relaxed)
    }
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// Notes what `response` tells the client of each of the session's partitions.
fn record_sent(session: &mut Session, response: &FetchResponse) {
    for t in &response.responses {
        let Some(parts) = session.topics.get_mut(&(t.topic_id, t.topic.clone())) else {
            continue;
        };
        for p in &t.partitions {
            if let Some(c) = parts.get_mut(&p.partition_index) {
                c.sent = Some(Sent {
                    high_watermark: p.high_watermark,
                    log_start_offset: p.log_start_offset,
                });
            }
        }
    }
}

/// The partitions of `response` the client must hear about: with records, an error, a
/// redirect, or offsets other than those last sent. Records what is sent.
fn only_changes(session: &mut Session, mut response: FetchResponse) -> FetchResponse {
    for t in &mut response.responses {
        let Some(parts) = session.topics.get_mut(&(t.topic_id, t.topic.clone())) else {
            continue;
        };
        t.partitions.retain(|p| {
            let Some(c) = parts.get_mut(&p.partition_index) else {
                return true;
            };
            let now = Sent {
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
            };
            let has_records = p.records.as_ref().is_some_and(|r| !r.is_empty());
            let changed = has_records
                || p.error_code != NONE
                || p.preferred_read_replica.0 >= 0
                || c.sent != Some(now);
            c.sent = Some(now);
            changed
        });
    }
    response.responses.retain(|t| !t.partitions.is_empty());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use inkless_protocol::kafka_protocol::messages::fetch_request::ForgottenTopic;
    use inkless_protocol::kafka_protocol::messages::fetch_response::{
        FetchableTopicResponse, PartitionData,
    };
    use inkless_protocol::kafka_protocol::protocol::StrBytes;

    fn name(n: &str) -> TopicName {
        TopicName(StrBytes::from_string(n.to_string()))
    }

    /// Partitions `(index, fetch offset)` of topic `t`.
    fn wanted(parts: &[(i32, i64)]) -> Vec<Wanted> {
        vec![Wanted {
            name: name("t"),
            id: Uuid::nil(),
            parts: parts
                .iter()
                .map(|&(partition, fetch_offset)| WantedPart {
                    partition,
                    fetch_offset,
                    max_bytes: 1 << 20,
                    current_leader_epoch: -1,
                })
                .collect(),
        }]
    }

    /// (partition, fetch offset) of everything a fetch reads.
    fn reads(w: &[Wanted]) -> Vec<(i32, i64)> {
        w.iter()
            .flat_map(|t| t.parts.iter().map(|p| (p.partition, p.fetch_offset)))
            .collect()
    }

    fn request(session_id: i32, session_epoch: i32) -> FetchRequest {
        FetchRequest::default()
            .with_session_id(session_id)
            .with_session_epoch(session_epoch)
    }

    /// An answer for partitions `(index, high watermark, records)` of topic `t`.
    fn answer(parts: &[(i32, i64, &'static [u8])]) -> FetchResponse {
        let partitions = parts
            .iter()
            .map(|&(i, hwm, records)| {
                PartitionData::default()
                    .with_partition_index(i)
                    .with_high_watermark(hwm)
                    .with_records(Some(Bytes::from_static(records)))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(name("t"))
            .with_partitions(partitions)])
    }

    fn answered(r: &FetchResponse) -> Vec<i32> {
        r.responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
            .collect()
    }

    /// Opens a session over partitions 0..3, all at high watermark 5.
    fn open(cache: &FetchSessions) -> i32 {
        let asked = wanted(&[(0, 5), (1, 5), (2, 5)]);
        let (plan, wanted) = cache.begin(&request(0, 0), 12, asked).unwrap();
        let r = cache.finish(
            plan,
            12,
            wanted,
            answer(&[(0, 5, b""), (1, 5, b""), (2, 5, b"")]),
        );
        assert_ne!(r.session_id, 0);
        r.session_id
    }

    #[test]
    fn an_incremental_fetch_answers_only_what_changed_and_keeps_the_session_partitions() {
        let cache = FetchSessions::new(10, Duration::from_secs(120));
        let id = open(&cache);
        // Nothing in the request: the session's three partitions are read.
        let (plan, read) = cache.begin(&request(id, 1), 12, vec![]).unwrap();
        assert_eq!(reads(&read), vec![(0, 5), (1, 5), (2, 5)]);
        let r = cache.finish(
            plan,
            12,
            read,
            answer(&[(0, 5, b""), (1, 7, b"xy"), (2, 5, b"")]),
        );
        assert_eq!(answered(&r), vec![1], "only the partition with records");
        // Partition 1 moved on: the client sends its new offset, forgets partition 2.
        let req = request(id, 2).with_forgotten_topics_data(vec![ForgottenTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![2])]);
        let (plan, read) = cache.begin(&req, 12, wanted(&[(1, 7)])).unwrap();
        assert_eq!(reads(&read), vec![(0, 5), (1, 7)]);
        let r = cache.finish(plan, 12, read, answer(&[(0, 6, b""), (1, 7, b"")]));
        assert_eq!(answered(&r), vec![0], "partition 0's high watermark moved");
        assert_eq!(cache.incremental_fetches(), 2);
    }

    #[test]
    fn wrong_epochs_unknown_sessions_and_closes_get_kafkas_answers() {
        let cache = FetchSessions::new(10, Duration::from_secs(120));
        let id = open(&cache);
        let code = |r: Result<(Plan, Vec<Wanted>), i16>| r.err();
        assert_eq!(
            code(cache.begin(&request(id, 5), 12, vec![])),
            Some(ResponseError::InvalidFetchSessionEpoch.code())
        );
        assert_eq!(
            code(cache.begin(&request(id + 1, 1), 12, vec![])),
            Some(ResponseError::FetchSessionIdNotFound.code())
        );
        assert_eq!(
            code(cache.begin(&request(id, 1), 13, vec![])),
            Some(ResponseError::FetchSessionTopicIdError.code())
        );
        // Closing: a sessionless answer, and the session is gone.
        let (plan, _) = cache.begin(&request(id, FINAL_EPOCH), 12, vec![]).unwrap();
        assert!(matches!(plan, Plan::Sessionless));
        assert_eq!(cache.len(), 0);
        assert_eq!(
            code(cache.begin(&request(id, 1), 12, vec![])),
            Some(ResponseError::FetchSessionIdNotFound.code())
        );
    }

    #[test]
    fn a_full_cache_evicts_a_smaller_or_idle_session_or_opens_none() {
        let cache = FetchSessions::new(1, Duration::from_secs(120));
        let first = open(&cache);
        // Not larger than the cached one, which is not idle: no session.
        let (plan, w) = cache
            .begin(&request(0, 0), 12, wanted(&[(0, 0), (1, 0)]))
            .unwrap();
        assert_eq!(cache.finish(plan, 12, w, answer(&[])).session_id, 0);
        // Larger: it takes the place of the first.
        let four = wanted(&[(0, 0), (1, 0), (2, 0), (3, 0)]);
        let (plan, w) = cache.begin(&request(0, 0), 12, four).unwrap();
        let second = cache.finish(plan, 12, w, answer(&[])).session_id;
        assert!(second != 0 && second != first);
        assert_eq!(
            (cache.len(), cache.partitions(), cache.evictions()),
            (1, 4, 1)
        );
        // Idle sessions go for any newcomer.
        let cache = FetchSessions::new(1, Duration::ZERO);
        open(&cache);
        let (plan, w) = cache.begin(&request(0, 0), 12, wanted(&[(0, 0)])).unwrap();
        assert_ne!(cache.finish(plan, 12, w, answer(&[])).session_id, 0);
    }
}
