//! The human summary `tollgate check` prints: what is in force, secrets shown only as `<set>`;
//! and the warnings it gives about settings that are valid but unsafe.

use std::fmt::Write;

use super::{
    ClientCheck, CorsList, CorsOrigins, CorsSettings, PolicySettings, ProviderSettings, Settings,
    TlsSettings, UpstreamBalance, UpstreamProtocol, UpstreamTarget, ValidationMode,
};

/// `[listen.tls]`: where, which files and names, each certificate's expiry, client auth.
fn describe_tls(out: &mut String, tls: &TlsSettings, plain: std::net::SocketAddr) {
    let _ = match tls.address {
        Some(addr) => writeln!(out, "  tls: on {addr} (and cleartext on {plain})"),
        None => writeln!(out, "  tls: on {plain} (no cleartext)"),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for cert in &tls.loaded.0.summary {
        let names = if cert.server_names.is_empty() {
            "default".to_owned()
        } else {
            cert.server_names.join(", ")
        };
        let left = (cert.not_after - now) / 86_400;
        let expiry = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(cert.not_after.max(0) as u64),
        );
        let _ = writeln!(
            out,
            "    {}: {} ({}) for {names}; expires {expiry} ({left} days)",
            cert.at,
            cert.cert.display(),
            cert.subject,
        );
    }
    let _ = match &tls.client_ca {
        Some(ca) => writeln!(
            out,
            "    client certificates: {:?}, CAs from {}",
            ca.auth,
            ca.path.display()
        ),
        None => writeln!(out, "    client certificates: not asked for"),
    };
}

pub fn describe(s: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "listen: {} (admin {})",
        s.listen.address, s.listen.admin_address
    );
    if let Some(tls) = &s.listen.tls {
        describe_tls(&mut out, tls, s.listen.address);
    }
    if !s.listen.trusted_proxies.is_empty() {
        let _ = writeln!(
            out,
            "  forwarding headers believed from: {}",
            s.listen.trusted_proxies
        );
    }
    let _ = writeln!(
        out,
        "  admin API (/v1): {}",
        if s.admin.token.is_some() {
            "token <set>"
        } else {
            "refused (no [admin] token)"
        }
    );
    for p in &s.providers {
        provider(&mut out, s, p);
    }
    let _ = writeln!(
        out,
        "cache: max_entries {}, max_ttl {:?}, negative_ttl {:?}, stale_if_error {:?}",
        s.cache.max_entries, s.cache.max_ttl, s.cache.negative_ttl, s.cache.stale_if_error
    );
    for api in &s.apis {
        let _ = writeln!(
            out,
            "api {}: host {} path_prefix {} -> {}{} ({:?} at provider {}, sources {:?})",
            api.name,
            api.host.as_deref().unwrap_or("*"),
            api.path_prefix,
            api.upstream
                .urls
                .iter()
                .map(url::Url::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            if api.strip_prefix {
                " (prefix stripped)"
            } else {
                ""
            },
            api.validation,
            api.provider,
            api.token_sources,
        );
        describe_upstream(&mut out, &api.upstream);
        if !api.audience.is_empty() {
            let _ = writeln!(out, "  audience: {}", api.audience.join(" "));
        }
        if !api.forward_authorization {
            let _ = writeln!(out, "  Authorization header: not forwarded");
        }
        let _ = writeln!(out, "  default: {}", policy(&api.policy));
        for (i, rule) in api.rules.iter().enumerate() {
            let methods = rule.methods.as_ref().map_or_else(
                || "any method".to_owned(),
                |m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
            );
            let what = if rule.public {
                "public".to_owned()
            } else {
                policy(&rule.policy)
            };
            let _ = writeln!(
                out,
                "  rule {i}: {methods}{}: {what}",
                if rule.paths.is_some() {
                    " on paths"
                } else {
                    ""
                }
            );
        }
        if let Some(c) = &api.cors {
            let _ = writeln!(out, "  cors: {}", cors(c));
        }
    }
    out
}

/// How an API reaches its upstream: the protocol, the balancing and, for `https://`, where trust
/// comes from, the name verified and the client certificate (paths, never the files' contents).
fn describe_upstream(out: &mut String, upstream: &UpstreamTarget) {
    let protocol = match upstream.protocol {
        UpstreamProtocol::Auto => "auto",
        UpstreamProtocol::Http1 => "http1",
        UpstreamProtocol::Http2 => "http2",
    };
    let balance = match upstream.balance {
        UpstreamBalance::LeastRequest => "least_request",
        UpstreamBalance::RoundRobin => "round_robin",
    };
    let _ = writeln!(
        out,
        "  upstream: protocol {protocol}, balance {balance} over {} endpoint(s)",
        upstream.urls.len()
    );
    let Some(tls) = &upstream.tls else {
        return;
    };
    let trust = match (&tls.ca, upstream.insecure_skip_verify) {
        (_, true) => "certificates NOT verified (insecure_skip_verify)".to_owned(),
        (Some(ca), false) => format!("CA file {ca}"),
        (None, false) => "the system's trusted roots".to_owned(),
    };
    let _ = writeln!(
        out,
        "  upstream tls: {trust}; server name {}; client certificate {}",
        tls.server_name.as_deref().unwrap_or("each endpoint's host"),
        tls.client_cert.as_deref().unwrap_or("none"),
    );
}

