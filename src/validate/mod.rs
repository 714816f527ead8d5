//! Validation answers *who* a token speaks for, as a [`Principal`]; whether they may pass is
//! `policy::authorize`'s question. Keeping scopes out of here lets one cache entry serve every API
//! that shares a provider.

mod cache;
mod combined;
mod introspection;
mod jwt;
mod kind;
mod leeway;
mod principal;
mod token;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use cache::CachedValidator;
pub use combined::JwtThenIntrospection;
pub use introspection::IntrospectionValidator;
pub use jwt::JwtValidator;
pub use leeway::Leeway;
pub use principal::{Attributes, ClaimTypeError, Principal};
pub use token::{BearerToken, TokenDigest};

use crate::provider::ProviderError;

/// Why a token is refused: a verdict about the token, safe to cache and to tell the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    Inactive,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MalformedClaims(&'static str),
    /// Not a well-formed JWS, or one we refuse to read (JWE, `crit`, missing `kid`).
    Malformed(&'static str),
    /// Present, but not an RFC 6750 §2.1 `b64token` (quotes, spaces, JSON, non-ASCII): refused
    /// before any validator sees it.
    NotB64Token,
    TooLarge,
    AlgorithmNotAllowed,
    UnknownKey,
    BadSignature,
    /// Not an access token: the token or its answer says it is a refresh or ID token (or another
    /// kind of JWT), or it is shaped like an ID token.
    WrongType,
    /// Bound to a key or certificate (`cnf`, or `token_type` `DPoP`): usable only with a proof of
    /// possession, which tollgate does not verify, so it is not accepted as a bearer token.
    Unbound,
}

impl InvalidReason {
    /// The client-facing `error_description`.
    pub fn description(&self) -> &'static str {
        match self {
            InvalidReason::Inactive => "the access token is not active",
            InvalidReason::Expired => "the access token has expired",
            InvalidReason::NotYetValid => "the access token is not valid yet",
            InvalidReason::WrongIssuer => "the access token was issued by another issuer",
            InvalidReason::WrongAudience => "the access token is not meant for this API",
            InvalidReason::MalformedClaims(_) => "the access token's claims are malformed",
            InvalidReason::Malformed(_) => "the access token is malformed",
            InvalidReason::NotB64Token => {
                "the access token is malformed: it is not a b64token (RFC 6750 §2.1)"
            }
            InvalidReason::TooLarge => "the access token is too large",
            InvalidReason::AlgorithmNotAllowed => {
                "the access token's signing algorithm is not accepted"
            }
            InvalidReason::UnknownKey => "the access token is signed with an unknown key",
            InvalidReason::BadSignature => "the access token's signature is invalid",
            InvalidReason::WrongType => "the token is not an access token",
            InvalidReason::Unbound => {
                "the access token is bound to a key or certificate, which this gateway does not verify"
            }
        }
    }

    /// The stable log and metric reason.
    pub fn reason(&self) -> &'static str {
        match self {
            InvalidReason::Inactive => "token_inactive",
            InvalidReason::Expired => "token_expired",
            InvalidReason::NotYetValid => "token_not_yet_valid",
            InvalidReason::WrongIssuer => "token_wrong_issuer",
            InvalidReason::WrongAudience => "token_wrong_audience",
            InvalidReason::MalformedClaims(_) => "token_malformed_claims",
            InvalidReason::Malformed(_) => "token_malformed",
            InvalidReason::NotB64Token => "token_not_b64token",
            InvalidReason::TooLarge => "token_too_large",
            InvalidReason::AlgorithmNotAllowed => "token_algorithm_not_allowed",
            InvalidReason::UnknownKey => "token_unknown_key",
            InvalidReason::BadSignature => "token_bad_signature",
            InvalidReason::WrongType => "token_wrong_type",
            InvalidReason::Unbound => "token_binding_unverified",
        }
    }

    /// Whether the verdict may be remembered for `negative_ttl`. An unknown key is not: the
    /// provider may publish it a moment later (key rotation).
    pub fn cacheable(&self) -> bool {
        !matches!(self, InvalidReason::UnknownKey)
    }
}

/// A validator's failure: a verdict (`Invalid`, cacheable) or no verdict at all (`Unavailable`:
/// never cached; the request fails closed with 503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidateError {
    Invalid(InvalidReason),
    Unavailable(ProviderError),
    /// No verdict for this caller now: its client address has used its share of cache misses
    /// (`misses_per_client`). Come back after this long.
    Throttled(Duration),
}

/// Who asks for a verdict: what per-client budgets are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The client's address, as found through `trusted_proxies`.
    pub client: IpAddr,
}

impl Caller {
    /// A caller with no address (the CLI's `explain`): counted as one.
    pub const LOCAL: Caller = Caller {
        client: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
}

/// Turns a bearer token into a principal. Dyn-compatible so modes can be mixed per API.
pub trait Validator: Send + Sync + 'static {
    fn validate<'a>(
        &'a self,
        token: &'a BearerToken,
        caller: Caller,
    ) -> BoxFuture<'a, Result<Arc<Principal>, ValidateError>>;
}
