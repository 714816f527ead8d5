//! The registry's provider side through the real CLI: `app create` registers a client at a fake
//! shaped like Okta's `/oauth2/v1/clients` (and at the real oidc-provider by RFC 7591), records
//! its intent first and adopts a client whose answer was lost, waits out a near rate-limit reset,
//! stops on a broken API token, and deletes the client with the application. Each fault test
//! counts the clients at the provider afterwards.

use std::time::Duration;

use serde_json::Value;

use crate::common::fake_okta::{FakeOkta, Fault};
use crate::common::gateway::{CliOutput, cli};
use crate::common::idp::TestIdp;
use crate::common::postgres::{TempSqlite, sqlite_url};

const API_TOKEN: &str = "00okta-api-token";

struct Setup {
    okta: FakeOkta,
    config: String,
    store: TempSqlite,
}

impl Setup {
    async fn start(provider_lines: &str) -> Setup {
        let okta = FakeOkta::start(API_TOKEN).await;
        let store = sqlite_url();
        let config = okta.registry_config(provider_lines, &store.url);
        Setup {
            okta,
            config,
            store,
        }
    }

    /// The same, the registry on a fresh database of the tests' PostgreSQL server.
    async fn start_on_postgres(provider_lines: &str) -> Setup {
        let mut s = Setup::start(provider_lines).await;
        let url = crate::common::postgres::PgServer::shared()
            .await
            .fresh_database()
            .await;
        s.config = s.okta.registry_config(provider_lines, &url);
        s
    }

    async fn tollgate(&self, args: &[&str]) -> CliOutput {
        cli(args, Some(&self.config), &[]).await
    }

    async fn json(&self, args: &[&str]) -> Value {
        let out = self.tollgate(args).await;
        assert_eq!(out.status, 0, "tollgate {args:?}: {out:?}");
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    }

    /// `app create NAME --grant client_credentials --json`, which must succeed.
    async fn create(&self, name: &str) -> Value {
        self.json(&[
            "app",
            "create",
            name,
            "--grant",
            "client_credentials",
            "--json",
        ])
        .await
    }

    /// Every byte the store holds (the SQLite file and its write-ahead log).
    fn store_bytes(&self) -> Vec<u8> {
        let path = self.store.url.trim_start_matches("sqlite://");
        let path = path.split('?').next().unwrap_or_default();
        let mut bytes = std::fs::read(path).unwrap_or_default();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        bytes
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn create_registers_one_client_and_shows_its_secret_once_without_storing_it() {
    let s = Setup::start("").await;
    let created = s.create("shop").await;
    let secret = created["client_secret"]
        .as_str()
        .expect("a secret, once")
        .to_owned();
    assert_eq!(created["client_name"], "tollgate-shop");
    assert_eq!(s.okta.client_names(), ["tollgate-shop"]);
    let held = &s.okta.clients()[0];
    assert_eq!(created["client_id"], held["client_id"]);
    assert_eq!(
        held["response_types"],
        serde_json::json!(["token"]),
        "Okta's service app"
    );
    let shown = s.json(&["app", "show", "shop", "--json"]).await;
    assert_eq!(shown["app"]["origin"], "created");
    assert_eq!(shown["app"]["client_id"], created["client_id"]);
    assert!(
        !contains(&s.store_bytes(), &secret),
        "the secret is never stored"
    );
    let audit = s.json(&["audit", "--json"]).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["op.create_client", "app.create"],
        "the intent is recorded before"
    );
    let again = s
        .tollgate(&["app", "create", "shop", "--grant", "client_credentials"])
        .await;
    assert_eq!(again.status, 1, "{again:?}");
    assert_eq!(
        s.okta.client_names().len(),
        1,
        "a duplicate never reaches the provider"
    );
}

#[tokio::test]
async fn a_lost_answer_is_resolved_by_adopting_the_client_by_its_exact_name() {
    lost_answer(Setup::start("").await).await;
}

#[tokio::test]
async fn a_lost_answer_is_resolved_the_same_on_postgresql() {
    lost_answer(Setup::start_on_postgres("").await).await;
}

async fn lost_answer(s: Setup) {
    // Okta's search is by prefix: a client whose name merely starts the same is not ours.
    s.okta.add_client("tollgate-shop-old");
    s.okta.fail_next(Fault::LoseAnswer);
    let out = s
        .tollgate(&["app", "create", "shop", "--grant", "client_credentials"])
        .await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        out.stdout.contains("rotate-secret"),
        "the lost secret is not invented: {out:?}"
    );
    let names = s.okta.client_names();
    assert_eq!(
        names.iter().filter(|n| *n == "tollgate-shop").count(),
        1,
        "{names:?}"
    );
    let ours = s
        .okta
        .clients()
        .into_iter()
        .find(|c| c["client_name"] == "tollgate-shop")
        .unwrap();
    let shown = s.json(&["app", "show", "shop", "--json"]).await;
    assert_eq!(shown["app"]["client_id"], ours["client_id"]);
    let rotated = s.json(&["app", "rotate-secret", "shop", "--json"]).await;
    assert!(
        rotated["client_secret"]
            .as_str()
            .is_some_and(|x| !x.is_empty())
    );
}

