//! Rules cannot be sidestepped by spelling: a trailing `/`, HEAD for GET, a standard method in
//! another case, the path's case where the upstream folds it, an escape that only forms once
//! decoded, and which API a host's request goes to when a host-less API has a longer prefix.
//!
//! Every test runs the real gateway binary in front of recording upstreams, with the real test
//! OpenID provider issuing and introspecting the tokens.

use crate::common::gateway::{Gateway, cli};
use crate::common::idp::TestIdp;
use crate::common::upstream::Upstream;
use crate::common::{
    RawAnswer, assert_raw_refusal, assert_rejected, base_config, client, orders_api, raw_http,
    raw_request, toml_string,
};

/// The rules the example configuration and the ConfigMap ship.
const SHIPPED_RULES: &str = "[[api.rule]]\nmethods = [\"OPTIONS\"]\npaths = [\"/orders/**\"]\npublic = true\n\n\
     [[api.rule]]\nmethods = [\"DELETE\"]\npaths = [\"/orders/*\"]\nscopes = [\"mulescope\", \"orders:admin\"]\n";

/// A provider, an upstream, the gateway with `apis`, and two tokens of `orders-app`: `mulescope`
/// only, and `mulescope orders:admin`.
struct Setup {
    /// Kept for the gateway's sake: it introspects the tokens.
    _idp: TestIdp,
    upstream: Upstream,
    gateway: Gateway,
    token: String,
    admin_token: String,
}

/// The orders API (see `orders_api`) with `extra`.
async fn setup(extra: &str) -> Setup {
    let upstream = Upstream::start().await;
    let apis = orders_api(&upstream.url(), extra);
    setup_with(upstream, &apis).await
}

async fn setup_with(upstream: Upstream, apis: &str) -> Setup {
    let idp = TestIdp::start().await;
    let gateway = Gateway::start(&base_config(&idp.issuer, apis)).await;
    gateway.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let admin_token = idp
        .token("orders-app", "orders-secret", "mulescope orders:admin")
        .await;
    Setup {
        _idp: idp,
        upstream,
        gateway,
        token,
        admin_token,
    }
}

/// `method target` with a bearer token, byte for byte.
async fn raw(gateway: &Gateway, method: &str, target: &str, token: &str) -> RawAnswer {
    let auth = format!("Authorization: Bearer {token}");
    raw_http(
        gateway.proxy,
        &raw_request(gateway, method, target, &[&auth], b""),
    )
    .await
}

/// `GET target` naming `host`, with a bearer token.
async fn get_for_host(gateway: &Gateway, host: &str, target: &str, token: &str) -> RawAnswer {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    raw_http(gateway.proxy, request.as_bytes()).await
}

// 1. Trailing slash.

