//! Forwarding to the upstream (`upstream`: pooled HTTP/1.1 and HTTP/2 connections), streaming bodies both ways, hop-by-hop
//! hygiene (RFC 9110 §7.6.1), the forwarding headers (`forwarded`), and the identity headers, the
//! last two added after every removal so that nothing a client sends (not even a `Connection`
//! naming them) can remove or forge them. It never sees a token: the policy hands it a
//! [`ForwardPlan`] beside the request. Its failures are [`ForwardError`]s, which tell a
//! client's broken or stalled body from an upstream's fault; the policy renders them.

use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::Either;
use http::header::{
    AUTHORIZATION, CONNECTION, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body::Body as _;

use crate::body::{BodyError, ProxyBody};
use crate::forwarded::set_forwarding_headers;
use crate::trust::ClientAddr;
use crate::upstream::{Sending, UpstreamPool};

/// Where and how to forward one allowed request: set by the policy, read here.
#[derive(Debug, Clone)]
pub struct ForwardPlan {
    /// The API's upstream: its endpoints, protocol and TLS (`Host` is the chosen endpoint's).
    pub upstream: std::sync::Arc<crate::upstream::Upstream>,
    /// The normalised path (re-encoded) and the query without any `access_token`.
    pub path_and_query: http::uri::PathAndQuery,
    pub timeout: Duration,
    /// The longest gap allowed between an upstream response's body bytes.
    pub stream_idle: Duration,
    /// Client headers starting with this (lowercase, `_` read as `-`) are removed.
    pub strip_header_prefix: std::sync::Arc<str>,
    /// Identity headers to add, after every removal.
    pub identity: Vec<(HeaderName, HeaderValue)>,
    /// The original `Host` (or `:authority`), for `X-Forwarded-Host` and `Forwarded`.
    pub original_host: Option<HeaderValue>,
    /// `false`: the `Authorization` header (which may carry the bearer token) is not forwarded.
    pub forward_authorization: bool,
    /// A gRPC call's own deadline (`grpc-timeout`), when sooner than `timeout` allows.
    pub grpc_deadline: Option<std::time::Instant>,
    /// The client, for the forwarding headers.
    pub client: Option<ClientAddr>,
}

/// Why a request got no response from the upstream; the policy renders it. The client's own body
/// failures are told apart from the upstream's: they are the client's fault, not a bad gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error("the upstream could not be reached")]
    Unreachable,
    #[error("the upstream did not answer in time")]
    Timeout,
    /// The client's request body broke (framing, truncation) before the upstream answered.
    #[error("the client's request body is malformed")]
    ClientBody,
    /// The client's request body stalled before the upstream answered.
    #[error("the client's request body stalled")]
    ClientStalled,
    /// The request body outgrew `max_body_bytes` before the upstream answered.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
}

impl ForwardError {
    fn of(error: &crate::upstream::UpstreamError) -> ForwardError {
        match BodyError::find(error) {
            Some(BodyError::Client(_)) => ForwardError::ClientBody,
            Some(BodyError::Stalled(_)) => ForwardError::ClientStalled,
            Some(BodyError::TooLarge(limit)) => ForwardError::TooLarge(*limit),
            Some(BodyError::Upstream(_)) | None => ForwardError::Unreachable,
        }
    }
}

/// How long the upstream took to answer (to its response head): the part of a request's latency
/// that is not tollgate's. Returned beside the response (not in its extensions: one box and one
/// map insertion fewer per request).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTime(pub Duration);

/// An upstream's answer, and how long it took.
pub type Forwarded = (Response<ProxyBody>, UpstreamTime);

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones proxies still see), and
/// Transfer-Encoding: framing is the connection's business, and hyper sets it again for the next hop.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == CONNECTION
        || *name == TRANSFER_ENCODING
        || *name == TE
        || *name == TRAILER
        || *name == UPGRADE
        || *name == PROXY_AUTHENTICATE
        || *name == PROXY_AUTHORIZATION
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
}

