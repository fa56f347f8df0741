//! Request decoding and response encoding.
//!
//! [`SUPPORTED_APIS`] is the one table of what this broker implements: ApiVersions
//! advertises exactly it, and [`decode_request`] refuses anything outside it before the
//! body is decoded. Header parsing checks lengths itself because the library's helper
//! panics on short frames.

use crate::response_frame::{ResponseFrame, SegmentedBuf};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

/// One implemented API and its version range (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    /// The API.
    pub key: ApiKey,
    /// Lowest implemented version.
    pub min: i16,
    /// Highest implemented version.
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> SupportedApi {
    SupportedApi { key, min, max }
}

/// Every API and version this broker implements. Each range is exercised by a test.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    api(ApiKey::Produce, 3, 12),
    api(ApiKey::Fetch, 4, 16),
    api(ApiKey::ListOffsets, 1, 8),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::DescribeTopicPartitions, 0, 0),
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::DescribeCluster, 0, 1),
    api(ApiKey::FindCoordinator, 0, 5),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    api(ApiKey::AddPartitionsToTxn, 0, 5),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 5),
    api(ApiKey::TxnOffsetCommit, 0, 5),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
    api(ApiKey::DescribeProducers, 0, 0),
];

/// The implemented version range of `key`, if any.
pub fn supported_range(key: ApiKey) -> Option<SupportedApi> {
    SUPPORTED_APIS.iter().copied().find(|a| a.key == key)
}

/// A decoded request with its header.
#[derive(Debug)]
pub struct DecodedRequest {
    /// The request header.
    pub header: RequestHeader,
    /// The API of the request.
    pub api_key: ApiKey,
    /// The request body.
    pub body: RequestKind,
}

/// Why a frame is not a request this broker can answer normally.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The frame is shorter than a request header.
    #[error("truncated request header ({0} bytes)")]
    Truncated(usize),
    /// The API key is not one Kafka defines.
    #[error("unknown API key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey {
        /// The key on the wire.
        api_key: i16,
        /// Correlation id of the request.
        correlation_id: i32,
    },
    /// A known API that this broker does not implement at all.
    #[error("API {api_key:?} is not implemented (correlation id {correlation_id})")]
    UnsupportedApi {
        /// The API.
        api_key: ApiKey,
        /// Correlation id of the request.
        correlation_id: i32,
    },
    /// The API is implemented but not at this version. For ApiVersions the caller answers
    /// with UNSUPPORTED_VERSION in a v0 response, as Kafka does.
    #[error("{api_key:?} v{version} is not supported (correlation id {correlation_id})")]
    UnsupportedVersion {
        /// The API.
        api_key: ApiKey,
        /// Requested version.
        version: i16,
        /// Correlation id of the request.
        correlation_id: i32,
    },
    /// Header or body could not be decoded.
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        api_key: ApiKey,
        /// Requested version.
        version: i16,
        /// Decoder message.
        reason: String,
    },
}

