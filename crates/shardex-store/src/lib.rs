//! shardex-store: durable homes for the ledger.
//!
//! The ledger is kept as an append-only log of applied actions with their events. Each
//! [`LedgerStore::apply`](shardex_core::ports::LedgerStore::apply) computes the next state in
//! memory, writes the action and its events in one transaction and only then switches over, so
//! an acknowledged action is durable and a crash leaves the log as before or as after. On
//! open the log is replayed through the same core, every replayed action must reproduce the
//! events that were stored with it, and the rebuilt ledger must pass every invariant.
//!
//! * [`sqlite`]: embedded SQLite (WAL, `synchronous=FULL`), the default.
//! * [`postgres`]: PostgreSQL, shared by several brokers (fleet mode): each writer locks the
//!   log's head, catches up with what the others appended, then appends.
//! * [`memory`]: an in-memory fake with the same behaviour, for tests.
//!
//! ```
//! use shardex_core::ports::LedgerStore;
//! use shardex_core::{action, Action, ShardVector, Timestamp};
//! use shardex_store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let mut store = MemoryStore::new();
//! let host = Action::RegisterHost(action::RegisterHost {
//!     name: "h1".into(),
//!     capacity: ShardVector::new(800, 1024, 100, 100),
//! });
//! let events = store.apply(host, Timestamp::from_secs(1).unwrap()).await.unwrap().unwrap();
//! assert_eq!(events.len(), 1);
//! assert_eq!(store.ledger().hosts().count(), 1);
//! # });
//! ```

pub mod agents;
pub mod batch;
mod charges;
mod checkpoint;
pub mod idempotency;
pub mod inflight;
mod log_writer;
pub mod memory;
pub mod ownership;
pub mod plans;
pub mod postgres;
pub mod profiles;
mod replay;
mod side;
pub mod snapshot;
pub mod sqlite;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tokens;

use shardex_core::{ShardSizes, Violation};
use thiserror::Error;

pub use agents::{AgentSeen, Agents, HostToken, StoredSample};
pub use batch::{Batch, Claim};
pub use idempotency::{Idempotency, KeptAnswer};
pub use inflight::InFlight;
pub use memory::MemoryStore;
pub use ownership::{Held, Ownership};
pub use plans::Plans;
pub use postgres::PgStore;
pub use profiles::OomRecord;
pub use sqlite::{Commit, SqliteStore};
pub use tokens::{StoredToken, Tokens};

/// Failures of a store (as opposed to actions the ledger refused).
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error")]
    Db(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("schema migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be read back.
    #[error("stored action {seq} is unreadable: {reason}")]
    Corrupt {
        /// Sequence number of the action.
        seq: u64,
        /// What was wrong.
        reason: String,
    },
    /// Replaying the log did not reproduce what was recorded.
    #[error("replaying action {seq} did not reproduce its stored events: {detail}")]
    Diverged {
        /// Sequence number of the action.
        seq: u64,
        /// What differed.
        detail: String,
    },
    /// The data was created with other shard sizes; counts would change meaning.
    #[error(
        "this data was created with shard sizes {stored:?}, but the configuration says {configured:?}; shard sizes can't change for existing data"
    )]
    ShardSizesChanged {
        /// Sizes the data was created with.
        stored: ShardSizes,
        /// Sizes configured now.
        configured: ShardSizes,
    },
    /// A snapshot could not be written or read.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The rebuilt ledger breaks invariants.
    #[error("the rebuilt ledger breaks {} invariant(s): {}", .0.len(), summary(.0))]
    InvariantsBroken(Vec<Violation>),
    /// Metering what the ledger held failed.
    #[error("metering failed")]
    Metering(#[from] shardex_core::billing::BillingError),
    /// The log's writer failed (its connection, or a row it was given).
    #[error("the log's writer: {0}")]
    Log(String),
    /// A batch's write ended without an answer (its task failed or was never started).
    #[error("the write did not finish: {0}")]
    Unfinished(String),
    /// A fenced write found its broker no longer holds the host it works for.
    #[error("this broker no longer holds host {host} (epoch {epoch}); nothing was written")]
    NotOwner {
        /// The host.
        host: u64,
        /// The epoch the broker held it under.
        epoch: u64,
    },
    /// A value could not be encoded.
    #[error("could not encode {what}")]
    Encode {
        /// What.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

fn summary(v: &[Violation]) -> String {
    v.iter()
        .take(3)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
