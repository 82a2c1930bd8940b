//! The mount's local cache against a real server on loopback: after a wiped cache a
//! tree of placeholders lists and stats without downloading, and a read fetches only
//! the chunk it needs; a pinned folder stays readable with the server gone and
//! online-only frees it; reads stay within `--cache-size`, and pinning beyond it
//! fails loudly while other reads get ENOSPC.

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};

use common::mount::Mount;
use common::{
    COMMAND_DEADLINE, Device, MIB, TestServer, describe, random_bytes, random_file,
    run_with_deadline,
};
use rand::{RngCore, SeedableRng};

const GIB: usize = 1024 * MIB;
/// The largest chunk the chunker cuts.
const MAX_CHUNK: u64 = 4 * MIB as u64;

fn run(program: &str, args: &[&str], path: &Path) -> Output {
    let mut command = Command::new(program);
    command.args(args).arg(path);
    run_with_deadline(command, COMMAND_DEADLINE)
}

fn run_ok(program: &str, args: &[&str], path: &Path) -> String {
    let output = run(program, args, path);
    assert!(
        output.status.success(),
        "{program} {args:?} {}: {}",
        path.display(),
        describe(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of extended attribute `name` of `path`, read with `getfattr`.
fn getfattr(path: &Path, name: &str) -> String {
    run_ok("getfattr", &["--only-values", "-n", name], path)
}

/// Sets extended attribute `name` of `path` with `setfattr`.
fn setfattr(path: &Path, name: &str, value: &str) -> Output {
    run("setfattr", &["-n", name, "-v", value], path)
}

/// Bytes `du` counts under `path` (what is held on this device).
fn du_bytes(path: &Path) -> u64 {
    let out = run_ok("du", &["-s", "--block-size=1"], path);
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("du printed {out:?}"))
}

/// The last `n` bytes of what [`random_file`] writes for `size` and `seed`, made the
/// same way (1 MiB blocks from the seeded RNG) without keeping the rest.
fn random_file_tail(size: usize, seed: u64, n: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut block = vec![0u8; MIB];
    let mut tail = Vec::with_capacity(n + MIB);
    let mut left = size;
    while left > 0 {
        let len = left.min(block.len());
        rng.fill_bytes(&mut block[..len]);
        left -= len;
        if left < n + MIB {
            tail.extend_from_slice(&block[..len]);
        }
    }
    tail.split_off(tail.len() - n)
}

/// Writes `files` (relative path, size, seed) under `root`, each from [`random_bytes`].
fn write_files(root: &Path, files: &[(String, usize, u64)]) {
    for (rel, size, seed) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, random_bytes(*size, *seed)).unwrap();
    }
}

/// Sends everything to the server, unmounts, wipes the device's cache and mounts
/// again with `extra`: every file is then a placeholder.
fn remount_with_wiped_cache<'d>(mount: Mount<'d>, extra: &[&str]) -> Mount<'d> {
    let device = mount.device;
    mount.sync();
    mount.unmount();
    std::fs::remove_dir_all(device.cache_dir()).unwrap();
    device.mount(extra)
}

fn field(status: &serde_json::Value, name: &str) -> u64 {
    status[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} missing in {status}"))
}

