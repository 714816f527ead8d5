//! The admin API's refusals and failures as `application/problem+json` (RFC 9457): every error
//! the API answers is rendered here, and a [`RegistryError`] maps to its status in one match.

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Map, Value};

use crate::body::{ProxyBody, full};
use crate::registry::RegistryError;

/// RFC 9457 §3.1: `type` is a URI naming the problem; these are relative to the API.
const TYPE_BASE: &str = "/v1/problems/";

/// One problem: what went wrong, and members beyond RFC 9457's own (RFC 9457 §3.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: StatusCode,
    /// The last segment of `type`, e.g. `not-found`.
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub extra: Map<String, Value>,
}

// === impl Problem ===

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: String,
    ) -> Self {
        Problem {
            status,
            kind,
            title,
            detail,
            extra: Map::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request is malformed",
            detail.into(),
        )
    }

    /// The JSON body, as stored for an idempotent replay too.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert(
            "type".to_owned(),
            Value::from(format!("{TYPE_BASE}{}", self.kind)),
        );
        body.insert("title".to_owned(), Value::from(self.title));
        body.insert("status".to_owned(), Value::from(self.status.as_u16()));
        body.insert("detail".to_owned(), Value::from(self.detail.clone()));
        for (k, v) in &self.extra {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(body)
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status;
        let mut response = problem_response(status, &self.body());
        let headers = response.headers_mut();
        match status {
            // RFC 6750 §3: a missing or wrong bearer token names the scheme and realm.
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tollgate-admin\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl From<RegistryError> for Problem {
    fn from(e: RegistryError) -> Self {
        let detail = e.to_string();
        match e {
            RegistryError::NotFound { .. } => Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "No such registry entry",
                detail,
            ),
            RegistryError::Duplicate { .. } => Problem::new(
                StatusCode::CONFLICT,
                "duplicate",
                "The registry entry exists already",
                detail,
            ),
            RegistryError::Invalid(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "The request cannot be carried out as written",
                detail,
            ),
            RegistryError::IllegalTransition { .. } => Problem::new(
                StatusCode::CONFLICT,
                "illegal-transition",
                "The contract's state does not allow this",
                detail,
            ),
            RegistryError::Store { .. } | RegistryError::Query(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "The registry store is unavailable",
                detail,
            ),
            RegistryError::Provider { problem, .. } => {
                let mut p = Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "provider",
                    "The identity provider refused or failed the call",
                    detail,
                );
                if let Some(said) = problem {
                    p.extra = provider_members(&said);
                }
                p
            }
            RegistryError::NotConfigured => Problem::new(
                StatusCode::CONFLICT,
                "not-configured",
                "No registry is configured",
                detail,
            ),
        }
    }
}

/// The provider's own words (`error`, `errorCode`, `errorSummary`, `errorId`, ...), its HTTP
/// status renamed so it cannot be taken for this answer's.
fn provider_members(said: &crate::provider::ProviderProblem) -> Map<String, Value> {
    let mut members = match serde_json::to_value(said) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if let Some(status) = members.remove("status") {
        members.insert("provider_status".to_owned(), status);
    }
    members
}

/// A JSON answer with `status`.
pub fn json_response(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    with_type(status, body, "application/json")
}

fn problem_response(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    with_type(status, body, "application/problem+json")
}

fn with_type(status: StatusCode, body: &Value, content_type: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A stored answer replayed: problems keep their media type.
pub fn replayed(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut response = if status.is_client_error() || status.is_server_error() {
        problem_response(status, &value)
    } else {
        json_response(status, &value)
    };
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderProblem;

    fn status_of(e: RegistryError) -> u16 {
        Problem::from(e).status.as_u16()
    }

    #[test]
    fn each_registry_error_has_its_status() {
        let named = |what| RegistryError::NotFound {
            what,
            name: "x".to_owned(),
            hint: String::new(),
        };
        assert_eq!(status_of(named("application")), 404);
        assert_eq!(
            status_of(RegistryError::Duplicate {
                what: "tier",
                name: "x".to_owned(),
                hint: String::new()
            }),
            409
        );
        assert_eq!(status_of(RegistryError::Invalid("no".to_owned())), 422);
        assert_eq!(status_of(RegistryError::Query("gone".to_owned())), 503);
        assert_eq!(
            status_of(RegistryError::Store {
                store: "sqlite://x".to_owned(),
                reason: "cannot be opened".to_owned()
            }),
            503
        );
        assert_eq!(status_of(RegistryError::NotConfigured), 409);
        assert_eq!(status_of(RegistryError::provider("down")), 502);
    }

    #[test]
    fn a_provider_problem_passes_through_without_shadowing_ours() {
        let said = ProviderProblem {
            status: 400,
            error_code: Some("E0000001".to_owned()),
            error_summary: Some("Api validation failed".to_owned()),
            error_id: Some("oae123".to_owned()),
            ..ProviderProblem::default()
        };
        let body = Problem::from(RegistryError::Provider {
            message: "refused".to_owned(),
            problem: Some(Box::new(said)),
        })
        .body();
        assert_eq!(body["status"], 502);
        assert_eq!(body["provider_status"], 400);
        assert_eq!(body["errorCode"], "E0000001");
        assert_eq!(body["errorSummary"], "Api validation failed");
        assert_eq!(body["errorId"], "oae123");
        assert_eq!(body["type"], "/v1/problems/provider");
    }

    #[test]
    fn a_503_says_when_to_retry_and_a_401_names_the_realm() {
        let unavailable = Problem::from(RegistryError::Query("gone".to_owned())).into_response();
        assert_eq!(unavailable.headers()[RETRY_AFTER], "1");
        let unauthorized = Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "t",
            "d".to_owned(),
        )
        .into_response();
        assert_eq!(
            unauthorized.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"tollgate-admin\""
        );
        assert_eq!(
            unauthorized.headers()[CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
