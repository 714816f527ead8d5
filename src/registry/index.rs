//! The contract index: which client ids hold an approved contract for which API, compiled from the
//! registry and read on every request by `policy::authorize`. It is never cached with a token's
//! verdict, so a revoke stops tokens already in the verdict cache. One index is in force at a
//! time; a refresh swaps in a whole new one. A grant is keyed by the application's provider and
//! its client id: the same client id at two providers names two different clients.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use super::limit::Limiter;
use super::model::Limit;

/// What an approved contract grants a client on one API.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The application's name in the registry.
    pub app: Arc<str>,
    /// The contract's SLA tier, if any.
    pub tier: Option<Arc<str>>,
    /// The tier's limits and what is spent of them; `None`: unlimited.
    pub limiter: Option<Arc<Limiter>>,
}

impl PartialEq for Grant {
    fn eq(&self, other: &Self) -> bool {
        self.app == other.app && self.tier == other.tier
    }
}

/// One approved contract as the store lists it (and the snapshot file keeps it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApprovedContract {
    pub api: String,
    /// The application's provider; snapshots written before there were several say nothing.
    #[serde(default = "default_provider")]
    pub provider: String,
    pub client_id: String,
    pub app: String,
    pub tier: Option<String>,
    pub limits: Vec<Limit>,
}

fn default_provider() -> String {
    crate::config::DEFAULT_PROVIDER.to_owned()
}

/// Grants by provider name, then client id there.
type ByClient = HashMap<Box<str>, HashMap<Box<str>, Grant>>;

/// Approved contracts of active applications, by API name, then provider, then client id.
#[derive(Debug, Default)]
pub struct ContractIndex {
    /// The store's revision this index was built from.
    pub revision: i64,
    by_api: HashMap<Box<str>, ByClient>,
}

impl ContractIndex {
    /// Builds an index from the store's rows. A contract whose tier limits are unchanged since
    /// `previous` keeps its limiter, so a refresh does not hand out a fresh allowance.
    pub fn new(
        revision: i64,
        rows: impl IntoIterator<Item = ApprovedContract>,
        previous: Option<&ContractIndex>,
    ) -> Self {
        let mut by_api: HashMap<Box<str>, ByClient> = HashMap::new();
        for row in rows {
            let limiter = match (&row.tier, row.limits.is_empty()) {
                (Some(tier), false) => Some(
                    previous
                        .and_then(|p| p.grant(&row.api, &row.provider, &row.client_id))
                        .and_then(|g| g.limiter.clone())
                        .filter(|l| l.same(tier, &row.limits))
                        .unwrap_or_else(|| Arc::new(Limiter::new(tier, &row.limits))),
                ),
                _ => None,
            };
            let grant = Grant {
                app: Arc::from(row.app),
                tier: row.tier.map(Arc::from),
                limiter,
            };
            by_api
                .entry(row.api.into_boxed_str())
                .or_default()
                .entry(row.provider.into_boxed_str())
                .or_default()
                .insert(row.client_id.into_boxed_str(), grant);
        }
        ContractIndex { revision, by_api }
    }

    /// The grant the client `client_id` of `provider` holds on `api`, if it holds an approved
    /// contract there. `provider` is the one that validated the token: a client of another
    /// provider with the same id holds nothing here.
    pub fn grant(&self, api: &str, provider: &str, client_id: &str) -> Option<&Grant> {
        self.by_api.get(api)?.get(provider)?.get(client_id)
    }

