//! HTTP/1.1 to clients, written for the gateway: the connection's own task parses each request
//! head in place (httparse, header values sliced out of the read buffer without copies), calls the
//! request path, and writes the response head and body into the socket itself. No dispatcher, no
//! channel for a bodiless request: a request body alone gets a one-slot hand-over from this task
//! to whoever reads it.
//!
//! Framing follows RFC 9112 strictly, because a gateway that reads a request's end differently
//! from its upstream lets one request hide inside another (request smuggling, §11.2):
//! - a head past `max_header_bytes` or with more than 100 fields is 431; a malformed one is 400;
//!   HTTP/1.2 to 1.9 are served as 1.1 (RFC 9110 §2.5), any other version but 1.0 is 505. Each
//!   closes the connection.
//! - `Transfer-Encoding` must end in `chunked`, applied once (§6.3), else 400. `Content-Length`
//!   must be decimal digits, all its values the same, else 400.
//! - What the upstream might read differently is handed to the policy as [`AmbiguousFraming`],
//!   which refuses it with its own 400 (so the access log has it): `Content-Length` beside
//!   `Transfer-Encoding`, `Content-Length` given more than once, `Transfer-Encoding` in HTTP/1.0
//!   (§6.1). The connection closes after the answer.
//! - HTTP/1.1 needs exactly one `Host` (§3.2), else 400.
//! - A connection carries another request only when this one's body was read to its end (what
//!   nobody read is skipped when it is already here, else the connection closes), nothing asked
//!   to close it, and the client is HTTP/1.1 or asked HTTP/1.0 keep-alive.
//!
//! The response is framed by its own `Content-Length`, its body's known length, or else chunked
//! (close-delimited for an HTTP/1.0 client); `Expect: 100-continue` is answered when the request
//! path first reads the body, so a request refused before that never sends it. A 101 to an
//! upgrade the client asked for hands the socket, and anything read past the head, to the tunnel.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Bytes, BytesMut};
use http::header::{
    CONNECTION, CONTENT_LENGTH, DATE, EXPECT, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::connection::{Closing, ConnectionState};
use crate::body::{BodyError, ProxyBody};
use crate::http1::{
    Codings, Decoder, Lengths, Rewound, Step, put_chunk, put_field, put_last_chunk, tokens,
};
use crate::upstream::{Switched, Upgraded};

/// The most header fields in a request head.
const MAX_HEADERS: usize = 100;
/// Room made in the read buffer before each read.
const READ_SPACE: usize = 8 * 1024;
/// Response body bytes gathered before they are written.
const WRITE_BATCH: usize = 64 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Set on a request whose head had ambiguous framing; the policy refuses it.
#[derive(Debug, Clone, Copy)]
pub struct AmbiguousFraming(pub &'static str);

/// How a served connection ended.
pub enum Ended<IO> {
    /// Closed, or to be closed: nothing more to do.
    Closed,
    /// A 101 switched protocols: the tunnel joins the two sides.
    Switched {
        client: Rewound<IO>,
        upstream: Upgraded,
    },
}

/// A head refused before it reaches the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    BadRequest(&'static str),
    TooLarge(&'static str),
    UriTooLong,
    Version,
}

/// A parsed request head, with what the connection needs to know of it.
struct Head {
    parts: http::request::Parts,
    /// The body's framing; `None`: no body.
    body: Option<Decoder>,
    keep_alive: bool,
    expect_continue: bool,
    head_only: bool,
    upgrade: bool,
    /// The client takes trailers (`TE: trailers`).
    trailers: bool,
    ambiguous: Option<&'static str>,
}

/// The socket and its buffers, kept for the connection's life.
struct Wire<IO> {
    io: IO,
    /// Bytes read and not yet consumed.
    read: BytesMut,
    /// Bytes to write, and how many of them are written.
    write: Vec<u8>,
    written: usize,
}

/// How the response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outgoing {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    Length {
        length: u64,
        sent: u64,
    },
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, length unknown).
    Close,
}

