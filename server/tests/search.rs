//! Search over names and text content, through the indexing worker and the search entry
//! point the gRPC service uses, on SQLite and (when configured) PostgreSQL + S3.
//!
//! The indexer runs in the background as on a server; every search is made right after
//! the writes it must see, so each test also checks that a search waits for the index.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Kind;
use loft_remote::content::{ChunkId, ChunkRef, Manifest};
use loft_remote::errors::ErrorKind;
use loft_remote::proto::NodeKind;
use loft_server::chunk_store::ChunkStore;
use loft_server::meta::{
    Caller, ChunkRecord, CommitOp, MetaStore, NewNode, RemoveOp, Role, now_nanos,
};
use loft_server::search::indexer::{IndexConfig, Indexer};
use loft_server::search::{self, SearchHit};
use tokio::sync::watch;

struct Fixture {
    _stores: common::Stores,
    meta: Arc<dyn MetaStore>,
    chunks: ChunkStore,
    indexer: Arc<Indexer>,
    _stop: watch::Sender<bool>,
    alice: Caller,
    bob: Caller,
    carol: Caller,
}

async fn fixture(backend: Kind) -> Fixture {
    let stores = common::stores(backend).await;
    let backend = stores.backend().await;
    let meta = backend.meta.clone();
    let far = now_nanos() + 1_000_000_000_000;
    let mut callers = Vec::new();
    for (index, name) in ["alice", "bob", "carol"].into_iter().enumerate() {
        let user = meta.create_user(name, "x").await.unwrap();
        callers.push(
            meta.create_session(user.id, "laptop", [index as u8 + 1; 32], far)
                .await
                .unwrap(),
        );
    }
    let indexer = Arc::new(Indexer::new(meta.clone(), backend.chunks.clone()));
    let (stop, stopped) = watch::channel(false);
    // A long interval: only writes (through the hub) and searches wake the indexer.
    let config = IndexConfig {
        interval: Duration::from_secs(3600),
    };
    tokio::spawn(indexer.clone().run(config, backend.hub.clone(), stopped));
    let mut callers = callers.into_iter();
    Fixture {
        _stores: stores,
        meta,
        chunks: backend.chunks,
        indexer,
        _stop: stop,
        alice: callers.next().unwrap(),
        bob: callers.next().unwrap(),
        carol: callers.next().unwrap(),
    }
}

fn new_node(parent: u64, name: &str, kind: NodeKind) -> NewNode {
    NewNode {
        parent,
        name: name.as_bytes().to_vec(),
        kind,
        mode: if kind == NodeKind::Directory {
            0o755
        } else {
            0o644
        },
        uid: 0,
        gid: 0,
        symlink_target: Vec::new(),
        rdev: 0,
        exclusive: false,
        mtime: None,
    }
}

/// Uploads `data` as one chunk and commits it into `node` (or a new file `name` in
/// `parent`); returns the node and its new version.
async fn write(
    f: &Fixture,
    caller: &Caller,
    parent: u64,
    name: &str,
    node: u64,
    base: u64,
    data: &[u8],
) -> (u64, u64) {
    let id = ChunkId::of(data);
    f.chunks
        .put(&id, false, bytes::Bytes::copy_from_slice(data))
        .await
        .unwrap();
    let record = ChunkRecord {
        id,
        length: data.len() as u32,
        stored_length: data.len() as u32,
        compressed: false,
    };
    f.meta.record_chunk(caller, record).await.unwrap();
    let manifest = Manifest {
        chunks: vec![ChunkRef {
            id,
            length: data.len() as u32,
        }],
        size: data.len() as u64,
        content_hash: id.0,
    };
    let create = (node == 0).then(|| new_node(parent, name, NodeKind::File));
    let outcome = f
        .meta
        .commit(
            caller,
            CommitOp {
                node,
                create,
                base_version: base,
                manifest,
                mtime: None,
                atime: None,
            },
        )
        .await
        .unwrap();
    (outcome.node.id, outcome.version)
}

async fn put(f: &Fixture, caller: &Caller, parent: u64, name: &str, data: &[u8]) -> (u64, u64) {
    write(f, caller, parent, name, 0, 0, data).await
}

async fn mkdir(f: &Fixture, caller: &Caller, parent: u64, name: &str) -> u64 {
    f.meta
        .create(caller, new_node(parent, name, NodeKind::Directory))
        .await
        .unwrap()
        .id
}

async fn find(f: &Fixture, caller: &Caller, query: &str) -> Vec<SearchHit> {
    search::search(f.meta.as_ref(), &f.indexer, caller, query, 0)
        .await
        .unwrap()
}

fn paths(hits: &[SearchHit]) -> Vec<String> {
    hits.iter()
        .map(|hit| String::from_utf8_lossy(&hit.path).into_owned())
        .collect()
}

async fn words_in_content_and_names_are_found(backend: Kind) {
    let f = fixture(backend).await;
    let docs = mkdir(&f, &f.alice, f.alice.root, "docs").await;
    put(
        &f,
        &f.alice,
        docs,
        "notes.md",
        b"# Notes\n\nThe quarterly marmalade budget is due on Friday.\n",
    )
    .await;
    put(
        &f,
        &f.alice,
        f.alice.root,
        "main.rs",
        b"fn main() { frobnicate(); }\n",
    )
    .await;

    let hits = find(&f, &f.alice, "marmalade").await;
    assert_eq!(paths(&hits), ["/docs/notes.md"]);
    assert_eq!(hits[0].kind, NodeKind::File);
    assert!(
        hits[0].snippet.contains("marmalade budget"),
        "{:?}",
        hits[0].snippet
    );
    // Every word must match, each as the start of a word, in any case.
    assert_eq!(
        paths(&find(&f, &f.alice, "QUARTER marma").await),
        ["/docs/notes.md"]
    );
    assert!(find(&f, &f.alice, "marmalade nowhere").await.is_empty());
    assert_eq!(paths(&find(&f, &f.alice, "frobnicate").await), ["/main.rs"]);
    // Names: of files and of folders.
    assert_eq!(
        paths(&find(&f, &f.alice, "notes").await),
        ["/docs/notes.md"]
    );
    let hits = find(&f, &f.alice, "docs").await;
    assert_eq!(paths(&hits), ["/docs"]);
    assert_eq!(hits[0].kind, NodeKind::Directory);
}

