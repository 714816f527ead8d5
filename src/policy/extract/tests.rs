//! The RFC 6750 §3.1 classification of what a request carries.

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
