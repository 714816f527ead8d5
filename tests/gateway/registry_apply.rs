//! The declarative registry through the real CLI: `tollgate apply -f FILE` plans, prints, and
//! (unless `--dry-run`) makes the registry what the file declares — creating clients at a fake
//! Okta, importing others without a call, approving contracts through the state machine — and
//! `tollgate export` writes a file that applies as a no-op. Each test counts the calls the
//! provider saw and reads the audit to prove what did and did not change.

use serde_json::Value;

use crate::common::fake_okta::{FakeOkta, Fault};
use crate::common::gateway::{CliOutput, TempConfig, cli};
use crate::common::postgres::{TempSqlite, sqlite_url};

const API_TOKEN: &str = "00okta-api-token";

/// Two tiers of `orders` (gold auto-approves, silver does not), a client tollgate creates and
/// one it imports, and a contract of each.
const REGISTRY: &str = r#"
[[tier]]
api = "orders"
name = "gold"
limits = ["100/1s", "10000/1d"]
auto_approve = true

[[tier]]
api = "orders"
name = "silver"
limits = ["10/1s"]

[[app]]
name = "shop"
grant = "client_credentials"
description = "the web shop"

[[app]]
name = "partner"
client_id = "0oa-partner"

[[contract]]
app = "shop"
api = "orders"
tier = "gold"
status = "approved"

[[contract]]
app = "partner"
api = "orders"
tier = "silver"
status = "approved"

[[contract]]
app = "partner"
api = "stock"
status = "pending"
"#;

struct Setup {
    okta: FakeOkta,
    config: String,
    _store: Option<TempSqlite>,
}

impl Setup {
    async fn start() -> Setup {
        let store = sqlite_url();
        let url = store.url.clone();
        Self::start_on(url, Some(store)).await
    }

    /// The same on a fresh database of the tests' PostgreSQL server.
    async fn start_on_postgres() -> Setup {
        let url = crate::common::postgres::PgServer::shared()
            .await
            .fresh_database()
            .await;
        Self::start_on(url, None).await
    }

    async fn start_on(store_url: String, store: Option<TempSqlite>) -> Setup {
        let okta = FakeOkta::start(API_TOKEN).await;
        let config = okta.registry_config("", &store_url)
            + r#"
[[api]]
name = "stock"
path_prefix = "/stock"
upstream = "http://127.0.0.1:9"
"#;
        Setup {
            okta,
            config,
            _store: store,
        }
    }

    async fn tollgate(&self, args: &[&str]) -> CliOutput {
        cli(args, Some(&self.config), &[]).await
    }

    /// `tollgate apply -f <file holding text> [extra...]`.
    async fn apply(&self, text: &str, extra: &[&str]) -> CliOutput {
        let file = TempConfig::new(text);
        let path = file.path().to_string_lossy().into_owned();
        let mut args = vec!["apply", "-f", path.as_str()];
        args.extend_from_slice(extra);
        self.tollgate(&args).await
    }

    async fn json(&self, args: &[&str]) -> Value {
        let out = self.tollgate(args).await;
        assert_eq!(out.status, 0, "tollgate {args:?}: {out:?}");
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    }

    async fn audit_actions(&self) -> Vec<String> {
        let audit = self.json(&["audit", "--json"]).await;
        audit
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["action"].as_str().unwrap(),
                    e["subject"].as_str().unwrap()
                )
            })
            .collect()
    }

    /// `app/api status [tier]` of every contract, sorted.
    async fn contracts(&self) -> Vec<String> {
        let list = self.json(&["contract", "list", "--json"]).await;
        let mut out: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}/{} {} {}",
                    c["app"].as_str().unwrap(),
                    c["api"].as_str().unwrap(),
                    c["status"].as_str().unwrap(),
                    c["tier"].as_str().unwrap_or("-")
                )
            })
            .collect();
        out.sort();
        out
    }
}

fn contains_all(text: &str, expected: &[&str]) {
    for e in expected {
        assert!(text.contains(e), "{e:?} in:\n{text}");
    }
}

