//! The policy: a tower [`PolicyLayer`]/[`PolicyService`] around the forwarder that decides every
//! request: method → normalise path → route → (CORS preflight) → body limits → rule → token →
//! validate → authorise → forward. A refusal is a response (the service's error is
//! `Infallible`), rendered by [`Rejection::into_response`].
//! Routing happens here so a 404 goes through the same renderer. An API with `[api.cors]` has its
//! preflights answered here and its every other answer given the CORS grant (`cors`). The current
//! [`Runtime`] is read per request, so a reload applies mid-connection.

mod authorize;
mod cors;
pub mod extract;
mod matching;
mod rejection;
#[cfg(test)]
mod spelling_tests;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use tower::{Layer, Service};

pub use authorize::{Contracts, authorize};
pub use matching::{check_method, matching_rule};
pub use rejection::{AccessRecord, Dialect, GrpcRefusal, Rejection};

use crate::arrival::Arrival;
use crate::body::{BoundedBody, ProxyBody, full, set_content_length};
use crate::config::{ApiSettings, ClientCertificateRule, PolicySettings, TokenSource};
use crate::forward::{Forward, ForwardPlan, Forwarder};
use crate::registry::IndexHandle;
use crate::routing::{after_prefix, normalise_path, push_encoded_path, request_host};
use crate::runtime::{Api, Runtime, RuntimeHandle};
use crate::server::h1::AmbiguousFraming;
use crate::trust::ClientAddr;
use crate::validate::{BearerToken, Caller, InvalidReason, Principal, ValidateError};
use extract::Credential;

/// Applies the gateway's policy in front of a forwarding service.
#[derive(Clone)]
pub struct PolicyLayer {
    runtime: RuntimeHandle,
}

impl PolicyLayer {
    pub fn new(runtime: RuntimeHandle) -> Self {
        PolicyLayer { runtime }
    }
}

/// In front of a [`Forward`], not any service: its future is awaited inside the policy's own, so
/// a request is one boxed future, not one per layer.
impl<F: Forward> Layer<F> for PolicyLayer {
    type Service = PolicyService<F>;

    fn layer(&self, forwarder: F) -> Self::Service {
        PolicyService {
            forwarder,
            runtime: self.runtime.clone(),
        }
    }
}

/// See [`PolicyLayer`].
#[derive(Clone)]
pub struct PolicyService<F = Forwarder> {
    forwarder: F,
    runtime: RuntimeHandle,
}

/// What lets a request go on: the request itself stays where it arrived, in the policy's future
/// (`decide` reads and amends it in place; each move of it was a 240-byte copy).
struct Allowed {
    api: Arc<Api>,
    principal: Option<Arc<Principal>>,
    /// Handed to the forwarder beside the request (not in its extensions: no box, no lookup).
    plan: ForwardPlan,
}

/// The policy's answer, and beside it what the access log needs to know of it (not in the
/// response's extensions: on the forwarded path that would be a map and two boxes a request).
pub struct Outcome {
    pub response: Response<ProxyBody>,
    pub record: AccessRecord,
}

impl Outcome {
    /// An answer rendered elsewhere (a refusal, a preflight), whose record rides in its
    /// extensions.
    fn rendered(mut response: Response<ProxyBody>) -> Outcome {
        let record = response
            .extensions_mut()
            .remove::<AccessRecord>()
            .unwrap_or_default();
        Outcome { response, record }
    }
}

