//! Validation by RFC 7662 introspection: the provider's verdict, then our own checks of what it
//! said (`exp` past, `nbf` future, `iss` not the issuer), because an `active: true` is only as good
//! as the claims that come with it.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::principal::number;
use super::{Attributes, BearerToken, Caller, InvalidReason, Principal, ValidateError, Validator};
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
        judge(
            &answer,
            &self.provider.settings.issuer,
            self.clock.now_unix(),
            self.keep,
        )
        .map(Arc::new)
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

/// The verdict on an introspection answer (which has a boolean `active`, checked by the client).
fn judge(
    answer: &Map<String, Value>,
    issuer: &str,
    now: u64,
    keep: Attributes,
) -> Result<Principal, ValidateError> {
    let invalid = |r| Err(ValidateError::Invalid(r));
    if answer.get("active") != Some(&Value::Bool(true)) {
        return invalid(InvalidReason::Inactive);
    }
    let principal = Principal::from_claims(answer, keep)
        .map_err(|e| ValidateError::Invalid(InvalidReason::MalformedClaims(e.0)))?;
    if principal.expires_at.is_some_and(|exp| exp <= now) {
        return invalid(InvalidReason::Expired);
    }
    let nbf = number(answer, "nbf")
        .map_err(|e| ValidateError::Invalid(InvalidReason::MalformedClaims(e.0)))?;
    if nbf.is_some_and(|nbf| nbf > now) {
        return invalid(InvalidReason::NotYetValid);
    }
    // Exact, byte for byte (RFC 7662 §2.2 names `iss`; RFC 8414 §3.3 forbids normalising it).
    if principal.issuer().is_some_and(|iss| iss != issuer) {
        return invalid(InvalidReason::WrongIssuer);
    }
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ISS: &str = "https://idp.test/oauth2/default";

    fn verdict(v: Value) -> Result<Principal, ValidateError> {
        judge(v.as_object().unwrap(), ISS, 1000, Attributes::Keep)
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
}
