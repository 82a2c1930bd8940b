//! POSIX semantics of the metadata store, exercised through the `MetaStore` trait on
//! SQLite and (when configured) PostgreSQL.

#[macro_use]
mod common;

use std::sync::Arc;

use common::Kind;

use loft_remote::content::Manifest;
use loft_remote::errors::ErrorKind;
use loft_remote::proto::{ChangeKind, NodeKind};
use loft_server::meta::{
    Caller, CommitOp, MetaStore, NewNode, RemoveOp, RenameOp, XattrMode, now_nanos,
};

struct Fixture {
    _stores: common::Stores,
    meta: Arc<dyn MetaStore>,
    alice: Caller,
}

async fn fixture(backend: Kind) -> Fixture {
    let stores = common::stores(backend).await;
    let meta = stores.meta().await;
    let user = meta.create_user("alice", "x").await.unwrap();
    let alice = meta
        .create_session(user.id, "laptop", [1; 32], now_nanos() + 1_000_000_000_000)
        .await
        .unwrap();
    Fixture {
        _stores: stores,
        meta,
        alice,
    }
}

fn new_node(parent: u64, name: &str, kind: NodeKind) -> NewNode {
    NewNode {
        parent,
        name: name.as_bytes().to_vec(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        symlink_target: b"target".to_vec(),
        rdev: 0,
        exclusive: true,
        mtime: None,
    }
}

fn rename(parent: u64, name: &str, new_parent: u64, new_name: &str) -> RenameOp {
    RenameOp {
        parent,
        name: name.as_bytes().to_vec(),
        new_parent,
        new_name: new_name.as_bytes().to_vec(),
        no_replace: false,
        exchange: false,
        node: 0,
    }
}

fn remove(parent: u64, name: &str) -> RemoveOp {
    RemoveOp {
        parent,
        name: name.as_bytes().to_vec(),
        recursive: false,
        directory_only: false,
        non_directory_only: false,
        node: 0,
    }
}

/// Records `manifest`'s chunks as uploaded by `caller`, as the upload path would.
async fn record_uploads(f: &Fixture, caller: &Caller, manifest: &Manifest) {
    for chunk in &manifest.chunks {
        let record = loft_server::meta::ChunkRecord {
            id: chunk.id,
            length: chunk.length,
            stored_length: chunk.length,
            compressed: false,
        };
        f.meta.record_chunk(caller, record).await.unwrap();
    }
}

async fn commit(
    f: &Fixture,
    caller: &Caller,
    node: u64,
    base: u64,
    data: &[u8],
) -> loft_server::meta::CommitOutcome {
    // Commits need chunks the caller uploaded: record them as the upload path would.
    let manifest = Manifest::of_bytes(data);
    record_uploads(f, caller, &manifest).await;
    f.meta
        .commit(
            caller,
            CommitOp {
                node,
                create: None,
                base_version: base,
                manifest,
                mtime: None,
                atime: None,
            },
        )
        .await
        .unwrap()
}

fn kind<T>(result: Result<T, loft_server::ServerError>) -> Option<ErrorKind> {
    result.err().map(|e| e.kind)
}

async fn errors_are_the_posix_ones(backend: Kind) {
    let f = fixture(backend).await;
    let root = f.alice.root;
    let dir = f
        .meta
        .create(&f.alice, new_node(root, "d", NodeKind::Directory))
        .await
        .unwrap();
    let file = f
        .meta
        .create(&f.alice, new_node(dir.id, "f", NodeKind::File))
        .await
        .unwrap();

    assert_eq!(
        kind(
            f.meta
                .create(&f.alice, new_node(root, "d", NodeKind::File))
                .await
        ),
        Some(ErrorKind::AlreadyExists)
    );
    assert_eq!(
        kind(f.meta.remove(&f.alice, remove(root, "d")).await),
        Some(ErrorKind::NotEmpty)
    );
    assert_eq!(
        kind(f.meta.lookup(&f.alice, root, b"missing").await),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        kind(f.meta.lookup(&f.alice, file.id, b"x").await),
        Some(ErrorKind::NotADirectory)
    );
    assert_eq!(
        kind(
            f.meta
                .create(&f.alice, new_node(root, &"n".repeat(256), NodeKind::File))
                .await
        ),
        Some(ErrorKind::NameTooLong)
    );
    for bad in ["a/b", ".", "..", "nul\0"] {
        assert_eq!(
            kind(
                f.meta
                    .create(&f.alice, new_node(root, bad, NodeKind::File))
                    .await
            ),
            Some(ErrorKind::InvalidName),
            "{bad:?}"
        );
    }
    let mut rmdir = remove(dir.id, "f");
    rmdir.directory_only = true;
    assert_eq!(
        kind(f.meta.remove(&f.alice, rmdir).await),
        Some(ErrorKind::NotADirectory)
    );
    let mut unlink = remove(root, "d");
    unlink.non_directory_only = true;
    assert_eq!(
        kind(f.meta.remove(&f.alice, unlink).await),
        Some(ErrorKind::IsADirectory)
    );
    assert_eq!(
        kind(
            f.meta
                .rename(&f.alice, rename(root, "d", dir.id, "inside"))
                .await
        ),
        Some(ErrorKind::InvalidArgument),
        "a directory cannot move below itself"
    );
    let other = f
        .meta
        .create(&f.alice, new_node(root, "other", NodeKind::File))
        .await
        .unwrap();
    assert_eq!(
        kind(
            f.meta
                .rename(&f.alice, rename(root, "d", root, "other"))
                .await
        ),
        Some(ErrorKind::NotADirectory)
    );
    assert_eq!(
        kind(
            f.meta
                .rename(&f.alice, rename(root, "other", root, "d"))
                .await
        ),
        Some(ErrorKind::IsADirectory)
    );
    // A rename that names the node it means moves nothing when the name holds
    // another node now.
    let mut meant = rename(root, "other", root, "moved");
    meant.node = file.id;
    assert_eq!(
        kind(f.meta.rename(&f.alice, meant.clone()).await),
        Some(ErrorKind::NotFound)
    );
    assert!(f.meta.lookup(&f.alice, root, b"other").await.is_ok());
    assert_eq!(
        kind(f.meta.lookup(&f.alice, root, b"moved").await),
        Some(ErrorKind::NotFound)
    );
    meant.node = other.id;
    f.meta.rename(&f.alice, meant).await.unwrap();
    assert_eq!(
        f.meta.lookup(&f.alice, root, b"moved").await.unwrap().id,
        other.id
    );
    // So does a removal: the node the name holds now stays.
    let mut gone = remove(root, "moved");
    gone.node = file.id;
    assert_eq!(
        kind(f.meta.remove(&f.alice, gone.clone()).await),
        Some(ErrorKind::NotFound)
    );
    assert!(f.meta.lookup(&f.alice, root, b"moved").await.is_ok());
    gone.node = other.id;
    f.meta.remove(&f.alice, gone).await.unwrap();
    assert_eq!(
        kind(f.meta.lookup(&f.alice, root, b"moved").await),
        Some(ErrorKind::NotFound)
    );
}

async fn directory_link_counts_follow_subdirectories(backend: Kind) {
    let f = fixture(backend).await;
    let root = f.alice.root;
    let a = f
        .meta
        .create(&f.alice, new_node(root, "a", NodeKind::Directory))
        .await
        .unwrap();
    f.meta
        .create(&f.alice, new_node(a.id, "b", NodeKind::Directory))
        .await
        .unwrap();
    assert_eq!(f.meta.stat(&f.alice, a.id).await.unwrap().nlink, 3);
    f.meta
        .rename(&f.alice, rename(a.id, "b", root, "b"))
        .await
        .unwrap();
    assert_eq!(f.meta.stat(&f.alice, a.id).await.unwrap().nlink, 2);
    assert_eq!(f.meta.stat(&f.alice, root).await.unwrap().nlink, 4);
}

async fn hard_links_share_one_node(backend: Kind) {
    let f = fixture(backend).await;
    let root = f.alice.root;
    let file = f
        .meta
        .create(&f.alice, new_node(root, "f", NodeKind::File))
        .await
        .unwrap();
    let linked = f.meta.link(&f.alice, file.id, root, b"g").await.unwrap();
    assert_eq!(linked.id, file.id);
    assert_eq!(linked.nlink, 2);
    // Renaming one link over the other does nothing (POSIX).
    f.meta
        .rename(&f.alice, rename(root, "f", root, "g"))
        .await
        .unwrap();
    assert!(f.meta.lookup(&f.alice, root, b"f").await.is_ok());
    f.meta.remove(&f.alice, remove(root, "f")).await.unwrap();
    assert_eq!(f.meta.stat(&f.alice, file.id).await.unwrap().nlink, 1);
}

async fn rename_over_a_file_keeps_the_targets_identity_and_history(backend: Kind) {
    let f = fixture(backend).await;
    let root = f.alice.root;
    let doc = f
        .meta
        .create(&f.alice, new_node(root, "doc", NodeKind::File))
        .await
        .unwrap();
    let v1 = commit(&f, &f.alice, doc.id, 0, b"first").await;
    let tmp = f
        .meta
        .create(&f.alice, new_node(root, "doc.tmp", NodeKind::File))
        .await
        .unwrap();
    commit(&f, &f.alice, tmp.id, 0, b"second save").await;

    let outcome = f
        .meta
        .rename(&f.alice, rename(root, "doc.tmp", root, "doc"))
        .await
        .unwrap();
    assert_eq!(outcome.node.id, doc.id, "the target keeps its id");
    assert_eq!(outcome.node.size, b"second save".len() as u64);
    assert!(f.meta.lookup(&f.alice, root, b"doc.tmp").await.is_err());
    let versions = f.meta.versions(&f.alice, doc.id).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions.iter().any(|v| v.id == v1.version));
    assert!(versions[0].current);
}

