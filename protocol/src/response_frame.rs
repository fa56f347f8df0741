//! Response frames that reference large byte fields instead of copying them.
//!
//! A Fetch answer carries each partition's records as one `Bytes` cut from the block cache.
//! Encoding it into one contiguous buffer would copy every record once more (and again each
//! time that buffer grows). [`SegmentedBuf`] is the buffer kafka-protocol encodes into: small
//! fields are copied into a tail buffer as usual, but a byte slice that lies inside one of the
//! `Bytes` registered with it (the answer's records) becomes a segment of its own that
//! shares their memory. The frame is then written with vectored writes.

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Slices shorter than this are copied even when they could be shared: a segment of its own
/// costs more than copying a few bytes.
const MIN_SHARED_BYTES: usize = 1024;

/// An encoded response: its bytes in order, the 4-byte size prefix first.
#[derive(Debug, Clone, Default)]
pub struct ResponseFrame {
    segments: Vec<Bytes>,
}

impl ResponseFrame {
    /// The frame's bytes, in order; writing them one after the other sends the frame.
    pub fn segments(&self) -> &[Bytes] {
        &self.segments
    }

    /// Total bytes, size prefix included.
    pub fn len(&self) -> usize {
        self.segments.iter().map(Bytes::len).sum()
    }

    /// True for a frame of no bytes (never produced by the encoder).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A frame encoded into one buffer, size prefix included.
    pub(crate) fn from_single(frame: Bytes) -> Self {
        Self {
            segments: vec![frame],
        }
    }

    /// The whole frame in one buffer (a copy; for tests and small frames).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        for s in &self.segments {
            out.extend_from_slice(s);
        }
        out.freeze()
    }
}

/// The buffer responses are encoded into (see the module documentation).
#[derive(Debug)]
pub(crate) struct SegmentedBuf {
    done: Vec<Bytes>,
    done_len: usize,
    tail: BytesMut,
    shared: Vec<Bytes>,
}

impl SegmentedBuf {
    /// A buffer that references, rather than copies, slices of `shared`.
    pub(crate) fn new(shared: Vec<Bytes>, capacity: usize) -> Self {
        Self {
            done: Vec::new(),
            done_len: 0,
            tail: BytesMut::with_capacity(capacity),
            shared,
        }
    }

    /// The registered `Bytes` that `src` lies inside, as a slice sharing its memory.
    fn shared_slice(&self, src: &[u8]) -> Option<Bytes> {
        let start = src.as_ptr() as usize;
        let end = start + src.len();
        self.shared.iter().find_map(|b| {
            let b_start = b.as_ptr() as usize;
            (start >= b_start && end <= b_start + b.len())
                .then(|| b.slice(start - b_start..end - b_start))
        })
    }

    /// Finishes the frame: a size prefix for everything written, then the segments.
    pub(crate) fn finish(mut self) -> ResponseFrame {
        self.seal_tail();
        let size = self.done_len as u32;
        let mut segments = Vec::with_capacity(self.done.len() + 1);
        segments.push(Bytes::copy_from_slice(&size.to_be_bytes()));
        segments.extend(self.done);
        ResponseFrame { segments }
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            let t = self.tail.split().freeze();
            self.done_len += t.len();
            self.done.push(t);
        }
    }
}

// SAFETY: every method delegates to the tail `BytesMut`, which upholds BufMut's contract;
// `put_slice` only adds whole segments besides.
unsafe impl BufMut for SegmentedBuf {
    fn remaining_mut(&self) -> usize {
        self.tail.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of the tail's chunk (BufMut's contract).
        unsafe { self.tail.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.tail.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= MIN_SHARED_BYTES {
            if let Some(shared) = self.shared_slice(src) {
                self.seal_tail();
                self.done_len += shared.len();
                self.done.push(shared);
                return;
            }
        }
        self.tail.extend_from_slice(src);
    }
}

impl ByteBufMut for SegmentedBuf {
    fn offset(&self) -> usize {
        self.done_len + self.tail.len()
    }

    // kafka-protocol's messages never seek or patch earlier bytes (only record-batch
    // encoding does, which never writes into this buffer); the tail supports it anyway.
    fn seek(&mut self, offset: usize) {
        assert!(offset >= self.done_len, "seek into a sealed segment");
        self.tail.resize(offset - self.done_len, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        assert!(r.start >= self.done_len, "patch of a sealed segment");
        &mut self.tail[r.start - self.done_len..r.end - self.done_len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_of_shared_bytes_are_referenced_and_the_rest_copied() {
        let records = Bytes::from(vec![7u8; 4096]);
        let mut buf = SegmentedBuf::new(vec![records.clone()], 16);
        buf.put_i32(4096);
        buf.put_slice(&records[..]);
        buf.put_slice(&[1, 2, 3]);
        buf.put_slice(&records[1024..3072]);
        buf.put_slice(&vec![9u8; 2048]); // large but not shared: copied
        let frame = buf.finish();
        let lens: Vec<usize> = frame.segments().iter().map(Bytes::len).collect();
        assert_eq!(lens, vec![4, 4, 4096, 3, 2048, 2048]);
        assert_eq!(
            frame.segments()[2].as_ptr(),
            records.as_ptr(),
            "records not copied"
        );
        assert_eq!(frame.segments()[4].as_ptr(), records[1024..].as_ptr());
        let all = frame.to_bytes();
        assert_eq!(
            &all[..4],
            &((4 + 4096 + 3 + 2048 + 2048) as u32).to_be_bytes()
        );
        assert_eq!(all.len(), 4 + 4 + 4096 + 3 + 2048 + 2048);
    }

    #[test]
    fn seek_and_range_work_in_the_tail() {
        let mut buf = SegmentedBuf::new(Vec::new(), 0);
        buf.put_i32(0);
        let at = buf.offset();
        buf.seek(at + 4);
        buf.range(at..at + 4).copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(&buf.finish().to_bytes()[4..], &[0, 0, 0, 0, 1, 2, 3, 4]);
    }
}
