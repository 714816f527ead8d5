//! Configuration errors name the key path and the reason; defaults are applied.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

const PROVIDER: &str = r#"
[provider]
issuer = "https://idp.test/oauth2/default"
introspection_client_id = "gw"
introspection_client_secret = "${SECRET}"
"#;

const API: &str = r#"
[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "http://127.0.0.1:9000"
scopes = ["mulescope"]
clients = ["app"]
"#;

fn env() -> HashMap<String, String> {
    HashMap::from([("SECRET".to_owned(), "s3cret".to_owned())])
}

fn err(text: &str) -> ConfigError {
    match parse(text, &env()) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn a_minimal_config_gets_its_defaults() {
    let s = parse(&format!("{PROVIDER}{API}"), &env()).unwrap();
    assert_eq!(
        s.providers[0].introspection_client_secret.expose(),
        "s3cret"
    );
    assert_eq!(
        format!("{:?}", s.providers[0].introspection_client_secret),
        "<redacted>"
    );
    assert_eq!(s.providers[0].request_timeout, Duration::from_secs(5));
    assert_eq!(
        s.providers[0].introspection_auth,
        ClientAuth::ClientSecretBasic
    );
    assert_eq!(s.providers[0].jwt.jwks_min_refresh, Duration::from_secs(5));
    assert_eq!(s.cache.max_entries, 10_000);
    assert_eq!(s.cache.stale_if_error, Duration::ZERO);
    let api = &s.apis[0];
    assert_eq!(api.token_sources, [TokenSource::Header]);
    assert_eq!(api.expose_headers_prefix, "X-AGW-");
    assert_eq!(&*api.strip_headers_prefix, "x-agw-");
    assert_eq!(api.policy.scope_match, ScopeMatch::All);
    assert_eq!(api.validation, ValidationMode::Introspection);
    assert_eq!(s.listen.connection.max_header_bytes, 16 * 1024);
    assert_eq!(s.listen.workers, None, "one per CPU unless set");
    assert!(
        s.listen.trusted_proxies.is_empty(),
        "nobody's headers are believed"
    );
    assert!(api.forward_authorization, "Anypoint's default");
}

#[test]
fn errors_name_the_key_path() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("{PROVIDER}{API}\n[cache]\nmax_entriez = 1"),
            "cache.max_entriez",
            "unknown field `max_entriez`",
        ),
        (
            format!("{PROVIDER}{API}[[api.rule]]\nmethod = [\"GET\"]"),
            "api[0].rule[0].method",
            "unknown field `method`",
        ),
        (
            format!("{PROVIDER}{API}").replace("${SECRET}", "${NOPE}"),
            "provider.introspection_client_secret",
            "NOPE is not set",
        ),
        (
            format!("{PROVIDER}{API}").replace("clients = [\"app\"]", ""),
            "api[0].clients",
            "no clients are listed",
        ),
        (
            format!("{PROVIDER}{API}").replace("http://127.0.0.1:9000", "127.0.0.1:9000"),
            "api[0].upstream",
            "not a URL",
        ),
        (
            format!("{PROVIDER}{API}").replace("https://idp.test", "ftp://idp.test"),
            "provider.issuer",
            "http(s) URL",
        ),
        (
            format!("[listen]\nworkers = 0\n{PROVIDER}{API}"),
            "listen.workers",
            "must be between 1 and 1024",
        ),
        (
            format!("{PROVIDER}jwks_min_refresh = \"61s\"\n{API}"),
            "provider.jwks_min_refresh",
            "must not exceed 60s",
        ),
        (
            format!("{PROVIDER}request_timeout = \"5 parsecs\"\n{API}"),
            "provider.request_timeout",
            "invalid duration",
        ),
        (
            format!("{PROVIDER}{API}").replace("\"mulescope\"", "\"mule scope\""),
            "api[0].scopes[0]",
            "not a scope token",
        ),
        (
            format!("{PROVIDER}{API}scope_match = \"some\""),
            "api[0].scope_match",
            "unknown variant",
        ),
        (
            format!("{PROVIDER}{API}[[api.rule]]\npublic = true\nscopes = [\"a\"]"),
            "api[0].rule[0].public",
            "cannot also require",
        ),
        (
            format!("{PROVIDER}{API}[[api.rule]]\npaths = [\"orders/*\"]"),
            "api[0].rule[0].paths[0]",
            "must start with /",
        ),
        (
            format!("{PROVIDER}{API}[[api.rule]]\nclients = []"),
            "api[0].rule[0].clients",
            "empty list",
        ),
        (
            format!("{PROVIDER}{API}{API}"),
            "api[1].name",
            "duplicate API name",
        ),
        (
            format!("{PROVIDER}{API}").replace("/orders", "/orders/../x"),
            "api[0].path_prefix",
            "normal form",
        ),
        (
            format!("{PROVIDER}{API}\n[listen]\naddress = \"localhost\""),
            "listen.address",
            "socket address",
        ),
        (
            format!("{PROVIDER}{API}\n[listen]\nmax_header_bytes = 100"),
            "listen.max_header_bytes",
            "at least",
        ),
        (
            format!(
                "{PROVIDER}{API}\n[listen]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.internal\"]"
            ),
            "listen.trusted_proxies[1]",
            "neither an IP address nor a CIDR",
        ),
        (
            format!("{PROVIDER}{API}\n[listen]\ntrusted_proxies = [\"10.0.0.1/8\"]"),
            "listen.trusted_proxies[0]",
            "host bits set",
        ),
        (
            format!("{PROVIDER}{API}forward_authorization = \"no\""),
            "api[0].forward_authorization",
            "invalid type",
        ),
        (
            format!("{PROVIDER}{API}\n[log]\nlevel = \"[[\""),
            "log.level",
            "not a log filter",
        ),
        (
            format!(
                "{PROVIDER}{API}[api.cors]\nallowed_origins = [\"*\"]\nallow_credentials = true"
            ),
            "api[0].cors.allowed_origins[0]",
            "cannot be combined with allow_credentials",
        ),
        (
            format!("{PROVIDER}{API}[api.cors]\nallowed_origins = [\"https://a.test/\"]"),
            "api[0].cors.allowed_origins[0]",
            "write \"https://a.test\"",
        ),
        (
            format!(
                "{PROVIDER}{API}[api.cors]\nallowed_origins = [\"https://a.test\", \"https://a.test:443\"]"
            ),
            "api[0].cors.allowed_origins[1]",
            "no path, user or default port",
        ),
        (
            format!("{PROVIDER}{API}[api.cors]\nallowed_origins = [\"null\"]"),
            "api[0].cors.allowed_origins[0]",
            "allows everyone",
        ),
        (
            format!("{PROVIDER}{API}[api.cors]\nallowed_origins = [\"a.test\"]"),
            "api[0].cors.allowed_origins[0]",
            "not an origin",
        ),
        (
            format!("{PROVIDER}{API}[api.cors]\nallowed_origins = []"),
            "api[0].cors.allowed_origins",
            "at least one origin",
        ),
        (
            format!("{PROVIDER}{API}[api.cors]\nallowed_origins = [\"https://a.test\", \"*\"]"),
            "api[0].cors.allowed_origins[1]",
            "list it alone",
        ),
        (
            format!(
                "{PROVIDER}{API}[api.cors]\nallowed_origins = [\"https://a.test\"]\nallowed_headers = [\"*\"]\nallow_credentials = true"
            ),
            "api[0].cors.allowed_headers[0]",
            "cannot be combined with allow_credentials",
        ),
        (
            format!(
                "{PROVIDER}{API}[api.cors]\nallowed_origins = [\"https://a.test\"]\nallowed_methods = [\"GE T\"]"
            ),
            "api[0].cors.allowed_methods[0]",
            "not a token",
        ),
        (
            format!(
                "{PROVIDER}{API}[api.cors]\nallowed_origins = [\"https://a.test\"]\nallowed_methods = []"
            ),
            "api[0].cors.allowed_methods",
            "allows no method",
        ),
        (
            format!(
                "{PROVIDER}{API}[api.cors]\nallowed_origins = [\"https://a.test\"]\nmax_age = 600"
            ),
            "api[0].cors.max_age",
            "invalid type",
        ),
        (
            format!("{PROVIDER}{API}[api.cors]\nallowed_origin = [\"https://a.test\"]"),
            "api[0].cors.allowed_origin",
            "unknown field",
        ),
        (PROVIDER.to_owned(), "api", "at least one"),
        (API.to_owned(), "", "missing field `provider`"),
    ];
    for (text, path, reason) in cases {
        let e = err(&text);
        assert_eq!(e.path, path, "{e}");
        assert!(e.reason.contains(reason), "{e} (wanted {reason:?})");
    }
}