async fn a_stale_base_becomes_a_conflicted_copy(backend: Kind) {
    let f = fixture(backend).await;
    let root = f.alice.root;
    let user = f.meta.user_by_name("alice").await.unwrap().unwrap();
    let phone = f
        .meta
        .create_session(user.id, "phone", [2; 32], now_nanos() + 1_000_000_000_000)
        .await
        .unwrap();
    let doc = f
        .meta
        .create(&f.alice, new_node(root, "notes.txt", NodeKind::File))
        .await
        .unwrap();
    let base = commit(&f, &f.alice, doc.id, 0, b"v1").await.version;

    let laptop_edit = commit(&f, &f.alice, doc.id, base, b"laptop").await;
    let phone_edit = commit(&f, &phone, doc.id, base, b"phone").await;
    assert!(laptop_edit.conflict_name.is_none());
    let copy_name = phone_edit
        .conflict_name
        .expect("second commit on a stale base conflicts");
    let copy_name = String::from_utf8(copy_name).unwrap();
    assert!(
        copy_name.starts_with("notes (conflicted copy from phone "),
        "{copy_name}"
    );
    assert!(copy_name.ends_with(").txt"));
    let copy = f
        .meta
        .lookup(&f.alice, root, copy_name.as_bytes())
        .await
        .unwrap();
    assert_eq!(copy.size, 5);
    assert_eq!(f.meta.stat(&f.alice, doc.id).await.unwrap().size, 6);

    let page = f
        .meta
        .journal_since(&f.alice, f.alice.home_ns, 0, 1000)
        .await
        .unwrap();
    let seqs: Vec<u64> = page.changes.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "journal is gap-free"
    );
    let last = page.changes.last().unwrap();
    assert_eq!(last.kind(), ChangeKind::Created);
    assert_eq!(last.name.as_ref(), copy_name.as_bytes());
}

