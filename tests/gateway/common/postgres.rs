//! A real PostgreSQL server for the tests (the registry's stores run the same cases against SQLite and
//! PostgreSQL): `initdb` into a private temp directory, then `postgres` on 127.0.0.1 and an ephemeral
//! port, the role `tollgate` with a random password per server, durability off for speed.
//! `PgServer::shared()` starts one per test binary and hands each test a fresh database;
//! `PgServer::start()` gives a test a server of its own. Also `sqlite_url()`, a temp SQLite file for
//! the same cases.
//!
//! A password, not trust authentication: the role is a superuser, which can run programs as the
//! server's OS user (`COPY ... TO PROGRAM`), and any local user can reach a loopback port.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then `initdb` and `postgres` run as
//! Debian's `postgres` system user (`setpriv`, which execs in place, so the child we hold is the
//! server's wrapper and no PAM session sits in between), in a directory that user owns.
//!
//! The server must stop when the test binary exits, though a `static` is never dropped. It runs
//! under a small `sh` wrapper holding the read end of a pipe whose write end only this process has;
//! when the process exits (or drops the `PgServer`) the pipe reaches EOF and the wrapper asks
//! postgres for a fast shutdown, then removes the directory — the way `tests/idp/server.mjs` exits
//! on stdin EOF. Not `PR_SET_PDEATHSIG` (`setpriv --pdeathsig`): it fires when the *thread* that
//! spawned the child ends, and a shared server is spawned from whichever test's runtime thread came
//! first, which ends with that test. The binaries are found where Debian puts them
//! (`/usr/lib/postgresql/<major>/bin`, newest major first), else on `PATH`; `tests/run` installs them.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The superuser role `initdb` creates; every URL connects as it (with the server's password).
pub const ROLE: &str = "tollgate";
/// Who runs the server when the tests run as root (Debian's postgresql package creates it).
const SYSTEM_USER: &str = "postgres";
/// How long `postgres` may take to accept connections (it usually takes a fraction of a second).
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a dropped server may take to shut down before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// How often a port taken between our probe and the server's bind is retried with another.
const PORT_ATTEMPTS: usize = 5;
/// How much of the server's log is kept for diagnostics (the newest part).
const LOG_LIMIT: usize = 256 * 1024;
const POLL: Duration = Duration::from_millis(20);

/// The wrapper: `sh -c WRAPPER sh BASE POSTGRES ARGS...`. Its stdin is the pipe from the test process.
/// An asynchronous list's stdin is /dev/null in a non-interactive shell, hence fd 3. SIGINT is
/// postgres' fast shutdown (SIGTERM would wait for every client to disconnect); the wrapper itself
/// ignores SIGINT so a Ctrl-C reaching the whole process group still ends in the cleanup. If postgres
/// exits first (its port was taken), the watcher is killed so it can never signal a reused pid.
const WRAPPER: &str = r#"
base=$1
shift
trap '' INT
exec 3<&0
"$@" </dev/null 3<&- &
pg=$!
{ cat <&3 >/dev/null; kill -INT "$pg"; } 2>/dev/null &
watcher=$!
exec 3<&-
wait "$pg"
status=$?
kill "$watcher" 2>/dev/null
rm -rf "$base"
exit "$status"
"#;

/// The server's stderr (its log), the newest `LOG_LIMIT` bytes.
type Log = Arc<Mutex<Vec<u8>>>;

/// A running PostgreSQL server, stopped and its directory removed on drop.
pub struct PgServer {
    port: u16,
    password: String,
    base: PathBuf,
    log: Log,
    next_database: AtomicU64,
    // Dropping it is what stops the server (EOF at the wrapper), so it goes before `child` is waited.
    stdin: Option<ChildStdin>,
    child: Mutex<Child>,
}

/// How one start attempt ended (short of a panic).
enum Started {
    Ready,
    /// The port was taken between the probe and the server's bind: try another.
    PortTaken,
}

/// A temp SQLite database file (`sqlite://PATH?mode=rwc`: created on first connect), removed with
/// its directory on drop.
pub struct TempSqlite {
    pub url: String,
    dir: PathBuf,
}

// === impl PgServer ===

