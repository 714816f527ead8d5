//! The admin listener: `/metrics` (Prometheus text format), `/healthz` (liveness: the process
//! serves) and `/readyz` (readiness: the provider's endpoints are resolved, so tokens can be
//! validated; 503 again from the start of a shutdown, so load balancers drain first).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::body::{ProxyBody, full};
use crate::measure;
use crate::runtime::RuntimeHandle;

/// Serves until aborted; `draining` is set when shutdown begins.
pub async fn serve(listener: TcpListener, runtime: RuntimeHandle, draining: Arc<AtomicBool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let runtime = runtime.clone();
        let draining = draining.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = answer(&req, &runtime, draining.load(Ordering::SeqCst));
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, runtime: &RuntimeHandle, draining: bool) -> Response<ProxyBody> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") => {
            if draining {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: shutting down\n",
                )
            } else if runtime.current().provider.is_ready() {
                (StatusCode::OK, "ready\n")
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: provider endpoints unresolved\n",
                )
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
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
}
