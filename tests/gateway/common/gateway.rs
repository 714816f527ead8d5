//! Runs the real `tollgate` binary as a child process: `run` as a long-lived gateway whose bound
//! addresses are read from its `listening` log event, or any subcommand to completion (`cli`). Output
//! is collected line by line for the life of the process so tests can assert on logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_tollgate");
/// How long `run` may take to log `listening`.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long `cli` may run.
const CLI_DEADLINE: Duration = Duration::from_secs(30);
/// How long log and readiness waits poll.
const WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

/// A config file with a unique name in the temp directory, removed on drop.
pub struct TempConfig {
    path: PathBuf,
}

impl TempConfig {
    pub fn new(contents: &str) -> TempConfig {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "tollgate-test-{}-{}-{nanos}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("writing the test config {}: {e}", path.display()));
        TempConfig { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Every output line so far, in arrival order, tagged with its stream.
type Lines = Arc<Mutex<Vec<(Stream, String)>>>;

/// A running `tollgate run`; the process is killed on drop.
pub struct Gateway {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    lines: Lines,
    // Held for kill_on_drop and so the config outlives the process.
    _child: Child,
    _config: TempConfig,
}

impl Gateway {
    pub async fn start(config_toml: &str) -> Gateway {
        Self::start_with_env(config_toml, &[]).await
    }

    /// Starts with the current environment plus `env` (and without an inherited `TOLLGATE_CONFIG`).
    pub async fn start_with_env(config_toml: &str, env: &[(&str, &str)]) -> Gateway {
        Self::start_args(&["run"], config_toml, env).await
    }

    /// Starts `tollgate dev <args> --config <file>` (the embedded provider and the gateway).
    pub async fn start_dev(config_toml: &str, args: &[&str]) -> Gateway {
        let mut all = vec!["dev"];
        all.extend_from_slice(args);
        Self::start_args(&all, config_toml, &[]).await
    }

    async fn start_args(args: &[&str], config_toml: &str, env: &[(&str, &str)]) -> Gateway {
        let config = TempConfig::new(config_toml);
        let mut command = command(env);
        command
            .args(args)
            .arg("--config")
            .arg(config.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {BINARY}: {e}"));

        let lines: Lines = Arc::default();
        let readers = [
            tokio::spawn(collect(
                child.stdout.take().expect("piped stdout"),
                Stream::Stdout,
                lines.clone(),
            )),
            tokio::spawn(collect(
                child.stderr.take().expect("piped stderr"),
                Stream::Stderr,
                lines.clone(),
            )),
        ];

        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let found = lines
                .lock()
                .expect("gateway: lock")
                .iter()
                .filter(|(stream, _)| *stream == Stream::Stdout)
                .find_map(|(_, line)| parse_listening(line));
            if let Some((proxy, admin)) = found {
                return Gateway {
                    proxy,
                    admin,
                    lines,
                    _child: child,
                    _config: config,
                };
            }
            if let Some(status) = child.try_wait().expect("gateway: try_wait") {
                // Let the readers drain what the process wrote before it exited.
                for reader in readers {
                    let _ = tokio::time::timeout(WAIT, reader).await;
                }
                panic!(
                    "tollgate run exited ({status}) before logging `listening`; config:\n{config_toml}\noutput:\n{}",
                    render(&lines)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "tollgate run did not log `listening` within {START_DEADLINE:?}; config:\n{config_toml}\noutput:\n{}",
                    render(&lines)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Replaces the configuration file's content (for reload tests), atomically: written aside,
    /// then renamed over it, as editors and Kubernetes do.
    pub fn rewrite_config(&self, config_toml: &str) {
        let path = self._config.path();
        let aside = path.with_extension("next");
        std::fs::write(&aside, config_toml).expect("writing the new config");
        std::fs::rename(&aside, path).expect("replacing the config");
    }

    /// Sends a signal (e.g. "TERM", "HUP") to the process, with the system's `kill`.
    pub async fn signal(&self, name: &str) {
        let pid = self._child.id().expect("the gateway is still running");
        let status = tokio::process::Command::new("kill")
            .arg("-s")
            .arg(name)
            .arg(pid.to_string())
            .status()
            .await
            .expect("running kill");
        assert!(status.success(), "kill -s {name} {pid} failed");
    }

    /// Waits up to `limit` for the process to exit; its exit code (`None`: still running).
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        match tokio::time::timeout(limit, self._child.wait()).await {
            Ok(status) => status.expect("waiting for the gateway").code(),
            Err(_) => None,
        }
    }

    /// `http://<proxy><path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.proxy)
    }

    /// `http://<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The admin listener's `/metrics`, as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the metrics")
    }

    /// Every stdout and stderr line so far, in arrival order.
    pub fn logs(&self) -> Vec<String> {
        self.lines
            .lock()
            .expect("gateway: lock")
            .iter()
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// Every stdout line that is a JSON object, in order.
    pub fn json_logs(&self) -> Vec<Value> {
        self.lines
            .lock()
            .expect("gateway: lock")
            .iter()
            .filter(|(stream, _)| *stream == Stream::Stdout)
            .filter_map(|(_, line)| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// The access-log lines (`"message": "request"`), in order.
    pub fn access_logs(&self) -> Vec<Value> {
        self.json_logs()
            .into_iter()
            .filter(|v| v["message"] == "request")
            .collect()
    }

    /// Waits (5 s deadline) until at least `n` access-log lines exist; returns them all.
    pub async fn wait_access_logs(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let logs = self.access_logs();
            if logs.len() >= n {
                return logs;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {WAIT:?} for {n} access-log line(s), found {}; output:\n{}",
                    logs.len(),
                    self.render_logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (5 s deadline) for a JSON log line matching `predicate`; returns the first one.
    pub async fn wait_log(&self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = self.json_logs().into_iter().find(|v| predicate(v)) {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {WAIT:?} for a log line ({what}); output:\n{}",
                    self.render_logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (5 s deadline) until `/readyz` answers 200: the provider's endpoints are resolved.
    pub async fn wait_ready(&self) {
        let client = super::client();
        let deadline = Instant::now() + WAIT;
        loop {
            let last = match client.get(self.admin_url("/readyz")).send().await {
                Ok(resp) if resp.status() == 200 => return,
                Ok(resp) => format!("status {}", resp.status()),
                Err(e) => format!("error {e}"),
            };
            if Instant::now() >= deadline {
                panic!(
                    "/readyz not 200 within {WAIT:?} (last: {last}); output:\n{}",
                    self.render_logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The value after `label` on a banner line (`tollgate dev` prints one per setting).
    pub fn banner_value(&self, label: &str) -> String {
        self.logs()
            .iter()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(label)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
            })
            .unwrap_or_else(|| panic!("no banner line {label:?}:\n{}", self.render_logs()))
    }

    /// A token of `tollgate dev`'s sandbox provider for a client (`("dev-app", "dev-secret")` is
    /// the one it starts with), by client credentials; `scope` if given.
    pub async fn dev_token(&self, (id, secret): (&str, &str), scope: Option<&str>) -> String {
        let issuer = self.banner_value("provider");
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(scope.map(|s| ("scope", s)));
        let answer: Value = super::client()
            .post(format!("{issuer}/v1/token"))
            .basic_auth(id, Some(secret))
            .form(&form)
            .send()
            .await
            .expect("the sandbox token endpoint")
            .json()
            .await
            .expect("a token answer in JSON");
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {answer}"))
            .to_owned()
    }

    /// All output so far, one line per line, for panic messages.
    pub fn render_logs(&self) -> String {
        render(&self.lines)
    }
}

/// The outcome of a `tollgate` run to completion.
#[derive(Debug)]
pub struct CliOutput {
    /// The exit code; a signal `n` reads as `128 + n`, like a shell.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tollgate <args>` to completion (30 s deadline) with the current environment plus `env`;
/// with `Some(config)`, `--config <tempfile>` is appended.
pub async fn cli(args: &[&str], config_toml: Option<&str>, env: &[(&str, &str)]) -> CliOutput {
    let config = config_toml.map(TempConfig::new);
    let mut command = command(env);
    command.args(args);
    if let Some(config) = &config {
        command.arg("--config").arg(config.path());
    }
    command.stdin(Stdio::null());
    // kill_on_drop: if the deadline passes, dropping the `output` future kills the process.
    let output = tokio::time::timeout(CLI_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("tollgate {args:?} did not finish within {CLI_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("running {BINARY} {args:?}: {e}"));
    CliOutput {
        status: exit_code(output.status),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `tollgate <args> --config <config>`, which must succeed: its stdout.
pub async fn cli_ok(args: &[&str], config_toml: &str) -> String {
    let out = cli(args, Some(config_toml), &[]).await;
    assert_eq!(out.status, 0, "tollgate {args:?}: {out:?}");
    out.stdout
}

/// Reads the bound addresses from a `listening` event, in JSON (`"proxy":"…"`) or in text
/// (`proxy=…`) form.
pub fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        if v["message"] != "listening" {
            return None;
        }
        // Tolerate the fields being nested under "fields" (tracing-subscriber's unflattened JSON).
        let field = |name: &str| {
            v[name]
                .as_str()
                .or_else(|| v["fields"][name].as_str())
                .and_then(|s| s.parse().ok())
        };
        return Some((field("proxy")?, field("admin")?));
    }
    if !line.contains("listening") {
        return None;
    }
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
            .map(|value| value.trim_matches('"'))
            .and_then(|value| value.parse().ok())
    };
    Some((field("proxy")?, field("admin")?))
}

fn command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    // A developer's own TOLLGATE_CONFIG must not change what a test runs; tests that use the
    // variable pass it in `env`.
    command.env_remove("TOLLGATE_CONFIG");
    command.envs(env.iter().copied());
    command.kill_on_drop(true);
    command
}

async fn collect(output: impl AsyncRead + Unpin, stream: Stream, lines: Lines) {
    let mut reader = BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bytes, not `lines()`: a non-UTF-8 line must not end the collection.
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']).to_owned();
                lines.lock().expect("gateway: lock").push((stream, text));
            }
        }
    }
}

fn render(lines: &Lines) -> String {
    lines
        .lock()
        .expect("gateway: lock")
        .iter()
        .map(|(stream, line)| {
            let tag = match stream {
                Stream::Stdout => "out",
                Stream::Stderr => "err",
            };
            format!("  [{tag}] {line}\n")
        })
        .collect()
}

fn exit_code(status: ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    -1
}
