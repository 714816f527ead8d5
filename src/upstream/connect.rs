//! Making one upstream connection: TCP, then TLS for `https://`, then HTTP/1.1 (`h1`, nothing to
//! exchange before the first request) or the HTTP/2 handshake, as `upstream_protocol` and ALPN
//! decide. The one place a client connection is made.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Endpoint, Protocol, Upstream, UpstreamError, h1};
use crate::body::ProxyBody;

/// How long a new connection may take to be established, TLS handshake included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An HTTP/2 connection carries every request of its worker to the endpoint, so one that went
/// silent (a peer gone without a FIN) must be noticed: it is pinged while streams are open
/// (RFC 9113 §6.7) and dropped when a ping goes unanswered.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A new connection's request handle.
pub(super) enum Conn {
    H1(h1::Conn),
    H2(http2::SendRequest<ProxyBody>),
}

/// The bytes under an upstream connection.
pub enum Stream {
    Plain(TcpStream),
    // Boxed: a TLS session is large, and most connections are plain.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to `endpoint` of `upstream`.
pub(super) async fn connect(
    upstream: &Upstream,
    endpoint: &Endpoint,
) -> Result<Conn, UpstreamError> {
    let (stream, h2) = tokio::time::timeout(CONNECT_TIMEOUT, open(upstream, endpoint))
        .await
        .map_err(|_| UpstreamError::ConnectTimeout(CONNECT_TIMEOUT))??;
    if h2 {
        let io = TokioIo::new(stream);
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT)
            .handshake(io)
            .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
            }
        });
        return Ok(Conn::H2(sender));
    }
    Ok(Conn::H1(h1::Conn::new(stream)))
}

/// TCP (and TLS); whether the connection speaks HTTP/2.
async fn open(upstream: &Upstream, endpoint: &Endpoint) -> Result<(Stream, bool), UpstreamError> {
    let tcp = TcpStream::connect(endpoint.authority.as_str())
        .await
        .map_err(UpstreamError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let (Some(config), Some(name)) = (&upstream.tls, &endpoint.server_name) else {
        return Ok((Stream::Plain(tcp), upstream.protocol == Protocol::Http2));
    };
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name.clone(), tcp)
        .await
        .map_err(UpstreamError::Tls)?;
    let h2 = match upstream.protocol {
        Protocol::Http1 => false,
        Protocol::Http2 => true,
        // Without ALPN the server speaks HTTP/1.1 (RFC 7301 §3.2: no protocol agreed).
        Protocol::Auto => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
    };
    Ok((Stream::Tls(Box::new(tls)), h2))
}

// === impl Stream ===

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
