//! HTTP/1.1 wire pieces both hops share: the gateway's client side (`server::h1`) reads request
//! bodies with them and its upstream client (`upstream::h1`) response bodies, so both follow one
//! reading of RFC 9112's framing rules.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest chunk-size line, extensions included.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;
/// The longest trailer section.
pub const MAX_TRAILERS: usize = 64 * 1024;
/// The most fields in a trailer section.
const MAX_TRAILER_FIELDS: usize = 32;

/// Where a body's end is, and how far the reading has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Length(u64),
    /// Before a chunk-size line.
    ChunkSize,
    /// Inside a chunk's data, with this much left.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
    /// Until the peer closes (responses only).
    Close,
    Done,
}

/// What the read buffer gave the decoder.
#[derive(Debug)]
pub enum Step {
    Frame(Frame<Bytes>),
    /// The body has ended.
    End,
    /// More bytes are needed.
    More,
}

/// A socket with bytes already read from it, given back first: a switched connection's (a 101's
/// head was read with what followed it), or one whose first bytes chose its protocol.
pub struct Rewound<IO> {
    read: Bytes,
    io: IO,
}

/// A message's `Content-Length` values as they are read: each must be decimal digits, all the
/// same number (RFC 9112 §6.3).
#[derive(Debug, Default, Clone, Copy)]
pub struct Lengths {
    pub length: Option<u64>,
    /// How many values (comma-separated ones count apart).
    pub values: usize,
}

/// A message's transfer codings as they are read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Codings {
    /// A `Transfer-Encoding` field was there.
    pub present: bool,
    /// How many times `chunked` is applied.
    pub chunked: usize,
    /// Whether the last coding is `chunked`.
    pub last_chunked: bool,
}

// === impl Lengths ===

impl Lengths {
    pub fn add(&mut self, value: &[u8]) -> Result<(), &'static str> {
        for item in value.split(|&b| b == b',') {
            let n = parse_length(item.trim_ascii()).ok_or("Content-Length is not a number")?;
            if self.length.is_some_and(|l| l != n) {
                return Err("differing Content-Length values");
            }
            self.length = Some(n);
            self.values += 1;
        }
        Ok(())
    }
}

// === impl Codings ===

impl Codings {
    pub fn add(&mut self, value: &[u8]) {
        self.present = true;
        for coding in tokens(value) {
            self.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            self.chunked += usize::from(self.last_chunked);
        }
    }

    /// `chunked` applied once, last: the only framing a transfer coding can give.
    pub fn is_chunked(&self) -> bool {
        self.chunked == 1 && self.last_chunked
    }
}

// === impl Decoder ===

impl Decoder {
    /// The decoder for a body of `length` bytes.
    pub fn length(length: u64) -> Decoder {
        if length == 0 {
            Decoder::Done
        } else {
            Decoder::Length(length)
        }
    }

    /// Takes the next piece of the body out of `read`. A body bounded by the peer's close is
    /// never `End` here: the caller decides at the end of the stream.
    pub fn decode(&mut self, read: &mut BytesMut) -> Result<Step, &'static str> {
        loop {
            match *self {
                Decoder::Done | Decoder::Length(0) => {
                    *self = Decoder::Done;
                    return Ok(Step::End);
                }
                Decoder::Length(left) | Decoder::ChunkData(left) if !read.is_empty() => {
                    let n = left.min(read.len() as u64);
                    let data = read.split_to(n as usize).freeze();
                    *self = match *self {
                        Decoder::Length(_) if n == left => Decoder::Done,
                        Decoder::Length(_) => Decoder::Length(left - n),
                        _ if n == left => Decoder::ChunkEnd,
                        _ => Decoder::ChunkData(left - n),
                    };
                    return Ok(Step::Frame(Frame::data(data)));
                }
                Decoder::Close if !read.is_empty() => {
                    return Ok(Step::Frame(Frame::data(read.split().freeze())));
                }
                Decoder::ChunkSize => match chunk_size(read)? {
                    Some((line, size)) => {
                        read.advance(line);
                        *self = if size == 0 {
                            Decoder::Trailers
                        } else {
                            Decoder::ChunkData(size)
                        };
                    }
                    None => return Ok(Step::More),
                },
                Decoder::ChunkEnd if read.len() >= 2 => {
                    if read[..2] != *b"\r\n" {
                        return Err("no CRLF after a chunk");
                    }
                    read.advance(2);
                    *self = Decoder::ChunkSize;
                }
                Decoder::Trailers => {
                    return match parse_trailers(read)? {
                        None => Ok(Step::More),
                        Some(trailers) => {
                            *self = Decoder::Done;
                            Ok(trailers.map_or(Step::End, |t| Step::Frame(Frame::trailers(t))))
                        }
                    };
                }
                Decoder::Length(_) | Decoder::ChunkData(_) | Decoder::ChunkEnd | Decoder::Close => {
                    return Ok(Step::More);
                }
            }
        }
    }

    /// The bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match *self {
            Decoder::Length(left) => Some(left),
            Decoder::Done => Some(0),
            _ => None,
        }
    }
}

