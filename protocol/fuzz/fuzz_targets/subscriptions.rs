//! Consumer-protocol subscription bytes (a classic consumer's JoinGroup metadata) through
//! `subscription_topics`: any input is an answer or an error, never a panic.
#![no_main]

#[global_allocator]
static ALLOC: inkless_protocol::alloc_guard::LargeAllocGuard =
    inkless_protocol::alloc_guard::LargeAllocGuard;

use inkless_protocol::consumer_protocol::subscription_topics;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = subscription_topics(data);
});
