//! The registry's changes that reach the provider: creating a client (RFC 7591 / Okta), rotating
//! its secret, deleting it. Each records its intent in the store before the call is sent and its
//! outcome before anything is acted on, so a crash or a lost answer is resolved by looking the
//! client up by its exact, deterministic `client_name` and adopting it, never by a blind retry.
//! Secrets are printed once and never stored.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::json;

use super::model::{App, AppStatus, check_name};
use super::{NewApp, Registry, RegistryError};
use crate::provider::{
    ClientRef, ClientRequest, Deleted, RegisteredClient, Registration, RegistrationError, Rotation,
};

/// What `app create` and `app rotate-secret` print, in RFC 7591's names.
#[derive(Debug, Serialize)]
pub struct Credentials {
    pub client_id: String,
    /// Shown once; `None` when the provider kept the old one or the answer was lost.
    pub client_secret: Option<String>,
    pub client_name: String,
    pub grant_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<u64>,
}

/// One provider operation as the store recorded it.
#[derive(Debug, Serialize)]
pub struct Operation {
    pub id: String,
    pub kind: String,
    pub app: String,
    pub state: String,
    pub detail: String,
}

/// How a provider operation ended.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// The provider may or may not have acted (no answer, and no way to look): recorded as a
    /// pending operation for `tollgate idp` to resolve.
    Pending(String),
}

/// The longest wait for a rate limit's reset before giving up (the CLI waits; beyond this, the
/// operation fails and says when to retry).
const MAX_RESET_WAIT: Duration = Duration::from_secs(60);

impl Registry {
    /// Registers a new client at the provider and records the application.
    pub async fn create_app(
        &self,
        registration: &Registration,
        new: NewApp,
    ) -> Result<Outcome<Credentials>, RegistryError> {
        check_name("application", &new.name)?;
        check_redirects(&new.grant, &new.redirect_uris)?;
        if self.store.app(&new.name).await?.is_some() {
            return Err(super::duplicate("application", &new.name, ""));
        }
        let request = client_request(&new, registration.is_okta());
        let op = self
            .record_intent("create_client", &new.name, &request.name)
            .await?;
        let answer = with_reset_wait(|| registration.create(&request)).await;
        let client = match answer {
            Ok(client) => client,
            Err(RegistrationError::Unavailable(e)) => {
                // The create may have taken effect: look for it before anything else.
                match registration.find_by_name(&new.name).await {
                    Ok(Some(found)) => found,
                    Ok(None) => {
                        self.finish(&op, "failed", &format!("not created: {e}"))
                            .await?;
                        return Err(provider(RegistrationError::Unavailable(e)));
                    }
                    Err(_) => {
                        let why = format!(
                            "the provider did not answer ({e}) and cannot be searched by name: \
                             whether {} exists there is unknown",
                            registration.client_name(&new.name)
                        );
                        return Ok(Outcome::Pending(why));
                    }
                }
            }
            Err(e) => {
                self.finish(&op, "failed", &e.to_string()).await?;
                return Err(provider(e));
            }
        };
        let app = self.adopt(&new, &client).await?;
        self.finish(&op, "done", &format!("client {}", client.client_id))
            .await?;
        Ok(Outcome::Done(credentials(&app, &client, registration)))
    }

    /// Records the application for a client the provider holds.
    async fn adopt(&self, new: &NewApp, client: &RegisteredClient) -> Result<App, RegistryError> {
        let mut change = self.store.begin().await?;
        let now = self.now();
        let app = App {
            name: new.name.clone(),
            client_id: client.client_id.clone(),
            grant: new.grant.clone(),
            redirect_uris: new.redirect_uris.clone(),
            description: new.description.clone(),
            status: AppStatus::Active,
            origin: "created".to_owned(),
            created_at: now,
            updated_at: now,
        };
        change.insert_app(&app).await?;
        let mut entry = self.entry("app.create", format!("app/{}", app.name));
        entry.after = Some(json!(app));
        change.commit(&entry).await?;
        Ok(app)
    }

    /// Issues a new secret for a created application's client.
    pub async fn rotate_secret(
        &self,
        registration: &Registration,
        name: &str,
    ) -> Result<Credentials, RegistryError> {
        let app = self.created_app(name).await?;
        let op = self
            .record_intent("rotate_secret", name, &app.client_id)
            .await?;
        let reference = client_ref(&app);
        match with_reset_wait(|| registration.rotate_secret(&reference)).await {
            Ok(Rotation::Rotated(client) | Rotation::Kept(client)) => {
                self.finish(&op, "done", "").await?;
                Ok(credentials(&app, &client, registration))
            }
            Err(e) => {
                self.finish(&op, "failed", &e.to_string()).await?;
                Err(provider(e))
            }
        }
    }

    /// Deletes an application: its contracts first (locally, at once), then its client at the
    /// provider (unless `keep_client`, or it was imported), then the application.
    pub async fn delete_app_and_client(
        &self,
        registration: Option<&Registration>,
        name: &str,
        keep_client: bool,
    ) -> Result<App, RegistryError> {
        let app = self
            .store
            .app(name)
            .await?
            .ok_or_else(|| super::not_found("application", name))?;
        if keep_client || app.origin != "created" {
            return self.delete_app(name).await;
        }
        let registration = registration.ok_or_else(|| {
            RegistryError::Invalid(
                "the provider's registration is not configured: delete with --keep-idp-client, \
                 or set provider.registration_authorization"
                    .to_owned(),
            )
        })?;
        // No gateway admits the application past this point, whatever the provider answers.
        self.set_app_status(name, AppStatus::Disabled).await?;
        let op = self
            .record_intent("delete_client", name, &app.client_id)
            .await?;
        let reference = client_ref(&app);
        match with_reset_wait(|| registration.delete(&reference)).await {
            Ok(Deleted::Removed | Deleted::AlreadyGone) => {
                self.finish(&op, "done", "").await?;
                self.delete_app(name).await
            }
            Err(e) => {
                self.finish(&op, "failed", &e.to_string()).await?;
                let problem = e.problem().cloned().map(Box::new);
                Err(RegistryError::Provider {
                    message: format!(
                        "{e}; the application is disabled and kept: retry, or delete it with --keep-idp-client"
                    ),
                    problem,
                })
            }
        }
    }