#[test]
fn bad_toml_is_reported_without_panicking() {
    let e = err("[provider\nissuer = 1");
    assert!(e.reason.contains("not valid TOML"), "{e}");
}

#[test]
fn rules_inherit_and_override_the_api_policy() {
    let text = format!(
        "{PROVIDER}{API}[[api.rule]]\nmethods = [\"delete\"]\npaths = [\"/orders/*\"]\nscopes = [\"admin\"]\n[[api.rule]]\nmethods = [\"OPTIONS\"]\npublic = true\n"
    );
    let s = parse(&text, &env()).unwrap();
    let rules = &s.apis[0].rules;
    assert_eq!(
        rules[0].methods.as_deref(),
        Some(&[http::Method::DELETE][..])
    );
    assert_eq!(rules[0].policy.scopes, ["admin"]);
    assert_eq!(rules[0].policy.clients, s.apis[0].policy.clients);
    let glob = rules[0].paths.as_ref().unwrap();
    assert!(glob.is_match("/orders/1") && !glob.is_match("/orders/1/items"));
    assert!(rules[1].public);
}

#[test]
fn cors_gets_its_defaults_and_origins_as_browsers_send_them() {
    let text = format!(
        "{PROVIDER}{API}[api.cors]\nallowed_origins = [\"HTTPS://App.Example.com\", \"http://localhost:3000\"]\nmax_age = \"10m\"\nexpose_headers = [\"X-Request-Id\"]\n"
    );
    let s = parse(&text, &env()).unwrap();
    let cors = s.apis[0].cors.as_ref().unwrap();
    let CorsOrigins::Exact(origins) = &cors.origins else {
        panic!("exact origins expected: {cors:?}")
    };
    let mut keys: Vec<&str> = origins.keys().map(|k| &**k).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["http://localhost:3000", "https://app.example.com"]);
    assert_eq!(
        origins["https://app.example.com"],
        "https://app.example.com"
    );
    assert_eq!(cors.allow_methods, "GET, HEAD, POST");
    assert_eq!(
        cors.headers,
        CorsList::Only(vec![
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE
        ])
    );
    assert_eq!(cors.expose_headers.as_ref().unwrap(), "x-request-id");
    assert_eq!(
        cors.grpc_expose_headers,
        "x-request-id, grpc-status, grpc-message"
    );
    assert_eq!(cors.max_age.as_ref().unwrap(), "600");
    assert!(!cors.allow_credentials);
    assert!(
        parse(&format!("{PROVIDER}{API}"), &env()).unwrap().apis[0]
            .cors
            .is_none()
    );
}

