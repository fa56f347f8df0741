//! Records inside magic-2 batches: decompression, parsing and re-encoding, for the few paths
//! that must look at records (keys of produce batches to compacted topics, key compaction).
//!
//! A record is parsed only as far as those paths need (attributes, timestamp and offset
//! deltas, key, whether the value is null); the rest (key, value, headers) is carried as it
//! was, so re-encoding a record only rewrites its two deltas. Codecs are kafka-protocol's
//! (gzip, snappy, lz4, zstd), so a batch is written back with the codec it came with.

use crate::batch::{BatchError, BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

/// Attribute bit of a batch whose base timestamp is its delete horizon (KIP-534): set when
/// a cleaning first keeps tombstones in it.
pub const DELETE_HORIZON_BIT: i16 = 0x40;
const CONTROL_BIT: i16 = 0x20;
/// Decompressed records larger than this are refused (a decompression bomb).
pub const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// Why records could not be read or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// The batch header is invalid.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The compression codec id is not one of Kafka's.
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
    /// The codec failed.
    #[error("{0}")]
    Codec(String),
    /// A record is malformed (lengths, varints, count).
    #[error("malformed record batch: {0}")]
    Malformed(&'static str),
}

/// One record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Offset of the record (the batch's base offset plus its delta).
    pub offset: i64,
    /// Its timestamp as written (base timestamp plus delta; for LogAppendTime batches the
    /// batch's max timestamp is what consumers see).
    pub timestamp: i64,
    /// Record attributes (unused by Kafka, carried).
    pub attributes: i8,
    /// The key, `None` for a null key.
    pub key: Option<Bytes>,
    /// True when the value is null (a tombstone).
    pub tombstone: bool,
    /// Key length through the headers, exactly as read.
    tail: Bytes,
}

/// A batch with its records decoded.
#[derive(Debug, Clone)]
pub struct DecodedBatch {
    /// Its header (`base_offset` as in the bytes read).
    pub header: BatchHeader,
    /// Its records, in order.
    pub records: Vec<Record>,
}

impl DecodedBatch {
    /// Offset of the last record the batch covers (base offset plus last offset delta).
    pub fn last_offset(&self) -> i64 {
        self.header.base_offset + i64::from(self.header.last_offset_delta)
    }

    /// True for control batches (transaction markers).
    pub fn is_control(&self) -> bool {
        self.header.attributes & CONTROL_BIT != 0
    }

    /// The delete horizon of the batch, when a cleaning set one.
    pub fn delete_horizon(&self) -> Option<i64> {
        (self.header.attributes & DELETE_HORIZON_BIT != 0).then_some(self.header.base_timestamp)
    }
}

/// Reads a zig-zag varint (at most 10 bytes) at `*at`, advancing it.
fn varlong(b: &[u8], at: &mut usize) -> Result<i64, RecordError> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let byte = *b
            .get(*at)
            .ok_or(RecordError::Malformed("truncated varint"))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(RecordError::Malformed("varint too long"))
}

fn put_varlong(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

/// Length of a field that may be null (-1): `None` for null.
fn nullable_len(b: &[u8], at: &mut usize, end: usize) -> Result<Option<usize>, RecordError> {
    let len = varlong(b, at)?;
    if len < 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| RecordError::Malformed("length"))?;
    if at.checked_add(len).is_none_or(|e| e > end) {
        return Err(RecordError::Malformed("field runs past its record"));
    }
    Ok(Some(len))
}

/// The records section of a batch, decompressed.
fn records_section(batch: &Bytes, h: &BatchHeader) -> Result<Bytes, RecordError> {
    let end = h.total_bytes();
    if batch.len() < end {
        return Err(BatchError::Truncated.into());
    }
    let mut raw = batch.slice(BATCH_HEADER_BYTES..end);
    let out = match h.compression() {
        0 => raw,
        1 => bounded(flate2::read::MultiGzDecoder::new(&raw[..]))?,
        2 => {
            check_snappy_lengths(&raw)?;
            let take = |b: &mut Bytes| Ok(std::mem::take(b));
            Snappy::decompress(&mut raw, take).map_err(codec)?
        }
        3 => bounded(lz4::Decoder::new(&raw[..]).map_err(codec)?)?,
        4 => bounded(zstd::stream::read::Decoder::new(&raw[..]).map_err(codec)?)?,
        c => return Err(RecordError::UnknownCodec(c)),
    };
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(too_large());
    }
    Ok(out)
}

fn too_large() -> RecordError {
    RecordError::Malformed("records too large once decompressed")
}

/// Everything `decoder` yields, refused as soon as it passes [`MAX_DECOMPRESSED_BYTES`]:
/// a small batch that expands without bound never gets the memory it asks for.
fn bounded(decoder: impl std::io::Read) -> Result<Bytes, RecordError> {
    use std::io::Read as _;
    let mut out = Vec::new();
    decoder
        .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(codec)?;
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(too_large());
    }
    Ok(out.into())
}

