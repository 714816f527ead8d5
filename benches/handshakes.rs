//! New TLS connections per second against a listener, for `benches/load.sh`: each connection is
//! a handshake, one `GET` with `Connection: close`, and its whole answer, so that a TLS 1.3 server's
//! session tickets (sent after the handshake) have arrived before the connection ends.
//!
//! Two modes: `full` (no resumption: every handshake signs with the server's key) and `resumed`
//! (rustls's client session cache: tickets, or TLS 1.2 session IDs). It prints one line:
//! `connections seconds resumed failures statuses_non_2xx`, so that the script can divide by the
//! server's CPU time, measured from outside.
//!
//!   HANDSHAKES="ADDR NAME CA_PEM MODE CONCURRENCY SECONDS PATH [HEADER]" cargo bench --bench handshakes
//!
//! Without `HANDSHAKES` (a plain `cargo bench`) it says what it is for and does nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Run {
    addr: String,
    name: ServerName<'static>,
    /// The shared settings; each client task has its own session cache (see `connect_loop`).
    config: Arc<rustls::ClientConfig>,
    resume: bool,
    request: Vec<u8>,
    deadline: Instant,
}

#[derive(Default)]
struct Tally {
    connections: AtomicU64,
    resumed: AtomicU64,
    failures: AtomicU64,
    non_2xx: AtomicU64,
}

fn main() {
    let Ok(spec) = std::env::var("HANDSHAKES") else {
        println!("handshakes: driven by benches/load.sh (set HANDSHAKES to run it by hand)");
        return;
    };
    let words: Vec<&str> = spec.split_whitespace().collect();
    let [addr, name, ca, mode, concurrency, seconds, path, rest @ ..] = words.as_slice() else {
        eprintln!(
            "HANDSHAKES=\"ADDR NAME CA_PEM full|resumed CONCURRENCY SECONDS PATH [HEADER...]\""
        );
        std::process::exit(2);
    };
    let concurrency: usize = concurrency.parse().unwrap_or(32);
    let seconds: u64 = seconds.parse().unwrap_or(10);
    let header = rest.join(" ");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n{}\r\n",
        if header.is_empty() {
            String::new()
        } else {
            format!("{header}\r\n")
        }
    );
    let resume = *mode == "resumed";
    let config = client_config(ca);
    let run = Arc::new(Run {
        addr: (*addr).to_owned(),
        name: ServerName::try_from((*name).to_owned()).unwrap_or_else(|e| {
            eprintln!("bad server name {name}: {e}");
            std::process::exit(2)
        }),
        config,
        resume,
        request: request.into_bytes(),
        deadline: Instant::now() + Duration::from_secs(seconds),
    });
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let event_loop = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("tokio: {e}");
            std::process::exit(1)
        });
    event_loop.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            tasks.spawn(connect_loop(run.clone(), tally.clone()));
        }
        while tasks.join_next().await.is_some() {}
    });
    println!(
        "{} {:.3} {} {} {}",
        tally.connections.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        tally.resumed.load(Ordering::Relaxed),
        tally.failures.load(Ordering::Relaxed),
        tally.non_2xx.load(Ordering::Relaxed),
    );
}

fn client_config(ca: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| {
            eprintln!("reading {ca}: {e}");
            std::process::exit(2)
        });
    for cert in certs {
        if let Err(e) = roots.add(cert) {
            eprintln!("{ca}: {e}");
            std::process::exit(2);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| {
            eprintln!("rustls: {e}");
            std::process::exit(1)
        })
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One client: its own session cache, as a real client resumes its own sessions (a cache shared by
/// every task would hold only rustls's 8 tickets per server for all of them).
async fn connect_loop(run: Arc<Run>, tally: Arc<Tally>) {
    let mut config = (*run.config).clone();
    config.resumption = if run.resume {
        Resumption::in_memory_sessions(16)
    } else {
        Resumption::disabled()
    };
    let connector = TlsConnector::from(Arc::new(config));
    let mut answer = Vec::with_capacity(4096);
    while Instant::now() < run.deadline {
        answer.clear();
        match one_connection(&run, &connector, &mut answer).await {
            Ok(resumed) => {
                tally.connections.fetch_add(1, Ordering::Relaxed);
                if resumed {
                    tally.resumed.fetch_add(1, Ordering::Relaxed);
                }
                if !answer.starts_with(b"HTTP/1.1 2") {
                    tally.non_2xx.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                tally.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One connection: handshake, request, the answer to its end; `true` if the session was resumed.
async fn one_connection(
    run: &Run,
    connector: &TlsConnector,
    answer: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let tcp = TcpStream::connect(&run.addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(run.name.clone(), tcp).await?;
    let resumed = matches!(
        tls.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    tls.write_all(&run.request).await?;
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(answer))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?;
    match read {
        Ok(_) => Ok(resumed),
        // A server that closes without close_notify after a whole answer: still one connection.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {
            Ok(resumed)
        }
        Err(e) => Err(e),
    }
}
