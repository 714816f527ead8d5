//! [`Principal`]: the one normalised view of a token, whatever dialect the provider speaks
//! (`scope` string or Okta's `scp` array; `client_id`, Okta's `cid` or `azp`; `aud` string or array).

use http::HeaderValue;
use serde_json::{Map, Value};

/// Who a valid token speaks for. Shared (behind `Arc`) by every API and request that presents it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Principal {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub username: Option<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: Option<u64>,
    pub audience: Vec<String>,
    pub issuer: Option<String>,
    /// Top-level scalar attributes (except `scope` and `exp`), ready to expose as headers.
    pub attributes: Vec<(String, HeaderValue)>,
}

/// A claim that is present but of the wrong type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("claim `{0}` has the wrong type")]
pub struct ClaimTypeError(pub &'static str);

impl Principal {
    /// Normalises a claim set (an introspection answer, or JWT claims).
    pub fn from_claims(claims: &Map<String, Value>) -> Result<Self, ClaimTypeError> {
        Ok(Principal {
            subject: string(claims, "sub")?,
            client_id: match string(claims, "client_id")? {
                Some(c) => Some(c),
                None => match string(claims, "cid")? {
                    Some(c) => Some(c),
                    None => string(claims, "azp")?,
                },
            },
            scopes: scopes(claims)?,
            username: string(claims, "username")?,
            expires_at: number(claims, "exp")?,
            audience: match claims.get("aud") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or(ClaimTypeError("aud")))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(ClaimTypeError("aud")),
            },
            issuer: string(claims, "iss")?,
            attributes: attributes(claims),
        })
    }
}

fn string(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, ClaimTypeError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ClaimTypeError(name)),
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number; strings are refused, fractions truncated.
pub fn number(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, ClaimTypeError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or(ClaimTypeError(name)),
        Some(_) => Err(ClaimTypeError(name)),
    }
}

/// `scope` (RFC 7662 / RFC 9068: space-separated) or `scp` (Okta: an array).
fn scopes(claims: &Map<String, Value>) -> Result<Vec<String>, ClaimTypeError> {
    if let Some(scope) = string(claims, "scope")? {
        return Ok(scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect());
    }
    match claims.get("scp") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(ClaimTypeError("scp")))
            .collect(),
        Some(_) => Err(ClaimTypeError("scp")),
    }
}

/// Top-level scalars whose name can be a header-name suffix and whose value a header value, as
/// Anypoint exposes them. `scope` and `exp` are left out, as Anypoint does.
fn attributes(claims: &Map<String, Value>) -> Vec<(String, HeaderValue)> {
    claims
        .iter()
        .filter(|(name, _)| name.as_str() != "scope" && name.as_str() != "exp")
        .filter(|(name, _)| http::HeaderName::from_bytes(name.as_bytes()).is_ok())
        .filter_map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null | Value::Array(_) | Value::Object(_) => return None,
            };
            HeaderValue::from_str(&text).ok().map(|v| (name.clone(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn principal(v: Value) -> Result<Principal, ClaimTypeError> {
        Principal::from_claims(v.as_object().unwrap())
    }

    #[test]
    fn normalises_okta_and_rfc_dialects() {
        let okta = principal(
            json!({"active": true, "scp": ["mulescope", "x"], "cid": "0oa1",
            "uid": "00u1", "sub": "a@b", "exp": 2000000000u64, "aud": "api://default"}),
        )
        .unwrap();
        assert_eq!(okta.client_id.as_deref(), Some("0oa1"));
        assert_eq!(okta.scopes, ["mulescope", "x"]);
        assert_eq!(okta.audience, ["api://default"]);
        let rfc =
            principal(json!({"scope": "a  b", "client_id": "c", "azp": "z", "aud": ["p", "q"]}))
                .unwrap();
        assert_eq!(rfc.client_id.as_deref(), Some("c"));
        assert_eq!(rfc.scopes, ["a", "b"]);
        assert_eq!(rfc.audience, ["p", "q"]);
        assert_eq!(
            principal(json!({"azp": "z"})).unwrap().client_id.as_deref(),
            Some("z")
        );
    }

    #[test]
    fn attributes_skip_scope_exp_and_structures() {
        let p = principal(
            json!({"active": true, "scope": "a", "exp": 5, "uid": "u", "n": 3,
            "obj": {}, "arr": [], "bad name": "x", "crlf": "a\r\nb"}),
        )
        .unwrap();
        let names: Vec<_> = p.attributes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["active", "n", "uid"]);
    }

    #[test]
    fn wrong_types_are_errors() {
        assert_eq!(
            principal(json!({"exp": "2000000000"})).unwrap_err(),
            ClaimTypeError("exp")
        );
        assert_eq!(
            principal(json!({"client_id": 5})).unwrap_err(),
            ClaimTypeError("client_id")
        );
        assert_eq!(
            principal(json!({"scp": [1]})).unwrap_err(),
            ClaimTypeError("scp")
        );
    }
}
