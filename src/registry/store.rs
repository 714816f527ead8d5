//! The registry's store: one schema, written once in SQL both SQLite and PostgreSQL speak, behind
//! sqlx's `Any` pool. Every change runs in one transaction that first bumps the store's revision
//! (taking the write lock before anything is read, which SQLite needs to never fail an upgrade)
//! and records an audit entry under that revision; gateways poll the revision to know when to
//! rebuild their contract index.

use std::sync::Once;

use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};

use super::model::{App, AppStatus, AuditEntry, Contract, ContractStatus, Limit, Tier, TierStatus};
use super::{ApprovedContract, RegistryError};
use crate::config::StoreUrl;

/// One version of the schema: statements both databases speak, or one list each where they part.
enum Migration {
    Both(&'static [&'static str]),
    Apart {
        sqlite: &'static [&'static str],
        postgres: &'static [&'static str],
    },
}

/// The schema, version by version. The first runs at every open, each statement idempotent (it
/// creates the version table itself); the later ones run in one transaction that first takes the
/// version row's lock and reads the version again, so two processes migrating at once take turns
/// and the second finds nothing left to do, and a failed upgrade leaves the store as it was.
const MIGRATIONS: &[Migration] = &[
    Migration::Both(&[
        "CREATE TABLE IF NOT EXISTS tollgate_schema (id BIGINT PRIMARY KEY, version BIGINT NOT NULL)",
        "INSERT INTO tollgate_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        "CREATE TABLE IF NOT EXISTS registry_state (id BIGINT PRIMARY KEY, revision BIGINT NOT NULL)",
        "INSERT INTO registry_state (id, revision) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        "CREATE TABLE IF NOT EXISTS apps (
        name TEXT PRIMARY KEY,
        client_id TEXT NOT NULL UNIQUE,
        grant_type TEXT NOT NULL,
        redirect_uris TEXT NOT NULL,
        description TEXT NOT NULL,
        status TEXT NOT NULL,
        origin TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS tiers (
        api TEXT NOT NULL,
        name TEXT NOT NULL,
        limits TEXT NOT NULL,
        auto_approve BIGINT NOT NULL,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (api, name))",
        "CREATE TABLE IF NOT EXISTS contracts (
        app TEXT NOT NULL REFERENCES apps (name),
        api TEXT NOT NULL,
        tier TEXT,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (app, api))",
        "CREATE TABLE IF NOT EXISTS audit (
        revision BIGINT PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        before_json TEXT,
        after_json TEXT)",
    ]),
    Migration::Both(&[
        // Provider operations: recorded before a call is sent, finished before its outcome is acted
        // on (issue 11's outbox).
        "CREATE TABLE IF NOT EXISTS operations (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        app TEXT NOT NULL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL)",
    ]),
    Migration::Both(&[
        // The salt of the key that seals provider credentials, and the sealed RFC 7592
        // credentials of the clients tollgate created.
        "CREATE TABLE IF NOT EXISTS registry_keys (id BIGINT PRIMARY KEY, salt TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS app_registrations (
        app TEXT PRIMARY KEY REFERENCES apps (name),
        client_uri TEXT NOT NULL,
        sealed_token TEXT NOT NULL)",
    ]),
    Migration::Both(&[
        // The admin API's Idempotency-Key answers: claimed (status 0) before the operation runs,
        // so a repeat never runs it twice, on this gateway or another sharing the store.
        "CREATE TABLE IF NOT EXISTS idempotency (
        key TEXT PRIMARY KEY,
        request_digest TEXT NOT NULL,
        status BIGINT NOT NULL,
        body TEXT NOT NULL,
        created_at BIGINT NOT NULL)",
    ]),
    Migration::Both(&[
        // Each application's provider (several [[provider]]s). A table of its own rather than a
        // column: both statements are idempotent, as `ALTER TABLE ... ADD COLUMN` is not in
        // SQLite. Applications from before were registered at the one provider, `default`.
        "CREATE TABLE IF NOT EXISTS app_providers (
        app TEXT PRIMARY KEY REFERENCES apps (name),
        provider TEXT NOT NULL)",
        // `WHERE true`: without it SQLite reads `ON CONFLICT` as part of the SELECT's join.
        "INSERT INTO app_providers (app, provider) SELECT name, 'default' FROM apps WHERE true \
         ON CONFLICT (app) DO NOTHING",
    ]),
    Migration::Apart {
        sqlite: V6_SQLITE,
        postgres: V6_POSTGRES,
    },
];

