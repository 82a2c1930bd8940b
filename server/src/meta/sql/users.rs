//! Users, devices and sessions.

use loft_remote::errors::ErrorKind;
use loft_remote::proto::NodeKind;

use super::access::Role;
use super::db::{Db, Row, args};
use crate::error::{Result, ServerError};
use crate::meta::{Caller, DeviceRecord, Nanos, User};

const USER_COLUMNS: &str = "u.id, u.name, u.password_hash, u.home_ns, n.root, u.quota";

fn user_from_row(row: &Row) -> Result<User> {
    Ok(User {
        id: row.u64(0)?,
        name: row.text(1)?,
        password_hash: row.text(2)?,
        home_ns: row.u64(3)?,
        root: row.u64(4)?,
        quota: row.opt_i64(5)?.map(|q| q as u64),
    })
}

/// Creates a user with an empty home namespace.
pub fn create_user(db: &dyn Db, name: &str, password_hash: &str, now: Nanos) -> Result<User> {
    if name.is_empty() || name.len() > 64 || name.contains(['/', '\0', ':']) {
        return Err(ServerError::invalid(
            "user names are 1-64 bytes without '/', ':' or NUL",
        ));
    }
    let exists = db
        .query_one(
            "SELECT EXISTS(SELECT 1 FROM users WHERE name = ?1)",
            args![name],
        )?
        .bool(0)?;
    if exists {
        return Err(ServerError::new(
            ErrorKind::AlreadyExists,
            format!("user {name} already exists"),
        ));
    }
    let user_id = db
        .query_one(
            "INSERT INTO users(name, password_hash, created) VALUES (?1, ?2, ?3) RETURNING id",
            args![name, password_hash, now],
        )?
        .i64(0)?;
    let ns = db
        .query_one(
            "INSERT INTO namespaces(owner) VALUES (?1) RETURNING id",
            args![user_id],
        )?
        .i64(0)?;
    let root = db
        .query_one(
            "INSERT INTO inodes(ns, kind, mode, uid, gid, atime, mtime, ctime, btime, nlink) \
             VALUES (?1, ?2, ?3, 0, 0, ?4, ?4, ?4, ?4, 2) RETURNING id",
            args![ns, NodeKind::Directory as i32, 0o755u32, now],
        )?
        .i64(0)?;
    db.execute(
        "UPDATE namespaces SET root = ?1 WHERE id = ?2",
        args![root, ns],
    )?;
    db.execute(
        "UPDATE users SET home_ns = ?1 WHERE id = ?2",
        args![ns, user_id],
    )?;
    db.execute(
        "INSERT INTO ns_members(ns, user_id, role) VALUES (?1, ?2, ?3)",
        args![ns, user_id, Role::Owner as i64],
    )?;
    user_by_name(db, name)?.ok_or_else(|| ServerError::internal("user vanished after insert"))
}

pub fn user_by_name(db: &dyn Db, name: &str) -> Result<Option<User>> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users u JOIN namespaces n ON n.id = u.home_ns WHERE u.name = ?1"
    );
    db.query_opt(&sql, args![name])?
        .map(|row| user_from_row(&row))
        .transpose()
}

pub fn set_quota(db: &dyn Db, name: &str, quota: Option<u64>) -> Result<()> {
    let changed = db.execute(
        "UPDATE users SET quota = ?1 WHERE name = ?2",
        args![quota, name],
    )?;
    if changed == 0 {
        return Err(ServerError::not_found(format!("user {name}")));
    }
    Ok(())
}

pub fn create_session(
    db: &dyn Db,
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
    let device = db
        .query_one(
            "INSERT INTO devices(user_id, name, created, last_seen) VALUES (?1, ?2, ?3, ?3) \
             ON CONFLICT (user_id, name) DO UPDATE SET revoked = 0, last_seen = ?3 RETURNING id",
            args![user, device_name, now],
        )?
        .i64(0)?;
    db.execute(
        "INSERT INTO sessions(token_hash, user_id, device_id, created, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
        args![&token_hash, user, device, now, expires],
    )?;
    session(db, token_hash, now)?
        .ok_or_else(|| ServerError::internal("session vanished after insert"))
}

pub fn session(db: &dyn Db, token_hash: [u8; 32], now: Nanos) -> Result<Option<Caller>> {
    let row = db.query_opt(
        "SELECT u.id, u.name, d.id, d.name, u.home_ns, n.root FROM sessions s \
         JOIN users u ON u.id = s.user_id JOIN devices d ON d.id = s.device_id \
         JOIN namespaces n ON n.id = u.home_ns \
         WHERE s.token_hash = ?1 AND s.expires > ?2 AND d.revoked = 0",
        args![&token_hash, now],
    )?;
    row.map(|row| {
        Ok(Caller {
            user_id: row.u64(0)?,
            user_name: row.text(1)?,
            device_id: row.u64(2)?,
            device_name: row.text(3)?,
            home_ns: row.u64(4)?,
            root: row.u64(5)?,
        })
    })
    .transpose()
}

pub fn end_session(db: &dyn Db, token_hash: [u8; 32]) -> Result<()> {
    db.execute(
        "DELETE FROM sessions WHERE token_hash = ?1",
        args![&token_hash],
    )?;
    Ok(())
}

pub fn list_devices(db: &dyn Db, user: u64) -> Result<Vec<DeviceRecord>> {
    let rows = db.query(
        "SELECT id, name, created, last_seen, revoked FROM devices WHERE user_id = ?1 ORDER BY id",
        args![user],
    )?;
    rows.iter()
        .map(|row| {
            Ok(DeviceRecord {
                id: row.u64(0)?,
                name: row.text(1)?,
                created: row.i64(2)?,
                last_seen: row.i64(3)?,
                revoked: row.bool(4)?,
            })
        })
        .collect()
}

pub fn revoke_device(db: &dyn Db, user: u64, device: u64) -> Result<()> {
    let changed = db.execute(
        "UPDATE devices SET revoked = 1 WHERE id = ?1 AND user_id = ?2",
        args![device, user],
    )?;
    if changed == 0 {
        return Err(ServerError::not_found(format!("device {device}")));
    }
    db.execute("DELETE FROM sessions WHERE device_id = ?1", args![device])?;
    Ok(())
}
