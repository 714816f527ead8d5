//! The provider's call budget, end to end against the fault-injecting fake provider (it counts the
//! calls, and how many were under way at once): `max_inflight`, `introspection_rate`, Okta's
//! `X-Rate-Limit-*` headers and 429s, and each client address's `misses_per_client` share. Cache
//! misses past the budget fail closed (503 `Retry-After`, or 429 for a client over its share) and
//! never reach the provider or the upstream; cached tokens never wait.

use std::time::Duration;

use serde_json::Value;

use crate::common::fake_idp::{FakeIdp, Reply, active, now};
use crate::common::gateway::Gateway;
use crate::common::upstream::Upstream;
use crate::common::{
    assert_refusal, assert_rejected, client, config_with, eventually, sample, with_listen,
};

/// A gateway in front of `upstream` whose provider is `idp`, with `provider` written into its
/// `[provider]` table and `listen` into `[listen]`. Every token is active until a test says otherwise.
async fn gateway(idp: &FakeIdp, upstream: &Upstream, provider: &str, listen: &str) -> Gateway {
    let issuer = idp.issuer();
    let answer = active_at(&issuer);
    idp.on_introspect(move |_| Reply::Json(200, answer.clone()));
    let api = format!(
        "[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"{}\"\nclients = [\"orders-app\"]\n",
        upstream.url()
    );
    let config = with_listen(&config_with(&issuer, provider, &api), listen);
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;
    gw
}

fn active_at(issuer: &str) -> Value {
    let mut answer = active("orders-app", "mulescope", 300);
    answer["iss"] = issuer.into();
    answer
}

async fn get(gw: &Gateway, token: &str, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut req = client().get(gw.url("/orders/1")).bearer_auth(token);
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.expect("request through the gateway")
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in whole seconds; got {:?}", resp.headers()))
}

async fn metric(gw: &Gateway, name: &str) -> Option<f64> {
    sample(&gw.metrics().await, name, &[])
}

