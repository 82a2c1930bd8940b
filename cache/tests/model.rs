//! The chunk cache against a reference model: seeded random operations, and after
//! each one the cache, its files and a tiny in-memory model must agree.
//!
//! The model states the rules plainly: all present bytes count against the budget;
//! a clean insert evicts clean unpinned chunks, least recently used first, or fails
//! with `Full` if pinned and dirty bytes leave no room; dirty inserts always fit;
//! `unpin`, `mark_clean` and `set_budget` evict down to the budget at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use common::{bytes, file_of, files_in, open};
use loft_cache::CacheError;
use loft_cache::chunks::{CacheStats, ChunkCache, ChunkInfo, ChunkState, PinOwner};
use loft_remote::content::ChunkId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const OPS: usize = 2000;
const POOL: usize = 40;
const MAX_LEN: usize = 8000;
const OWNERS: u64 = 3;

#[derive(Clone, Copy, Debug)]
struct Entry {
    length: u64,
    state: ChunkState,
    access: u64,
}

/// The `CacheError::Full` the model expects.
#[derive(Debug, PartialEq, Eq)]
struct Full {
    needed: u64,
    budget: u64,
    unevictable: u64,
}

#[derive(Default)]
struct Model {
    budget: u64,
    clock: u64,
    chunks: BTreeMap<ChunkId, Entry>,
    pins: BTreeSet<(ChunkId, u64)>,
}

impl Model {
    fn pin_count(&self, id: &ChunkId) -> u64 {
        self.pins.range((*id, 0)..=(*id, u64::MAX)).count() as u64
    }

    fn evictable(&self, id: &ChunkId, entry: &Entry) -> bool {
        entry.state == ChunkState::Clean && self.pin_count(id) == 0
    }

    fn total(&self) -> u64 {
        self.chunks.values().map(|e| e.length).sum()
    }

