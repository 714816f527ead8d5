//! Heap allocations per request on the gateway's cached path, counted by a counting global
//! allocator (dhat's, in heap mode: every allocation of every thread, hyper's and tokio's
//! included), with the allocation sites that fire on every request.
//!
//!   cargo bench --bench allocations            # every case
//!   REQUESTS=20000 CASES="intro jwt" cargo bench --bench allocations
//!
//! Each case runs in a child process of its own (a process has one allocator, one log subscriber
//! and one metrics recorder): the embedded dev provider (`tollgate::dev::provider`, opaque tokens
//! for `intro`, RS256 JWTs for `jwt`), the gateway itself (`workers = 1`), an upstream and a client.
//! The upstream and the client are plain blocking loops over fixed buffers that allocate nothing
//! per request, so every allocation counted in the measured window is the gateway's. The window
//! opens after a warm-up (the token is cached, the upstream connection pooled) and covers
//! `REQUESTS` keep-alive requests on one connection, one at a time.
//!
//! Cases: `public` (a public route: no policy), `intro` (a cached introspected opaque token),
//! `jwt` (a cached RS256 JWT), `intro-log` (`intro` with the access log on, the default `info`;
//! the others run at `warn`, as `benches/load.sh` does). Prints a Markdown table, then per case the
//! sites that allocate at least once per request (`SITES=0` leaves them out).

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tollgate::clock::SystemClock;
use tollgate::dev::provider::{DevClient, DevProvider, DevProviderSettings, DevTokenFormat};
use tollgate::runtime::{Runtime, RuntimeHandle};
use tollgate::server::{self, Listeners};

const CASES: [&str; 4] = ["public", "intro", "jwt", "intro-log"];
const CHILD: &str = "TOLLGATE_ALLOCATIONS_CASE";
const BODY: &[u8] = br#"{"orders":[{"id":1,"status":"shipped"}]}"#;

/// What one case's child reports.
#[derive(serde::Serialize, serde::Deserialize)]
struct Counted {
    case: String,
    requests: u64,
    blocks: u64,
    bytes: u64,
    /// Every allocation site of the whole run, named by its first frames: (name, blocks, bytes).
    sites: Vec<(String, u64, u64)>,
}

/// A case counted twice, with `REQUESTS` and twice as many: a site's difference between the two
/// runs is what it allocates for those extra requests alone, start-up and warm-up cancelled out.
struct Result {
    once: Counted,
    per_request: Vec<(f64, f64, String)>,
}

fn main() {
    if let Ok(case) = std::env::var(CHILD) {
        child(&case);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this too, without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("allocations: run it with `cargo bench --bench allocations`");
        return;
    }
    let cases = std::env::var("CASES").unwrap_or_else(|_| CASES.join(" "));
    let requests: u64 = std::env::var("REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let mut results = Vec::new();
    for case in cases.split_whitespace() {
        if !CASES.contains(&case) {
            eprintln!(
                "allocations: unknown case {case:?}; cases: {}",
                CASES.join(" ")
            );
            std::process::exit(2);
        }
        let counted = run_child(case, requests).and_then(|once| {
            let twice = run_child(case, 2 * requests)?;
            Ok(Result {
                per_request: site_difference(&once, &twice, requests),
                once,
            })
        });
        match counted {
            Ok(result) => results.push(result),
            Err(e) => {
                eprintln!("allocations: case {case}: {e}");
                std::process::exit(1);
            }
        }
    }
    report(&results);
}

fn run_child(case: &str, requests: u64) -> std::result::Result<Counted, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .env(CHILD, case)
        .env("REQUESTS", requests.to_string())
        .stdin(Stdio::null())
        // The access log goes to standard output; the result comes back on standard error.
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("no result ({}):\n{text}", out.status))?;
    serde_json::from_str(line).map_err(|e| e.to_string())
}

/// The sites that allocated at least once per request in the second run's extra requests.
fn site_difference(once: &Counted, twice: &Counted, extra: u64) -> Vec<(f64, f64, String)> {
    let before: HashMap<&str, (u64, u64)> = once
        .sites
        .iter()
        .map(|(name, blocks, bytes)| (name.as_str(), (*blocks, *bytes)))
        .collect();
    let n = extra as f64;
    let mut sites: Vec<(f64, f64, String)> = twice
        .sites
        .iter()
        .filter_map(|(name, blocks, bytes)| {
            let (b0, y0) = before.get(name.as_str()).copied().unwrap_or((0, 0));
            let per = blocks.saturating_sub(b0) as f64 / n;
            (per >= 0.5).then(|| (per, bytes.saturating_sub(y0) as f64 / n, name.clone()))
        })
        .collect();
    sites.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)));
    sites
}

