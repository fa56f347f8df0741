//! The admin HTTP endpoint (`admin.listen`), an axum router: `GET /metrics` (the node's
//! registry, [`crate::telemetry`], in Prometheus text format, or OpenMetrics when the scraper
//! asks for it), `GET /actors` (the node's live supervision tree as JSON: id, parent, kind,
//! name, status, restarts, mailbox length), `GET /cluster` (every lease row in the metadata
//! store, with its AZ, addresses and age, and the live set this node acts on),
//! `GET /cluster/actors` (the supervision tree of every live node, fetched from their admin
//! endpoints), `POST` and `DELETE /cluster/drain/{node}` (mark a node draining or take the
//! mark off, ADR 0021), `GET /ui` (the live web view of the cluster, [`crate::ui`]) and
//! `GET /health`. One request per connection (no keep-alive), request head capped at 8 KiB
//! and read within 5 s.

use crate::handlers::Ctx;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use inkless_storage::metrics::prometheus_client::encoding::{prometheus_text, text};
use inkless_storage::metrics::prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const MAX_HEAD_BYTES: usize = 8 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const TEXT: &str = "text/plain; version=0.0.4";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers share.
#[derive(Clone)]
struct Admin {
    ctx: Arc<Ctx>,
    registry: Arc<Registry>,
}

/// The routes (see the module documentation).
fn router(admin: Admin) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/health",
            get(|| async { text_response(StatusCode::OK, "ok\n".into()) }),
        )
        .route("/actors", get(actors))
        .route("/cluster", get(cluster))
        .route("/cluster/actors", get(cluster_actors))
        .route("/cluster/drain/{node}", post(drain).delete(undrain))
        .route("/ui", get(crate::ui::page))
        .fallback(|| async { text_response(StatusCode::NOT_FOUND, "not found\n".into()) })
        .with_state(admin)
}

/// Serves admin requests until the task is dropped.
pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>) {
    let registry = Arc::new(crate::telemetry::registry(ctx.clone()));
    let app = router(Admin { ctx, registry });
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(MAX_HEAD_BYTES)
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin request failed");
            }
        });
    }
}

fn text_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, TEXT)], body).into_response()
}

