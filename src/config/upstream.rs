//! `[[api]] upstream` and its `upstream_*` keys: the endpoints (one URL or a list), the protocol,
//! balancing, and TLS to `https://` upstreams. The TLS files are read here, so a bad one is a
//! config error naming its key, and the compiled [`Upstream`] carries a ready rustls config.

use std::path::Path;
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use rustls_pki_types::ServerName;
use url::Url;

use super::ConfigError;
use super::raw::{RawApi, UpstreamBalance, UpstreamProtocol};
use crate::upstream::Upstream;
use crate::upstream::tls::{TlsOptions, client_config};

/// Where an API's requests go: its endpoints, plus a base path (without trailing `/`).
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    /// The first endpoint's URL, for `check` and `explain`.
    pub url: Url,
    /// Every endpoint's URL, as written.
    pub urls: Vec<Url>,
    pub base_path: String,
    /// `insecure_skip_verify`: certificates are not verified (warned about at start and by `check`).
    pub insecure_skip_verify: bool,
    /// The compiled endpoints, their health and their TLS; shared by every worker.
    pub compiled: Arc<Upstream>,
    pub protocol: UpstreamProtocol,
    pub balance: UpstreamBalance,
    /// For an `https://` upstream, what `check` shows of its TLS settings.
    pub tls: Option<UpstreamTlsSummary>,
}

/// An `https://` upstream's TLS settings as `check` shows them: file paths and names as written,
/// never the files' contents, so a client key never reaches a terminal or a CI log.
#[derive(Debug, Clone)]
pub struct UpstreamTlsSummary {
    /// `upstream_ca`; `None`: the system's trusted roots.
    pub ca: Option<String>,
    /// `upstream_server_name`; `None`: each endpoint's host is verified.
    pub server_name: Option<String>,
    /// `upstream_client_cert`, when tollgate presents one (mTLS).
    pub client_cert: Option<String>,
}

/// The ALPN protocols offered per `upstream_protocol` (RFC 7301; `h2` is RFC 9113 §3.2).
fn alpn(protocol: UpstreamProtocol) -> &'static [&'static [u8]] {
    match protocol {
        UpstreamProtocol::Auto => &[b"h2", b"http/1.1"],
        UpstreamProtocol::Http1 => &[b"http/1.1"],
        UpstreamProtocol::Http2 => &[b"h2"],
    }
}

pub(super) fn upstream(raw: &RawApi, path: &str) -> Result<UpstreamTarget, ConfigError> {
    let urls = parse_urls(raw, path)?;
    let (first, _) = &urls[0];
    let https = first.scheme() == "https";
    let base_path = first.path().trim_end_matches('/').to_owned();
    for (url, at) in &urls[1..] {
        // One API, one kind of endpoint: a request must not switch security or path by chance.
        if url.scheme() != first.scheme() || url.path().trim_end_matches('/') != base_path {
            return Err(ConfigError::at(
                at,
                "every endpoint of an API has the same scheme and path as the first",
            ));
        }
    }
    let protocol = raw.upstream_protocol.unwrap_or_default();
    let balance = raw.upstream_balance.unwrap_or_default();
    let tls = if https {
        Some(tls(raw, path, protocol)?)
    } else {
        refuse_tls_keys(raw, path)?;
        None
    };
    let mut endpoints = Vec::with_capacity(urls.len());
    for (url, at) in &urls {
        endpoints.push(endpoint(
            url,
            at,
            https,
            raw.upstream_server_name.as_deref(),
            path,
        )?);
    }
    let compiled = Upstream::new(
        &raw.name,
        if https { Scheme::HTTPS } else { Scheme::HTTP },
        protocol,
        balance,
        tls,
        endpoints,
    );
    let summary = https.then(|| UpstreamTlsSummary {
        ca: raw.upstream_ca.clone(),
        server_name: raw.upstream_server_name.clone(),
        client_cert: raw.upstream_client_cert.clone(),
    });
    Ok(UpstreamTarget {
        url: urls[0].0.clone(),
        urls: urls.into_iter().map(|(u, _)| u).collect(),
        base_path,
        insecure_skip_verify: raw.insecure_skip_verify,
        compiled: Arc::new(compiled),
        protocol,
        balance,
        tls: summary,
    })
}

