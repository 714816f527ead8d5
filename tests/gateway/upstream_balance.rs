//! Several upstream endpoints: round robin and least-request balancing, passive health (an
//! endpoint that fails to connect rests, and requests go on to the others), and safe retries: an
//! idempotent request that could not connect tries another endpoint, a bodiless one whose pooled
//! connection the upstream closed is sent again, and a request body is never sent twice.

use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::upstream::{ClosingUpstream, Upstream, closed_port_url};
use crate::common::{base_config, client, toml_string};

struct Setup {
    _idp: TestIdp,
    gateway: Gateway,
    token: String,
}

/// The orders API in front of `urls`, with `extra` keys, and a token for it.
async fn setup(urls: &[String], extra: &str) -> Setup {
    let idp = TestIdp::start().await;
    let list: Vec<String> = urls.iter().map(|u| toml_string(u)).collect();
    let api = format!(
        "[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = [{}]\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n{extra}\n",
        list.join(", ")
    );
    let gateway = Gateway::start(&base_config(&idp.issuer, &api)).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    Setup {
        _idp: idp,
        gateway,
        token,
    }
}

async fn get(s: &Setup) -> u16 {
    client()
        .get(s.gateway.url("/orders/1"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("request to the gateway")
        .status()
        .as_u16()
}

async fn post(s: &Setup, body: String) -> u16 {
    client()
        .post(s.gateway.url("/orders"))
        .bearer_auth(&s.token)
        .body(body)
        .send()
        .await
        .expect("request to the gateway")
        .status()
        .as_u16()
}

/// The value of the metric line starting with `prefix` (name and labels), if any.
fn metric(text: &str, name: &str, endpoint: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("endpoint=\"{endpoint}\"")))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn round_robin_splits_requests_evenly() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let s = setup(&[a.url(), b.url()], "upstream_balance = \"round_robin\"").await;
    for _ in 0..10 {
        assert_eq!(get(&s).await, 200);
    }
    assert_eq!((a.count(), b.count()), (5, 5));
    let metrics = s.gateway.metrics().await;
    let requests = "tollgate_upstream_requests_total";
    assert_eq!(
        metric(&metrics, requests, &a.addr().to_string()),
        Some(5.0),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, requests, &b.addr().to_string()), Some(5.0));
}

#[tokio::test]
async fn least_request_uses_every_endpoint() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let s = setup(&[a.url(), b.url()], "").await;
    for _ in 0..30 {
        assert_eq!(get(&s).await, 200);
    }
    assert_eq!(a.count() + b.count(), 30);
    assert!(
        a.count() > 0 && b.count() > 0,
        "{} / {}",
        a.count(),
        b.count()
    );
}

#[tokio::test]
async fn a_closed_port_is_skipped_and_gets_requests_are_retried_on_the_other_endpoint() {
    let good = Upstream::start().await;
    let s = setup(
        &[closed_port_url().await, good.url()],
        "upstream_balance = \"round_robin\"",
    )
    .await;
    for _ in 0..10 {
        assert_eq!(get(&s).await, 200, "{}", s.gateway.render_logs());
    }
    assert_eq!(good.count(), 10);
}

#[tokio::test]
async fn an_endpoint_that_hangs_up_is_ejected_and_requests_still_succeed() {
    let good = Upstream::start().await;
    let dead = ClosingUpstream::hang_up().await;
    let s = setup(
        &[dead.url(), good.url()],
        "upstream_balance = \"round_robin\"",
    )
    .await;
    for _ in 0..20 {
        assert_eq!(get(&s).await, 200, "{}", s.gateway.render_logs());
    }
    assert_eq!(good.count(), 20);
    // Tried once, then resting (5 s) for the rest of the run.
    assert_eq!(
        dead.connections(),
        1,
        "connect attempts at the dead endpoint"
    );
    let dead_addr = dead.url().trim_start_matches("http://").to_owned();
    let metrics = s.gateway.metrics().await;
    assert_eq!(
        metric(&metrics, "tollgate_upstream_ejections_total", &dead_addr),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_post_to_a_dead_endpoint_is_not_sent_again_elsewhere() {
    let good = Upstream::start().await;
    let dead = ClosingUpstream::hang_up().await;
    let s = setup(
        &[dead.url(), good.url()],
        "upstream_balance = \"round_robin\"",
    )
    .await;
    // Round robin starts at the first endpoint: the dead one.
    assert_eq!(post(&s, "order-0".to_owned()).await, 502);
    assert_eq!(dead.connections(), 1);
    for i in 1..5 {
        assert_eq!(post(&s, format!("order-{i}")).await, 200);
    }
    let bodies: Vec<String> = good.requests().iter().map(|r| r.body_str()).collect();
    assert_eq!(bodies, ["order-1", "order-2", "order-3", "order-4"]);
}

/// The upstream closes each connection right after its answer (without `Connection: close`),
/// so the gateway keeps reusing connections just as they close. No request may fail for it.
#[tokio::test]
async fn gets_on_pooled_connections_the_upstream_closed_do_not_fail() {
    let upstream = ClosingUpstream::start().await;
    let s = setup(&[upstream.url()], "").await;
    let mut failed = 0;
    for _ in 0..200 {
        if get(&s).await != 200 {
            failed += 1;
        }
    }
    assert_eq!(failed, 0, "{}", s.gateway.render_logs());
    // Each request was read once: a replayed one had not been read before.
    assert_eq!(upstream.bodies().len(), 200);
}

/// The same race with request bodies: a body the upstream may have read is never sent twice, so
/// some POSTs may fail, but the upstream sees each body at most once.
#[tokio::test]
async fn posts_on_closing_connections_send_each_body_at_most_once() {
    let upstream = ClosingUpstream::start().await;
    let s = setup(&[upstream.url()], "").await;
    let mut answered = 0;
    for i in 0..50 {
        let status = post(&s, format!("order-{i}")).await;
        assert!(status == 200 || status == 502, "{status}");
        answered += usize::from(status == 200);
    }
    let mut bodies = upstream.bodies();
    let seen = bodies.len();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), seen, "a body reached the upstream twice");
    assert!(seen >= answered, "every 200 was the upstream's");
}