/// Version 6: a client id is unique per provider, not across them (two IdPs may issue the same
/// id), and the provider moves into `apps` so one constraint can say so. SQLite cannot drop a
/// column's constraint: the table is rebuilt (with foreign key checks off for the swap, checked
/// before commit), keeping every row; the other tables reference it by name, which stays.
const V6_SQLITE: &[&str] = &[
    "DROP TABLE IF EXISTS apps_v6",
    "CREATE TABLE apps_v6 (
    name TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    client_id TEXT NOT NULL,
    grant_type TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    origin TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (provider, client_id))",
    "INSERT INTO apps_v6 (rowid, name, provider, client_id, grant_type, redirect_uris, \
     description, status, origin, created_at, updated_at) \
     SELECT a.rowid, a.name, COALESCE(p.provider, 'default'), a.client_id, a.grant_type, \
     a.redirect_uris, a.description, a.status, a.origin, a.created_at, a.updated_at \
     FROM apps a LEFT JOIN app_providers p ON p.app = a.name",
    "DROP TABLE app_providers",
    "DROP TABLE apps",
    "ALTER TABLE apps_v6 RENAME TO apps",
];

/// Version 6 on PostgreSQL: the column, the old constraint (named by PostgreSQL's rule for the
/// `UNIQUE` of version 1) dropped and the composite one added.
const V6_POSTGRES: &[&str] = &[
    "ALTER TABLE apps ADD COLUMN IF NOT EXISTS provider TEXT NOT NULL DEFAULT 'default'",
    "UPDATE apps SET provider = p.provider FROM app_providers p WHERE p.app = apps.name",
    "ALTER TABLE apps ALTER COLUMN provider DROP DEFAULT",
    "ALTER TABLE apps DROP CONSTRAINT IF EXISTS apps_client_id_key",
    "ALTER TABLE apps DROP CONSTRAINT IF EXISTS apps_provider_client_id_key",
    "ALTER TABLE apps ADD CONSTRAINT apps_provider_client_id_key UNIQUE (provider, client_id)",
    "DROP TABLE app_providers",
];

/// What an Idempotency-Key already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was free and is now this request's: run the operation, then `finish_idempotent`.
    Claimed,
    /// The same request finished before: its answer.
    Replay { status: u16, body: String },
    /// The same request is still running (or its gateway stopped mid-way).
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

/// An open store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Shown in errors (without a password).
    shown: String,
    /// PostgreSQL: the URL, to listen on; each change also notifies [`CHANGES`].
    postgres: Option<crate::config::Secret>,
}

/// The PostgreSQL channel a committed change is announced on (LISTEN/NOTIFY); the payload is its
/// revision. A notification is a hint: gateways also poll, since one sent while a listener was
/// disconnected is lost.
pub const CHANGES: &str = "tollgate_registry";

/// One change under way: its transaction and the revision it will commit as.
pub struct Change {
    tx: Transaction<'static, Any>,
    pub revision: i64,
    notify: bool,
}

