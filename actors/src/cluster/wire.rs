//! Wire format of the gateway protocol: the bytes one node sends another (ADR 0011).
//!
//! Every message is an [`Envelope`]: a magic byte, the version its body is laid out in (`u16`,
//! little-endian) and the body, bincode (varint integers, bounded, no trailing bytes) of a
//! wire-owned type of this module. The in-memory types ([`Request`], [`Response`] and what
//! they carry, from `storage`, `protocol` and `partition`) are never encoded themselves: each
//! crosses the mesh through its wire twin, by an exhaustive conversion, so a change to an
//! in-memory type does not compile until its conversion is updated, and the golden-bytes
//! test fails if the bytes change.
//!
//! Compatibility rule:
//! - The sender writes [`SENT_VERSION`] on every request; the receiver answers in the
//!   version of the request.
//! - A receiver that does not understand a request's version (no layout of that number in
//!   [`decode_request`]) does not guess: it answers a refusal, whose layout never changes
//!   (version [`REFUSAL_VERSION`], then the newest version it understands), and the caller
//!   reads it as [`Reply::Unsupported`], which the gateway client reports as a failed remote
//!   call (retriable, like an unreachable node).
//! - Any change to a layout (a new request or response kind, a new field, a new error
//!   variant) is a new version with its own wire types. A release that adds version N+1
//!   understands it but still sends N; the next release sends N+1 and still understands N.
//!   Upgrading (or rolling back) one release at a time, every node understands what every
//!   peer sends, so a rolling upgrade never meets a refusal; skipping a release meets
//!   refusals (retried by clients) until the roll completes.
//! - The error enums have a catch-all (`Other`) so that a new in-memory error can cross
//!   without a new version: the receiver reads it as the most cautious error of its kind.
//!
//! Builds from before this envelope sent a bare bincode enum, whose first byte is a variant
//! index below 7: [`MAGIC`] is above that, so old and new builds refuse each other's frames
//! with a decode error instead of mis-reading them.

use super::gateway::{Request, Response};
use crate::partition::actor::{AppendAck, IncomingBatch, PartitionOffsets};
use crate::{AppendError, ReadError, TopicPartition};
use bincode::Options;
use inkless_protocol::batch::BatchHeader;
use inkless_storage::metadata::BatchCoordinate;
use inkless_storage::object::BatchPosition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// First byte of every message of this protocol (`I`).
pub const MAGIC: u8 = 0x49;
/// Bytes before the body: the magic byte and the version.
const HEADER_BYTES: usize = 3;
/// Largest encoded body: the mesh's frame limit for the largest block a node may use
/// (the frames themselves are held to the node's own block size by the mesh).
const MAX_BODY_BYTES: u64 = super::mesh::frame_limit(super::mesh::MAX_BLOCK_BYTES);

/// The version number of a refusal; no body layout has it. Its body is the newest version
/// the refusing node understands, as a little-endian `u16`, forever.
pub const REFUSAL_VERSION: u16 = 0;
/// The first layout: the types of this module.
pub const V1: u16 = 1;
/// The version this node writes on every request.
pub const SENT_VERSION: u16 = V1;
/// The newest version this node understands (told to peers in a refusal).
pub const NEWEST_UNDERSTOOD: u16 = V1;

/// Why bytes could not be read as a message, or a message could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Too short for the header.
    #[error("truncated message of {len} bytes")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// The first byte is not [`MAGIC`]: not a message of this protocol (or of a build from
    /// before it).
    #[error("not an Inkless mesh message (first byte {first_byte:#04x})")]
    NotInkless {
        /// The byte found.
        first_byte: u8,
    },
    /// No layout of this version is known here.
    #[error("protocol version {version} is not understood (newest understood: {newest})", newest = NEWEST_UNDERSTOOD)]
    UnsupportedVersion {
        /// The version of the message.
        version: u16,
    },
    /// The body does not decode in its version's layout.
    #[error("undecodable body of protocol version {version}: {reason}")]
    Body {
        /// The version of the message.
        version: u16,
        /// What the decoder said.
        reason: String,
    },
    /// The message could not be encoded (over the size limit).
    #[error("unencodable message: {0}")]
    Encode(String),
}

