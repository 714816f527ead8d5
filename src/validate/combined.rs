//! `jwt+introspection`: verify locally first, so forgeries are refused with no provider call at
//! all; then introspect (cached), so revoked tokens are refused too. The principal is the verified
//! JWT's; introspection contributes its verdict.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{BearerToken, Caller, Principal, ValidateError, Validator};

pub struct JwtThenIntrospection {
    jwt: Arc<dyn Validator>,
    introspection: Arc<dyn Validator>,
}

impl JwtThenIntrospection {
    pub fn new(jwt: Arc<dyn Validator>, introspection: Arc<dyn Validator>) -> Self {
        JwtThenIntrospection { jwt, introspection }
    }
}

impl Validator for JwtThenIntrospection {
    fn validate<'a>(
        &'a self,
        token: &'a BearerToken,
        caller: Caller,
    ) -> BoxFuture<'a, Result<Arc<Principal>, ValidateError>> {
        async move {
            let principal = self.jwt.validate(token, caller).await?;
            self.introspection.validate(token, caller).await?;
            Ok(principal)
        }
        .boxed()
    }
}
