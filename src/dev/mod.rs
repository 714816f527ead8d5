//! `tollgate dev`: everything a developer needs to try the gateway on one machine, in one process,
//! with no identity provider account. [`provider`] is an embedded OpenID provider shaped like an Okta
//! custom authorization server (client credentials, JWT or opaque tokens, introspection, dynamic
//! registration); [`echo`] is an upstream that answers with what it received, so the developer sees
//! exactly which headers tollgate forwarded. Neither is on the request path of `tollgate run`.

pub mod echo;
pub mod provider;
pub mod session;

mod listener;
