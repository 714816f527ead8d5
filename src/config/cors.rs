//! `[api.cors]`: which browser origins may call an API from script (the Fetch standard's CORS
//! protocol). Checked here, and rendered once into the header values the request path copies
//! (`policy::cors` answers preflights and adds the grants to every answer).

use std::collections::HashMap;

use http::{HeaderName, HeaderValue, Method};
use url::Url;

use super::ConfigError;
use super::raw::RawCors;

/// The methods a preflight may ask for when `allowed_methods` is not set: Fetch's CORS-safelisted
/// methods (which still preflight when they carry `Authorization`).
const DEFAULT_METHODS: [&str; 3] = ["GET", "HEAD", "POST"];
/// The request headers allowed when `allowed_headers` is not set: what a bearer-token call needs.
const DEFAULT_HEADERS: [&str; 2] = ["authorization", "content-type"];

/// Which origins are granted access.
#[derive(Debug, Clone)]
pub enum CorsOrigins {
    /// `*`: every origin (never with credentials); the grant is the literal `*`.
    Any,
    /// Exact origins in Fetch's serialisation (`scheme://host[:port]`, lowercase, no default
    /// port), each with its grant rendered once: the configured value, never the client's bytes.
    Exact(HashMap<Box<str>, HeaderValue>),
}

/// `*`, or an explicit list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsList<T> {
    Any,
    Only(Vec<T>),
}

#[derive(Debug, Clone)]
pub struct CorsSettings {
    pub origins: CorsOrigins,
    pub methods: CorsList<Method>,
    /// Lowercase names.
    pub headers: CorsList<HeaderName>,
    /// `Access-Control-Allow-Methods` of a granted preflight.
    pub allow_methods: HeaderValue,
    /// `Access-Control-Expose-Headers`, when any are exposed.
    pub expose_headers: Option<HeaderValue>,
    /// `Access-Control-Expose-Headers` for a gRPC answer: the list with `grpc-status` and
    /// `grpc-message`, without which a browser's gRPC-Web client cannot read how its call ended.
    pub grpc_expose_headers: HeaderValue,
    /// `Access-Control-Max-Age` in seconds, when set.
    pub max_age: Option<HeaderValue>,
    pub allow_credentials: bool,
}

pub(super) fn cors(raw: RawCors, path: &str) -> Result<CorsSettings, ConfigError> {
    let credentials = raw.allow_credentials;
    let key = |k: &str| format!("{path}.{k}");
    let origins = origins(&raw.allowed_origins, &key("allowed_origins"), credentials)?;
    let methods = list(
        &raw.allowed_methods
            .unwrap_or_else(|| owned(&DEFAULT_METHODS)),
        &key("allowed_methods"),
        credentials,
        token(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok()),
    )?;
    if methods == CorsList::Only(Vec::new()) {
        return Err(ConfigError::at(
            key("allowed_methods"),
            "an empty list allows no method: omit the key for GET, HEAD, POST",
        ));
    }
    let headers = list(
        &raw.allowed_headers
            .unwrap_or_else(|| owned(&DEFAULT_HEADERS)),
        &key("allowed_headers"),
        credentials,
        token(header_name),
    )?;
    let expose = list(
        &raw.expose_headers,
        &key("expose_headers"),
        credentials,
        token(header_name),
    )?;
    let allow_methods = match &methods {
        CorsList::Any => HeaderValue::from_static("*"),
        CorsList::Only(ms) => joined(ms.iter().map(Method::as_str), &key("allowed_methods"))?,
    };
    let expose_headers = match &expose {
        CorsList::Any => Some(HeaderValue::from_static("*")),
        CorsList::Only(hs) if hs.is_empty() => None,
        CorsList::Only(hs) => Some(joined(
            hs.iter().map(HeaderName::as_str),
            &key("expose_headers"),
        )?),
    };
    let grpc_expose_headers = grpc_exposed(&expose, &key("expose_headers"))?;
    Ok(CorsSettings {
        origins,
        methods,
        headers,
        allow_methods,
        expose_headers,
        grpc_expose_headers,
        max_age: raw.max_age.map(|d| HeaderValue::from(d.0.as_secs())),
        allow_credentials: credentials,
    })
}

