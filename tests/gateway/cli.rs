//! The command line: `tollgate check` (effective settings and discovered endpoints, secrets hidden),
//! exit statuses (0 ok, 1 runtime failure, 2 bad configuration naming the key path), `TOLLGATE_CONFIG`,
//! and what `tollgate run` writes to its logs: one access line per request, never a token or secret.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::common::certs::TestCa;
use crate::common::gateway::{CliOutput, Gateway, TempConfig, cli};
use crate::common::idp::TestIdp;
use crate::common::upstream::{Upstream, closed_port_url};
use crate::common::{base_config, client, config_with, toml_string};

/// The introspection client secret every test config carries (`config_with`).
const INTROSPECTION_SECRET: &str = "introspector-secret";

/// An API routed to `upstream`, with a contract for `orders-app` and `mulescope` required.
fn api(name: &str, prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[api]]\nname = {}\npath_prefix = {}\nupstream = {}\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n{extra}\n",
        toml_string(name),
        toml_string(prefix),
        toml_string(upstream)
    )
}

/// Asserts a configuration error: exit 2, nothing on stdout, and stderr naming every one of `needles`.
pub(crate) fn assert_config_error(out: &CliOutput, needles: &[&str]) {
    assert_eq!(out.status, 2, "a bad configuration exits 2: {out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:?}");
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "the message must mention {needle:?}: {out:?}"
        );
    }
}

/// The value printed for `key` in `check`'s endpoint list (`  key = value`).
fn printed(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("`check` printed no {key}: {stdout}"))
}

// 1. check against the real provider.

#[tokio::test]
async fn check_prints_discovered_endpoints_and_apis_without_secrets() {
    let idp = TestIdp::start().await;
    let registration = "SSWS reg-token-3f9a7c1e";
    let ca = TestCa::new("billing upstream CA");
    let identity = ca.client("tollgate", &["tollgate"]);
    let path = |p: &std::path::Path| p.display().to_string();
    let billing_tls = format!(
        "upstream_protocol = \"http2\"\nupstream_balance = \"round_robin\"\nupstream_ca = {}\nupstream_server_name = \"billing.internal\"\nupstream_client_cert = {}\nupstream_client_key = {}",
        toml_string(&path(&ca.ca_path())),
        toml_string(&path(&identity.cert_path)),
        toml_string(&path(&identity.key_path)),
    );
    let config = config_with(
        &idp.issuer,
        &format!("registration_authorization = {}", toml_string(registration)),
        &format!(
            "{}{}{}",
            api("orders", "/orders", "http://127.0.0.1:8081", ""),
            api(
                "inventory",
                "/inventory",
                "http://127.0.0.1:8082/base",
                "strip_prefix = true"
            ),
            api(
                "billing",
                "/billing",
                "https://localhost:8443",
                &billing_tls
            )
            .replace(
                "upstream = \"https://localhost:8443\"",
                "upstream = [\"https://localhost:8443\", \"https://127.0.0.1:8444\"]"
            ),
        ),
    );
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_eq!(out.status, 0, "{out:?}");

    let token_url = printed(&out.stdout, "token_url");
    assert!(
        token_url.ends_with("/oauth2/default/v1/token"),
        "{token_url}"
    );
    assert_eq!(token_url, idp.token_url());
    assert_eq!(
        printed(&out.stdout, "introspection_url"),
        idp.introspection_url()
    );
    assert_eq!(printed(&out.stdout, "jwks_url"), idp.jwks_url());
    assert!(out.stdout.contains(&idp.issuer), "{out:?}");
    for name in ["orders", "inventory", "billing"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("api {name}:"))),
            "the API {name} is listed: {out:?}"
        );
    }
    // How each API reaches its upstream: protocol and balance; TLS for https:// only.
    let under = |name: &str| -> Vec<&str> {
        let mut lines = out.stdout.lines();
        lines.find(|l| l.starts_with(&format!("api {name}:")));
        lines.take_while(|l| l.starts_with("  ")).collect()
    };
    let orders = under("orders");
    assert!(
        orders.contains(&"  upstream: protocol auto, balance least_request over 1 endpoint(s)"),
        "{orders:?}"
    );
    assert!(
        !orders.iter().any(|l| l.contains("upstream tls")),
        "{orders:?}"
    );
    let billing = under("billing");
    assert!(
        billing.contains(&"  upstream: protocol http2, balance round_robin over 2 endpoint(s)"),
        "{billing:?}"
    );
    let tls = format!(
        "  upstream tls: CA file {}; server name billing.internal; client certificate {}",
        path(&ca.ca_path()),
        path(&identity.cert_path)
    );
    assert!(billing.contains(&tls.as_str()), "{billing:?}");
    let key = std::fs::read_to_string(&identity.key_path).expect("the client key");
    let key_body = key.lines().nth(1).expect("a PEM line of key material");
    assert!(
        !out.stdout.contains(key_body) && !out.stdout.contains("PRIVATE KEY"),
        "`check` printed key material: {out:?}"
    );
    assert!(
        out.stdout.contains("<set>"),
        "secrets show as <set>: {out:?}"
    );
    for secret in [INTROSPECTION_SECRET, registration, "reg-token-3f9a7c1e"] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "`check` printed a secret ({secret}): {out:?}"
        );
    }
    let stats = idp.stats().await;
    assert!(
        stats.discovery_openid + stats.discovery_oauth >= 1,
        "discovery was read: {stats:?}"
    );
    assert_eq!(
        stats.token + stats.introspection,
        0,
        "check asks for no token: {stats:?}"
    );
}

