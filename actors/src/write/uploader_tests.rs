//! Unit tests of the ObjectUploader's invariant: deliveries happen in seal order even when
//! PUTs finish out of order; nothing of a failed upload reaches a PartitionActor.
//!
//! The uploader runs unchanged against a real `file://` BlobStore in a temporary directory.
//! PUTs are made to finish out of order, or to fail, with the file system itself: an object
//! whose key lies under `wal/blocked/` cannot be written while `wal/blocked` is a regular
//! file (the store cannot create the directory), so its PUT fails and the uploader retries
//! it with backoff; removing the file lets the next retry succeed, long after the PUTs of
//! the objects sealed after it. No seam in the uploader is needed.
//!
//! The partitions' actor is a recorder that stands in for a PartitionActor: it notes every
//! `Append` it receives, in order, and acknowledges it. One recorder serves both
//! partitions, so its log is the uploader's global delivery order; each slice carries a
//! label (the position of its one batch) saying which object and partition it is.

use crate::cluster::placement::LiveSet;
use crate::partition::actor::{AppendAck, IncomingBatch, PartitionMsg, PartitionOffsets};
use crate::partition::registry::{PartitionHandle, PartitionRegistry};
use crate::tree::mailbox::{spawn_for_test, Mailbox, QueueCount};
use crate::tree::registry::ActorSlot;
use crate::write::uploader::{ObjectUploader, SealedObject, SealedPart, UploadMsg, UploaderArgs};
use crate::{AppendError, TopicPartition};
use bytes::Bytes;
use inkless_protocol::batch::BatchHeader;
use inkless_storage::blob::{BlobStore, S3Options};
use inkless_storage::metadata::NodeLease;
use inkless_storage::object::BatchPosition;
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Deadline of every wait for something the uploader should do.
const WAIT: Duration = Duration::from_secs(5);

/// (object key, label) of every Append the recorder received, in order.
type Log = Arc<Mutex<Vec<(String, u64)>>>;

type Reply = oneshot::Receiver<Result<AppendAck, AppendError>>;

/// Stands in for the PartitionActors: records each Append and acknowledges it with its
/// label as base offset.
struct Recorder;

impl Actor for Recorder {
    type Msg = PartitionMsg;
    type State = (Mailbox<PartitionMsg>, Log);
    type Arguments = (QueueCount, Log);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (queued, log): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok((Mailbox::new(myself, queued), log))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        (me, log): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        me.taken();
        if let PartitionMsg::Append {
            object_key,
            batches,
            reply,
            ..
        } = msg
        {
            let label = batches[0].position.offset;
            log.lock().push((object_key, label));
            let _ = reply.send(Ok(AppendAck {
                base_offset: label as i64,
                log_start_offset: 0,
            }));
        }
        Ok(())
    }
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition {
        topic_id: uuid::Uuid::from_u128(7),
        partition,
    }
}

/// A one-batch slice of `tp` labelled `label`, and where its producer's answer comes.
fn part(tp: TopicPartition, label: u64) -> (SealedPart, Reply) {
    let header = BatchHeader {
        base_offset: 0,
        batch_length: 49,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: 0,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 1,
    };
    let (tx, rx) = oneshot::channel();
    let part = SealedPart {
        tp,
        batches: vec![IncomingBatch {
            header,
            position: BatchPosition {
                offset: label,
                len: 61,
            },
        }],
        reply: tx,
    };
    (part, rx)
}

/// An object `key` with one slice per `(partition, label)`, and the answers of the slices.
fn object(key: &str, parts: &[(TopicPartition, u64)]) -> (SealedObject, Vec<Reply>) {
    let (parts, replies) = parts.iter().map(|&(tp, label)| part(tp, label)).unzip();
    let object = SealedObject {
        key: key.into(),
        bytes: Bytes::from(format!("the bytes of {key}")),
        parts,
    };
    (object, replies)
}

/// An uploader on a `file://` store, with the recorder running partitions 0 and 1.
struct Rig {
    uploader: Mailbox<UploadMsg>,
    recorder: Mailbox<PartitionMsg>,
    log: Log,
    blob: BlobStore,
    /// The store's directory.
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(upload_timeout: Duration) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let blob = BlobStore::open("file://objects", &S3Options::default(), dir.path()).unwrap();
        let root = dir.path().join("objects");
        let log = Log::default();
        let (recorder, _) = spawn_for_test(Recorder, |queued| (queued, log.clone())).await;
        let partitions = PartitionRegistry::default();
        for p in [0, 1] {
            partitions.insert(
                tp(p),
                PartitionHandle {
                    actor: recorder.clone(),
                    offsets: watch::channel(PartitionOffsets::default()).1,
                    generation: 0,
                    owner_epoch: 0,
                },
            );
        }
        let me = NodeLease {
            node_id: 0,
            ..NodeLease::default()
        };
        let args = |queued| UploaderArgs {
            queued,
            blob: blob.clone(),
            partitions,
            cache: Arc::new(ActorSlot::default()),
            max_uploads_in_flight: 4,
            upload_timeout,
            block_bytes: 4 << 20,
            live: watch::channel(Arc::new(LiveSet::single(me))).1,
            peers: Default::default(),
        };
        let (uploader, _) = spawn_for_test(ObjectUploader, args).await;
        Rig {
            uploader,
            recorder,
            log,
            blob,
            root,
            _dir: dir,
        }
    }

    /// Makes `wal/blocked` a regular file: PUTs of keys under it fail until it is removed.
    fn block(&self) -> PathBuf {
        let blocker = self.root.join("wal/blocked");
        std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
        std::fs::write(&blocker, b"not a directory").unwrap();
        blocker
    }

    fn upload(&self, object: SealedObject) {
        // Sent as the ProduceBuffer sends it (counted in the uploader's mailbox).
        self.uploader.post(UploadMsg::Upload(object)).unwrap();
    }

    fn delivered(&self) -> Vec<(String, u64)> {
        self.log.lock().clone()
    }

    fn puts(&self) -> u64 {
        self.blob.metrics().put_requests.load(Ordering::Relaxed)
    }

    fn stop(self) {
        self.uploader.actor().stop(None);
        self.recorder.actor().stop(None);
    }
}

