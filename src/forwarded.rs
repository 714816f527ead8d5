//! The headers an upstream reads to learn who called and how: `X-Forwarded-For`, `-Proto`,
//! `-Host`, `Forwarded` (RFC 7239) and `X-Real-IP`. They are the gateway's word, not the client's:
//! a trusted proxy's (see `trust`) are extended, anyone else's replaced. Routing headers that
//! some upstream frameworks obey (`X-Original-URL`, `X-Rewrite-URL`) never pass, and the other
//! forwarding claims frameworks build URLs from (`X-Forwarded-Port`, `-Prefix`, ...) pass only
//! from a trusted proxy. `forward` calls
//! [`set_forwarding_headers`] after its own removals and before the identity headers; when the
//! request carries none of these, the gateway's own are handed back to be sent after the request's
//! fields rather than inserted among them.

use http::header::FORWARDED;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::trust::{ClientAddr, Scheme, X_FORWARDED_FOR};

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// IIS and Symfony read these as the request's real target: a client could reach a path the
/// policy never saw.
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const X_REWRITE_URL: HeaderName = HeaderName::from_static("x-rewrite-url");
/// What frameworks read to build absolute URLs and redirects (Spring's ForwardedHeaderFilter,
/// Werkzeug's ProxyFix, Rails, ASP.NET Core): from a client, a way to poison them. tollgate does
/// not set these; only a trusted proxy's pass.
const CLAIMS_FROM_PROXIES: [HeaderName; 6] = [
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("front-end-https"),
];

/// Rewrites the forwarding headers for the upstream. `host` is the request's `Host` (or
/// `:authority`) as tollgate received it. Without a `client` (never, from the listener) every
/// forwarding header is dropped rather than passed.
pub fn set_forwarding_headers(
    headers: &mut HeaderMap,
    added: &mut Vec<(HeaderName, HeaderValue)>,
    client: Option<&ClientAddr>,
    host: Option<HeaderValue>,
) {
    // Usually a request carries none of these: one pass over its names tells, and then the
    // gateway's own go into `added`, the fields the upstream request carries after its map (no
    // removal, no lookup of what a client sent, no insertion).
    if let Some(client) = client
        && !headers.keys().any(is_forwarding)
    {
        added.push((X_FORWARDED_FOR, client.peer_header().clone()));
        added.push((
            X_FORWARDED_PROTO,
            HeaderValue::from_static(client.scheme().as_str()),
        ));
        if let Some(host) = &host {
            added.push((X_FORWARDED_HOST, host.clone()));
        }
        if let Some(forwarded) = hop_forwarded(headers, client, host.as_ref()) {
            added.push((FORWARDED, forwarded));
        }
        added.push((X_REAL_IP, client.client_header().clone()));
        return;
    }
    headers.remove(X_ORIGINAL_URL);
    headers.remove(X_REWRITE_URL);
    let Some(client) = client else {
        for name in [
            X_FORWARDED_FOR,
            X_FORWARDED_PROTO,
            X_FORWARDED_HOST,
            X_REAL_IP,
            FORWARDED,
        ] {
            headers.remove(name);
        }
        remove_claims(headers);
        return;
    };
    let trusted = client.peer_trusted();
    if !trusted {
        remove_claims(headers);
    }
    set_forwarded_for(headers, client, trusted);
    let proto = trusted
        .then(|| single(headers, &X_FORWARDED_PROTO).and_then(|v| Scheme::parse(v.as_bytes())))
        .flatten()
        .unwrap_or(client.scheme());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto.as_str()));
    let forwarded_host = trusted
        .then(|| single(headers, &X_FORWARDED_HOST).filter(|v| is_host(v.as_bytes())))
        .flatten()
        .cloned()
        .or_else(|| host.clone());
    match forwarded_host {
        Some(h) => headers.insert(X_FORWARDED_HOST, h),
        None => headers.remove(X_FORWARDED_HOST),
    };
    set_forwarded(headers, client, trusted, host.as_ref());
    // nginx's realip convention: the one address the upstream should take as the client's.
    headers.insert(X_REAL_IP, client.client_header().clone());
}

