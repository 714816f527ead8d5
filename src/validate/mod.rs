//! Validation answers *who* a token speaks for, as a [`Principal`]; whether they may pass is
//! `policy::authorize`'s question. Keeping scopes out of here lets one cache entry serve every API
//! that shares a provider.

mod cache;
mod introspection;
mod principal;
mod token;

use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use cache::CachedValidator;
pub use introspection::IntrospectionValidator;
pub use principal::{ClaimTypeError, Principal};
pub use token::{BearerToken, TokenDigest};

use crate::provider::ProviderError;

/// Why a token is refused: a verdict about the token, safe to cache and to tell the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    Inactive,
    Expired,
    NotYetValid,
    WrongIssuer,
    MalformedClaims(&'static str),
}

impl InvalidReason {
    /// The client-facing `error_description`.
    pub fn description(&self) -> &'static str {
        match self {
            InvalidReason::Inactive => "the access token is not active",
            InvalidReason::Expired => "the access token has expired",
            InvalidReason::NotYetValid => "the access token is not valid yet",
            InvalidReason::WrongIssuer => "the access token was issued by another issuer",
            InvalidReason::MalformedClaims(_) => "the access token's claims are malformed",
        }
    }

    /// The stable log and metric reason.
    pub fn reason(&self) -> &'static str {
        match self {
            InvalidReason::Inactive => "token_inactive",
            InvalidReason::Expired => "token_expired",
            InvalidReason::NotYetValid => "token_not_yet_valid",
            InvalidReason::WrongIssuer => "token_wrong_issuer",
            InvalidReason::MalformedClaims(_) => "token_malformed_claims",
        }
    }
}

/// A validator's failure: a verdict (`Invalid`, cacheable) or no verdict at all (`Unavailable`:
/// never cached; the request fails closed with 503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidateError {
    Invalid(InvalidReason),
    Unavailable(ProviderError),
}

/// Turns a bearer token into a principal. Dyn-compatible so modes can be mixed per API.
pub trait Validator: Send + Sync + 'static {
    fn validate<'a>(
        &'a self,
        token: &'a BearerToken,
    ) -> BoxFuture<'a, Result<Arc<Principal>, ValidateError>>;
}
