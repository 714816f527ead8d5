//! The client certificate a TLS connection presented and the listener verified against
//! `[listen.tls] client_ca` (mTLS): parsed once per connection (`server::tls`), carried on each
//! of its requests like `ClientAddr`, read by the policy (`[[api.rule]] client_certificate`) and
//! turned into identity headers for APIs with `client_cert_headers`. Client-sent copies of those
//! headers never pass (`forward` strips [`HEADER_PREFIX`] from every request).

use http::{HeaderName, HeaderValue};
use x509_parser::extensions::GeneralName;

/// Every identity header below starts with it; client headers that do are removed.
pub const HEADER_PREFIX: &str = "x-client-cert-";
pub const SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");
pub const SAN_DNS: HeaderName = HeaderName::from_static("x-client-cert-san-dns");
pub const SAN_URI: HeaderName = HeaderName::from_static("x-client-cert-san-uri");
pub const SAN_EMAIL: HeaderName = HeaderName::from_static("x-client-cert-san-email");

/// A verified client certificate's leaf: who it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// RFC 4514 form (`CN=alice, O=Example`).
    pub subject: String,
    pub dns: Vec<String>,
    /// URI SANs, such as a SPIFFE ID.
    pub uri: Vec<String>,
    pub email: Vec<String>,
}

// === impl ClientCertificate ===

impl ClientCertificate {
    /// The leaf's subject and SANs; `None` if it does not parse (rustls verified it, so that
    /// would be a parser disagreement: the request then carries no identity at all).
    pub fn from_der(leaf: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        let mut out = ClientCertificate {
            subject: cert.subject().to_string(),
            dns: Vec::new(),
            uri: Vec::new(),
            email: Vec::new(),
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => out.dns.push((*n).to_owned()),
                    GeneralName::URI(u) => out.uri.push((*u).to_owned()),
                    GeneralName::RFC822Name(e) => out.email.push((*e).to_owned()),
                    // Addresses, directory names and the rest are not identities upstreams use.
                    GeneralName::OtherName(..)
                    | GeneralName::X400Address(_)
                    | GeneralName::DirectoryName(_)
                    | GeneralName::EDIPartyName(_)
                    | GeneralName::IPAddress(_)
                    | GeneralName::RegisteredID(_)
                    | GeneralName::Invalid(..) => {}
                }
            }
        }
        Some(out)
    }

    /// The identity headers: the subject, and each SAN kind as a comma-separated list (RFC 9110
    /// §5.3). Bytes outside visible ASCII, `%`, and in the lists `,` are percent-encoded, so no
    /// value can split into two or smuggle a line.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(4);
        if let Some(v) = value(&encode(&self.subject, false)) {
            out.push((SUBJECT, v));
        }
        for (name, list) in [
            (SAN_DNS, &self.dns),
            (SAN_URI, &self.uri),
            (SAN_EMAIL, &self.email),
        ] {
            if list.is_empty() {
                continue;
            }
            let joined: Vec<String> = list.iter().map(|s| encode(s, true)).collect();
            if let Some(v) = value(&joined.join(",")) {
                out.push((name, v));
            }
        }
        out
    }
}

fn encode(text: &str, list: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let plain = (0x20..0x7f).contains(&b) && b != b'%' && !(list && b == b',');
        if plain {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_split_or_break_lines() {
        assert_eq!(encode("a,b\r\nc%é", true), "a%2Cb%0D%0Ac%25%C3%A9");
        assert_eq!(encode("CN=a, O=b", false), "CN=a, O=b");
        let cert = ClientCertificate {
            subject: "CN=x".into(),
            dns: vec![],
            uri: vec!["spiffe://t/a".into(), "urn:x,y".into()],
            email: vec![],
        };
        let h = cert.headers();
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].1, "spiffe://t/a,urn:x%2Cy");
    }
}
