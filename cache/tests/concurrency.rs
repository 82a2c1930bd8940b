//! Several threads using one cache at once.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::thread;

use common::{bytes_on_disk, chunk, files_in, open};
use loft_cache::CacheError;
use loft_cache::chunks::{ChunkState, PinOwner};
use loft_remote::content::ChunkId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const THREADS: u64 = 4;
const OPS: usize = 400;
const BUDGET: u64 = 64 * 1024;

#[test]
fn four_threads_insert_read_pin_and_upload() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(open(dir.path(), BUDGET));
    // A pool every thread draws from, so inserts and evictions of the same chunk race.
    let shared: Arc<Vec<(ChunkId, Vec<u8>)>> = Arc::new(
        (0..48)
            .map(|n| chunk(n, 1024 + (n as usize * 331) % 6000))
            .collect(),
    );

    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let cache = Arc::clone(&cache);
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(0xC0FFEE + t);
                let owner = PinOwner(t);
                let mut still_dirty = HashSet::new();
                for op in 0..OPS {
                    let (id, data) = &shared[rng.random_range(0..shared.len())];
                    match rng.random_range(0..10) {
                        0..=2 => match cache.insert(id, data, ChunkState::Clean) {
                            Ok(()) | Err(CacheError::Full { .. }) => {}
                            Err(e) => panic!("insert: {e}"),
                        },
                        3..=4 => {
                            if let Some(got) = cache.get(id).unwrap() {
                                assert_eq!(&got, data);
                            }
                        }
                        5 => {
                            let offset = rng.random_range(0..data.len() as u64);
                            if let Some(got) = cache.read_range(id, offset, 700).unwrap() {
                                let end = (offset as usize + 700).min(data.len());
                                assert_eq!(got, &data[offset as usize..end]);
                            }
                        }
                        6 => {
                            // A chunk only this thread writes, uploaded later.
                            let (id, data) = chunk(1_000_000 * (t + 1) + op as u64, 2048);
                            cache.insert(&id, &data, ChunkState::Dirty).unwrap();
                            still_dirty.insert((id, data));
                        }
                        7 => {
                            let done: Vec<_> = still_dirty.iter().take(2).cloned().collect();
                            let ids: Vec<_> = done.iter().map(|(id, _)| *id).collect();
                            cache.mark_clean(&ids).unwrap();
                            for chunk in &done {
                                still_dirty.remove(chunk);
                            }
                        }
                        8 => cache.pin(owner, &[*id]).unwrap(),
                        _ => cache.unpin(owner, &[*id]).unwrap(),
                    }
                    // Every dirty chunk this thread wrote is still there and intact.
                    if op % 50 == 0 {
                        for (id, data) in &still_dirty {
                            assert_eq!(cache.get(id).unwrap().as_ref(), Some(data));
                        }
                    }
                }
                cache.unpin_all(owner).unwrap();
                still_dirty
            })
        })
        .collect();
    let mut dirty = Vec::new();
    for worker in workers {
        dirty.extend(worker.join().expect("worker panicked"));
    }

    // Consistent afterwards: the index, the files and the counters agree.
    let stats = cache.stats().unwrap();
    assert_eq!(
        stats.clean_bytes + stats.pinned_bytes + stats.dirty_bytes,
        stats.total_bytes
    );
    assert_eq!(stats.pinned_bytes, 0);
    assert_eq!(bytes_on_disk(dir.path()), stats.total_bytes);
    assert!(files_in(dir.path()).iter().all(|f| !f.starts_with("tmp/")));
    assert!(stats.total_bytes <= BUDGET || stats.clean_bytes == 0);
    let expected_dirty: u64 = dirty.iter().map(|(_, data)| data.len() as u64).sum();
    assert_eq!(stats.dirty_bytes, expected_dirty);
    for (id, data) in &dirty {
        assert_eq!(cache.get(id).unwrap().as_ref(), Some(data));
    }
    for (id, data) in shared.iter() {
        if let Some(got) = cache.get(id).unwrap() {
            assert_eq!(&got, data);
        }
    }
    // All reservations were given back: the whole budget can be used again.
    let dirty_ids: Vec<_> = dirty.iter().map(|(id, _)| *id).collect();
    cache.mark_clean(&dirty_ids).unwrap();
    let (id, data) = chunk(u64::MAX, BUDGET as usize);
    cache.insert(&id, &data, ChunkState::Clean).unwrap();
    assert_eq!(cache.stats().unwrap().total_bytes, BUDGET);
}