// 2. Exit statuses.

/// A syntactically fine config for an issuer nothing is asked of (config errors come first).
pub(crate) const QUIET_ISSUER: &str = "http://127.0.0.1:9/oauth2/default";

#[tokio::test]
async fn unknown_key_is_a_config_error_naming_its_path() {
    let config = config_with(
        QUIET_ISSUER,
        "issuerr = \"http://typo.example\"",
        &api("orders", "/orders", "http://127.0.0.1:8081", ""),
    );
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_config_error(&out, &["provider.issuerr"]);
}

#[tokio::test]
async fn unset_variable_is_a_config_error_naming_it_and_the_key() {
    let idp = TestIdp::start().await;
    let config = config_with(
        &idp.issuer,
        "",
        &api("orders", "/orders", "http://127.0.0.1:8081", ""),
    )
    .replace(
        "introspection_client_secret = \"introspector-secret\"",
        "introspection_client_secret = \"${TOLLGATE_TEST_SURELY_UNSET_7F3A}\"",
    );
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_config_error(
        &out,
        &[
            "TOLLGATE_TEST_SURELY_UNSET_7F3A",
            "provider.introspection_client_secret",
        ],
    );

    // Set, the same file is fine, and the value (a secret) is not printed.
    let out = cli(
        &["check"],
        Some(&config),
        &[("TOLLGATE_TEST_SURELY_UNSET_7F3A", "from-the-env-51d2")],
    )
    .await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        !out.stdout.contains("from-the-env-51d2") && !out.stderr.contains("from-the-env-51d2"),
        "{out:?}"
    );
}

#[tokio::test]
async fn client_validation_without_clients_is_a_config_error() {
    let config = base_config(
        QUIET_ISSUER,
        "[[api]]\nname = \"orders\"\nupstream = \"http://127.0.0.1:8081\"\nscopes = [\"mulescope\"]\n",
    );
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_config_error(&out, &["api[0].clients"]);
}

#[tokio::test]
async fn bad_url_is_a_config_error_naming_its_key() {
    let config = base_config(
        QUIET_ISSUER,
        &format!(
            "{}{}",
            api("orders", "/orders", "http://127.0.0.1:8081", ""),
            api("inventory", "/inventory", "not a url", "")
        ),
    );
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_config_error(&out, &["api[1].upstream"]);

    let config = base_config(
        "issuer-without-scheme",
        &api("orders", "/orders", "http://127.0.0.1:8081", ""),
    );
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_config_error(&out, &["provider.issuer"]);
}

