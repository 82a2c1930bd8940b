//! What `stat` shows for a node, platform-neutral.

use loft_cache::mirror::{Kind, Node};

/// Nanoseconds since the epoch.
pub type Nanos = i64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    /// 512-byte blocks held on this device (at least 1 for a non-empty file).
    pub blocks: u64,
    pub atime: Nanos,
    pub mtime: Nanos,
    pub ctime: Nanos,
    pub btime: Nanos,
    /// Permission bits (07777).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
}

impl Attr {
    pub fn of(node: &Node, owner: Option<(u32, u32)>) -> Attr {
        let local = match node.kind {
            Kind::File if node.dirty => node.size,
            Kind::File => node.local_bytes.min(node.size),
            Kind::Symlink => node.symlink.len() as u64,
            _ => 4096,
        };
        let mut blocks = local.div_ceil(512);
        if node.size > 0 && blocks == 0 {
            // Tools that read 0 blocks as "all holes" would skip the file.
            blocks = 1;
        }
        let (uid, gid) = owner.unwrap_or((node.uid, node.gid));
        Attr {
            ino: node.ino,
            kind: node.kind,
            size: match node.kind {
                Kind::Directory => 4096,
                Kind::Symlink => node.symlink.len() as u64,
                _ => node.size,
            },
            blocks,
            atime: node.atime,
            mtime: node.mtime,
            ctime: node.ctime,
            btime: node.btime,
            perm: (node.mode & 0o7777) as u16,
            nlink: node.nlink,
            uid,
            gid,
            rdev: node.rdev as u32,
        }
    }
}

pub fn now() -> Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
