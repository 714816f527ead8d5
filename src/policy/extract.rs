//! Finds the bearer token (RFC 6750 §2): the `Authorization` header (§2.1), and where the API allows
//! them, the `access_token` form parameter (§2.2) and query parameter (§2.3). A client may use one
//! method only. §3.1 sorts the failures: a malformed *request* (two credentials, a scheme with no
//! token, a header that cannot be parsed) is `invalid_request` (400); a credential that is there but
//! is not a well-formed token is `invalid_token` (401).

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::Rejection;
use crate::validate::BearerToken;

/// The token's name in the query and form (RFC 6750 §2.2, §2.3).
pub const ACCESS_TOKEN: &str = "access_token";

/// A credential the request carries: a well-formed token, or one that is present but is not a
/// `b64token` (RFC 6750 §2.1). Both count as a credential when a client sends two; a malformed one
/// alone is `invalid_token` (§3.1: the token is malformed), never sent to the provider.
#[derive(Debug)]
pub enum Credential {
    Token(BearerToken),
    Malformed,
}

/// The credential from the `Authorization` header: `Ok(None)` when there is none, or when it is of
/// another scheme (then the client is challenged as if it sent nothing). `invalid_request` when the
/// request is malformed: two headers, a Bearer scheme with no token, or a value that cannot be
/// read as `auth-scheme [ 1*SP credentials ]` (RFC 9110 §11.4) at all.
pub fn from_header(headers: &HeaderMap) -> Result<Option<Credential>, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::InvalidRequest(
            "more than one Authorization header",
        ));
    }
    // Byte-wise, no UTF-8 pass: a token is ASCII by its grammar, and an 8 KiB JWT is read on
    // every request. RFC 9110 §5.5: the field value excludes surrounding whitespace.
    let value = value.as_bytes().trim_ascii();
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        // The HTTP parsers refuse these before we see them; this says so if one ever does not.
        return Err(Rejection::InvalidRequest(
            "the Authorization header cannot be parsed",
        ));
    }
    let (scheme, credentials) = match value.iter().position(|&b| b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &b""[..]),
    };
    if scheme.is_empty() || !scheme.iter().all(|&b| is_tchar(b)) {
        // A tab for the space, quotes, a comma, non-ASCII: no scheme can be read.
        return Err(Rejection::InvalidRequest(
            "the Authorization header cannot be parsed",
        ));
    }
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    // `1*SP`: any number of spaces may separate the scheme from the token.
    let token = credentials.trim_ascii_start();
    if token.is_empty() {
        return Err(Rejection::InvalidRequest(
            "the Bearer scheme carries no token",
        ));
    }
    Ok(Some(classify(token)))
}

/// A present token: well-formed, or not.
fn classify(token: &[u8]) -> Credential {
    match std::str::from_utf8(token) {
        Ok(text) if is_b64token(token) => Credential::Token(BearerToken::new(text)),
        _ => Credential::Malformed,
    }
}

/// RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
fn is_b64token(token: &[u8]) -> bool {
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..token.len() - padding];
    // Branch-free fold: the compiler turns it into vector compares.
    let b64 = |b: u8| {
        (b.is_ascii_uppercase() | b.is_ascii_lowercase() | b.is_ascii_digit())
            | (b == b'-')
            | (b == b'.')
            | (b == b'_')
            | (b == b'~')
            | (b == b'+')
            | (b == b'/')
    };
    !body.is_empty() && body.iter().fold(true, |ok, &b| ok & b64(b))
}

