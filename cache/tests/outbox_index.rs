//! The outbound journal's lookups by node and by entry, for operations queued now and
//! for those queued before the journal kept index keys (filled in when the mirror
//! opens).

use loft_cache::CacheError;
use loft_cache::mirror::{Mirror, Op};

fn rename(ino: u64, new_parent: u64, new_name: &[u8]) -> Op {
    Op::Rename {
        ino,
        parent: 1,
        name: b"old".to_vec(),
        new_parent,
        new_name: new_name.to_vec(),
        no_replace: false,
        exchange: false,
        replaced: false,
    }
}

fn queue_sample(mirror: &Mirror) {
    mirror
        .write(|db| {
            db.push(&rename(7, 3, b"moved"), 1)?;
            db.push(
                &Op::Remove {
                    ino: 8,
                    parent: 1,
                    name: b"gone".to_vec(),
                    directory: false,
                },
                2,
            )?;
            db.push(
                &Op::Link {
                    ino: 9,
                    parent: 4,
                    name: b"linked".to_vec(),
                },
                3,
            )?;
            Ok::<_, CacheError>(())
        })
        .unwrap();
}

fn assert_lookups(mirror: &Mirror) {
    mirror
        .read(|db| {
            assert!(db.rename_queued_of(7)?);
            assert!(!db.rename_queued_of(8)?);
            assert_eq!(db.last_rename_of(7)?, Some((3, b"moved".to_vec())));
            assert!(db.remove_queued_of(8)?);
            assert!(!db.remove_queued_of(7)?);
            assert!(db.name_queued(3, b"moved")?);
            assert!(db.name_queued(4, b"linked")?);
            assert!(!db.name_queued(3, b"linked")?);
            assert!(!db.name_queued(1, b"gone")?);
            assert!(!db.create_queued_after(7, 0)?);
            Ok::<_, CacheError>(())
        })
        .unwrap();
}

#[test]
fn lookups_find_operations_by_node_and_by_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(&dir.path().join("mirror.db"), 0).unwrap();
    queue_sample(&mirror);
    assert_lookups(&mirror);
}

#[test]
fn operations_queued_without_index_keys_are_keyed_when_the_mirror_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mirror.db");
    queue_sample(&Mirror::open(&path, 0).unwrap());
    // As a journal written before the keys existed holds them.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE outbox SET subject = NULL, to_parent = NULL, to_name = NULL",
        [],
    )
    .unwrap();
    drop(conn);
    let mirror = Mirror::open(&path, 0).unwrap();
    assert_lookups(&mirror);
}
