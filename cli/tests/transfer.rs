//! Moving big files through a real server: round trips, deduplication, small edits,
//! and uploads cut off by a dying client or a dying server.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};

use common::*;
use loft_remote::content::chunk_boundaries;

/// Starts `loft put LOCAL REMOTE --json` in the background; its stdout and stderr go
/// to `out.stdout` and `out.stderr`.
fn spawn_put(device: &Device, local: &Path, remote: &str, out: &Path) -> Child {
    let local = local.to_string_lossy().into_owned();
    let mut command = device.command(&["put", &local, remote, "--json"]);
    command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out.with_extension("stdout")).expect("stdout file"))
        .stderr(std::fs::File::create(out.with_extension("stderr")).expect("stderr file"));
    command.spawn().expect("spawning loft put")
}

/// Waits (with a deadline) for a background `loft put` and returns its exit status,
/// stdout and stderr.
fn finish_put(
    put: &mut Child,
    out: &Path,
    deadline: std::time::Duration,
) -> (std::process::ExitStatus, String, String) {
    let status = wait_exit(put, deadline).unwrap_or_else(|| {
        let _ = put.kill();
        let _ = put.wait();
        panic!("loft put did not finish within {deadline:?}")
    });
    let read = |ext: &str| std::fs::read_to_string(out.with_extension(ext)).unwrap_or_default();
    (status, read("stdout"), read("stderr"))
}

/// The number of chunks the content-defined chunker cuts `path` into.
fn chunk_count(path: &Path) -> usize {
    chunk_boundaries(&std::fs::read(path).expect("reading the file")).len()
}

/// Waits until the server stores at least `wanted` chunk objects while `put` still runs.
fn wait_for_partial_upload(server: &TestServer, put: &mut Child, wanted: usize) {
    wait_for(
        "a quarter of the upload to reach the server",
        COMMAND_DEADLINE,
        || {
            if let Some(status) = put.try_wait().expect("try_wait") {
                panic!(
                    "loft put ended ({status}) before it could be interrupted; the test needs a bigger file"
                );
            }
            (server.chunk_files().len() >= wanted).then_some(())
        },
    );
}

