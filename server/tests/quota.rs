//! Per-user quotas through the `MetaStore` trait, on SQLite and (when configured)
//! PostgreSQL: what counts toward a quota, refusals that change nothing, a quota set
//! while in use, and two stores (as two server processes) committing at once for the
//! same user, where only one of the two commits fits.

#[macro_use]
mod common;

use std::sync::Arc;

use common::Kind;
use loft_remote::content::{ChunkId, ChunkRef, Manifest};
use loft_remote::errors::ErrorKind;
use loft_remote::proto::NodeKind;
use loft_server::MetaLocation;
use loft_server::chunk_store::ChunkStore;
use loft_server::meta::{
    Caller, ChunkRecord, CommitOp, CommitOutcome, MetaStore, NewNode, QuotaUsage, RemoveOp, Role,
    UsageDrift, now_nanos,
};

struct Fixture {
    stores: common::Stores,
    meta: Arc<dyn MetaStore>,
    chunks: ChunkStore,
    alice: Caller,
    bob: Caller,
}

async fn fixture(backend: Kind) -> Fixture {
    let stores = common::stores(backend).await;
    let backend = stores.backend().await;
    let meta = backend.meta.clone();
    let far = now_nanos() + 1_000_000_000_000;
    let user = meta.create_user("alice", "x").await.unwrap();
    let alice = meta
        .create_session(user.id, "laptop", [1; 32], far)
        .await
        .unwrap();
    let user = meta.create_user("bob", "x").await.unwrap();
    let bob = meta
        .create_session(user.id, "phone", [2; 32], far)
        .await
        .unwrap();
    Fixture {
        stores,
        meta,
        chunks: backend.chunks,
        alice,
        bob,
    }
}

/// `len` bytes that differ with `seed`.
fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

fn manifest_of(data: &[u8]) -> Manifest {
    if data.is_empty() {
        return Manifest {
            chunks: Vec::new(),
            size: 0,
            content_hash: ChunkId::of(data).0,
        };
    }
    Manifest {
        chunks: vec![ChunkRef {
            id: ChunkId::of(data),
            length: data.len() as u32,
        }],
        size: data.len() as u64,
        content_hash: ChunkId::of(data).0,
    }
}

/// Stores and records `data` as one chunk uploaded by `caller`.
async fn upload(f: &Fixture, meta: &dyn MetaStore, caller: &Caller, data: &[u8]) {
    if data.is_empty() {
        return;
    }
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
    meta.record_chunk(caller, record).await.unwrap();
}

fn new_file(parent: u64, name: &str) -> NewNode {
    NewNode {
        parent,
        name: name.as_bytes().to_vec(),
        kind: NodeKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        symlink_target: Vec::new(),
        rdev: 0,
        exclusive: false,
        mtime: None,
    }
}

/// Uploads `data` and commits it as a new file `name` in `parent`.
async fn create(
    f: &Fixture,
    caller: &Caller,
    parent: u64,
    name: &str,
    data: &[u8],
) -> loft_server::Result<CommitOutcome> {
    create_through(f, f.meta.as_ref(), caller, parent, name, data).await
}

async fn create_through(
    f: &Fixture,
    meta: &dyn MetaStore,
    caller: &Caller,
    parent: u64,
    name: &str,
    data: &[u8],
) -> loft_server::Result<CommitOutcome> {
    upload(f, meta, caller, data).await;
    meta.commit(
        caller,
        CommitOp {
            node: 0,
            create: Some(new_file(parent, name)),
            base_version: 0,
            manifest: manifest_of(data),
            mtime: None,
            atime: None,
        },
    )
    .await
}

/// Uploads `data` and commits it as a new version of `node`.
async fn overwrite(
    f: &Fixture,
    caller: &Caller,
    node: u64,
    base: u64,
    data: &[u8],
) -> loft_server::Result<CommitOutcome> {
    upload(f, f.meta.as_ref(), caller, data).await;
    f.meta
        .commit(
            caller,
            CommitOp {
                node,
                create: None,
                base_version: base,
                manifest: manifest_of(data),
                mtime: None,
                atime: None,
            },
        )
        .await
}

async fn usage(f: &Fixture, caller: &Caller) -> QuotaUsage {
    f.meta.quota(caller).await.unwrap()
}

fn kind<T: std::fmt::Debug>(result: loft_server::Result<T>) -> ErrorKind {
    result.expect_err("expected an error").kind
}