/// Every endpoint's URL (at least one), with the key it was written at.
fn parse_urls(raw: &RawApi, path: &str) -> Result<Vec<(Url, String)>, ConfigError> {
    let texts = raw.upstream.clone().into_vec();
    if texts.is_empty() {
        return Err(ConfigError::at(
            format!("{path}.upstream"),
            "lists no upstream URL",
        ));
    }
    let mut urls = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let at = if texts.len() == 1 {
            format!("{path}.upstream")
        } else {
            format!("{path}.upstream[{i}]")
        };
        urls.push((parse_url(text, &at)?, at));
    }
    Ok(urls)
}

fn parse_url(text: &str, key: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text)
        .map_err(|e| ConfigError::at(key, format!("{text:?} is not a URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConfigError::at(
            key,
            format!(
                "scheme {:?} is not supported: upstreams are http:// or https://",
                url.scheme()
            ),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(ConfigError::at(
            key,
            "an upstream has no query, fragment or user info",
        ));
    }
    if url.host_str().is_none() {
        return Err(ConfigError::at(key, "the upstream URL has no host"));
    }
    Ok(url)
}

type EndpointParts = (Authority, http::HeaderValue, Option<ServerName<'static>>);

fn endpoint(
    url: &Url,
    key: &str,
    https: bool,
    server_name: Option<&str>,
    path: &str,
) -> Result<EndpointParts, ConfigError> {
    let host = url
        .host_str()
        .ok_or_else(|| ConfigError::at(key, "the upstream URL has no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let authority = format!("{host}:{port}")
        .parse::<Authority>()
        .map_err(|e| ConfigError::at(key, format!("bad authority: {e}")))?;
    let header = http::HeaderValue::from_str(authority.as_str())
        .map_err(|_| ConfigError::at(key, "the authority cannot be a Host header"))?;
    let name = if https {
        // The name verified in the certificate, and sent as SNI (not for IP addresses, RFC 6066 §3).
        let (text, at) = match server_name {
            Some(name) => (name.to_owned(), format!("{path}.upstream_server_name")),
            None => (host.trim_matches(['[', ']']).to_owned(), key.to_owned()),
        };
        Some(
            ServerName::try_from(text.clone())
                .map_err(|_| ConfigError::at(at, format!("{text:?} is not a server name")))?,
        )
    } else {
        None
    };
    Ok((authority, header, name))
}

/// The API's rustls config, and a key telling its connections apart from other settings'.
fn tls(
    raw: &RawApi,
    path: &str,
    protocol: UpstreamProtocol,
) -> Result<(Arc<rustls::ClientConfig>, String), ConfigError> {
    let key = |k: &str| format!("{path}.{k}");
    let identity = match (&raw.upstream_client_cert, &raw.upstream_client_key) {
        (Some(cert), Some(k)) => Some((Path::new(cert.as_str()), Path::new(k.as_str()))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::at(
                key("upstream_client_key"),
                "upstream_client_cert needs its key: set upstream_client_key too",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::at(
                key("upstream_client_cert"),
                "upstream_client_key needs its certificate: set upstream_client_cert too",
            ));
        }
    };
    if raw.insecure_skip_verify && raw.upstream_ca.is_some() {
        return Err(ConfigError::at(
            key("insecure_skip_verify"),
            "contradicts upstream_ca: certificates are either verified against it or not at all",
        ));
    }
    let config = client_config(&TlsOptions {
        ca: raw.upstream_ca.as_deref().map(Path::new),
        identity,
        insecure_skip_verify: raw.insecure_skip_verify,
        alpn: alpn(protocol),
    })
    .map_err(|e| ConfigError::at(key(e.key()), e.to_string()))?;
    // Connections made with other trust or identity settings are never shared with these.
    let fingerprint = format!(
        "sni={:?} ca={:?} cert={:?} key={:?} insecure={}",
        raw.upstream_server_name,
        raw.upstream_ca,
        raw.upstream_client_cert,
        raw.upstream_client_key,
        raw.insecure_skip_verify
    );
    Ok((config, fingerprint))
}

/// The TLS keys mean nothing to an `http://` upstream: setting one is a mistake worth naming.
fn refuse_tls_keys(raw: &RawApi, path: &str) -> Result<(), ConfigError> {
    let set = [
        ("upstream_ca", raw.upstream_ca.is_some()),
        ("upstream_server_name", raw.upstream_server_name.is_some()),
        ("upstream_client_cert", raw.upstream_client_cert.is_some()),
        ("upstream_client_key", raw.upstream_client_key.is_some()),
        ("insecure_skip_verify", raw.insecure_skip_verify),
    ];
    match set.iter().find(|(_, on)| *on) {
        Some((name, _)) => Err(ConfigError::at(
            format!("{path}.{name}"),
            "applies to https:// upstreams only; this API's upstream is http://",
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