impl<F: Forward> Service<Arrival> for PolicyService<F> {
    type Response = Outcome;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Outcome, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The forwarder has no readiness of its own: connections are made per request, after
        // the decision (a refused request must not wait on, or reserve, the upstream).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, arrival: Arrival) -> Self::Future {
        // The future outlives `&mut self`: it takes its own clone of the forwarder.
        let forwarder = self.forwarder.clone();
        let runtime = self.runtime.current();
        Box::pin(async move {
            let Arrival {
                mut request,
                client,
                client_cert,
            } = arrival;
            // Kept before the request is consumed: every answer of a CORS API depends on it.
            let origin = cors::single(request.headers(), &ORIGIN).cloned();
            let dialect = Dialect::of(request.method(), request.headers());
            let decided = decide(&runtime, &mut request, client, client_cert, dialect).await;
            let (api, mut outcome) = match decided {
                Ok(Decision::Forward(allowed)) => {
                    let api = allowed.api.clone();
                    (api, forward(&forwarder, request, allowed, dialect).await)
                }
                // Complete as it is, CORS headers included.
                Ok(Decision::Answered(response)) => return Ok(Outcome::rendered(response)),
                Err((rejection, api)) => {
                    let response = rejection.render(api.as_ref().map(|a| &a.name), None, dialect);
                    match api {
                        Some(api) => (api, Outcome::rendered(response)),
                        None => return Ok(Outcome::rendered(response)),
                    }
                }
            };
            if let Some(settings) = &api.settings.cors {
                let grpc = matches!(dialect, Dialect::Grpc(_));
                let headers = outcome.response.headers_mut();
                cors::decorate(settings, origin.as_ref(), grpc, headers);
            }
            Ok(outcome)
        })
    }
}

/// Sends an allowed request upstream; an upstream failure is rendered as a refusal. What the
/// answer needs is taken out here, before the future, which keeps only that and the sending.
fn forward<'a, F: Forward>(
    forwarder: &'a F,
    request: Request<ProxyBody>,
    allowed: Allowed,
    dialect: Dialect,
) -> impl Future<Output = Outcome> + Send + 'a {
    let Allowed {
        api,
        principal,
        plan,
    } = allowed;
    let client_id = principal
        .as_ref()
        .and_then(|p| p.client_id().map(str::to_owned));
    let decision = if principal.is_some() {
        "allowed"
    } else {
        "public"
    };
    drop(principal);
    // A combinator, not an `async` block: one awaiting a future it captured would hold it twice.
    forwarder
        .forward(request, plan)
        .map(move |forwarded| match forwarded {
            Ok((response, upstream_time)) => Outcome {
                response,
                record: AccessRecord {
                    api: Some(api.name.clone()),
                    decision,
                    reason: "-",
                    client_id,
                    upstream_time: upstream_time.0,
                },
            },
            Err(failure) => {
                let rejection = Rejection::from(failure);
                metrics::counter!(crate::measure::UPSTREAM_ERRORS, "api" => api.name.to_string(), "kind" => rejection.reason())
                    .increment(1);
                Outcome::rendered(rejection.render(Some(&api.name), client_id, dialect))
            }
        })
}

/// What the policy made of a request.
// The forwarding variant is the common one: boxing it would be an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Decision {
    Forward(Allowed),
    /// Answered by the gateway itself (a CORS preflight).
    Answered(Response<ProxyBody>),
}

type Refusal = (Rejection, Option<Arc<Api>>);

