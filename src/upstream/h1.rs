//! HTTP/1.1 to an upstream, written for a proxy: the serving task itself writes the request head
//! into the pooled socket, reads the response head in place (httparse, header values sliced out
//! of the read buffer without copies) and streams the body from the same buffer. No connection
//! task, no channel between the request and its connection: a connection belongs to one exchange
//! at a time, and idles in the worker's pool between exchanges.
//!
//! Framing follows RFC 9112 strictly, because a proxy that misreads where a response ends hands
//! the rest to the next client on the same connection:
//! - the response body's length (§6.3): none for HEAD, 1xx, 204 and 304; chunked when it is the
//!   last transfer coding; otherwise until the upstream closes when any coding is present; else
//!   `Content-Length`, whose every value must be the same decimal number; else until close.
//! - a connection is used again only when both messages ended where their framing said, nothing
//!   arrived past the response's end, the response was HTTP/1.1 without `Connection: close`, and it
//!   did not carry `Content-Length` beside `Transfer-Encoding`.
//! - 1xx answers before the final one are read and dropped (§15.2); a 101 hands the socket, and
//!   any bytes read past its head, to the WebSocket tunnel.
//!
//! The request body is sent while the response is read, so an upstream that answers early (a 413
//! before the upload ends) is heard; such a connection is not used again.

use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::UpstreamPool;
use super::connect::Stream;
use crate::body::{BodyError, IdleBound, ProxyBody};
use crate::http1::{
    Codings, Decoder, Lengths, Rewound, Step, has_token, parse_length, put_chunk, put_field,
    put_last_chunk,
};

/// The longest response head (or trailer section) read; past it the response is refused.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in a response head.
const MAX_HEADERS: usize = 100;
/// Room made in the read buffer before each read.
const READ_SPACE: usize = 8 * 1024;
/// Request body bytes gathered before they are written.
const WRITE_BATCH: usize = 64 * 1024;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// One HTTP/1.1 connection to an upstream, with its buffers (kept for its life, so a request
/// reuses them).
pub(super) struct Conn {
    io: Stream,
    /// Bytes read and not yet consumed.
    read: BytesMut,
    /// Bytes to write, and how many of them are written.
    write: Vec<u8>,
    written: usize,
    /// A write failed: the connection carries no other exchange.
    broken: bool,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection closed (or was reset) before any byte of an answer: the upstream may have
    /// closed an idle connection just as the request left.
    #[error("the connection closed before any response")]
    Closed,
    #[error("{0}")]
    Io(#[source] io::Error),
    #[error("malformed response head: {0}")]
    Head(&'static str),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("the response's framing: {0}")]
    Framing(&'static str),
    #[error("the response body ended before its framing said")]
    Incomplete,
    #[error("the request body does not match its Content-Length")]
    RequestLength,
    /// The request body failed (a client's fault: broken, stalled, too large).
    #[error("the request body: {0}")]
    RequestBody(#[source] BodyError),
}

/// A failed exchange, with the request when it can be sent again: it had no body, and nothing
/// of an answer arrived.
#[derive(Debug)]
pub(super) struct Failed {
    pub error: Error,
    pub request: Option<Request<ProxyBody>>,
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy)]
enum Outgoing {
    Length(u64),
    Chunked,
}

/// A request body being sent.
struct Pump {
    body: ProxyBody,
    framing: Outgoing,
    sent: u64,
    trailers: Option<HeaderMap>,
}

/// Which framing fields a response head has, noted as it is parsed, so those it lacks (most of
/// them, most of the time) cost no lookup.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    connection: bool,
    content_length: bool,
    transfer_encoding: bool,
}

/// A parsed response head.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    decoder: Decoder,
    reusable: bool,
}

/// The fields written after the request's own: the endpoint's `Host`, then the gateway's (see
/// `Sending::added`).
#[derive(Clone, Copy)]
pub(super) struct Added<'a> {
    pub host: &'a HeaderValue,
    pub fields: &'a [(HeaderName, HeaderValue)],
}

/// What the read buffer holds at its start.
enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A 1xx, taken out.
    Informational,
    Final(Head),
}

/// Where a finished connection goes: its worker's pool, under its endpoint's key.
pub(super) struct Release {
    pub pool: UpstreamPool,
    pub key: Arc<str>,
}

