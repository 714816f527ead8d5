//! The clients the dev provider knows — configured ones and those registered at run time
//! (RFC 7591) — and the check of the credentials they present.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use aws_lc_rs::constant_time::verify_slices_are_equal;

use super::DevClient;
use super::form::ClientCredentials;
use super::keys::random_b64url;
use super::reply::OAuthError;

/// Registrations beyond this many are refused: registration is open, so it needs a bound.
const MAX_CLIENTS: usize = 10_000;

/// What the provider holds of one client.
struct ClientEntry {
    secret: String,
    scopes: Vec<String>,
}

/// Every client, by id.
pub(super) struct ClientRegistry {
    clients: RwLock<HashMap<String, ClientEntry>>,
}

/// A client whose credentials held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AuthenticatedClient {
    pub client_id: String,
    pub scopes: Vec<String>,
}

/// A newly registered client's credentials, to be shown to it once.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Registration {
    pub client_id: String,
    pub client_secret: String,
}

// === impl ClientRegistry ===

impl ClientRegistry {
    pub fn new(configured: Vec<DevClient>) -> Self {
        let clients = configured
            .into_iter()
            .map(|c| {
                let entry = ClientEntry {
                    secret: c.client_secret,
                    scopes: c.scopes,
                };
                (c.client_id, entry)
            })
            .collect();
        ClientRegistry {
            clients: RwLock::new(clients),
        }
    }

    /// The client, if `credentials` name one and carry its secret. Unknown id or wrong secret get
    /// the same answer, so the endpoint does not tell which ids exist.
    pub fn authenticate(
        &self,
        credentials: &ClientCredentials,
    ) -> Result<AuthenticatedClient, OAuthError> {
        // A poisoned lock still holds a consistent map: entries are only ever inserted whole.
        let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
        clients
            .get(&credentials.client_id)
            .filter(|entry| {
                // Constant time, so the secret cannot be guessed byte by byte from timings.
                verify_slices_are_equal(
                    entry.secret.as_bytes(),
                    credentials.client_secret.as_bytes(),
                )
                .is_ok()
            })
            .map(|entry| AuthenticatedClient {
                client_id: credentials.client_id.clone(),
                scopes: entry.scopes.clone(),
            })
            .ok_or(OAuthError::InvalidClient("client authentication failed"))
    }

    /// Registers a client holding `scopes`, with a fresh random id and secret.
    pub fn register(&self, scopes: Vec<String>) -> Result<Registration, OAuthError> {
        let client_id = format!("dev-{}", random_b64url(12)?);
        let client_secret = random_b64url(32)?;
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        if clients.len() >= MAX_CLIENTS {
            return Err(OAuthError::Exhausted(
                "the dev provider holds as many clients as it will; restart it",
            ));
        }
        if clients.contains_key(&client_id) {
            // 96 random bits colliding means the generator is broken, not unlucky.
            return Err(OAuthError::Internal("client id collision".to_owned()));
        }
        let entry = ClientEntry {
            secret: client_secret.clone(),
            scopes,
        };
        clients.insert(client_id.clone(), entry);
        Ok(Registration {
            client_id,
            client_secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> ClientRegistry {
        ClientRegistry::new(vec![DevClient {
            client_id: "app".to_owned(),
            client_secret: "secret".to_owned(),
            scopes: vec!["read".to_owned()],
        }])
    }

    fn creds(id: &str, secret: &str) -> ClientCredentials {
        ClientCredentials {
            client_id: id.to_owned(),
            client_secret: secret.to_owned(),
        }
    }

    #[test]
    fn a_configured_client_authenticates_with_its_secret_only() {
        let r = registry();
        assert_eq!(
            r.authenticate(&creds("app", "secret")).unwrap(),
            AuthenticatedClient {
                client_id: "app".to_owned(),
                scopes: vec!["read".to_owned()],
            }
        );
        for (id, secret) in [
            ("app", "secreT"),
            ("app", "secret "),
            ("app", ""),
            ("nobody", "secret"),
        ] {
            assert_eq!(
                r.authenticate(&creds(id, secret)),
                Err(OAuthError::InvalidClient("client authentication failed")),
                "{id}:{secret}"
            );
        }
    }

    #[test]
    fn a_registered_client_authenticates_and_holds_its_scopes() {
        let r = registry();
        let reg = r.register(vec!["write".to_owned()]).unwrap();
        assert!(reg.client_id.starts_with("dev-"));
        let client = r
            .authenticate(&creds(&reg.client_id, &reg.client_secret))
            .unwrap();
        assert_eq!(client.scopes, ["write"]);
        let other = r.register(Vec::new()).unwrap();
        assert_ne!(other.client_id, reg.client_id);
        assert_ne!(other.client_secret, reg.client_secret);
    }
}
