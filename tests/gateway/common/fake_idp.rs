//! A small in-process fake OpenID provider for fault injection: RFC 8414 discovery, an RFC 7662
//! introspection endpoint whose answer each test programs (any JSON, raw bodies, slowness, dropped
//! connections, discovery outages, a wrong metadata issuer), and a JWKS endpoint serving whatever keys
//! the test sets (with its own faults and `Cache-Control`). The real provider (node oidc-provider,
//! `idp.rs`) covers the happy paths; this one covers what a real provider will not do on demand.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The path of the issuer on the fake's host, shaped like Okta's default authorization server.
const ISSUER_PATH: &str = "/oauth2/default";

/// What the introspection (or, through `set_jwks_reply`, the JWKS) endpoint answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status with this JSON body (`content-type: application/json`).
    Json(u16, Value),
    /// This status, exactly these headers, this body.
    Raw(u16, Vec<(String, String)>, String),
    /// The inner reply after waiting this long (the call is recorded before the wait).
    Delay(Duration, Box<Reply>),
    /// Drop the connection without answering.
    Close,
}

/// One call to the introspection endpoint.
#[derive(Clone, Debug)]
pub struct IntrospectCall {
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The decoded form parameters, in order.
    pub form: Vec<(String, String)>,
}

impl IntrospectCall {
    /// The first form parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Behaviour = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

struct Shared {
    issuer: String,
    behaviour: Mutex<Behaviour>,
    discovery_available: Mutex<bool>,
    metadata_issuer: Mutex<Option<String>>,
    introspections: Mutex<Vec<IntrospectCall>>,
    discoveries: AtomicUsize,
    jwks_keys: Mutex<Vec<Value>>,
    jwks_reply: Mutex<Option<Reply>>,
    jwks_cache_control: Mutex<Option<String>>,
    jwks_requests: AtomicUsize,
    /// Introspection calls being answered now, and the most there ever were at once.
    introspecting: AtomicUsize,
    most_introspecting: AtomicUsize,
}

/// A running fake provider; the server (and its connections) stops on drop.
pub struct FakeIdp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task too.
        self.server.abort();
    }
}

impl FakeIdp {
    /// Starts with every token inactive (`200 {"active":false}`), discovery available and an empty
    /// JWKS (`200 {"keys":[]}`, no `Cache-Control`).
    pub async fn start() -> FakeIdp {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake idp: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake idp: local_addr");
        let inactive: Behaviour = Arc::new(|_| Reply::Json(200, json!({"active": false})));
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}{ISSUER_PATH}"),
            behaviour: Mutex::new(inactive),
            discovery_available: Mutex::new(true),
            metadata_issuer: Mutex::new(None),
            introspections: Mutex::new(Vec::new()),
            discoveries: AtomicUsize::new(0),
            jwks_keys: Mutex::new(Vec::new()),
            jwks_reply: Mutex::new(None),
            jwks_cache_control: Mutex::new(None),
            jwks_requests: AtomicUsize::new(0),
            introspecting: AtomicUsize::new(0),
            most_introspecting: AtomicUsize::new(0),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        FakeIdp {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/oauth2/default`.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn introspection_url(&self) -> String {
        format!("{}/v1/introspect", self.shared.issuer)
    }

    /// Replaces how introspection answers, given the `token` form parameter ("" when absent).
    pub fn on_introspect(&self, f: impl Fn(&str) -> Reply + Send + Sync + 'static) {
        *self.shared.behaviour.lock().expect("fake idp: lock") = Arc::new(f);
    }

    /// `false`: discovery answers 503; `true`: the metadata.
    pub fn set_discovery(&self, available: bool) {
        *self
            .shared
            .discovery_available
            .lock()
            .expect("fake idp: lock") = available;
    }

    /// Overrides the `issuer` the metadata claims (`None`: the real one).
    pub fn set_metadata_issuer(&self, issuer: Option<String>) {
        *self.shared.metadata_issuer.lock().expect("fake idp: lock") = issuer;
    }

    pub fn introspections(&self) -> Vec<IntrospectCall> {
        self.shared
            .introspections
            .lock()
            .expect("fake idp: lock")
            .clone()
    }

    pub fn introspection_count(&self) -> usize {
        self.shared
            .introspections
            .lock()
            .expect("fake idp: lock")
            .len()
    }

    /// Requests to either well-known metadata path, answered or not.
    pub fn discovery_count(&self) -> usize {
        self.shared.discoveries.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT/oauth2/default/v1/keys`, the `jwks_uri` the metadata advertises.
    /// The most introspection calls that were ever under way at once.
    pub fn most_concurrent_introspections(&self) -> usize {
        self.shared.most_introspecting.load(Ordering::SeqCst)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/v1/keys", self.shared.issuer)
    }

    /// The `keys` array the JWKS serves from now on (e.g. `vec![key.public_jwk()]`).
    pub fn set_jwks(&self, keys: Vec<Value>) {
        *self.shared.jwks_keys.lock().expect("fake idp: lock") = keys;
    }

    /// Makes the JWKS endpoint answer `reply` instead of the keys (a 500, garbage, a delay, a dropped
    /// connection) until `clear_jwks_reply`. `set_jwks_cache_control` applies to `Reply::Json` too;
    /// `Reply::Raw` sends exactly its own headers.
    pub fn set_jwks_reply(&self, reply: Reply) {
        *self.shared.jwks_reply.lock().expect("fake idp: lock") = Some(reply);
    }

    /// Back to the default JWKS answer: `200 {"keys": [...]}` with the keys `set_jwks` gave.
    pub fn clear_jwks_reply(&self) {
        *self.shared.jwks_reply.lock().expect("fake idp: lock") = None;
    }

    /// The `Cache-Control` the JWKS answers with (`None`, the default: no such header).
    pub fn set_jwks_cache_control(&self, value: Option<String>) {
        *self
            .shared
            .jwks_cache_control
            .lock()
            .expect("fake idp: lock") = value;
    }

    /// Requests to the JWKS endpoint, however they were answered.
    pub fn jwks_count(&self) -> usize {
        self.shared.jwks_requests.load(Ordering::SeqCst)
    }
}

/// An active introspection answer (RFC 7662 §2.2) for a client-credentials token; `iss` is left for
/// the caller to add (e.g. `v["iss"] = idp.issuer().into()`).
pub fn active(client_id: &str, scope: &str, exp_in_secs: i64) -> Value {
    let now = now();
    json!({
        "active": true,
        "client_id": client_id,
        "scope": scope,
        "exp": now + exp_in_secs,
        "iat": now,
        "sub": client_id,
        "token_type": "Bearer",
    })
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_secs()).expect("unix time fits in i64")
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Transient accept errors must not kill the provider mid-test.
            Err(_) => continue,
        };
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, shared.clone()));
            // `Reply::Close` ends the connection with an error on purpose; nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The error a service returns to make hyper drop the connection without writing a response.
