//! `[provider]` (one, named `default`) or `[[provider]]` (several, each with a `name`): each
//! identity provider's endpoints, introspection client, budget, and how JWTs are checked locally.
//! Each `[[api]]` names the provider whose tokens it accepts (`api.provider`).

use std::time::Duration;

use url::Url;

use std::num::NonZeroU32;

use super::ConfigError;
use super::compile::{Secret, http_url, non_empty, positive};
use super::rate::Rate;
use super::raw::{ClientAuth, RawProvider};

/// The longest `jwks_min_refresh`: the wait it imposes on a request with an unknown `kid`.
const MAX_JWKS_MIN_REFRESH: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSettings {
    /// Lowercase letters, digits and `-`; unique. A single `[provider]` is `default`.
    pub name: String,
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
    pub budget: BudgetSettings,
    pub registration: RegistrationSettings,
}

/// How tollgate registers client applications at the provider (RFC 7591, RFC 7592, Okta's
/// `/oauth2/v1/clients`); the endpoint and credential are `registration_url` and
/// `registration_authorization` above.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationSettings {
    /// Per registration call (Anypoint's "Client Request Timeout").
    pub timeout: Duration,
    /// Whether changes to an application are written to its client at the provider; off, the
    /// provider's copy is left as it is (Anypoint's "Enable client deletion and updates in IdP").
    pub update_in_idp: bool,
    /// Whether deleting an application deletes its client at the provider.
    pub delete_in_idp: bool,
    /// Put before every application's name to make its `client_name` at the provider, so
    /// tollgate's clients are told apart from the ones people made by hand.
    pub client_name_prefix: String,
}

/// How many introspection calls the provider gets from this process: the budget that keeps one
/// sprayer of random tokens from spending the provider's rate limit for everyone.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSettings {
    /// Concurrent introspection calls at most.
    pub max_inflight: usize,
    /// Introspection calls per period at most, with this burst.
    pub rate: Option<(Rate, NonZeroU32)>,
    /// Each client address's share of introspection-cache misses.
    pub misses_per_client: Option<Rate>,
    /// How long a miss waits for the budget before it is answered 503.
    pub wait: Duration,
    /// Below this many calls left in the provider's window (Okta's `X-Rate-Limit-Remaining`),
    /// tollgate stops calling until the window resets.
    pub low_water: u64,
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
    /// Request-driven JWKS fetches (unknown `kid`s) start at most once per this long; a request
    /// with an unknown `kid` waits for the next one rather than being refused.
    pub jwks_min_refresh: Duration,
    /// Refresh interval without `Cache-Control: max-age`; with one, it is clamped to the bounds.
    pub jwks_refresh: Duration,
    pub jwks_refresh_min: Duration,
    pub jwks_refresh_max: Duration,
}

/// The name of a single `[provider]` table: what APIs and registry rows mean without a name.
pub const DEFAULT_PROVIDER: &str = "default";

/// The longest provider name: it is a metric label, a store column and part of log lines.
const MAX_NAME: usize = 63;

/// The configured providers, in file order, and whether they were written as `[[provider]]`.
pub(super) fn providers(value: toml::Value) -> Result<(Vec<ProviderSettings>, bool), ConfigError> {
    match value {
        toml::Value::Table(_) => {
            let raw: RawProvider = super::deserialize_at(value, "provider")?;
            let name = match &raw.name {
                Some(name) => checked_name(name, "provider.name")?,
                None => DEFAULT_PROVIDER.to_owned(),
            };
            Ok((vec![provider(raw, name, "provider")?], false))
        }
        toml::Value::Array(entries) => {
            if entries.is_empty() {
                return Err(ConfigError::at(
                    "provider",
                    "at least one [[provider]] is required",
                ));
            }
            let mut out: Vec<ProviderSettings> = Vec::with_capacity(entries.len());
            for (i, entry) in entries.into_iter().enumerate() {
                let path = format!("provider[{i}]");
                let raw: RawProvider = super::deserialize_at(entry, &path)?;
                let key = format!("{path}.name");
                let name = raw.name.as_deref().ok_or_else(|| {
                    ConfigError::at(&key, "each [[provider]] needs a name (APIs refer to it)")
                })?;
                let name = checked_name(name, &key)?;
                if out.iter().any(|p| p.name == name) {
                    return Err(ConfigError::at(
                        key,
                        format!("duplicate provider name {name:?}"),
                    ));
                }
                out.push(provider(raw, name, &path)?);
            }
            Ok((out, true))
        }
        _ => Err(ConfigError::at(
            "provider",
            "must be a [provider] table or [[provider]] entries",
        )),
    }
}

