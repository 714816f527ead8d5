//! The `tollgate` command: parses arguments, calls the library, maps failures to exit codes
//! (2: bad configuration, 1: anything else).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tollgate::clock::SystemClock;
use tollgate::commands;
use tollgate::config::{self, ProcessEnv, Settings};
use tollgate::registry::RegistryError;
use tollgate::registry::cli;
use tollgate::runtime::{Runtime, RuntimeHandle};
use tollgate::server::{self, Listeners};

/// mimalloc: the request path allocates and frees many small, short-lived buffers from several
/// threads, where glibc's malloc showed up as about a tenth of the CPU in `benches/load.sh`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Enforces OAuth 2.0 / OpenID Connect access tokens in front of an upstream API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration, resolve the provider's endpoints, print what is in force.
    Check(ConfigArg),
    /// Serve.
    Run(ConfigArg),
    /// Get a client-credentials token from the provider's token endpoint (sent with no Origin
    /// header, so no PKCE is demanded).
    Token(TokenArgs),
    /// Show the provider's introspection answer for a token.
    Introspect(TokenArg),
    /// Explain what the gateway would decide for a request carrying a token, step by step.
    Explain(ExplainArgs),
    /// Client applications in the registry.
    App(RegistryArgs<tollgate::registry::cli::AppCommand>),
    /// Contracts between applications and APIs.
    Contract(RegistryArgs<tollgate::registry::cli::ContractCommand>),
    /// SLA tiers of APIs.
    Tier(RegistryArgs<tollgate::registry::cli::TierCommand>),
    /// Every change to the registry: who made it, before and after.
    Audit(AuditCommand),
    /// Make the registry what a file declares (tiers, applications, contracts): prints the plan,
    /// then applies it.
    Apply(RegistryFileCommand<tollgate::registry::cli::ApplyArgs>),
    /// Print the registry as a file `apply` reads back unchanged.
    Export(RegistryFileCommand<tollgate::registry::cli::ExportArgs>),
    /// The registry's operations at the provider.
    Idp(RegistryArgs<tollgate::registry::cli::IdpCommand>),
    /// A secured local endpoint in one command: an embedded OpenID provider and the gateway in
    /// front of an upstream (or a built-in echo). Loopback only; not for production.
    Dev(DevArgs),
}

#[derive(clap::Args)]
struct RegistryArgs<C: Subcommand> {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: C,
}

#[derive(clap::Args)]
struct AuditCommand {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    args: tollgate::registry::cli::AuditArgs,
}

/// A registry command taking arguments rather than subcommands.
#[derive(clap::Args)]
struct RegistryFileCommand<A: clap::Args> {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    args: A,
}

#[derive(clap::Args)]
struct DevArgs {
    /// A configuration file: its `[dev]` section, listeners and APIs (its `[provider]` is
    /// replaced by the embedded one). Without it, defaults that need no file.
    #[arg(long, env = "TOLLGATE_CONFIG")]
    config: Option<PathBuf>,
    /// The upstream of the default API (without it, a built-in echo upstream).
    #[arg(long)]
    upstream: Option<String>,
}

#[derive(clap::Args)]
struct TokenArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The provider to ask (its `name`; required when several are configured).
    #[arg(long)]
    provider: Option<String>,
    /// The client to get a token for.
    #[arg(long)]
    client_id: String,
    /// Its secret (or set TOLLGATE_CLIENT_SECRET, which keeps it out of the shell history).
    #[arg(long, env = "TOLLGATE_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// Space-separated scopes to ask for (default: what the provider grants by default).
    #[arg(long)]
    scope: Option<String>,
    /// Print the whole token response as JSON rather than the token alone.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct TokenArg {
    #[command(flatten)]
    config: ConfigArg,
    /// The provider to ask (its `name`; required when several are configured).
    #[arg(long)]
    provider: Option<String>,
    /// The access token (`-` reads it from standard input). A token may begin with `-`
    /// (base64url), so it is taken as the token, not as an option.
    #[arg(allow_hyphen_values = true)]
    token: String,
}

#[derive(clap::Args)]
struct ExplainArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The API (its `name` in the configuration).
    #[arg(long)]
    api: String,
    /// The request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request path (default: the API's path_prefix).
    #[arg(long)]
    path: Option<String>,
    /// The access token (`-` reads it from standard input). A token may begin with `-`
    /// (base64url), so it is taken as the token, not as an option.
    #[arg(allow_hyphen_values = true)]
    token: String,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(
        long,
        env = "TOLLGATE_CONFIG",
        default_value = "config/tollgate.toml",
        global = true
    )]
    config: PathBuf,
}

