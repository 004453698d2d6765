//! A real PostgreSQL for tests: the server named by `SHARDEX_TEST_PG` (a URL without a
//! database, e.g. `postgres://postgres@127.0.0.1:5432`, as CI starts one), or else a private cluster made with Debian's `initdb` and `pg_ctl` in a temporary
//! folder (as the `postgres` user when run as root), stopped when the last handle is dropped.
//! Every [`database`] call makes a new, empty database on it.

// Test support: a server that can't start is the test's failure, said at once.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

/// A cluster this process started, stopped on drop.
#[derive(Debug)]
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    url: String,
    owner: Option<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

impl Cluster {
    fn command(&self, tool: &str) -> Command {
        as_owner(&self.bin.join(tool), self.owner.as_deref())
    }
}

fn as_owner(program: &std::path::Path, owner: Option<&str>) -> Command {
    match owner {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// The private cluster while some test holds it: a static is never dropped, so it keeps only a
/// weak reference, and the cluster stops when the last test using it is done.
static CLUSTER: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());

/// The newest PostgreSQL's programs (`/usr/lib/postgresql/N/bin`).
fn bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (/usr/lib/postgresql): apt-get install postgresql, or set SHARDEX_TEST_PG")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("no initdb under /usr/lib/postgresql")
}

fn start() -> Arc<Cluster> {
    let bin = bin();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = rustix_uid_is_root();
    let owner = root.then(|| "postgres".to_string());
    if root {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "could not hand {} to the postgres user",
            dir.path().display()
        );
    }
    let data = dir.path().join("data");
    let out = as_owner(&bin.join("initdb"), owner.as_deref())
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .output()
        .expect("initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
        dir.path().display()
    );
    let out = as_owner(&bin.join("pg_ctl"), owner.as_deref())
        .arg("-D")
        .arg(&data)
        .args(["-o", &options, "-l"])
        .arg(dir.path().join("log"))
        .args(["-w", "start"])
        .output()
        .expect("pg_ctl");
    assert!(
        out.status.success(),
        "pg_ctl start failed: {} {}",
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
    );
    Arc::new(Cluster {
        bin,
        dir,
        url: format!("postgres://postgres@127.0.0.1:{port}"),
        owner,
    })
}

fn rustix_uid_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A new empty database; its URL, and a handle that keeps a private cluster running.
pub async fn database() -> (String, Option<impl Sized>) {
    let (server, keep) = match std::env::var("SHARDEX_TEST_PG") {
        Ok(url) => (url.trim_end_matches('/').to_string(), None),
        Err(_) => {
            let cluster = {
                let mut c = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
                match c.upgrade() {
                    Some(running) => running,
                    None => {
                        let new = start();
                        *c = Arc::downgrade(&new);
                        new
                    }
                }
            };
            (cluster.url.clone(), Some(cluster))
        }
    };
    let base = server;
    let name = format!("shardex_test_{}", rand_suffix());
    let admin = format!("{base}/postgres");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("can't connect to PostgreSQL at {admin}: {e}"));
    // The name is made here of digits and underscores, never from input.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    (format!("{base}/{name}"), keep)
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{}_{}",
        std::process::id(),
        t,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Checks the recorded history of the shared ledger at `url`, not only its final state: every
/// log entry, replayed in order from nothing, is accepted on the state the entries before it
/// left, reproduces the events stored with it, and leaves every invariant holding (no shard is
/// held twice at any point of the history). Returns every entry's events, by entry.
pub async fn check_history(url: &str) -> std::collections::BTreeMap<u64, Vec<shardex_core::Event>> {
    use shardex_core::{Action, Event, Ledger, Timestamp};
    use sqlx::Row;
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let rows = sqlx::query("SELECT seq, at_ms, action FROM actions ORDER BY seq")
        .fetch_all(&pool)
        .await
        .expect("the log");
    let mut stored: std::collections::BTreeMap<u64, Vec<Event>> = std::collections::BTreeMap::new();
    for row in sqlx::query("SELECT seq, event FROM events ORDER BY seq, idx")
        .fetch_all(&pool)
        .await
        .expect("the events")
    {
        let seq = u64::try_from(row.get::<i64, _>(0)).expect("a positive seq");
        let e: Event = serde_json::from_str(&row.get::<String, _>(1)).expect("an event");
        stored.entry(seq).or_default().push(e);
    }
    let mut ledger = Ledger::new();
    let mut out = std::collections::BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let seq = u64::try_from(row.get::<i64, _>(0)).expect("a positive seq");
        assert_eq!(seq, i as u64 + 1, "the log has no gaps");
        let at = Timestamp::from_millis(row.get(1)).expect("a time");
        let action: Action = serde_json::from_str(&row.get::<String, _>(2)).expect("an action");
        let events = ledger
            .apply(&action, at)
            .unwrap_or_else(|e| panic!("entry {seq} is refused on the state before it: {e}"));
        assert_eq!(
            events,
            stored.remove(&seq).unwrap_or_default(),
            "entry {seq}'s events"
        );
        assert_eq!(ledger.check(), vec![], "the invariants after entry {seq}");
        out.insert(seq, events);
    }
    out
}
