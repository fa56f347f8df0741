use super::*;
use crate::batch::split_and_validate;
use crate::records::all_records_keyed;
use bytes::BytesMut;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const NOW: i64 = 1_000_000;
const OPTS: CompactOptions = CompactOptions {
    now_ms: NOW,
    delete_retention_ms: 500,
};

/// A batch at `base` of records `(key, value)` (`None`: null).
fn batch(base: i64, recs: &[(Option<&str>, Option<&str>)], compression: Compression) -> Bytes {
    let records: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base + i as i64,
            sequence: i as i32,
            timestamp: 1_000 + base + i as i64,
            key: k.map(|k| Bytes::from(k.to_string())),
            value: v.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &opts).unwrap();
    buf.freeze()
}

/// `(offset, key, value)` of every record of the cleaned batches, read by kafka-protocol's
/// decoder (a client's view), after checking each batch's CRC and coverage.
fn read(c: &Cleaned) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    for (i, b) in c.batches.iter().enumerate() {
        if i > 0 {
            assert_eq!(b.base_offset, c.batches[i - 1].last_offset + 1);
        }
        let h = BatchHeader::parse(&b.bytes).unwrap();
        assert_eq!(h.base_offset, b.base_offset);
        assert_eq!(
            h.base_offset + i64::from(h.last_offset_delta),
            b.last_offset
        );
        let crc = crc32c::crc32c(&b.bytes[21..]);
        assert_eq!(crc, h.crc);
        let mut bytes = b.bytes.clone();
        for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
            for r in set.records {
                assert!(r.offset >= b.base_offset && r.offset <= b.last_offset);
                let s = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
                out.push((r.offset, s(r.key.unwrap()), r.value.map(s)));
            }
        }
    }
    out
}

use crate::batch::BatchHeader;

fn kv(k: &'static str, v: &'static str) -> (Option<&'static str>, Option<&'static str>) {
    (Some(k), Some(v))
}

#[test]
fn keeps_the_latest_record_of_each_key_at_its_offset() {
    let run = vec![
        batch(
            10,
            &[kv("a", "1"), kv("b", "1"), kv("c", "1")],
            Compression::None,
        ),
        batch(13, &[kv("a", "2"), kv("b", "2")], Compression::None),
        batch(15, &[kv("d", "1"), kv("a", "3")], Compression::None),
    ];
    let c = compact(&run, OPTS).unwrap();
    assert!(c.changed);
    assert_eq!((c.records_in, c.records_out), (7, 4));
    let recs = read(&c);
    let want = vec![
        (12, "c".into(), Some("1".into())),
        (14, "b".into(), Some("2".into())),
        (15, "d".into(), Some("1".into())),
        (16, "a".into(), Some("3".into())),
    ];
    assert_eq!(recs, want);
    assert_eq!(c.batches.first().unwrap().base_offset, 10);
    assert_eq!(c.batches.last().unwrap().last_offset, 16);
}

#[test]
fn empty_batches_give_their_offsets_to_their_neighbours() {
    let run = vec![
        batch(0, &[kv("a", "1"), kv("b", "1")], Compression::None),
        batch(2, &[kv("c", "1")], Compression::None),
        batch(3, &[kv("a", "2"), kv("b", "2")], Compression::None),
        batch(5, &[kv("c", "2")], Compression::None),
        batch(6, &[kv("z", "1")], Compression::None),
    ];
    let c = compact(&run, OPTS).unwrap();
    let spans: Vec<_> = c
        .batches
        .iter()
        .map(|b| (b.base_offset, b.last_offset))
        .collect();
    // The first two batches are empty: the third starts at 0; the fourth keeps its own.
    assert_eq!(spans, vec![(0, 4), (5, 5), (6, 6)]);
    let offsets: Vec<i64> = read(&c).iter().map(|r| r.0).collect();
    assert_eq!(offsets, vec![3, 4, 5, 6]);
    // A record with a gap before it in its batch still validates as a batch header.
    assert!(BatchHeader::parse(&c.batches[0].bytes).is_ok());
}

