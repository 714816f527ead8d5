//! WebSocket tunnels: once the upstream has answered an allowed upgrade with 101 (the forwarder
//! checked it was the WebSocket upgrade the client asked for), the client's connection and the
//! upstream's are joined byte for byte. The tunnel runs in the client connection's own task, so
//! it is counted as that connection (the connection cap, the drain at shutdown), and it is closed
//! after the listener's `idle_timeout` with no bytes either way, or as soon as the gateway drains
//! (a tunnel has no request to finish; its peers reconnect elsewhere).
//!
//! HTTP/2 extended CONNECT (RFC 8441) is not offered, so every tunnel starts as HTTP/1.1.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::connection::{ConnectionState, Raised};
use crate::http1::Rewound;
use crate::upstream::Upgraded;

/// Both halves of a switched connection, waiting to be joined: the client's socket (with what
/// was read past the request head) and the upstream's.
pub struct Tunnel<IO> {
    client: Rewound<IO>,
    upstream: Upgraded,
}

/// Why a tunnel ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// A peer closed (or failed): the usual end.
    Closed,
    IdleTimeout,
    Shutdown,
}

/// Counts the bytes read through it: the tunnel's sign of life.
struct Counted<IO> {
    inner: IO,
    read: Arc<AtomicU64>,
}

// === impl Tunnel ===

impl<IO: AsyncRead + AsyncWrite + Unpin> Tunnel<IO> {
    pub fn new(client: Rewound<IO>, upstream: Upgraded) -> Self {
        Tunnel { client, upstream }
    }

    /// Joins the two sides until one closes, nothing moves for `idle`, or `stop` turns true.
    pub async fn run(self, idle: Duration, state: &ConnectionState) {
        let since = Instant::now();
        let read = Arc::new(AtomicU64::new(0));
        let (ended, up, down) = tokio::select! {
            joined = self.join(idle, &read) => joined,
            () = Raised::draining(state) => (Ended::Shutdown, 0, 0),
        };
        tracing::info!(
            ended = ?ended,
            duration_ms = since.elapsed().as_secs_f64() * 1000.0,
            bytes_read = read.load(Ordering::Relaxed),
            bytes_up = up,
            bytes_down = down,
            "websocket tunnel closed"
        );
    }

    async fn join(self, idle: Duration, read: &Arc<AtomicU64>) -> (Ended, u64, u64) {
        let mut client = Counted {
            inner: self.client,
            read: read.clone(),
        };
        let mut upstream = Counted {
            inner: self.upstream,
            read: read.clone(),
        };
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::pin!(copy);
        // Sampled at a quarter of the bound, like the connection watchdog: no timer per read.
        let every = (idle / 4).max(Duration::from_millis(5));
        let (mut seen, mut quiet_since) = (0, Instant::now());
        loop {
            tokio::select! {
                copied = &mut copy => {
                    let (up, down) = copied.unwrap_or((0, 0));
                    return (Ended::Closed, up, down);
                }
                () = tokio::time::sleep(every) => {
                    let now = Instant::now();
                    let total = read.load(Ordering::Relaxed);
                    if total != seen {
                        (seen, quiet_since) = (total, now);
                    } else if now >= quiet_since + idle {
                        return (Ended::IdleTimeout, 0, 0);
                    }
                }
            }
        }
    }
}

// === impl Counted ===

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.read.fetch_add(n, Ordering::Relaxed);
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
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
}
