//! Two devices of one user commit on the same base version: one wins, the other's
//! content is kept as a conflicted copy, and the journal tells watchers both.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use loft_remote::RemoteClient;
use loft_remote::proto::{self, ChangeKind, watch_event::Event};

/// Checks `name` is `doc (conflicted copy from DEVICE YYYY-MM-DD).txt`.
fn is_conflicted_copy_name(name: &str, device: &str) -> bool {
    let Some(rest) = name.strip_prefix(&format!("doc (conflicted copy from {device} ")) else {
        return false;
    };
    let Some(date) = rest.strip_suffix(").txt") else {
        return false;
    };
    let bytes = date.as_bytes();
    bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit())
}

/// Every change from the beginning of the caller's home journal up to "caught up".
async fn journal_from_start(client: &dyn RemoteClient) -> Vec<proto::Change> {
    let mut stream = client.watch(0, 0).await.expect("watch");
    let mut changes = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("the watch stream stalled before catching up")
            .expect("the watch stream ended before catching up")
            .expect("watch event");
        match event.event.expect("empty watch event") {
            Event::Change(change) => changes.push(change),
            Event::CaughtUp(_) => return changes,
            Event::Reset(cursor) => panic!("a fresh journal asked for a reset to {cursor}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_on_one_base_keep_both_contents() {
    let server = TestServer::start();
    server.add_user("alice");
    let laptop = Device::login(&server, "alice", "laptop");
    let desktop = Device::login(&server, "alice", "desktop");
    let work = tempfile::tempdir().unwrap();

    // Version V of /doc.txt, known to both devices.
    let base = work.path().join("doc.txt");
    std::fs::write(&base, "the base text\n").unwrap();
    laptop.put(&base, "/doc.txt");
    let seen = work.path().join("seen.txt");
    desktop.get("/doc.txt", &seen);
    assert_eq!(std::fs::read(&seen).unwrap(), b"the base text\n");

    let clients = [laptop.client(&server), desktop.client(&server)];
    let contents: [&[u8]; 2] = [b"edited on the laptop\n", b"edited on the desktop\n"];
    let names = ["laptop", "desktop"];
    let mut sessions = Vec::new();
    let mut nodes = Vec::new();
    for client in &clients {
        sessions.push(client.who_am_i().await.expect("who am i"));
        nodes.push(client.resolve(b"/doc.txt").await.expect("resolve"));
    }
    assert_eq!(nodes[0].id, nodes[1].id);
    assert_eq!(nodes[0].version, nodes[1].version);
    let (doc, base_version) = (nodes[0].id, nodes[0].version);
    assert_ne!(base_version, 0);

    // Both upload their edit, then both commit on V at the same time.
    let mut manifests = Vec::new();
    for (client, content) in clients.iter().zip(contents) {
        let (manifest, _) = upload_bytes(client.clone(), content.to_vec()).await;
        manifests.push(manifest);
    }
    let commit = |i: usize| {
        let client = clients[i].clone();
        let request = proto::CommitRequest {
            node: doc,
            base_version,
            manifest: Some(proto::Manifest::from(&manifests[i])),
            mtime: None,
            atime: None,
            ..Default::default()
        };
        async move { client.commit(request).await.expect("commit") }
    };
    let (first, second) = tokio::join!(commit(0), commit(1));
    let replies = [first, second];
    let conflicts: Vec<usize> = (0..2).filter(|&i| replies[i].conflict).collect();
    assert_eq!(
        conflicts.len(),
        1,
        "exactly one commit must conflict: {replies:?}"
    );
    let (loser, winner) = (conflicts[0], 1 - conflicts[0]);

    // The winner's reply: a new version of /doc.txt on top of V.
    let won = &replies[winner];
    assert_eq!(won.node.as_ref().unwrap().id, doc);
    assert!(won.version > base_version);
    assert!(won.conflict_name.is_empty());

    // The loser's content went to a conflicted copy named after the loser's device.
    let lost = &replies[loser];
    let copy_name = String::from_utf8(lost.conflict_name.to_vec()).expect("utf-8 copy name");
    assert!(
        is_conflicted_copy_name(&copy_name, names[loser]),
        "unexpected conflicted copy name {copy_name:?}"
    );
    let copy_node = lost.node.as_ref().unwrap().id;
    assert_ne!(copy_node, doc);

    // The drive: /doc.txt holds the winner's text, the copy the loser's.
    let listing = laptop.json(&["ls", "/", "--json"]);
    let mut listed: Vec<String> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut expected = vec!["doc.txt".to_string(), copy_name.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    let current = work.path().join("current.txt");
    desktop.get("/doc.txt", &current);
    assert_eq!(std::fs::read(&current).unwrap(), contents[winner]);
    let copy = work.path().join("copy.txt");
    laptop.get(&format!("/{copy_name}"), &copy);
    assert_eq!(std::fs::read(&copy).unwrap(), contents[loser]);
    let versions = laptop.json(&["versions", "/doc.txt", "--json"]);
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");

    // Watchers learn both: doc.txt modified to the winner's version, the copy created.
    let changes = journal_from_start(clients[0].as_ref()).await;
    let modified = changes.iter().find(|c| {
        c.kind == ChangeKind::Modified as i32
            && c.name.as_ref() == b"doc.txt"
            && c.node
                .as_ref()
                .is_some_and(|n| n.id == doc && n.version == won.version)
    });
    let modified = modified
        .unwrap_or_else(|| panic!("no MODIFIED change for doc.txt's new version: {changes:#?}"));
    assert_eq!(modified.device_id, sessions[winner].device_id);
    let created = changes
        .iter()
        .find(|c| c.kind == ChangeKind::Created as i32 && c.name.as_ref() == copy_name.as_bytes())
        .unwrap_or_else(|| panic!("no CREATED change for {copy_name:?}: {changes:#?}"));
    assert_eq!(created.node.as_ref().unwrap().id, copy_node);
    assert_eq!(created.device_id, sessions[loser].device_id);
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "journal not gap-free: {seqs:?}"
    );
}