#[test]
fn grpc_answers_expose_grpc_status_and_message_once_and_star_covers_them() {
    let cors = |expose: &str| {
        let text = format!(
            "{PROVIDER}{API}[api.cors]\nallowed_origins = [\"https://a.test\"]\n{expose}\n"
        );
        let s = parse(&text, &env()).unwrap();
        s.apis[0].cors.clone().unwrap()
    };
    let none = cors("");
    assert_eq!(none.expose_headers, None);
    assert_eq!(none.grpc_expose_headers, "grpc-status, grpc-message");
    let listed = cors("expose_headers = [\"Grpc-Message\", \"x-a\"]");
    assert_eq!(listed.grpc_expose_headers, "grpc-message, x-a, grpc-status");
    let star = cors("expose_headers = [\"*\"]");
    assert_eq!(star.grpc_expose_headers, "*");
}

#[test]
fn rules_that_list_get_cover_head() {
    let text = format!(
        "{PROVIDER}{API}[[api.rule]]\nmethods = [\"GET\"]\n[[api.rule]]\nmethods = [\"HEAD\", \"get\"]\n[[api.rule]]\nmethods = [\"POST\"]\n"
    );
    use http::Method;
    let s = parse(&text, &env()).unwrap();
    let methods = |i: usize| s.apis[0].rules[i].methods.clone().unwrap();
    assert_eq!(methods(0), [Method::GET, Method::HEAD]);
    assert_eq!(methods(1), [Method::HEAD, Method::GET]);
    assert_eq!(methods(2), [Method::POST]);
    // `check` shows what is in force.
    assert!(
        describe(&s).contains("rule 0: GET,HEAD: "),
        "{}",
        describe(&s)
    );
}

