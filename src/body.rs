//! The one body type that flows through the proxy, both ways: incoming bodies stream through
//! unbuffered, and locally made ones (refusals, a rewritten form) use the same type.
//!
//! Its error says whose fault a failed body was, so the forwarder can answer the client honestly:
//! a client's broken chunked framing is a 400 (never a 502), a client upload that stalls is a 408,
//! one past the API's `max_body_bytes` is a 413. [`BoundedBody`] enforces the last two on request
//! bodies; [`IdleBound`] is the stall timer it shares with the upstream's response bodies.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use tokio::time::{Instant, Sleep};

/// A streaming HTTP body, whatever its origin.
pub type ProxyBody = BoxBody<Bytes, BodyError>;

/// Why a body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client's request body could not be read: broken chunked framing, a truncated body, a
    /// reset stream.
    #[error("the client's body could not be read: {0}")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The upstream's response body could not be read (its framing broke, it was cut short).
    #[error("the upstream's body could not be read: {0}")]
    Upstream(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No byte arrived for `stream_idle_timeout`.
    #[error("no body bytes for {0:?}")]
    Stalled(Duration),
    /// The request body outgrew the API's `max_body_bytes`.
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
}

impl BodyError {
    /// The body error behind an error from the upstream client, if a body caused it (hyper keeps
    /// a failed request body's error as the source).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<BodyError>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

/// A body made from bytes we hold.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Content-Length for a body the proxy rewrote.
pub fn set_content_length(headers: &mut http::HeaderMap, len: usize) {
    headers.remove(http::header::TRANSFER_ENCODING);
    headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
}

/// An empty body.
pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// A client's request body as the proxy reads it.
pub fn from_client(incoming: hyper::body::Incoming) -> ProxyBody {
    incoming.map_err(|e| BodyError::Client(Box::new(e))).boxed()
}

/// Bounds the gap between a body's frames. The timer is made only when the body first has to
/// wait, and re-armed only after progress: a body that is ready when polled, as most small bodies
/// are, never touches the timer wheel.
#[derive(Debug)]
pub struct IdleBound {
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    progressed: bool,
}

impl IdleBound {
    pub fn new(limit: Duration) -> Self {
        IdleBound {
            limit,
            timer: None,
            progressed: false,
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// A frame arrived: the next wait starts a fresh period.
    pub fn progressed(&mut self) {
        self.progressed = true;
    }

    /// The body is waiting: `true` once it has waited `limit` since the last progress.
    pub fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = Instant::now() + self.limit;
        let timer = match &mut self.timer {
            Some(timer) => {
                if std::mem::take(&mut self.progressed) {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => {
                self.progressed = false;
                self.timer
                    .insert(Box::pin(tokio::time::sleep_until(deadline)))
            }
        };
        timer.as_mut().poll(cx).is_ready()
    }
}

/// A request body with the API's size limit and the listener's stall bound.
pub struct BoundedBody {
    inner: ProxyBody,
    limit: u64,
    read: u64,
    idle: IdleBound,
}

impl BoundedBody {
    /// `limit`: at most this many bytes (`u64::MAX`: no limit).
    pub fn new(inner: ProxyBody, limit: u64, idle: Duration) -> Self {
        BoundedBody {
            inner,
            limit,
            read: 0,
            idle: IdleBound::new(idle),
        }
    }
}

impl Body for BoundedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.progressed();
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len() as u64);
                    if this.read > this.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.limit))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending if this.idle.expired(cx) => {
                Poll::Ready(Some(Err(BodyError::Stalled(this.idle.limit()))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_errors_after_the_idle_bound() {
        let (mut tx, rx) = futures_channel_body();
        let mut body = BoundedBody::new(rx, u64::MAX, Duration::from_secs(5));
        tx.send(Bytes::from_static(b"abc"));
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(frame.into_data().ok(), Some(Bytes::from_static(b"abc")));
        let started = Instant::now();
        let err = body.frame().await.expect("an error").expect_err("stalled");
        assert!(matches!(err, BodyError::Stalled(_)), "{err:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_body_past_its_limit_errors() {
        let (mut tx, rx) = futures_channel_body();
        let mut body = BoundedBody::new(rx, 4, Duration::from_secs(5));
        tx.send(Bytes::from_static(b"abc"));
        tx.send(Bytes::from_static(b"de"));
        assert!(body.frame().await.expect("frame").is_ok());
        let err = body.frame().await.expect("frame").expect_err("too large");
        assert!(matches!(err, BodyError::TooLarge(4)), "{err:?}");
    }

    /// A body fed by hand through a channel.
    struct Sender(tokio::sync::mpsc::UnboundedSender<Bytes>);

    impl Sender {
        fn send(&mut self, bytes: Bytes) {
            self.0.send(bytes).expect("receiver alive");
        }
    }

    fn futures_channel_body() -> (Sender, ProxyBody) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            let bytes = rx.recv().await?;
            Some((Ok::<_, BodyError>(Frame::data(bytes)), rx))
        });
        (Sender(tx), http_body_util::StreamBody::new(stream).boxed())
    }
}
