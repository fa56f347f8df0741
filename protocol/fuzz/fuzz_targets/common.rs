// Shared by the fuzz targets (included with `#[path]`, not a module of its own crate).
#![allow(dead_code)] // each target uses part of it

use bytes::{Bytes, BytesMut};
use inkless_protocol::batch;
use inkless_protocol::kafka_protocol::messages::RequestKind;
use inkless_protocol::request::decode_request;

/// Decodes one frame as the broker does and, for Produce, validates every partition's
/// records as the Produce handler does. Must never panic or abort, whatever the bytes.
pub fn decode_like_the_broker(frame: Bytes) {
    let Ok(req) = decode_request(frame) else {
        return;
    };
    if let RequestKind::Produce(p) = &req.body {
        for topic in &p.topic_data {
            for part in &topic.partition_data {
                if let Some(records) = &part.records {
                    check_batches(records);
                }
            }
        }
    }
}

/// `split_and_validate` plus the invariants the broker relies on for accepted batches.
pub fn check_batches(records: &Bytes) {
    let Ok(batches) = batch::split_and_validate(records) else {
        return;
    };
    let total: usize = batches.iter().map(|b| b.bytes.len()).sum();
    assert_eq!(
        total,
        records.len(),
        "accepted batches must cover the input"
    );
    for b in &batches {
        let h = b.header;
        assert_eq!(h.total_bytes(), b.bytes.len());
        assert!(h.record_count > 0);
        let _ = (
            h.compression(),
            h.is_transactional(),
            h.is_control(),
            h.is_idempotent(),
        );
        let _ = h.last_sequence();
        // Rewrites done when serving / for LogAppendTime topics keep the batch valid.
        let stamped = batch::set_log_append_time(&b.bytes, 1_700_000_000_000);
        let mut bytes = BytesMut::from(&stamped[..]);
        batch::set_base_offset(&mut bytes, i64::MAX - 1);
        let again = batch::split_and_validate(&bytes.freeze())
            .expect("a rewritten valid batch must still validate");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].header.max_timestamp, 1_700_000_000_000);
        assert_eq!(again[0].header.base_offset, i64::MAX - 1);
    }
}
