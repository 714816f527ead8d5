//! Token enforcement by cached introspection, end to end: discovery (with its fallback and its
//! exact issuer check), RFC 6750 refusals, scopes and client contracts, rules, the verdict cache
//! (one introspection per token per lifetime, even for 100 concurrent first requests), and provider
//! faults, which fail closed with 503 and are never taken for a verdict.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::fake_idp::{FakeIdp, Reply, active, now};
use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::provider::{Kind, Provider};
use crate::common::upstream::Upstream;
use crate::common::{
    assert_rejected, base_config, client, config_with, eventually, www_authenticate,
};

/// The Okta-shaped API of these tests: `mulescope` required, contracts for orders-app and
/// noscope-app, DELETE needing `orders:admin` too, and CORS preflight public.
fn orders_api(upstream: &Upstream, extra: &str) -> String {
    format!(
        r#"
[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "{}"
scopes = ["mulescope"]
clients = ["orders-app", "noscope-app"]
expose_headers = true
{extra}

[[api.rule]]
methods = ["DELETE"]
paths = ["/orders/*"]
scopes = ["mulescope", "orders:admin"]

[[api.rule]]
methods = ["OPTIONS"]
public = true
"#,
        upstream.url()
    )
}

async fn get(gw: &Gateway, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(gw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request through the gateway")
}

// === the real providers: oidc-provider, and tollgate's own dev provider ===

crate::against_both_providers!(
    a_client_credentials_token_with_mulescope_reaches_the_upstream,
    refusals_follow_rfc_6750_and_never_reach_the_upstream,
    rules_add_scopes_per_method_and_make_preflight_public,
    scope_match_any_accepts_one_of_the_scopes,
);

async fn a_client_credentials_token_with_mulescope_reaches_the_upstream(kind: Kind) {
    let idp = Provider::start(kind, false).await;
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&base_config(&idp.issuer(), &orders_api(&upstream, ""))).await;
    gw.wait_ready().await;
    // Discovery tried RFC 8414 first (oidc-provider has none: 404) and fell back to OpenID Discovery.
    if let Some(stats) = idp.stats().await {
        assert_eq!(stats.discovery_oauth, 1, "{stats:?}");
        assert_eq!(stats.discovery_openid, 1, "{stats:?}");
    }

    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let resp = get(&gw, "/orders/42", Some(&token)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    let seen = upstream.last();
    assert_eq!(seen.target, "/orders/42");
    assert_eq!(
        seen.header("x-agw-client_id").as_deref(),
        Some("orders-app")
    );
    assert_eq!(
        seen.header("x-agw-iss").as_deref(),
        Some(idp.issuer().as_str())
    );
    assert!(!seen.has_header("x-agw-scope") && !seen.has_header("x-agw-exp"));
    if let Some(stats) = idp.stats().await {
        assert_eq!(stats.introspection, 1, "{stats:?}");
    }

    let log = gw.wait_access_logs(1).await.remove(0);
    assert_eq!(log["decision"], "allowed");
    assert_eq!(log["client_id"], "orders-app");
    assert_eq!(log["status"], 200);
}

async fn refusals_follow_rfc_6750_and_never_reach_the_upstream(kind: Kind) {
    let idp = Provider::start(kind, false).await;
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&base_config(&idp.issuer(), &orders_api(&upstream, ""))).await;
    gw.wait_ready().await;

    // No token: a bare challenge (RFC 6750 §3.1).
    let resp = get(&gw, "/orders/1", None).await;
    assert_eq!(
        www_authenticate(&resp).as_deref(),
        Some(r#"Bearer realm="orders""#)
    );
    assert_rejected(resp, 401, None, &upstream).await;

    // A token the provider never issued.
    let resp = get(&gw, "/orders/1", Some("not-a-real-token")).await;
    let body = assert_rejected(resp, 401, Some("invalid_token"), &upstream).await;
    assert_eq!(body["error_description"], "the access token is not active");

    // A token without mulescope (it holds mulescopeX, which must not count).
    let token = idp
        .token("noscope-app", "noscope-secret", "mulescopeX other")
        .await;
    let resp = get(&gw, "/orders/1", Some(&token)).await;
    let challenge = www_authenticate(&resp).unwrap();
    assert!(challenge.contains(r#"scope="mulescope""#), "{challenge}");
    let body = assert_rejected(resp, 403, Some("insufficient_scope"), &upstream).await;
    assert_eq!(body["scope"], "mulescope");

    // The right scope, but no contract for this API.
    let token = idp.token("other-app", "other-secret", "mulescope").await;
    let resp = get(&gw, "/orders/1", Some(&token)).await;
    assert_rejected(resp, 403, Some("access_denied"), &upstream).await;

    // A malformed token (RFC 6750 §3.1: invalid_token), and a malformed request (invalid_request).
    let resp = client()
        .get(gw.url("/orders/1"))
        .header("authorization", "Bearer two words")
        .send()
        .await
        .unwrap();
    assert_rejected(resp, 401, Some("invalid_token"), &upstream).await;
    let resp = client()
        .get(gw.url("/orders/1"))
        .header("authorization", "Bearer")
        .send()
        .await
        .unwrap();
    assert_rejected(resp, 400, Some("invalid_request"), &upstream).await;

    let reasons: Vec<String> = gw
        .wait_access_logs(6)
        .await
        .iter()
        .map(|l| l["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        reasons,
        [
            "missing_token",
            "token_inactive",
            "insufficient_scope",
            "no_contract",
            "token_not_b64token",
            "invalid_request"
        ]
    );
}

async fn rules_add_scopes_per_method_and_make_preflight_public(kind: Kind) {
    let idp = Provider::start(kind, false).await;
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&base_config(&idp.issuer(), &orders_api(&upstream, ""))).await;
    gw.wait_ready().await;
    let plain = idp.token("orders-app", "orders-secret", "mulescope").await;
    let admin = idp
        .token("orders-app", "orders-secret", "mulescope orders:admin")
        .await;

    let delete = |t: &str| {
        client()
            .delete(gw.url("/orders/7"))
            .bearer_auth(t.to_owned())
            .send()
    };
    let resp = delete(&plain).await.unwrap();
    let challenge = www_authenticate(&resp).unwrap();
    assert!(
        challenge.contains(r#"scope="mulescope orders:admin""#),
        "{challenge}"
    );
    assert_rejected(resp, 403, Some("insufficient_scope"), &upstream).await;

    assert_eq!(delete(&admin).await.unwrap().status(), 200);
    assert_eq!(upstream.last().method, "DELETE");

    let resp = client()
        .request(reqwest::Method::OPTIONS, gw.url("/orders/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream.count(), 2);
    let logs = gw.wait_access_logs(3).await;
    assert_eq!(logs[2]["decision"], "public");
}

async fn scope_match_any_accepts_one_of_the_scopes(kind: Kind) {
    let idp = Provider::start(kind, false).await;
    let upstream = Upstream::start().await;
    let api = format!(
        r#"
[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "{}"
scopes = ["orders:admin", "mulescope"]
scope_match = "any"
skip_client_id_validation = true
"#,
        upstream.url()
    );
    let gw = Gateway::start(&base_config(&idp.issuer(), &api)).await;
    gw.wait_ready().await;
    let token = idp.token("other-app", "other-secret", "mulescope").await;
    assert_eq!(get(&gw, "/orders/1", Some(&token)).await.status(), 200);
    assert_eq!(upstream.count(), 1);
    let token = idp.token("noscope-app", "noscope-secret", "other").await;
    let resp = get(&gw, "/orders/1", Some(&token)).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        upstream.count(),
        1,
        "a refused request reached the upstream"
    );
}

#[tokio::test]
async fn each_token_is_introspected_once_per_cache_lifetime() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&base_config(&idp.issuer, &orders_api(&upstream, ""))).await;
    gw.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    for _ in 0..5 {
        assert_eq!(get(&gw, "/orders/1", Some(&token)).await.status(), 200);
    }
    // A verdict of "inactive" is cached too (negative_ttl).
    for _ in 0..3 {
        assert_eq!(get(&gw, "/orders/1", Some("bogus")).await.status(), 401);
    }
    assert_eq!(idp.stats().await.introspection, 2);
    assert_eq!(upstream.count(), 5);
}

#[tokio::test]
async fn a_hundred_concurrent_first_requests_share_one_introspection() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&base_config(&idp.issuer, &orders_api(&upstream, ""))).await;
    gw.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let http = client();
    let requests = (0..100).map(|_| http.get(gw.url("/orders/1")).bearer_auth(&token).send());
    let responses = futures_util::future::join_all(requests).await;
    for r in responses {
        assert_eq!(r.unwrap().status(), 200);
    }
    assert_eq!(idp.stats().await.introspection, 1);
    assert_eq!(upstream.count(), 100);
}

#[tokio::test]
async fn client_secret_post_authenticates_to_the_real_provider() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let config = config_with(
        &idp.issuer,
        r#"introspection_auth = "client_secret_post""#,
        &orders_api(&upstream, ""),
    );
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    assert_eq!(get(&gw, "/orders/1", Some(&token)).await.status(), 200);
}

// === the fake provider: what was sent, claims a real provider would not issue, and faults ===

async fn fake_gateway(extra_api: &str, cache: &str) -> (FakeIdp, Upstream, Gateway) {
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    let config = base_config(
        &idp.issuer(),
        &format!("{cache}\n{}", orders_api(&upstream, extra_api)),
    );
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;
    (idp, upstream, gw)
}

fn with_iss(mut answer: serde_json::Value, issuer: &str) -> serde_json::Value {
    answer["iss"] = issuer.into();
    answer
}

#[tokio::test]
async fn introspection_requests_carry_the_token_hint_and_basic_credentials() {
    let (idp, _upstream, gw) = fake_gateway("", "").await;
    idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 300)));
    assert_eq!(get(&gw, "/orders/1", Some("tok-123")).await.status(), 200);
    let call = idp.introspections().remove(0);
    assert_eq!(call.param("token"), Some("tok-123"));
    assert_eq!(call.param("token_type_hint"), Some("access_token"));
    assert_eq!(call.param("client_secret"), None);
    // base64("tollgate-introspector:introspector-secret")
    assert_eq!(
        call.authorization.as_deref(),
        Some("Basic dG9sbGdhdGUtaW50cm9zcGVjdG9yOmludHJvc3BlY3Rvci1zZWNyZXQ=")
    );
    assert!(
        call.content_type
            .unwrap()
            .starts_with("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn active_answers_with_bad_claims_are_refused() {
    let (idp, upstream, gw) = fake_gateway("", "").await;
    let issuer = idp.issuer();
    let cases = [
        (
            "expired",
            // Beyond the default 30 s `leeway`, which introspection honours like the JWT checks.
            with_iss(active("orders-app", "mulescope", -60), &issuer),
            "the access token has expired",
        ),
        (
            "future",
            {
                let mut a = active("orders-app", "mulescope", 300);
                a["nbf"] = (now() + 120).into();
                a
            },
            "the access token is not valid yet",
        ),
        (
            "other-iss",
            with_iss(
                active("orders-app", "mulescope", 300),
                "https://evil.test/oauth2/default",
            ),
            "the access token was issued by another issuer",
        ),
        (
            "slash-iss",
            with_iss(
                active("orders-app", "mulescope", 300),
                &format!("{issuer}/"),
            ),
            "the access token was issued by another issuer",
        ),
        (
            "case-iss",
            with_iss(
                active("orders-app", "mulescope", 300),
                &issuer.replace("oauth2", "OAuth2"),
            ),
            "the access token was issued by another issuer",
        ),
        (
            "string-exp",
            json!({"active": true, "client_id": "orders-app", "scope": "mulescope", "exp": "99999999999"}),
            "the access token's claims are malformed",
        ),
    ];
    let answers: std::collections::HashMap<&str, serde_json::Value> =
        cases.iter().map(|(t, a, _)| (*t, a.clone())).collect();
    idp.on_introspect(move |token| Reply::Json(200, answers[token].clone()));
    for (token, _, description) in cases {
        let body = assert_rejected(
            get(&gw, "/orders/1", Some(token)).await,
            401,
            Some("invalid_token"),
            &upstream,
        )
        .await;
        assert_eq!(body["error_description"], description, "token {token}");
    }
}

#[tokio::test]
async fn claims_are_compared_exactly_and_okta_dialect_is_understood() {
    let (idp, upstream, gw) = fake_gateway("", "").await;
    let issuer = idp.issuer();
    idp.on_introspect(move |token| {
        let client = match token {
            "okta" => "orders-app",
            "space" => "orders-app ",
            _ => "Orders-App",
        };
        // Okta's dialect: `scp` array and `cid`.
        Reply::Json(
            200,
            json!({"active": true, "scp": ["mulescope"], "cid": client, "uid": "00u1",
            "exp": now() + 300, "iss": issuer}),
        )
    });
    assert_eq!(get(&gw, "/orders/1", Some("okta")).await.status(), 200);
    assert_eq!(upstream.last().header("x-agw-uid").as_deref(), Some("00u1"));
    for token in ["space", "case"] {
        let resp = get(&gw, "/orders/1", Some(token)).await;
        assert_eq!(resp.status(), 403, "token {token}");
    }
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn provider_faults_are_503_never_a_verdict_and_never_cached() {
    let (idp, upstream, gw) = fake_gateway("", "").await;
    // A 429 is a fault too, but it also pauses every call until the provider's reset: see
    // budget.rs.
    let faults: Vec<(&str, Reply)> = vec![
        ("status-500", Reply::Json(500, json!({"active": true}))),
        ("status-401", Reply::Json(401, json!({"active": false}))),
        (
            "not-json",
            Reply::Raw(
                200,
                vec![("content-type".into(), "text/html".into())],
                "<html>oops</html>".into(),
            ),
        ),
        ("array", Reply::Json(200, json!([{"active": true}]))),
        // An object whose `active` is not `true` is a verdict (inactive), not a fault: verdicts.rs.
        ("closed", Reply::Close),
        (
            "slow",
            Reply::Delay(
                Duration::from_secs(4),
                Box::new(Reply::Json(200, active("orders-app", "mulescope", 300))),
            ),
        ),
    ];
    let table: std::collections::HashMap<String, Reply> = faults
        .iter()
        .map(|(t, r)| (t.to_string(), r.clone()))
        .collect();
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    idp.on_introspect(move |token| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::Json(200, active("orders-app", "mulescope", 300))
        } else {
            table[token].clone()
        }
    });
    for (token, _) in &faults {
        let resp = get(&gw, "/orders/1", Some(token)).await;
        assert_rejected(resp, 503, Some("temporarily_unavailable"), &upstream).await;
    }
    // The provider recovers: nothing of the faults was cached, every token is asked about again.
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let before = idp.introspection_count();
    for (token, _) in &faults {
        assert_eq!(
            get(&gw, "/orders/1", Some(token)).await.status(),
            200,
            "token {token}"
        );
    }
    assert_eq!(idp.introspection_count(), before + faults.len());
}

