//! Crashes around the mount, against a real server on loopback: every fsync'd file
//! survives a `kill -9` of the mount process (and the next `loft mount` clears the
//! dead FUSE mount it left) and reaches the server; with the server gone, held files
//! read fine while placeholders fail with EIO and the mount says it is offline.

mod common;

use std::io::{Read, Write};
use std::path::Path;

use common::{DEADLINE, Device, MIB, TestServer, random_bytes, wait_for};

/// The content of note `i`: sizes from a few bytes to a few KiB.
fn note(i: usize) -> Vec<u8> {
    format!("note {i}\n").repeat(1 + i % 500).into_bytes()
}

fn note_name(i: usize) -> String {
    format!("note-{i:04}.txt")
}

/// Every note in `dir` holds its content, and nothing else is there.
fn check_notes(dir: &Path, count: usize) {
    let mut wrong = Vec::new();
    for i in 0..count {
        match std::fs::read(dir.join(note_name(i))) {
            Ok(got) if got == note(i) => {}
            Ok(got) => wrong.push(format!("{}: {} bytes, wrong", note_name(i), got.len())),
            Err(error) => wrong.push(format!("{}: {error}", note_name(i))),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} notes lost or wrong: {wrong:?}",
        wrong.len()
    );
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected: Vec<String> = (0..count).map(note_name).collect();
    assert_eq!(names, expected, "the notes folder lists other entries");
}

#[test]
fn fsynced_files_survive_a_killed_mount_process_and_reach_the_server() {
    const NOTES: usize = 1000;
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let mount = device.mount(&[]);
    let notes = mount.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    for i in 0..NOTES {
        let mut file = std::fs::File::create(notes.join(note_name(i))).unwrap();
        file.write_all(&note(i)).unwrap();
        file.sync_all().unwrap();
    }

    // The sync engine is still sending when the process dies.
    let (parent, dir) = mount.kill9();
    let mount = device.mount_at(parent, dir, &[]);
    assert!(
        device.mount_log().contains("cleaning up the dead mount"),
        "{}",
        device.mount_log()
    );
    check_notes(&mount.path().join("notes"), NOTES);

    // And the server has them all: read them back through an empty cache.
    mount.sync();
    assert_eq!(mount.status()["queued_uploads"], 0);
    mount.unmount();
    std::fs::remove_dir_all(device.cache_dir()).unwrap();
    let mount = device.mount(&[]);
    check_notes(&mount.path().join("notes"), NOTES);
    mount.unmount();
}

/// Changes are committed to the mirror in groups a few milliseconds long: files
/// written (not fsync'd) a moment before a `kill -9` are there after it. The server is
/// down the whole time, so nothing comes back from it.
#[test]
fn files_written_a_moment_before_a_killed_mount_process_are_kept_offline() {
    const NOTES: usize = 200;
    let mut server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let mount = device.mount(&[]);
    server.kill9();
    let notes = mount.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    for i in 0..NOTES {
        std::fs::write(notes.join(note_name(i)), note(i)).unwrap();
    }
    // Two hundred times the mirror's commit window (5 ms).
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (parent, dir) = mount.kill9();
    let mount = device.mount_at(parent, dir, &[]);
    assert_eq!(mount.status()["online"], false);
    check_notes(&mount.path().join("notes"), NOTES);
    mount.unmount();
}

#[test]
fn with_the_server_gone_held_files_read_and_placeholders_fail_with_eio() {
    let mut server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let mount = device.mount(&[]);
    let held = random_bytes(3 * MIB + 11, 31);
    let remote = random_bytes(3 * MIB + 12, 32);
    std::fs::write(mount.path().join("held.bin"), &held).unwrap();
    std::fs::write(mount.path().join("remote.bin"), &remote).unwrap();
    mount.sync();
    mount.unmount();
    std::fs::remove_dir_all(device.cache_dir()).unwrap();

    let mount = device.mount(&[]);
    assert!(std::fs::read(mount.path().join("held.bin")).unwrap() == held);
    assert_eq!(mount.path_status("held.bin")["state"], "hydrated");
    // Opened while online (its layout is known); nothing of it is read yet.
    let mut open_early = std::fs::File::open(mount.path().join("remote.bin")).unwrap();
    assert_eq!(mount.path_status("remote.bin")["state"], "online-only");
    wait_for("the mount to be online", DEADLINE, || {
        (mount.status()["online"] == true).then_some(())
    });

    server.kill9();
    let got = std::fs::read(mount.path().join("held.bin"))
        .unwrap_or_else(|e| panic!("reading a held file offline: {e}"));
    assert!(got == held, "held.bin read back wrong offline");
    let mut buf = vec![0u8; 4096];
    let error = open_early
        .read(&mut buf)
        .expect_err("reading a placeholder offline");
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
    let error =
        std::fs::read(mount.path().join("remote.bin")).expect_err("reading a placeholder offline");
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
    wait_for("the mount to notice it is offline", DEADLINE, || {
        (mount.status()["online"] == false).then_some(())
    });
    drop(open_early);

    // Back online, the placeholder reads.
    server.restart();
    wait_for("the mount to be online again", DEADLINE, || {
        (mount.status()["online"] == true).then_some(())
    });
    let got = std::fs::read(mount.path().join("remote.bin")).unwrap();
    assert!(
        got == remote,
        "remote.bin read back wrong after reconnecting"
    );
    mount.unmount();
}
