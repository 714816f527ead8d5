//! [`Rejection`]: every refusal the gateway makes, and the one place that renders them (RFC 6750
//! §3 challenges, a JSON body with `error` and `error_description`, `Retry-After` for 503). The
//! typed rejection also rides in the response's extensions as an [`AccessRecord`], so the access
//! log records the reason once.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::cors::CorsRefusal;
use crate::body::{ProxyBody, full};
use crate::forward::ForwardError;
use crate::provider::{ProviderError, seconds_up};
use crate::registry::Exceeded;
use crate::routing::PathError;
use crate::validate::InvalidReason;

/// Why a request was not forwarded (or the upstream failed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    NoRoute,
    BadPath(PathError),
    /// A standard method spelt in another case (`delete`): see `policy::check_method`.
    BadMethod,
    /// Ambiguous message framing (RFC 9112 §6.3): never forwarded.
    BadFraming(&'static str),
    /// A gRPC request's `grpc-timeout` is not `<1-8 digits><H|M|S|m|u|n>` (gRPC over HTTP/2,
    /// "Timeout"): never forwarded, as the gateway and the upstream could read its deadline apart.
    BadGrpcTimeout,
    /// RFC 6750 §3.1 `invalid_request`: a malformed credential or more than one.
    InvalidRequest(&'static str),
    FormTooLarge,
    /// The request body is larger than the API's `max_body_bytes` (the limit).
    BodyTooLarge(u64),
    /// The request body stalled for `stream_idle_timeout` before the upstream answered.
    RequestTimeout,
    /// The request body's framing broke (bad chunk size, truncated) before the upstream answered.
    BadBody,
    MissingToken,
    InvalidToken(InvalidReason),
    InsufficientScope {
        required: String,
    },
    NoContract,
    /// The rule needs a verified client certificate (`client_certificate = "required"`) and the
    /// connection presented none (cleartext, or mTLS with `client_auth = "optional"`).
    ClientCertificateRequired,
    /// A CORS preflight from an origin, or for a method or header, that `[api.cors]` does not allow.
    CorsRefused(CorsRefusal),
    ProviderUnavailable(ProviderError),
    /// The API needs registry contracts and no contract index is loaded yet.
    RegistryUnavailable,
    /// The contract's tier limit is spent (`tollgate tier create ... --limit`).
    RateLimited(Exceeded),
    /// The client address has used its share of new tokens (`misses_per_client`); retry after
    /// this long.
    TooManyNewTokens(Duration),
    UpstreamUnreachable,
    UpstreamTimeout,
}

/// What the access log needs to know about a decision.
#[derive(Debug, Clone, Default)]
pub struct AccessRecord {
    pub api: Option<Arc<str>>,
    pub decision: &'static str,
    pub reason: &'static str,
    pub client_id: Option<String>,
    /// How long the upstream took to its response head (zero when it was not asked): the part
    /// of the latency that is not tollgate's.
    pub upstream_time: std::time::Duration,
}

impl Rejection {
    /// The stable reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::NoRoute => "no_route",
            Rejection::BadPath(_) => "bad_path",
            Rejection::BadMethod => "bad_method",
            Rejection::BadFraming(_) => "bad_framing",
            Rejection::BadGrpcTimeout => "bad_grpc_timeout",
            Rejection::InvalidRequest(_) => "invalid_request",
            Rejection::FormTooLarge => "form_too_large",
            Rejection::BodyTooLarge(_) => "body_too_large",
            Rejection::RequestTimeout => "request_timeout",
            Rejection::BadBody => "bad_body",
            Rejection::MissingToken => "missing_token",
            Rejection::InvalidToken(r) => r.reason(),
            Rejection::InsufficientScope { .. } => "insufficient_scope",
            Rejection::NoContract => "no_contract",
            Rejection::ClientCertificateRequired => "client_certificate_required",
            Rejection::CorsRefused(_) => "cors_refused",
            Rejection::ProviderUnavailable(_) => "provider_unavailable",
            Rejection::RegistryUnavailable => "registry_unavailable",
            Rejection::TooManyNewTokens(_) => "too_many_new_tokens",
            Rejection::RateLimited(_) => "rate_limited",
            Rejection::UpstreamUnreachable => "upstream_unreachable",
            Rejection::UpstreamTimeout => "upstream_timeout",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NoRoute => StatusCode::NOT_FOUND,
            Rejection::BadPath(_)
            | Rejection::BadMethod
            | Rejection::BadFraming(_)
            | Rejection::BadGrpcTimeout
            | Rejection::InvalidRequest(_)
            | Rejection::BadBody => StatusCode::BAD_REQUEST,
            Rejection::FormTooLarge | Rejection::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::MissingToken | Rejection::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Rejection::InsufficientScope { .. }
            | Rejection::NoContract
            | Rejection::ClientCertificateRequired
            | Rejection::CorsRefused(_) => StatusCode::FORBIDDEN,
            Rejection::ProviderUnavailable(_) | Rejection::RegistryUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Rejection::TooManyNewTokens(_) | Rejection::RateLimited(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Rejection::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Rejection::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// `(error, error_description)`: safe for clients; internal detail goes to logs only.
    /// `(error, error_description)` as the client is told.
    pub fn error(&self) -> (&'static str, String) {
        match self {
            Rejection::NoRoute => (
                "not_found",
                "no API is configured for this host and path".into(),
            ),
            Rejection::BadPath(e) => (
                "invalid_request",
                format!("the request path is refused: {e}"),
            ),
            Rejection::BadMethod => (
                "invalid_request",
                "methods are case-sensitive (RFC 9110 §9.1): send the standard method in upper case"
                    .into(),
            ),
            Rejection::BadFraming(d) | Rejection::InvalidRequest(d) => {
                ("invalid_request", (*d).into())
            }
            Rejection::BadGrpcTimeout => (
                "invalid_request",
                "grpc-timeout must be 1 to 8 digits and a unit (H, M, S, m, u, n)".into(),
            ),
            Rejection::FormTooLarge => (
                "invalid_request",
                "the form body is too large to read a token from".into(),
            ),
            Rejection::BodyTooLarge(limit) => (
                "payload_too_large",
                format!("the request body is larger than this API accepts ({limit} bytes)"),
            ),
            Rejection::RequestTimeout => (
                "request_timeout",
                "the request body stopped arriving".into(),
            ),
            Rejection::BadBody => (
                "invalid_request",
                "the request body's framing is malformed".into(),
            ),
            Rejection::MissingToken => ("unauthorized", "an access token is required".into()),
            Rejection::InvalidToken(r) => ("invalid_token", r.description().into()),
            Rejection::InsufficientScope { required } => (
                "insufficient_scope",
                format!("the access token lacks the required scope ({required})"),
            ),
            Rejection::NoContract => (
                "access_denied",
                "the client has no contract for this API".into(),
            ),
            Rejection::ClientCertificateRequired => (
                "client_certificate_required",
                "this resource needs a client certificate over TLS (mTLS)".into(),
            ),
            Rejection::CorsRefused(r) => ("cors_refused", r.description().into()),
            Rejection::ProviderUnavailable(_) => (
                "temporarily_unavailable",
                "the token could not be validated now; retry later".into(),
            ),
            Rejection::RegistryUnavailable => (
                "temporarily_unavailable",
                "the client's contracts could not be checked now; retry later".into(),
            ),
            Rejection::RateLimited(e) => (
                "too_many_requests",
                format!("the contract's {} tier allows {} requests", e.tier, e.limit),
            ),
            Rejection::TooManyNewTokens(_) => (
                "too_many_requests",
                "too many new access tokens from this client address; retry later".into(),
            ),
            Rejection::UpstreamUnreachable => {
                ("bad_gateway", "the upstream could not be reached".into())
            }
            Rejection::UpstreamTimeout => (
                "gateway_timeout",
                "the upstream did not answer in time".into(),
            ),
        }
    }

    /// Refusals after which the connection is closed: the rest of its bytes cannot be trusted to
    /// be read the same way by everyone (framing), or the request body was left unread.
    fn closes_connection(&self) -> bool {
        match self {
            Rejection::BadFraming(_)
            | Rejection::BadBody
            | Rejection::BodyTooLarge(_)
            | Rejection::RequestTimeout => true,
            Rejection::NoRoute
            | Rejection::BadPath(_)
            | Rejection::BadMethod
            | Rejection::BadGrpcTimeout
            | Rejection::InvalidRequest(_)
            | Rejection::FormTooLarge
            | Rejection::MissingToken
            | Rejection::InvalidToken(_)
            | Rejection::InsufficientScope { .. }
            | Rejection::NoContract
            | Rejection::ClientCertificateRequired
            | Rejection::CorsRefused(_)
            | Rejection::ProviderUnavailable(_)
            | Rejection::RegistryUnavailable
            | Rejection::TooManyNewTokens(_)
            | Rejection::RateLimited(_)
            | Rejection::UpstreamUnreachable
            | Rejection::UpstreamTimeout => false,
        }
    }

    /// RFC 6750 §3: the challenge, for refusals about the credential.
    fn challenge(&self, realm: &str, error: &str, description: &str) -> Option<String> {
        let realm = quote(realm);
        match self {
            // §3.1: no error code when the request carried no authentication information.
            Rejection::MissingToken => Some(format!("Bearer realm={realm}")),
            Rejection::InvalidRequest(_) | Rejection::InvalidToken(_) | Rejection::NoContract => {
                Some(format!(
                    "Bearer realm={realm}, error={}, error_description={}",
                    quote(error),
                    quote(description)
                ))
            }
            Rejection::InsufficientScope { required } => Some(format!(
                "Bearer realm={realm}, error={}, error_description={}, scope={}",
                quote(error),
                quote(description),
                quote(required)
            )),
            Rejection::NoRoute
            | Rejection::BadPath(_)
            | Rejection::BadMethod
            | Rejection::BadFraming(_)
            | Rejection::BadGrpcTimeout
            | Rejection::FormTooLarge
            | Rejection::BodyTooLarge(_)
            | Rejection::RequestTimeout
            | Rejection::BadBody
            // Not about a credential: a preflight carries none (RFC 6750 §3 does not apply).
            // About the TLS connection, not the bearer credential.
            | Rejection::ClientCertificateRequired
            | Rejection::CorsRefused(_)
            | Rejection::ProviderUnavailable(_)
            | Rejection::RegistryUnavailable
            | Rejection::TooManyNewTokens(_)
            | Rejection::RateLimited(_)
            | Rejection::UpstreamUnreachable
            | Rejection::UpstreamTimeout => None,
        }
    }

    /// `Retry-After`, for refusals that pass: whole seconds, rounded up, at least one.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Rejection::ProviderUnavailable(e) => Some(e.retry_after()),
            Rejection::RegistryUnavailable => Some(Duration::from_secs(1)),
            Rejection::TooManyNewTokens(wait) => {
                Some(seconds_up(*wait).max(Duration::from_secs(1)))
            }
            Rejection::RateLimited(e) => {
                Some(seconds_up(e.retry_after).max(Duration::from_secs(1)))
            }
            Rejection::NoRoute
            | Rejection::BadPath(_)
            | Rejection::BadMethod
            | Rejection::BadFraming(_)
            | Rejection::BadGrpcTimeout
            | Rejection::InvalidRequest(_)
            | Rejection::FormTooLarge
            | Rejection::BodyTooLarge(_)
            | Rejection::RequestTimeout
            | Rejection::BadBody
            | Rejection::MissingToken
            | Rejection::InvalidToken(_)
            | Rejection::InsufficientScope { .. }
            | Rejection::NoContract
            | Rejection::ClientCertificateRequired
            | Rejection::CorsRefused(_)
            | Rejection::UpstreamUnreachable
            | Rejection::UpstreamTimeout => None,
        }
    }

    /// The gRPC status code a gRPC client is told (gRPC's `statuscodes.md`): what the refusal
    /// means to a caller, per reason, so that a client's retry logic reads it right.
    pub fn grpc_code(&self) -> u8 {
        match self {
            Rejection::NoRoute => GRPC_UNIMPLEMENTED,
            Rejection::BadPath(_)
            | Rejection::BadMethod
            | Rejection::BadFraming(_)
            | Rejection::BadGrpcTimeout
            | Rejection::InvalidRequest(_)
            | Rejection::BadBody => GRPC_INVALID_ARGUMENT,
            // gRPC itself answers a message over its size limit with RESOURCE_EXHAUSTED.
            Rejection::FormTooLarge | Rejection::BodyTooLarge(_) => GRPC_RESOURCE_EXHAUSTED,
            Rejection::RequestTimeout | Rejection::UpstreamTimeout => GRPC_DEADLINE_EXCEEDED,
            Rejection::MissingToken | Rejection::InvalidToken(_) => GRPC_UNAUTHENTICATED,
            Rejection::InsufficientScope { .. }
            | Rejection::NoContract
            | Rejection::ClientCertificateRequired
            | Rejection::CorsRefused(_) => GRPC_PERMISSION_DENIED,
            Rejection::ProviderUnavailable(_)
            | Rejection::RegistryUnavailable
            | Rejection::UpstreamUnreachable => GRPC_UNAVAILABLE,
            Rejection::TooManyNewTokens(_) | Rejection::RateLimited(_) => GRPC_RESOURCE_EXHAUSTED,
        }
    }

    /// Renders the refusal as HTTP; `api` is the matched API, if any (the realm).
    pub fn into_response(
        self,
        api: Option<&Arc<str>>,
        client_id: Option<String>,
    ) -> Response<ProxyBody> {
        self.render(api, client_id, Dialect::Http)
    }

    /// Renders the refusal as the request's `dialect` expects: an RFC 6750 JSON body, or a gRPC
    /// Trailers-Only answer. Either way with the same challenge and `Retry-After`.
    pub fn render(
        self,
        api: Option<&Arc<str>>,
        client_id: Option<String>,
        dialect: Dialect,
    ) -> Response<ProxyBody> {
        let (error, description) = self.error();
        let mut response = match dialect {
            Dialect::Http => self.json_response(error, &description),
            Dialect::Grpc(content_type) => self.grpc_response(content_type, &description),
        };
        let headers = response.headers_mut();
        let realm = api.map_or("tollgate", |a| a);
        if let Some(challenge) = self.challenge(realm, error, &description)
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        if self.closes_connection() {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(wait) = self.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(wait.as_secs()));
            if let Rejection::RateLimited(e) = &self {
                rate_limit_headers(headers, e, wait);
            }
        }
        response.extensions_mut().insert(AccessRecord {
            api: api.cloned(),
            decision: "rejected",
            reason: self.reason(),
            client_id,
            upstream_time: std::time::Duration::ZERO,
        });
        response
    }
}

