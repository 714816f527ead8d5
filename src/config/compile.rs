//! Checks the raw file structs and turns them into [`Settings`]: every default applied, every URL
//! parsed, every contradiction refused with the key path and the reason.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use http::Method;
use url::Url;

use super::ConfigError;
use super::raw::{
    ClientAuth, LogFormat, RawApi, RawCache, RawConfig, RawListen, RawProvider, RawRule,
    ScopeMatch, TokenSource, ValidationMode,
};

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: ListenSettings,
    pub log: LogSettings,
    pub provider: ProviderSettings,
    pub cache: CacheSettings,
    pub apis: Vec<ApiSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenSettings {
    pub address: SocketAddr,
    pub admin_address: SocketAddr,
    pub max_connections: usize,
    /// Threads that accept and serve connections, each with its own event loop; `None`: one per
    /// CPU the process may use.
    pub workers: Option<usize>,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// A secret from the configuration: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSettings {
    /// Kept as written: the metadata's `issuer` and tokens' `iss` must equal it byte for byte.
    pub issuer: String,
    pub authorize_url: Option<Url>,
    pub token_url: Option<Url>,
    pub introspection_url: Option<Url>,
    pub jwks_url: Option<Url>,
    pub registration_url: Option<Url>,
    pub introspection_client_id: String,
    pub introspection_client_secret: Secret,
    pub introspection_auth: ClientAuth,
    pub registration_authorization: Option<Secret>,
    pub request_timeout: Duration,
    pub jwt: JwtSettings,
}

/// Local JWT validation (RFC 7519, RFC 9068) against the provider's JWKS (RFC 7517).
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    /// Asymmetric algorithms only: `none` and HMAC are refused when the config is read.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub leeway: Duration,
    /// When set, the JOSE `typ` must be this (or `application/` + this), e.g. `at+jwt`.
    pub typ: Option<String>,
    pub max_token_bytes: usize,
    /// At most one JWKS fetch per this long for unknown `kid`s.
    pub jwks_min_refresh: Duration,
    /// Refresh interval without `Cache-Control: max-age`; with one, it is clamped to the bounds.
    pub jwks_refresh: Duration,
    pub jwks_refresh_min: Duration,
    pub jwks_refresh_max: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub max_entries: u64,
    pub max_ttl: Duration,
    pub negative_ttl: Duration,
    pub stale_if_error: Duration,
}

/// Who may call: exact client ids, or no check at all (Anypoint's "skip client id validation").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCheck {
    Skip,
    Contracts(HashSet<String>),
}

/// What a request must carry to pass: scopes and a client contract.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    pub scopes: Vec<String>,
    pub scope_match: ScopeMatch,
    pub clients: ClientCheck,
}

#[derive(Debug, Clone)]
pub struct RuleSettings {
    pub methods: Option<Vec<Method>>,
    pub paths: Option<GlobSet>,
    /// The patterns as written, for `check`.
    pub path_patterns: Vec<String>,
    pub public: bool,
    pub policy: PolicySettings,
}

/// Where an API's requests go: `http://authority` plus a base path (without trailing `/`).
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    pub url: Url,
    pub authority: http::uri::Authority,
    /// The authority as the upstream's `Host` header, rendered once.
    pub host: http::HeaderValue,
    pub base_path: String,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub name: String,
    pub host: Option<String>,
    pub path_prefix: String,
    pub upstream: UpstreamTarget,
    pub strip_prefix: bool,
    pub timeout: Duration,
    pub validation: ValidationMode,
    /// Accepted `aud` values; a token must name one of them. Required for the JWT modes.
    pub audience: Vec<String>,
    pub policy: PolicySettings,
    pub expose_headers: bool,
    /// As written: the exposed headers' prefix.
    pub expose_headers_prefix: String,
    /// The same, lowercase with `_` read as `-`: client headers matching it are removed.
    pub strip_headers_prefix: String,
    pub token_sources: Vec<TokenSource>,
    pub max_form_bytes: usize,
    pub rules: Vec<RuleSettings>,
}

/// hyper refuses smaller read buffers; a smaller head limit would be a panic, not a setting.
const MIN_HEADER_BYTES: usize = 8192;

