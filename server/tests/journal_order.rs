//! The journal stays gap-free and in commit order under concurrency: 8 writers on two
//! namespaces, some of whose transactions roll back after their journal rows were
//! written, while a follower per namespace reads from its cursor the way Watch does.
//! Every namespace's sequence must come out as 1..=N, and a follower must never see a
//! seq other than cursor + 1 (a skipped row would be lost to it for good). Also: a file
//! made by a commit is one journal row.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::Kind;
use loft_remote::content::Manifest;
use loft_remote::errors::ErrorKind;
use loft_remote::proto::{ChangeKind, NodeKind};
use loft_server::meta::{Caller, ChunkRecord, CommitOp, MetaStore, NewNode, now_nanos};

const WRITERS: usize = 8;
const OPS_PER_WRITER: usize = 40;

fn create_op(caller: &Caller, name: String, manifest: &Manifest) -> CommitOp {
    CommitOp {
        node: 0,
        create: Some(NewNode {
            parent: caller.root,
            name: name.into_bytes(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            symlink_target: Vec::new(),
            rdev: 0,
            exclusive: false,
            mtime: None,
        }),
        base_version: 0,
        manifest: manifest.clone(),
        mtime: None,
        atime: None,
    }
}

async fn user(meta: &dyn MetaStore, name: &str, manifest: &Manifest) -> Caller {
    let user = meta.create_user(name, "x").await.unwrap();
    let token = [name.as_bytes()[0]; 32];
    let caller = meta
        .create_session(user.id, "bench", token, now_nanos() + 3_600_000_000_000)
        .await
        .unwrap();
    for chunk in &manifest.chunks {
        let record = ChunkRecord {
            id: chunk.id,
            length: chunk.length,
            stored_length: chunk.length,
            compressed: false,
        };
        meta.record_chunk(&caller, record).await.unwrap();
    }
    caller
}

/// Reads the namespace's journal from 0 until `done` and caught up; returns every seq
/// seen, in order, and panics on a gap.
async fn follow(meta: Arc<dyn MetaStore>, caller: Caller, done: Arc<AtomicBool>) -> Vec<u64> {
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let finished = done.load(Ordering::SeqCst);
        let page = meta
            .journal_since(&caller, caller.home_ns, cursor, 64)
            .await
            .unwrap();
        assert!(page.reset_to.is_none(), "unexpected reset at {cursor}");
        for change in &page.changes {
            assert_eq!(
                change.seq,
                cursor + 1,
                "namespace {}: the follower skipped from {cursor} to {}",
                caller.home_ns,
                change.seq
            );
            cursor = change.seq;
            seen.push(cursor);
        }
        if finished && page.changes.is_empty() && cursor == page.head {
            return seen;
        }
        if page.changes.is_empty() {
            tokio::task::yield_now().await;
        }
    }
}

async fn concurrent_writers_leave_no_gaps(backend: Kind) {
    let stores = common::stores(backend).await;
    let meta = stores.meta().await;
    let good = Manifest::of_bytes(b"journal order");
    // Never uploaded: a commit naming it fails, rolling back its whole transaction.
    let bad = Manifest::of_bytes(b"never uploaded");
    let callers = [
        user(meta.as_ref(), "alice", &good).await,
        user(meta.as_ref(), "bob", &good).await,
    ];
    let done = Arc::new(AtomicBool::new(false));
    let followers: Vec<_> = callers
        .iter()
        .map(|caller| tokio::spawn(follow(meta.clone(), caller.clone(), done.clone())))
        .collect();

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (meta, callers) = (meta.clone(), callers.clone());
            let (good, bad) = (good.clone(), bad.clone());
            tokio::spawn(async move {
                let mut committed = BTreeMap::<u64, u64>::new();
                for op in 0..OPS_PER_WRITER {
                    let caller = &callers[rand::random_range(0..callers.len())];
                    let name = format!("w{writer}-{op}");
                    let first = create_op(caller, name.clone(), &good);
                    if rand::random_range(0..4) == 0 {
                        // The first commit appends its journal rows, then the second
                        // fails: the transaction rolls back with its seqs.
                        let second = create_op(caller, format!("{name}-bad"), &bad);
                        let error = meta.commit_many(caller, vec![first, second]).await;
                        assert_eq!(error.unwrap_err().kind, ErrorKind::FailedPrecondition);
                    } else {
                        meta.commit(caller, first).await.unwrap();
                        *committed.entry(caller.home_ns).or_default() += 1;
                    }
                }
                committed
            })
        })
        .collect();
    let mut committed = BTreeMap::<u64, u64>::new();
    for writer in writers {
        for (ns, count) in writer.await.unwrap() {
            *committed.entry(ns).or_default() += count;
        }
    }
    done.store(true, Ordering::SeqCst);
    for (caller, follower) in callers.iter().zip(followers) {
        let seen = follower.await.unwrap();
        let expected: Vec<u64> = (1..=seen.len() as u64).collect();
        assert_eq!(seen, expected, "namespace {}", caller.home_ns);
        let page = meta
            .journal_since(caller, caller.home_ns, 0, 1)
            .await
            .unwrap();
        assert_eq!(page.head, seen.len() as u64);
        // Each successful create-and-commit journals one creation, content included.
        let count = committed.get(&caller.home_ns).copied().unwrap_or(0);
        assert_eq!(seen.len() as u64, count, "namespace {}", caller.home_ns);
    }
}

/// A file created by a commit is one change, created with its content: other devices
/// learn of it once, with its first version, and the feed carries half the rows.
async fn a_created_file_is_journaled_once_with_its_content(backend: Kind) {
    let stores = common::stores(backend).await;
    let meta = stores.meta().await;
    let content = Manifest::of_bytes(b"first version");
    let caller = user(meta.as_ref(), "carol", &content).await;
    let outcome = meta
        .commit(&caller, create_op(&caller, "new.txt".into(), &content))
        .await
        .unwrap();
    let page = meta
        .journal_since(&caller, caller.home_ns, 0, 64)
        .await
        .unwrap();
    let entries: Vec<_> = page
        .changes
        .iter()
        .filter(|change| change.node.as_ref().map(|n| n.id) == Some(outcome.node.id))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let change = entries[0];
    assert_eq!(change.kind, ChangeKind::Created as i32);
    assert_eq!(change.name.as_ref(), b"new.txt");
    assert_eq!(change.parent, caller.root);
    let node = change.node.as_ref().unwrap();
    assert_eq!(node.version, outcome.version);
    assert_eq!(node.size, content.size);
    assert_eq!(node.content_hash.as_ref(), content.content_hash.as_slice());
}

on_both_backends!(
    concurrent_writers_leave_no_gaps,
    a_created_file_is_journaled_once_with_its_content
);
