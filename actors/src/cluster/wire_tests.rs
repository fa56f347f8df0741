//! Tests of the wire format: round trips, golden bytes, version refusal, garbage.

use super::*;

fn tp() -> TopicPartition {
    TopicPartition {
        topic_id: Uuid::from_bytes([
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ]),
        partition: 3,
    }
}

fn batch() -> IncomingBatch {
    IncomingBatch {
        header: BatchHeader {
            base_offset: 0,
            batch_length: 100,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0xdead_beef,
            attributes: 0x08,
            last_offset_delta: 4,
            base_timestamp: 1_700_000_000_000,
            max_timestamp: 1_700_000_000_123,
            producer_id: 42,
            producer_epoch: 1,
            base_sequence: 10,
            record_count: 5,
        },
        position: BatchPosition {
            offset: 4096,
            len: 112,
        },
    }
}

fn coordinate() -> BatchCoordinate {
    BatchCoordinate {
        base_offset: 100,
        last_offset: 104,
        object_key: "obj/1".to_string(),
        object_size: 8192,
        byte_offset: 4096,
        byte_len: 112,
        max_timestamp: 1_700_000_000_123,
        producer_id: 42,
        producer_epoch: 1,
        base_sequence: 10,
        last_sequence: 14,
    }
}

fn offsets() -> PartitionOffsets {
    PartitionOffsets {
        log_start_offset: 7,
        high_watermark: 105,
        last_stable_offset: -1,
        last_abort_offset: i64::MAX,
    }
}

/// The kind of a request; exhaustive, so a new kind does not compile until it has a sample.
fn request_kind(r: &Request) -> &'static str {
    match r {
        Request::Append { .. } => "append",
        Request::Read { .. } => "read",
        Request::Offsets { .. } => "offsets",
        Request::DeleteRecords { .. } => "delete_records",
        Request::MembershipChanged => "membership_changed",
        Request::CacheRead { .. } => "cache_read",
        Request::Released(_) => "released",
    }
}

/// The kind of a response; exhaustive, as [`request_kind`].
fn response_kind(r: &Response) -> &'static str {
    match r {
        Response::Append(_) => "append",
        Response::Read(_) => "read",
        Response::Offsets(_) => "offsets",
        Response::DeleteRecords(_) => "delete_records",
        Response::CacheRead(_) => "cache_read",
        Response::Ack => "ack",
        Response::Refused(_) => "refused",
    }
}

/// One sample of every request kind, with its golden bytes (version 1).
fn requests() -> Vec<(Request, &'static str)> {
    vec![
        (
            Request::Append {
                tp: tp(),
                object_key: "obj/1".to_string(),
                object_size: 8192,
                batches: vec![batch()],
            },
            "4901000000112233445566778899aabbccddeeff06056f626a2f31fb00200100c80102fcefbeadde1008fd00d0ca9f17030000fdf6d0ca9f170300005402140afb001070",
        ),
        (
            Request::Read {
                tp: tp(),
                offset: 100,
                max_bytes: 1 << 20,
            },
            "4901000100112233445566778899aabbccddeeff06c8fc00001000",
        ),
        (
            Request::Offsets {
                tp: tp(),
                offset: -1,
                wait_ms: 500,
            },
            "4901000200112233445566778899aabbccddeeff0601fbf401",
        ),
        (
            Request::DeleteRecords {
                tp: tp(),
                offset: 50,
            },
            "4901000300112233445566778899aabbccddeeff0664",
        ),
        (Request::MembershipChanged, "49010004"),
        (
            Request::CacheRead {
                key: "obj/1".to_string(),
                object_size: 8192,
                start: 4096,
                end: 4208,
            },
            "49010005056f626a2f31fb0020fb0010fb7010",
        ),
        (Request::Released(vec![tp()]), "490100060100112233445566778899aabbccddeeff06"),
    ]
}

/// Samples of every response kind and every error, with their golden bytes (version 1).
fn responses() -> Vec<(Response, &'static str)> {
    let append_errors = [
        AppendError::OutOfOrderSequence {
            got: 7,
            expected: 5,
        },
        AppendError::InvalidProducerEpoch { got: 1, current: 2 },
        AppendError::NotOwner,
        AppendError::Storage("s3".to_string()),
        AppendError::Metadata("db".to_string()),
        AppendError::TimedOut,
        AppendError::Indeterminate("lost".to_string()),
        AppendError::Unavailable("down".to_string()),
    ];
    let read_errors = [
        ReadError::OffsetOutOfRange {
            log_start_offset: 7,
            high_watermark: 105,
        },
        ReadError::NotOwner,
        ReadError::Storage("io".to_string()),
    ];
    let ack = AppendAck {
        base_offset: 100,
        log_start_offset: 7,
    };
    let mut out = vec![Response::Append(Ok(ack))];
    out.extend(append_errors.into_iter().map(|e| Response::Append(Err(e))));
    out.push(Response::Read(Ok((vec![coordinate()], offsets()))));
    out.extend(read_errors.into_iter().map(|e| Response::Read(Err(e))));
    out.extend([
        Response::Offsets(Some(offsets())),
        Response::Offsets(None),
        Response::DeleteRecords(Ok(50)),
        Response::DeleteRecords(Err(ReadError::NotOwner)),
        Response::CacheRead(Ok(vec![1, 2, 3, 4])),
        Response::CacheRead(Err(ReadError::Storage("io".to_string()))),
        Response::Ack,
        Response::Refused("bad".to_string()),
    ]);
    assert_eq!(
        out.len(),
        RESPONSE_GOLDEN.len(),
        "one golden answer per sample"
    );
    out.into_iter().zip(RESPONSE_GOLDEN).collect()
}

