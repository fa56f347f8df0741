//! A byte stream through `FrameDecoder` (small limit), delivered in chunks as reads would,
//! each complete frame decoded as a request.
//!
//! Input layout: byte 0 = frame limit (0..=255), byte 1 = read chunk size (1..=256),
//! the rest = the stream.
#![no_main]

#[global_allocator]
static ALLOC: inkless_protocol::alloc_guard::LargeAllocGuard =
    inkless_protocol::alloc_guard::LargeAllocGuard;

#[path = "common.rs"]
mod common;

use bytes::BytesMut;
use inkless_protocol::frame::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [max, chunk, stream @ ..] = data else {
        return;
    };
    let max = *max as usize;
    let chunk = *chunk as usize + 1;
    let decoder = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut consumed = 0usize;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "frame over the limit");
                    assert_eq!(
                        &stream[consumed + 4..consumed + 4 + frame.len()],
                        &frame[..],
                        "frame bytes must be the stream's bytes after the prefix"
                    );
                    consumed += 4 + frame.len();
                    common::decode_like_the_broker(frame);
                }
                Ok(None) => break,
                Err(_) => return, // the connection is closed
            }
        }
    }
    if buf.len() >= 4 {
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        assert!(
            size >= 0 && (size as usize) <= max && buf.len() < 4 + size as usize,
            "a whole valid frame was left undecoded"
        );
    }
    assert_eq!(consumed + buf.len(), stream.len());
});