/// The envelope of every message: the version its body is laid out in, and the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Layout of the body ([`REFUSAL_VERSION`] for a refusal).
    pub version: u16,
    /// The body, in that layout.
    pub body: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Splits a message into its version and body, checking the magic byte.
    pub fn open(bytes: &'a [u8]) -> Result<Self, WireError> {
        let truncated = || WireError::Truncated { len: bytes.len() };
        let (&first_byte, rest) = bytes.split_first().ok_or_else(truncated)?;
        if first_byte != MAGIC {
            return Err(WireError::NotInkless { first_byte });
        }
        let (version, body) = split_u16(rest).ok_or_else(truncated)?;
        Ok(Self { version, body })
    }

    /// The body decoded as `T` (the layout of this envelope's version).
    fn body_as<T: DeserializeOwned>(&self) -> Result<T, WireError> {
        codec().deserialize(self.body).map_err(|e| WireError::Body {
            version: self.version,
            reason: e.to_string(),
        })
    }
}

/// A little-endian `u16` and the bytes after it.
fn split_u16(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<2>()?;
    Some((u16::from_le_bytes(*head), rest))
}

fn codec() -> impl Options {
    bincode::DefaultOptions::new().with_limit(MAX_BODY_BYTES)
}

/// The header followed by the bincode of `body`.
fn seal<T: Serialize>(version: u16, body: &T) -> Result<Vec<u8>, WireError> {
    let encode_error = |e: bincode::Error| WireError::Encode(e.to_string());
    let size = codec().serialized_size(body).map_err(encode_error)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + size as usize);
    out.push(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    codec()
        .serialize_into(&mut out, body)
        .map_err(encode_error)?;
    Ok(out)
}

/// A decoded request and the version to answer it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The request's version.
    pub version: u16,
    /// The request.
    pub request: Request,
}

/// What a caller reads from a gateway's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The request was understood and answered.
    Answered(Response),
    /// The request's version was not understood; it was not executed.
    Unsupported {
        /// The newest version the peer understands.
        understood: u16,
    },
}

/// Encodes a request in [`SENT_VERSION`].
pub fn encode_request(request: &Request) -> Result<Vec<u8>, WireError> {
    seal(SENT_VERSION, &WireRequest::from(request))
}

/// Decodes a request in any version understood here.
pub fn decode_request(bytes: &[u8]) -> Result<Call, WireError> {
    let envelope = Envelope::open(bytes)?;
    let request = match envelope.version {
        V1 => envelope.body_as::<WireRequest>()?.into(),
        version => return Err(WireError::UnsupportedVersion { version }),
    };
    Ok(Call {
        version: envelope.version,
        request,
    })
}

/// Encodes a response in `version` (the request's).
pub fn encode_response(response: Response, version: u16) -> Result<Vec<u8>, WireError> {
    match version {
        V1 => seal(V1, &WireResponse::from(response)),
        version => Err(WireError::UnsupportedVersion { version }),
    }
}

/// Encodes `response`, or if that fails a [`Response::Refused`] saying why. Never fails: as
/// a last resort it returns no bytes, which the caller reads as a truncated answer.
pub fn encode_answer(response: Response, version: u16) -> Vec<u8> {
    encode_response(response, version)
        .or_else(|e| encode_response(Response::Refused(e.to_string()), version))
        .unwrap_or_default()
}

/// The answer to a request that did not decode: a refusal if its version is not understood,
/// else [`Response::Refused`] in its version (or in [`SENT_VERSION`] without a readable header).
pub fn answer_to_undecodable(error: &WireError) -> Vec<u8> {
    match error {
        WireError::UnsupportedVersion { .. } => encode_refusal(),
        WireError::Body { version, .. } => {
            encode_answer(Response::Refused(error.to_string()), *version)
        }
        _ => encode_answer(Response::Refused(error.to_string()), SENT_VERSION),
    }
}

/// The refusal of a request whose version is not understood here.
pub fn encode_refusal() -> Vec<u8> {
    let mut out = vec![MAGIC];
    out.extend_from_slice(&REFUSAL_VERSION.to_le_bytes());
    out.extend_from_slice(&NEWEST_UNDERSTOOD.to_le_bytes());
    out
}