/// Golden bytes of the response samples, in order. Every golden constant is magic `49`,
/// version `0100`, then the bincode body (varint integers, zigzag for signed ones). Never
/// edit one to make a test pass: a changed constant is a changed wire format, which needs a
/// new version (ADR 0011).
const RESPONSE_GOLDEN: [&str; 21] = [
    "4901000000c80e",
    "4901000001000e0a",
    "4901000001010204",
    "490100000102",
    "490100000103027333",
    "490100000104026462",
    "490100000105",
    "490100000106046c6f7374",
    "49010000010704646f776e",
    "490100010001c8d0056f626a2f31fb0020fb001070fdf6d0ca9f170300005402141c0ed2",
    "4901000101000ed2",
    "490100010101",
    "49010001010202696f",
    "49010002010ed2",
    "4901000200",
    "490100030064",
    "490100030101",
    "49010004000401020304",
    "49010004010202696f",
    "49010005",
    "4901000603626164",
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_samples_cover_every_kind() {
    let mut requests: Vec<_> = requests().iter().map(|(r, _)| request_kind(r)).collect();
    requests.sort_unstable();
    requests.dedup();
    assert_eq!(requests.len(), 7);
    let mut responses: Vec<_> = responses().iter().map(|(r, _)| response_kind(r)).collect();
    responses.sort_unstable();
    responses.dedup();
    assert_eq!(responses.len(), 7);
}

#[test]
fn every_request_kind_round_trips() {
    for (request, _) in requests() {
        let call = decode_request(&encode_request(&request).unwrap()).unwrap();
        assert_eq!(call.version, SENT_VERSION);
        assert_eq!(call.request, request);
    }
}

#[test]
fn every_response_kind_round_trips() {
    for (response, _) in responses() {
        let bytes = encode_response(response.clone(), V1).unwrap();
        assert_eq!(decode_response(&bytes).unwrap(), Reply::Answered(response));
    }
}

#[test]
fn requests_encode_to_and_decode_from_their_golden_bytes() {
    for (request, golden) in requests() {
        let bytes = encode_request(&request).unwrap();
        assert_eq!(hex(&bytes), golden, "{request:?}");
        assert_eq!(decode_request(&unhex(golden)).unwrap().request, request);
    }
}

#[test]
fn responses_encode_to_and_decode_from_their_golden_bytes() {
    for (response, golden) in responses() {
        let bytes = encode_response(response.clone(), V1).unwrap();
        assert_eq!(hex(&bytes), golden, "{response:?}");
        let decoded = decode_response(&unhex(golden)).unwrap();
        assert_eq!(decoded, Reply::Answered(response));
    }
}

#[test]
fn a_refusal_has_its_golden_bytes_and_decodes_as_unsupported() {
    let refusal = encode_refusal();
    assert_eq!(hex(&refusal), "4900000100");
    assert_eq!(
        decode_response(&refusal),
        Ok(Reply::Unsupported {
            understood: NEWEST_UNDERSTOOD
        })
    );
}

#[test]
fn the_catch_all_errors_have_golden_bytes_and_read_cautiously() {
    let append = WireResponse::Append(Err(WireAppendError::Other("new".to_string())));
    let bytes = seal(V1, &append).unwrap();
    assert_eq!(hex(&bytes), "490100000108036e6577");
    let expected = Response::Append(Err(AppendError::Indeterminate("new".to_string())));
    assert_eq!(decode_response(&bytes), Ok(Reply::Answered(expected)));

    let read = WireResponse::Read(Err(WireReadError::Other("new".to_string())));
    let bytes = seal(V1, &read).unwrap();
    assert_eq!(hex(&bytes), "490100010103036e6577");
    let expected = Response::Read(Err(ReadError::Storage("new".to_string())));
    assert_eq!(decode_response(&bytes), Ok(Reply::Answered(expected)));
}

/// `bytes` with its version field replaced.
fn with_version(mut bytes: Vec<u8>, version: u16) -> Vec<u8> {
    bytes[1..3].copy_from_slice(&version.to_le_bytes());
    bytes
}

#[test]
fn a_request_of_a_newer_version_is_refused_with_the_typed_answer() {
    let newer = NEWEST_UNDERSTOOD + 1;
    for (request, _) in requests() {
        let bytes = with_version(encode_request(&request).unwrap(), newer);
        let error = decode_request(&bytes).unwrap_err();
        assert_eq!(error, WireError::UnsupportedVersion { version: newer });
        let answer = decode_response(&answer_to_undecodable(&error));
        assert_eq!(
            answer,
            Ok(Reply::Unsupported {
                understood: NEWEST_UNDERSTOOD
            })
        );
    }
}

#[test]
fn a_request_in_the_refusal_version_is_refused_too() {
    let bytes = with_version(encode_request(&Request::MembershipChanged).unwrap(), 0);
    let error = decode_request(&bytes).unwrap_err();
    assert_eq!(error, WireError::UnsupportedVersion { version: 0 });
}

#[test]
fn an_answer_in_a_version_not_understood_is_an_error() {
    assert_eq!(
        encode_response(Response::Ack, NEWEST_UNDERSTOOD + 1),
        Err(WireError::UnsupportedVersion {
            version: NEWEST_UNDERSTOOD + 1
        })
    );
    let ack = encode_response(Response::Ack, V1).unwrap();
    let newer = with_version(ack, NEWEST_UNDERSTOOD + 1);
    assert_eq!(
        decode_response(&newer),
        Err(WireError::UnsupportedVersion {
            version: NEWEST_UNDERSTOOD + 1
        })
    );
}

#[test]
fn an_undecodable_body_is_refused_in_its_own_version() {
    let error = decode_request(&[MAGIC, 1, 0, 0xff]).unwrap_err();
    assert!(matches!(error, WireError::Body { version: V1, .. }));
    let answer = decode_response(&answer_to_undecodable(&error)).unwrap();
    assert!(matches!(answer, Reply::Answered(Response::Refused(_))));
}

#[test]
fn short_or_foreign_bytes_are_typed_errors() {
    assert_eq!(decode_request(&[]), Err(WireError::Truncated { len: 0 }));
    assert_eq!(
        decode_request(&[MAGIC]),
        Err(WireError::Truncated { len: 1 })
    );
    assert_eq!(
        decode_request(&[MAGIC, 1]),
        Err(WireError::Truncated { len: 2 })
    );
    // A build from before the envelope: a bare bincode enum (variant 2, `Offsets`).
    assert_eq!(
        decode_request(&[2, 16, 0]),
        Err(WireError::NotInkless { first_byte: 2 })
    );
    assert!(decode_response(&[0xff; 64]).is_err());
    // A refusal with a body of the wrong size.
    assert!(decode_response(&[MAGIC, 0, 0, 1]).is_err());
    assert!(decode_response(&[MAGIC, 0, 0, 1, 0, 0]).is_err());
}

#[test]
fn every_truncation_of_every_sample_is_an_error() {
    for (request, _) in requests() {
        let bytes = encode_request(&request).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode_request(&bytes[..len]).is_err(),
                "{request:?} cut at {len}"
            );
        }
    }
    for (response, _) in responses() {
        let bytes = encode_response(response.clone(), V1).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode_response(&bytes[..len]).is_err(),
                "{response:?} cut at {len}"
            );
        }
    }
}