/// RFC 9110 §5.6.2 tchar: what an auth-scheme is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits `access_token` out of an urlencoded string (a query, or a form body): the credential if
/// the string holds exactly one, and the string without it (`None` when nothing was removed).
/// With `accept` false the parameters are only removed: a source the API does not accept is not
/// judged. Two parameters, or an empty one (a name with no token), is `invalid_request`; a value
/// that is not a `b64token` is a [`Credential::Malformed`].
pub fn take_access_token(
    encoded: &str,
    accept: bool,
) -> Result<(Option<Credential>, Option<String>), Rejection> {
    let mut credential = None;
    let mut kept: Vec<&str> = Vec::new();
    let mut removed = false;
    for pair in encoded.split('&') {
        let name = pair.split('=').next().unwrap_or(pair);
        let decoded_name: String = url::form_urlencoded::parse(name.as_bytes())
            .next()
            .map(|(k, _)| k.into_owned())
            .unwrap_or_default();
        if decoded_name != ACCESS_TOKEN {
            kept.push(pair);
            continue;
        }
        removed = true;
        if !accept {
            continue;
        }
        if credential.is_some() {
            return Err(Rejection::InvalidRequest(
                "more than one access_token parameter",
            ));
        }
        let value = url::form_urlencoded::parse(pair.as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if value.is_empty() {
            return Err(Rejection::InvalidRequest(
                "the access_token parameter is empty",
            ));
        }
        credential = Some(classify(value.as_bytes()));
    }
    Ok((credential, removed.then(|| kept.join("&"))))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn header_bytes(values: &[&[u8]]) -> Result<Option<Credential>, Rejection> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        from_header(&h)
    }

    fn header(values: &[&str]) -> Result<Option<Credential>, Rejection> {
        header_bytes(&values.iter().map(|v| v.as_bytes()).collect::<Vec<_>>())
    }

    fn token(found: Result<Option<Credential>, Rejection>) -> String {
        match found {
            Ok(Some(Credential::Token(t))) => t.expose().to_owned(),
            other => panic!("expected a token, got {other:?}"),
        }
    }

    #[test]
    fn well_formed_header_tokens() {
        assert_eq!(token(header(&["Bearer abc.DEF-_~+/=="])), "abc.DEF-_~+/==");
        assert_eq!(token(header(&["bEaReR xyz"])), "xyz");
        // RFC 6750 §2.1: `1*SP`.
        assert_eq!(token(header(&["Bearer    abc"])), "abc");
        assert!(matches!(header(&[]), Ok(None)));
        assert!(matches!(header(&["Basic dXNlcjpwYXNz"]), Ok(None)));
    }

    #[test]
    fn a_present_token_that_is_not_a_b64token_is_malformed() {
        for bad in [
            &b"Bearer a b"[..],
            b"Bearer \"abc\"",
            b"Bearer {\"a\":1}",
            b"Bearer a,b",
            b"Bearer ===",
            b"Bearer a\tb",
            // obs-text, which a header value may carry but a token may not.
            b"Bearer a\xffb",
            b"Bearer \xc3\xa9t\xc3\xa9",
        ] {
            assert!(
                matches!(header_bytes(&[bad]), Ok(Some(Credential::Malformed))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn malformed_requests_are_invalid_request() {
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer   ",
            // A tab is not the space RFC 9110 §11.4 puts between scheme and credentials.
            b"Bearer\tabc",
            b"\"Bearer\" abc",
            b"Bearer, abc",
            b"B\xe9arer abc",
        ] {
            assert!(
                matches!(header_bytes(&[bad]), Err(Rejection::InvalidRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            header(&["Bearer a", "Bearer b"]),
            Err(Rejection::InvalidRequest(_))
        ));
        assert!(matches!(
            header(&["Bearer a b", "Basic x"]),
            Err(Rejection::InvalidRequest(_))
        ));
    }

    #[test]
    fn query_token_is_taken_out() {
        let (t, rest) = take_access_token("a=1&access_token=tok&b=2", true).unwrap();
        assert_eq!(token(Ok(t)), "tok");
        assert_eq!(rest.as_deref(), Some("a=1&b=2"));
        let (t, rest) = take_access_token("a=1", true).unwrap();
        assert!(t.is_none() && rest.is_none());
        let (t, rest) = take_access_token("access%5Ftoken=tok", true).unwrap();
        assert_eq!(token(Ok(t)), "tok");
        assert_eq!(rest.as_deref(), Some(""));
        let (t, rest) = take_access_token("access_token=a&x=1&access_token=", false).unwrap();
        assert!(t.is_none());
        assert_eq!(rest.as_deref(), Some("x=1"));
    }

    #[test]
    fn query_tokens_are_classified_like_header_tokens() {
        assert!(matches!(
            take_access_token("access_token=a&access_token=b", true),
            Err(Rejection::InvalidRequest(_))
        ));
        assert!(matches!(
            take_access_token("access_token=", true),
            Err(Rejection::InvalidRequest(_))
        ));
        for bad in [
            "access_token=a%20b",
            "access_token=%22abc%22",
            "access_token=%C3%A9",
        ] {
            assert!(
                matches!(
                    take_access_token(bad, true),
                    Ok((Some(Credential::Malformed), _))
                ),
                "{bad}"
            );
        }
    }
}
