//! The headers an upstream trusts are the gateway's: `X-Forwarded-For`, `-Proto`, `-Host`,
//! `Forwarded` and `X-Real-IP` are replaced when the peer is not in `[listen] trusted_proxies` and
//! extended when it is; `X-Forwarded-Port`, `-Prefix` and the like pass only from a trusted proxy;
//! `X-Original-URL` and `X-Rewrite-URL` never pass; and with
//! `forward_authorization = false` the bearer credential stays at the gateway.
//!
//! The real gateway binary in front of the recording upstream, with the real test provider. The
//! tests connect from 127.0.0.1, so trusting `127.0.0.1/32` makes the test client a trusted proxy.

use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::upstream::{Seen, Upstream};
use crate::common::{base_config, client, toml_string};

/// `/orders` on `upstream`, needing `mulescope` from `orders-app`, then `extra` keys.
fn orders_api(upstream: &Upstream, extra: &str) -> String {
    format!(
        "[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = {}\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n{extra}\n",
        toml_string(&upstream.url())
    )
}

/// `config` with `trusted_proxies = [..]` in its `[listen]` table.
fn trusting(config: &str, nets: &[&str]) -> String {
    let anchor = "admin_address = \"127.0.0.1:0\"\n";
    assert!(config.contains(anchor), "base_config changed shape");
    let list: Vec<String> = nets.iter().map(|n| toml_string(n)).collect();
    config.replacen(
        anchor,
        &format!("{anchor}trusted_proxies = [{}]\n", list.join(", ")),
        1,
    )
}

struct Setup {
    _idp: TestIdp,
    upstream: Upstream,
    gateway: Gateway,
    token: String,
}

/// A provider, an upstream, the orders API (plus `api_extra`), trusting `nets`, and a token.
async fn setup(nets: &[&str], api_extra: &str) -> Setup {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let config = base_config(&idp.issuer, &orders_api(&upstream, api_extra));
    let gateway = Gateway::start(&trusting(&config, nets)).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    Setup {
        _idp: idp,
        upstream,
        gateway,
        token,
    }
}