async fn versions_trash_and_shared_folders_count(backend: Kind) {
    let f = fixture(backend).await;
    assert_eq!(
        usage(&f, &f.alice).await,
        QuotaUsage {
            quota: None,
            used: 0
        }
    );
    let file = create(&f, &f.alice, f.alice.root, "a", &content(1, 1000))
        .await
        .unwrap();
    // A kept version counts as well as the current one.
    overwrite(&f, &f.alice, file.node.id, file.version, &content(2, 500))
        .await
        .unwrap();
    assert_eq!(usage(&f, &f.alice).await.used, 1500);
    // The trash counts until it is emptied.
    f.meta
        .remove(
            &f.alice,
            RemoveOp {
                parent: f.alice.root,
                name: b"a".to_vec(),
                recursive: false,
                directory_only: false,
                non_directory_only: true,
                node: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(usage(&f, &f.alice).await.used, 1500);
    f.meta.empty_trash(&f.alice).await.unwrap();
    assert_eq!(usage(&f, &f.alice).await.used, 0);
    // A folder alice shares out stays hers: what bob writes there counts for alice.
    let folder = f
        .meta
        .create(
            &f.alice,
            NewNode {
                kind: NodeKind::Directory,
                mode: 0o755,
                ..new_file(f.alice.root, "shared")
            },
        )
        .await
        .unwrap();
    create(&f, &f.alice, folder.id, "mine", &content(3, 300))
        .await
        .unwrap();
    f.meta
        .share(&f.alice, folder.id, "bob", Role::Editor)
        .await
        .unwrap();
    create(&f, &f.bob, folder.id, "bobs", &content(4, 200))
        .await
        .unwrap();
    assert_eq!(usage(&f, &f.alice).await.used, 500);
    assert_eq!(usage(&f, &f.bob).await.used, 0);
    // And alice's quota holds there for bob too.
    f.meta.set_quota("alice", Some(600)).await.unwrap();
    let refused = create(&f, &f.bob, folder.id, "more", &content(5, 200)).await;
    assert_eq!(kind(refused), ErrorKind::QuotaExceeded);
    create(&f, &f.bob, f.bob.root, "home", &content(5, 200))
        .await
        .unwrap();
    assert_eq!(usage(&f, &f.bob).await.used, 200);
    // The counts kept along the way match the versions.
    assert_eq!(f.meta.recount_usage(false).await.unwrap(), vec![]);
}

async fn a_refused_commit_changes_nothing(backend: Kind) {
    let f = fixture(backend).await;
    f.meta.set_quota("alice", Some(1000)).await.unwrap();
    let file = create(&f, &f.alice, f.alice.root, "a", &content(1, 600))
        .await
        .unwrap();
    let head = f
        .meta
        .journal_since(&f.alice, f.alice.home_ns, 0, 1000)
        .await
        .unwrap()
        .head;
    // A new version that does not fit: refused, with a message that says why.
    let error = overwrite(&f, &f.alice, file.node.id, file.version, &content(2, 500))
        .await
        .expect_err("over quota");
    assert_eq!(error.kind, ErrorKind::QuotaExceeded);
    assert!(error.message.contains("quota"), "{}", error.message);
    // A new file that does not fit: not even created.
    let refused = create(&f, &f.alice, f.alice.root, "b", &content(3, 500)).await;
    assert_eq!(kind(refused), ErrorKind::QuotaExceeded);
    assert_eq!(
        kind(f.meta.lookup(&f.alice, f.alice.root, b"b").await),
        ErrorKind::NotFound
    );
    // A batch is all or nothing.
    let a = new_file(f.alice.root, "c");
    let small = content(4, 100);
    let large = content(5, 400);
    upload(&f, f.meta.as_ref(), &f.alice, &small).await;
    upload(&f, f.meta.as_ref(), &f.alice, &large).await;
    let batch = vec![
        CommitOp {
            node: 0,
            create: Some(a),
            base_version: 0,
            manifest: manifest_of(&small),
            mtime: None,
            atime: None,
        },
        CommitOp {
            node: 0,
            create: Some(new_file(f.alice.root, "d")),
            base_version: 0,
            manifest: manifest_of(&large),
            mtime: None,
            atime: None,
        },
    ];
    assert_eq!(
        kind(f.meta.commit_many(&f.alice, batch).await),
        ErrorKind::QuotaExceeded
    );
    assert_eq!(
        kind(f.meta.lookup(&f.alice, f.alice.root, b"c").await),
        ErrorKind::NotFound
    );
    assert_eq!(
        f.meta.versions(&f.alice, file.node.id).await.unwrap().len(),
        1
    );
    let after = f
        .meta
        .journal_since(&f.alice, f.alice.home_ns, 0, 1000)
        .await
        .unwrap()
        .head;
    assert_eq!(after, head, "a refused commit journals nothing");
    assert_eq!(usage(&f, &f.alice).await.used, 600);
    // What fits still goes in, up to the quota exactly; emptying a file always works.
    create(&f, &f.alice, f.alice.root, "e", &content(6, 400))
        .await
        .unwrap();
    assert_eq!(
        usage(&f, &f.alice).await,
        QuotaUsage {
            quota: Some(1000),
            used: 1000
        }
    );
    overwrite(&f, &f.alice, file.node.id, file.version, b"")
        .await
        .unwrap();
}

async fn restoring_a_version_reserves_its_bytes(backend: Kind) {
    let f = fixture(backend).await;
    let file = create(&f, &f.alice, f.alice.root, "a", &content(1, 600))
        .await
        .unwrap();
    let second = overwrite(&f, &f.alice, file.node.id, file.version, &content(2, 100))
        .await
        .unwrap();
    // The quota is lowered below what is stored: it applies from the next commit.
    f.meta.set_quota("alice", Some(1000)).await.unwrap();
    assert_eq!(
        kind(
            f.meta
                .restore_version(&f.alice, file.node.id, file.version)
                .await
        ),
        ErrorKind::QuotaExceeded
    );
    let versions = f.meta.versions(&f.alice, file.node.id).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions.iter().any(|v| v.id == second.version && v.current));
    f.meta.set_quota("alice", None).await.unwrap();
    f.meta
        .restore_version(&f.alice, file.node.id, file.version)
        .await
        .unwrap();
    assert_eq!(usage(&f, &f.alice).await.used, 1300);
}

/// Two stores on one database, as two server processes, each with a session of the
/// same user, commit at the same moment; the quota has room for one of the two files.
/// Whatever the interleaving, exactly one commit goes through.
async fn concurrent_commits_cannot_pass_the_quota_together(backend: Kind) {
    let f = fixture(backend).await;
    let far = now_nanos() + 1_000_000_000_000;
    let other = f.stores.meta().await;
    let user = f.meta.user_by_name("alice").await.unwrap().unwrap();
    let desk = other
        .create_session(user.id, "desk", [3; 32], far)
        .await
        .unwrap();
    const SIZE: usize = 10_000;
    for round in 0..8u8 {
        let used = usage(&f, &f.alice).await.used;
        f.meta
            .set_quota("alice", Some(used + SIZE as u64 + SIZE as u64 / 2))
            .await
            .unwrap();
        let (one, two) = (content(round, SIZE), content(round + 100, SIZE));
        upload(&f, f.meta.as_ref(), &f.alice, &one).await;
        upload(&f, other.as_ref(), &desk, &two).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let commit = |meta: Arc<dyn MetaStore>, caller: Caller, data: Vec<u8>, name: String| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                meta.commit(
                    &caller,
                    CommitOp {
                        node: 0,
                        create: Some(new_file(caller.root, &name)),
                        base_version: 0,
                        manifest: manifest_of(&data),
                        mtime: None,
                        atime: None,
                    },
                )
                .await
            })
        };
        let first = commit(
            f.meta.clone(),
            f.alice.clone(),
            one,
            format!("laptop-{round}"),
        );
        let second = commit(other.clone(), desk.clone(), two, format!("desk-{round}"));
        let results = [first.await.unwrap(), second.await.unwrap()];
        let passed = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(passed, 1, "round {round}: {results:?}");
        for result in results {
            if let Err(error) = result {
                assert_eq!(error.kind, ErrorKind::QuotaExceeded, "round {round}");
            }
        }
        let now = usage(&f, &f.alice).await;
        assert_eq!(now.used, used + SIZE as u64, "round {round}");
        assert!(now.used <= now.quota.unwrap());
    }
}

