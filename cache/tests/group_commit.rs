//! Changes share a transaction for a few milliseconds: each is still all or nothing,
//! and every change kept is in the file once the mirror is closed.

use loft_cache::CacheError;
use loft_cache::mirror::Mirror;

fn setting(mirror: &Mirror, key: &str) -> Option<String> {
    mirror.read(|db| db.setting(key)).unwrap()
}

#[test]
fn a_failed_change_is_undone_alone_and_kept_ones_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mirror.db");
    let mirror = Mirror::open(&path, 0).unwrap();
    mirror.write(|db| db.set_setting("first", "1")).unwrap();
    let failed: Result<(), CacheError> = mirror.write(|db| {
        db.set_setting("second", "2")?;
        db.set_setting("first", "changed")?;
        Err(CacheError::Corrupt("refused".into()))
    });
    assert!(failed.is_err());
    mirror.write(|db| db.set_setting("third", "3")).unwrap();
    assert_eq!(setting(&mirror, "first").as_deref(), Some("1"));
    assert_eq!(setting(&mirror, "second"), None);
    assert_eq!(setting(&mirror, "third").as_deref(), Some("3"));
    drop(mirror);

    let mirror = Mirror::open(&path, 0).unwrap();
    assert_eq!(setting(&mirror, "first").as_deref(), Some("1"));
    assert_eq!(setting(&mirror, "second"), None);
    assert_eq!(setting(&mirror, "third").as_deref(), Some("3"));
}

#[test]
fn a_change_that_panics_is_undone() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(&dir.path().join("mirror.db"), 0).unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = mirror.write(|db| {
            db.set_setting("half", "done")?;
            panic!("in the middle of a change");
            #[allow(unreachable_code)]
            Ok::<_, CacheError>(())
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(setting(&mirror, "half"), None);
    mirror.write(|db| db.set_setting("after", "yes")).unwrap();
    assert_eq!(setting(&mirror, "after").as_deref(), Some("yes"));
}

/// Nodes are read from memory once read or written; a change that fails or panics
/// after writing one leaves it as it was, in memory as on disk.
#[test]
fn an_undone_change_leaves_its_nodes_as_they_were() {
    use loft_cache::mirror::{Kind, Node};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mirror.db");
    let mirror = Mirror::open(&path, 0).unwrap();
    let ino = mirror
        .write(|db| db.insert_node(&Node::new(Kind::File, 0o644, 0)))
        .unwrap();
    let mode = |mirror: &Mirror| mirror.read(|db| db.node(ino)).unwrap().unwrap().mode;
    assert_eq!(mode(&mirror), 0o644);
    let failed = mirror.write(|db| {
        let mut node = db.node(ino)?.unwrap();
        node.mode = 0o600;
        db.update_node(&node)?;
        assert_eq!(db.node(ino)?.unwrap().mode, 0o600, "seen inside the change");
        Err::<(), _>(CacheError::Corrupt("refused".into()))
    });
    assert!(failed.is_err());
    assert_eq!(mode(&mirror), 0o644);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = mirror.write(|db| {
            db.delete_node(ino)?;
            panic!("in the middle of a change");
            #[allow(unreachable_code)]
            Ok::<_, CacheError>(())
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(mode(&mirror), 0o644);
    mirror
        .write(|db| {
            let mut node = db.node(ino)?.unwrap();
            node.mode = 0o640;
            db.update_node(&node)
        })
        .unwrap();
    drop(mirror);
    let reopened = Mirror::open(&path, 0).unwrap();
    assert_eq!(mode(&reopened), 0o640, "what memory had is what was stored");
}
