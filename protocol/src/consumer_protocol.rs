//! The consumer protocol's embedded bytes: the subscription a classic-protocol consumer sends
//! as its JoinGroup metadata (protocol type `consumer`). The coordinator reads the topics from
//! it to know what the group consumes (OffsetDelete refuses those topics).

use bytes::Buf;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::{Decodable, Message};

/// Why subscription bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// Too short to hold the version.
    #[error("subscription too short")]
    Truncated,
    /// A negative version.
    #[error("invalid subscription version {0}")]
    Version(i16),
    /// The body does not decode.
    #[error("malformed subscription: {0}")]
    Malformed(String),
}

/// The topics of a consumer-protocol subscription. A version newer than this broker knows
/// is read as the newest it knows, as Kafka does: later versions only add fields at the end.
pub fn subscription_topics(metadata: &[u8]) -> Result<Vec<String>, SubscriptionError> {
    let mut buf = metadata;
    if buf.remaining() < 2 {
        return Err(SubscriptionError::Truncated);
    }
    let version = buf.get_i16();
    if version < 0 {
        return Err(SubscriptionError::Version(version));
    }
    let version = version.min(ConsumerProtocolSubscription::VERSIONS.max);
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version)
        .map_err(|e| SubscriptionError::Malformed(e.to_string()))?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encoded(version: i16, topics: &[&str]) -> Vec<u8> {
        let sub = ConsumerProtocolSubscription::default().with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.to_string()))
                .collect(),
        );
        let mut out = bytes::BytesMut::new();
        out.put_i16(version);
        sub.encode(&mut out, version.min(3)).unwrap();
        out.to_vec()
    }

    #[test]
    fn reads_the_topics_of_every_version() {
        for v in 0..=3 {
            assert_eq!(
                subscription_topics(&encoded(v, &["a", "orders"])).unwrap(),
                ["a", "orders"]
            );
        }
        // Newer than known: read as the newest known version.
        let mut newer = encoded(3, &["x"]);
        newer[1] = 9;
        assert_eq!(subscription_topics(&newer).unwrap(), ["x"]);
    }

    #[test]
    fn refuses_bad_bytes() {
        assert_eq!(subscription_topics(&[0]), Err(SubscriptionError::Truncated));
        assert_eq!(
            subscription_topics(&[0xff, 0xff]),
            Err(SubscriptionError::Version(-1))
        );
        let mut cut = encoded(1, &["orders"]);
        cut.truncate(8);
        assert!(matches!(
            subscription_topics(&cut),
            Err(SubscriptionError::Malformed(_))
        ));
    }
}
