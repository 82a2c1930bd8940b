//! Bad input from the wire: changes delivered twice, out of order, naming a parent
//! the device does not know, or older than a reset; a stream that goes silent. A device must never build a
//! wrong tree from them; where it cannot tell what it missed, it lists its folders
//! again. Each test runs the real server and two client cores.

use std::time::{Duration, Instant};

use loft_remote::proto::{self, ChangeKind, watch_event::Event};
use loft_sim::clock::SimClock;
use loft_sim::content::Token;
use loft_sim::device::{Entry, SimDevice, Tree};
use loft_sim::faults::{FaultMode, Faults};
use loft_sim::server::SimServer;
use loft_sim::workload::Op;

/// The condition deadline: generous, the machine may be busy.
const DEADLINE: Duration = Duration::from_secs(20);

struct Pair {
    writer: SimDevice,
    reader: SimDevice,
    _ticker: tokio::task::JoinHandle<()>,
    _server: SimServer,
    runtime: tokio::runtime::Runtime,
}

impl Pair {
    fn start(seed: u64) -> Pair {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let rt = runtime.handle().clone();
        let clock = SimClock::default();
        let ticker = clock.spawn_ticker(&rt, Duration::from_millis(5));
        let server = rt.block_on(SimServer::start(seed)).unwrap();
        let address = server.address();
        let writer = SimDevice::start(&rt, &address, 0, Faults::new(seed, clock.clone())).unwrap();
        let reader = SimDevice::start(&rt, &address, 1, Faults::new(seed + 1, clock)).unwrap();
        // The reader has listed the root and follows the feed.
        reader.tree().unwrap();
        Pair {
            writer,
            reader,
            _ticker: ticker,
            _server: server,
            runtime,
        }
    }

    fn write(&self, path: &str, write: u64) -> Token {
        let written = token(0, write);
        let op = Op::Write {
            path: path.into(),
            token: written,
        };
        self.writer.apply(&op).unwrap();
        written
    }

    /// The server's id of the node at `path`.
    fn server_id(&self, path: &str) -> u64 {
        use loft_remote::RemoteClient;
        self.runtime
            .block_on(self.reader.direct.resolve(path.as_bytes()))
            .unwrap()
            .id
    }

