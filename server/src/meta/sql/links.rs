//! Public links, the throttle of failed link passwords, and server-wide secrets.

use loft_remote::errors::ErrorKind;
use loft_remote::proto::NodeKind;

use super::access::{self, Role};
use super::db::{Db, Row, args};
use super::tree;
use crate::error::{Result, ServerError};
use crate::meta::{Caller, LinkGrant, LinkRecord, LinkRole, Nanos, NewLink, ThrottlePolicy};

const LINK_COLUMNS: &str = "id, owner, node, path, role, password_hash, created, expires, \
     max_downloads, downloads, revoked";

fn link_from_row(row: &Row) -> Result<LinkRecord> {
    Ok(LinkRecord {
        id: row.u64(0)?,
        owner: row.u64(1)?,
        node: row.u64(2)?,
        path: row.blob(3)?,
        role: LinkRole::from_i64(row.i64(4)?)
            .ok_or_else(|| ServerError::internal("metadata store: unknown link role"))?,
        password_hash: match row.opt_blob(5)? {
            Some(bytes) => Some(
                String::from_utf8(bytes)
                    .map_err(|_| ServerError::internal("link password hash is not UTF-8"))?,
            ),
            None => None,
        },
        created: row.i64(6)?,
        expires: row.opt_i64(7)?,
        max_downloads: row.opt_i64(8)?.map(|max| max as u64),
        downloads: row.u64(9)?,
        revoked: row.bool(10)?,
    })
}

fn load(db: &dyn Db, id: u64) -> Result<Option<LinkRecord>> {
    let sql = format!("SELECT {LINK_COLUMNS} FROM links WHERE id = ?1");
    db.query_opt(&sql, args![id])?
        .map(|row| link_from_row(&row))
        .transpose()
}

/// Records a link to `link.path`. Owners and editors may link an item (a public link
/// hands its bytes to anyone, and an upload link writes into it, so reading is not
/// enough); what the caller cannot see is `NotFound`. The link acts as its creator on
/// every use, so it stops working when the creator loses access.
pub fn create(db: &dyn Db, caller: &Caller, link: &NewLink, now: Nanos) -> Result<LinkRecord> {
    let node = tree::resolve(db, caller, &link.path)?;
    if access::role(db, caller, node.namespace)? < Some(Role::Editor) {
        return Err(ServerError::new(
            ErrorKind::PermissionDenied,
            "only owners and editors of an item can link it",
        ));
    }
    match node.kind() {
        NodeKind::File | NodeKind::Directory => {}
        _ => {
            return Err(ServerError::invalid("only files and folders can be linked"));
        }
    }
    if link.role == LinkRole::Upload && node.kind() != NodeKind::Directory {
        return Err(ServerError::invalid("an upload link needs a folder"));
    }
    let id = db
        .query_one(
            "INSERT INTO links(owner, node, path, role, secret_hash, password_hash, created, \
             expires, max_downloads) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
            args![
                caller.user_id,
                node.id,
                &link.path,
                link.role as i64,
                &link.secret_hash,
                link.password_hash.as_ref(),
                now,
                link.expires,
                link.max_downloads,
            ],
        )?
        .u64(0)?;
    load(db, id)?.ok_or_else(|| ServerError::internal("link vanished after insert"))
}

pub fn list(db: &dyn Db, caller: &Caller) -> Result<Vec<LinkRecord>> {
    let sql = format!("SELECT {LINK_COLUMNS} FROM links WHERE owner = ?1 ORDER BY id DESC");
    db.query(&sql, args![caller.user_id])?
        .iter()
        .map(link_from_row)
        .collect()
}

pub fn revoke(db: &dyn Db, caller: &Caller, id: u64) -> Result<()> {
    let changed = db.execute(
        "UPDATE links SET revoked = 1 WHERE owner = ?1 AND id = ?2",
        args![caller.user_id, id],
    )?;
    if changed == 0 {
        return Err(ServerError::not_found(format!("link {id}")));
    }
    Ok(())
}

