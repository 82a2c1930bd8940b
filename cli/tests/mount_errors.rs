//! The errno of each failing call on a real mount, as POSIX programs expect it: ENOENT,
//! EEXIST, ENOTEMPTY, ENAMETOOLONG, EISDIR, ENOTDIR, EXDEV and EACCES (as an
//! unprivileged user on a root mount, which runs with allow_other and
//! default_permissions). A call that fails changes nothing: not the tree in the mount,
//! and not what reaches the server.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use common::mount::Mount;
use common::nobody::{AsNobody, as_nobody, c_path};
use common::{Device, TestServer};

/// The errno of a call that must fail.
#[track_caller]
fn errno<T: std::fmt::Debug>(result: io::Result<T>) -> i32 {
    match result {
        Ok(value) => panic!("the call succeeded ({value:?}) where it should have failed"),
        Err(error) => error
            .raw_os_error()
            .unwrap_or_else(|| panic!("an error without errno: {error}")),
    }
}

#[track_caller]
fn assert_errno<T: std::fmt::Debug>(result: io::Result<T>, expected: i32, what: &str) {
    let got = errno(result);
    assert_eq!(
        got,
        expected,
        "{what}: got {} ({got}), expected {} ({expected})",
        io::Error::from_raw_os_error(got),
        io::Error::from_raw_os_error(expected)
    );
}

/// Everything comparable about a tree: per path (relative), kind, permission bits, owner,
/// size, and the bytes of files or the target of symlinks.
type Snapshot = BTreeMap<PathBuf, String>;

fn snapshot(root: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let kind = meta.file_type();
            let what = if kind.is_dir() {
                walk(root, &path, out);
                "dir".to_string()
            } else if kind.is_symlink() {
                format!("symlink -> {:?}", fs::read_link(&path).unwrap())
            } else {
                let bytes = fs::read(&path).unwrap();
                format!("file {} bytes, sum {}", bytes.len(), checksum(&bytes))
            };
            let mode = if kind.is_symlink() {
                0
            } else {
                meta.mode() & 0o7777
            };
            out.insert(rel, format!("{what} mode {mode:04o} uid {}", meta.uid()));
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, &mut out);
    out
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A small tree: a file, an empty and a non-empty directory, a symlink, a hard link.
fn make_tree(root: &Path) {
    fs::write(root.join("file"), b"some bytes\n").unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    fs::create_dir_all(root.join("full/sub")).unwrap();
    fs::write(root.join("full/inner"), b"inner\n").unwrap();
    symlink("file", root.join("link")).unwrap();
    fs::hard_link(root.join("file"), root.join("second-name")).unwrap();
}

fn mounted(device: &Device) -> Mount<'_> {
    let mount = device.mount(&[]);
    make_tree(mount.path());
    mount
}

fn server_device() -> (TestServer, Device) {
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    (server, device)
}

