//! The registry end to end, each test on SQLite and on a real PostgreSQL server: applications, contracts and tiers changed with the real
//! `tollgate` CLI while a real gateway enforces them against tokens from the real OpenID provider.
//! A revoke stops a token already in the verdict cache within `refresh_interval`; bad input
//! changes nothing; without a `[registry]` the commands say what to configure.

use std::time::Duration;

use crate::common::gateway::{CliOutput, Gateway, cli, cli_ok};
use crate::common::idp::TestIdp;
use crate::common::postgres::{
    Backend, PgServer, TempSqlite, against_both_stores, sqlite_url, store,
};
use crate::common::upstream::Upstream;
use crate::common::{assert_rejected, base_config, client, eventually, sample};

/// The refresh interval of these tests, and the bound they allow a change to take.
const REFRESH: &str = "200ms";
const BOUND: Duration = Duration::from_secs(3);

against_both_stores!(
    approve_admits_and_revoke_stops_a_cached_token_within_the_refresh_interval,
    tiers_and_the_api_decide_whether_a_request_is_approved_at_once,
    bad_input_gets_a_clear_error_and_changes_nothing,
    a_tier_limit_answers_429_with_ratelimit_fields_and_counts_only_what_passes,
    two_gateways_sharing_a_store_both_see_a_revoke_within_the_bound,
);

struct Setup {
    idp: TestIdp,
    upstream: Upstream,
    config: String,
    _sqlite: Option<TempSqlite>,
}