/// Decodes an answer: a response in a version understood here, or a refusal.
pub fn decode_response(bytes: &[u8]) -> Result<Reply, WireError> {
    let envelope = Envelope::open(bytes)?;
    match envelope.version {
        REFUSAL_VERSION => decode_refusal(envelope.body),
        V1 => Ok(Reply::Answered(envelope.body_as::<WireResponse>()?.into())),
        version => Err(WireError::UnsupportedVersion { version }),
    }
}

fn decode_refusal(body: &[u8]) -> Result<Reply, WireError> {
    match split_u16(body) {
        Some((understood, [])) => Ok(Reply::Unsupported { understood }),
        _ => Err(WireError::Body {
            version: REFUSAL_VERSION,
            reason: format!("a refusal's body is 2 bytes, not {}", body.len()),
        }),
    }
}

// ---- Layout of version 1 -------------------------------------------------------------------

/// A partition (version 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTopicPartition {
    /// Topic id, 16 bytes.
    pub topic_id: [u8; 16],
    /// Partition index.
    pub partition: i32,
}

/// The header of one record batch (version 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireBatchHeader {
    /// Offset of the first record as written by the producer.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch the producer saw.
    pub partition_leader_epoch: i32,
    /// Format version.
    pub magic: i8,
    /// Stored CRC-32C.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

/// One batch of an append: its header and where it sits in the object (version 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireBatch {
    /// The header.
    pub header: WireBatchHeader,
    /// First byte of the batch in the object.
    pub byte_offset: u64,
    /// Bytes of the batch.
    pub byte_len: u32,
}

/// Where one committed batch is and what it holds (version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCoordinate {
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// Object key.
    pub object_key: String,
    /// Size of the whole object.
    pub object_size: u64,
    /// First byte of the batch in the object.
    pub byte_offset: u64,
    /// Bytes of the batch.
    pub byte_len: u32,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// First sequence, or -1.
    pub base_sequence: i32,
    /// Last sequence, or -1.
    pub last_sequence: i32,
}

/// A partition's offsets (version 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireOffsets {
    /// First readable offset.
    pub log_start_offset: i64,
    /// End of the committed log.
    pub high_watermark: i64,
}

/// A successful append (version 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireAppendAck {
    /// Offset of the first record of the first batch.
    pub base_offset: i64,
    /// Log start offset at the time of the append.
    pub log_start_offset: i64,
}

/// Why an append failed (version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireAppendError {
    /// A sequence gap of an idempotent producer.
    OutOfOrderSequence {
        /// Sequence the batch started with.
        got: i32,
        /// Sequence expected.
        expected: i32,
    },
    /// The producer's epoch is older than the partition's.
    InvalidProducerEpoch {
        /// Epoch of the batch.
        got: i16,
        /// Current epoch.
        current: i16,
    },
    /// Not the partition's owner.
    NotOwner,
    /// The object store failed.
    Storage(String),
    /// The metadata store refused or failed.
    Metadata(String),
    /// Back-pressure: the request's time ran out.
    TimedOut,
    /// The append may or may not be in the log.
    Indeterminate(String),
    /// The node is shutting down or an actor is gone.
    Unavailable(String),
    /// Catch-all for an error without a variant of its own; read as indeterminate.
    Other(String),
}

/// Why a read failed (version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireReadError {
    /// The offset is outside the log.
    OffsetOutOfRange {
        /// First readable offset.
        log_start_offset: i64,
        /// End of the log.
        high_watermark: i64,
    },
    /// Not the partition's owner.
    NotOwner,
    /// Storage failed.
    Storage(String),
    /// Catch-all for an error without a variant of its own; read as a storage failure.
    Other(String),
}

/// The coordinates of a read and the offsets after it (version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireReadAnswer {
    /// Committed batches from the requested offset.
    pub batches: Vec<WireCoordinate>,
    /// The partition's offsets after the read.
    pub offsets: WireOffsets,
}

