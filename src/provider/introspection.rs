//! The RFC 7662 introspection client: POSTs `token` with `token_type_hint=access_token`,
//! authenticated as the introspection client, and hands back the answer if it is a verdict: a 2xx
//! whose body is a JSON object, whatever its `active` says (judging it is `validate`'s work: an
//! `active` that is not `true` is a verdict of inactive, not an outage). Anything else (another
//! status, a body that is not a JSON object, a timeout, a broken connection) is a
//! [`ProviderError`]: no verdict at all.

use std::sync::Arc;

use serde_json::{Map, Value};
use url::Url;
use url::form_urlencoded::byte_serialize;

use super::{Budget, ProviderError, ProviderHttp};
use crate::config::{ClientAuth, ProviderSettings, Secret};
use crate::measure;
use crate::validate::BearerToken;

/// An introspection endpoint and the credentials to call it.
pub struct Introspection {
    http: ProviderHttp,
    url: Url,
    client_id: String,
    client_secret: Secret,
    auth: ClientAuth,
    budget: Arc<Budget>,
    /// The provider's name: the metrics' `provider` label.
    provider: String,
}

impl Introspection {
    pub fn new(
        http: ProviderHttp,
        url: Url,
        settings: &ProviderSettings,
        budget: Arc<Budget>,
    ) -> Self {
        Introspection {
            http,
            url,
            client_id: settings.introspection_client_id.clone(),
            client_secret: settings.introspection_client_secret.clone(),
            auth: settings.introspection_auth,
            budget,
            provider: settings.name.clone(),
        }
    }

    /// Asks the provider about a token, within the budget; `Ok` is the answer object, whatever
    /// `active` says.
    pub async fn introspect(
        &self,
        token: &BearerToken,
    ) -> Result<Map<String, Value>, ProviderError> {
        // Held until the answer is read: the slot is the call.
        let _slot = self.budget.admit().await?;
        let started = std::time::Instant::now();
        let answer = self.ask(token).await;
        metrics::histogram!(measure::INTROSPECTION_DURATION, "provider" => self.provider.clone())
            .record(started.elapsed().as_secs_f64());
        let outcome = match &answer {
            Ok(map) if map.get("active") == Some(&Value::Bool(true)) => "active",
            Ok(_) => "inactive",
            Err(e) => e.kind(),
        };
        metrics::counter!(measure::INTROSPECTIONS, "provider" => self.provider.clone(), "outcome" => outcome)
            .increment(1);
        answer
    }

    async fn ask(&self, token: &BearerToken) -> Result<Map<String, Value>, ProviderError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("token", token.expose()),
            ("token_type_hint", "access_token"),
        ];
        let request = self
            .http
            .post(self.url.clone())
            .header(http::header::ACCEPT, "application/json");
        let request = match self.auth {
            // RFC 6749 §2.3.1: the id and secret are form-encoded before going into Basic.
            ClientAuth::ClientSecretBasic => request.basic_auth(
                byte_serialize(self.client_id.as_bytes()).collect::<String>(),
                Some(byte_serialize(self.client_secret.expose().as_bytes()).collect::<String>()),
            ),
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", self.client_secret.expose()));
                request
            }
        };
        let answer = self.http.send(request.form(&form)).await?;
        let status = answer.status;
        let pause = self.budget.observe(status.as_u16(), &answer.headers);
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderError::RateLimited { retry_after: pause });
        }
        // RFC 7662 §2.2 answers 200; any 2xx says the request succeeded, and the body, not the
        // exact code, carries the verdict (a 204 has none and fails below as not JSON).
        if !status.is_success() {
            return Err(ProviderError::Status(status.as_u16()));
        }
        let body = answer.body?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Malformed("introspection answer is not JSON".to_owned()))?;
        match answer {
            Value::Object(map) => Ok(map),
            _ => Err(ProviderError::Malformed(
                "introspection answer is not a JSON object (RFC 7662 §2.2)".to_owned(),
            )),
        }
    }
}
