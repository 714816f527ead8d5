//! [`Principal`]: the one normalised view of a token, whatever dialect the provider speaks
//! (`scope` string or Okta's `scp` array; `client_id`, Okta's `cid` or `azp`; `aud` string or array).

use serde_json::{Map, Value};

/// Who a valid token speaks for. Shared (behind `Arc`) by every API and request that presents it,
/// and held by the verdict cache for every token seen, so it is packed: every string lives once in
/// one buffer, and the fields are ranges of it (a cached token costs a few hundred bytes, not a
/// few thousand in many small allocations).
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    text: Box<str>,
    subject: Option<Span>,
    client_id: Option<Span>,
    username: Option<Span>,
    issuer: Option<Span>,
    scopes: Box<[Span]>,
    audience: Box<[Span]>,
    /// Top-level scalar claims (except `scope` and `exp`) as name and value, ready to expose as
    /// headers.
    attributes: Box<[(Span, Span)]>,
    /// `exp`, seconds since the epoch.
    pub expires_at: Option<u64>,
}

/// A range of [`Principal::text`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(self, text: &str) -> &str {
        text.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// Whether principals keep their attributes. Only exposed headers read them, so a runtime where no
/// API exposes headers drops them, and its cache holds a third of the bytes per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attributes {
    Keep,
    Drop,
}

/// A claim that is present but of the wrong type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("claim `{0}` has the wrong type")]
pub struct ClaimTypeError(pub &'static str);

impl Principal {
    /// Normalises a claim set (an introspection answer, or JWT claims).
    pub fn from_claims(
        claims: &Map<String, Value>,
        keep: Attributes,
    ) -> Result<Self, ClaimTypeError> {
        let mut packer = Packer::default();
        // Attributes first: the named fields below reuse their values' ranges.
        let attributes = match keep {
            Attributes::Keep => attributes(claims, &mut packer),
            Attributes::Drop => Vec::new(),
        };
        let mut field = |name: &'static str| -> Result<Option<Span>, ClaimTypeError> {
            let Some(value) = string(claims, name)? else {
                return Ok(None);
            };
            let known = attributes
                .iter()
                .find(|(n, _)| packer.get(*n) == name)
                .map(|(_, v)| *v);
            Ok(Some(known.unwrap_or_else(|| packer.push(value))))
        };
        let subject = field("sub")?;
        let client_id = match field("client_id")? {
            Some(c) => Some(c),
            None => match field("cid")? {
                Some(c) => Some(c),
                None => field("azp")?,
            },
        };
        let username = field("username")?;
        let issuer = field("iss")?;
        let scopes = scopes(claims, &mut packer)?;
        let audience = match claims.get("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![packer.push(s)],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(|a| packer.push(a))
                        .ok_or(ClaimTypeError("aud"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ClaimTypeError("aud")),
        };
        Ok(Principal {
            text: packer.text.into_boxed_str(),
            subject,
            client_id,
            username,
            issuer,
            scopes: scopes.into_boxed_slice(),
            audience: audience.into_boxed_slice(),
            attributes: attributes.into_boxed_slice(),
            expires_at: number(claims, "exp")?,
        })
    }

    fn get(&self, span: Span) -> &str {
        span.of(&self.text)
    }

    pub fn subject(&self) -> Option<&str> {
        self.subject.map(|s| self.get(s))
    }

    /// `client_id`, else Okta's `cid`, else `azp`.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.map(|s| self.get(s))
    }

    pub fn username(&self) -> Option<&str> {
        self.username.map(|s| self.get(s))
    }

    pub fn issuer(&self) -> Option<&str> {
        self.issuer.map(|s| self.get(s))
    }

    /// `scope` (space-separated) or Okta's `scp`.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(|s| self.get(*s))
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// `aud`, a string or an array.
    pub fn audience(&self) -> impl Iterator<Item = &str> {
        self.audience.iter().map(|s| self.get(*s))
    }

    /// Claim name and value of each attribute that can be exposed as a header.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attributes
            .iter()
            .map(|(n, v)| (self.get(*n), self.get(*v)))
    }
}

/// Builds a principal's one text buffer.
#[derive(Default)]
struct Packer {
    text: String,
}