fn checked_name(name: &str, key: &str) -> Result<String, ConfigError> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if name.is_empty() || name.len() > MAX_NAME || !name.bytes().all(allowed) {
        return Err(ConfigError::at(
            key,
            format!("{name:?}: a provider name is 1 to {MAX_NAME} of a-z, 0-9 and '-'"),
        ));
    }
    Ok(name.to_owned())
}

/// The provider an API at `path` names (`api[N].provider`): optional with one provider, required
/// with several, and always one of the configured names.
pub(super) fn api_provider(
    named: Option<&str>,
    providers: &[ProviderSettings],
    path: &str,
) -> Result<String, ConfigError> {
    let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    choose_provider(
        &names,
        named,
        &format!("{path}.provider"),
        "the one whose tokens this API accepts",
    )
}

/// The provider `named` picks among `names` (the configured ones): that one if configured, else,
/// when none is named, the only one. The error names `key` (`api[0].provider`, `--provider`) and
/// says what the name is for (`which`).
pub fn choose_provider(
    names: &[&str],
    named: Option<&str>,
    key: &str,
    which: &str,
) -> Result<String, ConfigError> {
    let listed = names.join(", ");
    match (named, names) {
        (None, [only]) => Ok((*only).to_owned()),
        (None, _) => Err(ConfigError::at(
            key,
            format!("several providers are configured: name {which} (one of: {listed})"),
        )),
        (Some(name), _) if names.contains(&name) => Ok(name.to_owned()),
        (Some(name), _) => Err(ConfigError::at(
            key,
            format!("no provider is named {name:?} (configured: {listed})"),
        )),
    }
}

pub(super) fn provider(
    raw: RawProvider,
    name: String,
    path: &str,
) -> Result<ProviderSettings, ConfigError> {
    let key = |k: &str| format!("{path}.{k}");
    let issuer_url = http_url(&raw.issuer, &key("issuer"))?;
    if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
        return Err(ConfigError::at(
            key("issuer"),
            "an issuer has no query or fragment (RFC 8414 §2)",
        ));
    }
    let endpoint = |value: &Option<String>, key: &str| {
        value
            .as_deref()
            .map(|v| http_url(v, &format!("{path}.{key}")))
            .transpose()
    };
    non_empty(
        &raw.introspection_client_id,
        &key("introspection_client_id"),
    )?;
    non_empty(
        &raw.introspection_client_secret,
        &key("introspection_client_secret"),
    )?;
    if let Some(auth) = &raw.registration_authorization {
        non_empty(auth, &key("registration_authorization"))?;
        if http::HeaderValue::from_str(auth).is_err() {
            return Err(ConfigError::at(
                key("registration_authorization"),
                "not a valid header value",
            ));
        }
    }
    let jwt = jwt_settings(&raw, &key)?;
    let budget = budget_settings(&raw, &key)?;
    let registration = registration_settings(&raw, &key)?;
    Ok(ProviderSettings {
        name,
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
        request_timeout: positive(raw.request_timeout, &key("request_timeout"), 5)?,
        jwt,
        budget,
        registration,
    })
}

/// The longest prefix: Okta caps `client_name` (at 100 characters); the application's own name
/// needs the room.
const MAX_CLIENT_NAME_PREFIX: usize = 32;

