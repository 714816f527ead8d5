//! The file format: serde structs mirroring `config/tollgate.toml` key for key. Unknown keys are
//! errors (`deny_unknown_fields`). Nothing on the request path reads these; `config::compile` turns
//! them into checked settings first.

use serde::Deserialize;

use super::duration::ConfigDuration;
use super::rate::Rate;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listen: RawListen,
    #[serde(default)]
    pub log: RawLog,
    pub provider: RawProvider,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default, rename = "api")]
    pub apis: Vec<RawApi>,
    pub registry: Option<RawRegistry>,
    #[serde(default)]
    pub admin: RawAdmin,
    /// Only `tollgate dev` reads it (`config::dev_settings`); accepted here so one file serves both.
    #[serde(default)]
    pub dev: Option<toml::Value>,
}

/// `[admin]`: the admin listener's registry API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub address: Option<String>,
    pub admin_address: Option<String>,
    pub max_connections: Option<usize>,
    pub workers: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub header_read_timeout: Option<ConfigDuration>,
    pub request_timeout: Option<ConfigDuration>,
    pub shutdown_grace: Option<ConfigDuration>,
    pub idle_timeout: Option<ConfigDuration>,
    pub stream_idle_timeout: Option<ConfigDuration>,
    pub max_connection_age: Option<ConfigDuration>,
    pub max_connections_per_ip: Option<usize>,
    pub max_concurrent_streams: Option<u32>,
    pub http2_keepalive_interval: Option<ConfigDuration>,
    pub http2_keepalive_timeout: Option<ConfigDuration>,
    pub admin_max_connections: Option<usize>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<LogFormat>,
    pub level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub issuer: String,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub introspection_url: Option<String>,
    pub jwks_url: Option<String>,
    pub registration_url: Option<String>,
    pub introspection_client_id: String,
    pub introspection_client_secret: String,
    pub introspection_auth: Option<ClientAuth>,
    pub registration_authorization: Option<String>,
    pub request_timeout: Option<ConfigDuration>,
    pub jwt_algorithms: Option<Vec<String>>,
    pub leeway: Option<ConfigDuration>,
    pub jwt_typ: Option<String>,
    pub max_token_bytes: Option<usize>,
    pub jwks_min_refresh: Option<ConfigDuration>,
    pub jwks_refresh: Option<ConfigDuration>,
    pub jwks_refresh_min: Option<ConfigDuration>,
    pub jwks_refresh_max: Option<ConfigDuration>,
    pub max_inflight: Option<usize>,
    pub introspection_rate: Option<Rate>,
    pub introspection_burst: Option<u32>,
    pub misses_per_client: Option<Rate>,
    pub budget_wait: Option<ConfigDuration>,
    pub rate_limit_low_water: Option<u64>,
    pub registration_timeout: Option<ConfigDuration>,
    pub update_in_idp: Option<bool>,
    pub delete_in_idp: Option<bool>,
    pub client_name_prefix: Option<String>,
}

/// How tollgate authenticates to the introspection endpoint (RFC 7662 §2.1, RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    pub store: String,
    pub refresh_interval: Option<ConfigDuration>,
    pub encryption_key: Option<String>,
    pub max_staleness: Option<ConfigDuration>,
    pub snapshot: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_entries: Option<u64>,
    pub max_ttl: Option<ConfigDuration>,
    pub negative_ttl: Option<ConfigDuration>,
    pub stale_if_error: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub name: String,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub upstream: OneOrMany,
    // The upstream connections (`config::api::upstream`, `upstream::tls`).
    pub upstream_protocol: Option<UpstreamProtocol>,
    pub upstream_balance: Option<UpstreamBalance>,
    pub upstream_ca: Option<String>,
    pub upstream_server_name: Option<String>,
    pub upstream_client_cert: Option<String>,
    pub upstream_client_key: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default)]
    pub strip_prefix: bool,
    pub timeout: Option<ConfigDuration>,
    pub validation: Option<ValidationMode>,
    pub audience: Option<Vec<String>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub scope_match: Option<ScopeMatch>,
    #[serde(default)]
    pub clients: Vec<String>,
    #[serde(default)]
    pub skip_client_id_validation: bool,
    /// Contracts requested for this API are approved at once (when the API has no tiers).
    #[serde(default)]
    pub auto_approve: bool,
    #[serde(default)]
    pub expose_headers: bool,
    pub expose_headers_prefix: Option<String>,
    pub token_sources: Option<Vec<TokenSource>>,
    pub max_form_bytes: Option<usize>,
    pub max_body_bytes: Option<u64>,
    pub forward_authorization: Option<bool>,
    #[serde(default)]
    pub case_insensitive_paths: bool,
    #[serde(default, rename = "rule")]
    pub rules: Vec<RawRule>,
    pub cors: Option<RawCors>,
}

/// A string, or a list of them (`upstream = "http://a"` or `upstream = ["http://a", "http://b"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// Which HTTP version an API's upstream connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    Http1,
    Http2,
    /// ALPN on TLS (`h2` preferred), HTTP/1.1 on cleartext.
    #[default]
    Auto,
}

/// How a request picks one of an API's upstream endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamBalance {
    #[default]
    LeastRequest,
    RoundRobin,
}

/// `[api.cors]`: the browser origins allowed to call the API (checked in `config::cors`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Option<Vec<String>>,
    pub allowed_headers: Option<Vec<String>>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    pub max_age: Option<ConfigDuration>,
    #[serde(default)]
    pub allow_credentials: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationMode {
    #[default]
    Introspection,
    Jwt,
    #[serde(rename = "jwt+introspection")]
    JwtIntrospection,
}

/// Anypoint's scope validation criteria: AND (`all`) or OR (`any`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeMatch {
    #[default]
    All,
    Any,
}

/// Where a bearer token may travel (RFC 6750 §2.1–2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenSource {
    Header,
    Query,
    Form,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    #[serde(default)]
    pub public: bool,
    pub scopes: Option<Vec<String>>,
    pub scope_match: Option<ScopeMatch>,
    pub clients: Option<Vec<String>>,
}
