//! Embedded schema migrations, applied in order and tracked with `PRAGMA user_version`.
//!
//! Keys lead with the namespace or owner id, so that a later split of the metadata by
//! owner is a matter of routing.

use rusqlite::Connection;

use crate::error::{Result, ServerError};

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    quota         INTEGER,
    home_ns       INTEGER NOT NULL DEFAULT 0,
    created       INTEGER NOT NULL
);

CREATE TABLE devices (
    id        INTEGER PRIMARY KEY,
    user_id   INTEGER NOT NULL REFERENCES users(id),
    name      TEXT NOT NULL,
    created   INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    revoked   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_id, name)
);

-- Bearer tokens are stored as SHA-256 of the token, never in plaintext.
CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    device_id  INTEGER NOT NULL REFERENCES devices(id),
    created    INTEGER NOT NULL,
    expires    INTEGER NOT NULL
);
CREATE INDEX sessions_device ON sessions(device_id);

-- A namespace is a tree with its own change journal: a user's home, a shared folder.
CREATE TABLE namespaces (
    id      INTEGER PRIMARY KEY,
    owner   INTEGER NOT NULL REFERENCES users(id),
    root    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE ns_members (
    ns      INTEGER NOT NULL REFERENCES namespaces(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    role    INTEGER NOT NULL,
    PRIMARY KEY (ns, user_id)
);
CREATE INDEX ns_members_user ON ns_members(user_id);

CREATE TABLE inodes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    ns             INTEGER NOT NULL,
    kind           INTEGER NOT NULL,
    mode           INTEGER NOT NULL,
    uid            INTEGER NOT NULL,
    gid            INTEGER NOT NULL,
    size           INTEGER NOT NULL DEFAULT 0,
    atime          INTEGER NOT NULL,
    mtime          INTEGER NOT NULL,
    ctime          INTEGER NOT NULL,
    btime          INTEGER NOT NULL,
    nlink          INTEGER NOT NULL,
    symlink_target BLOB,
    rdev           INTEGER NOT NULL DEFAULT 0,
    version        INTEGER NOT NULL DEFAULT 0,
    content_hash   BLOB,
    trashed        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX inodes_ns ON inodes(ns);

CREATE TABLE dentries (
    parent INTEGER NOT NULL,
    name   BLOB NOT NULL,
    inode  INTEGER NOT NULL,
    PRIMARY KEY (parent, name)
);
CREATE INDEX dentries_inode ON dentries(inode);

CREATE TABLE xattrs (
    inode INTEGER NOT NULL,
    name  BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (inode, name)
);

-- Deleted items, restorable until they expire.
CREATE TABLE trash (
    ns        INTEGER NOT NULL,
    inode     INTEGER NOT NULL,
    parent    INTEGER NOT NULL,
    name      BLOB NOT NULL,
    deleted   INTEGER NOT NULL,
    device_id INTEGER NOT NULL,
    PRIMARY KEY (ns, inode)
);

CREATE TABLE versions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    inode        INTEGER NOT NULL,
    base         INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    content_hash BLOB NOT NULL,
    manifest     BLOB NOT NULL,
    created      INTEGER NOT NULL,
    user_id      INTEGER NOT NULL,
    device_id    INTEGER NOT NULL
);
CREATE INDEX versions_inode ON versions(inode, id);

-- Distinct chunks of each version: the reference index behind refcounts and the
-- "can the caller read this chunk" check.
CREATE TABLE version_chunks (
    version INTEGER NOT NULL,
    chunk   BLOB NOT NULL,
    PRIMARY KEY (version, chunk)
);
CREATE INDEX version_chunks_chunk ON version_chunks(chunk);

CREATE TABLE chunks (
    id            BLOB PRIMARY KEY,
    length        INTEGER NOT NULL,
    stored_length INTEGER NOT NULL,
    compressed    INTEGER NOT NULL,
    refs          INTEGER NOT NULL DEFAULT 0,
    created       INTEGER NOT NULL
);

-- Who uploaded which chunk, so an interrupted upload resumes without granting anyone
-- else access by hash.
CREATE TABLE uploads (
    user_id  INTEGER NOT NULL,
    chunk    BLOB NOT NULL,
    uploaded INTEGER NOT NULL,
    PRIMARY KEY (user_id, chunk)
);

-- Gap-free per-namespace journal sequence (see design.md, "Databases, concretely").
CREATE TABLE ns_seq (
    ns       INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL
);

CREATE TABLE journal (
    ns         INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    kind       INTEGER NOT NULL,
    inode      INTEGER NOT NULL,
    parent     INTEGER NOT NULL,
    name       BLOB NOT NULL,
    old_parent INTEGER NOT NULL,
    old_name   BLOB NOT NULL,
    device_id  INTEGER NOT NULL,
    time       INTEGER NOT NULL,
    node       BLOB NOT NULL,
    PRIMARY KEY (ns, seq)
);
"#,
    // Version history, trash and chunk pruning: when a chunk's last reference went
    // (`released`) and whether a pruning pass is deleting it (`doomed`); the namespace and
    // the size of versions and trash items, so that a namespace's stored bytes are one
    // indexed sum; and the lease that lets one pruning pass run at a time.
    r#"
ALTER TABLE chunks ADD COLUMN released INTEGER;
ALTER TABLE chunks ADD COLUMN doomed INTEGER;
CREATE INDEX chunks_unreferenced ON chunks(id) WHERE refs = 0;
CREATE INDEX uploads_chunk ON uploads(chunk);
ALTER TABLE versions ADD COLUMN ns INTEGER NOT NULL DEFAULT 0;
UPDATE versions SET ns = COALESCE((SELECT ns FROM inodes WHERE inodes.id = versions.inode), 0);
CREATE INDEX versions_ns ON versions(ns, created);
CREATE INDEX versions_created ON versions(created);
ALTER TABLE trash ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
CREATE INDEX trash_deleted ON trash(deleted);
CREATE INDEX trash_inode ON trash(inode);
CREATE TABLE leases (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    expires INTEGER NOT NULL
);
"#,
    // Public links, their password throttle and the server's signing key.
    r#"
-- Public links. The secret is only stored as its SHA-256; link passwords are argon2id.
CREATE TABLE links (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    owner         INTEGER NOT NULL REFERENCES users(id),
    node          INTEGER NOT NULL,
    path          BLOB NOT NULL,
    role          INTEGER NOT NULL,
    secret_hash   BLOB NOT NULL UNIQUE,
    password_hash TEXT,
    created       INTEGER NOT NULL,
    expires       INTEGER,
    max_downloads INTEGER,
    downloads     INTEGER NOT NULL DEFAULT 0,
    revoked       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX links_owner ON links(owner, id);

-- Failed link passwords per subject (`link:ID`, `ip:ADDR`) in the current window,
-- shared by every server process.
CREATE TABLE link_throttle (
    subject      TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    failures     INTEGER NOT NULL
);

-- Server-wide secrets (the key that signs download URLs), created once.
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"#,
    // Sharing: who granted each membership (revoking cascades along it), the per-user
    // change feed over every namespace the user belongs to, and comments.
    r#"
ALTER TABLE ns_members ADD COLUMN granted_by INTEGER NOT NULL DEFAULT 0;
CREATE INDEX ns_members_granted ON ns_members(ns, granted_by);

-- Gap-free per-user feed sequence, bumped like ns_seq.
CREATE TABLE user_seq (
    user_id  INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL
);

-- Each journal row, once for every member of its namespace when it was written.
CREATE TABLE user_feed (
    user_id INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    ns      INTEGER NOT NULL,
    ns_seq  INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
);

CREATE TABLE comments (
    ns      INTEGER NOT NULL,
    id      INTEGER NOT NULL,
    inode   INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    time    INTEGER NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (ns, id)
);
CREATE INDEX comments_inode ON comments(ns, inode, id);
"#,
    // Search: the name and text of each node's current version (rowid = inode), and how
    // far along each namespace's journal the indexer has come.
    r#"
CREATE VIRTUAL TABLE search_index USING fts5(name, body);

CREATE TABLE search_cursor (
    ns  INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL
);
"#,
    // Each user's stored bytes, kept as they change, so a commit's quota check reads
    // one row instead of summing every version the user owns.
    r#"
ALTER TABLE users ADD COLUMN used_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE users SET used_bytes = (
    SELECT COALESCE(SUM(v.size), 0) FROM versions v
    JOIN namespaces n ON n.id = v.ns WHERE n.owner = users.id
);
"#,
];
const _: () = assert!(MIGRATIONS.len() == crate::meta::SCHEMA_VERSION as usize);

/// The schema version the database is at.
pub fn version(conn: &Connection) -> Result<u32> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    Ok(current as u32)
}

