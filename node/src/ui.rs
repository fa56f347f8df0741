//! The live web view of the cluster (`GET /ui` of the admin endpoint): one HTML page with
//! its script, embedded in the binary, that polls this node's `/cluster` and
//! `/cluster/actors` every second (this node asks the other live nodes for their trees, so
//! the browser talks to one origin) and draws each node's supervision tree (kind, name,
//! status, restarts, mailbox length), the partitions and groups each node runs by AZ, and a
//! search box filtering actors by name (`/ui?q=text` fills it). No external resources.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page (node/assets/ui.html).
const PAGE: &str = include_str!("../assets/ui.html");

/// `GET /ui`.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}