fn report(results: &[Result]) {
    println!("| case | requests | allocations per request | bytes per request |");
    println!("|---|---:|---:|---:|");
    for r in results {
        let c = &r.once;
        let n = c.requests as f64;
        println!(
            "| {} | {} | {:.2} | {:.0} |",
            c.case,
            c.requests,
            c.blocks as f64 / n,
            c.bytes as f64 / n
        );
    }
    if std::env::var("SITES").as_deref() == Ok("0") {
        return;
    }
    for r in results {
        println!(
            "\n#### {}: the sites allocating on (nearly) every request\n",
            r.once.case
        );
        println!("| per request | bytes | where (innermost first) |");
        println!("|---:|---:|---|");
        for (blocks, bytes, frames) in &r.per_request {
            println!("| {blocks:.2} | {bytes:.0} | {frames} |");
        }
    }
}

// === the child: one case ===

fn child(case: &str) {
    let requests: u64 = std::env::var("REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let warmup = 1_000;
    let sites_file = std::env::temp_dir().join(format!(
        "tollgate-allocations-{}-{case}.json",
        std::process::id()
    ));
    let profiler = dhat::Profiler::builder().file_name(&sites_file).build();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("runtime: {e}")));
    let (addr, request) = tokio.block_on(start(case));
    let mut client = Client::connect(addr, request);
    for _ in 0..warmup {
        client.round_trip();
    }
    let before = dhat::HeapStats::get();
    for _ in 0..requests {
        client.round_trip();
    }
    let after = dhat::HeapStats::get();
    drop(client);
    drop(profiler);
    let sites = all_sites(&sites_file);
    let _ = std::fs::remove_file(&sites_file);
    let counted = Counted {
        case: case.to_owned(),
        requests,
        blocks: after.total_blocks - before.total_blocks,
        bytes: after.total_bytes - before.total_bytes,
        sites,
    };
    let line = serde_json::to_string(&counted).unwrap_or_else(|e| fail(e.to_string()));
    eprintln!("RESULT {line}");
    // The gateway's threads run until the process ends.
    std::process::exit(0);
}

fn fail(why: String) -> ! {
    eprintln!("{why}");
    std::process::exit(1);
}

/// Starts the provider, the upstream and the gateway (on the main runtime's thread and its own
/// worker); returns the gateway's address and the request the client sends.
async fn start(case: &str) -> (SocketAddr, Vec<u8>) {
    let format = if case == "jwt" {
        DevTokenFormat::Jwt
    } else {
        DevTokenFormat::Opaque
    };
    let provider = dev_provider(format).await;
    let upstream = upstream();
    let gateway = free_port();
    let admin = free_port();
    let level = if case == "intro-log" { "info" } else { "warn" };
    let validation = if case == "jwt" {
        "jwt"
    } else {
        "introspection"
    };
    let config = format!(
        r#"
[listen]
address = "{gateway}"
admin_address = "{admin}"
workers = 1

[log]
level = "{level}"

[provider]
issuer = "{issuer}"
introspection_client_id = "tollgate-introspector"
introspection_client_secret = "introspector-secret"

[[api]]
name = "open"
path_prefix = "/open"
upstream = "http://{upstream}"
skip_client_id_validation = true

[[api.rule]]
public = true

[[api]]
name = "orders"
path_prefix = "/orders"
upstream = "http://{upstream}"
validation = "{validation}"
audience = ["api://default"]
scopes = ["mulescope"]
clients = ["orders-app"]
"#,
        issuer = provider.issuer(),
    );
    let settings = tollgate::config::parse(&config, &tollgate::config::ProcessEnv)
        .unwrap_or_else(|e| fail(format!("config: {e}")));
    // Kept for the process's life: the log writer's thread.
    std::mem::forget(tollgate::telemetry::init(
        &settings.log,
        tollgate::telemetry::Output::Background,
    ));
    let runtime = Runtime::build(&settings, Arc::new(SystemClock))
        .unwrap_or_else(|e| fail(format!("runtime: {e}")));
    for p in runtime.providers.clone() {
        tokio::spawn(p.resolve_with_retry());
    }
    let listeners = Listeners::bind(&settings.listen)
        .await
        .unwrap_or_else(|e| fail(format!("listen: {e}")));
    tokio::spawn(server::serve(
        RuntimeHandle::new(runtime),
        listeners,
        std::future::pending(),
    ));
    wait_ready(admin).await;
    let request = if case == "public" {
        "GET /open/orders/1 HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned()
    } else {
        let token = client_token(&provider).await;
        format!(
            "GET /orders/1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
    };
    // The provider keeps serving (it is needed only for the warm-up's miss).
    std::mem::forget(provider);
    (gateway, request.into_bytes())
}

async fn dev_provider(token_format: DevTokenFormat) -> DevProvider {
    let client = |id: &str, secret: &str| DevClient {
        client_id: id.to_owned(),
        client_secret: secret.to_owned(),
        scopes: vec!["mulescope".to_owned()],
    };
    let settings = DevProviderSettings {
        clients: vec![
            client("orders-app", "orders-secret"),
            client("tollgate-introspector", "introspector-secret"),
        ],
        scopes: vec!["mulescope".to_owned()],
        token_format,
        token_ttl: Duration::from_secs(3600),
        audience: "api://default".to_owned(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| fail(format!("provider: {e}")));
    DevProvider::start(listener, settings)
        .await
        .unwrap_or_else(|e| fail(format!("provider: {e}")))
}

async fn client_token(provider: &DevProvider) -> String {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(provider.token_url())
        .basic_auth("orders-app", Some("orders-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "mulescope")])
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| fail(format!("token: {e}")))
        .json()
        .await
        .unwrap_or_else(|e| fail(format!("token: {e}")));
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| fail("token: no access_token".to_owned()))
        .to_owned()
}

async fn wait_ready(admin: SocketAddr) {
    let url = format!("http://{admin}/readyz");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fail("the gateway did not become ready in 10 s".to_owned());
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| fail(format!("port: {e}")))
}

/// An upstream that answers every request head with the same 200, a thread per connection.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(e.to_string()));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| fail(e.to_string()));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_heads(stream));
        }
    });
    addr
}

