use serde_json::{Value, json};

use super::*;

fn refused(v: Value) -> Option<InvalidReason> {
    refusal(v.as_object().unwrap())
}

#[test]
fn real_access_tokens_pass() {
    // Okta: a JWT's claims (no `typ` in them), and an introspection answer.
    let okta_jwt = json!({"ver": 1, "jti": "AT.x", "iss": "i", "aud": "api://default", "iat": 1,
        "exp": 2, "cid": "0oa1", "uid": "00u1", "scp": ["openid"], "sub": "a@b", "auth_time": 1});
    let okta_answer = json!({"active": true, "token_type": "Bearer", "scope": "openid",
        "client_id": "0oa1", "username": "a@b", "exp": 2, "iat": 1, "sub": "a@b",
        "aud": "api://default", "iss": "i", "jti": "AT.x", "uid": "00u1"});
    // oidc-provider, Duende IdentityServer, Ory Hydra, Cognito, Keycloak.
    for ok in [
        okta_jwt,
        okta_answer,
        json!({"active": true, "token_type": "Bearer", "client_id": "c", "scope": "a"}),
        json!({"token_type": "access_token"}),
        json!({"token_type": "urn:ietf:params:oauth:token-type:access_token"}),
        json!({"token_use": "access_token"}),
        json!({"token_use": "access"}),
        json!({"typ": "Bearer", "azp": "c", "aud": "c"}),
        json!({"token_type": "mac"}),
        json!({"nonce": "n", "scope": "openid"}),
        json!({"cnf": null, "token_type": null}),
    ] {
        assert_eq!(refused(ok.clone()), None, "{ok}");
    }
}

#[test]
fn refresh_and_id_tokens_are_refused_however_named() {
    for kind in [
        json!({"token_type": "refresh_token"}),
        json!({"token_type": "Refresh_Token"}),
        json!({"token_type": "refresh token"}),
        json!({"token_type": "urn:ietf:params:oauth:token-type:refresh_token"}),
        json!({"token_type": "urn:ietf:params:oauth:token-type:id_token"}),
        json!({"token_type": "id_token"}),
        json!({"token_type": "N_A"}),
        json!({"token_use": "id"}),
        json!({"token_use": "refresh_token"}),
        json!({"typ": "Refresh"}),
        json!({"typ": "Offline"}),
        json!({"typ": "ID"}),
        json!({"at_hash": "x", "scope": "a"}),
        json!({"c_hash": "x"}),
        json!({"nonce": "n", "aud": "c"}),
    ] {
        assert_eq!(
            refused(kind.clone()),
            Some(InvalidReason::WrongType),
            "{kind}"
        );
    }
    assert_eq!(
        refused(json!({"token_type": 1})),
        Some(InvalidReason::MalformedClaims("token_type"))
    );
}

#[test]
fn jose_types_of_other_jwts_are_not_access() {
    for typ in [
        "logout+jwt",
        "application/logout+jwt",
        "secevent+jwt",
        "token-introspection+jwt",
        "dpop+jwt",
        "id_token",
        "refresh_token",
    ] {
        assert!(names_non_access(typ), "{typ}");
    }
    for typ in ["at+jwt", "application/at+jwt", "JWT", "jwt", ""] {
        assert!(!names_non_access(typ), "{typ}");
    }
}

#[test]
fn bound_tokens_are_refused() {
    for bound in [
        json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
        json!({"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}),
        json!({"cnf": {}}),
        json!({"token_type": "DPoP"}),
        json!({"token_type": "dpop", "cnf": {"jkt": "x"}}),
    ] {
        assert_eq!(
            refused(bound.clone()),
            Some(InvalidReason::Unbound),
            "{bound}"
        );
    }
    // A refresh token is refused as one, bound or not.
    assert_eq!(
        refused(json!({"token_type": "refresh_token", "cnf": {"jkt": "x"}})),
        Some(InvalidReason::WrongType)
    );
}
