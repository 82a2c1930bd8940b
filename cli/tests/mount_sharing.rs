//! Shares through real mounts: a folder one user shares shows at the root of the
//! other's mount (beside a folder of the same name, with a suffix), changes flow both
//! ways by the change feed, a viewer's writes fail with EACCES at once, and a revoke
//! takes the folder away. Also the `loft share` / `loft comment` commands' output and
//! their answers to bad input.

mod common;

use common::mount::{SYNC, wait_content};

use std::fs;
use std::io::ErrorKind as IoErrorKind;

use common::{Device, TestServer, wait_for};

fn errno(result: std::io::Result<()>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

#[test]
fn a_shared_folder_syncs_both_ways_and_a_viewer_cannot_write() {
    let server = TestServer::start();
    server.add_user("alice");
    server.add_user("bob");
    let alice = Device::login(&server, "alice", "laptop");
    let bob = Device::login(&server, "bob", "desktop");
    let a = alice.mount(&[]);
    let b = bob.mount(&[]);

    // Bob has a folder of the same name already: the shared one gets a suffix.
    fs::create_dir(b.path().join("proj")).unwrap();
    fs::create_dir(a.path().join("proj")).unwrap();
    fs::write(a.path().join("proj/plan.txt"), b"v1\n").unwrap();
    a.sync();
    b.sync();
    let said = alice.ok(&["share", "/proj", "bob", "--role", "editor"]);
    assert!(said.contains("bob sees it as /proj (2)"), "{said}");

    // It shows at the root of bob's mount and of `loft ls /`.
    let shared = b.path().join("proj (2)");
    wait_content(&shared.join("plan.txt"), b"v1\n");
    let listed = bob.ok(&["ls", "/"]);
    assert!(listed.contains("proj (2)"), "{listed}");

    // As editor, bob's write reaches alice's mount, and alice's reaches bob's.
    fs::write(shared.join("from-bob.txt"), b"hello from bob\n").unwrap();
    wait_content(&a.path().join("proj/from-bob.txt"), b"hello from bob\n");
    fs::write(a.path().join("proj/plan.txt"), b"v2\n").unwrap();
    wait_content(&shared.join("plan.txt"), b"v2\n");

    // Comments, from the CLI.
    alice.ok(&["comment", "/proj/plan.txt", "ship it"]);
    let comments = bob.json(&["comments", "/proj (2)/plan.txt", "--json"]);
    assert_eq!(comments[0]["user"], "alice");
    assert_eq!(comments[0]["text"], "ship it");
    let list = bob.json(&["share", "list", "/proj (2)", "--json"]);
    assert_eq!(list["members"][1]["user"], "bob");
    assert_eq!(list["members"][1]["role"], "editor");

    // Made a viewer, bob's mount refuses writes there with EACCES (once its feed has
    // reconnected with the new role), and nothing reaches the server.
    alice.ok(&["share", "/proj", "bob", "--role", "viewer"]);
    // A fresh name each try: the kernel answers EEXIST itself for a name it has seen.
    // A probe made before the role change reached the mount never reaches the server
    // (it refuses it), so it can be removed again even once the mount knows the role.
    let mut tries = 0;
    wait_for(
        "bob's mount to refuse writes in the shared folder",
        SYNC,
        || {
            tries += 1;
            let probe = shared.join(format!("probe-{tries}"));
            match errno(fs::create_dir(&probe)) {
                Some(libc::EACCES) => Some(()),
                None => {
                    fs::remove_dir(&probe).expect("removing a probe the server never had");
                    None
                }
                Some(_) => None,
            }
        },
    );
    assert_eq!(
        errno(fs::write(shared.join("new.txt"), b"no")),
        Some(libc::EACCES)
    );
    assert_eq!(
        errno(fs::write(shared.join("plan.txt"), b"v3\n")),
        Some(libc::EACCES)
    );
    assert_eq!(
        errno(fs::remove_file(shared.join("plan.txt"))),
        Some(libc::EACCES)
    );
    assert_eq!(
        errno(fs::rename(
            shared.join("plan.txt"),
            shared.join("moved.txt")
        )),
        Some(libc::EACCES)
    );
    assert_eq!(fs::read(shared.join("plan.txt")).unwrap(), b"v2\n");
    // Bob's own folder stays writable.
    fs::write(b.path().join("proj/mine.txt"), b"mine\n").unwrap();
    // A viewer cannot comment, and the CLI says so.
    let error = bob.fails(&["comment", "/proj (2)/plan.txt", "me too"]);
    assert!(
        error.contains("permission") || error.contains("cannot"),
        "{error}"
    );
    b.sync();
    assert_eq!(fs::read(a.path().join("proj/plan.txt")).unwrap(), b"v2\n");

    // Revoked, the folder leaves bob's mount.
    let said = alice.ok(&["share", "revoke", "/proj", "bob"]);
    assert!(said.contains("revoked bob"), "{said}");
    wait_for(
        "the shared folder to leave bob's mount",
        SYNC,
        || match fs::metadata(&shared) {
            Err(e) if e.kind() == IoErrorKind::NotFound => Some(()),
            _ => None,
        },
    );
    assert!(b.path().join("proj/mine.txt").exists());

    b.unmount();
    a.unmount();
}

#[test]
fn share_commands_refuse_bad_input_clearly() {
    let server = TestServer::start();
    server.add_user("alice");
    server.add_user("bob");
    let alice = Device::login(&server, "alice", "laptop");
    alice.ok(&["ls", "/"]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f.txt");
    fs::write(&local, b"x").unwrap();
    alice.put(&local, "/f.txt");

    let error = alice.fails(&["share", "/missing", "bob", "--role", "viewer"]);
    assert!(error.contains("/missing"), "{error}");
    let error = alice.fails(&["share", "/f.txt", "nobody", "--role", "viewer"]);
    assert!(error.contains("nobody"), "{error}");
    let error = alice.fails(&["share", "/f.txt", "bob", "--role", "boss"]);
    assert!(error.contains("boss"), "{error}");
    let error = alice.fails(&["share", "/f.txt", "bob"]);
    assert!(error.contains("--role"), "{error}");
    let error = alice.fails(&["share", "f.txt", "bob", "--role", "viewer"]);
    assert!(error.contains("start with '/'"), "{error}");
    let error = alice.fails(&["share", "revoke", "/f.txt", "bob"]);
    assert!(error.contains("not shared"), "{error}");
    let error = alice.fails(&["comment", "/f.txt", " "]);
    assert!(error.contains("comment"), "{error}");
    // Nothing was shared or stored by any of it.
    assert!(
        alice
            .ok(&["share", "list", "/f.txt"])
            .contains("is not shared")
    );
    assert_eq!(
        alice.json(&["comments", "/f.txt", "--json"]),
        serde_json::json!([])
    );

    // A file shares too; plain `share list` names the members and roles.
    alice.ok(&["share", "/f.txt", "bob", "--role", "commenter"]);
    let list = alice.ok(&["share", "list", "/f.txt"]);
    assert!(list.contains("alice\towner"), "{list}");
    assert!(list.contains("bob\tcommenter  (shared by alice)"), "{list}");
}
