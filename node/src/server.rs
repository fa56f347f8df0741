//! The Kafka listener: accepts connections, frames requests, runs them and writes responses
//! in request order.
//!
//! A connection's requests take effect in the order they came, as with Kafka, which handles
//! one request of a connection at a time. Produce is the one exception to "one at a time":
//! its effect (the append) is submitted in arrival order and only its wait for durability
//! overlaps with later requests (up to `kafka.max_in_flight_requests_per_connection`), so a
//! producer that pipelines requests is not limited to one object flush per round trip. Every
//! other request first waits for every earlier request of the connection to finish, then
//! runs to its end before the next request is read; so a pipelined OffsetFetch sees the
//! OffsetCommits before it, and a ListOffsets the Produce before it. Responses leave in
//! request order. A frame over the limit, a truncated or undecodable request, an unknown API
//! or an unsupported version closes the connection with a log line (Kafka does the same),
//! except ApiVersions, which is answered with UNSUPPORTED_VERSION so the client can
//! downgrade.

use crate::handlers::{self, Ctx};
use bytes::BytesMut;
use inkless_protocol::frame::FrameDecoder;
use inkless_protocol::kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseKind,
};
use inkless_protocol::request::{decode_request, encode_response, DecodedRequest, RequestError};
use inkless_protocol::response_frame::ResponseFrame;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

/// Accepts connections until `shutdown` becomes true.
pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if open.load(Ordering::Relaxed) >= ctx.config.kafka.max_connections {
                        tracing::warn!(%peer, "connection refused: kafka.max_connections reached");
                        crate::telemetry::CONNECTIONS.refused.inc();
                        continue;
                    }
                    open.fetch_add(1, Ordering::Relaxed);
                    crate::telemetry::CONNECTIONS.accepted.inc();
                    crate::telemetry::CONNECTIONS.open.inc();
                    let (ctx, shutdown, open) = (ctx.clone(), shutdown.clone(), open.clone());
                    tokio::spawn(async move {
                        connection(stream, peer, ctx, shutdown).await;
                        open.fetch_sub(1, Ordering::Relaxed);
                        crate::telemetry::CONNECTIONS.open.dec();
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// A request being processed: `Ok(None)` sends nothing (acks=0), `Err` closes the connection.
type Pending = JoinHandle<Result<Option<ResponseFrame>, ()>>;

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) =
        mpsc::channel::<Pending>(ctx.config.kafka.max_in_flight_requests_per_connection);
    let writer = tokio::spawn(async move {
        while let Some(pending) = rx.recv().await {
            match pending.await {
                Ok(Ok(Some(frame))) => {
                    if let Err(e) = write_frame(&mut wr, &frame).await {
                        tracing::debug!(%peer, error = %e, "write failed; closing");
                        return;
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(())) => return,
                Err(e) => {
                    tracing::error!(%peer, error = %e, "request task failed; closing connection");
                    return;
                }
            }
        }
        let _ = wr.shutdown().await;
    });
    let decoder = FrameDecoder::new(ctx.config.kafka.max_frame_bytes);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let lapses = ctx.node.lease_lapses();
    // One permit per produce whose wait is in flight; a request of any other kind takes all
    // of them, that is, waits until every earlier produce was answered.
    let produce_slots = ctx
        .config
        .kafka
        .max_in_flight_requests_per_connection
        .max(1) as u32;
    let produces = Arc::new(Semaphore::new(produce_slots as usize));
    'read: loop {
        loop {
            // Requests read after this node's lease lapsed and was renewed may have waited
            // through the lapse (a frozen process reads them when it resumes); by then their
            // partitions may have moved and the client may have given up on them. Close
            // without serving them: the client reconnects and asks for metadata again
            // (ADR 0009). While the lease is merely invalid, handlers refuse on their own.
            if ctx.node.lease_lapses() != lapses && !buf.is_empty() {
                tracing::info!(%peer, "lease lapsed since this connection opened; closing it");
                break 'read;
            }
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection");
                    break 'read;
                }
            };
            let task = match decode_request(frame) {
                Ok(DecodedRequest {
                    header,
                    api_key,
                    body: RequestKind::Produce(produce),
                }) => {
                    // Submitted here, in arrival order; only the wait runs concurrently.
                    let started = Instant::now();
                    // Held until the append is answered: later non-produce requests wait.
                    let Ok(slot) = produces.clone().acquire_owned().await else {
                        break 'read;
                    };
                    let version = header.request_api_version;
                    let submitted = handlers::produce::submit(&ctx, produce, version).await;
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        let body = submitted.finish().await.map(ResponseKind::Produce);
                        drop(slot);
                        let slow = Some(SLOW_REQUEST);
                        answered(&ctx, api_key, &header, started, body.as_ref(), peer, slow);
                        encode(api_key, &header, body, peer)
                    })
                }
                Ok(req) => {
                    // After every earlier request of the connection, and before the next.
                    let Ok(earlier) = produces.clone().acquire_many_owned(produce_slots).await
                    else {
                        break 'read;
                    };
                    let answered = tokio::select! {
                        r = respond(&ctx, req, peer) => r,
                        _ = shutdown.changed() => break 'read,
                    };
                    drop(earlier);
                    tokio::spawn(async move { answered })
                }
                Err(RequestError::UnsupportedVersion {
                    api_key: ApiKey::ApiVersions,
                    correlation_id,
                    version,
                }) => {
                    tracing::debug!(%peer, version, "ApiVersions version unsupported; answering v0");
                    tokio::spawn(async move {
                        let body = ResponseKind::ApiVersions(
                            handlers::api_versions::unsupported_version(),
                        );
                        encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
                            .map(Some)
                            .map_err(|e| tracing::error!(error = %e, "response encoding failed"))
                    })
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection");
                    break 'read;
                }
            };
            if tx.send(task).await.is_err() {
                break 'read;
            }
        }
        tokio::select! {
            read = rd.read_buf(&mut buf) => match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    break;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(tx);
    let _ = writer.await;
}