/// The response body: read from the connection, which goes back to the pool at its end.
struct IncomingBody {
    conn: Option<Conn>,
    pump: Option<Pump>,
    decoder: Decoder,
    reusable: bool,
    release: Option<Release>,
    idle: IdleBound,
}

/// The socket of a connection the upstream switched to another protocol (101), for the tunnel.
/// In the response's extensions, which must be `Clone`: the socket is taken out once.
#[derive(Clone)]
pub struct Switched(Arc<Mutex<Option<Upgraded>>>);

/// A switched connection: the bytes read past the 101's head first, then the socket.
pub type Upgraded = Rewound<Stream>;

// === impl Conn ===

impl Conn {
    pub(super) fn new(io: Stream) -> Conn {
        Conn {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            written: 0,
            broken: false,
        }
    }

    /// Whether an idle connection can carry a request: nothing arrived while it sat idle. An
    /// upstream says nothing unasked: a FIN, a reset or stray bytes mean it is closing (or
    /// confused), and the request should take another. Costs no syscall when the socket has had
    /// no event since its last read.
    pub(super) fn is_usable(&mut self) -> bool {
        if self.broken || !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut buf)
            .is_pending()
    }

    /// Sends `req` (origin-form, without `Host`) with the `added` fields and reads the response
    /// head. The response body returns the connection to `release` once read to its end; it
    /// fails after `stall` without a byte.
    pub(super) async fn send(
        mut self,
        req: Request<ProxyBody>,
        added: Added<'_>,
        stall: Duration,
        release: Release,
    ) -> Result<Response<ProxyBody>, Failed> {
        let (parts, body) = req.into_parts();
        let bodiless = body.is_end_stream();
        let framing = self.encode_head(&parts, added, &body);
        let mut pump = framing.map(|framing| Pump {
            body,
            framing,
            sent: 0,
            trailers: None,
        });
        let head_only = parts.method == Method::HEAD;
        let mut answered = false;
        let head =
            std::future::poll_fn(|cx| self.poll_exchange(cx, &mut pump, head_only, &mut answered))
                .await;
        let head = match head {
            Ok(head) => head,
            Err(error) => {
                let request = (bodiless && matches!(error, Error::Closed))
                    .then(|| Request::from_parts(parts, crate::body::empty()));
                return Err(Failed { error, request });
            }
        };
        Ok(self.respond(head, pump, stall, release))
    }

    /// Writes the request head into the write buffer; returns how the body is framed, `None`
    /// when there is none. The framing headers are the connection's own: any `Content-Length` or
    /// `Transfer-Encoding` among `parts`' headers is replaced.
    fn encode_head(
        &mut self,
        parts: &http::request::Parts,
        added: Added<'_>,
        body: &ProxyBody,
    ) -> Option<Outgoing> {
        let w = &mut self.write;
        w.clear();
        self.written = 0;
        w.extend_from_slice(parts.method.as_str().as_bytes());
        w.push(b' ');
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        w.extend_from_slice(target.as_bytes());
        w.extend_from_slice(b" HTTP/1.1\r\n");
        put_field(w, "host", added.host);
        let mut declared = None;
        for (name, value) in &parts.headers {
            if *name == CONTENT_LENGTH {
                declared = declared.or(Some(parse_length(value.as_bytes())));
                continue;
            }
            if *name == TRANSFER_ENCODING || *name == HOST {
                continue;
            }
            put_field(w, name.as_str(), value);
        }
        for (name, value) in added.fields {
            put_field(w, name.as_str(), value);
        }
        let framing = if body.is_end_stream() {
            // A request that declared an empty body keeps saying so.
            if declared.is_some() {
                w.extend_from_slice(b"content-length: 0\r\n");
            }
            None
        } else {
            match declared.flatten().or(body.size_hint().exact()) {
                Some(length) => {
                    let _ = write!(w, "content-length: {length}\r\n");
                    Some(Outgoing::Length(length))
                }
                None => {
                    w.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    Some(Outgoing::Chunked)
                }
            }
        };
        w.extend_from_slice(b"\r\n");
        framing
    }

    /// Sends what is left of the request while reading the response head, until the head has
    /// arrived. A write that fails stops the sending, not the reading: the upstream may have
    /// answered before it stopped reading.
    fn poll_exchange(
        &mut self,
        cx: &mut Context<'_>,
        pump: &mut Option<Pump>,
        head_only: bool,
        answered: &mut bool,
    ) -> Poll<Result<Head, Error>> {
        if self.sending(pump) {
            match self.poll_send(cx, pump) {
                Poll::Ready(Ok(())) | Poll::Pending => {}
                Poll::Ready(Err(Error::Io(_))) => self.stop_sending(pump),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        loop {
            if !self.read.is_empty() {
                *answered = true;
                match self.parse_head(head_only)? {
                    Some(mut head) => {
                        // A request still being sent when the answer came: the connection is
                        // left mid-message.
                        head.reusable &= !self.sending(pump);
                        return Poll::Ready(Ok(head));
                    }
                    None if self.read.len() >= MAX_HEAD => {
                        return Poll::Ready(Err(Error::HeadTooLarge));
                    }
                    None => {}
                }
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) if *answered => return Poll::Ready(Err(Error::Incomplete)),
                Ok(0) => return Poll::Ready(Err(Error::Closed)),
                Ok(_) => {}
                Err(e) if !*answered && is_reset(&e) => return Poll::Ready(Err(Error::Closed)),
                Err(e) => return Poll::Ready(Err(Error::Io(e))),
            }
        }
    }

    fn sending(&self, pump: &Option<Pump>) -> bool {
        pump.is_some() || self.written < self.write.len()
    }

    fn stop_sending(&mut self, pump: &mut Option<Pump>) {
        self.broken = true;
        *pump = None;
        self.write.clear();
        self.written = 0;
    }

    /// Writes the queued bytes and the body's frames as they come; ready when all is written.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        pump: &mut Option<Pump>,
    ) -> Poll<Result<(), Error>> {
        loop {
            // Gather what the body has ready, so small frames share a write.
            while let Some(p) = pump.as_mut()
                && self.write.len() - self.written < WRITE_BATCH
            {
                match Pin::new(&mut p.body).poll_frame(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Some(Ok(frame))) => p.encode(frame, &mut self.write)?,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(Error::RequestBody(e))),
                    Poll::Ready(None) => {
                        p.finish(&mut self.write)?;
                        *pump = None;
                    }
                }
            }
            if self.written == self.write.len() {
                self.write.clear();
                self.written = 0;
                ready!(Pin::new(&mut self.io).poll_flush(cx)).map_err(Error::Io)?;
                return match pump {
                    None => Poll::Ready(Ok(())),
                    // Waiting for the body, whose waker is set.
                    Some(_) => Poll::Pending,
                };
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.write[self.written..]))
                .map_err(Error::Io)?;
            if n == 0 {
                return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())));
            }
            self.written += n;
        }
    }

    /// Reads more into the read buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_SPACE / 4 {
            // Reclaims the buffer in place when the earlier response's bytes are all dropped.
            self.read.reserve(READ_SPACE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    /// Parses the final response head at the start of the read buffer and takes it out, with
    /// any 1xx before it (100 Continue, 103 Early Hints: dropped, RFC 9110 §15.2): `None` until
    /// it is whole.
    fn parse_head(&mut self, head_only: bool) -> Result<Option<Head>, Error> {
        loop {
            match self.parse_one(head_only)? {
                Parsed::Final(head) => return Ok(Some(head)),
                Parsed::Partial => return Ok(None),
                Parsed::Informational => {}
            }
        }
    }

    /// One head at the start of the read buffer.
    fn parse_one(&mut self, head_only: bool) -> Result<Parsed, Error> {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            &self.read,
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
            Err(httparse::Error::TooManyHeaders) => return Err(Error::Head("too many headers")),
            Err(_) => return Err(Error::Head("not an HTTP/1.1 response head")),
        };
        let status = response
            .code
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or(Error::Head("bad status code"))?;
        let version = match response.version {
            Some(1) => Version::HTTP_11,
            _ => Version::HTTP_10,
        };
        // Where each field lies in the buffer, so the head can be split off and its values
        // sliced from it without copies.
        let base = self.read.as_ptr() as usize;
        let mut fields = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let count = response.headers.len();
        for (at, field) in fields.iter_mut().zip(response.headers.iter()) {
            let name = field.name.as_ptr() as usize - base;
            let value = field.value.as_ptr() as usize - base;
            // Offsets below MAX_HEAD-ish sizes always fit; the buffer is bounded by `MAX_HEAD`
            // plus one read.
            *at = (
                name as u32,
                (name + field.name.len()) as u32,
                value as u32,
                (value + field.value.len()) as u32,
            );
        }
        let head = self.read.split_to(len).freeze();
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(Parsed::Informational);
        }
        let mut headers = HeaderMap::with_capacity(count);
        let mut close = false;
        let mut seen = Seen::default();
        for &(ns, ne, vs, ve) in &fields[..count] {
            let name = HeaderName::from_bytes(&head[ns as usize..ne as usize])
                .map_err(|_| Error::Head("bad header name"))?;
            seen.content_length |= name == CONTENT_LENGTH;
            seen.transfer_encoding |= name == TRANSFER_ENCODING;
            let value = &head[vs as usize..ve as usize];
            // This hop's own: `Keep-Alive`, and a `Connection` that names no field (the usual
            // `keep-alive` or `close`), are read here and go no further. One naming fields is
            // kept for the forwarder, which removes it and them.
            if name == KEEP_ALIVE {
                continue;
            }
            if name == CONNECTION {
                let mut names_fields = false;
                for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                        names_fields = true;
                    }
                }
                if !names_fields && status != StatusCode::SWITCHING_PROTOCOLS {
                    continue;
                }
                seen.connection = true;
            }
            let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
                .map_err(|_| Error::Head("bad header value"))?;
            headers.append(name, value);
        }
        let (decoder, reusable) = framing(status, version, &mut headers, head_only, seen)?;
        let reusable = reusable && !close;
        Ok(Parsed::Final(Head {
            status,
            headers,
            decoder,
            reusable,
        }))
    }

    /// The response, with a body reading the rest from this connection.
    fn respond(
        self,
        head: Head,
        pump: Option<Pump>,
        stall: Duration,
        release: Release,
    ) -> Response<ProxyBody> {
        let mut response = Response::new(ProxyBody::default());
        // The version is the gateway's own (RFC 9110 §6.2), whatever the upstream's.
        *response.status_mut() = head.status;
        *response.headers_mut() = head.headers;
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            let upgraded = Rewound::new(self.read.freeze(), self.io);
            response
                .extensions_mut()
                .insert(Switched(Arc::new(Mutex::new(Some(upgraded)))));
            return response;
        }
        let mut body = IncomingBody {
            conn: Some(self),
            pump,
            decoder: head.decoder,
            reusable: head.reusable,
            release: Some(release),
            idle: IdleBound::new(stall),
        };
        if body.decoder == Decoder::Done {
            // Nothing to read (HEAD, 204, 304, `Content-Length: 0`): free at once.
            body.finish();
            return response;
        }
        *response.body_mut() = body.boxed();
        response
    }

    /// Decodes the next piece of the response body: `None` at its end.
    fn poll_decode(
        &mut self,
        cx: &mut Context<'_>,
        decoder: &mut Decoder,
    ) -> Poll<Result<Option<Frame<Bytes>>, Error>> {
        loop {
            match decoder.decode(&mut self.read).map_err(Error::Framing)? {
                Step::Frame(frame) => return Poll::Ready(Ok(Some(frame))),
                Step::End => return Poll::Ready(Ok(None)),
                Step::More => {}
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) if *decoder == Decoder::Close => {
                    *decoder = Decoder::Done;
                    return Poll::Ready(Ok(None));
                }
                Ok(0) => return Poll::Ready(Err(Error::Incomplete)),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(Error::Io(e))),
            }
        }
    }
}

