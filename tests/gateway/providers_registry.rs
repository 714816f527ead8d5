//! The registry with several providers: an application belongs to the provider it was created or
//! imported at (registration calls counted at each real provider), a contract with another
//! provider's API is refused, and the same client id at two providers never shares a contract.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::gateway::{CliOutput, Gateway, cli};
use crate::common::idp::TestIdp;
use crate::common::postgres::{TempSqlite, sqlite_url};
use crate::common::upstream::Upstream;
use crate::common::{assert_rejected, client};

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef0123456789";

struct Setup {
    a: TestIdp,
    b: TestIdp,
    up_a: Upstream,
    up_b: Upstream,
    config: String,
    _store: TempSqlite,
}

impl Setup {
    /// Providers `a` and `b` (real, with registration); API `orders` of a and `users` of b, whose
    /// clients need a registry contract (auto-approved).
    async fn start() -> Setup {
        let (a, b) = (
            TestIdp::start_with_registration().await,
            TestIdp::start_with_registration().await,
        );
        let (up_a, up_b) = (Upstream::start().await, Upstream::start().await);
        let store = sqlite_url();
        let provider = |name: &str, idp: &TestIdp| {
            format!(
                "[[provider]]\nname = \"{name}\"\nissuer = \"{}\"\nintrospection_client_id = \"tollgate-introspector\"\n\
                 introspection_client_secret = \"introspector-secret\"\nregistration_authorization = \"Bearer {}\"\n",
                idp.issuer,
                idp.initial_access_token.as_deref().expect("registration")
            )
        };
        let api = |name: &str, provider: &str, upstream: &Upstream| {
            format!(
                "[[api]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"{}\"\nprovider = \"{provider}\"\n\
                 scopes = [\"mulescope\"]\nauto_approve = true\n",
                upstream.url()
            )
        };
        let config = format!(
            "[listen]\naddress = \"127.0.0.1:0\"\nadmin_address = \"127.0.0.1:0\"\n\n[log]\nformat = \"json\"\n\n\
             [admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n[registry]\nstore = \"{}\"\nrefresh_interval = \"200ms\"\n\
             encryption_key = \"a passphrase of more than thirty-two characters\"\n\n{}\n{}\n{}\n{}",
            store.url,
            provider("a", &a),
            provider("b", &b),
            api("orders", "a", &up_a),
            api("users", "b", &up_b),
        );
        Setup {
            a,
            b,
            up_a,
            up_b,
            config,
            _store: store,
        }
    }

    async fn tollgate(&self, args: &[&str]) -> CliOutput {
        cli(args, Some(&self.config), &[]).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.tollgate(args).await;
        assert_eq!(out.status, 0, "tollgate {args:?}: {out:?}");
        out.stdout
    }
}

#[tokio::test]
async fn an_application_is_registered_at_its_provider_and_contracts_only_its_apis() {
    let s = Setup::start().await;
    let create = [
        "app",
        "create",
        "shop",
        "--grant",
        "authorization_code",
        "--redirect-uri",
        "https://shop.test/cb",
    ];
    let out = s.tollgate(&create).await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains("--provider") && out.stderr.contains("a, b"),
        "{out:?}"
    );
    let out = s
        .tollgate(&[&create[..], &["--provider", "c"]].concat())
        .await;
    assert!(out.stderr.contains("no provider is named \"c\""), "{out:?}");
    assert_eq!(
        s.a.stats().await.registration + s.b.stats().await.registration,
        0
    );

    s.ok(&[&create[..], &["--provider", "b", "--json"]].concat())
        .await;
    assert_eq!(s.b.stats().await.registration, 1, "registered at B");
    assert_eq!(s.a.stats().await.registration, 0, "A was not called");
    let shown: Value =
        serde_json::from_str(&s.ok(&["app", "show", "shop", "--json"]).await).unwrap();
    assert_eq!(shown["app"]["provider"], "b");

    let out = s.tollgate(&["contract", "request", "shop", "orders"]).await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains("client of provider \"b\"")
            && out.stderr.contains("accepts tokens of provider \"a\""),
        "{out:?}"
    );
    s.ok(&["contract", "request", "shop", "users"]).await;
    let exported = s.ok(&["export"]).await;
    assert!(exported.contains("provider = \"b\""), "{exported}");
}

