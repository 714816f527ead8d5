//! The compiled, immutable [`Runtime`] (routes, policies, validators, the provider) and the
//! [`RuntimeHandle`] through which the request path reads the current one, so that a reload can
//! swap it whole between two requests.

use std::sync::{Arc, RwLock};

use crate::clock::Clock;
use crate::config::{ApiSettings, ListenSettings, Settings, ValidationMode};
use crate::provider::{Provider, ProviderError};
use crate::routing::Router;
use crate::validate::{
    CachedValidator, IntrospectionValidator, JwtThenIntrospection, JwtValidator, Validator,
};

/// One API: its settings and the validator its mode uses.
pub struct Api {
    pub name: Arc<str>,
    pub settings: ApiSettings,
    pub validator: Arc<dyn Validator>,
}

/// Everything the request path needs, built once from the settings.
pub struct Runtime {
    pub router: Router<Api>,
    pub provider: Arc<Provider>,
    pub listen: ListenSettings,
}

impl Runtime {
    pub fn build(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Self, ProviderError> {
        let needs_jwks = settings
            .apis
            .iter()
            .any(|a| a.validation != ValidationMode::Introspection);
        let provider = Provider::new(settings.provider.clone(), needs_jwks, clock.clone())?;
        // One cache per mode for every API on the provider: a token is checked once, whichever
        // API it calls; audience, scopes and contracts are checked per API after the cache.
        let introspection: Arc<dyn Validator> = Arc::new(CachedValidator::new(
            "introspection",
            IntrospectionValidator::new(provider.clone(), clock.clone()),
            settings.cache.clone(),
            clock.clone(),
        ));
        let jwt: Arc<dyn Validator> = Arc::new(CachedValidator::new(
            "jwt",
            JwtValidator::new(provider.clone(), clock.clone()),
            settings.cache.clone(),
            clock,
        ));
        let both: Arc<dyn Validator> = Arc::new(JwtThenIntrospection::new(
            jwt.clone(),
            introspection.clone(),
        ));
        let router = Router::new(settings.apis.iter().map(|api| {
            let validator = match api.validation {
                ValidationMode::Introspection => introspection.clone(),
                ValidationMode::Jwt => jwt.clone(),
                ValidationMode::JwtIntrospection => both.clone(),
            };
            let compiled = Api {
                name: Arc::from(api.name.as_str()),
                settings: api.clone(),
                validator,
            };
            (
                api.host.clone(),
                api.path_prefix.clone(),
                Arc::new(compiled),
            )
        }));
        Ok(Runtime {
            router,
            provider,
            listen: settings.listen.clone(),
        })
    }
}

/// The current runtime, shared by every connection.
#[derive(Clone)]
pub struct RuntimeHandle(Arc<RwLock<Arc<Runtime>>>);

impl RuntimeHandle {
    pub fn new(runtime: Runtime) -> Self {
        RuntimeHandle(Arc::new(RwLock::new(Arc::new(runtime))))
    }

    /// The runtime in force now; a request keeps the one it started with.
    pub fn current(&self) -> Arc<Runtime> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            // A writer never panics while holding the lock, but never propagate poison anyway.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new runtime; requests already under way finish on the old one.
    pub fn replace(&self, runtime: Runtime) {
        let new = Arc::new(runtime);
        match self.0.write() {
            Ok(mut guard) => *guard = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}
