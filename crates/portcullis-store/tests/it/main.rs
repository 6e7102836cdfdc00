//! Store contract tests: what every backend must guarantee. Each contract test runs on a fresh
//! SQLite file always, and on a fresh PostgreSQL database when `PORTCULLIS_TEST_POSTGRES_URL`
//! names a server and a role that may create databases and roles (for example
//! `postgres://postgres@127.0.0.1:5432/postgres`). Each PostgreSQL test gets its own database,
//! migrated as that role, and opens the store as `portcullis_app` on it (no password: local
//! trust authentication); the database is dropped when the test ends.

use portcullis_core::action::Action;
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::effect::EffectClass;
use portcullis_core::id::*;
use portcullis_core::keys::KeyRing;
use portcullis_core::receipt::{ReceiptBody, SignedReceipt};
use portcullis_store::*;
use serde_json::json;
use sqlx::{ConnectOptions, Connection as _, PgConnection};

/// One `mod` per contract test with a `sqlite` and a `postgres` test calling the same body
/// (`async fn name(f: &Fixture)`); the `postgres` one does nothing without a server.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let fixture = crate::Fixture::sqlite().await;
                super::$name(&fixture).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(fixture) = crate::Fixture::postgres().await {
                    super::$name(&fixture).await;
                }
            }
        }
    )*};
}

mod contract;
mod hardening;
mod policy;
mod postgres;

pub const NOW: i64 = 1_800_000_000_000;
const POSTGRES_URL_VAR: &str = "PORTCULLIS_TEST_POSTGRES_URL";

pub struct Fixture {
    // Declared first so the store's connections go before its database does.
    pub store: Store,
    pub database: Database,
}

pub enum Database {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres(PgDatabase),
}

pub fn options() -> StoreOptions {
    StoreOptions {
        max_connections: 8,
        ..StoreOptions::default()
    }
}

impl Fixture {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, &options()).await.unwrap();
        Self {
            store,
            database: Database::Sqlite { _dir: dir, url },
        }
    }

    /// A migrated database of its own, the store opened on it as `portcullis_app`; `None`
    /// when no PostgreSQL server is configured.
    pub async fn postgres() -> Option<Self> {
        let database = PgDatabase::create().await?;
        migrate(&database.owner_url()).await.unwrap();
        let store = Store::open(&database.app_url(), &options()).await.unwrap();
        Some(Self {
            store,
            database: Database::Postgres(database),
        })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.database, Database::Postgres(_))
    }

    /// Run one statement behind the store's back, as the schema owner (on PostgreSQL the
    /// admin role of the test URL); the error text if the database refuses it.
    pub async fn exec_as_owner(&self, sql: &str) -> Result<u64, String> {
        let done = match &self.database {
            Database::Sqlite { url, .. } => {
                let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(url.trim_start_matches("sqlite://"))
                    .connect()
                    .await
                    .unwrap();
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .map(|r| r.rows_affected())
            }
            Database::Postgres(database) => {
                let mut conn = database.owner().await;
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .map(|r| r.rows_affected())
            }
        };
        done.map_err(|e| e.to_string())
    }
}

/// A fresh PostgreSQL database, dropped (with its connections) when this value is.
pub struct PgDatabase {
    server_url: String,
    pub name: String,
}

impl PgDatabase {
    /// `None`, with a note, when `PORTCULLIS_TEST_POSTGRES_URL` is not set.
    pub async fn create() -> Option<Self> {
        let Some(server_url) = std::env::var(POSTGRES_URL_VAR)
            .ok()
            .filter(|url| !url.is_empty())
        else {
            // `.ci/run` sets this: there, a missing server fails instead of skipping.
            assert!(
                std::env::var_os("PORTCULLIS_TEST_REQUIRE_POSTGRES").is_none(),
                "PORTCULLIS_TEST_REQUIRE_POSTGRES is set but {POSTGRES_URL_VAR} is not"
            );
            eprintln!("{POSTGRES_URL_VAR} is not set: no PostgreSQL run");
            return None;
        };
        let name = format!("pc_test_{}", &TenantId::generate().as_str()[4..]);
        let mut conn = PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}: {e}"));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        Some(Self { server_url, name })
    }

    /// The test URL's (owner) role on this database.
    pub fn owner_url(&self) -> String {
        with_database(&self.server_url, &self.name, None)
    }

    /// `portcullis_app` on this database.
    pub fn app_url(&self) -> String {
        with_database(&self.server_url, &self.name, Some("portcullis_app"))
    }

    pub async fn owner(&self) -> PgConnection {
        PgConnection::connect(&self.owner_url()).await.unwrap()
    }

    pub async fn app(&self) -> PgConnection {
        PgConnection::connect(&self.app_url()).await.unwrap()
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop is synchronous and may run inside the test's runtime (or while a failed test
        // unwinds), so the cleanup gets a thread and a runtime of its own. Best effort.
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&server_url).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        });
        let _ = cleanup.join();
    }
}