#[test]
fn case_insensitive_paths_fold_the_rules_and_the_route() {
    let s = parse(&format!("{PROVIDER}{API}"), &env()).unwrap();
    assert!(!s.apis[0].case_insensitive_paths);
    let text = format!(
        "{PROVIDER}{API}case_insensitive_paths = true\n[[api.rule]]\npaths = [\"/Orders/*\"]\n"
    );
    let s = parse(&text, &env()).unwrap();
    assert!(s.apis[0].case_insensitive_paths);
    let globs = s.apis[0].rules[0].paths.as_ref().unwrap();
    // Patterns are folded as paths are; the policy folds the path before matching.
    assert!(globs.is_match("/orders/1") && !globs.is_match("/Orders/1"));
    assert_eq!(s.apis[0].rules[0].path_patterns, ["/Orders/*"]);

    // Two APIs whose prefixes differ only in case cannot both route when either folds.
    let second = |folds: bool| {
        format!(
            "{PROVIDER}{API}\n[[api]]\nname = \"b\"\npath_prefix = \"/ORDERS\"\nupstream = \"http://127.0.0.1:9001\"\nskip_client_id_validation = true\ncase_insensitive_paths = {folds}\n"
        )
    };
    assert!(parse(&second(false), &env()).is_ok());
    let e = err(&second(true));
    assert_eq!(e.path, "api[1].path_prefix", "{e}");
}

#[test]
fn a_fully_qualified_host_is_the_same_host() {
    let text = format!("{PROVIDER}{API}host = \"API.test.\"\n");
    let s = parse(&text, &env()).unwrap();
    assert_eq!(s.apis[0].host.as_deref(), Some("api.test"));
    assert_eq!(
        err(&format!("{PROVIDER}{API}host = \".\"\n")).path,
        "api[0].host"
    );
}

#[test]
fn the_provider_budget_is_checked_and_defaulted() {
    let s = parse(&format!("{PROVIDER}{API}"), &env()).unwrap();
    let b = &s.providers[0].budget;
    assert_eq!(b.max_inflight, 64);
    assert_eq!((b.rate, b.misses_per_client), (None, None));
    assert_eq!(b.wait, Duration::from_secs(1));
    let with = |lines: &str| format!("{PROVIDER}{lines}\n{API}");
    let s = parse(
        &with("introspection_rate = \"50/s\"\nmisses_per_client = \"20/s\""),
        &env(),
    )
    .unwrap();
    let (rate, burst) = s.providers[0].budget.rate.unwrap();
    assert_eq!((rate.to_string(), burst.get()), ("50/s".to_owned(), 50));
    for (lines, path, why) in [
        (
            "max_inflight = 0",
            "provider.max_inflight",
            "between 1 and 10000",
        ),
        (
            "introspection_rate = \"50\"",
            "provider.introspection_rate",
            "invalid rate",
        ),
        (
            "introspection_rate = \"0/s\"",
            "provider.introspection_rate",
            "at least 1",
        ),
        (
            "introspection_burst = 5",
            "provider.introspection_burst",
            "needs provider.introspection_rate",
        ),
        (
            "introspection_rate = \"5/s\"\nintrospection_burst = 0",
            "provider.introspection_burst",
            "at least 1",
        ),
        (
            "misses_per_client = \"fast\"",
            "provider.misses_per_client",
            "invalid rate",
        ),
        (
            "budget_wait = \"2m\"",
            "provider.budget_wait",
            "at most 60s",
        ),
    ] {
        let e = err(&with(lines));
        assert_eq!(e.path, path, "{lines}: {e}");
        assert!(e.reason.contains(why), "{lines}: {e}");
    }
}

#[test]
fn provider_urls_with_credentials_are_refused_without_echoing_them() {
    let with = |url: &str| format!("{PROVIDER}introspection_url = \"{url}\"\n{API}");
    for url in [
        "https://gw:hunter2@idp.test/v1/introspect",
        "https://gw@idp.test/v1/introspect",
        "https://:hunter2@idp.test/v1/introspect",
    ] {
        let e = err(&with(url));
        assert_eq!(e.path, "provider.introspection_url", "{e}");
        assert!(e.reason.contains("user or password"), "{e}");
        assert!(
            !e.to_string().contains("hunter2"),
            "the secret is echoed: {e}"
        );
    }
    for key in ["authorize_url", "token_url", "jwks_url", "registration_url"] {
        let e = err(&format!(
            "{PROVIDER}{key} = \"https://u:p@idp.test/x\"\n{API}"
        ));
        assert_eq!(e.path, format!("provider.{key}"), "{e}");
    }
    let e = err(&format!("{PROVIDER}{API}").replace("https://idp.test", "https://u:p@idp.test"));
    assert_eq!(e.path, "provider.issuer", "{e}");
}

