//! Keeps a gateway's contract index current: polls the store's revision every
//! `refresh_interval` and rebuilds the index when it moved. A store that cannot be reached leaves
//! the last index in force; its age is a metric, and `/readyz` fails past `max_staleness`.

use std::sync::Arc;
use std::time::Duration;

use super::{ContractIndex, IndexHandle, RegistryError, Store};
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

/// Opens the store (retrying with backoff while it cannot be reached), then keeps `handle`
/// current from it, until the task is dropped.
pub async fn keep_current(settings: RegistrySettings, handle: Arc<IndexHandle>) {
    let mut delay = Duration::from_millis(250);
    let store = loop {
        match Store::open(&settings.store).await {
            Ok(store) => break store,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "registry store not open yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    };
    refresh(store, handle, settings.refresh_interval).await;
}

/// Refreshes `handle` from `store` forever (until the task is dropped).
pub async fn refresh(store: Store, handle: Arc<IndexHandle>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match step(&store, &handle).await {
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

async fn step(store: &Store, handle: &IndexHandle) -> Result<(), RegistryError> {
    let revision = store.revision().await?;
    if handle.current().is_some_and(|i| i.revision == revision) {
        handle.confirm();
        return Ok(());
    }
    let index = load_index(store, handle.current().as_deref()).await?;
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
