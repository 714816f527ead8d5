//! Configuration: `config/tollgate.toml` → raw serde structs (unknown keys refused, errors with key
//! paths) → `${VAR}` from an injected [`Env`] → checked [`Settings`]. `runtime` builds the request
//! path from `Settings`; nothing on the request path reads the file structs.

mod admin;
mod api;
mod compile;
mod cors;
mod describe;
mod dev;
mod duration;
mod interpolate;
mod listen;
mod provider;
mod rate;
pub mod raw;
mod registry;
mod rules;
mod upstream;

use std::path::Path;

pub use admin::{AdminSettings, MIN_ADMIN_TOKEN_CHARS};
pub use api::{ApiSettings, ClientCheck, PolicySettings, UpstreamTarget};
pub use compile::{CacheSettings, LogSettings, Secret, Settings};
pub use cors::{CorsList, CorsOrigins, CorsSettings};
pub use describe::{describe, insecure_warnings, warnings};
pub use dev::{DevClientSettings, DevSettings, RESERVED_CLIENT, dev_settings};
pub use interpolate::{Env, ProcessEnv};
pub use listen::{ConnectionLimits, ListenSettings};
pub use provider::{BudgetSettings, JwtSettings, ProviderSettings, RegistrationSettings};
pub use rate::Rate;
pub use raw::{
    ClientAuth, LogFormat, ScopeMatch, TokenSource, UpstreamBalance, UpstreamProtocol,
    ValidationMode,
};
pub use registry::{RegistrySettings, StoreUrl};
pub use rules::RuleSettings;

/// A configuration problem, with the key path it concerns (e.g. `api[0].clients`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Reads, interpolates and checks a configuration file.
pub fn load_file(path: &Path, env: &dyn Env) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::at("", format!("cannot read {}: {e}", path.display())))?;
    parse(&text, env)
}

/// Parses, interpolates and checks configuration text.
pub fn parse(text: &str, env: &dyn Env) -> Result<Settings, ConfigError> {
    from_document(document(text, env)?)
}

/// The parsed, interpolated document, before it is checked (what `tollgate dev` edits).
pub fn document(text: &str, env: &dyn Env) -> Result<toml::Value, ConfigError> {
    let mut doc: toml::Value = toml::from_str::<toml::Table>(text)
        .map(toml::Value::Table)
        // The position, not the parser's snippet: the line could hold a literal secret.
        .map_err(|e| {
            let line = e
                .span()
                .map_or(0, |s| text[..s.start].matches('\n').count() + 1);
            ConfigError::at("", format!("not valid TOML (line {line}): {}", e.message()))
        })?;
    interpolate::interpolate(&mut doc, "", env)?;
    Ok(doc)
}

/// Checks an interpolated document.
pub fn from_document(doc: toml::Value) -> Result<Settings, ConfigError> {
    compile::compile(deserialize(doc)?)
}

/// Deserialises with the key path of any error.
fn deserialize<T: serde::de::DeserializeOwned>(doc: toml::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::at(path, e.into_inner().message().to_owned())
    })
}

#[cfg(test)]
mod tests;
