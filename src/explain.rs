//! `tollgate explain`: what the gateway would decide for one request and why, step by step — the
//! answer a user otherwise digs out of the provider's logs. It runs the same pieces as the request
//! path (routing, rules, the API's validator, `authorize`) and adds what each step saw.

use std::fmt::Write;
use std::sync::Arc;

use http::Method;
use serde_json::{Map, Value};

use crate::config::{ClientCheck, ScopeMatch, ValidationMode};
use crate::policy::{Contracts, Rejection, authorize, matching_rule};
use crate::routing::normalise_path;
use crate::runtime::{Api, Runtime};
use crate::validate::{BearerToken, Caller, Principal, ValidateError};

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub mark: Mark,
    pub name: &'static str,
    pub detail: String,
}

/// The outcome: forwarded (`public` when no token was needed), or the refusal a client would get.
#[derive(Debug, Clone)]
pub enum Decision {
    Allowed { public: bool, upstream: String },
    Refused(Rejection),
}

#[derive(Debug, Clone)]
pub struct Explanation {
    pub steps: Vec<Step>,
    pub decision: Decision,
}

/// The request to explain.
pub struct Question<'a> {
    pub api: &'a str,
    pub method: Method,
    /// Defaults to the API's path prefix.
    pub path: Option<&'a str>,
    pub token: BearerToken,
    pub now: u64,
}

/// Explains; `Err` when no API has that name.
pub async fn explain(runtime: &Runtime, q: Question<'_>) -> Result<Explanation, String> {
    let api = runtime
        .router
        .iter()
        .find(|a| &*a.name == q.api)
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = runtime.router.iter().map(|a| &*a.name).collect();
            format!(
                "no API named {:?} (configured: {})",
                q.api,
                names.join(", ")
            )
        })?;
    let mut steps = Vec::new();
    let decision = walk(runtime, &api, &q, &mut steps).await;
    Ok(Explanation { steps, decision })
}

fn step(steps: &mut Vec<Step>, mark: Mark, name: &'static str, detail: impl Into<String>) {
    steps.push(Step {
        mark,
        name,
        detail: detail.into(),
    });
}

async fn walk(
    runtime: &Runtime,
    api: &Arc<Api>,
    q: &Question<'_>,
    steps: &mut Vec<Step>,
) -> Decision {
    let s = &api.settings;
    let raw_path = q.path.unwrap_or(&s.path_prefix);
    let path = match normalise_path(raw_path) {
        Ok(p) => p,
        Err(e) => {
            step(
                steps,
                Mark::Fail,
                "path",
                format!("{raw_path:?} is refused: {e}"),
            );
            return Decision::Refused(Rejection::BadPath(e));
        }
    };
    match runtime.router.route(s.host.as_deref(), &path) {
        Some(routed) if Arc::ptr_eq(routed, api) => step(
            steps,
            Mark::Pass,
            "route",
            format!(
                "{} {path} routes to API {:?} (path_prefix {}, validation {:?} at provider {} ({}))",
                q.method,
                s.name,
                s.path_prefix,
                s.validation,
                s.provider,
                api.provider.settings.issuer
            ),
        ),
        other => {
            let to = other.map_or_else(
                || "no API (404)".to_owned(),
                |a| format!("API {:?}", a.name),
            );
            step(
                steps,
                Mark::Fail,
                "route",
                format!("{path} routes to {to}, not to {:?}", s.name),
            );
            return Decision::Refused(Rejection::NoRoute);
        }
    }
    let rule = matching_rule(s, &q.method, &path);
    let policy = rule.map_or(&s.policy, |(_, r)| &r.policy);
    let upstream = format!("{}{}", s.upstream.url.as_str().trim_end_matches('/'), path);
    match rule {
        Some((i, r)) if r.public => {
            step(
                steps,
                Mark::Pass,
                "rule",
                format!("rule {i} makes {} {path} public: no token needed", q.method),
            );
            return Decision::Allowed {
                public: true,
                upstream,
            };
        }
        Some((i, _)) => step(
            steps,
            Mark::Pass,
            "rule",
            format!("rule {i} applies (its scopes and clients)"),
        ),
        None => step(
            steps,
            Mark::Pass,
            "rule",
            "no rule matches: the API's defaults apply",
        ),
    }
    step(steps, Mark::Pass, "token", describe_token(&q.token, q.now));
    if s.validation == ValidationMode::Introspection {
        introspection_step(api, &q.token, q.now, steps).await;
    }
    let principal = match api.validator.validate(&q.token, Caller::LOCAL).await {
        Ok(p) => {
            step(
                steps,
                Mark::Pass,
                "validation",
                format!(
                    "{:?}: valid; {}",
                    s.validation,
                    describe_principal(&p, q.now)
                ),
            );
            p
        }
        Err(ValidateError::Invalid(reason)) => {
            step(
                steps,
                Mark::Fail,
                "validation",
                format!("{:?}: {}", s.validation, reason.description()),
            );
            return Decision::Refused(Rejection::InvalidToken(reason));
        }
        Err(ValidateError::Unavailable(e)) => {
            step(
                steps,
                Mark::Fail,
                "validation",
                format!("{:?}: no verdict, the provider failed: {e}", s.validation),
            );
            return Decision::Refused(Rejection::ProviderUnavailable(e));
        }
        Err(ValidateError::Throttled(wait)) => {
            step(
                steps,
                Mark::Fail,
                "validation",
                format!("{:?}: no verdict, misses_per_client is spent", s.validation),
            );
            return Decision::Refused(Rejection::TooManyNewTokens(wait));
        }
    };
    authorisation_steps(&s.audience, policy, &principal, steps, runtime, s);
    let index = runtime.registry.as_ref().and_then(|h| h.current());
    let contracts = Contracts {
        api: &s.name,
        provider: &s.provider,
        index: index.as_deref(),
    };
    match authorize(&s.audience, policy, &principal, contracts) {
        Ok(()) => Decision::Allowed {
            public: false,
            upstream,
        },
        Err(rejection) => Decision::Refused(rejection),
    }
}