/// A request (version 1); see [`Request`] for the meaning of each kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireRequest {
    /// [`Request::Append`].
    Append {
        /// Partition.
        tp: WireTopicPartition,
        /// Object holding the batches.
        object_key: String,
        /// Its size.
        object_size: u64,
        /// The batches.
        batches: Vec<WireBatch>,
    },
    /// [`Request::Read`].
    Read {
        /// Partition.
        tp: WireTopicPartition,
        /// First offset wanted.
        offset: i64,
        /// Byte budget.
        max_bytes: u64,
    },
    /// [`Request::Offsets`].
    Offsets {
        /// Partition.
        tp: WireTopicPartition,
        /// Answer early when the high watermark is above this.
        offset: i64,
        /// Longest wait.
        wait_ms: u64,
    },
    /// [`Request::DeleteRecords`].
    DeleteRecords {
        /// Partition.
        tp: WireTopicPartition,
        /// New log start offset.
        offset: i64,
    },
    /// [`Request::MembershipChanged`].
    MembershipChanged,
    /// [`Request::CacheRead`].
    CacheRead {
        /// Object key.
        key: String,
        /// Object size.
        object_size: u64,
        /// First byte.
        start: u64,
        /// End (exclusive).
        end: u64,
    },
    /// [`Request::Released`].
    Released(Vec<WireTopicPartition>),
}

/// A response (version 1); see [`Response`] for the meaning of each kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireResponse {
    /// [`Response::Append`].
    Append(Result<WireAppendAck, WireAppendError>),
    /// [`Response::Read`].
    Read(Result<WireReadAnswer, WireReadError>),
    /// [`Response::Offsets`].
    Offsets(Option<WireOffsets>),
    /// [`Response::DeleteRecords`].
    DeleteRecords(Result<i64, WireReadError>),
    /// [`Response::CacheRead`].
    CacheRead(Result<Vec<u8>, WireReadError>),
    /// [`Response::Ack`].
    Ack,
    /// [`Response::Refused`].
    Refused(String),
}

// ---- Conversions: exhaustive destructuring, so a new in-memory field does not compile ------

impl From<TopicPartition> for WireTopicPartition {
    fn from(tp: TopicPartition) -> Self {
        let TopicPartition {
            topic_id,
            partition,
        } = tp;
        Self {
            topic_id: topic_id.into_bytes(),
            partition,
        }
    }
}

impl From<WireTopicPartition> for TopicPartition {
    fn from(tp: WireTopicPartition) -> Self {
        Self {
            topic_id: Uuid::from_bytes(tp.topic_id),
            partition: tp.partition,
        }
    }
}

impl From<BatchHeader> for WireBatchHeader {
    fn from(h: BatchHeader) -> Self {
        let BatchHeader {
            base_offset,
            batch_length,
            partition_leader_epoch,
            magic,
            crc,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            record_count,
        } = h;
        Self {
            base_offset,
            batch_length,
            partition_leader_epoch,
            magic,
            crc,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            record_count,
        }
    }
}

impl From<WireBatchHeader> for BatchHeader {
    fn from(h: WireBatchHeader) -> Self {
        Self {
            base_offset: h.base_offset,
            batch_length: h.batch_length,
            partition_leader_epoch: h.partition_leader_epoch,
            magic: h.magic,
            crc: h.crc,
            attributes: h.attributes,
            last_offset_delta: h.last_offset_delta,
            base_timestamp: h.base_timestamp,
            max_timestamp: h.max_timestamp,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            record_count: h.record_count,
        }
    }
}

impl From<&IncomingBatch> for WireBatch {
    fn from(b: &IncomingBatch) -> Self {
        let IncomingBatch { header, position } = b;
        let BatchPosition { offset, len } = *position;
        Self {
            header: (*header).into(),
            byte_offset: offset,
            byte_len: len,
        }
    }
}

impl From<WireBatch> for IncomingBatch {
    fn from(b: WireBatch) -> Self {
        Self {
            header: b.header.into(),
            position: BatchPosition {
                offset: b.byte_offset,
                len: b.byte_len,
            },
        }
    }
}