/// A header this module sets, removes or reads.
fn is_forwarding(name: &HeaderName) -> bool {
    *name == X_FORWARDED_FOR
        || *name == X_FORWARDED_PROTO
        || *name == X_FORWARDED_HOST
        || *name == X_REAL_IP
        || *name == FORWARDED
        || *name == X_ORIGINAL_URL
        || *name == X_REWRITE_URL
        || CLAIMS_FROM_PROXIES.contains(name)
}

fn remove_claims(headers: &mut HeaderMap) {
    // Usually none is present: one pass over the names, no lookups, no allocation.
    if !headers.keys().any(|n| CLAIMS_FROM_PROXIES.contains(n)) {
        return;
    }
    for name in &CLAIMS_FROM_PROXIES {
        headers.remove(name);
    }
}

/// From a trusted peer, its list plus the peer; from anyone else, the peer alone.
fn set_forwarded_for(headers: &mut HeaderMap, client: &ClientAddr, trusted: bool) {
    let peer = client.peer_header();
    let prior = headers.get_all(X_FORWARDED_FOR).iter().count();
    if !trusted || prior == 0 {
        headers.insert(X_FORWARDED_FOR, peer.clone());
        return;
    }
    let mut joined = Vec::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        joined.extend_from_slice(value.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(peer.as_bytes());
    match HeaderValue::from_bytes(&joined) {
        Ok(v) => headers.insert(X_FORWARDED_FOR, v),
        // Parts of valid values joined by ", " are valid; if not, the peer alone is the truth.
        Err(_) => headers.insert(X_FORWARDED_FOR, peer.clone()),
    };
}

/// RFC 7239 §4: always rewritten. A trusted peer's well-formed elements are kept, then this hop's
/// element is appended (§5: `for` the peer, `proto` the connection's scheme, `host` as received).
fn set_forwarded(
    headers: &mut HeaderMap,
    client: &ClientAddr,
    trusted: bool,
    host: Option<&HeaderValue>,
) {
    match forwarded_value(headers, client, trusted, host) {
        Some(v) => headers.insert(FORWARDED, v),
        None => headers.remove(FORWARDED),
    };
}

/// This hop's own `Forwarded` element, for a request that carried none: the connection's
/// rendering when the host is the one it was rendered for (peer and scheme are the
/// connection's), else a fresh one. Saves two allocations a request on a keep-alive connection.
fn hop_forwarded(
    headers: &HeaderMap,
    client: &ClientAddr,
    host: Option<&HeaderValue>,
) -> Option<HeaderValue> {
    let kept = client.hop_forwarded();
    if let Some((for_host, value)) = kept.get()
        && for_host.as_ref() == host
    {
        return Some(value.clone());
    }
    let value = forwarded_value(headers, client, false, host)?;
    // The first request's host is kept; another host on the same connection renders its own.
    let _ = kept.set((host.cloned(), value.clone()));
    Some(value)
}

/// The `Forwarded` value [`set_forwarded`] sets.
fn forwarded_value(
    headers: &HeaderMap,
    client: &ClientAddr,
    trusted: bool,
    host: Option<&HeaderValue>,
) -> Option<HeaderValue> {
    // Room for this hop's element (`for=[v6];proto=https;host=...`) without growing.
    let mut value = Vec::with_capacity(96);
    if trusted {
        let prior: Vec<&[u8]> = headers
            .get_all(FORWARDED)
            .iter()
            .map(HeaderValue::as_bytes)
            .filter(|v| !v.is_empty())
            .collect();
        if !prior.is_empty() && prior.iter().all(|v| well_formed_forwarded(v)) {
            value = prior.join(&b", "[..]);
            value.extend_from_slice(b", ");
        }
    }
    value.extend_from_slice(b"for=");
    push_node(&mut value, client.peer_header().as_bytes());
    value.extend_from_slice(b";proto=");
    value.extend_from_slice(client.scheme().as_str().as_bytes());
    if let Some(host) = host {
        value.extend_from_slice(b";host=");
        push_value(&mut value, host.as_bytes());
    }
    // The vector's own bytes, not a copy.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok()
}

/// RFC 7239 §6: an IPv6 node is bracketed, and so must be quoted; an IPv4 one is a token.
fn push_node(out: &mut Vec<u8>, ip: &[u8]) {
    if ip.contains(&b':') {
        out.extend_from_slice(b"\"[");
        out.extend_from_slice(ip);
        out.extend_from_slice(b"]\"");
    } else {
        out.extend_from_slice(ip);
    }
}

/// A token as it is; anything else as an RFC 9110 §5.6.4 quoted-string.
fn push_value(out: &mut Vec<u8>, value: &[u8]) {
    if !value.is_empty() && value.iter().all(|&b| is_tchar(b)) {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// The header's value when it has exactly one line.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// `host [ ":" port ]` (RFC 9110 §7.2), one of them: no list, no userinfo.
fn is_host(value: &[u8]) -> bool {
    !value.is_empty()
        && !value.contains(&b',')
        && !value.contains(&b'@')
        && http::uri::Authority::try_from(value).is_ok()
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 7239 §4: `1#forwarded-element`, each `forwarded-pair *( ";" forwarded-pair )` with
/// `token "=" ( token / quoted-string )`, no parameter twice in one element. Whitespace around
/// `,` and `;` is tolerated, as proxies write it.
pub(crate) fn well_formed_forwarded(text: &[u8]) -> bool {
    let mut at = 0;
    let mut names: Vec<&[u8]> = Vec::new();
    let mut pairs = 0;
    loop {
        at = skip_ows(text, at);
        match text.get(at) {
            None => return pairs > 0,
            Some(b',') => {
                names.clear();
                at += 1;
            }
            Some(b';') => at += 1,
            Some(_) => {
                let Some((name, next)) = forwarded_pair(text, at) else {
                    return false;
                };
                if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    return false;
                }
                names.push(name);
                pairs += 1;
                at = skip_ows(text, next);
                if !matches!(text.get(at), None | Some(b',' | b';')) {
                    return false;
                }
            }
        }
    }
}

/// One `token "=" value` at `at`: its name and where it ends.
fn forwarded_pair(text: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let name_end = at + text[at..].iter().take_while(|&&b| is_tchar(b)).count();
    if name_end == at || text.get(name_end) != Some(&b'=') {
        return None;
    }
    let value = name_end + 1;
    let end = if text.get(value) == Some(&b'"') {
        quoted_string_end(text, value)?
    } else {
        let end = value + text[value..].iter().take_while(|&&b| is_tchar(b)).count();
        (end > value).then_some(end)?
    };
    Some((&text[at..name_end], end))
}

/// The end (exclusive) of the quoted-string opening at `at` (RFC 9110 §5.6.4).
fn quoted_string_end(text: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => return Some(i + 1),
            b'\\' => {
                let escaped = *text.get(i + 1)?;
                if (escaped != b'\t' && escaped < 0x20) || escaped == 0x7f {
                    return None;
                }
                i += 2;
            }
            b'\t' | 0x20..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
    None
}

fn skip_ows(text: &[u8], at: usize) -> usize {
    at + text[at..]
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_syntax_per_rfc_7239() {
        for good in [
            "for=192.0.2.60;proto=http;by=203.0.113.43",
            "for=\"[2001:db8:cafe::17]:4711\"",
            "for=192.0.2.43, for=198.51.100.17",
            "for=unknown; proto=https ,for=_hidden",
            "host=\"a \\\"b\\\"\"",
            "for=1;;proto=http",
        ] {
            assert!(well_formed_forwarded(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "",
            "for",
            "for=",
            "for=[::1]",
            "for=\"unterminated",
            "for=1;for=2",
            "for=1 proto=http",
            "=1",
            "for=a\"b\"",
            "{\"for\":1}",
        ] {
            assert!(!well_formed_forwarded(bad.as_bytes()), "{bad:?}");
        }
    }

    fn rewritten(peer: &str, trusted: &[&str], sent: &[(&str, &str)]) -> HeaderMap {
        let trust = crate::trust::TrustedProxies::new(
            trusted
                .iter()
                .map(|t| crate::trust::TrustedProxies::parse_entry(t).unwrap())
                .collect(),
        );
        let mut headers = HeaderMap::new();
        for (name, value) in sent {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let client = ClientAddr::for_connection(peer.parse().unwrap(), Scheme::Http, &trust)
            .for_request(&headers, &trust);
        let host = HeaderValue::from_static("shop.example");
        let mut added = Vec::new();
        set_forwarding_headers(&mut headers, &mut added, Some(&client), Some(host));
        for (name, value) in added {
            assert!(!headers.contains_key(&name), "{name} is set once");
            headers.append(name, value);
        }
        headers
    }

    #[test]
    fn ipv6_peers_are_quoted_and_mapped_ipv4_reads_as_ipv4() {
        let h = rewritten("[2001:db8::7]:5000", &[], &[("forwarded", "for=1.2.3.4")]);
        assert_eq!(
            h[FORWARDED],
            "for=\"[2001:db8::7]\";proto=http;host=shop.example"
        );
        assert_eq!(h[X_FORWARDED_FOR], "2001:db8::7");
        let h = rewritten("[::ffff:10.0.0.1]:5000", &["10.0.0.0/8"], &[]);
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(h[X_REAL_IP], "10.0.0.1");
    }

    /// The shortcut for requests that carry no forwarding header must write what the general
    /// path writes: a routing header that only the general path removes changes nothing else.
    #[test]
    fn the_shortcut_writes_what_the_general_path_writes() {
        for (peer, trusted) in [
            ("192.0.2.7:5000", &[][..]),
            ("10.0.0.1:5000", &["10.0.0.0/8"][..]),
            ("[2001:db8::7]:5000", &[][..]),
        ] {
            let sent = [("accept", "*/*")];
            let shortcut = rewritten(peer, trusted, &sent);
            let general = rewritten(peer, trusted, &[sent[0], ("x-original-url", "/admin")]);
            assert!(!general.contains_key(X_ORIGINAL_URL));
            assert_eq!(shortcut, general, "{peer} trusted {trusted:?}");
            assert_eq!(shortcut.len(), 6, "{shortcut:?}");
        }
    }

    /// Requests on one connection share its rendering of `Forwarded`, for the host it was made
    /// for only: a request for another host (or none) gets its own, never the first one's.
    #[test]
    fn a_connections_forwarded_element_is_reused_for_its_host_only() {
        let trust = crate::trust::TrustedProxies::default();
        let connection =
            ClientAddr::for_connection("192.0.2.7:5000".parse().unwrap(), Scheme::Https, &trust);
        let forwarded = |host: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            let client = connection.for_request(&headers, &trust);
            let mut added = Vec::new();
            let host = host.map(HeaderValue::from_static);
            set_forwarding_headers(&mut headers, &mut added, Some(&client), host);
            let (_, value) = added.into_iter().find(|(n, _)| *n == FORWARDED).unwrap();
            value
        };
        let first = forwarded(Some("shop.example"));
        assert_eq!(first, "for=192.0.2.7;proto=https;host=shop.example");
        assert_eq!(
            forwarded(Some("other.example")),
            "for=192.0.2.7;proto=https;host=other.example"
        );
        assert_eq!(forwarded(None), "for=192.0.2.7;proto=https");
        let again = forwarded(Some("shop.example"));
        assert_eq!(again, first);
        // The same bytes, not a copy of them: the connection's rendering was reused.
        assert_eq!(again.as_bytes().as_ptr(), first.as_bytes().as_ptr());
    }

    #[test]
    fn no_client_means_no_forwarding_claims_pass() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.insert(FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        h.insert(X_REAL_IP, HeaderValue::from_static("6.6.6.6"));
        let mut added = Vec::new();
        set_forwarding_headers(&mut h, &mut added, None, None);
        assert!(h.is_empty() && added.is_empty(), "{h:?} {added:?}");
    }

    #[test]
    fn values_are_quoted_when_they_are_not_tokens() {
        let mut out = Vec::new();
        push_value(&mut out, b"shop.example:8443");
        assert_eq!(out, b"\"shop.example:8443\"");
        out.clear();
        push_value(&mut out, b"shop.example");
        assert_eq!(out, b"shop.example");
        out.clear();
        push_node(&mut out, b"::1");
        assert_eq!(out, b"\"[::1]\"");
        assert!(is_host(b"shop.example:8443") && is_host(b"[::1]:80"));
        assert!(!is_host(b"a, b") && !is_host(b"u@h") && !is_host(b"") && !is_host(b"a b"));
    }
}
