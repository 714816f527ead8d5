//! Upstreams: where `forward` sends an allowed request, and how. An API's [`Upstream`] is its
//! endpoints (one or several, HTTP or HTTPS), the protocol it speaks to them (HTTP/1.1, or HTTP/2:
//! over TLS by ALPN, on cleartext by prior knowledge, h2c), and the TLS settings, all compiled
//! with the config. Each worker's [`UpstreamPool`] holds its connections. HTTP/1.1 is the
//! gateway's own (`h1`: the serving task writes and reads the socket itself); HTTP/2 is hyper's.
//!
//! A request goes to one endpoint (`balance`); an endpoint that fails to connect rests a while.
//! Retries never send a body twice: a request is sent again only if it never left (the pooled
//! connection had closed, or no connection could be made), or if it has no body, is idempotent
//! (RFC 9110 §9.2.2) and its reused connection closed before any answer (the upstream closing an
//! idle connection just as the request was written, RFC 9112 §9.3.1).

mod balance;
mod connect;
mod h1;
mod pool;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use http::header::{HOST, TE};
use http::uri::Scheme;
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri, Version};

pub use balance::Endpoint;
use balance::{InFlight, Picker, connect_failed};
use connect::{Conn, connect};
pub use h1::{Switched, Upgraded};
pub use pool::UpstreamPool;
use pool::{Pooled, returning_h2};

use crate::body::ProxyBody;
pub use crate::config::{UpstreamBalance, UpstreamProtocol as Protocol};

