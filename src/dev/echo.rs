//! The built-in echo upstream of `tollgate dev`: it answers every request `200 application/json`
//! with what it received — method, path, query, headers and the body's length — so a developer sees
//! exactly what tollgate forwarded (identity headers `X-AGW-*`, `X-Forwarded-*`, what was stripped).
//! It sits behind the gateway, where a real upstream would.

use std::io;
use std::net::SocketAddr;

use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::listener::serve_http;
use crate::body::{ProxyBody, full};

/// A running echo upstream; the server and its connections stop on drop.
#[derive(Debug)]
pub struct EchoUpstream {
    addr: SocketAddr,
    server: JoinHandle<()>,
}

// === impl EchoUpstream ===

impl EchoUpstream {
    /// Serves on `listener` (which the caller bound, e.g. on 127.0.0.1:0) in a background task.
    /// Must be called within a tokio runtime.
    pub fn start(listener: TcpListener) -> io::Result<EchoUpstream> {
        let addr = listener.local_addr()?;
        let server = tokio::spawn(serve(listener));
        Ok(EchoUpstream { addr, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, ready for an `[[api]] upstream`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Answers every request on `listener` with its echo, until this future is dropped or aborted.
pub async fn serve(listener: TcpListener) {
    serve_http(listener, echo).await;
}

async fn echo(req: Request<ProxyBody>) -> Response<ProxyBody> {
    let (parts, mut body) = req.into_parts();
    // Drained frame by frame and only counted: the echo never holds a body, however large.
    let mut body_bytes: u64 = 0;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            body_bytes += data.len() as u64;
        }
    }
    let answer = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers_as_json(&parts.headers),
        "body_bytes": body_bytes,
    });
    let mut text = serde_json::to_string_pretty(&answer).unwrap_or_default();
    text.push('\n');
    let mut response = Response::new(full(text));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Each header name (lowercase) to its value, or to the array of its values when repeated; values
/// that are not UTF-8 are shown lossily.
fn headers_as_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let values: Vec<Value> = headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let value = match <[Value; 1]>::try_from(values) {
            Ok([single]) => single,
            Err(many) => Value::Array(many),
        };
        map.insert(name.as_str().to_owned(), value);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn repeated_headers_become_arrays_and_single_ones_strings() {
        let mut headers = HeaderMap::new();
        headers.append("x-agw-client_id", HeaderValue::from_static("orders-app"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("127.0.0.1"));
        headers.append("x-bytes", HeaderValue::from_bytes(b"a\xffb").unwrap());
        assert_eq!(
            headers_as_json(&headers),
            json!({
                "x-agw-client_id": "orders-app",
                "x-forwarded-for": ["10.0.0.1", "127.0.0.1"],
                "x-bytes": "a\u{fffd}b",
            })
        );
    }
}
