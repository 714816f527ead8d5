//! Which API a request belongs to, and the one normal form of its path.
//!
//! The path is normalised once (percent-decoding, dot-segment removal per RFC 3986 §5.2.4, merged
//! slashes); routing, rules and forwarding all use that same string, so `/orders/../admin` or
//! `%2e%2e` cannot make the rules see one path and the upstream another. Forms that servers read
//! differently (encoded `/` or `\`, backslashes, `;` parameters, NUL and other controls, double
//! encoding) are refused rather than guessed at.

use std::sync::Arc;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// Why a path was refused (each is a 400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("malformed percent-encoding")]
    BadEncoding,
    #[error("encoded slash or backslash in the path")]
    EncodedSeparator,
    #[error("backslash in the path")]
    Backslash,
    #[error("';' path parameters are not accepted")]
    Semicolon,
    #[error("control character in the path")]
    Control,
    #[error("double percent-encoding in the path")]
    DoubleEncoding,
    #[error("the path is not UTF-8")]
    NotUtf8,
}

/// Decodes and normalises a request path as sent on the wire (without the query).
pub fn normalise_path(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Most paths are already normal: nothing encoded, no dot segment, no empty segment.
    let plain = bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && !matches!(b, b'%' | b'\\' | b';'));
    if plain && !raw.contains("//") && !raw.contains("/.") {
        return Ok(raw.to_owned());
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEncoding)?;
                let value = hex_pair(hex).ok_or(PathError::BadEncoding)?;
                match value {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    b';' => return Err(PathError::Semicolon),
                    b'%' if bytes.get(i + 3..i + 5).and_then(hex_pair).is_some() => {
                        return Err(PathError::DoubleEncoding);
                    }
                    _ => {}
                }
                check_byte(value)?;
                decoded.push(value);
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            _ => {
                check_byte(b)?;
                decoded.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    Ok(remove_dot_segments(&decoded))
}

fn check_byte(b: u8) -> Result<(), PathError> {
    if b < 0x20 || b == 0x7f {
        Err(PathError::Control)
    } else {
        Ok(())
    }
}

fn hex_pair(hex: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    match hex {
        [h, l] => Some((digit(*h)? * 16 + digit(*l)?) as u8),
        _ => None,
    }
}

/// RFC 3986 §5.2.4 on an already decoded path, also merging empty segments (`//`) so that a
/// server which merges them cannot read a path the rules did not.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut segments = path.split('/').skip(1).peekable();
    let mut trailing_slash = false;
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." | "" => trailing_slash = last,
            ".." => {
                out.pop();
                trailing_slash = last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(path.len());
    for s in &out {
        result.push('/');
        result.push_str(s);
    }
    if trailing_slash || result.is_empty() {
        result.push('/');
    }
    result
}

/// Characters escaped again when a normalised path is forwarded: everything but RFC 3986 `pchar`
/// and `/`, so that the upstream decodes exactly the string the rules matched.
const PATH_ESCAPE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The wire form of a normalised path.
pub fn encode_path(normalised: &str) -> String {
    utf8_percent_encode(normalised, PATH_ESCAPE).to_string()
}

