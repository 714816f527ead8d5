//! The registry with several providers, each test on SQLite and on a real PostgreSQL server: an
//! application belongs to the provider it was created or imported at (registration calls counted
//! at each real provider), a contract with another provider's API is refused, and a client id is
//! unique per provider: the same id at two providers is two applications that never share a
//! contract.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::gateway::{CliOutput, Gateway, TempConfig, cli, cli_ok};
use crate::common::idp::TestIdp;
use crate::common::postgres::{Backend, TempSqlite, against_both_stores, store};
use crate::common::upstream::Upstream;
use crate::common::{assert_refusal, assert_rejected, client};

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef0123456789";

against_both_stores!(
    an_application_is_registered_at_its_provider_and_contracts_only_its_apis,
    the_same_client_id_at_two_providers_does_not_share_a_contract,
    one_client_id_at_two_providers_is_two_applications_each_admitted_at_its_own_api,
    apply_takes_a_client_id_once_per_provider,
    the_admin_api_takes_and_shows_the_provider,
);

pub struct Setup {
    pub a: TestIdp,
    pub b: TestIdp,
    pub up_a: Upstream,
    pub up_b: Upstream,
    pub config: String,
    /// The store's URL (for tests that write it as an older tollgate left it).
    pub store: String,
    _sqlite: Option<TempSqlite>,
}

impl Setup {
    /// Providers `a` and `b` (real, with registration); API `orders` of a and `users` of b, whose
    /// clients need a registry contract (auto-approved).
    pub async fn start(backend: Backend) -> Setup {
        let (a, b) = (
            TestIdp::start_with_registration().await,
            TestIdp::start_with_registration().await,
        );
        let (up_a, up_b) = (Upstream::start().await, Upstream::start().await);
        let (url, sqlite) = store(backend).await;
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
            url,
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
            store: url,
            _sqlite: sqlite,
        }
    }

    pub async fn tollgate(&self, args: &[&str]) -> CliOutput {
        cli(args, Some(&self.config), &[]).await
    }

    pub async fn ok(&self, args: &[&str]) -> String {
        cli_ok(args, &self.config).await
    }

    /// `tollgate app import NAME --provider PROVIDER --client-id orders-app`: the client id both
    /// test providers have.
    pub async fn import(&self, name: &str, provider: &str) -> CliOutput {
        let args = ["app", "import", name, "--provider", provider];
        self.tollgate(&[&args[..], &["--client-id", "orders-app"]].concat())
            .await
    }

    /// `tollgate apply -f <file holding text> --dry-run`.
    async fn dry_run(&self, text: &str) -> CliOutput {
        let file = TempConfig::new(text);
        let path = file.path().to_string_lossy().into_owned();
        self.tollgate(&["apply", "-f", &path, "--dry-run"]).await
    }
}

/// Sends `GET path` through `gw` with `token`.
pub async fn get(gw: &Gateway, path: &str, token: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("a request through the gateway")
}

