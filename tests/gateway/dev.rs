//! `tollgate dev` as a process: the embedded provider and the real gateway in one command, the
//! printed commands working as printed (token, 200, 401, 403), the echo upstream showing what was
//! forwarded, an upstream of the developer's choosing, opaque tokens, and loopback only.

use std::process::Stdio;

use crate::common::client;
use crate::common::gateway::{Gateway, cli};
use crate::common::upstream::Upstream;

/// Ephemeral ports and JSON logs, so the harness can find the listeners; defaults otherwise.
const DEV_CONFIG: &str = r#"
[listen]
address = "127.0.0.1:0"
admin_address = "127.0.0.1:0"

[log]
format = "json"

[dev]
provider_address = "127.0.0.1:0"
"#;

/// The value after `label` on the banner line that starts with it.
/// The banner's commands for one step (the lines after `# <comment>` up to the next comment).
fn printed_commands(gw: &Gateway, comment: &str) -> Vec<String> {
    let logs = gw.logs();
    let start = logs
        .iter()
        .position(|l| l.trim().starts_with("# ") && l.contains(comment))
        .unwrap_or_else(|| panic!("no {comment:?} in the banner:\n{}", gw.render_logs()));
    logs[start + 1..]
        .iter()
        .map(|l| l.trim().to_owned())
        .take_while(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

/// Runs printed shell lines in one bash, as a developer would paste them; returns stdout.
async fn paste(lines: &[String]) -> String {
    let script = lines.join("\n");
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!("set -e\n{script}"))
        .stdin(Stdio::null())
        .output()
        .await
        .expect("bash runs");
    assert!(
        out.status.success(),
        "the printed commands failed:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status_of(curl_i_output: &str) -> u16 {
    curl_i_output
        .lines()
        .rev()
        .find(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in:\n{curl_i_output}"))
}

#[tokio::test]
async fn the_printed_commands_work_as_printed() {
    let gw = Gateway::start_dev(DEV_CONFIG, &[]).await;
    gw.wait_ready().await;
    assert!(
        gw.logs().iter().any(|l| l.contains("NOT FOR PRODUCTION")),
        "{}",
        gw.render_logs()
    );
    let get_token = printed_commands(&gw, "get a token");
    let with = [
        get_token.clone(),
        printed_commands(&gw, "call the API with it"),
    ]
    .concat();
    let out = paste(&with).await;
    assert_eq!(status_of(&out), 200, "{out}");
    // The echo upstream shows what the gateway forwarded.
    assert!(out.contains("\"x-agw-client_id\": \"dev-app\""), "{out}");
    assert!(out.contains("\"x-forwarded-for\""), "{out}");
    assert_eq!(
        status_of(&paste(&printed_commands(&gw, "without a token")).await),
        401
    );
    assert_eq!(
        status_of(&paste(&printed_commands(&gw, "lacking the scope")).await),
        403
    );
    let decisions: Vec<String> = gw
        .wait_access_logs(3)
        .await
        .iter()
        .map(|l| l["status"].to_string())
        .collect();
    assert_eq!(decisions, ["200", "401", "403"]);
}

#[tokio::test]
async fn dev_fronts_a_given_upstream_with_opaque_tokens() {
    let upstream = Upstream::start().await;
    let config = format!("{DEV_CONFIG}token_format = \"opaque\"\n");
    let gw = Gateway::start_dev(&config, &["--upstream", &upstream.url()]).await;
    gw.wait_ready().await;
    let token = gw
        .dev_token(("dev-app", "dev-secret"), Some("mulescope"))
        .await;
    let token = token.as_str();
    assert_eq!(token.matches('.').count(), 0, "opaque, not a JWT: {token}");
    let resp = client()
        .get(gw.url("/orders/9"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream.last().target, "/orders/9");
    assert_eq!(
        upstream.last().header("x-agw-client_id").as_deref(),
        Some("dev-app")
    );
    let resp = client().get(gw.url("/orders/9")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn dev_refuses_to_listen_beyond_loopback() {
    let config = DEV_CONFIG.replace(
        "address = \"127.0.0.1:0\"\nadmin",
        "address = \"0.0.0.0:0\"\nadmin",
    );
    let out = cli(&["dev"], Some(&config), &[]).await;
    assert_eq!(out.status, 2, "{out:?}");
    assert!(
        out.stderr.contains("listen.address") && out.stderr.contains("loopback"),
        "{out:?}"
    );
    let config = DEV_CONFIG.replace(
        "provider_address = \"127.0.0.1:0\"",
        "provider_address = \"0.0.0.0:0\"",
    );
    let out = cli(&["dev"], Some(&config), &[]).await;
    assert_eq!(out.status, 2, "{out:?}");
    assert!(out.stderr.contains("dev.provider_address"), "{out:?}");
    let config = format!(
        "{DEV_CONFIG}[[dev.client]]\nclient_id = \"a\"\nclient_secret = \"b\"\nscopes = [\"nope\"]\n"
    );
    let out = cli(&["dev"], Some(&config), &[]).await;
    assert_eq!(out.status, 2, "{out:?}");
    assert!(out.stderr.contains("dev.client[0].scopes"), "{out:?}");
}

/// Runs a printed `tollgate ...` line with the binary under test; returns its stdout.
async fn run_printed(line: &str) -> String {
    let args: Vec<&str> = line
        .strip_prefix("tollgate ")
        .unwrap_or_else(|| panic!("not a tollgate command: {line}"))
        .split_whitespace()
        .collect();
    let out = cli(&args, None, &[]).await;
    assert_eq!(out.status, 0, "{line}: {out:?}");
    out.stdout
}

#[tokio::test]
async fn the_printed_registry_commands_take_a_new_apps_token_from_403_to_200_and_back() {
    let gw = Gateway::start_dev(DEV_CONFIG, &[]).await;
    gw.wait_ready().await;
    let create = printed_commands(&gw, "register an application");
    let created = run_printed(&create[0]).await;
    let value = |label: &str| {
        created
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} in {created}"))
            .trim()
            .to_owned()
    };
    let (id, secret) = (value("client id "), value("client secret "));
    let token = gw.dev_token((&id, &secret), None).await;
    let call = || async {
        client()
            .get(gw.url("/hello"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(call().await, 403, "no contract yet");
    for line in printed_commands(&gw, "request and approve") {
        run_printed(&line).await;
    }
    let bound = std::time::Duration::from_secs(5);
    crate::common::eventually(bound, "the approval", || async { call().await == 200 }).await;
    for line in printed_commands(&gw, "revoke it") {
        run_printed(&line).await;
    }
    crate::common::eventually(bound, "the revoke", || async { call().await == 403 }).await;
}