#[test]
fn tombstones_live_until_the_delete_horizon_set_by_their_first_cleaning() {
    let run = vec![
        batch(0, &[kv("a", "1"), kv("b", "1")], Compression::None),
        batch(2, &[(Some("a"), None), kv("c", "1")], Compression::None),
    ];
    let first = compact(&run, OPTS).unwrap();
    assert!(first.changed);
    assert_eq!(first.next_horizon, Some(NOW + 500));
    let recs = read(&first);
    assert_eq!(recs[1], (2, "a".into(), None), "the tombstone stays");
    let h = BatchHeader::parse(&first.batches.last().unwrap().bytes).unwrap();
    assert_ne!(h.attributes & DELETE_HORIZON_BIT, 0);
    // Timestamps survive the horizon in the base timestamp.
    let mut bytes = first.batches.last().unwrap().bytes.clone();
    let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
    assert_eq!(set.records[0].timestamp, 1_002);

    let cleaned: Vec<Bytes> = first.batches.iter().map(|b| b.bytes.clone()).collect();
    let again = compact(&cleaned, OPTS).unwrap();
    assert!(!again.changed, "nothing to do before the horizon");
    let later = CompactOptions {
        now_ms: NOW + 500,
        ..OPTS
    };
    let after = compact(&cleaned, later).unwrap();
    assert!(after.changed);
    let keys: Vec<String> = read(&after).into_iter().map(|r| r.1).collect();
    assert_eq!(keys, vec!["b", "c"]);
    assert_eq!(after.next_horizon, None);
}

#[test]
fn the_last_record_of_a_run_always_survives() {
    let run = vec![batch(
        0,
        &[kv("a", "1"), (Some("a"), None)],
        Compression::None,
    )];
    let first = compact(&run, OPTS).unwrap();
    let cleaned: Vec<Bytes> = first.batches.iter().map(|b| b.bytes.clone()).collect();
    let late = CompactOptions {
        now_ms: NOW + 10_000,
        ..OPTS
    };
    let c = compact(&cleaned, late).unwrap();
    assert_eq!(read(&c), vec![(1, "a".into(), None)]);
    assert_eq!((c.batches[0].base_offset, c.batches[0].last_offset), (0, 1));
}

#[test]
fn nothing_changes_when_every_key_is_unique() {
    let run = vec![batch(0, &[kv("a", "1"), kv("b", "1")], Compression::None)];
    let c = compact(&run, OPTS).unwrap();
    assert!(!c.changed);
}

#[test]
fn keyless_records_are_dropped_and_detected() {
    let keyless = batch(0, &[(None, Some("x")), kv("a", "1")], Compression::None);
    assert!(!all_records_keyed(&keyless).unwrap());
    assert!(all_records_keyed(&batch(0, &[kv("a", "1")], Compression::Zstd)).unwrap());
    let c = compact(&[keyless], OPTS).unwrap();
    assert_eq!(read(&c), vec![(1, "a".into(), Some("1".into()))]);
}

#[test]
fn compressed_batches_are_written_back_with_their_codec() {
    for (codec, id) in [
        (Compression::Gzip, 1),
        (Compression::Snappy, 2),
        (Compression::Lz4, 3),
        (Compression::Zstd, 4),
    ] {
        let recs: Vec<_> = (0..50)
            .map(|i| kv(["k0", "k1", "k2"][i % 3], "value"))
            .collect();
        let run = vec![
            batch(100, &recs, codec),
            batch(150, &recs, Compression::None),
        ];
        let c = compact(&run, OPTS).unwrap();
        let got = read(&c);
        let offsets: Vec<i64> = got.iter().map(|r| r.0).collect();
        assert_eq!(offsets, vec![197, 198, 199], "{codec:?}");
        assert_eq!(c.batches.first().unwrap().base_offset, 100);
        // The compressed batch became empty and gave its offsets to the next one.
        assert_eq!(c.batches.len(), 1);
        let only = compact(&run[..1], OPTS).unwrap();
        let h = BatchHeader::parse(&only.batches[0].bytes).unwrap();
        assert_eq!(h.compression(), id);
        assert_eq!(read(&only).len(), 3);
        // Its offsets skip, which a producer's batch may not do.
        assert!(split_and_validate(&only.batches[0].bytes).is_err());
    }
}

#[test]
fn corrupt_input_is_an_error_not_a_panic() {
    let good = batch(0, &[kv("a", "1"), kv("b", "2")], Compression::Gzip);
    for cut in [10, 61, good.len() - 1] {
        assert!(compact(&[good.slice(0..cut)], OPTS).is_err());
    }
    let mut bad = BytesMut::from(&good[..]);
    let last = bad.len() - 3;
    bad[last] ^= 0x5a;
    let _ = compact(&[bad.freeze()], OPTS);
    let gap = vec![
        batch(0, &[kv("a", "1")], Compression::None),
        batch(5, &[kv("a", "1")], Compression::None),
    ];
    assert!(compact(&gap, OPTS).is_err());
}
