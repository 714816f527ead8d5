//! Client registration at the provider, for the registry of client applications: RFC 7591 dynamic
//! client registration (create), RFC 7592 management of a registered client (read, update,
//! delete with the client's own registration access token), and Okta's `/oauth2/v1/clients` (the
//! same create, plus search by name, whole-client PUT, delete and secret rotation, all with the
//! `SSWS` API token in `registration_authorization`). It never sees an incoming request.
//!
//! Which API manages a client is decided per client: one the provider gave a
//! `registration_client_uri` and `registration_access_token` (RFC 7592 §3) is managed there with
//! that token; any other only where the credential is an Okta API token (`SSWS ...`), at
//! `{registration_url}/{client_id}`. The configured credential is never sent anywhere but the
//! registration endpoint's origin and path.
//!
//! Every call has its own timeout (`registration_timeout`). Secrets the provider issues are kept
//! as [`Secret`]s and left out of the metadata kept beside them, so nothing here can log one.

mod problem;
mod search;

use std::sync::Arc;

use http::HeaderValue;
use http::header::{ACCEPT, AUTHORIZATION};
use reqwest::Method;
use serde_json::{Map, Value};
use url::Url;

use super::{ProviderError, ProviderHttp};
use crate::clock::Clock;
use crate::config::{RegistrationSettings, Secret};
use problem::{Credential, failure};

pub use problem::{ProviderProblem, RegistrationError};

/// Metadata the provider sets and a client must not send back (RFC 7592 §2.2).
const READ_ONLY: [&str; 4] = [
    "registration_access_token",
    "registration_client_uri",
    "client_secret_expires_at",
    "client_id_issued_at",
];

/// The client-registration API of one provider.
pub struct Registration {
    http: ProviderHttp,
    url: Url,
    /// `registration_authorization`, marked sensitive so no header dump shows it.
    authorization: HeaderValue,
    okta: bool,
    settings: RegistrationSettings,
    clock: Arc<dyn Clock>,
}

/// A client to register (RFC 7591 §2). `name` is the application's: the provider's `client_name`
/// is `client_name_prefix` followed by it. The client authenticates with `client_secret_basic`.
/// Okta wants a machine-to-machine client as `application_type = "service"` with
/// `response_types = ["token"]`; RFC 7591 servers want `response_types = []` for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientRequest {
    pub name: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub application_type: Option<String>,
}

/// What to change in a registered client; `None` leaves a field as the provider has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientChanges {
    /// The application's new name (the prefix is put before it).
    pub name: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub application_type: Option<String>,
}

/// A client as the provider described it. `Debug` shows no secret: the secrets are [`Secret`]s
/// and `metadata` holds neither `client_secret` nor `registration_access_token`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredClient {
    pub client_id: String,
    pub client_name: Option<String>,
    /// Absent where the provider does not show it (a search, Okta's read).
    pub client_secret: Option<Secret>,
    /// Unix time; 0 means never (RFC 7591 §3.2.1).
    pub client_secret_expires_at: Option<u64>,
    /// RFC 7592 §3: the client's own credential for managing it. A provider may issue a new one on
    /// each update: keep the one from the latest answer.
    pub registration_access_token: Option<Secret>,
    pub registration_client_uri: Option<Url>,
    /// Everything else the provider said about the client.
    pub metadata: Map<String, Value>,
}

/// What is needed to manage a registered client: what the registry keeps of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRef {
    pub client_id: String,
    pub registration_client_uri: Option<Url>,
    pub registration_access_token: Option<Secret>,
}

/// The outcome of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Removed,
    /// It was not there (any more): a repeated delete, or one made by hand.
    AlreadyGone,
}

/// The outcome of a secret rotation. RFC 7592 has no rotation call: its PUT without
/// `client_secret` lets the server issue a new one (§2.2), and a server may keep the old one
/// (oidc-provider does); both answers carry the client as it now is, whose registration access
/// token may be new and must be kept.
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub enum Rotation {
    Rotated(RegisteredClient),
    Kept(RegisteredClient),
}

/// Where and as whom one client is managed.
struct Target {
    url: Url,
    authorization: HeaderValue,
    credential: Credential,
}

