//! The only code that speaks HTTP to the identity provider: discovery of its endpoints, and token
//! introspection. It never sees an incoming request.

mod discovery;
mod introspection;
mod jwks;
mod token;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use url::Url;

use crate::clock::Clock;
use crate::config::ProviderSettings;

pub use discovery::discover;
pub use introspection::Introspection;
pub use jwks::{JwksCache, KeyLookup, KeySet, VerificationKey};
pub use token::{Refusal, TokenRequestError, refusal};

/// The provider's endpoints in force: configured ones, else discovered ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authorize: Option<Url>,
    pub token: Option<Url>,
    pub introspection: Url,
    pub jwks: Option<Url>,
    pub registration: Option<Url>,
}

/// A failure to get an answer from the provider. Never a verdict on a token: it is not cached and
/// the client gets 503 with `Retry-After` (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider's endpoints are not resolved yet")]
    NotReady,
    #[error("cannot reach the provider: {0}")]
    Unreachable(String),
    #[error("the provider did not answer within the timeout")]
    Timeout,
    #[error("the provider answered HTTP {0}")]
    Status(u16),
    #[error("the provider is rate limiting")]
    RateLimited { retry_after: Option<Duration> },
    /// Tollgate's own bound on requests waiting for the provider was reached (e.g. too many
    /// requests waiting for a JWKS refetch): no call was made for this one.
    #[error("too many requests are waiting for the provider")]
    Busy,
    #[error("the provider's answer is malformed: {0}")]
    Malformed(String),
}

impl ProviderError {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::NotReady => "not_ready",
            ProviderError::Unreachable(_) => "unreachable",
            ProviderError::Timeout => "timeout",
            ProviderError::Status(_) => "bad_status",
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::Busy => "busy",
            ProviderError::Malformed(_) => "malformed",
        }
    }

    /// What `Retry-After` tells the client.
    pub fn retry_after(&self) -> Duration {
        match self {
            ProviderError::RateLimited {
                retry_after: Some(d),
            } => (*d).clamp(Duration::from_secs(1), Duration::from_secs(300)),
            ProviderError::NotReady
            | ProviderError::Unreachable(_)
            | ProviderError::Timeout
            | ProviderError::Status(_)
            | ProviderError::RateLimited { retry_after: None }
            | ProviderError::Busy
            | ProviderError::Malformed(_) => Duration::from_secs(5),
        }
    }

    fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            ProviderError::Timeout
        } else if e.is_decode() || e.is_body() {
            ProviderError::Malformed("unreadable body".to_owned())
        } else {
            // reqwest's message names the URL but never our credentials.
            ProviderError::Unreachable(error_chain(e))
        }
    }
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The provider as the gateway sees it: its settings, a pooled HTTP client, and the endpoints once
/// resolved (readiness).
pub struct Provider {
    pub settings: ProviderSettings,
    http: reqwest::Client,
    endpoints: OnceLock<Endpoints>,
    introspection: OnceLock<Introspection>,
    jwks: OnceLock<Arc<JwksCache>>,
    /// Some API validates JWTs: readiness then also waits for the keys.
    needs_jwks: bool,
    clock: Arc<dyn Clock>,
}

/// Bodies from the provider larger than this are refused rather than buffered.
const MAX_PROVIDER_BODY: usize = 1024 * 1024;

impl Provider {
    pub fn new(
        settings: ProviderSettings,
        needs_jwks: bool,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            // Keep-alive connections to the provider: one TLS handshake, many introspections.
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Unreachable(error_chain(&e)))?;
        Ok(Arc::new(Provider {
            settings,
            http,
            endpoints: OnceLock::new(),
            introspection: OnceLock::new(),
            jwks: OnceLock::new(),
            needs_jwks,
            clock,
        }))
    }

    /// The endpoints, once resolved.
    pub fn endpoints(&self) -> Option<&Endpoints> {
        self.endpoints.get()
    }

    /// Whether some API validates JWTs locally.
    pub fn needs_jwks(&self) -> bool {
        self.needs_jwks
    }

    /// Ready to validate: endpoints resolved and, where JWTs are validated, keys loaded.
    pub fn is_ready(&self) -> bool {
        self.endpoints.get().is_some()
            && (!self.needs_jwks || self.jwks.get().is_some_and(|j| j.is_loaded()))
    }

    /// Resolves the endpoints once (discovery unless all are configured).
    pub async fn resolve(&self) -> Result<&Endpoints, ProviderError> {
        if let Some(e) = self.endpoints.get() {
            return Ok(e);
        }
        let endpoints = discover(&self.http, &self.settings).await?;
        Ok(self.endpoints.get_or_init(|| endpoints))
    }

    /// Keeps resolving with capped exponential backoff until it succeeds; then, where JWTs are
    /// validated, loads the keys the same way and keeps them fresh.
    pub async fn resolve_with_retry(self: Arc<Self>) {
        let mut delay = Duration::from_millis(250);
        loop {
            let step = match self.resolve().await {
                Ok(endpoints) => {
                    tracing::info!(
                        issuer = %self.settings.issuer,
                        introspection = %endpoints.introspection,
                        "provider endpoints resolved"
                    );
                    if !self.needs_jwks {
                        return;
                    }
                    match self.jwks() {
                        Ok(jwks) => jwks.ensure_loaded().await.map(|_| jwks.clone()),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match step {
                Ok(jwks) => {
                    tokio::spawn(jwks.refresh_forever());
                    return;
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.settings.issuer, error = %e, retry_in_ms = delay.as_millis() as u64, "provider not ready");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// The introspection client, once the endpoint is known.
    pub fn introspection(&self) -> Result<&Introspection, ProviderError> {
        if let Some(i) = self.introspection.get() {
            return Ok(i);
        }
        let endpoints = self.endpoints.get().ok_or(ProviderError::NotReady)?;
        Ok(self.introspection.get_or_init(|| {
            Introspection::new(
                self.http.clone(),
                endpoints.introspection.clone(),
                &self.settings,
                self.clock.clone(),
            )
        }))
    }
}

impl Provider {
    /// The JWKS cache, once the `jwks_uri` is known.
    pub fn jwks(&self) -> Result<&Arc<JwksCache>, ProviderError> {
        if let Some(j) = self.jwks.get() {
            return Ok(j);
        }
        let endpoints = self.endpoints.get().ok_or(ProviderError::NotReady)?;
        let url = endpoints.jwks.clone().ok_or_else(|| {
            ProviderError::Malformed(
                "the metadata names no jwks_uri: set provider.jwks_url".to_owned(),
            )
        })?;
        Ok(self.jwks.get_or_init(|| {
            Arc::new(JwksCache::new(
                self.http.clone(),
                url,
                self.settings.jwt.clone(),
                self.settings.request_timeout,
            ))
        }))
    }
}

/// Reads a body up to [`MAX_PROVIDER_BODY`].
async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ProviderError::from_reqwest(&e))?
    {
        if body.len() + chunk.len() > MAX_PROVIDER_BODY {
            return Err(ProviderError::Malformed("body too large".to_owned()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
