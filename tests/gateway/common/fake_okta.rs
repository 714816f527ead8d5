//! A fake of Okta's client API (`/oauth2/v1/clients`, its Dynamic Client Registration API) for
//! fault injection, in-process like `fake_idp.rs`: create, list with `q=` (a prefix match, as
//! Okta's) and `Link: rel="next"` pagination, get, whole-client put, delete and
//! `lifecycle/newSecret`, all behind an exact `Authorization: SSWS <token>` check, with unique
//! `client_name`s (Okta-shaped `E0000001` on a duplicate). Faults on demand: an answer lost after
//! the change was made, a 429 with `X-Rate-Limit-Reset`, a 401 `E0000011`, slowness. It counts
//! the calls it got and lists the clients it holds, so tests assert at the provider.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

const CLIENTS: &str = "/oauth2/v1/clients";
/// Okta's largest page.
const MAX_LIMIT: usize = 200;

/// Something to go wrong with a call, instead of (or on top of) its normal answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Do what was asked, then drop the connection without answering (a lost 201).
    LoseAnswer,
    /// 429 `E0000047` with `X-Rate-Limit-Reset: <reset>` (Unix time) and nothing done.
    RateLimited { reset: u64 },
    /// 401 `E0000011` "Invalid token provided", and nothing done.
    InvalidToken,
    /// Answer normally after this long.
    Slow(Duration),
}

/// One call the fake got.
#[derive(Clone, Debug)]
pub struct OktaCall {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub body: Option<Value>,
}

#[derive(Default)]
struct State {
    /// In creation order; each holds every field, `client_secret` too.
    clients: Vec<Map<String, Value>>,
    issued: u64,
    faults: VecDeque<Fault>,
    always: Option<Fault>,
    calls: Vec<OktaCall>,
}

struct Shared {
    base: String,
    token: String,
    page_size: Mutex<usize>,
    state: Mutex<State>,
}

