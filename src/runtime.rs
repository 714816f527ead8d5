//! The compiled, immutable [`Runtime`] (routes, policies, validators, the provider) and the
//! [`RuntimeHandle`] through which the request path reads the current one, so that a reload can
//! swap it whole between two requests.

use std::sync::{Arc, OnceLock, RwLock};

use crate::clock::Clock;
use crate::config::{
    ApiSettings, CacheSettings, ListenSettings, ProviderSettings, Secret, Settings, ValidationMode,
};
use crate::provider::{Provider, ProviderError};
use crate::registry::{IndexHandle, Registry};
use crate::routing::{Route, Router};
use crate::validate::{
    Attributes, CachedValidator, IntrospectionValidator, JwtThenIntrospection, JwtValidator,
    Leeway, Validator,
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
    /// The registry's contract index, when a `[registry]` is configured; kept across reloads
    /// (the store is read at start: `[registry]` changes take effect at the next restart).
    pub registry: Option<Arc<IndexHandle>>,
    /// The admin API's registry operations, set once the gateway's store is open; kept across
    /// reloads like the index.
    pub admin_registry: Arc<OnceLock<Registry>>,
    /// `[admin] token`: without one the admin API is refused. Read per request, so a reload applies.
    pub admin_token: Option<Secret>,
    /// What the provider and the caches were built from, and the cached validators themselves,
    /// so a reload that keeps them keeps their caches.
    validators: Validators,
}

/// The validators of one provider, one cache per mode.
#[derive(Clone)]
struct Validators {
    basis: Basis,
    introspection: Arc<dyn Validator>,
    jwt: Arc<dyn Validator>,
}

impl Validators {
    fn new(provider: &Arc<Provider>, settings: &Settings, clock: &Arc<dyn Clock>) -> Self {
        // One cache per mode for every API on the provider: a token is checked once, whichever
        // API it calls; audience, scopes and contracts are checked per API after the cache.
        let basis = Basis::of(settings);
        let attributes = basis.caches.attributes;
        let leeway = Leeway::new(settings.provider.jwt.leeway);
        Validators {
            // Only introspection misses cost a provider call: they alone count against each
            // client's share (a forged JWT is refused locally, before the introspection cache).
            introspection: Arc::new(
                CachedValidator::new(
                    "introspection",
                    IntrospectionValidator::new(provider.clone(), clock.clone(), attributes),
                    settings.cache.clone(),
                    leeway,
                    clock.clone(),
                )
                .with_share(provider.client_share()),
            ),
            jwt: Arc::new(CachedValidator::new(
                "jwt",
                JwtValidator::new(provider.clone(), clock.clone(), attributes),
                settings.cache.clone(),
                leeway,
                clock.clone(),
            )),
            basis,
        }
    }
}

/// What the provider and the caches are built from, in two parts: a reload that changes neither
/// keeps both; one that changes only the caches' part keeps the provider (its endpoints, keys,
/// refresh task and connections) and builds new caches on it.
#[derive(Clone, PartialEq)]
struct Basis {
    provider: ProviderBasis,
    caches: CacheBasis,
}

#[derive(Clone, PartialEq)]
struct ProviderBasis {
    settings: ProviderSettings,
    needs_jwks: bool,
}

#[derive(Clone, PartialEq)]
struct CacheBasis {
    settings: CacheSettings,
    /// Kept only when some API exposes them as headers.
    attributes: Attributes,
}

impl Basis {
    fn of(settings: &Settings) -> Self {
        Basis {
            provider: ProviderBasis {
                settings: settings.provider.clone(),
                needs_jwks: settings
                    .apis
                    .iter()
                    .any(|a| a.validation != ValidationMode::Introspection),
            },
            caches: CacheBasis {
                settings: settings.cache.clone(),
                attributes: if settings.apis.iter().any(|a| a.expose_headers) {
                    Attributes::Keep
                } else {
                    Attributes::Drop
                },
            },
        }
    }
}

/// What a rebuilt runtime took over from the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The provider and its caches: verdicts cached before the reload still serve.
    ProviderAndCaches,
    /// The provider (no new discovery, no new key fetch); the caches are new.
    Provider,
    /// Nothing: a new provider, to be resolved before it serves.
    Nothing,
}

impl Kept {
    pub fn provider(self) -> bool {
        match self {
            Kept::ProviderAndCaches | Kept::Provider => true,
            Kept::Nothing => false,
        }
    }

    pub fn caches(self) -> bool {
        match self {
            Kept::ProviderAndCaches => true,
            Kept::Provider | Kept::Nothing => false,
        }
    }
}

impl Runtime {
    pub fn build(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Self, ProviderError> {
        let needs_jwks = Basis::of(settings).provider.needs_jwks;
        let provider = Provider::new(settings.provider.clone(), needs_jwks, clock.clone())?;
        let validators = Validators::new(&provider, settings, &clock);
        let mut runtime = Self::assemble(settings, provider, validators);
        runtime.registry = settings
            .registry
            .as_ref()
            .map(|r| Arc::new(IndexHandle::new(r.max_staleness)));
        Ok(runtime)
    }

    /// A runtime for new settings that keeps as much of this one as they allow: the provider
    /// while the provider settings and validation modes are unchanged, and its caches too while
    /// the cache and exposed-attribute settings are.
    pub fn rebuild(
        &self,
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Kept), ProviderError> {
        let (mut runtime, kept) = self.rebuild_validation(settings, clock)?;
        runtime.registry = self.registry.clone();
        runtime.admin_registry = self.admin_registry.clone();
        Ok((runtime, kept))
    }

    fn rebuild_validation(
        &self,
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Kept), ProviderError> {
        let basis = Basis::of(settings);
        if basis.provider != self.validators.basis.provider {
            return Self::build(settings, clock).map(|r| (r, Kept::Nothing));
        }
        let provider = self.provider.clone();
        if basis.caches == self.validators.basis.caches {
            let kept = Self::assemble(settings, provider, self.validators.clone());
            return Ok((kept, Kept::ProviderAndCaches));
        }
        let validators = Validators::new(&provider, settings, &clock);
        Ok((
            Self::assemble(settings, provider, validators),
            Kept::Provider,
        ))
    }

    fn assemble(settings: &Settings, provider: Arc<Provider>, validators: Validators) -> Self {
        // At every start and reload that keeps it: an unverified upstream is worth a line each time.
        for warning in crate::config::insecure_warnings(settings) {
            tracing::warn!("{warning}");
        }
        let both: Arc<dyn Validator> = Arc::new(JwtThenIntrospection::new(
            validators.jwt.clone(),
            validators.introspection.clone(),
        ));
        let router = Router::new(settings.apis.iter().map(|api| {
            let validator = match api.validation {
                ValidationMode::Introspection => validators.introspection.clone(),
                ValidationMode::Jwt => validators.jwt.clone(),
                ValidationMode::JwtIntrospection => both.clone(),
            };
            let compiled = Api {
                name: Arc::from(api.name.as_str()),
                settings: api.clone(),
                validator,
            };
            Route {
                host: api.host.clone(),
                prefix: api.path_prefix.clone(),
                case_insensitive: api.case_insensitive_paths,
                api: Arc::new(compiled),
            }
        }));
        Runtime {
            router,
            provider,
            listen: settings.listen.clone(),
            registry: None,
            admin_registry: Arc::new(OnceLock::new()),
            admin_token: settings.admin.token.clone(),
            validators,
        }
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
