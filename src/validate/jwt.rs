//! Local validation of JWT access tokens (RFC 7519, RFC 9068) against the provider's JWKS.
//!
//! Every choice is the configuration's and the key's, never the token's: the algorithm must be on
//! the allow-list (never `none`, never HMAC) and fit the key found by `kid`; `jku`, `x5u`, `jwk` and
//! `x5c` headers are never used to find a key; unknown `crit` extensions are refused; oversize and
//! JWE-shaped (five-part) tokens are refused before any parsing work. Claims: `exp` required and
//! numeric, `nbf`/`iat` numeric and not in the future beyond the leeway, `iss` exactly the issuer.
//! A JOSE `typ` that names another kind of JWT (a logout token, a security event, an ID token...),
//! claims that name or shape a refresh or ID token, and a `cnf` binding are refused (`kind`).
//! The audience is the API's business (`policy::authorize`), so one verified token serves all APIs.
//!
//! Checks that need no key run before the provider is consulted (size, shape, header, `exp`), so
//! garbage is 401 even while the provider is unreachable; the rest wait for a verified signature.
//! A `kid` the keys in hand lack is the JWKS cache's to look up again (`JwksCache::key_for`).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::kind;
use super::principal::number;
use super::{
    Attributes, BearerToken, Caller, InvalidReason, Leeway, Principal, ValidateError, Validator,
};
use crate::clock::Clock;
use crate::config::JwtSettings;
use crate::provider::{JwksCache, KeyLookup, Provider};

/// Verifies JWTs with the provider's keys (wrap it in a `CachedValidator`).
pub struct JwtValidator {
    provider: Arc<Provider>,
    clock: Arc<dyn Clock>,
    keep: Attributes,
}

/// A token that passed every check needing no key: what to verify it with, and its claims (not
/// yet to be believed).
struct Unverified<'a> {
    parts: Parts<'a>,
    alg: Algorithm,
    kid: Option<String>,
    claims: Map<String, Value>,
}

/// A JWS in compact form, split but not yet trusted.
struct Parts<'a> {
    header: Map<String, Value>,
    signing_input: &'a str,
    signature: &'a str,
    claims_b64: &'a str,
}

impl JwtValidator {
    pub fn new(provider: Arc<Provider>, clock: Arc<dyn Clock>, keep: Attributes) -> Self {
        JwtValidator {
            provider,
            clock,
            keep,
        }
    }

    async fn check(&self, token: &BearerToken) -> Result<Arc<Principal>, ValidateError> {
        let invalid = |r| ValidateError::Invalid(r);
        let settings = &self.provider.settings.jwt;
        let now = self.clock.now_unix();
        // Whatever needs no key first: garbage is 401 even while the provider is unreachable,
        // and costs it nothing.
        let unverified = precheck(token.expose(), settings, now).map_err(invalid)?;
        let jwks = self.provider.jwks().map_err(ValidateError::Unavailable)?;
        let key = find_key(jwks, unverified.kid.as_deref(), unverified.alg).await?;
        let parts = &unverified.parts;
        let verified = jsonwebtoken::crypto::verify(
            parts.signature,
            parts.signing_input.as_bytes(),
            &key.key,
            unverified.alg,
        )
        .unwrap_or(false);
        if !verified {
            return Err(invalid(InvalidReason::BadSignature));
        }
        // Only now are the claims the provider's word.
        let claims = &unverified.claims;
        check_claims(
            claims,
            &self.provider.settings.issuer,
            now,
            Leeway::new(settings.leeway),
        )
        .map_err(invalid)?;
        if let Some(reason) = kind::refusal(claims) {
            return Err(invalid(reason));
        }
        let principal = Principal::from_claims(claims, self.keep)
            .map_err(|e| invalid(InvalidReason::MalformedClaims(e.0)))?;
        Ok(Arc::new(principal))
    }
}

impl Validator for JwtValidator {
    fn validate<'a>(
        &'a self,
        token: &'a BearerToken,
        _caller: Caller,
    ) -> BoxFuture<'a, Result<Arc<Principal>, ValidateError>> {
        self.check(token).boxed()
    }
}