    /// Approved contracts in the index.
    pub fn len(&self) -> usize {
        self.by_api
            .values()
            .flat_map(HashMap::values)
            .map(HashMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index in force, shared by the request path and the refresh task.
#[derive(Default)]
pub struct IndexHandle {
    current: RwLock<Option<(Arc<ContractIndex>, Instant)>>,
    /// Past this age the gateway is not ready (`[registry] max_staleness`).
    max_staleness: std::time::Duration,
}

impl IndexHandle {
    pub fn new(max_staleness: std::time::Duration) -> Self {
        IndexHandle {
            current: RwLock::new(None),
            max_staleness,
        }
    }

    /// Why the gateway is not ready as far as the registry goes, if it is not.
    pub fn unready(&self) -> Option<&'static str> {
        match self.age() {
            None => Some("not ready: no contract index loaded from the registry yet\n"),
            Some(age) if age > self.max_staleness => {
                Some("not ready: the contract index is older than registry.max_staleness\n")
            }
            Some(_) => None,
        }
    }

    /// The index in force, or `None` before the first load.
    pub fn current(&self) -> Option<Arc<ContractIndex>> {
        let guard = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().map(|(index, _)| index.clone())
    }

    /// Swaps in a new index, loaded (or confirmed current) now.
    pub fn replace(&self, index: Arc<ContractIndex>) {
        let mut guard = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Some((index, Instant::now()));
    }

    /// Swaps in an index that was confirmed current `age` ago (one read from a snapshot).
    pub fn replace_aged(&self, index: Arc<ContractIndex>, age: std::time::Duration) {
        let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        let mut guard = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Some((index, at));
    }

    /// Marks the index in force as confirmed current now (the store's revision is unchanged).
    pub fn confirm(&self) {
        let mut guard = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, at)) = guard.as_mut() {
            *at = Instant::now();
        }
    }

    /// How long since the store last confirmed the index, if one is loaded.
    pub fn age(&self) -> Option<std::time::Duration> {
        let guard = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().map(|(_, at)| at.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        api: &str,
        client: &str,
        app: &str,
        tier: Option<&str>,
        limits: &[&str],
    ) -> ApprovedContract {
        ApprovedContract {
            api: api.to_owned(),
            provider: "default".to_owned(),
            client_id: client.to_owned(),
            app: app.to_owned(),
            tier: tier.map(str::to_owned),
            limits: limits.iter().map(|l| l.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn a_grant_is_per_api_and_client() {
        let grant = |app: &str| Grant {
            app: Arc::from(app),
            tier: None,
            limiter: None,
        };
        let index = ContractIndex::new(
            7,
            [
                row("orders", "c1", "shop", None, &[]),
                row("payments", "c2", "billing", None, &[]),
            ],
            None,
        );
        assert_eq!(index.grant("orders", "default", "c1"), Some(&grant("shop")));
        assert_eq!(index.grant("orders", "default", "c2"), None);
        assert_eq!(index.grant("payments", "default", "c1"), None);
        assert_eq!(
            index.grant("orders", "other", "c1"),
            None,
            "the same client id at another provider is another client"
        );
        assert_eq!(index.len(), 2);
        let handle = IndexHandle::new(std::time::Duration::from_secs(60));
        assert!(handle.current().is_none() && handle.unready().is_some());
        handle.replace(Arc::new(index));
        assert_eq!(handle.current().map(|i| i.revision), Some(7));
        assert_eq!(handle.unready(), None);
    }

    #[test]
    fn a_refresh_keeps_the_allowance_spent_under_unchanged_limits() {
        let first = ContractIndex::new(
            1,
            [row("orders", "c1", "shop", Some("gold"), &["1/1h"])],
            None,
        );
        let limiter = |i: &ContractIndex| {
            i.grant("orders", "default", "c1")
                .unwrap()
                .limiter
                .clone()
                .unwrap()
        };
        assert!(limiter(&first).check().is_ok());
        let same = ContractIndex::new(
            2,
            [row("orders", "c1", "shop", Some("gold"), &["1/1h"])],
            Some(&first),
        );
        assert!(
            limiter(&same).check().is_err(),
            "the hour's one request is spent"
        );
        let changed = ContractIndex::new(
            3,
            [row("orders", "c1", "shop", Some("gold"), &["2/1h"])],
            Some(&same),
        );
        assert!(
            limiter(&changed).check().is_ok(),
            "new limits, new allowance"
        );
    }
}
