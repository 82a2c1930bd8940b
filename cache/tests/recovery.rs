//! Startup recovery and damage found while running.

mod common;

use std::fs;

use common::{bytes_on_disk, chunk, config, file_of, files_in, open};
use loft_cache::CacheError;
use loft_cache::chunks::{ChunkCache, ChunkState, PinOwner, RecoveryReport};

const CLEAN: ChunkState = ChunkState::Clean;
const DIRTY: ChunkState = ChunkState::Dirty;

#[test]
fn reopening_repairs_a_tampered_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let deleted = chunk(1, 100);
    let truncated = chunk(2, 100);
    let dirty = chunk(3, 100);
    let garbled = chunk(4, 100);
    let intact = chunk(5, 100);
    {
        let cache = open(root, 10_000);
        for (id, data) in [&deleted, &truncated, &garbled, &intact] {
            cache.insert(id, data, CLEAN).unwrap();
        }
        cache.insert(&dirty.0, &dirty.1, DIRTY).unwrap();
        assert!(!cache.recovery().changed_anything());
    }

    fs::remove_file(file_of(root, &deleted.0)).unwrap();
    fs::write(file_of(root, &truncated.0), &truncated.1[..50]).unwrap();
    // Same length, different bytes: only a hash check can tell.
    let mut bad = garbled.1.clone();
    bad[10] ^= 0xff;
    fs::write(file_of(root, &garbled.0), &bad).unwrap();
    // A chunk file left by an insert that died before indexing it...
    let orphan = chunk(6, 100);
    fs::write(file_of(root, &orphan.0), &orphan.1).unwrap();
    // ...one whose bytes do not match its name, junk, and an interrupted write.
    let mismatched = chunk(7, 100);
    fs::write(file_of(root, &mismatched.0), b"not those bytes").unwrap();
    let junk = root.join(&intact.0.to_hex()[..2]).join("notes.txt");
    fs::write(&junk, b"junk").unwrap();
    fs::write(root.join("tmp").join("half-written"), b"half").unwrap();

    let cache = open(root, 10_000);
    assert_eq!(
        cache.recovery(),
        RecoveryReport {
            temp_removed: 1,
            rows_dropped: 2,
            dirty_lost: 0,
            reindexed: 1,
            strays_removed: 2,
        }
    );
    assert!(!cache.contains(&deleted.0).unwrap());
    assert!(!cache.contains(&truncated.0).unwrap());
    assert!(!file_of(root, &truncated.0).exists());
    assert!(!file_of(root, &mismatched.0).exists());
    assert!(!junk.exists());
    assert_eq!(cache.get(&orphan.0).unwrap().unwrap(), orphan.1);
    assert_eq!(cache.info(&orphan.0).unwrap().unwrap().state, CLEAN);
    assert_eq!(cache.info(&dirty.0).unwrap().unwrap().state, DIRTY);
    assert_eq!(cache.get(&dirty.0).unwrap().unwrap(), dirty.1);
    assert_eq!(cache.get(&intact.0).unwrap().unwrap(), intact.1);

    // The garbled file passed the length check; the first read catches it.
    assert!(cache.contains(&garbled.0).unwrap());
    let err = cache.get(&garbled.0).unwrap_err();
    assert!(
        matches!(err, CacheError::Corrupt { id, .. } if id == garbled.0),
        "{err:?}"
    );
    assert!(!cache.contains(&garbled.0).unwrap());
    assert!(!file_of(root, &garbled.0).exists());

    let stats = cache.stats().unwrap();
    assert_eq!((stats.chunks, stats.total_bytes), (3, 300));
    assert_eq!(bytes_on_disk(root), 300);
    assert!(files_in(root).iter().all(|f| !f.starts_with("tmp/")));

    // A clean reopen has nothing to repair.
    drop(cache);
    assert!(!open(root, 10_000).recovery().changed_anything());
}

#[test]
fn a_lost_dirty_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (id, data) = chunk(1, 100);
    open(dir.path(), 1000).insert(&id, &data, DIRTY).unwrap();
    fs::remove_file(file_of(dir.path(), &id)).unwrap();
    let cache = open(dir.path(), 1000);
    assert_eq!(cache.recovery().dirty_lost, 1);
    assert!(cache.dirty_ids().unwrap().is_empty());
}