#[tokio::test]
async fn bad_duration_is_a_config_error_naming_its_key() {
    let config = base_config(
        QUIET_ISSUER,
        &format!(
            "[cache]\nmax_ttl = \"five minutes\"\n\n{}",
            api("orders", "/orders", "http://127.0.0.1:8081", "")
        ),
    );
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_config_error(&out, &["cache.max_ttl"]);

    let config = base_config(
        QUIET_ISSUER,
        &api(
            "orders",
            "/orders",
            "http://127.0.0.1:8081",
            "timeout = \"soon\"",
        ),
    );
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_config_error(&out, &["api[0].timeout"]);
}

#[tokio::test]
async fn missing_config_file_is_a_config_error() {
    let path = std::env::temp_dir().join(format!("tollgate-absent-{}.toml", std::process::id()));
    let path = path.to_string_lossy().into_owned();
    let out = cli(&["check", "--config", &path], None, &[]).await;
    assert_config_error(&out, &[&path]);
}

#[tokio::test]
async fn check_against_an_unreachable_issuer_exits_1() {
    let issuer = format!("{}/oauth2/default", closed_port_url().await);
    let config = base_config(
        &issuer,
        &api("orders", "/orders", "http://127.0.0.1:8081", ""),
    );
    let started = Instant::now();
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains(&issuer),
        "the message names the issuer: {out:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "check must not retry forever"
    );
}

// 3. TOLLGATE_CONFIG.

#[tokio::test]
async fn tollgate_config_variable_names_the_file() {
    let idp = TestIdp::start().await;
    let config = TempConfig::new(&base_config(
        &idp.issuer,
        &api("named-by-env", "/env", "http://127.0.0.1:8081", ""),
    ));
    let path = config.path().to_string_lossy().into_owned();
    let out = cli(&["check"], None, &[("TOLLGATE_CONFIG", &path)]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("api named-by-env:")),
        "the file the variable names was used: {out:?}"
    );
    assert_eq!(
        printed(&out.stdout, "introspection_url"),
        idp.introspection_url()
    );

    // --config wins over the variable.
    let other = base_config(
        &idp.issuer,
        &api("named-by-flag", "/flag", "http://127.0.0.1:8081", ""),
    );
    let out = cli(&["check"], Some(&other), &[("TOLLGATE_CONFIG", &path)]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.stdout.contains("api named-by-flag:"), "{out:?}");
    assert!(!out.stdout.contains("named-by-env"), "{out:?}");
}

// 4. Logs: one access line per request, never a token or a secret.

/// The requests every log test makes, and the tokens they carried.
struct Exercised {
    tokens: Vec<String>,
    /// `(method, path, status)` of every request, in order.
    requests: Vec<(&'static str, &'static str, u16)>,
}

/// An API accepting header, query and form tokens, with a rule requiring `orders:admin` on
/// `/orders/admin/**`.
fn logging_config(issuer: &str, upstream: &str, format: &str) -> String {
    base_config(
        issuer,
        &api(
            "orders",
            "/orders",
            upstream,
            "token_sources = [\"header\", \"query\", \"form\"]\n[[api.rule]]\npaths = [\"/orders/admin/**\"]\nscopes = [\"orders:admin\"]",
        ),
    )
    .replace("format = \"json\"", &format!("format = {}", toml_string(format)))
}

