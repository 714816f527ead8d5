//! The `[dev]` section, read only by `tollgate dev`: the embedded provider's clients, scopes and
//! token format. Every key has a default, so `tollgate dev` needs no file at all.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::duration::ConfigDuration;
use super::{ConfigError, deserialize};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDev {
    token_format: Option<DevTokenFormatName>,
    token_ttl: Option<ConfigDuration>,
    scopes: Option<Vec<String>>,
    provider_address: Option<String>,
    audience: Option<String>,
    #[serde(default, rename = "client")]
    clients: Vec<RawDevClient>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevTokenFormatName {
    Jwt,
    Opaque,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevClient {
    client_id: String,
    client_secret: String,
    #[serde(default)]
    scopes: Vec<String>,
}

/// The client id `tollgate dev` keeps for the gateway's own introspection calls.
pub const RESERVED_CLIENT: &str = "tollgate-dev-gateway";

/// The checked `[dev]` section.
#[derive(Debug, Clone)]
pub struct DevSettings {
    pub jwt_tokens: bool,
    pub token_ttl: Duration,
    pub scopes: Vec<String>,
    pub provider_address: SocketAddr,
    pub audience: String,
    pub clients: Vec<DevClientSettings>,
}

#[derive(Debug, Clone)]
pub struct DevClientSettings {
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
}

/// Reads `[dev]` from an interpolated document (defaults where it is absent).
pub fn dev_settings(doc: &toml::Value) -> Result<DevSettings, ConfigError> {
    let raw: RawDev = match doc.get("dev") {
        None => RawDev::default(),
        Some(section) => {
            deserialize(section.clone()).map_err(|e| ConfigError::at(join(&e.path), e.reason))?
        }
    };
    let provider_address = raw
        .provider_address
        .unwrap_or_else(|| "127.0.0.1:9400".to_owned());
    let provider_address: SocketAddr = provider_address.parse().map_err(|_| {
        ConfigError::at(
            "dev.provider_address",
            format!("{provider_address:?} is not an IP:port socket address"),
        )
    })?;
    let scopes = raw.scopes.unwrap_or_else(|| {
        vec![
            "mulescope".to_owned(),
            "orders:admin".to_owned(),
            "other".to_owned(),
        ]
    });
    let clients = if raw.clients.is_empty() {
        vec![
            client("dev-app", "dev-secret", &["mulescope", "orders:admin"]),
            client("dev-noscope", "dev-noscope-secret", &["other"]),
        ]
    } else {
        raw.clients
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if let Some(unknown) = c.scopes.iter().find(|s| !scopes.contains(s)) {
                    return Err(ConfigError::at(
                        format!("dev.client[{i}].scopes"),
                        format!("{unknown:?} is not one of dev.scopes"),
                    ));
                }
                if c.client_id == RESERVED_CLIENT {
                    return Err(ConfigError::at(
                        format!("dev.client[{i}].client_id"),
                        format!("{RESERVED_CLIENT:?} is the gateway's own client in dev: choose another id"),
                    ));
                }
                if c.client_id.is_empty() || c.client_secret.is_empty() {
                    return Err(ConfigError::at(
                        format!("dev.client[{i}]"),
                        "client_id and client_secret must not be empty",
                    ));
                }
                Ok(DevClientSettings {
                    client_id: c.client_id,
                    client_secret: c.client_secret,
                    scopes: c.scopes,
                })
            })
            .collect::<Result<_, _>>()?
    };
    Ok(DevSettings {
        jwt_tokens: raw.token_format.unwrap_or(DevTokenFormatName::Jwt) == DevTokenFormatName::Jwt,
        token_ttl: raw.token_ttl.map_or(Duration::from_secs(3600), |d| d.0),
        scopes,
        provider_address,
        audience: raw.audience.unwrap_or_else(|| "api://default".to_owned()),
        clients,
    })
}

fn client(id: &str, secret: &str, scopes: &[&str]) -> DevClientSettings {
    DevClientSettings {
        client_id: id.to_owned(),
        client_secret: secret.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn join(path: &str) -> String {
    if path.is_empty() {
        "dev".to_owned()
    } else {
        format!("dev.{path}")
    }
}