/// Waits (5 s) until `gw` admits `token` at `path`: the gateway's index has the contract.
pub async fn admitted(gw: &Gateway, path: &str, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(gw, path, token).await.status() != 200 {
        assert!(Instant::now() < deadline, "{path} never admitted the token");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn an_application_is_registered_at_its_provider_and_contracts_only_its_apis(
    backend: Backend,
) {
    let s = Setup::start(backend).await;
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

async fn the_same_client_id_at_two_providers_does_not_share_a_contract(backend: Backend) {
    let s = Setup::start(backend).await;
    // Both providers have a client `orders-app`; only A's is in the registry, with a contract.
    let out = s.import("shop", "a").await;
    assert_eq!(out.status, 0, "{out:?}");
    s.ok(&["contract", "request", "shop", "orders"]).await;
    let gw = Gateway::start(&s.config).await;
    gw.wait_ready().await;
    let from_a = s.a.token("orders-app", "orders-secret", "mulescope").await;
    let from_b = s.b.token("orders-app", "orders-secret", "mulescope").await;
    admitted(&gw, "/orders/1", &from_a).await;
    let before_b = s.b.stats().await.introspection;
    // B's `orders-app` is another client: it holds no contract, whatever its id.
    assert_rejected(
        get(&gw, "/users/1", &from_b).await,
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
        get(&gw, "/users/1", &from_a).await,
        401,
        Some("invalid_token"),
        &s.up_b,
    )
    .await;
    assert_eq!(s.up_a.count(), 1, "only A's client reached A's API");
}

async fn one_client_id_at_two_providers_is_two_applications_each_admitted_at_its_own_api(
    backend: Backend,
) {
    let s = Setup::start(backend).await;
    for (name, provider) in [("shop-a", "a"), ("shop-b", "b")] {
        let out = s.import(name, provider).await;
        assert_eq!(out.status, 0, "{out:?}");
    }
    // The same id at the same provider is the same client: still a duplicate.
    let out = s.import("shop-again", "a").await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("client id \"orders-app\" exists already")
            && out
                .stderr
                .contains("provider \"a\" (application \"shop-a\")"),
        "{out:?}"
    );
    s.ok(&["contract", "request", "shop-a", "orders"]).await;
    s.ok(&["contract", "request", "shop-b", "users"]).await;
    let gw = Gateway::start(&s.config).await;
    gw.wait_ready().await;
    let from_a = s.a.token("orders-app", "orders-secret", "mulescope").await;
    let from_b = s.b.token("orders-app", "orders-secret", "mulescope").await;
    admitted(&gw, "/orders/1", &from_a).await;
    admitted(&gw, "/users/1", &from_b).await;
    // Each contract is its own application's: revoking B's leaves A's admitting.
    s.ok(&["contract", "revoke", "shop-b", "users"]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&gw, "/users/1", &from_b).await.status() != 403 {
        assert!(Instant::now() < deadline, "B's revoke never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Refused before the upstream: it sees nothing past the admitted request.
    let seen_by_b = s.up_b.count();
    assert_refusal(
        get(&gw, "/users/1", &from_b).await,
        403,
        Some("access_denied"),
    )
    .await;
    assert_eq!(
        s.up_b.count(),
        seen_by_b,
        "a revoked client reached B's API"
    );
    let seen_by_a = s.up_a.count();
    assert_eq!(get(&gw, "/orders/1", &from_a).await.status(), 200);
    assert_eq!(
        s.up_a.count(),
        seen_by_a + 1,
        "A's client still reaches A's API"
    );
    let shown: Value = serde_json::from_str(&s.ok(&["app", "list", "--json"]).await).unwrap();
    let pairs: Vec<(&str, &str)> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().unwrap(),
                a["client_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs, [("a", "orders-app"), ("b", "orders-app")]);
}

async fn apply_takes_a_client_id_once_per_provider(backend: Backend) {
    let s = Setup::start(backend).await;
    let app = |name: &str, provider: &str| {
        format!(
            "[[app]]\nname = \"{name}\"\nprovider = \"{provider}\"\nclient_id = \"orders-app\"\n\n"
        )
    };
    let out = s
        .dry_run(&[app("shop-a", "a"), app("shop-b", "b")].concat())
        .await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        out.stdout.contains("import application shop-a")
            && out.stdout.contains("import application shop-b"),
        "{out:?}"
    );
    let out = s
        .dry_run(&[app("shop-a", "a"), app("shop-x", "a")].concat())
        .await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains(
            "app[1].client_id: client id \"orders-app\" of provider \"a\" is declared twice (first at app[0].client_id)"
        ),
        "{out:?}"
    );
    // Against the store: the id is taken at A, free at B.
    let out = s.import("shop-a", "a").await;
    assert_eq!(out.status, 0, "{out:?}");
    let out = s
        .dry_run(&[app("shop-x", "a"), app("shop-b", "b")].concat())
        .await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains(
            "app[0].client_id: client \"orders-app\" of provider \"a\" is application \"shop-a\" in the registry already"
        ) && !out.stderr.contains("app[1]"),
        "{out:?}"
    );
    let apps: Value = serde_json::from_str(&s.ok(&["app", "list", "--json"]).await).unwrap();
    assert_eq!(
        apps.as_array().map(Vec::len),
        Some(1),
        "dry runs changed nothing"
    );
}

async fn the_admin_api_takes_and_shows_the_provider(backend: Backend) {
    let s = Setup::start(backend).await;
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
    let (status, body) = call("POST", "/v1/apps", at_b.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["provider"], "b");
    // The same client id: another application at A, a duplicate at B.
    let at_a = serde_json::json!({"name": "shop-a", "client_id": "orders-app", "provider": "a"});
    let (status, body) = call("POST", "/v1/apps", at_a).await;
    assert_eq!(
        (status, &body["provider"]),
        (201, &Value::from("a")),
        "{body}"
    );
    at_b["name"] = "shop-b".into();
    let (status, body) = call("POST", "/v1/apps", at_b).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("at provider \"b\" (application \"shop\")")),
        "{body}"
    );
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
