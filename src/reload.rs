//! Hot reload: SIGHUP, or a change of the configuration file's content (polled every second, which
//! also sees Kubernetes' ConfigMap symlink swaps), reloads it. The new configuration is checked
//! whole first; if it is invalid the running one stays and the error is logged and counted. If it
//! is valid, a new runtime is swapped in at once: requests under way finish on the old one, and
//! connections stay open. Each provider (endpoints, keys, connections) survives a reload that keeps
//! its settings and its APIs' validation modes, and its caches one that also keeps the cache and
//! exposed-attribute settings, whatever happens to the other providers; a reload that changes a
//! provider is applied only once the new one is resolved, and the old one, once its last request
//! is done, stops its key refresh.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::config::{self, Env};
use crate::measure;
use crate::runtime::RuntimeHandle;

/// How often the file is looked at.
const POLL: Duration = Duration::from_secs(1);

/// Watches for reload triggers until the task is dropped.
pub async fn watch(
    path: PathBuf,
    handle: RuntimeHandle,
    env: impl Env + 'static,
    clock: Arc<dyn Clock>,
) {
    let mut hangup = hangup_signal();
    let mut seen = fingerprint(&path);
    let mut tick = tokio::time::interval(POLL);
    loop {
        let trigger = tokio::select! {
            () = next(&mut hangup) => "SIGHUP",
            _ = tick.tick() => "file change",
        };
        let now = fingerprint(&path);
        if trigger == "file change" && now == seen {
            continue;
        }
        seen = now;
        reload(&path, &handle, &env, &clock, trigger).await;
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

/// The next SIGHUP; never, where there are none.
async fn next(hangup: &mut Hangup) {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        signal.recv().await;
        return;
    }
    let _ = hangup;
    std::future::pending::<()>().await;
}

/// The file's content digest (`None` while it cannot be read).
fn fingerprint(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path)
        .ok()
        .map(|bytes| Sha256::digest(&bytes).into())
}

/// One reload attempt; the running configuration stays unless the new one is whole and usable.
pub async fn reload(
    path: &Path,
    handle: &RuntimeHandle,
    env: &dyn Env,
    clock: &Arc<dyn Clock>,
    trigger: &str,
) {
    let refuse = |outcome: &'static str, error: String| {
        tracing::error!(trigger, error = %error, "configuration reload refused: the running configuration stays");
        metrics::counter!(measure::CONFIG_RELOADS, "outcome" => outcome).increment(1);
    };
    let settings = match config::load_file(path, env) {
        Ok(s) => s,
        Err(e) => return refuse("invalid", e.to_string()),
    };
    let current = handle.current();
    if settings.listen != current.listen {
        tracing::warn!("[listen] changes take effect at the next restart");
    }
    let (runtime, kept) = match current.rebuild(&settings, clock.clone()) {
        Ok(r) => r,
        Err(e) => return refuse("invalid", e.to_string()),
    };
    // New providers: only once each can validate, so the swap fails no request. Resolved
    // together, so several new providers cost one wait, not the sum.
    let fresh = kept.iter().filter(|(_, k)| !k.provider()).map(|(p, _)| {
        // Saturating: the timeout is bounded when read, but a deadline must never be what panics.
        let limit = p.settings.request_timeout.saturating_mul(4);
        let provider = p.clone();
        async move {
            let ready = tokio::time::timeout(limit, provider.clone().resolve_with_retry()).await;
            ready.err().map(|_| (provider.settings.name.clone(), limit))
        }
    });
    let unready = futures_util::future::join_all(fresh).await;
    if let Some((name, limit)) = unready.into_iter().flatten().next() {
        return refuse(
            "provider_unready",
            format!("the new provider {name:?} was not ready within {limit:?}"),
        );
    }
    handle.replace(runtime);
    for (provider, kept) in &kept {
        tracing::info!(
            trigger,
            provider = %provider.settings.name,
            kept_caches = kept.caches(),
            kept_provider = kept.provider(),
            "configuration reloaded"
        );
    }
    metrics::counter!(measure::CONFIG_RELOADS, "outcome" => "applied").increment(1);
}