#[test]
fn enoent_eexist_enotempty_eisdir_enotdir() {
    let (_server, device) = server_device();
    let mount = mounted(&device);
    let root = mount.path();
    let before = snapshot(root);

    // ENOENT: a name that is not there, or under a directory that is not there.
    assert_errno(File::open(root.join("missing")), libc::ENOENT, "open");
    assert_errno(fs::metadata(root.join("missing")), libc::ENOENT, "stat");
    assert_errno(
        fs::remove_file(root.join("missing")),
        libc::ENOENT,
        "unlink",
    );
    assert_errno(fs::remove_dir(root.join("missing")), libc::ENOENT, "rmdir");
    assert_errno(
        fs::rename(root.join("missing"), root.join("other")),
        libc::ENOENT,
        "rename of a missing source",
    );
    assert_errno(
        fs::write(root.join("missing/new"), b"x"),
        libc::ENOENT,
        "create under a missing directory",
    );
    assert_errno(
        fs::create_dir(root.join("missing/new")),
        libc::ENOENT,
        "mkdir under a missing directory",
    );
    assert_errno(
        fs::read_link(root.join("missing")),
        libc::ENOENT,
        "readlink",
    );

    // EEXIST: the name is taken.
    assert_errno(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(root.join("file")),
        libc::EEXIST,
        "O_CREAT|O_EXCL",
    );
    assert_errno(fs::create_dir(root.join("empty")), libc::EEXIST, "mkdir");
    assert_errno(
        fs::create_dir(root.join("file")),
        libc::EEXIST,
        "mkdir over a file",
    );
    assert_errno(
        fs::hard_link(root.join("file"), root.join("full")),
        libc::EEXIST,
        "link",
    );
    assert_errno(symlink("x", root.join("link")), libc::EEXIST, "symlink");

    // ENOTEMPTY: a directory with entries is not removed or replaced.
    assert_errno(fs::remove_dir(root.join("full")), libc::ENOTEMPTY, "rmdir");
    assert_errno(
        fs::rename(root.join("empty"), root.join("full")),
        libc::ENOTEMPTY,
        "rename over a non-empty directory",
    );

    // EISDIR: a directory where a file is needed.
    assert_errno(
        OpenOptions::new().write(true).open(root.join("empty")),
        libc::EISDIR,
        "open a directory for writing",
    );
    assert_errno(fs::remove_file(root.join("empty")), libc::EISDIR, "unlink");
    assert_errno(
        fs::rename(root.join("file"), root.join("empty")),
        libc::EISDIR,
        "rename a file over a directory",
    );

    // ENOTDIR: a file where a directory is needed.
    assert_errno(fs::remove_dir(root.join("file")), libc::ENOTDIR, "rmdir");
    assert_errno(
        fs::read_dir(root.join("file")),
        libc::ENOTDIR,
        "opendir of a file",
    );
    assert_errno(
        fs::metadata(root.join("file/x")),
        libc::ENOTDIR,
        "stat below a file",
    );
    assert_errno(
        fs::write(root.join("file/x"), b"x"),
        libc::ENOTDIR,
        "create below a file",
    );
    assert_errno(
        fs::rename(root.join("empty"), root.join("file")),
        libc::ENOTDIR,
        "rename a directory over a file",
    );

    // EINVAL: a directory into itself.
    assert_errno(
        fs::rename(root.join("full"), root.join("full/sub/full")),
        libc::EINVAL,
        "rename a directory into itself",
    );

    assert_eq!(snapshot(root), before, "a failed call changed the tree");
    check_server_has(&device, mount, &before);
}

#[test]
fn names_too_long_are_refused_and_change_nothing() {
    let (_server, device) = server_device();
    let mount = mounted(&device);
    let root = mount.path();
    let before = snapshot(root);

    // 255 bytes is the longest name; 256 is one too many. 1025 bytes is refused by the
    // kernel before the mount is asked; 256 reaches the mount.
    let longest = "n".repeat(255);
    for len in [256, 300, 1025] {
        let name = "n".repeat(len);
        let path = root.join(&name);
        let what = |call: &str| format!("{call} with a {len}-byte name");
        assert_errno(fs::write(&path, b"x"), libc::ENAMETOOLONG, &what("create"));
        assert_errno(fs::create_dir(&path), libc::ENAMETOOLONG, &what("mkdir"));
        assert_errno(symlink("file", &path), libc::ENAMETOOLONG, &what("symlink"));
        assert_errno(
            fs::hard_link(root.join("file"), &path),
            libc::ENAMETOOLONG,
            &what("link"),
        );
        assert_errno(
            fs::rename(root.join("file"), &path),
            libc::ENAMETOOLONG,
            &what("rename to"),
        );
        assert_errno(
            fs::rename(&path, root.join("other")),
            libc::ENAMETOOLONG,
            &what("rename from"),
        );
        assert_errno(fs::metadata(&path), libc::ENAMETOOLONG, &what("stat"));
        assert_errno(fs::remove_file(&path), libc::ENAMETOOLONG, &what("unlink"));
        assert_errno(fs::remove_dir(&path), libc::ENAMETOOLONG, &what("rmdir"));
        assert_errno(
            fs::write(root.join("full").join(&name), b"x"),
            libc::ENAMETOOLONG,
            &what("create in a subdirectory"),
        );
        assert_eq!(
            snapshot(root),
            before,
            "a refused {len}-byte name changed the tree"
        );
    }

    // The names that are not names.
    assert_errno(
        fs::rename(root.join("full/."), root.join("moved")),
        libc::EBUSY,
        "rename of \".\"",
    );
    assert_errno(
        fs::remove_dir(root.join("full/.")),
        libc::EINVAL,
        "rmdir of \".\"",
    );
    assert_errno(
        fs::remove_dir(root.join("full/sub/..")),
        libc::ENOTEMPTY,
        "rmdir of \"..\"",
    );
    assert_eq!(snapshot(root), before, "a refused name changed the tree");

    // 255 bytes works, and goes away again.
    fs::write(root.join(&longest), b"longest").unwrap();
    assert_eq!(fs::read(root.join(&longest)).unwrap(), b"longest");
    fs::remove_file(root.join(&longest)).unwrap();
    assert_eq!(snapshot(root), before);

    check_server_has(&device, mount, &before);
}