/// The provider's own answer, shown whatever it says (the verdict comes from the validator).
async fn introspection_step(api: &Api, token: &BearerToken, now: u64, steps: &mut Vec<Step>) {
    let answer = match api.provider.introspection() {
        Ok(client) => client.introspect(token).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(map) => {
            let active = map.get("active") == Some(&Value::Bool(true));
            let mark = if active { Mark::Pass } else { Mark::Fail };
            step(
                steps,
                mark,
                "introspection",
                format!(
                    "provider {} answers {}",
                    api.settings.provider,
                    summarise(&map, now)
                ),
            );
        }
        Err(e) => step(
            steps,
            Mark::Fail,
            "introspection",
            format!("provider {} failed: {e}", api.settings.provider),
        ),
    }
}

fn authorisation_steps(
    audience: &[String],
    policy: &crate::config::PolicySettings,
    p: &Principal,
    steps: &mut Vec<Step>,
    runtime: &Runtime,
    api: &crate::config::ApiSettings,
) {
    if audience.is_empty() {
        step(
            steps,
            Mark::Skip,
            "audience",
            "not checked (the API lists no audience)",
        );
    } else {
        let ok = p.audience().any(|a| audience.iter().any(|x| x == a));
        let mark = if ok { Mark::Pass } else { Mark::Fail };
        step(
            steps,
            mark,
            "audience",
            format!(
                "accepted [{}]; token's [{}]",
                audience.join(" "),
                p.audience().collect::<Vec<_>>().join(" ")
            ),
        );
    }
    let missing: Vec<&str> = policy
        .scopes
        .iter()
        .filter(|s| !p.has_scope(s))
        .map(String::as_str)
        .collect();
    let ok = match policy.scope_match {
        ScopeMatch::All => missing.is_empty(),
        ScopeMatch::Any => policy.scopes.is_empty() || missing.len() < policy.scopes.len(),
    };
    let mut detail = format!(
        "required {} of [{}]; token holds [{}]",
        if policy.scope_match == ScopeMatch::All {
            "all"
        } else {
            "any"
        },
        policy.scopes.join(" "),
        p.scopes().collect::<Vec<_>>().join(" ")
    );
    if !ok {
        let _ = write!(
            detail,
            "; missing [{}] (scopes compare exactly)",
            missing.join(" ")
        );
    }
    step(
        steps,
        if ok { Mark::Pass } else { Mark::Fail },
        "scopes",
        detail,
    );
    match &policy.clients {
        ClientCheck::Skip => step(
            steps,
            Mark::Skip,
            "client contract",
            "not checked (skip_client_id_validation)",
        ),
        ClientCheck::Contracts { listed, registry } => {
            let id = p.client_id();
            let index = runtime.registry.as_ref().and_then(|h| h.current());
            let registered = |id: &str| {
                *registry
                    && index
                        .as_ref()
                        .is_some_and(|i| i.grant(&api.name, &api.provider, id).is_some())
            };
            let ok = id.is_some_and(|id| listed.contains(id) || registered(id));
            let detail = match id {
                Some(id) if listed.contains(id) => format!("{id:?} holds a contract (listed)"),
                Some(id) if ok => format!(
                    "{id:?} (a client of provider {}) holds an approved contract in the registry",
                    api.provider
                ),
                Some(id) => format!(
                    "{id:?} holds no contract for this API ({} listed client(s){})",
                    listed.len(),
                    if *registry {
                        ", and none in the registry"
                    } else {
                        ""
                    }
                ),
                None => "the token names no client (client_id, cid or azp)".to_owned(),
            };
            step(
                steps,
                if ok { Mark::Pass } else { Mark::Fail },
                "client contract",
                detail,
            );
        }
    }
}

