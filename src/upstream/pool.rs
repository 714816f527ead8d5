//! One worker's upstream connections. Each worker thread has its own [`UpstreamPool`], so a
//! request and its upstream connection stay on one thread, and the pool is a short list behind
//! an uncontended lock, not a shared map keyed by hashing.
//!
//! HTTP/1.1 connections are kept idle, newest first, and lent to one request at a time: one goes
//! back when the response body it carries has been read to its end; one whose body was abandoned,
//! or which failed, is dropped (and closed). No task watches an idle one: it is checked, without
//! a syscall unless its socket had an event, when it is taken out, and the oldest are checked as
//! others go back. HTTP/2 connections are shared: every request to the
//! endpoint clones the handle of a live one with a free stream, and a new one is made when all are
//! closed or full. A response body that stalls for the listener's `stream_idle_timeout` is cut off
//! (its connection closed, or its stream reset), so an upstream that sends a head and then nothing
//! cannot hold a client forever.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http2;

use super::h1;
use crate::body::{BodyError, IdleBound, ProxyBody};

/// An idle connection older than this is not reused. Upstreams close idle connections themselves
/// (nginx after 75 s, Node.js after 5 s); one already closed is noticed and skipped, and this bound
/// keeps tollgate from reusing one in the very instant the upstream gives up on it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Idle connections kept per upstream.
const MAX_IDLE: usize = 256;
/// Streams one worker opens at once on one HTTP/2 connection before it opens another: the least
/// limit a server should allow (RFC 9113 §6.5.2 recommends no less than 100), so tollgate does
/// not queue behind a limit it cannot see from here.
const MAX_STREAMS: usize = 100;

/// One worker's upstream connections.
#[derive(Clone, Default)]
pub struct UpstreamPool {
    idle: Arc<Mutex<Vec<Entry>>>,
}

/// The connections to one endpoint (by its key), the most recently used HTTP/1.1 one last.
struct Entry {
    key: Arc<str>,
    h1: Vec<(h1::Conn, Instant)>,
    h2: Vec<Shared>,
}

/// An HTTP/2 connection and the streams this worker has open on it.
struct Shared {
    sender: http2::SendRequest<ProxyBody>,
    streams: Arc<AtomicUsize>,
}

/// A stream taken on an HTTP/2 connection, given back when dropped.
pub(super) struct StreamSlot(Arc<AtomicUsize>);

/// A connection lent from the pool.
pub(super) enum Pooled {
    H1(h1::Conn),
    H2(http2::SendRequest<ProxyBody>, StreamSlot),
}

// === impl UpstreamPool ===

impl UpstreamPool {
    /// A live connection to the endpoint of `key`: an HTTP/2 one with a free stream first.
    pub(super) fn checkout(&self, key: &Arc<str>) -> Option<Pooled> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let entry = idle.iter_mut().find(|e| same(&e.key, key))?;
        entry.h2.retain(|c| !c.sender.is_closed());
        if let Some(c) = entry
            .h2
            .iter()
            .find(|c| c.streams.load(Ordering::Relaxed) < MAX_STREAMS)
        {
            c.streams.fetch_add(1, Ordering::Relaxed);
            return Some(Pooled::H2(c.sender.clone(), StreamSlot(c.streams.clone())));
        }
        while let Some((mut conn, since)) = entry.h1.pop() {
            if since.elapsed() < IDLE_TIMEOUT && conn.is_usable() {
                return Some(Pooled::H1(conn));
            }
        }
        None
    }

    /// Shares a new HTTP/2 connection with later requests; the caller's stream is its first.
    pub(super) fn add_h2(
        &self,
        key: &Arc<str>,
        sender: http2::SendRequest<ProxyBody>,
    ) -> StreamSlot {
        let streams = Arc::new(AtomicUsize::new(1));
        let shared = Shared {
            sender,
            streams: streams.clone(),
        };
        self.with_entry(key, |entry| entry.h2.push(shared));
        StreamSlot(streams)
    }

    /// Keeps an HTTP/1.1 connection whose exchange ended cleanly, newest last. Nothing watches
    /// an idle connection (no task per connection): the oldest ones are checked here, so those
    /// the upstream closed or that aged out do not pile up as sockets.
    pub(super) fn checkin_h1(&self, key: &Arc<str>, conn: h1::Conn) {
        self.with_entry(key, |entry| {
            let now = Instant::now();
            while let Some((oldest, since)) = entry.h1.first_mut() {
                if now.duration_since(*since) < IDLE_TIMEOUT && oldest.is_usable() {
                    break;
                }
                entry.h1.remove(0);
            }
            if entry.h1.len() < MAX_IDLE {
                entry.h1.push((conn, now));
            }
        });
    }

    fn with_entry(&self, key: &Arc<str>, f: impl FnOnce(&mut Entry)) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = idle.iter_mut().find(|e| same(&e.key, key)) {
            return f(entry);
        }
        // A new endpoint (or the same one after a reload changed its settings): entries whose
        // connections have all closed go first, so reloads do not grow the list.
        idle.retain(|e| !e.h1.is_empty() || e.h2.iter().any(|c| !c.sender.is_closed()));
        let mut entry = Entry {
            key: key.clone(),
            h1: Vec::new(),
            h2: Vec::new(),
        };
        f(&mut entry);
        idle.push(entry);
    }
}

/// The response of an HTTP/2 exchange, whose body frees its stream slot when it ends (or drops).
pub(super) fn returning_h2(
    slot: StreamSlot,
    response: Response<Incoming>,
    stall: Duration,
) -> Response<ProxyBody> {
    let (parts, incoming) = response.into_parts();
    let mut body = ReturnAtEnd {
        incoming,
        slot: Some(slot),
        idle: IdleBound::new(stall),
    };
    if body.incoming.is_end_stream() {
        // No body to read (204, 304, HEAD, Content-Length: 0): free at once.
        body.slot = None;
    }
    Response::from_parts(parts, body.boxed())
}

/// Keys are compared by pointer first: a compiled API's endpoints keep theirs for their life.
fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An HTTP/2 response body that frees its stream slot once read to the end (or dropped).
struct ReturnAtEnd {
    incoming: Incoming,
    slot: Option<StreamSlot>,
    idle: IdleBound,
}

impl Body for ReturnAtEnd {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        // Frame by frame, trailers included: gRPC's status travels in them.
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(None) => {
                this.slot = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.incoming.is_end_stream() {
                    this.slot = None;
                }
                this.idle.progressed();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.slot = None;
                Poll::Ready(Some(Err(BodyError::Upstream(Box::new(e)))))
            }
            Poll::Pending if this.idle.expired(cx) => {
                this.slot = None;
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