/// Polls `done` until it holds, failing after [`WAIT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn answer(rx: Reply) -> Result<AppendAck, AppendError> {
    tokio::time::timeout(WAIT, rx)
        .await
        .expect("the producer is answered in time")
        .expect("the producer is answered")
}

fn is_pending(rx: &mut Reply) -> bool {
    matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
}

fn ack(label: u64) -> Result<AppendAck, AppendError> {
    Ok(AppendAck {
        base_offset: label as i64,
        log_start_offset: 0,
    })
}

#[tokio::test]
async fn deliveries_follow_seal_order_when_puts_finish_out_of_order() {
    // Ample upload timeout: object 0 must succeed, only late.
    let rig = Rig::start(Duration::from_secs(20)).await;
    let blocker = rig.block();
    let (o0, r0) = object("wal/blocked/0", &[(tp(0), 0)]);
    let (o1, r1) = object("wal/1", &[(tp(0), 10), (tp(1), 11)]);
    let (o2, r2) = object("wal/2", &[(tp(1), 21)]);
    rig.upload(o0);
    rig.upload(o1);
    rig.upload(o2);

    // Objects 1 and 2 are stored while object 0's PUT keeps failing.
    wait_until("the PUTs of objects 1 and 2", || rig.puts() == 2).await;
    assert!(rig.root.join("wal/1").is_file() && rig.root.join("wal/2").is_file());
    assert!(!rig.root.join("wal/blocked/0").exists());
    // Their completions reach the uploader right after the PUTs; give it time to (wrongly)
    // deliver them. With a correct uploader nothing is delivered however long this is, so
    // the wait cannot make the test fail spuriously.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        rig.delivered(),
        vec![],
        "nothing is delivered before object 0, the first sealed"
    );
    let mut replies: Vec<Reply> = r0.into_iter().chain(r1).chain(r2).collect();
    assert!(replies.iter_mut().all(is_pending));

    // Object 0's next retry succeeds: everything is delivered, in seal order.
    std::fs::remove_file(&blocker).unwrap();
    wait_until("every delivery", || rig.delivered().len() == 4).await;
    assert_eq!(rig.puts(), 3);
    assert!(rig.root.join("wal/blocked/0").is_file());
    assert_eq!(
        rig.delivered(),
        vec![
            ("wal/blocked/0".to_string(), 0),
            ("wal/1".to_string(), 10),
            ("wal/1".to_string(), 11),
            ("wal/2".to_string(), 21),
        ]
    );
    let mut answers = Vec::new();
    for rx in replies {
        answers.push(answer(rx).await);
    }
    assert_eq!(answers, vec![ack(0), ack(10), ack(11), ack(21)]);
    rig.stop();
}

#[tokio::test]
async fn nothing_of_a_failed_upload_reaches_a_partition_and_later_objects_wait_for_it() {
    // Object 1's PUT keeps failing until the uploader gives up on it after this long.
    let rig = Rig::start(Duration::from_millis(500)).await;
    rig.block();
    let (o0, r0) = object("wal/0", &[(tp(0), 0)]);
    let (o1, r1) = object("wal/blocked/1", &[(tp(0), 10), (tp(1), 11)]);
    let (o2, r2) = object("wal/2", &[(tp(1), 21)]);
    rig.upload(o0);
    rig.upload(o1);
    rig.upload(o2);

    let mut r1 = r1.into_iter();
    let (mut r1a, r1b) = (r1.next().unwrap(), r1.next().unwrap());
    // Until object 1 is given up, object 2 (stored long before) is not delivered. Checked
    // as it goes: the uploader answers object 1's producers before it delivers object 2,
    // so whenever the log holds object 2, object 1's answer is already there.
    let deadline = Instant::now() + WAIT;
    let failed = loop {
        let delivered = rig.delivered();
        match r1a.try_recv() {
            Ok(outcome) => break outcome,
            Err(oneshot::error::TryRecvError::Empty) => {
                assert!(
                    !delivered.iter().any(|(k, _)| k == "wal/2"),
                    "object 2 delivered before object 1 was given up: {delivered:?}"
                );
                assert!(
                    delivered.len() <= 1,
                    "only object 0 may be delivered yet: {delivered:?}"
                );
            }
            Err(e) => panic!("object 1's producer was dropped unanswered: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for object 1 to be given up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let Err(AppendError::Storage(why)) = failed else {
        panic!("object 1's producer got {failed:?}, not a storage error");
    };
    assert!(why.contains("wal/blocked/1"), "{why}");
    assert!(
        matches!(answer(r1b).await, Err(AppendError::Storage(_))),
        "every slice of the failed object gets the storage error"
    );

    wait_until("object 2's delivery", || rig.delivered().len() == 2).await;
    assert_eq!(
        rig.delivered(),
        vec![("wal/0".to_string(), 0), ("wal/2".to_string(), 21)],
        "object 0 and object 2 are delivered, in order; nothing of object 1"
    );
    assert_eq!(answer(r0.into_iter().next().unwrap()).await, ack(0));
    assert_eq!(answer(r2.into_iter().next().unwrap()).await, ack(21));
    assert_eq!(rig.puts(), 2);
    assert!(rig.blob.get_range("wal/blocked/1", 0..1).await.is_err());
    rig.stop();
}
