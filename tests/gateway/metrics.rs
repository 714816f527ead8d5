//! `/metrics` on the admin listener, in Prometheus' text format: requests by API, decision, reason
//! and status; latency histograms (total and tollgate's own share); introspection calls; cache
//! hits, misses and coalesced waits; upstream errors. And W3C `traceparent` reaches the upstream
//! untouched.

use crate::common::fake_idp::{FakeIdp, Reply, active};
use crate::common::gateway::Gateway;
use crate::common::upstream::{Upstream, closed_port_url};
use crate::common::{base_config, client, sample};

fn api(name: &str, prefix: &str, upstream: &str) -> String {
    format!(
        "[[api]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n"
    )
}

#[tokio::test]
async fn metrics_count_decisions_cache_results_introspections_and_upstream_errors() {
    let idp = FakeIdp::start().await;
    idp.on_introspect(|token| match token {
        "good" => Reply::Json(200, active("orders-app", "mulescope", 300)),
        _ => Reply::Json(200, serde_json::json!({"active": false})),
    });
    let upstream = Upstream::start().await;
    let dead = closed_port_url().await;
    let config = base_config(
        &idp.issuer(),
        &format!(
            "{}{}",
            api("orders", "/orders", &upstream.url()),
            api("dead", "/dead", &dead)
        ),
    );
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;

    let http = client();
    for _ in 0..3 {
        let resp = http
            .get(gw.url("/orders/1"))
            .bearer_auth("good")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        upstream.last().header("traceparent").as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(
        http.get(gw.url("/orders/1"))
            .bearer_auth("bad")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.get(gw.url("/orders/1")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        http.get(gw.url("/dead/1"))
            .bearer_auth("good")
            .send()
            .await
            .unwrap()
            .status(),
        502
    );

    let resp = http.get(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    let allowed = [
        ("api", "orders"),
        ("decision", "allowed"),
        ("status", "200"),
    ];
    assert_eq!(
        sample(&text, "tollgate_requests_total", &allowed),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tollgate_requests_total",
            &[("reason", "token_inactive"), ("status", "401")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tollgate_requests_total",
            &[("reason", "missing_token")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tollgate_upstream_errors_total",
            &[("api", "dead"), ("kind", "upstream_unreachable")]
        ),
        Some(1.0),
        "{text}"
    );
    // "good" was asked about once (then 3 hits: 2 on /orders, 1 on /dead), "bad" once.
    assert_eq!(
        sample(
            &text,
            "tollgate_cache_lookups_total",
            &[("cache", "introspection"), ("result", "miss")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tollgate_cache_lookups_total",
            &[("cache", "introspection"), ("result", "hit")]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tollgate_introspection_requests_total",
            &[("outcome", "active")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tollgate_introspection_requests_total",
            &[("outcome", "inactive")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(idp.introspection_count(), 2);
    assert_eq!(
        sample(
            &text,
            "tollgate_request_duration_seconds_count",
            &[("api", "orders")]
        ),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tollgate_own_duration_seconds_count",
            &[("api", "orders")]
        ),
        Some(5.0),
        "{text}"
    );
    assert!(
        text.contains("tollgate_request_duration_seconds_bucket{api=\"orders\",le=\"0.001\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn concurrent_misses_are_counted_as_coalesced() {
    let idp = FakeIdp::start().await;
    idp.on_introspect(|_| {
        Reply::Delay(
            std::time::Duration::from_millis(300),
            Box::new(Reply::Json(200, active("orders-app", "mulescope", 300))),
        )
    });
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&base_config(
        &idp.issuer(),
        &api("orders", "/orders", &upstream.url()),
    ))
    .await;
    gw.wait_ready().await;
    let http = client();
    let all = futures_util::future::join_all(
        (0..20).map(|_| http.get(gw.url("/orders/1")).bearer_auth("new").send()),
    )
    .await;
    assert!(all.into_iter().all(|r| r.unwrap().status() == 200));
    assert_eq!(idp.introspection_count(), 1);
    let text = gw.metrics().await;
    let miss = sample(&text, "tollgate_cache_lookups_total", &[("result", "miss")]).unwrap_or(0.0);
    let coalesced = sample(
        &text,
        "tollgate_cache_lookups_total",
        &[("result", "coalesced")],
    )
    .unwrap_or(0.0);
    let hit = sample(&text, "tollgate_cache_lookups_total", &[("result", "hit")]).unwrap_or(0.0);
    assert_eq!(miss, 1.0, "{text}");
    assert_eq!(miss + coalesced + hit, 20.0, "{text}");
    assert!(coalesced >= 1.0, "{text}");
}