/// What the policy hands an allowed request to: the [`Forwarder`], or a stand-in (the decision
/// benchmark's). A trait method returning `impl Future`, not a tower service's boxed future: the
/// forwarding is awaited inside the policy's own future, one allocation per request, not two.
pub trait Forward: Clone + Send + Sync + 'static {
    fn forward(
        &self,
        req: Request<ProxyBody>,
        plan: ForwardPlan,
    ) -> impl Future<Output = Result<Forwarded, ForwardError>> + Send;
}

/// The upstream client: one per worker thread, with that worker's connections.
#[derive(Clone)]
pub struct Forwarder {
    pool: UpstreamPool,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarder {
    pub fn new() -> Self {
        Forwarder {
            pool: UpstreamPool::default(),
        }
    }

    /// Sends an allowed request upstream as `plan` says. The request is made ready here, before
    /// the future: the future keeps only what crosses its wait (futures are moved, and copied
    /// into the request's box, at their full size).
    pub fn forward(
        &self,
        req: Request<ProxyBody>,
        plan: ForwardPlan,
    ) -> impl Future<Output = Result<Forwarded, ForwardError>> + Send + '_ {
        let Prepared {
            req,
            upstream,
            how,
            timeout,
            upgrade,
        } = match prepare(req, plan) {
            Ok(prepared) => prepared,
            Err(e) => return Either::Left(std::future::ready(Err(e))),
        };
        let asked = std::time::Instant::now();
        // Boxed: the sending's state is about 2.2 KB, and each wrapper here (the timeout, the
        // map, the choice) and the policy's future would otherwise move it whole.
        let send = Box::pin(self.pool.send(upstream, req, how));
        let sent = tokio::time::timeout(timeout, send);
        // A combinator, not an `async` block: one awaiting a future it captured would hold it
        // twice.
        Either::Right(sent.map(move |sent| {
            let response = sent.map_err(|_| ForwardError::Timeout)?.map_err(|e| {
                let kind = ForwardError::of(e.last());
                if kind == ForwardError::Unreachable {
                    log_unreachable(&e);
                }
                kind
            })?;
            let (mut parts, body) = response.into_parts();
            response_hygiene(&mut parts, upgrade)?;
            Ok((
                Response::from_parts(parts, body),
                UpstreamTime(asked.elapsed()),
            ))
        }))
    }
}

/// A request ready for its upstream, and how to send it.
struct Prepared {
    req: Request<ProxyBody>,
    upstream: std::sync::Arc<crate::upstream::Upstream>,
    how: Sending,
    timeout: Duration,
    /// It is a WebSocket upgrade.
    upgrade: bool,
}

/// The upstream request: hop-by-hop headers, client copies of the gateway's own headers and
/// (unless forwarded) `Authorization` removed, then the forwarding and identity headers added.
fn prepare(req: Request<ProxyBody>, plan: ForwardPlan) -> Result<Prepared, ForwardError> {
    let (mut parts, body) = req.into_parts();
    let mut headers = std::mem::take(&mut parts.headers);
    let (upgrade, te_trailers) = request_hygiene(&parts, &mut headers, &body);
    let timeout = deadline(&plan, &mut headers);
    if timeout.is_zero() {
        // The call's deadline passed while it was being authorised: not worth sending.
        return Err(ForwardError::Timeout);
    }
    strip_prefixed(&mut headers, &plan.strip_header_prefix);
    // Always, whatever the API: only the listener's verified certificate may speak here (the
    // policy adds those to `identity`).
    strip_prefixed(&mut headers, crate::client_cert::HEADER_PREFIX);
    headers.remove(HOST);
    if !plan.forward_authorization {
        headers.remove(AUTHORIZATION);
    }
    // Sent after the request's fields: added after every removal, they cannot be removed or
    // forged by anything the client sent.
    let mut added = Vec::with_capacity(5 + plan.identity.len());
    set_forwarding_headers(
        &mut headers,
        &mut added,
        plan.client.as_ref(),
        plan.original_host,
    );
    added.extend(plan.identity);
    let mut req = Request::new(body);
    *req.method_mut() = parts.method;
    // Origin-form: the upstream is the server, not a proxy.
    *req.uri_mut() = Uri::from(plan.path_and_query);
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Ok(Prepared {
        req,
        upstream: plan.upstream,
        how: Sending {
            stall: plan.stream_idle,
            te_trailers,
            added,
        },
        timeout,
        upgrade,
    })
}