/// Everything up to the forwarding decision. The request is amended in place: its body bounded,
/// a form token taken out of it.
async fn decide(
    runtime: &Runtime,
    req: &mut Request<ProxyBody>,
    client: Option<ClientAddr>,
    client_cert: Option<Arc<crate::client_cert::ClientCertificate>>,
    dialect: Dialect,
) -> Result<Decision, Refusal> {
    // The caller's clock starts when it sends, so its deadline counts from arrival.
    let arrived = std::time::Instant::now();
    check_framing(req).map_err(|r| (r, None))?;
    check_method(req.method()).map_err(|r| (r, None))?;
    let path = normalise_path(req.uri().path()).map_err(|e| (Rejection::BadPath(e), None))?;
    let host_value = original_host(req);
    let host = host_value
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .map(request_host);
    let api = runtime
        .router
        .route(host, &path)
        .cloned()
        .ok_or((Rejection::NoRoute, None))?;
    let refuse = |r: Rejection| (r, Some(api.clone()));
    let settings = &api.settings;
    let grpc_deadline = grpc_deadline(req, dialect, arrived).map_err(refuse)?;
    // Fetch §3.2.2: a preflight carries no credentials, so it is answered before any rule or
    // token check, and never forwarded.
    if let Some(cors) = &settings.cors
        && cors::is_preflight(req.method(), req.headers())
    {
        let answer = cors::answer_preflight(cors, &api.name, req.headers());
        return Ok(Decision::Answered(answer));
    }
    bound_body(
        req,
        settings.max_body_bytes,
        runtime.listen.connection.stream_idle_timeout,
    )
    .map_err(refuse)?;

    // RFC 6750 §2.3: the query token is taken out whether or not this API accepts it there, so it
    // never reaches upstream logs.
    let accept_query = settings.token_sources.contains(&TokenSource::Query);
    let (query_token, query) = match req.uri().query() {
        Some(q) => {
            let (token, rest) = extract::take_access_token(q, accept_query).map_err(refuse)?;
            (token, rest.or_else(|| Some(q.to_owned())))
        }
        None => (None, None),
    };

    let rule = matching_rule(settings, req.method(), &path).map(|(_, r)| r);
    // Before the token: a request that can never pass costs no provider call.
    if rule.is_some_and(|r| r.client_certificate == ClientCertificateRule::Required)
        && client_cert.is_none()
    {
        return Err(refuse(Rejection::ClientCertificateRequired));
    }
    let principal = if rule.is_some_and(|r| r.public) {
        None
    } else {
        let policy = rule.map_or(&settings.policy, |r| &r.policy);
        let caller = caller_of(client.as_ref());
        let token = find_token(
            req,
            &api,
            query_token,
            runtime.listen.connection.stream_idle_timeout,
        )
        .await
        .map_err(refuse)?;
        let principal =
            validate_and_authorize(&api, policy, &token, caller, runtime.registry.as_deref())
                .await
                .map_err(refuse)?;
        Some(principal)
    };

    let mut plan = plan(
        settings,
        runtime.listen.connection.stream_idle_timeout,
        &path,
        query.as_deref(),
        principal.as_deref(),
        host_value,
    )
    .map_err(refuse)?;
    if settings.client_cert_headers
        && let Some(cert) = &client_cert
    {
        plan.identity.extend(cert.headers());
    }
    Ok(Decision::Forward(Allowed {
        api,
        principal,
        plan: ForwardPlan {
            grpc_deadline,
            client,
            ..plan
        },
    }))
}

/// A gRPC call's own deadline, from its `grpc-timeout`: a malformed one is refused (the upstream
/// might read it otherwise, or not at all). Not gRPC, or no header: none.
fn grpc_deadline(
    req: &Request<ProxyBody>,
    dialect: Dialect,
    arrived: std::time::Instant,
) -> Result<Option<std::time::Instant>, Rejection> {
    if dialect == Dialect::Http {
        return Ok(None);
    }
    let mut values = req.headers().get_all(crate::deadline::GRPC_TIMEOUT).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => crate::deadline::parse(value)
            .map(|timeout| Some(arrived + timeout))
            .ok_or(Rejection::BadGrpcTimeout),
        (Some(_), Some(_)) => Err(Rejection::BadGrpcTimeout),
    }
}

/// Applies the API's body size limit: at once when `Content-Length` says it is exceeded (nothing
/// is forwarded), else while the body streams; and bounds the gaps between its bytes. A request
/// without a body (most of them) is left as it is, at no cost.
fn bound_body(
    req: &mut Request<ProxyBody>,
    limit: u64,
    stall: std::time::Duration,
) -> Result<(), Rejection> {
    use http_body::Body as _;
    if req.body().is_end_stream() {
        return Ok(());
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Rejection::BodyTooLarge(limit));
    }
    let body = std::mem::replace(req.body_mut(), crate::body::empty());
    *req.body_mut() = BoundedBody::new(body, limit, stall).boxed();
    Ok(())
}

