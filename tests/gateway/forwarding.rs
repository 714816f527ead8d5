//! Forwarding: what an allowed request looks like when it reaches the upstream (target, `Host`,
//! `X-Forwarded-*`, hop-by-hop hygiene, identity headers, tokens taken out), streaming bodies both
//! ways, h2c, upstream failures, and the hardening on the way in (path normalisation, ambiguous
//! framing, head size and time limits, the connection cap, public rules).
//!
//! Every test runs the real gateway binary in front of the recording upstream, with the real test
//! OpenID provider issuing and introspecting the tokens.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::upstream::{Seen, Upstream, UpstreamBehaviour, closed_port_url};
use crate::common::{
    RawAnswer, assert_raw_refusal, assert_refusal, assert_rejected, base_config, client,
    orders_api, raw_http, raw_request, read_until_close, toml_string, with_listen,
};

/// Starts the gateway and waits until it has resolved the provider's endpoints.
async fn gateway(config: &str) -> Gateway {
    let gateway = Gateway::start(config).await;
    gateway.wait_ready().await;
    gateway
}

/// A `mulescope` token for `orders-app`, from the real provider.
async fn orders_token(idp: &TestIdp) -> String {
    idp.token("orders-app", "orders-secret", "mulescope").await
}

/// The common setting: a provider, an upstream, the orders API (plus `extra`), a token.
struct Setup {
    idp: TestIdp,
    upstream: Upstream,
    gateway: Gateway,
    token: String,
}

async fn setup(extra: &str) -> Setup {
    setup_with(Upstream::start().await, extra).await
}

async fn setup_with(upstream: Upstream, extra: &str) -> Setup {
    let idp = TestIdp::start().await;
    let gateway = gateway(&base_config(
        &idp.issuer,
        &orders_api(&upstream.url(), extra),
    ))
    .await;
    let token = orders_token(&idp).await;
    Setup {
        idp,
        upstream,
        gateway,
        token,
    }
}

/// A raw GET with a bearer token.
async fn raw_get(gateway: &Gateway, target: &str, token: &str, headers: &[&str]) -> RawAnswer {
    let auth = format!("Authorization: Bearer {token}");
    let mut all = vec![auth.as_str()];
    all.extend_from_slice(headers);
    raw_http(
        gateway.proxy,
        &raw_request(gateway, "GET", target, &all, b""),
    )
    .await
}

fn assert_lacks(seen: &Seen, names: &[&str]) {
    for name in names {
        assert!(
            !seen.has_header(name),
            "the upstream must not see `{name}`; it saw {:?}",
            seen.headers
                .iter()
                .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>()
        );
    }
}

// 1. The happy path.

#[tokio::test]
async fn allowed_request_reaches_upstream_with_forwarded_headers() {
    let s = setup("").await;
    let resp = client()
        .get(s.gateway.url("/orders/1?x=1"))
        .bearer_auth(&s.token)
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-upstream"],
        "yes",
        "the upstream's answer comes back"
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["target"], "/orders/1?x=1");

    let seen = s.upstream.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/orders/1?x=1");
    assert_eq!(
        seen.header("host"),
        Some(s.upstream.addr().to_string()),
        "Host is the upstream's authority"
    );
    assert_eq!(
        seen.headers_named("x-forwarded-for"),
        ["127.0.0.1"],
        "the client's claim replaced: 127.0.0.1 is no trusted proxy (see trust.rs)"
    );
    assert_eq!(
        seen.headers_named("x-forwarded-proto"),
        ["http"],
        "the listener's scheme, not the client's claim"
    );
    assert_eq!(
        seen.headers_named("x-forwarded-host"),
        [s.gateway.proxy.to_string()]
    );
    assert_eq!(
        seen.header("x-request-id").as_deref(),
        Some("abc-123"),
        "end-to-end headers pass"
    );
    assert_eq!(s.upstream.count(), 1);

    // A client that names another Host (and lies about X-Forwarded-Host) gets its own Host recorded.
    let request = format!(
        "GET /orders/3 HTTP/1.1\r\nHost: shop.example.test:8443\r\nAuthorization: Bearer {}\r\nX-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n",
        s.token
    );
    let answer = raw_http(s.gateway.proxy, request.as_bytes()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = s.upstream.last();
    assert_eq!(seen.target, "/orders/3");
    assert_eq!(
        seen.headers_named("x-forwarded-host"),
        ["shop.example.test:8443"]
    );
    assert_eq!(seen.header("host"), Some(s.upstream.addr().to_string()));
    assert_eq!(
        seen.headers_named("x-forwarded-for"),
        ["127.0.0.1"],
        "set when the client sent none"
    );
}

