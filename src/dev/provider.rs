//! The embedded dev OpenID provider of `tollgate dev`: a hyper server shaped like an Okta custom
//! authorization server (issuer path `/oauth2/default`), so the real gateway can be tried against it
//! exactly as against Okta, with nothing to install and no account.
//!
//! It serves the metadata (RFC 8414 and OpenID Discovery), its public key (RFC 7517), the
//! client-credentials grant (RFC 6749 §4.4) issuing RS256 JWT access tokens (RFC 9068, with Okta's
//! `cid`/`scp` too) or opaque ones, introspection (RFC 7662) and open dynamic registration
//! (RFC 7591). The signing key is generated afresh on every start, and issued tokens live in memory
//! only: nothing survives a restart. It listens on loopback only and is for development only: it
//! has no rate limiting, no consent and no persistence.

mod clients;
mod endpoints;
mod form;
mod keys;
mod reply;
mod scopes;
mod tokens;

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use self::clients::ClientRegistry;
use self::keys::{SigningKey, random_b64url};
use self::reply::OAuthError;
use self::tokens::{IssuedTokens, TokenKey, TokenRecord};
use super::listener::serve_http;
use crate::clock::{Clock, SystemClock};

/// The issuer's path, as Okta names its default custom authorization server.
const ISSUER_PATH: &str = "/oauth2/default";

/// A client configured at start: it may get client-credentials tokens with (a subset of) its
/// scopes, and may introspect.
#[derive(Clone, PartialEq, Eq)]
pub struct DevClient {
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
}

/// The kind of access token the provider issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevTokenFormat {
    /// An RS256-signed JWT (RFC 9068), verifiable with the provider's JWKS or introspected.
    Jwt,
    /// 32 random bytes, base64url: only introspection can tell what it means.
    Opaque,
}

/// What the provider knows and issues.
#[derive(Clone, Debug)]
pub struct DevProviderSettings {
    /// The configured clients; more may register at run time.
    pub clients: Vec<DevClient>,
    /// Every scope the provider knows; requesting any other is `invalid_scope`. Each client's
    /// scopes must be among these.
    pub scopes: Vec<String>,
    pub token_format: DevTokenFormat,
    /// Lifetime of issued tokens; at least one second.
    pub token_ttl: Duration,
    /// The `aud` of issued tokens, e.g. `"api://default"`.
    pub audience: String,
}

/// A running dev provider; its server (and every connection) stops on drop.
#[derive(Debug)]
pub struct DevProvider {
    issuer: String,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

/// Everything the endpoints share while the provider runs.
struct DevState {
    issuer: String,
    audience: String,
    known_scopes: Vec<String>,
    token_format: DevTokenFormat,
    token_ttl_secs: u64,
    key: SigningKey,
    clients: ClientRegistry,
    tokens: IssuedTokens,
    clock: Arc<dyn Clock>,
}

// === impl DevClient ===

impl fmt::Debug for DevClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<set>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

// === impl DevProvider ===

impl DevProvider {
    /// Generates a fresh RSA-2048 signing key and serves on `listener`, which must be bound to a
    /// loopback address (else `InvalidInput`: the provider hands out tokens to anyone who asks, so
    /// it must not be reachable from elsewhere). Settings that contradict themselves are
    /// `InvalidInput` too, with a message saying which.
    pub async fn start(
        listener: TcpListener,
        settings: DevProviderSettings,
    ) -> io::Result<DevProvider> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            return Err(invalid_input(format!(
                "the dev provider listens on loopback only, not on {addr}"
            )));
        }
        check_settings(&settings).map_err(invalid_input)?;
        // Generating an RSA key takes tens of milliseconds of CPU: keep it off the async workers.
        let key = tokio::task::spawn_blocking(SigningKey::generate)
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
        let issuer = format!("http://{addr}{ISSUER_PATH}");
        let state = Arc::new(DevState {
            issuer: issuer.clone(),
            audience: settings.audience,
            known_scopes: settings.scopes,
            token_format: settings.token_format,
            token_ttl_secs: settings.token_ttl.as_secs(),
            key,
            clients: ClientRegistry::new(settings.clients),
            tokens: IssuedTokens::default(),
            clock: Arc::new(SystemClock),
        });
        let server = tokio::spawn(serve_http(listener, move |req| {
            let state = state.clone();
            async move { endpoints::answer(req, &state).await }
        }));
        Ok(DevProvider {
            issuer,
            addr,
            server,
        })
    }

    /// `http://<addr>/oauth2/default`, exactly as the metadata names it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn token_url(&self) -> String {
        format!("{}/v1/token", self.issuer)
    }

    pub fn introspection_url(&self) -> String {
        format!("{}/v1/introspect", self.issuer)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/v1/keys", self.issuer)
    }

    pub fn registration_url(&self) -> String {
        format!("{}/v1/clients", self.issuer)
    }
}

