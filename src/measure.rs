//! Metrics, in Prometheus' text format on the admin listener's `/metrics`: the names in one place
//! and the recorder installed once. Recording sites call the `metrics` macros with these names.
//!
//! - `tollgate_requests_total{api,decision,reason,status}`
//! - `tollgate_request_duration_seconds{api}`: whole requests, as the client sees them (head)
//! - `tollgate_own_duration_seconds{api}`: the same minus the upstream's time: tollgate's own share
//! - `tollgate_introspection_requests_total{outcome}`, `tollgate_introspection_duration_seconds`
//! - `tollgate_jwks_fetches_total{outcome}`
//! - `tollgate_cache_lookups_total{cache,result}` (`hit`, `miss`, `coalesced`), `tollgate_cache_entries{cache}`
//! - `tollgate_upstream_errors_total{api,kind}`
//! - `tollgate_config_reloads_total{outcome}`

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "tollgate_requests_total";
pub const REQUEST_DURATION: &str = "tollgate_request_duration_seconds";
pub const OWN_DURATION: &str = "tollgate_own_duration_seconds";
pub const INTROSPECTIONS: &str = "tollgate_introspection_requests_total";
pub const INTROSPECTION_DURATION: &str = "tollgate_introspection_duration_seconds";
pub const JWKS_FETCHES: &str = "tollgate_jwks_fetches_total";
pub const CACHE_LOOKUPS: &str = "tollgate_cache_lookups_total";
pub const CACHE_ENTRIES: &str = "tollgate_cache_entries";
pub const UPSTREAM_ERRORS: &str = "tollgate_upstream_errors_total";
pub const CONFIG_RELOADS: &str = "tollgate_config_reloads_total";

/// Latency buckets, in seconds: from tens of microseconds (a cached decision) to seconds.
const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once); `None` if another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".to_owned()), &BUCKETS)
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// The current metrics in Prometheus' text exposition format.
pub fn render() -> String {
    install().map_or_else(String::new, PrometheusHandle::render)
}