impl Setup {
    async fn start(backend: Backend) -> Setup {
        let idp = TestIdp::start().await;
        let upstream = Upstream::start().await;
        let (store, sqlite) = store(backend).await;
        let extra = format!(
            r#"
[registry]
store = "{store}"
refresh_interval = "{REFRESH}"

[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "{}"
scopes = ["mulescope"]
"#,
            upstream.url()
        );
        let config = base_config(&idp.issuer, &extra);
        Setup {
            idp,
            upstream,
            config,
            _sqlite: sqlite,
        }
    }

    async fn tollgate(&self, args: &[&str]) -> CliOutput {
        cli(args, Some(&self.config), &[]).await
    }

    /// Runs a command that must succeed.
    async fn ok(&self, args: &[&str]) -> String {
        cli_ok(args, &self.config).await
    }
}

async fn get(gw: &Gateway, token: &str) -> reqwest::Response {
    client()
        .get(gw.url("/orders/1"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request through the gateway")
}

/// Runs a command that must succeed, with `config`.
async fn must_succeed(config: String, args: &[&str]) {
    cli_ok(args, &config).await;
}

async fn status(gw: &Gateway, token: &str) -> u16 {
    get(gw, token).await.status().as_u16()
}

/// Waits (within [`BOUND`]) until `gw` answers `expected`; a refusal is then checked once more
/// to reach no upstream at all.
async fn within_bound(gw: &Gateway, upstream: &Upstream, token: &str, expected: u16, what: &str) {
    eventually(BOUND, what, || async {
        status(gw, token).await == expected
    })
    .await;
    if expected >= 400 {
        let seen = upstream.count();
        assert_eq!(status(gw, token).await, expected, "{what}");
        assert_eq!(
            upstream.count(),
            seen,
            "{what}: a refused request reached the upstream"
        );
    }
}

async fn approve_admits_and_revoke_stops_a_cached_token_within_the_refresh_interval(
    backend: Backend,
) {
    let s = Setup::start(backend).await;
    // The store is created by the first command; the gateway is ready once it loaded an index.
    s.ok(&["app", "import", "shop", "--client-id", "orders-app"])
        .await;
    let gw = Gateway::start(&s.config).await;
    gw.wait_ready().await;
    let token = s
        .idp
        .token("orders-app", "orders-secret", "mulescope")
        .await;

    let resp = get(&gw, &token).await;
    assert_rejected(resp, 403, Some("access_denied"), &s.upstream).await;
    assert!(
        s.ok(&["contract", "request", "shop", "orders"])
            .await
            .contains("pending")
    );
    eventually(
        BOUND,
        "the gateway loaded revision 2 (the request)",
        || async { sample(&gw.metrics().await, "tollgate_registry_revision", &[]) == Some(2.0) },
    )
    .await;
    let resp = get(&gw, &token).await;
    assert_rejected(resp, 403, Some("access_denied"), &s.upstream).await;

    s.ok(&["contract", "approve", "shop", "orders"]).await;
    within_bound(
        &gw,
        &s.upstream,
        &token,
        200,
        "the approval reaches the gateway",
    )
    .await;
    let introspections = s.idp.stats().await.introspection;

    s.ok(&["contract", "revoke", "shop", "orders"]).await;
    within_bound(
        &gw,
        &s.upstream,
        &token,
        403,
        "the revoke reaches the gateway",
    )
    .await;
    assert_eq!(
        s.idp.stats().await.introspection,
        introspections,
        "the token stayed cached: the contract check is not"
    );
    s.ok(&["contract", "restore", "shop", "orders"]).await;
    within_bound(
        &gw,
        &s.upstream,
        &token,
        200,
        "the restore reaches the gateway",
    )
    .await;
    s.ok(&["app", "disable", "shop"]).await;
    within_bound(
        &gw,
        &s.upstream,
        &token,
        403,
        "a disabled application admits nothing",
    )
    .await;
    s.ok(&["app", "enable", "shop"]).await;
    within_bound(&gw, &s.upstream, &token, 200, "enabled again").await;
    s.ok(&["app", "delete", "shop"]).await;
    within_bound(
        &gw,
        &s.upstream,
        &token,
        403,
        "a deleted application's contracts go with it",
    )
    .await;
}

async fn tiers_and_the_api_decide_whether_a_request_is_approved_at_once(backend: Backend) {
    let s = Setup::start(backend).await;
    s.ok(&["app", "import", "shop", "--client-id", "orders-app"])
        .await;
    s.ok(&[
        "tier",
        "create",
        "orders",
        "gold",
        "--limit",
        "100/1s",
        "--limit",
        "10000/1d",
        "--auto-approve",
    ])
    .await;
    s.ok(&["tier", "create", "orders", "silver", "--limit", "10/1s"])
        .await;
    let out = s.tollgate(&["contract", "request", "shop", "orders"]).await;
    assert_eq!(out.status, 1, "an API with tiers needs one named: {out:?}");
    assert!(out.stderr.contains("--tier"), "{out:?}");
    assert!(
        s.ok(&["contract", "request", "shop", "orders", "--tier", "gold"])
            .await
            .contains("approved")
    );
    let tiers: serde_json::Value =
        serde_json::from_str(&s.ok(&["tier", "list", "--api", "orders", "--json"]).await).unwrap();
    assert_eq!(tiers[0]["name"], "gold");
    assert_eq!(
        tiers[0]["limits"],
        serde_json::json!(["100/1s", "10000/1day"])
    );
    let out = s.tollgate(&["tier", "delete", "orders", "gold"]).await;
    assert_eq!(out.status, 1, "a tier in use is not deleted: {out:?}");
    s.ok(&["tier", "deprecate", "orders", "silver"]).await;
    s.ok(&["app", "import", "other", "--client-id", "other-app"])
        .await;
    let out = s
        .tollgate(&["contract", "request", "other", "orders", "--tier", "silver"])
        .await;
    assert_eq!(
        out.status, 1,
        "a deprecated tier takes no new contracts: {out:?}"
    );
    assert!(out.stderr.contains("deprecated"), "{out:?}");
}

async fn bad_input_gets_a_clear_error_and_changes_nothing(backend: Backend) {
    let s = Setup::start(backend).await;
    s.ok(&["app", "import", "shop", "--client-id", "orders-app"])
        .await;
    let cases: [(&[&str], &str); 8] = [
        (
            &["app", "import", "shop", "--client-id", "x"],
            "exists already",
        ),
        (
            &["app", "import", "other", "--client-id", "orders-app"],
            "client id \"orders-app\" exists already",
        ),
        (
            &["app", "import", "bad name", "--client-id", "y"],
            "letters, digits",
        ),
        (
            &["contract", "request", "shop", "payments"],
            "no API is named \"payments\"",
        ),
        (
            &["contract", "request", "ghost", "orders"],
            "application \"ghost\" does not exist",
        ),
        (
            &["contract", "approve", "shop", "orders"],
            "contract request shop orders",
        ),
        (
            &["tier", "create", "orders", "gold", "--limit", "100"],
            "COUNT/WINDOW",
        ),
        (&["app", "show", "ghost"], "does not exist"),
    ];
    for (args, message) in cases {
        let out = s.tollgate(args).await;
        assert_eq!(out.status, 1, "tollgate {args:?}: {out:?}");
        assert!(
            out.stderr.contains(message),
            "tollgate {args:?} must say {message:?}: {out:?}"
        );
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    s.ok(&["contract", "request", "shop", "orders"]).await;
    s.ok(&["contract", "approve", "shop", "orders"]).await;
    for (args, message) in [
        (["contract", "delete", "shop", "orders"], "revoke it first"),
        (
            ["contract", "restore", "shop", "orders"],
            "only a revoked contract",
        ),
    ] {
        let out = s.tollgate(&args).await;
        assert_eq!(out.status, 1, "{out:?}");
        assert!(out.stderr.contains(message), "{out:?}");
    }
    let audit: serde_json::Value = serde_json::from_str(&s.ok(&["audit", "--json"]).await).unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["app.import", "contract.request", "contract.approve"],
        "only what succeeded"
    );
    let revisions: Vec<i64> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["revision"].as_i64().unwrap())
        .collect();
    assert_eq!(revisions, [1, 2, 3], "a refused change leaves no gap");
    assert_eq!(audit[2]["before"]["status"], "pending");
    assert_eq!(audit[2]["after"]["status"], "approved");
}

#[tokio::test]
async fn without_a_registry_the_commands_say_what_to_configure() {
    let idp = TestIdp::start().await;
    let config = base_config(
        &idp.issuer,
        "[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"http://127.0.0.1:9\"\nclients = [\"a\"]\n",
    );
    let out = cli(&["app", "list"], Some(&config), &[]).await;
    assert_eq!(out.status, 2, "{out:?}");
    assert!(out.stderr.contains("[registry]"), "{out:?}");
}

#[tokio::test]
async fn until_the_first_index_loads_contract_apis_answer_503_and_are_not_ready() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    // A directory that does not exist: the store cannot be opened, so no index ever loads.
    let extra = format!(
        "[registry]\nstore = \"sqlite:///nonexistent/dir/registry.db\"\n\n[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"{}\"\n",
        upstream.url()
    );
    let gw = Gateway::start(&base_config(&idp.issuer, &extra)).await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    let ready = || async {
        client()
            .get(gw.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    eventually(Duration::from_secs(5), "the provider resolved", || async {
        ready().await.contains("contract index")
    })
    .await;
    let resp = get(&gw, &token).await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_rejected(resp, 503, Some("temporarily_unavailable"), &upstream).await;
}

async fn a_tier_limit_answers_429_with_ratelimit_fields_and_counts_only_what_passes(
    backend: Backend,
) {
    let s = Setup::start(backend).await;
    s.ok(&["app", "import", "shop", "--client-id", "orders-app"])
        .await;
    s.ok(&[
        "tier",
        "create",
        "orders",
        "bronze",
        "--limit",
        "3/1h",
        "--auto-approve",
    ])
    .await;
    s.ok(&["contract", "request", "shop", "orders", "--tier", "bronze"])
        .await;
    let gw = Gateway::start(&s.config).await;
    gw.wait_ready().await;
    let token = s
        .idp
        .token("orders-app", "orders-secret", "mulescope")
        .await;
    for _ in 0..3 {
        assert_eq!(status(&gw, &token).await, 200);
    }
    let mut waits = Vec::new();
    for _ in 0..5 {
        let resp = get(&gw, &token).await;
        assert_eq!(resp.status(), 429);
        let header = |name: &str| resp.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("ratelimit-policy"), "\"bronze\";q=3;w=3600");
        let wait: u64 = header("retry-after").parse().unwrap();
        assert_eq!(header("ratelimit"), format!("\"bronze\";r=0;t={wait}"));
        assert!((1..=1200).contains(&wait), "the next of 3 an hour: {wait}");
        waits.push(wait);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "too_many_requests");
    }
    assert!(
        waits.windows(2).all(|w| w[1] <= w[0]),
        "refusals are not counted: {waits:?}"
    );
    assert_eq!(s.upstream.count(), 3);
}

async fn two_gateways_sharing_a_store_both_see_a_revoke_within_the_bound(backend: Backend) {
    let s = Setup::start(backend).await;
    s.ok(&["app", "import", "shop", "--client-id", "orders-app"])
        .await;
    s.ok(&["contract", "request", "shop", "orders"]).await;
    s.ok(&["contract", "approve", "shop", "orders"]).await;
    let (a, b) = (
        Gateway::start(&s.config).await,
        Gateway::start(&s.config).await,
    );
    a.wait_ready().await;
    b.wait_ready().await;
    let token = s
        .idp
        .token("orders-app", "orders-secret", "mulescope")
        .await;
    assert_eq!(
        (status(&a, &token).await, status(&b, &token).await),
        (200, 200)
    );
    let revoked = std::time::Instant::now();
    s.ok(&["contract", "revoke", "shop", "orders"]).await;
    within_bound(
        &a,
        &s.upstream,
        &token,
        403,
        "the first gateway sees the revoke",
    )
    .await;
    within_bound(
        &b,
        &s.upstream,
        &token,
        403,
        "the second gateway sees the revoke",
    )
    .await;
    assert!(
        revoked.elapsed() < BOUND,
        "both within {BOUND:?}: {:?}",
        revoked.elapsed()
    );
    for gw in [&a, &b] {
        assert_eq!(
            sample(&gw.metrics().await, "tollgate_registry_revision", &[]),
            Some(4.0)
        );
    }
}

#[tokio::test]
async fn a_gateway_started_while_the_store_is_unreachable_serves_its_snapshot() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let sqlite = sqlite_url();
    let db = std::path::PathBuf::from(
        sqlite
            .url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap(),
    );
    let dir = db.parent().unwrap().to_owned();
    let moved = dir.with_extension("moved");
    let snapshot = moved.with_extension("snapshot.json");
    let extra = format!(
        "[registry]\nstore = \"{}\"\nrefresh_interval = \"{REFRESH}\"\nsnapshot = \"{}\"\n\n[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"{}\"\n",
        sqlite.url,
        snapshot.display(),
        upstream.url()
    );
    let config = base_config(&idp.issuer, &extra);
    let ok = |args: &'static [&'static str]| must_succeed(config.clone(), args);
    ok(&["app", "import", "shop", "--client-id", "orders-app"]).await;
    ok(&["contract", "request", "shop", "orders"]).await;
    ok(&["contract", "approve", "shop", "orders"]).await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    {
        let gw = Gateway::start(&config).await;
        gw.wait_ready().await;
        assert_eq!(status(&gw, &token).await, 200);
        eventually(BOUND, "the snapshot is written", || async {
            snapshot.exists()
        })
        .await;
    }
    // The store's directory is gone: it cannot be opened.
    std::fs::rename(&dir, &moved).unwrap();
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;
    assert_eq!(status(&gw, &token).await, 200, "served from the snapshot");
    assert!(
        gw.logs()
            .iter()
            .any(|l| l.contains("contract index snapshot")),
        "{}",
        gw.render_logs()
    );
    // The store is back: the gateway opens it and follows its changes again.
    std::fs::rename(&moved, &dir).unwrap();
    ok(&["contract", "revoke", "shop", "orders"]).await;
    // Reopening backs off up to 2 s, then the next refresh sees the revoke.
    eventually(
        Duration::from_secs(8),
        "the revoke, once the store is back",
        || async { status(&gw, &token).await == 403 },
    )
    .await;
    let _ = std::fs::remove_file(&snapshot);
}