fn registration_settings(
    raw: &RawProvider,
    key: &dyn Fn(&str) -> String,
) -> Result<RegistrationSettings, ConfigError> {
    let prefix = raw
        .client_name_prefix
        .clone()
        .unwrap_or_else(|| "tollgate-".to_owned());
    // Only characters that mean the same in a name, a URL query and a log line: the prefix is
    // what `find_by_name` searches for (Okta's `q=`).
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if prefix.is_empty() || prefix.len() > MAX_CLIENT_NAME_PREFIX || !prefix.chars().all(allowed) {
        return Err(ConfigError::at(
            key("client_name_prefix"),
            format!(
                "must be 1 to {MAX_CLIENT_NAME_PREFIX} characters of A-Z, a-z, 0-9, '.', '_', '-'"
            ),
        ));
    }
    Ok(RegistrationSettings {
        timeout: positive(raw.registration_timeout, &key("registration_timeout"), 5)?,
        update_in_idp: raw.update_in_idp.unwrap_or(false),
        delete_in_idp: raw.delete_in_idp.unwrap_or(false),
        client_name_prefix: prefix,
    })
}

fn budget_settings(
    raw: &RawProvider,
    key: &dyn Fn(&str) -> String,
) -> Result<BudgetSettings, ConfigError> {
    let max_inflight = raw.max_inflight.unwrap_or(64);
    if !(1..=10_000).contains(&max_inflight) {
        return Err(ConfigError::at(
            key("max_inflight"),
            "must be between 1 and 10000",
        ));
    }
    let rate = match (raw.introspection_rate, raw.introspection_burst) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(ConfigError::at(
                key("introspection_burst"),
                format!("needs {}", key("introspection_rate")),
            ));
        }
        // The default burst is one period's worth, as most rate limiters have it.
        (Some(rate), burst) => match NonZeroU32::new(burst.unwrap_or(rate.count.get())) {
            Some(burst) => Some((rate, burst)),
            None => {
                return Err(ConfigError::at(
                    key("introspection_burst"),
                    "must be at least 1",
                ));
            }
        },
    };
    let wait = raw.budget_wait.map_or(Duration::from_secs(1), |d| d.0);
    if wait > Duration::from_secs(60) {
        return Err(ConfigError::at(
            key("budget_wait"),
            "must be at most 60s: a miss that waits longer only holds a connection",
        ));
    }
    Ok(BudgetSettings {
        max_inflight,
        rate,
        misses_per_client: raw.misses_per_client,
        wait,
        low_water: raw.rate_limit_low_water.unwrap_or(10),
    })
}

fn jwt_settings(
    raw: &RawProvider,
    key: &dyn Fn(&str) -> String,
) -> Result<JwtSettings, ConfigError> {
    use jsonwebtoken::Algorithm;
    let names = raw
        .jwt_algorithms
        .clone()
        .unwrap_or_else(|| vec!["RS256".to_owned()]);
    if names.is_empty() {
        return Err(ConfigError::at(
            key("jwt_algorithms"),
            "list at least one algorithm",
        ));
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let key = format!("{}[{i}]", key("jwt_algorithms"));
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
        jwks_min_refresh: d(raw.jwks_min_refresh, 5),
        jwks_refresh: positive(raw.jwks_refresh, &key("jwks_refresh"), 300)?,
        jwks_refresh_min: positive(raw.jwks_refresh_min, &key("jwks_refresh_min"), 60)?,
        jwks_refresh_max: positive(raw.jwks_refresh_max, &key("jwks_refresh_max"), 3600)?,
    };
    if settings.jwks_refresh_min > settings.jwks_refresh_max {
        return Err(ConfigError::at(
            key("jwks_refresh_min"),
            "must not exceed jwks_refresh_max",
        ));
    }
    // A request with an unknown `kid` may wait this long for the next fetch: keep it a wait a
    // client sits out, not one it abandons.
    if settings.jwks_min_refresh > MAX_JWKS_MIN_REFRESH {
        return Err(ConfigError::at(
            key("jwks_min_refresh"),
            "must not exceed 60s: a request with an unknown kid waits up to this long",
        ));
    }
    if settings.max_token_bytes < 256 {
        return Err(ConfigError::at(
            key("max_token_bytes"),
            "must be at least 256",
        ));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests;
