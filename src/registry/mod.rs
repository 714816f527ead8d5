//! The registry of client applications, SLA tiers and contracts: Anypoint's client-provider half.
//! [`Registry`] is the one layer of operations the CLI (and the admin API) call, each a checked
//! state change in one store transaction with its audit entry; [`ContractIndex`] is what the
//! request path reads, rebuilt by [`refresh`] when the store's revision moves.

pub mod cli;
pub mod declare;
mod idp;
mod index;
mod limit;
mod model;
mod refresh;
mod seal;
mod store;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;

pub use idp::{Credentials, Drift, Missing, Operation, Orphan, Outcome, Reconciliation};
pub use index::{ApprovedContract, ContractIndex, Grant, IndexHandle};
pub use limit::{Exceeded, Limiter};
pub use model::{
    App, AppStatus, AuditEntry, Contract, ContractAction, ContractStatus, Limit, Tier, TierStatus,
    check_name,
};
pub use refresh::{keep_current, load_index, refresh, warn_of_orphans};
pub use store::{Claim, Store};

use crate::clock::Clock;
use crate::config::Settings;
use crate::provider::{ProviderProblem, RegistrationError};

/// Why a registry operation was refused or failed. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("{what} {name:?} does not exist{hint}")]
    NotFound {
        what: &'static str,
        name: String,
        hint: String,
    },
    #[error("{what} {name:?} exists already{hint}")]
    Duplicate {
        what: &'static str,
        name: String,
        hint: String,
    },
    /// A bad name, limit, API or tier: what to write instead is in the message.
    #[error("{0}")]
    Invalid(String),
    #[error("the contract of {app:?} with {api:?} is {from}: cannot {action} it ({hint})")]
    IllegalTransition {
        app: String,
        api: String,
        from: &'static str,
        action: &'static str,
        hint: &'static str,
    },
    /// The store cannot be opened or migrated.
    #[error("the registry store {store} {reason}")]
    Store { store: String, reason: String },
    #[error("the registry store failed: {0}")]
    Query(String),
    /// The provider refused or failed a registration call; what to do, and what the provider
    /// itself said when it answered (for the admin API to pass through).
    #[error("{message}")]
    Provider {
        message: String,
        problem: Option<Box<ProviderProblem>>,
    },
    /// The configuration has no `[registry]`.
    #[error(
        "no [registry] is configured: add one with a store, e.g. store = \"sqlite:///var/lib/tollgate/registry.db\""
    )]
    NotConfigured,
}

/// What a new application is.
#[derive(Debug, Clone, Default)]
pub struct NewApp {
    pub name: String,
    /// The provider the client is (to be) registered at: see [`Registry::provider_for`].
    pub provider: String,
    pub client_id: String,
    pub grant: String,
    pub redirect_uris: Vec<String>,
    pub description: String,
}

/// Which contracts to list.
#[derive(Debug, Clone, Default)]
pub struct ContractFilter {
    pub api: Option<String>,
    pub app: Option<String>,
    pub status: Option<ContractStatus>,
}

/// The registry's operations, on one store, for the APIs of one configuration.
pub struct Registry {
    store: Store,
    /// API name → whether its contracts auto-approve when it has no tiers, and its provider.
    apis: HashMap<String, (bool, String)>,
    /// The configured providers' names, in file order.
    providers: Vec<String>,
    clock: Arc<dyn Clock>,
    /// Who is making the changes (the audit's `actor`).
    actor: String,
    /// `[registry] encryption_key`, and the key derived from it once needed.
    encryption_key: Option<crate::config::Secret>,
    sealer: tokio::sync::OnceCell<seal::Sealer>,
}

impl Registry {
    /// Opens the configuration's registry store.
    pub async fn open(
        settings: &Settings,
        clock: Arc<dyn Clock>,
        actor: impl Into<String>,
    ) -> Result<Registry, RegistryError> {
        let config = settings
            .registry
            .as_ref()
            .ok_or(RegistryError::NotConfigured)?;
        let store = Store::open(&config.store).await?;
        Ok(Registry::new(store, settings, clock, actor))
    }