#[derive(Debug)]
struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fake idp: closing the connection without an answer")
    }
}

impl std::error::Error for CloseConnection {}

type Answer = Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>>;

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Answer {
    let path = req.uri().path().to_owned();
    let well_known = |name: &str| path == format!("{ISSUER_PATH}/.well-known/{name}");
    if req.method() == Method::GET
        && (well_known("oauth-authorization-server") || well_known("openid-configuration"))
    {
        shared.discoveries.fetch_add(1, Ordering::SeqCst);
        if !*shared.discovery_available.lock().expect("fake idp: lock") {
            return Ok(json_response(
                503,
                &json!({"error": "temporarily_unavailable"}),
            ));
        }
        // Only RFC 8414 metadata is served, so the OpenID Discovery fallback path answers 404 here.
        if well_known("openid-configuration") {
            return Ok(json_response(404, &json!({"error": "not_found"})));
        }
        return Ok(json_response(200, &metadata(&shared)));
    }
    if req.method() == Method::POST && path == format!("{ISSUER_PATH}/v1/introspect") {
        return introspect(req, shared).await;
    }
    if req.method() == Method::GET && path == format!("{ISSUER_PATH}/v1/keys") {
        return jwks(shared).await;
    }
    Ok(json_response(404, &json!({"error": "not_found"})))
}

fn metadata(shared: &Shared) -> Value {
    let base = &shared.issuer;
    let issuer = shared
        .metadata_issuer
        .lock()
        .expect("fake idp: lock")
        .clone()
        .unwrap_or_else(|| base.clone());
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/v1/authorize"),
        "token_endpoint": format!("{base}/v1/token"),
        "introspection_endpoint": format!("{base}/v1/introspect"),
        "jwks_uri": format!("{base}/v1/keys"),
        "registration_endpoint": format!("{base}/v1/clients"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    })
}

async fn introspect(req: Request<Incoming>, shared: Arc<Shared>) -> Answer {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let authorization = header("authorization");
    let content_type = header("content-type");
    let body = req.into_body().collect().await?.to_bytes();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let token = form
        .iter()
        .find(|(n, _)| n == "token")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    shared
        .introspections
        .lock()
        .expect("fake idp: lock")
        .push(IntrospectCall {
            authorization,
            content_type,
            form,
        });

    // Clone the behaviour out so a test may call `on_introspect` while a delayed reply is pending.
    let behaviour = shared.behaviour.lock().expect("fake idp: lock").clone();
    let now = shared.introspecting.fetch_add(1, Ordering::SeqCst) + 1;
    shared.most_introspecting.fetch_max(now, Ordering::SeqCst);
    let answer = render(behaviour(&token), None).await;
    shared.introspecting.fetch_sub(1, Ordering::SeqCst);
    answer
}

async fn jwks(shared: Arc<Shared>) -> Answer {
    shared.jwks_requests.fetch_add(1, Ordering::SeqCst);
    let cache_control = shared
        .jwks_cache_control
        .lock()
        .expect("fake idp: lock")
        .clone();
    let reply = shared
        .jwks_reply
        .lock()
        .expect("fake idp: lock")
        .clone()
        .unwrap_or_else(|| {
            let keys = shared.jwks_keys.lock().expect("fake idp: lock").clone();
            Reply::Json(200, json!({ "keys": keys }))
        });
    render(reply, cache_control).await
}

/// Sends `reply` (waiting out any `Delay`); `cache_control`, if any, is added to a `Json` answer.
async fn render(mut reply: Reply, cache_control: Option<String>) -> Answer {
    loop {
        match reply {
            Reply::Json(status, value) => {
                let mut response = json_response(status, &value);
                if let Some(value) = cache_control {
                    let value = hyper::header::HeaderValue::try_from(value)
                        .expect("fake idp: a valid Cache-Control value");
                    response
                        .headers_mut()
                        .insert(hyper::header::CACHE_CONTROL, value);
                }
                return Ok(response);
            }
            Reply::Raw(status, headers, body) => {
                let mut builder = Response::builder().status(status);
                for (name, value) in headers {
                    builder = builder.header(name, value);
                }
                return Ok(builder
                    .body(Full::new(Bytes::from(body)))
                    .expect("fake idp: Reply::Raw needs a valid status and headers"));
            }
            Reply::Delay(wait, inner) => {
                tokio::time::sleep(wait).await;
                reply = *inner;
            }
            Reply::Close => return Err(Box::new(CloseConnection)),
        }
    }
}

fn json_response(status: u16, value: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("fake idp: valid status")
}
