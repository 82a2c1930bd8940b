//! Per-user quotas. A user's usage is the bytes of every version (current and kept, of
//! live and trashed files) in the namespaces it owns: its home and each folder it shared
//! out. Bytes are counted per version as the file's size; deduplication is not credited.
//! Each user row keeps that sum (`used_bytes`): a version's insert adds to its owner's,
//! its deletion takes away, both in the transaction that changes the version. (Moving
//! versions between namespaces, as sharing a folder does, stays within one owner.)
//!
//! A new version reserves its bytes in the transaction that inserts it: the check runs
//! after the insert, so the sum includes it, and a refusal rolls the whole transaction
//! back. Writes are serialised (SQLite's single writer; on PostgreSQL the write queue
//! and `SERIALIZABLE`, and the owner's user row locked here as well), so two commits
//! cannot both see room that only one of them fits in.

use loft_remote::errors::ErrorKind;

use super::db::{Db, Dialect, args};
use crate::error::{Result, ServerError};
use crate::meta::{QuotaUsage, UsageDrift};

/// Bytes stored in the namespaces `user` owns.
pub fn usage(db: &dyn Db, user: u64) -> Result<u64> {
    let used = db
        .query_opt("SELECT used_bytes FROM users WHERE id = ?1", args![user])?
        .map_or(Ok(0), |row| row.i64(0))?;
    Ok(used.max(0) as u64)
}

/// Counts a new version of `size` bytes in namespace `ns` for the namespace's owner.
pub fn count_version(db: &dyn Db, ns: u64, size: u64) -> Result<()> {
    if size > 0 {
        db.execute(
            "UPDATE users SET used_bytes = used_bytes + ?2 \
             WHERE id = (SELECT owner FROM namespaces WHERE id = ?1)",
            args![ns, size],
        )?;
    }
    Ok(())
}

/// Takes the bytes of `version`, about to be deleted, off its namespace owner's count.
pub fn uncount_version(db: &dyn Db, version: u64) -> Result<()> {
    db.execute(
        "UPDATE users SET used_bytes = used_bytes - \
         (SELECT size FROM versions WHERE id = ?1) \
         WHERE id = (SELECT n.owner FROM versions v JOIN namespaces n ON n.id = v.ns \
         WHERE v.id = ?1)",
        args![version],
    )?;
    Ok(())
}

/// A user's quota and usage.
pub fn of_user(db: &dyn Db, user: u64) -> Result<QuotaUsage> {
    let quota = db
        .query_opt("SELECT quota FROM users WHERE id = ?1", args![user])?
        .ok_or_else(|| ServerError::not_found(format!("user {user}")))?
        .opt_i64(0)?
        .map(|q| q as u64);
    Ok(QuotaUsage {
        quota,
        used: usage(db, user)?,
    })
}

/// Checks, after a version of `added` bytes went into namespace `ns`, that its owner is
/// still within quota; `QuotaExceeded` otherwise (the caller's transaction then rolls
/// back, so nothing is changed). An empty version never fails: emptying a file must
/// stay possible over quota.
pub fn check_after_adding(db: &dyn Db, ns: u64, added: u64) -> Result<()> {
    if added == 0 {
        return Ok(());
    }
    let lock = match db.dialect() {
        Dialect::Postgres => " FOR UPDATE OF u",
        Dialect::Sqlite => "",
    };
    let Some(row) = db.query_opt(
        &format!(
            "SELECT u.id, u.name, u.quota FROM namespaces n JOIN users u ON u.id = n.owner \
             WHERE n.id = ?1{lock}"
        ),
        args![ns],
    )?
    else {
        return Ok(());
    };
    let Some(quota) = row.opt_i64(2)?.map(|q| q as u64) else {
        return Ok(());
    };
    let (owner, owner_name) = (row.u64(0)?, row.text(1)?);
    let used = usage(db, owner)?;
    if used > quota {
        let before = used.saturating_sub(added);
        return Err(ServerError::new(
            ErrorKind::QuotaExceeded,
            format!(
                "quota exceeded: {owner_name} uses {before} of {quota} bytes; \
                 {added} more do not fit (free space by emptying the trash)"
            ),
        ));
    }
    Ok(())
}

/// Users whose `used_bytes` differs from the sum of the versions in the namespaces they
/// own; with `repair` (in a write transaction), each is set to that sum.
pub fn recount(db: &dyn Db, repair: bool) -> Result<Vec<UsageDrift>> {
    let rows = db.query(
        "SELECT u.id, u.name, u.used_bytes, CAST(COALESCE((SELECT SUM(v.size) FROM versions v \
         JOIN namespaces n ON n.id = v.ns WHERE n.owner = u.id), 0) AS BIGINT) \
         FROM users u ORDER BY u.id",
        args![],
    )?;
    let mut drifts = Vec::new();
    for row in &rows {
        let (counted, stored) = (row.i64(2)?, row.u64(3)?);
        if u64::try_from(counted).ok() == Some(stored) {
            continue;
        }
        if repair {
            db.execute(
                "UPDATE users SET used_bytes = ?2 WHERE id = ?1",
                args![row.u64(0)?, stored],
            )?;
        }
        drifts.push(UsageDrift {
            user: row.text(1)?,
            counted,
            stored,
        });
    }
    Ok(drifts)
}
