//! Checks the raw file structs and turns them into [`Settings`]: every default applied, every URL
//! parsed, every contradiction refused with the key path and the reason. Each section has its own
//! module (`listen`, `provider`, `api`, `rules`); this one holds the whole and the shared checks.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use url::Url;

use super::ConfigError;
use super::admin::{AdminSettings, admin};
use super::api::{ApiSettings, api};
use super::listen::{ListenSettings, listen};
use super::provider::{ProviderSettings, api_provider, providers};
use super::raw::{ClientCertificateRule, LogFormat, RawCache, RawConfig};
use super::registry::{RegistrySettings, registry};

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: ListenSettings,
    pub log: LogSettings,
    /// Every configured provider, in file order; names are unique.
    pub providers: Vec<ProviderSettings>,
    /// Written as `[[provider]]` (key paths `provider[N]`) rather than one `[provider]`.
    pub provider_list: bool,
    pub cache: CacheSettings,
    pub apis: Vec<ApiSettings>,
    pub registry: Option<RegistrySettings>,
    pub admin: AdminSettings,
}

impl Settings {
    /// The provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderSettings> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The key path of the provider named `name` (`provider` or `provider[N]`), for messages.
    pub fn provider_key(&self, name: &str) -> String {
        match self.providers.iter().position(|p| p.name == name) {
            Some(i) if self.provider_list => format!("provider[{i}]"),
            Some(_) | None => "provider".to_owned(),
        }
    }

    /// The APIs whose tokens the provider named `name` validates.
    pub fn apis_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ApiSettings> + 'a {
        self.apis.iter().filter(move |a| a.provider == name)
    }
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// A secret from the configuration: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

impl Secret {
    /// A secret that did not come from the file (one the provider issued).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

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
pub struct CacheSettings {
    pub max_entries: u64,
    pub max_ttl: Duration,
    pub negative_ttl: Duration,
    pub stale_if_error: Duration,
}

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
    let (providers, provider_list) = providers(raw.provider)?;
    let cache = cache(raw.cache)?;
    let registry = raw.registry.map(registry).transpose()?;
    let admin = admin(raw.admin)?;
    if raw.apis.is_empty() {
        return Err(ConfigError::at("api", "at least one [[api]] is required"));
    }
    let mut apis = Vec::with_capacity(raw.apis.len());
    let mut seen_names = HashSet::new();
    for (i, raw_api) in raw.apis.into_iter().enumerate() {
        let path = format!("api[{i}]");
        let provider = api_provider(raw_api.provider.as_deref(), &providers, &path)?;
        let mut api = api(raw_api, &path, listen.request_timeout, registry.is_some())?;
        api.provider = provider;
        if !seen_names.insert(api.name.clone()) {
            return Err(ConfigError::at(
                format!("{path}.name"),
                format!("duplicate API name {:?}", api.name),
            ));
        }
        if apis.iter().any(|other| same_route(other, &api)) {
            return Err(ConfigError::at(
                format!("{path}.path_prefix"),
                "another API already routes this host and path_prefix",
            ));
        }
        apis.push(api);
    }
    client_certificate_checks(&listen, &apis)?;
    Ok(Settings {
        listen,
        log,
        providers,
        provider_list,
        cache,
        apis,
        registry,
        admin,
    })
}

/// Would two APIs route the same requests? Same host and prefix, or prefixes equal once folded
/// when either folds case (the router could not tell them apart).
fn same_route(a: &ApiSettings, b: &ApiSettings) -> bool {
    let fold = a.case_insensitive_paths || b.case_insensitive_paths;
    a.host == b.host
        && crate::routing::match_form(&a.path_prefix, fold)
            == crate::routing::match_form(&b.path_prefix, fold)
}

pub(super) fn positive(
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

/// No API's exposed token attributes may pose as client-certificate headers; and a rule or header
/// switch about client certificates needs a listener that asks for them: without `[listen.tls]
/// client_ca` no request could ever carry one.
fn client_certificate_checks(
    listen: &ListenSettings,
    apis: &[ApiSettings],
) -> Result<(), ConfigError> {
    for (i, api) in apis.iter().enumerate() {
        // A token's attributes must not be able to pose as the certificate's identity.
        if api
            .strip_headers_prefix
            .starts_with(crate::client_cert::HEADER_PREFIX)
        {
            return Err(ConfigError::at(
                format!("api[{i}].expose_headers_prefix"),
                "X-Client-Cert- is the client certificate's: choose another prefix",
            ));
        }
    }
    if listen.tls.as_ref().is_some_and(|t| t.client_ca.is_some()) {
        return Ok(());
    }
    let why = "no [listen.tls] client_ca: no request can carry a verified client certificate";
    for (i, api) in apis.iter().enumerate() {
        if api.client_cert_headers {
            return Err(ConfigError::at(
                format!("api[{i}].client_cert_headers"),
                why,
            ));
        }
        if let Some(j) = api
            .rules
            .iter()
            .position(|r| r.client_certificate == ClientCertificateRule::Required)
        {
            return Err(ConfigError::at(
                format!("api[{i}].rule[{j}].client_certificate"),
                why,
            ));
        }
    }
    Ok(())
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

pub(super) fn http_url(text: &str, key: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text)
        .map_err(|e| ConfigError::at(key, format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(ConfigError::at(
            key,
            format!("{text:?} must be an http(s) URL with a host"),
        ));
    }
    // URLs are logged (discovery, errors, `check`): credentials in one would be written out with
    // it. The message does not repeat the URL, for the same reason.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::at(
            key,
            "a provider URL must not carry a user or password (it would be logged): \
             the introspection client's credentials go in introspection_client_id and \
             introspection_client_secret",
        ));
    }
    Ok(url)
}

pub(super) fn non_empty(value: &str, key: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        Err(ConfigError::at(key, "must not be empty"))
    } else {
        Ok(())
    }
}