#[tokio::test]
async fn a_near_rate_limit_reset_is_waited_out_and_a_broken_token_stops_with_what_to_fix() {
    let s = Setup::start("").await;
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    s.okta.fail_next(Fault::RateLimited { reset });
    let started = std::time::Instant::now();
    let out = s
        .tollgate(&["app", "create", "shop", "--grant", "client_credentials"])
        .await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it waited for the reset"
    );
    assert_eq!(s.okta.client_names(), ["tollgate-shop"]);

    s.okta.fail_always(Some(Fault::InvalidToken));
    let out = s
        .tollgate(&["app", "create", "other", "--grant", "client_credentials"])
        .await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(out.stderr.contains("registration_authorization"), "{out:?}");
    assert!(
        !out.stderr.contains(API_TOKEN),
        "the token is never shown: {out:?}"
    );
    assert_eq!(
        s.okta.client_names(),
        ["tollgate-shop"],
        "nothing was created"
    );
    let out = s.tollgate(&["app", "show", "other"]).await;
    assert_eq!(out.status, 1, "no application was recorded: {out:?}");
    let status = s.json(&["idp", "status", "--json"]).await;
    assert!(
        status["blocked"]
            .as_str()
            .is_some_and(|b| b.contains("registration_authorization")),
        "{status}"
    );
    assert_eq!(status["failed"], 1);
    s.okta.fail_always(None);
    s.create("other").await;
    let status = s.json(&["idp", "status", "--json"]).await;
    assert_eq!(
        status["blocked"],
        Value::Null,
        "a call that succeeds unblocks: {status}"
    );
    let ops = s.json(&["idp", "ops", "--json"]).await;
    let states: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["done", "failed", "done"], "newest first: {ops}");
}