    fn unevictable(&self) -> u64 {
        self.chunks
            .iter()
            .filter(|(id, e)| !self.evictable(id, e))
            .map(|(_, e)| e.length)
            .sum()
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn touch(&mut self, id: &ChunkId) -> bool {
        let now = self.tick();
        match self.chunks.get_mut(id) {
            Some(entry) => {
                entry.access = now;
                true
            }
            None => false,
        }
    }

    fn evict_down_to(&mut self, target: u64) -> u64 {
        let mut queue: Vec<_> = self
            .chunks
            .iter()
            .filter(|(id, e)| self.evictable(id, e))
            .map(|(id, e)| (e.access, *id))
            .collect();
        queue.sort();
        let mut freed = 0;
        let mut total = self.total();
        for (_, id) in queue {
            if total <= target {
                break;
            }
            let length = self.chunks.remove(&id).unwrap().length;
            total -= length;
            freed += length;
        }
        freed
    }

    fn evict(&mut self) -> u64 {
        self.evict_down_to(self.budget)
    }

    fn insert(&mut self, id: &ChunkId, length: u64, state: ChunkState) -> Result<(), Full> {
        if let Some(entry) = self.chunks.get_mut(id) {
            if state == ChunkState::Dirty {
                entry.state = ChunkState::Dirty;
            }
            self.touch(id);
            return Ok(());
        }
        if state == ChunkState::Clean && self.total() + length > self.budget {
            let unevictable = self.unevictable();
            if unevictable + length > self.budget {
                return Err(Full {
                    needed: length,
                    budget: self.budget,
                    unevictable,
                });
            }
            self.evict_down_to(self.budget - length);
        }
        let access = self.tick();
        self.chunks.insert(
            *id,
            Entry {
                length,
                state,
                access,
            },
        );
        self.evict();
        Ok(())
    }

    fn remove(&mut self, id: &ChunkId) -> bool {
        match self.chunks.get(id) {
            Some(entry) if self.evictable(id, entry) => {
                self.chunks.remove(id);
                true
            }
            _ => false,
        }
    }

    fn stats(&self) -> CacheStats {
        let mut stats = CacheStats {
            budget: self.budget,
            chunks: self.chunks.len() as u64,
            ..CacheStats::default()
        };
        for (id, entry) in &self.chunks {
            stats.total_bytes += entry.length;
            match (entry.state, self.pin_count(id) > 0) {
                (ChunkState::Dirty, _) => stats.dirty_bytes += entry.length,
                (ChunkState::Clean, true) => stats.pinned_bytes += entry.length,
                (ChunkState::Clean, false) => stats.clean_bytes += entry.length,
            }
        }
        stats
    }

    fn info(&self, id: &ChunkId) -> Option<ChunkInfo> {
        self.chunks.get(id).map(|entry| ChunkInfo {
            length: entry.length,
            state: entry.state,
            pins: self.pin_count(id),
        })
    }

    /// Present chunks that nothing may evict.
    fn held(&self) -> Vec<ChunkId> {
        self.chunks
            .iter()
            .filter(|(id, e)| !self.evictable(id, e))
            .map(|(id, _)| *id)
            .collect()
    }
}

fn expect_insert(result: Result<(), CacheError>, expected: Result<(), Full>, ctx: &str) {
    match (result, expected) {
        (Ok(()), Ok(())) => {}
        (
            Err(CacheError::Full {
                needed,
                budget,
                unevictable,
            }),
            Err(want),
        ) => assert_eq!(
            Full {
                needed,
                budget,
                unevictable
            },
            want,
            "{ctx}"
        ),
        (got, want) => panic!("{ctx}: got {got:?}, model expected {want:?}"),
    }
}

/// Everything the cache reports, and everything on disk, matches the model.
fn check(cache: &ChunkCache, dir: &Path, model: &Model, pool: &[(ChunkId, Vec<u8>)], ctx: &str) {
    let stats = cache.stats().unwrap();
    assert_eq!(stats, model.stats(), "{ctx}: stats");
    assert_eq!(
        stats.clean_bytes + stats.pinned_bytes + stats.dirty_bytes,
        stats.total_bytes,
        "{ctx}"
    );
    // The budget holds whenever eviction could have made it hold.
    assert!(
        stats.total_bytes <= stats.budget || stats.clean_bytes == 0,
        "{ctx}: {stats:?}"
    );
    for (id, data) in pool {
        let info = cache.info(id).unwrap();
        assert_eq!(info, model.info(id), "{ctx}: info of {id:?}");
        // Read the file directly: a `get` would count as a use and change the order.
        match fs::read(file_of(dir, id)) {
            Ok(on_disk) => {
                assert!(info.is_some(), "{ctx}: file without a row for {id:?}");
                assert_eq!(&on_disk, data, "{ctx}: content of {id:?}");
            }
            Err(_) => assert!(info.is_none(), "{ctx}: row without a file for {id:?}"),
        }
    }
    assert!(
        files_in(dir).iter().all(|f| !f.starts_with("tmp/")),
        "{ctx}: temporary files left"
    );
}

fn run(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rng = StdRng::seed_from_u64(seed);
    let pool: Vec<(ChunkId, Vec<u8>)> = (0..POOL as u64)
        .map(|n| {
            let data = bytes(seed * 1000 + n, rng.random_range(1..=MAX_LEN));
            (ChunkId::of(&data), data)
        })
        .collect();
    let mut model = Model {
        budget: 40_000,
        ..Model::default()
    };
    let mut cache = open(root, model.budget);
    let mut full_errors = 0;

    for op in 0..OPS {
        let (id, data) = &pool[rng.random_range(0..POOL)];
        let id = *id;
        let length = data.len() as u64;
        let some_ids: Vec<ChunkId> = (0..rng.random_range(1..=3))
            .map(|_| pool[rng.random_range(0..POOL)].0)
            .collect();
        let owner = rng.random_range(1..=OWNERS);
        let held_before = model.held();
        let roll = rng.random_range(0..100);
        let ctx = format!("seed {seed}, op {op} (roll {roll}, {id:?})");

        match roll {
            0..=29 => {
                let expected = model.insert(&id, length, ChunkState::Clean);
                full_errors += usize::from(expected.is_err());
                expect_insert(cache.insert(&id, data, ChunkState::Clean), expected, &ctx);
            }
            30..=36 => {
                let expected = model.insert(&id, length, ChunkState::Dirty);
                expect_insert(cache.insert(&id, data, ChunkState::Dirty), expected, &ctx);
            }
            37..=54 => {
                let want = model.touch(&id).then(|| data.clone());
                assert_eq!(cache.get(&id).unwrap(), want, "{ctx}: get");
            }
            55..=61 => {
                let offset = rng.random_range(0..=length + 10);
                let len = rng.random_range(0..=length);
                let want = model.touch(&id).then(|| {
                    let start = offset.min(length) as usize;
                    let end = (offset + len).min(length) as usize;
                    data[start..end].to_vec()
                });
                assert_eq!(
                    cache.read_range(&id, offset, len).unwrap(),
                    want,
                    "{ctx}: read_range({offset}, {len})"
                );
            }
            62..=64 => {
                let present = model.touch(&id);
                assert_eq!(cache.path_of(&id).unwrap().is_some(), present, "{ctx}");
                assert_eq!(cache.contains(&id).unwrap(), present, "{ctx}");
            }
            65..=72 => {
                for id in &some_ids {
                    model.pins.insert((*id, owner));
                }
                cache.pin(PinOwner(owner), &some_ids).unwrap();
            }
            73..=79 => {
                for id in &some_ids {
                    model.pins.remove(&(*id, owner));
                }
                model.evict();
                cache.unpin(PinOwner(owner), &some_ids).unwrap();
            }
            80 => {
                model.pins.retain(|(_, o)| *o != owner);
                model.evict();
                cache.unpin_all(PinOwner(owner)).unwrap();
            }
            81..=89 => {
                // Mostly chunks that are dirty, as an uploader would.
                let mut ids = some_ids.clone();
                ids.extend(
                    model
                        .chunks
                        .iter()
                        .filter(|(_, e)| e.state == ChunkState::Dirty)
                        .map(|(id, _)| *id)
                        .take(rng.random_range(0..=3)),
                );
                for id in &ids {
                    if let Some(entry) = model.chunks.get_mut(id) {
                        entry.state = ChunkState::Clean;
                    }
                }
                model.evict();
                cache.mark_clean(&ids).unwrap();
            }
            90..=93 => {
                let want = model.remove(&id);
                assert_eq!(cache.remove(&id).unwrap(), want, "{ctx}: remove");
            }
            94..=96 => {
                let budget = rng.random_range(0..=60_000);
                model.budget = budget;
                let freed = model.evict();
                assert_eq!(
                    cache.set_budget(budget).unwrap(),
                    freed,
                    "{ctx}: set_budget"
                );
            }
            97..=98 => {
                let freed = model.evict();
                assert_eq!(cache.evict_to_budget().unwrap(), freed, "{ctx}: evict");
            }
            _ => {
                drop(cache);
                cache = open(root, model.budget);
                assert!(
                    !cache.recovery().changed_anything(),
                    "{ctx}: recovery after a clean close"
                );
            }
        }

        check(&cache, root, &model, &pool, &ctx);
        // Nothing pinned or dirty before the operation vanished, unless the
        // operation itself let go of it.
        for id in held_before {
            if model
                .info(&id)
                .is_some_and(|i| i.pins > 0 || i.state == ChunkState::Dirty)
            {
                assert!(cache.contains(&id).unwrap(), "{ctx}: held {id:?} evicted");
            }
        }
    }
    // The run must have exercised the interesting cases.
    assert!(full_errors > 0, "seed {seed}: never hit Full");
    assert!(model.stats().dirty_bytes > 0 || model.stats().pinned_bytes > 0);
}

#[test]
fn random_operations_agree_with_the_model_seed_1() {
    run(1);
}

#[test]
fn random_operations_agree_with_the_model_seed_2() {
    run(2);
}
