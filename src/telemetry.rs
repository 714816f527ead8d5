//! Logging: tracing initialisation (text or JSON lines on standard output) and the access log, one
//! structured line per request, written by [`AccessLogLayer`] from the [`AccessRecord`] the policy
//! leaves in the response. Nothing here ever sees a token.

use std::convert::Infallible;
use std::io::IsTerminal;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_subscriber::EnvFilter;

use crate::body::ProxyBody;
use crate::config::{LogFormat, LogSettings};
use crate::forward::UpstreamTime;
use crate::measure;
use crate::policy::AccessRecord;

/// Installs the global subscriber. The level filter was checked when the config was compiled.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        // Colour only for a person at a terminal; never escape codes in a log pipeline.
        .with_ansi(std::io::stdout().is_terminal());
    let result = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Already installed (a second init in one process) is harmless.
    drop(result);
}

/// Writes one access-log line per request.
#[derive(Clone, Copy, Default)]
pub struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLogService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLogService { inner }
    }
}

/// See [`AccessLogLayer`].
#[derive(Clone)]
pub struct AccessLogService<S> {
    inner: S,
}

impl<S> Service<Request<ProxyBody>> for AccessLogService<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ProxyBody>) -> Self::Future {
        let started = Instant::now();
        let method = req.method().clone();
        // Logged: the path only, as a query may carry an access_token. (A shared clone: no copy.)
        let uri = req.uri().clone();
        let span = tracing::info_span!("request", %method, path = %uri.path(), api = Empty, decision = Empty, reason = Empty);
        let future = self.inner.call(req).instrument(span.clone());
        Box::pin(async move {
            let mut response = future.await?;
            let record = response
                .extensions_mut()
                .remove::<AccessRecord>()
                .unwrap_or_default();
            let api = record.api.as_deref().unwrap_or("-");
            span.record("api", api);
            span.record("decision", record.decision);
            span.record("reason", record.reason);
            let elapsed = started.elapsed();
            let upstream = response
                .extensions()
                .get::<UpstreamTime>()
                .map_or(Duration::ZERO, |t| t.0);
            measure::record_request(
                record.api.as_ref(),
                record.decision,
                record.reason,
                response.status().as_u16(),
                elapsed,
                elapsed.saturating_sub(upstream),
            );
            tracing::info!(
                target: "tollgate::access",
                api = record.api.as_deref().unwrap_or("-"),
                method = %method,
                path = %uri.path(),
                decision = record.decision,
                reason = record.reason,
                client_id = record.client_id.as_deref().unwrap_or("-"),
                status = response.status().as_u16(),
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
            Ok(response)
        })
    }
}
