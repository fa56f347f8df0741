//! Record-batch (magic 2) inspection without decompression.
//!
//! Layout of a batch header (all big-endian):
//! ```text
//! 0  baseOffset i64        | 27 baseTimestamp i64
//! 8  batchLength i32       | 35 maxTimestamp i64
//! 12 partitionLeaderEpoch  | 43 producerId i64
//! 16 magic i8              | 51 producerEpoch i16
//! 17 crc u32 (CRC-32C of bytes 21..end)  | 53 baseSequence i32
//! 21 attributes i16        | 57 recordCount i32
//! 23 lastOffsetDelta i32   | 61 records...
//! ```
//! The broker stores batches exactly as clients sent them and only rewrites `baseOffset`
//! (not covered by the CRC) when serving them, plus the timestamp fields (and so the CRC)
//! for topics with `message.timestamp.type=LogAppendTime`.

use bytes::{Bytes, BytesMut};

/// Bytes of a magic-2 batch header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batchLength` counts: baseOffset + batchLength.
pub const LOG_OVERHEAD_BYTES: usize = 12;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
/// Producer id of a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;

/// Why a batch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the header or than `batchLength` announces.
    #[error("truncated record batch")]
    Truncated,
    /// `batchLength` is smaller than a header.
    #[error("invalid batch length {0}")]
    InvalidLength(i32),
    /// Only magic 2 is accepted.
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// The CRC-32C does not match the content.
    #[error("record batch CRC mismatch")]
    CorruptCrc,
    /// `recordCount` and `lastOffsetDelta` disagree, or the batch is empty.
    #[error("invalid record count {count} for last offset delta {last_offset_delta}")]
    InvalidRecordCount {
        /// `recordCount` field.
        count: i32,
        /// `lastOffsetDelta` field.
        last_offset_delta: i32,
    },
}

/// Header fields of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchHeader {
    /// Offset of the first record as written by the producer (usually 0).
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch the producer saw.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 once validated.
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
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parses the header at the start of `bytes` (no CRC check).
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated);
        }
        let magic = bytes[16] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let batch_length = i32_at(bytes, 8);
        if batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            return Err(BatchError::InvalidLength(batch_length));
        }
        Ok(Self {
            base_offset: i64_at(bytes, 0),
            batch_length,
            partition_leader_epoch: i32_at(bytes, 12),
            magic,
            crc: u32::from_be_bytes([bytes[17], bytes[18], bytes[19], bytes[20]]),
            attributes: i16_at(bytes, 21),
            last_offset_delta: i32_at(bytes, 23),
            base_timestamp: i64_at(bytes, 27),
            max_timestamp: i64_at(bytes, 35),
            producer_id: i64_at(bytes, 43),
            producer_epoch: i16_at(bytes, 51),
            base_sequence: i32_at(bytes, 53),
            record_count: i32_at(bytes, 57),
        })
    }

    /// Whole batch size on the wire, prefix included.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & 0x07
    }

    /// True for batches of a transactional producer.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// True for control batches (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// True when the producer is idempotent (has a producer id).
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence of the last record, wrapping like Kafka's.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }
}

/// One validated batch: its header and its bytes exactly as received.
#[derive(Debug, Clone)]
pub struct ValidatedBatch {
    /// Parsed header.
    pub header: BatchHeader,
    /// The whole batch, prefix included.
    pub bytes: Bytes,
}

