//! Whose word about the client tollgate takes. [`TrustedProxies`] is `[listen] trusted_proxies`
//! compiled; [`ClientAddr`] is what the listener puts on every request: the peer that connected,
//! whether it is a trusted proxy, the scheme the request arrived over, and the client address,
//! found by walking a trusted peer's `X-Forwarded-For` from the right. `forward` reads it to write
//! the headers upstreams trust (`forwarded`); per-address limits read [`ClientAddr::client`].

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The networks whose forwarding headers are believed (extended), not replaced. Empty: nobody's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    // Shared: every connection holds the list, and it never changes while the process runs.
    nets: Arc<[IpNet]>,
}

/// The scheme of the connection a request arrived over: this hop's `proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Who sent one request, as far as tollgate can tell; set by the listener on every request.
#[derive(Debug, Clone)]
pub struct ClientAddr {
    peer: IpAddr,
    /// `peer`, rendered once per connection (for `X-Forwarded-For` and `Forwarded`).
    peer_text: HeaderValue,
    peer_trusted: bool,
    scheme: Scheme,
    client: IpAddr,
    /// `client`, rendered (for `X-Real-IP`).
    client_text: HeaderValue,
    /// This hop's `Forwarded` element as the connection's first request needed it, and the host
    /// it names: shared by every request on the connection (they all have its peer and scheme),
    /// so the next request for the same host clones it instead of rendering it again.
    hop_forwarded: Arc<OnceLock<(Option<HeaderValue>, HeaderValue)>>,
}

// === impl TrustedProxies ===

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies { nets: nets.into() }
    }

    /// One `trusted_proxies` entry: a CIDR (`10.0.0.0/8`, `::1/128`) or a bare address (a single
    /// host). Host bits set under the prefix (`10.1.2.3/8`) are refused: the entry would not say
    /// what its writer meant.
    pub fn parse_entry(text: &str) -> Result<IpNet, String> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(IpNet::from(ip.to_canonical()));
        }
        let net: IpNet = text
            .parse()
            .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR network"))?;
        if net.trunc() != net {
            return Err(format!(
                "{text:?} has host bits set (the network is {})",
                net.trunc()
            ));
        }
        Ok(net)
    }

    /// Whether `ip` is in one of the networks (IPv4-mapped IPv6 addresses read as IPv4, as a
    /// dual-stack listener reports IPv4 peers).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// The networks, comma-separated, as `tollgate check` shows them.
impl std::fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

