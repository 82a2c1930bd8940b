//! The search index: one document per node (its name and the text of its current
//! version), kept up to date by the indexer ([`crate::search::indexer`]) as it follows
//! each namespace's journal, and queried with the caller's memberships applied.
//!
//! SQLite keeps the documents in an FTS5 table (rowid = inode); PostgreSQL in a table
//! with a `tsvector` of the words. Only the statements that touch the index differ, by
//! [`Db::dialect`]. Access is decided at query time from the live tree (namespace
//! membership, not trashed), so a document left behind by a move, a share or a trashed
//! folder's contents never reaches a caller who may not see its node.

use std::collections::{BTreeMap, BTreeSet};

use loft_remote::proto::NodeKind;

use super::content::stored_manifest;
use super::db::{Db, Dialect, args};
use super::tree::any_dentry;
use crate::error::Result;
use crate::meta::{Caller, SearchBacklog, SearchDoc, SearchRow, SearchSource};

/// How far the indexer has come in namespace `ns`'s journal.
fn cursor(db: &dyn Db, ns: u64) -> Result<u64> {
    match db.query_opt("SELECT seq FROM search_cursor WHERE ns = ?1", args![ns])? {
        Some(row) => row.u64(0),
        None => Ok(0),
    }
}

/// The nodes changed in journals past the indexer's cursors, at most `limit` journal
/// rows, with what indexing them needs, and the cursors that reading them reaches.
pub fn backlog(db: &dyn Db, limit: u32) -> Result<SearchBacklog> {
    let behind = db.query(
        "SELECT s.ns, COALESCE(c.seq, 0) FROM ns_seq s \
         LEFT JOIN search_cursor c ON c.ns = s.ns \
         WHERE s.last_seq > COALESCE(c.seq, 0) ORDER BY s.ns",
        args![],
    )?;
    let mut left = limit;
    let mut inodes = BTreeSet::new();
    let mut cursors = Vec::new();
    for row in behind {
        if left == 0 {
            break;
        }
        let (ns, from) = (row.u64(0)?, row.u64(1)?);
        let changes = db.query(
            "SELECT seq, inode FROM journal WHERE ns = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            args![ns, from, left],
        )?;
        let mut reached = from;
        for change in &changes {
            reached = change.u64(0)?;
            inodes.insert(change.u64(1)?);
        }
        left = left.saturating_sub(changes.len() as u32);
        if reached > from {
            cursors.push((ns, reached));
        }
    }
    let sources = inodes
        .into_iter()
        .map(|inode| source(db, inode))
        .collect::<Result<_>>()?;
    Ok(SearchBacklog { sources, cursors })
}

/// What node `inode` is now, for its document.
fn source(db: &dyn Db, inode: u64) -> Result<SearchSource> {
    let gone = SearchSource {
        inode,
        name: None,
        kind: NodeKind::Unspecified,
        manifest: None,
    };
    let Some(row) = db.query_opt(
        "SELECT kind, trashed, version FROM inodes WHERE id = ?1",
        args![inode],
    )?
    else {
        return Ok(gone);
    };
    if row.bool(1)? {
        return Ok(gone);
    }
    let Some((_, name)) = any_dentry(db, inode)? else {
        return Ok(gone);
    };
    let kind = NodeKind::try_from(row.i64(0)? as i32).unwrap_or(NodeKind::Unspecified);
    let version = row.u64(2)?;
    let manifest = if kind == NodeKind::File && version != 0 {
        stored_manifest(db, inode, version)?
    } else {
        None
    };
    Ok(SearchSource {
        inode,
        name: Some(name),
        kind,
        manifest,
    })
}

/// Replaces (or, for a gone node, drops) documents and moves the cursors on, in one
/// transaction.
pub fn store(db: &dyn Db, docs: &[SearchDoc], cursors: &[(u64, u64)]) -> Result<()> {
    for doc in docs {
        match db.dialect() {
            Dialect::Sqlite => {
                db.execute(
                    "DELETE FROM search_index WHERE rowid = ?1",
                    args![doc.inode],
                )?;
                if let Some((name, body)) = &doc.text {
                    db.execute(
                        "INSERT INTO search_index(rowid, name, body) VALUES (?1, ?2, ?3)",
                        args![doc.inode, name, body],
                    )?;
                }
            }
            Dialect::Postgres => match &doc.text {
                Some((name, body)) => {
                    db.execute(
                        "INSERT INTO search_index(inode, name, body, words) \
                         VALUES (?1, ?2, ?3, to_tsvector('simple', ?4)) \
                         ON CONFLICT (inode) DO UPDATE SET name = excluded.name, \
                         body = excluded.body, words = excluded.words",
                        args![doc.inode, name, body, &words(&format!("{name} {body}"))],
                    )?;
                }
                None => {
                    db.execute(
                        "DELETE FROM search_index WHERE inode = ?1",
                        args![doc.inode],
                    )?;
                }
            },
        }
    }
    for &(ns, seq) in cursors {
        db.execute(
            "INSERT INTO search_cursor(ns, seq) VALUES (?1, ?2) \
             ON CONFLICT (ns) DO UPDATE SET seq = excluded.seq \
             WHERE search_cursor.seq < excluded.seq",
            args![ns, seq],
        )?;
    }
    Ok(())
}

