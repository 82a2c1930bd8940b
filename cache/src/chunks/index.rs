//! The chunk index: one SQLite database in WAL mode.
//!
//! Commits are `synchronous=NORMAL` (may be lost, never torn, by a power cut) unless
//! the caller asks for [`Durability::Durable`]: dirty inserts, `mark_clean` and pins,
//! whose loss would drop or strand data. A lost relaxed commit is repaired by
//! recovery (a file without a row is re-indexed, a row without a file dropped).

use std::path::Path;
use std::time::Duration;

use loft_remote::content::ChunkId;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::{CacheStats, ChunkInfo, ChunkState, PinOwner};
use crate::error::{CacheError, Result};

/// The schema this build writes.
pub(crate) const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE chunks (
    id     BLOB PRIMARY KEY NOT NULL,  -- 32-byte BLAKE3 of the plaintext
    length INTEGER NOT NULL,
    state  INTEGER NOT NULL,           -- 0 clean, 1 dirty
    access INTEGER NOT NULL            -- logical clock of the last insert or read
) WITHOUT ROWID;
CREATE INDEX chunks_lru ON chunks (state, access);
CREATE TABLE pins (
    chunk BLOB NOT NULL,               -- may name a chunk that is not present (yet)
    owner INTEGER NOT NULL,            -- PinOwner, bit-cast to i64
    PRIMARY KEY (chunk, owner)
) WITHOUT ROWID;
CREATE INDEX pins_owner ON pins (owner);
";

/// Whether a commit must survive a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    Relaxed,
    Durable,
}

/// An index row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub length: u64,
    pub state: ChunkState,
}

/// The index database.
pub(crate) struct Index {
    conn: Connection,
    /// The connection's current `synchronous` setting.
    synchronous: Durability,
}

fn state_code(state: ChunkState) -> i64 {
    match state {
        ChunkState::Clean => 0,
        ChunkState::Dirty => 1,
    }
}

fn state_from_code(code: i64) -> rusqlite::Result<ChunkState> {
    match code {
        0 => Ok(ChunkState::Clean),
        1 => Ok(ChunkState::Dirty),
        other => Err(rusqlite::Error::IntegralValueOutOfRange(2, other)),
    }
}

