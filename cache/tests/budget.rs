//! Budget, LRU eviction, pins and dirty chunks.

mod common;

use common::{bytes_on_disk, chunk, config, file_of, files_in, open};
use loft_cache::CacheError;
use loft_cache::chunks::{CacheConfig, ChunkCache, ChunkInfo, ChunkState, PinOwner};
use loft_remote::content::{ChunkId, ContentError, MAX_CHUNK};

const CLEAN: ChunkState = ChunkState::Clean;
const DIRTY: ChunkState = ChunkState::Dirty;

fn present(cache: &ChunkCache, ids: &[ChunkId]) -> Vec<bool> {
    ids.iter().map(|id| cache.contains(id).unwrap()).collect()
}

#[test]
fn evicts_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 300);
    let chunks: Vec<_> = (0..4).map(|n| chunk(n, 100)).collect();
    let ids: Vec<_> = chunks.iter().map(|(id, _)| *id).collect();
    for (id, data) in &chunks[..3] {
        cache.insert(id, data, CLEAN).unwrap();
    }
    // Use 0, then 2 (via a range read), then 0 again: 1 is now the least recent.
    cache.get(&ids[0]).unwrap().unwrap();
    cache.read_range(&ids[2], 5, 5).unwrap().unwrap();
    cache.get(&ids[0]).unwrap().unwrap();
    cache.insert(&ids[3], &chunks[3].1, CLEAN).unwrap();
    assert_eq!(present(&cache, &ids), [true, false, true, true]);
    assert!(!file_of(dir.path(), &ids[1]).exists());
    // Next in line: 2, then 0.
    let (id, data) = chunk(10, 100);
    cache.insert(&id, &data, CLEAN).unwrap();
    assert_eq!(present(&cache, &ids), [true, false, false, true]);
    // `contains` and `info` are not uses; `path_of` is.
    cache.contains(&ids[0]).unwrap();
    cache.info(&ids[0]).unwrap();
    cache.path_of(&ids[3]).unwrap().unwrap();
    let (id, data) = chunk(11, 100);
    cache.insert(&id, &data, CLEAN).unwrap();
    assert_eq!(present(&cache, &ids), [false, false, false, true]);
    assert_eq!(cache.stats().unwrap().total_bytes, 300);
}

#[test]
fn eviction_frees_just_enough() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1000);
    let small: Vec<_> = (0..10).map(|n| chunk(n, 100)).collect();
    for (id, data) in &small {
        cache.insert(id, data, CLEAN).unwrap();
    }
    let (id, data) = chunk(99, 250);
    cache.insert(&id, &data, CLEAN).unwrap();
    let kept = small
        .iter()
        .filter(|(id, _)| cache.contains(id).unwrap())
        .count();
    assert_eq!(kept, 7, "three 100-byte chunks make room for 250 bytes");
    assert_eq!(cache.stats().unwrap().total_bytes, 950);
    assert_eq!(bytes_on_disk(dir.path()), 950);
}

#[test]
fn full_when_pinned_and_dirty_fill_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 300);
    let (pinned, pinned_data) = chunk(1, 100);
    let (dirty, dirty_data) = chunk(2, 150);
    let (clean, clean_data) = chunk(3, 50);
    cache.pin(PinOwner(1), &[pinned]).unwrap();
    cache.insert(&pinned, &pinned_data, CLEAN).unwrap();
    cache.insert(&dirty, &dirty_data, DIRTY).unwrap();
    cache.insert(&clean, &clean_data, CLEAN).unwrap();
    let before = cache.stats().unwrap();
    let files_before = files_in(dir.path());

    // 51 bytes fit only if something pinned or dirty went: refused.
    let (new, new_data) = chunk(4, 51);
    let err = cache.insert(&new, &new_data, CLEAN).unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::Full {
                needed: 51,
                budget: 300,
                unevictable: 250
            }
        ),
        "{err:?}"
    );
    // Nothing written, nothing evicted.
    assert!(!cache.contains(&new).unwrap());
    assert!(cache.contains(&clean).unwrap());
    assert_eq!(cache.stats().unwrap(), before);
    assert_eq!(files_in(dir.path()), files_before);

    // 50 bytes fit by evicting the clean chunk.
    let (new, new_data) = chunk(5, 50);
    cache.insert(&new, &new_data, CLEAN).unwrap();
    assert!(!cache.contains(&clean).unwrap());

    // Once the dirty chunk is uploaded it is evictable, and the refused insert fits.
    cache.mark_clean(&[dirty]).unwrap();
    let (again, again_data) = chunk(4, 51);
    cache.insert(&again, &again_data, CLEAN).unwrap();
    assert!(!cache.contains(&dirty).unwrap());
    assert!(cache.contains(&pinned).unwrap());
}