pub(super) fn compile(raw: RawConfig) -> Result<Settings, ConfigError> {
    let listen = listen(raw.listen)?;
    let level = raw.log.level.unwrap_or_else(|| "info".to_owned());
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
        return Err(ConfigError::at(
            "log.level",
            format!("{level:?} is not a log filter: {e}"),
        ));
    }
    let log = LogSettings {
        format: raw.log.format.unwrap_or_default(),
        level,
    };
    let provider = provider(raw.provider)?;
    let cache = cache(raw.cache)?;
    if raw.apis.is_empty() {
        return Err(ConfigError::at("api", "at least one [[api]] is required"));
    }
    let mut apis = Vec::with_capacity(raw.apis.len());
    let mut seen_names = HashSet::new();
    let mut seen_routes = HashSet::new();
    for (i, raw_api) in raw.apis.into_iter().enumerate() {
        let path = format!("api[{i}]");
        let api = api(raw_api, &path, listen.request_timeout)?;
        if !seen_names.insert(api.name.clone()) {
            return Err(ConfigError::at(
                format!("{path}.name"),
                format!("duplicate API name {:?}", api.name),
            ));
        }
        if !seen_routes.insert((api.host.clone(), api.path_prefix.clone())) {
            return Err(ConfigError::at(
                format!("{path}.path_prefix"),
                "another API already routes this host and path_prefix",
            ));
        }
        apis.push(api);
    }
    Ok(Settings {
        listen,
        log,
        provider,
        cache,
        apis,
    })
}

const MAX_WORKERS: usize = 1024;

fn listen(raw: RawListen) -> Result<ListenSettings, ConfigError> {
    let addr = |value: Option<String>, key: &str, default: &str| {
        let text = value.unwrap_or_else(|| default.to_owned());
        text.parse::<SocketAddr>().map_err(|_| {
            ConfigError::at(
                format!("listen.{key}"),
                format!("{text:?} is not an IP:port socket address"),
            )
        })
    };
    let max_header_bytes = raw.max_header_bytes.unwrap_or(16 * 1024);
    if max_header_bytes < MIN_HEADER_BYTES {
        return Err(ConfigError::at(
            "listen.max_header_bytes",
            format!("must be at least {MIN_HEADER_BYTES}"),
        ));
    }
    let max_connections = raw.max_connections.unwrap_or(1024);
    if max_connections == 0 {
        return Err(ConfigError::at(
            "listen.max_connections",
            "must be at least 1",
        ));
    }
    if let Some(workers) = raw.workers
        && !(1..=MAX_WORKERS).contains(&workers)
    {
        return Err(ConfigError::at(
            "listen.workers",
            format!("must be between 1 and {MAX_WORKERS} (leave it out for one per CPU)"),
        ));
    }
    Ok(ListenSettings {
        address: addr(raw.address, "address", "127.0.0.1:8080")?,
        admin_address: addr(raw.admin_address, "admin_address", "127.0.0.1:9901")?,
        max_connections,
        workers: raw.workers,
        max_header_bytes,
        header_read_timeout: positive(raw.header_read_timeout, "listen.header_read_timeout", 10)?,
        request_timeout: positive(raw.request_timeout, "listen.request_timeout", 30)?,
        // Under Kubernetes' default 30 s terminationGracePeriodSeconds.
        shutdown_grace: raw.shutdown_grace.map_or(Duration::from_secs(25), |d| d.0),
    })
}

fn positive(
    value: Option<super::duration::ConfigDuration>,
    path: &str,
    default_secs: u64,
) -> Result<Duration, ConfigError> {
    let d = value.map_or(Duration::from_secs(default_secs), |d| d.0);
    if d.is_zero() {
        return Err(ConfigError::at(path, "must be greater than zero"));
    }
    Ok(d)
}