impl Rejection {
    fn json_response(&self, error: &str, description: &str) -> Response<ProxyBody> {
        let mut body = serde_json::json!({ "error": error, "error_description": description });
        if let Rejection::InsufficientScope { required } = self {
            body["scope"] = required.clone().into();
        }
        let mut response = Response::new(full(body.to_string()));
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }

    /// gRPC over HTTP/2, "Responses": a Trailers-Only answer is HTTP 200 whose headers carry
    /// `grpc-status` and the percent-encoded `grpc-message`, with no body. The HTTP status it
    /// stands for rides along for the access log.
    fn grpc_response(&self, content_type: &'static str, description: &str) -> Response<ProxyBody> {
        let mut response = Response::new(ProxyBody::default());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let code = self.grpc_code();
        headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
        if let Ok(message) = HeaderValue::from_str(&grpc_percent_encode(description)) {
            headers.insert(GRPC_MESSAGE, message);
        }
        response.extensions_mut().insert(GrpcRefusal {
            stands_for: self.status(),
            code,
        });
        response
    }
}

/// How the refused request expects to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Http,
    /// A gRPC (or gRPC-Web) client: the `content-type` to answer with.
    Grpc(&'static str),
}

impl Dialect {
    /// gRPC over HTTP/2: a request is gRPC when it is a `POST` whose `content-type` is
    /// `application/grpc`, alone or with a `+format` suffix; gRPC-Web's `application/grpc-web`
    /// and `application/grpc-web-text` likewise (their clients read a Trailers-Only status from
    /// the headers too). Only `POST`, as the spec says: a refusal that is a 200 must never be one
    /// a shared cache could keep for a `GET` and serve to everyone.
    pub fn of(method: &http::Method, headers: &http::HeaderMap) -> Dialect {
        if method != http::Method::POST {
            return Dialect::Http;
        }
        let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return Dialect::Http;
        };
        let media = value.split(';').next().unwrap_or(value).trim();
        let media = media.split('+').next().unwrap_or(media);
        if media.eq_ignore_ascii_case("application/grpc") {
            Dialect::Grpc("application/grpc")
        } else if media.eq_ignore_ascii_case("application/grpc-web") {
            Dialect::Grpc("application/grpc-web")
        } else if media.eq_ignore_ascii_case("application/grpc-web-text") {
            Dialect::Grpc("application/grpc-web-text")
        } else {
            Dialect::Http
        }
    }
}

