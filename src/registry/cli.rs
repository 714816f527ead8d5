//! The registry's commands (`tollgate app|contract|tier|audit ...`): argument shapes, and the
//! rendering of [`Registry`] results as text or, with `--json`, as JSON. Every operation is the
//! library's; nothing here changes the registry itself.

use std::fmt::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use serde::Serialize;

use super::declare::{self, StepResult};
use super::{
    AppStatus, ContractAction, ContractFilter, ContractStatus, Credentials, Limit, NewApp, Outcome,
    Reconciliation, Registry, RegistryError,
};
use crate::clock::Clock;
use crate::config::Settings;
use crate::provider::{Provider, Registration};

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Register a new client at the provider (RFC 7591; Okta's /oauth2/v1/clients) and record the
    /// application; its client id and secret are printed once (the secret is never stored).
    Create {
        name: String,
        /// The provider to register the client at (required when several are configured).
        #[arg(long)]
        provider: Option<String>,
        #[arg(long, value_parser = ["client_credentials", "authorization_code"])]
        grant: String,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        json: bool,
    },
    /// Change the description, or the redirect URIs (at the provider too, with
    /// provider.update_in_idp).
    Update {
        app: String,
        #[arg(long)]
        description: Option<String>,
        /// The new list (repeat for several).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Issue a new client secret at the provider, printed once.
    RotateSecret {
        app: String,
        #[arg(long)]
        json: bool,
    },
    /// Adopt a client that exists at the provider already (no provider call).
    Import {
        name: String,
        /// The provider the client is at (required when several are configured).
        #[arg(long)]
        provider: Option<String>,
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
    /// Delete the application: its contracts go first, then (for a created one, with
    /// provider.delete_in_idp) its client at the provider.
    Delete {
        app: String,
        /// Keep the provider's client.
        #[arg(long)]
        keep_idp_client: bool,
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

#[derive(Subcommand, Debug)]
pub enum IdpCommand {
    /// Provider operations that are pending or failed, and whether registration is blocked.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Every provider operation, newest first.
    Ops {
        #[arg(long)]
        json: bool,
    },
    /// Compare the provider's clients that carry tollgate's name prefix with the applications:
    /// orphans (deleted, with provider.delete_in_idp), missing clients, drifted metadata.
    /// Run a pending or failed provider operation again (see `idp ops` for its id).
    Retry {
        operation: String,
        #[arg(long)]
        json: bool,
    },
    Reconcile {
        /// The provider whose clients to compare (required when several are configured).
        #[arg(long)]
        provider: Option<String>,
        /// Report only; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

pub async fn idp(
    r: &Registry,
    settings: &Settings,
    clock: Arc<dyn Clock>,
    command: IdpCommand,
) -> Result<Printed, RegistryError> {
    match command {
        IdpCommand::Retry { operation, json } => {
            let at = r.operation_provider(&operation).await?;
            let provider = provider(settings, &at, clock).await?;
            match r.retry(registration(&provider)?, &operation).await? {
                Outcome::Done(Some(c)) => Ok(render(json, &c, || shown_once(&c, "made"))),
                Outcome::Done(None) => Ok(line(format!("operation {operation} retried: done"))),
                Outcome::Pending(why) => Ok(Printed {
                    stdout: format!("pending at the provider: {why}\n"),
                    status: EXIT_PENDING,
                }),
            }
        }
        IdpCommand::Reconcile {
            provider: named,
            dry_run,
            json,
        } => {
            let at = r.provider_for(named.as_deref(), "--provider")?;
            let provider = provider(settings, &at, clock).await?;
            let found = r.reconcile(registration(&provider)?, &at, dry_run).await?;
            Ok(render(json, &found, || reconciliation(&found)))
        }
        IdpCommand::Ops { json } => {
            let ops = r.operations().await?;
            Ok(render(json, &ops, || {
                let mut out = String::new();
                for o in &ops {
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}",
                        o.id, o.kind, o.app, o.state, o.detail
                    );
                }
                out
            }))
        }
        IdpCommand::Status { json } => Ok(idp_status(&r.operations().await?, json)),
    }
}

fn idp_status(ops: &[super::Operation], json: bool) -> Printed {
    let open: Vec<&super::Operation> = ops.iter().filter(|o| o.state != "done").collect();
    // The newest outcome decides: a broken credential stays broken until a call succeeds.
    let blocked = ops
        .iter()
        .find(|o| o.state != "pending")
        .filter(|o| o.state == "failed" && o.detail.contains("registration_authorization"));
    let status = serde_json::json!({
        "blocked": blocked.map(|o| &o.detail),
        "pending": open.iter().filter(|o| o.state == "pending").count(),
        "failed": open.iter().filter(|o| o.state == "failed").count(),
        "open": open,
    });
    render(json, &status, || {
        let mut out = match blocked {
            Some(o) => format!("provider operations blocked: {}\n", o.detail),
            None => "provider operations: not blocked\n".to_owned(),
        };
        for o in &open {
            let _ = writeln!(
                out,
                "{} {} {} {}: {}",
                o.state, o.id, o.kind, o.app, o.detail
            );
        }
        out
    })
}

fn reconciliation(found: &Reconciliation) -> String {
    let mut out = String::new();
    for o in &found.orphans {
        let _ = writeln!(
            out,
            "orphan {} ({}): {}",
            o.client_name, o.client_id, o.action
        );
    }
    for m in &found.missing {
        let _ = writeln!(
            out,
            "missing at the provider: {} (client {})",
            m.app, m.client_id
        );
    }
    for d in &found.drift {
        let _ = writeln!(
            out,
            "drift {} {}: registry {} provider {}",
            d.app, d.field, d.registry, d.provider
        );
    }
    if out.is_empty() {
        out.push_str("the provider agrees with the registry\n");
    }
    out
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

/// A registry command's outcome: what to print, and its exit status (0, or 3: accepted but
/// still pending at the provider).
pub struct Printed {
    pub stdout: String,
    pub status: u8,
}

/// The exit status of a change accepted but still pending at the provider.
pub const EXIT_PENDING: u8 = 3;

/// Opens the registry of `settings` for a command run by `actor`.
pub async fn open(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    actor: &str,
) -> Result<Registry, RegistryError> {
    Registry::open(settings, clock, format!("cli:{actor}")).await
}

/// The provider named `name`, resolved, for the commands that call its registration API.
async fn provider(
    settings: &Settings,
    name: &str,
    clock: Arc<dyn Clock>,
) -> Result<Arc<Provider>, RegistryError> {
    let fail =
        |e: &dyn std::fmt::Display| RegistryError::provider(format!("the provider {name}: {e}"));
    let configured = settings.provider(name).ok_or_else(|| {
        RegistryError::Invalid(format!(
            "the application's provider {name:?} is not configured: add a [[provider]] named {name:?}"
        ))
    })?;
    let provider = Provider::new(configured.clone(), false, clock).map_err(|e| fail(&e))?;
    provider.resolve().await.map_err(|e| fail(&e))?;
    Ok(provider)
}

fn registration(provider: &Provider) -> Result<&Registration, RegistryError> {
    provider.registration().map_err(RegistryError::from)
}

pub async fn app(
    r: &Registry,
    settings: &Settings,
    clock: Arc<dyn Clock>,
    command: AppCommand,
) -> Result<Printed, RegistryError> {
    match command {
        AppCommand::Create {
            name,
            provider: named,
            grant,
            redirect_uris,
            description,
            json,
        } => {
            let at = r.provider_for(named.as_deref(), "--provider")?;
            let provider = provider(settings, &at, clock).await?;
            let new = NewApp {
                name,
                provider: at,
                client_id: String::new(),
                grant,
                redirect_uris,
                description,
            };
            match r.create_app(registration(&provider)?, new).await? {
                Outcome::Done(c) => Ok(render(json, &c, || shown_once(&c, "created"))),
                Outcome::Pending(why) => Ok(Printed {
                    stdout: format!("pending at the provider: {why}\n"),
                    status: EXIT_PENDING,
                }),
            }
        }
        AppCommand::Update {
            app,
            description,
            redirect_uris,
            json,
        } => {
            let (before, _) = r.app(&app).await?;
            let uris = (!redirect_uris.is_empty()).then_some(redirect_uris);
            // Before the provider is looked up: bad input costs no call.
            if let Some(uris) = &uris {
                super::idp::check_redirects(&before.grant, uris)?;
            }
            let provider = match (&uris, before.origin.as_str()) {
                (Some(_), "created") => Some(provider(settings, &before.provider, clock).await?),
                _ => None,
            };
            let registration = provider.as_deref().map(registration).transpose()?;
            let a = r.update_app(registration, &app, description, uris).await?;
            Ok(render(json, &a, || {
                format!("application {} updated\n", a.name)
            }))
        }
        AppCommand::RotateSecret { app, json } => {
            let at = r.app(&app).await?.0.provider;
            let provider = provider(settings, &at, clock).await?;
            let c = r.rotate_secret(registration(&provider)?, &app).await?;
            Ok(render(json, &c, || shown_once(&c, "rotated")))
        }
        AppCommand::Import {
            name,
            provider: named,
            client_id,
            grant,
            redirect_uris,
            description,
            json,
        } => {
            let new = NewApp {
                name,
                provider: r.provider_for(named.as_deref(), "--provider")?,
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
                        "{}\t{}\t{}\t{}\t{:?}",
                        a.name, a.provider, a.client_id, a.grant, a.status
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
                    "application {}\n  provider {}\n  client id {}\n  grant {}\n  status {:?}\n  origin {}\n",
                    a.name, a.provider, a.client_id, a.grant, a.status, a.origin
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
        AppCommand::Delete {
            app,
            keep_idp_client,
        } => {
            let held = r.app(&app).await?.0;
            let created = held.origin == "created";
            let provider = if created && !keep_idp_client {
                Some(provider(settings, &held.provider, clock).await?)
            } else {
                None
            };
            let registration = provider.as_deref().map(registration).transpose()?;
            let a = r
                .delete_app_and_client(registration, &app, keep_idp_client)
                .await?;
            let kept = if created && !keep_idp_client {
                "and its client at the provider"
            } else {
                "(the provider's client is kept)"
            };
            Ok(line(format!(
                "application {} deleted with its contracts {kept}",
                a.name
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
    let since = super::since(&args.since, now)?;
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
        status: 0,
    }
}

fn shown_once(c: &Credentials, what: &str) -> String {
    let secret = match &c.client_secret {
        Some(s) => format!("client secret {s}\n(shown once: it is not stored)\n"),
        None => "no new secret was returned: run `tollgate app rotate-secret` for one\n".to_owned(),
    };
    let warnings: String = c
        .warnings
        .iter()
        .map(|w| format!("warning: {w}\n"))
        .collect();
    format!(
        "client {} {what} ({})\nclient id {}\n{secret}{warnings}",
        c.client_name,
        c.grant_types.join(" "),
        c.client_id
    )
}

fn render<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> Printed {
    Printed {
        status: 0,
        stdout: if json {
            serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
        } else {
            text()
        },
    }
}

/// `tollgate apply`.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The registry file: `[[tier]]`, `[[app]]` and `[[contract]]` tables (see `tollgate export`).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also remove what the file does not name: contracts (revoked first), applications, and
    /// tiers (deprecated instead while a contract has them).
    #[arg(long)]
    prune: bool,
}

/// `tollgate export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The same declaration as JSON rather than TOML.
    #[arg(long)]
    json: bool,
}

/// Makes the registry what the file declares: checks it whole, prints the plan, then (unless a
/// dry run) works it. Exit 1 when a step failed or was refused, 3 when a create is pending.
pub async fn apply(
    r: &Registry,
    settings: &Settings,
    clock: Arc<dyn Clock>,
    args: ApplyArgs,
) -> Result<Printed, RegistryError> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| RegistryError::Invalid(format!("cannot read {}: {e}", args.file.display())))?;
    let file = declare::parse(&text)
        .map_err(|e| RegistryError::Invalid(format!("{}: {e}", args.file.display())))?;
    let plan = declare::plan(r, settings, &file, args.prune).await?;
    let mut out = if plan.is_empty() {
        "plan: nothing to change\n".to_owned()
    } else {
        "plan:\n".to_owned()
    };
    for step in &plan.steps {
        let _ = writeln!(out, "  {step}");
    }
    if args.dry_run || plan.is_empty() {
        if args.dry_run {
            out.push_str("dry run: nothing was changed\n");
        }
        // Refused items are errors of an apply, not of a dry run that only shows them.
        let refused = plan
            .steps
            .iter()
            .any(|s| matches!(s, declare::Step::Refused { .. }));
        return Ok(Printed {
            stdout: out,
            status: u8::from(refused && !args.dry_run),
        });
    }
    let mut providers = Vec::new();
    for name in plan.providers_needed() {
        providers.push(provider(settings, name, clock.clone()).await);
    }
    let registration = providers
        .iter()
        .map(|p| {
            p.as_ref()
                .map_err(Clone::clone)
                .and_then(|p| Ok((p.settings.name.clone(), registration(p)?)))
        })
        .collect::<Result<declare::Registrations<'_>, _>>();
    match registration {
        Ok(registrations) => Ok(applied(out, &plan.apply(r, &registrations).await)),
        Err(e) => {
            // The plan is still shown: what would have been done, and why nothing was.
            let _ = writeln!(out, "nothing was changed: {e}");
            Ok(Printed {
                stdout: out,
                status: 1,
            })
        }
    }
}

/// The outcome of each step, and the exit status of the whole.
fn applied(mut out: String, results: &[(declare::Step, StepResult)]) -> Printed {
    let (mut failed, mut pending) = (false, false);
    out.push_str("applied:\n");
    for (step, result) in results {
        let _ = match result {
            StepResult::Done => writeln!(out, "  done: {step}"),
            StepResult::Created(c) => writeln!(out, "  done: {step}\n{}", shown_once(c, "created")),
            StepResult::Pending(why) => {
                pending = true;
                writeln!(out, "  pending at the provider: {step}: {why}")
            }
            StepResult::Failed(e) => {
                failed = true;
                writeln!(out, "  failed: {step}: {e}")
            }
            StepResult::NotDone(why) => writeln!(out, "  not done: {step} ({why})"),
            StepResult::Reported => {
                failed |= matches!(step, declare::Step::Refused { .. });
                writeln!(out, "  {step}")
            }
        };
    }
    let status = if failed {
        out.push_str("not everything was applied: fix what failed and run apply again\n");
        1
    } else if pending {
        EXIT_PENDING
    } else {
        0
    };
    Printed {
        stdout: out,
        status,
    }
}

/// Writes the registry as a declaration `apply` reads back unchanged.
pub async fn export(r: &Registry, args: ExportArgs) -> Result<Printed, RegistryError> {
    let declaration = declare::export(r).await?;
    if args.json {
        return Ok(render(true, &declaration, String::new));
    }
    let text = toml::to_string(&declaration)
        .map_err(|e| RegistryError::Invalid(format!("cannot write the registry as TOML: {e}")))?;
    Ok(Printed {
        stdout: text,
        status: 0,
    })
}
