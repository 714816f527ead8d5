//! The listeners: the gateway (HTTP/1.1 and HTTP/2 cleartext on one port, with bounded head size,
//! head read time and connection count) and the admin endpoints. The request path is the tower
//! stack access log → policy → forwarder.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Request, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tower::{ServiceBuilder, ServiceExt};

use crate::admin;
use crate::config::ListenSettings;
use crate::forward::Forwarder;
use crate::framing::{AmbiguousFraming, FramingGuard, FramingLog};
use crate::policy::PolicyLayer;
use crate::runtime::RuntimeHandle;
use crate::telemetry::AccessLogLayer;
use crate::trust::{ClientAddr, Scheme};

/// Both listeners, bound.
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(settings: &ListenSettings) -> io::Result<Self> {
        let proxy = TcpListener::bind(settings.address).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", settings.address),
            )
        })?;
        let admin = TcpListener::bind(settings.admin_address)
            .await
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen on {}: {e}", settings.admin_address),
                )
            })?;
        Ok(Listeners { proxy, admin })
    }
}

/// Serves both listeners until `shutdown` completes.
pub async fn serve(
    runtime: RuntimeHandle,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) {
    let settings = runtime.current().listen.clone();
    let proxy_addr = listeners.proxy.local_addr().ok();
    let admin_addr = listeners.admin.local_addr().ok();
    crate::measure::install();
    let draining = Arc::new(AtomicBool::new(false));
    let admin_task = tokio::spawn(admin::serve(
        listeners.admin,
        runtime.clone(),
        draining.clone(),
    ));
    let workers = match Workers::start(listeners.proxy, &runtime, &settings) {
        Ok(workers) => workers,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the worker threads");
            admin_task.abort();
            return;
        }
    };
    tracing::info!(
        proxy = %display_addr(proxy_addr),
        admin = %display_addr(admin_addr),
        workers = workers.count(),
        "listening"
    );
    shutdown.await;
    // Not ready at once, so load balancers stop sending; no new connections are accepted; the
    // connections under way finish their requests (HTTP/1 closes after the response in flight,
    // HTTP/2 sends GOAWAY), for at most `shutdown_grace`.
    draining.store(true, Ordering::SeqCst);
    tracing::info!(
        grace_ms = settings.shutdown_grace.as_millis() as u64,
        "shutting down: draining"
    );
    if workers.drain().await {
        tracing::info!("drained");
    } else {
        tracing::warn!("shutdown_grace elapsed: closing the connections still open");
    }
    admin_task.abort();
}

fn display_addr(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "-".to_owned(), |a| a.to_string())
}

/// The threads that serve the proxy listener. Like nginx's worker processes, each runs its own
/// single-threaded event loop and serves each connection it accepts, and that connection's upstream
/// requests, to the end: a request never hops between threads, so the request path needs no
/// cross-thread wake-ups. They share one listening socket (the kernel hands each connection to
/// whichever worker accepts first, so a busy worker takes fewer), the connection limit and the
/// runtime (routes, caches, provider).
struct Workers {
    stop: watch::Sender<bool>,
    /// Each worker answers once it has drained: `true` if within `shutdown_grace`.
    done: Vec<oneshot::Receiver<bool>>,
}

impl Workers {
    fn start(
        listener: TcpListener,
        runtime: &RuntimeHandle,
        settings: &ListenSettings,
    ) -> io::Result<Self> {
        let count = settings.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let listener = listener.into_std()?;
        let slots = Arc::new(Semaphore::new(settings.max_connections));
        let (stop, _) = watch::channel(false);
        let mut done = Vec::with_capacity(count);
        for index in 0..count {
            let worker = Worker {
                listener: listener.try_clone()?,
                runtime: runtime.clone(),
                settings: settings.clone(),
                slots: slots.clone(),
                stop: stop.subscribe(),
            };
            let (report, answer) = oneshot::channel();
            std::thread::Builder::new()
                .name(format!("tollgate-worker-{index}"))
                .spawn(move || {
                    let drained = worker.run();
                    let _ = report.send(drained);
                })?;
            done.push(answer);
        }
        Ok(Workers { stop, done })
    }

    fn count(&self) -> usize {
        self.done.len()
    }

    /// Stops every worker accepting and waits until each has drained its connections.
    async fn drain(self) -> bool {
        let _ = self.stop.send(true);
        let mut all = true;
        for answer in self.done {
            // A worker that died counts as drained: its connections are gone.
            all &= answer.await.unwrap_or(true);
        }
        all
    }
}

struct Worker {
    listener: std::net::TcpListener,
    runtime: RuntimeHandle,
    settings: ListenSettings,
    slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl Worker {
    /// Serves until told to stop, then drains for at most `shutdown_grace`; `true` if drained.
    fn run(mut self) -> bool {
        let event_loop = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(event_loop) => event_loop,
            Err(e) => {
                tracing::error!(error = %e, "cannot start a worker's event loop");
                return true;
            }
        };
        event_loop.block_on(async move {
            let listener = match TcpListener::from_std(self.listener) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(error = %e, "a worker cannot watch the listener");
                    return true;
                }
            };
            let connections = GracefulShutdown::new();
            tokio::select! {
                () = accept_loop(listener, self.runtime, &self.settings, self.slots, &connections) => {}
                _ = self.stop.wait_for(|stop| *stop) => {}
            }
            tracing::debug!(connections = connections.count(), "worker draining");
            tokio::time::timeout(self.settings.shutdown_grace, connections.shutdown())
                .await
                .is_ok()
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    runtime: RuntimeHandle,
    settings: &ListenSettings,
    slots: Arc<Semaphore>,
    connections: &GracefulShutdown,
) {
    let stack = ServiceBuilder::new()
        .layer(AccessLogLayer)
        .layer(PolicyLayer::new(runtime))
        .service(Forwarder::new());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    // `slots` bounds concurrent connections: past the limit, new ones wait in the kernel's backlog.
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, remote) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: log, back off a little, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stack = stack.clone();
        let builder = builder.clone();
        let max_head = settings.max_header_bytes;
        let trusted = settings.trusted_proxies.clone();
        let watcher = connections.watcher();
        tokio::spawn(async move {
            let framing = Arc::new(FramingLog::default());
            // Cleartext: this listener's scheme, whatever a request claims. A TLS listener says
            // `Https` here.
            let connection = ClientAddr::for_connection(remote, Scheme::Http, &trusted);
            let io = TokioIo::new(FramingGuard::new(stream, max_head, framing.clone()));
            let service = service_fn(move |req: Request<Incoming>| {
                let stack = stack.clone();
                let mut req = req.map(|body| body.boxed());
                let client = connection.for_request(req.headers(), &trusted);
                req.extensions_mut().insert(client);
                // HTTP/1 requests arrive in the order their heads were read.
                if req.version() < Version::HTTP_2
                    && let Some(reason) = framing.next_verdict()
                {
                    req.extensions_mut().insert(AmbiguousFraming(reason));
                }
                async move {
                    Ok::<_, Infallible>(
                        stack
                            .oneshot(req)
                            .await
                            .unwrap_or_else(|never| match never {}),
                    )
                }
            });
            if let Err(e) = watcher.watch(builder.serve_connection(io, service)).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