#[tokio::test]
async fn a_trailing_slash_does_not_dodge_the_shipped_delete_rule() {
    let s = setup(SHIPPED_RULES).await;
    let http = client();
    for path in ["/orders/1/", "/orders/1", "/orders//1/"] {
        let resp = http
            .delete(s.gateway.url(path))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        let body = assert_rejected(resp, 403, Some("insufficient_scope"), &s.upstream).await;
        assert_eq!(body["scope"], "mulescope orders:admin", "{path}");
    }
    // The admin may, and the upstream gets the path as sent (normalised), slash and all.
    let resp = http
        .delete(s.gateway.url("/orders/1/"))
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.upstream.last();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("DELETE", "/orders/1/")
    );
    // Deeper paths are not the rule's: the mulescope token passes there.
    let resp = http
        .delete(s.gateway.url("/orders/1/items/"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(s.upstream.count(), 2);
}

#[tokio::test]
async fn a_pattern_with_a_trailing_slash_matches_without_it_and_dir_globs_cover_the_dir() {
    let rules = "[[api.rule]]\npaths = [\"/orders/admin/\"]\nscopes = [\"orders:admin\"]\n\n\
                 [[api.rule]]\npaths = [\"/orders/private/**\"]\nscopes = [\"orders:admin\"]\n";
    let s = setup(rules).await;
    for target in [
        "/orders/admin",
        "/orders/admin/",
        "/orders/private",
        "/orders/private/",
        "/orders/private/1",
    ] {
        let answer = raw(&s.gateway, "GET", target, &s.token).await;
        assert_raw_refusal(&answer, 403, "insufficient_scope", "orders");
        s.upstream.assert_not_reached();
    }
    let answer = raw(&s.gateway, "GET", "/orders/admin", &s.admin_token).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(s.upstream.last().target, "/orders/admin");
}

// 2. HEAD.

#[tokio::test]
async fn head_meets_the_rule_that_lists_get() {
    let s = setup("[[api.rule]]\nmethods = [\"GET\"]\nscopes = [\"orders:admin\"]\n").await;
    let head = |token: &str| {
        client()
            .head(s.gateway.url("/orders/1"))
            .bearer_auth(token)
            .send()
    };
    let resp = head(&s.token).await.unwrap();
    // A HEAD answer has no body: the refusal shows in its status and challenge.
    assert_eq!(resp.status(), 403);
    let challenge = crate::common::www_authenticate(&resp).expect("a 403 challenge");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    s.upstream.assert_not_reached();
    let resp = head(&s.admin_token).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(s.upstream.last().method, "HEAD");
}

#[tokio::test]
async fn check_and_explain_show_head_and_the_slash_rule() {
    let idp = TestIdp::start().await;
    let config = base_config(
        &idp.issuer,
        &orders_api(
            "http://127.0.0.1:9",
            &format!(
                "{SHIPPED_RULES}\n[[api.rule]]\nmethods = [\"GET\"]\npaths = [\"/orders/reports/*\"]\nscopes = [\"orders:admin\"]\n"
            ),
        ),
    );
    let out = cli(&["check"], Some(&config), &[]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        out.stdout.contains("rule 2: GET,HEAD on paths"),
        "{}",
        out.stdout
    );

    // explain reads the rules the way the request path does.
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let args = [
        "explain",
        "--api",
        "orders",
        "--method",
        "DELETE",
        "--path",
        "/orders/1/",
        &token,
    ];
    let out = cli(&args, Some(&config), &[]).await;
    assert_ne!(out.status, 0, "{out:?}");
    assert!(out.stdout.contains("rule 1 applies"), "{}", out.stdout);
    assert!(
        out.stdout.contains("missing [orders:admin]"),
        "{}",
        out.stdout
    );
    let args = [
        "explain",
        "--api",
        "orders",
        "--method",
        "HEAD",
        "--path",
        "/orders/reports/q1/",
        &token,
    ];
    let out = cli(&args, Some(&config), &[]).await;
    assert_ne!(out.status, 0, "{out:?}");
    assert!(out.stdout.contains("rule 2 applies"), "{}", out.stdout);
}

// 3. Method case.

#[tokio::test]
async fn a_standard_method_in_another_case_is_refused() {
    let s = setup(SHIPPED_RULES).await;
    for method in ["delete", "Delete", "get", "oPTIONS"] {
        let answer = raw(&s.gateway, method, "/orders/1", &s.admin_token).await;
        assert_raw_refusal(&answer, 400, "invalid_request", "orders");
        assert!(answer.header("www-authenticate").is_none(), "{answer:?}");
        s.upstream.assert_not_reached();
    }
    let logs = s.gateway.wait_access_logs(4).await;
    assert!(logs.iter().all(|l| l["reason"] == "bad_method"), "{logs:?}");
    // Other extension methods pass as they are, to the API's defaults.
    let answer = raw(&s.gateway, "PURGE", "/orders/1", &s.token).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(s.upstream.last().method, "PURGE");
}

// 4. Path case.

#[tokio::test]
async fn case_insensitive_paths_fold_the_prefix_and_the_rules() {
    let extra = format!("case_insensitive_paths = true\n{SHIPPED_RULES}");
    let s = setup(&extra).await;
    for target in ["/ORDERS/1", "/Orders/1/", "/orders/%31"] {
        let answer = raw(&s.gateway, "DELETE", target, &s.token).await;
        assert_raw_refusal(&answer, 403, "insufficient_scope", "orders");
        s.upstream.assert_not_reached();
    }
    // Forwarded as the client sent it (normalised), not folded.
    let answer = raw(&s.gateway, "GET", "/ORDERS/Item%41", &s.token).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(s.upstream.last().target, "/ORDERS/ItemA");
    let answer = raw(&s.gateway, "OPTIONS", "/Orders/x", "none").await;
    assert_eq!(answer.status, 200, "the public rule folds too: {answer:?}");
}

#[tokio::test]
async fn case_insensitive_prefixes_strip_whatever_their_case() {
    let upstream = Upstream::start().await;
    let apis = format!(
        "{}\n[[api]]\nname = \"exact\"\npath_prefix = \"/Exact\"\nupstream = {}\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n",
        orders_api(
            &upstream.url(),
            "case_insensitive_paths = true\nstrip_prefix = true"
        ),
        toml_string(&upstream.url())
    );
    let s = setup_with(upstream, &apis).await;
    let answer = raw(&s.gateway, "GET", "/oRdErS/1", &s.token).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(s.upstream.last().target, "/1");
    // Without the option the case must match: 404, nothing forwarded.
    let before = s.upstream.count();
    let answer = raw(&s.gateway, "GET", "/exact/1", &s.token).await;
    assert_raw_refusal(&answer, 404, "not_found", "orders");
    assert_eq!(s.upstream.count(), before);
}

// 5. Escapes that form only once decoded.

#[tokio::test]
async fn an_escape_assembled_by_decoding_is_refused() {
    let s = setup("").await;
    for target in ["/orders/%25%32%65%25%32%65/admin", "/orders/%2541"] {
        let answer = raw(&s.gateway, "GET", target, &s.token).await;
        assert_raw_refusal(&answer, 400, "invalid_request", "orders");
    }
    s.upstream.assert_not_reached();
}

// 6. Route precedence.

#[tokio::test]
async fn the_host_chooses_before_the_longest_prefix() {
    let hosted = Upstream::start().await;
    let public = Upstream::start().await;
    let root = Upstream::start().await;
    let apis = format!(
        "[[api]]\nname = \"hosted\"\nhost = \"api.x\"\npath_prefix = \"/orders\"\nupstream = {}\nscopes = [\"mulescope\"]\nclients = [\"orders-app\"]\n\n\
         [[api]]\nname = \"public\"\npath_prefix = \"/orders/public\"\nupstream = {}\nskip_client_id_validation = true\n\
         [[api.rule]]\npublic = true\n\n\
         [[api]]\nname = \"root\"\nupstream = {}\nskip_client_id_validation = true\n",
        toml_string(&hosted.url()),
        toml_string(&public.url()),
        toml_string(&root.url()),
    );
    let s = setup_with(Upstream::start().await, &apis).await;
    // The host's API, though a host-less one has a longer prefix; with a port, any case, a dot.
    for host in ["api.x", "API.X:8080", "api.x."] {
        let answer = get_for_host(&s.gateway, host, "/orders/public/1", &s.token).await;
        assert_eq!(answer.status, 200, "{host}: {answer:?}");
        assert_eq!(hosted.last().target, "/orders/public/1");
    }
    assert_eq!(hosted.count(), 3);
    public.assert_not_reached();
    // Without its token the host's API refuses: the public API is not a way round it.
    let answer = get_for_host(&s.gateway, "api.x", "/orders/public/1", "bogus").await;
    assert_raw_refusal(&answer, 401, "invalid_token", "hosted");
    // A path the host has no API for is a 404: no fall-through to the host-less root.
    let answer = get_for_host(&s.gateway, "api.x", "/inventory", &s.token).await;
    assert_raw_refusal(&answer, 404, "not_found", "tollgate");
    root.assert_not_reached();
    // Other hosts use the host-less APIs, longest prefix first.
    let answer = get_for_host(&s.gateway, "other.x", "/orders/public/1", "none").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(public.count(), 1);
    let answer = get_for_host(&s.gateway, "other.x", "/orders/1", &s.token).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(root.last().target, "/orders/1");
    assert_eq!(hosted.count(), 3);
}
