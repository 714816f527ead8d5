//! One client connection's life, whatever the listener: the gateway's own HTTP/1.1 server (`h1`)
//! or hyper's HTTP/2 serves it (chosen by the first bytes, or by ALPN over TLS), and a watchdog
//! bounds each state it can sit in.
//!
//! - Before its first request: from accept to the first complete request head (HTTP/1) or the
//!   preface and SETTINGS (HTTP/2), at most `header_read_timeout`; this covers protocol
//!   detection too.
//! - Idle: no request in flight (HTTP/1: none whose response head is still to come, and no bytes
//!   written; HTTP/2: no open stream), at most `idle_timeout`, then a graceful close.
//! - A later head begun but not finished (the HTTP/1.1 server reports it): at most
//!   `header_read_timeout`.
//! - A write to a client that has stopped reading: at most `stream_idle_timeout`. On HTTP/2 the
//!   socket need not block for that: a client that grants no flow-control window (RFC 9113
//!   §5.2) leaves hyper waiting for capacity without polling the response body, so the upstream
//!   body's own stall timer never runs. A response body that has handed out a frame and not been
//!   polled again is counted as starved, and no body poll on the connection for
//!   `stream_idle_timeout` while one is starved closes it (per connection, like the HTTP/1 write
//!   bound: a stream that moves keeps its neighbours' clock running).
//! - Optionally `max_connection_age`, then a graceful close (GOAWAY on HTTP/2).
//! - Not started yet while the listener is at its connection cap and a newer connection waits:
//!   the oldest such connection is closed at once (`accept` decides), so silent sockets cannot
//!   make legitimate clients queue for a whole `header_read_timeout`.
//!
//! The request path pays for none of this with timers: the connection's IO wrapper and its
//! service bump plain counters, and the watchdog samples them at a quarter of the shortest bound
//! (so a bound holds to within a quarter of itself) or wakes at an exact deadline.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::h1::{self, Ended};
use super::tunnel::Tunnel;
use crate::body::{BodyError, ProxyBody, from_client};
use crate::config::ConnectionLimits;
use crate::http1::Rewound;

/// The HTTP/2 connection preface (RFC 9113 §3.4), which a SETTINGS frame must follow.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;

/// What a connection's IO, service and HTTP/1.1 server tell its watchdog. Written on the request
/// path with relaxed stores (each field has one writer at a time: the connection's own task).
#[derive(Debug)]
pub struct ConnectionState {
    origin: Instant,
    /// A first request head arrived, or an HTTP/2 preface and SETTINGS.
    started: AtomicBool,
    http2: AtomicBool,
    /// Requests begun, ever.
    requests: AtomicU64,
    /// Requests in flight (HTTP/1: until their response head; HTTP/2: until the stream's body ends).
    open: AtomicU32,
    /// Successful writes, ever.
    writes: AtomicU64,
    /// When a write began waiting, as nanoseconds since `origin` plus one; 0: none waits.
    write_blocked: AtomicU64,
    /// When a request head began arriving without finishing (same encoding); 0: none.
    head_partial: AtomicU64,
    /// HTTP/2 response bodies that handed out a frame and have not been polled since: waiting for
    /// the client's flow-control window. Written from the streams' own tasks, so atomically.
    starved: AtomicU32,
    /// Polls of HTTP/2 response bodies, ever (from the streams' tasks too).
    body_polls: AtomicU64,
    /// Set when the listener, at its connection cap, needs this connection's slot (it has not
    /// started: see `accept`), and the connection's task woken.
    shed: AtomicBool,
    /// Set when the gateway drains (`accept::Drain`), and the connection's task woken.
    draining: AtomicBool,
    /// The connection's task, for `shed` and `draining`.
    waker: AtomicWaker,
}

impl ConnectionState {
    pub fn new() -> Arc<Self> {
        Arc::new(ConnectionState {
            origin: Instant::now(),
            started: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            open: AtomicU32::new(0),
            writes: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            head_partial: AtomicU64::new(0),
            starved: AtomicU32::new(0),
            body_polls: AtomicU64::new(0),
            shed: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        })
    }

