//! A real upstream HTTP/1.1 server (hyper, on 127.0.0.1:0) that records every request it receives, so
//! tests can check exactly what the gateway forwarded (request-target, headers, body) or that it
//! forwarded nothing at all. It also has a streaming mode to prove bodies are streamed both ways,
//! an HTTP/2 mode (h2c by prior knowledge), and a TLS mode (`start_tls`: a certificate from a
//! `TestCa`, ALPN `h2`/`http/1.1`, optionally requiring a client certificate).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How long the waiting helpers (`first_chunk_seen`, `wait_count`) wait before failing the test.
const WAIT: Duration = Duration::from_secs(5);

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// The request-target as sent on the wire (origin-form: path and query, untouched).
    pub target: String,
    /// Lowercase names. hyper groups the values of a repeated name together (in their received order),
    /// and names appear in the order they were first received.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The HTTP version it arrived in.
    pub version: http::Version,
    /// It arrived over TLS.
    pub tls: bool,
    /// The client certificate presented in the TLS handshake (DER), if any.
    pub client_cert: Option<Vec<u8>>,
}

impl Seen {
    /// The first value of the header `name` (any case), lossily decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers_named(name).into_iter().next()
    }

    /// Every value of the header `name` (any case), in received order.
    pub fn headers_named(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the upstream answers.
#[derive(Clone, Debug)]
pub enum UpstreamBehaviour {
    /// 200, `application/json` `{"upstream":"ok","target":<target>}`, `x-upstream: yes`.
    Echo,
    /// Like `Echo`, after waiting this long (the request is recorded before the wait): for 504 tests.
    Delay(Duration),
    /// Like `Echo`, with this status.
    Status(u16),
    /// Like `Echo`, then closes the connection (`Connection: close`).
    Close,
    /// 200 `text/plain` "hello", then the trailers `grpc-status: 0` and `x-checksum: abc`
    /// (announced in a `Trailer` header, so an HTTP/1.1 client may get them too).
    Trailers,
    /// Like `Echo`, with these extra response headers (name, value), in order.
    Headers(Vec<(&'static str, &'static str)>),
    /// Signals the first request-body chunk (`first_chunk_seen`), then answers 200 `text/plain` with a
    /// chunked body: "first\n", then (after `release`) "second\n".
    Stream,
    /// 200 `application/octet-stream` with a body of this many bytes (`b'x'`), with a
    /// Content-Length: for clients that stop reading.
    Large(usize),
}

/// State shared between the server task and the test.
struct Shared {
    behaviour: UpstreamBehaviour,
    seen: Mutex<Vec<Seen>>,
    /// Counts requests recorded, so tests can wait for one without sleeping.
    recorded: watch::Sender<usize>,
    /// Counts requests whose first body chunk has arrived (streaming proof).
    first_chunks: watch::Sender<usize>,
    /// One permit per `release()`: each streaming response consumes one before its second chunk.
    release: Semaphore,
    /// TCP connections accepted.
    accepted: AtomicUsize,
}

/// How the upstream speaks: HTTP/1.1, or HTTP/2 by prior knowledge (h2c), or TLS with ALPN.
#[derive(Clone)]
pub enum Wire {
    Http1,
    H2c,
    Tls(Arc<rustls::ServerConfig>),
}

/// `start_tls` options: the server certificate, and the CA a client certificate must chain to
/// (`None`: none is asked for).
pub struct TlsUpstream<'a> {
    pub server: &'a crate::common::certs::Issued,
    pub client_ca: Option<&'a crate::common::certs::TestCa>,
    /// ALPN protocols offered, in preference order (default `h2`, `http/1.1`).
    pub alpn: Vec<Vec<u8>>,
}

/// What the connection told the request.
#[derive(Clone, Default)]
struct Peer {
    tls: bool,
    client_cert: Option<Vec<u8>>,
}

/// A running upstream; the server (and every connection it accepted) stops on drop.
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task too.
        self.server.abort();
    }
}

impl Upstream {
    pub async fn start() -> Upstream {
        Self::start_with(UpstreamBehaviour::Echo).await
    }

    /// An upstream in `UpstreamBehaviour::Stream` mode.
    pub async fn streaming() -> Upstream {
        Self::start_with(UpstreamBehaviour::Stream).await
    }

    pub async fn start_with(behaviour: UpstreamBehaviour) -> Upstream {
        Self::start_wire(behaviour, Wire::Http1).await
    }

