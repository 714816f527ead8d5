//! `[registry]`: where client applications, tiers and contracts are kept. Without it only the
//! static `[[api]] clients` lists admit clients, as before.

use std::time::Duration;

use super::ConfigError;
use super::compile::Secret;
use super::raw::RawRegistry;

/// Where the registry lives and how often a gateway looks for changes.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrySettings {
    pub store: StoreUrl,
    /// How often a gateway polls the store for a new revision: the bound on how long a change
    /// (a revoke) takes to reach every gateway sharing the store.
    pub refresh_interval: Duration,
    /// Passphrase that seals registration access tokens at rest.
    pub encryption_key: Option<Secret>,
    /// Past this age of the last loaded index (the store unreachable), `/readyz` fails.
    pub max_staleness: Duration,
    /// A local file that keeps the last loaded index, for a start while the store is unreachable.
    pub snapshot: Option<std::path::PathBuf>,
}

/// The store: an embedded SQLite file, or a PostgreSQL database several gateways share.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(String),
    /// The whole URL, which may carry a password: shown without it.
    Postgres(Secret),
}

impl StoreUrl {
    /// The URL to connect with.
    pub fn connect_url(&self) -> String {
        match self {
            StoreUrl::Sqlite(path) => format!("sqlite://{path}?mode=rwc"),
            StoreUrl::Postgres(url) => url.expose().to_owned(),
        }
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite://{path}"),
            StoreUrl::Postgres(url) => match url::Url::parse(url.expose()) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("<redacted>"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => f.write_str("postgres://<unreadable>"),
            },
        }
    }
}

/// Shortest `encryption_key`: a passphrase of 32 characters or more.
const MIN_KEY_CHARS: usize = 32;

pub(super) fn registry(raw: RawRegistry) -> Result<RegistrySettings, ConfigError> {
    let store = store_url(&raw.store)?;
    let refresh_interval = raw.refresh_interval.map_or(Duration::from_secs(1), |d| d.0);
    if refresh_interval < Duration::from_millis(100) || refresh_interval > Duration::from_secs(60) {
        return Err(ConfigError::at(
            "registry.refresh_interval",
            "must be between 100ms and 60s: it bounds how long a revoke takes to reach every gateway",
        ));
    }
    let max_staleness = raw.max_staleness.map_or(Duration::from_secs(300), |d| d.0);
    if max_staleness < refresh_interval {
        return Err(ConfigError::at(
            "registry.max_staleness",
            "must be at least registry.refresh_interval",
        ));
    }
    if let Some(key) = &raw.encryption_key
        && key.chars().count() < MIN_KEY_CHARS
    {
        return Err(ConfigError::at(
            "registry.encryption_key",
            format!(
                "a passphrase of at least {MIN_KEY_CHARS} characters is required; set it from the environment, e.g. \"${{TOLLGATE_REGISTRY_KEY}}\""
            ),
        ));
    }
    Ok(RegistrySettings {
        store,
        refresh_interval,
        encryption_key: raw.encryption_key.map(Secret),
        max_staleness,
        snapshot: match raw.snapshot {
            Some(path) if path.trim().is_empty() => {
                return Err(ConfigError::at(
                    "registry.snapshot",
                    "name a file, or leave the key out",
                ));
            }
            other => other.map(std::path::PathBuf::from),
        },
    })
}

fn store_url(text: &str) -> Result<StoreUrl, ConfigError> {
    let key = "registry.store";
    if let Some(path) = text.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err(ConfigError::at(
                key,
                "name the SQLite file: \"sqlite://PATH\"",
            ));
        }
        return Ok(StoreUrl::Sqlite(path.to_owned()));
    }
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        let url = url::Url::parse(text)
            .map_err(|e| ConfigError::at(key, format!("not a PostgreSQL URL: {e}")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::at(key, "a PostgreSQL URL needs a host"));
        }
        return Ok(StoreUrl::Postgres(Secret(text.to_owned())));
    }
    Err(ConfigError::at(
        key,
        "write \"sqlite://PATH\" (embedded) or \"postgres://USER@HOST/DB\" (shared by several gateways)",
    ))
}