/// What a request body's reader and the connection share: at most one frame in hand.
#[derive(Default)]
struct Slot {
    item: Option<Result<Frame<Bytes>, BodyError>>,
    /// The body's end has been reached (after `item`, if any).
    ended: bool,
    /// The reader found nothing and waits.
    wanted: bool,
    reader: Option<Waker>,
    feeder: Option<Waker>,
    /// The reader is gone.
    dropped: bool,
}

type Shared = Arc<Mutex<Slot>>;

/// A request body, as the request path reads it.
struct ClientBody {
    shared: Shared,
    /// Bytes still to come, when the length was declared.
    left: Option<u64>,
}

/// The connection's side of a request body: reads it from the socket as the reader asks.
struct Feed {
    shared: Shared,
    decoder: Decoder,
    /// A `100 Continue` is owed when the body is first asked for.
    expect_continue: bool,
    /// The body's framing broke, or the client went away mid-body.
    failed: bool,
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ClientBodyError(&'static str);

/// What follows an exchange.
enum Next {
    /// The connection carries another request.
    Again,
    Close,
    /// A 101 went out: the socket belongs to the tunnel now.
    Switch(Upgraded),
}

/// Serves HTTP/1.1 on `io` (with `read` already read from it) until the client or `closing`
/// ends it, answering each request with `handle`.
pub(super) async fn serve<IO, H, F>(
    io: IO,
    read: BytesMut,
    max_head: usize,
    state: &Arc<ConnectionState>,
    closing: &Closing,
    handle: &H,
) -> Ended<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: Fn(Request<ProxyBody>) -> F,
    F: Future<Output = Response<ProxyBody>>,
{
    let mut wire = Wire {
        io,
        read,
        write: Vec::new(),
        written: 0,
    };
    loop {
        let head = std::future::poll_fn(|cx| wire.poll_head(cx, max_head, state, closing)).await;
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => return wire.close().await,
            Err(refusal) => {
                tracing::debug!(refusal = ?refusal, "refused a request head");
                wire.refuse(refusal);
                let _ = std::future::poll_fn(|cx| wire.poll_write_queued(cx)).await;
                return wire.close().await;
            }
        };
        match wire.exchange(head, state, closing, handle).await {
            Next::Again => {}
            Next::Close => return wire.close().await,
            Next::Switch(upstream) => {
                let client = Rewound::new(wire.read.freeze(), wire.io);
                return Ended::Switched { client, upstream };
            }
        }
    }
}

// === impl Wire ===

impl<IO: AsyncRead + AsyncWrite + Unpin> Wire<IO> {
    /// The next request head: `None` when the client closed (or `closing` was raised) between
    /// requests.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        max_head: usize,
        state: &ConnectionState,
        closing: &Closing,
    ) -> Poll<Result<Option<Head>, Refusal>> {
        loop {
            if !self.read.is_empty() {
                if let Some(head) = parse_head(&mut self.read, max_head)? {
                    state.head_complete();
                    return Poll::Ready(Ok(Some(head)));
                }
            } else if closing.is_raised() {
                return Poll::Ready(Ok(None));
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Ok(None)),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => {
                    if !self.read.is_empty() {
                        state.head_partial();
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// One request and its response.
    async fn exchange<H, F>(
        &mut self,
        head: Head,
        state: &Arc<ConnectionState>,
        closing: &Closing,
        handle: &H,
    ) -> Next
    where
        H: Fn(Request<ProxyBody>) -> F,
        F: Future<Output = Response<ProxyBody>>,
    {
        let Head {
            mut parts,
            body,
            mut keep_alive,
            expect_continue,
            head_only,
            upgrade,
            trailers,
            ambiguous,
        } = head;
        if let Some(reason) = ambiguous {
            parts.extensions.insert(AmbiguousFraming(reason));
        }
        let version = parts.version;
        let (body, mut feed) = match body {
            None => (ProxyBody::default(), None),
            Some(decoder) => {
                let (body, feed) = ClientBody::channel(decoder, expect_continue);
                (body.boxed(), Some(feed))
            }
        };
        let open = state.begin();
        let mut answer = std::pin::pin!(handle(Request::from_parts(parts, body)));
        let mut response =
            std::future::poll_fn(|cx| self.poll_answer(cx, answer.as_mut(), &mut feed)).await;
        drop(open);
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            match self.switch(&mut response, upgrade && feed.is_none()).await {
                Some(next) => return next,
                None => response = bad_gateway(),
            }
        }
        if let Some(feed) = &mut feed {
            // Too late to ask for the body now; one nobody reads is skipped if it is here.
            feed.expect_continue = false;
            keep_alive &= !feed.abandoned() || feed.skip_buffered(&mut self.read);
        }
        keep_alive &= !closing.is_raised();
        let (parts, body) = response.into_parts();
        let asked = Asked { head_only, version };
        let (mut out, announced) =
            self.encode_head(parts.status, &parts.headers, &body, asked, &mut keep_alive);
        let mut body = Some(body);
        // Trailers only to a client that takes them, and only those the response announced
        // (RFC 9110 §6.6.2).
        let mut sending = Sending {
            out: &mut out,
            trailers: None,
            send_trailers: trailers && !announced.is_empty(),
            announced,
        };
        let sent =
            std::future::poll_fn(|cx| self.poll_respond(cx, &mut sending, &mut body, &mut feed))
                .await;
        drop(body);
        if let Err(e) = sent {
            tracing::debug!(error = %e, "the response could not be sent whole");
            return Next::Close;
        }
        if let Some(mut feed) = feed
            && !feed.finish(&mut self.read)
        {
            return Next::Close;
        }
        if keep_alive { Next::Again } else { Next::Close }
    }

    /// Awaits the request path's answer, reading the request body as it asks.
    fn poll_answer<F: Future<Output = Response<ProxyBody>>>(
        &mut self,
        cx: &mut Context<'_>,
        mut answer: Pin<&mut F>,
        feed: &mut Option<Feed>,
    ) -> Poll<Response<ProxyBody>> {
        loop {
            if let Poll::Ready(response) = answer.as_mut().poll(cx) {
                return Poll::Ready(response);
            }
            let fed = feed.as_mut().is_some_and(|feed| feed.poll_feed(cx, self));
            if self.written < self.write.len() {
                // A `100 Continue`; a client gone away shows when the response is written.
                let _ = self.poll_write_queued(cx);
            }
            if !fed {
                return Poll::Pending;
            }
        }
    }

    /// A 101 from the upstream: sent, and the socket handed over, when the client asked for
    /// the upgrade (`allowed`) and the upstream's side is there. `None`: it cannot be.
    async fn switch(&mut self, response: &mut Response<ProxyBody>, allowed: bool) -> Option<Next> {
        let upstream = response
            .extensions_mut()
            .remove::<Switched>()
            .and_then(|switched| switched.take());
        match upstream {
            Some(upstream) if allowed => {
                let (status, headers) = (response.status(), response.headers());
                let asked = Asked {
                    head_only: true,
                    version: Version::HTTP_11,
                };
                self.encode_head(status, headers, &ProxyBody::default(), asked, &mut true);
                let written = std::future::poll_fn(|cx| self.poll_write_queued(cx)).await;
                Some(if written.is_ok() {
                    Next::Switch(upstream)
                } else {
                    Next::Close
                })
            }
            // Never from the forwarder, which lets through only the upgrade the client asked
            // for: the client would wait on a protocol nobody speaks.
            _ => {
                tracing::warn!("a 101 without both sides of an upgrade");
                None
            }
        }
    }
}

/// What of the request shapes its response.
#[derive(Debug, Clone, Copy)]
struct Asked {
    /// A HEAD: the response has no body.
    head_only: bool,
    version: Version,
}

/// A response body on its way out.
struct Sending<'a> {
    out: &'a mut Outgoing,
    trailers: Option<HeaderMap>,
    /// The client said it takes trailers, and the response announced some.
    send_trailers: bool,
    /// The response's `Trailer` values: the fields that may follow.
    announced: Vec<HeaderValue>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Wire<IO> {
    /// Writes the response head (queued) and body, reading the request body meanwhile for an
    /// upstream still taking it. Ready when all is written.
    fn poll_respond(
        &mut self,
        cx: &mut Context<'_>,
        sending: &mut Sending<'_>,
        body: &mut Option<ProxyBody>,
        feed: &mut Option<Feed>,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some(feed) = feed.as_mut() {
                feed.poll_feed(cx, self);
            }
            // Gather what the body has ready, so small frames share a write.
            while let Some(b) = body.as_mut()
                && self.write.len() - self.written < WRITE_BATCH
            {
                match Pin::new(b).poll_frame(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Some(Ok(frame))) => self.encode_frame(frame, sending)?,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                    Poll::Ready(None) => {
                        self.finish_body(sending)?;
                        *body = None;
                    }
                }
            }
            if self.written < self.write.len() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.write[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
                continue;
            }
            self.write.clear();
            self.written = 0;
            if body.is_some() {
                // Waiting for the body, whose waker is set.
                return Poll::Pending;
            }
            return Pin::new(&mut self.io).poll_flush(cx);
        }
    }

    /// Queues one of the response body's frames, framed for the wire.
    fn encode_frame(&mut self, frame: Frame<Bytes>, sending: &mut Sending<'_>) -> io::Result<()> {
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    sending.trailers = Some(trailers);
                }
                return Ok(());
            }
        };
        match sending.out {
            Outgoing::None => {}
            Outgoing::Length { length, sent } => {
                *sent += data.len() as u64;
                if *sent > *length {
                    return Err(io::Error::other(
                        "the response body outgrew its Content-Length",
                    ));
                }
                self.write.extend_from_slice(&data);
            }
            Outgoing::Chunked if data.is_empty() => {}
            Outgoing::Chunked => put_chunk(&mut self.write, &data),
            Outgoing::Close => self.write.extend_from_slice(&data),
        }
        Ok(())
    }

    /// Queues the body's end: the last chunk and trailers, or a check that the length was met.
    fn finish_body(&mut self, sending: &mut Sending<'_>) -> io::Result<()> {
        match *sending.out {
            Outgoing::Length { length, sent } if sent != length => Err(io::Error::other(
                "the response body ended before its Content-Length",
            )),
            Outgoing::Chunked => {
                let mut trailers = sending.trailers.take().filter(|_| sending.send_trailers);
                if let Some(fields) = trailers.as_mut() {
                    let named = |name: &HeaderName| {
                        sending.announced.iter().any(|v| {
                            tokens(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(name.as_ref()))
                        })
                    };
                    let mut kept = HeaderMap::new();
                    let mut current = None;
                    // `drain` names a field once, before its first value.
                    for (name, value) in fields.drain() {
                        if let Some(name) = name {
                            current = named(&name).then_some(name);
                        }
                        if let Some(name) = &current {
                            kept.append(name.clone(), value);
                        }
                    }
                    *fields = kept;
                }
                put_last_chunk(&mut self.write, trailers.as_ref());
                Ok(())
            }
            Outgoing::None | Outgoing::Length { .. } | Outgoing::Close => Ok(()),
        }
    }

    /// Queues the response head, and says how its body is framed and which trailers it
    /// announced. The framing fields are the connection's own: the response's
    /// `Transfer-Encoding`, `Connection` and `Content-Length` are replaced (a 101 keeps its
    /// `Connection: upgrade`). What the fields say is read as they are written, in one pass.
    fn encode_head(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &ProxyBody,
        asked: Asked,
        keep_alive: &mut bool,
    ) -> (Outgoing, Vec<HeaderValue>) {
        let w = &mut self.write;
        w.extend_from_slice(b"HTTP/1.1 ");
        w.extend_from_slice(status.as_str().as_bytes());
        w.push(b' ');
        w.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        w.extend_from_slice(b"\r\n");
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        let (mut lengths, mut valid) = (Lengths::default(), true);
        let (mut dated, mut announced) = (false, Vec::new());
        for (name, value) in headers {
            if *name == CONTENT_LENGTH {
                valid &= lengths.add(value.as_bytes()).is_ok();
                continue;
            }
            if *name == TRANSFER_ENCODING {
                continue;
            }
            if *name == CONNECTION {
                *keep_alive &= !tokens(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close"));
                if !switching {
                    continue;
                }
            }
            dated |= *name == DATE;
            if *name == TRAILER {
                announced.push(value.clone());
            }
            put_field(w, name.as_str(), value);
        }
        let declared = lengths.length.filter(|_| valid);
        let (out, length) = response_framing(status, declared, body, asked);
        *keep_alive &= out != Outgoing::Close;
        if let Some(length) = length {
            w.extend_from_slice(b"content-length: ");
            w.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        if out == Outgoing::Chunked {
            w.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if !switching {
            if !*keep_alive {
                w.extend_from_slice(b"connection: close\r\n");
            } else if asked.version == Version::HTTP_10 {
                w.extend_from_slice(b"connection: keep-alive\r\n");
            }
        }
        if !dated {
            put_date(w);
        }
        w.extend_from_slice(b"\r\n");
        (out, announced)
    }

    /// Queues the answer to a head refused before the request path: a short text saying why.
    fn refuse(&mut self, refusal: Refusal) {
        let (status, why) = match refusal {
            Refusal::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            Refusal::TooLarge(why) => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, why),
            Refusal::UriTooLong => (StatusCode::URI_TOO_LONG, "request target too long"),
            Refusal::Version => (
                StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                "only HTTP/1.0, HTTP/1.1 and HTTP/2 are served",
            ),
        };
        let text = format!("{why}\n");
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(text.len()));
        let asked = Asked {
            head_only: false,
            version: Version::HTTP_11,
        };
        let body = ProxyBody::default();
        self.encode_head(status, &headers, &body, asked, &mut false);
        self.write.extend_from_slice(text.as_bytes());
    }

    /// Writes what is queued.
    fn poll_write_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.write.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.write[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.write.clear();
        self.written = 0;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Reads more into the read buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_SPACE / 4 {
            // Reclaims the buffer in place once the earlier requests' bytes are all dropped.
            self.read.reserve(READ_SPACE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    /// Ends the connection: a FIN (TLS: close_notify) after what was written.
    async fn close(mut self) -> Ended<IO> {
        let _ = self.io.shutdown().await;
        Ended::Closed
    }
}

/// How the response body is framed, and the `Content-Length` to send (RFC 9112 §6.1–6.3), from
/// the response's own `Content-Length` when it is one number (`declared`).
fn response_framing(
    status: StatusCode,
    declared: Option<u64>,
    body: &ProxyBody,
    asked: Asked,
) -> (Outgoing, Option<u64>) {
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        return (Outgoing::None, None);
    }
    if status == StatusCode::NOT_MODIFIED {
        return (Outgoing::None, declared);
    }
    if asked.head_only {
        // What a GET would have carried, when known.
        let known = declared.or(body.size_hint().exact().filter(|&n| n > 0));
        return (Outgoing::None, known);
    }
    let length = declared.or_else(|| {
        if body.is_end_stream() {
            Some(0)
        } else {
            body.size_hint().exact()
        }
    });
    match length {
        Some(length) => (Outgoing::Length { length, sent: 0 }, Some(length)),
        None if asked.version == Version::HTTP_11 => (Outgoing::Chunked, None),
        None => (Outgoing::Close, None),
    }
}

fn bad_gateway() -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::default());
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// The `Date` field (RFC 9110 §6.6.1), formatted once a second per thread.
fn put_date(w: &mut Vec<u8>) {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((0, String::new()))
        };
    }
    let now = std::time::SystemTime::now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second || text.is_empty() {
            *text = httpdate::fmt_http_date(now);
            *at = second;
        }
        w.extend_from_slice(b"date: ");
        w.extend_from_slice(text.as_bytes());
        w.extend_from_slice(b"\r\n");
    });
}

