//! `loft search` end to end against a real `loft-server`, without a mount: files
//! uploaded with `loft put` are online-only for everyone else, and the server finds the
//! words inside them for whoever may read them, and for no one else.

mod common;

use common::*;

#[test]
fn search_finds_words_in_an_online_only_shared_file_for_the_recipient_only() {
    let server = TestServer::start();
    for user in ["alice", "bob", "carol"] {
        server.add_user(user);
    }
    let alice = Device::login(&server, "alice", "laptop");
    let bob = Device::login(&server, "bob", "desktop");
    let carol = Device::login(&server, "carol", "tablet");
    let files = tempfile::tempdir().expect("tempdir");
    let local = files.path().join("report.md");
    std::fs::write(
        &local,
        "# Q3 report\n\nRevenue from the heliotrope line doubled this quarter.\n",
    )
    .expect("local file");
    alice.put(&local, "/proj/report.md");
    let said = alice.ok(&["share", "/proj", "bob", "--role", "viewer"]);
    assert!(said.contains("bob sees it as /proj"), "{said}");

    // Plain output: the drive path, a tab, the snippet.
    let out = bob.ok(&["search", "heliotrope"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let (path, snippet) = lines[0].split_once('\t').expect("PATH<TAB>snippet");
    assert_eq!(path, "/proj/report.md");
    assert!(snippet.contains("heliotrope line doubled"), "{snippet}");

    let hits = bob.json(&["search", "HELIO", "--json", "--limit", "5"]);
    assert_eq!(hits[0]["path"], "/proj/report.md", "{hits}");
    assert_eq!(hits[0]["kind"], "file");
    // By name too.
    assert_eq!(
        bob.json(&["search", "report", "--json"])[0]["path"],
        "/proj/report.md"
    );

    // A stranger finds nothing, neither by text nor by name.
    assert_eq!(carol.ok(&["search", "heliotrope"]), "");
    assert_eq!(
        carol.json(&["search", "report", "--json"]),
        serde_json::json!([])
    );

    // Bad queries say why.
    let error = bob.fails(&["search", "?!"]);
    assert!(error.contains("no words"), "{error}");
    let error = bob.fails(&["search", &"x".repeat(300)]);
    assert!(error.contains("at most 256"), "{error}");
}
