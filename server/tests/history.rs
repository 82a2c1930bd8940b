//! Version history, the trash and pruning, through the `MetaStore` trait and the
//! pruning worker, on SQLite and (when configured) PostgreSQL + S3.

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::Kind;
use loft_remote::content::{ChunkId, ChunkRef, Manifest};
use loft_remote::errors::ErrorKind;
use loft_remote::proto::NodeKind;
use loft_server::chunk_store::ChunkStore;
use loft_server::meta::{
    Caller, ChunkRecord, CommitOp, MetaStore, Nanos, NewNode, RemoveOp, TrashTarget,
    from_timestamp, now_nanos,
};
use loft_server::prune::{Cutoffs, Pruner};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Fixture {
    _stores: common::Stores,
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
        _stores: stores,
        meta,
        chunks: backend.chunks,
        alice,
        bob,
    }
}

/// The payload of pool chunk `index`: distinct, small, shared between files.
fn payload(index: usize) -> Vec<u8> {
    format!("chunk {index} ").repeat(8 + index).into_bytes()
}

fn manifest_of(pool: &[usize]) -> Manifest {
    let mut chunks = Vec::new();
    let mut whole = Vec::new();
    for &index in pool {
        let data = payload(index);
        chunks.push(ChunkRef {
            id: ChunkId::of(&data),
            length: data.len() as u32,
        });
        whole.extend_from_slice(&data);
    }
    Manifest {
        chunks,
        size: whole.len() as u64,
        content_hash: ChunkId::of(&whole).0,
    }
}

