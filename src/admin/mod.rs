//! The admin listener: `/metrics` (Prometheus text format), `/healthz` (liveness: the process
//! serves) and `/readyz` (readiness: the provider's endpoints are resolved, so tokens can be
//! validated; 503 again from the start of a shutdown, so load balancers drain first), and the
//! registry's admin API under `/v1/` ([`api`]: behind `[admin] token`).

mod api;
mod problem;
mod routes;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::body::{ProxyBody, full};
use crate::measure;
use crate::runtime::{Runtime, RuntimeHandle};

/// Serves until aborted (which closes its connections too); `draining` is set when shutdown
/// begins. The connections have the gateway's limits and deadlines, and a small cap of their own:
/// scrapes and probes need few, and a flood of them must not take the process's file descriptors.
pub async fn serve(listener: TcpListener, runtime: RuntimeHandle, draining: Arc<AtomicBool>) {
    let settings = runtime.current().listen.clone();
    let handle = move |req: Request<ProxyBody>| {
        let current = runtime.current();
        let draining = draining.load(Ordering::SeqCst);
        async move {
            if req.uri().path().starts_with("/v1/") {
                api::answer(req, &current).await
            } else {
                answer(&req, &current, draining)
            }
        }
    };
    crate::server::serve_plain(
        &listener,
        settings.admin_max_connections,
        settings.connection,
        handle,
    )
    .await;
}

fn answer(req: &Request<ProxyBody>, current: &Runtime, draining: bool) -> Response<ProxyBody> {
    let (status, body): (StatusCode, String) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, "ok\n".into()),
        (&Method::GET | &Method::HEAD, "/readyz") => {
            if draining {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: shutting down\n".into(),
                )
            } else {
                let registry = current.registry.as_ref().and_then(|r| r.unready());
                match (current.unready_provider(), registry) {
                    (None, None) => (StatusCode::OK, "ready\n".into()),
                    (None, Some(why)) => (StatusCode::SERVICE_UNAVAILABLE, why.into()),
                    // Named, so an operator knows which of several providers to look at.
                    (Some(name), _) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: provider {name}: endpoints or keys unresolved\n"),
                    ),
                }
            }
        }
        (&Method::GET, "/metrics") => {
            let mut response = Response::new(full(measure::render()));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return response;
        }
        _ => (StatusCode::NOT_FOUND, "not found\n".into()),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
}
