//! The listeners: the gateway (HTTP/1.1 and HTTP/2 cleartext on one port, and/or TLS: `tls`) and
//! the admin endpoints, each through the one accept loop (`accept`) and the one connection driver
//! (`connection`), so every listener has the same limits and deadlines. The request path is the
//! tower stack access log → policy → forwarder.

pub mod accept;
pub mod connection;
pub mod h1;
pub mod tls;
pub mod tunnel;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use futures_util::FutureExt;
use futures_util::future::Either;
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tower::{Service, ServiceBuilder, ServiceExt};

use self::accept::{Admission, Drain, accept_loop, spawn_connection};
use self::connection::{ConnectionState, Http, Protocol};
use crate::admin;
use crate::arrival::Arrival;
use crate::body::ProxyBody;
use crate::client_cert::ClientCertificate;
use crate::config::{ConnectionLimits, ListenSettings};
use crate::forward::Forwarder;
use crate::policy::{PolicyLayer, PolicyService};
use crate::runtime::RuntimeHandle;
use crate::telemetry::{AccessLogLayer, AccessLogService};
use crate::trust::{ClientAddr, Scheme, TrustedProxies};

/// The kernel's queue of connections not yet accepted, per listening socket.
const BACKLOG: u32 = 1024;

/// The listeners, bound: the gateway's (TLS when `[listen.tls]` has no address of its own), a
/// TLS one beside it when it has, and the admin's.
pub struct Listeners {
    pub proxy: TcpListener,
    pub tls: Option<TcpListener>,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(settings: &ListenSettings) -> io::Result<Self> {
        let named = |addr: SocketAddr| {
            move |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
        };
        let proxy = bind_shared(settings.address).map_err(named(settings.address))?;
        let tls = match settings.tls.as_ref().and_then(|t| t.address) {
            Some(addr) => Some(bind_shared(addr).map_err(named(addr))?),
            None => None,
        };
        let admin = TcpListener::bind(settings.admin_address)
            .await
            .map_err(named(settings.admin_address))?;
        Ok(Listeners { proxy, tls, admin })
    }
}

/// A listening socket that more sockets may join on the same address (`SO_REUSEPORT`), so each
/// worker can have its own and the kernel spreads new connections across them.
///
/// Joining is what `SO_REUSEPORT` does for any process that asks, so a second tollgate started on
/// a port already served would quietly share it. A plain bind first makes that the usual
/// "address in use" error instead.
fn bind_shared(addr: SocketAddr) -> io::Result<TcpListener> {
    if addr.port() != 0 {
        drop(std::net::TcpListener::bind(addr)?);
    }
    bind_member(addr)
}

