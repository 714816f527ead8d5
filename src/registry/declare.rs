//! The declarative registry: a TOML file of tiers, applications and contracts that
//! `tollgate apply` makes true and `tollgate export` writes from the store. Applying is *plan
//! then act*: the whole file is checked against the configuration and the store before anything
//! changes, the differences become a [`Plan`] of [`Registry`] operations (each saying what it does
//! at the provider), and the plan is worked in a safe order — tiers, applications, contracts,
//! then (with prune) removals — stopping at the first failure, so running it again continues.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::model::{App, AppStatus, Contract, ContractAction, ContractStatus, Tier, TierStatus};
use super::{Credentials, Limit, NewApp, Outcome, Registry, RegistryError};
use crate::config::Settings;
use crate::provider::Registration;

mod check;

/// The file: `[[tier]]`, `[[app]]` and `[[contract]]` tables, in that order when exported.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    #[serde(default, rename = "tier", skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<TierEntry>,
    #[serde(default, rename = "app", skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<AppEntry>,
    #[serde(default, rename = "contract", skip_serializing_if = "Vec::is_empty")]
    pub contracts: Vec<ContractEntry>,
}

/// An SLA tier. Limits stay text until checked, so every bad one is listed, not just the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierEntry {
    pub api: String,
    pub name: String,
    pub limits: Vec<String>,
    #[serde(default)]
    pub auto_approve: bool,
    /// Kept for the contracts that have it; new contracts cannot choose it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deprecated: bool,
}

/// An application: with `client_id`, a client adopted as it is; without, one created at the
/// provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppEntry {
    pub name: String,
    /// The provider its client is at; needed only when several are configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default = "client_credentials")]
    pub grant: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub disabled: bool,
}

/// A contract, in the state it should be in (`approved`, `pending`, `rejected`, `revoked`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractEntry {
    pub app: String,
    pub api: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    pub status: String,
}

/// One change of a plan, or one difference it leaves alone and says so.
#[derive(Debug, Clone)]
pub enum Step {
    CreateTier(Tier),
    DeprecateTier {
        api: String,
        name: String,
    },
    DeleteTier {
        api: String,
        name: String,
    },
    /// Registers a client named `client_name` at the provider.
    CreateApp {
        app: NewApp,
        client_name: String,
    },
    ImportApp(NewApp),
    SetAppStatus {
        app: String,
        status: AppStatus,
    },
    /// Requests a contract (it starts `pending`, or `approved` when it auto-approves), then takes
    /// `then` to reach the declared state.
    RequestContract {
        app: String,
        api: String,
        tier: Option<String>,
        auto: bool,
        then: Option<ContractAction>,
    },
    ChangeContract {
        app: String,
        api: String,
        action: ContractAction,
    },
    /// Prune: an approved contract is revoked before it is deleted, as the state machine wants.
    RemoveContract {
        app: String,
        api: String,
        revoke_first: bool,
    },
    /// Prune: `client_name` is the client deleted with it at its provider, if any.
    DeleteApp {
        app: String,
        provider: String,
        client_name: Option<String>,
    },
    /// A difference not applied, and why.
    NotApplied {
        subject: String,
        why: String,
    },
    /// A change the contract state machine forbids: an error for this item.
    Refused {
        subject: String,
        why: String,
    },
}

/// Each provider's registration API, by provider name, for the steps that call one.
pub type Registrations<'a> = HashMap<String, &'a Registration>;

/// The changes `apply` makes, in the order it makes them.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
}

/// How one step of a plan ended.
#[derive(Debug)]
pub enum StepResult {
    Done,
    /// A client created at the provider: its secret is shown once.
    Created(Credentials),
    /// The provider may or may not have created the client (`tollgate idp status`).
    Pending(String),
    Failed(RegistryError),
    /// Not attempted: an earlier step failed or is pending.
    NotDone(String),
    /// A [`Step::NotApplied`] or [`Step::Refused`], reported as it was planned.
    Reported,
}

