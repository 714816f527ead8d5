//! Every answer of the dev provider is rendered here: JSON bodies with their caching headers, and
//! each refusal as an RFC 6749 §5.2 error object (`error`, `error_description`) with its status —
//! the one place that knows which status and headers go with which error.

use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use super::keys::KeyError;
use crate::body::{ProxyBody, full};

/// The challenge sent with `invalid_client` (RFC 6749 §5.2: 401 with `WWW-Authenticate` naming the
/// scheme the client should use).
const BASIC_CHALLENGE: &str = "Basic realm=\"tollgate-dev\"";

/// Why the provider refuses a request. The descriptions are safe to show: they never carry a
/// secret or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidClient(&'static str),
    #[error("{0}")]
    InvalidScope(String),
    #[error("only the client_credentials grant is supported")]
    UnsupportedGrantType,
    #[error("{0}")]
    InvalidClientMetadata(String),
    #[error("the request body is larger than the provider accepts")]
    PayloadTooLarge,
    #[error("this endpoint accepts {0} only")]
    MethodNotAllowed(&'static str),
    #[error("no such endpoint on the dev provider")]
    NotFound,
    #[error("{0}")]
    Exhausted(&'static str),
    #[error("the provider failed to answer: {0}")]
    Internal(String),
}

/// How long a client may keep an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Caching {
    /// Credentials, tokens and verdicts (RFC 6749 §5.1: `no-store` and `Pragma: no-cache`).
    NoStore,
    /// Public, stable for the life of the process, e.g. the JWKS.
    MaxAge(u32),
    /// Say nothing.
    Unspecified,
}

// === impl OAuthError ===

impl OAuthError {
    fn status(&self) -> StatusCode {
        match self {
            OAuthError::InvalidRequest(_)
            | OAuthError::InvalidScope(_)
            | OAuthError::UnsupportedGrantType
            | OAuthError::InvalidClientMetadata(_) => StatusCode::BAD_REQUEST,
            OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            OAuthError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            OAuthError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            OAuthError::NotFound => StatusCode::NOT_FOUND,
            OAuthError::Exhausted(_) => StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` code: RFC 6749 §5.2 and RFC 7591 §3.2.2 where they define one.
    fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_)
            | OAuthError::PayloadTooLarge
            | OAuthError::MethodNotAllowed(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidClientMetadata(_) => "invalid_client_metadata",
            OAuthError::NotFound => "not_found",
            OAuthError::Exhausted(_) => "temporarily_unavailable",
            OAuthError::Internal(_) => "server_error",
        }
    }

    /// The refusal as a response.
    pub fn into_response(self) -> Response<ProxyBody> {
        let body = json!({ "error": self.code(), "error_description": self.to_string() });
        let mut response = json_response(self.status(), &body, Caching::NoStore);
        let headers = response.headers_mut();
        match self {
            OAuthError::InvalidClient(_) => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(BASIC_CHALLENGE));
            }
            OAuthError::MethodNotAllowed(allow) => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            OAuthError::InvalidRequest(_)
            | OAuthError::InvalidScope(_)
            | OAuthError::UnsupportedGrantType
            | OAuthError::InvalidClientMetadata(_)
            | OAuthError::PayloadTooLarge
            | OAuthError::NotFound
            | OAuthError::Exhausted(_)
            | OAuthError::Internal(_) => {}
        }
        response
    }
}

impl From<KeyError> for OAuthError {
    fn from(error: KeyError) -> Self {
        OAuthError::Internal(error.to_string())
    }
}

/// `body` as `application/json` with `status` and the caching headers of `caching`.
pub(super) fn json_response(
    status: StatusCode,
    body: &Value,
    caching: Caching,
) -> Response<ProxyBody> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match caching {
        Caching::NoStore => {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        }
        Caching::MaxAge(seconds) => {
            // Digits and letters only: always a valid header value.
            if let Ok(value) = HeaderValue::from_str(&format!("max-age={seconds}")) {
                headers.insert(CACHE_CONTROL, value);
            }
        }
        Caching::Unspecified => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_client_carries_a_basic_challenge_and_401() {
        let response = OAuthError::InvalidClient("client authentication failed").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], BASIC_CHALLENGE);
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    }

    #[test]
    fn each_error_has_its_rfc_code_and_status() {
        let cases = [
            (OAuthError::InvalidScope("x".into()), 400, "invalid_scope"),
            (
                OAuthError::UnsupportedGrantType,
                400,
                "unsupported_grant_type",
            ),
            (
                OAuthError::InvalidRequest("x".into()),
                400,
                "invalid_request",
            ),
            (
                OAuthError::InvalidClientMetadata("x".into()),
                400,
                "invalid_client_metadata",
            ),
            (OAuthError::PayloadTooLarge, 413, "invalid_request"),
            (OAuthError::MethodNotAllowed("POST"), 405, "invalid_request"),
            (OAuthError::NotFound, 404, "not_found"),
        ];
        for (error, status, code) in cases {
            assert_eq!(
                (error.status().as_u16(), error.code()),
                (status, code),
                "{error:?}"
            );
        }
    }

    #[test]
    fn max_age_is_rendered() {
        let response = json_response(StatusCode::OK, &json!({}), Caching::MaxAge(300));
        assert_eq!(response.headers()[CACHE_CONTROL], "max-age=300");
    }
}