/// Makes an allowed, a wrong-scope, a bogus-token, a query-token, a form-token and (after stopping
/// the provider) a 503 request, then a marker request; checks each status.
async fn exercise(gateway: &Gateway, idp: TestIdp, upstream: &Upstream) -> Exercised {
    let header_token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let query_token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let form_token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let bogus = "bogus-token-Zq81xPw0".to_owned();
    let bogus_during_outage = "bogus-token-Kd27mNv5".to_owned();
    let c = client();
    let mut requests = Vec::new();

    let resp = c
        .get(gateway.url("/orders/1"))
        .bearer_auth(&header_token)
        .send()
        .await
        .expect("allowed");
    assert_eq!(resp.status(), 200);
    requests.push(("GET", "/orders/1", 200));

    let resp = c
        .get(gateway.url("/orders/admin/1"))
        .bearer_auth(&header_token)
        .send()
        .await
        .expect("wrong scope");
    assert_eq!(resp.status(), 403);
    requests.push(("GET", "/orders/admin/1", 403));

    let resp = c
        .get(gateway.url("/orders/2"))
        .bearer_auth(&bogus)
        .send()
        .await
        .expect("bogus");
    assert_eq!(resp.status(), 401);
    requests.push(("GET", "/orders/2", 401));

    let resp = c
        .get(gateway.url(&format!("/orders/3?access_token={query_token}&page=1")))
        .send()
        .await
        .expect("query token");
    assert_eq!(resp.status(), 200);
    requests.push(("GET", "/orders/3", 200));

    let resp = c
        .post(gateway.url("/orders/4"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("item=7&access_token={form_token}"))
        .send()
        .await
        .expect("form token");
    assert_eq!(resp.status(), 200);
    requests.push(("POST", "/orders/4", 200));
    assert_eq!(upstream.count(), 3);

    // Stop the provider and wait until its port refuses: an unseen token then cannot be validated.
    let port = idp.port;
    drop(idp);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the provider did not stop within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = c
        .get(gateway.url("/orders/5"))
        .bearer_auth(&bogus_during_outage)
        .send()
        .await
        .expect("outage");
    assert_eq!(resp.status(), 503);
    requests.push(("GET", "/orders/5", 503));

    // A last request (no token: 401): once its line is there, every earlier line is too.
    let resp = c
        .get(gateway.url("/orders/marker"))
        .send()
        .await
        .expect("marker");
    assert_eq!(resp.status(), 401);
    requests.push(("GET", "/orders/marker", 401));

    Exercised {
        tokens: vec![
            header_token,
            query_token,
            form_token,
            bogus,
            bogus_during_outage,
        ],
        requests,
    }
}

fn assert_no_secret_in(lines: &[String], exercised: &Exercised) {
    assert!(!lines.is_empty());
    for line in lines {
        for token in &exercised.tokens {
            assert!(!line.contains(token.as_str()), "a token was logged: {line}");
        }
        assert!(
            !line.contains(INTROSPECTION_SECRET),
            "the introspection secret was logged: {line}"
        );
    }
}

/// Waits (5 s) until a log line satisfies `found`.
async fn wait_for_line(gateway: &Gateway, what: &str, found: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gateway.logs().iter().any(|l| found(l)) {
        assert!(
            Instant::now() < deadline,
            "no log line ({what}) within 5 s:\n{}",
            gateway.render_logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn json_logs_have_one_access_line_per_request_and_no_token() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&logging_config(&idp.issuer, &upstream.url(), "json")).await;
    gateway.wait_ready().await;
    let exercised = exercise(&gateway, idp, &upstream).await;

    let n = exercised.requests.len();
    gateway
        .wait_log("the marker's access line", |v| {
            v["message"] == "request" && v["path"] == "/orders/marker"
        })
        .await;
    let access = gateway.access_logs();
    assert_eq!(
        access.len(),
        n,
        "one access line per request:\n{}",
        gateway.render_logs()
    );
    for (line, (method, path, status)) in access.iter().zip(&exercised.requests) {
        for field in [
            "api",
            "method",
            "path",
            "decision",
            "reason",
            "client",
            "client_id",
            "status",
            "latency_ms",
        ] {
            assert!(
                line.get(field).is_some(),
                "access line without {field}: {line}"
            );
        }
        assert_eq!(line["method"], *method, "{line}");
        assert_eq!(
            line["path"], *path,
            "the path only, never the query: {line}"
        );
        assert_eq!(line["status"], *status, "{line}");
        assert!(
            line["latency_ms"].as_f64().is_some_and(|l| l >= 0.0),
            "{line}"
        );
    }
    let allowed = &access[0];
    assert_eq!(allowed["api"], "orders");
    assert_eq!(allowed["decision"], "allowed");
    assert_eq!(allowed["client_id"], "orders-app");
    assert_eq!(allowed["client"], "127.0.0.1");
    assert_eq!(allowed["status"], 200);
    let rejected = &access[1];
    assert_eq!(rejected["api"], "orders");
    assert_eq!(rejected["decision"], "rejected");
    assert_eq!(rejected["reason"], "insufficient_scope");
    assert_eq!(rejected["status"], 403);
    assert_eq!(access[2]["decision"], "rejected");
    assert_eq!(access[2]["status"], 401);
    assert_eq!(access[5]["decision"], "rejected");
    assert_eq!(access[5]["status"], 503);

    assert_no_secret_in(&gateway.logs(), &exercised);
}

#[tokio::test]
async fn text_logs_have_one_access_line_per_request_and_no_token() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    // Standard output is a pipe here, as under any supervisor or log collector.
    let gateway = Gateway::start(&logging_config(&idp.issuer, &upstream.url(), "text")).await;
    gateway.wait_ready().await;
    assert!(
        gateway.json_logs().is_empty(),
        "format = \"text\" writes no JSON"
    );
    let exercised = exercise(&gateway, idp, &upstream).await;

    let is_access = |l: &str| l.contains("tollgate::access") && l.contains("decision=");
    wait_for_line(&gateway, "the marker's access line", |l| {
        is_access(l) && l.contains("path=/orders/marker")
    })
    .await;
    let access: Vec<String> = gateway
        .logs()
        .iter()
        .filter(|l| is_access(l))
        .cloned()
        .collect();
    assert_eq!(
        access.len(),
        exercised.requests.len(),
        "one access line per request:\n{}",
        gateway.render_logs()
    );
    for (line, (method, path, status)) in access.iter().zip(&exercised.requests) {
        for field in [
            "api=",
            "method=",
            "path=",
            "decision=",
            "reason=",
            "client_id=",
            "status=",
            "latency_ms=",
        ] {
            assert!(line.contains(field), "access line without {field}: {line}");
        }
        assert!(line.contains(&format!("method={method}")), "{line}");
        assert!(line.contains(&format!("path={path} ")), "{line}");
        assert!(line.contains(&format!("status={status}")), "{line}");
    }
    assert!(
        access[0].contains("decision=\"allowed\"") || access[0].contains("decision=allowed"),
        "{}",
        access[0]
    );
    assert!(access[0].contains("orders-app"), "{}", access[0]);
    assert!(access[1].contains("insufficient_scope"), "{}", access[1]);

    let coloured: Vec<String> = gateway
        .logs()
        .into_iter()
        .filter(|l| l.contains('\u{1b}'))
        .collect();
    assert!(
        coloured.is_empty(),
        "no ANSI colour codes on a pipe: {coloured:?}"
    );
    assert_no_secret_in(&gateway.logs(), &exercised);
}

#[tokio::test]
async fn check_loads_the_signing_keys_for_jwt_apis_and_refuses_a_jwt_api_without_audience() {
    let idp = TestIdp::start_with(serde_json::json!({"accessTokenFormat": "jwt"})).await;
    let jwt_api = api(
        "orders",
        "/orders",
        "http://127.0.0.1:9",
        "validation = \"jwt\"\naudience = [\"api://default\"]",
    );
    let config = base_config(&idp.issuer, &jwt_api);
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        out.stdout.contains("audience: api://default"),
        "{}",
        out.stdout
    );
    let keys = idp.jwks().await;
    let kid = keys["keys"][0]["kid"].as_str().unwrap();
    assert!(
        out.stdout.contains(&format!("signing keys: 1 ({kid})")),
        "{}",
        out.stdout
    );

    let without = base_config(
        &idp.issuer,
        &api(
            "orders",
            "/orders",
            "http://127.0.0.1:9",
            "validation = \"jwt\"",
        ),
    );
    let out = cli(&["check"], Some(&without), &[]).await;
    assert_config_error(&out, &["api[0].audience", "api://default"]);
    let hmac = config_with(&idp.issuer, "jwt_algorithms = [\"HS256\"]", &jwt_api);
    let out = cli(&["check"], Some(&hmac), &[]).await;
    assert_config_error(
        &out,
        &["provider.jwt_algorithms[0]", "HS256 is not allowed"],
    );
}