/// Parses the request head at the start of `read` and takes it out: `None` until it is whole.
fn parse_head(read: &mut BytesMut, max_head: usize) -> Result<Option<Head>, Refusal> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        read,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Partial) if read.len() <= max_head => return Ok(None),
        Ok(_) => return Err(Refusal::TooLarge("the request head is too large")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::TooLarge("too many header fields"));
        }
        // RFC 9110 §2.5: a later HTTP/1.x is served as the 1.1 this server speaks.
        Err(httparse::Error::Version) if serve_as_http11(read) => {
            return parse_head(read, max_head);
        }
        Err(httparse::Error::Version) => return Err(Refusal::Version),
        Err(_) => return Err(Refusal::BadRequest("malformed request head")),
    };
    // Where each piece lies in the buffer, so the head can be split off and its pieces sliced
    // from it without copies. Offsets fit in u32: the head is at most `max_head` bytes.
    let base = read.as_ptr() as usize;
    let span = |piece: &[u8]| {
        let at = piece.as_ptr() as usize - base;
        (at, at + piece.len())
    };
    let method = span(request.method.unwrap_or("").as_bytes());
    let target = span(request.path.unwrap_or("").as_bytes());
    let minor = request.version.unwrap_or(1);
    let mut fields = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let count = request.headers.len();
    for (at, field) in fields.iter_mut().zip(request.headers.iter()) {
        let (ns, ne) = span(field.name.as_bytes());
        let (vs, ve) = span(field.value);
        *at = (ns as u32, ne as u32, vs as u32, ve as u32);
    }
    let head = read.split_to(len).freeze();
    let mut parts = Request::new(()).into_parts().0;
    parts.method = Method::from_bytes(&head[method.0..method.1])
        .map_err(|_| Refusal::BadRequest("bad method"))?;
    if target.1 - target.0 >= usize::from(u16::MAX) {
        return Err(Refusal::UriTooLong);
    }
    parts.uri = Uri::from_maybe_shared(head.slice(target.0..target.1))
        .map_err(|_| Refusal::BadRequest("bad request target"))?;
    parts.version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut headers = HeaderMap::with_capacity(count);
    let mut facts = Facts::default();
    for &(ns, ne, vs, ve) in &fields[..count] {
        let name = HeaderName::from_bytes(&head[ns as usize..ne as usize])
            .map_err(|_| Refusal::BadRequest("bad header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
            .map_err(|_| Refusal::BadRequest("bad header value"))?;
        facts.observe(&name, value.as_bytes())?;
        headers.append(name, value);
    }
    parts.headers = headers;
    facts.describe(parts).map(Some)
}

/// Rewrites a request line's `HTTP/1.2` to `HTTP/1.9` as `HTTP/1.1` (httparse reads only 1.0 and
/// 1.1); `false` when the version is not one of those.
fn serve_as_http11(read: &mut BytesMut) -> bool {
    let line = read.iter().position(|&b| b == b'\n').unwrap_or(read.len());
    let Some(space) = read[..line].iter().rposition(|&b| b == b' ') else {
        return false;
    };
    let version = read[space + 1..line]
        .strip_suffix(b"\r")
        .unwrap_or(&read[space + 1..line]);
    let later = version.len() == 8
        && version.starts_with(b"HTTP/1.")
        && (b'2'..=b'9').contains(&version[7]);
    if later {
        read[space + 8] = b'1';
    }
    later
}

/// What a head's fields say of its framing and its connection, gathered as they are parsed
/// (comparing standard names is cheap; looking each up again afterwards is not).
#[derive(Debug, Default)]
struct Facts {
    lengths: Lengths,
    codings: Codings,
    hosts: usize,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
    trailers: bool,
}

impl Facts {
    fn observe(&mut self, name: &HeaderName, value: &[u8]) -> Result<(), Refusal> {
        if *name == CONTENT_LENGTH {
            self.lengths.add(value).map_err(Refusal::BadRequest)?;
        } else if *name == TRANSFER_ENCODING {
            self.codings.add(value);
        } else if *name == HOST {
            self.hosts += 1;
        } else if *name == CONNECTION {
            for token in tokens(value) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if *name == EXPECT {
            self.expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if *name == UPGRADE {
            self.upgrade = true;
        } else if *name == TE {
            self.trailers |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"trailers"));
        }
        Ok(())
    }

    /// What the connection must know of the head: its body's framing, and whether the
    /// connection may carry another request after it.
    fn describe(self, parts: http::request::Parts) -> Result<Head, Refusal> {
        let http11 = parts.version == Version::HTTP_11;
        if self.hosts > 1 || (http11 && self.hosts == 0) {
            return Err(Refusal::BadRequest(
                "an HTTP/1.1 request needs exactly one Host",
            ));
        }
        let (body, ambiguous) = self.framing(parts.version)?;
        let keep_alive = !self.close
            && (http11 || self.keep_alive)
            && ambiguous.is_none()
            && parts.method != Method::CONNECT;
        Ok(Head {
            keep_alive,
            expect_continue: http11 && body.is_some() && self.expect_continue,
            head_only: parts.method == Method::HEAD,
            upgrade: http11 && self.upgrade,
            trailers: self.trailers,
            body,
            ambiguous,
            parts,
        })
    }

    /// The request body's framing (RFC 9112 §6.3), and what makes it ambiguous for the policy
    /// to refuse. What no reading can make sense of is refused here.
    fn framing(
        &self,
        version: Version,
    ) -> Result<(Option<Decoder>, Option<&'static str>), Refusal> {
        let Lengths { length, values } = self.lengths;
        let mut ambiguous = (values > 1).then_some("more than one Content-Length");
        if !self.codings.present {
            return Ok((length.filter(|&n| n > 0).map(Decoder::Length), ambiguous));
        }
        if !self.codings.is_chunked() {
            return Err(Refusal::BadRequest(
                "Transfer-Encoding must end in chunked, applied once",
            ));
        }
        if length.is_some() {
            ambiguous = ambiguous.or(Some("both Content-Length and Transfer-Encoding"));
        } else if version == Version::HTTP_10 {
            ambiguous = Some("Transfer-Encoding in an HTTP/1.0 request");
        }
        Ok((Some(Decoder::ChunkSize), ambiguous))
    }
}

// === impl ClientBody ===

fn lock(shared: &Shared) -> MutexGuard<'_, Slot> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClientBody {
    fn channel(decoder: Decoder, expect_continue: bool) -> (ClientBody, Feed) {
        let shared = Shared::default();
        let body = ClientBody {
            shared: shared.clone(),
            left: decoder.remaining(),
        };
        let feed = Feed {
            shared,
            decoder,
            expect_continue,
            failed: false,
        };
        (body, feed)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let mut slot = lock(&this.shared);
        if let Some(item) = slot.item.take() {
            if let (Ok(frame), Some(left)) = (&item, this.left.as_mut())
                && let Some(data) = frame.data_ref()
            {
                *left = left.saturating_sub(data.len() as u64);
            }
            return Poll::Ready(Some(item));
        }
        if slot.ended {
            return Poll::Ready(None);
        }
        slot.wanted = true;
        if !slot
            .reader
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            slot.reader = Some(cx.waker().clone());
        }
        if let Some(feeder) = slot.feeder.take() {
            feeder.wake();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let slot = lock(&self.shared);
        slot.ended && slot.item.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.left
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        let mut slot = lock(&self.shared);
        slot.dropped = true;
        if let Some(feeder) = slot.feeder.take() {
            feeder.wake();
        }
    }
}

