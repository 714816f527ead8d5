//! Either real provider behind one face, so the gateway scenarios that apply to both run against
//! the third-party `oidc-provider` and against tollgate's own embedded dev provider (`tollgate
//! dev`), configured with the same clients and scopes. Use `against_both_providers!`.

use std::time::Duration;

use tollgate::dev::provider::{DevClient, DevProvider, DevProviderSettings, DevTokenFormat};

use super::idp::{IdpStats, TestIdp};

/// Which provider a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OidcProvider,
    Dev,
}

/// A running provider of either kind, with the test clients of `idp.rs`.
pub enum Provider {
    Node(Box<TestIdp>),
    Dev(DevProvider),
}

impl Provider {
    /// Opaque tokens unless `jwt`.
    pub async fn start(kind: Kind, jwt: bool) -> Provider {
        match kind {
            Kind::OidcProvider => {
                let format = if jwt { "jwt" } else { "opaque" };
                Provider::Node(Box::new(
                    TestIdp::start_with(serde_json::json!({"accessTokenFormat": format})).await,
                ))
            }
            Kind::Dev => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind the dev provider");
                let client = |id: &str, secret: &str, scopes: &[&str]| DevClient {
                    client_id: id.to_owned(),
                    client_secret: secret.to_owned(),
                    scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                };
                let settings = DevProviderSettings {
                    clients: vec![
                        client("tollgate-introspector", "introspector-secret", &[]),
                        client(
                            "orders-app",
                            "orders-secret",
                            &["mulescope", "orders:admin", "mulescopeX"],
                        ),
                        client("other-app", "other-secret", &["mulescope", "other"]),
                        client("noscope-app", "noscope-secret", &["other", "mulescopeX"]),
                    ],
                    scopes: ["openid", "mulescope", "mulescopeX", "orders:admin", "other"]
                        .map(String::from)
                        .to_vec(),
                    token_format: if jwt {
                        DevTokenFormat::Jwt
                    } else {
                        DevTokenFormat::Opaque
                    },
                    token_ttl: Duration::from_secs(3600),
                    audience: "api://default".to_owned(),
                };
                Provider::Dev(
                    DevProvider::start(listener, settings)
                        .await
                        .expect("start the dev provider"),
                )
            }
        }
    }

    pub fn issuer(&self) -> String {
        match self {
            Provider::Node(idp) => idp.issuer.clone(),
            Provider::Dev(dev) => dev.issuer().to_owned(),
        }
    }

    /// A client_credentials token (client_secret_basic); panics with the provider's answer on failure.
    pub async fn token(&self, client_id: &str, client_secret: &str, scope: &str) -> String {
        match self {
            Provider::Node(idp) => idp.token(client_id, client_secret, scope).await,
            Provider::Dev(dev) => {
                let resp = super::client()
                    .post(dev.token_url())
                    .basic_auth(client_id, Some(client_secret))
                    .form(&[("grant_type", "client_credentials"), ("scope", scope)])
                    .send()
                    .await
                    .expect("dev provider token request");
                let body: serde_json::Value = resp.json().await.expect("dev provider token JSON");
                body["access_token"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no access_token from the dev provider: {body}"))
                    .to_owned()
            }
        }
    }

    /// Calls counted at the provider; the dev provider keeps no counts.
    pub async fn stats(&self) -> Option<IdpStats> {
        match self {
            Provider::Node(idp) => Some(idp.stats().await),
            Provider::Dev(_) => None,
        }
    }
}

/// Runs each named `async fn(Kind)` scenario as two tests, `<name>::oidc_provider` and
/// `<name>::dev_provider`.
#[macro_export]
macro_rules! against_both_providers {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use $crate::common::provider::Kind;

                #[tokio::test]
                async fn oidc_provider() {
                    super::$name(Kind::OidcProvider).await
                }

                #[tokio::test]
                async fn dev_provider() {
                    super::$name(Kind::Dev).await
                }
            }
        )+
    };
}
