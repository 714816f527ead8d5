//! Finds the bearer token (RFC 6750 §2): the `Authorization` header (§2.1), and where the API allows
//! them, the `access_token` form parameter (§2.2) and query parameter (§2.3). A client may use one
//! method only; two credentials, or a malformed one, is `invalid_request`.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::Rejection;
use crate::validate::BearerToken;

/// The token's name in the query and form (RFC 6750 §2.2, §2.3).
pub const ACCESS_TOKEN: &str = "access_token";

/// The credential from the `Authorization` header: `Ok(None)` when there is none, or when it is of
/// another scheme (then the client is challenged as if it sent nothing).
pub fn from_header(headers: &HeaderMap) -> Result<Option<BearerToken>, Rejection> {
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
    // every request.
    let value = value.as_bytes();
    // Branch-free folds: the compiler turns them into vector compares.
    if !value.iter().fold(true, |ok, &b| {
        ok & ((0x20..0x7f).contains(&b) | (b == b'\t'))
    }) {
        return Err(Rejection::InvalidRequest("malformed Authorization header"));
    }
    let (scheme, credentials) = match value.iter().position(|&b| b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    match std::str::from_utf8(credentials) {
        Ok(token) if is_b64token(credentials) => Ok(Some(BearerToken::new(token))),
        _ => Err(Rejection::InvalidRequest("malformed Bearer credentials")),
    }
}

/// RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
fn is_b64token(token: &[u8]) -> bool {
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..token.len() - padding];
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

/// Splits `access_token` out of an urlencoded string (a query, or a form body): the token if the
/// string holds exactly one, and the string without it (`None` when nothing was removed). With
/// `accept` false the parameters are only removed: a source the API does not accept is not judged.
pub fn take_access_token(
    encoded: &str,
    accept: bool,
) -> Result<(Option<BearerToken>, Option<String>), Rejection> {
    let mut token = None;
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
        if token.is_some() {
            return Err(Rejection::InvalidRequest(
                "more than one access_token parameter",
            ));
        }
        let value = url::form_urlencoded::parse(pair.as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !is_b64token(value.as_bytes()) {
            return Err(Rejection::InvalidRequest(
                "malformed access_token parameter",
            ));
        }
        token = Some(BearerToken::new(value));
    }
    Ok((token, removed.then(|| kept.join("&"))))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn header(values: &[&str]) -> Result<Option<BearerToken>, Rejection> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        from_header(&h)
    }

    #[test]
    fn header_token_forms() {
        assert_eq!(
            header(&["Bearer abc.DEF-_~+/=="])
                .unwrap()
                .unwrap()
                .expose(),
            "abc.DEF-_~+/=="
        );
        assert_eq!(header(&["bEaReR xyz"]).unwrap().unwrap().expose(), "xyz");
        assert_eq!(header(&[]).unwrap(), None);
        assert_eq!(header(&["Basic dXNlcjpwYXNz"]).unwrap(), None);
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer  a",
            "Bearer a,b",
            "Bearer ===",
            "Bearer a\"b",
        ] {
            assert!(
                matches!(header(&[bad]), Err(Rejection::InvalidRequest(_))),
                "{bad:?}"
            );
        }
        // obs-text, which a header value may carry but a token may not.
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer a\xffb").unwrap(),
        );
        assert!(matches!(from_header(&h), Err(Rejection::InvalidRequest(_))));
        assert!(matches!(
            header(&["Bearer a", "Bearer b"]),
            Err(Rejection::InvalidRequest(_))
        ));
    }

    #[test]
    fn query_token_is_taken_out() {
        let (t, rest) = take_access_token("a=1&access_token=tok&b=2", true).unwrap();
        assert_eq!(t.unwrap().expose(), "tok");
        assert_eq!(rest.as_deref(), Some("a=1&b=2"));
        let (t, rest) = take_access_token("a=1", true).unwrap();
        assert!(t.is_none() && rest.is_none());
        let (t, rest) = take_access_token("access%5Ftoken=tok", true).unwrap();
        assert_eq!(t.unwrap().expose(), "tok");
        assert_eq!(rest.as_deref(), Some(""));
        assert!(take_access_token("access_token=a&access_token=b", true).is_err());
        assert!(take_access_token("access_token=", true).is_err());
        let (t, rest) = take_access_token("access_token=a&x=1&access_token=", false).unwrap();
        assert!(t.is_none());
        assert_eq!(rest.as_deref(), Some("x=1"));
    }
}