/// What the registry holds, keyed as the file names things.
struct Current {
    tiers: HashMap<(String, String), Tier>,
    apps: HashMap<String, App>,
    contracts: HashMap<(String, String), Contract>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn client_credentials() -> String {
    "client_credentials".to_owned()
}

/// Reads a declaration; a syntax error or an unknown key is reported with its key path.
pub fn parse(text: &str) -> Result<Declaration, RegistryError> {
    let doc: toml::Value = toml::from_str::<toml::Table>(text)
        .map(toml::Value::Table)
        .map_err(|e| {
            let line = e
                .span()
                .map_or(0, |s| text[..s.start].matches('\n').count() + 1);
            RegistryError::Invalid(format!("not valid TOML (line {line}): {}", e.message()))
        })?;
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        RegistryError::Invalid(format!("{path}: {}", e.into_inner().message()))
    })
}

/// The registry as a declaration: applying it changes nothing.
pub async fn export(r: &Registry) -> Result<Declaration, RegistryError> {
    let tiers = r.store.tiers().await?.into_iter().map(|t| TierEntry {
        limits: t.limits.iter().map(ToString::to_string).collect(),
        deprecated: t.status == TierStatus::Deprecated,
        api: t.api,
        name: t.name,
        auto_approve: t.auto_approve,
    });
    let apps = r.store.apps().await?.into_iter().map(|a| AppEntry {
        disabled: a.status == AppStatus::Disabled,
        provider: Some(a.provider),
        name: a.name,
        client_id: Some(a.client_id),
        grant: a.grant,
        redirect_uris: a.redirect_uris,
        description: a.description,
    });
    let contracts = r
        .store
        .contracts()
        .await?
        .into_iter()
        .map(|c| ContractEntry {
            status: c.status.as_str().to_owned(),
            app: c.app,
            api: c.api,
            tier: c.tier,
        });
    Ok(Declaration {
        tiers: tiers.collect(),
        apps: apps.collect(),
        contracts: contracts.collect(),
    })
}

/// Checks the whole declaration and computes what applying it changes. A bad declaration is
/// refused with every problem listed, one a line, and nothing is planned.
pub async fn plan(
    r: &Registry,
    settings: &Settings,
    file: &Declaration,
    prune: bool,
) -> Result<Plan, RegistryError> {
    let current = Current::load(r).await?;
    let problems = check::check(r, &current, file, prune);
    if !problems.is_empty() {
        return Err(RegistryError::Invalid(format!(
            "the registry file has {} problem(s); nothing was changed:\n  {}",
            problems.len(),
            problems.join("\n  ")
        )));
    }
    let mut steps = Vec::new();
    plan_tiers(&current, file, &mut steps);
    let enables = plan_apps(r, settings, &current, file, &mut steps);
    plan_contracts(r, &current, file, &mut steps);
    // After the contracts: an application enabled before its contract is revoked would admit
    // requests in between.
    steps.extend(enables);
    if prune {
        plan_removals(settings, &current, file, &mut steps);
    }
    Ok(Plan { steps })
}

// === impl Current ===

impl Current {
    async fn load(r: &Registry) -> Result<Current, RegistryError> {
        let tiers = r.store.tiers().await?;
        let apps = r.store.apps().await?;
        let contracts = r.store.contracts().await?;
        Ok(Current {
            tiers: tiers
                .into_iter()
                .map(|t| ((t.api.clone(), t.name.clone()), t))
                .collect(),
            apps: apps.into_iter().map(|a| (a.name.clone(), a)).collect(),
            contracts: contracts
                .into_iter()
                .map(|c| ((c.app.clone(), c.api.clone()), c))
                .collect(),
        })
    }

    fn tier(&self, api: &str, name: &str) -> Option<&Tier> {
        self.tiers.get(&(api.to_owned(), name.to_owned()))
    }

    fn app(&self, name: &str) -> Option<&App> {
        self.apps.get(name)
    }

    fn contract(&self, app: &str, api: &str) -> Option<&Contract> {
        self.contracts.get(&(app.to_owned(), api.to_owned()))
    }

    fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    fn tiers_of<'a>(&'a self, api: &'a str) -> impl Iterator<Item = &'a Tier> + 'a {
        self.tiers.values().filter(move |t| t.api == api)
    }
}

/// Limits as checked (the file was checked before planning, so none fails here).
fn limits(entry: &TierEntry) -> Vec<Limit> {
    let mut limits: Vec<Limit> = entry.limits.iter().filter_map(|l| l.parse().ok()).collect();
    limits.sort_by_key(|l| l.per);
    limits
}

fn plan_tiers(current: &Current, file: &Declaration, steps: &mut Vec<Step>) {
    for t in &file.tiers {
        let subject = format!("tier {}/{}", t.api, t.name);
        let want = limits(t);
        let deprecate = || Step::DeprecateTier {
            api: t.api.clone(),
            name: t.name.clone(),
        };
        let Some(held) = current.tier(&t.api, &t.name) else {
            steps.push(Step::CreateTier(Tier {
                api: t.api.clone(),
                name: t.name.clone(),
                limits: want,
                auto_approve: t.auto_approve,
                status: TierStatus::Active,
                created_at: 0,
            }));
            if t.deprecated {
                steps.push(deprecate());
            }
            continue;
        };
        let mut have = held.limits.clone();
        have.sort_by_key(|l| l.per);
        if have != want || held.auto_approve != t.auto_approve {
            steps.push(not_applied(
                &subject,
                "its limits or auto_approve differ: changing a tier is not supported yet (create another)",
            ));
        }
        match (held.status, t.deprecated) {
            (TierStatus::Active, true) => steps.push(deprecate()),
            (TierStatus::Deprecated, false) => steps.push(not_applied(
                &subject,
                "it is deprecated in the registry: a deprecated tier is not reinstated",
            )),
            (TierStatus::Active, false) | (TierStatus::Deprecated, true) => {}
        }
    }
}

/// Plans the applications; returns the enabling of existing ones, which go after the contracts.
fn plan_apps(
    r: &Registry,
    settings: &Settings,
    current: &Current,
    file: &Declaration,
    steps: &mut Vec<Step>,
) -> Vec<Step> {
    let mut enables = Vec::new();
    for a in &file.apps {
        let status = if a.disabled {
            AppStatus::Disabled
        } else {
            AppStatus::Active
        };
        // Checked already (`check`): a named provider is configured, none is named only when
        // there is one.
        let provider = r
            .provider_for(a.provider.as_deref(), "provider")
            .unwrap_or_default();
        let prefix = settings
            .provider(&provider)
            .map(|p| p.registration.client_name_prefix.clone())
            .unwrap_or_default();
        let new = NewApp {
            name: a.name.clone(),
            provider,
            client_id: a.client_id.clone().unwrap_or_default(),
            grant: a.grant.clone(),
            redirect_uris: a.redirect_uris.clone(),
            description: a.description.clone(),
        };
        let Some(held) = current.app(&a.name) else {
            steps.push(match a.client_id {
                Some(_) => Step::ImportApp(new),
                None => Step::CreateApp {
                    app: new,
                    client_name: format!("{prefix}{}", a.name),
                },
            });
            if status == AppStatus::Disabled {
                steps.push(Step::SetAppStatus {
                    app: a.name.clone(),
                    status,
                });
            }
            continue;
        };
        differences(held, a, status, steps, &mut enables);
    }
    enables
}

/// What differs between an application the registry holds and its entry.
fn differences(
    held: &App,
    a: &AppEntry,
    status: AppStatus,
    steps: &mut Vec<Step>,
    enables: &mut Vec<Step>,
) {
    let subject = format!("application {}", a.name);
    if a.provider.as_ref().is_some_and(|p| *p != held.provider) {
        steps.push(Step::Refused {
            subject: subject.clone(),
            why: format!(
                "its client is at provider {:?}: an application cannot move to another provider (delete it and create it there)",
                held.provider
            ),
        });
    }
    if held.grant != a.grant || held.redirect_uris != a.redirect_uris {
        steps.push(not_applied(
            &subject,
            "its grant or redirect_uris differ (update at the provider is not supported yet)",
        ));
    }
    if held.description != a.description {
        steps.push(not_applied(
            &subject,
            "its description differs (changing it is not supported yet)",
        ));
    }
    if held.status != status {
        let step = Step::SetAppStatus {
            app: a.name.clone(),
            status,
        };
        match status {
            AppStatus::Active => enables.push(step),
            AppStatus::Disabled => steps.push(step),
        }
    }
}