#[tokio::test]
async fn an_active_answer_without_exp_is_not_cached() {
    let (idp, _upstream, gw) = fake_gateway("", "").await;
    idp.on_introspect(|_| {
        Reply::Json(
            200,
            json!({"active": true, "client_id": "orders-app", "scope": "mulescope"}),
        )
    });
    for _ in 0..3 {
        assert_eq!(get(&gw, "/orders/1", Some("no-exp")).await.status(), 200);
    }
    assert_eq!(idp.introspection_count(), 3);
}

#[tokio::test]
async fn positive_entries_live_for_min_of_exp_and_max_ttl() {
    let (idp, _upstream, gw) =
        fake_gateway("", "[cache]\nmax_ttl = \"1s\"\nnegative_ttl = \"1s\"").await;
    idp.on_introspect(|token| match token {
        "good" => Reply::Json(200, active("orders-app", "mulescope", 3600)),
        _ => Reply::Json(200, json!({"active": false})),
    });
    let started = Instant::now();
    assert_eq!(get(&gw, "/orders/1", Some("good")).await.status(), 200);
    assert_eq!(get(&gw, "/orders/1", Some("bad")).await.status(), 401);
    assert_eq!(get(&gw, "/orders/1", Some("good")).await.status(), 200);
    assert_eq!(get(&gw, "/orders/1", Some("bad")).await.status(), 401);
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            idp.introspection_count(),
            2,
            "both verdicts cached within their lifetime"
        );
    }
    // After max_ttl (and negative_ttl), both are asked about again.
    eventually(
        Duration::from_secs(5),
        "re-introspection after max_ttl",
        || async {
            get(&gw, "/orders/1", Some("good")).await;
            get(&gw, "/orders/1", Some("bad")).await;
            idp.introspection_count() >= 4
        },
    )
    .await;
    let tokens: Vec<String> = idp
        .introspections()
        .iter()
        .map(|c| c.param("token").unwrap().to_owned())
        .collect();
    assert!(
        tokens.iter().filter(|t| *t == "good").count() >= 2,
        "{tokens:?}"
    );
    assert!(
        tokens.iter().filter(|t| *t == "bad").count() >= 2,
        "{tokens:?}"
    );
}

