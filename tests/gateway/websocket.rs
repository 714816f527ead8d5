//! WebSocket: an upgrade is authorised like any request, refused upgrades never reach the
//! upstream, allowed ones are tunnelled both ways (text and binary) until they close or sit idle
//! for `idle_timeout`, and an upgrade that is not a WebSocket handshake smuggles nothing.
//!
//! A real WebSocket server and client (tokio-tungstenite) talk through the real binary, with
//! tokens from the real test OpenID provider.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::{Error, Message};

use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::upstream::Upstream;
use crate::common::websocket::{self, WsServer, round_trip};
use crate::common::{base_config, orders_api, raw_http, raw_request, with_listen};

/// A provider, the WebSocket upstream behind the orders API (with `api_extra`), `listen_extra` in
/// `[listen]`, and a `mulescope` token.
struct Setup {
    _idp: TestIdp,
    server: WsServer,
    gateway: Gateway,
    token: String,
}

async fn setup(listen_extra: &str, api_extra: &str) -> Setup {
    let idp = TestIdp::start().await;
    let server = WsServer::start().await;
    let config = base_config(&idp.issuer, &orders_api(&server.url(), api_extra));
    let gateway = Gateway::start(&with_listen(&config, listen_extra)).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    Setup {
        _idp: idp,
        server,
        gateway,
        token,
    }
}

/// The refusal's status, and that the WebSocket server saw no connection at all.
fn assert_refused(result: Result<websocket::Client, Error>, status: u16, server: &WsServer) {
    match result {
        Err(Error::Http(response)) => assert_eq!(response.status().as_u16(), status),
        Err(other) => panic!("expected an HTTP {status}, got {other:?}"),
        Ok(_) => panic!("expected an HTTP {status}, the upgrade succeeded"),
    }
    assert_eq!(
        server.connections(),
        0,
        "a refused upgrade reached the upstream"
    );
}

#[tokio::test]
async fn messages_echo_both_ways_through_the_tunnel() {
    let s = setup("", "expose_headers = true\nforward_authorization = false").await;
    let mut ws = websocket::connect(s.gateway.proxy, "/orders/chat", Some(&s.token))
        .await
        .expect("the upgrade is allowed");
    round_trip(&mut ws, Message::text("hello through tollgate")).await;
    round_trip(&mut ws, Message::binary(vec![0u8, 1, 2, 255, 254])).await;
    round_trip(&mut ws, Message::text("x".repeat(200_000))).await;
    ws.close(None).await.expect("closing");

    let handshakes = s.server.handshakes();
    assert_eq!(handshakes.len(), 1, "{handshakes:?}");
    let seen = &handshakes[0];
    assert_eq!(seen["upgrade"], "websocket");
    assert_eq!(seen["connection"], "upgrade");
    assert!(seen.contains_key("sec-websocket-key"), "{seen:?}");
    assert_eq!(seen["x-agw-client_id"], "orders-app");
    assert!(
        !seen.contains_key("authorization"),
        "forward_authorization = false: {seen:?}"
    );
    // The upgrade is logged once, as the 101 it was.
    let logs = s.gateway.wait_access_logs(1).await;
    let upgrades: Vec<_> = logs.iter().filter(|l| l["status"] == 101).collect();
    assert_eq!(upgrades.len(), 1, "{logs:?}");
    assert_eq!(upgrades[0]["decision"], "allowed");
    assert_eq!(logs.len(), 1, "{logs:?}");
}

#[tokio::test]
async fn authorization_is_forwarded_when_configured() {
    let s = setup("", "").await;
    let mut ws = websocket::connect(s.gateway.proxy, "/orders/chat", Some(&s.token))
        .await
        .expect("the upgrade is allowed");
    round_trip(&mut ws, Message::text("hi")).await;
    let seen = &s.server.handshakes()[0];
    assert_eq!(
        seen["authorization"],
        format!("Bearer {}", s.token).as_str()
    );
    assert!(!seen.contains_key("x-agw-client_id"), "{seen:?}");
}

#[tokio::test]
async fn refused_upgrades_never_reach_the_upstream() {
    let s = setup(
        "",
        "[[api.rule]]\npaths = [\"/orders/admin/**\"]\nscopes = [\"orders:admin\"]",
    )
    .await;
    assert_refused(
        websocket::connect(s.gateway.proxy, "/orders/chat", None).await,
        401,
        &s.server,
    );
    assert_refused(
        websocket::connect(s.gateway.proxy, "/orders/chat", Some("not-a-live-token")).await,
        401,
        &s.server,
    );
    assert_refused(
        websocket::connect(s.gateway.proxy, "/orders/admin/feed", Some(&s.token)).await,
        403,
        &s.server,
    );
    let logs = s.gateway.wait_access_logs(3).await;
    assert!(logs.iter().all(|l| l["decision"] == "rejected"), "{logs:?}");
}