// === impl Scheme ===

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// `http` or `https`, any case; anything else is not a scheme tollgate repeats.
    pub fn parse(text: &[u8]) -> Option<Scheme> {
        if text.eq_ignore_ascii_case(b"http") {
            Some(Scheme::Http)
        } else if text.eq_ignore_ascii_case(b"https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }
}

// === impl ClientAddr ===

impl ClientAddr {
    /// A connection's facts, once when it is accepted; the client is the peer until a request
    /// says otherwise ([`ClientAddr::for_request`]).
    pub fn for_connection(remote: SocketAddr, scheme: Scheme, trusted: &TrustedProxies) -> Self {
        let peer = remote.ip().to_canonical();
        let peer_text = render(peer);
        ClientAddr {
            peer,
            peer_text: peer_text.clone(),
            peer_trusted: trusted.contains(peer),
            scheme,
            client: peer,
            client_text: peer_text,
            hop_forwarded: Arc::default(),
        }
    }

    /// The client address for one request on this connection. From a trusted peer,
    /// `X-Forwarded-For` is walked from the right past trusted addresses: the first untrusted
    /// one is the client (all trusted: the leftmost). A malformed entry stops the walk at the last
    /// good address: what lies left of it cannot be read, so it is not believed. From anyone
    /// else the client is the peer, whatever the request claims.
    pub fn for_request(&self, headers: &HeaderMap, trusted: &TrustedProxies) -> Self {
        if !self.peer_trusted {
            return self.clone();
        }
        let client = walk_forwarded_for(self.peer, headers, trusted);
        ClientAddr {
            client,
            client_text: render(client),
            ..self.clone()
        }
    }

    /// The address that connected to tollgate.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// The client: the peer, or what a trusted peer said the client was.
    pub fn client(&self) -> IpAddr {
        self.client
    }

    pub fn peer_trusted(&self) -> bool {
        self.peer_trusted
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub(crate) fn peer_header(&self) -> &HeaderValue {
        &self.peer_text
    }

    pub(crate) fn client_header(&self) -> &HeaderValue {
        &self.client_text
    }

    /// See [`ClientAddr::hop_forwarded`]: set once, by the first request that renders it.
    pub(crate) fn hop_forwarded(&self) -> &OnceLock<(Option<HeaderValue>, HeaderValue)> {
        &self.hop_forwarded
    }
}

fn render(ip: IpAddr) -> HeaderValue {
    // An address's text is always a valid header value; the fallback is never taken.
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

fn walk_forwarded_for(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let mut client = peer;
    // The last header line holds the most recent hops.
    for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_node(entry.trim()) else {
                return client;
            };
            client = ip;
            if !trusted.contains(ip) {
                return client;
            }
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, with or without a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`, `[2001:db8::1]`), as the proxies in the wild write them.
pub(crate) fn parse_node(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            entries
                .iter()
                .map(|e| TrustedProxies::parse_entry(e).unwrap())
                .collect(),
        )
    }

    fn client_of(peer: &str, xff: &[&str], trust: &[&str]) -> IpAddr {
        let trust = trusted(trust);
        let mut headers = HeaderMap::new();
        for v in xff {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        let peer: SocketAddr = format!("{peer}:1234").parse().unwrap();
        ClientAddr::for_connection(peer, Scheme::Http, &trust)
            .for_request(&headers, &trust)
            .client()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn entries_are_cidrs_or_addresses() {
        let t = trusted(&["10.0.0.0/8", "::1/128", "192.0.2.7", "2001:db8::/32"]);
        assert!(t.contains(ip("10.200.0.1")));
        assert!(
            t.contains(ip("::ffff:10.0.0.1")),
            "IPv4-mapped reads as IPv4"
        );
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("192.0.2.7")));
        assert!(!t.contains(ip("192.0.2.8")));
        assert!(t.contains(ip("2001:db8:1::5")));
        assert!(!t.contains(ip("11.0.0.1")));
        for bad in ["10.0.0.0/33", "10.1.2.3/8", "localhost", "", "10.0.0.0/"] {
            assert!(TrustedProxies::parse_entry(bad).is_err(), "{bad:?}");
        }
        assert!(TrustedProxies::default().is_empty());
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let lb: &[&str] = &["127.0.0.1/32", "10.0.0.0/8"];
        let cases: [(&[&str], &[&str], &str); 9] = [
            // Untrusted peer: the header is not read at all.
            (&["203.0.113.9"], &[], "127.0.0.1"),
            // Trusted peer, one hop.
            (&["203.0.113.9"], lb, "203.0.113.9"),
            // A client's forged left part is skipped: the walk stops at the first untrusted hop.
            (&["6.6.6.6, 203.0.113.9, 10.0.0.2"], lb, "203.0.113.9"),
            // Several header lines: the last is the most recent.
            (&["203.0.113.9", "10.0.0.2:8080"], lb, "203.0.113.9"),
            // Every hop trusted: the leftmost.
            (&["10.0.0.3, 10.0.0.2"], lb, "10.0.0.3"),
            // Malformed: the last good address.
            (&["203.0.113.9, junk, 10.0.0.2"], lb, "10.0.0.2"),
            (&["unknown"], lb, "127.0.0.1"),
            // No header: the peer.
            (&[], lb, "127.0.0.1"),
            (&["[2001:db8::1]:443"], lb, "2001:db8::1"),
        ];
        for (xff, trust, client) in cases {
            assert_eq!(client_of("127.0.0.1", xff, trust), ip(client), "{xff:?}");
        }
    }
}