#[tokio::test]
async fn stale_if_error_reuses_a_recent_verdict_while_the_provider_fails() {
    let (idp, upstream, gw) =
        fake_gateway("", "[cache]\nmax_ttl = \"1s\"\nstale_if_error = \"60s\"").await;
    idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 3600)));
    assert_eq!(get(&gw, "/orders/1", Some("known")).await.status(), 200);
    idp.on_introspect(|_| Reply::Json(500, json!({})));
    // Once the fresh entry has expired the provider is asked (and fails), yet the token passes.
    eventually(
        Duration::from_secs(5),
        "a failed re-introspection",
        || async {
            assert_eq!(get(&gw, "/orders/1", Some("known")).await.status(), 200);
            idp.introspection_count() >= 2
        },
    )
    .await;
    // A token never seen valid gets no such grace.
    let resp = get(&gw, "/orders/1", Some("unknown")).await;
    assert_eq!(resp.status(), 503);
    assert!(upstream.count() >= 2);
}

#[tokio::test]
async fn readiness_waits_for_discovery_and_retries_it() {
    let idp = FakeIdp::start().await;
    idp.set_discovery(false);
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&base_config(&idp.issuer(), &orders_api(&upstream, ""))).await;
    let ready = || async {
        client()
            .get(gw.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let health = client().get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    eventually(
        Duration::from_secs(5),
        "two failed discovery attempts",
        || async { idp.discovery_count() >= 2 },
    )
    .await;
    assert_eq!(ready().await, 503);
    idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 300)));
    let resp = get(&gw, "/orders/1", Some("tok")).await;
    assert_rejected(resp, 503, Some("temporarily_unavailable"), &upstream).await;

    idp.set_discovery(true);
    gw.wait_ready().await;
    assert_eq!(get(&gw, "/orders/1", Some("tok")).await.status(), 200);
}

