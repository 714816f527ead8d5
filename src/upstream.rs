//! Connections to upstreams: HTTP/1.1 over TCP, kept alive and reused, newest first. Each worker
//! thread has its own [`UpstreamPool`], so a request, its upstream connection and that connection's
//! task stay on one thread, and the pool is a short list behind an uncontended lock, not a shared
//! map keyed by hashing.
//!
//! A connection goes back to the pool when the response body it carries has been read to its end;
//! one whose body was abandoned, or which failed, is dropped (and closed). A pooled connection the
//! upstream has closed meanwhile is skipped; a request that never left on one is sent on another.
//! A response body that stalls for the listener's `stream_idle_timeout` is cut off (its connection
//! closed), so an upstream that sends a head and then nothing cannot hold a client forever.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::{BodyError, IdleBound, ProxyBody};

/// How long a new connection may take to be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle connection older than this is not reused. Upstreams close idle connections themselves
/// (nginx after 75 s, Node.js after 5 s); one already closed is noticed and skipped, and this bound
/// keeps tollgate from reusing one in the very instant the upstream gives up on it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Idle connections kept per upstream.
const MAX_IDLE: usize = 256;

/// Why a request got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("timed out connecting after {0:?}")]
    ConnectTimeout(Duration),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
}

/// One worker's upstream connections.
#[derive(Clone, Default)]
pub struct UpstreamPool {
    idle: Arc<Mutex<Vec<Idle>>>,
}

/// The idle connections to one upstream, the most recently used last.
struct Idle {
    authority: Authority,
    connections: Vec<(SendRequest<ProxyBody>, Instant)>,
}

impl UpstreamPool {
    /// Sends `req` (origin-form URI, `Host` set) to `authority` and returns the response, whose body
    /// returns the connection to the pool when read to its end, and fails after `stall` without a
    /// byte.
    pub async fn send(
        &self,
        authority: &Authority,
        mut req: Request<ProxyBody>,
        stall: Duration,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        while let Some(mut sender) = self.checkout(authority) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(self.returning(authority, sender, response, stall)),
                Err(mut failed) => match failed.take_message() {
                    // It never left: the connection was closing. Another may do.
                    Some(unsent) => req = unsent,
                    None => return Err(failed.into_error().into()),
                },
            }
        }
        // Boxed: the connecting future is large and rare; inline, every request's future would
        // carry (and move) its space.
        let mut sender = Box::pin(connect(authority)).await?;
        let response = sender.send_request(req).await?;
        Ok(self.returning(authority, sender, response, stall))
    }

    fn checkout(&self, authority: &Authority) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let entry = idle.iter_mut().find(|e| e.authority == *authority)?;
        while let Some((sender, since)) = entry.connections.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    fn checkin(&self, authority: &Authority, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match idle.iter().position(|e| e.authority == *authority) {
            Some(i) => &mut idle[i],
            None => {
                idle.push(Idle {
                    authority: authority.clone(),
                    connections: Vec::new(),
                });
                let last = idle.len() - 1;
                &mut idle[last]
            }
        };
        if entry.connections.len() < MAX_IDLE {
            entry.connections.push((sender, Instant::now()));
        }
    }

    fn returning(
        &self,
        authority: &Authority,
        sender: SendRequest<ProxyBody>,
        response: Response<Incoming>,
        stall: Duration,
    ) -> Response<ProxyBody> {
        let (parts, incoming) = response.into_parts();
        let mut body = ReturnAtEnd {
            incoming,
            back: Some((self.clone(), authority.clone(), sender)),
            idle: IdleBound::new(stall),
        };
        if parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection now carries the upgraded protocol, never another request.
            body.back = None;
        } else if body.incoming.is_end_stream() {
            // No body to read (204, 304, HEAD, Content-Length: 0): free at once.
            body.give_back();
        }
        Response::from_parts(parts, body.boxed())
    }
}

async fn connect(authority: &Authority) -> Result<SendRequest<ProxyBody>, UpstreamError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority.as_str()))
        .await
        .map_err(|_| UpstreamError::ConnectTimeout(CONNECT_TIMEOUT))?
        .map_err(UpstreamError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        // With upgrades: after a 101 the socket is handed to the tunnel (`server::tunnel`).
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// A response body that hands its connection back to the pool once read to the end.
struct ReturnAtEnd {
    incoming: Incoming,
    back: Option<(UpstreamPool, Authority, SendRequest<ProxyBody>)>,
    idle: IdleBound,
}

impl ReturnAtEnd {
    fn give_back(&mut self) {
        if let Some((pool, authority, sender)) = self.back.take() {
            pool.checkin(&authority, sender);
        }
    }
}

impl Body for ReturnAtEnd {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(None) => {
                this.give_back();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.incoming.is_end_stream() {
                    this.give_back();
                }
                this.idle.progressed();
                Poll::Ready(Some(Ok(frame)))
            }
            // An error: the connection is not reusable; dropping it closes it.
            Poll::Ready(Some(Err(e))) => {
                this.back = None;
                Poll::Ready(Some(Err(BodyError::Upstream(e))))
            }
            Poll::Pending if this.idle.expired(cx) => {
                this.back = None;
                Poll::Ready(Some(Err(BodyError::Stalled(this.idle.limit()))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