    /// Waits until the reader shows exactly the writer's tree, and returns it.
    fn agree(&self) -> Tree {
        let start = Instant::now();
        loop {
            if self.writer.is_quiet()
                && let (Ok(mine), Ok(theirs)) = (self.writer.tree(), self.reader.tree())
                && mine == theirs
            {
                return theirs;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the devices did not agree: writer {:?} reader {:?}",
                self.writer
                    .tree()
                    .map(|t| t.into_keys().collect::<Vec<_>>()),
                self.reader
                    .tree()
                    .map(|t| t.into_keys().collect::<Vec<_>>()),
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = &self.runtime;
    }
}

/// Waits until `done` holds; fails the test, saying `what` did not happen, after
/// the deadline.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What device `device` writes as its `write`-th write: 100 bytes.
fn token(device: usize, write: u64) -> Token {
    Token {
        seed: 0,
        device,
        write,
        len: 100,
    }
}

/// How far `device` has followed the change feed.
fn cursor(device: &SimDevice) -> u64 {
    device.vfs.mount_status().unwrap().cursor
}

fn holds(tree: &Tree, path: &str, token: Token) -> bool {
    matches!(tree.get(path), Some(Entry::File { token: Some(t), .. }) if *t == token)
}

fn change(seq: u64, kind: ChangeKind, parent: u64, name: &str, id: u64) -> proto::WatchEvent {
    proto::WatchEvent {
        event: Some(Event::Change(proto::Change {
            seq,
            kind: kind as i32,
            parent,
            name: name.as_bytes().to_vec().into(),
            node: Some(proto::Node {
                id,
                kind: proto::NodeKind::File as i32,
                mode: 0o644,
                nlink: 1,
                size: 5,
                version: 1,
                ..Default::default()
            }),
            namespace_seq: seq,
            ..Default::default()
        })),
    }
}

#[test]
fn every_change_delivered_twice_builds_the_same_tree() {
    let pair = Pair::start(11);
    pair.reader.faults.set(FaultMode {
        duplicate: 100,
        ..FaultMode::default()
    });
    let a = pair.write("d/a", 1);
    let b = pair.write("d/b", 2);
    pair.writer
        .apply(&Op::Rename {
            from: "d/a".into(),
            to: "e".into(),
        })
        .unwrap();
    let tree = pair.agree();
    assert!(holds(&tree, "e", a) && holds(&tree, "d/b", b), "{tree:?}");
    assert!(
        pair.reader
            .faults
            .counts
            .duplicated
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

#[test]
fn changes_out_of_order_are_noticed_and_the_folders_listed_again() {
    let pair = Pair::start(12);
    pair.reader.faults.set(FaultMode {
        reorder: 100,
        ..FaultMode::default()
    });
    // A folder and files in it: the file's creation may arrive before its folder's.
    let tokens: Vec<Token> = (1..=6)
        .map(|n| pair.write(&format!("dir{}/f", n % 3), n))
        .collect();
    let tree = pair.agree();
    assert!(holds(&tree, "dir0/f", tokens[5]), "{tree:?}");
    assert!(
        pair.reader
            .faults
            .counts
            .reordered
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

#[test]
fn a_change_naming_an_unknown_parent_changes_nothing() {
    let pair = Pair::start(13);
    pair.write("before", 1);
    pair.agree();
    // A position far ahead: every real change after it looks late to the reader,
    // which then lists its folders again rather than trusting the stream.
    pair.reader.faults.forge(change(
        1 << 40,
        ChangeKind::Created,
        987_654,
        "ghost",
        987_655,
    ));
    let after = pair.write("after", 2);
    let tree = pair.agree();
    assert!(holds(&tree, "after", after), "{tree:?}");
    assert!(tree.keys().all(|path| !path.contains("ghost")), "{tree:?}");
}

#[test]
fn a_change_older_than_a_reset_is_skipped() {
    let pair = Pair::start(14);
    pair.write("kept", 1);
    pair.agree();
    // A reset to the head, then a stale creation from before it: the listing after
    // the reset already shows everything up to the head.
    let head = pair.reader.vfs.mount_status().unwrap().cursor;
    assert!(head >= 1, "the reader has applied the first write");
    let root = pair.server_id("/");
    pair.reader.faults.forge(proto::WatchEvent {
        event: Some(Event::Reset(head)),
    });
    pair.reader
        .faults
        .forge(change(head, ChangeKind::Created, root, "stale", 424_242));
    let later = pair.write("later", 2);
    let tree = pair.agree();
    assert!(holds(&tree, "later", later), "{tree:?}");
    assert!(!tree.contains_key("stale"), "{tree:?}");
}

/// A feed stream that stops delivering without an error (a connection gone
/// half-open) is followed again once it has been silent too long.
#[test]
fn a_feed_gone_silent_is_followed_again() {
    let pair = Pair::start(7);
    let before = pair.write("a", 1);
    assert!(holds(&pair.agree(), "a", before));
    pair.reader.faults.stall_open_streams();
    let after = pair.write("b", 2);
    assert!(holds(&pair.agree(), "b", after));
}

/// A feed stream that ends right after a change (the server closed it): the change is
/// applied, the ended stream is not read again, and the feed is followed anew.
#[test]
fn a_feed_that_ends_right_after_a_change_is_followed_again() {
    let pair = Pair::start(8);
    let before = pair.write("a", 1);
    assert!(holds(&pair.agree(), "a", before));
    pair.reader.faults.end_after_next_change();
    let ending = pair.write("b", 2);
    assert!(holds(&pair.agree(), "b", ending));
    let after = pair.write("c", 3);
    assert!(holds(&pair.agree(), "c", after));
}

/// A folder listed for the first time may name a file this device holds elsewhere,
/// at an older version, when the feed has not told it yet of the move and the new
/// version: the file shows the listing's version, never its old bytes under the new
/// size.
#[test]
fn a_listing_ahead_of_the_feed_brings_a_moved_files_new_version() {
    let pair = Pair::start(15);
    let old = pair.write("d/a", 1);
    // The reader holds d/a's bytes, and then knows folder e without listing it.
    assert!(holds(&pair.agree(), "d/a", old));
    pair.writer.apply(&Op::Mkdir { path: "e".into() }).unwrap();
    wait_until("the reader never saw folder e", || {
        pair.reader.vfs.lookup(loft_vfs::ROOT_INO, b"e").is_ok()
    });
    pair.reader.faults.stall_open_streams();
    pair.writer
        .apply(&Op::Rename {
            from: "d/a".into(),
            to: "e/a".into(),
        })
        .unwrap();
    let new = Token {
        len: 300,
        ..token(0, 2)
    };
    pair.writer
        .apply(&Op::Write {
            path: "e/a".into(),
            token: new,
        })
        .unwrap();
    wait_until("the writer never sent its changes", || {
        pair.writer.is_quiet()
    });
    // Listing e now (the feed is stalled) finds the moved file at its new version.
    let tree = pair.reader.tree().unwrap();
    assert!(holds(&tree, "e/a", new), "{tree:?}");
    assert!(!holds(&tree, "e/a", old), "{tree:?}");
    let tree = pair.agree();
    assert!(holds(&tree, "e/a", new), "{tree:?}");
}

/// A file edited here that another device renames onto a name where this device
/// made a file of its own, neither sent yet: the edited file keeps its old name
/// until the server has both changes, and then both edits are in the drive.
#[test]
fn a_rename_onto_a_name_taken_here_leaves_the_edited_file_named() {
    let pair = Pair::start(16);
    pair.write("d/a", 1);
    pair.agree();
    // The reader's calls are lost from here on; its open feed still delivers.
    pair.reader.faults.set(FaultMode {
        lose_request: 100,
        ..FaultMode::default()
    });
    let edit = token(1, 2);
    let made_here = token(1, 3);
    pair.reader
        .apply(&Op::Write {
            path: "d/a".into(),
            token: edit,
        })
        .unwrap();
    pair.reader
        .apply(&Op::Write {
            path: "b".into(),
            token: made_here,
        })
        .unwrap();
    let before = cursor(&pair.writer);
    pair.writer
        .apply(&Op::Rename {
            from: "d/a".into(),
            to: "b".into(),
        })
        .unwrap();
    wait_until("the reader never saw the rename", || {
        pair.writer.is_quiet()
            && cursor(&pair.writer) > before
            && cursor(&pair.reader) >= cursor(&pair.writer)
    });
    let tree = pair.reader.tree().unwrap();
    assert!(holds(&tree, "d/a", edit), "{tree:?}");
    assert!(holds(&tree, "b", made_here), "{tree:?}");
    pair.reader.faults.set(FaultMode::default());
    let tree = pair.agree();
    for token in [edit, made_here] {
        assert!(
            tree.values()
                .any(|e| matches!(e, Entry::File { token: Some(t), .. } if *t == token)),
            "{token:?} in {tree:?}"
        );
    }
}

/// A rename the server has carried out keeps its name while the feed, behind it,
/// replays older history that named the same place (all-faults seeds 8 and 366):
/// another device's file created there and moved away before the rename.
#[test]
fn a_sent_rename_keeps_its_name_while_the_feed_replays_older_history() {
    let pair = Pair::start(17);
    let mine = token(1, 1);
    pair.reader
        .apply(&Op::Write {
            path: "d/a".into(),
            token: mine,
        })
        .unwrap();
    pair.agree();
    wait_until("the reader's creation never came back", || {
        pair.reader.is_quiet() && cursor(&pair.reader) >= cursor(&pair.writer)
    });
    // From here the reader's feed is behind: another device's file comes to d/n
    // and moves on to d/m, and then the reader moves its own file to d/n.
    pair.reader.faults.stall_open_streams();
    let theirs = pair.write("d/n", 2);
    pair.writer
        .apply(&Op::Rename {
            from: "d/n".into(),
            to: "d/m".into(),
        })
        .unwrap();
    wait_until("the writer never sent its changes", || {
        pair.writer.is_quiet()
    });
    pair.reader
        .apply(&Op::Rename {
            from: "d/a".into(),
            to: "d/n".into(),
        })
        .unwrap();
    wait_until("the reader never sent its rename", || {
        pair.reader.is_quiet()
    });
    // The stalled feed is followed again and replays d/n's creation alone (the
    // stream ends after it), so the feed's work after it is done before the
    // reader's rename comes back.
    pair.reader.faults.end_after_next_change();
    wait_until("the reader's feed never caught up", || {
        cursor(&pair.reader) >= cursor(&pair.writer)
    });
    let tree = pair.agree();
    assert!(holds(&tree, "d/n", mine), "{tree:?}");
    assert!(holds(&tree, "d/m", theirs), "{tree:?}");
}

/// An edit here, not sent, to a file another device moves into a new folder and
/// then deletes there: the edit follows the move and is kept as a new file where
/// the file went.
#[test]
fn an_edit_to_a_file_moved_and_deleted_elsewhere_is_kept() {
    let pair = Pair::start(18);
    pair.write("d/a", 1);
    pair.agree();
    pair.writer.apply(&Op::Mkdir { path: "e".into() }).unwrap();
    wait_until("the reader never saw folder e", || {
        pair.reader.vfs.lookup(loft_vfs::ROOT_INO, b"e").is_ok()
    });
    // The reader's calls are lost from here on; its open feed still delivers.
    pair.reader.faults.set(FaultMode {
        lose_request: 100,
        ..FaultMode::default()
    });
    let edit = token(1, 2);
    pair.reader
        .apply(&Op::Write {
            path: "d/a".into(),
            token: edit,
        })
        .unwrap();
    pair.writer
        .apply(&Op::Rename {
            from: "d/a".into(),
            to: "e/a".into(),
        })
        .unwrap();
    pair.writer
        .apply(&Op::Unlink { path: "e/a".into() })
        .unwrap();
    wait_until("the reader never saw the move and the removal", || {
        pair.writer.is_quiet() && cursor(&pair.reader) >= cursor(&pair.writer)
    });
    pair.reader.faults.set(FaultMode::default());
    let tree = pair.agree();
    assert!(
        tree.values()
            .any(|e| matches!(e, Entry::File { token: Some(t), .. } if *t == edit)),
        "the edit is lost: {tree:?}"
    );
}

/// A rename made here while the folders are listed again (after a reset), sent
/// after the target folder's listing was asked for and carried out before that
/// listing arrived: the listing does not have the new name, and must not take it
/// from the file (all-faults seed 5330, where the file then went missing on this
/// device for good).
#[test]
fn a_rename_carried_out_while_its_folder_is_listed_again_keeps_its_name() {
    let pair = Pair::start(19);
    let moved = pair.write("d/a", 1);
    let kept = pair.write("x/kept", 2);
    pair.agree();
    wait_until("the reader's feed never caught up", || {
        pair.reader.is_quiet() && cursor(&pair.reader) >= cursor(&pair.writer)
    });
    let x = pair.server_id("/x");
    let faults = &pair.reader.faults;
    faults.hold_listings();
    faults.hold_renames();
    // The feed starts over: every folder is listed again, the root first.
    let head = cursor(&pair.reader);
    faults.forge(proto::WatchEvent {
        event: Some(Event::Reset(head)),
    });
    wait_until("no listing was asked for", || {
        !faults.listings_waiting().is_empty()
    });
    // The rename is made here and queued; it cannot go out yet.
    pair.reader
        .apply(&Op::Rename {
            from: "d/a".into(),
            to: "x/f0".into(),
        })
        .unwrap();
    // Listings go one by one until x's has been asked for (after the rename was
    // made) and answered without the new name.
    wait_until("x was never listed again", || {
        if faults.listings_waiting().contains(&x) {
            return true;
        }
        if !faults.listings_waiting().is_empty() {
            faults.pass_listing();
        }
        false
    });
    // The server carries the rename out and the reader's journal lets it go; then
    // x's older listing arrives.
    faults.release_renames();
    wait_until("the reader never sent its rename", || {
        pair.reader.is_quiet()
    });
    faults.release_listings();
    let tree = pair.agree();
    assert!(holds(&tree, "x/f0", moved), "{tree:?}");
    assert!(holds(&tree, "x/kept", kept), "{tree:?}");
    assert!(!tree.contains_key("d/a"), "{tree:?}");
}