fn origins(written: &[String], key: &str, credentials: bool) -> Result<CorsOrigins, ConfigError> {
    if written.is_empty() {
        return Err(ConfigError::at(
            key,
            "list at least one origin (\"https://app.example.com\"), or \"*\"",
        ));
    }
    let mut exact = HashMap::with_capacity(written.len());
    let listed = list(written, key, credentials, |text, at| {
        let origin = origin(text, at)?;
        let grant = HeaderValue::from_str(&origin)
            .map_err(|_| ConfigError::at(at, format!("{text:?} cannot be a header value")))?;
        match exact.insert(origin.into_boxed_str(), grant) {
            Some(_) => Err(ConfigError::at(at, format!("{text:?} is listed twice"))),
            None => Ok(()),
        }
    })?;
    Ok(match listed {
        CorsList::Any => CorsOrigins::Any,
        CorsList::Only(_) => CorsOrigins::Exact(exact),
    })
}

/// One origin, in the serialisation browsers send it in (Fetch §3.2.5, URL §4.5: scheme and host
/// lowercase, the default port left out), so the request's `Origin` compares byte for byte.
fn origin(text: &str, key: &str) -> Result<String, ConfigError> {
    if text.eq_ignore_ascii_case("null") {
        // Sandboxed frames, files and cross-origin redirects all send `null`: any page can.
        return Err(ConfigError::at(
            key,
            "\"null\" is the origin of sandboxed frames, files and redirects, which any page can \
             produce: allowing it allows everyone",
        ));
    }
    let url = Url::parse(text).map_err(|e| {
        ConfigError::at(
            key,
            format!("{text:?} is not an origin (scheme://host[:port]): {e}"),
        )
    })?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(ConfigError::at(
            key,
            format!("{text:?}: only http and https origins are supported"),
        ));
    }
    let serialised = url.origin().ascii_serialization();
    if text.to_ascii_lowercase() != serialised {
        return Err(ConfigError::at(
            key,
            format!(
                "{text:?} is not an origin as browsers send it: no path, user or default port \
                 (write {serialised:?})"
            ),
        ));
    }
    Ok(serialised)
}

/// `allowed_origins`, `allowed_methods`, `allowed_headers`, `expose_headers`: a list of items,
/// each parsed with its key path, or `*` alone (Fetch: with credentials `*` is a literal name, so
/// it is refused there rather than misread).
fn list<T>(
    written: &[String],
    key: &str,
    credentials: bool,
    mut parse: impl FnMut(&str, &str) -> Result<T, ConfigError>,
) -> Result<CorsList<T>, ConfigError> {
    let mut out = Vec::with_capacity(written.len());
    for (j, text) in written.iter().enumerate() {
        let at = format!("{key}[{j}]");
        if text == "*" {
            wildcard_alone(written.len(), credentials, &at)?;
            return Ok(CorsList::Any);
        }
        out.push(parse(text, &at)?);
    }
    Ok(CorsList::Only(out))
}

/// A parser for [`list`] of RFC 9110 tokens (method and header names).
fn token<T>(parse: impl Fn(&str) -> Option<T>) -> impl FnMut(&str, &str) -> Result<T, ConfigError> {
    move |text, at| {
        parse(text)
            .ok_or_else(|| ConfigError::at(at, format!("{text:?} is not a token (RFC 9110)")))
    }
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn wildcard_alone(len: usize, credentials: bool, key: &str) -> Result<(), ConfigError> {
    if credentials {
        return Err(ConfigError::at(
            key,
            "\"*\" cannot be combined with allow_credentials = true: a browser sends credentials \
             only to an answer that names them exactly (Fetch §3.2.5)",
        ));
    }
    if len > 1 {
        return Err(ConfigError::at(
            key,
            "\"*\" already allows everything: list it alone",
        ));
    }
    Ok(())
}

fn header_name(text: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(text.to_ascii_lowercase().as_bytes()).ok()
}

/// The exposed headers and gRPC's status headers (gRPC over HTTP/2: `grpc-status`, `grpc-message`),
/// each once; `*` already covers them (it is refused with credentials, where it would not).
fn grpc_exposed(expose: &CorsList<HeaderName>, key: &str) -> Result<HeaderValue, ConfigError> {
    const GRPC: [&str; 2] = ["grpc-status", "grpc-message"];
    match expose {
        CorsList::Any => Ok(HeaderValue::from_static("*")),
        CorsList::Only(hs) => {
            let listed = hs.iter().map(HeaderName::as_str);
            let missing = GRPC.into_iter().filter(|g| !hs.iter().any(|h| h == g));
            joined(listed.chain(missing), key)
        }
    }
}

fn joined<'a>(items: impl Iterator<Item = &'a str>, key: &str) -> Result<HeaderValue, ConfigError> {
    let text = items.collect::<Vec<_>>().join(", ");
    HeaderValue::from_str(&text).map_err(|_| ConfigError::at(key, "cannot be a header value"))
}