async fn binary_files_are_found_by_name_only(backend: Kind) {
    let f = fixture(backend).await;
    put(
        &f,
        &f.alice,
        f.alice.root,
        "blob",
        b"zebrafish\0\x01\x02 binary",
    )
    .await;
    put(
        &f,
        &f.alice,
        f.alice.root,
        "photo.jpg",
        b"zebrafish in a jpeg",
    )
    .await;
    assert!(find(&f, &f.alice, "zebrafish").await.is_empty());
    let hits = find(&f, &f.alice, "blob").await;
    assert_eq!(paths(&hits), ["/blob"]);
    assert_eq!(hits[0].snippet, "");
    assert_eq!(paths(&find(&f, &f.alice, "photo").await), ["/photo.jpg"]);
}

async fn a_shared_folder_is_searched_by_its_members_only(backend: Kind) {
    let f = fixture(backend).await;
    let proj = mkdir(&f, &f.alice, f.alice.root, "proj").await;
    let inner = mkdir(&f, &f.alice, proj, "plans").await;
    put(
        &f,
        &f.alice,
        inner,
        "plan.txt",
        b"meet at the zanzibar gate",
    )
    .await;
    put(
        &f,
        &f.alice,
        f.alice.root,
        "private.txt",
        b"zanzibar, privately",
    )
    .await;
    // Bob already has a "proj" of his own: the share gets another name in his drive.
    mkdir(&f, &f.bob, f.bob.root, "proj").await;
    let shared = f
        .meta
        .share(&f.alice, proj, "bob", Role::Viewer)
        .await
        .unwrap();
    let bobs_name = String::from_utf8(shared.name).unwrap();
    assert_ne!(bobs_name, "proj");

    let hits = find(&f, &f.bob, "zanzibar").await;
    assert_eq!(paths(&hits), [format!("/{bobs_name}/plans/plan.txt")]);
    assert!(hits[0].snippet.contains("zanzibar gate"));
    let mut alices = paths(&find(&f, &f.alice, "zanzibar").await);
    alices.sort();
    assert_eq!(alices, ["/private.txt", "/proj/plans/plan.txt"]);
    assert!(find(&f, &f.carol, "zanzibar").await.is_empty());
    assert!(find(&f, &f.carol, "plan").await.is_empty());

    // Revoked: gone for bob too.
    f.meta.revoke_share(&f.alice, proj, "bob").await.unwrap();
    assert!(find(&f, &f.bob, "zanzibar").await.is_empty());
}

async fn deleted_files_are_no_longer_found(backend: Kind) {
    let f = fixture(backend).await;
    let dir = mkdir(&f, &f.alice, f.alice.root, "old").await;
    put(&f, &f.alice, dir, "gone.txt", b"quokka sighting").await;
    put(&f, &f.alice, f.alice.root, "also.txt", b"another quokka").await;
    assert_eq!(find(&f, &f.alice, "quokka").await.len(), 2);
    for (parent, name) in [(f.alice.root, "old"), (f.alice.root, "also.txt")] {
        let op = RemoveOp {
            parent,
            name: name.as_bytes().to_vec(),
            recursive: true,
            directory_only: false,
            non_directory_only: false,
            node: 0,
        };
        f.meta.remove(&f.alice, op).await.unwrap();
    }
    assert!(find(&f, &f.alice, "quokka").await.is_empty());
    assert!(find(&f, &f.alice, "gone").await.is_empty());
}

async fn a_new_version_replaces_the_old_words(backend: Kind) {
    let f = fixture(backend).await;
    let (node, version) = put(&f, &f.alice, f.alice.root, "todo.txt", b"buy pineapple").await;
    assert_eq!(find(&f, &f.alice, "pineapple").await.len(), 1);
    write(&f, &f.alice, 0, "", node, version, b"buy mangosteen").await;
    assert!(find(&f, &f.alice, "pineapple").await.is_empty());
    assert_eq!(
        paths(&find(&f, &f.alice, "mangosteen").await),
        ["/todo.txt"]
    );
}

async fn bad_queries_are_invalid_arguments(backend: Kind) {
    let f = fixture(backend).await;
    for query in ["", "   ", "?!*\"", &"a".repeat(search::MAX_QUERY_BYTES + 1)] {
        let error = search::search(f.meta.as_ref(), &f.indexer, &f.alice, query, 0)
            .await
            .expect_err(query);
        assert_eq!(error.kind, ErrorKind::InvalidArgument, "{query:?}: {error}");
    }
    let many = ["w"; search::MAX_TERMS + 1].join(" ");
    let error = search::search(f.meta.as_ref(), &f.indexer, &f.alice, &many, 0)
        .await
        .expect_err("too many words");
    assert_eq!(error.kind, ErrorKind::InvalidArgument);
    // Query syntax of either database is only ever words.
    assert!(find(&f, &f.alice, "NEAR(a b) OR x:*").await.is_empty());
}

on_both_backends!(
    words_in_content_and_names_are_found,
    binary_files_are_found_by_name_only,
    a_shared_folder_is_searched_by_its_members_only,
    deleted_files_are_no_longer_found,
    a_new_version_replaces_the_old_words,
    bad_queries_are_invalid_arguments,
);
