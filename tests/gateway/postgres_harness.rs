//! Self-tests of the database harness (`common::postgres`): the real PostgreSQL server the registry's
//! store tests share, its fresh databases, who it runs as, LISTEN/NOTIFY between connections, and the
//! temp SQLite file, so a failing store test points at the store and not at its instruments.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use sqlx::{AnyPool, Connection, PgConnection};

use crate::common::postgres::{PgServer, sqlite_url};

/// Every database call here gets this long; a hang fails the test instead of the run.
const WAIT: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

async fn pool(url: &str) -> PgPool {
    within("connecting", PgPool::connect(url))
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// The uid of the server process behind `pool`'s connections (Linux: the owner of `/proc/PID`).
async fn backend_uid(pool: &PgPool) -> u32 {
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("pg_backend_pid()");
    std::fs::metadata(format!("/proc/{pid}"))
        .unwrap_or_else(|e| panic!("the server's backend /proc/{pid}: {e}"))
        .uid()
}

#[tokio::test]
async fn fresh_databases_are_distinct_and_usable() {
    let server = PgServer::shared().await;
    // Concurrently, as parallel tests will: CREATE DATABASE copies template1 for each.
    let (a, b, named) = tokio::join!(
        server.fresh_database(),
        server.fresh_database(),
        server.database("harness_named")
    );
    assert_ne!(a, b);
    assert_eq!(named, server.url("harness_named"));
    let (a, b, named) = (pool(&a).await, pool(&b).await, pool(&named).await);

    sqlx::raw_sql("CREATE TABLE apps (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&a)
        .await
        .expect("create table in a");
    sqlx::query("INSERT INTO apps (id, name) VALUES ($1, $2)")
        .bind(7_i64)
        .bind("orders-app")
        .execute(&a)
        .await
        .expect("insert in a");
    let name: String = sqlx::query_scalar("SELECT name FROM apps WHERE id = $1")
        .bind(7_i64)
        .fetch_one(&a)
        .await
        .expect("select in a");
    assert_eq!(name, "orders-app");

    // b is another database: a's table is not there (42P01 undefined_table), and b can have its own.
    let missing = sqlx::query("SELECT name FROM apps").fetch_all(&b).await;
    let code = missing
        .as_ref()
        .err()
        .and_then(|e| e.as_database_error())
        .and_then(|e| e.code().map(|c| c.into_owned()));
    assert_eq!(code.as_deref(), Some("42P01"), "{missing:?}");
    sqlx::raw_sql("CREATE TABLE apps (id BIGINT PRIMARY KEY)")
        .execute(&b)
        .await
        .expect("create table in b");

    let current = |pool: PgPool| async move {
        let name: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&pool)
            .await
            .expect("current_database()");
        name
    };
    let (a, b, named) = (current(a).await, current(b).await, current(named).await);
    assert_ne!(a, b);
    assert_eq!(named, "harness_named");
}

#[tokio::test]
async fn the_server_never_runs_as_root() {
    let server = PgServer::shared().await;
    let db = pool(&server.fresh_database().await).await;
    let uid = backend_uid(&db).await;
    assert_ne!(
        uid, 0,
        "postgres refuses root; a backend running as root means a broken setup"
    );

    let we_are_root = std::fs::metadata("/proc/self").expect("/proc/self").uid() == 0;
    if we_are_root {
        let output = std::process::Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .expect("running id");
        let postgres: u32 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("the uid of the postgres system user");
        assert_eq!(uid, postgres, "as root, the server runs as `postgres`");
    }

    // Its data directory is the one the harness made, owned by the server's user.
    let data: String = sqlx::query_scalar("SELECT current_setting('data_directory')")
        .fetch_one(&db)
        .await
        .expect("data_directory");
    assert_eq!(std::path::Path::new(&data), server.dir().join("data"));
    let owner = std::fs::metadata(&data).expect("the data directory").uid();
    assert_eq!(owner, uid);
}

#[tokio::test]
async fn the_server_refuses_connections_without_its_password() {
    let server = PgServer::shared().await;
    let url = server.fresh_database().await;
    let port = server.port();
    let db = url.rsplit('/').next().expect("a database in the URL");
    within("connect", PgConnection::connect(&url))
        .await
        .expect("the URL's password is accepted");
    for bad in [
        format!("postgres://tollgate@127.0.0.1:{port}/{db}"),
        format!("postgres://tollgate:wrong@127.0.0.1:{port}/{db}"),
    ] {
        let refused = within("connect", PgConnection::connect(&bad)).await;
        let code = refused
            .as_ref()
            .err()
            .and_then(|e| e.as_database_error())
            .and_then(|e| e.code().map(|c| c.into_owned()));
        // 28P01 invalid_password (a superuser role, so this is what trust would have let in).
        assert_eq!(code.as_deref(), Some("28P01"), "{bad}: {:?}", refused.err());
    }
}

#[tokio::test]
async fn listen_notify_reaches_another_connection_of_the_same_database() {
    let server = PgServer::shared().await;
    let (url, other_url) = tokio::join!(server.fresh_database(), server.fresh_database());
    let mut listener = within("listener", PgListener::connect(&url))
        .await
        .expect("listener connect");
    within("LISTEN", listener.listen("registry_changed"))
        .await
        .expect("LISTEN");
    let (db, other) = (pool(&url).await, pool(&other_url).await);

    // NOTIFY is per database: the other database's notification, committed first, must not arrive.
    for (pool, payload) in [(&other, "other database"), (&db, "contract 7 revoked")] {
        sqlx::query("SELECT pg_notify('registry_changed', $1)")
            .bind(payload)
            .execute(pool)
            .await
            .expect("pg_notify");
    }
    let got = within("the notification", listener.recv())
        .await
        .expect("recv");
    assert_eq!(got.channel(), "registry_changed");
    assert_eq!(got.payload(), "contract 7 revoked");
    let more = listener.next_buffered();
    assert!(more.is_none(), "an unexpected notification: {more:?}");
}

#[tokio::test]
async fn a_dropped_server_stops_and_removes_its_directory() {
    let server = PgServer::start().await;
    let url = server.database("dropped").await;
    let dir = server.dir().to_owned();
    let conn = within("connect", PgConnection::connect(&url)).await;
    conn.expect("the running server accepts connections")
        .close()
        .await
        .expect("close");
    assert!(dir.join("data").is_dir());

    // The same path a test binary's exit takes for the shared server: EOF at the wrapper.
    drop(server);
    assert!(!dir.exists(), "{} is left behind", dir.display());
    let after = within("connect after drop", PgConnection::connect(&url)).await;
    assert!(after.is_err(), "the server still accepts connections");
}

#[tokio::test]
async fn sqlite_and_postgres_answer_the_same_sql_through_any() {
    sqlx::any::install_default_drivers();
    let sqlite = sqlite_url();
    assert!(sqlite.url.starts_with("sqlite://") && sqlite.url.ends_with("?mode=rwc"));
    let postgres = PgServer::shared().await.fresh_database().await;
    for url in [sqlite.url.as_str(), postgres.as_str()] {
        let pool = within("connect", AnyPool::connect(url))
            .await
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        sqlx::raw_sql("CREATE TABLE tiers (name TEXT PRIMARY KEY, rate BIGINT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{url}: create table: {e}"));
        sqlx::query("INSERT INTO tiers (name, rate) VALUES ($1, $2)")
            .bind("gold")
            .bind(100_i64)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{url}: insert: {e}"));
        let rate: i64 = sqlx::query_scalar("SELECT rate FROM tiers WHERE name = $1")
            .bind("gold")
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{url}: select: {e}"));
        assert_eq!(rate, 100, "{url}");
        pool.close().await;
    }
    let file = sqlite.url["sqlite://".len()..]
        .trim_end_matches("?mode=rwc")
        .to_owned();
    assert!(std::path::Path::new(&file).is_file(), "{file}");
    drop(sqlite);
    assert!(
        !std::path::Path::new(&file).exists(),
        "{file} is left behind"
    );
}

