//! The produce object format.
//!
//! One object holds batches of many partitions. A partition's batches are contiguous, in the
//! order they were appended, so a fetch of one partition reads one byte range. A footer
//! indexes the sections, so an object can be understood without the metadata store:
//! ```text
//! [section 0][section 1]...[footer][footer_len u32][crc32c(footer) u32]["INKL"][version u8]
//! footer = count u32, then per section: topic_id [16], partition i32, offset u64, len u64,
//!          batches u32
//! ```
//! All integers are big-endian.

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;
use uuid::Uuid;

const MAGIC: &[u8; 4] = b"INKL";
const VERSION: u8 = 1;
const TRAILER_BYTES: usize = 4 + 4 + 4 + 1;
const ENTRY_BYTES: usize = 16 + 4 + 8 + 8 + 4;

/// Where one partition's contiguous bytes sit inside an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionEntry {
    /// Topic of the section.
    pub topic_id: Uuid,
    /// Partition of the section.
    pub partition: i32,
    /// First byte of the section.
    pub offset: u64,
    /// Bytes in the section.
    pub len: u64,
    /// Number of batches in the section.
    pub batches: u32,
}

/// Where one batch landed inside a sealed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchPosition {
    /// First byte of the batch.
    pub offset: u64,
    /// Bytes of the batch.
    pub len: u32,
}

/// Why an object could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjectFormatError {
    /// Too short, wrong magic, or an index pointing outside the object.
    #[error("not an Inkless object: {0}")]
    Invalid(&'static str),
    /// The footer checksum does not match.
    #[error("object footer checksum mismatch")]
    CorruptFooter,
}

/// Accumulates batches of many partitions and lays them out as one object.
#[derive(Debug, Default)]
pub struct ObjectBuilder {
    sections: BTreeMap<(Uuid, i32), Vec<Bytes>>,
    data_bytes: usize,
}

impl ObjectBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one batch of `(topic_id, partition)`; returns its index within that partition's
    /// section (the order batches of one partition are stored and committed in).
    pub fn push(&mut self, topic_id: Uuid, partition: i32, batch: Bytes) -> usize {
        self.data_bytes += batch.len();
        let section = self.sections.entry((topic_id, partition)).or_default();
        section.push(batch);
        section.len() - 1
    }

    /// Bytes of data pushed so far (footer excluded).
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// Lays out the object. Returns its bytes and, per partition, the position of each batch
    /// in push order.
    pub fn finish(self) -> (Bytes, BTreeMap<(Uuid, i32), Vec<BatchPosition>>) {
        let footer_len = 4 + ENTRY_BYTES * self.sections.len();
        let mut out = BytesMut::with_capacity(self.data_bytes + footer_len + TRAILER_BYTES);
        let mut positions = BTreeMap::new();
        let mut entries = Vec::with_capacity(self.sections.len());
        for ((topic_id, partition), batches) in self.sections {
            let start = out.len() as u64;
            let mut at = Vec::with_capacity(batches.len());
            for b in &batches {
                at.push(BatchPosition {
                    offset: out.len() as u64,
                    len: b.len() as u32,
                });
                out.extend_from_slice(b);
            }
            entries.push(SectionEntry {
                topic_id,
                partition,
                offset: start,
                len: out.len() as u64 - start,
                batches: batches.len() as u32,
            });
            positions.insert((topic_id, partition), at);
        }
        let footer_start = out.len();
        out.put_u32(entries.len() as u32);
        for e in &entries {
            out.extend_from_slice(e.topic_id.as_bytes());
            out.put_i32(e.partition);
            out.put_u64(e.offset);
            out.put_u64(e.len);
            out.put_u32(e.batches);
        }
        let crc = crc32c::crc32c(&out[footer_start..]);
        out.put_u32((out.len() - footer_start) as u32);
        out.put_u32(crc);
        out.extend_from_slice(MAGIC);
        out.put_u8(VERSION);
        debug_assert_eq!(out.len(), self.data_bytes + footer_len + TRAILER_BYTES);
        (out.freeze(), positions)
    }
}

