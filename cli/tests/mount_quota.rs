//! Quotas end to end: `loft-server user set-quota` while the server runs, `loft quota`,
//! `statfs` (what `df` shows) on a real mount, and EDQUOT from the mount when the
//! server refuses a commit or the drive is full.

mod common;

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::{DEADLINE, Device, TestServer, wait_for};

const KIB: u64 = 1024;

/// `(size, used)` in bytes, as `df` computes them from `statvfs`.
fn df(path: &Path) -> (u64, u64) {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated; `stat` is writable memory of the right type.
    assert_eq!(
        unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) },
        0
    );
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    let frsize = stat.f_frsize as u64;
    #[allow(clippy::unnecessary_cast)]
    let (blocks, free) = (stat.f_blocks as u64, stat.f_bfree as u64);
    (blocks * frsize, (blocks - free) * frsize)
}

fn quota(device: &Device) -> (u64, Option<u64>) {
    let json = device.json(&["quota", "--json"]);
    (json["used"].as_u64().expect("used"), json["quota"].as_u64())
}

fn is_edquot(error: &std::io::Error) -> bool {
    error.raw_os_error() == Some(libc::EDQUOT)
}

#[test]
fn quota_is_shown_enforced_and_reported_by_the_mount() {
    let server = TestServer::start();
    server.add_user("alice");
    let laptop = Device::login(&server, "alice", "laptop");
    let mount = laptop.mount(&[]);
    let file = mount.path().join("a.bin");
    fs::write(&file, vec![1u8; 100 * KIB as usize]).unwrap();
    mount.sync();

    // No quota yet: usage only.
    assert_eq!(quota(&laptop), (100 * KIB, None));
    let text = laptop.ok(&["quota"]);
    assert!(text.contains("100.0 KiB used, no quota"), "{text}");

    // Set while the server runs; the next look sees it, and df on the mount shows it.
    server.set_quota("alice", "300KiB");
    assert_eq!(quota(&laptop), (100 * KIB, Some(300 * KIB)));
    let text = laptop.ok(&["quota"]);
    assert!(text.contains("100.0 KiB of 300.0 KiB used"), "{text}");
    wait_for("df to show the quota", DEADLINE, || {
        (df(mount.path()) == (300 * KIB, 100 * KIB)).then_some(())
    });

    // A new version that does not fit (the kept one counts too): the close succeeds,
    // the commit after it is refused, and the file then fails fsync and close with
    // EDQUOT while its bytes stay readable in the mount.
    let big = vec![2u8; 248 * KIB as usize];
    fs::write(&file, &big).unwrap();
    wait_for("the commit to be refused for quota", DEADLINE, || {
        let status = mount.status();
        let error = status["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        error.contains("quota").then_some(())
    });
    let handle = OpenOptions::new().append(true).open(&file).unwrap();
    let error = handle.sync_all().expect_err("fsync after a refused commit");
    assert!(is_edquot(&error), "{error}");
    drop(handle);
    assert_eq!(fs::read(&file).unwrap(), big);
    assert_eq!(quota(&laptop), (100 * KIB, Some(300 * KIB)));

    // More room: the waiting version goes through on its own, and fsync is fine again.
    server.set_quota("alice", "1MiB");
    wait_for("the waiting version to commit", DEADLINE, || {
        (quota(&laptop).0 == 348 * KIB).then_some(())
    });
    wait_for("fsync to succeed again", DEADLINE, || {
        let handle = OpenOptions::new().append(true).open(&file).ok()?;
        handle.sync_all().ok()
    });
    wait_for("df to show the new quota", DEADLINE, || {
        (df(mount.path()) == (1024 * KIB, 348 * KIB)).then_some(())
    });

    // A full drive, as df and `loft quota` show it.
    server.set_quota("alice", "348KiB");
    wait_for("df to show a full drive", DEADLINE, || {
        (df(mount.path()) == (348 * KIB, 348 * KIB)).then_some(())
    });
    let text = laptop.ok(&["quota"]);
    assert!(
        text.contains("348.0 KiB of 348.0 KiB used (100%)"),
        "{text}"
    );
}

#[test]
fn a_new_file_refused_for_quota_goes_up_once_there_is_room() {
    let server = TestServer::start();
    server.add_user("alice");
    server.set_quota("alice", "100KiB");
    let laptop = Device::login(&server, "alice", "laptop");
    let mount = laptop.mount(&[]);

    // Too big for the quota: made here, refused by the server, kept on this device.
    let file = mount.path().join("report.bin");
    let bytes = vec![3u8; 150 * KIB as usize];
    fs::write(&file, &bytes).unwrap();
    wait_for("the creation to be refused for quota", DEADLINE, || {
        let status = mount.status();
        let error = status["last_error"].as_str().unwrap_or_default();
        error.contains("quota").then_some(())
    });
    // Tried again while it still does not fit, it stays refused.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(quota(&laptop), (0, Some(100 * KIB)));
    assert_eq!(fs::read(&file).unwrap(), bytes);

    // Room made: it goes up on its own and reaches another device.
    server.set_quota("alice", "1MiB");
    wait_for(
        "the refused file to be created on the server",
        DEADLINE,
        || (quota(&laptop).0 == 150 * KIB).then_some(()),
    );
    mount.sync();
    let desktop = Device::login(&server, "alice", "desktop");
    let other = desktop.mount(&[]);
    assert_eq!(fs::read(other.path().join("report.bin")).unwrap(), bytes);
}