/// Brings the database schema up to date; returns the versions before and after.
pub fn migrate(conn: &mut Connection) -> Result<(u32, u32)> {
    let current = version(conn)?;
    if current as usize > MIGRATIONS.len() {
        return Err(ServerError::precondition(format!(
            "the metadata schema is at version {current}, newer than this loft-server \
             knows ({}); upgrade loft-server",
            MIGRATIONS.len()
        )));
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Read again under the write lock: another process may have migrated meanwhile.
    let current: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    tx.commit()?;
    Ok((current as u32, MIGRATIONS.len() as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database from before the usage counter gets each user's stored bytes when it
    /// migrates: every version in the namespaces the user owns, none of others'.
    #[test]
    fn migrating_counts_what_each_user_stores() {
        let before = MIGRATIONS.len() - 1;
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..before] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", before as i64)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO users(id, name, password_hash, created) \
             VALUES (1, 'ann', 'x', 0), (2, 'bob', 'x', 0), (3, 'cy', 'x', 0);
             INSERT INTO namespaces(id, owner) VALUES (10, 1), (11, 1), (20, 2);
             INSERT INTO versions(inode, base, size, content_hash, manifest, created, \
             user_id, device_id, ns) VALUES \
             (1, 0, 100, x'00', x'', 0, 1, 1, 10), (2, 0, 50, x'00', x'', 0, 2, 1, 11), \
             (3, 0, 7, x'00', x'', 0, 2, 1, 20);",
        )
        .unwrap();
        assert_eq!(
            migrate(&mut conn).unwrap(),
            (before as u32, MIGRATIONS.len() as u32)
        );
        let used: Vec<(i64, i64)> = conn
            .prepare("SELECT id, used_bytes FROM users ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(used, vec![(1, 150), (2, 7), (3, 0)]);
    }
}
