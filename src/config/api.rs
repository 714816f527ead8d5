//! `[[api]]`: one API's route, upstream, validation mode and default policy. Its rules are in
//! `rules`.

use std::collections::HashSet;
use std::time::Duration;

use super::ConfigError;
use super::compile::non_empty;
use super::cors::{CorsSettings, cors};
use super::raw::{RawApi, ScopeMatch, TokenSource, ValidationMode};
use super::rules::{RuleSettings, compile_rule};
pub use super::upstream::UpstreamTarget;

/// Who may call: exact client ids, or no check at all (Anypoint's "skip client id validation").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCheck {
    Skip,
    /// The client must be listed, or (with `registry`) hold an approved contract in the registry.
    Contracts {
        listed: HashSet<String>,
        registry: bool,
    },
}

/// What a request must carry to pass: scopes and a client contract.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    pub scopes: Vec<String>,
    pub scope_match: ScopeMatch,
    pub clients: ClientCheck,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub name: String,
    /// The name of the provider whose tokens this API accepts (checked against `[[provider]]`).
    pub provider: String,
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
    pub strip_headers_prefix: std::sync::Arc<str>,
    pub token_sources: Vec<TokenSource>,
    pub max_form_bytes: usize,
    /// The largest request body forwarded (`u64::MAX`: no limit, from `max_body_bytes = 0`).
    pub max_body_bytes: u64,
    /// Whether the client's `Authorization` header reaches the upstream (Anypoint does forward
    /// it); `false` keeps the bearer credential at the gateway (Envoy's default).
    pub forward_authorization: bool,
    /// The upstream ignores case in paths: the prefix and the rules match with case folded
    /// (`routing::fold_case`); the path is forwarded as sent.
    pub case_insensitive_paths: bool,
    pub rules: Vec<RuleSettings>,
    /// Contracts requested for this API are approved at once (when it has no tiers).
    pub auto_approve: bool,
    /// `[api.cors]`; `None`: no CORS answers, and upstream answers pass as they are.
    pub cors: Option<CorsSettings>,
    /// The verified client certificate's subject and SANs go upstream as `X-Client-Cert-*`.
    pub client_cert_headers: bool,
}

/// 10 MiB, the request payload limit of AWS API Gateway and Apigee: bodies stream through (a
/// large one costs no memory here), so the limit guards the upstream's work, and it is large
/// enough for the JSON and form payloads APIs take while refusing an endless upload at once.
const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

pub(super) fn api(
    raw: RawApi,
    path: &str,
    default_timeout: Duration,
    registry: bool,
) -> Result<ApiSettings, ConfigError> {
    let key = |k: &str| format!("{path}.{k}");
    non_empty(&raw.name, &key("name"))?;
    let upstream = super::upstream::upstream(&raw, path)?;
    let host = raw
        .host
        .map(|h| {
            // A fully qualified `api.test.` is the same host; requests are read the same way.
            let name = h.strip_suffix('.').unwrap_or(&h);
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
            if valid {
                Ok(name.to_ascii_lowercase())
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
    let policy = policy(
        raw.scopes,
        raw.scope_match.unwrap_or_default(),
        raw.clients,
        raw.skip_client_id_validation,
        registry,
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
        let key = format!("{path}.rule[{i}]");
        rules.push(compile_rule(
            rule,
            &key,
            &policy,
            raw.case_insensitive_paths,
        )?);
    }
    let cors = raw.cors.map(|c| cors(c, &key("cors"))).transpose()?;
    let timeout = raw.timeout.map_or(default_timeout, |d| d.0);
    if timeout.is_zero() {
        // A zero deadline would answer every request 504 before the upstream could.
        return Err(ConfigError::at(key("timeout"), "must be greater than zero"));
    }
    Ok(ApiSettings {
        // Resolved against the configured providers by the caller, which knows them.
        provider: raw.provider.unwrap_or_default(),
        auto_approve: raw.auto_approve,
        name: raw.name,
        host,
        path_prefix,
        upstream,
        strip_prefix: raw.strip_prefix,
        timeout,
        validation,
        audience,
        policy,
        expose_headers: raw.expose_headers,
        strip_headers_prefix: normalise_prefix(&prefix).into(),
        expose_headers_prefix: prefix,
        token_sources,
        max_form_bytes: raw.max_form_bytes.unwrap_or(64 * 1024),
        max_body_bytes: match raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES) {
            0 => u64::MAX,
            n => n,
        },
        forward_authorization: raw.forward_authorization.unwrap_or(true),
        case_insensitive_paths: raw.case_insensitive_paths,
        rules,
        cors,
        client_cert_headers: raw.client_cert_headers,
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

fn policy(
    scopes: Vec<String>,
    scope_match: ScopeMatch,
    clients: Vec<String>,
    skip: bool,
    registry: bool,
    path: &str,
) -> Result<PolicySettings, ConfigError> {
    check_scopes(&scopes, &format!("{path}.scopes"))?;
    let clients = if skip {
        ClientCheck::Skip
    } else {
        if clients.is_empty() && !registry {
            return Err(ConfigError::at(
                format!("{path}.clients"),
                "client-id validation is on but no clients are listed: list the client ids \
                 holding a contract, add a [registry] for contracts, or set \
                 skip_client_id_validation = true",
            ));
        }
        for (i, c) in clients.iter().enumerate() {
            non_empty(c, &format!("{path}.clients[{i}]"))?;
        }
        ClientCheck::Contracts {
            listed: clients.into_iter().collect(),
            registry,
        }
    };
    Ok(PolicySettings {
        scopes,
        scope_match,
        clients,
    })
}

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
pub(super) fn check_scopes(scopes: &[String], path: &str) -> Result<(), ConfigError> {
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
