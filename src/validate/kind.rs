//! What a token says it is, and whether it is bound to a key: checks the JWT validator and the
//! introspection judge share, so a refresh token, an ID token or a key-bound token is refused
//! whichever way it arrives.
//!
//! Only explicit statements refuse. A token that names no kind passes (RFC 7662 makes
//! `token_type` optional, and Okta's access tokens carry no JOSE `typ`), and so does a name we do
//! not know: it states nothing we understand. The audience check (`[[api]] audience`) is what
//! refuses the tokens that say nothing, such as Okta's refresh tokens, whose introspection answer
//! says `"token_type": "Bearer"` and names no `aud`.

use serde_json::{Map, Value};

use super::InvalidReason;

/// Claims (in JWT claims or an introspection answer) that name the kind of token:
/// RFC 7662 `token_type`; `token_use` (AWS Cognito: `access` / `id`; Ory Hydra: `access_token` /
/// `refresh_token`); `typ` (Keycloak: `Bearer`, `Refresh`, `Offline`, `ID`, `Logout`).
const KIND_CLAIMS: [&str; 3] = ["token_type", "token_use", "typ"];

/// Kinds that are not access tokens, as [`normalise`] leaves them. Token names (RFC 8693 §3 URNs
/// once their prefix is stripped, Okta's older `refresh token`, Keycloak's and Cognito's short
/// names), RFC 8693 §2.2.1 `N_A` ("not an access token"), and JOSE `typ`s of JWTs that are
/// something else: logout tokens (OpenID Back-Channel Logout §2.4), security events (RFC 8417),
/// signed introspection answers (RFC 9701), DPoP proofs (RFC 9449 §4.2), request objects
/// (RFC 9101), SD-JWT key-binding JWTs, federation entity statements.
const NOT_ACCESS: [&str; 17] = [
    "refresh_token",
    "refresh",
    "offline",
    "id_token",
    "id",
    "logout",
    "n_a",
    "saml1",
    "saml2",
    "logout+jwt",
    "secevent+jwt",
    "token-introspection+jwt",
    "dpop+jwt",
    "oauth-authz-req+jwt",
    "kb+jwt",
    "entity-statement+jwt",
    "logout_token",
];

/// Claims only an ID token carries: hashes binding it to the access token, code, state or refresh
/// token issued beside it (OpenID Connect Core §3.1.3.6, §3.3.2.11; FAPI 1.0 `s_hash`).
const ID_TOKEN_HASHES: [&str; 4] = [
    "at_hash",
    "c_hash",
    "s_hash",
    "urn:openid:params:jwt:claim:rt_hash",
];

/// Lower case, without `application/` (RFC 7515 §4.1.9) or the RFC 8693 URN prefix, spaces as
/// underscores (Okta once wrote `refresh token`).
fn normalise(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let bare = lower.strip_prefix("application/").unwrap_or(&lower);
    let bare = bare
        .strip_prefix("urn:ietf:params:oauth:token-type:")
        .unwrap_or(bare);
    bare.replace(' ', "_")
}

/// Whether `name` (a `token_type`, `token_use`, `typ` claim or JOSE `typ`) names a kind of token
/// that is not an access token.
pub fn names_non_access(name: &str) -> bool {
    NOT_ACCESS.contains(&normalise(name).as_str())
}

/// The refusal, if the claims say the token is no access token, or one we cannot use as a bearer
/// token: bound to a key or certificate (RFC 7800 `cnf`: RFC 9449 DPoP `jkt`, RFC 8705 mTLS
/// `x5t#S256`), or of `token_type` `DPoP` (RFC 9449 §9 ties it to a key even without `cnf`).
/// tollgate verifies no proof of possession, so such a token would be a bearer token here.
pub fn refusal(claims: &Map<String, Value>) -> Option<InvalidReason> {
    for name in KIND_CLAIMS {
        match claims.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(kind)) if names_non_access(kind) => {
                return Some(InvalidReason::WrongType);
            }
            Some(Value::String(_)) => {}
            Some(_) => return Some(InvalidReason::MalformedClaims(name)),
        }
    }
    if looks_like_an_id_token(claims) {
        return Some(InvalidReason::WrongType);
    }
    let dpop = matches!(claims.get("token_type"), Some(Value::String(t)) if t.eq_ignore_ascii_case("dpop"));
    let bound = !matches!(claims.get("cnf"), None | Some(Value::Null));
    (dpop || bound).then_some(InvalidReason::Unbound)
}

/// An ID token's hashes, or a `nonce` with no scope at all (access tokens carry `scope` or Okta's
/// `scp`; ID tokens never do). A `nonce` beside scopes passes: some providers copy it into access
/// tokens. `aud` equal to `azp` is not used: a client calling its own API looks the same.
fn looks_like_an_id_token(claims: &Map<String, Value>) -> bool {
    let present = |name: &str| !matches!(claims.get(name), None | Some(Value::Null));
    ID_TOKEN_HASHES.iter().any(|h| present(h))
        || (present("nonce") && !present("scope") && !present("scp"))
}

#[cfg(test)]
mod tests;