/// Lower-case words separated by single spaces: the same words FTS5's default
/// tokenizer sees, handed to PostgreSQL so that `report.md` is `report` and `md` there
/// too (its parser would keep it as one "file" token).
pub fn words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// The journal heads of every namespace the caller belongs to: what a search that
/// starts now must see indexed.
pub fn heads(db: &dyn Db, caller: &Caller) -> Result<Vec<(u64, u64)>> {
    db.query(
        "SELECT m.ns, COALESCE(s.last_seq, 0) FROM ns_members m \
         LEFT JOIN ns_seq s ON s.ns = m.ns WHERE m.user_id = ?1 ORDER BY m.ns",
        args![caller.user_id],
    )?
    .iter()
    .map(|row| Ok((row.u64(0)?, row.u64(1)?)))
    .collect()
}

/// Whether the indexer has reached every one of `heads`.
pub fn covers(db: &dyn Db, heads: &[(u64, u64)]) -> Result<bool> {
    for &(ns, head) in heads {
        if cursor(db, ns)? < head {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The caller's live nodes whose document has every one of `terms` (as a word prefix),
/// best first, at most `limit`, each with its path as the caller sees it.
pub fn search(
    db: &dyn Db,
    caller: &Caller,
    terms: &[String],
    limit: u32,
) -> Result<Vec<SearchRow>> {
    let rows = match db.dialect() {
        Dialect::Sqlite => {
            let query = terms
                .iter()
                .map(|term| format!("\"{term}\"*"))
                .collect::<Vec<_>>()
                .join(" ");
            db.query(
                "SELECT i.id, i.kind, search_index.body FROM search_index \
                 JOIN inodes i ON i.id = search_index.rowid \
                 JOIN ns_members m ON m.ns = i.ns AND m.user_id = ?2 \
                 WHERE search_index MATCH ?1 AND i.trashed = 0 \
                 ORDER BY search_index.rank, i.id LIMIT ?3",
                args![&query, caller.user_id, limit],
            )?
        }
        Dialect::Postgres => {
            let query = terms
                .iter()
                .map(|term| format!("{term}:*"))
                .collect::<Vec<_>>()
                .join(" & ");
            db.query(
                "SELECT i.id, i.kind, s.body FROM search_index s \
                 JOIN inodes i ON i.id = s.inode \
                 JOIN ns_members m ON m.ns = i.ns AND m.user_id = ?2 \
                 WHERE s.words @@ to_tsquery('simple', ?1) AND i.trashed = 0 \
                 ORDER BY ts_rank(s.words, to_tsquery('simple', ?1)) DESC, i.id LIMIT ?3",
                args![&query, caller.user_id, limit],
            )?
        }
    };
    let roots = member_roots(db, caller)?;
    let mut hits = Vec::new();
    for row in rows {
        let node = row.u64(0)?;
        // A node with no way up to the caller's drive (being moved away) is left out.
        let Some(path) = path_for(db, caller, &roots, node)? else {
            continue;
        };
        hits.push(SearchRow {
            node,
            path,
            kind: NodeKind::try_from(row.i64(1)? as i32).unwrap_or(NodeKind::Unspecified),
            body: row.text(2)?,
        });
    }
    Ok(hits)
}

/// The top node of each namespace the caller belongs to.
fn member_roots(db: &dyn Db, caller: &Caller) -> Result<BTreeMap<u64, u64>> {
    db.query(
        "SELECT n.root, n.id FROM namespaces n JOIN ns_members m ON m.ns = n.id \
         WHERE m.user_id = ?1",
        args![caller.user_id],
    )?
    .iter()
    .map(|row| Ok((row.u64(0)?, row.u64(1)?)))
    .collect()
}

/// The path of `node` in the caller's drive: up through its entries to the caller's
/// root, or to a shared item's entry at the root of the caller's drive.
fn path_for(
    db: &dyn Db,
    caller: &Caller,
    roots: &BTreeMap<u64, u64>,
    node: u64,
) -> Result<Option<Vec<u8>>> {
    let mut parts = Vec::new();
    let mut at = node;
    for _ in 0..4096 {
        if at == caller.root {
            return Ok((!parts.is_empty()).then(|| join_path(&parts)));
        }
        if roots.contains_key(&at) {
            let mine = db.query_opt(
                "SELECT name FROM dentries WHERE inode = ?1 AND parent = ?2",
                args![at, caller.root],
            )?;
            if let Some(row) = mine {
                parts.push(row.blob(0)?);
                return Ok(Some(join_path(&parts)));
            }
        }
        match any_dentry(db, at)? {
            Some((parent, name)) if parent != at => {
                parts.push(name);
                at = parent;
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// `/a/b/c` from the parts `c`, `b`, `a` (leaf first).
fn join_path(leaf_first: &[Vec<u8>]) -> Vec<u8> {
    let mut path = Vec::new();
    for part in leaf_first.iter().rev() {
        path.push(b'/');
        path.extend_from_slice(part);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_the_fts5_tokenizer() {
        assert_eq!(
            words("Report.md: Hello,  WORLD_2"),
            "report md hello world 2"
        );
    }

    #[test]
    fn paths_join_from_the_leaf_up() {
        assert_eq!(join_path(&[b"c".to_vec(), b"b".to_vec()]), b"/b/c");
    }
}
