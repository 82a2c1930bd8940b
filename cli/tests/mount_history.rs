//! Version history and the trash end to end: `loft versions`, `loft restore` and
//! `loft trash` against a real server, with the result seen through a real mount, and
//! the server's pruning worker at work with a short retention.

mod common;

use common::mount::wait_content;

use std::fs;

use common::{DEADLINE, Device, TestServer, wait_for};

fn versions(device: &Device, path: &str) -> Vec<serde_json::Value> {
    device
        .json(&["versions", path, "--json"])
        .as_array()
        .expect("a JSON list")
        .clone()
}

fn trash(device: &Device) -> Vec<serde_json::Value> {
    device
        .json(&["trash", "list", "--json"])
        .as_array()
        .expect("a JSON list")
        .clone()
}

#[test]
fn a_restored_version_shows_in_the_mount() {
    let server = TestServer::start();
    server.add_user("alice");
    let laptop = Device::login(&server, "alice", "laptop");
    let mount = laptop.mount(&[]);
    let file = mount.path().join("notes.txt");

    fs::write(&file, b"version one\n").unwrap();
    mount.sync();
    fs::write(&file, b"version two, longer\n").unwrap();
    mount.sync();

    let list = versions(&laptop, "/notes.txt");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[0]["size"], 20);
    assert_eq!(list[1]["current"], false);
    assert_eq!(list[1]["size"], 12);
    assert_eq!(list[1]["device"], "laptop");
    assert_eq!(list[1]["author"], "alice");
    let time = list[1]["time"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    let first = list[1]["id"].as_u64().unwrap().to_string();
    let table = laptop.ok(&["versions", "/notes.txt"]);
    assert!(table.lines().next().unwrap().contains("AUTHOR"), "{table}");
    assert!(table.contains("current"), "{table}");

    let out = laptop.ok(&["restore", "/notes.txt", "--version", &first]);
    assert!(out.contains("restored /notes.txt"), "{out}");
    // A new current version with the old content, seen by the mount through the feed.
    wait_content(&file, b"version one\n");
    let list = versions(&laptop, "/notes.txt");
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[0]["size"], 12);
    assert_ne!(list[0]["id"].as_u64().unwrap().to_string(), first);
    mount.unmount();
}

#[test]
fn a_file_removed_in_the_mount_comes_back_from_the_trash() {
    let server = TestServer::start();
    server.add_user("alice");
    let laptop = Device::login(&server, "alice", "laptop");
    let mount = laptop.mount(&[]);
    fs::create_dir(mount.path().join("docs")).unwrap();
    let file = mount.path().join("docs/gone.txt");
    fs::write(&file, b"keep me\n").unwrap();
    mount.sync();
    fs::remove_file(&file).unwrap();
    mount.sync();
    assert!(!file.exists());

    let items = trash(&laptop);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["path"], "/docs/gone.txt");
    assert_eq!(items[0]["size"], 8);
    assert!(items[0]["id"].as_u64().is_some());
    let time = items[0]["deleted"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    let table = laptop.ok(&["trash", "list"]);
    assert!(table.contains("/docs/gone.txt"), "{table}");

    let out = laptop.ok(&["trash", "restore", "/docs/gone.txt"]);
    assert!(out.contains("restored /docs/gone.txt"), "{out}");
    wait_content(&file, b"keep me\n");
    assert!(trash(&laptop).is_empty());

    // A name taken meanwhile: the item comes back beside it.
    fs::remove_file(&file).unwrap();
    fs::write(&file, b"the new one\n").unwrap();
    mount.sync();
    let out = laptop.ok(&["trash", "restore", "/docs/gone.txt"]);
    assert!(out.contains("/docs/gone (restored).txt"), "{out}");
    wait_content(&mount.path().join("docs/gone (restored).txt"), b"keep me\n");
    assert_eq!(fs::read(&file).unwrap(), b"the new one\n");

    // Emptying the trash deletes for good.
    fs::remove_file(&file).unwrap();
    mount.sync();
    assert_eq!(trash(&laptop).len(), 1);
    laptop.ok(&["trash", "empty"]);
    assert!(trash(&laptop).is_empty());
    mount.unmount();
}