    /// An HTTP/2-only upstream on cleartext (h2c by prior knowledge, RFC 9113 §3.3).
    pub async fn start_h2c(behaviour: UpstreamBehaviour) -> Upstream {
        Self::start_wire(behaviour, Wire::H2c).await
    }

    /// An upstream behind TLS: HTTP/2 when ALPN agrees on `h2`, HTTP/1.1 otherwise.
    pub async fn start_tls(behaviour: UpstreamBehaviour, tls: TlsUpstream<'_>) -> Upstream {
        Self::start_wire(behaviour, Wire::Tls(server_config(&tls))).await
    }

    /// `https://localhost:PORT` (for a certificate naming `localhost`).
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub async fn start_wire(behaviour: UpstreamBehaviour, wire: Wire) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("upstream: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("upstream: local_addr");
        let shared = Arc::new(Shared {
            behaviour,
            seen: Mutex::new(Vec::new()),
            recorded: watch::channel(0).0,
            first_chunks: watch::channel(0).0,
            release: Semaphore::new(0),
            accepted: AtomicUsize::new(0),
        });
        let server = tokio::spawn(serve(listener, shared.clone(), wire));
        Upstream {
            addr,
            shared,
            server,
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("upstream: lock").clone()
    }

    pub fn count(&self) -> usize {
        self.shared.seen.lock().expect("upstream: lock").len()
    }

    /// The most recent request; panics when there was none.
    pub fn last(&self) -> Seen {
        self.requests().pop().expect("upstream saw no request")
    }

    /// Panics, listing what it saw, if any request reached the upstream.
    pub fn assert_not_reached(&self) {
        let seen = self.requests();
        assert!(
            seen.is_empty(),
            "the upstream must not be reached, but it saw {} request(s): {}",
            seen.len(),
            describe(&seen)
        );
    }

    /// Waits (5 s deadline) until at least `n` requests are recorded; returns them all.
    pub async fn wait_count(&self, n: usize) -> Vec<Seen> {
        let mut rx = self.shared.recorded.subscribe();
        let waited = tokio::time::timeout(WAIT, rx.wait_for(|c| *c >= n)).await;
        if !matches!(waited, Ok(Ok(_))) {
            panic!(
                "upstream: waited {WAIT:?} for {n} request(s), saw {}: {}",
                self.count(),
                describe(&self.requests())
            );
        }
        self.requests()
    }

    /// Waits (5 s deadline) until the first body chunk of a request has arrived, while its body is
    /// still incomplete (`Stream` mode only).
    pub async fn first_chunk_seen(&self) {
        let mut rx = self.shared.first_chunks.subscribe();
        let waited = tokio::time::timeout(WAIT, rx.wait_for(|c| *c >= 1)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "upstream: no request body chunk arrived within {WAIT:?} (recorded so far: {})",
            describe(&self.requests())
        );
    }

    /// Lets one streaming response send its second chunk and end (`Stream` mode). A release given
    /// before the response waits is kept for it.
    pub fn release(&self) {
        self.shared.release.add_permits(1);
    }
}

/// An `http://127.0.0.1:PORT` URL where nothing listens (bound, read, closed): for 502 tests.
pub async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("closed_port_url: bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("closed_port_url: local_addr");
    drop(listener);
    format!("http://{addr}")
}

fn describe(seen: &[Seen]) -> String {
    seen.iter()
        .map(|s| {
            let headers: Vec<String> = s
                .headers
                .iter()
                .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                .collect();
            format!(
                "\n  {} {} [{}] body={:?}",
                s.method,
                s.target,
                headers.join(", "),
                String::from_utf8_lossy(&s.body)
            )
        })
        .collect()
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, wire: Wire) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Transient accept errors (e.g. EMFILE) must not kill the upstream mid-test.
            Err(_) => continue,
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        // Reap finished connections so the set does not grow for the life of a long test.
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        let wire = wire.clone();
        connections.spawn(async move {
            match wire {
                Wire::Http1 => serve_connection(stream, shared, false, Peer::default()).await,
                Wire::H2c => serve_connection(stream, shared, true, Peer::default()).await,
                Wire::Tls(config) => {
                    // A failed handshake (a bad client certificate, an untrusting client) ends
                    // the connection before any request: the handler is never reached.
                    let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                    else {
                        return;
                    };
                    let (_, session) = tls.get_ref();
                    let h2 = session.alpn_protocol() == Some(b"h2");
                    let peer = Peer {
                        tls: true,
                        client_cert: session
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| c.to_vec()),
                    };
                    serve_connection(tls, shared, h2, peer).await
                }
            }
        });
    }
}

