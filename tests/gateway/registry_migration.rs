//! Stores an older tollgate left, each test on SQLite and on a real PostgreSQL server: written
//! here with the schema of that version (as it was), then opened by this tollgate. Every row,
//! reference and contract survives the upgrade to client ids unique per provider, and a gateway
//! warns at start of applications whose provider is no longer configured.

use serde_json::Value;
use sqlx::AnyPool;

use crate::common::gateway::Gateway;
use crate::common::postgres::{Backend, against_both_stores};
use crate::providers_registry::{Setup, admitted};

against_both_stores!(
    a_version_5_store_keeps_its_rows_and_contracts_and_takes_a_client_id_per_provider,
    applications_of_a_version_4_store_belong_to_the_default_provider,
);

/// The tables of schema versions 1 to 4, as those versions created them.
const V4_TABLES: &[&str] = &[
    "CREATE TABLE tollgate_schema (id BIGINT PRIMARY KEY, version BIGINT NOT NULL)",
    "CREATE TABLE registry_state (id BIGINT PRIMARY KEY, revision BIGINT NOT NULL)",
    "INSERT INTO registry_state (id, revision) VALUES (1, 1)",
    "CREATE TABLE apps (name TEXT PRIMARY KEY, client_id TEXT NOT NULL UNIQUE, \
     grant_type TEXT NOT NULL, redirect_uris TEXT NOT NULL, description TEXT NOT NULL, \
     status TEXT NOT NULL, origin TEXT NOT NULL, created_at BIGINT NOT NULL, \
     updated_at BIGINT NOT NULL)",
    "CREATE TABLE tiers (api TEXT NOT NULL, name TEXT NOT NULL, limits TEXT NOT NULL, \
     auto_approve BIGINT NOT NULL, status TEXT NOT NULL, created_at BIGINT NOT NULL, \
     PRIMARY KEY (api, name))",
    "CREATE TABLE contracts (app TEXT NOT NULL REFERENCES apps (name), api TEXT NOT NULL, \
     tier TEXT, status TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, \
     PRIMARY KEY (app, api))",
    "CREATE TABLE audit (revision BIGINT PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, \
     action TEXT NOT NULL, subject TEXT NOT NULL, before_json TEXT, after_json TEXT)",
    "CREATE TABLE operations (id TEXT PRIMARY KEY, kind TEXT NOT NULL, app TEXT NOT NULL, \
     state TEXT NOT NULL, detail TEXT NOT NULL, created_at BIGINT NOT NULL, \
     updated_at BIGINT NOT NULL)",
    "CREATE TABLE registry_keys (id BIGINT PRIMARY KEY, salt TEXT NOT NULL)",
    "CREATE TABLE app_registrations (app TEXT PRIMARY KEY REFERENCES apps (name), \
     client_uri TEXT NOT NULL, sealed_token TEXT NOT NULL)",
    "CREATE TABLE idempotency (key TEXT PRIMARY KEY, request_digest TEXT NOT NULL, \
     status BIGINT NOT NULL, body TEXT NOT NULL, created_at BIGINT NOT NULL)",
    // Two applications, one with an approved contract with `orders` (provider a's API) and a
    // kept registration that refers to it.
    "INSERT INTO apps VALUES ('shop', 'orders-app', 'client_credentials', '[]', 'the shop', \
     'active', 'imported', 1, 1)",
    "INSERT INTO apps VALUES ('legacy', 'legacy-app', 'client_credentials', '[]', '', \
     'active', 'imported', 1, 1)",
    "INSERT INTO contracts VALUES ('shop', 'orders', NULL, 'approved', 1, 1)",
    "INSERT INTO app_registrations VALUES ('shop', 'https://idp.test/register/orders-app', \
     'sealed')",
];

/// What version 5 added: each application's provider (`legacy`'s since renamed away).
const V5_TABLES: &[&str] = &[
    "CREATE TABLE app_providers (app TEXT PRIMARY KEY REFERENCES apps (name), \
     provider TEXT NOT NULL)",
    "INSERT INTO app_providers VALUES ('shop', 'a')",
    "INSERT INTO app_providers VALUES ('legacy', 'old')",
];

