//! Users, devices and sessions.

use loft_remote::errors::ErrorKind;
use loft_remote::proto::NodeKind;
use rusqlite::{OptionalExtension, Transaction, params};

use super::access::Role;
use crate::error::{Result, ServerError};
use crate::meta::{Caller, DeviceRecord, Nanos, User};

const USER_COLUMNS: &str = "u.id, u.name, u.password_hash, u.home_ns, n.root, u.quota";

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get::<_, i64>(0)? as u64,
        name: row.get(1)?,
        password_hash: row.get(2)?,
        home_ns: row.get::<_, i64>(3)? as u64,
        root: row.get::<_, i64>(4)? as u64,
        quota: row.get::<_, Option<i64>>(5)?.map(|q| q as u64),
    })
}

/// Creates a user with an empty home namespace.
pub fn create_user(
    tx: &Transaction<'_>,
    name: &str,
    password_hash: &str,
    now: Nanos,
) -> Result<User> {
    if name.is_empty() || name.len() > 64 || name.contains(['/', '\0', ':']) {
        return Err(ServerError::invalid(
            "user names are 1-64 bytes without '/', ':' or NUL",
        ));
    }
    let exists: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM users WHERE name = ?1)",
        [name],
        |row| row.get(0),
    )?;
    if exists {
        return Err(ServerError::new(
            ErrorKind::AlreadyExists,
            format!("user {name} already exists"),
        ));
    }
    tx.execute(
        "INSERT INTO users(name, password_hash, created) VALUES (?1, ?2, ?3)",
        params![name, password_hash, now],
    )?;
    let user_id = tx.last_insert_rowid();
    tx.execute("INSERT INTO namespaces(owner) VALUES (?1)", [user_id])?;
    let ns = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO inodes(ns, kind, mode, uid, gid, atime, mtime, ctime, btime, nlink) \
         VALUES (?1, ?2, ?3, 0, 0, ?4, ?4, ?4, ?4, 2)",
        params![ns, NodeKind::Directory as i32, 0o755, now],
    )?;
    let root = tx.last_insert_rowid();
    tx.execute(
        "UPDATE namespaces SET root = ?1 WHERE id = ?2",
        params![root, ns],
    )?;
    tx.execute(
        "UPDATE users SET home_ns = ?1 WHERE id = ?2",
        params![ns, user_id],
    )?;
    tx.execute(
        "INSERT INTO ns_members(ns, user_id, role) VALUES (?1, ?2, ?3)",
        params![ns, user_id, Role::Owner as i64],
    )?;
    user_by_name(tx, name)?.ok_or_else(|| ServerError::internal("user vanished after insert"))
}

pub fn user_by_name(tx: &Transaction<'_>, name: &str) -> Result<Option<User>> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users u JOIN namespaces n ON n.id = u.home_ns WHERE u.name = ?1"
    );
    Ok(tx.query_row(&sql, [name], user_from_row).optional()?)
}

pub fn set_quota(tx: &Transaction<'_>, name: &str, quota: Option<u64>) -> Result<()> {
    let changed = tx.execute(
        "UPDATE users SET quota = ?1 WHERE name = ?2",
        params![quota.map(|q| q as i64), name],
    )?;
    if changed == 0 {
        return Err(ServerError::not_found(format!("user {name}")));
    }
    Ok(())
}

pub fn create_session(
    tx: &Transaction<'_>,
    user: u64,
    device_name: &str,
    token_hash: [u8; 32],
    expires: Nanos,
    now: Nanos,
) -> Result<Caller> {
    if device_name.is_empty() || device_name.len() > 128 || device_name.contains('\0') {
        return Err(ServerError::invalid(
            "device names are 1-128 bytes without NUL",
        ));
    }
    // Logging in again with the password brings a revoked device name back.
    tx.execute(
        "INSERT INTO devices(user_id, name, created, last_seen) VALUES (?1, ?2, ?3, ?3) \
         ON CONFLICT (user_id, name) DO UPDATE SET revoked = 0, last_seen = ?3",
        params![user as i64, device_name, now],
    )?;
    let device: i64 = tx.query_row(
        "SELECT id FROM devices WHERE user_id = ?1 AND name = ?2",
        params![user as i64, device_name],
        |row| row.get(0),
    )?;
    tx.execute(
        "INSERT INTO sessions(token_hash, user_id, device_id, created, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![&token_hash[..], user as i64, device, now, expires],
    )?;
    session(tx, token_hash, now)?
        .ok_or_else(|| ServerError::internal("session vanished after insert"))
}

pub fn session(tx: &Transaction<'_>, token_hash: [u8; 32], now: Nanos) -> Result<Option<Caller>> {
    Ok(tx
        .query_row(
            "SELECT u.id, u.name, d.id, d.name, u.home_ns, n.root FROM sessions s \
             JOIN users u ON u.id = s.user_id JOIN devices d ON d.id = s.device_id \
             JOIN namespaces n ON n.id = u.home_ns \
             WHERE s.token_hash = ?1 AND s.expires > ?2 AND d.revoked = 0",
            params![&token_hash[..], now],
            |row| {
                Ok(Caller {
                    user_id: row.get::<_, i64>(0)? as u64,
                    user_name: row.get(1)?,
                    device_id: row.get::<_, i64>(2)? as u64,
                    device_name: row.get(3)?,
                    home_ns: row.get::<_, i64>(4)? as u64,
                    root: row.get::<_, i64>(5)? as u64,
                })
            },
        )
        .optional()?)
}

pub fn end_session(tx: &Transaction<'_>, token_hash: [u8; 32]) -> Result<()> {
    tx.execute(
        "DELETE FROM sessions WHERE token_hash = ?1",
        [&token_hash[..]],
    )?;
    Ok(())
}

pub fn list_devices(tx: &Transaction<'_>, user: u64) -> Result<Vec<DeviceRecord>> {
    let mut statement = tx.prepare(
        "SELECT id, name, created, last_seen, revoked FROM devices WHERE user_id = ?1 ORDER BY id",
    )?;
    let rows = statement.query_map([user as i64], |row| {
        Ok(DeviceRecord {
            id: row.get::<_, i64>(0)? as u64,
            name: row.get(1)?,
            created: row.get(2)?,
            last_seen: row.get(3)?,
            revoked: row.get::<_, i64>(4)? != 0,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn revoke_device(tx: &Transaction<'_>, user: u64, device: u64) -> Result<()> {
    let changed = tx.execute(
        "UPDATE devices SET revoked = 1 WHERE id = ?1 AND user_id = ?2",
        params![device as i64, user as i64],
    )?;
    if changed == 0 {
        return Err(ServerError::not_found(format!("device {device}")));
    }
    tx.execute("DELETE FROM sessions WHERE device_id = ?1", [device as i64])?;
    Ok(())
}
