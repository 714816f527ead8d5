//! The compiled, immutable [`Runtime`] (routes, policies, validators, the providers) and the
//! [`RuntimeHandle`] through which the request path reads the current one, so that a reload can
//! swap it whole between two requests. Each provider has its own [`Provider`] and its own verdict
//! caches: a token one provider vouched for is never served from the cache to another's API.

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

/// One API: its settings, its provider, and the validator its mode uses at that provider.
pub struct Api {
    pub name: Arc<str>,
    pub settings: ApiSettings,
    /// The provider named by `settings.provider`: the one whose tokens this API accepts.
    pub provider: Arc<Provider>,
    pub validator: Arc<dyn Validator>,
}

/// Everything the request path needs, built once from the settings.
pub struct Runtime {
    pub router: Router<Api>,
    /// Every configured provider, in file order (names are unique); see [`Runtime::provider`].
    pub providers: Vec<Arc<Provider>>,
    pub listen: ListenSettings,
    /// The registry's contract index, when a `[registry]` is configured; kept across reloads
    /// (the store is read at start: `[registry]` changes take effect at the next restart).
    pub registry: Option<Arc<IndexHandle>>,
    /// The admin API's registry operations, set once the gateway's store is open; kept across
    /// reloads like the index.
    pub admin_registry: Arc<OnceLock<Registry>>,
    /// `[admin] token`: without one the admin API is refused. Read per request, so a reload applies.
    pub admin_token: Option<Secret>,
    /// Per provider, in the order of `providers`: what it and its caches were built from, and
    /// the cached validators themselves, so a reload that keeps them keeps their caches.
    validators: Vec<Validators>,
}

/// The validators of one provider, one cache per mode.
#[derive(Clone)]
struct Validators {
    basis: Basis,
    provider: Arc<Provider>,
    introspection: Arc<dyn Validator>,
    jwt: Arc<dyn Validator>,
}

impl Validators {
    fn new(provider: Arc<Provider>, basis: Basis, clock: &Arc<dyn Clock>) -> Self {
        // One cache per mode for every API on the provider: a token is checked once, whichever
        // of its APIs it calls; audience, scopes and contracts are checked per API after the
        // cache. Another provider's APIs never share these caches.
        let attributes = basis.caches.attributes;
        let cache = &basis.caches.settings;
        let leeway = Leeway::new(provider.settings.jwt.leeway);
        Validators {
            // Only introspection misses cost a provider call: they alone count against each
            // client's share (a forged JWT is refused locally, before the introspection cache).
            introspection: Arc::new(
                CachedValidator::new(
                    "introspection",
                    IntrospectionValidator::new(provider.clone(), clock.clone(), attributes),
                    cache.clone(),
                    leeway,
                    clock.clone(),
                )
                .with_share(provider.client_share())
                .of_provider(&provider.settings.name),
            ),
            jwt: Arc::new(
                CachedValidator::new(
                    "jwt",
                    JwtValidator::new(provider.clone(), clock.clone(), attributes),
                    cache.clone(),
                    leeway,
                    clock.clone(),
                )
                .of_provider(&provider.settings.name),
            ),
            provider,
            basis,
        }
    }

    fn build(
        settings: &Settings,
        provider: &ProviderSettings,
        clock: &Arc<dyn Clock>,
    ) -> Result<Self, ProviderError> {
        let basis = Basis::of(settings, provider);
        let built = Provider::new(provider.clone(), basis.provider.needs_jwks, clock.clone())?;
        Ok(Validators::new(built, basis, clock))
    }
}

/// What one provider and its caches are built from, in two parts: a reload that changes neither
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
    /// Kept only when some API of the provider exposes them as headers.
    attributes: Attributes,
}

impl Basis {
    fn of(settings: &Settings, provider: &ProviderSettings) -> Self {
        let apis = || settings.apis_of(&provider.name);
        Basis {
            provider: ProviderBasis {
                settings: provider.clone(),
                needs_jwks: apis().any(|a| a.validation != ValidationMode::Introspection),
            },
            caches: CacheBasis {
                settings: settings.cache.clone(),
                attributes: if apis().any(|a| a.expose_headers) {
                    Attributes::Keep
                } else {
                    Attributes::Drop
                },
            },
        }
    }
}