/// The key for `kid`: from the set in force, else from a refetch (which `JwksCache` paces).
async fn find_key(
    jwks: &Arc<JwksCache>,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Arc<crate::provider::VerificationKey>, ValidateError> {
    match jwks
        .key_for(kid, alg)
        .await
        .map_err(ValidateError::Unavailable)?
    {
        KeyLookup::Found(key) => Ok(key),
        KeyLookup::Ambiguous => Err(ValidateError::Invalid(InvalidReason::Malformed(
            "kid is required: the provider has several keys",
        ))),
        // The provider was asked after this token arrived and has no such key.
        KeyLookup::Unknown => Err(ValidateError::Invalid(InvalidReason::UnknownKey)),
    }
}

/// The checks that need no key, cheapest first: size, shape (RFC 7515 §7.1), header, and an
/// `exp` that rules the token out whoever signed it. Nothing here is trusted for acceptance.
fn precheck<'a>(
    token: &'a str,
    settings: &JwtSettings,
    now: u64,
) -> Result<Unverified<'a>, InvalidReason> {
    if token.len() > settings.max_token_bytes {
        return Err(InvalidReason::TooLarge);
    }
    let parts = split(token)?;
    let alg = header_checks(&parts.header, &settings.algorithms, settings.typ.as_deref())?;
    let kid = match parts.header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(InvalidReason::Malformed("kid is not a string")),
    };
    let claims = decode_object(parts.claims_b64)
        .ok_or(InvalidReason::Malformed("the claims are not a JSON object"))?;
    check_exp(&claims, now, Leeway::new(settings.leeway))?;
    Ok(Unverified {
        parts,
        alg,
        kid,
        claims,
    })
}

/// Splits a JWS compact serialisation (RFC 7515 §7.1): exactly three parts, a JSON object header.
fn split(token: &str) -> Result<Parts<'_>, InvalidReason> {
    let mut dots = token.match_indices('.').map(|(i, _)| i);
    let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
        // Five parts is a JWE (RFC 7516): an encrypted token we cannot and must not read.
        return Err(InvalidReason::Malformed(
            "not a signed JWT (JWS compact serialisation)",
        ));
    };
    let header = decode_object(&token[..first])
        .ok_or(InvalidReason::Malformed("the header is not a JSON object"))?;
    Ok(Parts {
        header,
        signing_input: &token[..second],
        signature: &token[second + 1..],
        claims_b64: &token[first + 1..second],
    })
}