fn json_response(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The registry, as OpenMetrics if the scraper accepts it, else Prometheus text.
async fn metrics(State(a): State<Admin>, headers: HeaderMap) -> Response {
    crate::telemetry::before_scrape(&a.ctx);
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let mut body = String::new();
    let (encoded, content_type) = if openmetrics {
        (text::encode(&mut body, &a.registry), OPENMETRICS)
    } else {
        (prometheus_text::encode(&mut body, &a.registry), TEXT)
    };
    match encoded {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn actors(State(a): State<Admin>) -> Response {
    match serde_json::to_string_pretty(&actor_tree(&a.ctx)) {
        Ok(json) => json_response(json),
        Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn cluster(State(a): State<Admin>) -> Response {
    match cluster_view(&a.ctx).await {
        Ok(json) => json_response(json),
        Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

async fn cluster_actors(State(a): State<Admin>) -> Response {
    json_response(all_actor_trees(&a.ctx).await)
}

/// `POST /cluster/drain/{node}`: marks the node draining, unless that would leave no live
/// node to place on (409 Conflict).
async fn drain(State(a): State<Admin>, Path(node): Path<i32>) -> Response {
    let live = a.ctx.node.live();
    let others = live.candidates().filter(|n| n.node_id != node).count();
    if others == 0 {
        return text_response(
            StatusCode::CONFLICT,
            format!("node {node} is the last live node that is not draining\n"),
        );
    }
    set_draining(&a.ctx, node, true).await
}

/// `DELETE /cluster/drain/{node}`: takes the drain mark off the node.
async fn undrain(State(a): State<Admin>, Path(node): Path<i32>) -> Response {
    set_draining(&a.ctx, node, false).await
}

async fn set_draining(ctx: &Ctx, node: i32, draining: bool) -> Response {
    if node < 0 {
        return text_response(
            StatusCode::BAD_REQUEST,
            format!("{node} is not a node id\n"),
        );
    }
    match ctx.node.set_node_draining(node, draining).await {
        Ok(changed) => {
            tracing::info!(
                node,
                draining,
                changed,
                "drain mark set through the admin endpoint"
            );
            json_response(
                serde_json::json!({"node_id": node, "draining": draining, "changed": changed})
                    .to_string(),
            )
        }
        Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// What `/cluster` answers.
#[derive(serde::Serialize)]
struct ClusterView {
    /// The node that answered.
    node_id: i32,
    /// Whether it counts itself live (its lease is current).
    me_live: bool,
    /// Node ids of the live set it places actors by.
    live: Vec<i32>,
    /// Every lease row in the metadata store.
    nodes: Vec<inkless_storage::metadata::NodeStatus>,
    /// Node ids marked draining, live or not (ADR 0021).
    draining: Vec<i32>,
}

async fn cluster_view(ctx: &Ctx) -> Result<String, String> {
    let live = ctx.node.live();
    let nodes = ctx.node.store().nodes().await.map_err(|e| e.to_string())?;
    let draining = ctx
        .node
        .store()
        .draining_nodes()
        .await
        .map_err(|e| e.to_string())?;
    let view = ClusterView {
        node_id: live.me,
        me_live: live.me_live,
        live: live.nodes.iter().map(|n| n.node_id).collect(),
        nodes,
        draining,
    };
    serde_json::to_string_pretty(&view).map_err(|e| e.to_string())
}

/// This node's actors, partitions with the name of their topic (`topic`) when the catalog
/// knows it.
fn actor_tree(ctx: &Ctx) -> Vec<serde_json::Value> {
    ctx.node
        .actor_tree()
        .into_iter()
        .map(|a| {
            let topic = (a.kind == "partition")
                .then(|| a.name.split('/').nth(1)?.parse::<uuid::Uuid>().ok())
                .flatten()
                .and_then(|id| ctx.catalog.by_id(&id))
                .map(|t| t.record.name.clone());
            let mut v = serde_json::to_value(a).unwrap_or_default();
            if let (Some(topic), Some(o)) = (topic, v.as_object_mut()) {
                o.insert("topic".into(), topic.into());
            }
            v
        })
        .collect()
}

/// Every live node's `/actors`, by node id; a node that does not answer gets its error.
async fn all_actor_trees(ctx: &Ctx) -> String {
    let live = ctx.node.live();
    let mut trees = serde_json::Map::new();
    for n in &live.nodes {
        let value = if n.node_id == live.me {
            serde_json::Value::Array(actor_tree(ctx))
        } else if n.admin_addr.is_empty() {
            serde_json::json!({"error": "no admin endpoint"})
        } else {
            match http_get(&n.admin_addr, "/actors").await {
                Ok(body) => serde_json::from_str(&body)
                    .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            }
        };
        trees.insert(n.node_id.to_string(), value);
    }
    serde_json::Value::Object(trees).to_string()
}

/// A GET of another node's admin endpoint (`addr` is host:port); the body of a 2xx answer.
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    http_call(reqwest::Method::GET, addr, path).await
}

/// A request with `method` to a node's admin endpoint; the body of a 2xx answer, or an
/// error carrying the status and the body of any other.
pub async fn http_call(method: reqwest::Method, addr: &str, path: &str) -> std::io::Result<String> {
    let client = reqwest::Client::builder()
        .timeout(HEAD_TIMEOUT)
        .build()
        .map_err(std::io::Error::other)?;
    let response = client
        .request(method, format!("http://{addr}{path}"))
        .send()
        .await
        .map_err(|e| std::io::Error::other(format!("{addr}{path}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(std::io::Error::other(format!(
            "{addr}{path}: {status}: {}",
            body.trim()
        )));
    }
    response
        .text()
        .await
        .map_err(|e| std::io::Error::other(format!("{addr}{path}: {e}")))
}
