//! A global allocator that keeps oversized allocation requests from aborting the process.
//!
//! The `kafka-protocol` decoder sizes vectors from counts on the wire
//! (`Vec::with_capacity(count)`) before it reads the elements. A hostile count can ask for
//! hundreds of GiB; the system allocator refuses and Rust aborts the process. Such a request
//! is always followed by a decode error (the frame, capped at `socket.request.max.bytes`,
//! cannot hold that many elements), so the memory is never touched.
//! [`LargeAllocGuard`] serves every allocation of at least [`LARGE_ALLOC_BYTES`] with an
//! `mmap(MAP_NORESERVE)` mapping: address space only, no memory until pages are written, and
//! not counted against the kernel's overcommit heuristic. Everything else goes to the system
//! allocator unchanged.
//!
//! Install it in a binary with
//! `#[global_allocator] static ALLOC: LargeAllocGuard = LargeAllocGuard;`.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of this size or more are served by lazy mappings.
pub const LARGE_ALLOC_BYTES: usize = 1 << 30;
const PAGE_BYTES: usize = 4096;

/// The allocator; see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct LargeAllocGuard;

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE_ALLOC_BYTES && layout.align() <= PAGE_BYTES
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p as *mut u8
    }
}

unsafe impl GlobalAlloc for LargeAllocGuard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            // Fresh anonymous mappings are zero-filled.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(&layout) {
            // SAFETY: `ptr` came from `map` with this size.
            unsafe { libc::munmap(ptr as *mut libc::c_void, layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_large(&layout) && !is_large(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_requests_get_lazy_mappings_that_work() {
        let g = LargeAllocGuard;
        // 512 GiB: far more than this machine has, but only address space is taken.
        let layout = Layout::from_size_align(512 << 30, 8).unwrap();
        unsafe {
            let p = g.alloc(layout);
            assert!(!p.is_null());
            *p = 7;
            *p.add(layout.size() - 1) = 9;
            assert_eq!((*p, *p.add(layout.size() - 1)), (7, 9));
            // Shrinking below the threshold moves the block to the system allocator.
            let q = g.realloc(p, layout, 1 << 20);
            assert_eq!(*q, 7);
            g.dealloc(q, Layout::from_size_align(1 << 20, 8).unwrap());
            let small = Layout::from_size_align(64, 8).unwrap();
            let s = g.alloc(small);
            assert!(!s.is_null());
            g.dealloc(s, small);
        }
    }
}
