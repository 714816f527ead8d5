//! The gateway integration tests: one binary, so the helpers in `common` compile once. Each capability
//! gets a module beside this file (`tests/gateway/<capability>.rs`), declared below.

// Panicking is how these tests fail, so unwrap/expect (with messages) are the point, not a smell.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Not every capability uses every helper; the unused ones must not fail the lint.
#[allow(dead_code)]
mod common;

// Self-tests of the harness itself (no gateway binary needed).
mod harness;
mod postgres_harness;

// Capability modules.
mod admin_api;
mod budget;
mod cli;
mod client_framing;
mod connections;
mod cors;
mod credentials;
mod dev;
mod dev_provider;
mod forwarding;
mod grpc;
mod grpc_calls;
mod grpc_web_cors;
mod introspection;
mod jwt;
mod keys;
mod lifecycle;
mod lifecycle_leaks;
mod metrics;
mod providers;
mod providers_registry;
mod registry;
mod registry_apply;
mod registry_idp;
mod registry_migration;
mod reload;
mod spelling;
mod tls_listen;
mod troubleshoot;
mod trust;
mod upstream_balance;
mod upstream_failure_log;
mod upstream_framing;
mod upstream_tls;
mod verdicts;
mod websocket;