/// The response body's length (RFC 9112 §6.3) and whether the connection may carry another
/// exchange after it. Normalises a repeated `Content-Length` to one value.
fn framing(
    status: StatusCode,
    version: Version,
    headers: &mut HeaderMap,
    head_only: bool,
    seen: Seen,
) -> Result<(Decoder, bool), Error> {
    let mut reusable = version == Version::HTTP_11
        && !(seen.connection && has_token(headers, CONNECTION, "close"));
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok((Decoder::Done, false));
    }
    // The codings are this hop's: the gateway frames the body again for its client.
    let mut codings = Codings::default();
    if seen.transfer_encoding {
        for value in headers.get_all(TRANSFER_ENCODING) {
            codings.add(value.as_bytes());
        }
        headers.remove(TRANSFER_ENCODING);
    }
    if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Decoder::Done, reusable));
    }
    if codings.present {
        if codings.chunked > 1 || (codings.chunked == 1 && !codings.last_chunked) {
            return Err(Error::Framing(
                "chunked applied more than once, or not last",
            ));
        }
        // Beside a Content-Length, Transfer-Encoding wins and the length goes (§6.3 ¶3, an
        // intermediary removes it), and the connection is not trusted with another message.
        reusable &= headers.remove(CONTENT_LENGTH).is_none();
        if !codings.last_chunked {
            return Ok((Decoder::Close, false));
        }
        return Ok((Decoder::ChunkSize, reusable));
    }
    if seen.content_length {
        let mut lengths = Lengths::default();
        for value in headers.get_all(CONTENT_LENGTH) {
            lengths.add(value.as_bytes()).map_err(Error::Framing)?;
        }
        let Lengths { length, values } = lengths;
        let length = length.ok_or(Error::Framing("empty Content-Length"))?;
        if values > 1 {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        return Ok((Decoder::length(length), reusable));
    }
    Ok((Decoder::Close, false))
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

// === impl Pump ===

impl Pump {
    /// Queues one of the body's frames, framed for the wire.
    fn encode(&mut self, frame: Frame<Bytes>, w: &mut Vec<u8>) -> Result<(), Error> {
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    self.trailers = Some(trailers);
                }
                return Ok(());
            }
        };
        if data.is_empty() {
            return Ok(());
        }
        self.sent += data.len() as u64;
        match self.framing {
            Outgoing::Length(length) if self.sent > length => return Err(Error::RequestLength),
            Outgoing::Length(_) => w.extend_from_slice(&data),
            Outgoing::Chunked => put_chunk(w, &data),
        }
        Ok(())
    }

    /// Queues the body's end: the last chunk and trailers, or a check that the length was met.
    fn finish(&mut self, w: &mut Vec<u8>) -> Result<(), Error> {
        match self.framing {
            Outgoing::Length(length) if self.sent != length => Err(Error::RequestLength),
            Outgoing::Length(_) => Ok(()),
            Outgoing::Chunked => {
                put_last_chunk(w, self.trailers.as_ref());
                Ok(())
            }
        }
    }
}

