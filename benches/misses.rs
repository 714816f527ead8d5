//! An open-loop load generator for `benches/misses.sh`: requests at a fixed rate, each with its own
//! bearer token (`PREFIX` followed by its number, so a second run with the same prefix presents the
//! same tokens again), over HTTP/1.1 keep-alive connections.
//!
//! Open loop: request `i` is due at `start + i / RATE` whatever happened before, and its latency is
//! counted from that moment, not from when it was sent. A slow answer therefore cannot hold back the
//! next request and hide itself (coordinated omission, which a closed-loop client like wrk has):
//! time spent waiting for a free connection or for this process's own scheduler is latency too.
//! Connections come from an idle pool; a new one is opened when none is idle, up to
//! `MAX_CONNECTIONS` (then a request waits for one to come back).
//!
//! It prints one JSON line: requests sent, statuses, errors, p50/p90/p99/max latency in ms, the
//! achieved rate, the connections opened, how late (p99, max) requests were sent after they were
//! due (the wait for a free connection included), and how late their tasks began to run (the lag:
//! the generator's own delay, which says whether it kept up).
//!
//!   MISSES="ADDR PATH RATE SECONDS MAX_CONNECTIONS PREFIX" cargo bench --bench misses
//!
//! Without `MISSES` (a plain `cargo bench`) it says what it is for and does nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// An answer that takes longer than this is an error (and its connection is dropped).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Run {
    addr: String,
    path: String,
    prefix: String,
    /// One permit per connection that may be in use: at most `MAX_CONNECTIONS` exist at once, as a
    /// new one is opened only when none is idle.
    slots: Semaphore,
    idle: Mutex<Vec<SendRequest<Empty<Bytes>>>>,
    opened: AtomicU64,
    start: Instant,
    /// When the last request left, in microseconds after `start`: the end of the sending window.
    last_sent: AtomicU64,
    outcomes: Mutex<Outcomes>,
}

#[derive(Default)]
struct Outcomes {
    /// Microseconds from due to answered, one per answered request.
    latencies: Vec<u64>,
    /// Microseconds from due to sent, one per request sent: the generator's own delay and the wait
    /// for a free connection.
    lateness: Vec<u64>,
    /// Microseconds from due to the request's task running: the generator's own delay alone.
    lag: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
}

fn main() {
    let Ok(spec) = std::env::var("MISSES") else {
        println!("misses: driven by benches/misses.sh (set MISSES to run it by hand)");
        return;
    };
    let words: Vec<&str> = spec.split_whitespace().collect();
    let [addr, path, rate, seconds, max_connections, prefix] = words.as_slice() else {
        eprintln!("MISSES=\"ADDR PATH RATE SECONDS MAX_CONNECTIONS PREFIX\"");
        std::process::exit(2);
    };
    let (Ok(rate), Ok(seconds), Ok(max_connections)) = (
        rate.parse::<u64>(),
        seconds.parse::<u64>(),
        max_connections.parse::<usize>(),
    ) else {
        eprintln!("RATE, SECONDS and MAX_CONNECTIONS are whole numbers");
        std::process::exit(2);
    };
    if rate == 0 || max_connections == 0 {
        eprintln!("RATE and MAX_CONNECTIONS must be at least 1");
        std::process::exit(2);
    }
    let run = Arc::new(Run {
        addr: (*addr).to_owned(),
        path: (*path).to_owned(),
        prefix: (*prefix).to_owned(),
        slots: Semaphore::new(max_connections),
        idle: Mutex::new(Vec::with_capacity(max_connections)),
        opened: AtomicU64::new(0),
        start: Instant::now(),
        last_sent: AtomicU64::new(0),
        outcomes: Mutex::new(Outcomes::default()),
    });
    // One thread: the generator must leave the machine's cores to the processes it measures; its
    // own delays are counted (from each request's due time) and reported as lateness.
    let event_loop = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("tokio: {e}");
            std::process::exit(1)
        });
    let elapsed = event_loop.block_on(schedule(run.clone(), rate, rate * seconds));
    println!("{}", report(&run, rate, elapsed));
}

/// Sends `total` requests, request `i` due at `start + i / rate`; returns the time from the first
/// due moment to the last answer.
async fn schedule(run: Arc<Run>, rate: u64, total: u64) -> Duration {
    let start = run.start;
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until(due).await;
        tasks.push(tokio::spawn(one_request(run.clone(), i, due)));
    }
    for task in tasks {
        if task.await.is_err() {
            tally_error(&run, "panicked");
        }
    }
    start.elapsed()
}

