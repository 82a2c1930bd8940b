//! Differential file-system test: one seeded random sequence of file operations is
//! applied to a *subject* tree (a Loft mount) and a *reference* tree (a plain directory).
//!
//! Every operation must have the same outcome on both trees: success, or the same errno,
//! and the same bytes, names, link target or attributes for the operations that return
//! something. After the sequence the two trees must be identical: names, kinds, sizes,
//! permission bits, symlink targets, bytes, hard-link grouping (two names share an inode
//! on one side exactly when they do on the other) and link counts.
//!
//! The name space is small (six names, about three levels) so that operations collide:
//! renames over existing entries and into subdirectories or into themselves, removing
//! non-empty directories, creating under a file, hard links to directories, writes far
//! past the end of a file. Paths are drawn mostly from what the *reference* tree holds
//! before each operation, so a seed always gives the same sequence on a correct reference.
//!
//! The operations: create (`O_CREAT`, maybe `O_EXCL` or `O_TRUNC`, a mode, then a write),
//! write at a random offset (often past the end: sparse), append (`O_APPEND`), truncate
//! and ftruncate to random sizes, read a range, rename (files and directories), hard link,
//! unlink, mkdir, rmdir, chmod, symlink (relative targets, so always inside the tree),
//! readlink, stat and lstat, readdir; and through up to three files held open across
//! operations (also once their names are renamed, replaced or unlinked): write, read,
//! ftruncate, fstat and close. Written bytes are random, one repeated byte or repeated
//! text; most writes are small, a few are up to 200 KiB.
//!
//! Never compared, because correct file systems legitimately differ on them: directory
//! sizes and link counts, timestamps, inode numbers (only which names share one), block
//! counts, owners, readdir order (names are sorted), and the attributes of the two roots.
//! Operations whose result depends on who runs them are avoided too: every mode keeps the
//! owner's read and write bits (and the owner's search bit on directories), no mode has
//! set-id or sticky bits, and nothing is opened `O_RDONLY|O_TRUNC`.
//!
//! ```ignore
//! for seed in differential::seeds() {
//!     let reference = tempfile::tempdir().unwrap();
//!     let subject = mount_point.join(format!("differential-{seed}"));
//!     std::fs::create_dir(&subject).unwrap();
//!     differential::run(seed, 300, &subject, reference.path()).unwrap_or_else(|e| panic!("{e}"));
//! }
//! ```
//!
//! `LOFT_SEED=N` runs only seed N (what a failure message asks for); `LOFT_SEEDS=N` runs
//! seeds 1..=N (default 20).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fmt;
use std::fs::{self, DirBuilder, File, Metadata, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Names of entries, at every level.
const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
/// Deepest directory new entries are created in (renames may build deeper trees).
const MAX_DEPTH: usize = 3;
/// Files the sequence can hold open at once (`Config::open_files`).
const SLOTS: usize = 3;
/// How many of the last operations a failure message shows.
const SHOWN_OPS: usize = 20;

// ------------------------------------------------------------------ public API

/// Which kinds of operation the sequence uses. Everything is on by default; a subject that
/// does not support a feature yet can turn it off (the sequence for a seed then differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `link(2)`, and comparing hard-link grouping and link counts.
    pub hard_links: bool,
    /// `symlink(2)` and `readlink(2)`.
    pub symlinks: bool,
    /// `chmod(2)`, creation modes, and comparing permission bits. When off, files and
    /// directories are created with 0o644 and 0o755 (less the umask) and modes are not
    /// compared.
    pub permissions: bool,
    /// Files held open across operations (up to three at a time): writes, reads, `ftruncate`
    /// and `fstat` through them while their names are renamed, replaced or unlinked.
    pub open_files: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hard_links: true,
            symlinks: true,
            permissions: true,
            open_files: true,
        }
    }
}

/// What one operation did on one tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Succeeded, returning nothing to compare.
    Ok,
    /// Failed with this errno.
    Errno(i32),
    /// Failed with an error that carries no errno (described).
    Error(String),
    /// Bytes read.
    Data(Vec<u8>),
    /// A symlink's target.
    Target(Vec<u8>),
    /// A directory's entry names, sorted.
    Names(Vec<String>),
    /// `stat`/`lstat`/`fstat`, reduced to what every correct file system agrees on.
    Attr(Attr),
}

/// The comparable part of a `stat`: directories carry only their permission bits,
/// symlinks no permission bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub kind: Kind,
    pub size: Option<u64>,
    pub perm: Option<u32>,
    pub nlink: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// What a successful run did: how many operations, and how often each operation had each
/// outcome on the reference (`"rename ENOTEMPTY"`, `"write ok"`, `"write past-end"`...).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub ops: usize,
    pub outcomes: BTreeMap<String, usize>,
}

impl Summary {
    /// How many operations had this outcome, e.g. `count("rmdir ENOTEMPTY")`.
    pub fn count(&self, key: &str) -> usize {
        self.outcomes.get(key).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, other: &Summary) {
        self.ops += other.ops;
        for (key, n) in &other.outcomes {
            *self.outcomes.entry(key.clone()).or_default() += n;
        }
    }

    fn record(&mut self, key: String) {
        *self.outcomes.entry(key).or_default() += 1;
    }
}