    /// Every provider operation, newest first.
    pub async fn operations(&self) -> Result<Vec<Operation>, RegistryError> {
        let rows = self.store.operations().await?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, app, state, detail)| Operation {
                id,
                kind,
                app,
                state,
                detail,
            })
            .collect())
    }

    async fn created_app(&self, name: &str) -> Result<App, RegistryError> {
        let app = self
            .store
            .app(name)
            .await?
            .ok_or_else(|| super::not_found("application", name))?;
        if app.origin != "created" {
            return Err(RegistryError::Invalid(format!(
                "application {name:?} was imported: its client is managed where it was made"
            )));
        }
        Ok(app)
    }

    /// Records that an operation is about to be sent; its id.
    async fn record_intent(
        &self,
        kind: &str,
        app: &str,
        target: &str,
    ) -> Result<String, RegistryError> {
        let mut change = self.store.begin().await?;
        let id = format!("op-{}", change.revision);
        let now = self.now();
        change
            .put_operation(&id, kind, app, "pending", target, now)
            .await?;
        let mut entry = self.entry(&format!("op.{kind}"), format!("app/{app}"));
        entry.after = Some(json!({"operation": id, "state": "pending", "target": target}));
        change.commit(&entry).await?;
        Ok(id)
    }

    async fn finish(&self, op: &str, state: &str, detail: &str) -> Result<(), RegistryError> {
        self.store
            .finish_operation(op, state, detail, self.now())
            .await
    }
}

/// Redirect URIs as RFC 6749 §3.1.2 has them: absolute, no fragment; needed by the
/// authorization code grant and meaningless to client credentials.
pub(super) fn check_redirects(grant: &str, uris: &[String]) -> Result<(), RegistryError> {
    for uri in uris {
        let parsed = url::Url::parse(uri).map_err(|_| {
            RegistryError::Invalid(format!("--redirect-uri {uri:?}: not an absolute URI"))
        })?;
        if parsed.fragment().is_some() {
            return Err(RegistryError::Invalid(format!(
                "--redirect-uri {uri:?}: a redirect URI has no fragment (RFC 6749 §3.1.2)"
            )));
        }
    }
    match (grant, uris.is_empty()) {
        ("authorization_code", true) => Err(RegistryError::Invalid(
            "--grant authorization_code needs at least one --redirect-uri".to_owned(),
        )),
        ("client_credentials", false) => Err(RegistryError::Invalid(
            "--grant client_credentials takes no --redirect-uri".to_owned(),
        )),
        _ => check_grant(grant),
    }
}

/// The grants tollgate registers clients for.
pub(super) fn check_grant(grant: &str) -> Result<(), RegistryError> {
    match grant {
        "authorization_code" | "client_credentials" => Ok(()),
        other => Err(RegistryError::Invalid(format!(
            "grant {other:?}: client_credentials or authorization_code"
        ))),
    }
}

/// Waits out a 429 whose reset is near, once; a later one fails with the time to retry.
async fn with_reset_wait<T, F, Fut>(call: F) -> Result<T, RegistrationError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistrationError>>,
{
    match call().await {
        Err(RegistrationError::RateLimited {
            reset: Some(reset), ..
        }) => {
            let wait = reset
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            if wait > MAX_RESET_WAIT {
                return call().await;
            }
            tracing::warn!(
                wait_secs = wait.as_secs(),
                "the provider is rate limiting: waiting for its reset"
            );
            tokio::time::sleep(wait).await;
            call().await
        }
        other => other,
    }
}

fn client_request(new: &NewApp, okta: bool) -> ClientRequest {
    let service = new.grant == "client_credentials";
    ClientRequest {
        name: new.name.clone(),
        grant_types: vec![new.grant.clone()],
        response_types: match (service, okta) {
            (true, true) => vec!["token".to_owned()],
            (true, false) => Vec::new(),
            (false, _) => vec!["code".to_owned()],
        },
        redirect_uris: new.redirect_uris.clone(),
        application_type: Some(if service { "service" } else { "web" }.to_owned()),
    }
}

fn client_ref(app: &App) -> ClientRef {
    ClientRef {
        client_id: app.client_id.clone(),
        registration_client_uri: None,
        registration_access_token: None,
    }
}

fn credentials(app: &App, client: &RegisteredClient, registration: &Registration) -> Credentials {
    Credentials {
        client_id: client.client_id.clone(),
        client_secret: client.client_secret.as_ref().map(|s| s.expose().to_owned()),
        client_name: client
            .client_name
            .clone()
            .unwrap_or_else(|| registration.client_name(&app.name)),
        grant_types: vec![app.grant.clone()],
        redirect_uris: app.redirect_uris.clone(),
        client_secret_expires_at: client.client_secret_expires_at,
    }
}

fn provider(e: RegistrationError) -> RegistryError {
    RegistryError::from(e)
}
