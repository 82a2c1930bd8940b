//! The operations a simulated device performs, drawn from a small pool of names so
//! that devices often touch the same files and folders, and the record of what each
//! device last wrote where (the writes nothing on that device replaced since).

use std::collections::BTreeMap;
use std::fmt;

use rand::Rng;

use crate::content::Token;

/// Folders the workload uses; nested ones need their parent.
pub const DIRS: &[&str] = &["a", "b", "c", "a/x", "b/y"];
/// Folders files are written into ("" is the drive's root).
const FILE_DIRS: &[&str] = &["", "a", "b", "a/x", "b/y"];
const FILES: &[&str] = &["f0", "f1", "f2", "f3", "f4"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Creates or replaces a whole file (and any missing parent folder).
    Write {
        path: String,
        token: Token,
    },
    /// Reads a whole file; its content must be one write, whole.
    Read {
        path: String,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Write { path, token } => {
                write!(
                    f,
                    "write {path} (write {}, {} bytes)",
                    token.write, token.len
                )
            }
            Op::Read { path } => write!(f, "read {path}"),
            Op::Unlink { path } => write!(f, "unlink {path}"),
            Op::Mkdir { path } => write!(f, "mkdir {path}"),
            Op::Rmdir { path } => write!(f, "rmdir {path}"),
            Op::Rename { from, to } => write!(f, "rename {from} -> {to}"),
        }
    }
}

fn pick<'a>(rng: &mut impl Rng, pool: &[&'a str]) -> &'a str {
    pool[rng.random_range(0..pool.len())]
}

fn file_path(rng: &mut impl Rng) -> String {
    match pick(rng, FILE_DIRS) {
        "" => pick(rng, FILES).to_string(),
        dir => format!("{dir}/{}", pick(rng, FILES)),
    }
}

/// Draws device `device`'s next operation; `writes` counts its writes.
pub fn random_op(rng: &mut impl Rng, seed: u64, device: usize, writes: &mut u64) -> Op {
    match rng.random_range(0..100) {
        0..40 => {
            *writes += 1;
            // Mostly small files; some span several chunks.
            let len = if rng.random_bool(0.08) {
                rng.random_range(100_000..700_000)
            } else {
                rng.random_range(0..3_000)
            };
            Op::Write {
                path: file_path(rng),
                token: Token {
                    seed,
                    device,
                    write: *writes,
                    len,
                },
            }
        }
        40..55 => Op::Read {
            path: file_path(rng),
        },
        55..65 => Op::Unlink {
            path: file_path(rng),
        },
        65..80 => Op::Rename {
            from: file_path(rng),
            to: file_path(rng),
        },
        80..88 => Op::Mkdir {
            path: pick(rng, DIRS).to_string(),
        },
        88..93 => Op::Rmdir {
            path: pick(rng, DIRS).to_string(),
        },
        _ => Op::Rename {
            from: pick(rng, DIRS).to_string(),
            to: pick(rng, DIRS).to_string(),
        },
    }
}

/// Paths to the writes of one device that nothing on it replaced or removed since:
/// each must survive somewhere (current file, conflicted copy or old version).
#[derive(Clone, Debug, Default)]
pub struct Written {
    pub files: BTreeMap<String, Token>,
    /// The file each write went to (its inode on the device), where known.
    inos: BTreeMap<String, u64>,
}