// === impl IncomingBody ===

impl IncomingBody {
    /// The response has ended: the connection goes back to the pool when both messages ended
    /// cleanly and nothing arrived past the response; otherwise it is closed.
    fn finish(&mut self) {
        self.decoder = Decoder::Done;
        let Some(conn) = self.conn.take() else {
            return;
        };
        let clean = self.reusable
            && self.pump.is_none()
            && !conn.sending(&None)
            && !conn.broken
            && conn.read.is_empty();
        self.pump = None;
        if let (true, Some(release)) = (clean, self.release.take()) {
            release.pool.checkin_h1(&release.key, conn);
        }
    }

    fn fail(&mut self) {
        self.decoder = Decoder::Done;
        self.conn = None;
        self.pump = None;
    }
}

impl Body for IncomingBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        // The upstream answered before the request body was all sent: keep sending it.
        if conn.sending(&this.pump) {
            match conn.poll_send(cx, &mut this.pump) {
                Poll::Ready(Ok(())) | Poll::Pending => {}
                Poll::Ready(Err(Error::RequestBody(e))) => {
                    this.fail();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Err(_)) => {
                    conn.stop_sending(&mut this.pump);
                    this.reusable = false;
                }
            }
        }
        match conn.poll_decode(cx, &mut this.decoder) {
            Poll::Ready(Ok(Some(frame))) => {
                this.idle.progressed();
                if this.decoder == Decoder::Done {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Ok(None)) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                this.fail();
                Poll::Ready(Some(Err(BodyError::Upstream(Box::new(e)))))
            }
            Poll::Pending if this.idle.expired(cx) => {
                this.fail();
                Poll::Ready(Some(Err(BodyError::Stalled(this.idle.limit()))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder == Decoder::Done
    }

    fn size_hint(&self) -> SizeHint {
        self.decoder
            .remaining()
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

// === impl Switched ===

impl Switched {
    /// The switched connection, once.
    pub fn take(&self) -> Option<Upgraded> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl std::fmt::Debug for Switched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Switched")
    }
}

#[cfg(test)]
mod tests;