/// Why a request got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("timed out connecting after {0:?}")]
    ConnectTimeout(Duration),
    /// The TLS handshake failed: the certificate did not verify, or the upstream refused ours.
    #[error("TLS: {0}")]
    Tls(#[source] std::io::Error),
    #[error("HTTP/1.1: {0}")]
    H1(#[from] h1::Error),
    #[error("HTTP/2: {0}")]
    Http(#[from] hyper::Error),
}

/// A request no endpoint answered: the endpoint it went to and why it failed there, and, when it
/// was sent on to another endpoint, that one and its failure. Logs name these, not every endpoint
/// of the API, so an operator sees which address is down.
#[derive(Debug)]
pub struct SendError {
    pub endpoint: http::uri::Authority,
    pub error: UpstreamError,
    pub retry: Option<(http::uri::Authority, UpstreamError)>,
}

/// One API's upstream, compiled with the config and shared by every worker.
pub struct Upstream {
    scheme: Scheme,
    protocol: Protocol,
    tls: Option<Arc<rustls::ClientConfig>>,
    endpoints: Box<[Endpoint]>,
    picker: Picker,
}

/// How to send one request.
#[derive(Debug, Clone)]
pub struct Sending {
    /// The longest gap allowed between the response body's bytes.
    pub stall: Duration,
    /// The client sent `TE: trailers`: an HTTP/2 upstream gets it too (gRPC requires it); it is
    /// hop-by-hop on HTTP/1.1.
    pub te_trailers: bool,
    /// Fields the gateway adds after the request's own (forwarding, identity), once the
    /// request's copies are removed: HTTP/1.1 writes them after the request's fields, HTTP/2
    /// appends them to its map.
    pub added: Vec<(HeaderName, HeaderValue)>,
}

/// A request that failed, and whether it can still be sent elsewhere.
enum Failure {
    /// No connection could be made, and the request is here whole: it never left, or it is
    /// bodiless and idempotent, so sending it again is safe (boxed: failures are rare, and the
    /// success path should not carry its size).
    Unsent(UpstreamError, Box<Request<ProxyBody>>),
    Sent(UpstreamError),
}

const TE_TRAILERS: HeaderValue = HeaderValue::from_static("trailers");

// === impl Upstream ===

impl Upstream {
    /// `endpoints` as `(authority, host header, server name)`; `tls` for `https://`.
    pub fn new(
        api: &str,
        scheme: Scheme,
        protocol: Protocol,
        balance: UpstreamBalance,
        tls: Option<(Arc<rustls::ClientConfig>, String)>,
        endpoints: Vec<(
            http::uri::Authority,
            HeaderValue,
            Option<rustls_pki_types::ServerName<'static>>,
        )>,
    ) -> Self {
        let api: Arc<str> = api.into();
        let tls_key = tls.as_ref().map_or(String::new(), |(_, k)| k.clone());
        let endpoints = endpoints
            .into_iter()
            .map(|(authority, host, name)| {
                let key = format!("{scheme}://{authority} {protocol:?} {tls_key}");
                Endpoint::new(api.clone(), authority, host, key, name)
            })
            .collect();
        Upstream {
            scheme,
            protocol,
            tls: tls.map(|(config, _)| config),
            endpoints,
            picker: Picker::new(balance),
        }
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("scheme", &self.scheme)
            .field("protocol", &self.protocol)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

// === impl SendError ===

impl SendError {
    /// Why the request finally got no answer: the retry's failure when there was one.
    pub fn last(&self) -> &UpstreamError {
        self.retry.as_ref().map_or(&self.error, |(_, e)| e)
    }
}

// === impl UpstreamPool ===

impl UpstreamPool {
    /// Sends `req` (origin-form URI, no `Host`) to one of `upstream`'s endpoints and returns the
    /// response, whose body frees its connection when read to its end and fails after
    /// `how.stall` without a byte. An idempotent request that could not connect tries another
    /// endpoint once.
    pub async fn send(
        &self,
        upstream: Arc<Upstream>,
        req: Request<ProxyBody>,
        how: Sending,
    ) -> Result<Response<ProxyBody>, SendError> {
        let upstream = &*upstream;
        let first = upstream.picker.pick(&upstream.endpoints, None);
        let failure = match self.send_to(upstream, first, req, &how).await {
            Ok(response) => return Ok(response),
            Err(failure) => failure,
        };
        let at = |index: usize| {
            upstream.endpoints.get(index).map_or_else(
                || http::uri::Authority::from_static("unknown"),
                |e| e.authority.clone(),
            )
        };
        match failure {
            Failure::Unsent(error, req)
                if upstream.endpoints.len() > 1 && is_idempotent(req.method()) =>
            {
                let second = upstream.picker.pick(&upstream.endpoints, Some(first));
                let retried = self.send_to(upstream, second, *req, &how).await;
                retried.map_err(|again| SendError {
                    endpoint: at(first),
                    error,
                    retry: Some((at(second), again.into_error())),
                })
            }
            failure => Err(SendError {
                endpoint: at(first),
                error: failure.into_error(),
                retry: None,
            }),
        }
    }

    async fn send_to(
        &self,
        upstream: &Upstream,
        index: usize,
        mut req: Request<ProxyBody>,
        how: &Sending,
    ) -> Result<Response<ProxyBody>, Failure> {
        let Some(endpoint) = upstream.endpoints.get(index) else {
            // The picker only returns indexes of endpoints; an API has at least one.
            return Err(Failure::Sent(UpstreamError::ConnectTimeout(Duration::ZERO)));
        };
        let _in_flight = InFlight::new(&upstream.endpoints, index);
        endpoint.count_request();
        while let Some(pooled) = self.checkout(&endpoint.key) {
            match pooled {
                Pooled::H1(conn) => {
                    for_h1(&mut req);
                    match conn
                        .send(req, added(endpoint, how), how.stall, self.release(endpoint))
                        .await
                    {
                        Ok(response) => return Ok(response),
                        // Bodiless, idempotent, and the connection closed before any answer: the
                        // upstream closed it as the request left. Once more, on a new connection:
                        // the next failure is the upstream's answer.
                        Err(h1::Failed {
                            error: h1::Error::Closed,
                            request: Some(again),
                        }) if is_idempotent(again.method()) => {
                            req = again;
                            break;
                        }
                        Err(failed) => return Err(Failure::Sent(failed.error.into())),
                    }
                }
                Pooled::H2(sender, slot) => {
                    match self
                        .on_pooled_h2(upstream, endpoint, sender, slot, req, how)
                        .await
                    {
                        Ok(answered) => return answered,
                        // It never left: the connection was closing. Another may do.
                        Err(unsent) => req = unsent,
                    }
                }
            }
        }
        // Boxed: a new connection is the rare case, and its future (the handshake, the first
        // exchange) is larger than the reused one's; inline, every request's future would carry
        // and move its space.
        Box::pin(self.send_fresh(upstream, (index, endpoint), req, how)).await
    }

    /// On a new connection to `endpoint`, the `index`th of `upstream`.
    async fn send_fresh(
        &self,
        upstream: &Upstream,
        (index, endpoint): (usize, &Endpoint),
        mut req: Request<ProxyBody>,
        how: &Sending,
    ) -> Result<Response<ProxyBody>, Failure> {
        let conn = match connect(upstream, endpoint).await {
            Ok(conn) => conn,
            Err(e) => {
                connect_failed(&upstream.endpoints, index, &upstream.scheme);
                return Err(Failure::Unsent(e, Box::new(req)));
            }
        };
        let response = match conn {
            Conn::H1(conn) => {
                for_h1(&mut req);
                match conn
                    .send(req, added(endpoint, how), how.stall, self.release(endpoint))
                    .await
                {
                    Ok(response) => response,
                    Err(failed) => return Err(fresh_failed(upstream, index, failed)),
                }
            }
            Conn::H2(mut sender) => {
                let slot = self.add_h2(&endpoint.key, sender.clone());
                for_h2(&mut req, upstream, endpoint, how);
                returning_h2(slot, sender.send_request(req).await?, how.stall)
            }
        };
        // Only an answer proves the endpoint well: one that accepts and hangs up is not.
        endpoint.connected();
        Ok(response)
    }

    /// Where an HTTP/1.1 connection to `endpoint` goes when its exchange ends cleanly.
    fn release(&self, endpoint: &Endpoint) -> h1::Release {
        h1::Release {
            pool: self.clone(),
            key: endpoint.key.clone(),
        }
    }

    /// A request on a shared HTTP/2 connection; the request back when it never left.
    async fn on_pooled_h2(
        &self,
        upstream: &Upstream,
        endpoint: &Endpoint,
        mut sender: hyper::client::conn::http2::SendRequest<ProxyBody>,
        slot: pool::StreamSlot,
        mut req: Request<ProxyBody>,
        how: &Sending,
    ) -> Result<Result<Response<ProxyBody>, Failure>, Request<ProxyBody>> {
        if sender.ready().await.is_err() {
            return Err(req);
        }
        for_h2(&mut req, upstream, endpoint, how);
        match sender.try_send_request(req).await {
            Ok(response) => Ok(Ok(returning_h2(slot, response, how.stall))),
            Err(mut failed) => match failed.take_message() {
                Some(unsent) => Err(unsent),
                None => Ok(Err(Failure::Sent(failed.into_error().into()))),
            },
        }
    }
}

/// A new connection that closed before any answer counts as a failure to connect (an upstream
/// that accepts and hangs up serves nobody); the request may go on if it can be sent again
/// (bodiless: `send` checks it is idempotent too).
fn fresh_failed(upstream: &Upstream, index: usize, failed: h1::Failed) -> Failure {
    if !matches!(failed.error, h1::Error::Closed) {
        return Failure::Sent(failed.error.into());
    }
    connect_failed(&upstream.endpoints, index, &upstream.scheme);
    match failed.request {
        Some(req) if upstream.endpoints.len() > 1 => {
            Failure::Unsent(failed.error.into(), Box::new(req))
        }
        _ => Failure::Sent(failed.error.into()),
    }
}

impl From<hyper::Error> for Failure {
    fn from(e: hyper::Error) -> Self {
        Failure::Sent(e.into())
    }
}

impl Failure {
    fn into_error(self) -> UpstreamError {
        match self {
            Failure::Unsent(e, _) | Failure::Sent(e) => e,
        }
    }
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// What HTTP/1.1 writes after the request's fields: the endpoint's `Host`, the gateway's own.
fn added<'a>(endpoint: &'a Endpoint, how: &'a Sending) -> h1::Added<'a> {
    h1::Added {
        host: &endpoint.host,
        fields: &how.added,
    }
}

/// HTTP/1.1: origin-form target (RFC 9112 §3.2); `h1` writes the endpoint's `Host`.
fn for_h1(req: &mut Request<ProxyBody>) {
    *req.version_mut() = Version::HTTP_11;
    if req.uri().authority().is_some() {
        let origin = req.uri().path_and_query().cloned();
        *req.uri_mut() = origin.map_or_else(|| Uri::from_static("/"), Uri::from);
    }
}

/// HTTP/2: the authority and scheme go in pseudo-headers (RFC 9113 §8.3.1), taken from the
/// target, and no `Host`; `TE: trailers` is the one `TE` allowed (§8.2.2). The gateway's added
/// fields join the map.
fn for_h2(req: &mut Request<ProxyBody>, upstream: &Upstream, endpoint: &Endpoint, how: &Sending) {
    *req.version_mut() = Version::HTTP_2;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(upstream.scheme.clone());
    parts.authority = Some(endpoint.authority.clone());
    parts.path_and_query = req.uri().path_and_query().cloned();
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    let headers = req.headers_mut();
    headers.remove(HOST);
    if how.te_trailers {
        headers.insert(TE, TE_TRAILERS);
    }
    for (name, value) in &how.added {
        headers.append(name.clone(), value.clone());
    }
}