impl Packer {
    fn push(&mut self, s: &str) -> Span {
        // Claims come from a bounded token or provider answer: far below 4 GiB.
        let start = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        self.text.push_str(s);
        let end = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        Span { start, end }
    }

    fn get(&self, span: Span) -> &str {
        span.of(&self.text)
    }
}

fn string<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, ClaimTypeError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
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
fn scopes(claims: &Map<String, Value>, packer: &mut Packer) -> Result<Vec<Span>, ClaimTypeError> {
    let mut split = |list: &str| {
        list.split(' ')
            .filter(|s| !s.is_empty())
            .map(|s| packer.push(s))
            .collect()
    };
    if let Some(scope) = string(claims, "scope")? {
        return Ok(split(scope));
    }
    match claims.get("scp") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(split(s)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(|s| packer.push(s))
                    .ok_or(ClaimTypeError("scp"))
            })
            .collect(),
        Some(_) => Err(ClaimTypeError("scp")),
    }
}

/// Top-level scalars whose name can be a header-name suffix and whose value a header value, as
/// Anypoint exposes them. `scope` and `exp` are left out, as Anypoint does.
fn attributes(claims: &Map<String, Value>, packer: &mut Packer) -> Vec<(Span, Span)> {
    let mut number = String::new();
    claims
        .iter()
        .filter(|(name, _)| name.as_str() != "scope" && name.as_str() != "exp")
        .filter(|(name, _)| http::HeaderName::from_bytes(name.as_bytes()).is_ok())
        .filter_map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.as_str(),
                Value::Number(n) => {
                    number = n.to_string();
                    number.as_str()
                }
                Value::Bool(true) => "true",
                Value::Bool(false) => "false",
                Value::Null | Value::Array(_) | Value::Object(_) => return None,
            };
            http::HeaderValue::from_str(text)
                .is_ok()
                .then(|| (packer.push(name), packer.push(text)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn principal(v: Value) -> Result<Principal, ClaimTypeError> {
        Principal::from_claims(v.as_object().unwrap(), Attributes::Keep)
    }

    #[test]
    fn normalises_okta_and_rfc_dialects() {
        let okta = principal(
            json!({"active": true, "scp": ["mulescope", "x"], "cid": "0oa1",
            "uid": "00u1", "sub": "a@b", "exp": 2000000000u64, "aud": "api://default"}),
        )
        .unwrap();
        assert_eq!(okta.client_id(), Some("0oa1"));
        assert_eq!(okta.subject(), Some("a@b"));
        assert_eq!(okta.scopes().collect::<Vec<_>>(), ["mulescope", "x"]);
        assert_eq!(okta.audience().collect::<Vec<_>>(), ["api://default"]);
        assert_eq!(okta.expires_at, Some(2_000_000_000));
        let rfc =
            principal(json!({"scope": "a  b", "client_id": "c", "azp": "z", "aud": ["p", "q"]}))
                .unwrap();
        assert_eq!(rfc.client_id(), Some("c"));
        assert_eq!(rfc.scopes().collect::<Vec<_>>(), ["a", "b"]);
        assert!(rfc.has_scope("b") && !rfc.has_scope("a b"));
        assert_eq!(rfc.audience().collect::<Vec<_>>(), ["p", "q"]);
        assert_eq!(
            principal(json!({"azp": "z"})).unwrap().client_id(),
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
        let attributes: Vec<_> = p.attributes().collect();
        assert_eq!(attributes, [("active", "true"), ("n", "3"), ("uid", "u")]);
    }

    #[test]
    fn dropped_attributes_keep_the_named_fields() {
        let claims = json!({"sub": "s", "cid": "c", "scp": ["a"], "aud": "x", "jti": "j"});
        let p = Principal::from_claims(claims.as_object().unwrap(), Attributes::Drop).unwrap();
        assert_eq!(p.attributes().count(), 0);
        assert_eq!((p.subject(), p.client_id()), (Some("s"), Some("c")));
        assert!(p.has_scope("a") && p.audience().eq(["x"]));
        let kept = principal(claims).unwrap();
        assert_eq!((kept.subject(), kept.client_id()), (Some("s"), Some("c")));
        assert!(kept.attributes().any(|a| a == ("jti", "j")));
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