/// What the token looks like, before any trust: a JWT's header and claims, or an opaque string.
fn describe_token(token: &BearerToken, now: u64) -> String {
    use base64::Engine;
    let text = token.expose();
    let part = |s: &str| -> Option<Map<String, Value>> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let parts: Vec<&str> = text.split('.').collect();
    match parts.as_slice() {
        [h, c, _] => match (part(h), part(c)) {
            (Some(header), Some(claims)) => format!(
                "a JWT ({} bytes): header alg={} kid={} typ={}; claims (not yet verified) {}",
                text.len(),
                shown(header.get("alg")),
                shown(header.get("kid")),
                shown(header.get("typ")),
                summarise(&claims, now)
            ),
            _ => format!(
                "three dot-separated parts ({} bytes) that do not decode as a JWT",
                text.len()
            ),
        },
        _ => format!("an opaque token ({} bytes)", text.len()),
    }
}

fn describe_principal(p: &Principal, now: u64) -> String {
    format!(
        "client {}, subject {}, expires {}",
        p.client_id().unwrap_or("(none)"),
        p.subject().unwrap_or("(none)"),
        p.expires_at
            .map_or_else(|| "(no exp)".to_owned(), |exp| relative(exp, now))
    )
}

/// The claims people ask about, in one line.
fn summarise(claims: &Map<String, Value>, now: u64) -> String {
    let mut out = String::new();
    for key in [
        "active",
        "iss",
        "aud",
        "client_id",
        "cid",
        "azp",
        "sub",
        "scope",
        "scp",
    ] {
        if let Some(v) = claims.get(key) {
            let _ = write!(out, "{key}={} ", shown(Some(v)));
        }
    }
    for key in ["exp", "nbf", "iat"] {
        if let Some(t) = claims.get(key).and_then(Value::as_u64) {
            let _ = write!(out, "{key}={t} ({}) ", relative(t, now));
        }
    }
    out.trim_end().to_owned()
}

fn shown(v: Option<&Value>) -> String {
    match v {
        None => "(none)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn relative(t: u64, now: u64) -> String {
    if t >= now {
        format!("in {}s", t - now)
    } else {
        format!("{}s ago", now - t)
    }
}

impl Explanation {
    /// The report as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            let mark = match s.mark {
                Mark::Pass => "ok  ",
                Mark::Fail => "FAIL",
                Mark::Skip => "--  ",
            };
            let _ = writeln!(out, "  {mark} {:<16} {}", s.name, s.detail);
        }
        match &self.decision {
            Decision::Allowed { public, upstream } => {
                let how = if *public {
                    "public, forwarded"
                } else {
                    "allowed, forwarded"
                };
                let _ = writeln!(out, "decision: {how} to {upstream}");
            }
            Decision::Refused(r) => {
                let (error, description) = r.error();
                let _ = writeln!(
                    out,
                    "decision: {} {error}: {description}",
                    r.status().as_u16()
                );
            }
        }
        out
    }
}