#[test]
fn a_chunk_larger_than_the_budget_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 0);
    let (id, data) = chunk(1, 10);
    assert!(matches!(
        cache.insert(&id, &data, CLEAN),
        Err(CacheError::Full { needed: 10, .. })
    ));
    // Dirty data is kept whatever the budget.
    cache.insert(&id, &data, DIRTY).unwrap();
    assert_eq!(cache.get(&id).unwrap().unwrap(), data);
}

#[test]
fn dirty_chunks_may_exceed_the_budget_and_push_clean_ones_out() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 200);
    let (clean, clean_data) = chunk(1, 100);
    cache.insert(&clean, &clean_data, CLEAN).unwrap();
    let dirty: Vec<_> = (10..15).map(|n| chunk(n, 100)).collect();
    for (id, data) in &dirty {
        cache.insert(id, data, DIRTY).unwrap();
    }
    let stats = cache.stats().unwrap();
    assert_eq!((stats.dirty_bytes, stats.clean_bytes), (500, 0));
    assert_eq!(stats.total_bytes, 500);
    assert!(!cache.contains(&clean).unwrap());
    for (id, data) in &dirty {
        assert_eq!(cache.get(id).unwrap().unwrap(), *data);
        assert!(!cache.remove(id).unwrap(), "dirty chunks are not removed");
    }
    assert_eq!(cache.evict_to_budget().unwrap(), 0);
    let mut ids: Vec<_> = dirty.iter().map(|(id, _)| *id).collect();
    ids.sort();
    assert_eq!(cache.dirty_ids().unwrap(), ids);

    // Uploaded: back within budget at once, least recently used going first.
    cache.mark_clean(&ids).unwrap();
    let stats = cache.stats().unwrap();
    assert_eq!((stats.total_bytes, stats.dirty_bytes), (200, 0));
    assert!(cache.dirty_ids().unwrap().is_empty());
}

#[test]
fn insert_is_idempotent_and_never_downgrades_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1000);
    let (id, data) = chunk(1, 100);
    cache.insert(&id, &data, CLEAN).unwrap();
    cache.insert(&id, &data, CLEAN).unwrap();
    assert_eq!(cache.stats().unwrap().total_bytes, 100);
    let info = |cache: &ChunkCache| cache.info(&id).unwrap().unwrap();
    assert_eq!(info(&cache).state, CLEAN);
    // Written locally as well: now dirty.
    cache.insert(&id, &data, DIRTY).unwrap();
    assert_eq!(info(&cache).state, DIRTY);
    // A download of the same bytes does not make it clean again.
    cache.insert(&id, &data, CLEAN).unwrap();
    assert_eq!(
        info(&cache),
        ChunkInfo {
            length: 100,
            state: DIRTY,
            pins: 0
        }
    );
    assert_eq!(cache.stats().unwrap().chunks, 1);
    assert_eq!(bytes_on_disk(dir.path()), 100);
    // mark_clean is idempotent and ignores unknown ids.
    let unknown = chunk(2, 1).0;
    cache.mark_clean(&[id, unknown]).unwrap();
    cache.mark_clean(&[id]).unwrap();
    assert_eq!(info(&cache).state, CLEAN);
}

#[test]
fn pins_are_counted_per_owner() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 100);
    let (shared, shared_data) = chunk(1, 100);
    let (a, b) = (PinOwner(1), PinOwner(2));
    // Pin before hydrating: the chunk is protected as soon as it arrives.
    cache.pin(a, &[shared]).unwrap();
    cache.pin(b, &[shared]).unwrap();
    cache.pin(b, &[shared]).unwrap();
    cache.insert(&shared, &shared_data, CLEAN).unwrap();
    assert_eq!(cache.info(&shared).unwrap().unwrap().pins, 2);
    assert_eq!(cache.stats().unwrap().pinned_bytes, 100);
    assert!(
        !cache.remove(&shared).unwrap(),
        "pinned chunks are not removed"
    );

    let (other, other_data) = chunk(2, 10);
    assert!(matches!(
        cache.insert(&other, &other_data, CLEAN),
        Err(CacheError::Full { .. })
    ));
    cache.unpin(a, &[shared]).unwrap();
    assert!(cache.contains(&shared).unwrap(), "b still pins it");
    assert!(cache.insert(&other, &other_data, CLEAN).is_err());
    cache.unpin_all(b).unwrap();
    assert!(
        cache.contains(&shared).unwrap(),
        "within budget: no need to evict"
    );
    cache.insert(&other, &other_data, CLEAN).unwrap();
    assert!(!cache.contains(&shared).unwrap());
    assert_eq!(cache.stats().unwrap().pinned_bytes, 0);
}

