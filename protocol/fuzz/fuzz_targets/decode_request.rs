//! Arbitrary bytes as one request frame (size prefix already removed).
#![no_main]

// The broker binary installs this allocator: hostile element counts make the kafka-protocol
// decoder call `Vec::with_capacity(huge)`; without it libFuzzer reports a malloc-limit OOM
// that the broker does not have.
#[global_allocator]
static ALLOC: inkless_protocol::alloc_guard::LargeAllocGuard =
    inkless_protocol::alloc_guard::LargeAllocGuard;

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::decode_like_the_broker(bytes::Bytes::copy_from_slice(data));
});