#[tokio::test]
async fn delete_removes_the_client_at_the_provider_only_when_allowed() {
    let s = Setup::start("delete_in_idp = true").await;
    s.create("shop").await;
    s.create("kept").await;
    let out = s.tollgate(&["app", "delete", "shop"]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(s.okta.client_names(), ["tollgate-kept"]);
    let out = s
        .tollgate(&["app", "delete", "kept", "--keep-idp-client"])
        .await;
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(
        s.okta.client_names(),
        ["tollgate-kept"],
        "kept at the provider"
    );

    let off = Setup::start("").await;
    off.create("shop").await;
    let out = off.tollgate(&["app", "delete", "shop"]).await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(out.stderr.contains("delete_in_idp"), "{out:?}");
    let shown = off.json(&["app", "show", "shop", "--json"]).await;
    assert_eq!(
        shown["app"]["status"], "disabled",
        "disabled at once, kept until the provider agrees"
    );
    assert_eq!(off.okta.client_names(), ["tollgate-shop"]);
}

#[tokio::test]
async fn create_checks_its_input_before_any_call() {
    let s = Setup::start("").await;
    for (args, message) in [
        (
            vec!["--grant", "authorization_code"],
            "needs at least one --redirect-uri",
        ),
        (
            vec![
                "--grant",
                "client_credentials",
                "--redirect-uri",
                "https://app.test/cb",
            ],
            "takes no --redirect-uri",
        ),
        (
            vec!["--grant", "authorization_code", "--redirect-uri", "/cb"],
            "not an absolute URI",
        ),
    ] {
        let mut all = vec!["app", "create", "shop"];
        all.extend(args);
        let out = s.tollgate(&all).await;
        assert_eq!(out.status, 1, "{out:?}");
        assert!(out.stderr.contains(message), "{message}: {out:?}");
    }
    assert_eq!(s.okta.call_count(), 0);
}

#[tokio::test]
async fn the_real_provider_manages_a_client_by_rfc_7592_with_its_sealed_token() {
    let idp = TestIdp::start_with_registration().await;
    let store = sqlite_url();
    let config = |registry_lines: &str, scheme: &str| {
        format!(
            "[provider]\nissuer = \"{}\"\nintrospection_client_id = \"tollgate-introspector\"\nintrospection_client_secret = \"introspector-secret\"\nregistration_authorization = \"{scheme} {}\"\nupdate_in_idp = true\ndelete_in_idp = true\n\n[registry]\nstore = \"{}\"\n{registry_lines}\n\n[[api]]\nname = \"orders\"\npath_prefix = \"/orders\"\nupstream = \"http://127.0.0.1:9\"\n",
            idp.issuer,
            idp.initial_access_token
                .as_deref()
                .expect("started with registration"),
            store.url
        )
    };
    let create = [
        "app",
        "create",
        "web",
        "--grant",
        "authorization_code",
        "--redirect-uri",
        "https://app.test/cb",
        "--json",
    ];
    // An RFC 7591 initial access token: the provider will hand out registration access tokens.
    let out = cli(&create, Some(&config("", "Bearer")), &[]).await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(out.stderr.contains("encryption_key"), "{out:?}");
    assert_eq!(idp.stats().await.registration, 0, "refused before any call");

    let sealed = config(
        "encryption_key = \"a passphrase of more than thirty-two characters\"",
        "SSWS",
    );
    let run = |args: Vec<&'static str>| {
        let sealed = sealed.clone();
        async move {
            let out = cli(&args, Some(&sealed), &[]).await;
            assert_eq!(out.status, 0, "{args:?}: {out:?}");
            serde_json::from_str::<Value>(&out.stdout).unwrap_or(Value::Null)
        }
    };
    let created = run(create.to_vec()).await;
    assert_eq!(
        created["redirect_uris"],
        serde_json::json!(["https://app.test/cb"])
    );
    let (id, secret) = (
        created["client_id"].as_str().unwrap(),
        created["client_secret"].as_str().unwrap(),
    );
    assert_eq!(
        idp.stats().await.registration,
        1,
        "one registration call at the provider"
    );
    // RFC 7592, with the client's own (sealed, then opened) registration access token.
    run(vec![
        "app",
        "update",
        "web",
        "--redirect-uri",
        "https://app.test/cb2",
        "--json",
    ])
    .await;
    run(vec!["app", "rotate-secret", "web", "--json"]).await;
    let managed = idp.stats().await.registration_management;
    assert!(
        managed >= 3,
        "read+write for the update, and the rotation: {managed}"
    );
    run(vec!["app", "delete", "web"]).await;
    assert_eq!(
        idp.token_status(id, secret).await,
        401,
        "the client is gone at the provider"
    );
}

#[tokio::test]
async fn update_changes_redirect_uris_at_the_provider_only_when_allowed() {
    let create = [
        "app",
        "create",
        "web",
        "--grant",
        "authorization_code",
        "--redirect-uri",
        "https://a.test/cb",
        "--json",
    ];
    let on = Setup::start("update_in_idp = true").await;
    on.json(&create).await;
    let updated = on
        .json(&[
            "app",
            "update",
            "web",
            "--redirect-uri",
            "https://b.test/cb",
            "--description",
            "Web shop",
            "--json",
        ])
        .await;
    assert_eq!(
        updated["redirect_uris"],
        serde_json::json!(["https://b.test/cb"])
    );
    assert_eq!(updated["description"], "Web shop");
    let held = &on.okta.clients()[0];
    assert_eq!(
        held["redirect_uris"],
        serde_json::json!(["https://b.test/cb"])
    );
    assert_eq!(
        held["client_name"], "tollgate-web",
        "the rest of the client is kept (merged, then written)"
    );

    let off = Setup::start("").await;
    off.json(&create).await;
    let out = off
        .tollgate(&[
            "app",
            "update",
            "web",
            "--redirect-uri",
            "https://b.test/cb",
        ])
        .await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(out.stderr.contains("update_in_idp"), "{out:?}");
    let shown = off.json(&["app", "show", "web", "--json"]).await;
    assert_eq!(
        shown["app"]["redirect_uris"],
        serde_json::json!(["https://a.test/cb"]),
        "unchanged"
    );
    assert_eq!(
        off.okta.clients()[0]["redirect_uris"],
        serde_json::json!(["https://a.test/cb"])
    );
    // A description is ours alone: no provider call.
    let calls = off.okta.call_count();
    off.json(&["app", "update", "web", "--description", "d", "--json"])
        .await;
    assert_eq!(off.okta.call_count(), calls);
}

