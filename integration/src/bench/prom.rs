//! Scrapes a Prometheus text endpoint over plain HTTP/1.1 and picks the
//! counters whose names contain a substring (the benchmark uses
//! `object_store`), so their deltas over the run can be reported.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest scrape accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Fetches `url` (http only) and returns the body.
pub async fn http_get(url: &str, timeout: Duration) -> Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("parsing {url}"))?;
    if parsed.scheme() != "http" {
        bail!("only http:// metrics URLs are supported");
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| anyhow!("no host in {url}"))?
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let mut path = parsed.path().to_owned();
    if let Some(q) = parsed.query() {
        path.push('?');
        path.push_str(q);
    }
    let io = async {
        let mut s = TcpStream::connect((host.as_str(), port)).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        (&mut s)
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut buf)
            .await?;
        Ok::<_, std::io::Error>(buf)
    };
    let raw = tokio::time::timeout(timeout, io)
        .await
        .map_err(|_| anyhow!("timed out fetching {url}"))?
        .with_context(|| format!("fetching {url}"))?;
    if raw.len() > MAX_BODY {
        bail!("response from {url} exceeds {MAX_BODY} bytes");
    }
    parse_http_response(&raw).with_context(|| format!("response from {url}"))
}

fn parse_http_response(raw: &[u8]) -> Result<String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).context("headers are not UTF-8")?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        bail!("HTTP status line '{status}'");
    }
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    String::from_utf8(body).context("body is not UTF-8")
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunk header"))?;
        let size_text = std::str::from_utf8(&body[..eol]).context("chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| anyhow!("bad chunk size '{size_text}'"))?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// Counter samples keyed by series (`name{labels}`), for metric names
/// containing `needle`. A sample counts when its family is declared a
/// counter, is the `_count`/`_sum` of a histogram or summary, or is untyped
/// and named `*_total`.
pub fn counters(text: &str, needle: &str) -> BTreeMap<String, f64> {
    let mut types: HashMap<&str, &str> = HashMap::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                types.insert(name, kind);
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match split_sample(line) {
            Some(x) => x,
            None => continue,
        };
        let name = series.split('{').next().unwrap_or(series);
        if !name.contains(needle) {
            continue;
        }
        let is_counter = if let Some(kind) = types.get(name) {
            *kind == "counter"
        } else if let Some(base) = name.strip_suffix("_total") {
            types.get(base).is_none_or(|k| *k == "counter")
        } else if let Some(base) = name
            .strip_suffix("_count")
            .or_else(|| name.strip_suffix("_sum"))
        {
            matches!(types.get(base), Some(&"histogram") | Some(&"summary"))
        } else {
            false
        };
        if is_counter {
            out.insert(series.to_owned(), value);
        }
    }
    out
}

/// Splits `name{labels} value [timestamp]` into series and value.
fn split_sample(line: &str) -> Option<(&str, f64)> {
    let series_end = if let Some(open) = line.find('{') {
        open + line[open..].find('}')? + 1
    } else {
        line.find(char::is_whitespace)?
    };
    let series = &line[..series_end];
    let value = line[series_end..].split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((series, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_object_store_counters() {
        let text = "\
# HELP inkless_object_store_requests_total PUTs and GETs
# TYPE inkless_object_store_requests_total counter
inkless_object_store_requests_total{op=\"put\"} 12
inkless_object_store_requests_total{op=\"get\"} 3 1700000000
# TYPE inkless_object_store_inflight gauge
inkless_object_store_inflight 2
# TYPE inkless_object_store_put_seconds histogram
inkless_object_store_put_seconds_bucket{le=\"0.1\"} 4
inkless_object_store_put_seconds_sum 0.5
inkless_object_store_put_seconds_count 12
object_store_bytes_total 1e6
other_total 5
";
        let c = counters(text, "object_store");
        assert_eq!(
            c.get("inkless_object_store_requests_total{op=\"put\"}"),
            Some(&12.0)
        );
        assert_eq!(
            c.get("inkless_object_store_requests_total{op=\"get\"}"),
            Some(&3.0)
        );
        assert_eq!(c.get("inkless_object_store_put_seconds_count"), Some(&12.0));
        assert_eq!(c.get("object_store_bytes_total"), Some(&1e6));
        assert!(!c.contains_key("inkless_object_store_inflight"));
        assert!(!c.contains_key("inkless_object_store_put_seconds_bucket{le=\"0.1\"}"));
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn parses_chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(parse_http_response(raw).unwrap(), "hello world");
        let plain = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\na 1\n";
        assert_eq!(parse_http_response(plain).unwrap(), "a 1\n");
        assert!(parse_http_response(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
    }
}
