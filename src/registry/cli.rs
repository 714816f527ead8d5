//! The registry's commands (`tollgate app|contract|tier|audit ...`): argument shapes, and the
//! rendering of [`Registry`] results as text or, with `--json`, as JSON. Every operation is the
//! library's; nothing here changes the registry itself.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;

use super::{
    AppStatus, ContractAction, ContractFilter, ContractStatus, Limit, NewApp, Registry,
    RegistryError,
};
use crate::clock::Clock;
use crate::config::Settings;

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Adopt a client that exists at the provider already (no provider call).
    Import {
        name: String,
        /// The provider's client id, as its tokens carry it.
        #[arg(long)]
        client_id: String,
        #[arg(long, default_value = "client_credentials", value_parser = ["client_credentials", "authorization_code"])]
        grant: String,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        json: bool,
    },
    /// List the applications.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One application and its contracts.
    Show {
        app: String,
        #[arg(long)]
        json: bool,
    },
    /// Its contracts admit nothing until it is enabled again.
    Disable {
        app: String,
    },
    Enable {
        app: String,
    },
    /// Delete the application; its contracts go first.
    Delete {
        app: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ContractCommand {
    /// Ask for a contract between an application and an API (approved at once when the tier, or
    /// the API without tiers, auto-approves).
    Request {
        app: String,
        api: String,
        #[arg(long)]
        tier: Option<String>,
    },
    Approve {
        app: String,
        api: String,
    },
    Reject {
        app: String,
        api: String,
    },
    Revoke {
        app: String,
        api: String,
    },
    Restore {
        app: String,
        api: String,
    },
    /// Delete a contract (an approved one must be revoked first).
    Delete {
        app: String,
        api: String,
    },
    List {
        #[arg(long)]
        api: Option<String>,
        #[arg(long)]
        app: Option<String>,
        #[arg(long, value_parser = ["pending", "approved", "rejected", "revoked"])]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TierCommand {
    /// An SLA tier of an API.
    Create {
        api: String,
        name: String,
        /// COUNT/WINDOW, e.g. 100/1s; repeat for several windows.
        #[arg(long = "limit", required = true)]
        limits: Vec<String>,
        #[arg(long)]
        auto_approve: bool,
    },
    List {
        #[arg(long)]
        api: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Kept for its contracts; new contracts cannot choose it.
    Deprecate { api: String, name: String },
    /// Delete a tier no contract uses.
    Delete { api: String, name: String },
}

/// `tollgate audit`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// How far back, e.g. 24h, 7d.
    #[arg(long, default_value = "24h")]
    since: String,
    #[arg(long)]
    app: Option<String>,
    #[arg(long)]
    json: bool,
}

/// A registry command's outcome: what to print, and whether it succeeded.
pub struct Printed {
    pub stdout: String,
}

/// Opens the registry of `settings` for a command run by `actor`.
pub async fn open(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    actor: &str,
) -> Result<Registry, RegistryError> {
    Registry::open(settings, clock, format!("cli:{actor}")).await
}

pub async fn app(r: &Registry, command: AppCommand) -> Result<Printed, RegistryError> {
    match command {
        AppCommand::Import {
            name,
            client_id,
            grant,
            redirect_uris,
            description,
            json,
        } => {
            let new = NewApp {
                name,
                client_id,
                grant,
                redirect_uris,
                description,
            };
            let app = r.import_app(new).await?;
            Ok(render(json, &app, || {
                format!(
                    "application {} imported (client id {})\n",
                    app.name, app.client_id
                )
            }))
        }
        AppCommand::List { json } => {
            let apps = r.apps().await?;
            Ok(render(json, &apps, || {
                let mut out = String::new();
                for a in &apps {
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{:?}",
                        a.name, a.client_id, a.grant, a.status
                    );
                }
                out
            }))
        }
        AppCommand::Show { app, json } => {
            let (a, contracts) = r.app(&app).await?;
            let both = serde_json::json!({"app": a, "contracts": contracts});
            Ok(render(json, &both, || {
                let mut out = format!(
                    "application {}\n  client id {}\n  grant {}\n  status {:?}\n  origin {}\n",
                    a.name, a.client_id, a.grant, a.status, a.origin
                );
                for c in &contracts {
                    let tier = c.tier.as_deref().unwrap_or("-");
                    let _ = writeln!(
                        out,
                        "  contract {}: {} (tier {tier})",
                        c.api,
                        c.status.as_str()
                    );
                }
                out
            }))
        }
        AppCommand::Disable { app } => {
            let a = r.set_app_status(&app, AppStatus::Disabled).await?;
            Ok(line(format!(
                "application {} disabled: its contracts admit nothing",
                a.name
            )))
        }
        AppCommand::Enable { app } => {
            let a = r.set_app_status(&app, AppStatus::Active).await?;
            Ok(line(format!("application {} enabled", a.name)))
        }
        AppCommand::Delete { app } => {
            let a = r.delete_app(&app).await?;
            Ok(line(format!(
                "application {} deleted with its contracts (the provider's client {} is kept)",
                a.name, a.client_id
            )))
        }
    }
}

pub async fn contract(r: &Registry, command: ContractCommand) -> Result<Printed, RegistryError> {
    let (app, api, action) = match command {
        ContractCommand::Request { app, api, tier } => {
            let c = r.request_contract(&app, &api, tier.as_deref()).await?;
            return Ok(line(format!(
                "contract {}/{} {}",
                c.app,
                c.api,
                c.status.as_str()
            )));
        }
        ContractCommand::List {
            api,
            app,
            status,
            json,
        } => {
            let filter = ContractFilter {
                api,
                app,
                status: status.as_deref().and_then(ContractStatus::parse),
            };
            let contracts = r.contracts(&filter).await?;
            return Ok(render(json, &contracts, || {
                let mut out = String::new();
                for c in &contracts {
                    let tier = c.tier.as_deref().unwrap_or("-");
                    let _ = writeln!(out, "{}\t{}\t{}\t{tier}", c.app, c.api, c.status.as_str());
                }
                out
            }));
        }
        ContractCommand::Approve { app, api } => (app, api, ContractAction::Approve),
        ContractCommand::Reject { app, api } => (app, api, ContractAction::Reject),
        ContractCommand::Revoke { app, api } => (app, api, ContractAction::Revoke),
        ContractCommand::Restore { app, api } => (app, api, ContractAction::Restore),
        ContractCommand::Delete { app, api } => (app, api, ContractAction::Delete),
    };
    let after = r.change_contract(&app, &api, action).await?;
    Ok(line(match after {
        Some(c) => format!("contract {app}/{api} {}", c.status.as_str()),
        None => format!("contract {app}/{api} deleted"),
    }))
}

pub async fn tier(r: &Registry, command: TierCommand) -> Result<Printed, RegistryError> {
    match command {
        TierCommand::Create {
            api,
            name,
            limits,
            auto_approve,
        } => {
            let limits = limits
                .iter()
                .map(|l| l.parse::<Limit>())
                .collect::<Result<Vec<_>, _>>()?;
            let t = r.create_tier(&api, &name, limits, auto_approve).await?;
            Ok(line(format!("tier {}/{} created", t.api, t.name)))
        }
        TierCommand::List { api, json } => {
            let tiers = r.tiers(api.as_deref()).await?;
            Ok(render(json, &tiers, || {
                let mut out = String::new();
                for t in &tiers {
                    let limits: Vec<String> = t.limits.iter().map(ToString::to_string).collect();
                    let auto = if t.auto_approve {
                        "auto-approve"
                    } else {
                        "manual"
                    };
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{auto}\t{:?}",
                        t.api,
                        t.name,
                        limits.join(" "),
                        t.status
                    );
                }
                out
            }))
        }
        TierCommand::Deprecate { api, name } => {
            r.deprecate_tier(&api, &name).await?;
            Ok(line(format!("tier {api}/{name} deprecated")))
        }
        TierCommand::Delete { api, name } => {
            r.delete_tier(&api, &name).await?;
            Ok(line(format!("tier {api}/{name} deleted")))
        }
    }
}

pub async fn audit(r: &Registry, args: AuditArgs, now: i64) -> Result<Printed, RegistryError> {
    let back = humantime::parse_duration(&args.since)
        .ok()
        .filter(|d| *d <= Duration::from_secs(100 * 365 * 86_400))
        .ok_or_else(|| {
            RegistryError::Invalid(format!(
                "--since {:?}: write a duration, e.g. 24h or 7d",
                args.since
            ))
        })?;
    let since = now.saturating_sub(i64::try_from(back.as_secs()).unwrap_or(i64::MAX));
    let entries = r.audit(since, args.app.as_deref()).await?;
    Ok(render(args.json, &entries, || {
        let mut out = String::new();
        for e in &entries {
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}",
                e.revision, e.at, e.actor, e.action, e.subject
            );
        }
        out
    }))
}

fn line(text: String) -> Printed {
    Printed {
        stdout: text + "\n",
    }
}

fn render<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> Printed {
    Printed {
        stdout: if json {
            serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
        } else {
            text()
        },
    }
}
