//! Without a server configured, `loft` runs an embedded server under `LOFT_HOME`: one
//! process owns it, the others connect to its unix socket.

mod common;

use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};

use common::*;

fn spawn(device: &Device, args: &[&str], stderr_file: &std::path::Path) -> Child {
    let mut command = device.command(args);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr_file).expect("stderr file"));
    command.spawn().expect("spawning loft")
}

/// Waits until `owner` serves the embedded socket (it must still be running).
fn wait_for_socket(device: &Device, owner: &mut Child) {
    let socket = device.path().join("server.sock");
    wait_for("the embedded server's socket", DEADLINE, || {
        if let Some(status) = owner.try_wait().expect("try_wait") {
            panic!("the owning process ended ({status}) before the test could join it");
        }
        UnixStream::connect(&socket).is_ok().then_some(())
    });
}

fn finish(child: &mut Child, stderr_file: &std::path::Path, what: &str) {
    let status = wait_exit(child, COMMAND_DEADLINE).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("{what} hangs")
    });
    assert!(
        status.success(),
        "{what} failed ({status}): {}",
        std::fs::read_to_string(stderr_file).unwrap_or_default()
    );
}

#[test]
fn embedded_server_round_trips_without_login() {
    let device = Device::new("solo");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("f.bin");
    random_file(&file, 3 * MIB, 31);

    let first = device.put(&file, "/x");
    assert_eq!(first.bytes, 3 * MIB as u64);
    assert_eq!(first.chunks_uploaded, first.chunks);
    let back = work.path().join("g.bin");
    let (bytes, _) = device.get("/x", &back);
    assert_eq!(bytes, 3 * MIB as u64);
    assert!(
        files_equal(&file, &back),
        "the embedded server returned other bytes"
    );

    // State persists between processes: the same bytes are not sent again.
    let again = device.put(&file, "/y");
    assert_eq!(again.chunks_uploaded, 0, "{again:?}");
    let listing = device.json(&["ls", "/", "--json"]);
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["x", "y"]);
    let status = device.json(&["status", "--json"]);
    assert_eq!(status["embedded"], true, "{status}");
    assert_eq!(status["online"], true, "{status}");

    let token = device.token_file();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&token).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    assert!(device.path().join("server").join("meta.sqlite").exists());
}

#[test]
fn concurrent_processes_share_the_embedded_server() {
    let device = Device::new("solo");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("big.bin");
    random_file(&file, 50 * MIB, 32);

    let put_err = work.path().join("put.err");
    let mut put = spawn(
        &device,
        &["put", &file.to_string_lossy(), "/big.bin"],
        &put_err,
    );
    wait_for_socket(&device, &mut put);

    // While the put owns the server, other processes list the drive through its socket.
    let mut overlapped = 0;
    while put.try_wait().unwrap().is_none() {
        let output = device.run(&["ls", "/"]);
        assert!(
            output.status.success(),
            "ls during a put: {}",
            describe(&output)
        );
        if put.try_wait().unwrap().is_none() {
            overlapped += 1;
        }
    }
    assert!(overlapped > 0, "no ls ran while the put was running");
    finish(&mut put, &put_err, "the put");

    let back = work.path().join("back.bin");
    device.get("/big.bin", &back);
    assert!(files_equal(&file, &back));
}

#[test]
fn embedded_server_outlives_its_owner_for_connected_processes() {
    let device = Device::new("solo");
    let work = tempfile::tempdir().unwrap();
    let small = work.path().join("small.bin");
    let big = work.path().join("big.bin");
    random_file(&small, 50 * MIB, 33);
    random_file(&big, 150 * MIB, 34);

    // The first process owns the embedded server; the second joins it over the socket
    // and still runs when the owner's command is done.
    let (small_err, big_err) = (work.path().join("small.err"), work.path().join("big.err"));
    let mut owner = spawn(
        &device,
        &["put", &small.to_string_lossy(), "/small.bin"],
        &small_err,
    );
    wait_for_socket(&device, &mut owner);
    let mut joined = spawn(
        &device,
        &["put", &big.to_string_lossy(), "/big.bin"],
        &big_err,
    );
    finish(&mut owner, &small_err, "the owning put");
    let still_running = joined.try_wait().unwrap().is_none();
    finish(
        &mut joined,
        &big_err,
        "the put that joined the embedded server",
    );
    if !still_running {
        eprintln!(
            "note: the joined put finished before the owner; the hand-over was not exercised"
        );
    }

    let back = work.path().join("back.bin");
    device.get("/big.bin", &back);
    assert!(files_equal(&big, &back));
}
