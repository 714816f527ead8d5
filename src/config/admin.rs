//! `[admin]`: the bearer token of the admin listener's registry API (`/v1/*`). Without one the API
//! is refused; the probes and `/metrics` never need it.

use super::ConfigError;
use super::compile::Secret;
use super::raw::RawAdmin;

/// The shortest admin token accepted: long enough that guessing it over the network is hopeless.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdminSettings {
    /// `None`: the `/v1/*` API answers 403 until one is set.
    pub token: Option<Secret>,
}

pub(super) fn admin(raw: RawAdmin) -> Result<AdminSettings, ConfigError> {
    let Some(token) = raw.token else {
        return Ok(AdminSettings::default());
    };
    let chars = token.chars().count();
    if chars < MIN_ADMIN_TOKEN_CHARS {
        return Err(ConfigError::at(
            "admin.token",
            format!(
                "{chars} characters: an admin token needs at least {MIN_ADMIN_TOKEN_CHARS} (e.g. `openssl rand -hex 32`)"
            ),
        ));
    }
    // It travels in an Authorization header: characters a header cannot carry would never match.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::at(
            "admin.token",
            "only visible ASCII characters (no spaces): it is sent as `Authorization: Bearer <token>`",
        ));
    }
    Ok(AdminSettings {
        token: Some(Secret(token)),
    })
}
