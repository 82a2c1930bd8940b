//! The differential file-system test (`common/differential.rs`) on a real Loft mount
//! against a plain directory: every seeded sequence of operations must have the same
//! outcomes on both, and what the server received must equal the reference (checked on
//! a fresh mount over a wiped cache).
//!
//! `LOFT_SEED=N` runs only seed N; `LOFT_SEEDS=N` runs seeds 1..=N (default 20).

mod common;

use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::differential::{self, Config};
use common::{Device, TestServer};
use tempfile::TempDir;

const OPS: usize = 250;

/// Runs `seed` in a fresh subdirectory of the mount at `root`; returns the reference
/// tree and the subdirectory's name.
fn run_seed(root: &Path, seed: u64) -> (TempDir, String) {
    let name = format!("differential-{seed}");
    let subject = root.join(&name);
    std::fs::create_dir(&subject).unwrap();
    let reference = tempfile::tempdir().unwrap();
    if let Err(error) = differential::run(seed, OPS, &subject, reference.path()) {
        panic!("{error}");
    }
    (reference, name)
}

/// Unmounts, wipes the cache, mounts again and compares each seed's tree (as the server
/// has it now) with its reference.
fn compare_after_remount(device: &Device, done: &[(u64, TempDir, String)]) {
    let mount = device.mount(&[]);
    for (seed, reference, name) in done {
        differential::compare_trees(
            &mount.path().join(name),
            reference.path(),
            Config::default(),
        )
        .unwrap_or_else(|e| {
            panic!(
                "differential test, seed {seed}: after a remount over a wiped cache the \
                     server's tree differs from the reference: {e}\n\
                     reproduce with LOFT_SEED={seed}\nmount log:\n{}",
                device.mount_log()
            )
        });
    }
    mount.unmount();
}

/// Runs `seeds` in one mount, then checks what reached the server.
fn run_seeds(seeds: &[u64]) {
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let mount = device.mount(&[]);
    let mut done = Vec::new();
    for &seed in seeds {
        let (reference, name) = run_seed(mount.path(), seed);
        done.push((seed, reference, name));
        // Each seed's changes reach the server before the next starts, so a long run
        // (LOFT_SEEDS=1000) never piles up more than one seed's journal.
        let output = device.run(&["sync", "--timeout", "120s"]);
        assert!(
            output.status.success(),
            "seed {seed}: sync: {}\nreproduce with LOFT_SEED={seed}\nmount log:\n{}",
            common::describe(&output),
            device.mount_log()
        );
    }
    mount.unmount();
    std::fs::remove_dir_all(device.cache_dir()).unwrap();
    compare_after_remount(&device, &done);
}

#[test]
fn the_mount_agrees_with_a_plain_directory() {
    run_seeds(&differential::seeds());
}

/// Seed 31: a directory opened `O_RDONLY` into a slot, then removed with `rmdir`;
/// `fstat` on the descriptor failed with ENOENT (the core forgot the directory at once)
/// where a plain directory still answers (`nlink` 0, its mode).
#[test]
fn seed_31_fstat_of_a_directory_removed_while_open() {
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let mount = device.mount(&[]);

    let dir = mount.path().join("gone");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o730)).unwrap();
    let open = std::fs::File::open(&dir).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    let meta = open.metadata().unwrap_or_else(|e| {
        panic!(
            "fstat of a removed directory: {e} (errno {:?})",
            e.raw_os_error()
        )
    });
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o7777, 0o730);
    drop(open);
    assert_eq!(
        std::fs::metadata(&dir).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );

    let (reference, name) = run_seed(mount.path(), 31);
    mount.sync();
    mount.unmount();
    std::fs::remove_dir_all(device.cache_dir()).unwrap();
    compare_after_remount(&device, &[(31, reference, name)]);
}

/// Seed 319: a file open for writing, written past what was last persisted, then given a
/// second name with `link`; `fstat` on the open descriptor said size 0. `link` answered
/// the kernel with the mirror's attributes, whose size lags while the file is being
/// written, and the kernel cached that size.
#[test]
fn seed_319_link_of_a_file_open_for_writing_keeps_its_size() {
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let mount = device.mount(&[]);

    let path = mount.path().join("open");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.write_all_at(&[7u8; 12107], 47159).unwrap();
    std::fs::hard_link(&path, mount.path().join("second")).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 59266, "fstat after link");
    assert_eq!(
        std::fs::metadata(mount.path().join("second"))
            .unwrap()
            .len(),
        59266
    );
    drop(file);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 59266);

    let (reference, name) = run_seed(mount.path(), 319);
    mount.sync();
    mount.unmount();
    std::fs::remove_dir_all(device.cache_dir()).unwrap();
    compare_after_remount(&device, &[(319, reference, name)]);
}
