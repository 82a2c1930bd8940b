//! The mirror's tables. Migrations are numbered by SQLite's `user_version`.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE nodes(
    -- Never reused: queued operations and the kernel name nodes by inode.
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    rdev INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    atime INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    ctime INTEGER NOT NULL,
    btime INTEGER NOT NULL,
    nlink INTEGER NOT NULL DEFAULT 0,
    symlink BLOB NOT NULL DEFAULT x'',
    -- The server version the local content is (or was written on top of).
    version INTEGER NOT NULL DEFAULT 0,
    -- prost-encoded Manifest of `version` (NULL: not known yet).
    manifest BLOB,
    -- 1: the body file holds local changes not yet committed.
    dirty INTEGER NOT NULL DEFAULT 0,
    pinned INTEGER NOT NULL DEFAULT 0,
    -- Directories: 1 once their entries were fetched from the server.
    listed INTEGER NOT NULL DEFAULT 0,
    -- 1 once the node's xattrs were fetched from the server.
    xattrs_listed INTEGER NOT NULL DEFAULT 0,
    -- Generation of the local body file (bodies/<ino>-<body>).
    body INTEGER NOT NULL DEFAULT 0,
    -- Bytes of the file held locally.
    local_bytes INTEGER NOT NULL DEFAULT 0
);
-- Local inode ⇄ server node id. Rows outlive the node so that queued operations
-- naming a deleted inode can still be sent.
CREATE TABLE idmap(
    ino INTEGER PRIMARY KEY,
    remote INTEGER NOT NULL UNIQUE
);
CREATE TABLE dentries(
    parent INTEGER NOT NULL,
    name BLOB NOT NULL,
    ino INTEGER NOT NULL,
    PRIMARY KEY(parent, name)
) WITHOUT ROWID;
CREATE INDEX dentries_by_ino ON dentries(ino);
CREATE TABLE xattrs(
    ino INTEGER NOT NULL,
    name BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY(ino, name)
) WITHOUT ROWID;
-- Clean chunk ranges held in body files: the cache's ledger.
CREATE TABLE present(
    ino INTEGER NOT NULL,
    body INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    len INTEGER NOT NULL,
    access INTEGER NOT NULL,
    PRIMARY KEY(ino, body, idx)
) WITHOUT ROWID;
CREATE INDEX present_by_access ON present(access);
-- Local changes not yet sent to the server, in order.
CREATE TABLE outbox(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    queued INTEGER NOT NULL
);
CREATE TABLE settings(
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    r#"
-- 1: kept on this device only (.loftignore, user.loft.ignore); never sent.
ALTER TABLE nodes ADD COLUMN local_only INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- 2: the journal is searched by the node an operation names and by the entry a
-- rename or link makes, and the sync engine looks for unsent files on every round:
-- indexes, so none of these reads the whole table. `subject` is NULL in rows
-- queued before this migration until the mirror fills it in when it opens.
ALTER TABLE outbox ADD COLUMN subject INTEGER;
ALTER TABLE outbox ADD COLUMN to_parent INTEGER;
ALTER TABLE outbox ADD COLUMN to_name BLOB;
CREATE INDEX outbox_by_subject ON outbox(subject, seq);
CREATE INDEX outbox_by_target ON outbox(to_parent, to_name);
CREATE INDEX nodes_unsent ON nodes(ino) WHERE dirty = 1 AND local_only = 0;
"#,
];

/// Brings the schema up to date.
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}