#[tokio::test]
async fn a_dry_run_prints_the_plan_with_its_provider_calls_and_changes_nothing() {
    let s = Setup::start().await;
    let out = s.apply(REGISTRY, &["--dry-run"]).await;
    assert_eq!(out.status, 0, "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "create tier orders/gold (100/1s, 10000/1day; auto-approve)",
            "create application shop: create client tollgate-shop at the provider",
            "import application partner (client 0oa-partner; no provider call)",
            "request contract shop/orders (tier gold): approved at once",
            "request contract partner/orders (tier silver): pending, then approve contract partner/orders",
            "request contract partner/stock: pending",
            "dry run: nothing was changed",
        ],
    );
    let plan = out.stdout.find("create tier").unwrap();
    assert!(
        plan < out.stdout.find("create application").unwrap(),
        "tiers first"
    );
    assert!(s.audit_actions().await.is_empty(), "nothing changed");
    assert_eq!(s.okta.call_count(), 0, "a dry run never calls the provider");
}

#[tokio::test]
async fn apply_creates_imports_and_approves_and_a_second_apply_is_a_no_op() {
    apply_creates_imports_and_approves_and_a_second_apply_is_a_no_op_on(Setup::start().await).await;
}

#[tokio::test]
async fn apply_creates_imports_and_approves_and_a_second_apply_is_a_no_op_on_postgresql() {
    apply_creates_imports_and_approves_and_a_second_apply_is_a_no_op_on(
        Setup::start_on_postgres().await,
    )
    .await;
}

async fn apply_creates_imports_and_approves_and_a_second_apply_is_a_no_op_on(s: Setup) {
    let out = s.apply(REGISTRY, &[]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.stdout.contains("client secret "), "shown once: {out:?}");
    assert_eq!(
        s.okta.client_names(),
        ["tollgate-shop"],
        "one create, no import call"
    );
    let shown = s.json(&["app", "show", "partner", "--json"]).await;
    assert_eq!(shown["app"]["origin"], "imported");
    assert_eq!(shown["app"]["client_id"], "0oa-partner");
    assert_eq!(
        s.contracts().await,
        [
            "partner/orders approved silver",
            "partner/stock pending -",
            "shop/orders approved gold"
        ]
    );
    let audit = s.audit_actions().await;
    assert!(
        audit.contains(&"contract.approve contract/partner/orders".to_owned()),
        "through the state machine: {audit:?}"
    );
    let calls = s.okta.call_count();

    let again = s.apply(REGISTRY, &[]).await;
    assert_eq!(again.status, 0, "{again:?}");
    assert!(
        again.stdout.starts_with("plan: nothing to change"),
        "{again:?}"
    );
    assert_eq!(s.audit_actions().await, audit, "the audit is unchanged");
    assert_eq!(
        s.okta.call_count(),
        calls,
        "no provider call the second time"
    );
}

#[tokio::test]
async fn an_export_applies_as_a_no_op_and_its_json_is_the_same_declaration() {
    let s = Setup::start().await;
    assert_eq!(s.apply(REGISTRY, &[]).await.status, 0);
    let disable = s.tollgate(&["app", "disable", "partner"]).await;
    assert_eq!(disable.status, 0, "{disable:?}");
    let revoke = s.tollgate(&["contract", "revoke", "shop", "orders"]).await;
    assert_eq!(revoke.status, 0, "{revoke:?}");
    let exported = s.tollgate(&["export"]).await;
    assert_eq!(exported.status, 0, "{exported:?}");
    assert!(exported.stdout.contains("disabled = true"), "{exported:?}");
    assert!(
        exported.stdout.contains("status = \"revoked\""),
        "{exported:?}"
    );
    let audit = s.audit_actions().await;

    let out = s.apply(&exported.stdout, &["--prune"]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.stdout.starts_with("plan: nothing to change"), "{out:?}");
    assert_eq!(s.audit_actions().await, audit, "the audit is unchanged");

    let as_toml: toml::Value = toml::from_str(&exported.stdout).unwrap();
    let as_json = s.json(&["export", "--json"]).await;
    assert_eq!(serde_json::to_value(as_toml).unwrap(), as_json);
}

