//! The schema's migrations, run by refinery. Each backend lists its own, SQL files in
//! `migrations/sqlite` and `migrations/postgres` named `V{version}__{name}.sql`, and runs them at
//! start under its lock. A migration, once released, never changes: refinery refuses a store whose
//! applied migration differs from the build's.

use std::fmt;
use std::sync::Arc;

use refinery::error::Kind;

use super::{StoreError, write_chain};

/// refinery's name for a migration (`V{version}__{name}`) and its SQL. They are listed by hand
/// rather than found by refinery's `embed_migrations!`, which reads the folder when the crate is
/// built and so misses a new file until something else changes.
pub(super) type Migration = (&'static str, &'static str);

/// Applies those of `migrations` that `conn` lacks, all in one transaction, and returns the
/// schema's version. A store that a newer build migrated further is refused.
pub(super) fn run<C: refinery::Migrate>(conn: &mut C, migrations: &[Migration]) -> Result<i32, StoreError> {
    let migrations: Vec<refinery::Migration> =
        migrations.iter().map(|(name, sql)| refinery::Migration::unapplied(name, sql)).collect::<Result<_, _>>().map_err(failed)?;
    let latest = migrations.iter().map(refinery::Migration::version).max().unwrap_or_default();
    let runner = refinery::Runner::new(&migrations).set_grouped(true);
    let Err(e) = runner.run(conn) else { return Ok(latest) };
    match e.kind() {
        Kind::MissingVersion(unknown) if unknown.version() > latest => {
            let found = runner.get_last_applied_migration(conn).map_err(failed)?.map_or(unknown.version(), |last| last.version());
            Err(StoreError::Newer { found: found.into(), latest: latest.into() })
        }
        _ => Err(failed(e)),
    }
}

fn failed(e: refinery::Error) -> StoreError {
    StoreError::Migration(Arc::new(Failure(e)))
}

/// A failed migration, with the database's own reason.
#[derive(Debug)]
pub struct Failure(refinery::Error);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.kind() {
            // refinery prints the step and the client's top message only.
            Kind::Connection(step, cause) => {
                write!(f, "{step}: ")?;
                write_chain(f, &**cause)
            }
            _ => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_migration_keeps_nothing_and_says_why() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        let err = run(&mut conn, &[("V1__first", "CREATE TABLE a (x INTEGER)"), ("V2__broken", "CREATE TABLE a (x INTEGER)")]).unwrap_err();
        assert!(err.to_string().starts_with("store: cannot migrate the schema: error applying migrations: table a already exists"), "{err}");
        let kept: i64 = conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'a'", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 0, "the first migration was undone with the second");
        assert_eq!(run(&mut conn, &[("V1__first", "CREATE TABLE a (x INTEGER)")]).unwrap(), 1);
    }
}
