//! Two devices of one user mount the same drive from one server on loopback: each
//! change made through one mount shows in the other by the change feed, within the
//! sync target, without a remount and without stale kernel caches.

mod common;

use common::mount::{SYNC, wait_content, wait_content_within};

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::mount::Mount;
use common::{Device, TestServer, wait_for};

fn two_devices(server: &TestServer) -> (Device, Device) {
    server.add_user("alice");
    (
        Device::login(server, "alice", "laptop"),
        Device::login(server, "alice", "desktop"),
    )
}

#[track_caller]
fn wait_gone(path: &Path) {
    let what = format!("{} to disappear", path.display());
    wait_for(&what, SYNC, || (!path.exists()).then_some(()));
}

/// Writes a file and waits for it on the server, so the other mount's feed has it.
fn write_synced(mount: &Mount<'_>, rel: &str, content: &[u8]) {
    fs::write(mount.path().join(rel), content).unwrap();
    mount.sync();
}

#[test]
fn each_kind_of_change_reaches_the_other_mount() {
    let server = TestServer::start();
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    let b = desktop.mount(&[]);

    // A new folder and file.
    fs::create_dir(a.path().join("docs")).unwrap();
    write_synced(&a, "docs/note.txt", b"first\n");
    wait_content(&b.path().join("docs/note.txt"), b"first\n");

    // New content, read right after: no stale page cache or size.
    write_synced(&a, "docs/note.txt", b"second, and longer\n");
    wait_content(&b.path().join("docs/note.txt"), b"second, and longer\n");
    let size = fs::metadata(b.path().join("docs/note.txt")).unwrap().len();
    assert_eq!(size, 19);

    // A name looked up (and missing) just before it is created is found right after.
    let late = b.path().join("docs/late.txt");
    assert!(!late.exists());
    write_synced(&a, "docs/late.txt", b"late\n");
    wait_content(&late, b"late\n");

    // Rename, within a folder and across folders.
    fs::rename(
        a.path().join("docs/note.txt"),
        a.path().join("docs/renamed.txt"),
    )
    .unwrap();
    fs::create_dir(a.path().join("archive")).unwrap();
    fs::rename(
        a.path().join("docs/late.txt"),
        a.path().join("archive/late.txt"),
    )
    .unwrap();
    a.sync();
    wait_content(&b.path().join("docs/renamed.txt"), b"second, and longer\n");
    wait_gone(&b.path().join("docs/note.txt"));
    wait_content(&b.path().join("archive/late.txt"), b"late\n");
    wait_gone(&b.path().join("docs/late.txt"));

    // Attributes.
    fs::set_permissions(
        a.path().join("docs/renamed.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    a.sync();
    let renamed = b.path().join("docs/renamed.txt");
    wait_for("the new mode in the other mount", SYNC, || {
        let mode = fs::metadata(&renamed).ok()?.permissions().mode() & 0o777;
        (mode == 0o600).then_some(())
    });

    // A renamed folder, then deletes of a file and of a folder.
    fs::rename(a.path().join("archive"), a.path().join("old")).unwrap();
    a.sync();
    wait_content(&b.path().join("old/late.txt"), b"late\n");
    wait_gone(&b.path().join("archive"));
    fs::remove_file(a.path().join("old/late.txt")).unwrap();
    fs::remove_dir(a.path().join("old")).unwrap();
    a.sync();
    wait_gone(&b.path().join("old"));

    // And the other way round.
    write_synced(&b, "docs/from-desktop.txt", b"hello laptop\n");
    wait_content(&a.path().join("docs/from-desktop.txt"), b"hello laptop\n");

    let names = |m: &Mount<'_>| {
        let mut names: Vec<String> = fs::read_dir(m.path().join("docs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&a), names(&b));
    let status = b.status();
    assert!(status["cursor"].as_u64().unwrap() > 0, "{status}");
    assert!(status["last_sync"].is_string(), "{status}");
    assert_eq!(status["conflicts"], 0, "{status}");
    a.unmount();
    b.unmount();
}

/// As tar unpacks: mode, owner and time set on the open file before its first
/// upload go with its creation; some files are changed again after the close, at
/// the moment their first commit may be on its way.
#[test]
fn attributes_set_on_new_files_reach_the_other_mount() {
    use std::os::unix::fs::MetadataExt;
    let server = TestServer::start();
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    let b = desktop.mount(&[]);
    fs::create_dir(a.path().join("unpacked")).unwrap();
    let stamp = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let files = 24u32;
    for k in 0..files {
        let path = a.path().join(format!("unpacked/f{k}"));
        let mut file = fs::File::create(&path).unwrap();
        file.write_all(format!("file {k}\n").as_bytes()).unwrap();
        file.set_modified(stamp).unwrap();
        std::os::unix::fs::fchown(&file, Some(1000 + k), Some(2000 + k)).unwrap();
        file.set_permissions(fs::Permissions::from_mode(0o640))
            .unwrap();
        drop(file);
        if k % 2 == 1 {
            // After the debounce has begun: up to twice its default length.
            std::thread::sleep(Duration::from_millis(u64::from(k) * 4));
            fs::set_permissions(&path, fs::Permissions::from_mode(0o604)).unwrap();
        }
    }
    a.sync();
    for k in 0..files {
        let path = b.path().join(format!("unpacked/f{k}"));
        let want_mode = if k % 2 == 1 { 0o604 } else { 0o640 };
        wait_for(
            &format!("f{k}'s attributes in the other mount"),
            SYNC,
            || {
                let meta = fs::metadata(&path).ok()?;
                (meta.mode() & 0o7777 == want_mode
                    && meta.uid() == 1000 + k
                    && meta.gid() == 2000 + k
                    && meta.modified().ok()? == stamp)
                    .then_some(())
            },
        );
    }
    a.unmount();
    b.unmount();
}

/// Attribute changes queued in a row for one folder (tar sets each folder's
/// times, owner and mode after its files) go to the server as one call each, and
/// the other device sees the last of each.
#[test]
fn a_folder_s_attribute_changes_in_a_row_go_up_as_one_call() {
    use std::os::unix::fs::MetadataExt;
    const FOLDERS: u32 = 20;
    let (server, gateway) = TestServer::start_with_gateway(&[]);
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    for k in 0..FOLDERS {
        fs::create_dir_all(a.path().join(format!("unpacked/d{k}"))).unwrap();
    }
    a.sync();
    let before = calls(gateway, "/loft.v1.Tree/SetAttr");
    // Stopped, the server answers nothing: the changes queue up behind at most one
    // the sync engine has begun to send.
    common::signal(server.pid(), libc::SIGSTOP);
    let stamp = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for k in 0..FOLDERS {
        let path = a.path().join(format!("unpacked/d{k}"));
        fs::File::open(&path).unwrap().set_modified(stamp).unwrap();
        std::os::unix::fs::chown(&path, Some(1000 + k), Some(2000 + k)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o750)).unwrap();
    }
    common::signal(server.pid(), libc::SIGCONT);
    a.sync();
    let sent = calls(gateway, "/loft.v1.Tree/SetAttr") - before;
    assert!(
        sent <= u64::from(FOLDERS) + 1,
        "{} attribute changes of {FOLDERS} folders took {sent} calls",
        3 * FOLDERS
    );
    let b = desktop.mount(&[]);
    for k in 0..FOLDERS {
        let meta = fs::metadata(b.path().join(format!("unpacked/d{k}"))).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o750, "d{k}");
        assert_eq!((meta.uid(), meta.gid()), (1000 + k, 2000 + k), "d{k}");
        assert_eq!(meta.modified().unwrap(), stamp, "d{k}");
    }
}

/// The value of xattr `name` of `path`, or the errno of `getxattr`.
fn xattr_of(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let c_name = std::ffi::CString::new(name).unwrap();
    let mut value = vec![0u8; 256];
    // SAFETY: NUL-terminated strings; `value` is valid for its length.
    let n = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    value.truncate(n as usize);
    Ok(value)
}

#[test]
fn a_device_listing_a_folder_reads_the_xattrs_its_files_have_and_no_others() {
    let server = TestServer::start();
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    fs::create_dir(a.path().join("tagged")).unwrap();
    for k in 0..4 {
        fs::write(a.path().join(format!("tagged/f{k}")), b"x").unwrap();
    }
    let status = std::process::Command::new("setfattr")
        .args(["-n", "user.color", "-v", "blue"])
        .arg(a.path().join("tagged/f2"))
        .status()
        .unwrap();
    assert!(status.success());
    a.sync();
    a.unmount();

    // The desktop has not seen the folder: it lists it from the server now.
    let b = desktop.mount(&[]);
    let tagged = b.path().join("tagged");
    for k in 0..4 {
        let path = tagged.join(format!("f{k}"));
        let want = if k == 2 {
            Ok(b"blue".to_vec())
        } else {
            Err(libc::ENODATA)
        };
        assert_eq!(xattr_of(&path, "user.color"), want, "f{k}");
        assert_eq!(xattr_of(&path, "security.capability"), Err(libc::ENODATA));
    }
    b.unmount();
}

#[test]
fn selinux_labels_are_answered_as_unsupported() {
    // So that `ls -l`, which asks for the label of every entry, stops asking after
    // the first instead of costing a FUSE round trip each.
    let server = TestServer::start();
    let (laptop, _) = two_devices(&server);
    let a = laptop.mount(&[]);
    let file = a.path().join("file");
    fs::write(&file, b"x").unwrap();
    assert_eq!(xattr_of(&file, "security.selinux"), Err(libc::EOPNOTSUPP));
    let set = std::process::Command::new("setfattr")
        .args([
            "-n",
            "security.selinux",
            "-v",
            "system_u:object_r:user_home_t:s0",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!set.status.success());
    assert!(
        String::from_utf8_lossy(&set.stderr).contains("Operation not supported"),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    // Other security attributes are kept as before.
    let set = std::process::Command::new("setfattr")
        .args(["-n", "security.loft-test", "-v", "1"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(set.success());
    assert_eq!(xattr_of(&file, "security.loft-test"), Ok(b"1".to_vec()));
    a.unmount();
}

#[test]
fn remote_changes_rehydrate_pinned_files_and_drop_stale_chunks_of_others() {
    let server = TestServer::start();
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    fs::create_dir(a.path().join("kept")).unwrap();
    fs::create_dir(a.path().join("loose")).unwrap();
    let first = common::random_bytes(3 << 20, 1);
    fs::write(a.path().join("kept/data.bin"), &first).unwrap();
    fs::write(a.path().join("loose/data.bin"), &first).unwrap();
    a.sync();

    let b = desktop.mount(&[]);
    let kept = b.path().join("kept");
    desktop.ok(&["pin", kept.to_str().unwrap()]);
    assert_eq!(fs::read(b.path().join("loose/data.bin")).unwrap(), first);
    assert_eq!(b.path_status("loose/data.bin")["state"], "hydrated");

    // Change the last MiB of both on the laptop.
    let mut second = first.clone();
    second[2 << 20..].copy_from_slice(&common::random_bytes(1 << 20, 2));
    fs::write(a.path().join("kept/data.bin"), &second).unwrap();
    fs::write(a.path().join("loose/data.bin"), &second).unwrap();
    a.sync();

    // The pinned one fetches the new version by itself; the other turns back into
    // a placeholder until read.
    wait_for("the pinned file to hydrate its new version", SYNC, || {
        let status = b.path_status("kept/data.bin");
        (status["state"] == "hydrated" && status["size"] == second.len() as u64).then_some(())
    });
    wait_for("the unpinned file to drop its stale chunks", SYNC, || {
        (b.path_status("loose/data.bin")["local_bytes"] == 0).then_some(())
    });
    let downloaded = b.bytes_downloaded();
    assert_eq!(fs::read(b.path().join("kept/data.bin")).unwrap(), second);
    assert_eq!(
        b.bytes_downloaded(),
        downloaded,
        "reading the pinned file needed no download"
    );
    assert_eq!(fs::read(b.path().join("loose/data.bin")).unwrap(), second);
    a.unmount();
    b.unmount();
}

#[test]
fn an_open_handle_keeps_its_version_and_a_reopen_sees_the_new_one() {
    let server = TestServer::start();
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    let old = common::random_bytes(4 << 20, 3);
    write_synced(&a, "big.bin", &old);

    let b = desktop.mount(&[]);
    let path = b.path().join("big.bin");
    let mut handle = fs::File::open(&path).unwrap();
    let mut head = vec![0u8; 4096];
    handle.read_exact(&mut head).unwrap();
    assert_eq!(head, old[..4096]);

    let new = common::random_bytes(4 << 20, 4);
    write_synced(&a, "big.bin", &new);
    wait_for("the new version in the other mount", SYNC, || {
        let mut fresh = fs::File::open(&path).ok()?;
        let mut first = vec![0u8; 4096];
        fresh.read_exact(&mut first).ok()?;
        (first == new[..4096]).then_some(())
    });

    // The handle opened before reads the rest of the version it opened, while a
    // handle opened after reads the new one, both at once.
    let mut fresh = fs::File::open(&path).unwrap();
    for offset in [1u64 << 20, 3 << 20, 8192] {
        let mut old_part = vec![0u8; 256 << 10];
        handle.seek(SeekFrom::Start(offset)).unwrap();
        handle.read_exact(&mut old_part).unwrap();
        let mut new_part = vec![0u8; 256 << 10];
        fresh.seek(SeekFrom::Start(offset)).unwrap();
        fresh.read_exact(&mut new_part).unwrap();
        let range = offset as usize..offset as usize + (256 << 10);
        assert!(old_part == old[range.clone()], "the old handle at {offset}");
        assert!(new_part == new[range], "the new handle at {offset}");
    }
    drop(handle);
    drop(fresh);
    assert_eq!(fs::read(&path).unwrap(), new);
    a.unmount();
    b.unmount();
}

#[test]
fn a_write_through_a_handle_open_when_another_device_removed_the_file_is_kept() {
    let server = TestServer::start();
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    let b = desktop.mount(&[]);
    write_synced(&a, "notes.txt", b"first draft\n");
    write_synced(&a, "read.txt", b"only read\n");
    wait_content(&b.path().join("notes.txt"), b"first draft\n");
    wait_content(&b.path().join("read.txt"), b"only read\n");

    let held = fs::File::open(b.path().join("notes.txt")).unwrap();
    let reader = fs::File::open(b.path().join("read.txt")).unwrap();
    fs::remove_file(a.path().join("notes.txt")).unwrap();
    fs::remove_file(a.path().join("read.txt")).unwrap();
    a.sync();
    wait_gone(&b.path().join("notes.txt"));
    wait_gone(&b.path().join("read.txt"));

    // The removal reached this device while a handle held the file, as when a
    // program resolved the path just before: what it writes afterwards is an edit
    // to a file deleted elsewhere, and is kept under the name the file had.
    let reopened = format!("/proc/self/fd/{}", held.as_raw_fd());
    let mut writer = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(reopened)
        .unwrap();
    writer.write_all(b"second draft\n").unwrap();
    drop(writer);
    drop(held);
    drop(reader);
    wait_content(&b.path().join("notes.txt"), b"second draft\n");
    b.sync();
    wait_content(&a.path().join("notes.txt"), b"second draft\n");
    // A file only read goes as the removal said.
    assert!(!b.path().join("read.txt").exists());
    assert!(!a.path().join("read.txt").exists());
    a.unmount();
    b.unmount();
}

#[test]
fn offline_edits_on_both_devices_keep_both_versions_as_one_conflicted_copy() {
    let mut server = TestServer::start();
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    write_synced(&a, "doc.txt", b"base\n");
    let b = desktop.mount(&[]);
    wait_content(&b.path().join("doc.txt"), b"base\n");

    server.terminate(Duration::from_secs(30));
    fs::write(a.path().join("doc.txt"), b"edited on the laptop\n").unwrap();
    fs::write(b.path().join("doc.txt"), b"edited on the desktop\n").unwrap();
    server.restart();
    a.sync();
    b.sync();

    let versions = |m: &Mount<'_>| -> Option<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(m.path()).ok()? {
            names.push(entry.ok()?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        if names.len() != 2 || !names.iter().any(|n| n == "doc.txt") {
            return None;
        }
        let copy = names
            .iter()
            .find(|n| n.contains("(conflicted copy from "))?;
        let mut contents = vec![
            fs::read(m.path().join("doc.txt")).ok()?,
            fs::read(m.path().join(copy)).ok()?,
        ];
        contents.sort();
        Some(contents)
    };
    let expected = vec![
        b"edited on the desktop\n".to_vec(),
        b"edited on the laptop\n".to_vec(),
    ];
    for mount in [&a, &b] {
        wait_for("one conflicted copy with both contents", SYNC, || {
            (versions(mount)? == expected).then_some(())
        });
        let listed = mount.device.json(&["conflicts", "--json"]);
        let listed = listed.as_array().expect("a list");
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0]["original"], "/doc.txt");
        assert_eq!(mount.status()["conflicts"], 1);
    }

    // Settle it on the desktop, keeping the desktop's text: both mounts end with
    // one file holding it.
    let doc = b.path().join("doc.txt");
    desktop.ok(&[
        "conflicts",
        "resolve",
        doc.to_str().unwrap(),
        "--keep",
        "mine",
    ]);
    b.sync();
    for mount in [&a, &b] {
        wait_for("the conflict settled", SYNC, || {
            let names: Vec<_> = fs::read_dir(mount.path()).ok()?.collect();
            (names.len() == 1).then_some(())
        });
        wait_content(&mount.path().join("doc.txt"), b"edited on the desktop\n");
        assert_eq!(
            mount.device.json(&["conflicts", "--json"]),
            serde_json::json!([])
        );
    }
    a.unmount();
    b.unmount();
}

#[test]
fn edits_renames_and_deletes_made_offline_replay_in_order() {
    let mut server = TestServer::start();
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    fs::create_dir(a.path().join("d")).unwrap();
    fs::write(a.path().join("x.txt"), b"x before\n").unwrap();
    fs::write(a.path().join("y.txt"), b"y before\n").unwrap();
    a.sync();
    let b = desktop.mount(&[]);
    wait_content(&b.path().join("y.txt"), b"y before\n");

    server.terminate(Duration::from_secs(30));
    // Edit then move a file; edit then delete another; a new folder with a file.
    fs::write(a.path().join("x.txt"), b"x edited offline\n").unwrap();
    fs::rename(a.path().join("x.txt"), a.path().join("d/x2.txt")).unwrap();
    fs::write(a.path().join("y.txt"), b"y edited offline\n").unwrap();
    fs::remove_file(a.path().join("y.txt")).unwrap();
    fs::create_dir(a.path().join("new")).unwrap();
    fs::write(a.path().join("new/z.txt"), b"z\n").unwrap();
    assert!(a.status()["queued_uploads"].as_u64().unwrap() > 0);
    server.restart();
    a.sync();

    wait_content(&b.path().join("d/x2.txt"), b"x edited offline\n");
    wait_content(&b.path().join("new/z.txt"), b"z\n");
    wait_gone(&b.path().join("x.txt"));
    wait_gone(&b.path().join("y.txt"));
    a.unmount();
    b.unmount();
}

#[test]
fn a_cursor_older_than_the_journal_lists_the_tree_again() {
    let server = TestServer::start();
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    fs::write(a.path().join("kept.txt"), b"kept\n").unwrap();
    fs::write(a.path().join("gone.txt"), b"gone\n").unwrap();
    fs::write(a.path().join("moved.txt"), b"moved\n").unwrap();
    fs::write(a.path().join("changed.txt"), b"before\n").unwrap();
    a.sync();
    let b = desktop.mount(&[]);
    wait_content(&b.path().join("changed.txt"), b"before\n");
    b.unmount();

    fs::remove_file(a.path().join("gone.txt")).unwrap();
    fs::rename(a.path().join("moved.txt"), a.path().join("renamed.txt")).unwrap();
    fs::write(a.path().join("changed.txt"), b"after\n").unwrap();
    fs::write(a.path().join("added.txt"), b"added\n").unwrap();
    a.sync();
    // The server forgets its journal (as pruning would): B's cursor is too old.
    server
        .db()
        .execute("DELETE FROM journal", [])
        .expect("pruning the journal");

    let b = desktop.mount(&[]);
    wait_content(&b.path().join("changed.txt"), b"after\n");
    wait_content(&b.path().join("renamed.txt"), b"moved\n");
    wait_content(&b.path().join("added.txt"), b"added\n");
    wait_gone(&b.path().join("gone.txt"));
    wait_gone(&b.path().join("moved.txt"));
    assert_eq!(fs::read(b.path().join("kept.txt")).unwrap(), b"kept\n");
    a.unmount();
    b.unmount();
}

#[test]
fn a_server_killed_in_a_stream_of_writes_comes_back_and_both_mounts_converge() {
    let mut server = TestServer::start();
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    let b = desktop.mount(&[]);
    fs::create_dir(a.path().join("stream")).unwrap();
    let content = |n: usize| format!("write {n} from the laptop\n").into_bytes();
    // The server dies partway through and comes back later; nobody tells the mounts.
    for n in 0..40 {
        fs::write(a.path().join(format!("stream/{n}.txt")), content(n)).unwrap();
        match n {
            15 => server.kill9(),
            25 => server.restart(),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    fs::write(b.path().join("from-desktop.txt"), b"after the restart\n").unwrap();
    // Reconnection backs off up to 5 s; then everything arrives on its own.
    let reconnect = Duration::from_secs(30);
    for n in 0..40 {
        wait_content_within(
            &b.path().join(format!("stream/{n}.txt")),
            &content(n),
            reconnect,
        );
    }
    wait_content_within(
        &a.path().join("from-desktop.txt"),
        b"after the restart\n",
        reconnect,
    );
    a.unmount();
    b.unmount();
}

/// The server's count of gRPC calls whose method path starts with `method`, from
/// its `/metrics`.
fn calls(gateway: std::net::SocketAddr, method: &str) -> u64 {
    let text = common::metrics(gateway);
    let prefix = format!("loft_grpc_calls_total{{method=\"{method}");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A stream of small files (an unpacked archive, a build's output) goes up in a few
/// large commits: the sync engine lets a group of ready files wait a moment
/// (20 ms) for the files closed just after it.
#[test]
fn a_stream_of_small_files_goes_up_in_a_few_commits() {
    const FILES: u64 = 400;
    let (server, gateway) = TestServer::start_with_gateway(&[]);
    let (laptop, desktop) = two_devices(&server);
    // The stream lasts far longer than the debounce (50 ms): files become ready
    // one by one while it goes on.
    let mount = laptop.mount(&[]);
    let stream = mount.path().join("stream");
    fs::create_dir(&stream).unwrap();
    mount.sync();
    let before = calls(gateway, "/loft.v1.Commit/Commit");
    let started = Instant::now();
    for i in 0..FILES {
        fs::write(stream.join(format!("f{i:04}")), format!("file {i}\n")).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let lasted = started.elapsed();
    mount.sync();
    let commits = calls(gateway, "/loft.v1.Commit/Commit") - before;
    // Sync rounds are at least 5 ms apart, so sending what is ready at each would
    // take up to one commit per 5 ms of the stream; groups take about one per 20 ms.
    let most = lasted.as_millis() as u64 / 10 + 5;
    assert!(
        commits <= most,
        "{FILES} small files over {lasted:?} took {commits} commit calls (at most {most})"
    );
    let other = desktop.mount(&[]);
    let listed = fs::read_dir(other.path().join("stream")).unwrap().count() as u64;
    assert_eq!(listed, FILES);
    assert_eq!(
        fs::read(other.path().join("stream/f0399")).unwrap(),
        b"file 399\n"
    );
}

/// A new file that gets its name after it is written (git's `link` then `unlink` of
/// each object, rsync's rename of its temporary copy) is created on the server under
/// its final name, with the other new files: no call links, renames or removes it.
/// A save that renames a new file over one the server has still makes a new version
/// of that file, which keeps its history.
#[test]
fn new_files_named_after_they_are_written_go_up_under_their_final_names() {
    // Five journal entries a round: more than the sync engine reads at once (256),
    // so a file's naming lies past the end of the first read.
    const FILES: usize = 60;
    let (server, gateway) = TestServer::start_with_gateway(&[]);
    let (laptop, desktop) = two_devices(&server);
    // A long debounce, so each file's naming is queued long before the file is
    // ready to send, however loaded the machine.
    let a = laptop.mount(&["--upload-debounce", "1s"]);
    let objects = a.path().join("objects");
    fs::create_dir(&objects).unwrap();
    fs::write(a.path().join("notes.txt"), b"first\n").unwrap();
    a.sync();
    let named = [
        "/loft.v1.Tree/Link",
        "/loft.v1.Tree/Remove",
        "/loft.v1.Tree/Rename",
    ];
    let before = named.map(|method| calls(gateway, method));
    for i in 0..FILES {
        let temporary = objects.join(format!("tmp_obj_{i}"));
        fs::write(&temporary, format!("object {i}\n")).unwrap();
        fs::hard_link(&temporary, objects.join(format!("object{i}"))).unwrap();
        fs::remove_file(&temporary).unwrap();
        let temporary = objects.join(format!(".copy{i}.Xa3f9"));
        fs::write(&temporary, format!("copy {i}\n")).unwrap();
        fs::rename(&temporary, objects.join(format!("copy{i}"))).unwrap();
    }
    // gedit's way: a new file beside it, renamed over it.
    let saved = a.path().join(".goutputstream-ZX81Q1");
    fs::write(&saved, b"second\n").unwrap();
    fs::rename(&saved, a.path().join("notes.txt")).unwrap();
    a.sync();
    let sent = named.map(|method| calls(gateway, method));
    assert_eq!(
        [
            sent[0] - before[0],
            sent[1] - before[1],
            sent[2] - before[2]
        ],
        [0, 0, 1],
        "calls to link, remove and rename: only the save over notes.txt renames"
    );
    let b = desktop.mount(&[]);
    let mut names: Vec<String> = fs::read_dir(b.path().join("objects"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..FILES)
        .flat_map(|i| [format!("object{i}"), format!("copy{i}")])
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    for i in 0..FILES {
        let object = b.path().join(format!("objects/object{i}"));
        assert_eq!(
            fs::read(object).unwrap(),
            format!("object {i}\n").as_bytes()
        );
        let copy = b.path().join(format!("objects/copy{i}"));
        assert_eq!(fs::read(copy).unwrap(), format!("copy {i}\n").as_bytes());
    }
    assert_eq!(fs::read(b.path().join("notes.txt")).unwrap(), b"second\n");
    let history = desktop.json(&["versions", "/notes.txt", "--json"]);
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
}

/// `cp -a` sets each new file's access and modification times while it is open:
/// both go with the file's creation, so the copy goes up in groups of new files
/// with no call of its own per file, and the other device sees both times.
#[test]
fn a_copy_that_keeps_access_times_goes_up_with_its_creations() {
    use std::os::unix::fs::MetadataExt;
    const FILES: u64 = 40;
    let (server, gateway) = TestServer::start_with_gateway(&[]);
    let (laptop, desktop) = two_devices(&server);
    let source = tempfile::tempdir().unwrap();
    let accessed = std::time::UNIX_EPOCH + Duration::from_secs(1_650_000_000);
    let modified = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    for k in 0..FILES {
        let file = fs::File::create(source.path().join(format!("f{k}"))).unwrap();
        (&file).write_all(format!("file {k}\n").as_bytes()).unwrap();
        let times = fs::FileTimes::new()
            .set_accessed(accessed + Duration::from_secs(k))
            .set_modified(modified + Duration::from_secs(k));
        file.set_times(times).unwrap();
    }
    let a = laptop.mount(&[]);
    let copy = a.path().join("copy");
    let before = calls(gateway, "/loft.v1.Tree/SetAttr");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(source.path())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(copied.success());
    a.sync();
    // The folder's own times come after its files: one call for it.
    let sent = calls(gateway, "/loft.v1.Tree/SetAttr") - before;
    assert!(
        sent <= 1,
        "{sent} attribute calls for a copy of {FILES} files"
    );
    let b = desktop.mount(&[]);
    for k in 0..FILES {
        let meta = fs::metadata(b.path().join(format!("copy/f{k}"))).unwrap();
        let want_atime = 1_650_000_000 + k as i64;
        let want_mtime = 1_600_000_000 + k as i64;
        assert_eq!(
            (meta.atime(), meta.mtime()),
            (want_atime, want_mtime),
            "f{k}"
        );
    }
}

/// A save through a temporary file whose name the ignore rules keep local (`*.swp`)
/// renamed over the file: on the server the file gets a new version, with the
/// temporary file's mode, and keeps its history.
#[test]
fn a_save_through_an_ignored_temporary_file_keeps_the_history() {
    use std::os::unix::fs::MetadataExt;
    let (server, gateway) = TestServer::start_with_gateway(&[]);
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    write_synced(&a, "notes.txt", b"first\n");
    let removes = calls(gateway, "/loft.v1.Tree/Remove");
    let saved = a.path().join(".notes.txt.swp");
    fs::write(&saved, b"second\n").unwrap();
    fs::set_permissions(&saved, fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(&saved, a.path().join("notes.txt")).unwrap();
    a.sync();
    assert_eq!(calls(gateway, "/loft.v1.Tree/Remove"), removes);
    let history = desktop.json(&["versions", "/notes.txt", "--json"]);
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    let b = desktop.mount(&[]);
    let file = b.path().join("notes.txt");
    assert_eq!(fs::read(&file).unwrap(), b"second\n");
    assert_eq!(fs::metadata(&file).unwrap().mode() & 0o7777, 0o600);
    // And the file goes on as usual from either device.
    fs::write(&file, b"third\n").unwrap();
    b.sync();
    wait_content(&a.path().join("notes.txt"), b"third\n");
}

/// Sets (`Some`) or removes (`None`) xattr `name` of `path` with setfattr.
fn set_xattr(path: &Path, name: &str, value: Option<&str>) {
    let mut command = std::process::Command::new("setfattr");
    match value {
        Some(value) => command.args(["-n", name, "-v", value]),
        None => command.args(["-x", name]),
    };
    assert!(command.arg(path).status().unwrap().success());
}

/// An xattr set, changed or removed on one device shows on the other, which had
/// read the file's xattrs before.
#[test]
fn xattrs_changed_on_one_device_show_on_the_other() {
    let server = TestServer::start();
    let (laptop, desktop) = two_devices(&server);
    let a = laptop.mount(&[]);
    let b = desktop.mount(&[]);
    write_synced(&a, "photo.jpg", b"jpeg");
    let there = b.path().join("photo.jpg");
    wait_content(&there, b"jpeg");
    assert_eq!(xattr_of(&there, "user.rating"), Err(libc::ENODATA));
    let here = a.path().join("photo.jpg");
    for value in [Some("3"), Some("5"), None] {
        set_xattr(&here, "user.rating", value);
        a.sync();
        let want = value.map(|v| v.as_bytes().to_vec()).ok_or(libc::ENODATA);
        wait_for(
            &format!("user.rating {value:?} on the other device"),
            SYNC,
            || (xattr_of(&there, "user.rating") == want).then_some(()),
        );
    }
    // What the other device sets comes back the same way.
    set_xattr(&there, "user.album", Some("summer"));
    b.sync();
    wait_for("user.album on the first device", SYNC, || {
        (xattr_of(&here, "user.album") == Ok(b"summer".to_vec())).then_some(())
    });
}