/// Left on a refusal rendered for a gRPC client: the access log shows the HTTP status the refusal
/// stands for (the wire says 200) and the gRPC code sent.
#[derive(Debug, Clone, Copy)]
pub struct GrpcRefusal {
    pub stands_for: StatusCode,
    pub code: u8,
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_INVALID_ARGUMENT: u8 = 3;
const GRPC_DEADLINE_EXCEEDED: u8 = 4;
const GRPC_PERMISSION_DENIED: u8 = 7;
const GRPC_RESOURCE_EXHAUSTED: u8 = 8;
const GRPC_UNIMPLEMENTED: u8 = 12;
const GRPC_UNAVAILABLE: u8 = 14;
const GRPC_UNAUTHENTICATED: u8 = 16;

/// gRPC over HTTP/2, "Responses": `grpc-message` is the UTF-8 text with every byte outside
/// space..`~`, and `%` itself, written as `%XX`.
fn grpc_percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The IETF `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers):
/// the tier's quota and window, and that none of it is left until `wait` has passed.
fn rate_limit_headers(headers: &mut http::HeaderMap, e: &Exceeded, wait: Duration) {
    // A policy name is an sf-string: the tier's name is letters, digits, `.`, `_`, `-` only.
    let window = seconds_up(e.limit.per).as_secs().max(1);
    let policy = format!("\"{}\";q={};w={window}", e.tier, e.limit.count);
    let state = format!("\"{}\";r=0;t={}", e.tier, wait.as_secs());
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(http::HeaderName::from_static(name), v);
        }
    }
}

impl From<ForwardError> for Rejection {
    fn from(failure: ForwardError) -> Self {
        match failure {
            ForwardError::Unreachable => Rejection::UpstreamUnreachable,
            ForwardError::Timeout => Rejection::UpstreamTimeout,
            ForwardError::ClientBody => Rejection::BadBody,
            ForwardError::ClientStalled => Rejection::RequestTimeout,
            ForwardError::TooLarge(limit) => Rejection::BodyTooLarge(limit),
        }
    }
}

/// An RFC 9110 quoted-string.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_follow_rfc_6750() {
        let api: Arc<str> = Arc::from("orders");
        let www = |r: Rejection| {
            r.into_response(Some(&api), None)
                .headers()
                .get(WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            www(Rejection::MissingToken).as_deref(),
            Some(r#"Bearer realm="orders""#)
        );
        assert_eq!(
            www(Rejection::InsufficientScope {
                required: "a b".into()
            })
            .as_deref(),
            Some(
                r#"Bearer realm="orders", error="insufficient_scope", error_description="the access token lacks the required scope (a b)", scope="a b""#
            )
        );
        assert!(
            www(Rejection::InvalidToken(InvalidReason::Expired))
                .unwrap()
                .contains(r#"error="invalid_token""#)
        );
        assert_eq!(www(Rejection::NoRoute), None);
        let r = Rejection::ProviderUnavailable(ProviderError::Timeout).into_response(None, None);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
        assert_eq!(quote(r#"a"b\"#), r#""a\"b\\""#);
    }

    #[test]
    fn grpc_clients_get_a_trailers_only_status() {
        let grpc = Dialect::of(
            &http::Method::POST,
            &http::HeaderMap::from_iter([(
                CONTENT_TYPE,
                HeaderValue::from_static("application/grpc+proto"),
            )]),
        );
        assert_eq!(grpc, Dialect::Grpc("application/grpc"));
        let r = Rejection::MissingToken.render(None, None, grpc);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "16");
        assert_eq!(r.headers()["grpc-message"], "an access token is required");
        assert!(r.headers().contains_key(WWW_AUTHENTICATE));
        let logged = r.extensions().get::<GrpcRefusal>().unwrap();
        assert_eq!(logged.stands_for, StatusCode::UNAUTHORIZED);
        for (media, dialect) in [
            ("application/grpc", Dialect::Grpc("application/grpc")),
            (
                "Application/GRPC; charset=x",
                Dialect::Grpc("application/grpc"),
            ),
            (
                "application/grpc-web+proto",
                Dialect::Grpc("application/grpc-web"),
            ),
            (
                "application/grpc-web-text",
                Dialect::Grpc("application/grpc-web-text"),
            ),
            ("application/grpcx", Dialect::Http),
            ("application/json", Dialect::Http),
        ] {
            let headers =
                http::HeaderMap::from_iter([(CONTENT_TYPE, HeaderValue::from_static(media))]);
            assert_eq!(
                Dialect::of(&http::Method::POST, &headers),
                dialect,
                "{media}"
            );
            assert_eq!(Dialect::of(&http::Method::GET, &headers), Dialect::Http);
        }
        assert_eq!(
            grpc_percent_encode("50% off (ü)\n"),
            "50%25 off (%C3%BC)%0A"
        );
        assert_eq!(grpc_percent_encode("a\tb"), "a%09b");
    }
}