impl PgServer {
    /// The server shared by every test in this binary, started by the first caller. Give each test
    /// its own database (`fresh_database`). Stopped when the binary exits (see the module docs).
    pub async fn shared() -> &'static PgServer {
        static SHARED: tokio::sync::OnceCell<PgServer> = tokio::sync::OnceCell::const_new();
        SHARED.get_or_init(PgServer::start).await
    }

    /// A server of the caller's own (about a second: `initdb`, then start-up).
    pub async fn start() -> PgServer {
        let bin = bin_dir();
        for _ in 0..PORT_ATTEMPTS {
            let server = PgServer::spawn(&bin).await;
            match server.wait_ready().await {
                Started::Ready => return server,
                Started::PortTaken => drop(server),
            }
        }
        panic!(
            "postgres: {PORT_ATTEMPTS} ephemeral ports in a row were taken before it bound them"
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's private directory (data directory `data/`, socket), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.base
    }

    /// `postgres://tollgate:PASSWORD@127.0.0.1:PORT/DATABASE` (the database must exist: `database`).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{ROLE}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// Creates database `name` (lower-case letters, digits and `_`; it must not exist) and returns
    /// its URL.
    pub async fn database(&self, name: &str) -> String {
        let plain = !name.is_empty()
            && name.len() < 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        assert!(
            plain,
            "postgres: database name {name:?} is not [a-z0-9_]{{1,63}}"
        );
        let mut admin = self.admin().await;
        // Not a bind parameter: CREATE DATABASE takes none; the name was checked above.
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("postgres: CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        self.url(name)
    }

    /// A new, empty database with a name no other call in this process gets; returns its URL.
    pub async fn fresh_database(&self) -> String {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        self.database(&format!("test_{n}")).await
    }

    /// What the server has logged so far (its newest part), for diagnostics.
    pub fn log(&self) -> String {
        text(&self.log)
    }

    /// A fresh base directory, `initdb` in it, and the wrapper started on a probed free port.
    async fn spawn(bin: &Path) -> PgServer {
        let base = super::private_dir("tollgate-pg");
        // A directory we create is ours: owned by root means we run as root.
        let as_system_user = std::fs::metadata(&base).is_ok_and(|m| m.uid() == 0);
        let password = random_password();
        let pwfile = base.join("pwfile");
        std::fs::write(&pwfile, &password)
            .unwrap_or_else(|e| panic!("writing {}: {e}", pwfile.display()));
        if as_system_user {
            give_to_system_user(&[&base, &pwfile]);
        }
        init_db(bin, &base, as_system_user).await;
        // The cluster keeps only a SCRAM verifier; the clear text need not stay on disk.
        let _ = std::fs::remove_file(&pwfile);

        let port = free_port();
        let mut command = as_user(as_system_user, Path::new("sh"));
        command
            .args(["-c", WRAPPER, "sh"])
            .arg(&base)
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(base.join("data"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(&base)
            // Test data need no durability; small buffers since one machine runs many of these.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "shared_buffers=16MB"])
            // Room for every parallel test's pool (sqlx's default pool holds up to 10).
            .args(["-c", "max_connections=200"])
            .current_dir(&base)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("postgres: starting sh (the server's wrapper): {e}"));
        let stdin = child.stdin.take();
        let log = Log::default();
        if let Some(stderr) = child.stderr.take() {
            drain(stderr, log.clone());
        }
        PgServer {
            port,
            password,
            base,
            log,
            next_database: AtomicU64::new(0),
            stdin,
            child: Mutex::new(child),
        }
    }

    /// Polls until the server accepts a connection, it exits, or `START_DEADLINE` passes.
    async fn wait_ready(&self) -> Started {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            // Only this server knows the password, so a connection cannot reach another test's
            // server that took the port first (ours then fails to bind it, below).
            if let Ok(Ok(conn)) = tokio::time::timeout(
                Duration::from_secs(2),
                PgConnection::connect_with(&self.admin_options()),
            )
            .await
            {
                let _ = conn.close().await;
                return Started::Ready;
            }
            if self.exited() {
                // The wrapper's log pipe may still hold the last lines; they matter for the panic.
                let settled = Instant::now() + Duration::from_secs(1);
                while !self.log().contains("FATAL") && Instant::now() < settled {
                    tokio::time::sleep(POLL).await;
                }
                let log = self.log();
                if log.contains("Address already in use") {
                    return Started::PortTaken;
                }
                panic!("postgres exited before accepting connections; its log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections on 127.0.0.1:{} within {START_DEADLINE:?}; its log:\n{}",
                self.port,
                self.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether the wrapper (so postgres) has exited.
    fn exited(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        !matches!(child.try_wait(), Ok(None))
    }

    fn admin_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(ROLE)
            .password(&self.password)
            .database("postgres")
    }

    /// A connection to the maintenance database `postgres`, for CREATE DATABASE.
    async fn admin(&self) -> PgConnection {
        PgConnection::connect_with(&self.admin_options())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "postgres: connecting to 127.0.0.1:{}: {e}; its log:\n{}",
                    self.port,
                    self.log()
                )
            })
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // EOF at the wrapper: it shuts postgres down (fast) and removes the directory.
        drop(self.stdin.take());
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + STOP_DEADLINE;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

// === impl TempSqlite ===

impl Drop for TempSqlite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which store a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` (in the calling module) as two tests, one per store.
macro_rules! against_both_stores {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::common::postgres::Backend::Sqlite).await
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::common::postgres::Backend::Postgres).await
                }
            }
        )+
    };
}
pub(crate) use against_both_stores;

/// A store URL for one test, and what keeps it alive.
pub async fn store(backend: Backend) -> (String, Option<TempSqlite>) {
    match backend {
        Backend::Sqlite => {
            let file = sqlite_url();
            (file.url.clone(), Some(file))
        }
        Backend::Postgres => (PgServer::shared().await.fresh_database().await, None),
    }
}

/// A SQLite database file in a new private temp directory (created on first connect).
pub fn sqlite_url() -> TempSqlite {
    let dir = super::private_dir("tollgate-sqlite");
    let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
    TempSqlite { url, dir }
}

/// The directory holding `initdb` and `postgres`: the newest `/usr/lib/postgresql/<major>/bin`
/// (Debian's layout, off `PATH`), else the first `PATH` entry holding both.
pub fn bin_dir() -> PathBuf {
    let both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, bin)| both(bin))
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin);
    let on_path = || {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path).find(|dir| both(dir))
    };
    debian.or_else(on_path).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's initdb and postgres are not installed (looked in /usr/lib/postgresql/<major>/bin \
             and on PATH): run `bash tests/run` as root, which installs Debian's postgresql package, \
             or install it yourself (apt-get install postgresql)"
        )
    })
}

/// `program` as a command, run as `SYSTEM_USER` when `as_system_user`. `LC_ALL=C`: the log is
/// searched for an English message.
fn as_user(as_system_user: bool, program: &Path) -> Command {
    let mut command = if as_system_user {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            SYSTEM_USER,
            "--regid",
            SYSTEM_USER,
            "--init-groups",
            "--",
        ]);
        c.arg(program);
        c
    } else {
        Command::new(program)
    };
    command.env("LC_ALL", "C");
    command
}

/// `initdb` into `base/data`: superuser `tollgate` with the password in `base/pwfile`, SCRAM
/// authentication (initdb's pg_hba.conf admits only the socket and loopback), UTF8 and the C locale
/// (whatever the machine's locales).
async fn init_db(bin: &Path, base: &Path, as_system_user: bool) {
    let mut command = as_user(as_system_user, &bin.join("initdb"));
    command
        .arg("-D")
        .arg(base.join("data"))
        .args([
            "-U",
            ROLE,
            "-A",
            "scram-sha-256",
            "--pwfile=pwfile",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .current_dir(base)
        .stdin(Stdio::null());
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .unwrap_or_else(|e| panic!("postgres: running initdb: {e}"));
    assert!(
        output.status.success(),
        "initdb failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Hands `paths` to `SYSTEM_USER` (the server, run as that user, writes its data and socket there).
fn give_to_system_user(paths: &[&Path]) {
    let output = Command::new("chown")
        .arg(format!("{SYSTEM_USER}:{SYSTEM_USER}"))
        .args(paths)
        .output()
        .unwrap_or_else(|e| panic!("postgres: running chown: {e}"));
    assert!(
        output.status.success(),
        "running as root, PostgreSQL must run as the `{SYSTEM_USER}` system user (Debian's postgresql \
         package creates it), but chown to it failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// 128 random bits in hex (URL-safe), from the kernel.
fn random_password() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap_or_else(|e| panic!("reading /dev/urandom: {e}"));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A loopback port that was free a moment ago (bound, then released for the server to take).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("probing for a free port: {e}"))
}

/// Copies `from` into `log` (its newest `LOG_LIMIT` bytes) until EOF, on a thread of its own: a
/// shared server outlives the runtime of the test that started it.
fn drain(mut from: impl Read + Send + 'static, log: Log) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.extend_from_slice(&buf[..n]);
            let excess = log.len().saturating_sub(LOG_LIMIT);
            log.drain(..excess);
        }
    });
}

fn text(log: &Log) -> String {
    String::from_utf8_lossy(&log.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}
