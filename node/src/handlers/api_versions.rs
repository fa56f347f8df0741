//! ApiVersions: advertises exactly [`SUPPORTED_APIS`], and the `transaction.version`
//! feature at level 2 (KIP-890: clients that know it add partitions through Produce v12
//! and TxnOffsetCommit v5, and EndTxn v5 bumps the epoch of every transaction; ADR 0018).

use inkless_protocol::kafka_protocol::error::ResponseError;
use inkless_protocol::kafka_protocol::messages::api_versions_response::{
    ApiVersion, ApiVersionsResponse, FinalizedFeatureKey, SupportedFeatureKey,
};
use inkless_protocol::kafka_protocol::protocol::StrBytes;
use inkless_protocol::request::SUPPORTED_APIS;

/// Kafka's feature name of the transaction protocol version.
const TRANSACTION_VERSION: &str = "transaction.version";
/// The transaction protocol version this broker runs (KIP-890 part 2).
const TRANSACTION_VERSION_LEVEL: i16 = 2;
/// Epoch of the finalized features; they never change while a node runs.
const FINALIZED_FEATURES_EPOCH: i64 = 1;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect()
}

/// The normal answer.
pub fn handle() -> ApiVersionsResponse {
    let name = StrBytes::from_static_str(TRANSACTION_VERSION);
    ApiVersionsResponse::default()
        .with_api_keys(api_keys())
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(name.clone())
            .with_min_version(0)
            .with_max_version(TRANSACTION_VERSION_LEVEL)])
        .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(name)
            .with_min_version_level(TRANSACTION_VERSION_LEVEL)
            .with_max_version_level(TRANSACTION_VERSION_LEVEL)])
}

/// The answer to an ApiVersions request of a version we do not support (sent as v0).
pub fn unsupported_version() -> ApiVersionsResponse {
    handle().with_error_code(ResponseError::UnsupportedVersion.code())
}
