//! The sync simulation's workload (`loft-sim`) on two real mounts of one drive.
//! Each seed's schedule of whole-file writes, reads, unlinks, renames of files and
//! folders, mkdir and rmdir goes through the kernel to two devices' mounts of one
//! server on loopback, as two people racing each other would. Once both mounts are
//! synced they must show the same tree, every read must have returned one write
//! whole, and every write must still be on the server: as a file, a conflicted
//! copy or a version.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::mount::Mount;
use common::{Device, TestServer};
use loft_sim::content::Token;
use loft_sim::run::Step;
use loft_sim::workload::{Op, Written};
use loft_sim::{FaultSet, SimConfig, schedule};

/// The seeds CI runs; `LOFT_SEED=N` runs one other. Seeds after the first three
/// each found a bug: 19 a write through a handle to a file removed by the other
/// device (lost), 23 a queued rename that moved the other device's file after a
/// conflict forked this one, 54 a folder the relisting took away with its files
/// when the server refused a rename over a folder.
const SEEDS: &[u64] = &[1, 2, 3, 19, 23, 54];
/// How long the two mounts get to agree once both are synced.
const SETTLE: Duration = Duration::from_secs(60);

/// Path → content hash (`None` for a folder).
type Tree = BTreeMap<String, Option<[u8; 32]>>;

/// Carries out `op` in the mount at `root`; returns the file it wrote, or the one a
/// rename replaced or an unlink removed (its inode). Refusals (a missing file, a folder not empty) are
/// part of the workload; a read that returns something other than one write, whole,
/// is not.
fn apply(root: &Path, op: &Op) -> std::io::Result<Option<u64>> {
    match op {
        Op::Write { path, token } => {
            let path = root.join(path);
            fs::create_dir_all(path.parent().expect("a parent"))?;
            let mut file = fs::File::create(path)?;
            file.write_all(&token.bytes())?;
            Ok(Some(file.metadata()?.ino()))
        }
        Op::Read { path } => {
            let content = fs::read(root.join(path))?;
            assert!(
                content.is_empty() || Token::parse(&content).is_some(),
                "{op}: read {} bytes that are no single write",
                content.len()
            );
            Ok(None)
        }
        Op::Unlink { path } => {
            let removed = fs::symlink_metadata(root.join(path)).ok().map(|m| m.ino());
            fs::remove_file(root.join(path)).map(|()| removed)
        }
        Op::Mkdir { path } => fs::create_dir(root.join(path)).map(|()| None),
        Op::Rmdir { path } => fs::remove_dir(root.join(path)).map(|()| None),
        Op::Rename { from, to } => {
            let replaced = if from != to {
                fs::symlink_metadata(root.join(to)).ok().map(|m| m.ino())
            } else {
                None
            };
            fs::rename(root.join(from), root.join(to))?;
            Ok(replaced)
        }
    }
}

fn walk(root: &Path, dir: &Path, tree: &mut Tree) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .expect("inside the mount")
            .to_string_lossy()
            .into_owned();
        if entry.file_type()?.is_dir() {
            tree.insert(rel, None);
            walk(root, &path, tree)?;
        } else {
            let content = fs::read(&path)?;
            tree.insert(rel, Some(*blake3::hash(&content).as_bytes()));
        }
    }
    Ok(())
}

/// What a file in the mount holds: the write it is, or its size and first line.
fn describe_file(path: &Path) -> String {
    match fs::read(path) {
        Ok(content) => match Token::parse(&content) {
            Some(token) => format!("device{} write {}", token.device, token.write),
            None => {
                let head = content.split(|b| *b == b'\n').next().unwrap_or_default();
                let head = String::from_utf8_lossy(&head[..head.len().min(60)]).into_owned();
                format!("{} bytes, no single write: {head:?}", content.len())
            }
        },
        Err(error) => error.to_string(),
    }
}

