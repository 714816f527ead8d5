//! `tollgate dev` itself: binds the embedded provider, the echo upstream (unless one is given) and
//! the real gateway, all on loopback; rewrites the configuration so the gateway trusts the embedded
//! provider; prints the commands to try; and serves until interrupted.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use super::echo::EchoUpstream;
use super::provider::{DevClient, DevProvider, DevProviderSettings, DevTokenFormat};
use crate::clock::SystemClock;
use crate::config::{self, ConfigError, DevSettings, Env, Settings, dev_settings};
use crate::runtime::{Runtime, RuntimeHandle};
use crate::server::{self, Listeners};

/// The client the gateway itself introspects with; never printed.
const GATEWAY_CLIENT: (&str, &str) = (config::RESERVED_CLIENT, "tollgate-dev-gateway-secret");

/// Why `tollgate dev` could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Other(String),
}

impl DevError {
    /// Configuration errors exit 2, like `run`'s.
    pub fn is_config(&self) -> bool {
        matches!(self, DevError::Config(_))
    }
}

/// What the developer asked for on the command line.
pub struct DevOptions {
    /// The configuration text, if a file was given (its `[provider]` is replaced).
    pub config: Option<String>,
    /// The upstream for the default API; without it, the built-in echo upstream.
    pub upstream: Option<String>,
}

