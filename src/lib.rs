//! tollgate: a reverse proxy that enforces OAuth 2.0 / OpenID Connect access tokens.
//!
//! One request travels one straight line, a module a step:
//! `server` (listener) → `routing` (which API) → `policy::extract` (token) → `validate` (who: a
//! [`validate::Principal`], cached) → `policy::authorize` (may they) → `forward` (upstream, over
//! `upstream`'s pooled connections).
//! Any step may end the request with a [`policy::Rejection`], rendered in one place.
//! `config` turns the file into an immutable [`runtime::Runtime`]; `provider` is the only code that
//! speaks HTTP to the identity provider.

pub mod access_log;
pub mod admin;
pub mod arrival;
pub mod body;
pub mod client_cert;
pub mod clock;
pub mod commands;
pub mod config;
pub mod deadline;
pub mod dev;
pub mod explain;
pub mod forward;
pub mod forwarded;
pub mod http1;
pub mod log_writer;
pub mod measure;
pub mod policy;
pub mod provider;
pub mod registry;
pub mod reload;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod telemetry;
pub mod trust;
pub mod upstream;
pub mod validate;