#[test]
fn exdev_across_file_systems() {
    let (_server, device) = server_device();
    let mount = mounted(&device);
    let root = mount.path();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("local"), b"local bytes").unwrap();
    let before = snapshot(root);
    let outside_before = snapshot(outside.path());

    assert_errno(
        fs::rename(root.join("file"), outside.path().join("file")),
        libc::EXDEV,
        "rename out of the mount",
    );
    assert_errno(
        fs::rename(root.join("full"), outside.path().join("full")),
        libc::EXDEV,
        "rename a directory out of the mount",
    );
    assert_errno(
        fs::rename(outside.path().join("local"), root.join("local")),
        libc::EXDEV,
        "rename into the mount",
    );
    assert_errno(
        fs::hard_link(root.join("file"), outside.path().join("file")),
        libc::EXDEV,
        "link out of the mount",
    );
    assert_errno(
        fs::hard_link(outside.path().join("local"), root.join("local")),
        libc::EXDEV,
        "link into the mount",
    );

    assert_eq!(snapshot(root), before, "a failed call changed the mount");
    assert_eq!(snapshot(outside.path()), outside_before);
    check_server_has(&device, mount, &before);
}

#[test]
fn eacces_for_another_user() {
    let (_server, device) = server_device();
    let mount = mounted(&device);
    let root = mount.path();
    // Root's private directory, with a file in it; a public directory nobody may not
    // write to, with a file nobody may only read.
    fs::create_dir(root.join("private")).unwrap();
    fs::write(root.join("private/secret"), b"secret").unwrap();
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir(root.join("public")).unwrap();
    fs::set_permissions(root.join("public"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("public/readonly"), b"read me").unwrap();
    fs::set_permissions(
        root.join("public/readonly"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let before = snapshot(root);

    // nobody gets into the mount at all (allow_other) and may read what is public.
    as_nobody(&AsNobody::Stat(c_path(root))).expect("nobody can stat the mount's root");
    as_nobody(&AsNobody::OpenRead(c_path(&root.join("public/readonly"))))
        .expect("nobody can read a 0644 file");

    let private = root.join("private");
    let cases = [
        (
            "opendir of a 0700 directory",
            AsNobody::OpenRead(c_path(&private)),
        ),
        (
            "stat inside it",
            AsNobody::Stat(c_path(&private.join("secret"))),
        ),
        (
            "open inside it",
            AsNobody::OpenRead(c_path(&private.join("secret"))),
        ),
        (
            "create inside it",
            AsNobody::Create(c_path(&private.join("new"))),
        ),
        (
            "mkdir inside it",
            AsNobody::Mkdir(c_path(&private.join("new"))),
        ),
        (
            "unlink inside it",
            AsNobody::Unlink(c_path(&private.join("secret"))),
        ),
        (
            "rename out of it",
            AsNobody::Rename(
                c_path(&private.join("secret")),
                c_path(&root.join("public/stolen")),
            ),
        ),
        (
            "create in a 0755 directory of root's",
            AsNobody::Create(c_path(&root.join("public/new"))),
        ),
        (
            "mkdir in a 0755 directory of root's",
            AsNobody::Mkdir(c_path(&root.join("public/new"))),
        ),
        (
            "unlink in a 0755 directory of root's",
            AsNobody::Unlink(c_path(&root.join("public/readonly"))),
        ),
        (
            "rmdir of a directory in the root",
            AsNobody::Rmdir(c_path(&root.join("empty"))),
        ),
        (
            "open a 0644 file of root's for writing",
            AsNobody::OpenWrite(c_path(&root.join("public/readonly"))),
        ),
    ];
    for (what, call) in &cases {
        assert_errno(as_nobody(call), libc::EACCES, what);
    }
    // Changing the mode of someone else's file is not permitted (EPERM, not EACCES).
    assert_errno(
        as_nobody(&AsNobody::Chmod(c_path(&root.join("public/readonly")))),
        libc::EPERM,
        "chmod of root's file",
    );

    assert_eq!(snapshot(root), before, "a refused call changed the tree");
    check_server_has(&device, mount, &before);
}

/// Sends everything, unmounts, wipes the cache and mounts again: the server's tree must
/// be `expected` (failed calls sent nothing either).
fn check_server_has(device: &Device, mount: Mount<'_>, expected: &Snapshot) {
    mount.sync();
    mount.unmount();
    fs::remove_dir_all(device.cache_dir()).unwrap();
    let mount = device.mount(&[]);
    let after = snapshot(mount.path());
    mount.unmount();
    assert_eq!(
        &after, expected,
        "the server's tree differs from the mount's before"
    );
}