#[tokio::test]
async fn a_busy_tunnel_stays_open_and_an_idle_one_closes_after_idle_timeout() {
    let idle = Duration::from_millis(600);
    let s = setup("idle_timeout = \"600ms\"", "").await;
    let mut ws = websocket::connect(s.gateway.proxy, "/orders/chat", Some(&s.token))
        .await
        .expect("the upgrade is allowed");
    // Traffic every third of the bound, for twice the bound: never idle, never closed.
    let busy = Instant::now();
    let mut last_traffic = Instant::now();
    while busy.elapsed() < idle * 2 {
        round_trip(&mut ws, Message::text("tick")).await;
        last_traffic = Instant::now();
        tokio::time::sleep(idle / 3).await;
    }
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the idle tunnel is closed within 5 s");
    // Idle since the last echo, not since the loop's last sleep ended (a third of the bound
    // later): measured from there, a close on time looked early.
    let waited = last_traffic.elapsed();
    assert!(
        !matches!(end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{end:?}"
    );
    assert!(waited >= idle - idle / 4, "closed early, after {waited:?}");
    assert!(waited < idle * 3, "closed late, after {waited:?}");
    s.gateway
        .wait_log("the tunnel's end", |l| {
            l["message"] == "websocket tunnel closed" && l["ended"] == "IdleTimeout"
        })
        .await;
}

#[tokio::test]
async fn a_non_101_answer_to_an_upgrade_is_a_plain_response() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&base_config(&idp.issuer, &orders_api(&upstream.url(), ""))).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    // The recording upstream speaks no WebSocket: it answers 200.
    let result = websocket::connect(gateway.proxy, "/orders/chat", Some(&token)).await;
    match result {
        Err(Error::Http(response)) => assert_eq!(response.status().as_u16(), 200),
        other => panic!("expected the upstream's 200, got {other:?}"),
    }
    let seen = upstream.last();
    assert_eq!(seen.header("upgrade").as_deref(), Some("websocket"));
    assert_eq!(seen.header("connection").as_deref(), Some("upgrade"));
}

/// Upgrades that are not a WebSocket opening handshake are forwarded as plain requests, without
/// `Upgrade` or `Connection`, and what follows them on the connection is read as HTTP by the
/// gateway (and authorised), never tunnelled.
#[tokio::test]
async fn forged_upgrades_smuggle_nothing() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&base_config(&idp.issuer, &orders_api(&upstream.url(), ""))).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let auth = format!("Authorization: Bearer {token}");
    let smuggled = b"GET /orders/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: [(&str, &[&str], &[u8]); 4] = [
        // h2c: its tunnel would carry HTTP/2 requests past the policy.
        (
            "GET",
            &[
                "Connection: Upgrade, HTTP2-Settings",
                "Upgrade: h2c",
                "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
            ],
            b"",
        ),
        // A body: the bytes after the head are the body, not a tunnel.
        (
            "POST",
            &["Connection: upgrade", "Upgrade: websocket"],
            smuggled,
        ),
        // `Connection: upgrade` alone.
        ("GET", &["Connection: upgrade"], b""),
        // Two protocols offered.
        (
            "GET",
            &["Connection: upgrade", "Upgrade: websocket, h2c"],
            b"",
        ),
    ];
    for (i, (method, headers, body)) in cases.into_iter().enumerate() {
        let mut all = vec![auth.as_str()];
        all.extend_from_slice(headers);
        let answer = raw_http(
            gateway.proxy,
            &raw_request(&gateway, method, "/orders/plain", &all, body),
        )
        .await;
        assert_eq!(answer.status, 200, "case {i}: {answer:?}");
        assert_eq!(upstream.count(), i + 1, "case {i}: one request upstream");
        let seen = upstream.last();
        assert_eq!(seen.target, "/orders/plain");
        for name in ["upgrade", "connection", "http2-settings"] {
            assert!(
                !seen.has_header(name),
                "case {i}: {name} forwarded: {seen:?}"
            );
        }
        assert_eq!(seen.body, body, "case {i}");
    }
}

#[tokio::test]
async fn a_tunnel_is_closed_when_the_gateway_drains() {
    let mut s = setup("shutdown_grace = \"20s\"", "").await;
    let mut ws = websocket::connect(s.gateway.proxy, "/orders/chat", Some(&s.token))
        .await
        .expect("the upgrade is allowed");
    round_trip(&mut ws, Message::text("before")).await;
    let draining = Instant::now();
    s.gateway.signal("TERM").await;
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the tunnel is closed at once, not after shutdown_grace");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{end:?}"
    );
    let status = s.gateway.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status, Some(0), "{}", s.gateway.render_logs());
    assert!(draining.elapsed() < Duration::from_secs(10));
}
