//! Prepared statements for the hot paths, from the connection's cache or held for a whole
//! write transaction.

use std::cell::RefCell;

use rusqlite::{CachedStatement, Connection, Statement};

use crate::error::Result;

/// Where the storage functions get a prepared statement for a fixed SQL text.
///
/// A plain [`Connection`] takes it from its statement cache on every call. rusqlite's cache
/// trims and hashes the SQL text, copies it into a new key and clears the bindings on every
/// lookup and return: with four or five statements per event, that was ~5 % of the writer
/// thread in the e2e benchmark (docs/benchmarks.md, session 18). [`TxStatements`] looks each
/// one up once per write transaction instead.
pub(crate) trait Prepare {
    /// Runs `f` with the prepared statement of `sql` (bindings may hold the previous call's
    /// values: `f` binds every parameter).
    fn with_statement<T>(
        &self,
        sql: &'static str,
        f: impl FnOnce(&mut Statement<'_>) -> Result<T>,
    ) -> Result<T>;

    /// The rowid of the last successful insert on the connection.
    fn last_insert_rowid(&self) -> i64;
}

impl Prepare for Connection {
    fn with_statement<T>(
        &self,
        sql: &'static str,
        f: impl FnOnce(&mut Statement<'_>) -> Result<T>,
    ) -> Result<T> {
        f(&mut *self.prepare_cached(sql)?)
    }

    fn last_insert_rowid(&self) -> i64 {
        Connection::last_insert_rowid(self)
    }
}

/// The statements one write transaction has used so far, taken from the connection's cache
/// on first use and returned to it when the transaction ends (when this drops).
pub(crate) struct TxStatements<'c> {
    conn: &'c Connection,
    /// Few (one per distinct hot statement), so a scan is the fastest lookup: by length,
    /// then by address (a literal's text usually has one), then by text. `None` while the
    /// statement is lent out.
    held: RefCell<Vec<(&'static str, Option<CachedStatement<'c>>)>>,
}

impl std::fmt::Debug for TxStatements<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held: Vec<&str> = self.held.borrow().iter().map(|(sql, _)| *sql).collect();
        f.debug_struct("TxStatements").field("held", &held).finish()
    }
}

impl<'c> TxStatements<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            held: RefCell::new(Vec::new()),
        }
    }

    fn slot(
        held: &[(&'static str, Option<CachedStatement<'c>>)],
        sql: &'static str,
    ) -> Option<usize> {
        held.iter().position(|(key, _)| {
            key.len() == sql.len() && (std::ptr::eq(key.as_ptr(), sql.as_ptr()) || *key == sql)
        })
    }
}

impl Prepare for TxStatements<'_> {
    fn with_statement<T>(
        &self,
        sql: &'static str,
        f: impl FnOnce(&mut Statement<'_>) -> Result<T>,
    ) -> Result<T> {
        let lent = {
            let mut held = self.held.borrow_mut();
            match Self::slot(&held, sql) {
                Some(i) => held[i].1.take().map(|stmt| (i, stmt)),
                None => None,
            }
        };
        let (slot, mut stmt) = match lent {
            Some((i, stmt)) => (Some(i), stmt),
            // first use in this transaction (or, were `f` to need the same statement again
            // while it is lent out, a second one from the cache)
            None => (None, self.conn.prepare_cached(sql)?),
        };
        let out = f(&mut stmt);
        let mut held = self.held.borrow_mut();
        match slot.or_else(|| Self::slot(&held, sql)) {
            Some(i) if held[i].1.is_none() => held[i].1 = Some(stmt),
            Some(_) => drop(stmt),
            None => held.push((sql, Some(stmt))),
        }
        out
    }

    fn last_insert_rowid(&self) -> i64 {
        self.conn.last_insert_rowid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSERT: &str = "INSERT INTO t (v) VALUES (?1)";
    const COUNT: &str = "SELECT count(*) FROM t";

    fn conn() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            .expect("schema");
        conn
    }

    #[test]
    fn a_statement_is_prepared_once_per_transaction_and_rebinds_each_call() {
        let conn = conn();
        let statements = TxStatements::new(&conn);
        for v in ["a", "b", "c"] {
            statements
                .with_statement(INSERT, |s| Ok(s.execute([v])?))
                .expect("insert");
            assert_eq!(statements.held.borrow().len(), 1, "one held statement");
        }
        assert_eq!(Prepare::last_insert_rowid(&statements), 3);
        let count: i64 = statements
            .with_statement(COUNT, |s| Ok(s.query_row([], |r| r.get(0))?))
            .expect("count");
        assert_eq!(count, 3);
        assert_eq!(statements.held.borrow().len(), 2);
        let values: Vec<String> = conn
            .prepare("SELECT v FROM t ORDER BY id")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(values, ["a", "b", "c"]);
    }

    #[test]
    fn the_same_statement_needed_while_lent_out_comes_from_the_cache() {
        let conn = conn();
        let statements = TxStatements::new(&conn);
        statements
            .with_statement(INSERT, |outer| {
                outer.execute(["outer"])?;
                statements.with_statement(INSERT, |inner| Ok(inner.execute(["inner"])?))?;
                Ok(outer.execute(["outer again"])?)
            })
            .expect("nested use");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 3);
        assert_eq!(statements.held.borrow().len(), 1);
    }

    #[test]
    fn an_error_inside_leaves_the_statement_usable() {
        let conn = conn();
        let statements = TxStatements::new(&conn);
        let failed: Result<()> = statements.with_statement(INSERT, |s| {
            s.execute(["x"])?;
            Err(crate::StorageError::InvalidInput {
                field: "v",
                message: "refused".into(),
            })
        });
        assert!(failed.is_err());
        statements
            .with_statement(INSERT, |s| Ok(s.execute(["y"])?))
            .expect("reused after an error");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 2);
    }
}