fn answer_heads(mut stream: TcpStream) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    );
    let response = [head.as_bytes(), BODY].concat();
    let mut buf = [0u8; 16 * 1024];
    let mut filled = 0;
    loop {
        match stream.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        // Requests are bodiless GETs, one at a time: answer each complete head.
        while let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
            if stream.write_all(&response).is_err() {
                return;
            }
            buf.copy_within(end + 4..filled, 0);
            filled -= end + 4;
        }
        if filled == buf.len() {
            return;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A keep-alive client over one connection that sends one fixed request at a time and reads each
/// whole answer (`Content-Length` framed) into a fixed buffer.
struct Client {
    stream: TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr, request: Vec<u8>) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| fail(e.to_string()));
        let _ = stream.set_nodelay(true);
        Client {
            stream,
            request,
            buf: vec![0; 64 * 1024],
        }
    }

    fn round_trip(&mut self) {
        if let Err(e) = self.stream.write_all(&self.request) {
            fail(format!("client: {e}"));
        }
        let mut filled = 0;
        let (head_end, length) = loop {
            filled += self.read_more(filled);
            if let Some(end) = find(&self.buf[..filled], b"\r\n\r\n") {
                let head = &self.buf[..end];
                if !head.starts_with(b"HTTP/1.1 200 ") {
                    fail(format!(
                        "client: not a 200: {}",
                        String::from_utf8_lossy(&head[..head.len().min(200)])
                    ));
                }
                break (end + 4, content_length(head));
            }
        };
        while filled < head_end + length {
            filled += self.read_more(filled);
        }
    }

    fn read_more(&mut self, filled: usize) -> usize {
        match self.stream.read(&mut self.buf[filled..]) {
            Ok(0) => fail("client: the gateway closed the connection".to_owned()),
            Ok(n) => n,
            Err(e) => fail(format!("client: {e}")),
        }
    }
}

fn content_length(head: &[u8]) -> usize {
    head.split(|&b| b == b'\n')
        .find_map(|line| {
            let line = std::str::from_utf8(line).ok()?.trim_end();
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or_else(|| fail("client: an answer without Content-Length".to_owned()))
}

/// Every program point of dhat's file, merged by name (its first frames outside the allocator
/// and the standard library).
fn all_sites(file: &std::path::Path) -> Vec<(String, u64, u64)> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let frames: Vec<&str> = doc["ftbl"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str()).collect())
        .unwrap_or_default();
    let mut sites: HashMap<String, (u64, u64)> = HashMap::new();
    for pp in doc["pps"].as_array().into_iter().flatten() {
        // dhat's names: `tbk` total blocks, `tb` total bytes.
        let (Some(blocks), Some(bytes)) = (pp["tbk"].as_u64(), pp["tb"].as_u64()) else {
            continue;
        };
        let entry = sites.entry(site_name(&pp["fs"], &frames)).or_default();
        entry.0 += blocks;
        entry.1 += bytes;
    }
    sites
        .into_iter()
        .map(|(name, (blocks, bytes))| (name, blocks, bytes))
        .collect()
}

fn site_name(indices: &serde_json::Value, frames: &[&str]) -> String {
    const SKIP: [&str; 10] = [
        "dhat::", "<dhat::", "alloc::", "<alloc::", "core::", "<core::", "std::", "<std::",
        "__rust", "[root]",
    ];
    indices
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| frames.get(usize::try_from(i.as_u64()?).ok()?))
        .map(|f| f.split_once(": ").map_or(*f, |(_, name)| name))
        .map(|name| name.split(" (").next().unwrap_or(name))
        .filter(|name| !SKIP.iter().any(|s| name.starts_with(s)))
        .take(3)
        .map(|name| name.replace('|', "\\|"))
        .collect::<Vec<_>>()
        .join(" ← ")
}