#[tokio::test]
async fn misses_beyond_max_inflight_wait_then_get_503_and_never_reach_the_provider() {
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(
        &idp,
        &upstream,
        "max_inflight = 2\nbudget_wait = \"200ms\"",
        "",
    )
    .await;
    let answer = active_at(&idp.issuer());
    idp.on_introspect(move |_| {
        Reply::Delay(
            Duration::from_millis(1500),
            Box::new(Reply::Json(200, answer.clone())),
        )
    });
    let requests = (0..6).map(|i| {
        let gw = &gw;
        async move { get(gw, &format!("new-token-{i}"), None).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    let mut refused = 0;
    for resp in answers {
        if resp.status() == 200 {
            continue;
        }
        assert_eq!(retry_after(&resp), 1);
        assert_refusal(resp, 503, Some("temporarily_unavailable")).await;
        refused += 1;
    }
    assert_eq!(refused, 4, "two slots, six new tokens");
    assert_eq!(
        idp.introspection_count(),
        2,
        "the refused ones cost no call"
    );
    assert_eq!(idp.most_concurrent_introspections(), 2);
    assert_eq!(upstream.count(), 2);
    let refusals = metric(&gw, "tollgate_provider_budget_refusals_total").await;
    assert_eq!(refusals, Some(4.0));
}

#[tokio::test]
async fn cached_tokens_never_wait_on_a_spent_budget() {
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(
        &idp,
        &upstream,
        "max_inflight = 1\nbudget_wait = \"5s\"",
        "",
    )
    .await;
    assert_eq!(get(&gw, "known", None).await.status(), 200);
    // The one slot is now held by a slow call for a new token.
    let answer = active_at(&idp.issuer());
    idp.on_introspect(move |_| {
        // Within the provider's 2 s request_timeout.
        Reply::Delay(
            Duration::from_millis(1500),
            Box::new(Reply::Json(200, answer.clone())),
        )
    });
    let slow = tokio::spawn({
        let url = gw.url("/orders/1");
        async move { client().get(url).bearer_auth("slow").send().await }
    });
    eventually(Duration::from_secs(3), "the slow call began", || async {
        idp.introspection_count() == 2
    })
    .await;
    let cached = tokio::time::timeout(Duration::from_secs(1), get(&gw, "known", None))
        .await
        .expect("a cached token is answered without waiting for the budget");
    assert_eq!(cached.status(), 200);
    assert_eq!(idp.introspection_count(), 2);
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn introspection_rate_admits_its_burst_and_refuses_the_rest_with_503() {
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(
        &idp,
        &upstream,
        "introspection_rate = \"2/h\"\nbudget_wait = \"100ms\"",
        "",
    )
    .await;
    for i in 0..2 {
        assert_eq!(get(&gw, &format!("t{i}"), None).await.status(), 200);
    }
    for i in 2..5 {
        let resp = get(&gw, &format!("t{i}"), None).await;
        assert_refusal(resp, 503, Some("temporarily_unavailable")).await;
    }
    assert_eq!(idp.introspection_count(), 2);
    assert_eq!(upstream.count(), 2);
    // The admitted tokens are cached: they pass whatever the budget says.
    assert_eq!(get(&gw, "t0", None).await.status(), 200);
    assert_eq!(idp.introspection_count(), 2);
}

/// Okta's answer headers: the limit of the window, what is left of it, and when it resets.
fn okta_headers(limit: u64, remaining: u64, reset_in: i64) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-rate-limit-limit".into(), limit.to_string()),
        ("x-rate-limit-remaining".into(), remaining.to_string()),
        ("x-rate-limit-reset".into(), (now() + reset_in).to_string()),
    ]
}

#[tokio::test]
async fn okta_headers_below_the_low_water_mark_pause_calls_until_the_window_resets() {
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&idp, &upstream, "rate_limit_low_water = 5", "").await;
    let body = active_at(&idp.issuer()).to_string();
    idp.on_introspect(move |_| Reply::Raw(200, okta_headers(600, 3, 20), body.clone()));
    // The answer that says the window is nearly spent is still a good answer.
    assert_eq!(get(&gw, "first", None).await.status(), 200);
    assert_eq!(
        metric(&gw, "tollgate_provider_rate_limit_remaining").await,
        Some(3.0)
    );
    assert_eq!(
        metric(&gw, "tollgate_provider_rate_limit").await,
        Some(600.0)
    );

    let resp = get(&gw, "second", None).await;
    let wait = retry_after(&resp);
    assert!(
        (15..=20).contains(&wait),
        "Retry-After {wait}: the seconds left"
    );
    assert_refusal(resp, 503, Some("temporarily_unavailable")).await;
    assert_eq!(idp.introspection_count(), 1, "no call while paused");
    assert_eq!(get(&gw, "first", None).await.status(), 200, "cached");
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn a_429_from_the_provider_pauses_calls_for_everyone_until_its_reset() {
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&idp, &upstream, "", "").await;
    idp.on_introspect(|_| {
        let body = r#"{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit"}"#;
        Reply::Raw(429, okta_headers(600, 0, 30), body.into())
    });
    let resp = get(&gw, "a", None).await;
    let wait = retry_after(&resp);
    assert!((25..=30).contains(&wait), "Retry-After {wait}");
    assert_rejected(resp, 503, Some("temporarily_unavailable"), &upstream).await;
    let resp = get(&gw, "b", None).await;
    assert!(retry_after(&resp) <= wait);
    assert_rejected(resp, 503, Some("temporarily_unavailable"), &upstream).await;
    assert_eq!(idp.introspection_count(), 1, "the pause costs no calls");
    assert_eq!(
        metric(&gw, "tollgate_provider_rate_limit_remaining").await,
        Some(0.0)
    );
}

#[tokio::test]
async fn each_client_address_has_a_share_of_misses_and_gets_429_past_it() {
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(
        &idp,
        &upstream,
        "misses_per_client = \"3/h\"",
        "trusted_proxies = [\"127.0.0.1\"]",
    )
    .await;
    let sprayer = Some("203.0.113.7");
    for i in 0..3 {
        assert_eq!(get(&gw, &format!("s{i}"), sprayer).await.status(), 200);
    }
    let resp = get(&gw, "s3", sprayer).await;
    assert_eq!(resp.status(), 429);
    assert!(retry_after(&resp) > 60, "the next miss is 20 minutes away");
    assert!(resp.headers().get("www-authenticate").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests");
    assert_eq!(idp.introspection_count(), 3, "a refused miss costs no call");
    assert_eq!(upstream.count(), 3);
    // Hits are not misses; another address has its own share; an IPv6 host's share is its /64.
    assert_eq!(get(&gw, "s0", sprayer).await.status(), 200);
    assert_eq!(get(&gw, "other", Some("203.0.113.8")).await.status(), 200);
    for i in 0..3 {
        let host = format!("2001:db8::{}", i + 1);
        assert_eq!(
            get(&gw, &format!("v6-{i}"), Some(&host)).await.status(),
            200
        );
    }
    let resp = get(&gw, "v6-3", Some("2001:db8::ffff")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(idp.introspection_count(), 7);
    assert_eq!(
        metric(&gw, "tollgate_client_misses_refused_total").await,
        Some(2.0)
    );
}

#[tokio::test]
async fn an_untrusted_peer_cannot_multiply_its_share_with_x_forwarded_for() {
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&idp, &upstream, "misses_per_client = \"2/h\"", "").await;
    for i in 0..2 {
        let spoofed = format!("198.51.100.{i}");
        assert_eq!(
            get(&gw, &format!("t{i}"), Some(&spoofed)).await.status(),
            200
        );
    }
    let resp = get(&gw, "t2", Some("198.51.100.99")).await;
    assert_eq!(
        resp.status(),
        429,
        "counted against the peer, whatever it claims"
    );
    assert_eq!(idp.introspection_count(), 2);
    assert_eq!(upstream.count(), 2);
}
