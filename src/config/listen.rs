//! `[listen]`: the gateway and admin sockets, connection limits, the time bounds on a
//! connection's life, and the proxies whose forwarding headers are believed.

use std::net::SocketAddr;
use std::time::Duration;

use super::ConfigError;
use super::compile::positive;
use super::raw::RawListen;
use super::tls::{TlsSettings, tls};
use crate::trust::TrustedProxies;

#[derive(Debug, Clone, PartialEq)]
pub struct ListenSettings {
    pub address: SocketAddr,
    pub admin_address: SocketAddr,
    pub max_connections: usize,
    /// Connections one client address may hold at once on the gateway listener; 0: no cap.
    pub max_connections_per_ip: usize,
    /// Connections the admin listener serves at once.
    pub admin_max_connections: usize,
    /// Threads that accept and serve connections, each with its own event loop; `None`: one per
    /// CPU the process may use.
    pub workers: Option<usize>,
    pub request_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
    /// The life of one connection (the same on every listener), and the gaps allowed between a
    /// body's bytes, both ways.
    pub connection: ConnectionLimits,
    /// Peers whose `X-Forwarded-*` and `Forwarded` are extended rather than replaced, and whose
    /// `X-Forwarded-For` names the client. Empty (the default): nobody's.
    pub trusted_proxies: TrustedProxies,
    /// `[listen.tls]`; `None`: cleartext only.
    pub tls: Option<TlsSettings>,
}

/// How long a connection may stay in each of its states, and what it may carry at once. Every
/// listener (gateway, admin, dev) applies the same.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    pub max_header_bytes: usize,
    /// From accept to the first complete request head (HTTP/1) or the preface and SETTINGS
    /// (HTTP/2); and from the first byte of any later head to its end.
    pub header_read_timeout: Duration,
    /// With no request in flight (HTTP/1 keep-alive, or HTTP/2 with no open stream).
    pub idle_timeout: Duration,
    /// The longest gap between a body's bytes: a client uploading, a write to a client that
    /// stopped reading, an upstream's response body.
    pub stream_idle_timeout: Duration,
    /// Then the connection is closed gracefully (HTTP/2 GOAWAY); `None`: no limit.
    pub max_connection_age: Option<Duration>,
    pub max_concurrent_streams: u32,
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// For listeners without a configuration of their own (`tollgate dev`'s provider and echo).
    fn default() -> Self {
        ConnectionLimits {
            max_header_bytes: DEFAULT_HEADER_BYTES,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            stream_idle_timeout: Duration::from_secs(30),
            max_connection_age: None,
            max_concurrent_streams: 100,
            http2_keepalive_interval: Duration::from_secs(20),
            http2_keepalive_timeout: Duration::from_secs(20),
        }
    }
}

const DEFAULT_HEADER_BYTES: usize = 16 * 1024;

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
    let max_header_bytes = raw.max_header_bytes.unwrap_or(DEFAULT_HEADER_BYTES);
    if max_header_bytes < MIN_HEADER_BYTES {
        return Err(ConfigError::at(
            "listen.max_header_bytes",
            format!("must be at least {MIN_HEADER_BYTES}"),
        ));
    }
    let max_connections = at_least_one(raw.max_connections, "listen.max_connections", 1024)?;
    if let Some(workers) = raw.workers
        && !(1..=MAX_WORKERS).contains(&workers)
    {
        return Err(ConfigError::at(
            "listen.workers",
            format!("must be between 1 and {MAX_WORKERS} (leave it out for one per CPU)"),
        ));
    }
    let connection = connection_limits(&raw, max_header_bytes)?;
    let address = addr(raw.address, "address", "127.0.0.1:8080")?;
    let tls = raw.tls.map(|t| tls(t, address)).transpose()?;
    Ok(ListenSettings {
        address,
        admin_address: addr(raw.admin_address, "admin_address", "127.0.0.1:9901")?,
        max_connections,
        max_connections_per_ip: raw.max_connections_per_ip.unwrap_or(0),
        admin_max_connections: at_least_one(
            raw.admin_max_connections,
            "listen.admin_max_connections",
            32,
        )?,
        workers: raw.workers,
        request_timeout: positive(raw.request_timeout, "listen.request_timeout", 30)?,
        // Under Kubernetes' default 30 s terminationGracePeriodSeconds.
        shutdown_grace: raw.shutdown_grace.map_or(Duration::from_secs(25), |d| d.0),
        connection,
        trusted_proxies: trusted_proxies(&raw.trusted_proxies)?,
        tls,
    })
}

fn connection_limits(
    raw: &RawListen,
    max_header_bytes: usize,
) -> Result<ConnectionLimits, ConfigError> {
    let defaults = ConnectionLimits::default();
    let secs = |d: Duration| d.as_secs();
    let max_connection_age = raw
        .max_connection_age
        .map(|d| positive(Some(d), "listen.max_connection_age", 0))
        .transpose()?;
    let max_concurrent_streams = raw
        .max_concurrent_streams
        .unwrap_or(defaults.max_concurrent_streams);
    if max_concurrent_streams == 0 {
        return Err(ConfigError::at(
            "listen.max_concurrent_streams",
            "must be at least 1",
        ));
    }
    Ok(ConnectionLimits {
        max_header_bytes,
        header_read_timeout: positive(
            raw.header_read_timeout,
            "listen.header_read_timeout",
            secs(defaults.header_read_timeout),
        )?,
        idle_timeout: positive(
            raw.idle_timeout,
            "listen.idle_timeout",
            secs(defaults.idle_timeout),
        )?,
        stream_idle_timeout: positive(
            raw.stream_idle_timeout,
            "listen.stream_idle_timeout",
            secs(defaults.stream_idle_timeout),
        )?,
        max_connection_age,
        max_concurrent_streams,
        http2_keepalive_interval: positive(
            raw.http2_keepalive_interval,
            "listen.http2_keepalive_interval",
            secs(defaults.http2_keepalive_interval),
        )?,
        http2_keepalive_timeout: positive(
            raw.http2_keepalive_timeout,
            "listen.http2_keepalive_timeout",
            secs(defaults.http2_keepalive_timeout),
        )?,
    })
}

fn at_least_one(value: Option<usize>, key: &str, default: usize) -> Result<usize, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(ConfigError::at(key, "must be at least 1")),
        n => Ok(n),
    }
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