fn provider(raw: RawProvider) -> Result<ProviderSettings, ConfigError> {
    let issuer_url = http_url(&raw.issuer, "provider.issuer")?;
    if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
        return Err(ConfigError::at(
            "provider.issuer",
            "an issuer has no query or fragment (RFC 8414 §2)",
        ));
    }
    let endpoint = |value: &Option<String>, key: &str| {
        value
            .as_deref()
            .map(|v| http_url(v, &format!("provider.{key}")))
            .transpose()
    };
    non_empty(
        &raw.introspection_client_id,
        "provider.introspection_client_id",
    )?;
    non_empty(
        &raw.introspection_client_secret,
        "provider.introspection_client_secret",
    )?;
    if let Some(auth) = &raw.registration_authorization {
        non_empty(auth, "provider.registration_authorization")?;
        if http::HeaderValue::from_str(auth).is_err() {
            return Err(ConfigError::at(
                "provider.registration_authorization",
                "not a valid header value",
            ));
        }
    }
    let jwt = jwt_settings(&raw)?;
    Ok(ProviderSettings {
        authorize_url: endpoint(&raw.authorize_url, "authorize_url")?,
        token_url: endpoint(&raw.token_url, "token_url")?,
        introspection_url: endpoint(&raw.introspection_url, "introspection_url")?,
        jwks_url: endpoint(&raw.jwks_url, "jwks_url")?,
        registration_url: endpoint(&raw.registration_url, "registration_url")?,
        issuer: raw.issuer,
        introspection_client_id: raw.introspection_client_id,
        introspection_client_secret: Secret(raw.introspection_client_secret),
        introspection_auth: raw.introspection_auth.unwrap_or_default(),
        registration_authorization: raw.registration_authorization.map(Secret),
        request_timeout: positive(raw.request_timeout, "provider.request_timeout", 5)?,
        jwt,
    })
}

fn jwt_settings(raw: &RawProvider) -> Result<JwtSettings, ConfigError> {
    use jsonwebtoken::Algorithm;
    let names = raw
        .jwt_algorithms
        .clone()
        .unwrap_or_else(|| vec!["RS256".to_owned()]);
    if names.is_empty() {
        return Err(ConfigError::at(
            "provider.jwt_algorithms",
            "list at least one algorithm",
        ));
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let key = format!("provider.jwt_algorithms[{i}]");
        let alg: Algorithm = name
            .parse()
            .map_err(|_| ConfigError::at(&key, format!("{name:?} is not a JWS algorithm")))?;
        // Shared-secret and unsigned tokens are never accepted: a public JWKS cannot vouch for them.
        let allowed = matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        );
        if !allowed {
            return Err(ConfigError::at(
                key,
                format!("{name} is not allowed: use RS*, PS*, ES* or EdDSA"),
            ));
        }
        algorithms.push(alg);
    }
    let d = |v: Option<super::duration::ConfigDuration>, default: u64| {
        v.map_or(Duration::from_secs(default), |d| d.0)
    };
    let settings = JwtSettings {
        algorithms,
        leeway: d(raw.leeway, 30),
        typ: raw.jwt_typ.clone(),
        max_token_bytes: raw.max_token_bytes.unwrap_or(8192),
        jwks_min_refresh: d(raw.jwks_min_refresh, 30),
        jwks_refresh: positive(raw.jwks_refresh, "provider.jwks_refresh", 300)?,
        jwks_refresh_min: positive(raw.jwks_refresh_min, "provider.jwks_refresh_min", 60)?,
        jwks_refresh_max: positive(raw.jwks_refresh_max, "provider.jwks_refresh_max", 3600)?,
    };
    if settings.jwks_refresh_min > settings.jwks_refresh_max {
        return Err(ConfigError::at(
            "provider.jwks_refresh_min",
            "must not exceed jwks_refresh_max",
        ));
    }
    if settings.max_token_bytes < 256 {
        return Err(ConfigError::at(
            "provider.max_token_bytes",
            "must be at least 256",
        ));
    }
    Ok(settings)
}

fn cache(raw: RawCache) -> Result<CacheSettings, ConfigError> {
    let max_entries = raw.max_entries.unwrap_or(10_000);
    if max_entries == 0 {
        return Err(ConfigError::at("cache.max_entries", "must be at least 1"));
    }
    Ok(CacheSettings {
        max_entries,
        max_ttl: positive(raw.max_ttl, "cache.max_ttl", 300)?,
        negative_ttl: raw.negative_ttl.map_or(Duration::from_secs(30), |d| d.0),
        stale_if_error: raw.stale_if_error.map_or(Duration::ZERO, |d| d.0),
    })
}