/// Names the endpoint that failed (and the retry's), never the API's whole list: the address to
/// look at is the point of the line.
fn log_unreachable(e: &crate::upstream::SendError) {
    let error = crate::provider::error_chain(&e.error);
    match &e.retry {
        None => tracing::warn!(upstream = %e.endpoint, error = %error, "upstream request failed"),
        Some((retry, retry_error)) => tracing::warn!(
            upstream = %e.endpoint,
            error = %error,
            retry_upstream = %retry,
            retry_error = %crate::provider::error_chain(retry_error),
            "upstream request failed"
        ),
    }
}

/// The request's hop-by-hop headers go, except the WebSocket upgrade when it is one
/// (`upgrade_asked`). Returns whether it is, and whether the client asked for trailers.
fn request_hygiene(
    parts: &http::request::Parts,
    headers: &mut HeaderMap,
    body: &ProxyBody,
) -> (bool, bool) {
    let upgrade = upgrade_asked(parts, headers, body);
    let te_trailers = asks_for_trailers(headers);
    remove_hop_by_hop(headers);
    if upgrade {
        keep_upgrade(headers);
    }
    (upgrade, te_trailers)
}

/// The response's hop-by-hop headers go, except `Trailer` and, on the 101 that accepts the
/// upgrade asked for, `Upgrade`. A 101 to anything else is the upstream's fault.
fn response_hygiene(parts: &mut http::response::Parts, upgrade: bool) -> Result<(), ForwardError> {
    let switched = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    if switched && !(upgrade && is_websocket(&parts.headers)) {
        // A 101 to a request that asked for no upgrade, or to another protocol than asked:
        // joining the streams would tunnel whatever the upstream chose.
        tracing::warn!("the upstream switched protocols unasked");
        return Err(ForwardError::Unreachable);
    }
    // `Trailer` announces the trailers that follow the body (RFC 9110 §6.6.2); an HTTP/1.1
    // client gets them only when it is announced, so it stays.
    let trailer = parts.headers.remove(TRAILER);
    remove_hop_by_hop(&mut parts.headers);
    if let Some(trailer) = trailer {
        parts.headers.insert(TRAILER, trailer);
    }
    if switched {
        keep_upgrade(&mut parts.headers);
    }
    Ok(())
}

impl Forward for Forwarder {
    fn forward(
        &self,
        req: Request<ProxyBody>,
        plan: ForwardPlan,
    ) -> impl Future<Output = Result<Forwarded, ForwardError>> + Send {
        Forwarder::forward(self, req, plan)
    }
}

/// Removes hop-by-hop headers, including every header the `Connection` header names. One pass over
/// the names, and nothing else, when there are none (the common case).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Empty, with no allocation, for the usual `Connection: keep-alive` or `close`.
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // `close` names no header, and `keep-alive` goes below anyway: the usual values cost
        // no parsing.
        .filter(|name| {
            !name.eq_ignore_ascii_case("close") && !name.eq_ignore_ascii_case("keep-alive")
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    // One or two are present, usually: a pass to find each beats a lookup of all nine.
    while let Some(name) = headers.keys().find(|n| is_hop_by_hop(n)).cloned() {
        headers.remove(name);
    }
}

/// RFC 9110 §10.1.4: `TE: trailers` says the client accepts trailer fields, which gRPC's status
/// travels in; it is the one TE value forwarded. Any other (transfer codings are per hop) is not.
fn asks_for_trailers(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(TE).iter();
    matches!(
        (values.next(), values.next()),
        (Some(v), None) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"trailers")
    )
}

