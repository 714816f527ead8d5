//! Validation by RFC 7662 introspection: the provider's verdict, then our own checks of what it
//! said (`exp` past and `nbf` future beyond the leeway, `iss` not the issuer, a refresh or ID
//! token, a token bound to a key), because an `active: true` is only as good as the claims that
//! come with it. Only `"active": true` is active (RFC 7662 §2.2 makes it a boolean): a missing,
//! `null`, `"true"` or `1` is a verdict of inactive, never mistaken for an outage.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::kind;
use super::principal::number;
use super::{
    Attributes, BearerToken, Caller, InvalidReason, Leeway, Principal, ValidateError, Validator,
};
use crate::clock::Clock;
use crate::provider::Provider;

/// Asks the provider about each token (wrap it in a `CachedValidator`).
pub struct IntrospectionValidator {
    provider: Arc<Provider>,
    clock: Arc<dyn Clock>,
    keep: Attributes,
}

impl IntrospectionValidator {
    pub fn new(provider: Arc<Provider>, clock: Arc<dyn Clock>, keep: Attributes) -> Self {
        IntrospectionValidator {
            provider,
            clock,
            keep,
        }
    }

    async fn check(&self, token: &BearerToken) -> Result<Arc<Principal>, ValidateError> {
        let answer = self
            .provider
            .introspection()
            .map_err(ValidateError::Unavailable)?
            .introspect(token)
            .await
            .map_err(ValidateError::Unavailable)?;
        let settings = &self.provider.settings;
        let verdict = Verdict {
            issuer: &settings.issuer,
            now: self.clock.now_unix(),
            leeway: Leeway::new(settings.jwt.leeway),
        };
        judge(&answer, &verdict, self.keep).map(Arc::new)
    }
}

impl Validator for IntrospectionValidator {
    fn validate<'a>(
        &'a self,
        token: &'a BearerToken,
        _caller: Caller,
    ) -> BoxFuture<'a, Result<Arc<Principal>, ValidateError>> {
        self.check(token).boxed()
    }
}

/// What an answer is judged against.
struct Verdict<'a> {
    issuer: &'a str,
    now: u64,
    leeway: Leeway,
}

/// The verdict on an introspection answer (any JSON object: the client checked no more).
fn judge(
    answer: &Map<String, Value>,
    against: &Verdict<'_>,
    keep: Attributes,
) -> Result<Principal, ValidateError> {
    let invalid = |r| Err(ValidateError::Invalid(r));
    if answer.get("active") != Some(&Value::Bool(true)) {
        return invalid(InvalidReason::Inactive);
    }
    if let Some(reason) = kind::refusal(answer) {
        return invalid(reason);
    }
    let principal = Principal::from_claims(answer, keep)
        .map_err(|e| ValidateError::Invalid(InvalidReason::MalformedClaims(e.0)))?;
    let (now, leeway) = (against.now, against.leeway);
    if principal
        .expires_at
        .is_some_and(|exp| leeway.expired(exp, now))
    {
        return invalid(InvalidReason::Expired);
    }
    let nbf = number(answer, "nbf")
        .map_err(|e| ValidateError::Invalid(InvalidReason::MalformedClaims(e.0)))?;
    if nbf.is_some_and(|nbf| leeway.not_yet_valid(nbf, now)) {
        return invalid(InvalidReason::NotYetValid);
    }
    // Exact, byte for byte (RFC 7662 §2.2 names `iss`; RFC 8414 §3.3 forbids normalising it).
    if principal.issuer().is_some_and(|iss| iss != against.issuer) {
        return invalid(InvalidReason::WrongIssuer);
    }
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    const ISS: &str = "https://idp.test/oauth2/default";

    fn verdict_with(v: Value, leeway: u64) -> Result<Principal, ValidateError> {
        let against = Verdict {
            issuer: ISS,
            now: 1000,
            leeway: Leeway::new(Duration::from_secs(leeway)),
        };
        judge(v.as_object().unwrap(), &against, Attributes::Keep)
    }

    fn verdict(v: Value) -> Result<Principal, ValidateError> {
        verdict_with(v, 0)
    }

    #[test]
    fn active_answers_are_still_checked() {
        let inv = |r| Err(ValidateError::Invalid(r));
        assert_eq!(
            verdict(json!({"active": false})),
            inv(InvalidReason::Inactive)
        );
        assert_eq!(
            verdict(json!({"active": true, "exp": 1000})),
            inv(InvalidReason::Expired)
        );
        assert_eq!(
            verdict(json!({"active": true, "nbf": 1001})),
            inv(InvalidReason::NotYetValid)
        );
        assert_eq!(
            verdict(json!({"active": true, "iss": "https://idp.test/oauth2/default/"})),
            inv(InvalidReason::WrongIssuer)
        );
        assert_eq!(
            verdict(json!({"active": true, "iss": "HTTPS://idp.test/oauth2/default"})),
            inv(InvalidReason::WrongIssuer)
        );
        assert_eq!(
            verdict(json!({"active": true, "exp": "2000"})),
            inv(InvalidReason::MalformedClaims("exp"))
        );
        let ok = verdict(
            json!({"active": true, "exp": 1001, "nbf": 1000, "iss": ISS, "client_id": "c"}),
        )
        .unwrap();
        assert_eq!(ok.client_id(), Some("c"));
    }

    #[test]
    fn only_boolean_true_is_active() {
        for active in [
            json!(null),
            json!("true"),
            json!(1),
            json!(false),
            json!([true]),
        ] {
            assert_eq!(
                verdict(json!({"active": active, "client_id": "c"})),
                Err(ValidateError::Invalid(InvalidReason::Inactive)),
                "{active}"
            );
        }
        assert_eq!(
            verdict(json!({"client_id": "c"})),
            Err(ValidateError::Invalid(InvalidReason::Inactive))
        );
    }

    #[test]
    fn the_leeway_covers_exp_and_nbf() {
        assert!(verdict_with(json!({"active": true, "exp": 980}), 30).is_ok());
        assert!(verdict_with(json!({"active": true, "nbf": 1030}), 30).is_ok());
        assert_eq!(
            verdict_with(json!({"active": true, "exp": 970}), 30),
            Err(ValidateError::Invalid(InvalidReason::Expired))
        );
    }

    #[test]
    fn refresh_id_and_bound_tokens_are_refused() {
        let inv = |r| Err(ValidateError::Invalid(r));
        let answer = |extra: Value| {
            let mut v = json!({"active": true, "exp": 2000, "iss": ISS, "client_id": "c"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            verdict(v)
        };
        assert_eq!(
            answer(json!({"token_type": "refresh_token"})),
            inv(InvalidReason::WrongType)
        );
        assert_eq!(
            answer(json!({"token_type": "DPoP", "cnf": {"jkt": "k"}})),
            inv(InvalidReason::Unbound)
        );
        assert!(answer(json!({"token_type": "Bearer"})).is_ok());
    }
}
