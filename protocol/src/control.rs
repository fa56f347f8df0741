//! Transaction markers: the control batches a transaction coordinator writes into every
//! partition of a transaction (Kafka's `EndTransactionMarker`).
//!
//! A marker is a batch with the transactional and control attributes and one record whose
//! key is (version 0, type) — type 0 ABORT, 1 COMMIT — and whose value is (version 0,
//! coordinator epoch). Inside Inkless the batch's base sequence also carries the type, so
//! that the sequencer, which sees only batch headers, knows what the marker does; clients
//! read the key, as with Kafka.

use crate::batch::{BatchHeader, ValidatedBatch};
use bytes::{BufMut, Bytes, BytesMut};

/// Control record type of an ABORT marker.
pub const ABORT: i32 = 0;
/// Control record type of a COMMIT marker.
pub const COMMIT: i32 = 1;

/// Attributes of a marker batch: transactional and control.
const MARKER_ATTRIBUTES: i16 = 0x10 | 0x20;

/// The marker batch ending a transaction of `producer_id` at `producer_epoch`.
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> ValidatedBatch {
    let kind: i16 = if commit { COMMIT as i16 } else { ABORT as i16 };
    // One record: attributes, timestamp delta 0, offset delta 0, key (4 bytes), value
    // (6 bytes), no headers; lengths are zigzag varints (small: one byte each).
    let mut record = BytesMut::with_capacity(17);
    record.put_u8(16 << 1); // record length 16
    record.put_i8(0); // attributes
    record.put_u8(0); // timestamp delta
    record.put_u8(0); // offset delta
    record.put_u8(4 << 1); // key length
    record.put_i16(0); // key version
    record.put_i16(kind);
    record.put_u8(6 << 1); // value length
    record.put_i16(0); // value version
    record.put_i32(coordinator_epoch);
    record.put_u8(0); // header count
    let mut out = BytesMut::with_capacity(61 + record.len());
    out.put_i64(0); // base offset, set when served
    out.put_i32(0); // length, below
    out.put_i32(0); // partition leader epoch
    out.put_i8(2);
    out.put_u32(0); // CRC, below
    out.put_i16(MARKER_ATTRIBUTES);
    out.put_i32(0); // last offset delta
    out.put_i64(timestamp_ms);
    out.put_i64(timestamp_ms);
    out.put_i64(producer_id);
    out.put_i16(producer_epoch);
    out.put_i32(i32::from(kind)); // base sequence: the type, for the sequencer
    out.put_i32(1);
    out.extend_from_slice(&record);
    let length = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    let bytes: Bytes = out.freeze();
    let header = BatchHeader {
        base_offset: 0,
        batch_length: length,
        partition_leader_epoch: 0,
        magic: 2,
        crc,
        attributes: MARKER_ATTRIBUTES,
        last_offset_delta: 0,
        base_timestamp: timestamp_ms,
        max_timestamp: timestamp_ms,
        producer_id,
        producer_epoch,
        base_sequence: i32::from(kind),
        record_count: 1,
    };
    ValidatedBatch { header, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::split_and_validate;

    #[test]
    fn a_marker_is_a_valid_control_batch() {
        let m = marker_batch(7, 3, true, 0, 1_000);
        let parsed = split_and_validate(&m.bytes).expect("valid batch");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].header, m.header);
        assert!(m.header.is_control() && m.header.is_transactional());
        let decoded = crate::records::decode_batch(&m.bytes).expect("decode");
        assert_eq!(decoded.records.len(), 1);
        let key = decoded.records[0].key.clone().expect("key");
        assert_eq!(&key[..], &[0, 0, 0, 1]);
        let abort = marker_batch(7, 3, false, 0, 1_000);
        assert_eq!(abort.header.base_sequence, ABORT);
    }
}
