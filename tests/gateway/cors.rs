//! CORS at the gateway (`[api.cors]`): preflights answered by tollgate itself (204 with the grant, or
//! 403 `cors_refused`), never forwarded and needing no token or provider call; the grant on every
//! other answer to an allowed origin, refusals included, replacing the upstream's own; `*`; config
//! errors; `check`; and the example configuration, which now uses `[api.cors]` instead of a public
//! `OPTIONS` rule.
//!
//! Every test runs the real gateway binary in front of the recording upstream, with the real test
//! OpenID provider (a fake one only for the outage).

use std::collections::HashMap;

use reqwest::Method;
use serde_json::json;

use crate::common::fake_idp::{FakeIdp, Reply};
use crate::common::gateway::{CliOutput, Gateway, cli};
use crate::common::idp::TestIdp;
use crate::common::upstream::{Upstream, UpstreamBehaviour};
use crate::common::{assert_rejected, base_config, client, toml_string, www_authenticate};

/// The browser app the tests' APIs allow.
const APP: &str = "https://app.example.com";
/// An origin they do not.
const OTHER: &str = "https://evil.example.com";
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// `/orders` on `upstream` (mulescope, contracts for orders-app and noscope-app) with CORS for
/// `APP` and `http://localhost:3000`, credentials on; then `extra` (more `[[api]]` tables).
fn orders_api(upstream: &Upstream, extra: &str) -> String {
    format!(
        r#"
[[api]]
name = "orders"
path_prefix = "/orders"
upstream = {}
scopes = ["mulescope"]
clients = ["orders-app", "noscope-app"]

[api.cors]
allowed_origins = ["{APP}", "http://localhost:3000"]
allowed_methods = ["GET", "POST", "DELETE"]
allowed_headers = ["authorization", "content-type", "x-request-id"]
expose_headers = ["x-upstream"]
max_age = "10m"
allow_credentials = true
{extra}
"#,
        toml_string(&upstream.url())
    )
}

async fn gateway(config: &str) -> Gateway {
    let gw = Gateway::start(config).await;
    gw.wait_ready().await;
    gw
}