#[tokio::test]
async fn prune_revokes_and_deletes_what_the_file_no_longer_names() {
    prune_revokes_and_deletes_what_the_file_no_longer_names_on(Setup::start().await).await;
}

#[tokio::test]
async fn prune_revokes_and_deletes_what_the_file_no_longer_names_on_postgresql() {
    prune_revokes_and_deletes_what_the_file_no_longer_names_on(Setup::start_on_postgres().await)
        .await;
}

async fn prune_revokes_and_deletes_what_the_file_no_longer_names_on(s: Setup) {
    assert_eq!(s.apply(REGISTRY, &[]).await.status, 0);
    // The file keeps shop and its gold contract, but no longer names partner or either tier.
    let smaller = r#"
[[app]]
name = "shop"
description = "the web shop"

[[contract]]
app = "shop"
api = "orders"
tier = "gold"
status = "approved"
"#;
    let out = s.apply(smaller, &[]).await;
    assert!(
        out.stdout.starts_with("plan: nothing to change"),
        "without --prune: {out:?}"
    );
    let before = s.audit_actions().await;

    let out = s.apply(smaller, &["--prune"]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        out.stdout.contains(
            "delete application partner and its contracts (its client at the provider is kept)"
        ),
        "{out:?}"
    );
    let done: Vec<String> = s.audit_actions().await[before.len()..].to_vec();
    assert_eq!(
        done,
        [
            "contract.revoke contract/partner/orders",
            "contract.delete contract/partner/orders",
            "contract.delete contract/partner/stock",
            "app.delete app/partner",
            "tier.deprecate tier/orders/gold",
            "tier.delete tier/orders/silver",
        ],
        "revoked before deleted; a tier in use deprecated, not deleted"
    );
    assert_eq!(s.contracts().await, ["shop/orders approved gold"]);
    assert_eq!(s.okta.client_names(), ["tollgate-shop"]);
}

#[tokio::test]
async fn a_transition_the_machine_forbids_is_an_error_for_that_item_only() {
    let s = Setup::start().await;
    assert_eq!(s.apply(REGISTRY, &[]).await.status, 0);
    // shop/orders back to pending (no step from approved), partner/stock on to approved.
    let changed = REGISTRY
        .replace(
            "tier = \"gold\"\nstatus = \"approved\"",
            "tier = \"gold\"\nstatus = \"pending\"",
        )
        .replace(
            "api = \"stock\"\nstatus = \"pending\"",
            "api = \"stock\"\nstatus = \"approved\"",
        );
    assert_ne!(changed, REGISTRY);
    let out = s.apply(&changed, &[]).await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        out.stdout.contains("refused: contract shop/orders: it is approved: the contract state machine has no step to pending"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("done: approve contract partner/stock"),
        "{out:?}"
    );
    assert_eq!(
        s.contracts().await,
        [
            "partner/orders approved silver",
            "partner/stock approved -",
            "shop/orders approved gold"
        ]
    );
    let audit = s.audit_actions().await;
    let again = s.apply(&changed, &[]).await;
    assert_eq!(again.status, 1, "still refused, still an error: {again:?}");
    assert!(
        again.stdout.contains("refused: contract shop/orders"),
        "{again:?}"
    );
    assert_eq!(s.audit_actions().await, audit);
    let dry = s.apply(&changed, &["--dry-run"]).await;
    assert_eq!(dry.status, 0, "a dry run only shows it: {dry:?}");
}