#[tokio::test]
async fn a_metadata_issuer_that_differs_is_never_trusted() {
    let idp = FakeIdp::start().await;
    idp.set_metadata_issuer(Some(format!("{}/", idp.issuer())));
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&base_config(&idp.issuer(), &orders_api(&upstream, ""))).await;
    eventually(Duration::from_secs(5), "two discovery attempts", || async {
        idp.discovery_count() >= 2
    })
    .await;
    let status = client()
        .get(gw.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 503);
    idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 300)));
    let resp = get(&gw, "/orders/1", Some("tok")).await;
    assert_rejected(resp, 503, Some("temporarily_unavailable"), &upstream).await;
    assert_eq!(idp.introspection_count(), 0);
    gw.wait_log("issuer mismatch warning", |l| {
        l["message"] == "provider not ready"
            && l["error"]
                .as_str()
                .is_some_and(|e| e.contains("names issuer"))
    })
    .await;
}

#[tokio::test]
async fn client_secret_post_sends_the_credentials_in_the_form() {
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    let config = config_with(
        &idp.issuer(),
        r#"introspection_auth = "client_secret_post""#,
        &orders_api(&upstream, ""),
    );
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;
    idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 300)));
    assert_eq!(get(&gw, "/orders/1", Some("tok")).await.status(), 200);
    let call = idp.introspections().remove(0);
    assert_eq!(call.authorization, None);
    assert_eq!(call.param("client_id"), Some("tollgate-introspector"));
    assert_eq!(call.param("client_secret"), Some("introspector-secret"));
    assert_eq!(call.param("token"), Some("tok"));
}