/// A preflight for `method` (and `headers`, when given) from `origin`.
async fn preflight(
    gw: &Gateway,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> reqwest::Response {
    let mut req = client()
        .request(Method::OPTIONS, gw.url("/orders/42"))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(h) = headers {
        req = req.header("access-control-request-headers", h);
    }
    req.send().await.expect("preflight through the gateway")
}

/// A GET from `origin` (when given) with `token` (when given).
async fn get(gw: &Gateway, origin: Option<&str>, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(gw.url("/orders/42"));
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request through the gateway")
}

/// Every value of `name` in the answer, in order.
fn all(resp: &reqwest::Response, name: &str) -> Vec<String> {
    resp.headers()
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

fn one(resp: &reqwest::Response, name: &str) -> Option<String> {
    let values = all(resp, name);
    assert!(values.len() <= 1, "{name} more than once: {values:?}");
    values.into_iter().next()
}

/// The `Vary` entries of the answer, however they are split over lines.
fn vary(resp: &reqwest::Response) -> Vec<String> {
    all(resp, "vary")
        .iter()
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect()
}

/// Asserts the grant to `APP` of `orders_api` on an actual answer.
fn assert_granted_to_app(resp: &reqwest::Response) {
    assert_eq!(
        one(resp, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert_eq!(
        one(resp, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(
        one(resp, "access-control-expose-headers").as_deref(),
        Some("x-upstream")
    );
    assert!(vary(resp).contains(&"origin".to_owned()), "{resp:?}");
}

/// Asserts no grant at all, but `Vary: Origin` (the answer would differ for another origin).
fn assert_not_granted(resp: &reqwest::Response) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-expose-headers",
    ] {
        assert_eq!(one(resp, name), None, "{name} on {resp:?}");
    }
    assert!(vary(resp).contains(&"origin".to_owned()), "{resp:?}");
}

// === preflights ===

#[tokio::test]
async fn a_preflight_is_answered_at_the_gateway_without_token_upstream_or_provider() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&base_config(&idp.issuer, &orders_api(&upstream, ""))).await;

    let resp = client()
        .request(Method::OPTIONS, gw.url("/orders/42"))
        .header("origin", APP)
        .header("access-control-request-method", "DELETE")
        .header(
            "access-control-request-headers",
            "Authorization,content-type",
        )
        // Not a token anyone checks: a preflight is answered before any token is looked at.
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204, "{resp:?}");
    let header = |n: &str| one(&resp, n);
    assert_eq!(header("access-control-allow-origin").as_deref(), Some(APP));
    assert_eq!(
        header("access-control-allow-methods").as_deref(),
        Some("GET, POST, DELETE")
    );
    assert_eq!(
        header("access-control-allow-headers").as_deref(),
        Some("authorization, content-type")
    );
    assert_eq!(header("access-control-max-age").as_deref(), Some("600"));
    assert_eq!(
        header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(header("vary").as_deref(), Some(PREFLIGHT_VARY));
    assert_eq!(www_authenticate(&resp), None);
    assert!(resp.bytes().await.unwrap().is_empty());

    // No requested headers: none granted. The other allowed origin gets its own name back.
    let resp = preflight(&gw, "http://localhost:3000", "GET", None).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        one(&resp, "access-control-allow-origin").as_deref(),
        Some("http://localhost:3000")
    );
    assert_eq!(one(&resp, "access-control-allow-headers"), None);

    upstream.assert_not_reached();
    assert_eq!(idp.stats().await.introspection, 0, "no provider call");
    let logs = gw.wait_access_logs(2).await;
    assert_eq!(logs[0]["decision"], "preflight", "{logs:?}");
    assert_eq!(logs[0]["status"], 204, "{logs:?}");
}

#[tokio::test]
async fn a_preflight_for_an_origin_method_or_header_not_allowed_is_refused() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&base_config(&idp.issuer, &orders_api(&upstream, ""))).await;

    // Exact origins only: no case folding, suffixes, ports or `null`.
    for origin in [
        OTHER,
        "null",
        "https://APP.example.com",
        "https://app.example.com.evil.test",
        "https://app.example.com:8443",
        "http://app.example.com",
    ] {
        let resp = preflight(&gw, origin, "GET", None).await;
        assert_eq!(one(&resp, "access-control-allow-origin"), None, "{origin}");
        assert_eq!(one(&resp, "vary").as_deref(), Some(PREFLIGHT_VARY));
        let body = assert_rejected(resp, 403, Some("cors_refused"), &upstream).await;
        assert_eq!(
            body["error_description"], "the origin is not allowed to call this API",
            "{origin}"
        );
    }
    // From the allowed origin, an unlisted method (methods compare byte for byte) or header.
    for (method, headers, description) in [
        (
            "PUT",
            None,
            "the requested method is not allowed from other origins",
        ),
        (
            "delete",
            None,
            "the requested method is not allowed from other origins",
        ),
        (
            "GET",
            Some("authorization, x-api-key"),
            "a requested header is not allowed from other origins",
        ),
    ] {
        let resp = preflight(&gw, APP, method, headers).await;
        // The origin is allowed, so even the refusal names it.
        assert_eq!(
            one(&resp, "access-control-allow-origin").as_deref(),
            Some(APP)
        );
        let body = assert_rejected(resp, 403, Some("cors_refused"), &upstream).await;
        assert_eq!(
            body["error_description"], description,
            "{method} {headers:?}"
        );
    }
    assert_eq!(idp.stats().await.introspection, 0, "no provider call");
    let logs = gw.wait_access_logs(9).await;
    assert!(
        logs.iter().all(|l| l["reason"] == "cors_refused"),
        "{logs:?}"
    );
}

#[tokio::test]
async fn an_options_that_is_no_preflight_needs_a_token_and_apis_without_cors_are_unchanged() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let plain = format!(
        "[[api]]\nname = \"plain\"\npath_prefix = \"/plain\"\nupstream = {}\nskip_client_id_validation = true\n",
        toml_string(&upstream.url())
    );
    let gw = gateway(&base_config(&idp.issuer, &orders_api(&upstream, &plain))).await;

    // OPTIONS with an Origin but no Access-Control-Request-Method: an ordinary request.
    let options = |path: &str| {
        client()
            .request(Method::OPTIONS, gw.url(path))
            .header("origin", APP)
    };
    let resp = options("/orders/42").send().await.unwrap();
    assert_granted_to_app(&resp);
    assert_rejected(resp, 401, None, &upstream).await;

    // Without [api.cors], a preflight is an ordinary request too, as before: no grant, no Vary.
    let resp = options("/plain/1")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(one(&resp, "access-control-allow-origin"), None);
    assert_eq!(one(&resp, "vary"), None);
    assert_rejected(resp, 401, None, &upstream).await;

    // With a token, the non-preflight OPTIONS is forwarded like any request.
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let resp = options("/orders/42")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_granted_to_app(&resp);
    assert_eq!(upstream.last().method, "OPTIONS");
}

// === actual requests ===