#[test]
fn state_pins_and_recency_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let chunks: Vec<_> = (0..4).map(|n| chunk(n, 100)).collect();
    let ids: Vec<_> = chunks.iter().map(|c| c.0).collect();
    {
        let cache = open(dir.path(), 400);
        cache.pin(PinOwner(1), &ids[..1]).unwrap();
        for (id, data) in &chunks[..3] {
            cache.insert(id, data, CLEAN).unwrap();
        }
        cache.insert(&ids[3], &chunks[3].1, DIRTY).unwrap();
        // 1 is now more recent than 2.
        cache.get(&ids[1]).unwrap().unwrap();
    }
    let cache = open(dir.path(), 400);
    let info = |n: usize| cache.info(&ids[n]).unwrap().unwrap();
    assert_eq!(info(0).pins, 1);
    assert_eq!(info(3).state, DIRTY);
    // Room for 100 bytes: 0 is pinned, 3 dirty, 2 the least recently used.
    let (id, data) = chunk(10, 100);
    cache.insert(&id, &data, CLEAN).unwrap();
    let present: Vec<_> = ids.iter().map(|id| cache.contains(id).unwrap()).collect();
    assert_eq!(present, [true, true, false, true]);
}

#[test]
fn a_smaller_budget_at_open_evicts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = open(dir.path(), 1000);
        for n in 0..10 {
            let (id, data) = chunk(n, 100);
            cache.insert(&id, &data, CLEAN).unwrap();
        }
    }
    let cache = open(dir.path(), 250);
    assert_eq!(cache.stats().unwrap().total_bytes, 200);
    assert_eq!(bytes_on_disk(dir.path()), 200);
}

#[test]
fn a_directory_is_opened_by_one_cache_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), 1000);
    assert!(matches!(
        ChunkCache::open(dir.path(), config(1000)),
        Err(CacheError::Locked(_))
    ));
    drop(first);
    open(dir.path(), 1000);
}

#[test]
fn damage_while_running_is_detected_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 10_000);
    let (id, data) = chunk(1, 1000);
    cache.insert(&id, &data, CLEAN).unwrap();
    let path = cache.path_of(&id).unwrap().unwrap();
    let mut bad = data.clone();
    bad[500] ^= 1;
    fs::write(&path, &bad).unwrap();
    assert!(matches!(cache.get(&id), Err(CacheError::Corrupt { .. })));
    assert!(!cache.contains(&id).unwrap());
    assert!(!path.exists());
    assert_eq!(cache.stats().unwrap().total_bytes, 0);
    // Fetched again, it is good again.
    cache.insert(&id, &data, CLEAN).unwrap();
    assert_eq!(cache.get(&id).unwrap().unwrap(), data);

    // A ranged read of a trusted chunk that comes up short checks the whole chunk.
    fs::write(&path, &data[..100]).unwrap();
    assert!(matches!(
        cache.read_range(&id, 200, 100),
        Err(CacheError::Corrupt { .. })
    ));
    assert!(!cache.contains(&id).unwrap());
}

#[test]
fn a_vanished_file_is_a_miss_if_clean_and_corruption_if_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 10_000);
    let (clean, clean_data) = chunk(1, 100);
    let (dirty, dirty_data) = chunk(2, 100);
    cache.insert(&clean, &clean_data, CLEAN).unwrap();
    cache.insert(&dirty, &dirty_data, DIRTY).unwrap();
    fs::remove_file(file_of(dir.path(), &clean)).unwrap();
    fs::remove_file(file_of(dir.path(), &dirty)).unwrap();
    assert_eq!(cache.get(&clean).unwrap(), None);
    assert!(!cache.contains(&clean).unwrap());
    assert!(matches!(
        cache.read_range(&dirty, 0, 10),
        Err(CacheError::Corrupt { .. })
    ));
    assert!(!cache.contains(&dirty).unwrap());
    assert_eq!(cache.stats().unwrap().total_bytes, 0);
}