/// Does `prefix` match `path` on segment boundaries (`/orders` matches `/orders/1`, not `/ordersX`)?
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The host a request names, without its port (compared case-insensitively by [`Router::route`]).
pub fn request_host(host: &str) -> &str {
    if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

/// The route table: APIs ordered so that the first match is the right one (longest prefix, then a
/// host-specific API before a host-less one).
#[derive(Debug)]
pub struct Router<A> {
    routes: Vec<(Option<String>, String, Arc<A>)>,
}

impl<A> Router<A> {
    /// Builds the table from `(host, path_prefix, api)` triples.
    pub fn new(routes: impl IntoIterator<Item = (Option<String>, String, Arc<A>)>) -> Self {
        let mut routes: Vec<_> = routes.into_iter().collect();
        routes.sort_by(|a, b| {
            b.1.len()
                .cmp(&a.1.len())
                .then_with(|| b.0.is_some().cmp(&a.0.is_some()))
        });
        Router { routes }
    }

    /// The API for a port-less host (any case; configured hosts are lowercase) and a normalised
    /// path.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Arc<A>> {
        self.routes
            .iter()
            .find(|(h, prefix, _)| {
                h.as_deref()
                    .is_none_or(|h| host.is_some_and(|host| h.eq_ignore_ascii_case(host)))
                    && prefix_matches(prefix, path)
            })
            .map(|(_, _, api)| api)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<A>> {
        self.routes.iter().map(|(_, _, a)| a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_dots_and_decoding() {
        let ok = |raw: &str| normalise_path(raw).unwrap();
        assert_eq!(ok("/orders/../admin"), "/admin");
        assert_eq!(ok("/orders/%2e%2e/admin"), "/admin");
        assert_eq!(ok("/orders/%2E%2E/%2e/admin/"), "/admin/");
        assert_eq!(ok("/a/./b/../../.."), "/");
        assert_eq!(ok("//orders///1"), "/orders/1");
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("/%41b%20c"), "/Ab c");
        assert_eq!(ok("/orders/"), "/orders/");
        assert_eq!(ok("/orders/."), "/orders/");
        // Already normal: returned as is.
        assert_eq!(ok("/orders/1"), "/orders/1");
        assert_eq!(ok("/a..b/c.d/~x"), "/a..b/c.d/~x");
    }

    #[test]
    fn refuses_ambiguous_paths() {
        let err = |raw: &str| normalise_path(raw).unwrap_err();
        assert_eq!(err("/a%2fb"), PathError::EncodedSeparator);
        assert_eq!(err("/a%5Cb"), PathError::EncodedSeparator);
        assert_eq!(err("/a\\b"), PathError::Backslash);
        assert_eq!(err("/a;jsessionid=1"), PathError::Semicolon);
        assert_eq!(err("/a%3bx"), PathError::Semicolon);
        assert_eq!(err("/a%00"), PathError::Control);
        assert_eq!(err("/a%252e%252e"), PathError::DoubleEncoding);
        assert_eq!(err("/a%2"), PathError::BadEncoding);
        assert_eq!(err("/a%zz"), PathError::BadEncoding);
        assert_eq!(err("/a%ff"), PathError::NotUtf8);
        assert_eq!(err("a"), PathError::NotAbsolute);
    }

    #[test]
    fn encoding_round_trips() {
        for raw in ["/Ab c", "/x%y", "/é/q?x#f", "/a:b@c!$&'()*+,="] {
            let wire = encode_path(raw);
            assert_eq!(normalise_path(&wire).unwrap(), raw, "{wire}");
        }
    }

    #[test]
    fn routes_longest_prefix_on_segment_boundaries() {
        let router = Router::new([
            (None, "/".to_owned(), Arc::new("root")),
            (None, "/orders".to_owned(), Arc::new("orders")),
            (
                Some("api.test".to_owned()),
                "/orders".to_owned(),
                Arc::new("host-orders"),
            ),
            (None, "/orders/admin".to_owned(), Arc::new("admin")),
        ]);
        let route = |h: Option<&str>, p: &str| **router.route(h, p).unwrap();
        assert_eq!(route(None, "/orders/1"), "orders");
        assert_eq!(route(None, "/ordersX"), "root");
        assert_eq!(route(None, "/orders/admin/x"), "admin");
        assert_eq!(route(Some("api.test"), "/orders"), "host-orders");
        assert_eq!(route(Some("API.Test"), "/orders"), "host-orders");
        assert_eq!(route(Some("other.test"), "/orders"), "orders");
        assert_eq!(request_host("API.test:8080"), "API.test");
        assert_eq!(request_host("[::1]:80"), "[::1]");
    }
}