async fn respond(
    ctx: &Ctx,
    req: DecodedRequest,
    peer: SocketAddr,
) -> Result<Option<ResponseFrame>, ()> {
    let (api_key, header) = (req.api_key, req.header.clone());
    let slow = slow_after(&req.body);
    let started = Instant::now();
    let body = handlers::handle(ctx, req, peer).await;
    answered(ctx, api_key, &header, started, body.as_ref(), peer, slow);
    encode(api_key, &header, body, peer)
}

/// A request that took this much longer than it may wait by design is logged (clients time
/// out at 30-60 s).
const SLOW_REQUEST: Duration = Duration::from_secs(15);

/// When a request counts as slow: a Fetch may long-poll for its max wait first; JoinGroup
/// and SyncGroup wait for the other members by design (never).
fn slow_after(req: &RequestKind) -> Option<Duration> {
    match req {
        RequestKind::Fetch(f) => {
            Some(SLOW_REQUEST + Duration::from_millis(f.max_wait_ms.max(0) as u64))
        }
        RequestKind::JoinGroup(_) | RequestKind::SyncGroup(_) => None,
        _ => Some(SLOW_REQUEST),
    }
}

/// Records a handled request in the metrics, and logs it when it took longer than `slow`.
fn answered(
    ctx: &Ctx,
    api_key: ApiKey,
    header: &RequestHeader,
    started: Instant,
    body: Option<&ResponseKind>,
    peer: SocketAddr,
    slow: Option<Duration>,
) {
    let took = started.elapsed();
    ctx.requests.observe(api_key, took);
    ctx.requests.count_errors(api_key, body);
    if slow.is_some_and(|limit| took > limit) {
        tracing::warn!(
            %peer,
            api = ?api_key,
            correlation_id = header.correlation_id,
            took_ms = took.as_millis() as u64,
            "slow request"
        );
    }
}

fn encode(
    api_key: ApiKey,
    header: &RequestHeader,
    body: Option<ResponseKind>,
    peer: SocketAddr,
) -> Result<Option<ResponseFrame>, ()> {
    let Some(body) = body else {
        return Ok(None);
    };
    encode_response(
        api_key,
        header.request_api_version,
        header.correlation_id,
        &body,
    )
    .map(Some)
    .map_err(|e| tracing::error!(%peer, error = %e, "response encoding failed; closing"))
}

/// Writes a frame's segments with vectored writes: a Fetch answer's records go from the
/// block cache to the socket without being copied into one buffer first.
async fn write_frame<W: AsyncWrite + Unpin>(
    wr: &mut W,
    frame: &ResponseFrame,
) -> std::io::Result<()> {
    /// Segments handed to one write (Linux takes up to 1024).
    const MAX_SLICES: usize = 64;
    let segments = frame.segments();
    let (mut next, mut within) = (0usize, 0usize);
    while next < segments.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&segments[next][within..])
            .chain(segments[next + 1..].iter().map(|s| &s[..]))
            .take(MAX_SLICES)
            .map(IoSlice::new)
            .collect();
        let mut written = wr.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while next < segments.len() && written >= segments[next].len() - within {
            written -= segments[next].len() - within;
            (next, within) = (next + 1, 0);
        }
        within += written;
    }
    Ok(())
}
