//! CORS at the gateway, for an API with `[api.cors]` (the Fetch standard, §3.2): a preflight is
//! answered here, right after routing and before any rule or token check, and never forwarded;
//! every other answer of the API (the upstream's, and every refusal) gets the gateway's grant,
//! so a browser can read a 401 or 403 as well as a 200. The grant is the gateway's alone: an
//! upstream's own `Access-Control-*` headers are dropped.

use std::sync::Arc;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use super::rejection::{AccessRecord, Rejection};
use crate::body::{ProxyBody, empty};
use crate::config::{CorsList, CorsOrigins, CorsSettings};

/// What a preflight's answer depends on (Fetch §3.2.5: caches must key on them).
const PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);
const TRUE: HeaderValue = HeaderValue::from_static("true");
/// The response headers through which a server grants CORS access; on a CORS API only the
/// gateway's count.
const GRANTS: [HeaderName; 6] = [
    ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_ALLOW_CREDENTIALS,
    ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_MAX_AGE,
];

/// Why a preflight was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorsRefusal {
    Origin,
    Method,
    Header,
}

// === impl CorsRefusal ===

impl CorsRefusal {
    /// Safe for clients: it names which check failed, never what the client sent.
    pub fn description(self) -> &'static str {
        match self {
            CorsRefusal::Origin => "the origin is not allowed to call this API",
            CorsRefusal::Method => "the requested method is not allowed from other origins",
            CorsRefusal::Header => "a requested header is not allowed from other origins",
        }
    }
}

/// A CORS preflight (Fetch §3.2.2): `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
/// Any other `OPTIONS` is an ordinary request, which needs a token like the rest.
pub(super) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight: 204 with the grant, or the refusal (403) through the one renderer.
pub(super) fn answer_preflight(
    cors: &CorsSettings,
    api: &Arc<str>,
    headers: &HeaderMap,
) -> Response<ProxyBody> {
    let origin = single(headers, &ORIGIN);
    let granted = match check_preflight(cors, origin, headers) {
        Ok(granted) => granted,
        Err(refusal) => {
            let mut response = Rejection::CorsRefused(refusal).into_response(Some(api), None);
            grant(
                cors,
                origin,
                cors.expose_headers.as_ref(),
                response.headers_mut(),
            );
            response.headers_mut().insert(VARY, PREFLIGHT_VARY);
            return response;
        }
    };
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let out = response.headers_mut();
    grant(cors, origin, cors.expose_headers.as_ref(), out);
    out.insert(ACCESS_CONTROL_ALLOW_METHODS, cors.allow_methods.clone());
    if let Some(requested) = granted {
        out.insert(ACCESS_CONTROL_ALLOW_HEADERS, requested);
    }
    if let Some(max_age) = &cors.max_age {
        out.insert(ACCESS_CONTROL_MAX_AGE, max_age.clone());
    }
    out.insert(VARY, PREFLIGHT_VARY);
    response.extensions_mut().insert(AccessRecord {
        api: Some(api.clone()),
        decision: "preflight",
        reason: "-",
        client_id: None,
        upstream_time: std::time::Duration::ZERO,
    });
    response
}

/// Adds the gateway's CORS headers to an answer of a CORS API (the upstream's, or a refusal):
/// the upstream's own grants are dropped, `Vary: Origin` is appended, and an allowed origin gets
/// its grant. A disallowed origin gets none, and is otherwise served as usual: CORS is the
/// browser's check on what script may read, not an access control. A `grpc` answer (gRPC-Web,
/// from a browser) also exposes `grpc-status` and `grpc-message`, refusal or not: a Trailers-Only
/// answer carries them as headers, which script may read only when exposed (Fetch §3.2.3).
pub(super) fn decorate(
    cors: &CorsSettings,
    origin: Option<&HeaderValue>,
    grpc: bool,
    headers: &mut HeaderMap,
) {
    for name in &GRANTS {
        headers.remove(name);
    }
    // Appended: an upstream's own Vary still holds.
    headers.append(VARY, HeaderValue::from_static("Origin"));
    let expose = if grpc {
        Some(&cors.grpc_expose_headers)
    } else {
        cors.expose_headers.as_ref()
    };
    grant(cors, origin, expose, headers);
}

/// The header's value when it occurs exactly once: two `Origin`s are not something a browser
/// sends, and are granted nothing.
pub(super) fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// `Access-Control-Allow-Origin` (and `-Credentials`, `-Expose-Headers`: `expose`) for an allowed
/// origin.
fn grant(
    cors: &CorsSettings,
    origin: Option<&HeaderValue>,
    expose: Option<&HeaderValue>,
    headers: &mut HeaderMap,
) {
    let Some(allowed) = origin.and_then(|o| allowed_origin(cors, o)) else {
        return;
    };
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    if cors.allow_credentials {
        headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
    }
    if let Some(expose) = expose {
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
    }
}

/// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed: a byte-for-byte match
/// with a configured origin (already in the serialisation browsers send), whose value it returns.
fn allowed_origin(cors: &CorsSettings, origin: &HeaderValue) -> Option<HeaderValue> {
    match &cors.origins {
        CorsOrigins::Any => Some(HeaderValue::from_static("*")),
        CorsOrigins::Exact(origins) => origins.get(origin.to_str().ok()?).cloned(),
    }
}

/// Checks a preflight; `Ok` carries the `Access-Control-Allow-Headers` to send (the requested
/// headers, when any were requested and all are allowed).
fn check_preflight(
    cors: &CorsSettings,
    origin: Option<&HeaderValue>,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, CorsRefusal> {
    origin
        .and_then(|o| allowed_origin(cors, o))
        .ok_or(CorsRefusal::Origin)?;
    let method = single(headers, &ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or(CorsRefusal::Method)?;
    // Fetch compares methods byte for byte (it upper-cases only the six it normalises itself).
    if let CorsList::Only(allowed) = &cors.methods
        && !allowed.contains(&method)
    {
        return Err(CorsRefusal::Method);
    }
    requested_headers(cors, headers)
}

/// `Access-Control-Request-Headers`: a comma-separated list of names (Fetch §3.2.2), every one
/// of which must be allowed. Answered with the list as lowercase names, so that `*` can grant
/// `Authorization`, which Fetch never lets a wildcard cover.
fn requested_headers(
    cors: &CorsSettings,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, CorsRefusal> {
    let mut names: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
        let text = value.to_str().map_err(|_| CorsRefusal::Header)?;
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let name = HeaderName::from_bytes(item.as_bytes()).map_err(|_| CorsRefusal::Header)?;
            if let CorsList::Only(allowed) = &cors.headers
                && !allowed.contains(&name)
            {
                return Err(CorsRefusal::Header);
            }
            names.push(name);
        }
    }
    if names.is_empty() {
        return Ok(None);
    }
    let text = names
        .iter()
        .map(HeaderName::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::from_str(&text)
        .map(Some)
        .map_err(|_| CorsRefusal::Header)
}