/// Runs until `shutdown` completes.
pub async fn run(
    options: DevOptions,
    env: &dyn Env,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DevError> {
    let mut doc = config::document(options.config.as_deref().unwrap_or(""), env)?;
    let dev = dev_settings(&doc)?;
    let provider = start_provider(&dev).await?;
    let echo = match options.upstream {
        Some(_) => None,
        None => Some(EchoUpstream::start(
            TcpListener::bind("127.0.0.1:0").await?,
        )?),
    };
    let upstream = options
        .upstream
        .clone()
        .or_else(|| echo.as_ref().map(EchoUpstream::url))
        .unwrap_or_default();
    rewrite(&mut doc, &dev, provider.issuer(), &upstream);
    let sandbox = Sandbox::new()?;
    with_registry(&mut doc, &sandbox);
    let cli_config = sandbox.write_config(&doc)?;
    let settings = config::from_document(doc)?;
    loopback_only(&settings)?;
    let _log = crate::telemetry::init(&settings.log, crate::telemetry::Output::Direct);
    let runtime = Runtime::build(&settings, Arc::new(SystemClock))
        .map_err(|e| DevError::Other(e.to_string()))?;
    // The sandbox provider is the single `default` one.
    let resolving = runtime.providers.clone();
    let listeners = Listeners::bind(&settings.listen).await?;
    let gateway = listeners.proxy.local_addr()?;
    print!(
        "{}{}",
        banner(&dev, &provider, gateway, &settings, echo.is_some()),
        registry_banner(&settings, &cli_config)
    );
    for provider in resolving {
        tokio::spawn(provider.resolve_with_retry());
    }
    if let (Some(config), Some(index)) = (&settings.registry, runtime.registry.clone()) {
        tokio::spawn(crate::registry::keep_current(config.clone(), index, |_| ()));
    }
    server::serve(RuntimeHandle::new(runtime), listeners, shutdown).await;
    drop((provider, echo, sandbox));
    Ok(())
}

/// The session's own directory: the registry's SQLite file and the configuration the CLI uses
/// to reach it; removed on exit.
struct Sandbox(PathBuf);

impl Sandbox {
    fn new() -> io::Result<Sandbox> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("tollgate-dev-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Sandbox(dir))
    }

    /// The configuration in force, for `tollgate app|contract ... --config FILE`.
    fn write_config(&self, doc: &toml::Value) -> io::Result<PathBuf> {
        let path = self.0.join("tollgate-dev.toml");
        let text = toml::to_string(doc).map_err(io::Error::other)?;
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A registry (SQLite in the sandbox) in front of the embedded provider's open registration,
/// unless the file has its own `[registry]`.
fn with_registry(doc: &mut toml::Value, sandbox: &Sandbox) {
    let Some(table) = doc.as_table_mut() else {
        return;
    };
    if let Some(toml::Value::Table(provider)) = table.get_mut("provider") {
        // The embedded provider's registration is open; any credential will do.
        provider.insert("registration_authorization".into(), "Bearer dev".into());
        provider.insert("delete_in_idp".into(), true.into());
        provider.insert("update_in_idp".into(), true.into());
    }
    table.entry("registry").or_insert_with(|| {
        let mut registry = toml::Table::new();
        let store = format!("sqlite://{}", sandbox.0.join("registry.db").display());
        registry.insert("store".into(), store.into());
        registry.insert("refresh_interval".into(), "500ms".into());
        // A fresh key per session: the sandbox and what it seals go away on exit.
        registry.insert("encryption_key".into(), session_key().into());
        toml::Value::Table(registry)
    });
}

/// 32 random bytes, hex: the sandbox registry's passphrase.
fn session_key() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    // Without randomness the sandbox still works; its key is then merely unguessable by time.
    if aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes[..16].copy_from_slice(&nanos.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How to try the registry: create an application, give it a contract, revoke it.
fn registry_banner(settings: &Settings, cli_config: &Path) -> String {
    let Some(api) = settings.apis.first() else {
        return String::new();
    };
    let c = format!("--config {}", cli_config.display());
    let name = &api.name;
    format!(
        "  # the registry: register an application (its client id and secret print once)\n  \
         tollgate app create my-app --grant client_credentials {c}\n  \
         # its token gets 403 until it holds a contract: request and approve one (then 200)\n  \
         tollgate contract request my-app {name} {c}\n  \
         tollgate contract approve my-app {name} {c}\n  \
         # revoke it: 403 again, within a second, cached token or not\n  \
         tollgate contract revoke my-app {name} {c}\n\n"
    )
}

async fn start_provider(dev: &DevSettings) -> Result<DevProvider, DevError> {
    if !dev.provider_address.ip().is_loopback() {
        return Err(ConfigError::at(
            "dev.provider_address",
            "tollgate dev binds loopback addresses only",
        )
        .into());
    }
    let listener = TcpListener::bind(dev.provider_address).await.map_err(|e| {
        DevError::Other(format!(
            "cannot listen on {} (dev.provider_address): {e}",
            dev.provider_address
        ))
    })?;
    let mut clients: Vec<DevClient> = dev
        .clients
        .iter()
        .map(|c| DevClient {
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone(),
            scopes: c.scopes.clone(),
        })
        .collect();
    clients.push(DevClient {
        client_id: GATEWAY_CLIENT.0.to_owned(),
        client_secret: GATEWAY_CLIENT.1.to_owned(),
        scopes: Vec::new(),
    });
    let settings = DevProviderSettings {
        clients,
        scopes: dev.scopes.clone(),
        token_format: if dev.jwt_tokens {
            DevTokenFormat::Jwt
        } else {
            DevTokenFormat::Opaque
        },
        token_ttl: dev.token_ttl,
        audience: dev.audience.clone(),
    };
    Ok(DevProvider::start(listener, settings).await?)
}

/// Points the configuration at the embedded provider; fills in loopback listeners and, when the
/// file names no API, one API in front of the upstream.
fn rewrite(doc: &mut toml::Value, dev: &DevSettings, issuer: &str, upstream: &str) {
    let Some(table) = doc.as_table_mut() else {
        return;
    };
    let mut provider = toml::Table::new();
    provider.insert("issuer".into(), issuer.into());
    provider.insert("introspection_client_id".into(), GATEWAY_CLIENT.0.into());
    provider.insert(
        "introspection_client_secret".into(),
        GATEWAY_CLIENT.1.into(),
    );
    provider.insert("request_timeout".into(), "2s".into());
    // The embedded provider is the only one, `default`: every API of the file is validated by it,
    // whichever of the file's [[provider]] entries it named.
    table.insert("provider".into(), toml::Value::Table(provider));
    if let Some(toml::Value::Array(apis)) = table.get_mut("api") {
        for api in apis.iter_mut().filter_map(toml::Value::as_table_mut) {
            api.remove("provider");
        }
    }
    table.entry("listen").or_insert_with(|| {
        let mut listen = toml::Table::new();
        listen.insert("address".into(), "127.0.0.1:8080".into());
        listen.insert("admin_address".into(), "127.0.0.1:9401".into());
        toml::Value::Table(listen)
    });
    table.entry("api").or_insert_with(|| {
        let mut api = toml::Table::new();
        api.insert("name".into(), "dev".into());
        api.insert("path_prefix".into(), "/".into());
        api.insert("upstream".into(), upstream.into());
        api.insert(
            "validation".into(),
            (if dev.jwt_tokens {
                "jwt"
            } else {
                "introspection"
            })
            .into(),
        );
        api.insert(
            "audience".into(),
            toml::Value::Array(vec![dev.audience.clone().into()]),
        );
        api.insert(
            "scopes".into(),
            toml::Value::Array(vec!["mulescope".into()]),
        );
        let clients = dev
            .clients
            .iter()
            .map(|c| toml::Value::from(c.client_id.clone()))
            .collect();
        api.insert("clients".into(), toml::Value::Array(clients));
        api.insert("expose_headers".into(), true.into());
        toml::Value::Array(vec![toml::Value::Table(api)])
    });
}

fn loopback_only(settings: &Settings) -> Result<(), DevError> {
    for (key, addr) in [
        ("listen.address", settings.listen.address),
        ("listen.admin_address", settings.listen.admin_address),
    ] {
        if !addr.ip().is_loopback() {
            return Err(ConfigError::at(
                key,
                format!("tollgate dev binds loopback addresses only, not {addr}"),
            )
            .into());
        }
    }
    Ok(())
}

/// The warning and the ready-to-paste commands.
fn banner(
    dev: &DevSettings,
    provider: &DevProvider,
    gateway: std::net::SocketAddr,
    settings: &Settings,
    echo: bool,
) -> String {
    let api = settings.apis.first();
    let path = api.map_or("/", |a| a.path_prefix.as_str());
    let url = format!(
        "http://{gateway}{}",
        if path == "/" { "/hello" } else { path }
    );
    let scopes = api.map(|a| a.policy.scopes.join(" ")).unwrap_or_default();
    let with = dev
        .clients
        .iter()
        .find(|c| api.is_none_or(|a| a.policy.scopes.iter().all(|s| c.scopes.contains(s))));
    let without = dev
        .clients
        .iter()
        .find(|c| api.is_some_and(|a| !a.policy.scopes.iter().all(|s| c.scopes.contains(s))));
    let token_cmd = |c: &config::DevClientSettings| {
        format!(
            "curl -s -u {}:{} -d grant_type=client_credentials {} | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/'",
            c.client_id,
            c.client_secret,
            provider.token_url()
        )
    };
    let mut out = String::new();
    out.push_str("\n  *** tollgate dev: a LOCAL SANDBOX, NOT FOR PRODUCTION ***\n");
    out.push_str("  Its identity provider hands tokens to anyone on this machine and forgets them on exit.\n\n");
    out.push_str(&format!(
        "  provider  {} ({} tokens)\n",
        provider.issuer(),
        if dev.jwt_tokens { "JWT" } else { "opaque" }
    ));
    out.push_str(&format!(
        "  gateway   http://{gateway} -> {}{}\n",
        api.map_or(String::new(), |a| a.upstream.url.to_string()),
        if echo {
            " (built-in echo upstream)"
        } else {
            ""
        }
    ));
    out.push_str(&format!("  requires  scope(s) [{scopes}]\n\n"));
    if let Some(c) = with {
        out.push_str(&format!(
            "  # get a token for {}\n  TOKEN=$({})\n",
            c.client_id,
            token_cmd(c)
        ));
        out.push_str(&format!(
            "  # call the API with it (200)\n  curl -i -H \"Authorization: Bearer $TOKEN\" {url}\n"
        ));
    }
    out.push_str(&format!(
        "  # call it without a token (401)\n  curl -i {url}\n"
    ));
    if let Some(c) = without {
        out.push_str(&format!(
            "  # call it with a token lacking the scope (403)\n  NARROW=$({})\n  curl -i -H \"Authorization: Bearer $NARROW\" {url}\n",
            token_cmd(c)
        ));
    }
    out.push('\n');
    out
}