// === impl Feed ===

impl Feed {
    /// Reads the body's next frame when its reader wants one; `true` when one was handed over
    /// (a reader in this task is then polled again by the caller, without a wake-up).
    fn poll_feed<IO: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        wire: &mut Wire<IO>,
    ) -> bool {
        if self.failed || self.decoder == Decoder::Done {
            return false;
        }
        let shared = self.shared.clone();
        let mut slot = lock(&shared);
        if slot.dropped {
            return false;
        }
        if !slot.wanted || slot.item.is_some() {
            park(&mut slot.feeder, cx);
            return false;
        }
        if std::mem::take(&mut self.expect_continue) {
            wire.write.extend_from_slice(CONTINUE);
        }
        loop {
            match self.decoder.decode(&mut wire.read) {
                Ok(Step::Frame(frame)) => {
                    slot.item = Some(Ok(frame));
                    slot.ended = self.decoder == Decoder::Done;
                    break;
                }
                Ok(Step::End) => {
                    slot.ended = true;
                    break;
                }
                Ok(Step::More) => match wire.poll_fill(cx) {
                    Poll::Ready(Ok(0)) => {
                        self.fail(&mut slot, "the client closed before the body's end");
                        break;
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(_)) => {
                        self.fail(&mut slot, "the client's connection failed mid-body");
                        break;
                    }
                    Poll::Pending => {
                        park(&mut slot.feeder, cx);
                        return false;
                    }
                },
                Err(why) => {
                    self.fail(&mut slot, why);
                    break;
                }
            }
        }
        slot.wanted = false;
        if let Some(reader) = slot.reader.take()
            && !reader.will_wake(cx.waker())
        {
            reader.wake();
        }
        true
    }

    fn fail(&mut self, slot: &mut Slot, why: &'static str) {
        self.failed = true;
        slot.item = Some(Err(BodyError::Client(Box::new(ClientBodyError(why)))));
        slot.ended = true;
    }

    /// Whether the body's reader has let go of it before its end.
    fn abandoned(&self) -> bool {
        self.decoder != Decoder::Done && lock(&self.shared).dropped
    }

    /// Skips what of the body is already read: `true` if that reached its end.
    fn skip_buffered(&mut self, read: &mut BytesMut) -> bool {
        if self.failed {
            return false;
        }
        loop {
            match self.decoder.decode(read) {
                Ok(Step::Frame(_)) => {}
                Ok(Step::End) => return true,
                Ok(Step::More) | Err(_) => return false,
            }
        }
    }

    /// After the response: whether the body ended where its framing said, so the next request
    /// starts at the right byte.
    fn finish(&mut self, read: &mut BytesMut) -> bool {
        if self.failed {
            return false;
        }
        self.decoder == Decoder::Done || self.skip_buffered(read)
    }
}

impl Drop for Feed {
    /// The connection is done with the body: a reader still waiting learns it will get no more.
    fn drop(&mut self) {
        let mut slot = lock(&self.shared);
        if !slot.ended {
            slot.item = Some(Err(BodyError::Client(Box::new(ClientBodyError(
                "the client's connection ended before the body did",
            )))));
            slot.ended = true;
        }
        if let Some(reader) = slot.reader.take() {
            reader.wake();
        }
    }
}

/// Keeps the task's waker where the other side will find it.
fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

#[cfg(test)]
mod tests;
