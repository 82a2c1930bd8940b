//! `fallocate` on a mount does what it does on the local disk: reserving (growing the
//! file, or past its end without), punching a hole and zeroing a range leave the same
//! bytes and size as on a plain directory, and another device gets them. A mode Loft
//! does not support (collapsing a range) is refused and changes nothing.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use common::{Device, TestServer};

/// One `fallocate` call: mode, offset, length.
const CALLS: &[(i32, i64, i64)] = &[
    // A hole in the middle, the size kept.
    (
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        4096,
        8192,
    ),
    // Zeros over a range that is not block-aligned.
    (libc::FALLOC_FL_ZERO_RANGE, 20_000, 10_000),
    // Zeros past the end: the file grows.
    (libc::FALLOC_FL_ZERO_RANGE, 60_000, 10_000),
    // Reserved past the end, the size kept.
    (libc::FALLOC_FL_KEEP_SIZE, 70_000, 65_536),
    // Reserved past the end: the file grows.
    (0, 100_000, 4096),
];

fn fallocate(file: &File, mode: i32, offset: i64, len: i64) -> io::Result<()> {
    // SAFETY: `file` is an open descriptor; fallocate reads no memory of ours.
    match unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Writes the starting content to `path`, makes each call, and returns the bytes.
fn run_calls(path: &Path, start: &[u8]) -> Vec<u8> {
    fs::write(path, start).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    for &(mode, offset, len) in CALLS {
        fallocate(&file, mode, offset, len)
            .unwrap_or_else(|e| panic!("fallocate({mode:#x}, {offset}, {len}): {e}"));
    }
    drop(file);
    fs::read(path).unwrap()
}

#[test]
fn allocating_punching_and_zeroing_match_a_local_disk() {
    let start: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8 + 1).collect();
    let plain = tempfile::Builder::new()
        .prefix("loft-fallocate-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let expected = run_calls(&plain.path().join("f"), &start);
    assert_eq!(expected.len(), 104_096);
    assert!(expected[4096..12_288].iter().all(|&b| b == 0));

    let server = TestServer::start();
    server.add_user("ann");
    let laptop = Device::login(&server, "ann", "laptop");
    let mount = laptop.mount(&[]);
    let path = mount.path().join("f");
    assert_eq!(run_calls(&path, &start), expected, "bytes on the mount");

    // Collapsing a range is not supported: refused, nothing changed.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    let refused = fallocate(&file, libc::FALLOC_FL_COLLAPSE_RANGE, 0, 4096).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EOPNOTSUPP), "{refused}");
    drop(file);
    assert_eq!(fs::read(&path).unwrap(), expected);

    mount.sync();
    let desktop = Device::login(&server, "ann", "desktop");
    let other = desktop.mount(&[]);
    assert_eq!(fs::read(other.path().join("f")).unwrap(), expected);
}