    /// The operations on a store opened already (a gateway's, shared with its index refresh).
    pub fn new(
        store: Store,
        settings: &Settings,
        clock: Arc<dyn Clock>,
        actor: impl Into<String>,
    ) -> Registry {
        let apis = settings
            .apis
            .iter()
            .map(|a| (a.name.clone(), (a.auto_approve, a.provider.clone())))
            .collect();
        Registry {
            store,
            apis,
            providers: settings.providers.iter().map(|p| p.name.clone()).collect(),
            clock,
            actor: actor.into(),
            encryption_key: settings
                .registry
                .as_ref()
                .and_then(|r| r.encryption_key.clone()),
            sealer: tokio::sync::OnceCell::new(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The sealing key, derived on first use; `None` without `[registry] encryption_key`.
    async fn sealer(&self) -> Result<Option<&seal::Sealer>, RegistryError> {
        let Some(passphrase) = &self.encryption_key else {
            return Ok(None);
        };
        let sealer = self
            .sealer
            .get_or_try_init(|| async {
                let salt = self.store.salt().await?;
                seal::Sealer::new(passphrase, salt.as_bytes())
            })
            .await?;
        Ok(Some(sealer))
    }

    fn now(&self) -> i64 {
        i64::try_from(self.clock.now_unix()).unwrap_or(i64::MAX)
    }

    fn entry(&self, action: &str, subject: String) -> AuditEntry {
        AuditEntry {
            revision: 0,
            at: self.now(),
            actor: self.actor.clone(),
            action: action.to_owned(),
            subject,
            before: None,
            after: None,
        }
    }

    /// The provider an application is to belong to: the one named (`--provider`, the admin
    /// API's `provider`), or the only one configured. `key` is what to name in the message.
    pub fn provider_for(&self, named: Option<&str>, key: &str) -> Result<String, RegistryError> {
        let names: Vec<&str> = self.providers.iter().map(String::as_str).collect();
        crate::config::choose_provider(&names, named, key, "the one the application's client is at")
            .map_err(|e| RegistryError::Invalid(e.to_string()))
    }

    /// The provider whose tokens an API accepts, if the configuration has the API.
    pub fn api_provider(&self, api: &str) -> Option<&str> {
        self.apis.get(api).map(|(_, p)| p.as_str())
    }

    fn known_api(&self, api: &str) -> Result<bool, RegistryError> {
        self.api(api).map(|(auto, _)| auto)
    }

    /// Whether an API's contracts auto-approve (without tiers), and its provider.
    fn api(&self, api: &str) -> Result<(bool, &str), RegistryError> {
        self.apis
            .get(api)
            .map(|(a, p)| (*a, p.as_str()))
            .ok_or_else(|| {
                let mut names: Vec<&str> = self.apis.keys().map(String::as_str).collect();
                names.sort_unstable();
                RegistryError::Invalid(format!(
                    "no API is named {api:?} in the configuration (its [[api]] names: {})",
                    names.join(", ")
                ))
            })
    }

    // --- applications ---------------------------------------------------------------------------

    /// Adopts a client that exists at the provider already: no provider call.
    pub async fn import_app(&self, new: NewApp) -> Result<App, RegistryError> {
        check_name("application", &new.name)?;
        self.provider_for(Some(&new.provider), "provider")?;
        idp::check_grant(&new.grant)?;
        if new.client_id.trim().is_empty() || new.client_id.chars().any(char::is_control) {
            return Err(RegistryError::Invalid(
                "--client-id: the provider's client id, as its tokens carry it".to_owned(),
            ));
        }
        let mut change = self.store.begin().await?;
        if change.app(&new.name).await?.is_some() {
            return Err(duplicate("application", &new.name, ""));
        }
        // Two providers may issue the same id: it is the same client only at the same provider.
        if let Some(other) = change
            .app_by_client_id(&new.provider, &new.client_id)
            .await?
        {
            return Err(duplicate(
                "client id",
                &new.client_id,
                &format!(
                    " at provider {:?} (application {:?})",
                    new.provider, other.name
                ),
            ));
        }
        let now = self.now();
        let app = App {
            name: new.name,
            provider: new.provider,
            client_id: new.client_id,
            grant: new.grant,
            redirect_uris: new.redirect_uris,
            description: new.description,
            status: AppStatus::Active,
            origin: "imported".to_owned(),
            created_at: now,
            updated_at: now,
        };
        change.insert_app(&app).await?;
        let mut entry = self.entry("app.import", format!("app/{}", app.name));
        entry.after = Some(json!(app));
        change.commit(&entry).await?;
        Ok(app)
    }

    pub async fn apps(&self) -> Result<Vec<App>, RegistryError> {
        self.store.apps().await
    }

    /// An application and its contracts.
    pub async fn app(&self, name: &str) -> Result<(App, Vec<Contract>), RegistryError> {
        let app = self
            .store
            .app(name)
            .await?
            .ok_or_else(|| not_found("application", name))?;
        let contracts = self
            .contracts(&ContractFilter {
                app: Some(name.to_owned()),
                ..ContractFilter::default()
            })
            .await?;
        Ok((app, contracts))
    }

    /// Disables or enables an application: a disabled one's contracts admit nothing.
    pub async fn set_app_status(
        &self,
        name: &str,
        status: AppStatus,
    ) -> Result<App, RegistryError> {
        let mut change = self.store.begin().await?;
        let before = change
            .app(name)
            .await?
            .ok_or_else(|| not_found("application", name))?;
        let now = self.now();
        change.set_app_status(name, status, now).await?;
        let after = App {
            status,
            updated_at: now,
            ..before.clone()
        };
        let action = match status {
            AppStatus::Active => "app.enable",
            AppStatus::Disabled => "app.disable",
        };
        let mut entry = self.entry(action, format!("app/{name}"));
        entry.before = Some(json!(before));
        entry.after = Some(json!(after));
        change.commit(&entry).await?;
        Ok(after)
    }

    /// Deletes an application; its contracts are revoked (deleted) in the same change, so no
    /// gateway admits it past this revision.
    pub async fn delete_app(&self, name: &str) -> Result<App, RegistryError> {
        let mut change = self.store.begin().await?;
        let before = change
            .app(name)
            .await?
            .ok_or_else(|| not_found("application", name))?;
        let contracts = change.contracts_of(name).await?;
        change.delete_app(name).await?;
        let mut entry = self.entry("app.delete", format!("app/{name}"));
        entry.before = Some(json!({"app": before, "contracts": contracts}));
        change.commit(&entry).await?;
        Ok(before)
    }

    // --- contracts ------------------------------------------------------------------------------

    /// Requests a contract; approved at once when its tier (or the API, without tiers)
    /// auto-approves.
    pub async fn request_contract(
        &self,
        app: &str,
        api: &str,
        tier: Option<&str>,
    ) -> Result<Contract, RegistryError> {
        let (api_auto, api_provider) = self.api(api)?;
        let mut change = self.store.begin().await?;
        let found = change
            .app(app)
            .await?
            .ok_or_else(|| not_found("application", app))?;
        // Its tokens come from its provider; the API accepts only its own provider's tokens.
        if found.provider != api_provider {
            return Err(RegistryError::Invalid(format!(
                "application {app:?} is a client of provider {:?}, but API {api:?} accepts tokens of provider {api_provider:?}:                  a contract would admit nothing (register an application at {api_provider:?} for it)",
                found.provider
            )));
        }
        if let Some(existing) = change.contract(app, api).await? {
            return Err(duplicate(
                "contract",
                &format!("{app}/{api}"),
                &format!(
                    " ({}; see `tollgate contract list --app {app}`)",
                    existing.status.as_str()
                ),
            ));
        }
        let auto = match tier {
            Some(name) => {
                let t = change
                    .tier(api, name)
                    .await?
                    .ok_or_else(|| RegistryError::NotFound {
                        what: "tier",
                        name: name.to_owned(),
                        hint: format!(" for API {api:?}: see `tollgate tier list --api {api}`"),
                    })?;
                if t.status == TierStatus::Deprecated {
                    return Err(RegistryError::Invalid(format!(
                        "tier {name:?} of {api:?} is deprecated: new contracts choose another"
                    )));
                }
                t.auto_approve
            }
            None => {
                let (tiers, _) = change.tier_counts(api, "").await?;
                if tiers > 0 {
                    return Err(RegistryError::Invalid(format!(
                        "API {api:?} has SLA tiers: request one with --tier (see `tollgate tier list --api {api}`)"
                    )));
                }
                api_auto
            }
        };
        let now = self.now();
        let contract = Contract {
            app: app.to_owned(),
            api: api.to_owned(),
            tier: tier.map(str::to_owned),
            status: if auto {
                ContractStatus::Approved
            } else {
                ContractStatus::Pending
            },
            created_at: now,
            updated_at: now,
        };
        change.put_contract(&contract).await?;
        let mut entry = self.entry("contract.request", format!("contract/{app}/{api}"));
        entry.after = Some(json!(contract));
        change.commit(&entry).await?;
        Ok(contract)
    }

    /// Approves, rejects, revokes, restores or deletes a contract; `None` once deleted.
    pub async fn change_contract(
        &self,
        app: &str,
        api: &str,
        action: ContractAction,
    ) -> Result<Option<Contract>, RegistryError> {
        let mut change = self.store.begin().await?;
        let before = change
            .contract(app, api)
            .await?
            .ok_or_else(|| RegistryError::NotFound {
                what: "contract",
                name: format!("{app}/{api}"),
                hint: format!(": request it with `tollgate contract request {app} {api}`"),
            })?;
        let next =
            action
                .apply(before.status)
                .map_err(|hint| RegistryError::IllegalTransition {
                    app: app.to_owned(),
                    api: api.to_owned(),
                    from: before.status.as_str(),
                    action: action.as_str(),
                    hint,
                })?;
        let after = match next {
            Some(status) => {
                let c = Contract {
                    status,
                    updated_at: self.now(),
                    ..before.clone()
                };
                change.put_contract(&c).await?;
                Some(c)
            }
            None => {
                change.delete_contract(app, api).await?;
                None
            }
        };
        let mut entry = self.entry(
            &format!("contract.{}", action.as_str()),
            format!("contract/{app}/{api}"),
        );
        entry.before = Some(json!(before));
        entry.after = after.as_ref().map(|c| json!(c));
        change.commit(&entry).await?;
        Ok(after)
    }

    pub async fn contracts(&self, filter: &ContractFilter) -> Result<Vec<Contract>, RegistryError> {
        let all = self.store.contracts().await?;
        Ok(all
            .into_iter()
            .filter(|c| filter.api.as_ref().is_none_or(|a| *a == c.api))
            .filter(|c| filter.app.as_ref().is_none_or(|a| *a == c.app))
            .filter(|c| filter.status.is_none_or(|s| s == c.status))
            .collect())
    }

    // --- tiers ----------------------------------------------------------------------------------

    pub async fn create_tier(
        &self,
        api: &str,
        name: &str,
        limits: Vec<Limit>,
        auto_approve: bool,
    ) -> Result<Tier, RegistryError> {
        self.known_api(api)?;
        check_name("tier", name)?;
        if limits.is_empty() {
            return Err(RegistryError::Invalid(
                "a tier needs at least one --limit, e.g. --limit 100/1s".to_owned(),
            ));
        }
        let windows: HashSet<_> = limits.iter().map(|l| l.per).collect();
        if windows.len() != limits.len() {
            return Err(RegistryError::Invalid(
                "two limits with the same window: keep one per window".to_owned(),
            ));
        }
        let mut change = self.store.begin().await?;
        if change.tier(api, name).await?.is_some() {
            return Err(duplicate("tier", &format!("{api}/{name}"), ""));
        }
        let tier = Tier {
            api: api.to_owned(),
            name: name.to_owned(),
            limits,
            auto_approve,
            status: TierStatus::Active,
            created_at: self.now(),
        };
        change.put_tier(&tier).await?;
        let mut entry = self.entry("tier.create", format!("tier/{api}/{name}"));
        entry.after = Some(json!(tier));
        change.commit(&entry).await?;
        Ok(tier)
    }

    pub async fn tiers(&self, api: Option<&str>) -> Result<Vec<Tier>, RegistryError> {
        let all = self.store.tiers().await?;
        Ok(all
            .into_iter()
            .filter(|t| api.is_none_or(|a| a == t.api))
            .collect())
    }

    pub async fn deprecate_tier(&self, api: &str, name: &str) -> Result<Tier, RegistryError> {
        let mut change = self.store.begin().await?;
        let before = change
            .tier(api, name)
            .await?
            .ok_or_else(|| not_found("tier", &format!("{api}/{name}")))?;
        let after = Tier {
            status: TierStatus::Deprecated,
            ..before.clone()
        };
        change.put_tier(&after).await?;
        let mut entry = self.entry("tier.deprecate", format!("tier/{api}/{name}"));
        entry.before = Some(json!(before));
        entry.after = Some(json!(after));
        change.commit(&entry).await?;
        Ok(after)
    }

    /// Deletes a tier no contract uses.
    pub async fn delete_tier(&self, api: &str, name: &str) -> Result<Tier, RegistryError> {
        let mut change = self.store.begin().await?;
        let before = change
            .tier(api, name)
            .await?
            .ok_or_else(|| not_found("tier", &format!("{api}/{name}")))?;
        let (_, using) = change.tier_counts(api, name).await?;
        if using > 0 {
            return Err(RegistryError::Invalid(format!(
                "tier {name:?} of {api:?} has {using} contract(s): deprecate it, or delete them first"
            )));
        }
        change.delete_tier(api, name).await?;
        let mut entry = self.entry("tier.delete", format!("tier/{api}/{name}"));
        entry.before = Some(json!(before));
        change.commit(&entry).await?;
        Ok(before)
    }

    // --- audit ----------------------------------------------------------------------------------

    /// Changes at or after `since` (Unix seconds), optionally those about one application.
    pub async fn audit(
        &self,
        since: i64,
        app: Option<&str>,
    ) -> Result<Vec<AuditEntry>, RegistryError> {
        let entries = self.store.audit(since).await?;
        Ok(entries
            .into_iter()
            .filter(|e| {
                app.is_none_or(|a| {
                    e.subject == format!("app/{a}")
                        || e.subject.starts_with(&format!("contract/{a}/"))
                })
            })
            .collect())
    }
}

impl RegistryError {
    /// A provider failure that carries no answer of the provider's.
    pub fn provider(message: impl Into<String>) -> Self {
        RegistryError::Provider {
            message: message.into(),
            problem: None,
        }
    }
}

impl From<RegistrationError> for RegistryError {
    fn from(e: RegistrationError) -> Self {
        RegistryError::Provider {
            message: e.to_string(),
            problem: e.problem().cloned().map(Box::new),
        }
    }
}

/// The Unix time `text` (a duration back from `now`, e.g. `24h`, `7d`) names.
pub fn since(text: &str, now: i64) -> Result<i64, RegistryError> {
    let back = humantime::parse_duration(text)
        .ok()
        .filter(|d| *d <= std::time::Duration::from_secs(100 * 365 * 86_400))
        .ok_or_else(|| {
            RegistryError::Invalid(format!("since {text:?}: write a duration, e.g. 24h or 7d"))
        })?;
    Ok(now.saturating_sub(i64::try_from(back.as_secs()).unwrap_or(i64::MAX)))
}

fn not_found(what: &'static str, name: &str) -> RegistryError {
    RegistryError::NotFound {
        what,
        name: name.to_owned(),
        hint: String::new(),
    }
}

fn duplicate(what: &'static str, name: &str, hint: &str) -> RegistryError {
    RegistryError::Duplicate {
        what,
        name: name.to_owned(),
        hint: hint.to_owned(),
    }
}