/// One more socket of the group on `addr`.
fn bind_member(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
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
    let gateway = match gateway_sockets(&settings, listeners.proxy, listeners.tls) {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "cannot start TLS");
            return;
        }
    };
    let GatewaySockets {
        sockets,
        tls_addr,
        watcher,
    } = gateway;
    // Dropped with this task: a JoinHandle does not stop its task, so abort on every way out.
    let _watcher = watcher.map(AbortOnDrop);
    let draining = Arc::new(AtomicBool::new(false));
    let admin_task = tokio::spawn(admin::serve(
        listeners.admin,
        runtime.clone(),
        draining.clone(),
    ));
    let workers = match Workers::start(sockets, &runtime, &settings) {
        Ok(workers) => workers,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the worker threads");
            admin_task.abort();
            return;
        }
    };
    tracing::info!(
        proxy = %display_addr(proxy_addr),
        tls = %display_addr(tls_addr),
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

/// One gateway socket and, for TLS, its endpoint.
type Gateway = (TcpListener, Option<Arc<tls::TlsEndpoint>>);

/// The gateway's sockets, each with its TLS endpoint (the plain one is TLS itself when
/// `[listen.tls]` has no address), the address serving TLS, and the task that watches the TLS
/// files.
struct GatewaySockets {
    sockets: Vec<Gateway>,
    tls_addr: Option<SocketAddr>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

fn gateway_sockets(
    settings: &ListenSettings,
    proxy: TcpListener,
    beside: Option<TcpListener>,
) -> Result<GatewaySockets, rustls::Error> {
    let Some(tls_settings) = &settings.tls else {
        return Ok(GatewaySockets {
            sockets: vec![(proxy, None)],
            tls_addr: None,
            watcher: None,
        });
    };
    let endpoint = tls::TlsEndpoint::new(tls_settings)?;
    tls::set_expiry(&tls_settings.loaded.0);
    let watcher = Some(tokio::spawn(tls::watch_files(endpoint.clone())));
    let (sockets, tls_addr) = match beside {
        Some(beside) => {
            let addr = beside.local_addr().ok();
            (vec![(proxy, None), (beside, Some(endpoint))], addr)
        }
        None => {
            let addr = proxy.local_addr().ok();
            (vec![(proxy, Some(endpoint))], addr)
        }
    };
    Ok(GatewaySockets {
        sockets,
        tls_addr,
        watcher,
    })
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn display_addr(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "-".to_owned(), |a| a.to_string())
}

/// The threads that serve the proxy listener. Like nginx's worker processes, each runs its own
/// single-threaded event loop and serves each connection it accepts, and that connection's upstream
/// requests, to the end: a request never hops between threads, so the request path needs no
/// cross-thread wake-ups. Each has its own listening socket on the one address (`SO_REUSEPORT`):
/// the kernel spreads new connections across them evenly, where one shared socket let whichever
/// worker woke first take nearly all of a burst. They share the connection limits and the
/// runtime (routes, caches, provider).
struct Workers {
    stop: watch::Sender<bool>,
    /// Each worker answers once it has drained: `true` if within `shutdown_grace`.
    done: Vec<oneshot::Receiver<bool>>,
}

impl Workers {
    fn start(
        gateways: Vec<Gateway>,
        runtime: &RuntimeHandle,
        settings: &ListenSettings,
    ) -> io::Result<Self> {
        let count = settings.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let firsts = gateways
            .into_iter()
            .map(|(listener, tls)| Ok((listener.local_addr()?, listener.into_std()?, tls)))
            .collect::<io::Result<Vec<_>>>()?;
        let admission = Admission::new(
            settings.max_connections,
            settings.max_connections_per_ip,
            settings.connection.header_read_timeout,
        );
        let (stop, _) = watch::channel(false);
        let mut done = Vec::with_capacity(count);
        for index in 0..count {
            let mut listeners = Vec::with_capacity(firsts.len());
            for (addr, first, tls) in &firsts {
                let listener = if index == 0 {
                    first.try_clone()?
                } else {
                    // Where the platform will not let a second socket join, the workers share one.
                    match bind_member(*addr).and_then(TcpListener::into_std) {
                        Ok(own) => own,
                        Err(_) => first.try_clone()?,
                    }
                };
                listeners.push((listener, tls.clone()));
            }
            let worker = Worker {
                listeners,
                runtime: runtime.clone(),
                settings: settings.clone(),
                admission: admission.clone(),
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
    listeners: Vec<(std::net::TcpListener, Option<Arc<tls::TlsEndpoint>>)>,
    runtime: RuntimeHandle,
    settings: ListenSettings,
    admission: Admission,
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
            let mut listeners = Vec::with_capacity(self.listeners.len());
            for (listener, tls) in self.listeners {
                match TcpListener::from_std(listener) {
                    Ok(listener) => listeners.push((listener, tls)),
                    Err(e) => {
                        tracing::error!(error = %e, "a worker cannot watch the listener");
                        return true;
                    }
                }
            }
            let drain = Drain::default();
            let gateway = GatewayServer::new(self.runtime, &self.settings);
            let serving = listeners.iter().map(|(listener, tls)| {
                gateway.serve(listener, tls.clone(), &self.admission, &drain)
            });
            tokio::select! {
                _ = futures_util::future::join_all(serving) => {}
                _ = self.stop.wait_for(|stop| *stop) => {}
            }
            // Closing this worker's sockets now turns further connections away at once.
            drop(listeners);
            drain.finish(self.settings.shutdown_grace).await
        })
    }
}

/// One worker's gateway: the tower stack every request goes through and the connection builders,
/// shared by its listeners.
struct GatewayServer {
    stack: GatewayStack,
    http: Arc<Http>,
    limits: ConnectionLimits,
    trusted: TrustedProxies,
}

type GatewayStack = AccessLogService<PolicyService>;

/// What a connection carries to each of its requests.
struct ConnectionFacts {
    connection: ClientAddr,
    client_cert: Option<Arc<ClientCertificate>>,
}

impl GatewayServer {
    fn new(runtime: RuntimeHandle, settings: &ListenSettings) -> Self {
        let stack = ServiceBuilder::new()
            .layer(AccessLogLayer)
            .layer(PolicyLayer::new(runtime))
            .service(Forwarder::new());
        let limits = settings.connection;
        GatewayServer {
            stack,
            http: Arc::new(Http::new(&limits)),
            limits,
            trusted: settings.trusted_proxies.clone(),
        }
    }

    /// The accept loop of one gateway socket; with `tls`, each connection's handshake first.
    async fn serve(
        &self,
        listener: &TcpListener,
        tls: Option<Arc<tls::TlsEndpoint>>,
        admission: &Admission,
        drain: &Drain,
    ) {
        accept_loop(listener, admission, drain, |stream, remote, ticket| {
            let served = Served {
                stack: self.stack.clone(),
                trusted: self.trusted.clone(),
                limits: self.limits,
                state: ticket.state(),
            };
            drain.watch(&served.state);
            let Some(endpoint) = &tls else {
                // Cleartext: this listener's scheme, whatever a request claims.
                let facts = ConnectionFacts {
                    connection: ClientAddr::for_connection(remote, Scheme::Http, &served.trusted),
                    client_cert: None,
                };
                let run = served.run(stream, facts, self.http.clone(), Protocol::Detect);
                spawn_connection(ticket, run);
                return;
            };
            let acceptor = endpoint.acceptor();
            let http = self.http.clone();
            spawn_connection(ticket, async move {
                let timeout = served.limits.header_read_timeout;
                let handshake = tls::handshake(acceptor, stream, &served.state, timeout);
                let Some(done) = handshake.await else {
                    return;
                };
                let facts = ConnectionFacts {
                    connection: ClientAddr::for_connection(remote, Scheme::Https, &served.trusted),
                    client_cert: done.client_cert,
                };
                // ALPN has chosen.
                let protocol = if done.http2 {
                    Protocol::Http2
                } else {
                    Protocol::Http1
                };
                served.run(done.stream, facts, http, protocol).await;
            });
        })
        .await;
    }
}

/// One admitted connection's share of the gateway, until it ends.
struct Served {
    stack: GatewayStack,
    trusted: TrustedProxies,
    limits: ConnectionLimits,
    state: Arc<ConnectionState>,
}

impl Served {
    /// Serves the (decrypted) stream: on every request the client's address and certificate,
    /// then the tower stack.
    async fn run<IO>(self, stream: IO, facts: ConnectionFacts, http: Arc<Http>, protocol: Protocol)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Served {
            stack,
            trusted,
            limits,
            state,
        } = self;
        let handle = move |req: Request<ProxyBody>| {
            let client = facts.connection.for_request(req.headers(), &trusted);
            let arrival = Arrival {
                request: req,
                client: Some(client),
                client_cert: facts.client_cert.clone(),
            };
            let mut stack = stack.clone();
            // Neither layer has readiness of its own (see PolicyService::poll_ready), so the stack
            // is ready at once and is called here, not through tower's `Oneshot`: its state
            // machine moved the request and then the stack's future into itself, about a
            // thousand instructions a request.
            let unpack =
                |answer: Result<_, Infallible>| answer.unwrap_or_else(|never| match never {});
            match stack.poll_ready(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(Ok(())) => Either::Left(stack.call(arrival).map(unpack)),
                // A layer that must wait some day is still served, through `Oneshot`.
                Poll::Pending => Either::Right(stack.oneshot(arrival).map(unpack)),
            }
        };
        connection::serve(stream, state, &http, protocol, &limits, handle).await;
    }
}

/// Serves `handle` on a listener of its own (admin, the dev servers) through the same accept loop
/// and connection driver as the gateway, until this future is dropped: that closes its
/// connections too.
pub async fn serve_plain<H, F>(
    listener: &TcpListener,
    max_connections: usize,
    limits: ConnectionLimits,
    handle: H,
) where
    H: Fn(Request<ProxyBody>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let admission = Admission::new(max_connections, 0, limits.header_read_timeout);
    let http = Arc::new(Http::new(&limits));
    // Nothing waits for these connections to drain: they end with the listener's task.
    let drain = Drain::default();
    let mut connections = JoinSet::new();
    accept_loop(listener, &admission, &drain, |stream, _, ticket| {
        // Reap finished connections so the set does not grow for the life of the server.
        while connections.try_join_next().is_some() {}
        let handle = handle.clone();
        let http = http.clone();
        connections.spawn(async move {
            let state = ticket.state();
            connection::serve(stream, state, &http, Protocol::Detect, &limits, handle).await;
            drop(ticket);
        });
    })
    .await;
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