fn plan_contracts(r: &Registry, current: &Current, file: &Declaration, steps: &mut Vec<Step>) {
    for c in &file.contracts {
        let subject = format!("contract {}/{}", c.app, c.api);
        let Some(want) = ContractStatus::parse(&c.status) else {
            continue;
        };
        let Some(held) = current.contract(&c.app, &c.api) else {
            let auto = auto_approves(r, current, file, &c.api, c.tier.as_deref());
            let start = if auto {
                ContractStatus::Approved
            } else {
                ContractStatus::Pending
            };
            steps.push(
                match step_between(start, want, new_contract_refusal(auto, want)) {
                    Ok(then) => Step::RequestContract {
                        app: c.app.clone(),
                        api: c.api.clone(),
                        tier: c.tier.clone(),
                        auto,
                        then,
                    },
                    Err(why) => refused(&subject, why),
                },
            );
            continue;
        };
        if held.tier != c.tier {
            steps.push(not_applied(
                &subject,
                "its tier differs: changing a contract's tier is not supported yet",
            ));
        }
        match step_between(held.status, want, None) {
            Ok(None) => {}
            Ok(Some(action)) => steps.push(Step::ChangeContract {
                app: c.app.clone(),
                api: c.api.clone(),
                action,
            }),
            Err(why) => steps.push(refused(&subject, why)),
        }
    }
}

/// Why a new contract cannot be declared `want` when it starts `approved`: it would admit
/// requests until the next step, which is not what the file says.
fn new_contract_refusal(auto: bool, want: ContractStatus) -> Option<String> {
    (auto && want != ContractStatus::Approved).then(|| {
        format!(
            "a new contract of an auto-approving tier or API starts approved: it cannot be declared {}",
            want.as_str()
        )
    })
}

/// The one action of the state machine that takes a contract from `from` to `to` (`None`:
/// already there). Never two steps: a path through `approved` would admit requests on the way.
fn step_between(
    from: ContractStatus,
    to: ContractStatus,
    refusal: Option<String>,
) -> Result<Option<ContractAction>, String> {
    if let Some(why) = refusal {
        return Err(why);
    }
    if from == to {
        return Ok(None);
    }
    [
        ContractAction::Approve,
        ContractAction::Reject,
        ContractAction::Revoke,
        ContractAction::Restore,
    ]
    .into_iter()
    .find(|a| a.apply(from) == Ok(Some(to)))
    .map(Some)
    .ok_or_else(|| {
        format!(
            "it is {}: the contract state machine has no step to {}",
            from.as_str(),
            to.as_str()
        )
    })
}

/// Whether a new contract is approved on request: its tier's `auto_approve` (as the file declares
/// it, else as the store holds it), or, without a tier, the API's.
fn auto_approves(
    r: &Registry,
    current: &Current,
    file: &Declaration,
    api: &str,
    tier: Option<&str>,
) -> bool {
    match tier {
        None => r.apis.get(api).is_some_and(|(auto, _)| *auto),
        Some(name) => file
            .tiers
            .iter()
            .find(|t| t.api == api && t.name == name)
            .map(|t| t.auto_approve)
            .or_else(|| current.tier(api, name).map(|t| t.auto_approve))
            .unwrap_or(false),
    }
}

