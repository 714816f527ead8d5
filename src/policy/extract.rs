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
    // A fold, not `any`: without the early exit it compiles to vector compares (a JWT's header
    // is read in a quarter of the instructions).
    let control = value.iter().fold(false, |seen, &b| {
        seen | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    });
    if control {
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
mod tests;
