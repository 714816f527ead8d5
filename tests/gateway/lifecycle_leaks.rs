//! Lifecycle without leaks: a reload that keeps the provider makes no new discovery or key fetch,
//! a provider a reload replaced stops calling its IdP, a stalled standard output costs log lines
//! (counted) and never a request, and configurations that would leak a credential or overflow a
//! deadline are refused with their key path (exit 2).

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinSet;

use crate::cli::{QUIET_ISSUER, assert_config_error};
use crate::common::fake_idp::FakeIdp;
use crate::common::gateway::{Gateway, TempConfig, cli, parse_listening};
use crate::common::jwt::{SigningKey, okta_claims, sign};
use crate::common::upstream::Upstream;
use crate::common::{base_config, client, config_with, eventually, orders_api};

const AUDIENCE: &str = "api://default";
const DEADLINE: Duration = Duration::from_secs(10);

fn jwt_api(upstream: &Upstream, extra: &str) -> String {
    orders_api(
        &upstream.url(),
        &format!("validation = \"jwt\"\naudience = [\"{AUDIENCE}\"]\n{extra}"),
    )
}

async fn status_with(gw: &Gateway, idp: &FakeIdp, key: &SigningKey) -> u16 {
    let claims = okta_claims(&idp.issuer(), "orders-app", &["mulescope"], AUDIENCE, 300);
    client()
        .get(gw.url("/orders/1"))
        .bearer_auth(sign(key, &claims))
        .send()
        .await
        .expect("request through the gateway")
        .status()
        .as_u16()
}

/// Waits until `n` reloads have been applied; the last one's log line.
async fn wait_reloads(gw: &Gateway, n: usize) -> serde_json::Value {
    let applied = || {
        gw.json_logs()
            .into_iter()
            .filter(|l| l["message"] == "configuration reloaded")
            .collect::<Vec<_>>()
    };
    eventually(DEADLINE, "the reload", || async { applied().len() >= n }).await;
    applied().swap_remove(n - 1)
}

#[tokio::test]
async fn a_reload_of_only_cache_or_exposed_headers_keeps_the_provider() {
    let idp = FakeIdp::start().await;
    let key = SigningKey::rsa_a("key-a");
    idp.set_jwks(vec![key.public_jwk()]);
    let upstream = Upstream::start().await;
    let api = jwt_api(&upstream, "");
    let gw = Gateway::start(&config_with(&idp.issuer(), "", &api)).await;
    gw.wait_ready().await;
    assert_eq!(status_with(&gw, &idp, &key).await, 200);
    let (discoveries, fetches) = (idp.discovery_count(), idp.jwks_count());
    assert!(discoveries >= 1 && fetches == 1, "{discoveries} {fetches}");

    gw.rewrite_config(&config_with(
        &idp.issuer(),
        "",
        &format!("{api}\n[cache]\nmax_ttl = \"60s\"\n"),
    ));
    gw.signal("HUP").await;
    let reload = wait_reloads(&gw, 1).await;
    assert_eq!(reload["kept_provider"], true, "{reload}");
    assert_eq!(reload["kept_caches"], false, "{reload}");
    assert_eq!(status_with(&gw, &idp, &key).await, 200);

    gw.rewrite_config(&config_with(
        &idp.issuer(),
        "",
        &jwt_api(&upstream, "expose_headers = true"),
    ));
    gw.signal("HUP").await;
    let reload = wait_reloads(&gw, 2).await;
    assert_eq!(reload["kept_provider"], true, "{reload}");
    assert_eq!(reload["kept_caches"], false, "{reload}");
    assert_eq!(status_with(&gw, &idp, &key).await, 200);
    // New caches (the verdict now carries the attributes) on the same provider and keys.
    assert_eq!(upstream.last().headers_named("x-agw-sub"), ["orders-app"]);
    assert_eq!(idp.discovery_count(), discoveries, "no new discovery");
    assert_eq!(idp.jwks_count(), fetches, "no new key fetch");
}

#[tokio::test]
async fn a_replaced_provider_is_asked_for_no_more_keys() {
    let fast = "jwks_refresh = \"100ms\"\njwks_refresh_min = \"100ms\"";
    let key = SigningKey::rsa_a("key-a");
    let (old, new) = (FakeIdp::start().await, FakeIdp::start().await);
    old.set_jwks(vec![key.public_jwk()]);
    new.set_jwks(vec![key.public_jwk()]);
    let upstream = Upstream::start().await;
    let api = jwt_api(&upstream, "");
    let gw = Gateway::start(&config_with(&old.issuer(), fast, &api)).await;
    gw.wait_ready().await;
    eventually(DEADLINE, "the old provider's keys refreshed", || async {
        old.jwks_count() >= 3
    })
    .await;

    gw.rewrite_config(&config_with(&new.issuer(), fast, &api));
    gw.signal("HUP").await;
    let reload = wait_reloads(&gw, 1).await;
    assert_eq!(reload["kept_provider"], false, "{reload}");
    let at_swap = old.jwks_count();
    // The new provider's refreshes are the clock: six of its intervals have passed.
    let from = new.jwks_count();
    eventually(DEADLINE, "the new provider's keys refreshed", || async {
        new.jwks_count() >= from + 6
    })
    .await;
    assert!(
        old.jwks_count() <= at_swap + 1,
        "the old provider was still refreshed: {at_swap} at the swap, {} now",
        old.jwks_count()
    );
    assert_eq!(status_with(&gw, &new, &key).await, 200);
    assert_eq!(
        status_with(&gw, &old, &key).await,
        401,
        "the old issuer is gone"
    );
}

