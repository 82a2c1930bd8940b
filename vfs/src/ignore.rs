//! What stays on this device only: entries matched by a `.loftignore` file (gitignore
//! syntax) in their folder or any folder above, by the default list of editor swap
//! and lock files, or marked with the `user.loft.ignore` xattr. Such a node is
//! *local-only*: it is never queued for the server, and what is created inside a
//! local-only folder is local-only too.
//!
//! The rules are applied when an entry is created; an entry the server already has
//! keeps syncing (as files tracked by git stay tracked). `user.loft.ignore` changes an
//! existing node: `1` stops sending its changes, `0` sends a local-only node (and
//! what is below it) to the server.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use loft_cache::mirror::{Db, Kind, Node, Op, ROOT_INO};
use tracing::warn;

use crate::attr::now;
use crate::core::{Vfs, lock};
use crate::error::{VfsError, VfsResult};

/// The per-folder rules file.
pub const IGNORE_FILE: &[u8] = b".loftignore";
/// The xattr that marks a node local-only (`1`) or not (`0`).
pub(crate) const IGNORE_XATTR: &[u8] = b"user.loft.ignore";

/// Editor swap, backup and lock files, and desktop clutter: local-only everywhere.
pub const DEFAULT_IGNORES: &[&str] = &[
    "*.swp",
    "*.swo",
    "*.swx",
    "*~",
    ".#*",
    "#*#",
    "~$*",
    ".~lock.*#",
    ".DS_Store",
    "Thumbs.db",
];

/// A parsed `.loftignore` file with the size and time it was read at.
struct ParsedRules {
    size: u64,
    mtime: i64,
    rules: Arc<Gitignore>,
}

/// Parsed `.loftignore` files, by inode.
#[derive(Default)]
pub(crate) struct IgnoreRules {
    files: Mutex<HashMap<u64, ParsedRules>>,
}

fn parse(lines: impl IntoIterator<Item = impl AsRef<str>>) -> Gitignore {
    let mut builder = GitignoreBuilder::new("");
    for line in lines {
        if let Err(error) = builder.add_line(None, line.as_ref()) {
            warn!("ignore rule {:?}: {error}", line.as_ref());
        }
    }
    builder.build().unwrap_or_else(|error| {
        warn!("ignore rules: {error}");
        Gitignore::empty()
    })
}

fn defaults() -> &'static Gitignore {
    static DEFAULTS: std::sync::OnceLock<Gitignore> = std::sync::OnceLock::new();
    DEFAULTS.get_or_init(|| parse(DEFAULT_IGNORES))
}

impl Vfs {
    /// True when a new entry `name` (a folder if `is_dir`) in `parent` is to stay on
    /// this device.
    pub(crate) fn is_ignored(&self, parent: u64, name: &[u8], is_dir: bool) -> VfsResult<bool> {
        if defaults()
            .matched(Path::new(OsStr::from_bytes(name)), is_dir)
            .is_ignore()
        {
            return Ok(true);
        }
        // Nearest rules first: a deeper `.loftignore` overrides one above it.
        let mut relative = PathBuf::from(OsStr::from_bytes(name));
        let mut dir = parent;
        for _ in 0..4096 {
            let node = self.node(dir)?;
            if node.local_only {
                return Ok(true);
            }
            if let Some(file) = self.rx(|db| Ok(db.lookup(dir, IGNORE_FILE)?))?
                && let Some(rules) = self.rules_in(file)
            {
                let verdict = rules.matched_path_or_any_parents(&relative, is_dir);
                if verdict.is_ignore() {
                    return Ok(true);
                }
                if verdict.is_whitelist() {
                    return Ok(false);
                }
            }
            if dir == ROOT_INO {
                break;
            }
            let Some((up, dir_name)) = self.rx(|db| Ok(db.any_entry_of(dir)?))? else {
                break;
            };
            relative = Path::new(OsStr::from_bytes(&dir_name)).join(relative);
            dir = up;
        }
        Ok(false)
    }

    /// The rules of one `.loftignore` file, read (and fetched, if not local) when it
    /// changed since last time; `None` when it cannot be read.
    fn rules_in(&self, ino: u64) -> Option<Arc<Gitignore>> {
        let node = self.node(ino).ok()?;
        if node.kind != Kind::File {
            return None;
        }
        if let Some(parsed) = lock(&self.ignore_rules.files).get(&ino)
            && parsed.size == node.size
            && parsed.mtime == node.mtime
        {
            return Some(parsed.rules.clone());
        }
        if !node.dirty
            && node.local_bytes < node.size
            && let Err(error) = self.hydrate(ino)
        {
            warn!("reading {}: {error}", String::from_utf8_lossy(IGNORE_FILE));
            return None;
        }
        let node = self.node(ino).ok()?;
        let text = std::fs::read(self.bodies.path(ino, node.body)).ok()?;
        let text = String::from_utf8_lossy(&text[..text.len().min(node.size as usize)]);
        let rules = Arc::new(parse(text.lines()));
        let parsed = ParsedRules {
            size: node.size,
            mtime: node.mtime,
            rules: rules.clone(),
        };
        lock(&self.ignore_rules.files).insert(ino, parsed);
        Some(rules)
    }

    /// `user.loft.ignore` = `1`: `ino` and everything below it stay on this device
    /// from now on. `0`: they are sent to the server (those it never had are created).
    pub(crate) fn set_local_only(&self, ino: u64, local_only: bool) -> VfsResult<()> {
        self.tx(|db| mark_tree(db, ino, local_only, now()))?;
        self.wake.notify_one();
        Ok(())
    }
}

/// Marks `ino` and its subtree local-only or not; nodes leaving local-only that the
/// server never had are queued for creation, parents first.
pub(crate) fn mark_tree(db: &Db<'_>, ino: u64, local_only: bool, stamp: i64) -> VfsResult<()> {
    let mut stack = vec![ino];
    while let Some(next) = stack.pop() {
        let Some(mut node) = db.node(next)? else {
            continue;
        };
        let was = node.local_only;
        node.local_only = local_only;
        db.update_node(&node)?;
        if was && !local_only {
            publish(db, &node, stamp)?;
        }
        if node.kind == Kind::Directory {
            stack.extend(db.entries(next)?.into_iter().map(|(_, child)| child));
        }
    }
    Ok(())
}

/// Queues the creation of a node that was local-only, if the server never had it.
fn publish(db: &Db<'_>, node: &Node, stamp: i64) -> VfsResult<()> {
    if db.remote_of(node.ino)?.is_some() {
        return Ok(());
    }
    let Some((parent, name)) = db.any_entry_of(node.ino)? else {
        return Err(VfsError::NotFound);
    };
    db.push(&Op::create_of(node, parent, name), stamp)?;
    Ok(())
}