#[tokio::test]
async fn the_same_client_id_at_two_providers_does_not_share_a_contract() {
    let s = Setup::start().await;
    // Both providers have a client `orders-app`; only A's is in the registry, with a contract.
    s.ok(&[
        "app",
        "import",
        "shop",
        "--provider",
        "a",
        "--client-id",
        "orders-app",
    ])
    .await;
    s.ok(&["contract", "request", "shop", "orders"]).await;
    let gw = Gateway::start(&s.config).await;
    gw.wait_ready().await;
    let from_a = s.a.token("orders-app", "orders-secret", "mulescope").await;
    let from_b = s.b.token("orders-app", "orders-secret", "mulescope").await;
    let get = |path: &'static str, token: String| {
        let url = gw.url(path);
        async move { client().get(url).bearer_auth(token).send().await.unwrap() }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while get("/orders/1", from_a.clone()).await.status() != 200 {
        assert!(Instant::now() < deadline, "A's client never admitted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before_b = s.b.stats().await.introspection;
    // B's `orders-app` is another client: it holds no contract, whatever its id.
    assert_rejected(
        get("/users/1", from_b.clone()).await,
        403,
        Some("access_denied"),
        &s.up_b,
    )
    .await;
    assert_eq!(
        s.b.stats().await.introspection - before_b,
        1,
        "B validated it"
    );
    // Nor is A's token anything at B's API: B never issued it.
    assert_rejected(
        get("/users/1", from_a).await,
        401,
        Some("invalid_token"),
        &s.up_b,
    )
    .await;
    assert_eq!(s.up_a.count(), 1, "only A's client reached A's API");
}

#[tokio::test]
async fn applications_of_a_version_4_store_belong_to_the_default_provider() {
    let idp = TestIdp::start().await;
    let store = sqlite_url();
    let config = crate::common::base_config(
        &idp.issuer,
        &format!(
            "[registry]\nstore = \"{}\"\n\n[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"http://127.0.0.1:9\"\n",
            store.url
        ),
    );
    let run = |args: &'static [&'static str]| {
        let config = config.clone();
        async move {
            let out = cli(args, Some(&config), &[]).await;
            assert_eq!(out.status, 0, "{args:?}: {out:?}");
            out.stdout
        }
    };
    run(&["app", "import", "shop", "--client-id", "orders-app"]).await;
    // Back to what a version 4 store holds: applications without a provider.
    let pool = sqlx::SqlitePool::connect(&store.url).await.unwrap();
    for statement in [
        "DROP TABLE app_providers",
        "UPDATE tollgate_schema SET version = 4",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let shown: Value =
        serde_json::from_str(&run(&["app", "show", "shop", "--json"]).await).unwrap();
    assert_eq!(shown["app"]["provider"], "default");
    let pool = sqlx::SqlitePool::connect(&store.url).await.unwrap();
    let (provider,): (String,) =
        sqlx::query_as("SELECT provider FROM app_providers WHERE app = 'shop'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(provider, "default", "the migration wrote it");
    pool.close().await;
}

#[tokio::test]
async fn the_admin_api_takes_and_shows_the_provider() {
    let s = Setup::start().await;
    let gw = Gateway::start(&s.config).await;
    gw.wait_ready().await;
    let call = |method: &'static str, path: &'static str, body: Value| {
        let url = gw.admin_url(path);
        async move {
            let resp = client()
                .request(method.parse().unwrap(), url)
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let import = serde_json::json!({"name": "shop", "client_id": "orders-app"});
    let (status, body) = call("POST", "/v1/apps", import.clone()).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("provider"),
        "{body}"
    );
    let mut at_b = import;
    at_b["provider"] = "b".into();
    let (status, body) = call("POST", "/v1/apps", at_b).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["provider"], "b");
    let (status, body) = call("GET", "/v1/apps/shop", Value::Null).await;
    assert_eq!(
        (status, &body["app"]["provider"]),
        (200, &Value::from("b")),
        "{body}"
    );
    let (status, body) = call(
        "POST",
        "/v1/contracts",
        serde_json::json!({"app": "shop", "api": "orders"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("accepts tokens of provider \"a\""),
        "{body}"
    );
}