/// A successful answer's JSON and headers.
struct Reply {
    headers: http::HeaderMap,
    json: Value,
}

// === impl Registration ===

impl Registration {
    pub(super) fn new(
        http: ProviderHttp,
        url: Url,
        authorization: &Secret,
        settings: RegistrationSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RegistrationError> {
        let mut header = HeaderValue::from_str(authorization.expose()).map_err(|_| {
            RegistrationError::NotConfigured(
                "provider.registration_authorization is not a valid header value",
            )
        })?;
        header.set_sensitive(true);
        let okta = authorization
            .expose()
            .get(..5)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("SSWS "));
        Ok(Registration {
            http,
            url,
            authorization: header,
            okta,
            settings,
            clock,
        })
    }

    /// The provider's `client_name` for an application.
    /// Whether this is Okta's client API (an `SSWS` credential), whose clients differ a little
    /// from RFC 7591's (a machine-to-machine client has `response_types = ["token"]`).
    pub fn is_okta(&self) -> bool {
        self.okta
    }

    /// Whether deletes reach the provider (`delete_in_idp`).
    pub fn deletes(&self) -> bool {
        self.settings.delete_in_idp
    }

    pub fn client_name(&self, application: &str) -> String {
        format!("{}{application}", self.settings.client_name_prefix)
    }

    /// RFC 7591 §3.1: registers a new client. When the answer is lost (`Unavailable`), the client
    /// may exist all the same: look it up with [`Registration::find_by_name`] before creating
    /// again.
    pub async fn create(
        &self,
        request: &ClientRequest,
    ) -> Result<RegisteredClient, RegistrationError> {
        let mut body = Map::new();
        body.insert("client_name".into(), self.client_name(&request.name).into());
        body.insert("grant_types".into(), strings(&request.grant_types));
        body.insert("response_types".into(), strings(&request.response_types));
        body.insert("redirect_uris".into(), strings(&request.redirect_uris));
        body.insert(
            "token_endpoint_auth_method".into(),
            "client_secret_basic".into(),
        );
        if let Some(kind) = &request.application_type {
            body.insert("application_type".into(), kind.clone().into());
        }
        let target = self.configured(self.url.clone());
        let reply = self
            .call(
                Method::POST,
                &target,
                Some(&Value::Object(body)),
                &[200, 201],
            )
            .await?;
        RegisteredClient::from_answer(reply.json, None)
    }

    /// RFC 7592 §2.1 / Okta `GET /oauth2/v1/clients/{id}`.
    pub async fn read(&self, client: &ClientRef) -> Result<RegisteredClient, RegistrationError> {
        let target = self.target(client)?;
        let reply = self.call(Method::GET, &target, None, &[200]).await?;
        RegisteredClient::from_answer(reply.json, Some(client))
    }

    /// Applies `changes`. Both RFC 7592 §2.2 and Okta replace the whole client on PUT (omitted
    /// fields are deleted), so the client is read first and the changes merged into what it has.
    pub async fn update(
        &self,
        client: &ClientRef,
        changes: &ClientChanges,
    ) -> Result<RegisteredClient, RegistrationError> {
        if !self.settings.update_in_idp {
            return Err(RegistrationError::Disabled("provider.update_in_idp"));
        }
        let current = self.read(client).await?;
        let mut body = self.writable(&current, true);
        self.merge(&mut body, changes);
        self.put(&current.reference(client), body).await
    }

