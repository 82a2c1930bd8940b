//! Set-user-ID and set-group-ID bits on a root mount behave as on the local disk: a
//! write, truncate or allocation by an unprivileged user drops them, a change of owner
//! drops them, root's own writes keep them. Each case runs on a plain directory and on
//! the mount, and the modes must match; a second device then sees the same modes.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::nobody::{AsNobody, NOBODY, as_nobody, as_nobody_in, c_path};
use common::{Device, TestServer};

/// One case: the file's mode before, and what happens to it.
struct Case {
    name: &'static str,
    mode: u32,
    act: fn(&Path),
}

fn nobody_appends(path: &Path) {
    as_nobody(&AsNobody::Append(c_path(path))).expect("nobody appends");
}

fn nobody_truncates(path: &Path) {
    as_nobody(&AsNobody::Truncate(c_path(path))).expect("nobody truncates");
}

/// The file goes to nobody's group first; set-group-ID without group execute is
/// then set again (the change of group drops it) before nobody writes.
fn its_group_appends(path: &Path) {
    std::os::unix::fs::chown(path, None, Some(NOBODY)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o2767)).unwrap();
    nobody_appends(path);
}

/// A group nobody is in only as a supplementary group.
const CREW: libc::gid_t = 4242;

/// As `its_group_appends`, but nobody is in the file's group through a supplementary
/// group, not its own.
fn a_supplementary_member_appends(path: &Path) {
    std::os::unix::fs::chown(path, None, Some(CREW)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o2767)).unwrap();
    as_nobody_in(&[CREW], &AsNobody::Append(c_path(path))).expect("a member appends");
}

fn nobody_allocates(path: &Path) {
    as_nobody(&AsNobody::Allocate(c_path(path))).expect("nobody allocates");
}

fn root_appends(path: &Path) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(b"root").unwrap();
}

fn root_gives_it_to_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
}

const CASES: &[Case] = &[
    Case {
        name: "setuid-setgid-written-by-nobody",
        mode: 0o6777,
        act: nobody_appends,
    },
    Case {
        // Set-group-ID without group execute (a mandatory locking mark) goes when
        // someone outside the file's group writes.
        name: "setgid-no-group-exec-written-by-nobody",
        mode: 0o2767,
        act: nobody_appends,
    },
    Case {
        name: "setgid-no-group-exec-written-by-its-group",
        mode: 0o2767,
        act: its_group_appends,
    },
    Case {
        name: "setgid-no-group-exec-written-by-a-supplementary-member",
        mode: 0o2767,
        act: a_supplementary_member_appends,
    },
    Case {
        name: "setuid-truncated-by-nobody",
        mode: 0o4777,
        act: nobody_truncates,
    },
    Case {
        name: "setuid-setgid-allocated-by-nobody",
        mode: 0o6777,
        act: nobody_allocates,
    },
    Case {
        name: "setuid-setgid-written-by-root",
        mode: 0o6777,
        act: root_appends,
    },
    Case {
        name: "setuid-setgid-given-away-by-root",
        mode: 0o6755,
        act: root_gives_it_to_nobody,
    },
    Case {
        name: "plain-written-by-nobody",
        mode: 0o666,
        act: nobody_appends,
    },
];

/// Runs every case in `dir`; each file's mode after it, by name.
fn run_cases(dir: &Path) -> Vec<(&'static str, u32)> {
    CASES
        .iter()
        .map(|case| {
            let path = dir.join(case.name);
            fs::write(&path, b"content\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(case.mode)).unwrap();
            (case.act)(&path);
            (case.name, mode_of(&path))
        })
        .collect()
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn set_id_bits_are_dropped_as_on_a_local_disk() {
    // Under /var/tmp: the plain directory must be on a disk file system that nobody can
    // reach, as the mount is (a tmpfs /tmp would do too, but this keeps it on disk).
    let plain = tempfile::Builder::new()
        .prefix("loft-setid-")
        .tempdir_in("/var/tmp")
        .unwrap();
    fs::set_permissions(plain.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let expected = run_cases(plain.path());
    // The cases mean something: some bits went, some stayed.
    assert!(expected.contains(&("setuid-setgid-written-by-nobody", 0o777)));
    assert!(expected.contains(&("setuid-setgid-written-by-root", 0o6777)));
    assert!(expected.contains(&("setgid-no-group-exec-written-by-its-group", 0o2767)));
    assert!(expected.contains(&(
        "setgid-no-group-exec-written-by-a-supplementary-member",
        0o2767
    )));

    let server = TestServer::start();
    server.add_user("ann");
    let laptop = Device::login(&server, "ann", "laptop");
    let mount = laptop.mount(&[]);
    let dir = mount.path().join("setid");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(run_cases(&dir), expected, "modes on the mount");
    mount.sync();

    let desktop = Device::login(&server, "ann", "desktop");
    let other = desktop.mount(&[]);
    let seen: Vec<_> = CASES
        .iter()
        .map(|case| {
            (
                case.name,
                mode_of(&other.path().join("setid").join(case.name)),
            )
        })
        .collect();
    assert_eq!(seen, expected, "modes on another device");
}