/// RFC 9112 §6.3: a message with both Content-Length and Transfer-Encoding, or with several
/// Content-Length values, can be read two ways; it is refused, never forwarded.
fn check_framing(req: &Request<ProxyBody>) -> Result<(), Rejection> {
    // What hyper resolved before we saw it (see `framing`).
    if let Some(AmbiguousFraming(reason)) = req.extensions().get::<AmbiguousFraming>() {
        return Err(Rejection::BadFraming(reason));
    }
    let headers = req.headers();
    let lengths = headers.get_all(CONTENT_LENGTH).iter().count();
    if lengths > 1 {
        return Err(Rejection::BadFraming("more than one Content-Length"));
    }
    if lengths == 1 && headers.contains_key(TRANSFER_ENCODING) {
        return Err(Rejection::BadFraming(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if headers.get_all(HOST).iter().count() > 1 {
        return Err(Rejection::BadFraming("more than one Host header"));
    }
    Ok(())
}

fn original_host(req: &Request<ProxyBody>) -> Option<HeaderValue> {
    req.uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| req.headers().get(HOST).cloned())
}

/// Gathers the credentials the API accepts; exactly one may be present, and it must be well-formed.
async fn find_token(
    req: &mut Request<ProxyBody>,
    api: &Api,
    query_token: Option<Credential>,
    stall: std::time::Duration,
) -> Result<BearerToken, Rejection> {
    let sources = &api.settings.token_sources;
    let header_token = if sources.contains(&TokenSource::Header) {
        extract::from_header(req.headers())?
    } else {
        None
    };
    let form_token = if sources.contains(&TokenSource::Form) && is_form_post(req) {
        // Boxed: rare, and its body-reading future would otherwise enlarge every request's.
        // The body's gaps are bounded already; this bounds the whole read, so a client trickling
        // one byte per gap cannot hold the request (and its connection) for long either.
        let read = Box::pin(take_form_token(req, api.settings.max_form_bytes));
        tokio::time::timeout(stall, read)
            .await
            .map_err(|_| Rejection::RequestTimeout)??
    } else {
        None
    };
    let mut found = [header_token, query_token, form_token]
        .into_iter()
        .flatten();
    let credential = found.next().ok_or(Rejection::MissingToken)?;
    if found.next().is_some() {
        // RFC 6750 §2: clients MUST NOT use more than one method; a malformed request, whether
        // or not either token is well-formed.
        return Err(Rejection::InvalidRequest(
            "more than one access token in the request",
        ));
    }
    match credential {
        Credential::Token(token) => Ok(token),
        // RFC 6750 §3.1: the token is malformed; no provider is asked about it.
        Credential::Malformed => Err(Rejection::InvalidToken(InvalidReason::NotB64Token)),
    }
}

/// RFC 6750 §2.2: a single-part urlencoded body, on a method that has body semantics.
fn is_form_post(req: &Request<ProxyBody>) -> bool {
    let form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    form && req.method() != Method::GET && req.method() != Method::HEAD
}

/// Reads a (bounded) form body, takes `access_token` out of it, and re-frames what is left.
async fn take_form_token(
    req: &mut Request<ProxyBody>,
    limit: usize,
) -> Result<Option<Credential>, Rejection> {
    // A refusal leaves the request without its body: it is not forwarded.
    let body = std::mem::replace(req.body_mut(), crate::body::empty());
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| match e.downcast_ref::<crate::body::BodyError>() {
            Some(crate::body::BodyError::Stalled(_)) => Rejection::RequestTimeout,
            Some(crate::body::BodyError::TooLarge(n)) => Rejection::BodyTooLarge(*n),
            Some(crate::body::BodyError::Client(_) | crate::body::BodyError::Upstream(_)) => {
                Rejection::BadBody
            }
            // `Limited`'s own error: the form is longer than a token is worth reading for.
            None => Rejection::FormTooLarge,
        })?
        .to_bytes();
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Rejection::InvalidRequest("the form body is not UTF-8"))?;
    let (token, rest) = extract::take_access_token(text, true)?;
    *req.body_mut() = match rest {
        Some(rest) => {
            set_content_length(req.headers_mut(), rest.len());
            full(rest)
        }
        None => {
            set_content_length(req.headers_mut(), bytes.len());
            full(bytes)
        }
    };
    Ok(token)
}

