//! POSIX ACLs on a root mount behave as on the local disk: `setfacl` and `getfacl`,
//! the mode they imply, `chmod` rewriting the mask, default lists inherited by new
//! files and folders (masked by the creation mode, no umask), the umask where no
//! default list applies, and the kernel enforcing a named user's entry. The same
//! script runs on a plain directory and on the mount, and the outputs must match; a
//! second device then shows the same lists and enforces them, and sees a list changed
//! on the first device.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Device, TestServer, wait_for};

/// Runs in the directory given as `$1`; what it prints is compared. nobody (65534)
/// stands for another user.
const SCRIPT: &str = r#"
set -u
cd "$1" && mkdir acl && cd acl && umask 022
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "$1" 2>&1 | sed 's/^.*: //'; }
touch f && mkdir d
setfacl -m u:nobody:rw f; getfacl -n f; stat -c '%A' f
chmod 640 f; getfacl -n f
setfacl -d -m u:nobody:rwx,o::- d; getfacl -n d
touch d/g; mkdir d/e; mknod d/p p; ln -s x d/s
getfacl -n d/g d/e d/p; stat -c '%n %A' d/g d/e d/p
umask 077; touch d/h u; mkdir v; umask 022; getfacl -n d/h; stat -c '%n %A' d/h u v
setfacl -b f; getfacl -n f; stat -c '%A' f
setfacl -m u::rwx,g::r,o::r f; stat -c '%A' f
getfattr -n system.posix_acl_access f 2>&1 | sed 's/^.*: //'
chmod 2775 d/e; setfacl -m u:nobody:r d/e; stat -c '%A' d/e
setfacl -k d; touch d/k; getfacl -n d/k
echo data > w; chmod 600 w; setfacl -m u:nobody:rw w
as_nobody "cat w; echo more >> w; echo x > f"
cat w
setfacl -m u:nobody:--- w
as_nobody "cat w"
setfacl -m u:nobody:r-x d/e
as_nobody "ls d/e; touch d/e/new"
"#;

fn run_script(dir: &Path) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(SCRIPT)
        .arg("acl-script")
        .arg(dir)
        .output()
        .expect("bash runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let errors = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        errors.is_empty(),
        "the script wrote errors in {dir:?}:\n{errors}"
    );
    text
}

/// `getfacl -R -n` of the tree under `dir` (names relative to it), by name: one
/// file's block after another in name order.
fn lists_under(dir: &Path) -> String {
    let out = Command::new("getfacl")
        .args(["-R", "-n", "-p", "."])
        .current_dir(dir)
        .output()
        .expect("getfacl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut blocks: Vec<&str> = text.split("\n\n").filter(|b| !b.is_empty()).collect();
    blocks.sort();
    blocks.join("\n\n")
}

#[test]
fn acls_behave_as_on_a_local_disk_and_on_every_device() {
    // A plain directory on a disk file system (under /var/tmp), which nobody can
    // reach, as the mount is.
    let plain = tempfile::Builder::new()
        .prefix("loft-acl-")
        .tempdir_in("/var/tmp")
        .unwrap();
    fs::set_permissions(plain.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let expected = run_script(plain.path());
    // The script means something: lists were kept, inherited and enforced.
    assert!(
        expected.contains("user:65534:rw-\t#effective:r--"),
        "{expected}"
    );
    assert!(expected.contains("default:user:65534:rwx"), "{expected}");
    assert!(expected.contains("Permission denied"), "{expected}");
    assert!(expected.contains("data\nmore\n"), "{expected}");

    let server = TestServer::start();
    server.add_user("ann");
    let laptop = Device::login(&server, "ann", "laptop");
    let mount = laptop.mount(&[]);
    fs::set_permissions(mount.path(), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        run_script(mount.path()),
        expected,
        "the script on the mount"
    );
    let lists = lists_under(&mount.path().join("acl"));
    assert_eq!(lists, lists_under(&plain.path().join("acl")));
    mount.sync();

    let desktop = Device::login(&server, "ann", "desktop");
    let other = desktop.mount(&[]);
    let there = other.path().join("acl");
    assert_eq!(lists_under(&there), lists, "the lists on another device");
    let nobody_reads = |path: &Path| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(path)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!nobody_reads(&there.join("w")), "nobody's entry says ---");

    // A list changed on the first device reaches the second, whose kernel had cached
    // the old one.
    let status = Command::new("setfacl")
        .args(["-m", "u:nobody:r"])
        .arg(mount.path().join("acl/w"))
        .status()
        .unwrap();
    assert!(status.success());
    mount.sync();
    wait_for(
        "the new list on the other device",
        Duration::from_secs(30),
        || nobody_reads(&there.join("w")).then_some(()),
    );
}

/// Each malformed list `setfattr` tries on `file`: the error, then the list after.
fn try_malformed(file: &Path) -> Vec<(String, String)> {
    const MALFORMED: &[&str] = &[
        "0x01000000",                                 // another version
        "0x0200000001",                               // a torn entry
        "0x0200000001000600ffffffff04000400ffffffff", // no "other" entry
    ];
    MALFORMED
        .iter()
        .map(|value| {
            let out = Command::new("setfattr")
                .args(["-n", "system.posix_acl_access", "-v", value])
                .arg(file)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{value} was taken");
            let error = String::from_utf8_lossy(&out.stderr);
            let error = error.rsplit(": ").next().unwrap_or_default().to_string();
            let list = Command::new("getfacl")
                .args(["-n", "-c"])
                .arg(file)
                .output()
                .unwrap();
            (error, String::from_utf8_lossy(&list.stdout).to_string())
        })
        .collect()
}

#[test]
fn a_malformed_acl_is_refused_and_changes_nothing() {
    let plain = tempfile::Builder::new()
        .prefix("loft-acl-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let file = plain.path().join("f");
    fs::write(&file, b"x").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
    let expected = try_malformed(&file);
    for (_, list) in &expected {
        assert_eq!(list, "user::rw-\ngroup::r--\nother::---\n\n");
    }

    let server = TestServer::start();
    server.add_user("ann");
    let laptop = Device::login(&server, "ann", "laptop");
    let mount = laptop.mount(&[]);
    let file = mount.path().join("f");
    fs::write(&file, b"x").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(try_malformed(&file), expected);
}

/// `-o noacl` (as on ext4): no ACLs can be set, and the kernel applies the umask.
#[test]
fn a_drive_mounted_noacl_takes_no_acls() {
    let server = TestServer::start();
    server.add_user("ann");
    let laptop = Device::login(&server, "ann", "laptop");
    let mount = laptop.mount(&["-o", "noacl"]);
    let file = mount.path().join("f");
    fs::write(&file, b"x").unwrap();
    let out = Command::new("setfacl")
        .args(["-m", "u:nobody:r"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not supported"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made = Command::new("sh")
        .arg("-c")
        .arg("umask 027 && mkdir d && touch d/f && stat -c '%a' d d/f")
        .current_dir(mount.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&made.stdout), "750\n640\n");
}