/// Runs one statement on the metadata database behind the store's back.
async fn behind_the_back(f: &Fixture, sql: &str) {
    match &f.stores.config.meta {
        MetaLocation::Sqlite(path) => {
            rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(sql)
                .unwrap();
        }
        MetaLocation::Postgres(url) => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client.batch_execute(sql).await.unwrap();
        }
    }
}

/// `check` finds a count of stored bytes that went wrong; a repair sets it right.
async fn a_count_that_went_wrong_is_found_and_set_right(backend: Kind) {
    let f = fixture(backend).await;
    create(&f, &f.alice, f.alice.root, "a", &content(1, 1000))
        .await
        .unwrap();
    assert_eq!(f.meta.recount_usage(false).await.unwrap(), vec![]);
    behind_the_back(&f, "UPDATE users SET used_bytes = 5 WHERE name = 'alice'").await;
    let drift = vec![UsageDrift {
        user: "alice".into(),
        counted: 5,
        stored: 1000,
    }];
    assert_eq!(f.meta.recount_usage(false).await.unwrap(), drift);
    assert_eq!(usage(&f, &f.alice).await.used, 5, "a check changes nothing");
    assert_eq!(f.meta.recount_usage(true).await.unwrap(), drift);
    assert_eq!(f.meta.recount_usage(false).await.unwrap(), vec![]);
    assert_eq!(usage(&f, &f.alice).await.used, 1000);

    // A count below zero is reported as it is.
    behind_the_back(&f, "UPDATE users SET used_bytes = -7 WHERE name = 'alice'").await;
    let drift = vec![UsageDrift {
        user: "alice".into(),
        counted: -7,
        stored: 1000,
    }];
    assert_eq!(f.meta.recount_usage(true).await.unwrap(), drift);
    assert_eq!(usage(&f, &f.alice).await.used, 1000);
}

on_both_backends!(
    versions_trash_and_shared_folders_count,
    a_refused_commit_changes_nothing,
    restoring_a_version_reserves_its_bytes,
    concurrent_commits_cannot_pass_the_quota_together,
    a_count_that_went_wrong_is_found_and_set_right,
);