#[test]
fn huge_length_prefixes_are_errors_not_allocations() {
    let huge = {
        // bincode varint: 0xfd then a little-endian u64.
        let mut v = vec![0xfd];
        v.extend_from_slice(&(1u64 << 60).to_le_bytes());
        v
    };
    // Append with an object key of 2^60 bytes.
    let mut key = vec![MAGIC, 1, 0, 0];
    key.extend_from_slice(&[0; 16]);
    key.push(6);
    key.extend_from_slice(&huge);
    assert!(matches!(decode_request(&key), Err(WireError::Body { .. })));
    // Append with 2^60 batches.
    let mut batches = vec![MAGIC, 1, 0, 0];
    batches.extend_from_slice(&[0; 16]);
    batches.extend_from_slice(&[6, 0, 0]);
    batches.extend_from_slice(&huge);
    assert!(matches!(
        decode_request(&batches),
        Err(WireError::Body { .. })
    ));
    // A cache block of 2^60 bytes.
    let mut block = vec![MAGIC, 1, 0, 4, 0];
    block.extend_from_slice(&huge);
    assert!(matches!(
        decode_response(&block),
        Err(WireError::Body { .. })
    ));
}

#[test]
fn random_bodies_never_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2_000 {
        let len = (next() % 96) as usize;
        let mut bytes = vec![MAGIC, 1, 0];
        bytes.extend((0..len).map(|_| next() as u8));
        let _ = decode_request(&bytes);
        let _ = decode_response(&bytes);
    }
}
