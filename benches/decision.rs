//! The policy's own cost per request, upstream excluded, through the real `PolicyService` in front
//! of a forwarder stand-in that answers at once:
//! - `public_route`: route and normalise only (the floor);
//! - `cached_introspected_token`, `cached_jwt`: a token seen before (cache hit);
//! - `uncached_rs256_jwt`, `uncached_es256_jwt`: a new JWT each time (signature verified);
//! - `static_list`, `registry_contract`, `registry_contract_with_tier`: a cached introspected
//!   token on three APIs alike but for how the client is admitted: the static `clients` list, a
//!   registry contract among 10,000 applications' contracts loaded, and the same with a tier limit
//!   (high enough never to refuse). Their differences are the contract check and the limit.
//!
//! The provider is a loopback stand-in (introspection finds every token active; the JWKS holds
//! the test keys of `tests/keys`), hit only to fill caches.
//!
//!     cargo bench --bench decision
//!
//! Compare within one run: each figure minus `public_route` is what that kind of token costs.

// A benchmark that cannot set up should stop loudly.
#![allow(clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::future::ready;
use http::{Request, Response};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tollgate::body::{ProxyBody, empty, full};
use tollgate::clock::SystemClock;
use tollgate::config;
use tollgate::forward::{Forward, ForwardError, ForwardPlan, Forwarded, UpstreamTime};
use tollgate::policy::{PolicyLayer, PolicyService};
use tollgate::registry::{ApprovedContract, ContractIndex};
use tollgate::runtime::{Runtime, RuntimeHandle};
use tower::{Layer, ServiceExt};

const ISSUER: &str = "http://127.0.0.1/oauth2/default";

/// Stands in for the forwarder: answers 200 without any I/O.
#[derive(Clone)]
struct Answer;