fn id_from_blob(blob: Vec<u8>) -> rusqlite::Result<ChunkId> {
    ChunkId::from_slice(&blob).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// Reads a non-negative integer column (rusqlite has no `FromSql` for `u64`).
fn get_u64(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
}

/// A length for SQLite; chunk lengths are at most `MAX_CHUNK`, far below `i64::MAX`.
fn sql_len(length: u64) -> i64 {
    i64::try_from(length).unwrap_or(i64::MAX)
}

/// Pins take any u64; SQLite integers are i64, so the bits are stored as they are.
fn owner_code(owner: PinOwner) -> i64 {
    owner.0 as i64
}

impl Index {
    /// Opens (creating if needed) the index at `path`.
    pub fn open(path: &Path) -> Result<Index> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let mut index = Index {
            conn,
            synchronous: Durability::Relaxed,
        };
        index.migrate()?;
        Ok(index)
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))?;
        match version {
            0 => self.write(Durability::Durable, |tx| {
                tx.execute_batch(SCHEMA)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                Ok(())
            }),
            SCHEMA_VERSION => Ok(()),
            newer => Err(CacheError::UnknownSchema(newer)),
        }
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`) committed with the
    /// requested durability.
    fn write<T>(
        &mut self,
        durability: Durability,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        if self.synchronous != durability {
            let level = match durability {
                Durability::Relaxed => "NORMAL",
                Durability::Durable => "FULL",
            };
            // Only possible outside a transaction, hence here.
            self.conn.pragma_update(None, "synchronous", level)?;
            self.synchronous = durability;
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// The row of `id`, if present.
    pub fn row(&self, id: &ChunkId) -> Result<Option<Row>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT length, state FROM chunks WHERE id = ?1")?;
        let row = stmt
            .query_row([&id.0[..]], |row| {
                Ok(Row {
                    length: get_u64(row, 0)?,
                    state: state_from_code(row.get(1)?)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    /// The row of `id` with its pin count, if present.
    pub fn info(&self, id: &ChunkId) -> Result<Option<ChunkInfo>> {
        let Some(row) = self.row(id)? else {
            return Ok(None);
        };
        Ok(Some(ChunkInfo {
            length: row.length,
            state: row.state,
            pins: self.pin_count(id)?,
        }))
    }

    /// How many owners pin `id` (present or not).
    pub fn pin_count(&self, id: &ChunkId) -> Result<u64> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM pins WHERE chunk = ?1")?;
        Ok(stmt.query_row([&id.0[..]], |row| get_u64(row, 0))?)
    }

    /// Adds a row; the chunk's file must already be in place.
    pub fn insert(
        &mut self,
        id: &ChunkId,
        row: Row,
        access: i64,
        durability: Durability,
    ) -> Result<()> {
        self.write(durability, |tx| {
            tx.execute(
                "INSERT INTO chunks (id, length, state, access) VALUES (?1, ?2, ?3, ?4)",
                params![
                    &id.0[..],
                    sql_len(row.length),
                    state_code(row.state),
                    access
                ],
            )?;
            Ok(())
        })
    }

    /// Adds rows for chunks found on disk without one (recovery), as clean and least
    /// recently used.
    pub fn insert_found(&mut self, found: &[(ChunkId, u64)]) -> Result<()> {
        self.write(Durability::Relaxed, |tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO chunks (id, length, state, access) VALUES (?1, ?2, 0, 0)",
            )?;
            for (id, length) in found {
                stmt.execute(params![&id.0[..], sql_len(*length)])?;
            }
            Ok(())
        })
    }

    /// Sets the state of those of `ids` that are present and in another state;
    /// returns how many changed.
    pub fn set_state(
        &mut self,
        ids: &[ChunkId],
        state: ChunkState,
        durability: Durability,
    ) -> Result<usize> {
        self.write(durability, |tx| {
            let mut stmt =
                tx.prepare_cached("UPDATE chunks SET state = ?2 WHERE id = ?1 AND state <> ?2")?;
            let mut changed = 0;
            for id in ids {
                changed += stmt.execute(params![&id.0[..], state_code(state)])?;
            }
            Ok(changed)
        })
    }

    /// Deletes the rows of `ids` (pins stay: they are claims on ids, not on bytes).
    pub fn delete(&mut self, ids: &[ChunkId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(Durability::Relaxed, |tx| {
            let mut stmt = tx.prepare_cached("DELETE FROM chunks WHERE id = ?1")?;
            for id in ids {
                stmt.execute([&id.0[..]])?;
            }
            Ok(())
        })
    }

    /// Records reads; an access time only ever moves forward.
    pub fn touch(&mut self, accesses: &[(ChunkId, i64)]) -> Result<()> {
        if accesses.is_empty() {
            return Ok(());
        }
        self.write(Durability::Relaxed, |tx| {
            let mut stmt =
                tx.prepare_cached("UPDATE chunks SET access = MAX(access, ?2) WHERE id = ?1")?;
            for (id, access) in accesses {
                stmt.execute(params![&id.0[..], access])?;
            }
            Ok(())
        })
    }

    /// Clean unpinned chunks, least recently used first, until their lengths add up to
    /// at least `bytes` (or all of them if they do not).
    pub fn eviction_candidates(&self, bytes: u64) -> Result<Vec<(ChunkId, u64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, length FROM chunks AS c
             WHERE state = 0 AND NOT EXISTS (SELECT 1 FROM pins AS p WHERE p.chunk = c.id)
             ORDER BY access, id",
        )?;
        let mut rows = stmt.query([])?;
        let mut victims = Vec::new();
        let mut sum = 0u64;
        while sum < bytes {
            let Some(row) = rows.next()? else { break };
            let id = id_from_blob(row.get(0)?)?;
            let length = get_u64(row, 1)?;
            sum += length;
            victims.push((id, length));
        }
        Ok(victims)
    }

    /// Bytes that eviction cannot touch: dirty or pinned chunks.
    pub fn unevictable_bytes(&self) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT COALESCE(SUM(length), 0) FROM chunks AS c
             WHERE state = 1 OR EXISTS (SELECT 1 FROM pins AS p WHERE p.chunk = c.id)",
        )?;
        Ok(stmt.query_row([], |row| get_u64(row, 0))?)
    }

    /// Bytes and count by kind (the budget is filled in by the caller).
    pub fn stats(&self) -> Result<CacheStats> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT
                 COALESCE(SUM(CASE WHEN state = 0 AND NOT pinned THEN length END), 0),
                 COALESCE(SUM(CASE WHEN state = 0 AND pinned THEN length END), 0),
                 COALESCE(SUM(CASE WHEN state = 1 THEN length END), 0),
                 COALESCE(SUM(length), 0),
                 COUNT(*)
             FROM (SELECT state, length,
                          EXISTS (SELECT 1 FROM pins AS p WHERE p.chunk = c.id) AS pinned
                   FROM chunks AS c)",
        )?;
        Ok(stmt.query_row([], |row| {
            Ok(CacheStats {
                clean_bytes: get_u64(row, 0)?,
                pinned_bytes: get_u64(row, 1)?,
                dirty_bytes: get_u64(row, 2)?,
                total_bytes: get_u64(row, 3)?,
                budget: 0,
                chunks: get_u64(row, 4)?,
            })
        })?)
    }

    /// Sum of all lengths.
    pub fn total_bytes(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(SUM(length), 0) FROM chunks", [], |row| {
                get_u64(row, 0)
            })?)
    }

    /// The latest access recorded.
    pub fn max_access(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(access), 0) FROM chunks", [], |row| {
                row.get(0)
            })?)
    }

    /// Every row (recovery).
    pub fn rows(&self) -> Result<Vec<(ChunkId, Row)>> {
        let mut stmt = self.conn.prepare("SELECT id, length, state FROM chunks")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                id_from_blob(row.get(0)?)?,
                Row {
                    length: get_u64(row, 1)?,
                    state: state_from_code(row.get(2)?)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Ids of all dirty chunks.
    pub fn dirty_ids(&self) -> Result<Vec<ChunkId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM chunks WHERE state = 1 ORDER BY id")?;
        let ids = stmt.query_map([], |row| id_from_blob(row.get(0)?))?;
        Ok(ids.collect::<rusqlite::Result<_>>()?)
    }

    /// Pins `ids` for `owner` (pinning twice is pinning once).
    pub fn pin(&mut self, owner: PinOwner, ids: &[ChunkId]) -> Result<()> {
        self.write(Durability::Durable, |tx| {
            let mut stmt =
                tx.prepare_cached("INSERT OR IGNORE INTO pins (chunk, owner) VALUES (?1, ?2)")?;
            for id in ids {
                stmt.execute(params![&id.0[..], owner_code(owner)])?;
            }
            Ok(())
        })
    }

    /// Drops `owner`'s pins on `ids`.
    pub fn unpin(&mut self, owner: PinOwner, ids: &[ChunkId]) -> Result<()> {
        self.write(Durability::Durable, |tx| {
            let mut stmt = tx.prepare_cached("DELETE FROM pins WHERE chunk = ?1 AND owner = ?2")?;
            for id in ids {
                stmt.execute(params![&id.0[..], owner_code(owner)])?;
            }
            Ok(())
        })
    }

    /// Drops all of `owner`'s pins.
    pub fn unpin_all(&mut self, owner: PinOwner) -> Result<()> {
        self.write(Durability::Durable, |tx| {
            tx.execute("DELETE FROM pins WHERE owner = ?1", [owner_code(owner)])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        (dir, index)
    }

    fn id(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    fn clean(length: u64) -> Row {
        Row {
            length,
            state: ChunkState::Clean,
        }
    }

    #[test]
    fn candidates_follow_access_and_skip_pinned_and_dirty() {
        let (_dir, mut index) = index();
        index
            .insert(&id(1), clean(10), 5, Durability::Relaxed)
            .unwrap();
        index
            .insert(&id(2), clean(10), 3, Durability::Relaxed)
            .unwrap();
        index
            .insert(&id(3), clean(10), 1, Durability::Relaxed)
            .unwrap();
        let dirty = Row {
            length: 10,
            state: ChunkState::Dirty,
        };
        index.insert(&id(4), dirty, 0, Durability::Durable).unwrap();
        index.pin(PinOwner(7), &[id(3)]).unwrap();
        let all: Vec<_> = index
            .eviction_candidates(u64::MAX)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(all, [id(2), id(1)]);
        // Stops as soon as enough bytes are found.
        assert_eq!(index.eviction_candidates(1).unwrap().len(), 1);
        assert_eq!(index.eviction_candidates(0).unwrap().len(), 0);
        assert_eq!(index.unevictable_bytes().unwrap(), 20);
        // A read moves a chunk to the back of the queue; an older access never wins.
        index.touch(&[(id(2), 9), (id(1), 2)]).unwrap();
        let first = index.eviction_candidates(1).unwrap()[0].0;
        assert_eq!(first, id(1));
    }

    #[test]
    fn stats_split_by_kind_and_pins_are_per_owner() {
        let (_dir, mut index) = index();
        index
            .insert(&id(1), clean(1), 0, Durability::Relaxed)
            .unwrap();
        index
            .insert(&id(2), clean(20), 0, Durability::Relaxed)
            .unwrap();
        let dirty = Row {
            length: 300,
            state: ChunkState::Dirty,
        };
        index.insert(&id(3), dirty, 0, Durability::Durable).unwrap();
        index.pin(PinOwner(1), &[id(2), id(3)]).unwrap();
        index.pin(PinOwner(u64::MAX), &[id(2)]).unwrap();
        index.pin(PinOwner(1), &[id(2)]).unwrap();
        let stats = index.stats().unwrap();
        assert_eq!(
            (stats.clean_bytes, stats.pinned_bytes, stats.dirty_bytes),
            (1, 20, 300)
        );
        assert_eq!((stats.total_bytes, stats.chunks), (321, 3));
        assert_eq!(index.info(&id(2)).unwrap().unwrap().pins, 2);
        index.unpin(PinOwner(1), &[id(2)]).unwrap();
        assert_eq!(index.pin_count(&id(2)).unwrap(), 1);
        index.unpin_all(PinOwner(u64::MAX)).unwrap();
        assert_eq!(index.pin_count(&id(2)).unwrap(), 0);
        assert_eq!(index.pin_count(&id(3)).unwrap(), 1);
    }

    #[test]
    fn set_state_reports_changes() {
        let (_dir, mut index) = index();
        index
            .insert(&id(1), clean(1), 0, Durability::Relaxed)
            .unwrap();
        let ids = [id(1), id(2)];
        let n = index
            .set_state(&ids, ChunkState::Dirty, Durability::Durable)
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(index.dirty_ids().unwrap(), [id(1)]);
        let n = index
            .set_state(&ids, ChunkState::Dirty, Durability::Durable)
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        drop(Index::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            Index::open(&path),
            Err(CacheError::UnknownSchema(v)) if v == SCHEMA_VERSION + 1
        ));
    }
}