fn plan_removals(
    settings: &Settings,
    current: &Current,
    file: &Declaration,
    steps: &mut Vec<Step>,
) {
    let kept: HashSet<(&str, &str)> = file
        .contracts
        .iter()
        .map(|c| (c.app.as_str(), c.api.as_str()))
        .collect();
    let mut gone: Vec<&Contract> = current
        .contracts
        .values()
        .filter(|c| !kept.contains(&(c.app.as_str(), c.api.as_str())))
        .collect();
    gone.sort_by(|a, b| (&a.app, &a.api).cmp(&(&b.app, &b.api)));
    for c in gone {
        steps.push(Step::RemoveContract {
            app: c.app.clone(),
            api: c.api.clone(),
            revoke_first: c.status == ContractStatus::Approved,
        });
    }
    let declared: HashSet<&str> = file.apps.iter().map(|a| a.name.as_str()).collect();
    let mut apps: Vec<&App> = current
        .apps()
        .filter(|a| !declared.contains(a.name.as_str()))
        .collect();
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    for a in apps {
        // An application whose provider is no longer configured keeps its client: nothing can
        // reach that provider.
        let registration = settings.provider(&a.provider).map(|p| &p.registration);
        let client_name = registration
            .filter(|reg| reg.delete_in_idp && a.origin == "created")
            .map(|reg| format!("{}{}", reg.client_name_prefix, a.name));
        steps.push(Step::DeleteApp {
            app: a.name.clone(),
            provider: a.provider.clone(),
            client_name,
        });
    }
    plan_tier_removals(current, file, steps);
}

/// Tiers not in the file: deleted, or deprecated (never deleted) while a kept contract has them.
fn plan_tier_removals(current: &Current, file: &Declaration, steps: &mut Vec<Step>) {
    let declared: HashSet<(&str, &str)> = file
        .tiers
        .iter()
        .map(|t| (t.api.as_str(), t.name.as_str()))
        .collect();
    // The tier each kept contract has after the plan: the store's for one that exists already.
    let used: HashSet<(String, String)> = file
        .contracts
        .iter()
        .filter_map(|c| {
            let tier = match current.contract(&c.app, &c.api) {
                Some(held) => held.tier.clone(),
                None => c.tier.clone(),
            };
            tier.map(|t| (c.api.clone(), t))
        })
        .collect();
    let mut tiers: Vec<&Tier> = current
        .tiers
        .values()
        .filter(|t| !declared.contains(&(t.api.as_str(), t.name.as_str())))
        .collect();
    tiers.sort_by(|a, b| (&a.api, &a.name).cmp(&(&b.api, &b.name)));
    for t in tiers {
        let (api, name) = (t.api.clone(), t.name.clone());
        if !used.contains(&(api.clone(), name.clone())) {
            steps.push(Step::DeleteTier { api, name });
        } else if t.status == TierStatus::Active {
            steps.push(Step::DeprecateTier { api, name });
        }
    }
}

fn not_applied(subject: &str, why: &str) -> Step {
    Step::NotApplied {
        subject: subject.to_owned(),
        why: why.to_owned(),
    }
}

fn refused(subject: &str, why: String) -> Step {
    Step::Refused {
        subject: subject.to_owned(),
        why,
    }
}

// === impl Plan ===

impl Plan {
    /// Whether applying changes anything (differences only reported do not count).
    pub fn is_empty(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s, Step::NotApplied { .. } | Step::Refused { .. }))
    }

    /// The providers whose registration API some step calls.
    pub fn providers_needed(&self) -> std::collections::BTreeSet<&str> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::CreateApp { app, .. } => Some(app.provider.as_str()),
                Step::DeleteApp {
                    provider,
                    client_name: Some(_),
                    ..
                } => Some(provider.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Works the plan in order. It stops at the first failure (what is left is `NotDone`); a
    /// create left pending at the provider holds back only the steps about that application.
    pub async fn apply(
        &self,
        r: &Registry,
        registrations: &Registrations<'_>,
    ) -> Vec<(Step, StepResult)> {
        let mut results = Vec::with_capacity(self.steps.len());
        let mut failed = false;
        let mut pending: HashSet<String> = HashSet::new();
        for step in &self.steps {
            let result = if failed {
                StepResult::NotDone("an earlier step failed".to_owned())
            } else if step.app().is_some_and(|a| pending.contains(a)) {
                StepResult::NotDone("its application is pending at the provider".to_owned())
            } else {
                step.perform(r, registrations).await
            };
            match &result {
                StepResult::Failed(_) => failed = true,
                StepResult::Pending(_) => {
                    pending.extend(step.app().map(str::to_owned));
                }
                StepResult::Done
                | StepResult::Created(_)
                | StepResult::NotDone(_)
                | StepResult::Reported => {}
            }
            results.push((step.clone(), result));
        }
        results
    }
}

