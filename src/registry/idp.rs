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
    ClientChanges, ClientRef, ClientRequest, Deleted, RegisteredClient, Registration,
    RegistrationError, Rotation,
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
    /// What could not be done, though the client exists.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
        self.provider_for(Some(&new.provider), "provider")?;
        if self.store.app(&new.name).await?.is_some() {
            return Err(super::duplicate("application", &new.name, ""));
        }
        if !registration.is_okta() && self.encryption_key.is_none() {
            return Err(RegistryError::Invalid(
                "set [registry] encryption_key (a passphrase of 32 characters or more, from the environment): \
                 this provider manages each client with its own registration access token, which is kept sealed with it"
                    .to_owned(),
            ));
        }
        let request = client_request(&new, registration.is_okta());
        // The request goes into the intent's audit entry, so `idp retry` can make it again.
        let asked = json!({"provider": new.provider, "grant": new.grant, "redirect_uris": new.redirect_uris, "description": new.description});
        let op = self
            .record_intent_with("create_client", &new.name, &request.name, asked)
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
        let (app, warning) = self.adopt(&new, &client).await?;
        self.finish(&op, "done", &format!("client {}", client.client_id))
            .await?;
        let mut shown = credentials(&app, &client, registration);
        shown.warnings.extend(warning);
        Ok(Outcome::Done(shown))
    }

    /// Records the application for a client the provider holds.
    async fn adopt(
        &self,
        new: &NewApp,
        client: &RegisteredClient,
    ) -> Result<(App, Option<String>), RegistryError> {
        // Before the change: deriving the key may write the store's salt.
        let sealer = self.sealer().await?;
        let mut change = self.store.begin().await?;
        let now = self.now();
        let app = App {
            name: new.name.clone(),
            provider: new.provider.clone(),
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
        let warning = keep_registration(&mut change, sealer, &app.name, client).await?;
        let mut entry = self.entry("app.create", format!("app/{}", app.name));
        entry.after = Some(json!(app));
        change.commit(&entry).await?;
        Ok((app, warning))
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
        let reference = self.client_ref(&app).await?;
        match with_reset_wait(|| registration.rotate_secret(&reference)).await {
            Ok(Rotation::Rotated(client) | Rotation::Kept(client)) => {
                self.finish(&op, "done", "").await?;
                self.renew_registration(&app.name, &client).await?;
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
        let reference = self.client_ref(&app).await?;
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

    /// Changes an application's description (locally) and redirect URIs (at the provider first,
    /// for a created application with `update_in_idp`: Okta's PUT replaces the whole client, so
    /// the client is read and merged before it is written).
    pub async fn update_app(
        &self,
        registration: Option<&Registration>,
        name: &str,
        description: Option<String>,
        redirect_uris: Option<Vec<String>>,
    ) -> Result<App, RegistryError> {
        let before = self
            .store
            .app(name)
            .await?
            .ok_or_else(|| super::not_found("application", name))?;
        if let Some(uris) = &redirect_uris {
            check_redirects(&before.grant, uris)?;
        }
        if let Some(uris) = &redirect_uris
            && *uris != before.redirect_uris
        {
            let registration = match (before.origin.as_str(), registration) {
                ("created", Some(r)) => r,
                ("created", None) => {
                    return Err(RegistryError::Invalid(
                        "the provider's registration is not configured".to_owned(),
                    ));
                }
                _ => {
                    return Err(RegistryError::Invalid(format!(
                        "application {name:?} was imported: change its redirect URIs where its client was made"
                    )));
                }
            };
            let changes = ClientChanges {
                redirect_uris: Some(uris.clone()),
                ..ClientChanges::default()
            };
            let op = self
                .record_intent("update_client", name, &before.client_id)
                .await?;
            let reference = self.client_ref(&before).await?;
            match with_reset_wait(|| registration.update(&reference, &changes)).await {
                Ok(client) => {
                    self.finish(&op, "done", "").await?;
                    self.renew_registration(name, &client).await?;
                }
                Err(e) => {
                    self.finish(&op, "failed", &e.to_string()).await?;
                    return Err(provider(e));
                }
            }
        }
        let after = App {
            description: description.unwrap_or_else(|| before.description.clone()),
            redirect_uris: redirect_uris.unwrap_or_else(|| before.redirect_uris.clone()),
            updated_at: self.now(),
            ..before.clone()
        };
        let mut change = self.store.begin().await?;
        change.update_app(&after).await?;
        let mut entry = self.entry("app.update", format!("app/{name}"));
        entry.before = Some(json!(before));
        entry.after = Some(json!(after));
        change.commit(&entry).await?;
        Ok(after)
    }

    /// Where and with what the provider manages an application's client: its own RFC 7592
    /// credential if one is kept, else the configured one (Okta).
    async fn client_ref(&self, app: &App) -> Result<ClientRef, RegistryError> {
        let (uri, token) = match self.store.registration(&app.name).await? {
            None => (None, None),
            Some((uri, sealed)) => {
                let sealer = self.sealer().await?.ok_or_else(|| {
                    RegistryError::Invalid(
                        "set [registry] encryption_key: the client's registration access token is sealed with it"
                            .to_owned(),
                    )
                })?;
                let uri = url::Url::parse(&uri).map_err(|_| {
                    RegistryError::Query(format!("the store holds a bad client URI {uri:?}"))
                })?;
                (Some(uri), Some(sealer.open(&sealed, &app.name)?))
            }
        };
        Ok(ClientRef {
            client_id: app.client_id.clone(),
            registration_client_uri: uri,
            registration_access_token: token,
        })
    }

    /// After an update or a rotation: an RFC 7592 provider may have issued a new token.
    async fn renew_registration(
        &self,
        app: &str,
        client: &RegisteredClient,
    ) -> Result<(), RegistryError> {
        if client.registration_access_token.is_none() {
            return Ok(());
        }
        let sealer = self.sealer().await?;
        let mut change = self.store.begin().await?;
        if let Some(warning) = keep_registration(&mut change, sealer, app, client).await? {
            tracing::warn!("{warning}");
        }
        let mut entry = self.entry("app.registration_renewed", format!("app/{app}"));
        entry.after = Some(json!({"client_id": client.client_id}));
        change.commit(&entry).await?;
        Ok(())
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
        self.record_intent_with(kind, app, target, serde_json::Value::Null)
            .await
    }

    async fn record_intent_with(
        &self,
        kind: &str,
        app: &str,
        target: &str,
        request: serde_json::Value,
    ) -> Result<String, RegistryError> {
        let mut change = self.store.begin().await?;
        let id = format!("op-{}", change.revision);
        let now = self.now();
        change
            .put_operation(&id, kind, app, "pending", target, now)
            .await?;
        let mut entry = self.entry(&format!("op.{kind}"), format!("app/{app}"));
        entry.after = Some(
            json!({"operation": id, "state": "pending", "target": target, "request": request}),
        );
        change.commit(&entry).await?;
        Ok(id)
    }

    /// The provider an operation calls: its application's, or, for a create whose application
    /// is not recorded yet, the one its intent asked for.
    pub async fn operation_provider(&self, id: &str) -> Result<String, RegistryError> {
        let ops = self.operations().await?;
        let op = ops
            .iter()
            .find(|o| o.id == id)
            .ok_or_else(|| super::not_found("operation", id))?;
        match self.store.app(&op.app).await? {
            Some(app) => Ok(app.provider),
            None => Ok(self.asked(id, &op.app).await?.provider),
        }
    }

    /// Runs a pending or failed provider operation again, as a person decided to (`tollgate idp
    /// retry`): a create first looks for the client by name where the provider can be searched,
    /// and is made again only where it was not found or cannot be looked for. The old operation is
    /// marked `retried`; the new call is an operation of its own.
    pub async fn retry(
        &self,
        registration: &Registration,
        id: &str,
    ) -> Result<Outcome<Option<Credentials>>, RegistryError> {
        let ops = self.operations().await?;
        let op = ops
            .iter()
            .find(|o| o.id == id)
            .ok_or_else(|| super::not_found("operation", id))?;
        if op.state == "done" || op.state == "retried" {
            return Err(RegistryError::Invalid(format!(
                "operation {id} is {}: nothing to retry",
                op.state
            )));
        }
        let app = op.app.clone();
        let outcome = match op.kind.as_str() {
            "create_client" => {
                if self.store.app(&app).await?.is_some() {
                    Outcome::Done(None)
                } else {
                    let new = self.asked(id, &app).await?;
                    match self.create_app(registration, new).await? {
                        Outcome::Done(c) => Outcome::Done(Some(c)),
                        Outcome::Pending(why) => Outcome::Pending(why),
                    }
                }
            }
            "rotate_secret" => Outcome::Done(Some(self.rotate_secret(registration, &app).await?)),
            "delete_client" => {
                self.delete_app_and_client(Some(registration), &app, false)
                    .await?;
                Outcome::Done(None)
            }
            other => {
                return Err(RegistryError::Invalid(format!(
                    "operation {id} ({other}) is retried by running its command again \
                     (`tollgate app update`, `tollgate idp reconcile`)"
                )));
            }
        };
        self.finish(id, "retried", "see the newer operations")
            .await?;
        Ok(outcome)
    }

    /// What a create operation asked for, from its intent's audit entry.
    async fn asked(&self, id: &str, app: &str) -> Result<NewApp, RegistryError> {
        let entries = self.store.audit(0).await?;
        let request = entries
            .iter()
            .filter_map(|e| e.after.as_ref())
            .find(|after| after["operation"] == id)
            .map(|after| after["request"].clone())
            .filter(|r| r.is_object())
            .ok_or_else(|| {
                RegistryError::Invalid(format!(
                    "operation {id} kept no request: create the application again with `tollgate app create`"
                ))
            })?;
        let strings = |key: &str| -> Vec<String> {
            request[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(NewApp {
            name: app.to_owned(),
            // An intent recorded before there were several providers was for the one.
            provider: request["provider"]
                .as_str()
                .unwrap_or(crate::config::DEFAULT_PROVIDER)
                .to_owned(),
            client_id: String::new(),
            grant: request["grant"]
                .as_str()
                .unwrap_or("client_credentials")
                .to_owned(),
            redirect_uris: strings("redirect_uris"),
            description: request["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
    }

    async fn finish(&self, op: &str, state: &str, detail: &str) -> Result<(), RegistryError> {
        self.store
            .finish_operation(op, state, detail, self.now())
            .await
    }
}

/// Keeps (sealed) the RFC 7592 credential a provider answer carries, in `change`; without an
/// `encryption_key` it cannot be kept, which the answer says.
async fn keep_registration(
    change: &mut super::store::Change,
    sealer: Option<&super::seal::Sealer>,
    app: &str,
    client: &RegisteredClient,
) -> Result<Option<String>, RegistryError> {
    let (Some(uri), Some(token)) = (
        &client.registration_client_uri,
        &client.registration_access_token,
    ) else {
        return Ok(None);
    };
    let Some(sealer) = sealer else {
        return Ok(Some(
            "the provider gave this client a registration access token, which is not kept \
             without [registry] encryption_key: tollgate cannot update, rotate or delete it at \
             the provider"
                .to_owned(),
        ));
    };
    let sealed = sealer.seal(token.expose(), app)?;
    change.put_registration(app, uri.as_str(), &sealed).await?;
    Ok(None)
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
        warnings: Vec::new(),
    }
}

fn provider(e: RegistrationError) -> RegistryError {
    RegistryError::from(e)
}

/// What `tollgate idp reconcile` found at the provider, and did about it.
#[derive(Debug, Default, Serialize)]
pub struct Reconciliation {
    /// Clients with tollgate's name prefix and no live application.
    pub orphans: Vec<Orphan>,
    /// Created applications whose client the provider no longer has.
    pub missing: Vec<Missing>,
    /// Created applications whose client differs at the provider.
    pub drift: Vec<Drift>,
}

#[derive(Debug, Serialize)]
pub struct Orphan {
    pub client_id: String,
    pub client_name: String,
    /// `would delete` (dry run), `deleted`, or why it was kept.
    pub action: String,
}

#[derive(Debug, Serialize)]
pub struct Missing {
    pub app: String,
    pub client_id: String,
}

#[derive(Debug, Serialize)]
pub struct Drift {
    pub app: String,
    pub field: &'static str,
    pub registry: serde_json::Value,
    pub provider: serde_json::Value,
}

impl Registry {
    /// Compares the provider's clients carrying tollgate's name prefix with the applications;
    /// deletes the orphans unless `dry_run` (and only with `delete_in_idp`).
    pub async fn reconcile(
        &self,
        registration: &Registration,
        provider_name: &str,
        dry_run: bool,
    ) -> Result<Reconciliation, RegistryError> {
        let clients = registration.list_prefixed().await.map_err(provider)?;
        let apps = self.store.apps().await?;
        let mut out = Reconciliation::default();
        // Only this provider's applications: another's clients are not missing here.
        let created = |a: &&App| a.origin == "created" && a.provider == provider_name;
        for app in apps.iter().filter(created) {
            match clients.iter().find(|c| c.client_id == app.client_id) {
                None => out.missing.push(Missing {
                    app: app.name.clone(),
                    client_id: app.client_id.clone(),
                }),
                Some(client) => {
                    let theirs = client
                        .metadata
                        .get("redirect_uris")
                        .cloned()
                        .unwrap_or_else(|| json!([]));
                    if theirs != json!(app.redirect_uris) {
                        out.drift.push(Drift {
                            app: app.name.clone(),
                            field: "redirect_uris",
                            registry: json!(app.redirect_uris),
                            provider: theirs,
                        });
                    }
                }
            }
        }
        let live = |id: &str| {
            apps.iter()
                .any(|a| a.client_id == id && a.provider == provider_name)
        };
        for client in clients.iter().filter(|c| !live(&c.client_id)) {
            let name = client.client_name.clone().unwrap_or_default();
            let action = if dry_run {
                "would delete".to_owned()
            } else {
                self.delete_orphan(registration, client, &name).await?
            };
            out.orphans.push(Orphan {
                client_id: client.client_id.clone(),
                client_name: name,
                action,
            });
        }
        Ok(out)
    }

    async fn delete_orphan(
        &self,
        registration: &Registration,
        client: &RegisteredClient,
        name: &str,
    ) -> Result<String, RegistryError> {
        if !registration.deletes() {
            return Ok("kept: set provider.delete_in_idp = true to delete it".to_owned());
        }
        let reference = client.to_ref();
        let op = self
            .record_intent("delete_orphan", name, &client.client_id)
            .await?;
        Ok(
            match with_reset_wait(|| registration.delete(&reference)).await {
                Ok(_) => {
                    self.finish(&op, "done", "").await?;
                    "deleted".to_owned()
                }
                Err(e) => {
                    self.finish(&op, "failed", &e.to_string()).await?;
                    format!("failed: {e}")
                }
            },
        )
    }
}