/// The seeds to run: `LOFT_SEED=N` alone if set, else 1..=`LOFT_SEEDS` (default 20).
pub fn seeds() -> Vec<u64> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(seed) = var("LOFT_SEED") {
        let seed = seed
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("LOFT_SEED={seed:?} is not a seed (a u64)"));
        return vec![seed];
    }
    let count: u64 = match var("LOFT_SEEDS") {
        Some(n) => n
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("LOFT_SEEDS={n:?} is not a count")),
        None => 20,
    };
    (1..=count).collect()
}

/// Applies `ops` seeded random operations (plus closing what is still open) to the empty
/// directories `subject` and `reference`, comparing every outcome and then both trees.
///
/// The error names the seed (`LOFT_SEED=N` to reproduce), the operation, both outcomes and
/// the last operations before it.
pub fn run(seed: u64, ops: usize, subject: &Path, reference: &Path) -> Result<(), String> {
    run_with(seed, ops, subject, reference, Config::default(), |_| Ok(())).map(|_| ())
}

/// [`run`] with a choice of operations, and `after_op(i)` called after operation `i` has
/// been applied to both trees and compared (to sync, drop caches, check the server, or
/// sabotage; files the sequence holds open stay open). An error from it ends the run.
pub fn run_with(
    seed: u64,
    ops: usize,
    subject: &Path,
    reference: &Path,
    config: Config,
    mut after_op: impl FnMut(usize) -> Result<(), String>,
) -> Result<Summary, String> {
    let report = Report {
        seed,
        subject,
        reference,
        log: Vec::new(),
    };
    for (what, root) in [("subject", subject), ("reference", reference)] {
        match fs::read_dir(root).map(|mut d| d.next().is_none()) {
            Ok(true) => {}
            Ok(false) => return Err(report.fail(&format!("the {what} tree is not empty"))),
            Err(e) => return Err(report.fail(&format!("cannot list the {what} tree: {e}"))),
        }
    }

    let mut generator = Generator {
        rng: StdRng::seed_from_u64(seed),
        config,
        reference,
        view: Vec::new(),
    };
    let mut run = Run {
        report,
        subject: Side::new(subject, config, false),
        reference: Side::new(reference, config, true),
        summary: Summary::default(),
    };
    for _ in 0..ops {
        let open = run.reference.open_slots();
        let op = generator.next(&open).map_err(|e| run.report.fail(&e))?;
        let i = run.step(op)?;
        after_op(i).map_err(|e| run.report.fail(&format!("after op #{i}: {e}")))?;
    }
    // Close what is still open, comparing what close(2) says (a mount may flush then).
    for slot in 0..SLOTS {
        if run.reference.slots[slot].is_some() || run.subject.slots[slot].is_some() {
            run.step(Op::Close { slot })?;
        }
    }
    let Run {
        report, summary, ..
    } = run;
    compare_trees(subject, reference, config).map_err(|e| {
        report.fail(&format!(
            "the trees differ after {} ops: {e}",
            report.log.len()
        ))
    })?;
    Ok(summary)
}

/// A sequence under way.
struct Run<'a> {
    report: Report<'a>,
    subject: Side,
    reference: Side,
    summary: Summary,
}

impl Run<'_> {
    /// Applies `op` to both trees and compares the outcomes; returns the op's index.
    fn step(&mut self, op: Op) -> Result<usize, String> {
        let subject_outcome = self.subject.apply(&op);
        let reference_outcome = self.reference.apply(&op);
        let i = self.report.log.len();
        self.report
            .log
            .push(format!("#{i} {op} => {reference_outcome}"));
        self.summary.ops += 1;
        self.summary
            .record(format!("{} {}", op.name(), reference_outcome.class()));
        for note in &self.reference.notes {
            self.summary.record(format!("{} {note}", op.name()));
        }
        if subject_outcome == reference_outcome {
            return Ok(i);
        }
        let mut text = format!(
            "op #{i} had different outcomes\n  op:        {op}\n  subject:   {subject_outcome}\n  reference: {reference_outcome}"
        );
        if let (Outcome::Data(s), Outcome::Data(r)) = (&subject_outcome, &reference_outcome) {
            text.push_str(&format!("\n  {}", bytes_difference(s, r)));
        }
        Err(self.report.fail(&text))
    }
}

