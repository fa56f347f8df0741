use super::*;
use std::io::Write as _;

/// A batch header with codec `codec` in front of `section` (lengths right, CRC not).
fn with_section(codec: i16, section: &[u8]) -> Bytes {
    let mut b = vec![0u8; BATCH_HEADER_BYTES];
    let batch_length = (BATCH_HEADER_BYTES - 12 + section.len()) as i32;
    b[8..12].copy_from_slice(&batch_length.to_be_bytes());
    b[16] = 2;
    b[21..23].copy_from_slice(&codec.to_be_bytes());
    b[57..61].copy_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(section);
    b.into()
}

/// Zeros just past the limit: a few hundred compressed bytes that would expand past it.
fn bomb() -> Vec<u8> {
    vec![0u8; MAX_DECOMPRESSED_BYTES + 4096]
}

#[test]
fn a_zstd_bomb_is_refused_not_expanded() {
    let section = zstd::bulk::compress(&bomb(), 1).expect("compress");
    assert!(section.len() < 1 << 20);
    let err = decode_batch(&with_section(4, &section)).expect_err("refused");
    assert_eq!(err, too_large());
}

#[test]
fn an_lz4_bomb_is_refused_not_expanded() {
    let mut enc = lz4::EncoderBuilder::new()
        .build(Vec::new())
        .expect("encoder");
    enc.write_all(&bomb()).expect("compress");
    let (section, done) = enc.finish();
    done.expect("finish");
    let err = decode_batch(&with_section(3, &section)).expect_err("refused");
    assert_eq!(err, too_large());
}

#[test]
fn garbage_in_every_codec_is_an_error() {
    for codec in 1..=4 {
        let got = decode_batch(&with_section(codec, b"not compressed at all"));
        assert!(got.is_err(), "codec {codec}: {got:?}");
    }
}
