//! Keeps a gateway's contract index current: polls the store's revision every
//! `refresh_interval` and rebuilds the index when it moved. A store that cannot be reached leaves
//! the last index in force; its age is a metric, and `/readyz` fails past `max_staleness`. With
//! `[registry] snapshot`, every loaded index is also written to a local file, which a gateway that
//! starts while the store is unreachable serves until the store answers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;

use super::store::CHANGES;
use super::{ApprovedContract, ContractIndex, IndexHandle, RegistryError, Store};
use crate::config::RegistrySettings;
use crate::measure;

/// The index of the store's approved contracts now, keeping the spent allowances of `previous`.
pub async fn load_index(
    store: &Store,
    previous: Option<&ContractIndex>,
) -> Result<ContractIndex, RegistryError> {
    let (revision, rows) = store.approved().await?;
    Ok(ContractIndex::new(revision, rows, previous))
}

/// What the snapshot file holds: the rows of one revision.
#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot {
    revision: i64,
    contracts: Vec<ApprovedContract>,
}

/// Writes the snapshot whole or not at all (a temporary file renamed over the old one).
fn write_snapshot(path: &Path, revision: i64, rows: &[ApprovedContract]) {
    let snapshot = Snapshot {
        revision,
        contracts: rows.to_vec(),
    };
    let temporary = path.with_extension("tmp");
    let written = serde_json::to_vec(&snapshot)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&temporary, bytes))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the contract index snapshot");
    }
}

/// The index a snapshot holds, and how old it is.
fn read_snapshot(path: &Path) -> Option<(ContractIndex, Duration)> {
    let bytes = std::fs::read(path).ok()?;
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or(Duration::MAX);
    match serde_json::from_slice::<Snapshot>(&bytes) {
        Ok(s) => Some((ContractIndex::new(s.revision, s.contracts, None), age)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the contract index snapshot is unreadable: ignored");
            None
        }
    }
}

/// Of the store's applications per provider, those of a provider not `configured`: their
/// contracts admit nothing, as no API accepts that provider's tokens.
fn orphans(per_provider: Vec<(String, i64)>, configured: &[String]) -> Vec<(String, i64)> {
    per_provider
        .into_iter()
        .filter(|(provider, _)| !configured.contains(provider))
        .collect()
}

/// Warns (once, at start) of applications whose provider is no longer configured, so a renamed
/// `[[provider]]` is noticed before its clients find their contracts failing closed.
pub async fn warn_of_orphans(store: Store, configured: Vec<String>) {
    match store.apps_per_provider().await {
        Ok(counts) => {
            for (provider, applications) in orphans(counts, &configured) {
                tracing::warn!(
                    provider = %provider,
                    applications,
                    "applications in the registry belong to a provider that is not configured: \
                     their contracts admit nothing (was the [[provider]] renamed? give it its old name back)"
                );
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot count the registry's applications per provider")
        }
    }
}

/// Opens the store (retrying with backoff while it cannot be reached), hands it to `opened` (the
/// admin API shares it), then keeps `handle` current from it, until the task is dropped.
pub async fn keep_current(
    settings: RegistrySettings,
    handle: Arc<IndexHandle>,
    opened: impl FnOnce(&Store),
) {
    let mut delay = Duration::from_millis(250);
    let mut from_snapshot = false;
    let store = loop {
        match Store::open(&settings.store).await {
            Ok(store) => break store,
            Err(e) => {
                if let Some(path) = settings.snapshot.as_deref().filter(|_| !from_snapshot)
                    && let Some((index, age)) = read_snapshot(path)
                {
                    tracing::warn!(
                        revision = index.revision,
                        age_secs = age.as_secs(),
                        "registry store unreachable: serving the contract index snapshot"
                    );
                    handle.replace_aged(Arc::new(index), age);
                    from_snapshot = true;
                }
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "registry store not open yet");
                tokio::time::sleep(delay).await;
                // Capped low: opening is cheap, and while it fails the gateway serves an old index.
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    };
    opened(&store);
    refresh(store, handle, &settings).await;
}

/// Refreshes `handle` from `store` forever (until the task is dropped): every refresh interval,
/// and on PostgreSQL also at once when a change is announced.
pub async fn refresh(store: Store, handle: Arc<IndexHandle>, settings: &RegistrySettings) {
    let mut tick = tokio::time::interval(settings.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut listener: Option<PgListener> = None;
    loop {
        if listener.is_none()
            && let Some(url) = store.listen_url()
        {
            listener = listen(url).await;
        }
        let lost = match &mut listener {
            Some(l) => tokio::select! {
                _ = tick.tick() => false,
                heard = l.recv() => heard.is_err(),
            },
            None => {
                tick.tick().await;
                false
            }
        };
        if lost {
            // Polling carries on; the next round listens again.
            listener = None;
        }
        match step(&store, &handle, settings.snapshot.as_deref()).await {
            Ok(()) if failing => {
                tracing::info!("registry store reachable again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "registry store unreachable: the last contract index stays in force");
                }
                failing = true;
            }
        }
        if let Some(age) = handle.age() {
            metrics::gauge!(measure::REGISTRY_INDEX_AGE).set(age.as_secs_f64());
        }
    }
}

/// A listener on the store's change channel, or `None` (polling alone) if it cannot be had.
async fn listen(url: &str) -> Option<PgListener> {
    let attempt = async {
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANGES).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match attempt.await {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::debug!(error = %e, "cannot listen for registry changes: polling only");
            None
        }
    }
}

async fn step(
    store: &Store,
    handle: &IndexHandle,
    snapshot: Option<&Path>,
) -> Result<(), RegistryError> {
    let revision = store.revision().await?;
    if handle.current().is_some_and(|i| i.revision == revision) {
        handle.confirm();
        return Ok(());
    }
    let (revision, rows) = store.approved().await?;
    if let Some(path) = snapshot {
        write_snapshot(path, revision, &rows);
    }
    let index = ContractIndex::new(revision, rows, handle.current().as_deref());
    tracing::debug!(
        revision = index.revision,
        contracts = index.len(),
        "contract index loaded"
    );
    metrics::gauge!(measure::REGISTRY_CONTRACTS).set(index.len() as f64);
    metrics::gauge!(measure::REGISTRY_REVISION).set(index.revision as f64);
    handle.replace(Arc::new(index));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::orphans;

    #[test]
    fn orphans_are_the_applications_of_providers_not_configured() {
        let counts = vec![
            ("a".to_owned(), 2),
            ("old".to_owned(), 3),
            ("b".to_owned(), 1),
        ];
        let configured = ["a".to_owned(), "b".to_owned()];
        assert_eq!(
            orphans(counts.clone(), &configured),
            [("old".to_owned(), 3)]
        );
        assert_eq!(
            orphans(counts, &[]).len(),
            3,
            "none configured: all are orphans"
        );
        assert!(orphans(Vec::new(), &configured).is_empty());
    }
}