    /// RFC 7592 §2.3 / Okta `DELETE /oauth2/v1/clients/{id}`. A client that is not there is
    /// [`Deleted::AlreadyGone`], not an error: deleting twice ends in the same state.
    pub async fn delete(&self, client: &ClientRef) -> Result<Deleted, RegistrationError> {
        if !self.settings.delete_in_idp {
            return Err(RegistrationError::Disabled("provider.delete_in_idp"));
        }
        let target = self.target(client)?;
        match self.call(Method::DELETE, &target, None, &[200, 204]).await {
            Ok(_) => Ok(Deleted::Removed),
            Err(RegistrationError::Gone(_)) => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    /// A new client secret. Okta: `POST /oauth2/v1/clients/{id}/lifecycle/newSecret`. RFC 7592:
    /// the client's metadata PUT back without `client_secret` (see [`Rotation`]).
    pub async fn rotate_secret(&self, client: &ClientRef) -> Result<Rotation, RegistrationError> {
        let target = self.target(client)?;
        if target.credential == Credential::Configured {
            let mut url = target.url.clone();
            push_segments(&mut url, &["lifecycle", "newSecret"]);
            let target = Target { url, ..target };
            let reply = self
                .call(
                    Method::POST,
                    &target,
                    Some(&Value::Object(Map::new())),
                    &[200],
                )
                .await?;
            let rotated = RegisteredClient::from_answer(reply.json, Some(client))?;
            return match rotated.client_secret {
                Some(_) => Ok(Rotation::Rotated(rotated)),
                None => Err(ProviderError::Malformed(
                    "the new-secret answer carries no client_secret".to_owned(),
                )
                .into()),
            };
        }
        let current = self.read(client).await?;
        let body = self.writable(&current, false);
        let updated = self.put(&current.reference(client), body).await?;
        let same = match (&current.client_secret, &updated.client_secret) {
            (Some(old), Some(new)) => old == new,
            (_, None) => true,
            (None, Some(_)) => false,
        };
        Ok(if same {
            Rotation::Kept(updated)
        } else {
            Rotation::Rotated(updated)
        })
    }
}

impl Registration {
    /// Where and as whom `client` is managed (see the module docs).
    fn target(&self, client: &ClientRef) -> Result<Target, RegistrationError> {
        if let (Some(uri), Some(token)) = (
            &client.registration_client_uri,
            &client.registration_access_token,
        ) {
            let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| {
                    ProviderError::Malformed(
                        "the registration access token is not a header value".to_owned(),
                    )
                })?;
            authorization.set_sensitive(true);
            return Ok(Target {
                url: uri.clone(),
                authorization,
                credential: Credential::Client,
            });
        }
        if !self.okta {
            return Err(RegistrationError::Unsupported(
                "the provider gave this client no registration_client_uri and registration access token (RFC 7592 §3), and without an Okta API token there is no other way to manage it",
            ));
        }
        // Okta's ids are letters and digits; anything else must not steer the path.
        let id = &client.client_id;
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
        if id.is_empty() || !id.chars().all(plain) {
            return Err(ProviderError::Malformed(
                "the client_id is not an Okta client id".to_owned(),
            )
            .into());
        }
        let mut url = self.url.clone();
        push_segments(&mut url, &[id]);
        Ok(self.configured(url))
    }

    fn configured(&self, url: Url) -> Target {
        Target {
            url,
            authorization: self.authorization.clone(),
            credential: Credential::Configured,
        }
    }

    /// Sends one call and reads a JSON answer (an empty body reads as `null`); any status not in
    /// `ok` is a [`RegistrationError`].
    async fn call(
        &self,
        method: Method,
        target: &Target,
        body: Option<&Value>,
        ok: &[u16],
    ) -> Result<Reply, RegistrationError> {
        let mut request = self
            .http
            .request(method, target.url.clone())
            .header(AUTHORIZATION, target.authorization.clone())
            .header(ACCEPT, "application/json")
            .timeout(self.settings.timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = self.http.send(request).await?;
        let status = answer.status.as_u16();
        let bytes = answer.body?;
        if !ok.contains(&status) {
            let error = failure(
                status,
                &answer.headers,
                &bytes,
                target.credential,
                &*self.clock,
            );
            tracing::debug!(%status, url = %target.url.path(), error = %error, "registration call refused");
            return Err(error);
        }
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| {
                ProviderError::Malformed("the registration answer is not JSON".to_owned())
            })?
        };
        Ok(Reply {
            headers: answer.headers,
            json,
        })
    }

    async fn put(
        &self,
        client: &ClientRef,
        body: Map<String, Value>,
    ) -> Result<RegisteredClient, RegistrationError> {
        let target = self.target(client)?;
        let reply = self
            .call(Method::PUT, &target, Some(&Value::Object(body)), &[200])
            .await?;
        RegisteredClient::from_answer(reply.json, Some(client))
    }