async fn one_request(run: Arc<Run>, i: u64, due: Instant) {
    let lag = micros(Instant::now() - due);
    let Ok(_slot) = run.slots.acquire().await else {
        return tally_error(&run, "closed");
    };
    // A listener at its connection cap leaves a connect in the kernel's backlog, retried for a
    // minute: bounded like the exchange.
    let mut sender = match tokio::time::timeout(REQUEST_TIMEOUT, connection(&run)).await {
        Ok(Ok(sender)) => sender,
        Ok(Err(kind)) => return tally_error(&run, kind),
        Err(_) => return tally_error(&run, "connect_timeout"),
    };
    let request = http::Request::get(&run.path)
        .header(http::header::HOST, &run.addr)
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}{i}", run.prefix),
        )
        .body(Empty::<Bytes>::new());
    let Ok(request) = request else {
        return tally_error(&run, "bad_request");
    };
    let sent = Instant::now();
    run.last_sent
        .fetch_max(micros(sent - run.start), Ordering::Relaxed);
    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok::<_, hyper::Error>(status)
    };
    let outcome = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await;
    let answered = Instant::now();
    let mut outcomes = lock(&run.outcomes);
    outcomes.lateness.push(micros(sent - due));
    outcomes.lag.push(lag);
    match outcome {
        Ok(Ok(status)) => {
            outcomes.latencies.push(micros(answered - due));
            *outcomes.statuses.entry(status).or_default() += 1;
            drop(outcomes);
            // Back to the pool for the next request, unless the server is closing it.
            if !sender.is_closed() {
                lock(&run.idle).push(sender);
            }
        }
        Ok(Err(_)) => *outcomes.errors.entry("http").or_default() += 1,
        Err(_) => *outcomes.errors.entry("timeout").or_default() += 1,
    }
}

/// An idle connection that is still open, else a new one.
async fn connection(run: &Run) -> Result<SendRequest<Empty<Bytes>>, &'static str> {
    loop {
        let Some(mut sender) = lock(&run.idle).pop() else {
            break;
        };
        if sender.ready().await.is_ok() {
            return Ok(sender);
        }
    }
    let tcp = TcpStream::connect(&run.addr).await.map_err(|_| "connect")?;
    tcp.set_nodelay(true).map_err(|_| "connect")?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|_| "handshake")?;
    tokio::spawn(conn);
    run.opened.fetch_add(1, Ordering::Relaxed);
    Ok(sender)
}

fn tally_error(run: &Run, kind: &'static str) {
    *lock(&run.outcomes).errors.entry(kind).or_default() += 1;
}

fn report(run: &Run, rate: u64, elapsed: Duration) -> serde_json::Value {
    let mut outcomes = lock(&run.outcomes);
    let sent = outcomes.lateness.len() as u64;
    // Over the sending window: from the first due moment to the last send, plus one interval.
    let window = run.last_sent.load(Ordering::Relaxed) as f64 / 1e6 + 1.0 / rate as f64;
    outcomes.latencies.sort_unstable();
    outcomes.lateness.sort_unstable();
    outcomes.lag.sort_unstable();
    let ms = |v: &[u64], q: f64| percentile(v, q) as f64 / 1000.0;
    let errors: u64 = outcomes.errors.values().sum();
    serde_json::json!({
        "sent": sent,
        "statuses": outcomes.statuses,
        "errors": errors,
        "error_kinds": outcomes.errors,
        "p50_ms": ms(&outcomes.latencies, 0.50),
        "p90_ms": ms(&outcomes.latencies, 0.90),
        "p99_ms": ms(&outcomes.latencies, 0.99),
        "max_ms": ms(&outcomes.latencies, 1.0),
        "late_p99_ms": ms(&outcomes.lateness, 0.99),
        "late_max_ms": ms(&outcomes.lateness, 1.0),
        "lag_p99_ms": ms(&outcomes.lag, 0.99),
        "lag_max_ms": ms(&outcomes.lag, 1.0),
        "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "rate": (sent as f64 / window).round(),
        "connections": run.opened.load(Ordering::Relaxed),
    })
}

/// The nearest-rank percentile of sorted values (0 when there are none).
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