// === impl Step ===

impl Step {
    /// The application a step is about, if any.
    fn app(&self) -> Option<&str> {
        match self {
            Step::CreateApp { app, .. } | Step::ImportApp(app) => Some(&app.name),
            Step::SetAppStatus { app, .. }
            | Step::RequestContract { app, .. }
            | Step::ChangeContract { app, .. }
            | Step::RemoveContract { app, .. }
            | Step::DeleteApp { app, .. } => Some(app),
            Step::CreateTier(_)
            | Step::DeprecateTier { .. }
            | Step::DeleteTier { .. }
            | Step::NotApplied { .. }
            | Step::Refused { .. } => None,
        }
    }

    async fn perform(&self, r: &Registry, registrations: &Registrations<'_>) -> StepResult {
        match self.run(r, registrations).await {
            Ok(result) => result,
            Err(e) => StepResult::Failed(e),
        }
    }

    async fn run(
        &self,
        r: &Registry,
        registrations: &Registrations<'_>,
    ) -> Result<StepResult, RegistryError> {
        match self {
            Step::CreateTier(t) => {
                r.create_tier(&t.api, &t.name, t.limits.clone(), t.auto_approve)
                    .await?;
            }
            Step::DeprecateTier { api, name } => {
                r.deprecate_tier(api, name).await?;
            }
            Step::DeleteTier { api, name } => {
                r.delete_tier(api, name).await?;
            }
            Step::CreateApp { app, .. } => {
                let registration = needed(registrations, &app.provider)?;
                return match r.create_app(registration, app.clone()).await? {
                    Outcome::Done(c) => Ok(StepResult::Created(c)),
                    Outcome::Pending(why) => Ok(StepResult::Pending(why)),
                };
            }
            Step::ImportApp(app) => {
                r.import_app(app.clone()).await?;
            }
            Step::SetAppStatus { app, status } => {
                r.set_app_status(app, *status).await?;
            }
            Step::RequestContract { .. } | Step::ChangeContract { .. } => {
                self.run_contract(r).await?;
            }
            Step::RemoveContract {
                app,
                api,
                revoke_first,
            } => {
                if *revoke_first {
                    r.change_contract(app, api, ContractAction::Revoke).await?;
                }
                r.change_contract(app, api, ContractAction::Delete).await?;
            }
            Step::DeleteApp {
                app,
                provider,
                client_name,
            } => {
                let registration = client_name
                    .as_ref()
                    .map(|_| needed(registrations, provider));
                r.delete_app_and_client(registration.transpose()?, app, client_name.is_none())
                    .await?;
            }
            Step::NotApplied { .. } | Step::Refused { .. } => return Ok(StepResult::Reported),
        }
        Ok(StepResult::Done)
    }