/// The caller a link acts as: its creator, through no device (device id 0).
fn creator(db: &dyn Db, owner: u64) -> Result<Option<Caller>> {
    let row = db.query_opt(
        "SELECT u.id, u.name, u.home_ns, n.root FROM users u \
         JOIN namespaces n ON n.id = u.home_ns WHERE u.id = ?1",
        args![owner],
    )?;
    row.map(|row| {
        Ok(Caller {
            user_id: row.u64(0)?,
            user_name: row.text(1)?,
            device_id: 0,
            device_name: "public link".to_string(),
            home_ns: row.u64(2)?,
            root: row.u64(3)?,
        })
    })
    .transpose()
}

fn grant(db: &dyn Db, link: Option<LinkRecord>, now: Nanos) -> Result<Option<LinkGrant>> {
    let Some(link) = link.filter(|link| link.live(now)) else {
        return Ok(None);
    };
    Ok(creator(db, link.owner)?.map(|caller| LinkGrant { link, caller }))
}

pub fn by_secret(db: &dyn Db, secret_hash: &[u8; 32], now: Nanos) -> Result<Option<LinkGrant>> {
    let sql = format!("SELECT {LINK_COLUMNS} FROM links WHERE secret_hash = ?1");
    let link = db
        .query_opt(&sql, args![secret_hash])?
        .map(|row| link_from_row(&row))
        .transpose()?;
    grant(db, link, now)
}

pub fn by_id(db: &dyn Db, id: u64, now: Nanos) -> Result<Option<LinkGrant>> {
    grant(db, load(db, id)?, now)
}

pub fn count_download(db: &dyn Db, id: u64) -> Result<()> {
    db.execute(
        "UPDATE links SET downloads = downloads + 1 WHERE id = ?1",
        args![id],
    )?;
    Ok(())
}

/// The end of the window in which one of `subjects` used up its failures, if any.
pub fn throttled(
    db: &dyn Db,
    subjects: &[String],
    policy: ThrottlePolicy,
    now: Nanos,
) -> Result<Option<Nanos>> {
    let window_open_since = now.saturating_sub(policy.window);
    let mut until = None;
    for subject in subjects {
        let row = db.query_opt(
            "SELECT window_start FROM link_throttle \
             WHERE subject = ?1 AND failures >= ?2 AND window_start > ?3",
            args![subject, policy.failures, window_open_since],
        )?;
        if let Some(row) = row {
            let end = row.i64(0)?.saturating_add(policy.window);
            until = until.max(Some(end));
        }
    }
    Ok(until)
}

/// Counts a failure for each subject in its current window (a new window starts when
/// the last one has passed).
pub fn failed(db: &dyn Db, subjects: &[String], policy: ThrottlePolicy, now: Nanos) -> Result<()> {
    let window_open_since = now.saturating_sub(policy.window);
    for subject in subjects {
        db.execute(
            "INSERT INTO link_throttle(subject, window_start, failures) VALUES (?1, ?2, 1) \
             ON CONFLICT (subject) DO UPDATE SET \
             failures = CASE WHEN link_throttle.window_start <= ?3 THEN 1 \
                             ELSE link_throttle.failures + 1 END, \
             window_start = CASE WHEN link_throttle.window_start <= ?3 THEN CAST(?2 AS BIGINT) \
                                 ELSE link_throttle.window_start END",
            args![subject, now, window_open_since],
        )?;
    }
    Ok(())
}

pub fn server_secret(db: &dyn Db, name: &str, fresh: &[u8; 32]) -> Result<Vec<u8>> {
    db.execute(
        "INSERT INTO server_secrets(name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        args![name, fresh],
    )?;
    db.query_one(
        "SELECT value FROM server_secrets WHERE name = ?1",
        args![name],
    )?
    .blob(0)
}