// 2. Hop-by-hop hygiene.

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let s = setup("").await;
    let answer = raw_get(
        &s.gateway,
        "/orders/1",
        &s.token,
        &[
            "Connection: x-custom, X-Other-Custom",
            "Keep-Alive: timeout=5, max=100",
            // Only `TE: trailers` passes (gRPC needs it); a transfer coding is this hop's.
            "TE: gzip",
            "Upgrade: websocket",
            "Proxy-Authorization: Basic dXNlcjpwYXNz",
            "Proxy-Connection: keep-alive",
            "Trailer: x-checksum",
            "x-custom: named by Connection",
            "x-other-custom: also named",
            "x-kept: end-to-end",
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = s.upstream.last();
    assert_lacks(
        &seen,
        &[
            "connection",
            "keep-alive",
            "te",
            "upgrade",
            "proxy-authorization",
            "proxy-connection",
            "trailer",
            "x-custom",
            "x-other-custom",
        ],
    );
    assert_eq!(seen.header("x-kept").as_deref(), Some("end-to-end"));
}

// 3. Identity headers.

/// Client-sent identity headers (any case, `_` for `-`), and an unrelated underscore header that
/// must pass, proving underscore names reach tollgate at all (so their removal is its doing).
const FORGED: [&str; 6] = [
    "X_Trace_Id: kept",
    "X-AGW-client_id: forged",
    "x-agw-uid: forged-uid",
    "X_AGW_uid: forged-underscore",
    "x-Agw-Other: forged-other",
    "X-AGW-iss: http://forged.example",
];

#[tokio::test]
async fn exposed_identity_headers_carry_the_introspection_answer() {
    let s = setup("expose_headers = true").await;
    let answer = raw_get(&s.gateway, "/orders/1", &s.token, &FORGED).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = s.upstream.last();
    assert_eq!(seen.headers_named("x_trace_id"), ["kept"]);
    assert_eq!(
        seen.headers_named("x-agw-client_id"),
        ["orders-app"],
        "the real one only"
    );
    assert_eq!(seen.headers_named("x-agw-iss"), [s.idp.issuer.as_str()]);
    assert_eq!(seen.headers_named("x-agw-active"), ["true"]);
    assert_eq!(seen.headers_named("x-agw-token_type"), ["Bearer"]);
    assert_lacks(
        &seen,
        &[
            "x-agw-scope",
            "x-agw-exp",
            "x-agw-uid",
            "x_agw_uid",
            "x-agw-other",
        ],
    );
}

#[tokio::test]
async fn forged_identity_headers_are_stripped_when_not_exposing() {
    let s = setup("").await;
    let answer = raw_get(&s.gateway, "/orders/1", &s.token, &FORGED).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = s.upstream.last();
    assert_eq!(seen.headers_named("x_trace_id"), ["kept"]);
    let leaked: Vec<&String> = seen
        .headers
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.replace('_', "-").starts_with("x-agw-"))
        .collect();
    assert!(
        leaked.is_empty(),
        "no X-AGW- header may reach the upstream: {leaked:?}"
    );
}

