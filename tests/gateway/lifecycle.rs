//! The process's life: on SIGTERM it turns not-ready at once, stops accepting, lets requests in
//! flight finish (up to `shutdown_grace`), then exits 0.

use std::time::{Duration, Instant};

use crate::common::fake_idp::{FakeIdp, Reply, active};
use crate::common::gateway::Gateway;
use crate::common::upstream::{Upstream, UpstreamBehaviour};
use crate::common::{base_config, client};

/// How often a condition is polled for.
const POLL: Duration = Duration::from_millis(10);

fn config(issuer: &str, upstream: &Upstream, grace: &str) -> String {
    let cfg = base_config(
        issuer,
        &format!(
            "[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"{}\"\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n",
            upstream.url()
        ),
    );
    cfg.replace(
        "admin_address = \"127.0.0.1:0\"",
        &format!("admin_address = \"127.0.0.1:0\"\nshutdown_grace = \"{grace}\""),
    )
}

#[tokio::test]
async fn sigterm_drains_requests_in_flight_then_exits_0() {
    let idp = FakeIdp::start().await;
    idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 300)));
    // The answer's head and first chunk come at once, the rest when the test releases it: the
    // request stays in flight for as long as the test needs, however slow the machine.
    let upstream = Upstream::start_with(UpstreamBehaviour::Stream).await;
    let mut gw = Gateway::start(&config(&idp.issuer(), &upstream, "10s")).await;
    gw.wait_ready().await;

    let in_flight = client()
        .get(gw.url("/orders/1"))
        .bearer_auth("tok")
        .send()
        .await
        .expect("the response head");
    assert_eq!(in_flight.status(), 200);
    upstream.wait_count(1).await;
    gw.signal("TERM").await;

    // Not ready soon (the admin listener keeps answering while draining).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = client().get(gw.admin_url("/readyz")).send().await;
        match resp
            .expect("the admin listener answers while draining")
            .status()
        {
            s if s == 503 => break,
            s if Instant::now() < deadline => assert_eq!(s, 200),
            s => panic!("/readyz still {s} 5 s after SIGTERM"),
        }
        tokio::time::sleep(POLL).await;
    }
    // No new connections. Not at the very instant /readyz says 503: that flips first (so
    // balancers stop sending), then each worker thread is told to stop and closes its socket
    // when it next runs, so a connect in between may still land (and is then reset).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpStream::connect(gw.proxy).await {
            Err(_) => break,
            Ok(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
            Ok(_) => panic!("the listener still accepts 5 s into shutdown"),
        }
    }
    // Still draining: the request under way holds the process.
    assert_eq!(gw.wait_exit(Duration::from_millis(200)).await, None);

    // The request under way completes, then the process exits 0 (long before shutdown_grace).
    upstream.release();
    let body = in_flight
        .text()
        .await
        .expect("the in-flight body completes");
    assert_eq!(body, "first\nsecond\n");
    assert_eq!(
        gw.wait_exit(Duration::from_secs(5)).await,
        Some(0),
        "{}",
        gw.render_logs()
    );
}

#[tokio::test]
async fn shutdown_grace_bounds_the_wait_for_slow_requests() {
    let idp = FakeIdp::start().await;
    idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 300)));
    let upstream = Upstream::start_with(UpstreamBehaviour::Delay(Duration::from_secs(30))).await;
    let mut gw = Gateway::start(&config(&idp.issuer(), &upstream, "500ms")).await;
    gw.wait_ready().await;
    let _stuck = tokio::spawn(client().get(gw.url("/orders/1")).bearer_auth("tok").send());
    upstream.wait_count(1).await;
    let started = Instant::now();
    gw.signal("TERM").await;
    assert_eq!(
        gw.wait_exit(Duration::from_secs(5)).await,
        Some(0),
        "{}",
        gw.render_logs()
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "exited after {took:?}"
    );
}

#[tokio::test]
async fn every_worker_serves_and_drains_its_own_connections() {
    let idp = FakeIdp::start().await;
    idp.on_introspect(|_| Reply::Json(200, active("orders-app", "mulescope", 300)));
    let upstream =
        Upstream::start_with(UpstreamBehaviour::Delay(Duration::from_millis(1000))).await;
    let cfg = config(&idp.issuer(), &upstream, "10s")
        .replace("shutdown_grace = ", "workers = 4\nshutdown_grace = ");
    let mut gw = Gateway::start(&cfg).await;
    gw.wait_ready().await;
    let listening = gw
        .wait_log("listening", |v| v["message"] == "listening")
        .await;
    assert_eq!(listening["workers"], 4, "{listening}");

    // Twelve requests at once, each on its own connection: whichever workers took them, every one
    // is answered, one introspection serves them all, and SIGTERM lets all of them finish.
    let in_flight: Vec<_> = (0..12)
        .map(|_| {
            let one_connection = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            tokio::spawn(
                one_connection
                    .get(gw.url("/orders/1"))
                    .bearer_auth("tok")
                    .send(),
            )
        })
        .collect();
    upstream.wait_count(12).await;
    gw.signal("TERM").await;
    for request in in_flight {
        let resp = request.await.unwrap().expect("the request completes");
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(idp.introspections().len(), 1);
    assert_eq!(
        gw.wait_exit(Duration::from_secs(5)).await,
        Some(0),
        "{}",
        gw.render_logs()
    );
}