fn decode_object(b64: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The algorithm, if the header is one we accept.
fn header_checks(
    header: &Map<String, Value>,
    allowed: &[Algorithm],
    typ: Option<&str>,
) -> Result<Algorithm, InvalidReason> {
    // RFC 7515 §4.1.11: extensions we do not understand make the token unusable.
    if header.contains_key("crit") {
        return Err(InvalidReason::Malformed(
            "unsupported critical header extension",
        ));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<Algorithm>().ok())
        .filter(|a| allowed.contains(a))
        .ok_or(InvalidReason::AlgorithmNotAllowed)?;
    let given = match header.get("typ") {
        None | Some(Value::Null) => "",
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(InvalidReason::Malformed("typ is not a string")),
    };
    // RFC 8725 §3.11: explicit typing keeps one kind of JWT from being taken for another.
    if kind::names_non_access(given) {
        return Err(InvalidReason::WrongType);
    }
    if let Some(required) = typ {
        // RFC 9068 §2.1: `at+jwt`, or the full media type `application/at+jwt`.
        let given = given.strip_prefix("application/").unwrap_or(given);
        if !given.eq_ignore_ascii_case(required) {
            return Err(InvalidReason::WrongType);
        }
    }
    Ok(alg)
}

/// `exp` is required, numeric, and not past beyond the leeway (RFC 7519 §4.1.4, RFC 9068 §2.2).
fn check_exp(claims: &Map<String, Value>, now: u64, leeway: Leeway) -> Result<(), InvalidReason> {
    let exp = number(claims, "exp")
        .map_err(|e| InvalidReason::MalformedClaims(e.0))?
        .ok_or(InvalidReason::MalformedClaims("exp"))?;
    if leeway.expired(exp, now) {
        return Err(InvalidReason::Expired);
    }
    Ok(())
}

fn check_claims(
    claims: &Map<String, Value>,
    issuer: &str,
    now: u64,
    leeway: Leeway,
) -> Result<(), InvalidReason> {
    check_exp(claims, now, leeway)?;
    let numeric = |name| number(claims, name).map_err(|e| InvalidReason::MalformedClaims(e.0));
    for name in ["nbf", "iat"] {
        if numeric(name)?.is_some_and(|t| leeway.not_yet_valid(t, now)) {
            return Err(InvalidReason::NotYetValid);
        }
    }
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == issuer => Ok(()),
        _ => Err(InvalidReason::WrongIssuer),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn only_three_part_tokens_with_an_object_header() {
        let h = b64(&json!({"alg": "RS256"}));
        assert!(split(&format!("{h}.e30.sig")).is_ok());
        for bad in [
            format!("{h}.e30"),
            format!("{h}.e30.s.x.y"),
            "a.b.c".to_owned(),
            format!("{}.e30.s", b64(&json!([1]))),
        ] {
            assert!(split(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_header_cannot_choose_a_weak_algorithm() {
        let allowed = [Algorithm::RS256];
        let h = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            header_checks(&h(json!({"alg": "RS256"})), &allowed, None),
            Ok(Algorithm::RS256)
        );
        for alg in ["none", "HS256", "ES256", "rs256", ""] {
            assert_eq!(
                header_checks(&h(json!({"alg": alg})), &allowed, None),
                Err(InvalidReason::AlgorithmNotAllowed),
                "{alg}"
            );
        }
        assert!(
            header_checks(&h(json!({"alg": "RS256", "crit": ["exp"]})), &allowed, None).is_err()
        );
        assert_eq!(
            header_checks(
                &h(json!({"alg": "RS256", "typ": "application/at+jwt"})),
                &allowed,
                Some("at+jwt")
            ),
            Ok(Algorithm::RS256)
        );
        assert_eq!(
            header_checks(
                &h(json!({"alg": "RS256", "typ": "JWT"})),
                &allowed,
                Some("at+jwt")
            ),
            Err(InvalidReason::WrongType)
        );
    }

    #[test]
    fn a_typ_naming_another_kind_of_jwt_is_refused() {
        let allowed = [Algorithm::RS256];
        let h = |typ: Value| {
            json!({"alg": "RS256", "typ": typ})
                .as_object()
                .unwrap()
                .clone()
        };
        for other in ["logout+jwt", "secevent+jwt", "dpop+jwt", "id_token", "N_A"] {
            assert_eq!(
                header_checks(&h(json!(other)), &allowed, None),
                Err(InvalidReason::WrongType),
                "{other}"
            );
        }
        for access in [json!("at+jwt"), json!("JWT"), json!(null)] {
            assert_eq!(
                header_checks(&h(access.clone()), &allowed, None),
                Ok(Algorithm::RS256),
                "{access}"
            );
        }
        assert!(header_checks(&h(json!(["at+jwt"])), &allowed, None).is_err());
    }

    fn skew() -> Leeway {
        Leeway::new(std::time::Duration::from_secs(30))
    }

    #[test]
    fn claims_need_numeric_times_and_the_exact_issuer() {
        let iss = "https://idp.test/oauth2/default";
        let c = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            check_claims(&c(json!({"exp": 1100, "iss": iss})), iss, 1000, skew()),
            Ok(())
        );
        assert_eq!(
            check_claims(&c(json!({"exp": 1000, "iss": iss})), iss, 1000, skew()),
            Ok(()),
            "within leeway"
        );
        assert_eq!(
            check_claims(&c(json!({"exp": 960, "iss": iss})), iss, 1000, skew()),
            Err(InvalidReason::Expired)
        );
        assert_eq!(
            check_claims(&c(json!({"iss": iss})), iss, 1000, skew()),
            Err(InvalidReason::MalformedClaims("exp"))
        );
        assert_eq!(
            check_claims(&c(json!({"exp": "1100", "iss": iss})), iss, 1000, skew()),
            Err(InvalidReason::MalformedClaims("exp"))
        );
        assert_eq!(
            check_claims(
                &c(json!({"exp": 1100, "nbf": "1", "iss": iss})),
                iss,
                1000,
                skew()
            ),
            Err(InvalidReason::MalformedClaims("nbf"))
        );
        assert_eq!(
            check_claims(
                &c(json!({"exp": 1100, "nbf": 1031, "iss": iss})),
                iss,
                1000,
                skew()
            ),
            Err(InvalidReason::NotYetValid)
        );
        assert_eq!(
            check_claims(
                &c(json!({"exp": 1100, "iat": 1031, "iss": iss})),
                iss,
                1000,
                skew()
            ),
            Err(InvalidReason::NotYetValid)
        );
        assert_eq!(
            check_claims(
                &c(json!({"exp": 1100, "iss": format!("{iss}/")})),
                iss,
                1000,
                skew()
            ),
            Err(InvalidReason::WrongIssuer)
        );
        assert_eq!(
            check_claims(&c(json!({"exp": 1100})), iss, 1000, skew()),
            Err(InvalidReason::WrongIssuer)
        );
    }
}