/// What a rebuilt runtime took over from the one before, for one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The provider and its caches: verdicts cached before the reload still serve.
    ProviderAndCaches,
    /// The provider (no new discovery, no new key fetch); the caches are new.
    Provider,
    /// Nothing: a new provider, to be resolved before it serves.
    Nothing,
}

/// What a reload kept of each provider of the new settings, in their order.
pub type KeptProviders = Vec<(Arc<Provider>, Kept)>;

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
        let validators = settings
            .providers
            .iter()
            .map(|p| Validators::build(settings, p, &clock))
            .collect::<Result<Vec<_>, _>>()?;
        let mut runtime = Self::assemble(settings, validators);
        runtime.registry = settings
            .registry
            .as_ref()
            .map(|r| Arc::new(IndexHandle::new(r.max_staleness)));
        Ok(runtime)
    }

    /// A runtime for new settings that keeps as much of this one as they allow, provider by
    /// provider (matched by name): the provider while its settings and validation modes are
    /// unchanged, and its caches too while the cache and exposed-attribute settings are. What
    /// was kept is said for each provider of the new settings, in their order.
    pub fn rebuild(
        &self,
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, KeptProviders), ProviderError> {
        let mut validators = Vec::with_capacity(settings.providers.len());
        let mut kept = Vec::with_capacity(settings.providers.len());
        for p in &settings.providers {
            let (v, k) = self.rebuild_provider(settings, p, &clock)?;
            kept.push((v.provider.clone(), k));
            validators.push(v);
        }
        let mut runtime = Self::assemble(settings, validators);
        runtime.registry = self.registry.clone();
        runtime.admin_registry = self.admin_registry.clone();
        Ok((runtime, kept))
    }

    fn rebuild_provider(
        &self,
        settings: &Settings,
        provider: &ProviderSettings,
        clock: &Arc<dyn Clock>,
    ) -> Result<(Validators, Kept), ProviderError> {
        let basis = Basis::of(settings, provider);
        let before = self
            .validators
            .iter()
            .find(|v| v.provider.settings.name == provider.name);
        match before {
            Some(old) if old.basis == basis => Ok((old.clone(), Kept::ProviderAndCaches)),
            Some(old) if old.basis.provider == basis.provider => Ok((
                Validators::new(old.provider.clone(), basis, clock),
                Kept::Provider,
            )),
            Some(_) | None => Ok((Validators::build(settings, provider, clock)?, Kept::Nothing)),
        }
    }

    fn assemble(settings: &Settings, validators: Vec<Validators>) -> Self {
        // At every start and reload that keeps it: an unverified upstream is worth a line each time.
        for warning in crate::config::insecure_warnings(settings) {
            tracing::warn!("{warning}");
        }
        let router = Router::new(settings.apis.iter().filter_map(|api| {
            // Every API names a configured provider (checked when the config was read).
            let v = validators
                .iter()
                .find(|v| v.provider.settings.name == api.provider)?;
            let validator = match api.validation {
                ValidationMode::Introspection => v.introspection.clone(),
                ValidationMode::Jwt => v.jwt.clone(),
                ValidationMode::JwtIntrospection => Arc::new(JwtThenIntrospection::new(
                    v.jwt.clone(),
                    v.introspection.clone(),
                )),
            };
            let compiled = Api {
                name: Arc::from(api.name.as_str()),
                settings: api.clone(),
                provider: v.provider.clone(),
                validator,
            };
            Some(Route {
                host: api.host.clone(),
                prefix: api.path_prefix.clone(),
                case_insensitive: api.case_insensitive_paths,
                api: Arc::new(compiled),
            })
        }));
        Runtime {
            router,
            providers: validators.iter().map(|v| v.provider.clone()).collect(),
            listen: settings.listen.clone(),
            registry: None,
            admin_registry: Arc::new(OnceLock::new()),
            admin_token: settings.admin.token.clone(),
            validators,
        }
    }

    /// The provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.settings.name == name)
    }

    /// The first provider some API validates with that cannot validate yet, by name. A provider
    /// no API uses (one only the registry registers at) does not hold readiness back.
    pub fn unready_provider(&self) -> Option<&str> {
        self.providers
            .iter()
            .filter(|p| !p.is_ready())
            .find(|p| {
                self.router
                    .iter()
                    .any(|a| a.settings.provider == p.settings.name)
            })
            .map(|p| p.settings.name.as_str())
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