fn api(raw: RawApi, path: &str, default_timeout: Duration) -> Result<ApiSettings, ConfigError> {
    let key = |k: &str| format!("{path}.{k}");
    non_empty(&raw.name, &key("name"))?;
    let host = raw
        .host
        .map(|h| {
            let valid = !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
            if valid {
                Ok(h.to_ascii_lowercase())
            } else {
                Err(ConfigError::at(
                    key("host"),
                    format!("{h:?} is not a host name"),
                ))
            }
        })
        .transpose()?;
    let path_prefix = path_prefix(
        raw.path_prefix.as_deref().unwrap_or("/"),
        &key("path_prefix"),
    )?;
    let upstream = upstream(&raw.upstream, &key("upstream"))?;
    let policy = policy(
        raw.scopes,
        raw.scope_match.unwrap_or_default(),
        raw.clients,
        raw.skip_client_id_validation,
        path,
    )?;
    let prefix = raw
        .expose_headers_prefix
        .unwrap_or_else(|| "X-AGW-".to_owned());
    if prefix.is_empty() || http::HeaderName::from_bytes(prefix.as_bytes()).is_err() {
        return Err(ConfigError::at(
            key("expose_headers_prefix"),
            format!("{prefix:?} is not a valid header name prefix"),
        ));
    }
    let token_sources = raw
        .token_sources
        .unwrap_or_else(|| vec![TokenSource::Header]);
    if token_sources.is_empty() {
        return Err(ConfigError::at(
            key("token_sources"),
            "at least one of \"header\", \"query\", \"form\" is required",
        ));
    }
    let validation = raw.validation.unwrap_or_default();
    let audience = raw.audience.unwrap_or_default();
    if audience.iter().any(String::is_empty) {
        return Err(ConfigError::at(
            key("audience"),
            "audience values must not be empty",
        ));
    }
    if audience.is_empty() && validation != ValidationMode::Introspection {
        return Err(ConfigError::at(
            key("audience"),
            "validation by JWT needs the accepted audience values (Okta's default: \"api://default\")",
        ));
    }
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, rule) in raw.rules.into_iter().enumerate() {
        rules.push(compile_rule(rule, &format!("{path}.rule[{i}]"), &policy)?);
    }
    Ok(ApiSettings {
        name: raw.name,
        host,
        path_prefix,
        upstream,
        strip_prefix: raw.strip_prefix,
        timeout: raw.timeout.map_or(default_timeout, |d| d.0),
        validation,
        audience,
        policy,
        expose_headers: raw.expose_headers,
        strip_headers_prefix: normalise_prefix(&prefix),
        expose_headers_prefix: prefix,
        token_sources,
        max_form_bytes: raw.max_form_bytes.unwrap_or(64 * 1024),
        rules,
    })
}

/// Header prefixes compare case-insensitively with `_` read as `-` (some servers treat them alike).
pub(crate) fn normalise_prefix(prefix: &str) -> String {
    prefix.to_ascii_lowercase().replace('_', "-")
}