    /// The client's metadata as a PUT sends it back: without what only the provider sets, with
    /// `client_id` (RFC 7592 §2.2 requires it) and, when `keep_secret` and the provider speaks
    /// RFC 7592, the current `client_secret` (which must match, and keeps it).
    fn writable(&self, current: &RegisteredClient, keep_secret: bool) -> Map<String, Value> {
        let mut body = current.metadata.clone();
        for key in READ_ONLY {
            body.remove(key);
        }
        body.insert("client_id".into(), current.client_id.clone().into());
        let rfc7592 = current.registration_access_token.is_some();
        if let (true, true, Some(secret)) = (keep_secret, rfc7592, &current.client_secret) {
            body.insert("client_secret".into(), secret.expose().into());
        }
        body
    }

    fn merge(&self, body: &mut Map<String, Value>, changes: &ClientChanges) {
        if let Some(name) = &changes.name {
            body.insert("client_name".into(), self.client_name(name).into());
        }
        let lists = [
            ("grant_types", &changes.grant_types),
            ("response_types", &changes.response_types),
            ("redirect_uris", &changes.redirect_uris),
        ];
        for (key, value) in lists {
            if let Some(value) = value {
                body.insert(key.into(), strings(value));
            }
        }
        if let Some(kind) = &changes.application_type {
            body.insert("application_type".into(), kind.clone().into());
        }
    }
}

// === impl RegisteredClient ===

impl RegisteredClient {
    /// Reads a client from an answer; `known` fills in the management credential the answer does
    /// not repeat (Okta never gives one; RFC 7592 servers repeat it or issue a new one).
    fn from_answer(json: Value, known: Option<&ClientRef>) -> Result<Self, RegistrationError> {
        let Value::Object(mut metadata) = json else {
            return Err(malformed("the client is not a JSON object"));
        };
        let mut take = |key: &str| match metadata.remove(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(malformed("a client field is not a string")),
        };
        let client_id =
            take("client_id")?.ok_or_else(|| malformed("the client has no client_id"))?;
        let client_secret = take("client_secret")?.map(Secret::new);
        let token = take("registration_access_token")?.map(Secret::new);
        let uri = match metadata
            .get("registration_client_uri")
            .and_then(Value::as_str)
        {
            Some(uri) => Some(http_url(uri)?),
            None => None,
        };
        let known = known.filter(|k| k.client_id == client_id);
        Ok(RegisteredClient {
            client_name: metadata
                .get("client_name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            client_secret_expires_at: metadata
                .get("client_secret_expires_at")
                .and_then(Value::as_u64),
            registration_access_token: token
                .or_else(|| known.and_then(|k| k.registration_access_token.clone())),
            registration_client_uri: uri
                .or_else(|| known.and_then(|k| k.registration_client_uri.clone())),
            client_id,
            client_secret,
            metadata,
        })
    }

    /// What the registry keeps to manage this client.
    pub fn to_ref(&self) -> ClientRef {
        ClientRef {
            client_id: self.client_id.clone(),
            registration_client_uri: self.registration_client_uri.clone(),
            registration_access_token: self.registration_access_token.clone(),
        }
    }

    /// This client's reference, or `known`'s where this answer named no credential.
    fn reference(&self, known: &ClientRef) -> ClientRef {
        let mut reference = self.to_ref();
        if reference.registration_access_token.is_none() {
            reference.registration_access_token = known.registration_access_token.clone();
        }
        if reference.registration_client_uri.is_none() {
            reference.registration_client_uri = known.registration_client_uri.clone();
        }
        reference
    }
}

fn strings(values: &[String]) -> Value {
    Value::Array(values.iter().cloned().map(Value::String).collect())
}

fn malformed(what: &str) -> RegistrationError {
    RegistrationError::Unavailable(ProviderError::Malformed(what.to_owned()))
}

/// A URL the provider gave for the client: http(s) only, no credentials in it.
fn http_url(text: &str) -> Result<Url, RegistrationError> {
    let url = Url::parse(text).map_err(|_| malformed("registration_client_uri is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(malformed(
            "registration_client_uri is not a plain http(s) URL",
        ));
    }
    Ok(url)
}

/// Appends path segments, each percent-encoded (a `/` in one cannot add a level).
fn push_segments(url: &mut Url, segments: &[&str]) {
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
}

#[cfg(test)]
mod tests;
