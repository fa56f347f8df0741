//! A small Kafka client for the ops commands: one connection per broker, one request at a
//! time, every call bounded by the command's timeout. Requests go to the bootstrap broker,
//! to a broker by id (partition leaders, as Metadata names them) or to a group's
//! coordinator (FindCoordinator), as Kafka's admin client sends them.

use super::OpsError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest,
    MetadataResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response frame accepted (a Metadata answer of a very large cluster fits).
const MAX_FRAME_BYTES: usize = 256 << 20;

/// One broker connection.
struct Conn {
    addr: String,
    stream: TcpStream,
    next_id: i32,
}

impl Conn {
    async fn open(addr: &str, timeout: Duration) -> Result<Self, OpsError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| OpsError::Timeout(format!("connecting to {addr}")))?
            .map_err(|e| OpsError::Io(addr.to_string(), e))?;
        Ok(Self {
            addr: addr.to_string(),
            stream,
            next_id: 1,
        })
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp, OpsError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = encode(key, version, id, body)?;
        let io = |e| OpsError::Io(self.addr.clone(), e);
        self.stream.write_all(&frame).await.map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await.map_err(io)?;
        let len = i32::from_be_bytes(len);
        if len < 4 || len as usize > MAX_FRAME_BYTES {
            return Err(OpsError::Protocol(format!(
                "{}: a response frame of {len} bytes",
                self.addr
            )));
        }
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf).await.map_err(io)?;
        let mut buf = Bytes::from(buf);
        let bad = |e: anyhow::Error| OpsError::Protocol(format!("{key:?} v{version}: {e}"));
        let header =
            ResponseHeader::decode(&mut buf, key.response_header_version(version)).map_err(bad)?;
        if header.correlation_id != id {
            return Err(OpsError::Protocol(format!(
                "{}: correlation id {} answered for {id}",
                self.addr, header.correlation_id
            )));
        }
        let resp = Resp::decode(&mut buf, version).map_err(bad)?;
        if buf.has_remaining() {
            tracing::debug!(left = buf.remaining(), "response longer than decoded");
        }
        Ok(resp)
    }
}

/// A request frame: length, header, body.
fn encode<T: Encodable>(
    key: ApiKey,
    version: i16,
    id: i32,
    body: &T,
) -> Result<BytesMut, OpsError> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    let bad = |e: anyhow::Error| OpsError::Protocol(format!("{key:?} v{version}: {e}"));
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(id)
        .with_client_id(Some(StrBytes::from_static_str("inkless-ops")))
        .encode(&mut buf, key.request_header_version(version))
        .map_err(bad)?;
    body.encode(&mut buf, version).map_err(bad)?;
    let n = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&n.to_be_bytes());
    Ok(buf)
}

/// Connections to a cluster, opened from a bootstrap list.
pub struct Client {
    bootstrap: Conn,
    brokers: HashMap<i32, String>,
    conns: HashMap<i32, Conn>,
    timeout: Duration,
}

impl Client {
    /// Connects to the first reachable address of `bootstrap` (comma-separated host:port)
    /// and learns the brokers from its Metadata.
    pub async fn connect(bootstrap: &str, timeout: Duration) -> Result<Self, OpsError> {
        let mut last = OpsError::Usage("--bootstrap-server names no broker".into());
        for addr in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match Conn::open(addr, timeout).await {
                Ok(conn) => {
                    let mut client = Self {
                        bootstrap: conn,
                        brokers: HashMap::new(),
                        conns: HashMap::new(),
                        timeout,
                    };
                    client.metadata(Some(Vec::new())).await?;
                    return Ok(client);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Metadata (v12) of `topics` (`None`: every topic); remembers the brokers.
    pub async fn metadata(
        &mut self,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse, OpsError> {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        let topics = topics.map(|names| {
            names
                .into_iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(super::topic_name(&n))))
                .collect()
        });
        let req = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(false);
        let resp: MetadataResponse = self.call(ApiKey::Metadata, 12, &req).await?;
        for b in &resp.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        Ok(resp)
    }

    /// A request to the bootstrap broker.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp, OpsError> {
        let what = format!("{key:?} to {}", self.bootstrap.addr);
        bounded(self.timeout, what, self.bootstrap.call(key, version, body)).await
    }

    /// A request to broker `node`.
    pub async fn call_node<Req: Encodable, Resp: Decodable>(
        &mut self,
        node: i32,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp, OpsError> {
        if !self.conns.contains_key(&node) {
            let addr =
                self.brokers.get(&node).cloned().ok_or_else(|| {
                    OpsError::Protocol(format!("broker {node} is not in Metadata"))
                })?;
            let conn = Conn::open(&addr, self.timeout).await?;
            self.conns.insert(node, conn);
        }
        let timeout = self.timeout;
        let conn = self
            .conns
            .get_mut(&node)
            .ok_or_else(|| OpsError::Protocol(format!("no connection to broker {node}")))?;
        let what = format!("{key:?} to broker {node} ({})", conn.addr);
        let answer = bounded(timeout, what, conn.call(key, version, body)).await;
        if answer.is_err() {
            self.conns.remove(&node);
        }
        answer
    }

    /// The broker id coordinating consumer group `group` (FindCoordinator v3).
    pub async fn coordinator(&mut self, group: &str) -> Result<i32, OpsError> {
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        let resp: FindCoordinatorResponse = self.call(ApiKey::FindCoordinator, 3, &req).await?;
        super::kafka_error(
            &format!("finding the coordinator of group '{group}'"),
            resp.error_code,
            resp.error_message.as_ref().map(|m| m.as_str()),
        )?;
        let BrokerId(id) = resp.node_id;
        self.brokers
            .entry(id)
            .or_insert_with(|| format!("{}:{}", resp.host.as_str(), resp.port));
        Ok(id)
    }
}

/// `fut`, or [`OpsError::Timeout`] after `timeout`.
async fn bounded<T>(
    timeout: Duration,
    what: String,
    fut: impl std::future::Future<Output = Result<T, OpsError>>,
) -> Result<T, OpsError> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| OpsError::Timeout(what))?
}