impl From<BatchCoordinate> for WireCoordinate {
    fn from(c: BatchCoordinate) -> Self {
        let BatchCoordinate {
            base_offset,
            last_offset,
            object_key,
            object_size,
            byte_offset,
            byte_len,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            last_sequence,
        } = c;
        Self {
            base_offset,
            last_offset,
            object_key,
            object_size,
            byte_offset,
            byte_len,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            last_sequence,
        }
    }
}

impl From<WireCoordinate> for BatchCoordinate {
    fn from(c: WireCoordinate) -> Self {
        Self {
            base_offset: c.base_offset,
            last_offset: c.last_offset,
            object_key: c.object_key,
            object_size: c.object_size,
            byte_offset: c.byte_offset,
            byte_len: c.byte_len,
            max_timestamp: c.max_timestamp,
            producer_id: c.producer_id,
            producer_epoch: c.producer_epoch,
            base_sequence: c.base_sequence,
            last_sequence: c.last_sequence,
        }
    }
}

impl From<PartitionOffsets> for WireOffsets {
    fn from(o: PartitionOffsets) -> Self {
        // The last stable offset and the last abort do not cross the mesh (layout version 1): the reader
        // asks the store (ADR 0018).
        let PartitionOffsets {
            log_start_offset,
            high_watermark,
            last_stable_offset: _,
            last_abort_offset: _,
        } = o;
        Self {
            log_start_offset,
            high_watermark,
        }
    }
}

impl From<WireOffsets> for PartitionOffsets {
    fn from(o: WireOffsets) -> Self {
        Self {
            log_start_offset: o.log_start_offset,
            high_watermark: o.high_watermark,
            last_stable_offset: -1,
            last_abort_offset: i64::MAX,
        }
    }
}

impl From<AppendAck> for WireAppendAck {
    fn from(a: AppendAck) -> Self {
        let AppendAck {
            base_offset,
            log_start_offset,
        } = a;
        Self {
            base_offset,
            log_start_offset,
        }
    }
}

impl From<WireAppendAck> for AppendAck {
    fn from(a: WireAppendAck) -> Self {
        Self {
            base_offset: a.base_offset,
            log_start_offset: a.log_start_offset,
        }
    }
}

impl From<AppendError> for WireAppendError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::OutOfOrderSequence { got, expected } => {
                Self::OutOfOrderSequence { got, expected }
            }
            AppendError::InvalidProducerEpoch { got, current } => {
                Self::InvalidProducerEpoch { got, current }
            }
            AppendError::NotOwner => Self::NotOwner,
            AppendError::Storage(m) => Self::Storage(m),
            AppendError::Metadata(m) => Self::Metadata(m),
            AppendError::TimedOut => Self::TimedOut,
            AppendError::Indeterminate(m) => Self::Indeterminate(m),
            AppendError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}

impl From<WireAppendError> for AppendError {
    fn from(e: WireAppendError) -> Self {
        match e {
            WireAppendError::OutOfOrderSequence { got, expected } => {
                Self::OutOfOrderSequence { got, expected }
            }
            WireAppendError::InvalidProducerEpoch { got, current } => {
                Self::InvalidProducerEpoch { got, current }
            }
            WireAppendError::NotOwner => Self::NotOwner,
            WireAppendError::Storage(m) => Self::Storage(m),
            WireAppendError::Metadata(m) => Self::Metadata(m),
            WireAppendError::TimedOut => Self::TimedOut,
            WireAppendError::Indeterminate(m) => Self::Indeterminate(m),
            WireAppendError::Unavailable(m) => Self::Unavailable(m),
            // Unknown to this build: the batches may or may not be in the log.
            WireAppendError::Other(m) => Self::Indeterminate(m),
        }
    }
}

impl From<ReadError> for WireReadError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
            } => Self::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
            },
            ReadError::NotOwner => Self::NotOwner,
            ReadError::Storage(m) => Self::Storage(m),
        }
    }
}

impl From<WireReadError> for ReadError {
    fn from(e: WireReadError) -> Self {
        match e {
            WireReadError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
            } => Self::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
            },
            WireReadError::NotOwner => Self::NotOwner,
            WireReadError::Storage(m) => Self::Storage(m),
            // Unknown to this build: a failure the client retries.
            WireReadError::Other(m) => Self::Storage(m),
        }
    }
}