/// Splits a Produce `records` field into batches, checking magic, lengths, record counts and
/// CRC-32C of each. The bytes are not copied.
pub fn split_and_validate(records: &Bytes) -> Result<Vec<ValidatedBatch>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        let rest = &records[at..];
        if rest.len() < LOG_OVERHEAD_BYTES {
            return Err(BatchError::Truncated);
        }
        let header = BatchHeader::parse(rest)?;
        let total = header.total_bytes();
        if rest.len() < total {
            return Err(BatchError::Truncated);
        }
        if header.record_count <= 0 || header.last_offset_delta != header.record_count - 1 {
            return Err(BatchError::InvalidRecordCount {
                count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        if crc32c::crc32c(&rest[ATTRIBUTES_OFFSET..total]) != header.crc {
            return Err(BatchError::CorruptCrc);
        }
        out.push(ValidatedBatch {
            header,
            bytes: records.slice(at..at + total),
        });
        at += total;
    }
    Ok(out)
}

/// The base offset written in a batch header; `None` when `batch` is shorter than one.
pub fn stored_base_offset(batch: &[u8]) -> Option<i64> {
    let mut b = [0u8; 8];
    b.copy_from_slice(batch.get(0..8)?);
    Some(i64::from_be_bytes(b))
}

/// Writes `base_offset` into the batch header (the CRC does not cover it).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Marks a batch as LogAppendTime with `append_time_ms` as its max timestamp and recomputes
/// its CRC, as Kafka does for topics with `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &Bytes, append_time_ms: i64) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    let attributes = i16_at(&b, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    b[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    b[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&append_time_ms.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Reads a zig-zag varint (at most 10 bytes) at `*at`, advancing it.
fn read_varlong(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let byte = *b.get(*at)?;
        *at += 1;
        value |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// `(offset delta, timestamp)` of every record of an uncompressed batch, in order; `None`
/// for compressed batches or malformed records. For LogAppendTime batches every record has
/// the batch's max timestamp, as Kafka reports it.
pub fn record_timestamps(batch: &[u8]) -> Option<Vec<(i32, i64)>> {
    let h = BatchHeader::parse(batch).ok()?;
    if h.compression() != 0 || batch.len() < h.total_bytes() {
        return None;
    }
    let log_append = h.attributes & TIMESTAMP_TYPE_BIT != 0;
    let end = h.total_bytes();
    let mut at = BATCH_HEADER_BYTES;
    let mut out = Vec::new();
    while at < end && out.len() < h.record_count.max(0) as usize {
        let len = read_varlong(batch, &mut at)?;
        let body_end = at.checked_add(usize::try_from(len).ok()?)?;
        if body_end > end {
            return None;
        }
        let mut p = at + 1; // attributes
        let ts_delta = read_varlong(batch, &mut p)?;
        let offset_delta = read_varlong(batch, &mut p)?;
        let ts = if log_append {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(ts_delta)
        };
        out.push((i32::try_from(offset_delta).ok()?, ts));
        at = body_end;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn encode(n: i64, producer_id: i64, compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 1_000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn parses_and_validates_a_batch() {
        let b = encode(3, 7, Compression::None);
        let batches = split_and_validate(&b).unwrap();
        assert_eq!(batches.len(), 1);
        let h = batches[0].header;
        assert_eq!((h.record_count, h.last_offset_delta), (3, 2));
        assert_eq!(
            (h.producer_id, h.base_sequence, h.last_sequence()),
            (7, 0, 2)
        );
        assert_eq!((h.base_timestamp, h.max_timestamp), (1_000, 1_002));
        assert_eq!(h.total_bytes(), b.len());
    }

    #[test]
    fn splits_concatenated_compressed_batches() {
        let mut all = BytesMut::new();
        all.extend_from_slice(&encode(2, -1, Compression::Gzip));
        all.extend_from_slice(&encode(5, -1, Compression::None));
        let batches = split_and_validate(&all.freeze()).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].header.compression(), 1);
        assert_eq!(batches[1].header.record_count, 5);
    }

    #[test]
    fn detects_corruption_and_truncation() {
        let b = encode(2, -1, Compression::None);
        let mut bad = BytesMut::from(&b[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(
            split_and_validate(&bad.freeze()).unwrap_err(),
            BatchError::CorruptCrc
        );
        let cut = b.slice(0..b.len() - 1);
        assert_eq!(split_and_validate(&cut).unwrap_err(), BatchError::Truncated);
        let mut magic = BytesMut::from(&b[..]);
        magic[16] = 1;
        assert_eq!(
            split_and_validate(&magic.freeze()).unwrap_err(),
            BatchError::UnsupportedMagic(1)
        );
    }

    #[test]
    fn reads_record_timestamps_of_uncompressed_batches() {
        let b = encode(4, -1, Compression::None);
        assert_eq!(
            record_timestamps(&b).unwrap(),
            vec![(0, 1_000), (1, 1_001), (2, 1_002), (3, 1_003)]
        );
        let stamped = set_log_append_time(&b, 5_000);
        assert!(record_timestamps(&stamped)
            .unwrap()
            .iter()
            .all(|&(_, t)| t == 5_000));
        assert_eq!(record_timestamps(&encode(4, -1, Compression::Gzip)), None);
        assert_eq!(record_timestamps(&b[..b.len() - 3]), None);
    }

    #[test]
    fn rewrites_offsets_and_append_time_keeping_a_valid_crc() {
        let b = encode(2, -1, Compression::None);
        let stamped = set_log_append_time(&b, 99_000);
        let mut bytes = BytesMut::from(&stamped[..]);
        set_base_offset(&mut bytes, 42);
        let batches = split_and_validate(&bytes.freeze()).unwrap();
        assert_eq!(batches[0].header.base_offset, 42);
        assert_eq!(batches[0].header.max_timestamp, 99_000);
        assert_ne!(batches[0].header.attributes & TIMESTAMP_TYPE_BIT, 0);
    }
}