#[test]
fn listing_a_wiped_cache_downloads_nothing_and_a_tail_read_fetches_one_chunk() {
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let mount = device.mount(&[]);

    random_file(&mount.path().join("big.bin"), GIB, 1);
    let mut small = vec![("empty".to_string(), 0, 0)];
    for (folder, count) in [
        ("docs", 5),
        ("photos/2024", 8),
        ("photos/2025", 3),
        ("src/a/b", 4),
    ] {
        for i in 0..count {
            let seed = small.len() as u64 + 10;
            small.push((format!("{folder}/file-{i}.bin"), 1 + i * 37_001, seed));
        }
    }
    write_files(mount.path(), &small);

    let mount = remount_with_wiped_cache(mount, &[]);
    let before = mount.bytes_downloaded();
    let listing = run_ok("ls", &["-lR"], mount.path());
    let listed = mount.bytes_downloaded() - before;
    eprintln!("ls -lR downloaded {listed} bytes of chunk data");
    assert!(listed < MIB as u64, "ls -lR downloaded {listed} bytes");
    assert!(listing.contains(&GIB.to_string()), "ls -lR:\n{listing}");
    assert!(listing.contains("file-7.bin"), "ls -lR:\n{listing}");

    // True sizes; at most a block held per file, yet never 0 blocks for a non-empty
    // file (tools read that as "all holes" and skip it).
    let mut files = small.clone();
    files.push(("big.bin".to_string(), GIB, 1));
    for (rel, size, _) in &files {
        let meta = std::fs::symlink_metadata(mount.path().join(rel)).unwrap();
        assert_eq!(meta.len(), *size as u64, "{rel}: stat size");
        if *size > 0 {
            assert!(
                (1..=8).contains(&meta.blocks()),
                "{rel}: {} blocks of 512 bytes for a placeholder",
                meta.blocks()
            );
        }
    }
    let held = du_bytes(mount.path());
    assert!(held < MIB as u64, "du counts {held} bytes held locally");
    let status = mount.path_status("big.bin");
    assert_eq!(status["state"], "online-only", "{status}");
    assert_eq!(field(&status, "size"), GIB as u64);
    assert_eq!(field(&status, "local_bytes"), 0);
    let after_stat = mount.bytes_downloaded() - before;
    assert!(
        after_stat < MIB as u64,
        "stat downloaded {after_stat} bytes"
    );

    // The last 4 KiB lie in the last chunk (or straddle into it from the one before
    // when the last is tiny): at most a chunk and a bit comes down.
    let before = mount.bytes_downloaded();
    let mut file = std::fs::File::open(mount.path().join("big.bin")).unwrap();
    file.seek(SeekFrom::Start((GIB - 4096) as u64)).unwrap();
    let mut tail = vec![0u8; 4096];
    file.read_exact(&mut tail).unwrap();
    drop(file);
    let fetched = mount.bytes_downloaded() - before;
    eprintln!("reading the last 4 KiB of 1 GiB downloaded {fetched} bytes of chunk data");
    assert!(fetched > 0, "the tail read downloaded nothing");
    assert!(
        fetched <= MAX_CHUNK + 64 * 1024,
        "the tail read downloaded {fetched} bytes"
    );
    assert!(
        tail == random_file_tail(GIB, 1, 4096),
        "the last 4 KiB read back wrong"
    );
    let status = mount.path_status("big.bin");
    assert_eq!(status["state"], "partial", "{status}");
    assert!(
        field(&status, "local_bytes") <= MAX_CHUNK + 4096,
        "{status}"
    );

    for (rel, size, seed) in &small {
        let got = std::fs::read(mount.path().join(rel)).unwrap();
        assert!(got == random_bytes(*size, *seed), "{rel} read back wrong");
    }
    mount.unmount();
}

#[test]
fn a_pinned_folder_reads_offline_and_online_only_frees_it() {
    let mut server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let mount = device.mount(&[]);
    let files: Vec<(String, usize, u64)> = vec![
        ("keep/a.bin".into(), 6 * MIB + 5, 21),
        ("keep/b.bin".into(), 10_000, 22),
        ("keep/sub/c.bin".into(), 3 * MIB, 23),
        ("keep/sub/empty".into(), 0, 24),
        ("elsewhere.bin".into(), MIB + 1, 25),
    ];
    write_files(mount.path(), &files);
    let kept: Vec<_> = files.iter().filter(|f| f.0.starts_with("keep/")).collect();
    let kept_size: u64 = kept.iter().map(|f| f.1 as u64).sum();

    let mount = remount_with_wiped_cache(mount, &[]);
    let keep = mount.path().join("keep");
    let status = mount.path_status("keep");
    assert_eq!(status["state"], "online-only", "{status}");
    assert_eq!(status["pinned"], false, "{status}");

    device.ok(&["pin", keep.to_str().unwrap()]);
    let status = mount.path_status("keep");
    assert_eq!(status["state"], "hydrated", "{status}");
    assert_eq!(status["pinned"], true, "{status}");
    assert_eq!(field(&status, "size"), kept_size, "{status}");
    assert_eq!(field(&status, "local_bytes"), kept_size, "{status}");
    for (rel, _, _) in &kept {
        let status = mount.path_status(rel);
        assert_eq!(status["pinned"], true, "{rel}: {status}");
        assert_eq!(status["state"], "hydrated", "{rel}: {status}");
    }
    let a = mount.path().join("keep/a.bin");
    assert_eq!(getfattr(&a, "user.loft.pin"), "1");
    assert_eq!(getfattr(&a, "user.loft.state"), "hydrated");
    assert_eq!(mount.path_status("elsewhere.bin")["state"], "online-only");

    // With the server gone, every pinned byte is still here.
    server.kill9();
    for (rel, size, seed) in &kept {
        let got = std::fs::read(mount.path().join(rel))
            .unwrap_or_else(|e| panic!("reading pinned {rel} offline: {e}"));
        assert!(got == random_bytes(*size, *seed), "{rel} read back wrong");
    }

    server.restart();
    device.ok(&["online-only", keep.to_str().unwrap()]);
    let status = mount.path_status("keep");
    assert_eq!(field(&status, "local_bytes"), 0, "{status}");
    assert_eq!(status["state"], "online-only", "{status}");
    assert_eq!(status["pinned"], false, "{status}");
    assert_eq!(getfattr(&a, "user.loft.pin"), "0");
    assert_eq!(getfattr(&a, "user.loft.state"), "online-only");

    let before = mount.bytes_downloaded();
    for (rel, size, seed) in &kept {
        let got = std::fs::read(mount.path().join(rel))
            .unwrap_or_else(|e| panic!("reading {rel} after online-only: {e}"));
        assert!(got == random_bytes(*size, *seed), "{rel} read back wrong");
    }
    let fetched = mount.bytes_downloaded() - before;
    assert!(
        fetched >= 6 * MIB as u64,
        "reading the freed folder downloaded {fetched} bytes"
    );

    // The same through the extended attributes.
    let elsewhere = mount.path().join("elsewhere.bin");
    assert_eq!(getfattr(&elsewhere, "user.loft.state"), "online-only");
    let output = setfattr(&elsewhere, "user.loft.pin", "1");
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(getfattr(&elsewhere, "user.loft.pin"), "1");
    assert_eq!(getfattr(&elsewhere, "user.loft.state"), "hydrated");
    let status = mount.path_status("elsewhere.bin");
    assert_eq!(field(&status, "local_bytes"), (MIB + 1) as u64, "{status}");
    let output = setfattr(&elsewhere, "user.loft.state", "hydrated");
    assert!(
        !output.status.success(),
        "user.loft.state is read-only: {}",
        describe(&output)
    );
    let output = setfattr(&elsewhere, "user.loft.pin", "0");
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(getfattr(&elsewhere, "user.loft.state"), "online-only");
    assert_eq!(field(&mount.path_status("elsewhere.bin"), "local_bytes"), 0);
    let got = std::fs::read(&elsewhere).unwrap();
    assert!(
        got == random_bytes(MIB + 1, 25),
        "elsewhere.bin read back wrong"
    );
    mount.unmount();
}