fn path_prefix(prefix: &str, key: &str) -> Result<String, ConfigError> {
    let normalised = crate::routing::normalise_path(prefix)
        .map_err(|e| ConfigError::at(key, format!("{prefix:?} is not a usable path ({e})")))?;
    if normalised != prefix && normalised.trim_end_matches('/') != prefix.trim_end_matches('/') {
        return Err(ConfigError::at(
            key,
            format!("{prefix:?} is not in normal form (write {normalised:?})"),
        ));
    }
    let trimmed = prefix.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

fn upstream(text: &str, key: &str) -> Result<UpstreamTarget, ConfigError> {
    let url = Url::parse(text)
        .map_err(|e| ConfigError::at(key, format!("{text:?} is not a URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(ConfigError::at(
            key,
            format!(
                "scheme {:?} is not supported: upstreams are http://",
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
    let host = url
        .host_str()
        .ok_or_else(|| ConfigError::at(key, "the upstream URL has no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let authority = format!("{host}:{port}")
        .parse::<http::uri::Authority>()
        .map_err(|e| ConfigError::at(key, format!("bad authority: {e}")))?;
    let base_path = url.path().trim_end_matches('/').to_owned();
    let host = http::HeaderValue::from_str(authority.as_str())
        .map_err(|_| ConfigError::at(key, "the authority cannot be a Host header"))?;
    Ok(UpstreamTarget {
        url,
        authority,
        host,
        base_path,
    })
}

fn policy(
    scopes: Vec<String>,
    scope_match: ScopeMatch,
    clients: Vec<String>,
    skip: bool,
    path: &str,
) -> Result<PolicySettings, ConfigError> {
    check_scopes(&scopes, &format!("{path}.scopes"))?;
    let clients = if skip {
        ClientCheck::Skip
    } else {
        if clients.is_empty() {
            return Err(ConfigError::at(
                format!("{path}.clients"),
                "client-id validation is on but no clients are listed: list the client ids \
                 holding a contract, or set skip_client_id_validation = true",
            ));
        }
        for (i, c) in clients.iter().enumerate() {
            non_empty(c, &format!("{path}.clients[{i}]"))?;
        }
        ClientCheck::Contracts(clients.into_iter().collect())
    };
    Ok(PolicySettings {
        scopes,
        scope_match,
        clients,
    })
}

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
fn check_scopes(scopes: &[String], path: &str) -> Result<(), ConfigError> {
    for (i, s) in scopes.iter().enumerate() {
        let valid = !s.is_empty()
            && s.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            return Err(ConfigError::at(
                format!("{path}[{i}]"),
                format!("{s:?} is not a scope token (RFC 6749 §3.3)"),
            ));
        }
    }
    Ok(())
}

fn compile_rule(
    raw: RawRule,
    path: &str,
    api_policy: &PolicySettings,
) -> Result<RuleSettings, ConfigError> {
    let methods = raw
        .methods
        .map(|ms| {
            ms.iter()
                .enumerate()
                .map(|(i, m)| {
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                        ConfigError::at(
                            format!("{path}.methods[{i}]"),
                            format!("{m:?} is not an HTTP method"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let paths = raw.paths.as_ref().map(|ps| globs(ps, path)).transpose()?;
    if raw.public && (raw.scopes.is_some() || raw.clients.is_some() || raw.scope_match.is_some()) {
        return Err(ConfigError::at(
            format!("{path}.public"),
            "a public rule requires no token, so it cannot also require scopes or clients",
        ));
    }
    let policy = PolicySettings {
        scopes: match raw.scopes {
            Some(s) => {
                check_scopes(&s, &format!("{path}.scopes"))?;
                s
            }
            None => api_policy.scopes.clone(),
        },
        scope_match: raw.scope_match.unwrap_or(api_policy.scope_match),
        clients: match raw.clients {
            Some(c) if c.is_empty() => {
                return Err(ConfigError::at(
                    format!("{path}.clients"),
                    "an empty list would admit no client: omit the key to inherit the API's",
                ));
            }
            Some(c) => ClientCheck::Contracts(c.into_iter().collect()),
            None => api_policy.clients.clone(),
        },
    };
    Ok(RuleSettings {
        methods,
        paths,
        path_patterns: raw.paths.unwrap_or_default(),
        public: raw.public,
        policy,
    })
}

fn globs(patterns: &[String], path: &str) -> Result<GlobSet, ConfigError> {
    let mut set = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        let key = format!("{path}.paths[{i}]");
        if !p.starts_with('/') {
            return Err(ConfigError::at(key, format!("{p:?} must start with /")));
        }
        let glob = GlobBuilder::new(p)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| ConfigError::at(key, format!("bad pattern: {e}")))?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| ConfigError::at(format!("{path}.paths"), e.to_string()))
}

fn http_url(text: &str, key: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text)
        .map_err(|e| ConfigError::at(key, format!("{text:?} is not a URL: {e}")))?;
    match url.scheme() {
        "https" | "http" if url.host_str().is_some() => Ok(url),
        _ => Err(ConfigError::at(
            key,
            format!("{text:?} must be an http(s) URL with a host"),
        )),
    }
}

fn non_empty(value: &str, key: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        Err(ConfigError::at(key, "must not be empty"))
    } else {
        Ok(())
    }
}