/// `tollgate_log_lines_dropped_total` from /metrics (0 while absent).
async fn dropped_lines(http: &reqwest::Client, admin: std::net::SocketAddr) -> u64 {
    let text = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("/metrics body");
    text.lines()
        .find_map(|l| l.strip_prefix("tollgate_log_lines_dropped_total "))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

/// 1000 requests, 8 at a time, each answered (404) within 5 s.
async fn burst(http: &reqwest::Client, proxy: std::net::SocketAddr) {
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let http = http.clone();
        tasks.spawn(async move {
            for _ in 0..125 {
                let sent = http.get(format!("http://{proxy}/nowhere")).send();
                let resp = tokio::time::timeout(Duration::from_secs(5), sent)
                    .await
                    .expect("answered within 5 s although nobody reads the log")
                    .expect("answered");
                assert_eq!(resp.status(), 404);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a burst task");
    }
}

#[tokio::test]
async fn a_stdout_nobody_reads_costs_log_lines_not_requests() {
    let idp = FakeIdp::start().await;
    let upstream = Upstream::start().await;
    let config = TempConfig::new(&base_config(
        &idp.issuer(),
        &orders_api(&upstream.url(), ""),
    ));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("run")
        .arg("--config")
        .arg(config.path())
        .env_remove("TOLLGATE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning tollgate");
    // Read standard output up to `listening`, then never again: the pipe fills and stays full.
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let (proxy, admin) = tokio::time::timeout(Duration::from_secs(20), async {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).await.expect("stdout") > 0,
                "exited"
            );
            if let Some(found) = parse_listening(line.trim_end()) {
                return found;
            }
        }
    })
    .await
    .expect("`listening` within 20 s");

    let http = client();
    let deadline = Instant::now() + Duration::from_secs(90);
    while dropped_lines(&http, admin).await == 0 {
        assert!(Instant::now() < deadline, "no line was dropped");
        burst(&http, proxy).await;
    }
    let started = Instant::now();
    let resp = http.get(format!("http://{proxy}/nowhere")).send().await;
    assert_eq!(resp.expect("answered").status(), 404);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    upstream.assert_not_reached();
    drop(stdout);
}

#[tokio::test]
async fn credentials_in_a_provider_url_are_refused_and_not_echoed() {
    let api = orders_api("http://127.0.0.1:9", "");
    let issuer = "http://gw:hunter2@127.0.0.1:9/oauth2/default";
    let out = cli(&["check"], Some(&base_config(issuer, &api)), &[]).await;
    assert_config_error(&out, &["provider.issuer", "user or password"]);
    assert!(!out.stderr.contains("hunter2"), "{out:?}");
    let jwks = "jwks_url = \"https://gw@idp.test/keys\"";
    let out = cli(&["run"], Some(&config_with(QUIET_ISSUER, jwks, &api)), &[]).await;
    assert_config_error(&out, &["provider.jwks_url"]);
}

#[tokio::test]
async fn absurd_durations_and_a_zero_api_timeout_are_refused() {
    let api = |extra: &str| orders_api("http://127.0.0.1:9", extra);
    for text in [
        "99999999999h",
        "18446744073709551615s",
        "18446744073709551616s",
    ] {
        let provider = format!("jwks_refresh_max = \"{text}\"");
        let out = cli(
            &["run"],
            Some(&config_with(QUIET_ISSUER, &provider, &api(""))),
            &[],
        )
        .await;
        assert_config_error(&out, &["provider.jwks_refresh_max", text]);
        let timeout = format!("timeout = \"{text}\"");
        let out = cli(
            &["run"],
            Some(&base_config(QUIET_ISSUER, &api(&timeout))),
            &[],
        )
        .await;
        assert_config_error(&out, &["api[0].timeout"]);
    }
    let out = cli(
        &["run"],
        Some(&base_config(QUIET_ISSUER, &api("timeout = \"0s\""))),
        &[],
    )
    .await;
    assert_config_error(&out, &["api[0].timeout", "greater than zero"]);
}
