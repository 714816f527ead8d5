//! The checks a declaration passes before `apply` plans anything: names, limits, grants and
//! redirect URIs, the configuration's APIs, tiers and applications that exist (in the file or the
//! store), and no entry twice. Every problem is listed with its key path, so one run shows all.

use std::collections::{HashMap, HashSet};

use super::{AppEntry, Current, Declaration};
use crate::registry::idp::check_redirects;
use crate::registry::model::TierStatus;
use crate::registry::{ContractStatus, Limit, Registry, check_name};

/// Every problem of `file`, each `key.path: what is wrong`; empty when it may be applied.
pub(super) fn check(
    r: &Registry,
    current: &Current,
    file: &Declaration,
    prune: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    tiers(r, file, &mut problems);
    apps(r, current, file, &mut problems);
    contracts(r, current, file, prune, &mut problems);
    problems
}

/// Records where each key was first seen, and a problem for the second time.
fn once<K: std::hash::Hash + Eq>(
    seen: &mut HashMap<K, String>,
    key: K,
    at: &str,
    what: &str,
    problems: &mut Vec<String>,
) {
    if let Some(first) = seen.get(&key) {
        problems.push(format!("{at}: {what} is declared twice (first at {first})"));
    } else {
        seen.insert(key, at.to_owned());
    }
}

fn tiers(r: &Registry, file: &Declaration, problems: &mut Vec<String>) {
    let mut seen = HashMap::new();
    for (i, t) in file.tiers.iter().enumerate() {
        let at = format!("tier[{i}]");
        if let Err(e) = r.known_api(&t.api) {
            problems.push(format!("{at}.api: {e}"));
        }
        if let Err(e) = check_name("tier", &t.name) {
            problems.push(format!("{at}.name: {e}"));
        }
        if t.limits.is_empty() {
            problems.push(format!(
                "{at}.limits: a tier needs at least one limit, e.g. [\"100/1s\"]"
            ));
        }
        let mut windows = HashSet::new();
        for (j, text) in t.limits.iter().enumerate() {
            match text.parse::<Limit>() {
                Ok(l) if !windows.insert(l.per) => problems.push(format!(
                    "{at}.limits[{j}]: a second limit with the window of {text:?}: keep one per window"
                )),
                Ok(_) => {}
                Err(e) => problems.push(format!("{at}.limits[{j}]: {e}")),
            }
        }
        let what = format!("tier {}/{}", t.api, t.name);
        once(&mut seen, (&t.api, &t.name), &at, &what, problems);
    }
}

fn apps(r: &Registry, current: &Current, file: &Declaration, problems: &mut Vec<String>) {
    let mut names = HashMap::new();
    let mut client_ids = HashMap::new();
    for (i, a) in file.apps.iter().enumerate() {
        let at = format!("app[{i}]");
        // A held application keeps its provider (`differences` refuses a move).
        if current.app(&a.name).is_none()
            && let Err(e) = r.provider_for(a.provider.as_deref(), &format!("{at}.provider"))
        {
            problems.push(e.to_string());
        }
        if let Err(e) = check_name("application", &a.name) {
            problems.push(format!("{at}.name: {e}"));
        }
        once(
            &mut names,
            &a.name,
            &at,
            &format!("application {}", a.name),
            problems,
        );
        if !matches!(
            a.grant.as_str(),
            "client_credentials" | "authorization_code"
        ) {
            problems.push(format!(
                "{at}.grant: {:?}: write client_credentials or authorization_code",
                a.grant
            ));
        } else if let Err(e) = check_redirects(&a.grant, &a.redirect_uris) {
            problems.push(format!("{at}.redirect_uris: {e}"));
        }
        // Without a provider (a problem listed above) there is no client to compare.
        if let (Some(client_id), Some(provider)) = (&a.client_id, app_provider(r, current, a)) {
            let at = format!("{at}.client_id");
            client(
                current,
                a,
                (provider, client_id),
                &at,
                &mut client_ids,
                problems,
            );
        }
    }
}

