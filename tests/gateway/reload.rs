//! Hot reload: SIGHUP or a change of the file applies a new configuration without a restart, with
//! no request failed and no connection dropped by the swap; an invalid file leaves the running
//! configuration in force (logged and counted); caches survive a reload that keeps the provider.

use std::time::Duration;

use crate::common::fake_idp::{FakeIdp, Reply, active};
use crate::common::gateway::Gateway;
use crate::common::upstream::{Upstream, UpstreamBehaviour};
use crate::common::{base_config, client};

fn config(issuer: &str, upstream: &Upstream, scopes: &str) -> String {
    base_config(
        issuer,
        &format!(
            "[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"{}\"\nscopes = [{scopes}]\nclients = [\"orders-app\"]\n",
            upstream.url()
        ),
    )
}

async fn status(http: &reqwest::Client, gw: &Gateway) -> u16 {
    http.get(gw.url("/orders/1"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn sighup_applies_a_new_policy_and_keeps_the_cache_and_the_connection() {
    let idp = FakeIdp::start().await;
    idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 300)));
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&config(&idp.issuer(), &upstream, "\"mulescope\"")).await;
    gw.wait_ready().await;
    // One client, so one kept-alive connection across the reload.
    let http = client();
    assert_eq!(status(&http, &gw).await, 200);

    gw.rewrite_config(&config(
        &idp.issuer(),
        &upstream,
        "\"mulescope\", \"orders:admin\"",
    ));
    gw.signal("HUP").await;
    // Logged once swapped: every request from now on meets the new policy.
    gw.wait_log("the reload", |l| {
        l["message"] == "configuration reloaded" && l["kept_caches"] == true
    })
    .await;
    assert_eq!(status(&http, &gw).await, 403);
    // The verdict cached before the reload served the request after it.
    assert_eq!(idp.introspection_count(), 1);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn an_invalid_file_leaves_the_running_configuration_in_force() {
    let idp = FakeIdp::start().await;
    idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 300)));
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&config(&idp.issuer(), &upstream, "\"mulescope\"")).await;
    gw.wait_ready().await;
    let http = client();
    assert_eq!(status(&http, &gw).await, 200);

    let broken = config(&idp.issuer(), &upstream, "\"mulescope\"")
        .replace("clients = [\"orders-app\"]", "clients = []");
    gw.rewrite_config(&broken);
    gw.signal("HUP").await;
    let refused = gw
        .wait_log("the refusal", |l| {
            l["message"] == "configuration reload refused: the running configuration stays"
        })
        .await;
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("api[0].clients"),
        "{refused}"
    );
    assert_eq!(
        status(&http, &gw).await,
        200,
        "the old configuration still serves"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("tollgate_config_reloads_total{outcome=\"invalid\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_changed_file_is_picked_up_without_a_signal_and_requests_in_flight_finish() {
    let idp = FakeIdp::start().await;
    idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 300)));
    let upstream =
        Upstream::start_with(UpstreamBehaviour::Delay(Duration::from_millis(1500))).await;
    let gw = Gateway::start(&config(&idp.issuer(), &upstream, "\"mulescope\"")).await;
    gw.wait_ready().await;
    let http = client();
    let in_flight = tokio::spawn(http.get(gw.url("/orders/1")).bearer_auth("tok").send());
    upstream.wait_count(1).await;

    gw.rewrite_config(&config(&idp.issuer(), &upstream, "\"other\""));
    gw.wait_log("the reload", |l| l["message"] == "configuration reloaded")
        .await;
    let resp = in_flight
        .await
        .unwrap()
        .expect("the request under way completes");
    assert_eq!(resp.status(), 200);
    assert_eq!(status(&http, &gw).await, 403);
}

#[tokio::test]
async fn turning_on_exposed_headers_rebuilds_the_cache_so_the_headers_appear() {
    // With no API exposing headers, cached principals drop their attributes; a reload that
    // exposes them must not serve the old, attribute-less verdicts.
    let idp = FakeIdp::start().await;
    idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 300)));
    let upstream = Upstream::start().await;
    let plain = config(&idp.issuer(), &upstream, "\"mulescope\"");
    let gw = Gateway::start(&plain).await;
    gw.wait_ready().await;
    let http = client();
    assert_eq!(status(&http, &gw).await, 200);
    assert!(!upstream.last().has_header("x-agw-sub"));

    gw.rewrite_config(&plain.replace("scopes = [", "expose_headers = true\nscopes = ["));
    gw.signal("HUP").await;
    gw.wait_log("the reload", |l| {
        l["message"] == "configuration reloaded" && l["kept_caches"] == false
    })
    .await;
    assert_eq!(status(&http, &gw).await, 200);
    assert_eq!(upstream.last().headers_named("x-agw-sub"), ["orders-app"]);
    assert_eq!(
        idp.introspection_count(),
        2,
        "the token was asked about again"
    );
}
