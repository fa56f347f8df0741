//! Arbitrary bytes as a Produce `records` field.
#![no_main]

#[global_allocator]
static ALLOC: inkless_protocol::alloc_guard::LargeAllocGuard =
    inkless_protocol::alloc_guard::LargeAllocGuard;

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check_batches(&bytes::Bytes::copy_from_slice(data));
});
