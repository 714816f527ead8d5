//! A read-side watcher of HTTP/1 message framing, beneath hyper.
//!
//! hyper resolves some ambiguous framings on its own before we see the request: with both
//! `Content-Length` and `Transfer-Encoding` it drops the length (and closes the connection
//! afterwards), and it folds repeated identical `Content-Length` headers into one. Both are how
//! request smuggling starts (RFC 9112 §6.3, §11.2), and tollgate refuses them outright. So this
//! wrapper follows the byte stream (heads, then fixed-length or chunked bodies), judges each request
//! head as it passes, and queues the verdict; the listener hands each request its verdict in order.
//! Bytes pass through unchanged. Anything it cannot follow (HTTP/2, upgrades, malformed framing
//! that hyper will refuse anyway) switches it off for the rest of the connection.
//!
//! Since it sees where each head begins and ends, it also tells the connection's watchdog when a
//! head has arrived whole and when a read stopped inside one, so a head that trickles in is cut
//! off after `header_read_timeout`.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::connection::ConnectionState;

/// The framing verdicts of one connection's request heads, oldest first: `Some(reason)` when the
/// head's framing is ambiguous.
#[derive(Debug, Default)]
pub struct FramingLog(Mutex<VecDeque<Option<&'static str>>>);

impl FramingLog {
    /// The verdict for the next request hyper hands over (`None`: nothing to object to).
    pub fn next_verdict(&self) -> Option<&'static str> {
        self.lock().pop_front().flatten()
    }

    fn push(&self, verdict: Option<&'static str>) {
        self.lock().push_back(verdict);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Option<&'static str>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Set on a request whose head had ambiguous framing; the policy refuses it.
#[derive(Debug, Clone, Copy)]
pub struct AmbiguousFraming(pub &'static str);

/// Where in the byte stream the watcher is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd(u8),
    Trailers,
    Off,
}

/// Wraps a connection's IO; reads are observed, never altered.
pub struct FramingGuard<IO> {
    inner: IO,
    state: State,
    /// The head (or chunk line) read so far.
    pending: Vec<u8>,
    max_head: usize,
    log: Arc<FramingLog>,
    connection: Arc<ConnectionState>,
}

impl<IO> FramingGuard<IO> {
    pub fn new(
        inner: IO,
        max_head: usize,
        log: Arc<FramingLog>,
        connection: Arc<ConnectionState>,
    ) -> Self {
        FramingGuard {
            inner,
            state: State::Head,
            pending: Vec::new(),
            max_head,
            log,
            connection,
        }
    }

    /// Advances the state machine over newly read bytes.
    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let used = match self.state {
                State::Off => return,
                State::Head => self.head(bytes),
                State::Fixed(left) => {
                    let n = left.min(bytes.len() as u64);
                    self.state = if n == left {
                        State::Head
                    } else {
                        State::Fixed(left - n)
                    };
                    n as usize
                }
                State::ChunkSize | State::Trailers => self.line(bytes),
                State::ChunkData(left) => {
                    let n = left.min(bytes.len() as u64);
                    self.state = if n == left {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(left - n)
                    };
                    n as usize
                }
                State::ChunkEnd(left) => {
                    let expected: &[u8] = if left == 2 { b"\r\n" } else { b"\n" };
                    let n = (left as usize).min(bytes.len());
                    if bytes[..n] != expected[..n] {
                        self.state = State::Off;
                        return;
                    }
                    let left = left - n as u8;
                    self.state = if left == 0 {
                        State::ChunkSize
                    } else {
                        State::ChunkEnd(left)
                    };
                    n
                }
            };
            bytes = &bytes[used..];
        }
        if self.state == State::Head && !self.pending.is_empty() {
            self.connection.head_partial();
        }
    }

    /// Collects a request head; judges it once complete. Returns the bytes consumed.
    fn head(&mut self, bytes: &[u8]) -> usize {
        let start = self.pending.len().saturating_sub(3);
        self.pending.extend_from_slice(bytes);
        let Some(end) = find(&self.pending[start..], b"\r\n\r\n").map(|i| start + i + 4) else {
            if self.pending.len() > self.max_head {
                // hyper refuses it (431); nothing more to follow.
                self.state = State::Off;
            }
            return bytes.len();
        };
        let head = std::mem::take(&mut self.pending);
        self.connection.head_complete();
        self.state = self.judge(&head[..end]);
        // What followed the head in this read belongs to the body or the next message.
        bytes.len() - (head.len() - end)
    }

    fn judge(&self, head: &[u8]) -> State {
        if head.starts_with(b"PRI * HTTP/2.0") {
            return State::Off;
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut request = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(_)) = request.parse(head) else {
            return State::Off;
        };
        if request.method == Some("CONNECT") {
            return State::Off;
        }
        let named = |name: &'static str| {
            request
                .headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
        };
        let lengths: Vec<&[u8]> = named("content-length").map(|h| h.value).collect();
        let encodings: Vec<&[u8]> = named("transfer-encoding").map(|h| h.value).collect();
        let verdict = if lengths.len() > 1 {
            Some("more than one Content-Length")
        } else if !lengths.is_empty() && !encodings.is_empty() {
            Some("both Content-Length and Transfer-Encoding")
        } else {
            None
        };
        self.log.push(verdict);
        if let Some(last) = encodings.last() {
            let chunked = std::str::from_utf8(last)
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
            // hyper refuses a request whose last coding is not chunked.
            return if chunked {
                State::ChunkSize
            } else {
                State::Off
            };
        }
        match lengths.first().map(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        }) {
            None => State::Head,
            Some(Some(0)) => State::Head,
            Some(Some(n)) => State::Fixed(n),
            Some(None) => State::Off,
        }
    }

    /// A chunk-size line, or a trailer line. Returns the bytes consumed.
    fn line(&mut self, bytes: &[u8]) -> usize {
        let Some(nl) = bytes.iter().position(|b| *b == b'\n') else {
            self.pending.extend_from_slice(bytes);
            if self.pending.len() > self.max_head {
                self.state = State::Off;
            }
            return bytes.len();
        };
        self.pending.extend_from_slice(&bytes[..nl]);
        let line = std::mem::take(&mut self.pending);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        self.state = match self.state {
            State::ChunkSize => {
                let size = line.split(|b| *b == b';').next().unwrap_or(line);
                match std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                {
                    Some(0) => State::Trailers,
                    Some(n) => State::ChunkData(n),
                    None => State::Off,
                }
            }
            _ if line.is_empty() => State::Head,
            other => other,
        };
        nl + 1
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl<IO: AsyncRead + Unpin> AsyncRead for FramingGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let filled = &buf.filled()[before..];
            this.observe(filled);
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FramingGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(stream: &[&[u8]]) -> (Vec<Option<&'static str>>, State) {
        let log = Arc::new(FramingLog::default());
        let mut guard = FramingGuard::new((), 8192, log.clone(), ConnectionState::new());
        for part in stream {
            guard.observe(part);
        }
        let all = log.lock().iter().copied().collect();
        (all, guard.state)
    }

    #[test]
    fn follows_pipelined_messages_across_reads() {
        let (v, state) = verdicts(&[
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel",
            b"loGET /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r",
            b"\n0\r\nTrailer: 1\r\n\r\nGET /c HTTP/1.1\r\nHo",
            b"st: x\r\n\r\n",
        ]);
        assert_eq!(v, [None, None, None]);
        assert_eq!(state, State::Head);
    }

    #[test]
    fn flags_ambiguous_framing() {
        let (v, _) =
            verdicts(&[b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"]);
        assert_eq!(v, [Some("more than one Content-Length")]);
        let (v, _) = verdicts(&[
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ]);
        assert_eq!(v, [Some("both Content-Length and Transfer-Encoding")]);
        let (v, _) = verdicts(&[
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
        ]);
        assert_eq!(v, [Some("both Content-Length and Transfer-Encoding")]);
    }

    #[test]
    fn steps_aside_for_http2_and_garbage() {
        let (v, state) = verdicts(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]);
        assert!(v.is_empty());
        assert_eq!(state, State::Off);
        let (_, state) =
            verdicts(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]);
        assert_eq!(state, State::Off);
    }
}