#[test]
fn big_file_round_trips_deduplicates_and_sends_only_changed_chunks() {
    let server = TestServer::start();
    server.add_user("alice");
    let device = Device::login(&server, "alice", "laptop");
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("big.bin");
    let size = 100 * MIB;
    random_file(&original, size, 1);

    // A fresh upload sends everything.
    let first = device.put(&original, "/big.bin");
    assert_eq!(first.bytes, size as u64);
    assert_eq!(first.chunks as usize, chunk_count(&original));
    assert_eq!(first.chunks_uploaded, first.chunks, "{first:?}");
    assert!(
        first.chunks >= 25,
        "100 MiB should be many chunks: {first:?}"
    );
    assert_eq!(server.chunk_files().len() as u64, first.chunks);

    // ... and comes back byte for byte.
    let back = work.path().join("back.bin");
    let (bytes, downloaded) = device.get("/big.bin", &back);
    assert_eq!(bytes, size as u64);
    assert!(downloaded > 0);
    assert!(
        files_equal(&original, &back),
        "downloaded bytes differ from the upload"
    );

    // The same bytes under another name: nothing to send.
    let copy = device.put(&original, "/copy of big.bin");
    assert_eq!(copy.bytes, size as u64);
    assert_eq!(copy.bytes_uploaded, 0, "{copy:?}");
    assert_eq!(copy.chunks_uploaded, 0, "{copy:?}");
    assert_eq!(
        server.chunk_files().len() as u64,
        first.chunks,
        "identical content stored twice"
    );

    // One byte flipped in the middle: only the chunk around it changes.
    let mut data = std::fs::read(&original).unwrap();
    data[size / 2] ^= 0xff;
    std::fs::write(&original, &data).unwrap();
    let flipped = device.put(&original, "/big.bin");
    assert_eq!(flipped.bytes, size as u64);
    assert!(
        (1..=2).contains(&flipped.chunks_uploaded),
        "a one-byte change re-sent {} chunks: {flipped:?}",
        flipped.chunks_uploaded
    );

    // One byte inserted at the start: content-defined cuts resynchronise quickly.
    data.insert(0, b'!');
    std::fs::write(&original, &data).unwrap();
    drop(data);
    let shifted = device.put(&original, "/big.bin");
    assert_eq!(shifted.bytes, size as u64 + 1);
    assert!(
        (1..=3).contains(&shifted.chunks_uploaded),
        "a one-byte insertion re-sent {} chunks: {shifted:?}",
        shifted.chunks_uploaded
    );

    // Three versions, newest first.
    let versions = device.json(&["versions", "/big.bin", "--json"]);
    let versions = versions.as_array().expect("versions is an array");
    assert_eq!(versions.len(), 3, "{versions:?}");
    let sizes: Vec<u64> = versions
        .iter()
        .map(|v| v["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![size as u64 + 1, size as u64, size as u64]);
    let ids: Vec<u64> = versions.iter().map(|v| v["id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {ids:?}"
    );
    let times: Vec<&str> = versions
        .iter()
        .map(|v| v["time"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {times:?}"
    );
    assert!(
        versions.iter().all(|v| v["device"] == "laptop"),
        "{versions:?}"
    );
    assert_eq!(versions[0]["current"], true);
    assert!(versions[1..].iter().all(|v| v["current"] == false));

    // The current version is the last one put.
    let (bytes, _) = device.get("/big.bin", &back);
    assert_eq!(bytes, size as u64 + 1);
    assert!(files_equal(&original, &back));
}

#[test]
fn interrupted_upload_resumes_without_resending_stored_chunks() {
    let server = TestServer::start();
    server.add_user("alice");
    let device = Device::login(&server, "alice", "laptop");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("huge.bin");
    random_file(&file, 200 * MIB, 2);
    let total = chunk_count(&file);

    let mut put = spawn_put(&device, &file, "/huge.bin", &work.path().join("put"));
    wait_for_partial_upload(&server, &mut put, total / 4);
    put.kill().expect("SIGKILL loft put");
    put.wait().unwrap();

    let stored = server.settled_chunk_count();
    assert!(
        stored < total,
        "the whole file got through ({stored} of {total} chunks) before the kill"
    );
    assert_eq!(
        server.count("versions"),
        0,
        "an interrupted upload committed a version"
    );

    let recorded = server.count("uploads");
    let again = device.put(&file, "/huge.bin");
    assert_eq!(again.chunks as usize, total);
    assert!(
        again.chunks_uploaded as usize <= total - stored,
        "the resumed upload sent {} chunks although the server already held {stored} of {total} \
         ({recorded} of them recorded as uploaded by alice before the retry)",
        again.chunks_uploaded,
    );

    let back = work.path().join("back.bin");
    device.get("/huge.bin", &back);
    assert!(
        files_equal(&file, &back),
        "downloaded bytes differ from the upload"
    );
}

/// A server with alice, her device and a 200 MiB file whose put was cut off by killing
/// the server once a quarter of the chunks were stored. Returns the running put, the
/// number of chunks in the file and the number the server had recorded as uploaded.
struct CrashedUpload {
    server: TestServer,
    device: Device,
    work: tempfile::TempDir,
    file: std::path::PathBuf,
    put: Child,
    total: usize,
    recorded: usize,
}

impl CrashedUpload {
    fn new(seed: u64) -> CrashedUpload {
        let mut server = TestServer::start();
        server.add_user("alice");
        let device = Device::login(&server, "alice", "laptop");
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("huge.bin");
        random_file(&file, 200 * MIB, seed);
        let total = chunk_count(&file);
        let mut put = spawn_put(&device, &file, "/huge.bin", &work.path().join("put"));
        wait_for_partial_upload(&server, &mut put, total / 4);
        server.kill9();
        // What the server durably took before dying.
        let recorded = server.count("uploads") as usize;
        assert!(
            recorded > 0 && recorded < total,
            "{recorded} of {total} chunks recorded"
        );
        assert!(server.chunk_files().len() >= recorded);
        assert_eq!(server.count("versions"), 0);
        CrashedUpload {
            server,
            device,
            work,
            file,
            put,
            total,
            recorded,
        }
    }

    fn out(&self) -> std::path::PathBuf {
        self.work.path().join("put")
    }

    /// Downloads /huge.bin and compares it with the file put.
    fn check_download(&self) {
        let back = self.work.path().join("back.bin");
        self.device.get("/huge.bin", &back);
        assert!(
            files_equal(&self.file, &back),
            "downloaded bytes differ from the upload"
        );
    }
}

#[test]
fn put_resumes_when_the_server_comes_back() {
    let mut crash = CrashedUpload::new(3);
    crash.server.restart();
    let out = crash.out();
    let (status, stdout, stderr) = finish_put(&mut crash.put, &out, COMMAND_DEADLINE);
    assert!(
        status.success(),
        "loft put did not survive a server restart ({status}):\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stats =
        PutStats::from_json(&serde_json::from_str(stdout.trim()).expect("put --json output"));
    assert_eq!(stats.chunks as usize, crash.total);
    // The attempt after the restart sent only what the server did not hold. (Objects
    // written in the instant before the crash but never recorded may be sent again:
    // the server cannot vouch that this user uploaded them.)
    assert!(
        stats.chunks_uploaded as usize <= crash.total - crash.recorded,
        "the resumed put sent {} chunks although the server had recorded {} of {}",
        stats.chunks_uploaded,
        crash.recorded,
        crash.total
    );
    crash.check_download();
}

#[test]
fn put_fails_clearly_while_the_server_stays_down_and_a_rerun_resumes() {
    let mut crash = CrashedUpload::new(4);
    // No server: the put gives up with a clear message (it retries for a while first).
    let out = crash.out();
    let (status, _, stderr) = finish_put(&mut crash.put, &out, COMMAND_DEADLINE);
    assert!(
        !status.success(),
        "loft put succeeded without a server:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "loft put panicked: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("loft: /huge.bin: "),
        "unclear final error: {stderr:?}"
    );
    assert_eq!(crash.server.count("versions"), 0);

    // The server comes back on the same port; a new put sends only what is missing.
    crash.server.restart();
    let again = crash.device.put(&crash.file, "/huge.bin");
    assert_eq!(again.chunks as usize, crash.total);
    assert!(
        again.chunks_uploaded as usize <= crash.total - crash.recorded,
        "after the restart the put sent {} chunks although the server had recorded {} of {}",
        again.chunks_uploaded,
        crash.recorded,
        crash.total
    );
    crash.check_download();
}