#[tokio::test]
async fn connection_header_cannot_strip_identity_headers() {
    let s = setup("expose_headers = true").await;
    let answer = raw_get(
        &s.gateway,
        "/orders/1",
        &s.token,
        &["Connection: X-AGW-client_id, x-agw-iss"],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = s.upstream.last();
    assert_eq!(seen.headers_named("x-agw-client_id"), ["orders-app"]);
    assert_eq!(seen.headers_named("x-agw-iss"), [s.idp.issuer.as_str()]);
}

#[tokio::test]
async fn custom_expose_prefix_names_and_guards_identity_headers() {
    let s = setup("expose_headers = true\nexpose_headers_prefix = \"X-Auth-\"").await;
    let answer = raw_get(
        &s.gateway,
        "/orders/1",
        &s.token,
        &[
            "X-Auth-client_id: forged",
            "x_auth_sub: forged",
            "X-AUTH-Role: admin",
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = s.upstream.last();
    assert_eq!(seen.headers_named("x-auth-client_id"), ["orders-app"]);
    assert_eq!(seen.headers_named("x-auth-active"), ["true"]);
    assert_lacks(
        &seen,
        &[
            "x-auth-scope",
            "x-auth-exp",
            "x_auth_sub",
            "x-auth-sub",
            "x-auth-role",
            "x-agw-client_id",
        ],
    );
}

// 4. Streaming bodies.

#[tokio::test]
async fn request_body_streams_to_the_upstream() {
    let s = setup_with(Upstream::streaming().await, "").await;
    s.upstream.release(); // this test is about the request side
    let mut stream = TcpStream::connect(s.gateway.proxy).await.expect("connect");
    let head = format!(
        "PUT /orders/upload HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n",
        s.gateway.proxy, s.token
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("head and first chunk");

    // The rest is not sent yet: this passes only if the first chunk was forwarded on its own.
    s.upstream.first_chunk_seen().await;
    assert_eq!(s.upstream.count(), 0, "the body is not complete yet");

    stream
        .write_all(b"5\r\nworld\r\n0\r\n\r\n")
        .await
        .expect("the rest");
    let answer = read_until_close(&mut stream, Duration::from_secs(5))
        .await
        .expect("the answer ends within 5 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = s.upstream.last();
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.body, b"helloworld");
}

#[tokio::test]
async fn response_body_streams_to_the_client() {
    let s = setup_with(Upstream::streaming().await, "").await;
    let mut resp = client()
        .get(s.gateway.url("/orders/feed"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    // The upstream sends "second" only after release, so "first" arriving proves streaming.
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("the first chunk arrives before the upstream's body ends")
        .expect("first chunk")
        .expect("a first chunk");
    assert_eq!(&first[..], b"first\n");
    s.upstream.release();
    let mut rest = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("rest") {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second\n");
}

#[tokio::test]
async fn large_request_body_arrives_intact() {
    let s = setup("").await;
    // 4 MiB of varied bytes (a simple LCG), so a dropped or reordered block would show.
    let mut state: u32 = 0x1234_5678;
    let body: Vec<u8> = (0..4 * 1024 * 1024)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    let resp = client()
        .post(s.gateway.url("/orders/bulk"))
        .bearer_auth(&s.token)
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let seen = s.upstream.last();
    assert_eq!(seen.body.len(), body.len());
    assert!(seen.body == body, "the body arrived altered");
}

// 5. HTTP/2 cleartext.

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let s = setup("").await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("h2 client");
    let resp = h2
        .get(s.gateway.url("/orders/7?v=2"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("h2c request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    // The upstream speaks HTTP/1.1 only: reaching it means the request was translated.
    let seen = s.upstream.last();
    assert_eq!(seen.target, "/orders/7?v=2");
    assert_eq!(seen.header("host"), Some(s.upstream.addr().to_string()));
    assert_eq!(
        seen.headers_named("x-forwarded-host"),
        [s.gateway.proxy.to_string()],
        "from :authority"
    );

    // An h2c refusal is the same refusal.
    let resp = h2
        .get(s.gateway.url("/orders/7"))
        .send()
        .await
        .expect("h2c request");
    assert_refusal(resp, 401, None).await;
    assert_eq!(s.upstream.count(), 1);
}

// 6. Upstream failures and routing misses.

#[tokio::test]
async fn refused_upstream_is_502_bad_gateway() {
    let idp = TestIdp::start().await;
    let gateway = gateway(&base_config(
        &idp.issuer,
        &orders_api(&closed_port_url().await, ""),
    ))
    .await;
    let token = orders_token(&idp).await;
    let resp = client()
        .get(gateway.url("/orders/1"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_refusal(resp, 502, Some("bad_gateway")).await;
}

#[tokio::test]
async fn slow_upstream_is_504_gateway_timeout() {
    let slow = Upstream::start_with(UpstreamBehaviour::Delay(Duration::from_secs(5))).await;
    let s = setup_with(slow, "timeout = \"300ms\"").await;
    let started = Instant::now();
    let resp = client()
        .get(s.gateway.url("/orders/1"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("request");
    let elapsed = started.elapsed();
    assert_refusal(resp, 504, Some("gateway_timeout")).await;
    assert!(
        elapsed >= Duration::from_millis(250),
        "answered before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "the API's 300ms timeout was not applied: {elapsed:?}"
    );
    assert_eq!(
        s.upstream.wait_count(1).await.len(),
        1,
        "the upstream was asked"
    );
}

#[tokio::test]
async fn unrouted_path_is_404_and_not_forwarded() {
    let s = setup("").await;
    for path in ["/inventory/1", "/ordersX/1", "/"] {
        let resp = client()
            .get(s.gateway.url(path))
            .bearer_auth(&s.token)
            .send()
            .await
            .expect("request");
        assert!(
            www_authenticate_absent(&resp),
            "{path}: a 404 carries no challenge"
        );
        assert_rejected(resp, 404, Some("not_found"), &s.upstream).await;
    }
}

fn www_authenticate_absent(resp: &reqwest::Response) -> bool {
    resp.headers().get("www-authenticate").is_none()
}

// 7. strip_prefix onto a base path.

#[tokio::test]
async fn strip_prefix_maps_onto_the_upstream_base_path() {
    let upstream = Upstream::start().await;
    let base = format!("{}/base", upstream.url());
    // `s.gateway` strips onto the bare upstream URL, `gateway` onto its `/base` path.
    let s = setup_with(upstream, "strip_prefix = true").await;
    let gateway = gateway(&base_config(
        &s.idp.issuer,
        &orders_api(&base, "strip_prefix = true"),
    ))
    .await;
    let resp = client()
        .get(gateway.url("/orders/1?x=1"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(s.upstream.last().target, "/base/1?x=1");

    // Without a base path the prefix simply goes.
    let resp = client()
        .get(s.gateway.url("/orders/2/items?y=2"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(s.upstream.last().target, "/2/items?y=2");
}

// 8. Query and form tokens never travel on.

#[tokio::test]
async fn query_access_token_is_removed_before_forwarding() {
    let s = setup("token_sources = [\"header\", \"query\"]").await;
    let resp = client()
        .get(
            s.gateway
                .url(&format!("/orders/1?a=1&access_token={}&b=2", s.token)),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let seen = s.upstream.last();
    assert_eq!(seen.target, "/orders/1?a=1&b=2");
    assert!(!seen.target.contains(&s.token));
}

#[tokio::test]
async fn query_access_token_is_not_forwarded_where_query_tokens_are_off() {
    let s = setup("").await;
    let resp = client()
        .get(s.gateway.url("/orders/1?c=3&access_token=junk"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("request");
    assert_eq!(
        resp.status(),
        200,
        "the header token decides; the query one is ignored"
    );
    let seen = s.upstream.last();
    assert_eq!(seen.target, "/orders/1?c=3");
}

#[tokio::test]
async fn header_and_query_tokens_together_are_invalid_request() {
    let s = setup("token_sources = [\"header\", \"query\"]").await;
    let resp = client()
        .get(
            s.gateway
                .url(&format!("/orders/1?access_token={}", s.token)),
        )
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("request");
    assert_rejected(resp, 400, Some("invalid_request"), &s.upstream).await;
}

#[tokio::test]
async fn form_access_token_is_taken_out_of_the_body() {
    let s = setup("token_sources = [\"header\", \"form\"]").await;
    let resp = client()
        .post(s.gateway.url("/orders/1"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("a=1&access_token={}", s.token))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let seen = s.upstream.last();
    assert_eq!(seen.body_str(), "a=1");
    assert_eq!(seen.headers_named("content-length"), ["3"]);
    assert!(!seen.has_header("transfer-encoding"));
}

// 9. Path normalisation.

#[tokio::test]
async fn dot_segments_cannot_dodge_a_path_rule() {
    let s =
        setup("[[api.rule]]\npaths = [\"/orders/private/**\"]\nscopes = [\"orders:admin\"]").await;
    // The token works where the rule does not apply…
    let answer = raw_get(&s.gateway, "/orders/public/1", &s.token, &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(s.upstream.count(), 1);
    // …and every spelling of the private path meets the rule.
    for target in [
        "/orders/private/1",
        "/orders/x/../private/1",
        "/orders/%2e%2e/orders/private/1",
        "/orders/%2E%2E/orders/./private/1",
        "/orders//private/1",
        "/orders/./private/1",
        "/orders/%70rivate/1",
    ] {
        let answer = raw_get(&s.gateway, target, &s.token, &[]).await;
        assert_raw_refusal(&answer, 403, "insufficient_scope", "orders");
        assert_eq!(s.upstream.count(), 1, "{target} reached the upstream");
    }
}

#[tokio::test]
async fn dot_segments_route_to_the_api_they_resolve_to() {
    let idp = TestIdp::start().await;
    let orders = Upstream::start().await;
    let admin = Upstream::start().await;
    let apis = format!(
        "{}\n[[api]]\nname = \"admin\"\npath_prefix = \"/admin\"\nupstream = {}\nscopes = [\"orders:admin\"]\nclients = [\"orders-app\"]\n",
        orders_api(&orders.url(), ""),
        toml_string(&admin.url())
    );
    let gateway = gateway(&base_config(&idp.issuer, &apis)).await;
    let token = orders_token(&idp).await;

    let answer = raw_get(&gateway, "/orders/../admin/users", &token, &[]).await;
    assert_raw_refusal(&answer, 403, "insufficient_scope", "admin");
    orders.assert_not_reached();
    admin.assert_not_reached();

    let admin_token = idp
        .token("orders-app", "orders-secret", "orders:admin")
        .await;
    let answer = raw_get(&gateway, "/orders/%2e%2e/admin/users", &admin_token, &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(admin.last().target, "/admin/users");
    orders.assert_not_reached();
}

#[tokio::test]
async fn upstream_receives_exactly_the_normalised_path() {
    let s = setup("").await;
    for (sent, forwarded) in [
        ("/orders/a/../b", "/orders/b"),
        ("/orders/%41%62c", "/orders/Abc"),
        ("/orders/./x/", "/orders/x/"),
        ("/orders//y///z", "/orders/y/z"),
        ("/orders/%7Euser?q=%2F&r=1", "/orders/~user?q=%2F&r=1"),
    ] {
        let answer = raw_get(&s.gateway, sent, &s.token, &[]).await;
        assert_eq!(answer.status, 200, "{sent}: {answer:?}");
        assert_eq!(s.upstream.last().target, forwarded, "{sent}");
    }
}

#[tokio::test]
async fn ambiguous_paths_are_invalid_request() {
    let s = setup("").await;
    for target in [
        "/orders/1;x=y",
        "/orders/a%3bx",
        "/orders/a\\b",
        "/orders/a%2Fb",
        "/orders/a%2fb",
        "/orders/a%5Cb",
        "/orders/a%00b",
        "/orders/%252e%252e/admin",
        "/orders/a%zz",
    ] {
        let answer = raw_get(&s.gateway, target, &s.token, &[]).await;
        assert_eq!(answer.status, 400, "{target}: {answer:?}");
        // Refused by tollgate itself (not only by the HTTP parser): the documented JSON body.
        assert_raw_refusal(&answer, 400, "invalid_request", "orders");
        s.upstream.assert_not_reached();
    }
}

// 10. Ambiguous framing.

/// A POST whose framing is given by `framing`, with a request for `/orders/smuggled` hidden after
/// the first body a server could read.
fn smuggling_request(gateway: &Gateway, token: &str, framing: &[&str]) -> Vec<u8> {
    let auth = format!("Authorization: Bearer {token}");
    let mut headers = vec![auth.as_str()];
    headers.extend_from_slice(framing);
    let smuggled = format!(
        "0\r\n\r\nGET /orders/smuggled HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
        gateway.proxy
    );
    raw_request(gateway, "POST", "/orders/1", &headers, smuggled.as_bytes())
}

/// A framing refusal: 400 (from tollgate, or from the HTTP parser before it), nothing forwarded.
fn assert_framing_refused(answer: &RawAnswer, upstream: &Upstream) {
    let seen: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} body={:?}",
                r.method,
                r.target,
                r.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                r.body_str()
            )
        })
        .collect();
    assert_eq!(
        answer.status, 400,
        "ambiguous framing must be refused with 400; got {} ({:?}); the upstream saw {seen:?}",
        answer.status, answer.head
    );
    upstream.assert_not_reached();
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    let s = setup("").await;
    let request = smuggling_request(
        &s.gateway,
        &s.token,
        &["Content-Length: 5", "Transfer-Encoding: chunked"],
    );
    let answer = raw_http(s.gateway.proxy, &request).await;
    assert_framing_refused(&answer, &s.upstream);
}

#[tokio::test]
async fn conflicting_content_lengths_are_refused() {
    let s = setup("").await;
    let request = smuggling_request(
        &s.gateway,
        &s.token,
        &["Content-Length: 5", "Content-Length: 6"],
    );
    let answer = raw_http(s.gateway.proxy, &request).await;
    assert_framing_refused(&answer, &s.upstream);
}

#[tokio::test]
async fn duplicate_identical_content_lengths_are_refused() {
    let s = setup("").await;
    let request = smuggling_request(
        &s.gateway,
        &s.token,
        &["Content-Length: 5", "Content-Length: 5"],
    );
    let answer = raw_http(s.gateway.proxy, &request).await;
    assert_framing_refused(&answer, &s.upstream);
}

// 11. Limits.

#[tokio::test]
async fn oversized_request_head_is_refused_with_431() {
    let upstream = Upstream::start().await;
    let idp = TestIdp::start().await;
    let config = with_listen(
        &base_config(&idp.issuer, &orders_api(&upstream.url(), "")),
        "max_header_bytes = 8192",
    );
    let gateway = gateway(&config).await;
    let token = orders_token(&idp).await;

    // Well within the limit: served.
    let filler = format!("X-Filler: {}", "a".repeat(4000));
    let answer = raw_get(&gateway, "/orders/1", &token, &[&filler]).await;
    assert_eq!(
        answer.status, 200,
        "a 4 KB head is within 8 KiB: {answer:?}"
    );
    assert_eq!(upstream.count(), 1);

    // Past it: refused, not forwarded.
    let filler = format!("X-Filler: {}", "a".repeat(12_000));
    let answer = raw_get(&gateway, "/orders/2", &token, &[&filler]).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    assert_eq!(
        upstream.count(),
        1,
        "the oversized request reached the upstream"
    );
}

#[tokio::test]
async fn stalled_request_head_is_dropped_after_header_read_timeout() {
    let upstream = Upstream::start().await;
    let idp = TestIdp::start().await;
    let config = with_listen(
        &base_config(&idp.issuer, &orders_api(&upstream.url(), "")),
        "header_read_timeout = \"300ms\"",
    );
    let gateway = gateway(&config).await;
    let token = orders_token(&idp).await;

    let mut stream = TcpStream::connect(gateway.proxy).await.expect("connect");
    let half = format!(
        "GET /orders/1 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n",
        gateway.proxy
    );
    stream
        .write_all(half.as_bytes())
        .await
        .expect("half a head");
    let started = Instant::now();
    let got = read_until_close(&mut stream, Duration::from_secs(2))
        .await
        .expect("the gateway must close a stalled connection within 2 s");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200),
        "closed before the timeout: {elapsed:?}"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "nothing, or a 408, before closing: {text:?}"
    );
    upstream.assert_not_reached();

    // A prompt client on the same gateway is still served.
    let answer = raw_get(&gateway, "/orders/1", &token, &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn connections_beyond_max_connections_wait_for_a_free_slot() {
    let upstream = Upstream::start().await;
    let idp = TestIdp::start().await;
    let config = with_listen(
        &base_config(&idp.issuer, &orders_api(&upstream.url(), "")),
        "max_connections = 2",
    );
    let gateway = gateway(&config).await;
    let token = orders_token(&idp).await;

    // Each worker accepts from a socket of its own, so which waiting connection gets a slot first
    // is not the order they connected in: the first two are served (hold their slots) before the
    // third connects.
    let keep_alive = format!(
        "GET /orders/1 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
        gateway.proxy
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(gateway.proxy).await.expect("connect");
        conn.write_all(keep_alive.as_bytes())
            .await
            .expect("request");
        let mut head = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut head))
            .await
            .expect("served within 5 s")
            .expect("read the answer");
        assert_eq!(&head, b"HTTP/1.1 200", "a held connection is served");
        held.push(conn);
    }
    let first = held.remove(0);
    upstream.wait_count(2).await;
    let mut third = TcpStream::connect(gateway.proxy)
        .await
        .expect("third (the kernel accepts it)");
    let request = format!(
        "GET /orders/3 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        gateway.proxy
    );
    third
        .write_all(request.as_bytes())
        .await
        .expect("third request");
    let mut buf = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the third connection was served while two were open: {early:?}"
    );
    assert_eq!(upstream.count(), 2, "the third request waited");

    drop(first);
    let got = read_until_close(&mut third, Duration::from_secs(5))
        .await
        .expect("the third connection is served once a slot frees");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(upstream.last().target, "/orders/3");
}

// 12. Public rules.

#[tokio::test]
async fn public_rule_lets_preflight_through_without_a_token() {
    let s = setup("[[api.rule]]\nmethods = [\"OPTIONS\"]\npublic = true").await;

    let resp = client()
        .get(s.gateway.url("/orders/1"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        resp.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer realm=\"orders\""[..])
    );
    assert_rejected(resp, 401, None, &s.upstream).await;

    let resp = client()
        .request(reqwest::Method::OPTIONS, s.gateway.url("/orders/1"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(resp.status(), 200);
    let seen = s.upstream.last();
    assert_eq!(seen.method, "OPTIONS");
    assert_eq!(seen.target, "/orders/1");
    assert_eq!(
        seen.header("origin").as_deref(),
        Some("https://shop.example")
    );
    assert_eq!(
        seen.header("access-control-request-method").as_deref(),
        Some("DELETE")
    );
}

/// `n` GETs of `/orders/1` in a row over one client connection, each answered `status` and read
/// to its end.
async fn get_in_a_row(s: &Setup, n: usize, status: u16) {
    let http = client();
    for _ in 0..n {
        let resp = http
            .get(s.gateway.url("/orders/1"))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status);
        resp.bytes().await.unwrap();
    }
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let s = setup("").await;
    get_in_a_row(&s, 5, 200).await;
    assert_eq!(s.upstream.count(), 5);
    assert_eq!(
        s.upstream.connections(),
        1,
        "one connection for five requests"
    );
}

#[tokio::test]
async fn a_response_without_a_body_frees_its_connection_too() {
    let s = setup_with(
        Upstream::start_with(UpstreamBehaviour::Status(204)).await,
        "",
    )
    .await;
    get_in_a_row(&s, 3, 204).await;
    assert_eq!(s.upstream.connections(), 1);
}

#[tokio::test]
async fn an_upstream_that_closes_its_connections_gets_a_new_one_each_time() {
    // No request fails on a connection the upstream closed.
    let s = setup_with(Upstream::start_with(UpstreamBehaviour::Close).await, "").await;
    get_in_a_row(&s, 3, 200).await;
    assert_eq!(s.upstream.count(), 3);
    assert_eq!(s.upstream.connections(), 3);
}