async fn content_deleted_elsewhere_survives_as_a_copy(backend: Kind) {
    let f = fixture(backend).await;
    let root = f.alice.root;
    let doc = f
        .meta
        .create(&f.alice, new_node(root, "gone.md", NodeKind::File))
        .await
        .unwrap();
    let base = commit(&f, &f.alice, doc.id, 0, b"v1").await.version;
    f.meta
        .remove(&f.alice, remove(root, "gone.md"))
        .await
        .unwrap();
    let outcome = commit(&f, &f.alice, doc.id, base, b"edited offline").await;
    let name = outcome
        .conflict_name
        .expect("a deleted target keeps the new content beside it");
    assert!(f.meta.lookup(&f.alice, root, &name).await.is_ok());
}

async fn other_users_see_nothing(backend: Kind) {
    let f = fixture(backend).await;
    let bob = f.meta.create_user("bob", "x").await.unwrap();
    let bob = f
        .meta
        .create_session(bob.id, "pc", [3; 32], now_nanos() + 1_000_000_000_000)
        .await
        .unwrap();
    let secret = f
        .meta
        .create(&f.alice, new_node(f.alice.root, "secret", NodeKind::File))
        .await
        .unwrap();
    let kind = f.meta.stat(&bob, secret.id).await.unwrap_err().kind;
    assert_eq!(kind, ErrorKind::NotFound, "no hint that the node exists");
    let kind = f
        .meta
        .create(&bob, new_node(f.alice.root, "x", NodeKind::File))
        .await
        .unwrap_err()
        .kind;
    assert_eq!(kind, ErrorKind::NotFound);
    let kind = f
        .meta
        .journal_since(&bob, f.alice.home_ns, 0, 10)
        .await
        .unwrap_err()
        .kind;
    assert_eq!(kind, ErrorKind::NotFound);
}

async fn a_repeated_commit_of_the_same_bytes_is_not_a_conflict(backend: Kind) {
    let f = fixture(backend).await;
    let doc = f
        .meta
        .create(&f.alice, new_node(f.alice.root, "same", NodeKind::File))
        .await
        .unwrap();
    let first = commit(&f, &f.alice, doc.id, 0, b"identical").await;
    let again = commit(&f, &f.alice, doc.id, 0, b"identical").await;
    assert!(again.conflict_name.is_none());
    assert_eq!(again.version, first.version);
    assert_eq!(f.meta.versions(&f.alice, doc.id).await.unwrap().len(), 1);
}

