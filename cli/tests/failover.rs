//! Several `loft-server` processes behind one drive (PostgreSQL + S3): a device signed
//! in with `--server A --server B` keeps working when A dies. Its mount commits new
//! writes through B and its change feed follows B, and its commands answer through B.
//! Runs when the tests run on PostgreSQL + S3 (`LOFT_TEST_CLI_SCALE_OUT=1` under
//! `scripts/with-scale-out-services`); on the default stores there is no second server
//! to fail over to, and the test says so and passes.

mod common;

use std::fs;
use std::time::Duration;

use common::mount::wait_content_within as wait_content;
use common::{Device, TestServer};

/// How long a change may take to reach the other device (the sync target), plus the
/// time to notice the dead server: a connect timeout of 5 s and one retry.
const SYNC_AFTER_FAILOVER: Duration = Duration::from_secs(30);

#[test]
fn a_device_fails_over_to_the_next_server_and_converges() {
    let mut first = TestServer::start();
    let Some(second) = first.beside() else {
        eprintln!("skipped: a second server needs PostgreSQL + S3 (LOFT_TEST_CLI_SCALE_OUT)");
        return;
    };
    first.add_user("alice");
    let laptop = Device::login_any(&[&first, &second], "alice", "laptop");
    let phone = Device::login(&second, "alice", "phone");
    let status = laptop.json(&["status", "--json"]);
    assert_eq!(status["server"], first.url(), "{status}");
    assert_eq!(status["servers"][1], second.url(), "{status}");

    let mount = laptop.mount(&[]);
    fs::write(mount.path().join("before.txt"), b"through the first server").unwrap();
    mount.sync();
    let phone_mount = phone.mount(&[]);
    wait_content(
        &phone_mount.path().join("before.txt"),
        b"through the first server",
        Duration::from_secs(5),
    );

    first.kill9();

    // The laptop's writes are committed through the second server…
    fs::write(mount.path().join("after.txt"), b"through the second server").unwrap();
    laptop.ok(&["sync", "--timeout", "60s"]);
    wait_content(
        &phone_mount.path().join("after.txt"),
        b"through the second server",
        SYNC_AFTER_FAILOVER,
    );
    // …its change feed follows the second server…
    fs::write(
        phone_mount.path().join("from-phone.txt"),
        b"seen on the laptop",
    )
    .unwrap();
    phone.ok(&["sync", "--timeout", "60s"]);
    wait_content(
        &mount.path().join("from-phone.txt"),
        b"seen on the laptop",
        SYNC_AFTER_FAILOVER,
    );
    // …and its commands answer through it.
    let listed = laptop.ok(&["ls", "/"]);
    assert!(
        listed.contains("after.txt") && listed.contains("from-phone.txt"),
        "{listed}"
    );
    mount.unmount();
    phone_mount.unmount();
    // Unmounted, a command reports the server it reached.
    let status = laptop.json(&["status", "--json"]);
    assert_eq!(status["server"], second.url(), "{status}");
    assert_eq!(status["online"], true, "{status}");
}
