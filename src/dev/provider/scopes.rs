//! Scope arithmetic for the dev provider (RFC 6749 §3.3): which scopes a token request is granted,
//! and which a registering client may hold. Scopes are case-sensitive tokens separated by spaces.

use super::reply::OAuthError;

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub(super) fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// The scopes of a `scope` parameter, in order, each once. Repeated spaces are tolerated.
fn scope_list(value: &str) -> Vec<&str> {
    let mut scopes: Vec<&str> = Vec::new();
    for scope in value.split(' ').filter(|s| !s.is_empty()) {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes
}

/// The scopes a client-credentials token gets. Every requested scope must be one the provider
/// knows and the client holds (`invalid_scope` otherwise, naming it); with none requested, the
/// client gets all it holds (RFC 6749 §3.3 lets the server apply a default).
pub(super) fn granted_scopes(
    requested: Option<&str>,
    client_scopes: &[String],
    known: &[String],
) -> Result<Vec<String>, OAuthError> {
    let requested = requested.map(scope_list).unwrap_or_default();
    if requested.is_empty() {
        return Ok(client_scopes.to_vec());
    }
    for scope in &requested {
        check_known(scope, known).map_err(OAuthError::InvalidScope)?;
        if !client_scopes.iter().any(|s| s == scope) {
            return Err(OAuthError::InvalidScope(format!(
                "the client may not request scope {scope:?}"
            )));
        }
    }
    Ok(requested.into_iter().map(str::to_owned).collect())
}

/// The scopes a registering client holds (RFC 7591 §2 `scope`): those it asks for, each known to
/// the provider; with none asked for, every scope the provider knows.
pub(super) fn registered_scopes(
    requested: Option<&str>,
    known: &[String],
) -> Result<Vec<String>, OAuthError> {
    let requested = requested.map(scope_list).unwrap_or_default();
    if requested.is_empty() {
        return Ok(known.to_vec());
    }
    for scope in &requested {
        check_known(scope, known).map_err(OAuthError::InvalidClientMetadata)?;
    }
    Ok(requested.into_iter().map(str::to_owned).collect())
}

/// Why `scope` cannot be granted, if the provider does not know it.
fn check_known(scope: &str, known: &[String]) -> Result<(), String> {
    if !is_scope_token(scope) {
        // Not echoed: it may hold control characters.
        return Err("the scope parameter holds a malformed scope (RFC 6749 §3.3)".to_owned());
    }
    if !known.iter().any(|s| s == scope) {
        return Err(format!("scope {scope:?} is not known to the provider"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    const KNOWN: &[&str] = &["mulescope", "read", "write"];

    #[test]
    fn no_scope_requested_grants_all_the_client_holds() {
        let client = strings(&["mulescope", "read"]);
        for requested in [None, Some(""), Some("   ")] {
            assert_eq!(
                granted_scopes(requested, &client, &strings(KNOWN)).unwrap(),
                client
            );
        }
    }

    #[test]
    fn a_subset_is_granted_in_order_without_repeats() {
        let client = strings(&["mulescope", "read"]);
        let granted =
            granted_scopes(Some("read  mulescope read"), &client, &strings(KNOWN)).unwrap();
        assert_eq!(granted, ["read", "mulescope"]);
    }

    #[test]
    fn unknown_unheld_or_malformed_scopes_are_invalid_scope() {
        let client = strings(&["read"]);
        let known = strings(KNOWN);
        let refused = |requested: &str| match granted_scopes(Some(requested), &client, &known) {
            Err(OAuthError::InvalidScope(description)) => description,
            other => panic!("{requested:?}: expected invalid_scope, got {other:?}"),
        };
        assert!(refused("read admin").contains("\"admin\" is not known"));
        assert!(refused("write").contains("may not request scope \"write\""));
        assert!(
            refused("Read").contains("not known"),
            "scopes are case-sensitive"
        );
        assert!(refused("read\tx").contains("malformed"));
    }

    #[test]
    fn registration_defaults_to_every_known_scope_and_refuses_unknown_ones() {
        let known = strings(KNOWN);
        assert_eq!(registered_scopes(None, &known).unwrap(), known);
        assert_eq!(registered_scopes(Some("write"), &known).unwrap(), ["write"]);
        assert!(matches!(
            registered_scopes(Some("write admin"), &known),
            Err(OAuthError::InvalidClientMetadata(_))
        ));
    }

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        assert!(is_scope_token("api:read/orders!"));
        for bad in ["", "a b", "a\"b", "a\\b", "é", "a\u{7f}"] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
    }
}