/// The trailer section after the last chunk, once whole: `Some(None)` when it is empty.
fn parse_trailers(read: &mut BytesMut) -> Result<Option<Option<HeaderMap>>, &'static str> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    match httparse::parse_headers(read, &mut slots) {
        Ok(httparse::Status::Complete((len, fields))) => {
            let trailers = if fields.is_empty() {
                None
            } else {
                let mut map = HeaderMap::with_capacity(fields.len());
                for field in fields {
                    let name = HeaderName::from_bytes(field.name.as_bytes())
                        .map_err(|_| "bad trailer name")?;
                    let value =
                        HeaderValue::from_bytes(field.value).map_err(|_| "bad trailer value")?;
                    map.append(name, value);
                }
                Some(map)
            };
            read.advance(len);
            Ok(Some(trailers))
        }
        Ok(httparse::Status::Partial) if read.len() < MAX_TRAILERS => Ok(None),
        Ok(httparse::Status::Partial) => Err("trailers too large"),
        Err(_) => Err("malformed trailers"),
    }
}

/// A chunk-size line at the start of `buf` (RFC 9112 §7.1): hex digits, optional extensions
/// (ignored), CRLF. Returns the line's length and the size, `None` until the line is whole.
pub fn chunk_size(buf: &[u8]) -> Result<Option<(usize, u64)>, &'static str> {
    let Some(lf) = buf.iter().take(MAX_CHUNK_LINE).position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_CHUNK_LINE {
            Err("chunk-size line too long")
        } else {
            Ok(None)
        };
    };
    let line = buf[..lf]
        .strip_suffix(b"\r")
        .ok_or("chunk-size line without CRLF")?;
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 || digits > 16 {
        return Err("bad chunk size");
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err("bad chunk size");
    }
    let size = line[..digits].iter().fold(0u64, |n, &d| {
        // ASCII hex digits only, at most 16 of them: no overflow.
        n << 4 | u64::from((d as char).to_digit(16).unwrap_or(0))
    });
    Ok(Some((lf + 1, size)))
}

/// A Content-Length value: 1 to 19 decimal digits, nothing else.
pub fn parse_length(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// One header field line. Names and values are validated by `http`: no CR, LF or NUL can reach
/// the wire.
pub fn put_field(w: &mut Vec<u8>, name: &str, value: &HeaderValue) {
    w.extend_from_slice(name.as_bytes());
    w.extend_from_slice(b": ");
    w.extend_from_slice(value.as_bytes());
    w.extend_from_slice(b"\r\n");
}

/// The comma-separated tokens of a field value (`Connection`, `Transfer-Encoding`), trimmed,
/// empty ones skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether a comma-separated header (e.g. `Connection`) holds `token`, in any case.
pub fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| tokens(v.as_bytes()))
        .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// One chunk of a chunked body, framed.
pub fn put_chunk(w: &mut Vec<u8>, data: &[u8]) {
    use std::io::Write as _;
    let _ = write!(w, "{:x}\r\n", data.len());
    w.extend_from_slice(data);
    w.extend_from_slice(b"\r\n");
}

/// The last chunk and the trailer section.
pub fn put_last_chunk(w: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    w.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        put_field(w, name.as_str(), value);
    }
    w.extend_from_slice(b"\r\n");
}

// === impl Rewound ===

impl<IO> Rewound<IO> {
    pub fn new(read: Bytes, io: IO) -> Self {
        Rewound { read, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewound<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewound<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
