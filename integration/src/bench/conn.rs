//! A minimal Kafka wire-protocol connection for the benchmark.
//!
//! Frames are a 4-byte big-endian length followed by a request (or
//! response) header and body, encoded with the `kafka-protocol` crate.
//! [`Connection`] does simple request/response calls; the producer splits
//! the socket ([`Connection::into_split`]) so it can pipeline requests and
//! read the in-order responses on another task with [`read_frame`] and
//! [`decode_response`].

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Client id sent in every request header.
pub const CLIENT_ID: &str = "inkless-bench";

/// Largest response frame accepted (guards against garbage length prefixes).
const MAX_FRAME_BYTES: usize = 512 * 1024 * 1024;

/// Kafka error code UNSUPPORTED_VERSION.
const UNSUPPORTED_VERSION: i16 = 35;

/// Version ranges the broker advertised in its ApiVersions response.
#[derive(Debug, Clone, Default)]
pub struct BrokerVersions {
    ranges: HashMap<i16, (i16, i16)>,
}

impl BrokerVersions {
    /// Highest version supported by the broker, by this client library
    /// (`R::VERSIONS`) and within `[min, max]`.
    pub fn pick<R: Request>(&self, min: i16, max: i16) -> Result<i16> {
        let (bmin, bmax) = *self
            .ranges
            .get(&R::KEY)
            .ok_or_else(|| anyhow!("broker does not support API key {}", R::KEY))?;
        let range = R::VERSIONS
            .intersect(&VersionRange {
                min: bmin,
                max: bmax,
            })
            .intersect(&VersionRange { min, max });
        if range.is_empty() {
            bail!(
                "no common version for API key {}: broker {bmin}..{bmax}, client {}, allowed {min}..{max}",
                R::KEY,
                R::VERSIONS
            );
        }
        Ok(range.max)
    }
}

/// Encodes one request frame (length prefix, header, body).
pub fn encode_request<R: Request>(correlation_id: i32, version: i16, req: &R) -> Result<Bytes> {
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str(CLIENT_ID));
    let header_version = R::header_version(version);
    let size = header.compute_size(header_version)? + req.compute_size(version)?;
    let len = i32::try_from(size).context("request too large")?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(len);
    header.encode(&mut buf, header_version)?;
    req.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Decodes a response frame (without its length prefix), returning the
/// correlation id and the body.
pub fn decode_response<R: Request>(mut frame: Bytes, version: i16) -> Result<(i32, R::Response)> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version)
        .with_context(|| format!("decoding response header for API key {}", R::KEY))?;
    let body = R::Response::decode(&mut frame, version)
        .with_context(|| format!("decoding response v{version} for API key {}", R::KEY))?;
    Ok((header.correlation_id, body))
}

/// Reads one length-prefixed frame and returns it without the prefix.
pub async fn read_frame<Rd: AsyncRead + Unpin>(reader: &mut Rd) -> Result<Bytes> {
    let mut len = [0u8; 4];
    reader
        .read_exact(&mut len)
        .await
        .context("reading frame length")?;
    let len = i32::from_be_bytes(len);
    let len = usize::try_from(len).map_err(|_| anyhow!("negative frame length {len}"))?;
    if len > MAX_FRAME_BYTES {
        bail!("frame length {len} exceeds limit {MAX_FRAME_BYTES}");
    }
    // read_buf into spare capacity: no zeroing of large fetch responses.
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let want = (len - buf.len()) as u64;
        let n = (&mut *reader)
            .take(want)
            .read_buf(&mut buf)
            .await
            .context("reading frame body")?;
        if n == 0 {
            bail!("connection closed in the middle of a frame");
        }
    }
    Ok(buf.freeze())
}

/// One TCP connection to a broker, used for request/response calls.
pub struct Connection {
    stream: TcpStream,
    next_correlation_id: i32,
    timeout: Duration,
    /// What the broker advertised in ApiVersions during [`Connection::connect`].
    pub versions: BrokerVersions,
}

impl Connection {
    /// Connects, disables Nagle and performs the ApiVersions handshake.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("timed out connecting to {addr}"))?
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = Connection {
            stream,
            next_correlation_id: 1,
            timeout,
            versions: BrokerVersions::default(),
        };
        conn.handshake().await?;
        Ok(conn)
    }

    async fn handshake(&mut self) -> Result<()> {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str(CLIENT_ID);
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let resp: ApiVersionsResponse = match self.call(&req, 3).await {
            Ok(r) if r.error_code != UNSUPPORTED_VERSION => r,
            // The broker answers an unsupported ApiVersions version with a
            // v0 response; retry with v0, which every broker understands.
            _ => self.call(&ApiVersionsRequest::default(), 0).await?,
        };
        if resp.error_code != 0 {
            bail!("ApiVersions failed with error code {}", resp.error_code);
        }
        self.versions.ranges = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// Takes the next correlation id.
    pub fn next_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        id
    }

    /// Sends one request and waits for its response (bounded by the
    /// connection timeout).
    pub async fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let correlation_id = self.next_correlation_id();
        let frame = encode_request(correlation_id, version, req)?;
        let timeout = self.timeout;
        let stream = &mut self.stream;
        let io = async move {
            stream.write_all(&frame).await.context("writing request")?;
            read_frame(stream).await
        };
        let frame = tokio::time::timeout(timeout, io).await.map_err(|_| {
            anyhow!(
                "timed out after {timeout:?} waiting for {:?} response",
                ApiKey::try_from(R::KEY)
            )
        })??;
        let (got, resp) = decode_response::<R>(frame, version)?;
        if got != correlation_id {
            bail!("correlation id mismatch: sent {correlation_id}, got {got}");
        }
        Ok(resp)
    }

    /// Splits into read and write halves for pipelining; also returns the
    /// next correlation id to use.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf, i32) {
        let (r, w) = self.stream.into_split();
        (r, w, self.next_correlation_id)
    }
}