impl Store {
    /// Opens (creating an SQLite file if need be) and migrates the store.
    pub async fn open(url: &StoreUrl) -> Result<Store, RegistryError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let shown = url.to_string();
        let unusable = |reason: String| RegistryError::Store {
            store: shown.clone(),
            reason,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        // Writers from other processes (the CLI) wait rather than fail; readers
                        // never block the writer.
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url.connect_url())
            .await
            .map_err(|e| unusable(format!("cannot be opened: {e}")))?;
        let store = Store {
            pool,
            shown: shown.clone(),
            postgres: match url {
                StoreUrl::Postgres(secret) => Some(secret.clone()),
                StoreUrl::Sqlite(_) => None,
            },
        };
        store.migrate().await.map_err(|e| match e {
            RegistryError::Query(reason) => unusable(format!("cannot be migrated: {reason}")),
            other => other,
        })?;
        Ok(store)
    }

    fn statements(&self, migration: &Migration) -> &'static [&'static str] {
        match (migration, self.postgres.is_some()) {
            (Migration::Both(statements), _) => statements,
            (Migration::Apart { sqlite, .. }, false) => sqlite,
            (Migration::Apart { postgres, .. }, true) => postgres,
        }
    }

    async fn migrate(&self) -> Result<(), RegistryError> {
        let known = MIGRATIONS.len() as i64;
        for statement in MIGRATIONS
            .first()
            .map(|m| self.statements(m))
            .unwrap_or_default()
        {
            sqlx::query(statement)
                .execute(&self.pool)
                .await
                .map_err(query)?;
        }
        let version: i64 = sqlx::query("SELECT version FROM tollgate_schema WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(query)?
            .try_get("version")
            .map_err(query)?;
        if version > known {
            return Err(RegistryError::Store {
                store: self.shown.clone(),
                reason: format!(
                    "its schema is version {version}, newer than this tollgate knows ({known}): upgrade tollgate"
                ),
            });
        }
        if version == known {
            return Ok(());
        }
        // One connection: SQLite's foreign key switch is per connection, and is off only while
        // a rebuild swaps a table (it cannot change inside a transaction).
        let mut conn = self.pool.acquire().await.map_err(query)?;
        let sqlite = self.postgres.is_none();
        if sqlite {
            pragma(&mut conn, "PRAGMA foreign_keys = OFF").await?;
        }
        let upgraded = self.upgrade(&mut conn, known).await;
        let restored = match sqlite {
            true => pragma(&mut conn, "PRAGMA foreign_keys = ON").await,
            false => Ok(()),
        };
        if upgraded.is_err() || restored.is_err() {
            // Never hand the pool a connection that may not check foreign keys.
            let _ = conn.close().await;
        }
        upgraded.and(restored)
    }

    /// Runs the versions after the first that the store lacks, in one transaction.
    async fn upgrade(
        &self,
        conn: &mut sqlx::AnyConnection,
        known: i64,
    ) -> Result<(), RegistryError> {
        use sqlx::Connection;
        let mut tx = conn.begin().await.map_err(query)?;
        // The lock first: a second migrator waits here and then reads the first one's version.
        let version = locking_read(
            &mut tx,
            "UPDATE tollgate_schema SET version = version WHERE id = 1 RETURNING version",
        )
        .await?;
        // The first version ran already (it creates the version table itself).
        for migration in MIGRATIONS.iter().skip(version.max(1) as usize) {
            for statement in self.statements(migration) {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(query)?;
            }
        }
        if self.postgres.is_none() {
            let broken = sqlx::query("PRAGMA foreign_key_check")
                .fetch_all(&mut *tx)
                .await
                .map_err(query)?;
            if !broken.is_empty() {
                return Err(RegistryError::Query(format!(
                    "the upgrade would leave {} row(s) referring to nothing: nothing was changed",
                    broken.len()
                )));
            }
        }
        sqlx::query("UPDATE tollgate_schema SET version = $1 WHERE id = 1 AND version < $1")
            .bind(known)
            .execute(&mut *tx)
            .await
            .map_err(query)?;
        tx.commit().await.map_err(query)
    }

    /// The store's revision: it changes with every change.
    pub async fn revision(&self) -> Result<i64, RegistryError> {
        sqlx::query("SELECT revision FROM registry_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get("revision"))
            .map_err(query)
    }

    /// Starts a change: the write lock and the next revision first.
    pub async fn begin(&self) -> Result<Change, RegistryError> {
        let mut tx = self.pool.begin().await.map_err(query)?;
        let revision = locking_read(
            &mut tx,
            "UPDATE registry_state SET revision = revision + 1 WHERE id = 1 RETURNING revision",
        )
        .await?;
        Ok(Change {
            tx,
            revision,
            notify: self.postgres.is_some(),
        })
    }

    /// The PostgreSQL URL to listen for changes on, if the store is PostgreSQL.
    pub fn listen_url(&self) -> Option<&str> {
        self.postgres.as_ref().map(crate::config::Secret::expose)
    }

    // --- reads ----------------------------------------------------------------------------------

    pub async fn apps(&self) -> Result<Vec<App>, RegistryError> {
        let rows = sqlx::query(&format!("{APP_COLUMNS} ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .map_err(query)?;
        rows.iter().map(app).collect()
    }

    /// How many applications each provider named in the store has.
    pub async fn apps_per_provider(&self) -> Result<Vec<(String, i64)>, RegistryError> {
        let rows = sqlx::query(
            "SELECT provider, COUNT(*) AS n FROM apps GROUP BY provider ORDER BY provider",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query)?;
        rows.iter()
            .map(|r| Ok((r.try_get("provider")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query)
    }

    pub async fn app(&self, name: &str) -> Result<Option<App>, RegistryError> {
        let row = sqlx::query(&format!("{APP_COLUMNS} WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(query)?;
        row.as_ref().map(app).transpose()
    }

    pub async fn contracts(&self) -> Result<Vec<Contract>, RegistryError> {
        let rows = sqlx::query(&format!("{CONTRACT_COLUMNS} ORDER BY api, app"))
            .fetch_all(&self.pool)
            .await
            .map_err(query)?;
        rows.iter().map(contract).collect()
    }

    pub async fn tiers(&self) -> Result<Vec<Tier>, RegistryError> {
        let rows = sqlx::query(&format!("{TIER_COLUMNS} ORDER BY api, name"))
            .fetch_all(&self.pool)
            .await
            .map_err(query)?;
        rows.iter().map(tier).collect()
    }

    /// The store's sealing salt, made on first use (the first writer's wins).
    pub async fn salt(&self) -> Result<String, RegistryError> {
        sqlx::query(
            "INSERT INTO registry_keys (id, salt) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(super::seal::Sealer::new_salt()?)
        .execute(&self.pool)
        .await
        .map_err(query)?;
        sqlx::query("SELECT salt FROM registry_keys WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get("salt"))
            .map_err(query)
    }

    /// A created client's kept management credential: its URI and the sealed token.
    pub async fn registration(&self, app: &str) -> Result<Option<(String, String)>, RegistryError> {
        let row =
            sqlx::query("SELECT client_uri, sealed_token FROM app_registrations WHERE app = $1")
                .bind(app)
                .fetch_optional(&self.pool)
                .await
                .map_err(query)?;
        row.map(|r| Ok((r.try_get("client_uri")?, r.try_get("sealed_token")?)))
            .transpose()
            .map_err(query)
    }

    /// Marks an operation finished (`done` or `failed`), with what happened.
    pub async fn finish_operation(
        &self,
        id: &str,
        state: &str,
        detail: &str,
        at: i64,
    ) -> Result<(), RegistryError> {
        sqlx::query("UPDATE operations SET state = $1, detail = $2, updated_at = $3 WHERE id = $4")
            .bind(state)
            .bind(detail)
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(query)?;
        Ok(())
    }

    /// Operations, newest first.
    pub async fn operations(
        &self,
    ) -> Result<Vec<(String, String, String, String, String)>, RegistryError> {
        let rows = sqlx::query(
            "SELECT id, kind, app, state, detail FROM operations ORDER BY created_at DESC, id DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("kind")?,
                    r.try_get("app")?,
                    r.try_get("state")?,
                    r.try_get("detail")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query)
    }

    /// Audit entries at or after `since` (Unix seconds), oldest first.
    pub async fn audit(&self, since: i64) -> Result<Vec<AuditEntry>, RegistryError> {
        let rows = sqlx::query(
            "SELECT revision, at, actor, action, subject, before_json, after_json FROM audit \
             WHERE at >= $1 ORDER BY revision",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(query)?;
        rows.iter().map(audit_entry).collect()
    }

    /// Claims `key` for a request (`digest`), unless it holds an answer younger than `ttl_secs`;
    /// older keys are forgotten first.
    pub async fn claim_idempotent(
        &self,
        key: &str,
        digest: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Result<Claim, RegistryError> {
        sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
            .bind(now.saturating_sub(ttl_secs))
            .execute(&self.pool)
            .await
            .map_err(query)?;
        // One statement decides who owns the key, so two gateways racing cannot both run it.
        let inserted = sqlx::query(
            "INSERT INTO idempotency (key, request_digest, status, body, created_at) \
             VALUES ($1, $2, 0, '', $3) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(digest)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(query)?
        .rows_affected();
        if inserted == 1 {
            return Ok(Claim::Claimed);
        }
        let row =
            sqlx::query("SELECT request_digest, status, body FROM idempotency WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(query)?;
        let Some(row) = row else {
            // Expired between the two statements: the caller may simply try again.
            return Ok(Claim::InProgress);
        };
        let stored: String = row.try_get("request_digest").map_err(query)?;
        let status: i64 = row.try_get("status").map_err(query)?;
        Ok(match (stored == digest, u16::try_from(status)) {
            (false, _) => Claim::Mismatch,
            (true, Ok(0) | Err(_)) => Claim::InProgress,
            (true, Ok(status)) => Claim::Replay {
                status,
                body: row.try_get("body").map_err(query)?,
            },
        })
    }

    /// Records the answer of the request that claimed `key`.
    pub async fn finish_idempotent(
        &self,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), RegistryError> {
        sqlx::query("UPDATE idempotency SET status = $1, body = $2 WHERE key = $3")
            .bind(i64::from(status))
            .bind(body)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(query)?;
        Ok(())
    }

    /// What the contract index is built from: approved contracts of active applications, as
    /// `(api, client_id, app, tier)`, and the revision they were read at (one transaction).
    pub async fn approved(&self) -> Result<(i64, Vec<ApprovedContract>), RegistryError> {
        let mut tx = self.pool.begin().await.map_err(query)?;
        let revision: i64 = sqlx::query("SELECT revision FROM registry_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get("revision"))
            .map_err(query)?;
        let rows = sqlx::query(
            "SELECT c.api, a.client_id, a.name, a.provider, \
             c.tier, t.limits FROM contracts c \
             JOIN apps a ON a.name = c.app \
             LEFT JOIN tiers t ON t.api = c.api AND t.name = c.tier \
             WHERE c.status = 'approved' AND a.status = 'active'",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(query)?;
        tx.commit().await.map_err(query)?;
        let rows = rows.iter().map(approved_row).collect::<Result<_, _>>()?;
        Ok((revision, rows))
    }
}

const APP_COLUMNS: &str = "SELECT name, provider, client_id, grant_type, redirect_uris, description, \
                           status, origin, created_at, updated_at FROM apps";
const CONTRACT_COLUMNS: &str =
    "SELECT app, api, tier, status, created_at, updated_at FROM contracts";
const TIER_COLUMNS: &str = "SELECT api, name, limits, auto_approve, status, created_at FROM tiers";

impl Change {
    pub async fn app(&mut self, name: &str) -> Result<Option<App>, RegistryError> {
        let row = sqlx::query(&format!("{APP_COLUMNS} WHERE name = $1"))
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(query)?;
        row.as_ref().map(app).transpose()
    }

    /// The application of `provider`'s client `client_id`: the pair is unique, the id alone not.
    pub async fn app_by_client_id(
        &mut self,
        provider: &str,
        client_id: &str,
    ) -> Result<Option<App>, RegistryError> {
        let row = sqlx::query(&format!(
            "{APP_COLUMNS} WHERE provider = $1 AND client_id = $2"
        ))
        .bind(provider)
        .bind(client_id)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(query)?;
        row.as_ref().map(app).transpose()
    }

    pub async fn insert_app(&mut self, a: &App) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO apps (name, provider, client_id, grant_type, redirect_uris, description, \
             status, origin, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&a.name)
        .bind(&a.provider)
        .bind(&a.client_id)
        .bind(&a.grant)
        .bind(serde_json::to_string(&a.redirect_uris).unwrap_or_default())
        .bind(&a.description)
        .bind(app_status(a.status))
        .bind(&a.origin)
        .bind(a.created_at)
        .bind(a.updated_at)
        .execute(&mut *self.tx)
        .await
        .map_err(query)?;
        Ok(())
    }

    pub async fn set_app_status(
        &mut self,
        name: &str,
        status: AppStatus,
        at: i64,
    ) -> Result<(), RegistryError> {
        sqlx::query("UPDATE apps SET status = $1, updated_at = $2 WHERE name = $3")
            .bind(app_status(status))
            .bind(at)
            .bind(name)
            .execute(&mut *self.tx)
            .await
            .map_err(query)?;
        Ok(())
    }

    /// Writes an application's editable fields.
    pub async fn update_app(&mut self, a: &App) -> Result<(), RegistryError> {
        sqlx::query(
            "UPDATE apps SET redirect_uris = $1, description = $2, updated_at = $3 WHERE name = $4",
        )
        .bind(serde_json::to_string(&a.redirect_uris).unwrap_or_default())
        .bind(&a.description)
        .bind(a.updated_at)
        .bind(&a.name)
        .execute(&mut *self.tx)
        .await
        .map_err(query)?;
        Ok(())
    }

    /// Keeps a created client's RFC 7592 management credential (sealed) for its application.
    pub async fn put_registration(
        &mut self,
        app: &str,
        client_uri: &str,
        sealed_token: &str,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO app_registrations (app, client_uri, sealed_token) VALUES ($1, $2, $3) \
             ON CONFLICT (app) DO UPDATE SET client_uri = excluded.client_uri, \
             sealed_token = excluded.sealed_token",
        )
        .bind(app)
        .bind(client_uri)
        .bind(sealed_token)
        .execute(&mut *self.tx)
        .await
        .map_err(query)?;
        Ok(())
    }

    pub async fn delete_app(&mut self, name: &str) -> Result<(), RegistryError> {
        for statement in [
            "DELETE FROM contracts WHERE app = $1",
            "DELETE FROM app_registrations WHERE app = $1",
            "DELETE FROM apps WHERE name = $1",
        ] {
            sqlx::query(statement)
                .bind(name)
                .execute(&mut *self.tx)
                .await
                .map_err(query)?;
        }
        Ok(())
    }

    pub async fn contract(
        &mut self,
        app: &str,
        api: &str,
    ) -> Result<Option<Contract>, RegistryError> {
        let row = sqlx::query(&format!("{CONTRACT_COLUMNS} WHERE app = $1 AND api = $2"))
            .bind(app)
            .bind(api)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(query)?;
        row.as_ref().map(contract).transpose()
    }

    pub async fn contracts_of(&mut self, app: &str) -> Result<Vec<Contract>, RegistryError> {
        let rows = sqlx::query(&format!("{CONTRACT_COLUMNS} WHERE app = $1 ORDER BY api"))
            .bind(app)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(query)?;
        rows.iter().map(contract).collect()
    }

    /// Inserts or replaces the contract of `c.app` with `c.api`.
    pub async fn put_contract(&mut self, c: &Contract) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO contracts (app, api, tier, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app, api) DO UPDATE SET \
             tier = excluded.tier, status = excluded.status, updated_at = excluded.updated_at",
        )
        .bind(&c.app)
        .bind(&c.api)
        .bind(c.tier.clone())
        .bind(c.status.as_str())
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&mut *self.tx)
        .await
        .map_err(query)?;
        Ok(())
    }

    pub async fn delete_contract(&mut self, app: &str, api: &str) -> Result<(), RegistryError> {
        sqlx::query("DELETE FROM contracts WHERE app = $1 AND api = $2")
            .bind(app)
            .bind(api)
            .execute(&mut *self.tx)
            .await
            .map_err(query)?;
        Ok(())
    }

    pub async fn tier(&mut self, api: &str, name: &str) -> Result<Option<Tier>, RegistryError> {
        let row = sqlx::query(&format!("{TIER_COLUMNS} WHERE api = $1 AND name = $2"))
            .bind(api)
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(query)?;
        row.as_ref().map(tier).transpose()
    }

    /// How many tiers `api` has, and how many contracts use tier `name` of it.
    pub async fn tier_counts(
        &mut self,
        api: &str,
        name: &str,
    ) -> Result<(i64, i64), RegistryError> {
        let tiers: i64 = sqlx::query("SELECT COUNT(*) AS n FROM tiers WHERE api = $1")
            .bind(api)
            .fetch_one(&mut *self.tx)
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(query)?;
        let using: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM contracts WHERE api = $1 AND tier = $2")
                .bind(api)
                .bind(name)
                .fetch_one(&mut *self.tx)
                .await
                .and_then(|r| r.try_get("n"))
                .map_err(query)?;
        Ok((tiers, using))
    }

    pub async fn put_tier(&mut self, t: &Tier) -> Result<(), RegistryError> {
        let limits: Vec<String> = t.limits.iter().map(ToString::to_string).collect();
        sqlx::query(
            "INSERT INTO tiers (api, name, limits, auto_approve, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (api, name) DO UPDATE SET \
             limits = excluded.limits, auto_approve = excluded.auto_approve, status = excluded.status",
        )
        .bind(&t.api)
        .bind(&t.name)
        .bind(serde_json::to_string(&limits).unwrap_or_default())
        .bind(i64::from(t.auto_approve))
        .bind(tier_status(t.status))
        .bind(t.created_at)
        .execute(&mut *self.tx)
        .await
        .map_err(query)?;
        Ok(())
    }

    pub async fn put_operation(
        &mut self,
        id: &str,
        kind: &str,
        app: &str,
        state: &str,
        detail: &str,
        at: i64,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO operations (id, kind, app, state, detail, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(id)
        .bind(kind)
        .bind(app)
        .bind(state)
        .bind(detail)
        .bind(at)
        .execute(&mut *self.tx)
        .await
        .map_err(query)?;
        Ok(())
    }

    pub async fn delete_tier(&mut self, api: &str, name: &str) -> Result<(), RegistryError> {
        sqlx::query("DELETE FROM tiers WHERE api = $1 AND name = $2")
            .bind(api)
            .bind(name)
            .execute(&mut *self.tx)
            .await
            .map_err(query)?;
        Ok(())
    }

    /// Records the change and commits it.
    pub async fn commit(mut self, entry: &AuditEntry) -> Result<i64, RegistryError> {
        let json = |v: &Option<Value>| v.as_ref().map(Value::to_string);
        sqlx::query(
            "INSERT INTO audit (revision, at, actor, action, subject, before_json, after_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(self.revision)
        .bind(entry.at)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.subject)
        .bind(json(&entry.before))
        .bind(json(&entry.after))
        .execute(&mut *self.tx)
        .await
        .map_err(query)?;
        if self.notify {
            // Delivered at commit, and only if the change commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGES)
                .bind(self.revision.to_string())
                .execute(&mut *self.tx)
                .await
                .map_err(query)?;
        }
        self.tx.commit().await.map_err(query)?;
        Ok(self.revision)
    }
}

/// The one number an `UPDATE ... RETURNING` gives: a write first, so the transaction holds the
/// write lock (SQLite) or the row's lock (PostgreSQL) before it reads anything.
async fn locking_read(
    tx: &mut Transaction<'_, Any>,
    statement: &str,
) -> Result<i64, RegistryError> {
    let row = sqlx::query(statement)
        .fetch_one(&mut **tx)
        .await
        .map_err(query)?;
    row.try_get(0).map_err(query)
}

async fn pragma(conn: &mut sqlx::AnyConnection, statement: &str) -> Result<(), RegistryError> {
    sqlx::query(statement)
        .execute(conn)
        .await
        .map(drop)
        .map_err(query)
}

fn query(e: sqlx::Error) -> RegistryError {
    RegistryError::Query(e.to_string())
}

fn app_status(s: AppStatus) -> &'static str {
    match s {
        AppStatus::Active => "active",
        AppStatus::Disabled => "disabled",
    }
}

fn tier_status(s: TierStatus) -> &'static str {
    match s {
        TierStatus::Active => "active",
        TierStatus::Deprecated => "deprecated",
    }
}

/// A stored value this tollgate does not understand: the store was edited by hand or by another
/// version.
fn corrupt(what: &str, value: &str) -> RegistryError {
    RegistryError::Query(format!("the store holds an unknown {what} {value:?}"))
}

fn app(r: &AnyRow) -> Result<App, RegistryError> {
    let status: String = r.try_get("status").map_err(query)?;
    let uris: String = r.try_get("redirect_uris").map_err(query)?;
    Ok(App {
        name: r.try_get("name").map_err(query)?,
        provider: r.try_get("provider").map_err(query)?,
        client_id: r.try_get("client_id").map_err(query)?,
        grant: r.try_get("grant_type").map_err(query)?,
        redirect_uris: serde_json::from_str(&uris).map_err(|_| corrupt("redirect_uris", &uris))?,
        description: r.try_get("description").map_err(query)?,
        status: match status.as_str() {
            "active" => AppStatus::Active,
            "disabled" => AppStatus::Disabled,
            other => return Err(corrupt("application status", other)),
        },
        origin: r.try_get("origin").map_err(query)?,
        created_at: r.try_get("created_at").map_err(query)?,
        updated_at: r.try_get("updated_at").map_err(query)?,
    })
}

fn contract(r: &AnyRow) -> Result<Contract, RegistryError> {
    let status: String = r.try_get("status").map_err(query)?;
    Ok(Contract {
        app: r.try_get("app").map_err(query)?,
        api: r.try_get("api").map_err(query)?,
        tier: r.try_get("tier").map_err(query)?,
        status: ContractStatus::parse(&status)
            .ok_or_else(|| corrupt("contract status", &status))?,
        created_at: r.try_get("created_at").map_err(query)?,
        updated_at: r.try_get("updated_at").map_err(query)?,
    })
}

fn tier(r: &AnyRow) -> Result<Tier, RegistryError> {
    let status: String = r.try_get("status").map_err(query)?;
    let limits: String = r.try_get("limits").map_err(query)?;
    let auto: i64 = r.try_get("auto_approve").map_err(query)?;
    Ok(Tier {
        api: r.try_get("api").map_err(query)?,
        name: r.try_get("name").map_err(query)?,
        limits: parse_limits(&limits)?,
        auto_approve: auto != 0,
        status: match status.as_str() {
            "active" => TierStatus::Active,
            "deprecated" => TierStatus::Deprecated,
            other => return Err(corrupt("tier status", other)),
        },
        created_at: r.try_get("created_at").map_err(query)?,
    })
}

fn approved_row(r: &AnyRow) -> Result<ApprovedContract, RegistryError> {
    let limits: Option<String> = r.try_get("limits").map_err(query)?;
    Ok(ApprovedContract {
        api: r.try_get("api").map_err(query)?,
        client_id: r.try_get("client_id").map_err(query)?,
        provider: r.try_get("provider").map_err(query)?,
        app: r.try_get("name").map_err(query)?,
        tier: r.try_get("tier").map_err(query)?,
        limits: match limits {
            Some(text) => parse_limits(&text)?,
            None => Vec::new(),
        },
    })
}

fn parse_limits(text: &str) -> Result<Vec<Limit>, RegistryError> {
    let texts: Vec<String> =
        serde_json::from_str(text).map_err(|_| corrupt("tier limits", text))?;
    texts.iter().map(|t| t.parse::<Limit>()).collect()
}

fn audit_entry(r: &AnyRow) -> Result<AuditEntry, RegistryError> {
    let json = |name: &str| -> Result<Option<Value>, RegistryError> {
        let text: Option<String> = r.try_get(name).map_err(query)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    };
    Ok(AuditEntry {
        revision: r.try_get("revision").map_err(query)?,
        at: r.try_get("at").map_err(query)?,
        actor: r.try_get("actor").map_err(query)?,
        action: r.try_get("action").map_err(query)?,
        subject: r.try_get("subject").map_err(query)?,
        before: json("before_json")?,
        after: json("after_json")?,
    })
}