async fn a_commit_can_create_its_file(backend: Kind) {
    let f = fixture(backend).await;
    let manifest = Manifest::of_bytes(b"new file");
    record_uploads(&f, &f.alice, &manifest).await;
    let op = |manifest: Manifest| CommitOp {
        node: 0,
        create: Some(NewNode {
            exclusive: false,
            ..new_node(f.alice.root, "fresh.txt", NodeKind::File)
        }),
        base_version: 0,
        manifest,
        mtime: None,
        atime: None,
    };
    let created = f.meta.commit(&f.alice, op(manifest.clone())).await.unwrap();
    assert!(created.conflict_name.is_none());
    assert_eq!(
        f.meta
            .lookup(&f.alice, f.alice.root, b"fresh.txt")
            .await
            .unwrap()
            .id,
        created.node.id
    );
    // Another device creating the same name with other bytes keeps both.
    let other = Manifest::default();
    let second = f.meta.commit(&f.alice, op(other)).await.unwrap();
    assert!(second.conflict_name.is_some());
}

async fn journal_head(f: &Fixture) -> u64 {
    let page = f.meta.journal_since(&f.alice, f.alice.home_ns, 0, 1000);
    page.await.unwrap().head
}

async fn a_removal_batch_is_all_or_nothing(backend: Kind) {
    let f = fixture(backend).await;
    let root = f.alice.root;
    let dir = f
        .meta
        .create(&f.alice, new_node(root, "d", NodeKind::Directory))
        .await
        .unwrap();
    for name in ["a", "b"] {
        f.meta
            .create(&f.alice, new_node(dir.id, name, NodeKind::File))
            .await
            .unwrap();
    }
    let before = journal_head(&f).await;
    // A name that is not there fails the whole batch: `a`, before it, stays.
    let missing = vec![
        remove(dir.id, "a"),
        remove(dir.id, "nothing"),
        remove(dir.id, "b"),
    ];
    assert_eq!(
        kind(f.meta.remove_many(&f.alice, missing).await),
        Some(ErrorKind::NotFound)
    );
    assert!(f.meta.lookup(&f.alice, dir.id, b"a").await.is_ok());
    assert_eq!(journal_head(&f).await, before);
    // In order: the folder's files, then the folder.
    let all = vec![remove(dir.id, "a"), remove(dir.id, "b"), remove(root, "d")];
    f.meta.remove_many(&f.alice, all).await.unwrap();
    assert_eq!(
        kind(f.meta.lookup(&f.alice, root, b"d").await),
        Some(ErrorKind::NotFound)
    );
    let changes = f
        .meta
        .journal_since(&f.alice, f.alice.home_ns, before, 1000)
        .await
        .unwrap()
        .changes;
    let removed: Vec<_> = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Removed as i32)
        .map(|c| c.name.to_vec())
        .collect();
    assert_eq!(removed, [b"a".to_vec(), b"b".to_vec(), b"d".to_vec()]);
}

async fn a_listing_says_which_entries_have_xattrs(backend: Kind) {
    let f = fixture(backend).await;
    let root = f.alice.root;
    for name in ["bare", "tagged", "untagged"] {
        f.meta
            .create(&f.alice, new_node(root, name, NodeKind::File))
            .await
            .unwrap();
    }
    let listing = f.meta.list(&f.alice, root, b"", 0).await.unwrap();
    let tagged = listing.entries[1].1.id;
    f.meta
        .set_xattr(&f.alice, tagged, b"user.color", b"blue", XattrMode::Any)
        .await
        .unwrap();
    let untagged = listing.entries[2].1.id;
    f.meta
        .set_xattr(&f.alice, untagged, b"user.color", b"red", XattrMode::Any)
        .await
        .unwrap();
    f.meta
        .remove_xattr(&f.alice, untagged, b"user.color")
        .await
        .unwrap();

    let listing = f.meta.list(&f.alice, root, b"", 0).await.unwrap();
    let has: Vec<(&[u8], Option<bool>)> = listing
        .entries
        .iter()
        .map(|(name, node)| (name.as_slice(), node.has_xattrs))
        .collect();
    assert_eq!(
        has,
        [
            (&b"bare"[..], Some(false)),
            (&b"tagged"[..], Some(true)),
            (&b"untagged"[..], Some(false)),
        ]
    );
}

on_both_backends!(
    a_removal_batch_is_all_or_nothing,
    a_listing_says_which_entries_have_xattrs,
    errors_are_the_posix_ones,
    directory_link_counts_follow_subdirectories,
    hard_links_share_one_node,
    rename_over_a_file_keeps_the_targets_identity_and_history,
    a_stale_base_becomes_a_conflicted_copy,
    content_deleted_elsewhere_survives_as_a_copy,
    other_users_see_nothing,
    a_repeated_commit_of_the_same_bytes_is_not_a_conflict,
    a_commit_can_create_its_file,
);
