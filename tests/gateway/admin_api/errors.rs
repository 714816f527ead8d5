//! The admin API's refusals, each class as `application/problem+json` with its status, and
//! `Idempotency-Key` replays counted at the fake Okta provider.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Setup, TOKEN, assert_problem, call, read};
use crate::common::fake_okta::{FakeOkta, Fault};
use crate::common::gateway::Gateway;
use crate::common::postgres::{TempSqlite, sqlite_url};
use crate::common::{client, raw_http};

const API_TOKEN: &str = "00okta-api-token";

/// A raw request with the right token: `content_type` and `body` as given.
async fn send(gw: &Gateway, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(gw.admin_url(path))
        .bearer_auth(TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn problem_of(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut req = client()
        .request(method.parse().unwrap(), gw.admin_url(path))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let mut body = assert_problem(resp, status).await;
    body["status_seen"] = json!(status);
    body
}

#[tokio::test]
async fn each_error_class_is_a_problem_with_its_status() {
    let s = Setup::with_token().await;
    let gw = &s.gw;
    let import = json!({"name": "shop", "client_id": "orders-app"});
    assert_eq!(
        call(gw, "POST", "/v1/apps", Some(import.clone())).await.0,
        201
    );
    let cases: [(&str, &str, Option<Value>, u16); 10] = [
        ("GET", "/v1/apps/nobody", None, 404),
        ("POST", "/v1/apps", Some(import), 409),
        (
            "POST",
            "/v1/apps",
            Some(json!({"name": "pw", "client_id": "c", "grant": "password"})),
            422,
        ),
        (
            "POST",
            "/v1/contracts",
            Some(json!({"app": "shop", "api": "nope"})),
            422,
        ),
        (
            "POST",
            "/v1/tiers",
            Some(json!({"api": "orders", "name": "gold", "limits": ["lots"]})),
            422,
        ),
        ("POST", "/v1/contracts/shop/orders/approve", None, 404),
        (
            "POST",
            "/v1/apps",
            Some(json!({"name": "x", "unknown": 1})),
            400,
        ),
        ("GET", "/v1/contracts?status=maybe", None, 400),
        ("GET", "/v1/nothing", None, 404),
        ("PUT", "/v1/apps", None, 405),
    ];
    for (method, path, body, status) in cases {
        let p = problem_of(gw, method, path, body).await;
        assert_eq!(p["status_seen"], status, "{method} {path}: {p}");
    }
    // A contract restored while pending: an illegal transition.
    let request = json!({"app": "shop", "api": "orders"});
    assert_eq!(
        call(gw, "POST", "/v1/contracts", Some(request)).await.0,
        201
    );
    let p = problem_of(gw, "POST", "/v1/contracts/shop/orders/restore", None).await;
    assert_eq!(p["status_seen"], 409, "{p}");
    assert_eq!(p["type"], "/v1/problems/illegal-transition");

    let form = send(
        gw,
        "/v1/apps",
        "application/x-www-form-urlencoded",
        b"name=x".to_vec(),
    )
    .await;
    assert_problem(form, 415).await;
    let mut big = br#"{"name":"big","client_id":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 70 * 1024));
    big.extend(br#""}"#);
    let oversized = send(gw, "/v1/apps", "application/json", big).await;
    assert_problem(oversized, 413).await;
    // Chunked, so no Content-Length tells in advance: the limit holds while reading.
    let mut chunked = format!(
        "POST /v1/apps HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..70 {
        chunked.extend(b"400\r\n");
        chunked.extend([b' '; 0x400]);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let answer = raw_http(gw.admin, &chunked).await;
    assert_eq!(answer.status, 413, "{}", answer.head);
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let (_, apps) = call(gw, "GET", "/v1/apps", None).await;
    assert_eq!(
        apps.as_array().unwrap().len(),
        1,
        "nothing else was added: {apps}"
    );
    s.upstream.assert_not_reached();
}

/// A gateway whose provider is the fake Okta (create, rotate and delete go there).
struct OktaSetup {
    okta: FakeOkta,
    gw: Gateway,
    config: String,
    _store: Option<TempSqlite>,
}

impl OktaSetup {
    async fn start() -> OktaSetup {
        let store = sqlite_url();
        let url = store.url.clone();
        Self::start_on(url, Some(store)).await
    }

    /// The same on a fresh database of the tests' PostgreSQL server.
    async fn start_on_postgres() -> OktaSetup {
        let url = crate::common::postgres::PgServer::shared()
            .await
            .fresh_database()
            .await;
        Self::start_on(url, None).await
    }

    async fn start_on(store_url: String, store: Option<TempSqlite>) -> OktaSetup {
        let okta = FakeOkta::start(API_TOKEN).await;
        // Ephemeral ports: two of these gateways may run at once.
        let admin = format!(
            "\n[admin]\ntoken = \"{TOKEN}\"\n\n[listen]\naddress = \"127.0.0.1:0\"\nadmin_address = \"127.0.0.1:0\""
        );
        let config = okta.config(API_TOKEN, "", &store_url, &admin);
        let gw = Gateway::start(&config).await;
        gw.wait_ready().await;
        OktaSetup {
            okta,
            gw,
            config,
            _store: store,
        }
    }

    async fn create(&self, key: &str, body: Value) -> reqwest::Response {
        create_at(&self.gw, key, body).await
    }

    fn creates(&self) -> usize {
        self.okta
            .calls()
            .iter()
            .filter(|c| c.method == "POST" && c.path.ends_with("/clients"))
            .count()
    }
}

/// `POST /v1/apps` at `gw` with an Idempotency-Key.
async fn create_at(gw: &Gateway, key: &str, body: Value) -> reqwest::Response {
    client()
        .post(gw.admin_url("/v1/apps"))
        .bearer_auth(TOKEN)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_idempotency_key_replays_a_create_without_a_second_provider_call() {
    let s = OktaSetup::start().await;
    let shop = json!({"name": "shop", "grant": "client_credentials"});
    let first = s.create("key-1", shop.clone()).await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let (status, created) = read(first).await;
    assert_eq!(status, 201, "{created}");
    assert!(created["client_secret"].is_string(), "the secret, once");
    let (status, again) = read(s.create("key-1", shop.clone()).await).await;
    assert_eq!(status, 201);
    assert_eq!(again["client_id"], created["client_id"]);
    assert_eq!(
        again["client_secret"],
        Value::Null,
        "a replay never shows the secret"
    );
    assert_eq!(s.creates(), 1, "the provider was called once");
    assert_eq!(s.okta.client_names(), ["tollgate-shop"]);

    let other = json!({"name": "other", "grant": "client_credentials"});
    let reused = s.create("key-1", other).await;
    assert_problem(reused, 422).await;
    assert_eq!(s.creates(), 1, "a reused key runs nothing");
    // Without a key, a second create of the same name is a duplicate, refused before the provider.
    let (status, _) = call(&s.gw, "POST", "/v1/apps", Some(shop)).await;
    assert_eq!(status, 409);
    assert_eq!(s.creates(), 1);
}

#[tokio::test]
async fn a_provider_refusal_is_a_502_carrying_the_providers_own_words() {
    let s = OktaSetup::start().await;
    s.okta.fail_next(Fault::InvalidToken);
    let resp = s
        .create(
            "key-2",
            json!({"name": "shop", "grant": "client_credentials"}),
        )
        .await;
    let p = assert_problem(resp, 502).await;
    assert_eq!(p["errorCode"], "E0000011", "{p}");
    assert_eq!(p["provider_status"], 401, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("registration_authorization")
    );
    let (_, apps) = call(&s.gw, "GET", "/v1/apps", None).await;
    assert_eq!(apps, json!([]), "nothing recorded");
    let (_, ops) = call(&s.gw, "GET", "/v1/operations", None).await;
    assert_eq!(ops[0]["state"], "failed", "{ops}");
}

#[tokio::test]
async fn one_key_runs_once_across_concurrent_requests_and_gateways() {
    one_key_runs_once(OktaSetup::start().await).await;
}

#[tokio::test]
async fn one_key_runs_once_across_gateways_sharing_postgresql() {
    one_key_runs_once(OktaSetup::start_on_postgres().await).await;
}

async fn one_key_runs_once(s: OktaSetup) {
    // The first create is slow at the provider, so the second arrives while it runs.
    s.okta.fail_next(Fault::Slow(Duration::from_millis(800)));
    let shop = json!({"name": "shop", "grant": "client_credentials"});
    let (a, b) = tokio::join!(
        s.create("key-3", shop.clone()),
        s.create("key-3", shop.clone())
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [201, 409],
        "one ran, the other was told it is under way"
    );
    assert_eq!(s.creates(), 1, "the provider was called once");

    // Another gateway on the same store knows the key.
    let other = Gateway::start(&s.config).await;
    other.wait_ready().await;
    let replay = create_at(&other, "key-3", shop).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(s.creates(), 1, "a replay at another gateway runs nothing");
}
