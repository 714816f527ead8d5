//! The policy's own cost per request, upstream excluded: a cached introspected token (route,
//! normalise, extract, cache hit, authorise, plan) against a public route (route and normalise
//! only), both through the real `PolicyService` in front of a forwarder stand-in that answers at
//! once. The introspection endpoint is a loopback stand-in, hit once to fill the cache.
//!
//!     cargo bench --bench decision
//!
//! Compare the two in one run: the difference is what enforcing a cached token costs.

// A benchmark that cannot set up should stop loudly.
#![allow(clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::future::{BoxFuture, ready};
use http::{Request, Response};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tollgate::body::{ProxyBody, empty, full};
use tollgate::clock::SystemClock;
use tollgate::config;
use tollgate::policy::{PolicyLayer, Rejection};
use tollgate::runtime::{Runtime, RuntimeHandle};
use tower::{Layer, Service, ServiceExt};

/// Stands in for the forwarder: answers 200 without any I/O.
#[derive(Clone)]
struct Answer;

impl Service<Request<ProxyBody>> for Answer {
    type Response = Response<ProxyBody>;
    type Error = Rejection;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, Rejection>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Rejection>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<ProxyBody>) -> Self::Future {
        Box::pin(ready(Ok(Response::new(empty()))))
    }
}

/// A loopback introspection endpoint that finds every token active for an hour.
async fn introspection_stand_in() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    let exp = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() + 3600)
                        .unwrap_or(0);
                    let body = format!(
                        r#"{{"active":true,"client_id":"orders-app","scope":"mulescope other","exp":{exp},"uid":"00u1","sub":"orders-app"}}"#
                    );
                    Ok::<_, Infallible>(Response::new(full(body)))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}/introspect")
}

fn settings(introspection_url: &str) -> config::Settings {
    let text = format!(
        r#"
[provider]
issuer = "http://127.0.0.1/oauth2/default"
authorize_url = "http://127.0.0.1/authorize"
token_url = "http://127.0.0.1/token"
jwks_url = "http://127.0.0.1/keys"
introspection_url = "{introspection_url}"
introspection_client_id = "gw"
introspection_client_secret = "secret"

[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "http://127.0.0.1:9"
scopes = ["mulescope"]
clients = ["orders-app"]
expose_headers = true

[[api.rule]]
paths = ["/orders/public/**"]
public = true
"#
    );
    config::parse(&text, &std::collections::HashMap::<String, String>::new()).expect("bench config")
}

fn request(path: &str, token: Option<&str>) -> Request<ProxyBody> {
    let mut builder = Request::get(path).header("host", "api.test");
    if let Some(t) = token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    builder.body(empty()).expect("request")
}

fn decision(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    let service = rt.block_on(async {
        let url = introspection_stand_in().await;
        let runtime = Runtime::build(&settings(&url), Arc::new(SystemClock)).expect("runtime");
        runtime
            .provider
            .resolve()
            .await
            .expect("endpoints are configured");
        let service = PolicyLayer::new(RuntimeHandle::new(runtime)).layer(Answer);
        let warm = service
            .clone()
            .oneshot(request("/orders/1", Some("bench-token")))
            .await;
        assert_eq!(
            warm.map(|r| r.status().as_u16()).ok(),
            Some(200),
            "warm-up must be allowed"
        );
        service
    });
    let mut group = c.benchmark_group("decision");
    group.bench_function("public_route", |b| {
        b.to_async(&rt)
            .iter(|| service.clone().oneshot(request("/orders/public/1", None)))
    });
    group.bench_function("cached_introspected_token", |b| {
        b.to_async(&rt).iter(|| {
            service
                .clone()
                .oneshot(request("/orders/1", Some("bench-token")))
        })
    });
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
