//! The `tollgate` command: parses arguments, calls the library, maps failures to exit codes
//! (2: bad configuration, 1: anything else).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tollgate::clock::SystemClock;
use tollgate::config::{self, ProcessEnv, Settings};
use tollgate::runtime::{Runtime, RuntimeHandle};
use tollgate::server::{self, Listeners};

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
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, env = "TOLLGATE_CONFIG", default_value = "config/tollgate.toml")]
    config: PathBuf,
}

const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = match &cli.command {
        Command::Check(a) | Command::Run(a) => a.config.clone(),
    };
    let settings = match config::load_file(&path, &ProcessEnv) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tollgate: invalid configuration {}: {e}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tollgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Check(_) => rt.block_on(check(settings)),
        Command::Run(_) => rt.block_on(run(settings)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tollgate: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), String> {
    tollgate::telemetry::init(&settings.log);
    let runtime = Runtime::build(&settings, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    let provider = runtime.provider.clone();
    let handle = RuntimeHandle::new(runtime);
    let listeners = Listeners::bind(&settings.listen)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(provider.resolve_with_retry());
    server::serve(handle, listeners, shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn check(settings: Settings) -> Result<(), String> {
    let runtime = Runtime::build(&settings, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    print!("{}", tollgate::config::describe(&settings));
    let provider = &runtime.provider;
    let endpoints = provider.resolve().await.map_err(|e| {
        format!(
            "cannot resolve the provider's endpoints from {}: {e}",
            settings.provider.issuer
        )
    })?;
    println!("provider endpoints (configured or discovered):");
    let show = |u: &Option<url::Url>| {
        u.as_ref()
            .map_or_else(|| "(none)".to_owned(), |u| u.to_string())
    };
    println!("  authorize_url     = {}", show(&endpoints.authorize));
    println!("  token_url         = {}", show(&endpoints.token));
    println!("  introspection_url = {}", endpoints.introspection);
    println!("  jwks_url          = {}", show(&endpoints.jwks));
    println!("  registration_url  = {}", show(&endpoints.registration));
    if runtime.provider.needs_jwks() {
        let jwks = runtime.provider.jwks().map_err(|e| e.to_string())?;
        let keys = jwks
            .ensure_loaded()
            .await
            .map_err(|e| format!("cannot load the provider's signing keys: {e}"))?;
        let kids: Vec<&str> = keys
            .keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("(no kid)"))
            .collect();
        println!("signing keys: {} ({})", kids.len(), kids.join(", "));
    }
    println!("configuration OK");
    Ok(())
}