impl From<&Request> for WireRequest {
    fn from(r: &Request) -> Self {
        match r {
            Request::Append {
                tp,
                object_key,
                object_size,
                batches,
            } => Self::Append {
                tp: (*tp).into(),
                object_key: object_key.clone(),
                object_size: *object_size,
                batches: batches.iter().map(WireBatch::from).collect(),
            },
            Request::Read {
                tp,
                offset,
                max_bytes,
            } => Self::Read {
                tp: (*tp).into(),
                offset: *offset,
                max_bytes: *max_bytes,
            },
            Request::Offsets {
                tp,
                offset,
                wait_ms,
            } => Self::Offsets {
                tp: (*tp).into(),
                offset: *offset,
                wait_ms: *wait_ms,
            },
            Request::DeleteRecords { tp, offset } => Self::DeleteRecords {
                tp: (*tp).into(),
                offset: *offset,
            },
            Request::MembershipChanged => Self::MembershipChanged,
            Request::CacheRead {
                key,
                object_size,
                start,
                end,
            } => Self::CacheRead {
                key: key.clone(),
                object_size: *object_size,
                start: *start,
                end: *end,
            },
            Request::Released(tps) => Self::Released(tps.iter().map(|tp| (*tp).into()).collect()),
        }
    }
}

impl From<WireRequest> for Request {
    fn from(r: WireRequest) -> Self {
        match r {
            WireRequest::Append {
                tp,
                object_key,
                object_size,
                batches,
            } => Self::Append {
                tp: tp.into(),
                object_key,
                object_size,
                batches: batches.into_iter().map(IncomingBatch::from).collect(),
            },
            WireRequest::Read {
                tp,
                offset,
                max_bytes,
            } => Self::Read {
                tp: tp.into(),
                offset,
                max_bytes,
            },
            WireRequest::Offsets {
                tp,
                offset,
                wait_ms,
            } => Self::Offsets {
                tp: tp.into(),
                offset,
                wait_ms,
            },
            WireRequest::DeleteRecords { tp, offset } => Self::DeleteRecords {
                tp: tp.into(),
                offset,
            },
            WireRequest::MembershipChanged => Self::MembershipChanged,
            WireRequest::CacheRead {
                key,
                object_size,
                start,
                end,
            } => Self::CacheRead {
                key,
                object_size,
                start,
                end,
            },
            WireRequest::Released(tps) => Self::Released(tps.into_iter().map(Into::into).collect()),
        }
    }
}

impl From<Response> for WireResponse {
    fn from(r: Response) -> Self {
        match r {
            Response::Append(r) => Self::Append(r.map(Into::into).map_err(Into::into)),
            Response::Read(r) => Self::Read(
                r.map(|(batches, offsets)| WireReadAnswer {
                    batches: batches.into_iter().map(Into::into).collect(),
                    offsets: offsets.into(),
                })
                .map_err(Into::into),
            ),
            Response::Offsets(o) => Self::Offsets(o.map(Into::into)),
            Response::DeleteRecords(r) => Self::DeleteRecords(r.map_err(Into::into)),
            Response::CacheRead(r) => Self::CacheRead(r.map_err(Into::into)),
            Response::Ack => Self::Ack,
            Response::Refused(m) => Self::Refused(m),
        }
    }
}

impl From<WireResponse> for Response {
    fn from(r: WireResponse) -> Self {
        match r {
            WireResponse::Append(r) => Self::Append(r.map(Into::into).map_err(Into::into)),
            WireResponse::Read(r) => Self::Read(
                r.map(|a| {
                    let batches = a.batches.into_iter().map(Into::into).collect();
                    (batches, a.offsets.into())
                })
                .map_err(Into::into),
            ),
            WireResponse::Offsets(o) => Self::Offsets(o.map(Into::into)),
            WireResponse::DeleteRecords(r) => Self::DeleteRecords(r.map_err(Into::into)),
            WireResponse::CacheRead(r) => Self::CacheRead(r.map_err(Into::into)),
            WireResponse::Ack => Self::Ack,
            WireResponse::Refused(m) => Self::Refused(m),
        }
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