async fn serve_connection<S>(stream: S, shared: Arc<Shared>, h2: bool, peer: Peer)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| handle(req, shared.clone(), peer.clone()));
    // Connection errors (the gateway hanging up, e.g. after a 504) are expected in tests.
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }
}

fn server_config(tls: &TlsUpstream<'_>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("upstream TLS: protocol versions");
    let builder = match tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.ca_der()).expect("upstream TLS: client CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("upstream TLS: client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let (chain, key) = tls.server.identity();
    let mut config = builder
        .with_single_cert(chain, key)
        .expect("upstream TLS: server certificate");
    config.alpn_protocols = if tls.alpn.is_empty() {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        tls.alpn.clone()
    };
    Arc::new(config)
}

type UpBody =
    Either<Full<Bytes>, StreamBody<stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>>;

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: Peer,
) -> Result<Response<UpBody>, hyper::Error> {
    let (parts, mut body) = req.into_parts();
    let target = parts.uri.to_string();
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();

    // Read frame by frame (not `collect`) so the first chunk can be signalled while the rest is unsent.
    let mut bytes = Vec::new();
    let mut signalled = false;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            bytes.extend_from_slice(data);
            if !signalled && !data.is_empty() {
                signalled = true;
                shared.first_chunks.send_modify(|c| *c += 1);
            }
        }
    }

    shared.seen.lock().expect("upstream: lock").push(Seen {
        method: parts.method.to_string(),
        target: target.clone(),
        headers,
        body: bytes,
        version: parts.version,
        tls: peer.tls,
        client_cert: peer.client_cert,
    });
    shared.recorded.send_modify(|c| *c += 1);

    let status = match shared.behaviour {
        UpstreamBehaviour::Echo | UpstreamBehaviour::Close | UpstreamBehaviour::Headers(_) => 200,
        UpstreamBehaviour::Delay(wait) => {
            tokio::time::sleep(wait).await;
            200
        }
        UpstreamBehaviour::Status(status) => status,
        UpstreamBehaviour::Stream => return Ok(streaming_response(shared)),
        UpstreamBehaviour::Trailers => return Ok(trailers_response()),
        UpstreamBehaviour::Large(size) => return Ok(large_response(size)),
    };
    let body = serde_json::json!({"upstream": "ok", "target": target}).to_string();
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-upstream", "yes");
    if matches!(shared.behaviour, UpstreamBehaviour::Close) {
        response = response.header("connection", "close");
    }
    if let UpstreamBehaviour::Headers(headers) = &shared.behaviour {
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
    }
    let response = response
        .body(Either::Left(Full::new(Bytes::from(body))))
        .expect("upstream: valid response");
    Ok(response)
}

fn trailers_response() -> Response<UpBody> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
    let frames = vec![
        Ok(Frame::data(Bytes::from_static(b"hello"))),
        Ok(Frame::trailers(trailers)),
    ];
    let body: stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>> =
        Box::pin(stream::iter(frames));
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .header("trailer", "grpc-status, x-checksum")
        .body(Either::Right(StreamBody::new(body)))
        .expect("upstream: valid response")
}

fn large_response(size: usize) -> Response<UpBody> {
    Response::builder()
        .status(200)
        .header("content-type", "application/octet-stream")
        .body(Either::Left(Full::new(Bytes::from(vec![b'x'; size]))))
        .expect("upstream: valid response")
}

fn streaming_response(shared: Arc<Shared>) -> Response<UpBody> {
    // State 0 sends "first\n" at once; state 1 waits for a release, then sends "second\n"; then end.
    let chunks = stream::unfold(0u8, move |state| {
        let shared = shared.clone();
        async move {
            match state {
                0 => Some((Ok(Frame::data(Bytes::from_static(b"first\n"))), 1)),
                1 => {
                    let permit = shared
                        .release
                        .acquire()
                        .await
                        .expect("upstream: release semaphore is never closed");
                    permit.forget();
                    Some((Ok(Frame::data(Bytes::from_static(b"second\n"))), 2))
                }
                _ => None,
            }
        }
    });
    let body: stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>> = Box::pin(chunks);
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .header("x-upstream", "yes")
        .body(Either::Right(StreamBody::new(body)))
        .expect("upstream: valid response")
}