/// A running fake; the server (and its connections) stops on drop.
pub struct FakeOkta {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOkta {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeOkta {
    /// Accepts `Authorization: SSWS <api_token>` exactly; holds no clients; pages of up to 200.
    pub async fn start(api_token: &str) -> FakeOkta {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake okta: bind 127.0.0.1:0");
        let addr: SocketAddr = listener.local_addr().expect("fake okta: local_addr");
        let shared = Arc::new(Shared {
            base: format!("http://{addr}"),
            token: api_token.to_owned(),
            page_size: Mutex::new(MAX_LIMIT),
            state: Mutex::new(State::default()),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        FakeOkta { shared, server }
    }

    /// `http://127.0.0.1:PORT/oauth2/v1/clients`.
    pub fn registration_url(&self) -> String {
        format!("{}{CLIENTS}", self.shared.base)
    }

    /// `http://127.0.0.1:PORT/oauth2/default` (only the client API is served).
    pub fn issuer(&self) -> String {
        format!("{}/oauth2/default", self.shared.base)
    }

    /// A configuration with this fake as the provider (`api_token` its SSWS token), `provider_lines`
    /// inside `[provider]`, a `[registry]` on `store`, `extra` tables and one API, `orders`.
    /// [`FakeOkta::config`] with the API token the fake accepts and nothing extra.
    pub fn registry_config(&self, provider_lines: &str, store: &str) -> String {
        self.config(&self.shared.token, provider_lines, store, "")
    }

    pub fn config(
        &self,
        api_token: &str,
        provider_lines: &str,
        store: &str,
        extra: &str,
    ) -> String {
        let issuer = self.issuer();
        format!(
            r#"[provider]
issuer = "{issuer}"
authorize_url = "{issuer}/v1/authorize"
token_url = "{issuer}/v1/token"
introspection_url = "{issuer}/v1/introspect"
jwks_url = "{issuer}/v1/keys"
registration_url = "{}"
registration_authorization = "SSWS {api_token}"
introspection_client_id = "gw"
introspection_client_secret = "s"
{provider_lines}

[registry]
store = "{store}"
{extra}

[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "http://127.0.0.1:9"
"#,
            self.registration_url()
        )
    }

    /// The next call gets `fault` (faults queue up, one per call).
    pub fn fail_next(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// Every call gets `fault` (after any queued ones) until `None`.
    pub fn fail_always(&self, fault: Option<Fault>) {
        self.state().always = fault;
    }

    /// Lists answer at most `n` clients a page.
    pub fn set_page_size(&self, n: usize) {
        *self.shared.page_size.lock().expect("fake okta: lock") = n;
    }

    /// A client made by hand at the provider (not counted as a call); returns its `client_id`.
    pub fn add_client(&self, name: &str) -> String {
        let mut state = self.state();
        let client = new_client(&mut state, json!({"client_name": name}));
        let id = client["client_id"].as_str().unwrap_or_default().to_owned();
        state.clients.push(client);
        id
    }

    /// Removes a client as an administrator would in Okta's console (not counted as a call).
    pub fn remove_client(&self, name: &str) {
        self.state().clients.retain(|c| c["client_name"] != name);
    }

    /// Changes a client's redirect URIs as an administrator would (not counted as a call).
    pub fn set_redirect_uris(&self, name: &str, uris: &[&str]) {
        for c in self
            .state()
            .clients
            .iter_mut()
            .filter(|c| c["client_name"] == name)
        {
            c.insert("redirect_uris".into(), json!(uris));
        }
    }

    /// The clients it holds, with their secrets.
    pub fn clients(&self) -> Vec<Map<String, Value>> {
        self.state().clients.clone()
    }

    pub fn client_names(&self) -> Vec<String> {
        let state = self.state();
        state
            .clients
            .iter()
            .map(|c| c["client_name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub fn calls(&self) -> Vec<OktaCall> {
        self.state().calls.clone()
    }

    pub fn call_count(&self) -> usize {
        self.state().calls.len()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("fake okta: lock")
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, shared.clone()));
            // A lost answer ends the connection with an error on purpose.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Debug)]
struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fake okta: dropping the answer")
    }
}

impl std::error::Error for CloseConnection {}

type Answer = Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>>;

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Answer {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let authorization = req
        .headers()
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let bytes = req.into_body().collect().await?.to_bytes();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let fault = {
        let mut state = shared.state.lock().expect("fake okta: lock");
        state.calls.push(OktaCall {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            authorization: authorization.clone(),
            body: body.clone(),
        });
        state.faults.pop_front().or_else(|| state.always.clone())
    };
    let lose = match fault {
        Some(Fault::InvalidToken) => return Ok(invalid_token()),
        Some(Fault::RateLimited { reset }) => return Ok(rate_limited(reset)),
        Some(Fault::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            false
        }
        Some(Fault::LoseAnswer) => true,
        None => false,
    };
    if authorization.as_deref() != Some(format!("SSWS {}", shared.token).as_str()) {
        return Ok(invalid_token());
    }
    let answer = route(&shared, &method, &path, query.as_deref(), body);
    if lose {
        return Err(Box::new(CloseConnection));
    }
    Ok(answer)
}

fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: Option<Value>,
) -> Response<Full<Bytes>> {
    let mut state = shared.state.lock().expect("fake okta: lock");
    let rest = path.strip_prefix(CLIENTS);
    let segments: Vec<&str> = match rest {
        Some(rest) => rest.split('/').filter(|s| !s.is_empty()).collect(),
        None => return not_a_route(),
    };
    match (method, segments.as_slice()) {
        (&Method::POST, []) => create(&mut state, body),
        (&Method::GET, []) => list(shared, &state, query),
        (&Method::GET, [id]) => match find(&state, id) {
            Some(i) => json_response(200, &public(&state.clients[i])),
            None => not_found(id),
        },
        (&Method::PUT, [id]) => replace(&mut state, id, body),
        (&Method::DELETE, [id]) => match find(&state, id) {
            Some(i) => {
                state.clients.remove(i);
                Response::builder()
                    .status(204)
                    .body(Full::new(Bytes::new()))
                    .expect("fake okta: a 204")
            }
            None => not_found(id),
        },
        (&Method::POST, [id, "lifecycle", "newSecret"]) => match find(&state, id) {
            Some(i) => {
                state.issued += 1;
                let secret = format!("secret-{id}-{}", state.issued);
                state.clients[i].insert("client_secret".into(), secret.into());
                json_response(200, &Value::Object(state.clients[i].clone()))
            }
            None => not_found(id),
        },
        _ => not_a_route(),
    }
}

fn create(state: &mut State, body: Option<Value>) -> Response<Full<Bytes>> {
    let Some(body) = body.filter(Value::is_object) else {
        return validation_failed("client_name", "The request body is not valid JSON");
    };
    let Some(name) = body["client_name"].as_str().filter(|n| !n.is_empty()) else {
        return validation_failed("client_name", "client_name: The field is required");
    };
    if taken(state, name, None) {
        return duplicate();
    }
    let client = new_client(state, body);
    state.clients.push(client.clone());
    json_response(201, &Value::Object(client))
}

fn new_client(state: &mut State, body: Value) -> Map<String, Value> {
    state.issued += 1;
    let id = format!("0oa{:06}", state.issued);
    let mut client = body.as_object().cloned().unwrap_or_default();
    client.insert("client_secret".into(), format!("secret-{id}-1").into());
    client.insert("client_id".into(), id.into());
    client.insert("client_id_issued_at".into(), 1_700_000_000.into());
    client.insert("client_secret_expires_at".into(), 0.into());
    client
}

/// `?q=` (prefix, ignoring case), `after=` (a `client_id`), `limit=`.
fn list(shared: &Shared, state: &State, query: Option<&str>) -> Response<Full<Bytes>> {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let q = param("q").unwrap_or_default().to_lowercase();
    let page_size = *shared.page_size.lock().expect("fake okta: lock");
    let limit = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .min(MAX_LIMIT)
        .min(page_size);
    let matching: Vec<&Map<String, Value>> = state
        .clients
        .iter()
        .filter(|c| {
            c["client_name"]
                .as_str()
                .is_some_and(|n| n.to_lowercase().starts_with(&q))
        })
        .collect();
    let start = match param("after") {
        Some(after) => matching
            .iter()
            .position(|c| c["client_id"] == after.as_str())
            .map_or(matching.len(), |i| i + 1),
        None => 0,
    };
    let page: Vec<Value> = matching[start..]
        .iter()
        .take(limit)
        .map(|c| public(c))
        .collect();
    let more = start + page.len() < matching.len();
    let mut response = json_response(200, &Value::Array(page.clone()));
    add_links(
        shared,
        &mut response,
        &q,
        limit,
        more.then(|| page.last()).flatten(),
    );
    response
}

/// Okta's `Link` headers: `rel="self"`, and `rel="next"` after `last` when there is more.
fn add_links(
    shared: &Shared,
    response: &mut Response<Full<Bytes>>,
    q: &str,
    limit: usize,
    last: Option<&Value>,
) {
    let url = |after: Option<&str>| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(after) = after {
            query.append_pair("after", after);
        }
        query
            .append_pair("limit", &limit.to_string())
            .append_pair("q", q);
        format!("{}{CLIENTS}?{}", shared.base, query.finish())
    };
    let mut links = vec![format!("<{}>; rel=\"self\"", url(None))];
    if let Some(last) = last {
        let after = last["client_id"].as_str().unwrap_or_default();
        links.push(format!("<{}>; rel=\"next\"", url(Some(after))));
    }
    for link in links {
        let value = hyper::header::HeaderValue::try_from(link).expect("fake okta: a Link value");
        response.headers_mut().append(hyper::header::LINK, value);
    }
}

/// Okta's PUT replaces the client: every setting must be given.
fn replace(state: &mut State, id: &str, body: Option<Value>) -> Response<Full<Bytes>> {
    let Some(i) = find(state, id) else {
        return not_found(id);
    };
    let Some(body) = body.and_then(|b| b.as_object().cloned()) else {
        return validation_failed("client_name", "The request body is not valid JSON");
    };
    for field in [
        "client_name",
        "grant_types",
        "response_types",
        "redirect_uris",
    ] {
        if body.get(field).is_none_or(Value::is_null) {
            return validation_failed(field, &format!("{field}: The field is required"));
        }
    }
    if body.get("client_id").is_some_and(|given| given != id) {
        return validation_failed("client_id", "client_id: does not match the client");
    }
    let name = body["client_name"].as_str().unwrap_or_default();
    if taken(state, name, Some(id)) {
        return duplicate();
    }
    let old = state.clients[i].clone();
    let mut client = body;
    for kept in [
        "client_id",
        "client_secret",
        "client_id_issued_at",
        "client_secret_expires_at",
    ] {
        client.insert(kept.into(), old[kept].clone());
    }
    state.clients[i] = client;
    json_response(200, &public(&state.clients[i]))
}

fn find(state: &State, id: &str) -> Option<usize> {
    state.clients.iter().position(|c| c["client_id"] == id)
}

fn taken(state: &State, name: &str, except: Option<&str>) -> bool {
    state
        .clients
        .iter()
        .any(|c| c["client_name"] == name && except.is_none_or(|id| c["client_id"] != id))
}

/// A client as reads and lists show it: without its secret.
fn public(client: &Map<String, Value>) -> Value {
    let mut shown = client.clone();
    shown.remove("client_secret");
    Value::Object(shown)
}

fn okta_error(status: u16, code: &str, summary: &str, causes: &[&str]) -> Response<Full<Bytes>> {
    let causes: Vec<Value> = causes
        .iter()
        .map(|c| json!({ "errorSummary": c }))
        .collect();
    json_response(
        status,
        &json!({
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": format!("oae{code}{status}"),
            "errorCauses": causes,
        }),
    )
}

fn invalid_token() -> Response<Full<Bytes>> {
    okta_error(401, "E0000011", "Invalid token provided", &[])
}

fn rate_limited(reset: u64) -> Response<Full<Bytes>> {
    let mut response = okta_error(
        429,
        "E0000047",
        "API call exceeded rate limit due to too many requests.",
        &[],
    );
    for (name, value) in [
        ("x-rate-limit-limit", "100".to_owned()),
        ("x-rate-limit-remaining", "0".to_owned()),
        ("x-rate-limit-reset", reset.to_string()),
    ] {
        response.headers_mut().insert(
            name,
            hyper::header::HeaderValue::try_from(value).expect("fake okta: a header value"),
        );
    }
    response
}

fn not_found(id: &str) -> Response<Full<Bytes>> {
    okta_error(
        404,
        "E0000007",
        &format!("Not found: Resource not found: {id} (AppInstance)"),
        &[],
    )
}

fn validation_failed(field: &str, cause: &str) -> Response<Full<Bytes>> {
    okta_error(
        400,
        "E0000001",
        &format!("Api validation failed: {field}"),
        &[cause],
    )
}

fn duplicate() -> Response<Full<Bytes>> {
    validation_failed(
        "client_name",
        "client_name: An object with this field already exists in the current organization",
    )
}

/// A path Okta does not serve: a 404 that is not about a client.
fn not_a_route() -> Response<Full<Bytes>> {
    Response::builder()
        .status(404)
        .header("content-type", "text/html")
        .body(Full::new(Bytes::from_static(b"<html>Not Found</html>")))
        .expect("fake okta: a 404")
}

fn json_response(status: u16, value: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("fake okta: valid status")
}