#[tokio::test]
async fn refusals_to_an_allowed_origin_carry_the_grant_so_the_app_can_read_them() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&base_config(&idp.issuer, &orders_api(&upstream, ""))).await;

    let resp = get(&gw, Some(APP), None).await;
    assert_granted_to_app(&resp);
    assert_eq!(
        www_authenticate(&resp).as_deref(),
        Some(r#"Bearer realm="orders""#)
    );
    assert_rejected(resp, 401, None, &upstream).await;

    let resp = get(&gw, Some(APP), Some("not-a-live-token")).await;
    assert_granted_to_app(&resp);
    assert_rejected(resp, 401, Some("invalid_token"), &upstream).await;

    let noscope = idp.token("noscope-app", "noscope-secret", "other").await;
    let resp = get(&gw, Some(APP), Some(&noscope)).await;
    assert_granted_to_app(&resp);
    assert_rejected(resp, 403, Some("insufficient_scope"), &upstream).await;

    // Another origin is refused just the same, and granted nothing.
    let resp = get(&gw, Some(OTHER), None).await;
    assert_not_granted(&resp);
    assert_rejected(resp, 401, None, &upstream).await;
}

#[tokio::test]
async fn a_provider_outage_is_a_503_the_app_can_read() {
    let idp = FakeIdp::start().await;
    idp.on_introspect(|_| Reply::Json(500, json!({})));
    let upstream = Upstream::start().await;
    let gw = gateway(&base_config(&idp.issuer(), &orders_api(&upstream, ""))).await;

    let resp = get(&gw, Some(APP), Some("some-token")).await;
    assert_granted_to_app(&resp);
    assert_rejected(resp, 503, Some("temporarily_unavailable"), &upstream).await;
    assert_eq!(idp.introspection_count(), 1);
}