    async fn run_contract(&self, r: &Registry) -> Result<(), RegistryError> {
        match self {
            Step::RequestContract {
                app,
                api,
                tier,
                then,
                ..
            } => {
                r.request_contract(app, api, tier.as_deref()).await?;
                if let Some(action) = then {
                    r.change_contract(app, api, *action).await?;
                }
            }
            Step::ChangeContract { app, api, action } => {
                r.change_contract(app, api, *action).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn needed<'a>(
    registrations: &Registrations<'a>,
    provider: &str,
) -> Result<&'a Registration, RegistryError> {
    registrations.get(provider).copied().ok_or_else(|| {
        RegistryError::provider(format!(
            "the registration of provider {provider} is not available"
        ))
    })
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::CreateTier(t) => {
                let limits: Vec<String> = t.limits.iter().map(ToString::to_string).collect();
                let auto = if t.auto_approve { "; auto-approve" } else { "" };
                let (api, name) = (&t.api, &t.name);
                write!(f, "create tier {api}/{name} ({}{auto})", limits.join(", "))
            }
            Step::DeprecateTier { api, name } => write!(f, "deprecate tier {api}/{name}"),
            Step::DeleteTier { api, name } => write!(f, "delete tier {api}/{name}"),
            Step::CreateApp { app, client_name } => write!(
                f,
                "create application {}: create client {client_name} at the provider {}",
                app.name, app.provider
            ),
            Step::ImportApp(app) => write!(
                f,
                "import application {} (client {}; no provider call)",
                app.name, app.client_id
            ),
            Step::SetAppStatus { app, status } => match status {
                AppStatus::Active => write!(f, "enable application {app}"),
                AppStatus::Disabled => write!(f, "disable application {app}"),
            },
            Step::RequestContract { .. } => self.fmt_request(f),
            Step::ChangeContract { app, api, action } => {
                write!(f, "{} contract {app}/{api}", action.as_str())
            }
            Step::RemoveContract {
                app,
                api,
                revoke_first,
            } => {
                let revoke = if *revoke_first { "revoke and " } else { "" };
                write!(f, "{revoke}delete contract {app}/{api}")
            }
            Step::DeleteApp {
                app,
                provider,
                client_name,
            } => match client_name {
                Some(c) => write!(
                    f,
                    "delete application {app} and its contracts: delete client {c} at the provider {provider}"
                ),
                None => write!(
                    f,
                    "delete application {app} and its contracts (its client at the provider is kept)"
                ),
            },
            Step::NotApplied { subject, why } => write!(f, "not applied: {subject}: {why}"),
            Step::Refused { subject, why } => write!(f, "refused: {subject}: {why}"),
        }
    }
}

impl Step {
    fn fmt_request(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Step::RequestContract {
            app,
            api,
            tier,
            auto,
            then,
        } = self
        else {
            return Ok(());
        };
        let tier = tier
            .as_ref()
            .map_or_else(String::new, |t| format!(" (tier {t})"));
        let start = if *auto { "approved at once" } else { "pending" };
        write!(f, "request contract {app}/{api}{tier}: {start}")?;
        if let Some(action) = then {
            write!(f, ", then {} contract {app}/{api}", action.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_reached_in_one_step_of_the_machine_or_not_at_all() {
        use ContractStatus::*;
        assert_eq!(
            step_between(Pending, Approved, None),
            Ok(Some(ContractAction::Approve))
        );
        assert_eq!(
            step_between(Approved, Revoked, None),
            Ok(Some(ContractAction::Revoke))
        );
        assert_eq!(
            step_between(Revoked, Approved, None),
            Ok(Some(ContractAction::Restore))
        );
        assert_eq!(step_between(Rejected, Rejected, None), Ok(None));
        for (from, to) in [(Approved, Pending), (Pending, Revoked), (Revoked, Rejected)] {
            assert!(step_between(from, to, None).is_err(), "{from:?} → {to:?}");
        }
        assert!(new_contract_refusal(true, Revoked).is_some());
        assert!(new_contract_refusal(false, Rejected).is_none());
    }

    #[test]
    fn the_file_is_read_with_key_paths_and_unknown_keys_refused() {
        let d = parse("[[app]]\nname = \"shop\"\n").unwrap();
        assert_eq!(d.apps[0].grant, "client_credentials");
        let e = parse("[[app]]\nname = \"shop\"\ncolour = 1\n").unwrap_err();
        assert!(e.to_string().contains("app[0]"), "{e}");
        let e = parse("[[contract]]\napp = \"a\"\napi = \"b\"\n").unwrap_err();
        assert!(e.to_string().contains("status"), "{e}");
    }
}