#[tokio::test]
async fn reconcile_finds_orphans_missing_clients_and_drift_and_deletes_orphans_when_allowed() {
    let s = Setup::start("delete_in_idp = true").await;
    s.create("shop").await;
    s.json(&[
        "app",
        "create",
        "web",
        "--grant",
        "authorization_code",
        "--redirect-uri",
        "https://a.test/cb",
        "--json",
    ])
    .await;
    let orphan = s.okta.add_client("tollgate-forgotten");
    s.okta.add_client("someone-elses-app");
    // Drift: the client changed at the provider behind tollgate's back; and one deleted there.
    s.okta
        .set_redirect_uris("tollgate-web", &["https://evil.test/cb"]);
    s.okta.remove_client("tollgate-shop");

    let calls = s.okta.call_count();
    let found = s.json(&["idp", "reconcile", "--dry-run", "--json"]).await;
    assert_eq!(found["orphans"][0]["client_id"], orphan.as_str());
    assert_eq!(found["orphans"][0]["action"], "would delete");
    assert_eq!(
        found["orphans"].as_array().unwrap().len(),
        1,
        "only tollgate's prefix: {found}"
    );
    assert_eq!(found["missing"][0]["app"], "shop");
    assert_eq!(found["drift"][0]["app"], "web");
    assert_eq!(
        found["drift"][0]["provider"],
        serde_json::json!(["https://evil.test/cb"])
    );
    assert!(
        s.okta
            .client_names()
            .contains(&"tollgate-forgotten".to_owned()),
        "a dry run deletes nothing"
    );
    assert!(
        s.okta.calls()[calls..].iter().all(|c| c.method == "GET"),
        "a dry run only reads"
    );

    let done = s.json(&["idp", "reconcile", "--json"]).await;
    assert_eq!(done["orphans"][0]["action"], "deleted");
    assert!(
        !s.okta
            .client_names()
            .contains(&"tollgate-forgotten".to_owned())
    );
    assert!(
        s.okta
            .client_names()
            .contains(&"someone-elses-app".to_owned()),
        "not ours: left alone"
    );
}

#[tokio::test]
async fn retry_runs_a_failed_create_again_as_it_was_asked_and_leaves_one_client() {
    let s = Setup::start("").await;
    s.okta.fail_next(Fault::InvalidToken);
    let args = [
        "app",
        "create",
        "web",
        "--grant",
        "authorization_code",
        "--redirect-uri",
        "https://a.test/cb",
    ];
    let out = s.tollgate(&args).await;
    assert_eq!(out.status, 1, "{out:?}");
    let ops = s.json(&["idp", "ops", "--json"]).await;
    let failed = ops[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(ops[0]["state"], "failed");
    let made = s.json(&["idp", "retry", &failed, "--json"]).await;
    assert!(made["client_secret"].as_str().is_some(), "{made}");
    assert_eq!(
        made["redirect_uris"],
        serde_json::json!(["https://a.test/cb"]),
        "as it was asked"
    );
    assert_eq!(s.okta.client_names(), ["tollgate-web"]);
    let ops = s.json(&["idp", "ops", "--json"]).await;
    let state = |id: &str| {
        ops.as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == id)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state(&failed), "retried");
    let again = s.tollgate(&["idp", "retry", &failed]).await;
    assert_eq!(
        again.status, 1,
        "a retried operation is not run twice: {again:?}"
    );
    assert_eq!(s.okta.client_names().len(), 1);
}