impl Drop for DevProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// === impl DevState ===

impl DevState {
    /// Mints an access token for `client_id` holding `scopes`, in the configured format, and
    /// remembers it for introspection.
    fn issue(&self, client_id: &str, scopes: Vec<String>) -> Result<String, OAuthError> {
        let now = self.clock.now_unix();
        let record = TokenRecord {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            client_id: client_id.to_owned(),
            scopes,
            issued_at: now,
            expires_at: now.saturating_add(self.token_ttl_secs),
            jti: random_b64url(16)?,
        };
        let (token, key) = match self.token_format {
            DevTokenFormat::Jwt => (
                self.key.sign(&record.jwt_claims())?,
                TokenKey::Jti(record.jti.clone()),
            ),
            DevTokenFormat::Opaque => {
                let token = random_b64url(32)?;
                let key = TokenKey::opaque(&token);
                (token, key)
            }
        };
        self.tokens.remember(key, record, now)?;
        Ok(token)
    }

    /// The record of `token` if this provider issued it and it has not expired. A JWT counts only
    /// if its signature is this process's key's; its `jti` then finds the record.
    fn find_token(&self, token: &str) -> Option<TokenRecord> {
        let key = if token.split('.').count() == 3 {
            TokenKey::Jti(self.key.verified_jti(token)?)
        } else {
            TokenKey::opaque(token)
        };
        self.tokens.find(&key, self.clock.now_unix())
    }
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Refuses settings the provider could not honour: a TTL under a second (`expires_in` counts whole
/// seconds), an empty audience or credential, a client listed twice, or a client scope the provider
/// does not know (it could never be requested).
fn check_settings(settings: &DevProviderSettings) -> Result<(), String> {
    if settings.token_ttl.as_secs() == 0 {
        return Err("the token lifetime must be at least one second".to_owned());
    }
    if settings.audience.is_empty() {
        return Err("the audience must not be empty".to_owned());
    }
    if let Some(bad) = settings.scopes.iter().find(|s| !scopes::is_scope_token(s)) {
        return Err(format!(
            "{bad:?} is not a valid scope (RFC 6749 §3.3: printable ASCII, no space, `\"` or `\\`)"
        ));
    }
    let mut seen = HashSet::new();
    for client in &settings.clients {
        let id = &client.client_id;
        if id.is_empty() || client.client_secret.is_empty() {
            return Err("a client id and its secret must not be empty".to_owned());
        }
        if !seen.insert(id.as_str()) {
            return Err(format!("client {id:?} is listed twice"));
        }
        if let Some(unknown) = client.scopes.iter().find(|s| !settings.scopes.contains(s)) {
            return Err(format!(
                "client {id:?} has scope {unknown:?}, which the provider does not know"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DevProviderSettings {
        DevProviderSettings {
            clients: vec![DevClient {
                client_id: "app".to_owned(),
                client_secret: "s3cr3t-value".to_owned(),
                scopes: vec!["read".to_owned()],
            }],
            scopes: vec!["read".to_owned(), "write".to_owned()],
            token_format: DevTokenFormat::Jwt,
            token_ttl: Duration::from_secs(3600),
            audience: "api://default".to_owned(),
        }
    }

    #[test]
    fn sound_settings_pass() {
        assert_eq!(check_settings(&settings()), Ok(()));
    }

    #[test]
    fn contradictory_settings_are_refused_with_the_reason() {
        let mut s = settings();
        s.clients[0].scopes.push("admin".to_owned());
        assert!(check_settings(&s).unwrap_err().contains("\"admin\""));

        let mut s = settings();
        s.clients.push(s.clients[0].clone());
        assert!(check_settings(&s).unwrap_err().contains("twice"));

        let mut s = settings();
        s.token_ttl = Duration::from_millis(500);
        assert!(check_settings(&s).unwrap_err().contains("second"));

        let mut s = settings();
        s.scopes.push("two words".to_owned());
        assert!(check_settings(&s).unwrap_err().contains("valid scope"));

        let mut s = settings();
        s.clients[0].client_secret.clear();
        assert!(check_settings(&s).is_err());
    }

    #[test]
    fn debug_never_shows_a_client_secret() {
        let text = format!("{:?}", settings());
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("<set>"));
    }

    #[tokio::test]
    async fn refuses_a_listener_that_is_not_loopback() {
        let Ok(listener) = TcpListener::bind("0.0.0.0:0").await else {
            return; // no such interface in this sandbox: nothing to prove
        };
        let err = DevProvider::start(listener, settings()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn refuses_contradictory_settings_before_generating_a_key() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut s = settings();
        s.token_ttl = Duration::ZERO;
        let err = DevProvider::start(listener, s).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