/// How long the upstream has to answer: the API's `timeout`, or less when a gRPC call's deadline
/// is sooner. The call's `grpc-timeout` is rewritten to the time left, so the upstream stops
/// when the gateway does.
fn deadline(plan: &ForwardPlan, headers: &mut HeaderMap) -> Duration {
    let Some(deadline) = plan.grpc_deadline else {
        return plan.timeout;
    };
    let left = deadline
        .saturating_duration_since(std::time::Instant::now())
        .min(plan.timeout);
    headers.insert(crate::deadline::GRPC_TIMEOUT, crate::deadline::encode(left));
    left
}

/// Is this a WebSocket opening handshake (RFC 6455 §4.1) that may be forwarded as one: HTTP/1.1,
/// `GET`, no body, `Connection` naming `upgrade` and `Upgrade` exactly `websocket`? Any other
/// upgrade (`h2c` above all, whose tunnel would carry requests past the policy) is stripped like
/// every hop-by-hop header, and the request goes as a plain one.
fn upgrade_asked(parts: &http::request::Parts, headers: &HeaderMap, body: &ProxyBody) -> bool {
    parts.version == Version::HTTP_11
        && parts.method == Method::GET
        && body.is_end_stream()
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        && is_websocket(headers)
}

/// Exactly one `Upgrade` value, and it is `websocket`.
fn is_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(UPGRADE).iter();
    matches!(
        (values.next(), values.next()),
        (Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"websocket")
    )
}

/// After the hop-by-hop removal: the upgrade this hop agreed to, and only it (RFC 9110 §7.8).
fn keep_upgrade(headers: &mut HeaderMap) {
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
}

/// Removes every header whose name starts with `prefix`, read case-insensitively with `_` as `-`.
fn strip_prefixed(headers: &mut HeaderMap, prefix: &str) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.len() >= prefix.len()
                && name
                    .bytes()
                    .zip(prefix.bytes())
                    .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, X-Secret , x-agw-uid"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn only_a_bodiless_http11_get_websocket_upgrade_is_kept() {
        let asked = |method: Method, version: Version, headers: &[(&str, &str)], body: &str| {
            let mut h = HeaderMap::new();
            for (name, value) in headers {
                h.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            let (mut parts, ()) = Request::new(()).into_parts();
            parts.method = method;
            parts.version = version;
            let body = if body.is_empty() {
                ProxyBody::default()
            } else {
                crate::body::full(body.to_owned())
            };
            upgrade_asked(&parts, &h, &body)
        };
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ];
        assert!(asked(Method::GET, Version::HTTP_11, &ws, ""));
        assert!(!asked(Method::POST, Version::HTTP_11, &ws, ""));
        assert!(!asked(Method::GET, Version::HTTP_10, &ws, ""));
        assert!(!asked(Method::GET, Version::HTTP_11, &ws, "smuggled"));
        let h2c = [("connection", "upgrade"), ("upgrade", "h2c")];
        assert!(!asked(Method::GET, Version::HTTP_11, &h2c, ""));
        let two = [
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("upgrade", "h2c"),
        ];
        assert!(!asked(Method::GET, Version::HTTP_11, &two, ""));
        assert!(!asked(
            Method::GET,
            Version::HTTP_11,
            &[("upgrade", "websocket")],
            ""
        ));
    }

    #[test]
    fn te_is_kept_only_when_exactly_trailers() {
        let te = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(TE, HeaderValue::from_str(v).unwrap());
            }
            asks_for_trailers(&h)
        };
        assert!(te(&["trailers"]) && te(&[" Trailers "]));
        assert!(!te(&[]) && !te(&["gzip"]) && !te(&["trailers, gzip"]));
        assert!(!te(&["trailers", "gzip"]) && !te(&["trailers;q=0.5"]));
    }

    #[test]
    fn prefixed_headers_go_whatever_their_case_or_underscores() {
        let mut h = HeaderMap::new();
        for name in [
            "x-agw-uid",
            "X-AGW-client_id",
            "x_agw_uid2",
            "x-agw_x",
            "x-agwz",
            "x-other",
        ] {
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        strip_prefixed(&mut h, "x-agw-");
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(h.contains_key("x-agwz") && h.contains_key("x-other"));
    }
}