/// Stores and records the chunks of pool entries, as the upload path does.
async fn upload(f: &Fixture, caller: &Caller, pool: &[usize]) {
    for &index in pool {
        let data = payload(index);
        let id = ChunkId::of(&data);
        f.chunks.put(&id, false, data.clone().into()).await.unwrap();
        let record = ChunkRecord {
            id,
            length: data.len() as u32,
            stored_length: data.len() as u32,
            compressed: false,
        };
        f.meta.record_chunk(caller, record).await.unwrap();
    }
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

fn remove_op(parent: u64, name: &str) -> RemoveOp {
    RemoveOp {
        parent,
        name: name.as_bytes().to_vec(),
        recursive: true,
        directory_only: false,
        non_directory_only: false,
        node: 0,
    }
}

/// Commits `pool`'s chunks into `node` (or a new file `name` in the root).
async fn commit(
    f: &Fixture,
    caller: &Caller,
    node: u64,
    base: u64,
    name: &str,
    pool: &[usize],
) -> (u64, u64) {
    upload(f, caller, pool).await;
    let create = (node == 0).then(|| new_file(caller.root, name));
    let outcome = f
        .meta
        .commit(
            caller,
            CommitOp {
                node,
                create,
                base_version: base,
                manifest: manifest_of(pool),
                mtime: None,
                atime: None,
            },
        )
        .await
        .unwrap();
    assert!(outcome.conflict_name.is_none());
    (outcome.node.id, outcome.version)
}

fn kind<T: std::fmt::Debug>(result: loft_server::Result<T>) -> ErrorKind {
    result.expect_err("expected an error").kind
}

async fn version_ids(f: &Fixture, caller: &Caller, node: u64) -> Vec<u64> {
    f.meta
        .versions(caller, node)
        .await
        .unwrap()
        .iter()
        .map(|v| v.id)
        .collect()
}

async fn restoring_a_version_makes_a_new_current_one(backend: Kind) {
    let f = fixture(backend).await;
    let (node, v1) = commit(&f, &f.alice, 0, 0, "a.txt", &[0, 1]).await;
    let (_, v2) = commit(&f, &f.alice, node, v1, "", &[2]).await;
    let before = f
        .meta
        .journal_since(&f.alice, f.alice.home_ns, 0, 1000)
        .await
        .unwrap();
    let outcome = f.meta.restore_version(&f.alice, node, v1).await.unwrap();
    assert!(outcome.version > v2);
    assert_eq!(
        f.meta.manifest(&f.alice, node, 0).await.unwrap(),
        manifest_of(&[0, 1])
    );
    let versions = f.meta.versions(&f.alice, node).await.unwrap();
    assert_eq!(versions.len(), 3);
    assert!(versions[0].current && versions[0].id == outcome.version);
    // Journaled like a commit: other mounts see the change through the feed.
    let after = f
        .meta
        .journal_since(&f.alice, f.alice.home_ns, before.head, 1000)
        .await
        .unwrap();
    assert_eq!(after.changes.len(), 1);
    assert_eq!(
        after.changes[0].node.as_ref().unwrap().version,
        outcome.version
    );
}

async fn bad_restores_are_not_found_and_change_nothing(backend: Kind) {
    let f = fixture(backend).await;
    let (node, v1) = commit(&f, &f.alice, 0, 0, "a.txt", &[0]).await;
    let (_, v2) = commit(&f, &f.alice, node, v1, "", &[1]).await;
    let (bob_node, bob_v1) = commit(&f, &f.bob, 0, 0, "a.txt", &[3]).await;
    let head = f
        .meta
        .journal_since(&f.alice, f.alice.home_ns, 0, 1000)
        .await
        .unwrap()
        .head;

    // An unknown version, a version of another file, an unknown node.
    assert_eq!(
        kind(f.meta.restore_version(&f.alice, node, v2 + 1000).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(f.meta.restore_version(&f.alice, node, bob_v1).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(f.meta.restore_version(&f.alice, 999_999, v1).await),
        ErrorKind::NotFound
    );
    // Another user's file, by its id, and with the other user's version on one's own.
    assert_eq!(
        kind(f.meta.restore_version(&f.bob, node, v1).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(f.meta.restore_version(&f.bob, bob_node, v1).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(f.meta.versions(&f.bob, node).await),
        ErrorKind::NotFound
    );
    // A file in the trash is invisible.
    f.meta
        .remove(&f.alice, remove_op(f.alice.root, "a.txt"))
        .await
        .unwrap();
    assert_eq!(
        kind(f.meta.restore_version(&f.alice, node, v1).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(f.meta.resolve(&f.alice, b"/a.txt").await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(f.meta.lookup(&f.alice, f.alice.root, b"a.txt").await),
        ErrorKind::NotFound
    );
    assert_eq!(kind(f.meta.stat(&f.alice, node).await), ErrorKind::NotFound);
    let listing = f.meta.list(&f.alice, f.alice.root, b"", 0).await.unwrap();
    assert!(listing.entries.is_empty());

    // Trash restores of what is not in (this user's) trash.
    assert_eq!(
        kind(
            f.meta
                .restore_from_trash(&f.alice, TrashTarget::Path(b"/nothing".to_vec()))
                .await
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            f.meta
                .restore_from_trash(&f.alice, TrashTarget::Id(bob_node))
                .await
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            f.meta
                .restore_from_trash(&f.bob, TrashTarget::Id(node))
                .await
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            f.meta
                .restore_from_trash(&f.bob, TrashTarget::Path(b"/a.txt".to_vec()))
                .await
        ),
        ErrorKind::NotFound
    );
    assert!(f.meta.list_trash(&f.bob).await.unwrap().is_empty());
    assert_eq!(f.meta.empty_trash(&f.bob).await.unwrap(), 0);
    // Nothing changed: one journal entry more (the delete), the item still in the trash.
    let page = f
        .meta
        .journal_since(&f.alice, f.alice.home_ns, head, 1000)
        .await
        .unwrap();
    assert_eq!(page.changes.len(), 1);
    let trash = f.meta.list_trash(&f.alice).await.unwrap();
    assert_eq!(trash.len(), 1);
    assert_eq!(trash[0].path, b"/a.txt");
    assert_eq!(version_ids(&f, &f.bob, bob_node).await, vec![bob_v1]);
}

async fn trash_restores_to_the_old_path_or_beside_it(backend: Kind) {
    let f = fixture(backend).await;
    let root = f.alice.root;
    let dir = f
        .meta
        .create(
            &f.alice,
            NewNode {
                kind: NodeKind::Directory,
                mode: 0o755,
                ..new_file(root, "docs")
            },
        )
        .await
        .unwrap();
    upload(&f, &f.alice, &[0]).await;
    let file = f
        .meta
        .commit(
            &f.alice,
            CommitOp {
                node: 0,
                create: Some(new_file(dir.id, "a.txt")),
                base_version: 0,
                manifest: manifest_of(&[0]),
                mtime: None,
                atime: None,
            },
        )
        .await
        .unwrap();
    f.meta
        .remove(&f.alice, remove_op(dir.id, "a.txt"))
        .await
        .unwrap();
    let trash = f.meta.list_trash(&f.alice).await.unwrap();
    assert_eq!(trash.len(), 1);
    assert_eq!(trash[0].path, b"/docs/a.txt");
    assert_eq!(trash[0].size, manifest_of(&[0]).size);
    assert_eq!(trash[0].id, file.node.id);

    // The name is taken meanwhile: the item comes back beside it.
    commit(&f, &f.alice, 0, 0, "x", &[1]).await;
    upload(&f, &f.alice, &[1]).await;
    f.meta
        .commit(
            &f.alice,
            CommitOp {
                node: 0,
                create: Some(new_file(dir.id, "a.txt")),
                base_version: 0,
                manifest: manifest_of(&[1]),
                mtime: None,
                atime: None,
            },
        )
        .await
        .unwrap();
    let (node, path) = f
        .meta
        .restore_from_trash(&f.alice, TrashTarget::Path(b"/docs/a.txt".to_vec()))
        .await
        .unwrap();
    assert_eq!(path, b"/docs/a (restored).txt");
    assert_eq!(node.id, file.node.id);
    assert_eq!(f.meta.resolve(&f.alice, &path).await.unwrap().id, node.id);
    assert_eq!(
        f.meta.manifest(&f.alice, node.id, 0).await.unwrap(),
        manifest_of(&[0])
    );
    assert!(f.meta.list_trash(&f.alice).await.unwrap().is_empty());

    // Its folder is gone too: the folder is made again and the item goes back into it.
    f.meta
        .remove(&f.alice, remove_op(dir.id, "a (restored).txt"))
        .await
        .unwrap();
    f.meta
        .remove(&f.alice, remove_op(root, "docs"))
        .await
        .unwrap();
    let trash = f.meta.list_trash(&f.alice).await.unwrap();
    let paths: BTreeSet<_> = trash.iter().map(|t| t.path.clone()).collect();
    assert_eq!(
        paths,
        BTreeSet::from([b"/docs".to_vec(), b"/docs/a (restored).txt".to_vec()])
    );
    let (_, path) = f
        .meta
        .restore_from_trash(&f.alice, TrashTarget::Id(node.id))
        .await
        .unwrap();
    assert_eq!(path, b"/docs/a (restored).txt");
    let new_dir = f.meta.resolve(&f.alice, b"/docs").await.unwrap();
    assert_ne!(new_dir.id, dir.id);
    // The old folder, with what was in it, comes back beside the new one.
    let (_, path) = f
        .meta
        .restore_from_trash(&f.alice, TrashTarget::Path(b"/docs".to_vec()))
        .await
        .unwrap();
    assert_eq!(path, b"/docs (restored)");
    f.meta
        .resolve(&f.alice, b"/docs (restored)/a.txt")
        .await
        .unwrap();

    // Emptying purges at once.
    f.meta.remove(&f.alice, remove_op(root, "x")).await.unwrap();
    assert_eq!(f.meta.empty_trash(&f.alice).await.unwrap(), 1);
    assert!(f.meta.list_trash(&f.alice).await.unwrap().is_empty());
}

async fn one_pruning_pass_at_a_time(backend: Kind) {
    let f = fixture(backend).await;
    let minute = 60_000_000_000;
    assert!(f.meta.take_lease("prune", "a", minute).await.unwrap());
    assert!(f.meta.take_lease("prune", "a", minute).await.unwrap());
    assert!(!f.meta.take_lease("prune", "b", minute).await.unwrap());
    let pruner = Pruner::new(f.meta.clone(), f.chunks.clone());
    let cutoffs = Cutoffs {
        versions: 0,
        trash: 0,
        chunks: 0,
    };
    assert_eq!(pruner.run_pass(cutoffs).await.unwrap(), None);
    f.meta.release_lease("prune", "a").await.unwrap();
    assert!(pruner.run_pass(cutoffs).await.unwrap().is_some());
    // An expired lease is free for the taking.
    assert!(f.meta.take_lease("prune", "c", -1).await.unwrap());
    assert!(f.meta.take_lease("prune", "b", minute).await.unwrap());
}

/// One file of the model.
struct ModelFile {
    node: u64,
    name: String,
    /// Kept versions: id → (creation time, pool entries).
    versions: BTreeMap<u64, (Nanos, Vec<usize>)>,
    current: u64,
    /// Deletion time while in the trash.
    trashed: Option<Nanos>,
    purged: bool,
}

impl ModelFile {
    fn referenced(&self) -> impl Iterator<Item = usize> + '_ {
        self.versions
            .values()
            .flat_map(|(_, pool)| pool.iter().copied())
    }
}

const POOL: usize = 10;

fn random_pool(rng: &mut StdRng) -> Vec<usize> {
    let n = rng.random_range(1..=3);
    (0..n).map(|_| rng.random_range(0..POOL)).collect()
}

async fn version_time(f: &Fixture, node: u64, version: u64) -> Nanos {
    let versions = f.meta.versions(&f.alice, node).await.unwrap();
    let v = versions
        .iter()
        .find(|v| v.id == version)
        .expect("version listed");
    from_timestamp(v.time.as_ref().unwrap())
}

/// Random histories (commits sharing chunks, deletes, trash restores, version restores,
/// prunes at random points in time): after each prune, every chunk a kept version or a
/// trash item references is readable, and unreferenced chunks past their grace are gone.
async fn pruning_keeps_what_is_referenced(backend: Kind) {
    let seeds: Vec<u64> = match std::env::var("LOFT_SEED") {
        Ok(seed) => vec![seed.parse().expect("LOFT_SEED")],
        Err(_) => (1..=3).collect(),
    };
    for seed in seeds {
        eprintln!("seed {seed}");
        prune_history(backend, seed).await;
    }
}

async fn prune_history(backend: Kind, seed: u64) {
    let f = fixture(backend).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let pruner = Pruner::new(f.meta.clone(), f.chunks.clone());
    let mut files: Vec<ModelFile> = Vec::new();
    // Chunks the store should hold.
    let mut stored: BTreeSet<usize> = BTreeSet::new();
    let mut marks: Vec<Nanos> = vec![now_nanos()];
    for step in 0..120 {
        let live: Vec<usize> = (0..files.len())
            .filter(|&i| !files[i].purged && files[i].trashed.is_none())
            .collect();
        let trashed: Vec<usize> = (0..files.len())
            .filter(|&i| !files[i].purged && files[i].trashed.is_some())
            .collect();
        match rng.random_range(0..100) {
            0..=19 => {
                let pool = random_pool(&mut rng);
                let name = format!("f{}", files.len());
                let (node, version) = commit(&f, &f.alice, 0, 0, &name, &pool).await;
                stored.extend(pool.iter().copied());
                let time = version_time(&f, node, version).await;
                files.push(ModelFile {
                    node,
                    name,
                    versions: BTreeMap::from([(version, (time, pool))]),
                    current: version,
                    trashed: None,
                    purged: false,
                });
            }
            20..=49 if !live.is_empty() => {
                let file = &files[live[rng.random_range(0..live.len())]];
                let pool = random_pool(&mut rng);
                let (node, current) = (file.node, file.current);
                let (_, version) = commit(&f, &f.alice, node, current, "", &pool).await;
                stored.extend(pool.iter().copied());
                let time = version_time(&f, node, version).await;
                let file = files.iter_mut().find(|m| m.node == node).unwrap();
                file.versions.insert(version, (time, pool));
                file.current = version;
            }
            50..=59 if !live.is_empty() => {
                let index = live[rng.random_range(0..live.len())];
                let name = files[index].name.clone();
                f.meta
                    .remove(&f.alice, remove_op(f.alice.root, &name))
                    .await
                    .unwrap();
                let item = f
                    .meta
                    .list_trash(&f.alice)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|item| item.id == files[index].node)
                    .expect("deleted file in the trash");
                files[index].trashed = Some(item.deleted);
            }
            60..=67 if !trashed.is_empty() => {
                let index = trashed[rng.random_range(0..trashed.len())];
                let (_, path) = f
                    .meta
                    .restore_from_trash(&f.alice, TrashTarget::Id(files[index].node))
                    .await
                    .unwrap();
                assert_eq!(path, format!("/{}", files[index].name).into_bytes());
                files[index].trashed = None;
            }
            68..=77 if !live.is_empty() => {
                let index = live[rng.random_range(0..live.len())];
                let ids: Vec<u64> = files[index].versions.keys().copied().collect();
                let old = ids[rng.random_range(0..ids.len())];
                let node = files[index].node;
                let outcome = f.meta.restore_version(&f.alice, node, old).await.unwrap();
                let time = version_time(&f, node, outcome.version).await;
                let pool = files[index].versions[&old].1.clone();
                files[index].versions.insert(outcome.version, (time, pool));
                files[index].current = outcome.version;
            }
            78..=99 => {
                let versions_cutoff = marks[rng.random_range(0..marks.len())];
                let trash_cutoff = marks[rng.random_range(0..marks.len())];
                let grace_over = rng.random_bool(0.6);
                let mut cutoffs = Cutoffs {
                    versions: versions_cutoff,
                    trash: trash_cutoff,
                    chunks: 0,
                };
                pruner.run_pass(cutoffs).await.unwrap().expect("lease free");
                if grace_over {
                    // The grace of chunks released by that pass runs from then: a later
                    // pass, past it, deletes every chunk nothing references.
                    cutoffs.chunks = now_nanos();
                    pruner.run_pass(cutoffs).await.unwrap().expect("lease free");
                }
                for file in files.iter_mut().filter(|m| !m.purged) {
                    if file.trashed.is_some_and(|deleted| deleted < trash_cutoff) {
                        file.purged = true;
                        file.versions.clear();
                        continue;
                    }
                    let current = file.current;
                    file.versions
                        .retain(|&id, (time, _)| id == current || *time >= versions_cutoff);
                }
                let referenced: BTreeSet<usize> =
                    files.iter().flat_map(|m| m.referenced()).collect();
                if grace_over {
                    stored.retain(|index| referenced.contains(index));
                }
                check(&f, &files, &stored, &referenced, seed, step).await;
            }
            _ => {}
        }
        marks.push(now_nanos());
    }
}

async fn check(
    f: &Fixture,
    files: &[ModelFile],
    stored: &BTreeSet<usize>,
    referenced: &BTreeSet<usize>,
    seed: u64,
    step: usize,
) {
    let at = format!("seed {seed}, step {step}");
    for file in files.iter().filter(|m| !m.purged && m.trashed.is_none()) {
        let listed = version_ids(f, &f.alice, file.node).await;
        let kept: Vec<u64> = file.versions.keys().rev().copied().collect();
        assert_eq!(listed, kept, "{at}: versions of {}", file.name);
        for (&id, (_, pool)) in &file.versions {
            let manifest = f.meta.manifest(&f.alice, file.node, id).await.unwrap();
            assert_eq!(
                manifest,
                manifest_of(pool),
                "{at}: manifest of version {id}"
            );
        }
    }
    // Every chunk a kept version or a trash item references is readable.
    for &index in referenced {
        let id = ChunkId::of(&payload(index));
        let chunk = f
            .chunks
            .get(&id)
            .await
            .unwrap_or_else(|e| panic!("{at}: referenced chunk {index} unreadable: {e}"));
        assert_eq!(chunk.data.as_ref(), payload(index).as_slice(), "{at}");
    }
    // Unreferenced chunks past their grace are gone, from the store and the records;
    // those within it are still there.
    let mut records = BTreeMap::new();
    let mut after = None;
    loop {
        let page = f.meta.chunk_records(after, 100).await.unwrap();
        for record in &page {
            records.insert(record.id, record.referenced);
        }
        match page.last() {
            Some(last) if page.len() == 100 => after = Some(last.id),
            _ => break,
        }
    }
    for index in 0..POOL {
        let id = ChunkId::of(&payload(index));
        let in_store = f.chunks.contains(&id).await.unwrap();
        assert_eq!(
            in_store,
            stored.contains(&index),
            "{at}: chunk {index} in the store"
        );
        assert_eq!(
            records.contains_key(&id),
            stored.contains(&index),
            "{at}: record of {index}"
        );
        if let Some(&is_referenced) = records.get(&id) {
            assert_eq!(
                is_referenced,
                referenced.contains(&index),
                "{at}: chunk {index} referenced"
            );
        }
    }
}

/// A folder in the trash counts the bytes of every file below it, at any depth.
async fn a_trashed_folder_counts_the_files_below_it(backend: Kind) {
    let f = fixture(backend).await;
    let folder = |parent, name| NewNode {
        kind: NodeKind::Directory,
        mode: 0o755,
        ..new_file(parent, name)
    };
    let outer = f
        .meta
        .create(&f.alice, folder(f.alice.root, "box"))
        .await
        .unwrap();
    let inner = f
        .meta
        .create(&f.alice, folder(outer.id, "inner"))
        .await
        .unwrap();
    for (parent, name, pool) in [(outer.id, "a", &[0][..]), (inner.id, "b", &[1, 2][..])] {
        upload(&f, &f.alice, pool).await;
        f.meta
            .commit(
                &f.alice,
                CommitOp {
                    node: 0,
                    create: Some(new_file(parent, name)),
                    base_version: 0,
                    manifest: manifest_of(pool),
                    mtime: None,
                    atime: None,
                },
            )
            .await
            .unwrap();
    }
    f.meta
        .remove(&f.alice, remove_op(f.alice.root, "box"))
        .await
        .unwrap();
    let trash = f.meta.list_trash(&f.alice).await.unwrap();
    assert_eq!(trash.len(), 1);
    assert_eq!(
        trash[0].size,
        manifest_of(&[0]).size + manifest_of(&[1, 2]).size
    );
}

on_both_backends!(
    a_trashed_folder_counts_the_files_below_it,
    restoring_a_version_makes_a_new_current_one,
    bad_restores_are_not_found_and_change_nothing,
    trash_restores_to_the_old_path_or_beside_it,
    one_pruning_pass_at_a_time,
    pruning_keeps_what_is_referenced,
);