#[tokio::test]
async fn on_postgresql_a_change_is_announced_and_seen_long_before_the_next_poll() {
    let idp = TestIdp::start().await;
    let upstream = Upstream::start().await;
    let url = PgServer::shared().await.fresh_database().await;
    let extra = format!(
        "[registry]\nstore = \"{url}\"\nrefresh_interval = \"30s\"\n\n[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"{}\"\n",
        upstream.url()
    );
    let config = base_config(&idp.issuer, &extra);
    let ok = |args: &'static [&'static str]| must_succeed(config.clone(), args);
    ok(&["app", "import", "shop", "--client-id", "orders-app"]).await;
    ok(&["contract", "request", "shop", "orders"]).await;
    let gw = Gateway::start(&config).await;
    gw.wait_ready().await;
    let token = idp.token("orders-app", "orders-secret", "mulescope").await;
    assert_eq!(status(&gw, &token).await, 403);
    // Ready means the first index is loaded, which happens after the listener is up.
    let sent = std::time::Instant::now();
    ok(&["contract", "approve", "shop", "orders"]).await;
    within_bound(&gw, &upstream, &token, 200, "the approval, announced").await;
    ok(&["contract", "revoke", "shop", "orders"]).await;
    within_bound(&gw, &upstream, &token, 403, "the revoke, announced").await;
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "well within the 30 s poll: {:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn a_store_that_cannot_be_opened_or_is_newer_says_what_to_do() {
    let idp = TestIdp::start().await;
    let api = "[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"http://127.0.0.1:9\"\n";
    let unopenable = base_config(
        &idp.issuer,
        &format!("[registry]\nstore = \"sqlite:///nonexistent/dir/registry.db\"\n\n{api}"),
    );
    let out = cli(&["app", "list"], Some(&unopenable), &[]).await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("sqlite:///nonexistent/dir/registry.db cannot be opened"),
        "{out:?}"
    );

    let sqlite = sqlite_url();
    let config = base_config(
        &idp.issuer,
        &format!("[registry]\nstore = \"{}\"\n\n{api}", sqlite.url),
    );
    must_succeed(config.clone(), &["app", "list"]).await;
    // A newer tollgate migrated this store: this one must not write to it.
    let pool = sqlx::SqlitePool::connect(&sqlite.url).await.unwrap();
    sqlx::query("UPDATE tollgate_schema SET version = 99")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let out = cli(
        &["app", "import", "shop", "--client-id", "c"],
        Some(&config),
        &[],
    )
    .await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stderr.contains("newer than this tollgate knows")
            && out.stderr.contains("upgrade tollgate"),
        "{out:?}"
    );
}
