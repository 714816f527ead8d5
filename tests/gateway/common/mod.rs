//! Shared pieces of the gateway integration tests: the recording upstream, the fault-injecting fake
//! provider, the real provider, the gateway process, JWT minting with the fixture keys, a real
//! PostgreSQL server (and temp SQLite files) for the registry's stores, and the assertions and config
//! every capability test repeats (RFC 6750 §3 refusals, a base config).

pub mod certs;
pub mod fake_idp;
pub mod fake_okta;
pub mod gateway;
pub mod grpc;
pub mod idp;
pub mod jwt;
pub mod postgres;
pub mod provider;
pub mod upstream;
pub mod websocket;

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use self::gateway::Gateway;
use self::upstream::Upstream;

/// A client for talking to the gateway and the test servers: no proxy from the environment (tests
/// only talk to 127.0.0.1), a 10 s timeout, and redirects not followed (an upstream's 3xx must reach
/// the test as it was sent).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("building the test HTTP client")
}

/// The `WWW-Authenticate` header, if any (the first one).
pub fn www_authenticate(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("www-authenticate")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Asserts a refusal (`assert_refusal`) and that the upstream was NOT reached; returns the body.
pub async fn assert_rejected(
    resp: reqwest::Response,
    status: u16,
    error: Option<&str>,
    upstream: &Upstream,
) -> Value {
    let body = assert_refusal(resp, status, error).await;
    upstream.assert_not_reached();
    body
}

/// Asserts a refusal, without looking at the upstream (a 504 has reached it):
/// - the status;
/// - for 401 and 403, a `WWW-Authenticate` starting `Bearer realm="`, carrying `error="<error>"` when
///   `error` is given and no `error=` at all when it is not (RFC 6750 §3.1: no token, no error code);
///   except a refused CORS preflight (403 `cors_refused`), which is about no credential and must
///   carry no challenge;
/// - for 503 `temporarily_unavailable`, a `Retry-After`;
/// - with `error`, a JSON body whose `error` equals it and whose `error_description` is a non-empty
///   string.
///
/// Returns the JSON body (`Null` when `error` is `None` and the body is not JSON).
pub async fn assert_refusal(resp: reqwest::Response, status: u16, error: Option<&str>) -> Value {
    let got = resp.status().as_u16();
    let challenge = www_authenticate(&resp);
    let retry_after = resp.headers().get("retry-after").cloned();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let text = resp.text().await.expect("reading the refusal body");
    let context = format!(
        "status {got}, www-authenticate {challenge:?}, content-type {content_type:?}, body {text:?}"
    );

    assert_eq!(got, status, "expected status {status}; got {context}");
    if status == 403 && error == Some("cors_refused") {
        assert!(
            challenge.is_none(),
            "a refused preflight carries no challenge; got {context}"
        );
    } else if status == 401 || status == 403 {
        let challenge = challenge
            .as_deref()
            .unwrap_or_else(|| panic!("a {status} needs WWW-Authenticate; got {context}"));
        assert!(
            challenge.starts_with("Bearer realm=\""),
            "WWW-Authenticate must start with `Bearer realm=\"`; got {context}"
        );
        match error {
            Some(error) => assert!(
                challenge.contains(&format!("error=\"{error}\"")),
                "WWW-Authenticate must carry error=\"{error}\"; got {context}"
            ),
            None => assert!(
                !challenge.contains("error="),
                "a challenge without error must not carry error=; got {context}"
            ),
        }
    }
    if status == 503 && error == Some("temporarily_unavailable") {
        assert!(
            retry_after.is_some(),
            "a 503 needs Retry-After; got {context}"
        );
    }

    let Some(error) = error else {
        return serde_json::from_str(&text).unwrap_or(Value::Null);
    };
    assert!(
        content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/json")),
        "a refusal body must be application/json; got {context}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("a refusal body must be JSON ({e}); got {context}"));
    assert_eq!(
        body["error"], error,
        "the body's error must be {error:?}; got {context}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "the body needs a non-empty error_description; got {context}"
    );
    body
}

/// A gateway config: listeners on 127.0.0.1:0, JSON logs, the provider at `issuer` with the
/// introspection client `tollgate-introspector`/`introspector-secret` and a 2 s timeout, cache defaults,
/// then `extra` (the `[[api]]` tables, and a `[cache]` table if the test needs one).
pub fn base_config(issuer: &str, extra: &str) -> String {
    config_with(issuer, "", extra)
}

/// Like `base_config`, with `provider_extra` (e.g. `introspection_auth = "client_secret_post"`)
/// written inside `[provider]`, since TOML does not allow reopening that table from `extra`.
pub fn config_with(issuer: &str, provider_extra: &str, extra: &str) -> String {
    let issuer = toml_string(issuer);
    format!(
        r#"[listen]
address = "127.0.0.1:0"
admin_address = "127.0.0.1:0"

[log]
format = "json"

[provider]
issuer = {issuer}
introspection_client_id = "tollgate-introspector"
introspection_client_secret = "introspector-secret"
request_timeout = "2s"
{provider_extra}

{extra}
"#
    )
}

/// An answer read off a raw connection.
#[derive(Debug)]
pub struct RawAnswer {
    /// The status code of the (first) status line.
    pub status: u16,
    /// Everything before the blank line: status line and headers, as sent.
    pub head: String,
    /// Everything after it, as sent (still chunk-encoded if the answer was chunked).
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The first value of header `name` (any case) in `head`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Sends `request` byte for byte (reqwest would normalise dot segments and encodings that path and
/// framing tests must send as they are), then reads until the server closes, 10 s at most. The request
/// should say `connection: close`, or be one the server answers by closing.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> RawAnswer {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("raw_http: connecting to {addr}: {e}"));
    stream
        .write_all(request)
        .await
        .unwrap_or_else(|e| panic!("raw_http: writing to {addr}: {e}"));
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let partial = String::from_utf8_lossy(&answer).into_owned();
    match read {
        Ok(Ok(_)) => {}
        // A reset after a complete answer (a server closing with unread input) still counts.
        Ok(Err(_)) if !answer.is_empty() => {}
        Ok(Err(e)) => panic!("raw_http: reading from {addr}: {e}"),
        Err(_) => panic!("raw_http: {addr} did not close within 10 s; read so far: {partial:?}"),
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("raw_http: no complete head in {partial:?}"));
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("raw_http: no status in {head:?}"));
    RawAnswer {
        status,
        head,
        body: answer[split + 4..].to_vec(),
    }
}

/// `s` as a TOML basic string (quoted, escaped), for values tests put into configs.
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Polls `check` every 50 ms until it holds, for at most `limit` (then panics naming `what`).
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The API under test: `/orders` on `upstream`, requiring `mulescope` from a client with a contract
/// (`orders-app`), then `extra` (more keys of the same `[[api]]`, then its `[[api.rule]]`s).
pub fn orders_api(upstream: &str, extra: &str) -> String {
    format!(
        "[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = {}\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n{extra}\n",
        toml_string(upstream)
    )
}

/// A raw HTTP/1.1 request to the gateway, byte for byte: the request line, `Host` (the gateway's
/// address), `headers` (each a full `Name: value` line), `Connection: close`, then `body` (with a
/// Content-Length when it is not empty and `headers` set no framing).
pub fn raw_request(
    gateway: &Gateway,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &[u8],
) -> Vec<u8> {
    let head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", gateway.proxy);
    framed_request(head, headers, body, "Connection: close\r\n")
}

/// `head` (request line and first fields), then `headers`, a `Content-Length` for `body` unless
/// `headers` frame it already, `last` (whole lines), the blank line and `body`.
pub fn framed_request(mut head: String, headers: &[&str], body: &[u8], last: &str) -> Vec<u8> {
    for line in headers {
        head.push_str(line);
        head.push_str("\r\n");
    }
    let framed = headers.iter().any(|h| {
        let name = h.split(':').next().unwrap_or("").trim();
        name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
    });
    if !body.is_empty() && !framed {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str(last);
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

/// The body of a raw answer, de-chunked if it was sent chunked.
pub fn raw_body(answer: &RawAnswer) -> Vec<u8> {
    let chunked = answer
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
    if !chunked {
        return answer.body.clone();
    }
    let mut out = Vec::new();
    let mut rest = &answer.body[..];
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "bad chunked body: {:?}",
                    String::from_utf8_lossy(&answer.body)
                )
            });
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Asserts a raw answer is the gateway's refusal: the status, a JSON body with this `error` and a
/// description, and for 401/403 a Bearer challenge for `realm` carrying the error.
pub fn assert_raw_refusal(answer: &RawAnswer, status: u16, error: &str, realm: &str) {
    assert_eq!(answer.status, status, "expected {status}: {answer:?}");
    let body: Value = serde_json::from_slice(&raw_body(answer))
        .unwrap_or_else(|e| panic!("the refusal body is not JSON ({e}): {answer:?}"));
    assert_eq!(body["error"], error, "{answer:?}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{answer:?}"
    );
    if status == 401 || status == 403 {
        let challenge = answer
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("a {status} needs WWW-Authenticate: {answer:?}"));
        assert!(
            challenge.starts_with(&format!("Bearer realm=\"{realm}\"")),
            "{challenge}"
        );
        assert!(
            challenge.contains(&format!("error=\"{error}\"")),
            "{challenge}"
        );
    }
}

/// `config` with `extra` lines added to its `[listen]` table.
pub fn with_listen(config: &str, extra: &str) -> String {
    let anchor = "admin_address = \"127.0.0.1:0\"\n";
    assert!(config.contains(anchor), "base_config changed shape");
    config.replacen(anchor, &format!("{anchor}{extra}\n"), 1)
}

/// Reads whatever arrives within `wait`; `None` if nothing did (the connection is still open and
/// silent), `Some(bytes)` once the peer closed (possibly after sending something).
pub async fn read_until_close(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| got)
}

/// The value of the first sample of metric `name` (exactly that name) carrying all `labels`, in
/// Prometheus' text format.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A new directory under the temp directory, mode 0700, named `prefix-PID-N`.
pub fn private_dir(prefix: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return dir,
            // Left by an earlier process with our pid: take the next name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("creating {}: {e}", dir.display()),
        }
    }
}