#[tokio::test]
async fn upstream_answers_carry_the_gateways_grant_not_the_upstreams() {
    let idp = TestIdp::start().await;
    // An upstream with a CORS policy of its own, broader than the gateway's.
    let upstream = Upstream::start_with(UpstreamBehaviour::Headers(vec![
        ("access-control-allow-origin", "*"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "x-internal"),
        ("access-control-max-age", "86400"),
        ("vary", "Accept-Encoding"),
    ]))
    .await;
    let gw = gateway(&base_config(&idp.issuer, &orders_api(&upstream, ""))).await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;

    let resp = get(&gw, Some(APP), Some(&token)).await;
    assert_eq!(resp.status(), 200);
    assert_granted_to_app(&resp);
    assert_eq!(one(&resp, "access-control-max-age"), None);
    assert_eq!(vary(&resp), ["accept-encoding", "origin"], "appended");
    assert_eq!(one(&resp, "x-upstream").as_deref(), Some("yes"));
    // The upstream still learns who asked.
    assert_eq!(upstream.last().header("origin").as_deref(), Some(APP));

    // Another origin, or none: served as usual (CORS is the browser's check), but granted nothing.
    for origin in [Some(OTHER), None] {
        let resp = get(&gw, origin, Some(&token)).await;
        assert_eq!(resp.status(), 200, "{origin:?}");
        assert_not_granted(&resp);
        assert_eq!(one(&resp, "access-control-max-age"), None);
    }
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn a_wildcard_grants_every_origin_without_credentials() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let api = format!(
        "[[api]]\nname = \"open\"\npath_prefix = \"/orders\"\nupstream = {}\nskip_client_id_validation = true\n\
         [api.cors]\nallowed_origins = [\"*\"]\nallowed_methods = [\"*\"]\nallowed_headers = [\"*\"]\n",
        toml_string(&upstream.url())
    );
    let gw = gateway(&base_config(&idp.issuer, &api)).await;

    let resp = preflight(
        &gw,
        "https://anyone.test",
        "PATCH",
        Some("Authorization, X-Custom"),
    )
    .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        one(&resp, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(
        one(&resp, "access-control-allow-methods").as_deref(),
        Some("*")
    );
    // Named, not `*`: Fetch never lets a wildcard cover Authorization.
    assert_eq!(
        one(&resp, "access-control-allow-headers").as_deref(),
        Some("authorization, x-custom")
    );
    assert_eq!(one(&resp, "access-control-allow-credentials"), None);
    assert_eq!(one(&resp, "access-control-max-age"), None);

    let resp = get(&gw, Some("https://anyone.test"), None).await;
    assert_eq!(
        one(&resp, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(one(&resp, "access-control-allow-credentials"), None);
    assert_rejected(resp, 401, None, &upstream).await;
}

// === configuration ===

/// A syntactically fine config for an issuer nothing is asked of (config errors come first).
const QUIET_ISSUER: &str = "http://127.0.0.1:9/oauth2/default";

fn assert_config_error(out: &CliOutput, needles: &[&str]) {
    assert_eq!(out.status, 2, "a bad configuration exits 2: {out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    for needle in needles {
        assert!(out.stderr.contains(needle), "{needle:?} missing: {out:?}");
    }
}

#[tokio::test]
async fn bad_cors_settings_are_config_errors_naming_the_key() {
    let cors = |body: &str| {
        base_config(
            QUIET_ISSUER,
            &format!(
                "[[api]]\nname = \"orders\"\nupstream = \"http://127.0.0.1:8081\"\nskip_client_id_validation = true\n[api.cors]\n{body}\n"
            ),
        )
    };
    let cases = [
        (
            "allowed_origins = [\"*\"]\nallow_credentials = true",
            ["api[0].cors.allowed_origins[0]", "allow_credentials"],
        ),
        (
            "allowed_origins = [\"https://a.test\"]\nexpose_headers = [\"*\"]\nallow_credentials = true",
            ["api[0].cors.expose_headers[0]", "allow_credentials"],
        ),
        (
            "allowed_origins = [\"https://a.test\", \"https://a.test/app\"]",
            ["api[0].cors.allowed_origins[1]", "write \"https://a.test\""],
        ),
        (
            "allowed_origins = [\"null\"]",
            ["api[0].cors.allowed_origins[0]", "allows everyone"],
        ),
        (
            "origins = [\"https://a.test\"]",
            ["api[0].cors.origins", "unknown field"],
        ),
        (
            "allowed_origins = [\"https://a.test\"]\nmax_age = \"ten minutes\"",
            ["api[0].cors.max_age", "invalid duration"],
        ),
    ];
    for (body, needles) in cases {
        let out = cli(&["check"], Some(&cors(body)), &[]).await;
        assert_config_error(&out, &needles);
    }
}

#[tokio::test]
async fn check_prints_the_cors_policy_in_force() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let out = cli(
        &["check"],
        Some(&base_config(&idp.issuer, &orders_api(&upstream, ""))),
        &[],
    )
    .await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        out.stdout.contains(
            "  cors: origins [http://localhost:3000 https://app.example.com], methods GET, POST, DELETE, \
             headers [authorization,content-type,x-request-id], expose [x-upstream], max_age 600, credentials true"
        ),
        "{}",
        out.stdout
    );
}

// === the example configuration ===

#[tokio::test]
async fn the_example_config_answers_preflights_and_forwards_no_tokenless_options() {
    // JWT access tokens, introspected: like Okta's, they carry the `aud` the example requires.
    let idp = TestIdp::start_with(json!({"accessTokenFormat": "jwt"})).await;
    let upstream = Upstream::start().await;
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/tollgate.toml"))
            .unwrap();
    let mut config = example.clone();
    let swaps: HashMap<&str, String> = HashMap::from([
        (
            "issuer = \"https://${OKTA_DOMAIN}/oauth2/default\"",
            format!("issuer = {}", toml_string(&idp.issuer)),
        ),
        (
            "address = \"0.0.0.0:8080\"",
            "address = \"127.0.0.1:0\"".to_owned(),
        ),
        (
            "admin_address = \"127.0.0.1:9901\"",
            "admin_address = \"127.0.0.1:0\"".to_owned(),
        ),
        (
            "upstream = \"http://127.0.0.1:8081\"",
            format!("upstream = {}", toml_string(&upstream.url())),
        ),
    ]);
    for (from, to) in &swaps {
        assert!(config.contains(from), "the example has no {from}");
        config = config.replacen(from, to, 1);
    }
    let env = [
        ("OKTA_INTROSPECTION_CLIENT_ID", "tollgate-introspector"),
        ("OKTA_INTROSPECTION_CLIENT_SECRET", "introspector-secret"),
        ("ORDERS_CLIENT_ID", "orders-app"),
    ];
    let gw = Gateway::start_with_env(&config, &env).await;
    gw.wait_ready().await;

    let resp = preflight(&gw, APP, "DELETE", Some("authorization")).await;
    assert_eq!(resp.status(), 204, "{resp:?}");
    assert_eq!(
        one(&resp, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    // A public OPTIONS rule forwarded every OPTIONS without a token; now one needs a token.
    let resp = client()
        .request(Method::OPTIONS, gw.url("/orders/42"))
        .send()
        .await
        .unwrap();
    assert_rejected(resp, 401, None, &upstream).await;

    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let resp = get(&gw, Some(APP), Some(&token)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        one(&resp, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert_eq!(idp.stats().await.introspection, 1);
}