impl Forward for Answer {
    fn forward(
        &self,
        _: Request<ProxyBody>,
        _: ForwardPlan,
    ) -> impl std::future::Future<Output = Result<Forwarded, ForwardError>> + Send {
        ready(Ok((Response::new(empty()), UpstreamTime(Duration::ZERO))))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A loopback provider: `/introspect` finds every token active for an hour; `/keys` is the JWKS.
async fn provider_stand_in() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body = if req.uri().path() == "/keys" {
                        let mut rsa: serde_json::Value =
                            serde_json::from_str(include_str!("../tests/keys/rsa-a.jwk.json"))
                                .expect("jwk");
                        rsa["kid"] = "rsa".into();
                        let mut ec: serde_json::Value =
                            serde_json::from_str(include_str!("../tests/keys/ec-p256.jwk.json"))
                                .expect("jwk");
                        ec["kid"] = "ec".into();
                        serde_json::json!({ "keys": [rsa, ec] }).to_string()
                    } else {
                        serde_json::json!({"active": true, "client_id": "orders-app", "scope": "mulescope other",
                            "exp": now() + 3600, "uid": "00u1", "sub": "orders-app"})
                        .to_string()
                    };
                    Ok::<_, Infallible>(Response::new(full(body)))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn settings(base: &str) -> config::Settings {
    let text = format!(
        r#"
[provider]
issuer = "{ISSUER}"
authorize_url = "{base}/authorize"
token_url = "{base}/token"
jwks_url = "{base}/keys"
introspection_url = "{base}/introspect"
introspection_client_id = "gw"
introspection_client_secret = "secret"
jwt_algorithms = ["RS256", "ES256"]

[cache]
max_entries = 100000

[registry]
store = "sqlite://never-opened-by-the-benchmark.db"

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

[[api]]
name = "listed"
path_prefix = "/listed"
upstream = "http://127.0.0.1:9"
scopes = ["mulescope"]
clients = ["orders-app"]
expose_headers = true

[[api]]
name = "contracts"
path_prefix = "/contracts"
upstream = "http://127.0.0.1:9"
scopes = ["mulescope"]
expose_headers = true

[[api]]
name = "tiered"
path_prefix = "/tiered"
upstream = "http://127.0.0.1:9"
scopes = ["mulescope"]
expose_headers = true

[[api]]
name = "jwt-orders"
path_prefix = "/jwt"
upstream = "http://127.0.0.1:9"
validation = "jwt"
audience = ["api://default"]
scopes = ["mulescope"]
clients = ["orders-app"]
expose_headers = true
"#
    );
    config::parse(&text, &std::collections::HashMap::<String, String>::new()).expect("bench config")
}

/// Mints JWTs with the test keys, each one new (a distinct `jti`).
struct Minter {
    rsa: EncodingKey,
    ec: EncodingKey,
    serial: AtomicU64,
}

impl Minter {
    fn new() -> Self {
        Minter {
            rsa: EncodingKey::from_rsa_pem(include_bytes!("../tests/keys/rsa-a.pem"))
                .expect("rsa key"),
            ec: EncodingKey::from_ec_pem(include_bytes!("../tests/keys/ec-p256.pem"))
                .expect("ec key"),
            serial: AtomicU64::new(0),
        }
    }

    fn mint(&self, alg: Algorithm) -> String {
        let (key, kid) = match alg {
            Algorithm::ES256 => (&self.ec, "ec"),
            _ => (&self.rsa, "rsa"),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        header.typ = Some("at+jwt".to_owned());
        let claims = serde_json::json!({"iss": ISSUER, "aud": "api://default", "sub": "orders-app",
            "cid": "orders-app", "scp": ["mulescope"], "iat": now(), "exp": now() + 3600,
            "jti": self.serial.fetch_add(1, Ordering::Relaxed)});
        jsonwebtoken::encode(&header, &claims, key).expect("sign")
    }
}

/// 10,000 applications, each with a contract on both registry APIs (a tier on `tiered`); the
/// stand-in provider's `orders-app` is one of them.
fn load_contracts(runtime: &Runtime) {
    let contract = |api: &str, client: String, tier: bool| ApprovedContract {
        api: api.to_owned(),
        provider: "default".to_owned(),
        app: format!("app-{client}"),
        client_id: client,
        tier: tier.then(|| "gold".to_owned()),
        limits: if tier {
            vec!["1000000000/1s".parse().expect("limit")]
        } else {
            Vec::new()
        },
    };
    let clients = (0..9_999)
        .map(|i| format!("0oa{i:016}"))
        .chain(["orders-app".to_owned()]);
    let rows = clients.flat_map(|c| {
        [
            contract("contracts", c.clone(), false),
            contract("tiered", c, true),
        ]
    });
    let index = ContractIndex::new(1, rows, None);
    assert_eq!(index.len(), 20_000);
    runtime
        .registry
        .as_ref()
        .expect("the bench config has a [registry]")
        .replace(Arc::new(index));
}

fn request(path: &str, token: Option<&str>) -> Request<ProxyBody> {
    let mut builder = Request::get(path).header("host", "api.test");
    if let Some(t) = token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    builder.body(empty()).expect("request")
}

type Policy = PolicyService<Answer>;

async fn allowed(service: &Policy, req: Request<ProxyBody>) {
    let status = service
        .clone()
        .oneshot(tollgate::arrival::Arrival::bare(req))
        .await
        .map(|outcome| outcome.response.status().as_u16());
    assert_eq!(
        status.ok(),
        Some(200),
        "the benchmark request must be allowed"
    );
}

fn decision(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    let minter = Minter::new();
    let cached_jwt = minter.mint(Algorithm::RS256);
    let service = rt.block_on(async {
        let base = provider_stand_in().await;
        let runtime = Runtime::build(&settings(&base), Arc::new(SystemClock)).expect("runtime");
        runtime.providers[0]
            .resolve()
            .await
            .expect("endpoints are configured");
        load_contracts(&runtime);
        let service = PolicyLayer::new(RuntimeHandle::new(runtime)).layer(Answer);
        allowed(&service, request("/orders/1", Some("bench-token"))).await;
        allowed(&service, request("/listed/1", Some("bench-token"))).await;
        allowed(&service, request("/contracts/1", Some("bench-token"))).await;
        allowed(&service, request("/tiered/1", Some("bench-token"))).await;
        allowed(&service, request("/jwt/1", Some(&cached_jwt))).await;
        service
    });
    let mut group = c.benchmark_group("decision");
    group.bench_function("public_route", |b| {
        b.to_async(&rt)
            .iter(|| allowed(&service, request("/orders/public/1", None)))
    });
    group.bench_function("cached_introspected_token", |b| {
        b.to_async(&rt)
            .iter(|| allowed(&service, request("/orders/1", Some("bench-token"))))
    });
    group.bench_function("static_list", |b| {
        b.to_async(&rt)
            .iter(|| allowed(&service, request("/listed/1", Some("bench-token"))))
    });
    group.bench_function("registry_contract", |b| {
        b.to_async(&rt)
            .iter(|| allowed(&service, request("/contracts/1", Some("bench-token"))))
    });
    group.bench_function("registry_contract_with_tier", |b| {
        b.to_async(&rt)
            .iter(|| allowed(&service, request("/tiered/1", Some("bench-token"))))
    });
    group.bench_function("cached_jwt", |b| {
        b.to_async(&rt)
            .iter(|| allowed(&service, request("/jwt/1", Some(&cached_jwt))))
    });
    // Signing a fresh token happens in the (untimed) setup; RSA signing is slow, so fewer samples.
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    for (name, alg) in [
        ("uncached_rs256_jwt", Algorithm::RS256),
        ("uncached_es256_jwt", Algorithm::ES256),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || request("/jwt/1", Some(&minter.mint(alg))),
                |req| allowed(&service, req),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