/// `url` pointed at another database and, optionally, another user (without a password).
fn with_database(url: &str, database: &str, user: Option<&str>) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (scheme, rest) = base
        .split_once("://")
        .expect("a postgres://… url in PORTCULLIS_TEST_POSTGRES_URL");
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = match user {
        Some(user) => {
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{scheme}://{authority}/{database}{query}")
}

// ---- seeding helpers shared by the tests

pub struct Seeded {
    pub tenant: Tenant,
    pub agent: Agent,
    pub connection: Connection,
}

pub async fn seed(store: &Store, name: &str) -> Seeded {
    let tenant = store.create_tenant(name, "test", NOW).await.unwrap();
    let agent = store
        .create_agent(&tenant.id, "agent", "test", NOW)
        .await
        .unwrap();
    let connection = store
        .create_connection(
            &tenant.id,
            "crm",
            &json!({"kind": "stdio", "command": "x"}),
            ResultRedaction::default(),
            "test",
            NOW,
        )
        .await
        .unwrap();
    Seeded {
        tenant,
        agent,
        connection,
    }
}

pub fn action(s: &Seeded, amount: i64) -> Action {
    Action {
        tenant: s.tenant.id.clone(),
        connection: s.connection.id.clone(),
        tool: "issue_refund".into(),
        tool_definition_hash: "h".into(),
        arguments: json!({ "amount_cents": amount }),
    }
}

pub async fn hold(store: &Store, s: &Seeded, amount: i64, expires_at: i64) -> Approval {
    let action = action(s, amount);
    let new = NewApproval {
        id: ApprovalId::generate(),
        tenant: s.tenant.id.clone(),
        agent: s.agent.id.clone(),
        session: None,
        action_hash: action.hash().unwrap(),
        action,
        effect: EffectClass::Spend,
        summary: "refund".into(),
        reasons: vec!["spend".into()],
        expires_at,
        revert_of: None,
    };
    let draft = AuditDraft::new(s.tenant.id.clone(), "agent:x", AuditKind::Hold);
    match store.create_approval(new, draft, NOW).await.unwrap() {
        HoldOutcome::Created(approval, _) => approval,
        HoldOutcome::Joined(approval) => panic!("joined {}", approval.id),
    }
}

pub fn receipt(keys: &KeyRing, approval: &Approval) -> SignedReceipt {
    SignedReceipt::sign(
        keys.signing_key(),
        ReceiptBody {
            format: portcullis_core::receipt::RECEIPT_FORMAT,
            receipt_id: ReceiptId::generate(),
            approval_id: approval.id.clone(),
            tenant: approval.tenant.clone(),
            action_hash: approval.action_hash.clone(),
            approver: "alice".into(),
            approved_at: NOW,
            expires_at: approval.expires_at,
            nonce: SignedReceipt::new_nonce(),
            batch: None,
        },
    )
}

pub async fn approve(store: &Store, keys: &KeyRing, approval: &Approval) -> SignedReceipt {
    let signed = receipt(keys, approval);
    let draft = AuditDraft::new(approval.tenant.clone(), "admin:alice", AuditKind::Approve);
    store
        .decide_approval(
            &approval.tenant,
            &approval.id,
            Verdict::Approve {
                receipt: signed.clone(),
                reason: None,
            },
            "alice",
            draft,
            NOW,
        )
        .await
        .unwrap();
    signed
}

/// Redeem `signed` for `approval`: what the executor does right before the upstream call.
pub async fn redeem(
    store: &Store,
    approval: &Approval,
    signed: &SignedReceipt,
) -> StoreResult<portcullis_core::audit::AuditEvent> {
    let draft = AuditDraft::new(approval.tenant.clone(), "agent:x", AuditKind::Execute);
    store
        .redeem_receipt(
            &approval.tenant,
            &approval.id,
            &signed.body.receipt_id,
            &signed.body.nonce,
            draft,
            NOW,
        )
        .await
}

/// Every event of a tenant's chain, checked link by link: what `verify` would accept.
pub async fn verified_chain(
    store: &Store,
    tenant: &TenantId,
) -> Vec<portcullis_core::audit::AuditEvent> {
    let events = store.audit_page(tenant, 0, 100_000).await.unwrap();
    let keys = KeyRing::generate();
    let mut verifier =
        portcullis_core::audit::ChainVerifier::new(tenant.clone(), &[], &keys.verifying_key())
            .unwrap();
    events.iter().for_each(|e| verifier.push(e).unwrap());
    assert_eq!(verifier.finish().unwrap().entries, events.len() as i64);
    events
}