/// Decodes one frame (without its size prefix) into a request.
pub fn decode_request(mut frame: Bytes) -> Result<DecodedRequest, RequestError> {
    if frame.len() < 8 {
        return Err(RequestError::Truncated(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| RequestError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let range = supported_range(api_key).ok_or(RequestError::UnsupportedApi {
        api_key,
        correlation_id,
    })?;
    if version < range.min || version > range.max {
        return Err(RequestError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| RequestError::Malformed {
        api_key,
        version,
        reason,
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| malformed(format!("{e:#}")))?;
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| malformed(format!("{e:#}")))?;
    Ok(DecodedRequest {
        header,
        api_key,
        body,
    })
}

/// Why a response could not be encoded (a broker bug, never client input).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{version} response: {reason}")]
pub struct EncodeError {
    /// The API.
    pub api_key: ApiKey,
    /// Response version.
    pub version: i16,
    /// Encoder message.
    pub reason: String,
}

/// Encodes a response frame, size prefix included. A Fetch answer's records are referenced
/// by the frame, not copied ([`crate::response_frame`]).
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<ResponseFrame, EncodeError> {
    let err = |e: String| EncodeError {
        api_key,
        version,
        reason: e,
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(version);
    if let ResponseKind::Fetch(fetch) = body {
        let records: Vec<Bytes> = fetch
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.records.clone())
            .filter(|r| !r.is_empty())
            .collect();
        let shared_len: usize = records.iter().map(Bytes::len).sum();
        let size = fetch
            .compute_size(version)
            .map_err(|e| err(e.to_string()))?;
        let mut buf = SegmentedBuf::new(records, 64 + size.saturating_sub(shared_len));
        header
            .encode(&mut buf, header_version)
            .map_err(|e| err(e.to_string()))?;
        fetch
            .encode(&mut buf, version)
            .map_err(|e| err(e.to_string()))?;
        return Ok(buf.finish());
    }
    let mut buf = BytesMut::with_capacity(256);
    buf.extend_from_slice(&[0, 0, 0, 0]);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| err(e.to_string()))?;
    body.encode(&mut buf, version)
        .map_err(|e| err(e.to_string()))?;
    let size = (buf.len() - 4) as u32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(ResponseFrame::from_single(buf.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;

    fn frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")))
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn supported_ranges_are_within_the_library() {
        for a in SUPPORTED_APIS {
            let lib = a.key.valid_versions();
            assert!(a.min >= lib.min && a.max <= lib.max, "{:?}", a.key);
        }
    }

    #[test]
    fn decodes_every_version_of_api_versions_and_metadata() {
        for v in 0..=4 {
            let r = decode_request(frame(
                ApiKey::ApiVersions,
                v,
                &ApiVersionsRequest::default(),
            ))
            .unwrap();
            assert_eq!(r.header.correlation_id, 7);
            assert!(matches!(r.body, RequestKind::ApiVersions(_)));
        }
        for v in 0..=12 {
            let r =
                decode_request(frame(ApiKey::Metadata, v, &MetadataRequest::default())).unwrap();
            assert!(matches!(r.body, RequestKind::Metadata(_)));
        }
    }

    #[test]
    fn refuses_short_unknown_and_unsupported() {
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3, 0])),
            Err(RequestError::Truncated(3))
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 9])),
            Err(RequestError::UnknownApiKey {
                correlation_id: 9,
                ..
            })
        ));
        let mut v99 = BytesMut::from(&frame(ApiKey::Metadata, 4, &MetadataRequest::default())[..]);
        v99[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(v99.freeze()),
            Err(RequestError::UnsupportedVersion { version: 99, .. })
        ));
        let mut cut = BytesMut::from(&frame(ApiKey::Metadata, 4, &MetadataRequest::default())[..]);
        cut.truncate(cut.len() - 1);
        assert!(matches!(
            decode_request(cut.freeze()),
            Err(RequestError::Malformed { .. })
        ));
    }

    #[test]
    fn fetch_answers_encode_the_same_bytes_with_their_records_shared() {
        use kafka_protocol::messages::fetch_response::{
            FetchResponse, FetchableTopicResponse, PartitionData,
        };
        let big = Bytes::from(vec![5u8; 10_000]);
        let small = Bytes::from_static(&[1, 2, 3]);
        let part = |i: i32, r: &Bytes| {
            PartitionData::default()
                .with_partition_index(i)
                .with_records(Some(r.clone()))
        };
        let body = ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default().with_partitions(vec![
                part(0, &big),
                part(1, &small),
                part(2, &big),
            ]),
        ]));
        for version in [4, 11, 12, 16] {
            let frame = encode_response(ApiKey::Fetch, version, 9, &body).unwrap();
            let mut plain = BytesMut::new();
            plain.extend_from_slice(&[0, 0, 0, 0]);
            ResponseHeader::default()
                .with_correlation_id(9)
                .encode(&mut plain, ApiKey::Fetch.response_header_version(version))
                .unwrap();
            body.encode(&mut plain, version).unwrap();
            let size = (plain.len() - 4) as u32;
            plain[0..4].copy_from_slice(&size.to_be_bytes());
            assert_eq!(frame.to_bytes(), plain.freeze(), "v{version}");
            let shared = frame
                .segments()
                .iter()
                .filter(|s| s.as_ptr() == big.as_ptr())
                .count();
            assert_eq!(shared, 2, "v{version}: both large records referenced");
        }
    }
}