/// Who asks, for per-client budgets: the client address the listener found (through
/// `trusted_proxies`).
fn caller_of(client: Option<&ClientAddr>) -> Caller {
    client.map_or(Caller::LOCAL, |c| Caller { client: c.client() })
}

async fn validate_and_authorize(
    api: &Api,
    policy: &PolicySettings,
    token: &BearerToken,
    caller: Caller,
    registry: Option<&IndexHandle>,
) -> Result<Arc<Principal>, Rejection> {
    let principal = api
        .validator
        .validate(token, caller)
        .await
        .map_err(|e| match e {
            ValidateError::Invalid(reason) => Rejection::InvalidToken(reason),
            ValidateError::Throttled(wait) => Rejection::TooManyNewTokens(wait),
            ValidateError::Unavailable(error) => {
                tracing::warn!(api = %api.name, error = %error, "token validation unavailable");
                Rejection::ProviderUnavailable(error)
            }
        })?;
    let index = registry.and_then(IndexHandle::current);
    let contracts = Contracts {
        api: &api.name,
        provider: &api.settings.provider,
        index: index.as_deref(),
    };
    authorize(&api.settings.audience, policy, &principal, contracts)?;
    // The contract's tier limits: only a request that would pass counts against them.
    if let Some(limiter) = index
        .as_deref()
        .zip(principal.client_id())
        .and_then(|(index, client)| index.grant(&api.name, &api.settings.provider, client))
        .and_then(|grant| grant.limiter.as_ref())
    {
        limiter.check().map_err(Rejection::RateLimited)?;
    }
    Ok(principal)
}

/// The upstream target, path and identity headers for an allowed request.
fn plan(
    settings: &ApiSettings,
    stream_idle: std::time::Duration,
    path: &str,
    query: Option<&str>,
    principal: Option<&Principal>,
    original_host: Option<HeaderValue>,
) -> Result<ForwardPlan, Rejection> {
    let rest = if settings.strip_prefix {
        // By segments: under case_insensitive_paths the prefix matched in another case.
        after_prefix(&settings.path_prefix, path)
    } else {
        path
    };
    let mut target = String::with_capacity(settings.upstream.base_path.len() + rest.len() + 16);
    target.push_str(&settings.upstream.base_path);
    if !rest.starts_with('/') {
        target.push('/');
    }
    push_encoded_path(&mut target, rest);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        target.push('?');
        target.push_str(q);
    }
    // The string's own bytes, not a copy.
    let path_and_query = http::uri::PathAndQuery::from_maybe_shared(bytes::Bytes::from(target))
        .map_err(|_| Rejection::InvalidRequest("the request target cannot be forwarded"))?;
    let identity = match principal {
        Some(p) if settings.expose_headers => p
            .attributes()
            .filter_map(|(field, value)| {
                let name = format!("{}{field}", settings.expose_headers_prefix);
                Some((
                    HeaderName::from_bytes(name.as_bytes()).ok()?,
                    HeaderValue::from_str(value).ok()?,
                ))
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(ForwardPlan {
        upstream: settings.upstream.compiled.clone(),
        path_and_query,
        timeout: settings.timeout,
        stream_idle,
        strip_header_prefix: settings.strip_headers_prefix.clone(),
        identity,
        original_host,
        forward_authorization: settings.forward_authorization,
        grpc_deadline: None,
        client: None,
    })
}
