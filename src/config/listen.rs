//! `[listen]`: the gateway and admin sockets, connection limits, the time bounds on a
//! connection's life, and the proxies whose forwarding headers are believed.

use std::net::SocketAddr;
use std::time::Duration;

use super::ConfigError;
use super::compile::positive;
use super::raw::RawListen;
use crate::trust::TrustedProxies;

#[derive(Debug, Clone, PartialEq)]
pub struct ListenSettings {
    pub address: SocketAddr,
    pub admin_address: SocketAddr,
    pub max_connections: usize,
    /// Threads that accept and serve connections, each with its own event loop; `None`: one per
    /// CPU the process may use.
    pub workers: Option<usize>,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
    /// Peers whose `X-Forwarded-*` and `Forwarded` are extended rather than replaced, and whose
    /// `X-Forwarded-For` names the client. Empty (the default): nobody's.
    pub trusted_proxies: TrustedProxies,
}

/// hyper refuses smaller read buffers; a smaller head limit would be a panic, not a setting.
const MIN_HEADER_BYTES: usize = 8192;

const MAX_WORKERS: usize = 1024;

pub(super) fn listen(raw: RawListen) -> Result<ListenSettings, ConfigError> {
    let addr = |value: Option<String>, key: &str, default: &str| {
        let text = value.unwrap_or_else(|| default.to_owned());
        text.parse::<SocketAddr>().map_err(|_| {
            ConfigError::at(
                format!("listen.{key}"),
                format!("{text:?} is not an IP:port socket address"),
            )
        })
    };
    let max_header_bytes = raw.max_header_bytes.unwrap_or(16 * 1024);
    if max_header_bytes < MIN_HEADER_BYTES {
        return Err(ConfigError::at(
            "listen.max_header_bytes",
            format!("must be at least {MIN_HEADER_BYTES}"),
        ));
    }
    let max_connections = raw.max_connections.unwrap_or(1024);
    if max_connections == 0 {
        return Err(ConfigError::at(
            "listen.max_connections",
            "must be at least 1",
        ));
    }
    if let Some(workers) = raw.workers
        && !(1..=MAX_WORKERS).contains(&workers)
    {
        return Err(ConfigError::at(
            "listen.workers",
            format!("must be between 1 and {MAX_WORKERS} (leave it out for one per CPU)"),
        ));
    }
    Ok(ListenSettings {
        address: addr(raw.address, "address", "127.0.0.1:8080")?,
        admin_address: addr(raw.admin_address, "admin_address", "127.0.0.1:9901")?,
        max_connections,
        workers: raw.workers,
        max_header_bytes,
        header_read_timeout: positive(raw.header_read_timeout, "listen.header_read_timeout", 10)?,
        request_timeout: positive(raw.request_timeout, "listen.request_timeout", 30)?,
        // Under Kubernetes' default 30 s terminationGracePeriodSeconds.
        shutdown_grace: raw.shutdown_grace.map_or(Duration::from_secs(25), |d| d.0),
        trusted_proxies: trusted_proxies(&raw.trusted_proxies)?,
    })
}

fn trusted_proxies(entries: &[String]) -> Result<TrustedProxies, ConfigError> {
    let nets = entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            TrustedProxies::parse_entry(entry.trim())
                .map_err(|reason| ConfigError::at(format!("listen.trusted_proxies[{i}]"), reason))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TrustedProxies::new(nets))
}