    /// When the connection was admitted.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Has a request (or an HTTP/2 preface and SETTINGS) arrived?
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Closes the connection at once, to free its slot for a newer one.
    pub fn shed(&self) {
        self.shed.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Asks the connection to finish what is in flight and close (the gateway drains).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn stamp(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64 + 1
    }

    fn at(&self, stamp: u64) -> Option<Instant> {
        (stamp != 0).then(|| self.origin + Duration::from_nanos(stamp - 1))
    }

    /// A request head arrived whole (the HTTP/1.1 server): the head timer stops.
    pub fn head_complete(&self) {
        self.started.store(true, Ordering::Relaxed);
        if self.head_partial.load(Ordering::Relaxed) != 0 {
            self.head_partial.store(0, Ordering::Relaxed);
        }
    }

    /// A read ended inside a request head (the HTTP/1.1 server): its timer starts, once.
    pub fn head_partial(&self) {
        if self.head_partial.load(Ordering::Relaxed) == 0 {
            self.head_partial.store(self.stamp(), Ordering::Relaxed);
        }
    }

    /// A request begins; it is open until the returned guard is dropped.
    pub(super) fn begin(self: &Arc<Self>) -> OpenRequest {
        self.started.store(true, Ordering::Relaxed);
        bump(&self.requests);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenRequest(self.clone())
    }
}

fn bump(counter: &AtomicU64) {
    // One writer: a load and a store, no locked read-modify-write.
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// A request in flight, counted in [`ConnectionState::open`] while it lives.
pub(super) struct OpenRequest(Arc<ConnectionState>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Wraps a connection's socket: counts writes, notes a write left waiting, and spots the HTTP/2
/// preface and its SETTINGS among the first bytes. Bytes pass through unchanged.
pub struct TrackedIo<IO> {
    inner: IO,
    state: Arc<ConnectionState>,
    /// Bytes of the preface and first frame header seen so far, until the SETTINGS frame is
    /// complete; `None` once decided.
    preface: Option<Preface>,
}

#[derive(Debug, Default)]
struct Preface {
    seen: Vec<u8>,
    /// Bytes of the SETTINGS payload still to come.
    left: usize,
}

impl<IO> TrackedIo<IO> {
    pub fn new(inner: IO, state: Arc<ConnectionState>) -> Self {
        TrackedIo {
            inner,
            state,
            preface: Some(Preface::default()),
        }
    }

    fn observe(&mut self, mut bytes: &[u8]) {
        let Some(preface) = &mut self.preface else {
            return;
        };
        let wanted = H2_PREFACE.len() + FRAME_HEADER;
        if preface.seen.len() < wanted {
            let take = (wanted - preface.seen.len()).min(bytes.len());
            preface.seen.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            let n = preface.seen.len().min(H2_PREFACE.len());
            if preface.seen[..n] != H2_PREFACE[..n] {
                // HTTP/1: its heads are reported by the HTTP/1.1 server.
                self.preface = None;
                return;
            }
            if preface.seen.len() < wanted {
                return;
            }
            let frame = &preface.seen[H2_PREFACE.len()..];
            if frame[3] != SETTINGS {
                // Not a valid connection start; hyper will refuse it.
                self.preface = None;
                return;
            }
            preface.left =
                usize::from(frame[0]) << 16 | usize::from(frame[1]) << 8 | usize::from(frame[2]);
        }
        preface.left = preface.left.saturating_sub(bytes.len());
        if preface.left == 0 {
            self.state.http2.store(true, Ordering::Relaxed);
            self.state.started.store(true, Ordering::Relaxed);
            self.preface = None;
        }
    }

    fn wrote(&self, ready: bool) {
        let blocked = &self.state.write_blocked;
        if ready {
            bump(&self.state.writes);
            if blocked.load(Ordering::Relaxed) != 0 {
                blocked.store(0, Ordering::Relaxed);
            }
        } else if blocked.load(Ordering::Relaxed) == 0 {
            blocked.store(self.state.stamp(), Ordering::Relaxed);
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for TrackedIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.preface.is_some()
            && let Poll::Ready(Ok(())) = result
        {
            let filled = &buf.filled()[before..];
            this.observe(filled);
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for TrackedIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(result.is_ready());
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(result.is_ready());
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a connection's protocol is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// By the first bytes: the HTTP/2 preface, or else HTTP/1.1 (cleartext: h2c prior knowledge).
    Detect,
    /// ALPN chose.
    Http1,
    Http2,
}

/// The protocol settings every listener uses, with the limits applied: hyper serves HTTP/2, the
/// gateway's own `h1` HTTP/1.1.
pub struct Http {
    h2: http2::Builder<TokioExecutor>,
    max_head: usize,
}

impl Http {
    pub fn new(limits: &ConnectionLimits) -> Self {
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(limits.max_concurrent_streams)
            .keep_alive_interval(limits.http2_keepalive_interval)
            .keep_alive_timeout(limits.http2_keepalive_timeout);
        Http {
            h2,
            max_head: limits.max_header_bytes,
        }
    }
}

/// Asks a connection to finish what is in flight and close: HTTP/1.1 after the response under
/// way, HTTP/2 with GOAWAY. Raised and read in the connection's own task, which polls the
/// connection again right after raising it, so it needs no waker.
#[derive(Debug, Default)]
pub struct Closing(AtomicBool);

impl Closing {
    fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why the watchdog ended a connection (for the debug log and the metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Closed at once.
    Close(&'static str),
    /// Asked to finish what is in flight and close (HTTP/2 GOAWAY).
    Graceful(&'static str),
}

/// Serves one connection, answering each request with `handle`, until it ends, the watchdog ends
/// it, or `stop` turns true (then it closes gracefully, finishing what is in flight).
pub async fn serve<IO, H, F>(
    io: IO,
    state: Arc<ConnectionState>,
    http: &Http,
    protocol: Protocol,
    limits: &ConnectionLimits,
    handle: H,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<ProxyBody>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let closing = Closing::default();
    let io = TrackedIo::new(io, state.clone());
    let conn = drive(io, &state, http, protocol, &closing, handle);
    tokio::pin!(conn);
    let mut watchdog = Watchdog::new(state.clone(), limits);
    let timer = tokio::time::sleep_until(watchdog.next_wake(Instant::now()));
    tokio::pin!(timer);
    let tunnel = loop {
        tokio::select! {
            tunnel = conn.as_mut() => break tunnel,
            () = &mut timer => {
                let now = Instant::now();
                match watchdog.check(now) {
                    Some(Ending::Close(why)) => {
                        tracing::debug!(reason = why, "closing connection");
                        metrics::counter!(crate::measure::CONNECTIONS_CLOSED, "reason" => why).increment(1);
                        return;
                    }
                    Some(Ending::Graceful(why)) if !closing.is_raised() => {
                        tracing::debug!(reason = why, "closing connection gracefully");
                        metrics::counter!(crate::measure::CONNECTIONS_CLOSED, "reason" => why).increment(1);
                        closing.raise();
                    }
                    Some(Ending::Graceful(_)) | None => {}
                }
                timer.as_mut().reset(watchdog.next_wake(now));
            }
            () = Raised::shed(&state) => {
                tracing::debug!("closing connection: its slot is needed (max_connections)");
                metrics::counter!(crate::measure::CONNECTIONS_CLOSED, "reason" => "shed_at_capacity").increment(1);
                return;
            }
            () = Raised::draining(&state), if !closing.is_raised() => closing.raise(),
        }
    };
    if let Some(tunnel) = tunnel {
        tunnel.run(limits.idle_timeout, &state).await;
    }
}

/// Chooses the protocol and serves it; a 101 leaves the tunnel to run.
async fn drive<IO, H, F>(
    mut io: IO,
    state: &Arc<ConnectionState>,
    http: &Http,
    protocol: Protocol,
    closing: &Closing,
    handle: H,
) -> Option<Tunnel<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<ProxyBody>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let mut read = BytesMut::new();
    let http2 = match protocol {
        Protocol::Http1 => false,
        Protocol::Http2 => true,
        Protocol::Detect => detect(&mut io, &mut read).await.ok()?,
    };
    if http2 {
        let io = Rewound::new(read.freeze(), io);
        serve_h2(io, &http.h2, state, closing, handle).await;
        return None;
    }
    match h1::serve(io, read, http.max_head, state, closing, &handle).await {
        Ended::Closed => None,
        Ended::Switched { client, upstream } => Some(Tunnel::new(client, upstream)),
    }
}

/// Reads until the first bytes are, or cannot be, the HTTP/2 preface: `true` for HTTP/2.
async fn detect<IO: AsyncRead + Unpin>(io: &mut IO, read: &mut BytesMut) -> io::Result<bool> {
    loop {
        let n = read.len().min(H2_PREFACE.len());
        if read[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        read.reserve(8 * 1024);
        if io.read_buf(read).await? == 0 {
            return Ok(false);
        }
    }
}

/// HTTP/2, by hyper, until the client ends it or `closing` sends GOAWAY and it drains.
async fn serve_h2<IO, H, F>(
    io: IO,
    builder: &http2::Builder<TokioExecutor>,
    state: &Arc<ConnectionState>,
    closing: &Closing,
    handle: H,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<ProxyBody>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let counting = state.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let open = counting.begin();
        let answer = handle(req.map(from_client));
        async move {
            let mut response = answer.await;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                // HTTP/2 has no 101 (RFC 9113 §8.6); extended CONNECT is not offered.
                tracing::warn!("a 101 on HTTP/2");
                response = Response::new(ProxyBody::default());
                *response.status_mut() = StatusCode::BAD_GATEWAY;
            }
            Ok::<_, Infallible>(finish(open, response))
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut graceful = false;
    let ended = std::future::poll_fn(|cx| {
        if !graceful && closing.is_raised() {
            graceful = true;
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx)
    })
    .await;
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Samples a connection's state and decides when it has sat too long.
struct Watchdog {
    state: Arc<ConnectionState>,
    limits: ConnectionLimits,
    /// How often idleness is sampled.
    every: Duration,
    /// The activity seen at the last sample, and since when it has not changed.
    last_activity: (u64, u64),
    idle_since: Instant,
    /// HTTP/2 response body polls at the last sample, and since when they have not changed.
    last_body_polls: u64,
    body_polls_since: Instant,
    aged: bool,
}

impl Watchdog {
    fn new(state: Arc<ConnectionState>, limits: &ConnectionLimits) -> Self {
        let shortest = limits
            .header_read_timeout
            .min(limits.idle_timeout)
            .min(limits.stream_idle_timeout);
        Watchdog {
            idle_since: state.origin,
            body_polls_since: state.origin,
            state,
            limits: *limits,
            every: (shortest / 4).max(Duration::from_millis(5)),
            last_activity: (0, 0),
            last_body_polls: 0,
            aged: false,
        }
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut next = now + self.every;
        if !self.state.started.load(Ordering::Relaxed) {
            next = next.min(self.state.origin + self.limits.header_read_timeout);
        }
        if let Some(age) = self.limits.max_connection_age.filter(|_| !self.aged) {
            next = next.min(self.state.origin + age);
        }
        next.max(now)
    }

    /// What to do now, if anything.
    fn check(&mut self, now: Instant) -> Option<Ending> {
        // First, so its sample is taken every time.
        if self.starved(now) {
            return Some(Ending::Close("stream_idle_timeout"));
        }
        let state = &self.state;
        let limits = &self.limits;
        if !state.started.load(Ordering::Relaxed)
            && now >= state.origin + limits.header_read_timeout
        {
            return Some(Ending::Close("header_read_timeout"));
        }
        let overdue = |stamp: &AtomicU64, limit: Duration| {
            state
                .at(stamp.load(Ordering::Relaxed))
                .is_some_and(|since| now >= since + limit)
        };
        if overdue(&state.head_partial, limits.header_read_timeout) {
            return Some(Ending::Close("header_read_timeout"));
        }
        if overdue(&state.write_blocked, limits.stream_idle_timeout) {
            return Some(Ending::Close("stream_idle_timeout"));
        }
        if let Some(age) = limits.max_connection_age
            && !self.aged
            && now >= state.origin + age
        {
            self.aged = true;
            return Some(Ending::Graceful("max_connection_age"));
        }
        self.idle(now).then_some(Ending::Graceful("idle_timeout"))
    }

    /// Has an HTTP/2 response body waited for the client's window, with no body on the connection
    /// polled, for `stream_idle_timeout`?
    fn starved(&mut self, now: Instant) -> bool {
        let polls = self.state.body_polls.load(Ordering::Relaxed);
        if self.state.starved.load(Ordering::Relaxed) == 0 || polls != self.last_body_polls {
            self.last_body_polls = polls;
            self.body_polls_since = now;
            return false;
        }
        now >= self.body_polls_since + self.limits.stream_idle_timeout
    }

    /// Has nothing happened for `idle_timeout`? HTTP/2 writes (PING acks, window updates) do not
    /// count as activity: only its streams do.
    fn idle(&mut self, now: Instant) -> bool {
        let state = &self.state;
        let writes = if state.http2.load(Ordering::Relaxed) {
            0
        } else {
            state.writes.load(Ordering::Relaxed)
        };
        let activity = (state.requests.load(Ordering::Relaxed), writes);
        let busy = state.open.load(Ordering::Relaxed) > 0
            || state.head_partial.load(Ordering::Relaxed) != 0
            || state.write_blocked.load(Ordering::Relaxed) != 0;
        if busy || activity != self.last_activity {
            self.last_activity = activity;
            self.idle_since = now;
            return false;
        }
        now >= self.idle_since + self.limits.idle_timeout
    }
}

/// Completes once a flag of the connection's is raised (shed, or drain). Polled on every wake of
/// the connection's task, so it costs an atomic load and a waker check, not a lock: tokio's
/// `Notify`, under both a watch channel's `wait_for` and `Notified`, locks its waiter list on each
/// poll (with a `Notify` for shedding, load.sh put the cached path at 1.07x the CPU per request of
/// the commit before the front-door work, with this 1.03x; the drain's watch channel cost about
/// 260 instructions a request by callgrind).
pub struct Raised<'a> {
    flag: &'a AtomicBool,
    waker: &'a AtomicWaker,
}

impl<'a> Raised<'a> {
    fn shed(state: &'a ConnectionState) -> Self {
        Raised {
            flag: &state.shed,
            waker: &state.waker,
        }
    }

    pub fn draining(state: &'a ConnectionState) -> Self {
        Raised {
            flag: &state.draining,
            waker: &state.waker,
        }
    }
}

impl Future for Raised<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        // One task polls these (the connection's), so one waker serves both flags.
        self.waker.register(cx.waker());
        // Raised between the load and the registration: seen now.
        if self.flag.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Completes once the accept loop sheds the connection: for what runs before [`serve`] (the TLS
/// handshake).
pub async fn until_shed(state: &ConnectionState) {
    Raised::shed(state).await;
}

/// Marks a response to an HTTP/2 request begun with [`ConnectionState::begin`]: the stream stays
/// open until its body has been sent (or dropped).
fn finish(open: OpenRequest, response: Response<ProxyBody>) -> Response<ProxyBody> {
    response.map(|body| {
        StreamBody {
            body,
            open,
            handed: false,
            waiting: false,
        }
        .boxed()
    })
}

/// An HTTP/2 response body that keeps its stream counted as open, and counts itself starved
/// between handing out a frame and its next poll (see the module's docs).
struct StreamBody {
    body: ProxyBody,
    open: OpenRequest,
    /// A frame has been handed out.
    handed: bool,
    /// Counted in [`ConnectionState::starved`].
    waiting: bool,
}

impl StreamBody {
    fn set_waiting(&mut self, waiting: bool) {
        if self.waiting != waiting {
            self.waiting = waiting;
            let starved = &self.open.0.starved;
            if waiting {
                starved.fetch_add(1, Ordering::Relaxed);
            } else {
                starved.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.set_waiting(false);
    }
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.open.0.body_polls.fetch_add(1, Ordering::Relaxed);
        self.set_waiting(false);
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = polled {
            self.handed = true;
            self.set_waiting(true);
        }
        polled
    }

    /// Once a frame is out, never "ended" until polled empty: hyper then polls again only when
    /// the client's window has room, so a last frame h2 holds back for want of window still
    /// leaves this body waiting (and counted starved), not finished. It costs an empty final
    /// DATA frame. Before any frame, an empty body still ends the stream with its HEADERS.
    fn is_end_stream(&self) -> bool {
        !self.handed && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