/// Valid settings that are likely mistakes, one line each, naming the key path.
pub fn warnings(s: &Settings) -> Vec<String> {
    let mut out: Vec<String> = s
        .apis
        .iter()
        .enumerate()
        // The JWT modes require an audience already (a config error). Introspection tells which
        // tokens are active, not for whom: without `audience`, a token the provider issued for
        // any other API passes, and so do tokens that name no audience, such as Okta's refresh
        // tokens (their introspection answer says `"token_type": "Bearer"` and carries no `aud`).
        .filter(|(_, api)| api.validation == ValidationMode::Introspection && api.audience.is_empty())
        .map(|(i, api)| {
            format!(
                "api[{i}].audience: API {:?} validates by introspection and checks no audience, so it accepts active tokens meant for any API of the provider, and refresh tokens that name no audience; set the accepted `aud` values (Okta: [\"api://default\"])",
                api.name
            )
        })
        .collect();
    for p in &s.providers {
        let key = s.provider_key(&p.name);
        if let Some(auth) = &p.registration_authorization {
            let scheme = auth.expose().split(' ').next().unwrap_or_default();
            if !scheme.eq_ignore_ascii_case("SSWS") && !scheme.eq_ignore_ascii_case("Bearer") {
                out.push(format!(
                    "{key}.registration_authorization: starts with neither `SSWS ` (an Okta API token) nor `Bearer `"
                ));
            }
        }
        // Not an error: the registry may register applications there.
        if s.apis_of(&p.name).next().is_none() {
            out.push(format!(
                "{key}: provider {:?} validates no API's tokens (no [[api]] has provider = {:?})",
                p.name, p.name
            ));
        }
    }
    out
}

/// One provider: its name, issuer, introspection client, budget, and the APIs it validates for.
fn provider(out: &mut String, s: &Settings, p: &ProviderSettings) {
    let apis: Vec<&str> = s.apis_of(&p.name).map(|a| a.name.as_str()).collect();
    let _ = writeln!(
        out,
        "provider {}: issuer {}, validates for APIs: {}",
        p.name,
        p.issuer,
        if apis.is_empty() {
            "(none)".to_owned()
        } else {
            apis.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  introspection client {} ({:?}), secret <set>, registration_authorization {}",
        p.introspection_client_id,
        p.introspection_auth,
        if p.registration_authorization.is_some() {
            "<set>"
        } else {
            "<unset>"
        }
    );
    let b = &p.budget;
    let _ = writeln!(
        out,
        "  budget: max_inflight {}, introspection_rate {}, misses_per_client {}, budget_wait {:?}, rate_limit_low_water {}",
        b.max_inflight,
        b.rate.map_or("unlimited".to_owned(), |(r, burst)| format!(
            "{r} (burst {burst})"
        )),
        b.misses_per_client
            .map_or("unlimited".to_owned(), |r| r.to_string()),
        b.wait,
        b.low_water,
    );
}

/// The APIs whose upstream certificates are not verified (`insecure_skip_verify`): anyone on the
/// path to them can read and change their traffic, identity headers included.
pub fn insecure_warnings(s: &Settings) -> Vec<String> {
    s.apis
        .iter()
        .enumerate()
        .filter(|(_, api)| api.upstream.insecure_skip_verify)
        .map(|(i, api)| {
            format!(
                "api[{i}].insecure_skip_verify: API {:?} does not verify its upstream's certificate; anyone on the network path can impersonate the upstream and read the identity headers. Set upstream_ca instead",
                api.name
            )
        })
        .collect()
}

fn cors(c: &CorsSettings) -> String {
    let origins = match &c.origins {
        CorsOrigins::Any => "*".to_owned(),
        CorsOrigins::Exact(map) => {
            let mut origins: Vec<&str> = map.keys().map(|o| &**o).collect();
            origins.sort_unstable();
            origins.join(" ")
        }
    };
    let headers = match &c.headers {
        CorsList::Any => "*".to_owned(),
        CorsList::Only(hs) => hs.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(","),
    };
    let text =
        |v: Option<&http::HeaderValue>| v.and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    format!(
        "origins [{origins}], methods {}, headers [{headers}], expose [{}], max_age {}, credentials {}",
        text(Some(&c.allow_methods)),
        text(c.expose_headers.as_ref()),
        text(c.max_age.as_ref()),
        c.allow_credentials
    )
}

fn policy(p: &PolicySettings) -> String {
    let clients = match &p.clients {
        ClientCheck::Skip => "client ids not checked".to_owned(),
        ClientCheck::Contracts {
            listed,
            registry: false,
        } => format!("{} client(s) with contracts", listed.len()),
        ClientCheck::Contracts {
            listed,
            registry: true,
        } => format!("{} listed client(s), and registry contracts", listed.len()),
    };
    format!(
        "scopes [{}] ({:?}), {clients}",
        p.scopes.join(" "),
        p.scope_match
    )
}