/// Compares two whole trees (not their roots' own attributes): names, kinds, sizes,
/// permission bits, symlink targets, bytes, hard-link grouping and link counts (of
/// everything but directories), as far as `config` enables them. The error describes the
/// first difference.
pub fn compare_trees(subject: &Path, reference: &Path, config: Config) -> Result<(), String> {
    let walk_of = |what: &str, root: &Path| {
        walk(root).map_err(|e| format!("cannot walk the {what} tree {}: {e}", root.display()))
    };
    let subject_entries = walk_of("subject", subject)?;
    let reference_entries = walk_of("reference", reference)?;
    let subject_map: BTreeMap<&str, &Metadata> = subject_entries
        .iter()
        .map(|e| (e.path.as_str(), &e.meta))
        .collect();
    let reference_map: BTreeMap<&str, &Metadata> = reference_entries
        .iter()
        .map(|e| (e.path.as_str(), &e.meta))
        .collect();

    let paths: BTreeSet<&str> = subject_map
        .keys()
        .chain(reference_map.keys())
        .copied()
        .collect();
    for path in &paths {
        match (subject_map.get(path), reference_map.get(path)) {
            (Some(m), None) => {
                return Err(format!(
                    "{path:?} exists only in the subject (a {})",
                    kind_of(m).name()
                ));
            }
            (None, Some(m)) => {
                return Err(format!(
                    "{path:?} exists only in the reference (a {})",
                    kind_of(m).name()
                ));
            }
            _ => {}
        }
    }

    for (path, s) in &subject_map {
        let r = reference_map[path];
        let differ = |what: &str, s: &dyn fmt::Display, r: &dyn fmt::Display| {
            Err(format!(
                "{path:?}: {what} {s} in the subject, {r} in the reference"
            ))
        };
        let (sk, rk) = (kind_of(s), kind_of(r));
        if sk != rk {
            return differ("is a", &sk.name(), &rk.name());
        }
        if config.permissions && matches!(sk, Kind::File | Kind::Dir) && perm(s) != perm(r) {
            return differ("has mode", &Mode(perm(s)), &Mode(perm(r)));
        }
        if sk == Kind::Symlink {
            let target = |root: &Path, what: &str| {
                fs::read_link(root.join(path))
                    .map(|t| t.into_os_string().into_vec())
                    .map_err(|e| format!("{path:?}: cannot read the link in the {what}: {e}"))
            };
            let (st, rt) = (target(subject, "subject")?, target(reference, "reference")?);
            if st != rt {
                return differ("points to", &Quoted(&st), &Quoted(&rt));
            }
        }
        if sk != Kind::Dir {
            if s.len() != r.len() {
                return differ("has size", &s.len(), &r.len());
            }
            if config.hard_links && s.nlink() != r.nlink() {
                return differ("has link count", &s.nlink(), &r.nlink());
            }
        }
        if sk == Kind::File {
            let read = |root: &Path, what: &str| {
                fs::read(root.join(path))
                    .map_err(|e| format!("{path:?}: cannot read it in the {what}: {e}"))
            };
            let (sb, rb) = (read(subject, "subject")?, read(reference, "reference")?);
            if sb != rb {
                return Err(format!(
                    "{path:?}: the bytes differ: {}",
                    bytes_difference(&sb, &rb)
                ));
            }
        }
    }

    if config.hard_links {
        let subject_groups = link_groups(&subject_entries);
        let reference_groups = link_groups(&reference_entries);
        for (path, s) in &subject_groups {
            let r = &reference_groups[path];
            if s != r {
                return Err(format!(
                    "{path:?}: shares its inode with {s:?} in the subject, with {r:?} in the reference"
                ));
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ operations

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Append,
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        path: String,
        exclusive: bool,
        truncate: bool,
        mode: u32,
        data: Vec<u8>,
    },
    Write {
        path: String,
        offset: u64,
        data: Vec<u8>,
    },
    Append {
        path: String,
        data: Vec<u8>,
    },
    Truncate {
        path: String,
        size: u64,
        via_fd: bool,
    },
    Read {
        path: String,
        offset: u64,
        len: usize,
    },
    Rename {
        from: String,
        to: String,
    },
    Link {
        from: String,
        to: String,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
        mode: u32,
    },
    Rmdir {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Symlink {
        target: String,
        path: String,
    },
    Readlink {
        path: String,
    },
    Stat {
        path: String,
        follow: bool,
    },
    ReadDir {
        path: String,
    },
    Open {
        slot: usize,
        path: String,
        access: Access,
        create: bool,
        truncate: bool,
        mode: u32,
    },
    FdWrite {
        slot: usize,
        offset: u64,
        data: Vec<u8>,
        /// Whether the file was opened with `O_APPEND` (then `offset` is not used).
        append: bool,
    },
    FdRead {
        slot: usize,
        offset: u64,
        len: usize,
    },
    FdTruncate {
        slot: usize,
        size: u64,
    },
    FdStat {
        slot: usize,
    },
    Close {
        slot: usize,
    },
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Write { .. } => "write",
            Op::Append { .. } => "append",
            Op::Truncate { .. } => "truncate",
            Op::Read { .. } => "read",
            Op::Rename { .. } => "rename",
            Op::Link { .. } => "link",
            Op::Unlink { .. } => "unlink",
            Op::Mkdir { .. } => "mkdir",
            Op::Rmdir { .. } => "rmdir",
            Op::Chmod { .. } => "chmod",
            Op::Symlink { .. } => "symlink",
            Op::Readlink { .. } => "readlink",
            Op::Stat { .. } => "stat",
            Op::ReadDir { .. } => "readdir",
            Op::Open { .. } => "open",
            Op::FdWrite { .. } => "fd-write",
            Op::FdRead { .. } => "fd-read",
            Op::FdTruncate { .. } => "fd-truncate",
            Op::FdStat { .. } => "fd-stat",
            Op::Close { .. } => "close",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = |p: &str| {
            if p.is_empty() {
                "/".to_string()
            } else {
                format!("{p:?}")
            }
        };
        match self {
            Op::Create {
                path: p,
                exclusive,
                truncate,
                mode,
                data,
            } => {
                write!(f, "create {}", path(p))?;
                if *exclusive {
                    write!(f, " O_EXCL")?;
                }
                if *truncate {
                    write!(f, " O_TRUNC")?;
                }
                write!(
                    f,
                    " mode {}, then write {} bytes at 0",
                    Mode(*mode),
                    data.len()
                )
            }
            Op::Write {
                path: p,
                offset,
                data,
            } => write!(f, "write {} at {offset}, {} bytes", path(p), data.len()),
            Op::Append { path: p, data } => {
                write!(f, "append (O_APPEND) to {}, {} bytes", path(p), data.len())
            }
            Op::Truncate {
                path: p,
                size,
                via_fd,
            } => {
                let how = if *via_fd { "ftruncate" } else { "truncate" };
                write!(f, "{how} {} to {size}", path(p))
            }
            Op::Read {
                path: p,
                offset,
                len,
            } => write!(f, "read {} at {offset}, {len} bytes", path(p)),
            Op::Rename { from, to } => write!(f, "rename {} -> {}", path(from), path(to)),
            Op::Link { from, to } => write!(f, "link {} as {}", path(from), path(to)),
            Op::Unlink { path: p } => write!(f, "unlink {}", path(p)),
            Op::Mkdir { path: p, mode } => write!(f, "mkdir {} mode {}", path(p), Mode(*mode)),
            Op::Rmdir { path: p } => write!(f, "rmdir {}", path(p)),
            Op::Chmod { path: p, mode } => write!(f, "chmod {} {}", path(p), Mode(*mode)),
            Op::Symlink { target, path: p } => write!(f, "symlink {} -> {target:?}", path(p)),
            Op::Readlink { path: p } => write!(f, "readlink {}", path(p)),
            Op::Stat { path: p, follow } => {
                write!(f, "{} {}", if *follow { "stat" } else { "lstat" }, path(p))
            }
            Op::ReadDir { path: p } => write!(f, "readdir {}", path(p)),
            Op::Open {
                slot,
                path: p,
                access,
                create,
                truncate,
                mode,
            } => {
                let access = match access {
                    Access::Read => "O_RDONLY",
                    Access::Write => "O_WRONLY",
                    Access::ReadWrite => "O_RDWR",
                    Access::Append => "O_WRONLY|O_APPEND",
                };
                write!(f, "open fd{slot} = {} {access}", path(p))?;
                if *create {
                    write!(f, "|O_CREAT mode {}", Mode(*mode))?;
                }
                if *truncate {
                    write!(f, "|O_TRUNC")?;
                }
                Ok(())
            }
            Op::FdWrite {
                slot,
                data,
                append: true,
                ..
            } => write!(f, "fd{slot}: write {} bytes (O_APPEND)", data.len()),
            Op::FdWrite {
                slot,
                offset,
                data,
                append: false,
            } => write!(f, "fd{slot}: write at {offset}, {} bytes", data.len()),
            Op::FdRead { slot, offset, len } => {
                write!(f, "fd{slot}: read at {offset}, {len} bytes")
            }
            Op::FdTruncate { slot, size } => write!(f, "fd{slot}: ftruncate to {size}"),
            Op::FdStat { slot } => write!(f, "fd{slot}: fstat"),
            Op::Close { slot } => write!(f, "fd{slot}: close"),
        }
    }
}

// ------------------------------------------------------------------ applying

/// One tree, with the files the sequence holds open in it.
struct Side {
    root: PathBuf,
    config: Config,
    slots: Vec<Option<Slot>>,
    /// Whether to note facts about each operation (only on the reference: probing for them
    /// must not change what the subject sees).
    probe: bool,
    /// Facts about the last operation worth counting ("past-end" for a write beyond the
    /// end of the file, "replace" for a rename over an existing name...).
    notes: Vec<&'static str>,
}

struct Slot {
    file: File,
    append: bool,
}

impl Side {
    fn new(root: &Path, config: Config, probe: bool) -> Side {
        Side {
            root: root.to_path_buf(),
            config,
            probe,
            slots: (0..SLOTS).map(|_| None).collect(),
            notes: Vec::new(),
        }
    }

    fn path(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        self.notes.clear();
        match self.try_apply(op) {
            Ok(outcome) => outcome,
            Err(e) => match e.raw_os_error() {
                Some(errno) => Outcome::Errno(errno),
                None => Outcome::Error(format!("{:?}: {e}", e.kind())),
            },
        }
    }

    fn try_apply(&mut self, op: &Op) -> io::Result<Outcome> {
        match op {
            Op::Create {
                path,
                exclusive,
                truncate,
                mode,
                data,
            } => {
                let mut options = OpenOptions::new();
                options.write(true).mode(self.file_mode(*mode));
                if *exclusive {
                    options.create_new(true);
                } else {
                    options.create(true).truncate(*truncate);
                }
                let file = options.open(self.path(path))?;
                file.write_all_at(data, 0)?;
                close(file)?;
            }
            Op::Write { path, offset, data } => {
                let file = OpenOptions::new().write(true).open(self.path(path))?;
                if self.probe && file.metadata()?.len() < *offset {
                    self.notes.push("past-end");
                }
                file.write_all_at(data, *offset)?;
                close(file)?;
            }
            Op::Append { path, data } => {
                let mut file = OpenOptions::new().append(true).open(self.path(path))?;
                file.write_all(data)?;
                close(file)?;
            }
            Op::Truncate { path, size, via_fd } => {
                if *via_fd {
                    let file = OpenOptions::new().write(true).open(self.path(path))?;
                    if self.probe && file.metadata()?.len() < *size {
                        self.notes.push("grow");
                    }
                    file.set_len(*size)?;
                    close(file)?;
                } else {
                    truncate(&self.path(path), *size)?;
                }
            }
            Op::Read { path, offset, len } => {
                let file = File::open(self.path(path))?;
                let data = read_range(&file, *offset, *len)?;
                close(file)?;
                return Ok(Outcome::Data(data));
            }
            Op::Rename { from, to } => {
                if self.probe && fs::symlink_metadata(self.path(to)).is_ok() {
                    self.notes.push("replace");
                }
                fs::rename(self.path(from), self.path(to))?;
            }
            Op::Link { from, to } => fs::hard_link(self.path(from), self.path(to))?,
            Op::Unlink { path } => fs::remove_file(self.path(path))?,
            Op::Mkdir { path, mode } => DirBuilder::new()
                .mode(self.dir_mode(*mode))
                .create(self.path(path))?,
            Op::Rmdir { path } => fs::remove_dir(self.path(path))?,
            Op::Chmod { path, mode } => {
                fs::set_permissions(self.path(path), Permissions::from_mode(*mode))?
            }
            Op::Symlink { target, path } => std::os::unix::fs::symlink(target, self.path(path))?,
            Op::Readlink { path } => {
                let target = fs::read_link(self.path(path))?;
                return Ok(Outcome::Target(target.into_os_string().into_vec()));
            }
            Op::Stat { path, follow } => {
                let meta = if *follow {
                    fs::metadata(self.path(path))?
                } else {
                    fs::symlink_metadata(self.path(path))?
                };
                return Ok(Outcome::Attr(self.attr(&meta)));
            }
            Op::ReadDir { path } => {
                let mut names = Vec::new();
                for entry in fs::read_dir(self.path(path))? {
                    names.push(entry?.file_name().to_string_lossy().into_owned());
                }
                names.sort();
                return Ok(Outcome::Names(names));
            }
            Op::Open {
                slot,
                path,
                access,
                create,
                truncate,
                mode,
            } => {
                if let Some(old) = self.slots[*slot].take() {
                    close(old.file)?;
                }
                let mut options = OpenOptions::new();
                match access {
                    Access::Read => options.read(true),
                    Access::Write => options.write(true),
                    Access::ReadWrite => options.read(true).write(true),
                    Access::Append => options.append(true),
                };
                options
                    .create(*create)
                    .truncate(*truncate)
                    .mode(self.file_mode(*mode));
                let file = options.open(self.path(path))?;
                self.slots[*slot] = Some(Slot {
                    file,
                    append: *access == Access::Append,
                });
            }
            Op::FdWrite {
                slot, offset, data, ..
            } => {
                let slot = self.slot(*slot)?;
                if slot.append {
                    (&slot.file).write_all(data)?;
                } else {
                    let past_end = self.probe && slot.file.metadata()?.len() < *offset;
                    slot.file.write_all_at(data, *offset)?;
                    if past_end {
                        self.notes.push("past-end");
                    }
                }
            }
            Op::FdRead { slot, offset, len } => {
                let data = read_range(&self.slot(*slot)?.file, *offset, *len)?;
                return Ok(Outcome::Data(data));
            }
            Op::FdTruncate { slot, size } => self.slot(*slot)?.file.set_len(*size)?,
            Op::FdStat { slot } => {
                let meta = self.slot(*slot)?.file.metadata()?;
                return Ok(Outcome::Attr(self.attr(&meta)));
            }
            Op::Close { slot } => match self.slots[*slot].take() {
                Some(old) => close(old.file)?,
                None => return Err(io::Error::from_raw_os_error(libc::EBADF)),
            },
        }
        Ok(Outcome::Ok)
    }

    /// For each slot, `Some(opened with O_APPEND)` when a file is open in it.
    fn open_slots(&self) -> Vec<Option<bool>> {
        self.slots
            .iter()
            .map(|slot| slot.as_ref().map(|s| s.append))
            .collect()
    }

    /// The open file in `slot`, or EBADF (the same on both sides: no file system is asked).
    fn slot(&self, slot: usize) -> io::Result<&Slot> {
        self.slots[slot]
            .as_ref()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    fn file_mode(&self, mode: u32) -> u32 {
        if self.config.permissions { mode } else { 0o644 }
    }

    fn dir_mode(&self, mode: u32) -> u32 {
        if self.config.permissions { mode } else { 0o755 }
    }

    fn attr(&self, meta: &Metadata) -> Attr {
        let kind = kind_of(meta);
        let perm =
            (self.config.permissions && matches!(kind, Kind::File | Kind::Dir)).then(|| perm(meta));
        if kind == Kind::Dir {
            return Attr {
                kind,
                size: None,
                perm,
                nlink: None,
            };
        }
        Attr {
            kind,
            size: Some(meta.len()),
            perm,
            nlink: self.config.hard_links.then(|| meta.nlink()),
        }
    }
}

/// Reads up to `len` bytes at `offset`, stopping early only at the end of the file (a
/// short read is not a difference).
fn read_range(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut data = vec![0; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut data[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    data.truncate(done);
    Ok(data)
}

/// `close(2)`, reporting its error (a file system may flush, and fail, there).
fn close(file: File) -> io::Result<()> {
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just released by its `File`, so it is open and owned by nobody else.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `truncate(2)` by path (a different request to a file system than `ftruncate`).
fn truncate(path: &Path, size: u64) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    let size =
        libc::off_t::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::truncate(path.as_ptr(), size) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

// ------------------------------------------------------------------ generating

/// The operation kinds and how often each is drawn.
#[derive(Clone, Copy)]
enum OpKind {
    Create,
    Write,
    Append,
    Truncate,
    Read,
    Rename,
    Link,
    Unlink,
    Mkdir,
    Rmdir,
    Chmod,
    Symlink,
    Readlink,
    Stat,
    ReadDir,
    Open,
    FdWrite,
    FdRead,
    FdTruncate,
    FdStat,
    Close,
}

/// Where a path is drawn from.
#[derive(Clone, Copy)]
enum Pick {
    /// An existing regular file (in the reference).
    File,
    /// An existing directory (not the root).
    Dir,
    /// An existing entry that is not a directory.
    NonDir,
    Symlink,
    /// Any existing entry.
    Any,
    /// A name under an existing directory (new more often than not).
    New,
    /// Any path of the name space.
    Random,
}

struct Generator<'a> {
    rng: StdRng,
    config: Config,
    reference: &'a Path,
    /// The reference tree before this operation, sorted.
    view: Vec<(String, Kind)>,
}

impl Generator<'_> {
    /// The next operation, given the reference tree and `open`, which slots hold a file in
    /// the reference (see [`Side::open_slots`]).
    fn next(&mut self, open: &[Option<bool>]) -> Result<Op, String> {
        let entries = walk(self.reference).map_err(|e| {
            format!(
                "cannot walk the reference tree {}: {e}",
                self.reference.display()
            )
        })?;
        self.view = entries
            .into_iter()
            .map(|e| {
                let kind = kind_of(&e.meta);
                (e.path, kind)
            })
            .collect();

        let config = self.config;
        let mut kinds = vec![
            (OpKind::Create, 10),
            (OpKind::Write, 10),
            (OpKind::Append, 5),
            (OpKind::Truncate, 6),
            (OpKind::Read, 8),
            (OpKind::Rename, 10),
            (OpKind::Unlink, 6),
            (OpKind::Mkdir, 8),
            (OpKind::Rmdir, 5),
            (OpKind::Stat, 5),
            (OpKind::ReadDir, 3),
        ];
        if config.hard_links {
            kinds.push((OpKind::Link, 4));
        }
        if config.permissions {
            kinds.push((OpKind::Chmod, 3));
        }
        if config.symlinks {
            kinds.extend([(OpKind::Symlink, 3), (OpKind::Readlink, 2)]);
        }
        if config.open_files {
            kinds.extend([
                (OpKind::Open, 5),
                (OpKind::FdWrite, 6),
                (OpKind::FdRead, 3),
                (OpKind::FdTruncate, 2),
                (OpKind::FdStat, 2),
                (OpKind::Close, 2),
            ]);
        }
        use Pick::*;
        let data_path = [(File, 75), (Any, 15), (Random, 10)];
        let op = match self.weighted(&kinds) {
            OpKind::Create => Op::Create {
                path: self.path(&[(New, 50), (File, 35), (Any, 5), (Random, 10)]),
                exclusive: self.rng.random_bool(0.3),
                truncate: self.rng.random_bool(0.3),
                mode: self.file_mode(),
                data: self.data(),
            },
            OpKind::Write => Op::Write {
                path: self.path(&data_path),
                offset: self.offset(),
                data: self.data(),
            },
            OpKind::Append => Op::Append {
                path: self.path(&data_path),
                data: self.data(),
            },
            OpKind::Truncate => Op::Truncate {
                path: self.path(&data_path),
                size: self.size(),
                via_fd: self.rng.random_bool(0.5),
            },
            OpKind::Read => Op::Read {
                path: self.path(&data_path),
                offset: self.offset(),
                len: self.read_len(),
            },
            OpKind::Rename => Op::Rename {
                from: self.path(&[(Any, 85), (Random, 15)]),
                to: self.path(&[(New, 55), (Any, 35), (Random, 10)]),
            },
            OpKind::Link => Op::Link {
                from: self.path(&[(NonDir, 60), (Any, 25), (Random, 15)]),
                to: self.path(&[(New, 70), (Any, 20), (Random, 10)]),
            },
            OpKind::Unlink => Op::Unlink {
                path: self.path(&[(NonDir, 70), (Any, 20), (Random, 10)]),
            },
            OpKind::Mkdir => Op::Mkdir {
                path: self.path(&[(New, 80), (Any, 10), (Random, 10)]),
                mode: self.dir_mode(),
            },
            OpKind::Rmdir => Op::Rmdir {
                path: self.path(&[(Dir, 75), (Any, 15), (Random, 10)]),
            },
            OpKind::Chmod => {
                let path = self.path(&[(Any, 85), (Random, 15)]);
                // chmod follows symlinks: what it changes decides which bits must stay.
                let is_dir = fs::metadata(self.reference.join(&path)).is_ok_and(|m| m.is_dir());
                let mode = if is_dir {
                    self.dir_mode()
                } else {
                    self.file_mode()
                };
                Op::Chmod { path, mode }
            }
            OpKind::Symlink => Op::Symlink {
                // Relative names only: wherever the link is, it points inside the tree
                // and never at the root (whose attributes differ).
                target: self.random_path(2),
                path: self.path(&[(New, 70), (Any, 20), (Random, 10)]),
            },
            OpKind::Readlink => Op::Readlink {
                path: self.path(&[(Symlink, 60), (Any, 25), (Random, 15)]),
            },
            OpKind::Stat => Op::Stat {
                path: self.path(&[(Any, 85), (Random, 15)]),
                follow: self.rng.random_bool(0.5),
            },
            OpKind::ReadDir => Op::ReadDir {
                path: if self.rng.random_bool(0.2) {
                    String::new()
                } else {
                    self.path(&[(Dir, 80), (Any, 10), (Random, 10)])
                },
            },
            OpKind::Open => {
                let slot = self.slot(open, false);
                let access = self.weighted(&[
                    (Access::Read, 2),
                    (Access::Write, 2),
                    (Access::ReadWrite, 3),
                    (Access::Append, 2),
                ]);
                let create = access != Access::Read && self.rng.random_bool(0.4);
                let truncate = matches!(access, Access::Write | Access::ReadWrite)
                    && self.rng.random_bool(0.2);
                Op::Open {
                    slot,
                    path: self.path(&[(File, 65), (New, 15), (Any, 10), (Random, 10)]),
                    access,
                    create,
                    truncate,
                    mode: self.file_mode(),
                }
            }
            OpKind::FdWrite => {
                let slot = self.slot(open, true);
                Op::FdWrite {
                    slot,
                    offset: self.offset(),
                    data: self.data(),
                    append: open[slot] == Some(true),
                }
            }
            OpKind::FdRead => Op::FdRead {
                slot: self.slot(open, true),
                offset: self.offset(),
                len: self.read_len(),
            },
            OpKind::FdTruncate => Op::FdTruncate {
                slot: self.slot(open, true),
                size: self.size(),
            },
            OpKind::FdStat => Op::FdStat {
                slot: self.slot(open, true),
            },
            OpKind::Close => Op::Close {
                slot: self.slot(open, true),
            },
        };
        Ok(op)
    }

    fn weighted<T: Copy>(&mut self, choices: &[(T, u32)]) -> T {
        let total: u32 = choices.iter().map(|(_, w)| w).sum();
        let mut n = self.rng.random_range(0..total);
        for (choice, weight) in choices {
            if n < *weight {
                return *choice;
            }
            n -= weight;
        }
        unreachable!("a draw below the total weight")
    }

    fn path(&mut self, choices: &[(Pick, u32)]) -> String {
        let pick = self.weighted(choices);
        let wanted = |kind: Kind| match pick {
            Pick::File => kind == Kind::File,
            Pick::Dir => kind == Kind::Dir,
            Pick::NonDir => kind != Kind::Dir,
            Pick::Symlink => kind == Kind::Symlink,
            Pick::Any => true,
            Pick::New | Pick::Random => false,
        };
        let candidates: Vec<&str> = self
            .view
            .iter()
            .filter(|(_, kind)| wanted(*kind))
            .map(|(path, _)| path.as_str())
            .collect();
        match pick {
            Pick::New => {
                let mut parents: Vec<String> = vec![String::new()];
                parents.extend(
                    self.view
                        .iter()
                        .filter(|(p, k)| *k == Kind::Dir && p.split('/').count() < MAX_DEPTH)
                        .map(|(p, _)| p.clone()),
                );
                let parent = parents[self.rng.random_range(0..parents.len())].clone();
                let name = NAMES[self.rng.random_range(0..NAMES.len())];
                if parent.is_empty() {
                    name.to_string()
                } else {
                    format!("{parent}/{name}")
                }
            }
            _ if candidates.is_empty() => self.random_path(MAX_DEPTH),
            Pick::Random => self.random_path(MAX_DEPTH),
            _ => candidates[self.rng.random_range(0..candidates.len())].to_string(),
        }
    }

    /// A path of one to `max_depth` names, shallow ones more often.
    fn random_path(&mut self, max_depth: usize) -> String {
        let depth = self
            .weighted(&[(1usize, 50), (2, 35), (3, 15)])
            .min(max_depth);
        (0..depth)
            .map(|_| NAMES[self.rng.random_range(0..NAMES.len())])
            .collect::<Vec<_>>()
            .join("/")
    }

    /// A slot: mostly one that holds a file (`used`) or one that does not, sometimes any
    /// (for EBADF, and for replacing an open file).
    fn slot(&mut self, open: &[Option<bool>], used: bool) -> usize {
        let fitting: Vec<usize> = (0..SLOTS)
            .filter(|&slot| open[slot].is_some() == used)
            .collect();
        if fitting.is_empty() || self.rng.random_bool(0.15) {
            self.rng.random_range(0..SLOTS)
        } else {
            fitting[self.rng.random_range(0..fitting.len())]
        }
    }

    /// Owner read and write always (who runs the test must not matter), the rest random.
    fn file_mode(&mut self) -> u32 {
        0o600 | (self.rng.random_range(0..2u32) << 6) | self.rng.random_range(0..0o100u32)
    }

    /// Owner read, write and search always, the rest random.
    fn dir_mode(&mut self) -> u32 {
        0o700 | self.rng.random_range(0..0o100u32)
    }

    fn offset(&mut self) -> u64 {
        let max = self.weighted(&[(4096u64, 50), (64 * 1024, 35), (1024 * 1024, 15)]);
        self.rng.random_range(0..=max)
    }

    fn size(&mut self) -> u64 {
        if self.rng.random_bool(0.25) {
            0
        } else {
            self.offset()
        }
    }

    fn read_len(&mut self) -> usize {
        let max = self.weighted(&[(8192usize, 80), (256 * 1024, 20)]);
        self.rng.random_range(0..=max)
    }

    /// Bytes to write: random, one repeated byte, or repeated text (some compress, some
    /// do not).
    fn data(&mut self) -> Vec<u8> {
        let max = self.weighted(&[(512usize, 70), (16 * 1024, 25), (200 * 1024, 5)]);
        let len = self.rng.random_range(0..=max);
        let mut data = vec![0; len];
        match self.rng.random_range(0..3) {
            0 => self.rng.fill_bytes(&mut data),
            1 => data.fill(self.rng.random()),
            _ => {
                let word: Vec<u8> = (0..self.rng.random_range(1..24))
                    .map(|_| self.rng.random_range(b' '..=b'~'))
                    .collect();
                for (i, byte) in data.iter_mut().enumerate() {
                    *byte = word[i % word.len()];
                }
            }
        }
        data
    }
}

// ------------------------------------------------------------------ trees

struct Entry {
    /// Relative to the root, `/`-separated.
    path: String,
    /// Not following symlinks.
    meta: Metadata,
}

/// Every entry under `root` (not the root itself), depth first, names sorted, symlinks not
/// followed.
fn walk(root: &Path) -> io::Result<Vec<Entry>> {
    fn walk_into(root: &Path, dir: &str, entries: &mut Vec<Entry>) -> io::Result<()> {
        let full = if dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(dir)
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(&full)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        for name in names {
            let path = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let meta = fs::symlink_metadata(full.join(&name))?;
            let is_dir = meta.is_dir();
            entries.push(Entry {
                path: path.clone(),
                meta,
            });
            if is_dir {
                walk_into(root, &path, entries)?;
            }
        }
        Ok(())
    }
    let mut entries = Vec::new();
    walk_into(root, "", &mut entries)?;
    Ok(entries)
}

/// For every entry that is not a directory, the other names of its inode, sorted.
fn link_groups(entries: &[Entry]) -> BTreeMap<String, Vec<String>> {
    let mut by_inode: BTreeMap<(u64, u64), Vec<&str>> = BTreeMap::new();
    for entry in entries.iter().filter(|e| !e.meta.is_dir()) {
        by_inode
            .entry((entry.meta.dev(), entry.meta.ino()))
            .or_default()
            .push(&entry.path);
    }
    let mut groups = BTreeMap::new();
    for names in by_inode.values() {
        for name in names {
            let mut others: Vec<String> = names
                .iter()
                .filter(|n| *n != name)
                .map(|n| n.to_string())
                .collect();
            others.sort();
            groups.insert(name.to_string(), others);
        }
    }
    groups
}

fn kind_of(meta: &Metadata) -> Kind {
    let ft = meta.file_type();
    if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Other
    }
}

fn perm(meta: &Metadata) -> u32 {
    meta.mode() & 0o7777
}

// ------------------------------------------------------------------ reporting

struct Report<'a> {
    seed: u64,
    subject: &'a Path,
    reference: &'a Path,
    /// Every operation so far with its outcome on the reference.
    log: Vec<String>,
}

impl Report<'_> {
    fn fail(&self, what: &str) -> String {
        let mut text = format!(
            "differential test, seed {}: {what}\n\
             reproduce with LOFT_SEED={}\n\
             subject tree:   {}\n\
             reference tree: {}\n",
            self.seed,
            self.seed,
            self.subject.display(),
            self.reference.display()
        );
        if self.log.is_empty() {
            text.push_str("no operation ran\n");
        } else {
            let shown = self.log.len().min(SHOWN_OPS);
            text.push_str(&format!(
                "last {shown} of {} ops (with the reference's outcome):\n",
                self.log.len()
            ));
            for line in &self.log[self.log.len() - shown..] {
                text.push_str(&format!("  {line}\n"));
            }
        }
        text
    }
}

fn bytes_difference(s: &[u8], r: &[u8]) -> String {
    match s.iter().zip(r).position(|(a, b)| a != b) {
        Some(at) => format!(
            "{} bytes in the subject, {} in the reference, first difference at byte {at} ({:#04x} vs {:#04x})",
            s.len(),
            r.len(),
            s[at],
            r[at]
        ),
        None => format!(
            "{} bytes in the subject, {} in the reference, equal as far as both go",
            s.len(),
            r.len()
        ),
    }
}

impl Outcome {
    /// "ok" or the errno's name, for [`Summary`].
    fn class(&self) -> String {
        match self {
            Outcome::Errno(errno) => errno_name(*errno),
            Outcome::Error(_) => "error".to_string(),
            _ => "ok".to_string(),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => write!(f, "ok"),
            Outcome::Errno(errno) => write!(
                f,
                "{} ({})",
                errno_name(*errno),
                io::Error::from_raw_os_error(*errno)
            ),
            Outcome::Error(e) => write!(f, "error without errno: {e}"),
            Outcome::Data(data) => {
                write!(f, "{} bytes", data.len())?;
                if !data.is_empty() {
                    let head: Vec<String> =
                        data.iter().take(8).map(|b| format!("{b:02x}")).collect();
                    write!(
                        f,
                        " [{}{}]",
                        head.join(" "),
                        if data.len() > 8 { " ..." } else { "" }
                    )?;
                    write!(f, " fnv {:016x}", fnv(data))?;
                }
                Ok(())
            }
            Outcome::Target(target) => write!(f, "-> {}", Quoted(target)),
            Outcome::Names(names) => write!(f, "[{}]", names.join(", ")),
            Outcome::Attr(attr) => {
                write!(f, "{}", attr.kind.name())?;
                if let Some(size) = attr.size {
                    write!(f, " size {size}")?;
                }
                if let Some(perm) = attr.perm {
                    write!(f, " mode {}", Mode(perm))?;
                }
                if let Some(nlink) = attr.nlink {
                    write!(f, " nlink {nlink}")?;
                }
                Ok(())
            }
        }
    }
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Other => "special file",
        }
    }
}

struct Mode(u32);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

struct Quoted<'a>(&'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.0))
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ESTALE => "ESTALE",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EDQUOT => "EDQUOT",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}
