//! Logging: tracing initialisation (text or JSON lines on standard output) and the access log, one
//! structured line per request, written by [`AccessLogLayer`] from the [`AccessRecord`] the policy
//! leaves in the response. Nothing here ever sees a token.

use std::convert::Infallible;
use std::future::Future;
use std::io::IsTerminal;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::Response;
use tower::{Layer, Service};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::access_log::{self, AccessLine, Sink};
use crate::arrival::Arrival;
use crate::body::ProxyBody;
use crate::config::{LogFormat, LogSettings};
use crate::log_writer::{self, LogWriter};
use crate::measure;
use crate::policy::{GrpcRefusal, Outcome};

/// Where log lines are written from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// By a dedicated thread that writes whatever lines have gathered in one go
    /// ([`log_writer`]): a request only formats its line and appends it. When 2 MiB of lines
    /// wait (standard output is not keeping up, or nobody reads it) further lines are dropped and
    /// counted in `tollgate_log_lines_dropped_total`: a stalled log pipeline must never stall
    /// serving. For serving.
    Background,
    /// By the thread that logs, line by line, in order with anything else printed. For `dev`,
    /// whose banner and logs share the terminal.
    Direct,
}

/// Keeps the background writer alive; dropping it writes out what is waiting.
pub struct LogGuard {
    _writer: Option<log_writer::Guard>,
}

/// Installs the global subscriber. The level filter was checked when the config was compiled.
pub fn init(settings: &LogSettings, output: Output) -> LogGuard {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal; never escape codes in a log pipeline.
    let ansi = std::io::stdout().is_terminal();
    let background = match output {
        Output::Background => LogWriter::start(stdout_unbuffered()).ok(),
        Output::Direct => None,
    };
    let (writer, guard) = match background {
        Some((writer, guard)) => {
            measure::count_log_drops(writer.clone());
            access_log::install(settings.format, ansi, Sink::Queue(writer.clone()));
            (BoxMakeWriter::new(writer), Some(guard))
        }
        // Or the thread could not be started: line by line, as `dev` does.
        None => {
            access_log::install(settings.format, ansi, Sink::Stdout);
            (BoxMakeWriter::new(std::io::stdout), None)
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
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
    LogGuard { _writer: guard }
}

/// Standard output without `Stdout`'s line buffering: the log writer hands it whole batches.
fn stdout_unbuffered() -> Box<dyn std::io::Write + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() {
            return Box::new(std::fs::File::from(fd));
        }
    }
    Box::new(std::io::stdout())
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

impl<S> Service<Arrival> for AccessLogService<S>
where
    S: Service<Arrival, Response = Outcome, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    /// Not boxed: the inner future is (see [`AccessLogFuture`]).
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, arrival: Arrival) -> Self::Future {
        let started = Instant::now();
        // Taken before the request moves on, and only when the line will be written. The path
        // only: a query may carry an access_token. (Shared clones: no copy.)
        let logged = access_log::enabled().then(|| {
            // The client as `trusted_proxies` resolved it (nginx's `$remote_addr` after realip),
            // rendered once per connection already.
            let client = arrival.client.as_ref().map(|c| c.client_header().clone());
            let req = &arrival.request;
            Logged {
                method: req.method().clone(),
                uri: req.uri().clone(),
                client,
            }
        });
        AccessLogFuture {
            inner: self.inner.call(arrival),
            started,
            logged,
        }
    }
}

/// What the access line needs from the request.
pub struct Logged {
    method: http::Method,
    uri: http::Uri,
    client: Option<http::HeaderValue>,
}

/// The inner service's future, then the request's metrics and access line. A plain wrapper, not
/// one more boxed future per request.
pub struct AccessLogFuture<F> {
    inner: F,
    started: Instant,
    logged: Option<Logged>,
}

impl<F> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Outcome, Infallible>> + Unpin,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(Outcome { response, record }) =
            std::task::ready!(Pin::new(&mut self.inner).poll(cx));
        // A refusal told to a gRPC client went out as 200 + grpc-status: the log and the metric
        // keep the HTTP status it stands for, so refusals count as refusals whatever the client
        // spoke.
        let grpc = response.extensions().get::<GrpcRefusal>().copied();
        let status = grpc.map_or(response.status(), |g| g.stands_for).as_u16();
        let elapsed = self.started.elapsed();
        let upstream = record.upstream_time;
        measure::record_request(
            record.api.as_ref(),
            record.decision,
            record.reason,
            status,
            elapsed,
            elapsed.saturating_sub(upstream),
        );
        if let Some(logged) = &self.logged {
            access_log::write(&AccessLine {
                api: record.api.as_deref(),
                method: logged.method.as_str(),
                path: logged.uri.path(),
                decision: record.decision,
                reason: record.reason,
                client: logged.client.as_ref().and_then(|v| v.to_str().ok()),
                client_id: record.client_id.as_deref(),
                status,
                grpc_status: grpc.map(|g| g.code),
                latency: elapsed,
            });
        }
        Poll::Ready(Ok(response))
    }
}