/// A request claiming everything a client can claim about where it came from.
async fn send_claims(s: &Setup, headers: &[(&str, &str)]) -> Seen {
    let mut request = client()
        .get(s.gateway.url("/orders/1"))
        .bearer_auth(&s.token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let resp = request.send().await.expect("request");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    s.upstream.last()
}

const FORGED: &[(&str, &str)] = &[
    ("x-forwarded-for", "203.0.113.7"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example"),
    ("forwarded", "for=203.0.113.7;proto=https;host=evil.example"),
    ("x-real-ip", "203.0.113.7"),
    ("x-original-url", "/admin"),
    ("x-rewrite-url", "/admin"),
    ("x-forwarded-port", "443"),
    ("x-forwarded-prefix", "/evil"),
    ("x-forwarded-server", "evil.example"),
    ("x-forwarded-scheme", "https"),
    ("x-forwarded-ssl", "on"),
    ("front-end-https", "on"),
];

/// Claims frameworks build URLs from, which tollgate does not set: only a trusted proxy's pass.
const URL_CLAIMS: [&str; 6] = [
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "front-end-https",
];

/// What the upstream must see from an untrusted client at 127.0.0.1: only this hop's facts.
fn assert_replaced(seen: &Seen, gateway: &Gateway) {
    let host = gateway.proxy.to_string();
    assert_eq!(seen.headers_named("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.headers_named("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.headers_named("x-forwarded-host"), [host.as_str()]);
    assert_eq!(
        seen.headers_named("forwarded"),
        [format!("for=127.0.0.1;proto=http;host=\"{host}\"")]
    );
    assert_eq!(seen.headers_named("x-real-ip"), ["127.0.0.1"]);
    assert!(!seen.has_header("x-original-url"), "{seen:?}");
    assert!(!seen.has_header("x-rewrite-url"), "{seen:?}");
    for name in URL_CLAIMS {
        assert!(!seen.has_header(name), "{name} from a client: {seen:?}");
    }
}

#[tokio::test]
async fn with_no_trusted_proxies_every_forwarding_claim_is_replaced() {
    let s = setup(&[], "").await;
    let seen = send_claims(&s, FORGED).await;
    assert_replaced(&seen, &s.gateway);
}

#[tokio::test]
async fn a_peer_outside_the_trusted_networks_is_not_believed() {
    let s = setup(&["10.0.0.0/8", "::1/128"], "").await;
    let seen = send_claims(&s, FORGED).await;
    assert_replaced(&seen, &s.gateway);
}

#[tokio::test]
async fn a_trusted_proxys_headers_are_extended_and_name_the_client() {
    let s = setup(&["127.0.0.1/32", "10.0.0.0/8"], "").await;
    let seen = send_claims(
        &s,
        &[
            // A client's forged entry, the client, then a trusted inner balancer.
            ("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "shop.example.test"),
            ("forwarded", "for=203.0.113.7;proto=https, for=10.0.0.2"),
            ("x-real-ip", "6.6.6.6"),
            ("x-original-url", "/admin"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/shop"),
        ],
    )
    .await;
    assert_eq!(seen.headers_named("x-forwarded-port"), ["443"]);
    assert_eq!(seen.headers_named("x-forwarded-prefix"), ["/shop"]);
    let host = s.gateway.proxy.to_string();
    assert_eq!(
        seen.headers_named("x-forwarded-for"),
        ["6.6.6.6, 203.0.113.7, 10.0.0.2, 127.0.0.1"],
        "extended with the peer"
    );
    assert_eq!(seen.headers_named("x-forwarded-proto"), ["https"]);
    assert_eq!(
        seen.headers_named("x-forwarded-host"),
        ["shop.example.test"]
    );
    assert_eq!(
        seen.headers_named("forwarded"),
        [format!(
            "for=203.0.113.7;proto=https, for=10.0.0.2, for=127.0.0.1;proto=http;host=\"{host}\""
        )]
    );
    assert_eq!(
        seen.headers_named("x-real-ip"),
        ["203.0.113.7"],
        "the first untrusted hop from the right, not the forged leftmost"
    );
    assert!(
        !seen.has_header("x-original-url"),
        "even from a trusted proxy"
    );
}

#[tokio::test]
async fn a_trusted_proxys_malformed_headers_are_replaced() {
    let s = setup(&["127.0.0.1/32", "10.0.0.0/8"], "").await;
    let seen = send_claims(
        &s,
        &[
            ("x-forwarded-for", "203.0.113.7, junk, 10.0.0.2"),
            ("x-forwarded-proto", "ftp"),
            ("x-forwarded-host", "a.example, b.example"),
            ("forwarded", "for=[::1]"),
        ],
    )
    .await;
    let host = s.gateway.proxy.to_string();
    assert_eq!(
        seen.headers_named("x-real-ip"),
        ["10.0.0.2"],
        "the walk stops at the malformed entry: the last good address"
    );
    assert_eq!(seen.headers_named("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.headers_named("x-forwarded-host"), [host.as_str()]);
    assert_eq!(
        seen.headers_named("forwarded"),
        [format!("for=127.0.0.1;proto=http;host=\"{host}\"")],
        "an unreadable Forwarded is replaced by this hop's element"
    );

    // Every hop trusted: the leftmost is the client.
    let seen = send_claims(&s, &[("x-forwarded-for", "10.0.0.3, 10.0.0.2")]).await;
    assert_eq!(seen.headers_named("x-real-ip"), ["10.0.0.3"]);
    // No header at all: the peer.
    let seen = send_claims(&s, &[]).await;
    assert_eq!(seen.headers_named("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(seen.headers_named("x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test]
async fn the_authorization_header_is_forwarded_unless_the_api_says_not() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let apis = format!(
        "{}\n[[api]]\nname = \"private\"\npath_prefix = \"/private\"\nupstream = {}\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\nexpose_headers = true\nforward_authorization = false\n",
        orders_api(&upstream, ""),
        toml_string(&upstream.url())
    );
    let gateway = Gateway::start(&base_config(&idp.issuer, &apis)).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;

    let get = |path: &str| client().get(gateway.url(path)).bearer_auth(&token).send();

    // The default, as Anypoint does: the upstream may read the token itself.
    let resp = get("/orders/1").await.expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        upstream.last().headers_named("authorization"),
        [format!("Bearer {token}")]
    );

    // `false`: the credential stays here; the identity headers say who called.
    let resp = get("/private/1").await.expect("request");
    assert_eq!(resp.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.target, "/private/1");
    assert!(!seen.has_header("authorization"), "{seen:?}");
    assert!(
        !seen
            .headers
            .iter()
            .any(|(_, v)| v.windows(token.len()).any(|w| w == token.as_bytes())),
        "the token is in no header: {seen:?}"
    );
    assert_eq!(
        seen.header("x-agw-client_id").as_deref(),
        Some("orders-app")
    );
}