impl Written {
    /// Records an operation the device completed; `file` is the inode a write went
    /// to, or the one a rename replaced or an unlink removed. Writing a file,
    /// renaming over it or unlinking it replaces what this device wrote to it
    /// before, under whatever name it had then (another device may have moved it
    /// since).
    pub fn completed(&mut self, op: &Op, file: Option<u64>) {
        if let Some(ino) = file {
            self.forget_file(ino);
        }
        match op {
            Op::Write { path, token } => {
                match file {
                    Some(ino) => self.inos.insert(path.clone(), ino),
                    None => self.inos.remove(path),
                };
                self.files.insert(path.clone(), *token);
            }
            Op::Unlink { path } => {
                self.files.remove(path);
                self.inos.remove(path);
            }
            Op::Rename { from, to } if from != to => {
                self.files.remove(to);
                self.inos.remove(to);
                let moved: Vec<String> = self
                    .files
                    .keys()
                    .filter(|path| *path == from || path.starts_with(&format!("{from}/")))
                    .cloned()
                    .collect();
                for path in moved {
                    let token = self.files.remove(&path).expect("listed above");
                    let new = format!("{to}{}", &path[from.len()..]);
                    if let Some(ino) = self.inos.remove(&path) {
                        self.inos.insert(new.clone(), ino);
                    }
                    self.files.insert(new, token);
                }
            }
            Op::Read { .. } | Op::Mkdir { .. } | Op::Rmdir { .. } | Op::Rename { .. } => {}
        }
    }

    /// Forgets the writes this device made to file `ino`.
    fn forget_file(&mut self, ino: u64) {
        let paths: Vec<String> = self
            .inos
            .iter()
            .filter(|(_, written)| **written == ino)
            .map(|(path, _)| path.clone())
            .collect();
        for path in paths {
            self.files.remove(&path);
            self.inos.remove(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn the_same_seed_draws_the_same_operations() {
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut writes = 0;
            (0..50)
                .map(|i| random_op(&mut rng, seed, i % 3, &mut writes))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn renaming_a_folder_moves_what_was_written_in_it() {
        let token = Token {
            seed: 1,
            device: 0,
            write: 1,
            len: 1,
        };
        let mut written = Written::default();
        written.completed(
            &Op::Write {
                path: "a/x/f1".into(),
                token,
            },
            Some(7),
        );
        written.completed(
            &Op::Write {
                path: "ab".into(),
                token,
            },
            Some(8),
        );
        written.completed(
            &Op::Rename {
                from: "a".into(),
                to: "c".into(),
            },
            None,
        );
        let paths: Vec<&String> = written.files.keys().collect();
        assert_eq!(paths, ["ab", "c/x/f1"]);
    }

    #[test]
    fn a_write_to_a_file_moved_by_another_device_replaces_the_earlier_one() {
        let token = |write| Token {
            seed: 1,
            device: 0,
            write,
            len: 1,
        };
        let mut written = Written::default();
        written.completed(
            &Op::Write {
                path: "b/y/f4".into(),
                token: token(4),
            },
            Some(6),
        );
        // Another device renamed b/y/f4 to b/f3; this device writes the same file.
        written.completed(
            &Op::Write {
                path: "b/f3".into(),
                token: token(6),
            },
            Some(6),
        );
        // A different file keeps its write.
        written.completed(
            &Op::Write {
                path: "a/f1".into(),
                token: token(7),
            },
            Some(9),
        );
        let kept: Vec<u64> = written.files.values().map(|t| t.write).collect();
        assert_eq!(kept, [7, 6]);
        // Another device moved a/f1 to b/y/f0; this device renames b/f3 over it.
        written.completed(
            &Op::Rename {
                from: "b/f3".into(),
                to: "b/y/f0".into(),
            },
            Some(9),
        );
        let paths: Vec<&String> = written.files.keys().collect();
        assert_eq!(paths, ["b/y/f0"]);
    }

    /// All-faults seed 171: a device wrote b/y/f0, another device renamed it to
    /// b/f3, and the first device deleted b/f3: its write went with the file.
    #[test]
    fn unlinking_a_file_moved_by_another_device_drops_the_write_to_it() {
        let mut written = Written::default();
        let token = Token {
            seed: 171,
            device: 1,
            write: 8,
            len: 1,
        };
        written.completed(
            &Op::Write {
                path: "b/y/f0".into(),
                token,
            },
            Some(14),
        );
        written.completed(
            &Op::Unlink {
                path: "b/f3".into(),
            },
            Some(14),
        );
        assert!(written.files.is_empty(), "{:?}", written.files);
    }
}
