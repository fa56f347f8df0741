//! Length-prefixed framing: every Kafka request and response is a 4-byte big-endian size
//! followed by that many bytes.
//!
//! [`FrameDecoder`] pulls whole frames out of a growing read buffer and refuses frames over
//! its limit (Kafka's `socket.request.max.bytes`) before buffering them.

use bytes::{Buf, Bytes, BytesMut};

/// Kafka's default `socket.request.max.bytes`: 100 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// Why a frame could not be taken from the buffer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The size prefix is above the configured limit.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced size.
        size: i64,
        /// Configured limit.
        max: usize,
    },
    /// The size prefix is negative.
    #[error("negative frame size {0}")]
    Negative(i32),
}

/// Splits a byte stream into frames of at most `max_frame_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames larger than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    /// Takes one whole frame (without its size prefix) from `buf`, or returns `Ok(None)` when
    /// more bytes are needed. On error the stream cannot be resynchronised: close it.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if size < 0 {
            return Err(FrameError::Negative(size));
        }
        let size = size as usize;
        if size > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                size: size as i64,
                max: self.max_frame_bytes,
            });
        }
        if buf.len() < 4 + size {
            buf.reserve(4 + size - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(size).freeze()))
    }
}

/// Prefixes `body` with its 4-byte big-endian length.
pub fn encode_frame(body: &[u8], out: &mut BytesMut) {
    out.reserve(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_and_waits_for_more() {
        let d = FrameDecoder::new(16);
        let mut buf = BytesMut::new();
        encode_frame(b"abc", &mut buf);
        encode_frame(b"de", &mut buf);
        buf.extend_from_slice(&[0, 0, 0, 5, b'x']);
        assert_eq!(
            d.decode(&mut buf).unwrap().unwrap(),
            Bytes::from_static(b"abc")
        );
        assert_eq!(
            d.decode(&mut buf).unwrap().unwrap(),
            Bytes::from_static(b"de")
        );
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"yzw!");
        assert_eq!(
            d.decode(&mut buf).unwrap().unwrap(),
            Bytes::from_static(b"xyzw!")
        );
    }

    #[test]
    fn refuses_oversized_and_negative_frames() {
        let d = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 17][..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(FrameError::TooLarge { size: 17, .. })
        ));
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert_eq!(d.decode(&mut buf), Err(FrameError::Negative(-1)));
    }
}
