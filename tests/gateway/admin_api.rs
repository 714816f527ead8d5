//! The registry's admin API (`/v1/*` on the admin listener) against the real binary on an SQLite
//! store: refused without `[admin] token` (403) and with a missing or wrong one (401); a contract
//! lifecycle made over HTTP that the same gateway enforces on tokens from the real OpenID
//! provider; every error class as `application/problem+json`; an `Idempotency-Key` that replays
//! a create without a second call at the (fake Okta) provider.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::gateway::Gateway;
use crate::common::idp::TestIdp;
use crate::common::postgres::{TempSqlite, sqlite_url};
use crate::common::upstream::Upstream;
use crate::common::{assert_rejected, base_config, client, eventually};

mod errors;

const TOKEN: &str = "admin-token-0123456789abcdef0123456789";
const BOUND: Duration = Duration::from_secs(3);

/// A gateway on a fresh SQLite store with one API, `orders`, and `admin` lines in `[admin]`.
struct Setup {
    idp: TestIdp,
    upstream: Upstream,
    gw: Gateway,
    _store: TempSqlite,
}

impl Setup {
    async fn start(admin: &str) -> Setup {
        let idp = TestIdp::start().await;
        let upstream = Upstream::start().await;
        let store = sqlite_url();
        let extra = format!(
            r#"
[admin]
{admin}

[registry]
store = "{}"
refresh_interval = "200ms"

[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "{}"
scopes = ["mulescope"]
"#,
            store.url,
            upstream.url()
        );
        let gw = Gateway::start(&base_config(&idp.issuer, &extra)).await;
        gw.wait_ready().await;
        Setup {
            idp,
            upstream,
            gw,
            _store: store,
        }
    }

    async fn with_token() -> Setup {
        Setup::start(&format!("token = \"{TOKEN}\"")).await
    }
}

/// An admin API call with the right token; its status and JSON body.
async fn call(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = client()
        .request(method.parse().unwrap(), gw.admin_url(path))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("admin API request");
    read(resp).await
}

async fn read(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts an RFC 9457 problem: its media type, status and the members it must have.
async fn assert_problem(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "RFC 9457 §3"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert!(body["type"].as_str().unwrap().starts_with("/v1/problems/"));
    assert!(!body["title"].as_str().unwrap().is_empty());
    assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
    body
}

async fn orders(s: &Setup, token: &str) -> reqwest::Response {
    client()
        .get(s.gw.url("/orders/1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn without_an_admin_token_configured_v1_is_403_and_the_probes_stay() {
    let s = Setup::start("").await;
    let resp = client()
        .get(s.gw.admin_url("/v1/apps"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 403).await;
    assert!(
        body["detail"].as_str().unwrap().contains("[admin] token"),
        "{body}"
    );
    let health = client()
        .get(s.gw.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = client()
        .get(s.gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    s.upstream.assert_not_reached();
}

#[tokio::test]
async fn a_missing_or_wrong_admin_token_is_401_and_changes_nothing() {
    let s = Setup::with_token().await;
    let import = json!({"name": "shop", "client_id": "orders-app"});
    let longer = format!("{TOKEN}x");
    let same_length = format!("{}X", &TOKEN[..TOKEN.len() - 1]);
    let attempts: [Option<String>; 4] = [
        None,
        Some(format!("Bearer {longer}")),
        Some(format!("Bearer {same_length}")),
        Some(format!("Basic {TOKEN}")),
    ];
    for authorization in attempts {
        let mut req = client().post(s.gw.admin_url("/v1/apps")).json(&import);
        if let Some(a) = &authorization {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Bearer realm=\"tollgate-admin\"",
            "{authorization:?}"
        );
        assert_problem(resp, 401).await;
    }
    assert_eq!(call(&s.gw, "GET", "/v1/apps", None).await, (200, json!([])));
    s.upstream.assert_not_reached();
    let logs = s.gw.render_logs();
    assert!(!logs.contains(TOKEN), "the admin token is never logged");
}

#[tokio::test]
async fn a_contract_lifecycle_over_http_is_enforced_by_the_gateway() {
    let s = Setup::with_token().await;
    let import = json!({"name": "shop", "client_id": "orders-app"});
    let (status, app) = call(&s.gw, "POST", "/v1/apps", Some(import)).await;
    assert_eq!((status, &app["origin"]), (201, &json!("imported")), "{app}");
    let token = s
        .idp
        .token("orders-app", "orders-secret", "mulescope")
        .await;
    assert_rejected(
        orders(&s, &token).await,
        403,
        Some("access_denied"),
        &s.upstream,
    )
    .await;

    let request = json!({"app": "shop", "api": "orders"});
    let (status, c) = call(&s.gw, "POST", "/v1/contracts", Some(request)).await;
    assert_eq!((status, &c["status"]), (201, &json!("pending")), "{c}");
    let (_, listed) = call(&s.gw, "GET", "/v1/contracts?status=pending", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    let step = |action: &'static str, expected: &'static str| {
        let gw = &s.gw;
        async move {
            let path = format!("/v1/contracts/shop/orders/{action}");
            let (status, c) = call(gw, "POST", &path, None).await;
            assert_eq!((status, c["status"].as_str()), (200, Some(expected)), "{c}");
        }
    };
    let admits = |expected: u16, what: &'static str| {
        let token = token.clone();
        let s = &s;
        async move {
            eventually(BOUND, what, || async {
                orders(s, &token).await.status().as_u16() == expected
            })
            .await;
        }
    };
    step("approve", "approved").await;
    admits(200, "the approval reaches the gateway").await;
    step("revoke", "revoked").await;
    admits(403, "the revoke reaches the gateway").await;
    step("restore", "approved").await;
    admits(200, "the restore reaches the gateway").await;
    let (status, _) = call(&s.gw, "POST", "/v1/apps/shop/disable", None).await;
    assert_eq!(status, 200);
    admits(403, "a disabled application admits nothing").await;
    call(&s.gw, "POST", "/v1/apps/shop/enable", None).await;
    admits(200, "enabled again").await;
    step("revoke", "revoked").await;
    let (status, gone) = call(&s.gw, "DELETE", "/v1/contracts/shop/orders", None).await;
    assert_eq!((status, &gone["status"]), (200, &json!("deleted")));
    admits(403, "a deleted contract admits nothing").await;

    let (_, shown) = call(&s.gw, "GET", "/v1/apps/shop", None).await;
    assert_eq!(shown["contracts"], json!([]), "{shown}");
    let (_, audit) = call(&s.gw, "GET", "/v1/audit?since=1h&app=shop", None).await;
    let entries = audit.as_array().unwrap();
    assert!(entries.iter().all(|e| e["actor"] == "admin"), "{audit}");
    assert_eq!(entries.first().unwrap()["action"], "app.import");
    assert_eq!(entries.last().unwrap()["action"], "contract.delete");
}

#[tokio::test]
async fn without_a_registry_the_api_says_what_to_configure() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let extra = format!(
        r#"
[admin]
token = "{TOKEN}"

[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "{}"
scopes = ["mulescope"]
clients = ["orders-app"]
"#,
        upstream.url()
    );
    let gw = Gateway::start(&base_config(&idp.issuer, &extra)).await;
    gw.wait_ready().await;
    let resp = client()
        .get(gw.admin_url("/v1/contracts"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 409).await;
    assert!(
        body["detail"].as_str().unwrap().contains("[registry]"),
        "{body}"
    );
    upstream.assert_not_reached();
}
