//! Which API a request belongs to, and the one normal form of its path.
//!
//! The path is normalised once (percent-decoding, dot-segment removal per RFC 3986 §5.2.4, merged
//! slashes); routing, rules and forwarding all use that same string, so `/orders/../admin` or
//! `%2e%2e` cannot make the rules see one path and the upstream another. Forms that servers read
//! differently (encoded `/` or `\`, backslashes, `;` parameters, NUL and other controls, double
//! encoding) are refused rather than guessed at.

use std::borrow::Cow;
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
    // One pass over the bytes (a substring search per pattern cost more than the rest).
    let mut after_slash = false;
    let plain = bytes.iter().all(|&b| {
        let ordinary = (0x20..0x7f).contains(&b)
            && !matches!(b, b'%' | b'\\' | b';')
            && !(after_slash && matches!(b, b'/' | b'.'));
        after_slash = b == b'/';
        ordinary
    });
    if plain {
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
    // Decoded once, the path must hold no escape left to decode: `%252e` and also `%25%32e` (whose
    // escapes each look harmless) would read as `.` to an upstream that decodes twice.
    if decoded
        .windows(3)
        .any(|w| w[0] == b'%' && hex_pair(&w[1..]).is_some())
    {
        return Err(PathError::DoubleEncoding);
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
    let mut out = String::with_capacity(normalised.len());
    push_encoded_path(&mut out, normalised);
    out
}

/// [`encode_path`], appended to `out` (no string of its own).
pub fn push_encoded_path(out: &mut String, normalised: &str) {
    out.extend(utf8_percent_encode(normalised, PATH_ESCAPE));
}

/// Does `prefix` match `path` on segment boundaries (`/orders` matches `/orders/1`, not `/ordersX`)?
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What is left of `path` once the route's `prefix` is taken off: as many leading segments as the
/// prefix has. Counting segments rather than bytes keeps it right when the prefix matched with case
/// folded (a folded character may differ in length from the one sent).
pub fn after_prefix<'a>(prefix: &str, path: &'a str) -> &'a str {
    let depth = segments(prefix);
    path.match_indices('/')
        .nth(depth)
        .map_or("", |(at, _)| &path[at..])
}

/// How many segments a normalised path has (`/` has none).
fn segments(path: &str) -> usize {
    path.split('/').filter(|s| !s.is_empty()).count()
}

/// The form of a normalised path that prefixes and rules compare with: the path itself, or with
/// its case folded when the API says its upstream folds case (`case_insensitive_paths`).
pub fn match_form(path: &str, case_insensitive: bool) -> Cow<'_, str> {
    if case_insensitive {
        fold_case(path)
    } else {
        Cow::Borrowed(path)
    }
}

/// Case folding for upstreams that ignore case: ASCII letters, and beyond ASCII Unicode's full
/// upper-case mapping followed by its lower-case mapping. Going through upper case first folds more
/// than lower-casing or Unicode case folding alone: `ı` (dotless i) and `ſ` (long s) meet `i` and
/// `s` (their upper case is `I` and `S`, which comparisons that upper-case both sides rely on), `ß`
/// meets `ss`, `K` (Kelvin) meets `k`. A gateway that folds more than its upstream treats a few
/// oddly named resources alike; one that folds less lets a client spell its way past a rule. No
/// Unicode normalisation (NFC/NFD) is done.
pub fn fold_case(path: &str) -> Cow<'_, str> {
    if path.is_ascii() {
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(path.to_ascii_lowercase())
        } else {
            Cow::Borrowed(path)
        }
    } else {
        Cow::Owned(path.to_uppercase().to_lowercase())
    }
}

/// The host a request names, without its port and without the one trailing dot of a fully
/// qualified name (`api.test.` is `api.test`, as nginx reads it). [`Router::route`] compares it
/// case-insensitively.
pub fn request_host(host: &str) -> &str {
    let name = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    name.strip_suffix('.').unwrap_or(name)
}

/// One API's place in the route table, as configured.
#[derive(Debug)]
pub struct Route<A> {
    /// Lowercase; `None`: any host.
    pub host: Option<String>,
    /// Normalised, without a trailing `/` (except `/` itself).
    pub prefix: String,
    /// The prefix matches with case folded ([`fold_case`]).
    pub case_insensitive: bool,
    pub api: Arc<A>,
}

/// The route table. As in Envoy's and nginx's virtual hosts, the host chooses first: a request
/// whose host some API names is routed among those APIs only (and gets a 404 if none has a prefix
/// for its path, rather than falling through to a host-less API); any other request is routed among
/// the host-less APIs. Within the chosen set the longest prefix, counted in segments, wins.
#[derive(Debug)]
pub struct Router<A> {
    by_host: Vec<(String, Vec<Route<A>>)>,
    any_host: Vec<Route<A>>,
    /// Every API in the order given, for lookups by name.
    apis: Vec<Arc<A>>,
}

impl<A> Router<A> {
    /// Builds the table; configuration has refused two APIs with the same host and prefix.
    pub fn new(routes: impl IntoIterator<Item = Route<A>>) -> Self {
        let mut router = Router {
            by_host: Vec::new(),
            any_host: Vec::new(),
            apis: Vec::new(),
        };
        for mut route in routes {
            router.apis.push(route.api.clone());
            if route.case_insensitive {
                route.prefix = fold_case(&route.prefix).into_owned();
            }
            let Some(host) = route.host.clone() else {
                router.any_host.push(route);
                continue;
            };
            let i = match router.by_host.iter().position(|(h, _)| *h == host) {
                Some(i) => i,
                None => {
                    router.by_host.push((host, Vec::new()));
                    router.by_host.len() - 1
                }
            };
            router.by_host[i].1.push(route);
        }
        for table in router
            .by_host
            .iter_mut()
            .map(|(_, t)| t)
            .chain([&mut router.any_host])
        {
            // Stable: equal depths keep their order (they cannot both match; see `new`).
            table.sort_by_key(|r| std::cmp::Reverse(segments(&r.prefix)));
        }
        router
    }

    /// The API for a port-less host (any case; configured hosts are lowercase) and a normalised
    /// path.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Arc<A>> {
        let table = host
            .and_then(|host| {
                self.by_host
                    .iter()
                    .find(|(h, _)| h.eq_ignore_ascii_case(host))
            })
            .map_or(&self.any_host, |(_, table)| table);
        // Folded at most once, and only if some API in the set folds.
        let mut folded: Option<Cow<'_, str>> = None;
        table
            .iter()
            .find(|r| {
                let seen: &str = if r.case_insensitive {
                    folded.get_or_insert_with(|| fold_case(path))
                } else {
                    path
                };
                prefix_matches(&r.prefix, seen)
            })
            .map(|r| &r.api)
    }

    /// Every API, in the order configured.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<A>> {
        self.apis.iter()
    }
}

#[cfg(test)]
mod tests;