/// Refuses snappy data whose declared uncompressed sizes exceed
/// [`MAX_DECOMPRESSED_BYTES`] before the codec allocates them.
fn check_snappy_lengths(raw: &[u8]) -> Result<(), RecordError> {
    const XERIAL: &[u8] = b"\x82SNAPPY\x00";
    let too_big = RecordError::Malformed("snappy data declares too many bytes");
    let declared = |block: &[u8]| -> Result<u64, RecordError> {
        let mut v: u64 = 0;
        for (i, byte) in block.iter().take(5).enumerate() {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RecordError::Malformed("snappy length"))
    };
    if !raw.starts_with(XERIAL) {
        return match declared(raw)? as usize {
            n if n > MAX_DECOMPRESSED_BYTES => Err(too_big),
            _ => Ok(()),
        };
    }
    let (mut at, mut total) = (16usize, 0u64);
    while at + 4 <= raw.len() {
        let len = u32::from_be_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]) as usize;
        at += 4;
        let block = raw
            .get(at..at.saturating_add(len).min(raw.len()))
            .unwrap_or(&[]);
        total += declared(block)?;
        if total > MAX_DECOMPRESSED_BYTES as u64 {
            return Err(too_big);
        }
        at = at.saturating_add(len);
    }
    Ok(())
}

/// Decodes the records of one batch (the whole batch, prefix included; CRC not checked).
pub fn decode_batch(batch: &Bytes) -> Result<DecodedBatch, RecordError> {
    let header = BatchHeader::parse(batch)?;
    let section = records_section(batch, &header)?;
    let count =
        usize::try_from(header.record_count).map_err(|_| RecordError::Malformed("count"))?;
    let mut records = Vec::with_capacity(count.min(section.len()));
    let mut at = 0usize;
    while at < section.len() {
        let len = varlong(&section, &mut at)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| at.checked_add(l))
            .filter(|e| *e <= section.len())
            .ok_or(RecordError::Malformed("record length"))?;
        records.push(decode_record(&section, at, end, &header)?);
        at = end;
    }
    if records.len() != count {
        return Err(RecordError::Malformed("record count does not match"));
    }
    Ok(DecodedBatch { header, records })
}

fn decode_record(
    s: &Bytes,
    start: usize,
    end: usize,
    h: &BatchHeader,
) -> Result<Record, RecordError> {
    let attributes = *s.get(start).ok_or(RecordError::Malformed("empty record"))? as i8;
    let mut at = start + 1;
    let ts_delta = varlong(s, &mut at)?;
    let offset_delta =
        i32::try_from(varlong(s, &mut at)?).map_err(|_| RecordError::Malformed("offset delta"))?;
    let tail_start = at;
    let key = nullable_len(s, &mut at, end)?.map(|len| {
        let k = s.slice(at..at + len);
        at += len;
        k
    });
    let tombstone = nullable_len(s, &mut at, end)?.is_none();
    Ok(Record {
        offset: h.base_offset + i64::from(offset_delta),
        timestamp: h.base_timestamp.wrapping_add(ts_delta),
        attributes,
        key,
        tombstone,
        tail: s.slice(tail_start..end),
    })
}

/// True when every record of the batch has a key (what a compacted topic requires).
pub fn all_records_keyed(batch: &Bytes) -> Result<bool, RecordError> {
    Ok(decode_batch(batch)?.records.iter().all(|r| r.key.is_some()))
}

/// Encodes a batch: `header` gives every header field but the length, CRC and record count
/// (its `base_offset`, `last_offset_delta`, `base_timestamp` and compression apply to the
/// records: each record's deltas are computed from them).
pub fn encode_batch(header: &BatchHeader, records: &[Record]) -> Result<Bytes, RecordError> {
    let mut raw = BytesMut::new();
    let mut body = BytesMut::new();
    for r in records {
        let delta = i32::try_from(r.offset - header.base_offset)
            .ok()
            .filter(|d| (0..=header.last_offset_delta).contains(d))
            .ok_or(RecordError::Malformed("record offset outside its batch"))?;
        body.clear();
        body.put_i8(r.attributes);
        put_varlong(&mut body, r.timestamp.wrapping_sub(header.base_timestamp));
        put_varlong(&mut body, i64::from(delta));
        body.extend_from_slice(&r.tail);
        put_varlong(&mut raw, body.len() as i64);
        raw.extend_from_slice(&body);
    }
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + raw.len());
    out.put_i64(header.base_offset);
    out.put_i32(0); // length, below
    out.put_i32(header.partition_leader_epoch);
    out.put_i8(2);
    out.put_u32(0); // CRC, below
    out.put_i16(header.attributes);
    out.put_i32(header.last_offset_delta);
    out.put_i64(header.base_timestamp);
    out.put_i64(header.max_timestamp);
    out.put_i64(header.producer_id);
    out.put_i16(header.producer_epoch);
    out.put_i32(header.base_sequence);
    let count = i32::try_from(records.len()).map_err(|_| RecordError::Malformed("count"))?;
    out.put_i32(count);
    compress_into(&mut out, header.compression(), raw)?;
    let length = i32::try_from(out.len() - LOG_OVERHEAD_BYTES)
        .map_err(|_| RecordError::Malformed("batch too large"))?;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

fn compress_into(out: &mut BytesMut, id: i16, raw: BytesMut) -> Result<(), RecordError> {
    let put = |b: &mut BytesMut| {
        b.extend_from_slice(&raw);
        Ok(())
    };
    let r = match id {
        0 => {
            out.extend_from_slice(&raw);
            Ok(())
        }
        1 => Gzip::compress(out, put),
        2 => Snappy::compress(out, put),
        3 => Lz4::compress(out, put),
        4 => Zstd::compress(out, put),
        c => return Err(RecordError::UnknownCodec(c)),
    };
    r.map_err(codec)
}

fn codec<E: std::fmt::Display>(e: E) -> RecordError {
    RecordError::Codec(format!("{e:#}"))
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