#[test]
fn reads_stay_within_the_cache_budget_and_pinning_beyond_it_fails() {
    const BUDGET: u64 = 64 * MIB as u64;
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let mount = device.mount(&[]);
    // 1 GiB of distinct files to read through a 64 MiB cache.
    let set: Vec<(String, usize, u64)> = (0..32)
        .map(|i| (format!("set/f-{i:02}.bin"), 32 * MIB, 100 + i))
        .collect();
    // Files of 256 KiB are one chunk each: pinning them fills the budget exactly.
    let small: Vec<(String, usize, u64)> = (0..264)
        .map(|i| (format!("small/s-{i:03}.bin"), 256 * 1024, 1000 + i))
        .collect();
    let other = ("other.bin".to_string(), 2 * MIB, 7);
    write_files(mount.path(), &set);
    write_files(mount.path(), &small);
    write_files(mount.path(), std::slice::from_ref(&other));

    let mount = remount_with_wiped_cache(mount, &["--cache-size", "64MiB"]);
    assert_eq!(field(&mount.status(), "cache_budget"), BUDGET);

    // Read everything, file by file, while another thread watches the cache.
    let stop = AtomicBool::new(false);
    let mut wrong = Vec::new();
    let (samples, max_held) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let (mut samples, mut max_held) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                max_held = max_held.max(field(&mount.status(), "cache_bytes"));
                samples += 1;
            }
            (samples, max_held)
        });
        for (rel, size, seed) in &set {
            match std::fs::read(mount.path().join(rel)) {
                Ok(got) if got == random_bytes(*size, *seed) => {}
                Ok(_) => wrong.push(format!("{rel}: wrong bytes")),
                Err(error) => wrong.push(format!("{rel}: {error}")),
            }
        }
        stop.store(true, Ordering::Relaxed);
        sampler.join().expect("the sampler")
    });
    eprintln!("cache_bytes peaked at {max_held} bytes in {samples} samples");
    assert!(wrong.is_empty(), "reads through a 64 MiB cache: {wrong:?}");
    assert!(samples >= 10, "only {samples} samples of the cache");
    assert!(
        max_held <= BUDGET + 4 * MIB as u64,
        "the cache held {max_held} bytes with a budget of {BUDGET}"
    );
    let status = mount.status();
    assert!(field(&status, "cache_bytes") <= BUDGET, "{status}");
    assert!(field(&status, "bytes_downloaded") >= GIB as u64, "{status}");

    // Pinning more than the budget fails, naming what it could not fetch.
    let small_dir = mount.path().join("small");
    let output = device.run(&["pin", small_dir.to_str().unwrap()]);
    assert!(
        !output.status.success(),
        "pinning 66 MiB into 64 MiB succeeded: {}",
        describe(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("small/s-") && stderr.contains("could not be fetched"),
        "{stderr}"
    );
    let status = mount.status();
    assert!(status["cache_full"].is_string(), "{status}");
    assert!(field(&status, "cache_bytes") <= BUDGET, "{status}");

    // The budget is all pinned: nothing can be evicted for another file.
    let error = std::fs::read(mount.path().join(&other.0))
        .expect_err("a read with the cache full of pinned bytes");
    assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
    assert!(mount.status()["cache_full"].is_string());

    // Freeing the pinned folder makes room again.
    device.ok(&["online-only", small_dir.to_str().unwrap()]);
    let got = std::fs::read(mount.path().join(&other.0)).unwrap();
    assert!(
        got == random_bytes(other.1, other.2),
        "other.bin read back wrong"
    );
    let status = mount.status();
    assert!(status["cache_full"].is_null(), "{status}");
    mount.unmount();
}