#[test]
fn absurd_durations_are_errors_naming_the_key() {
    for text in [
        "99999999999h",
        "18446744073709551615s",
        "18446744073709551616s",
        "367d",
    ] {
        let e = err(&format!("{PROVIDER}request_timeout = \"{text}\"\n{API}"));
        assert_eq!(e.path, "provider.request_timeout", "{text}: {e}");
        let e = err(&format!("{PROVIDER}{API}\n[cache]\nmax_ttl = \"{text}\""));
        assert_eq!(e.path, "cache.max_ttl", "{text}: {e}");
        let e = err(&format!(
            "[listen]\nshutdown_grace = \"{text}\"\n{PROVIDER}{API}"
        ));
        assert_eq!(e.path, "listen.shutdown_grace", "{text}: {e}");
    }
    let e = err(&format!("{PROVIDER}{API}timeout = \"99999999999h\""));
    assert_eq!(e.path, "api[0].timeout", "{e}");
    assert!(e.reason.contains("too long"), "{e}");
    // A year is the longest any setting takes, and it is taken.
    let s = parse(
        &format!("{PROVIDER}{API}\n[cache]\nmax_ttl = \"1y\""),
        &env(),
    )
    .unwrap();
    assert_eq!(s.cache.max_ttl, Duration::from_secs(31_557_600));
}

#[test]
fn an_api_timeout_of_zero_is_refused() {
    let e = err(&format!("{PROVIDER}{API}timeout = \"0s\""));
    assert_eq!(e.path, "api[0].timeout", "{e}");
    assert!(e.reason.contains("greater than zero"), "{e}");
    let e = err(&format!(
        "[listen]\nrequest_timeout = \"0s\"\n{PROVIDER}{API}"
    ));
    assert_eq!(e.path, "listen.request_timeout", "{e}");
}

#[test]
fn the_registry_is_checked_and_lets_an_api_list_no_clients() {
    let without_clients = API.replace("clients = [\"app\"]\n", "");
    let with = |registry: &str| format!("{PROVIDER}{registry}\n{without_clients}");
    let s = parse(&with("[registry]\nstore = \"sqlite://reg.db\""), &env()).unwrap();
    let r = s.registry.unwrap();
    assert_eq!(r.store.to_string(), "sqlite://reg.db");
    assert_eq!(r.refresh_interval, Duration::from_secs(1));
    let pg = parse(
        &with("[registry]\nstore = \"postgres://gw:hunter2@db.test/tollgate\""),
        &env(),
    )
    .unwrap();
    let shown = pg.registry.unwrap().store.to_string();
    assert!(
        !shown.contains("hunter2") && shown.contains("db.test"),
        "{shown}"
    );
    for (registry, path, why) in [
        ("store = \"mysql://x\"", "registry.store", "sqlite://PATH"),
        (
            "store = \"sqlite://\"",
            "registry.store",
            "name the SQLite file",
        ),
        (
            "store = \"sqlite://r.db\"\nrefresh_interval = \"10ms\"",
            "registry.refresh_interval",
            "between 100ms and 60s",
        ),
        (
            "store = \"sqlite://r.db\"\nencryption_key = \"short\"",
            "registry.encryption_key",
            "at least 32",
        ),
        (
            "store = \"sqlite://r.db\"\nmax_staleness = \"10ms\"",
            "registry.max_staleness",
            "at least",
        ),
        ("stor = \"sqlite://r.db\"", "registry.stor", "unknown field"),
    ] {
        let e = err(&with(&format!("[registry]\n{registry}")));
        assert_eq!(e.path, path, "{registry}: {e}");
        assert!(e.reason.contains(why), "{registry}: {e}");
    }
    let e = err(&format!("{PROVIDER}{without_clients}"));
    assert!(
        e.reason.contains("[registry]"),
        "the hint names the registry: {e}"
    );
}

#[test]
fn an_admin_token_is_a_long_secret() {
    let s = parse(&format!("{PROVIDER}{API}"), &env()).unwrap();
    assert!(s.admin.token.is_none());
    let short = err(&format!("{PROVIDER}{API}[admin]\ntoken = \"short\"\n"));
    assert_eq!(short.path, "admin.token");
    assert!(short.reason.contains("at least 32"), "{}", short.reason);
    let spaced = err(&format!(
        "{PROVIDER}{API}[admin]\ntoken = \"{} {}\"\n",
        "a".repeat(20),
        "b".repeat(20)
    ));
    assert_eq!(spaced.path, "admin.token");
    let long = "t".repeat(40);
    let s = parse(
        &format!("{PROVIDER}{API}[admin]\ntoken = \"{long}\"\n"),
        &env(),
    )
    .unwrap();
    let token = s.admin.token.unwrap();
    assert_eq!(token.expose(), long);
    assert_eq!(format!("{token:?}"), "<redacted>");
    let unknown = err(&format!("{PROVIDER}{API}[admin]\ntokn = \"{long}\"\n"));
    assert!(unknown.path.starts_with("admin"), "{}", unknown.path);
}