#[test]
fn unpinning_over_budget_evicts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 300);
    let chunks: Vec<_> = (0..3).map(|n| chunk(n, 100)).collect();
    let ids: Vec<_> = chunks.iter().map(|(id, _)| *id).collect();
    cache.pin(PinOwner(9), &ids).unwrap();
    for (id, data) in &chunks {
        cache.insert(id, data, CLEAN).unwrap();
    }
    // Pinned chunks survive a smaller budget...
    assert_eq!(cache.set_budget(100).unwrap(), 0);
    assert_eq!(cache.stats().unwrap().total_bytes, 300);
    // ...until they are let go.
    cache.unpin(PinOwner(9), &ids[..2]).unwrap();
    assert_eq!(present(&cache, &ids), [false, false, true]);
    assert_eq!(cache.budget(), 100);
}

#[test]
fn set_budget_evicts_down_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1000);
    let chunks: Vec<_> = (0..10).map(|n| chunk(n, 100)).collect();
    for (id, data) in &chunks {
        cache.insert(id, data, CLEAN).unwrap();
    }
    assert_eq!(cache.set_budget(450).unwrap(), 600);
    let kept: Vec<_> = present(&cache, &chunks.iter().map(|c| c.0).collect::<Vec<_>>());
    assert_eq!(kept, [vec![false; 6], vec![true; 4]].concat());
    assert_eq!(cache.stats().unwrap().budget, 450);
}

#[test]
fn remove_drops_clean_unpinned_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1000);
    let (id, data) = chunk(1, 100);
    assert!(!cache.remove(&id).unwrap());
    cache.insert(&id, &data, CLEAN).unwrap();
    let path = cache.path_of(&id).unwrap().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(cache.remove(&id).unwrap());
    assert!(!path.exists());
    assert_eq!(cache.get(&id).unwrap(), None);
    assert_eq!(cache.path_of(&id).unwrap(), None);
    assert_eq!(cache.stats().unwrap().total_bytes, 0);
}

#[test]
fn bytes_that_do_not_match_their_id_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30);
    let (id, _) = chunk(1, 100);
    let other = chunk(2, 100).1;
    assert!(matches!(
        cache.insert(&id, &other, DIRTY),
        Err(CacheError::Rejected(ContentError::HashMismatch { .. }))
    ));
    let huge = vec![0u8; MAX_CHUNK + 1];
    assert!(matches!(
        cache.insert(&ChunkId::of(&huge), &huge, CLEAN),
        Err(CacheError::Rejected(ContentError::Oversized(_)))
    ));
    assert!(
        files_in(dir.path())
            .iter()
            .all(|f| f == "lock" || !f.contains('/'))
    );
    assert_eq!(cache.stats().unwrap().chunks, 0);
}

#[test]
fn disk_full_when_the_reserve_exceeds_free_space() {
    if cfg!(not(unix)) {
        return; // free space is only known on Unix
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = ChunkCache::open(
        dir.path(),
        CacheConfig {
            budget: 1 << 30,
            disk_reserve: u64::MAX / 2,
        },
    )
    .unwrap();
    let (id, data) = chunk(1, 100);
    for state in [DIRTY, CLEAN] {
        let err = cache.insert(&id, &data, state).unwrap_err();
        assert!(
            matches!(err, CacheError::DiskFull { needed: 100, reserve, .. } if reserve == u64::MAX / 2),
            "{err:?}"
        );
    }
    assert!(!cache.contains(&id).unwrap());
    assert!(files_in(dir.path()).is_empty(), "nothing written");
    assert_eq!(cache.stats().unwrap().total_bytes, 0);
}

#[test]
fn a_zero_reserve_does_not_get_in_the_way() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ChunkCache::open(dir.path(), config(1000)).unwrap();
    let (id, data) = chunk(1, 100);
    cache.insert(&id, &data, DIRTY).unwrap();
    assert!(cache.contains(&id).unwrap());
}
