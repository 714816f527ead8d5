//! The only code that speaks HTTP to the identity provider: discovery of its endpoints, token
//! introspection, and the registration of client applications. It never sees an incoming request. Its calls run on the process's I/O runtime
//! (`io`), and nothing it starts outlives it: dropping a [`Provider`] (a reload replaced it and its
//! last request finished) stops its JWKS refresh and lets its connections go.

mod budget;
mod discovery;
mod introspection;
mod io;
mod jwks;
mod registration;
mod token;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use url::Url;

use crate::clock::Clock;
use crate::config::ProviderSettings;

pub use budget::{Budget, ClientShare};
pub use discovery::discover;
pub use introspection::Introspection;
pub use io::{Answer, ProviderHttp};
pub use jwks::{JwksCache, KeyLookup, KeySet, VerificationKey};
pub use registration::{
    ClientChanges, ClientRef, ClientRequest, Deleted, ProviderProblem, RegisteredClient,
    Registration, RegistrationError, Rotation,
};
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
    /// Our own budget for provider calls (`max_inflight`, `introspection_rate`) is spent.
    #[error("the budget for provider calls is spent")]
    Exhausted,
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
            ProviderError::Exhausted => "budget_exhausted",
            ProviderError::Busy => "busy",
            ProviderError::Malformed(_) => "malformed",
        }
    }

    /// What `Retry-After` tells the client (whole seconds, rounded up).
    pub fn retry_after(&self) -> Duration {
        match self {
            ProviderError::RateLimited {
                retry_after: Some(d),
            } => seconds_up(*d).clamp(Duration::from_secs(1), Duration::from_secs(300)),
            // Our own budget refills continuously: the next second has room again.
            ProviderError::Exhausted => Duration::from_secs(1),
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

/// `d` rounded up to whole seconds, as `Retry-After` counts them.
pub fn seconds_up(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
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

/// Idle connections kept to the provider, at least (see `Provider::new`).
const MIN_IDLE_CONNECTIONS: usize = 64;

/// The provider as the gateway sees it: its settings, a pooled HTTP client, and the endpoints once
/// resolved (readiness).
pub struct Provider {
    pub settings: ProviderSettings,
    http: ProviderHttp,
    endpoints: OnceLock<Endpoints>,
    introspection: OnceLock<Introspection>,
    jwks: OnceLock<Arc<JwksCache>>,
    /// The JWKS refresh task, once started; aborted when the provider is dropped.
    refresh: OnceLock<tokio::task::AbortHandle>,
    /// Some API validates JWTs: readiness then also waits for the keys.
    needs_jwks: bool,
    budget: Arc<Budget>,
    share: Option<Arc<ClientShare>>,
    registration: OnceLock<Registration>,
    clock: Arc<dyn Clock>,
}

impl Provider {
    /// Built on the runtime its calls are to run on (see `io`): the main one.
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
            // One idle connection per introspection slot: with fewer, a burst of misses above
            // that many closes connections as its calls end, and the next burst pays a TCP and
            // TLS handshake on each miss again. At least 64 for the other, unbudgeted calls.
            .pool_max_idle_per_host(settings.budget.max_inflight.max(MIN_IDLE_CONNECTIONS))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Unreachable(error_chain(&e)))?;
        let budget =
            Arc::new(Budget::new(&settings.budget, clock.clone()).of_provider(&settings.name));
        let share = settings
            .budget
            .misses_per_client
            .map(|rate| Arc::new(ClientShare::new(rate)));
        Ok(Arc::new(Provider {
            budget,
            share,
            settings,
            http: ProviderHttp::new(http)?,
            endpoints: OnceLock::new(),
            introspection: OnceLock::new(),
            jwks: OnceLock::new(),
            refresh: OnceLock::new(),
            needs_jwks,
            registration: OnceLock::new(),
            clock,
        }))
    }

    /// The endpoints, once resolved.
    pub fn endpoints(&self) -> Option<&Endpoints> {
        self.endpoints.get()
    }

    /// Each client address's share of introspection-cache misses, if one is configured.
    pub fn client_share(&self) -> Option<Arc<ClientShare>> {
        self.share.clone()
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
        // Between attempts only a Weak: a provider that a reload replaced while it was still
        // unreachable is dropped, and its retries stop, rather than kept alive by them.
        let provider = Arc::downgrade(&self);
        drop(self);
        let mut delay = Duration::from_millis(250);
        loop {
            let Some(this) = provider.upgrade() else {
                return;
            };
            match this.make_ready().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(provider = %this.settings.name, issuer = %this.settings.issuer, error = %e, retry_in_ms = delay.as_millis() as u64, "provider not ready");
                }
            }
            drop(this);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// One attempt: the endpoints, then (where JWTs are validated) the keys and their refresh.
    async fn make_ready(&self) -> Result<(), ProviderError> {
        // Logged once, not again on each retry of the keys that follows.
        let first = self.endpoints.get().is_none();
        let endpoints = self.resolve().await?;
        if first {
            tracing::info!(
                provider = %self.settings.name,
                issuer = %self.settings.issuer,
                introspection = %endpoints.introspection,
                "provider endpoints resolved"
            );
        }
        if !self.needs_jwks {
            return Ok(());
        }
        let jwks = self.jwks()?.clone();
        jwks.ensure_loaded().await?;
        // One refresh task however often this runs; it holds the key cache, not the provider,
        // so the provider's drop can end it.
        self.refresh
            .get_or_init(|| self.http.spawn(jwks.refresh_forever()));
        Ok(())
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
                self.budget.clone(),
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
                &self.settings.name,
                self.settings.jwt.clone(),
                self.settings.request_timeout,
            ))
        }))
    }
}

impl Provider {
    /// The client-registration API, once the endpoints are known: the configured
    /// `registration_url`, else the metadata's `registration_endpoint`, with
    /// `registration_authorization`.
    pub fn registration(&self) -> Result<&Registration, RegistrationError> {
        if let Some(r) = self.registration.get() {
            return Ok(r);
        }
        let endpoints = self.endpoints.get().ok_or(ProviderError::NotReady)?;
        let url = endpoints
            .registration
            .clone()
            .ok_or(RegistrationError::NotConfigured(
                "the metadata names no registration_endpoint: set provider.registration_url",
            ))?;
        let authorization = self.settings.registration_authorization.as_ref().ok_or(
            RegistrationError::NotConfigured("set provider.registration_authorization"),
        )?;
        let registration = Registration::new(
            self.http.clone(),
            url,
            authorization,
            self.settings.registration.clone(),
            self.clock.clone(),
        )?;
        Ok(self.registration.get_or_init(|| registration))
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        // The refresh task holds the key cache and its client: without this they would live,
        // and keep calling the old provider, for the rest of the process.
        if let Some(refresh) = self.refresh.get() {
            refresh.abort();
        }
    }
}
