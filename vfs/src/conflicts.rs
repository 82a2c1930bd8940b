//! Conflicted copies: when two devices change one file from the same version, the
//! server keeps the version that committed first under the name and the other beside
//! it as `name (conflicted copy from DEVICE YYYY-MM-DD).ext`. This lists them.

use serde::{Deserialize, Serialize};

use crate::ROOT_INO;
use crate::core::Vfs;
use crate::error::VfsResult;

const MARKER: &[u8] = b" (conflicted copy from ";

/// One conflicted copy and the file it is a copy of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Drive path of the conflicted copy.
    pub path: String,
    /// Drive path of the file it conflicts with.
    pub original: String,
    /// The device whose change became the copy.
    pub device: String,
    /// True when that device is this one: the copy holds this device's change.
    pub mine: bool,
}

/// Splits a conflicted copy's name into the original name and the device, or `None`
/// when `name` is not one.
pub fn parse_conflict_name(name: &[u8]) -> Option<(Vec<u8>, String)> {
    let at = name.windows(MARKER.len()).position(|w| w == MARKER)?;
    let stem = &name[..at];
    let rest = &name[at + MARKER.len()..];
    let close = rest.iter().rposition(|&b| b == b')')?;
    let (tag, ext) = (&rest[..close], &rest[close + 1..]);
    let tag = std::str::from_utf8(tag).ok()?;
    // "DEVICE YYYY-MM-DD", or "DEVICE YYYY-MM-DD N" for a later copy.
    let (head, last) = tag.rsplit_once(' ')?;
    let (device, date) = if is_date(last) {
        (head, last)
    } else {
        last.parse::<u32>().ok()?;
        head.rsplit_once(' ')?
    };
    if !is_date(date) || device.is_empty() {
        return None;
    }
    Some(([stem, ext].concat(), device.to_string()))
}

fn is_date(word: &str) -> bool {
    let b = word.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

impl Vfs {
    /// Every conflicted copy the mirror shows.
    pub fn conflicts(&self) -> VfsResult<Vec<Conflict>> {
        let found = self.rx(|db| Ok(db.entries_named_like(MARKER)?))?;
        let mut out = Vec::new();
        for (parent, name, _) in found {
            let Some((original, device)) = parse_conflict_name(&name) else {
                continue;
            };
            let Some(dir) = self.path_of(parent)? else {
                continue; // not reachable from the root
            };
            let path = |leaf: &[u8]| {
                let mut full = dir.clone();
                if full.len() > 1 {
                    full.push(b'/');
                }
                full.extend_from_slice(leaf);
                String::from_utf8_lossy(&full).into_owned()
            };
            out.push(Conflict {
                path: path(&name),
                original: path(&original),
                mine: device == self.config.device,
                device,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The drive path of a directory (`/` for the root), if it is reachable.
    fn path_of(&self, mut ino: u64) -> VfsResult<Option<Vec<u8>>> {
        let mut parts = Vec::new();
        self.rx(|db| {
            for _ in 0..4096 {
                if ino == ROOT_INO {
                    return Ok(());
                }
                match db.any_entry_of(ino)? {
                    Some((parent, name)) => {
                        parts.push(name);
                        ino = parent;
                    }
                    None => {
                        parts.clear();
                        ino = 0;
                        return Ok(());
                    }
                }
            }
            Ok(())
        })?;
        if ino != ROOT_INO {
            return Ok(None);
        }
        let mut path = Vec::new();
        for part in parts.iter().rev() {
            path.push(b'/');
            path.extend_from_slice(part);
        }
        if path.is_empty() {
            path.push(b'/');
        }
        Ok(Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_conflict_name;

    #[test]
    fn reads_conflicted_copy_names() {
        let (name, device) =
            parse_conflict_name(b"report (conflicted copy from laptop 2026-11-26).txt").unwrap();
        assert_eq!(name, b"report.txt");
        assert_eq!(device, "laptop");
        let (name, device) =
            parse_conflict_name(b".bashrc (conflicted copy from my pc 2026-11-26 2)").unwrap();
        assert_eq!(name, b".bashrc");
        assert_eq!(device, "my pc");
        assert!(parse_conflict_name(b"report.txt").is_none());
        assert!(parse_conflict_name(b"x (conflicted copy from laptop yesterday).txt").is_none());
    }
}
