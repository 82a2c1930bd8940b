//! The differential harness (`common/differential.rs`) on two plain directories: they must
//! always agree, the sequences must reach the collisions and errors the harness is for, and
//! the harness must notice when the trees do not agree.

#[path = "common/differential.rs"]
mod differential;

use std::fs;
use std::path::{Path, PathBuf};

use differential::{Config, Summary, compare_trees, run, run_with};
use tempfile::TempDir;

const OPS: usize = 300;

fn trees() -> (TempDir, TempDir) {
    (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap())
}

/// The first non-empty regular file under `dir` (names sorted), not following symlinks.
fn first_nonempty_file(dir: &Path) -> Option<PathBuf> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_file() && meta.len() > 0 {
            return Some(path);
        }
        if meta.is_dir()
            && let Some(found) = first_nonempty_file(&path)
        {
            return Some(found);
        }
    }
    None
}

#[test]
fn plain_directories_agree() {
    for seed in differential::seeds() {
        let (subject, reference) = trees();
        run(seed, OPS, subject.path(), reference.path()).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Over the default seeds, every kind of operation succeeds somewhere and the errors the
/// small name space is meant to provoke all happen.
#[test]
fn the_sequences_reach_collisions_and_errors() {
    let mut total = Summary::default();
    for seed in 1..=20 {
        let (subject, reference) = trees();
        let summary = run_with(
            seed,
            OPS,
            subject.path(),
            reference.path(),
            Config::default(),
            |_| Ok(()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(summary.ops >= OPS, "seed {seed}: {} ops", summary.ops);
        total.merge(&summary);
    }
    let expected = [
        "create ok",
        "create EEXIST",
        "create EISDIR",
        "create ENOENT",
        "create ENOTDIR",
        "write ok",
        "write past-end",
        "write EISDIR",
        "append ok",
        "truncate ok",
        "truncate grow",
        "read ok",
        "read EISDIR",
        "rename ok",
        "rename replace",
        "rename ENOENT",
        "rename ENOTEMPTY",
        "rename EINVAL",
        "rename EISDIR",
        "rename ENOTDIR",
        "link ok",
        "link EEXIST",
        "link EPERM",
        "unlink ok",
        "unlink ENOENT",
        "unlink EISDIR",
        "mkdir ok",
        "mkdir EEXIST",
        "mkdir ENOENT",
        "rmdir ok",
        "rmdir ENOTEMPTY",
        "rmdir ENOTDIR",
        "chmod ok",
        "symlink ok",
        "symlink EEXIST",
        "readlink ok",
        "readlink EINVAL",
        "stat ok",
        "readdir ok",
        "readdir ENOTDIR",
        "open ok",
        "fd-write ok",
        "fd-write past-end",
        "fd-write EBADF",
        "fd-read ok",
        "fd-truncate ok",
        "fd-stat ok",
        "close ok",
    ];
    let missing: Vec<&str> = expected
        .into_iter()
        .filter(|key| total.count(key) == 0)
        .collect();
    assert!(
        missing.is_empty(),
        "never happened: {missing:?}\nall outcomes: {:#?}",
        total.outcomes
    );
}

#[test]
fn a_seed_always_builds_the_same_tree() {
    let (first, first_reference) = trees();
    let (second, second_reference) = trees();
    run(7, OPS, first.path(), first_reference.path()).unwrap();
    run(7, OPS, second.path(), second_reference.path()).unwrap();
    compare_trees(first.path(), second.path(), Config::default()).unwrap();

    let (other, other_reference) = trees();
    run(8, OPS, other.path(), other_reference.path()).unwrap();
    assert!(compare_trees(first.path(), other.path(), Config::default()).is_err());
}

/// A subject that lost a byte after the run (as a mount that failed to flush would).
#[test]
fn a_byte_flipped_after_the_run_is_noticed() {
    let (subject, reference) = trees();
    run(3, OPS, subject.path(), reference.path()).unwrap();
    let victim = first_nonempty_file(subject.path()).expect("seed 3 leaves a non-empty file");
    let mut bytes = fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(&victim, bytes).unwrap();

    let error = compare_trees(subject.path(), reference.path(), Config::default()).unwrap_err();
    let name = victim
        .strip_prefix(subject.path())
        .unwrap()
        .to_str()
        .unwrap();
    assert!(error.contains(name), "{error}");
    assert!(error.contains("bytes differ"), "{error}");
}

/// A subject that loses everything after op 100: the very next operations must disagree,
/// and the message must say which, with the seed and the operations before it.
#[test]
fn a_sabotaged_subject_is_noticed_at_the_next_op() {
    const SABOTAGED: usize = 100;
    let (subject, reference) = trees();
    let root = subject.path().to_path_buf();
    let error = run_with(
        11,
        OPS,
        subject.path(),
        reference.path(),
        Config::default(),
        |i| {
            if i == SABOTAGED {
                for entry in fs::read_dir(&root).unwrap() {
                    let path = entry.unwrap().path();
                    if fs::symlink_metadata(&path).unwrap().is_dir() {
                        fs::remove_dir_all(&path).unwrap();
                    } else {
                        fs::remove_file(&path).unwrap();
                    }
                }
            }
            Ok(())
        },
    )
    .unwrap_err();

    assert!(error.contains("LOFT_SEED=11"), "{error}");
    assert!(error.contains("subject:"), "{error}");
    assert!(error.contains("reference:"), "{error}");
    let index: usize = error
        .split("op #")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failing op index in: {error}"));
    assert!(
        index > SABOTAGED && index < SABOTAGED + 20,
        "noticed at op #{index}: {error}"
    );
    // The last operations are listed, the failing one last.
    assert!(error.contains(&format!("  #{} ", index - 1)), "{error}");
    assert!(error.contains(&format!("  #{index} ")), "{error}");
}

#[test]
fn a_tree_that_is_not_empty_is_refused() {
    let (subject, reference) = trees();
    fs::write(subject.path().join("stray"), b"x").unwrap();
    let error = run(1, OPS, subject.path(), reference.path()).unwrap_err();
    assert!(error.contains("subject tree is not empty"), "{error}");
}

#[test]
fn features_can_be_turned_off() {
    let config = Config {
        hard_links: false,
        symlinks: false,
        permissions: false,
        open_files: false,
    };
    let (subject, reference) = trees();
    let summary = run_with(1, OPS, subject.path(), reference.path(), config, |_| Ok(()))
        .unwrap_or_else(|e| panic!("{e}"));
    for op in [
        "link", "symlink", "readlink", "chmod", "open", "fd-write", "close",
    ] {
        let used: usize = summary
            .outcomes
            .iter()
            .filter(|(key, _)| key.split(' ').next() == Some(op))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(used, 0, "{op} ran: {:#?}", summary.outcomes);
    }
}