/// An imported client's id: well formed, declared once at its provider, and not another
/// application's there (two providers may issue the same id).
fn client<'a>(
    current: &Current,
    a: &AppEntry,
    (provider, client_id): (String, &'a String),
    at: &str,
    seen: &mut HashMap<(String, &'a String), String>,
    problems: &mut Vec<String>,
) {
    if client_id.trim().is_empty() || client_id.chars().any(char::is_control) {
        problems.push(format!(
            "{at}: the provider's client id, as its tokens carry it"
        ));
        return;
    }
    let what = format!("client id {client_id:?} of provider {provider:?}");
    once(seen, (provider.clone(), client_id), at, &what, problems);
    if let Some(held) = current.app(&a.name).filter(|h| h.client_id != *client_id) {
        problems.push(format!(
            "{at}: application {} has client {:?} in the registry: a client id is not changed (delete the application, or import under another name)",
            a.name, held.client_id
        ));
    }
    if let Some(other) = current
        .apps()
        .find(|o| o.client_id == *client_id && o.provider == provider && o.name != a.name)
    {
        problems.push(format!(
            "{at}: client {client_id:?} of provider {provider:?} is application {:?} in the registry already",
            other.name
        ));
    }
}

fn contracts(
    r: &Registry,
    current: &Current,
    file: &Declaration,
    prune: bool,
    problems: &mut Vec<String>,
) {
    let mut seen = HashMap::new();
    let declared: HashSet<&str> = file.apps.iter().map(|a| a.name.as_str()).collect();
    for (i, c) in file.contracts.iter().enumerate() {
        let at = format!("contract[{i}]");
        once(
            &mut seen,
            (&c.app, &c.api),
            &at,
            &format!("contract {}/{}", c.app, c.api),
            problems,
        );
        if ContractStatus::parse(&c.status).is_none() {
            problems.push(format!(
                "{at}.status: {:?}: write approved, pending, rejected or revoked",
                c.status
            ));
        }
        if !declared.contains(c.app.as_str()) {
            if current.app(&c.app).is_none() {
                problems.push(format!(
                    "{at}.app: no application {:?} in the file or the registry",
                    c.app
                ));
            } else if prune {
                problems.push(format!(
                    "{at}.app: application {:?} is not in the file, so --prune deletes it",
                    c.app
                ));
            }
        }
        if let Err(e) = r.known_api(&c.api) {
            problems.push(format!("{at}.api: {e}"));
        } else if let Some(why) = other_provider(r, current, file, c) {
            problems.push(format!("{at}: {why}"));
        } else {
            let new = current.contract(&c.app, &c.api).is_none();
            contract_tier(current, file, c, new, &at, problems);
        }
    }
}

/// Why a contract pairs an application and an API of different providers, if it does.
fn other_provider(
    r: &Registry,
    current: &Current,
    file: &Declaration,
    c: &super::ContractEntry,
) -> Option<String> {
    let api_provider = r.api_provider(&c.api)?;
    let app_provider = match file.apps.iter().find(|a| a.name == c.app) {
        Some(a) => app_provider(r, current, a)?,
        None => current.app(&c.app)?.provider.clone(),
    };
    (app_provider != api_provider).then(|| {
        format!(
            "application {:?} is a client of provider {app_provider:?}, but API {:?} accepts tokens of provider {api_provider:?}: a contract would admit nothing",
            c.app, c.api
        )
    })
}

/// The provider a declared application belongs to: the one it holds in the store (it keeps it),
/// else the one named, else the only one configured; `None` when that cannot be told.
fn app_provider(r: &Registry, current: &Current, a: &AppEntry) -> Option<String> {
    match (current.app(&a.name), &a.provider) {
        (Some(held), _) => Some(held.provider.clone()),
        (None, Some(named)) => Some(named.clone()),
        (None, None) => r.provider_for(None, "provider").ok(),
    }
}

/// A contract's tier: one the file or the store has for its API; for a `new` contract, not a
/// deprecated one, and none only when the API has no tiers (as `contract request` wants).
fn contract_tier(
    current: &Current,
    file: &Declaration,
    c: &super::ContractEntry,
    new: bool,
    at: &str,
    problems: &mut Vec<String>,
) {
    let in_file = file.tiers.iter().filter(|t| t.api == c.api);
    let Some(name) = &c.tier else {
        if new && (in_file.count() > 0 || current.tiers_of(&c.api).next().is_some()) {
            problems.push(format!(
                "{at}.tier: API {:?} has SLA tiers: name one",
                c.api
            ));
        }
        return;
    };
    let deprecated = match in_file.clone().find(|t| t.name == *name) {
        Some(t) => t.deprecated,
        None => match current.tier(&c.api, name) {
            Some(t) => t.status == TierStatus::Deprecated,
            None => {
                problems.push(format!(
                    "{at}.tier: API {:?} has no tier {name:?} in the file or the registry",
                    c.api
                ));
                return;
            }
        },
    };
    if deprecated && new {
        problems.push(format!(
            "{at}.tier: tier {name:?} of {:?} is deprecated: new contracts choose another",
            c.api
        ));
    }
}