async fn pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(url).await.expect("the test's store")
}

/// Writes the store as a tollgate of schema `version` (4 or 5) left it.
async fn write_old_store(url: &str, version: i64) {
    let pool = pool(url).await;
    let v5: &[&str] = if version >= 5 { V5_TABLES } else { &[] };
    for statement in V4_TABLES.iter().chain(v5) {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    sqlx::query("INSERT INTO tollgate_schema (id, version) VALUES (1, $1)")
        .bind(version)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

async fn a_version_5_store_keeps_its_rows_and_contracts_and_takes_a_client_id_per_provider(
    backend: Backend,
) {
    let s = Setup::start(backend).await;
    write_old_store(&s.store, 5).await;
    // Two processes upgrading at once take turns: both succeed, the second finding it done.
    let (one, two) = tokio::join!(s.tollgate(&["app", "list"]), s.tollgate(&["app", "list"]));
    assert_eq!((one.status, two.status), (0, 0), "{one:?} {two:?}");
    assert!(one.stdout.contains("shop") && two.stdout.contains("shop"));
    let gw = Gateway::start(&s.config).await;
    gw.wait_ready().await;
    // `old` is configured no more: said at start, with how many applications it leaves.
    gw.wait_log("the orphans warning", |l| {
        l["level"] == "WARN" && l["provider"] == "old" && l["applications"] == 1
    })
    .await;
    let token = s.a.token("orders-app", "orders-secret", "mulescope").await;
    admitted(&gw, "/orders/1", &token).await;
    assert_eq!(s.up_a.count(), 1);

    let shown: Value =
        serde_json::from_str(&s.ok(&["app", "show", "shop", "--json"]).await).unwrap();
    assert_eq!(
        (
            &shown["app"]["provider"],
            &shown["app"]["client_id"],
            &shown["app"]["description"]
        ),
        (
            &Value::from("a"),
            &Value::from("orders-app"),
            &Value::from("the shop")
        )
    );
    assert_eq!(shown["contracts"][0]["status"], "approved", "{shown}");
    let legacy: Value =
        serde_json::from_str(&s.ok(&["app", "show", "legacy", "--json"]).await).unwrap();
    assert_eq!(legacy["app"]["provider"], "old");

    let pool = pool(&s.store).await;
    let (uri,): (String,) =
        sqlx::query_as("SELECT client_uri FROM app_registrations WHERE app = 'shop'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(uri, "https://idp.test/register/orders-app");
    // The references point at the new table: a contract of no application is still refused.
    let orphan =
        sqlx::query("INSERT INTO contracts VALUES ('ghost', 'orders', NULL, 'approved', 1, 1)")
            .execute(&pool)
            .await;
    assert!(orphan.is_err(), "a contract of no application was stored");
    pool.close().await;

    // Client ids are now per provider: B's `orders-app` is another client; A's is taken.
    let out = s.import("shop-b", "b").await;
    assert_eq!(out.status, 0, "{out:?}");
    let out = s.import("shop-2", "a").await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(out.stderr.contains("exists already"), "{out:?}");
}

async fn applications_of_a_version_4_store_belong_to_the_default_provider(backend: Backend) {
    let s = Setup::start(backend).await;
    write_old_store(&s.store, 4).await;
    let shown: Value =
        serde_json::from_str(&s.ok(&["app", "show", "shop", "--json"]).await).unwrap();
    assert_eq!(shown["app"]["provider"], "default");
    let pool = pool(&s.store).await;
    let providers: Vec<(String, String)> =
        sqlx::query_as("SELECT name, provider FROM apps ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected =
        [("legacy", "default"), ("shop", "default")].map(|(a, p)| (a.to_owned(), p.to_owned()));
    assert_eq!(providers, expected, "the migration wrote them");
    pool.close().await;
}