const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Dev(args) = &cli.command {
        return dev(args);
    }
    let path = match &cli.command {
        Command::Check(a) | Command::Run(a) => a.config.clone(),
        Command::Token(a) => a.config.config.clone(),
        Command::Introspect(a) => a.config.config.clone(),
        Command::Explain(a) => a.config.config.clone(),
        Command::App(a) => a.config.config.clone(),
        Command::Contract(a) => a.config.config.clone(),
        Command::Tier(a) => a.config.config.clone(),
        Command::Audit(a) => a.config.config.clone(),
        Command::Idp(a) => a.config.config.clone(),
        Command::Apply(a) => a.config.config.clone(),
        Command::Export(a) => a.config.config.clone(),
        Command::Dev(_) => return ExitCode::FAILURE,
    };
    let settings = match config::load_file(&path, &ProcessEnv) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tollgate: invalid configuration {}: {e}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(rt) = async_runtime() else {
        return ExitCode::FAILURE;
    };
    let result = match cli.command {
        Command::App(a) => {
            let s = settings.clone();
            return registry(&rt, &settings, move |r| {
                Box::pin(async move { cli::app(r, &s, Arc::new(SystemClock), a.command).await })
            });
        }
        Command::Contract(a) => {
            return registry(&rt, &settings, |r| Box::pin(cli::contract(r, a.command)));
        }
        Command::Tier(a) => return registry(&rt, &settings, |r| Box::pin(cli::tier(r, a.command))),
        Command::Idp(a) => {
            let s = settings.clone();
            return registry(&rt, &settings, move |r| {
                Box::pin(async move { cli::idp(r, &s, Arc::new(SystemClock), a.command).await })
            });
        }
        Command::Apply(a) => {
            let s = settings.clone();
            return registry(&rt, &settings, move |r| {
                Box::pin(async move { cli::apply(r, &s, Arc::new(SystemClock), a.args).await })
            });
        }
        Command::Export(a) => {
            return registry(&rt, &settings, |r| Box::pin(cli::export(r, a.args)));
        }
        Command::Audit(a) => {
            let now = i64::try_from(tollgate::clock::Clock::now_unix(&SystemClock)).unwrap_or(0);
            return registry(&rt, &settings, move |r| {
                Box::pin(cli::audit(r, a.args, now))
            });
        }
        Command::Check(_) => rt.block_on(check(settings)).map(|()| true),
        Command::Run(_) => rt.block_on(run(settings, path)).map(|()| true),
        Command::Token(a) => rt
            .block_on(commands::token(
                &settings,
                a.provider.as_deref(),
                &a.client_id,
                &a.client_secret,
                a.scope.as_deref(),
                a.json,
            ))
            .map(print),
        Command::Introspect(a) => read_token(&a.token)
            .and_then(|token| {
                rt.block_on(commands::introspect(
                    &settings,
                    a.provider.as_deref(),
                    &token,
                ))
            })
            .map(print),
        Command::Explain(a) => read_token(&a.token)
            .and_then(|token| {
                rt.block_on(commands::explain_request(
                    &settings,
                    &a.api,
                    &a.method,
                    a.path.as_deref(),
                    &token,
                ))
            })
            .map(print),
        Command::Dev(_) => Ok(false),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("tollgate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A registry command: opens the store, runs `op`, prints its outcome. Without a `[registry]` the
/// configuration is incomplete (exit 2); a refused or failed operation changed nothing (exit 1).
fn registry<F>(rt: &tokio::runtime::Runtime, settings: &Settings, op: F) -> ExitCode
where
    F: for<'r> FnOnce(
        &'r tollgate::registry::Registry,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<cli::Printed, RegistryError>> + 'r>,
    >,
{
    let actor = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    let outcome = rt.block_on(async {
        let registry = cli::open(settings, Arc::new(SystemClock), &actor).await?;
        op(&registry).await
    });
    match outcome {
        Ok(printed) => {
            print!("{}", printed.stdout);
            ExitCode::from(printed.status)
        }
        Err(e @ RegistryError::NotConfigured) => {
            eprintln!("tollgate: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("tollgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tollgate dev`: configuration errors exit 2 as for `run`.
fn dev(args: &DevArgs) -> ExitCode {
    let text = match &args.config {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => {
                eprintln!(
                    "tollgate: invalid configuration {}: cannot read it: {e}",
                    path.display()
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let options = tollgate::dev::session::DevOptions {
        config: text,
        upstream: args.upstream.clone(),
    };
    let Some(rt) = async_runtime() else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(tollgate::dev::session::run(
        options,
        &ProcessEnv,
        server::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_config() => {
            eprintln!("tollgate dev: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("tollgate dev: {e}");
            ExitCode::FAILURE
        }
    }
}

fn async_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("tollgate: cannot start the async runtime: {e}"))
        .ok()
}

fn print(outcome: commands::Outcome) -> bool {
    print!("{}", outcome.stdout);
    outcome.success
}

/// A token argument; `-` reads it from standard input (keeping it out of the process list).
fn read_token(arg: &str) -> Result<String, String> {
    if arg != "-" {
        return Ok(arg.to_owned());
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err("no token on standard input".to_owned());
    }
    Ok(token.to_owned())
}

async fn run(settings: Settings, path: PathBuf) -> Result<(), String> {
    // Held until `run` returns, so the last lines (the drain) are written out.
    let _log = tollgate::telemetry::init(&settings.log, tollgate::telemetry::Output::Background);
    let runtime = Runtime::build(&settings, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    let providers = runtime.providers.clone();
    if let (Some(config), Some(index)) = (&settings.registry, runtime.registry.clone()) {
        // The admin API works on the same store as the index refresh, once it is open.
        let slot = runtime.admin_registry.clone();
        let for_admin = settings.clone();
        let opened = move |store: &tollgate::registry::Store| {
            let registry = tollgate::registry::Registry::new(
                store.clone(),
                &for_admin,
                Arc::new(SystemClock),
                "admin",
            );
            let configured = for_admin.providers.iter().map(|p| p.name.clone()).collect();
            tokio::spawn(tollgate::registry::warn_of_orphans(
                store.clone(),
                configured,
            ));
            // Set once: this runs once per process.
            let _ = slot.set(registry);
        };
        tokio::spawn(tollgate::registry::keep_current(
            config.clone(),
            index,
            opened,
        ));
    }
    let handle = RuntimeHandle::new(runtime);
    tokio::spawn(tollgate::reload::watch(
        path,
        handle.clone(),
        ProcessEnv,
        Arc::new(SystemClock),
    ));
    let listeners = Listeners::bind(&settings.listen)
        .await
        .map_err(|e| e.to_string())?;
    for provider in providers {
        tokio::spawn(provider.resolve_with_retry());
    }
    server::serve(handle, listeners, server::shutdown_signal()).await;
    Ok(())
}

async fn check(settings: Settings) -> Result<(), String> {
    let runtime = Runtime::build(&settings, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    print!("{}", tollgate::config::describe(&settings));
    // To stderr, so the summary on stdout stays what is in force; the exit status stays 0.
    for warning in tollgate::config::warnings(&settings) {
        eprintln!("warning: {warning}");
    }
    for warning in tollgate::config::insecure_warnings(&settings) {
        eprintln!("WARNING: {warning}");
    }
    for provider in &runtime.providers {
        check_provider(provider).await?;
    }
    println!("configuration OK");
    Ok(())
}

/// One provider's endpoints (configured or discovered) and, where an API validates JWTs, its keys.
async fn check_provider(provider: &tollgate::provider::Provider) -> Result<(), String> {
    let name = &provider.settings.name;
    let endpoints = provider.resolve().await.map_err(|e| {
        format!(
            "cannot resolve the endpoints of provider {name} from {}: {e}",
            provider.settings.issuer
        )
    })?;
    println!("provider {name} endpoints (configured or discovered):");
    let show = |u: &Option<url::Url>| {
        u.as_ref()
            .map_or_else(|| "(none)".to_owned(), |u| u.to_string())
    };
    println!("  authorize_url     = {}", show(&endpoints.authorize));
    println!("  token_url         = {}", show(&endpoints.token));
    println!("  introspection_url = {}", endpoints.introspection);
    println!("  jwks_url          = {}", show(&endpoints.jwks));
    println!("  registration_url  = {}", show(&endpoints.registration));
    if provider.needs_jwks() {
        let jwks = provider.jwks().map_err(|e| e.to_string())?;
        let keys = jwks
            .ensure_loaded()
            .await
            .map_err(|e| format!("cannot load the signing keys of provider {name}: {e}"))?;
        let kids: Vec<&str> = keys
            .keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("(no kid)"))
            .collect();
        println!("  signing keys: {} ({})", kids.len(), kids.join(", "));
    }
    Ok(())
}