#[test]
fn bad_restores_are_refused_and_change_nothing() {
    let server = TestServer::start();
    server.add_user("alice");
    server.add_user("bob");
    let alice = Device::login(&server, "alice", "laptop");
    let bob = Device::login(&server, "bob", "phone");
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("a.txt");
    fs::write(&local, b"one\n").unwrap();
    alice.put(&local, "/a.txt");
    fs::write(&local, b"two\n").unwrap();
    alice.put(&local, "/a.txt");
    bob.put(&local, "/a.txt");
    alice.ok(&["rm", "/a.txt"]);
    fs::write(&local, b"three\n").unwrap();
    alice.put(&local, "/a.txt");
    let before = versions(&alice, "/a.txt");
    let alice_old = before[0]["id"].as_u64().unwrap().to_string();
    let trash_before = trash(&alice);
    assert_eq!(trash_before.len(), 1);

    let err = alice.fails(&["restore", "/a.txt", "--version", "999999"]);
    assert!(err.contains("/a.txt: version 999999 not found"), "{err}");
    let err = alice.fails(&["restore", "/missing.txt", "--version", "1"]);
    assert!(err.contains("/missing.txt"), "{err}");
    // Bob names alice's version on his own file of the same path: not found.
    let err = bob.fails(&["restore", "/a.txt", "--version", &alice_old]);
    assert!(err.contains("not found"), "{err}");
    let err = alice.fails(&["trash", "restore", "/nothing.txt"]);
    assert!(err.contains("/nothing.txt is not in the trash"), "{err}");
    let err = alice.fails(&["trash", "restore", "--id", "424242"]);
    assert!(err.contains("trash item 424242 not found"), "{err}");
    // Alice's trash item is not bob's to restore.
    let id = trash_before[0]["id"].as_u64().unwrap().to_string();
    bob.fails(&["trash", "restore", "--id", &id]);
    assert!(trash(&bob).is_empty());
    let err = alice.fails(&["versions", "/missing.txt"]);
    assert!(err.contains("/missing.txt"), "{err}");

    assert_eq!(versions(&alice, "/a.txt"), before);
    assert_eq!(trash(&alice), trash_before);
    assert_eq!(versions(&bob, "/a.txt").len(), 1);
}

#[test]
fn old_versions_and_trash_are_pruned_after_the_retention() {
    let server = TestServer::start_with(&[
        "--retention",
        "1s",
        // Long enough that an upload is committed before its chunks could go.
        "--chunk-grace",
        "2s",
        "--prune-interval",
        "200ms",
    ]);
    server.add_user("alice");
    let alice = Device::login(&server, "alice", "laptop");
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("a.bin");
    fs::write(&local, common::random_bytes(100_000, 1)).unwrap();
    alice.put(&local, "/a.bin");
    fs::write(&local, common::random_bytes(100_000, 2)).unwrap();
    alice.put(&local, "/a.bin");
    fs::write(&local, common::random_bytes(100_000, 3)).unwrap();
    alice.put(&local, "/gone.bin");
    alice.ok(&["rm", "/gone.bin"]);

    // The old version goes; the current one stays, readable.
    wait_for("the old version to be pruned", DEADLINE, || {
        (versions(&alice, "/a.bin").len() == 1).then_some(())
    });
    wait_for("the trash to be purged", DEADLINE, || {
        trash(&alice).is_empty().then_some(())
    });
    let back = work.path().join("back.bin");
    alice.get("/a.bin", &back);
    assert_eq!(fs::read(&back).unwrap(), common::random_bytes(100_000, 2));
    if server.data.join("chunks").exists() {
        // Only the current version's chunk is left in the store.
        wait_for("unreferenced chunks to be deleted", DEADLINE, || {
            (server.chunk_files().len() == 1).then_some(())
        });
    }
}
