//! The tables beside the ledger's (tokens, idempotency answers) on either database: one text
//! of each query, written with `?` placeholders and run on SQLite as it is or on PostgreSQL
//! with them numbered (`$1`, `$2`, …).

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

/// Where the side tables are.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    /// The embedded store's database.
    Sqlite(SqlitePool),
    /// The shared database of fleet mode.
    Pg(PgPool),
}

/// `sql` with its `?` placeholders numbered for PostgreSQL (the queries here hold no `?` in a
/// string literal).
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `$body` with `$pool` bound to the database's pool and `$sql` to a function that turns
/// a query's text into that database's dialect.
macro_rules! on_db {
    ($db:expr, |$pool:ident, $sql:ident| $body:expr) => {
        match $db {
            $crate::side::Db::Sqlite($pool) => {
                let $sql = |s: &str| sqlx::AssertSqlSafe(s.to_string());
                $body
            }
            $crate::side::Db::Pg($pool) => {
                let $sql = |s: &str| sqlx::AssertSqlSafe($crate::side::numbered(s));
                $body
            }
        }
    };
}
pub(crate) use on_db;

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            super::numbered("SELECT a FROM t WHERE b = ? AND c > ? LIMIT ?"),
            "SELECT a FROM t WHERE b = $1 AND c > $2 LIMIT $3"
        );
        assert_eq!(super::numbered("SELECT 1"), "SELECT 1");
    }
}