/// Reads the footer index of a whole object.
pub fn read_footer(object: &[u8]) -> Result<Vec<SectionEntry>, ObjectFormatError> {
    let n = object.len();
    if n < TRAILER_BYTES + 4 {
        return Err(ObjectFormatError::Invalid("too short"));
    }
    if &object[n - 5..n - 1] != MAGIC || object[n - 1] != VERSION {
        return Err(ObjectFormatError::Invalid("bad magic or version"));
    }
    let u32_at = |at: usize| {
        u32::from_be_bytes([object[at], object[at + 1], object[at + 2], object[at + 3]])
    };
    let footer_len = u32_at(n - TRAILER_BYTES) as usize;
    let crc = u32_at(n - TRAILER_BYTES + 4);
    if footer_len + TRAILER_BYTES > n || footer_len < 4 {
        return Err(ObjectFormatError::Invalid("footer length"));
    }
    let footer_start = n - TRAILER_BYTES - footer_len;
    let footer = &object[footer_start..n - TRAILER_BYTES];
    if crc32c::crc32c(footer) != crc {
        return Err(ObjectFormatError::CorruptFooter);
    }
    let count = u32_at(footer_start) as usize;
    if footer_len != 4 + count * ENTRY_BYTES {
        return Err(ObjectFormatError::Invalid("entry count"));
    }
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let e = &footer[4 + i * ENTRY_BYTES..4 + (i + 1) * ENTRY_BYTES];
        let mut id = [0u8; 16];
        id.copy_from_slice(&e[0..16]);
        let entry = SectionEntry {
            topic_id: Uuid::from_bytes(id),
            partition: i32::from_be_bytes([e[16], e[17], e[18], e[19]]),
            offset: u64::from_be_bytes(e[20..28].try_into().unwrap_or([0; 8])),
            len: u64::from_be_bytes(e[28..36].try_into().unwrap_or([0; 8])),
            batches: u32::from_be_bytes([e[36], e[37], e[38], e[39]]),
        };
        if entry.offset.saturating_add(entry.len) > footer_start as u64 {
            return Err(ObjectFormatError::Invalid("section outside data"));
        }
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_batches_by_partition_and_indexes_them() {
        let t1 = Uuid::from_u128(1);
        let t2 = Uuid::from_u128(2);
        let mut b = ObjectBuilder::new();
        b.push(t2, 0, Bytes::from_static(b"BBB"));
        b.push(t1, 1, Bytes::from_static(b"a1"));
        b.push(t2, 0, Bytes::from_static(b"CC"));
        b.push(t1, 0, Bytes::from_static(b"z"));
        assert_eq!(b.data_bytes(), 8);
        let (obj, pos) = b.finish();
        let footer = read_footer(&obj).unwrap();
        assert_eq!(footer.len(), 3);
        let t2p0 = &pos[&(t2, 0)];
        assert_eq!(&obj[t2p0[0].offset as usize..][..3], b"BBB");
        assert_eq!(&obj[t2p0[1].offset as usize..][..2], b"CC");
        assert_eq!(
            t2p0[1].offset,
            t2p0[0].offset + 3,
            "a partition's batches are contiguous"
        );
        let e = footer.iter().find(|e| e.topic_id == t2).unwrap();
        assert_eq!((e.len, e.batches), (5, 2));
    }

    #[test]
    fn rejects_garbage_and_corruption() {
        assert!(read_footer(b"short").is_err());
        let mut b = ObjectBuilder::new();
        b.push(Uuid::from_u128(9), 3, Bytes::from_static(b"data"));
        let (obj, _) = b.finish();
        let mut bad = obj.to_vec();
        let i = bad.len() - 20;
        bad[i] ^= 1;
        assert!(read_footer(&bad).is_err());
    }
}
