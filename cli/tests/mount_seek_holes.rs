//! `lseek` with `SEEK_DATA` and `SEEK_HOLE` (what `cp --sparse` and `tar --sparse`
//! use): on a file whose bytes are all on this device the answers are the local disk's,
//! holes included; on a placeholder the whole file is data, as a file system that
//! cannot tell answers. At or past the end both say ENXIO.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{Device, TestServer};

const MIB: u64 = 1 << 20;

fn seek(file: &File, offset: u64, whence: i32) -> io::Result<u64> {
    // SAFETY: `file` is an open descriptor; lseek reads no memory of ours.
    match unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) } {
        -1 => Err(io::Error::last_os_error()),
        at => Ok(at as u64),
    }
}

/// Data at 1 MiB and at 3 MiB (64 KiB each), holes around, 4 MiB long.
fn make_sparse(path: &Path) {
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(path)
        .unwrap();
    file.write_all_at(&[7u8; 65_536], MIB).unwrap();
    file.write_all_at(&[9u8; 65_536], 3 * MIB).unwrap();
    file.set_len(4 * MIB).unwrap();
    file.sync_all().unwrap();
}

/// Where `lseek` lands, or its errno.
type Landing = Result<u64, i32>;

/// Where each probe lands: (offset, SEEK_DATA, SEEK_HOLE).
fn probes(path: &Path) -> Vec<(u64, Landing, Landing)> {
    let file = File::open(path).unwrap();
    [
        0,
        MIB,
        MIB + 65_536,
        2 * MIB,
        3 * MIB + 100,
        4 * MIB,
        5 * MIB,
    ]
    .into_iter()
    .map(|offset| {
        let errno = |e: io::Error| e.raw_os_error().unwrap_or(0);
        (
            offset,
            seek(&file, offset, libc::SEEK_DATA).map_err(errno),
            seek(&file, offset, libc::SEEK_HOLE).map_err(errno),
        )
    })
    .collect()
}

#[test]
fn holes_show_where_the_bytes_are_local_and_a_placeholder_is_all_data() {
    let plain = tempfile::Builder::new()
        .prefix("loft-seek-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let native = plain.path().join("sparse");
    make_sparse(&native);
    let expected = probes(&native);
    // The disk keeps holes: the probes mean something.
    assert_eq!(expected[0], (0, Ok(MIB), Ok(0)), "{expected:?}");
    assert_eq!(expected[5].1, Err(libc::ENXIO));

    let server = TestServer::start();
    server.add_user("ann");
    let laptop = Device::login(&server, "ann", "laptop");
    let mount = laptop.mount(&[]);
    let written = mount.path().join("sparse");
    make_sparse(&written);
    assert_eq!(
        probes(&written),
        expected,
        "the file written on this device"
    );
    mount.sync();

    let desktop = Device::login(&server, "ann", "desktop");
    let other = desktop.mount(&[]);
    let placeholder = other.path().join("sparse");
    let size = 4 * MIB;
    let all_data: Vec<_> = expected
        .iter()
        .map(|&(offset, _, _)| {
            if offset >= size {
                (offset, Err(libc::ENXIO), Err(libc::ENXIO))
            } else {
                (offset, Ok(offset), Ok(size))
            }
        })
        .collect();
    assert_eq!(probes(&placeholder), all_data, "a placeholder");
    assert_eq!(
        fs::read(&placeholder).unwrap(),
        fs::read(&native).unwrap(),
        "the bytes behind the answers"
    );
}

/// A file of mostly zeros, read onto a second device, takes little of its disk: its
/// chunks of zeros stay holes in the local copy, and SEEK_HOLE finds them.
#[test]
fn a_file_of_zeros_read_onto_a_device_stays_sparse() {
    let server = TestServer::start();
    server.add_user("ann");
    let laptop = Device::login(&server, "ann", "laptop");
    let mount = laptop.mount(&[]);
    let path = mount.path().join("image");
    let size = 24 * MIB;
    {
        let file = File::create(&path).unwrap();
        file.write_all_at(b"head", 0).unwrap();
        file.write_all_at(b"tail", size - 4).unwrap();
    }
    mount.sync();
    let expected = fs::read(&path).unwrap();

    let desktop = Device::login(&server, "ann", "desktop");
    let other = desktop.mount(&[]);
    let there = other.path().join("image");
    assert_eq!(fs::read(&there).unwrap(), expected, "the bytes read");
    // Now whole on this device: a new handle answers from the local copy.
    let file = File::open(&there).unwrap();
    let hole = seek(&file, 0, libc::SEEK_HOLE).unwrap();
    assert!(
        hole < size,
        "no hole in the local copy (SEEK_HOLE at {hole})"
    );
    let data = seek(&file, hole, libc::SEEK_DATA).unwrap();
    assert!(
        data > hole && data < size,
        "SEEK_DATA from the hole: {data}"
    );
    assert_eq!(fs::read(&there).unwrap(), expected, "the bytes read again");
}