/// The paths where the two trees (of the mounts at `roots`) differ.
fn difference(a: Option<&Tree>, b: Option<&Tree>, roots: [&Path; 2]) -> String {
    let (Some(a), Some(b)) = (a, b) else {
        return "a tree walk failed".into();
    };
    let describe = |entry: Option<&Option<[u8; 32]>>| match entry {
        None => "missing",
        Some(None) => "folder",
        Some(Some(_)) => "file",
    };
    let paths: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    paths
        .into_iter()
        .filter(|path| a.get(*path) != b.get(*path))
        .map(|path| {
            let same_kind = describe(a.get(path)) == describe(b.get(path));
            let (x, y) = (describe(a.get(path)), describe(b.get(path)));
            if same_kind {
                let [x, y] = roots.map(|root| describe_file(&root.join(path)));
                format!("{path}: different content (laptop {x} / desktop {y})")
            } else {
                format!("{path}: laptop {x} / desktop {y}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn tree(mount: &Mount<'_>) -> Option<Tree> {
    let mut tree = Tree::new();
    // A walk can meet a name the change feed takes away under it: try again.
    walk(mount.path(), mount.path(), &mut tree).ok()?;
    Some(tree)
}

/// Every content hash the server keeps as a version of a file, in the drive or in
/// the trash; `None` when the server does not run on SQLite.
fn version_hashes(server: &TestServer) -> Option<HashSet<[u8; 32]>> {
    let path = server.data.join("meta.sqlite");
    if !path.exists() {
        return None;
    }
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the server's database");
    let mut query = db.prepare("SELECT content_hash FROM versions").unwrap();
    let hashes = query
        .query_map([], |row| row.get::<_, Vec<u8>>(0))
        .unwrap()
        .filter_map(|hash| hash.ok()?.try_into().ok())
        .collect();
    Some(hashes)
}

/// Copies the server's and both mounts' logs out of their temporary homes, which
/// go when the test fails, and names where they are. `LOFT_TEST_LOG=FILTER` makes
/// the mounts log more.
fn keep_logs(seed: u64, server: &TestServer, devices: &[Device]) -> String {
    let dir = std::env::temp_dir().join(format!("loft-mount-workload-seed-{seed}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("a folder for the logs");
    fs::write(dir.join("server.log"), server.log()).expect("the server's log");
    for device in devices {
        let log = dir.join(format!("{}.log", device.name));
        fs::write(log, device.mount_log()).expect("a mount's log");
    }
    dir.display().to_string()
}

fn run_seed(seed: u64) {
    let config = SimConfig {
        devices: 2,
        faults: FaultSet::None,
        ..SimConfig::new(seed)
    };
    let server = TestServer::start();
    server.add_user("alice");
    let devices = [
        Device::login(&server, "alice", "laptop"),
        Device::login(&server, "alice", "desktop"),
    ];
    let mounts: Vec<Mount<'_>> = devices.iter().map(|d| d.mount(&[])).collect();
    let mut written = vec![Written::default(); devices.len()];
    let mut trace = Vec::new();
    for step in schedule(&config) {
        let mut line = step.to_string();
        match &step {
            Step::Op { device, op } => match apply(mounts[*device].path(), op) {
                Ok(file) => written[*device].completed(op, file),
                Err(error) => {
                    line.push_str(&format!(" -> {error}"));
                    // Only the refusals a racing workload meets. ESTALE is the
                    // kernel's: a rename that meets a folder another device has
                    // just moved, still cached under its old name, is refused.
                    assert!(
                        matches!(
                            error.kind(),
                            ErrorKind::NotFound
                                | ErrorKind::StaleNetworkFileHandle
                                | ErrorKind::AlreadyExists
                                | ErrorKind::DirectoryNotEmpty
                                | ErrorKind::IsADirectory
                                | ErrorKind::NotADirectory
                                | ErrorKind::InvalidInput
                        ),
                        "seed {seed}: {step}: {error}\n{}",
                        trace.join("\n")
                    );
                }
            },
            Step::Pause => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("seed {seed}: a fault in a no-fault schedule: {other}"),
        }
        trace.push(line);
    }
    for mount in &mounts {
        mount.sync();
    }
    let start = Instant::now();
    let agreed = loop {
        let (a, b) = (tree(&mounts[0]), tree(&mounts[1]));
        if let (Some(a), Some(b)) = (&a, &b)
            && a == b
        {
            break a.clone();
        }
        if start.elapsed() > SETTLE {
            let logs = keep_logs(seed, &server, &devices);
            panic!(
                "seed {seed}: the mounts did not agree within {SETTLE:?}: {}\n{}\nlogs: {logs}",
                difference(a.as_ref(), b.as_ref(), [mounts[0].path(), mounts[1].path()]),
                trace.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if let Some(versions) = version_hashes(&server) {
        let kept: HashSet<[u8; 32]> = agreed.values().flatten().copied().chain(versions).collect();
        for (device, written) in written.iter().enumerate() {
            for (path, token) in &written.files {
                if !kept.contains(&token.hash()) {
                    let logs = keep_logs(seed, &server, &devices);
                    panic!(
                        "seed {seed}: device{device}'s write {} (last at {path}) is in no file, \
                         conflicted copy or version\n{}\nlogs: {logs}",
                        token.write,
                        trace.join("\n")
                    );
                }
            }
        }
    }
}

#[test]
fn the_simulated_workload_on_two_real_mounts_converges_and_keeps_every_write() {
    match loft_sim::seed_from_env() {
        Some(seed) => run_seed(seed),
        None => SEEDS.iter().copied().for_each(run_seed),
    }
}