#[tokio::test]
async fn a_bad_file_lists_every_problem_and_changes_nothing() {
    let s = Setup::start().await;
    let bad = r#"
[[tier]]
api = "billing"
name = "gold"
limits = ["100/1s", "often"]

[[app]]
name = "shop app"
grant = "password"

[[app]]
name = "partner"
client_id = "0oa-1"

[[app]]
name = "partner"
client_id = "0oa-2"

[[contract]]
app = "ghost"
api = "orders"
status = "approved"

[[contract]]
app = "partner"
api = "orders"
tier = "platinum"
status = "granted"
"#;
    let out = s.apply(bad, &[]).await;
    assert_eq!(out.status, 1, "{out:?}");
    contains_all(
        &out.stderr,
        &[
            "tier[0].api: no API is named \"billing\"",
            "tier[0].limits[1]: limit \"often\"",
            "app[0].name: application name \"shop app\"",
            "app[0].grant: \"password\"",
            "app[2]: application partner is declared twice (first at app[1])",
            "contract[0].app: no application \"ghost\"",
            "contract[1].status: \"granted\"",
            "contract[1].tier: API \"orders\" has no tier \"platinum\"",
        ],
    );
    let unknown = s
        .apply("[[app]]\nname = \"shop\"\nsecret = \"x\"\n", &[])
        .await;
    assert_eq!(unknown.status, 1, "{unknown:?}");
    assert!(
        unknown.stderr.contains("app[0]"),
        "the key path: {unknown:?}"
    );
    assert!(unknown.stderr.contains("secret"), "{unknown:?}");
    assert!(s.audit_actions().await.is_empty(), "nothing changed");
    assert_eq!(s.okta.call_count(), 0);
}

#[tokio::test]
async fn a_failure_midway_says_what_was_done_and_a_second_run_continues() {
    let s = Setup::start().await;
    s.okta.fail_always(Some(Fault::InvalidToken));
    let out = s.apply(REGISTRY, &[]).await;
    assert_eq!(out.status, 1, "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "done: create tier orders/silver",
            "failed: create application shop: create client tollgate-shop at the provider",
            "not done: import application partner (client 0oa-partner; no provider call) (an earlier step failed)",
            "not done: request contract partner/stock: pending (an earlier step failed)",
        ],
    );
    assert!(s.contracts().await.is_empty(), "{out:?}");

    s.okta.fail_always(None);
    let again = s.apply(REGISTRY, &[]).await;
    assert_eq!(again.status, 0, "{again:?}");
    assert!(
        !again.stdout.contains("create tier"),
        "done already: {again:?}"
    );
    assert_eq!(s.okta.client_names(), ["tollgate-shop"]);
    assert_eq!(s.contracts().await.len(), 3);
}

#[tokio::test]
async fn a_create_left_pending_holds_back_only_its_own_contracts_and_exits_3() {
    let s = Setup::start().await;
    // The create's answer is lost and the search for it too: whether it exists is unknown.
    s.okta.fail_always(Some(Fault::LoseAnswer));
    let out = s.apply(REGISTRY, &[]).await;
    assert_eq!(out.status, 3, "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "pending at the provider: create application shop",
            "done: import application partner",
            "not done: request contract shop/orders (tier gold): approved at once (its application is pending at the provider)",
        ],
    );
    assert_eq!(
        s.contracts().await,
        ["partner/orders approved silver", "partner/stock pending -"]
    );
}

#[tokio::test]
async fn an_application_is_enabled_only_after_its_contracts_are_revoked() {
    let s = Setup::start().await;
    assert_eq!(s.apply(REGISTRY, &[]).await.status, 0);
    let disable = s.tollgate(&["app", "disable", "partner"]).await;
    assert_eq!(disable.status, 0, "{disable:?}");
    let before = s.audit_actions().await.len();
    let revoked = REGISTRY.replace(
        "tier = \"silver\"\nstatus = \"approved\"",
        "tier = \"silver\"\nstatus = \"revoked\"",
    );
    assert_ne!(revoked, REGISTRY);
    let out = s.apply(&revoked, &[]).await;
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(
        s.audit_actions().await[before..],
        [
            "contract.revoke contract/partner/orders",
            "app.enable app/partner"
        ],
        "never enabled while the contract it is losing still admits"
    );
}