/// Runs twice: as the test, which runs this test binary again with `TOLLGATE_PG_EXIT_CHILD` set;
/// and as that child, which starts the shared server, prints where it is and returns, so its
/// binary exits with the server in a `static` that is never dropped.
#[tokio::test]
async fn the_shared_server_stops_when_the_test_binary_exits() {
    if std::env::var_os("TOLLGATE_PG_EXIT_CHILD").is_some() {
        let server = PgServer::shared().await;
        println!(
            "server {} {}",
            server.url("postgres"),
            server.dir().display()
        );
        return;
    }
    let output = tokio::process::Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--exact", "--nocapture"])
        .arg("postgres_harness::the_shared_server_stops_when_the_test_binary_exits")
        .env("TOLLGATE_PG_EXIT_CHILD", "1")
        .kill_on_drop(true)
        .output();
    let output = within("the child test binary", output)
        .await
        .expect("running the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let (url, dir) = stdout
        .lines()
        .find_map(|line| line.strip_prefix("server ")?.split_once(' '))
        .unwrap_or_else(|| panic!("the child printed no server line: {stdout}"));
    let (url, dir) = (url.to_owned(), std::path::PathBuf::from(dir));

    // The binary has exited; the server's wrapper sees EOF, stops postgres and removes its directory.
    crate::common::eventually(WAIT, "the orphaned server to stop and clean up", || async {
        !dir.exists() && PgConnection::connect(&url).await.is_err()
    })
    .await;
}
