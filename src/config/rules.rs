//! `[[api.rule]]`: Anypoint's method & resource conditions, each with the policy it applies.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use http::Method;

use super::ConfigError;
use super::api::{ClientCheck, PolicySettings, check_scopes};
use super::raw::{ClientCertificateRule, RawRule};

#[derive(Debug, Clone)]
pub struct RuleSettings {
    pub methods: Option<Vec<Method>>,
    pub paths: Option<GlobSet>,
    /// The patterns as written, for `check`.
    pub path_patterns: Vec<String>,
    pub public: bool,
    /// `Required`: a request without a verified client certificate (mTLS) is refused.
    pub client_certificate: ClientCertificateRule,
    pub policy: PolicySettings,
}

pub(super) fn compile_rule(
    raw: RawRule,
    path: &str,
    api_policy: &PolicySettings,
    case_insensitive: bool,
) -> Result<RuleSettings, ConfigError> {
    let methods = raw.methods.map(|ms| methods(&ms, path)).transpose()?;
    let paths = raw
        .paths
        .as_ref()
        .map(|ps| globs(ps, path, case_insensitive))
        .transpose()?;
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
            // A rule's own list is exactly who may pass: registry contracts are per API.
            Some(c) => ClientCheck::Contracts {
                listed: c.into_iter().collect(),
                registry: false,
            },
            None => api_policy.clients.clone(),
        },
    };
    Ok(RuleSettings {
        methods,
        paths,
        path_patterns: raw.paths.unwrap_or_default(),
        public: raw.public,
        client_certificate: raw.client_certificate.unwrap_or_default(),
        policy,
    })
}

/// The methods as written, upper-cased; a rule that lists GET covers HEAD too (RFC 9110 §9.3.2:
/// HEAD is GET without the content, and servers answer it with the GET handler), added here so
/// `check` and `explain` show it.
fn methods(written: &[String], path: &str) -> Result<Vec<Method>, ConfigError> {
    let mut methods = written
        .iter()
        .enumerate()
        .map(|(i, m)| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                ConfigError::at(
                    format!("{path}.methods[{i}]"),
                    format!("{m:?} is not an HTTP method"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
        methods.push(Method::HEAD);
    }
    Ok(methods)
}

/// The rule's patterns; under `case_insensitive_paths` folded the way request paths are, so both
/// sides of the match use one folding (globset's own case-insensitivity folds differently).
fn globs(patterns: &[String], path: &str, case_insensitive: bool) -> Result<GlobSet, ConfigError> {
    let mut set = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        let key = format!("{path}.paths[{i}]");
        if !p.starts_with('/') {
            return Err(ConfigError::at(key, format!("{p:?} must start with /")));
        }
        let p = crate::routing::match_form(p, case_insensitive);
        let glob = GlobBuilder::new(&p)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| ConfigError::at(key, format!("bad pattern: {e}")))?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| ConfigError::at(format!("{path}.paths"), e.to_string()))
}
