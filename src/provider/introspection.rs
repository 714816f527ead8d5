//! The RFC 7662 introspection client: POSTs `token` with `token_type_hint=access_token`,
//! authenticated as the introspection client, and hands back the answer if it is a verdict: a 2xx
//! whose body is a JSON object, whatever its `active` says (judging it is `validate`'s work: an
//! `active` that is not `true` is a verdict of inactive, not an outage). Anything else (another
//! status, a body that is not a JSON object, a timeout, a broken connection) is a
//! [`ProviderError`]: no verdict at all.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;
use url::form_urlencoded::byte_serialize;

use super::{ProviderError, read_limited};
use crate::clock::Clock;
use crate::config::{ClientAuth, ProviderSettings, Secret};
use crate::measure;
use crate::validate::BearerToken;

/// An introspection endpoint and the credentials to call it.
pub struct Introspection {
    http: reqwest::Client,
    url: Url,
    client_id: String,
    client_secret: Secret,
    auth: ClientAuth,
    clock: Arc<dyn Clock>,
}

impl Introspection {
    pub fn new(
        http: reqwest::Client,
        url: Url,
        settings: &ProviderSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Introspection {
            http,
            url,
            client_id: settings.introspection_client_id.clone(),
            client_secret: settings.introspection_client_secret.clone(),
            auth: settings.introspection_auth,
            clock,
        }
    }

    /// Asks the provider about a token; `Ok` is the answer object, whatever `active` says.
    pub async fn introspect(
        &self,
        token: &BearerToken,
    ) -> Result<Map<String, Value>, ProviderError> {
        let started = std::time::Instant::now();
        let answer = self.ask(token).await;
        metrics::histogram!(measure::INTROSPECTION_DURATION)
            .record(started.elapsed().as_secs_f64());
        let outcome = match &answer {
            Ok(map) if map.get("active") == Some(&Value::Bool(true)) => "active",
            Ok(_) => "inactive",
            Err(e) => e.kind(),
        };
        metrics::counter!(measure::INTROSPECTIONS, "outcome" => outcome).increment(1);
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
        let resp = request
            .form(&form)
            .send()
            .await
            .map_err(|e| ProviderError::from_reqwest(&e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderError::RateLimited {
                retry_after: self.retry_after(resp.headers()),
            });
        }
        // RFC 7662 §2.2 answers 200; any 2xx says the request succeeded, and the body, not the
        // exact code, carries the verdict (a 204 has none and fails below as not JSON).
        if !status.is_success() {
            return Err(ProviderError::Status(status.as_u16()));
        }
        let body = read_limited(resp).await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Malformed("introspection answer is not JSON".to_owned()))?;
        match answer {
            Value::Object(map) => Ok(map),
            _ => Err(ProviderError::Malformed(
                "introspection answer is not a JSON object (RFC 7662 §2.2)".to_owned(),
            )),
        }
    }

    /// `Retry-After` (seconds), or Okta's `X-Rate-Limit-Reset` (the Unix time the window resets).
    fn retry_after(&self, headers: &reqwest::header::HeaderMap) -> Option<Duration> {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        number("retry-after").map(Duration::from_secs).or_else(|| {
            number("x-rate-limit-reset").map(|reset| {
                Duration::from_secs(reset.saturating_sub(self.clock.now_unix()).max(1))
            })
        })
    }
}
