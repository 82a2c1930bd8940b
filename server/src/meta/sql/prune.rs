//! Bookkeeping of the pruning worker ([`crate::prune`]): which unreferenced chunks may
//! be deleted from the chunk store, and the lease that lets one pass run at a time
//! across every server process sharing the database.
//!
//! A chunk is deleted in three steps, so that no upload or commit can come to depend on
//! it meanwhile: it is *doomed* (a mark that makes it unusable to commits and unknown to
//! `HaveChunks`, and makes recording an upload of it fail with "retry"), then deleted
//! from the store, then its record is forgotten. A pass that stops half-way leaves
//! doomed records, which the next pass finishes.

use loft_remote::content::ChunkId;

use super::db::{Db, args};
use crate::error::Result;
use crate::meta::Nanos;

/// Dooms at most `limit` chunks that no version references, whose last reference went
/// (or which were stored, if never referenced) before `cutoff` and which nobody
/// uploaded since; returns every doomed chunk, these and those a stopped pass left, up
/// to `limit`.
pub fn doom_chunks(db: &dyn Db, cutoff: Nanos, limit: u32, now: Nanos) -> Result<Vec<ChunkId>> {
    db.execute(
        "UPDATE chunks SET doomed = ?3 WHERE id IN (\
           SELECT c.id FROM chunks c WHERE c.refs = 0 AND c.doomed IS NULL \
           AND COALESCE(c.released, c.created) < ?1 \
           AND NOT EXISTS(SELECT 1 FROM uploads u WHERE u.chunk = c.id AND u.uploaded >= ?1) \
           AND NOT EXISTS(SELECT 1 FROM version_chunks vc WHERE vc.chunk = c.id) \
           ORDER BY c.id LIMIT ?2)",
        args![cutoff, limit, now],
    )?;
    db.query(
        "SELECT id FROM chunks WHERE doomed IS NOT NULL ORDER BY id LIMIT ?1",
        args![limit],
    )?
    .iter()
    .map(|row| Ok(ChunkId::from_slice(&row.blob(0)?)?))
    .collect()
}

/// Forgets doomed chunks once they are gone from the store.
pub fn forget_chunks(db: &dyn Db, ids: &[ChunkId]) -> Result<()> {
    for id in ids {
        db.execute(
            "DELETE FROM chunks WHERE id = ?1 AND doomed IS NOT NULL",
            args![&id.0[..]],
        )?;
        db.execute("DELETE FROM uploads WHERE chunk = ?1", args![&id.0[..]])?;
    }
    Ok(())
}

/// Takes (or, for its holder, extends) the lease `name` until `expires`; false when
/// another holder has it.
pub fn take_lease(
    db: &dyn Db,
    name: &str,
    holder: &str,
    expires: Nanos,
    now: Nanos,
) -> Result<bool> {
    let taken = db.execute(
        "INSERT INTO leases(name, holder, expires) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires \
         WHERE leases.expires < ?4 OR leases.holder = excluded.holder",
        args![name, holder, expires, now],
    )?;
    Ok(taken > 0)
}

/// Gives the lease up, if `holder` has it.
pub fn release_lease(db: &dyn Db, name: &str, holder: &str) -> Result<()> {
    db.execute(
        "UPDATE leases SET expires = 0 WHERE name = ?1 AND holder = ?2",
        args![name, holder],
    )?;
    Ok(())
}
