//! Shared harness for the end-to-end tests: a real `loft-server` process on loopback with
//! a temporary data directory, devices that drive the real `loft` binary with their own
//! `LOFT_HOME`, and a raw gRPC client for what the CLI cannot express.
//!
//! Nothing here sleeps to "hope" something happened: every wait polls a condition
//! against a generous deadline.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod differential;
pub mod mount;
pub mod nobody;

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use loft_remote::RemoteClient;
use loft_remote::client::{ConnectOptions, GrpcClient, ServerAddress};
use loft_remote::content::Manifest;
use loft_remote::transfer::{UploadStats, upload};
use rand::{RngCore, SeedableRng};
use tempfile::TempDir;

/// Deadline for anything that should happen "soon" (a server starting, a token expiring).
pub const DEADLINE: Duration = Duration::from_secs(30);
/// Deadline for one `loft` command (large transfers on a loaded debug build).
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(180);
pub const MIB: usize = 1024 * 1024;

// ------------------------------------------------------------------ binaries

/// The `loft` binary under test.
pub fn loft_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loft"))
}

/// The `loft-server` binary, built beside `loft`.
///
/// `cargo test -p loft-cli` builds the server *library* into `loft` but not the
/// `loft-server` binary, so the binary is (re)built here, once per test binary, when it
/// is missing or older than the server's or the protocol's sources.
pub fn server_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let path = Path::new(env!("CARGO_BIN_EXE_loft")).with_file_name("loft-server");
            let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            let stale = match built {
                None => true,
                Some(built) => newest_server_source().is_some_and(|source| source > built),
            };
            if stale {
                eprintln!("building loft-server (missing or older than its sources)");
                // The profile the tests were built with: `target/<profile>/loft`.
                let release = path.parent().is_some_and(|dir| dir.ends_with("release"));
                let mut cargo = Command::new(env!("CARGO"));
                // Not the variables cargo and nextest set for this test: build scripts
                // that watch the environment (ring's, through cc) would see a change,
                // and the next plain build would compile everything above them again.
                for (name, _) in std::env::vars_os() {
                    let name = name.to_string_lossy();
                    let ours = matches!(
                        name.as_ref(),
                        "CARGO_HOME" | "CARGO_INCREMENTAL" | "CARGO_TARGET_DIR"
                    );
                    if !ours
                        && (name.starts_with("CARGO_")
                            || name.starts_with("NEXTEST")
                            || name.starts_with("__NEXTEST")
                            || name.starts_with("RUST_TEST")
                            || name == "OUT_DIR")
                    {
                        cargo.env_remove(name.as_ref());
                    }
                }
                // The arguments of scripts/test-all: `--bin loft-server` alone would
                // resolve other features and build the server a second way.
                cargo
                    .current_dir(workspace_root())
                    .args(["build", "--workspace", "--all-targets"]);
                if release {
                    cargo.arg("--release");
                }
                let status = cargo.status().expect("running cargo build");
                assert!(status.success(), "cargo build (for loft-server) failed");
            }
            assert!(
                path.exists(),
                "{} is missing after the build",
                path.display()
            );
            path
        })
        .clone()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The newest modification time among the sources the server binary is built from.
fn newest_server_source() -> Option<std::time::SystemTime> {
    fn walk(path: &Path, newest: &mut Option<std::time::SystemTime>) {
        let Ok(metadata) = std::fs::metadata(path) else {
            return;
        };
        if metadata.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&entry.path(), newest);
            }
        } else if let Ok(modified) = metadata.modified() {
            *newest = (*newest).max(Some(modified));
        }
    }
    let root = workspace_root();
    let mut newest = None;
    // Sources only: a manifest edit that leaves the binary as it was (a new bench
    // target) must not send every test binary to cargo for a build of the server with
    // the features `--bin` alone resolves.
    for part in [
        "server/src",
        "remote/src",
        "remote/proto",
        "remote/build.rs",
    ] {
        walk(&root.join(part), &mut newest);
    }
    newest
}

// ------------------------------------------------------------------ waiting

/// Polls `probe` until it yields a value; panics with `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The text of a server gateway's `/metrics`.
pub fn metrics(gateway: SocketAddr) -> String {
    let url = format!("http://{gateway}/metrics");
    reqwest::blocking::get(&url)
        .and_then(|r| r.text())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Waits for `child` to exit; `None` if it is still running after `deadline`.
pub fn wait_exit(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if start.elapsed() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a command to completion with a deadline (the child is killed and the test
/// fails if it hangs), capturing stdout and stderr.
pub fn run_with_deadline(mut command: Command, deadline: Duration) -> Output {
    let description = format!("{command:?}");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {description}: {e}"));
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let status = match wait_exit(&mut child, deadline) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{description} did not finish within {deadline:?}");
        }
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Sends `signal` to a process we started.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on the id of a child this test spawned and has not reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}) failed: {}",
        std::io::Error::last_os_error()
    );
}

// ------------------------------------------------------------------ files

/// Writes `size` bytes from a seeded RNG to `path`.
pub fn random_file(path: &Path, size: usize, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(path).expect("creating random file"));
    let mut block = vec![0u8; MIB];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len());
        rng.fill_bytes(&mut block[..n]);
        file.write_all(&block[..n]).expect("writing random file");
        left -= n;
    }
    file.flush().expect("flushing random file");
}

/// `size` bytes from a seeded RNG, in memory.
pub fn random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut bytes = vec![0u8; size];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// True if the two files hold the same bytes.
pub fn files_equal(a: &Path, b: &Path) -> bool {
    let (fa, fb) = (
        std::fs::File::open(a).expect("open a"),
        std::fs::File::open(b).expect("open b"),
    );
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ra, mut rb) = (BufReader::new(fa), BufReader::new(fb));
    let (mut ba, mut bb) = (vec![0u8; MIB], vec![0u8; MIB]);
    loop {
        let n = read_full(&mut ra, &mut ba);
        let m = read_full(&mut rb, &mut bb);
        if n != m || ba[..n] != bb[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).expect("read") {
            0 => break,
            n => filled += n,
        }
    }
    filled
}

/// A command's stdout and stderr, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The password `TestServer::add_user` gives `user`.
pub fn password_of(user: &str) -> String {
    format!("secret of {user}")
}

// ------------------------------------------------------------------ server

/// With `LOFT_TEST_CLI_SCALE_OUT=1` and the services of `scripts/with-scale-out-services`
/// (`LOFT_TEST_PG_URL`, `LOFT_TEST_S3_BUCKET`, `AWS_ENDPOINT_URL`…), each server gets a
/// fresh PostgreSQL database and S3 prefix instead of its data directory's stores.
fn scale_out_stores() -> Vec<String> {
    let (Some(_), Ok(url), Ok(bucket)) = (
        std::env::var_os("LOFT_TEST_CLI_SCALE_OUT"),
        std::env::var("LOFT_TEST_PG_URL"),
        std::env::var("LOFT_TEST_S3_BUCKET"),
    ) else {
        return Vec::new();
    };
    let name = format!(
        "loft_cli_{}_{:016x}",
        std::process::id(),
        rand::random::<u64>()
    );
    let psql = std::env::var("LOFT_TEST_PG_BIN").map_or("psql".into(), |bin| format!("{bin}/psql"));
    let status = Command::new(psql)
        .args([url.as_str(), "-qc", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql");
    assert!(status.success(), "CREATE DATABASE {name}");
    let server = url
        .rsplit_once('/')
        .expect("LOFT_TEST_PG_URL ends in /DATABASE")
        .0;
    vec![
        "--meta".into(),
        format!("{server}/{name}"),
        "--chunks".into(),
        format!("s3://{bucket}/{name}"),
    ]
}

/// A `loft-server serve` process on 127.0.0.1 with its own data directory.
pub struct TestServer {
    pub dir: TempDir,
    pub data: PathBuf,
    pub addr: SocketAddr,
    extra: Vec<String>,
    /// `--meta`/`--chunks` when the tests run against PostgreSQL + S3.
    stores: Vec<String>,
    child: Option<Child>,
    starts: u32,
}

impl TestServer {
    /// Starts a server on a free port with a fresh data directory.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Like [`TestServer::start`], with extra `serve` arguments (e.g. `--token-ttl 2s`).
    pub fn start_with(extra: &[&str]) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("loft-server-")
            .tempdir()
            .expect("tempdir");
        let data = dir.path().join("data");
        let mut server = TestServer {
            data,
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            stores: scale_out_stores(),
            child: None,
            starts: 0,
        };
        server.launch("127.0.0.1:0");
        server
    }

    /// A server with its HTTP gateway (links, `/healthz`, `/metrics`) on a free port;
    /// returns it and the gateway's address.
    pub fn start_with_gateway(extra: &[&str]) -> (TestServer, SocketAddr) {
        let files = tempfile::tempdir().expect("tempdir");
        let port_file = files.path().join("http-port");
        let port_arg = port_file.to_string_lossy().into_owned();
        let mut args = vec!["--http", "127.0.0.1:0", "--http-port-file", &port_arg];
        args.extend_from_slice(extra);
        let server = TestServer::start_with(&args);
        let text = wait_for("the gateway's port file", DEADLINE, || {
            std::fs::read_to_string(&port_file)
                .ok()
                .filter(|t| t.ends_with('\n'))
        });
        (server, text.trim().parse().expect("gateway address"))
    }

    /// Another server process on this one's stores, as an operator runs several behind
    /// one drive; `None` on the default stores (an embedded SQLite file and chunk
    /// directory belong to one process).
    pub fn beside(&self) -> Option<TestServer> {
        if self.stores.is_empty() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("loft-server-")
            .tempdir()
            .expect("tempdir");
        let mut server = TestServer {
            data: dir.path().join("data"),
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            extra: self.extra.clone(),
            stores: self.stores.clone(),
            child: None,
            starts: 0,
        };
        server.launch("127.0.0.1:0");
        Some(server)
    }

    fn port_file(&self) -> PathBuf {
        self.dir.path().join("port")
    }

    fn launch(&mut self, listen: &str) {
        let port_file = self.port_file();
        let _ = std::fs::remove_file(&port_file);
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.path().join(format!("server-{}.log", self.starts)))
                .expect("log");
        let mut command = Command::new(server_bin());
        command
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .args(&self.stores)
            .args(["--listen", listen])
            .arg("--port-file")
            .arg(&port_file)
            .args(&self.extra)
            .env("LOFT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = command.spawn().expect("spawning loft-server");
        let text = wait_for("the server's port file", DEADLINE, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("loft-server exited early ({status}):\n{}", self.log());
            }
            std::fs::read_to_string(&port_file)
                .ok()
                .filter(|t| t.ends_with('\n'))
        });
        self.addr = text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("port file {text:?}: {e}"));
        assert!(self.addr.ip().is_loopback(), "listening on {}", self.addr);
        self.child = Some(child);
    }

    /// The URL devices log in to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    /// Everything the server logged so far (all runs).
    pub fn log(&self) -> String {
        let mut text = String::new();
        for run in 1..=self.starts {
            let path = self.dir.path().join(format!("server-{run}.log"));
            text.push_str(&format!("--- server run {run}\n"));
            text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        text
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// Creates a user with [`password_of`] as password.
    pub fn add_user(&self, name: &str) {
        let password_file = self.dir.path().join(format!("{name}.password"));
        std::fs::write(&password_file, format!("{}\n", password_of(name))).expect("password file");
        let mut command = Command::new(server_bin());
        command
            .args(["user", "add", name, "--data"])
            .arg(&self.data)
            .args(&self.stores)
            .arg("--password-file")
            .arg(&password_file);
        let output = run_with_deadline(command, DEADLINE);
        assert!(
            output.status.success(),
            "user add {name}: {}",
            describe(&output)
        );
    }

    /// `loft-server user set-quota NAME SIZE` on this server's stores (it may run).
    pub fn set_quota(&self, name: &str, size: &str) {
        let mut command = Command::new(server_bin());
        command
            .args(["user", "set-quota", name, size, "--data"])
            .arg(&self.data)
            .args(&self.stores);
        let output = run_with_deadline(command, DEADLINE);
        assert!(
            output.status.success(),
            "user set-quota {name} {size}: {}",
            describe(&output)
        );
    }

    /// SIGTERM, then waits for the exit; returns how long that took and the status.
    pub fn terminate(&mut self, deadline: Duration) -> (Duration, ExitStatus) {
        let mut child = self.child.take().expect("server not running");
        let start = Instant::now();
        signal(child.id(), libc::SIGTERM);
        let status = wait_exit(&mut child, deadline);
        let took = start.elapsed();
        match status {
            Some(status) => (took, status),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "loft-server did not exit within {deadline:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
        }
    }

    /// SIGKILL: the server dies on the spot.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server not running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping the server");
    }

    /// Starts the (stopped) server again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server before restarting it");
        let listen = format!("127.0.0.1:{}", self.addr.port());
        let previous = self.addr;
        self.launch(&listen);
        assert_eq!(
            self.addr, previous,
            "the server came back on another address"
        );
    }

    /// Hex ids of the chunk objects in the store (temporary files are not counted).
    pub fn chunk_files(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let Ok(fanout) = std::fs::read_dir(self.data.join("chunks")) else {
            return ids;
        };
        for dir in fanout.flatten() {
            let Ok(files) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                    ids.push(name);
                }
            }
        }
        ids.sort();
        ids
    }

    /// The number of chunk objects once it has stopped changing (nothing written for
    /// half a second), e.g. after an upload was cut off.
    pub fn settled_chunk_count(&self) -> usize {
        let mut last = self.chunk_files().len();
        let mut stable_since = Instant::now();
        wait_for("the chunk store to settle", DEADLINE, || {
            let now = self.chunk_files().len();
            if now != last {
                last = now;
                stable_since = Instant::now();
            }
            (stable_since.elapsed() >= Duration::from_millis(500)).then_some(now)
        })
    }

    /// Path of the object that would hold chunk `hex`.
    pub fn chunk_path(&self, hex: &str) -> PathBuf {
        self.data.join("chunks").join(&hex[..2]).join(hex)
    }

    /// A connection to the server's SQLite database (for read-only checks).
    pub fn db(&self) -> rusqlite::Connection {
        let conn =
            rusqlite::Connection::open(self.data.join("meta.sqlite")).expect("opening meta.sqlite");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        conn
    }

    /// Rows in `table`.
    pub fn count(&self, table: &str) -> i64 {
        self.db()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .expect("count")
    }

    /// Row counts of the tables a bad request must not change.
    pub fn snapshot(&self) -> StoreSnapshot {
        StoreSnapshot {
            chunk_files: self.chunk_files(),
            inodes: self.count("inodes"),
            dentries: self.count("dentries"),
            versions: self.count("versions"),
            chunks: self.count("chunks"),
            uploads: self.count("uploads"),
            sessions: self.count("sessions"),
            devices: self.count("devices"),
            journal: self.count("journal"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the server stores, as far as "a bad request changed nothing" is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSnapshot {
    pub chunk_files: Vec<String>,
    pub inodes: i64,
    pub dentries: i64,
    pub versions: i64,
    pub chunks: i64,
    pub uploads: i64,
    pub sessions: i64,
    pub devices: i64,
    pub journal: i64,
}

// ------------------------------------------------------------------ devices

/// One device: its own `LOFT_HOME`, driving the real `loft` binary.
pub struct Device {
    pub home: TempDir,
    pub name: String,
}

impl Device {
    /// A device with an empty `LOFT_HOME` (no server configured: embedded mode).
    pub fn new(name: &str) -> Device {
        let home = tempfile::Builder::new()
            .prefix("loft-home-")
            .tempdir()
            .expect("tempdir");
        Device {
            home,
            name: name.to_string(),
        }
    }

    /// A device signed in to `server` as `user` (password [`password_of`]).
    pub fn login(server: &TestServer, user: &str, name: &str) -> Device {
        let device = Device::new(name);
        let output = device.try_login(server, user, &password_of(user));
        assert!(output.status.success(), "login: {}", describe(&output));
        assert!(device.token_file().exists(), "login wrote no token");
        device
    }

    /// A device signed in as `user` with every server of `servers` configured (one
    /// `--server` each), used in that order.
    pub fn login_any(servers: &[&TestServer], user: &str, name: &str) -> Device {
        let device = Device::new(name);
        let urls: Vec<String> = servers.iter().map(|server| server.url()).collect();
        let output = device.try_login_to(&urls, user, &password_of(user));
        assert!(output.status.success(), "login: {}", describe(&output));
        device
    }

    /// Runs `loft login` with `password`; returns its output whatever happened.
    pub fn try_login(&self, server: &TestServer, user: &str, password: &str) -> Output {
        self.try_login_to(&[server.url()], user, password)
    }

    fn try_login_to(&self, urls: &[String], user: &str, password: &str) -> Output {
        let password_file = self.home.path().join("password.txt");
        std::fs::write(&password_file, format!("{password}\n")).expect("password file");
        let password_arg = password_file.to_string_lossy().into_owned();
        let mut args = vec!["login"];
        for url in urls {
            args.extend(["--server", url.as_str()]);
        }
        args.extend([
            "--user",
            user,
            "--password-file",
            &password_arg,
            "--device",
            &self.name,
        ]);
        let output = self.run(&args);
        let _ = std::fs::remove_file(&password_file);
        output
    }

    pub fn path(&self) -> &Path {
        self.home.path()
    }

    pub fn token_file(&self) -> PathBuf {
        self.home.path().join("token")
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.token_file())
            .expect("reading the token")
            .trim()
            .to_string()
    }

    /// `loft ARGS` with this device's `LOFT_HOME`, spawned (for concurrent runs).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(loft_bin());
        command
            .args(args)
            .env("LOFT_HOME", self.home.path())
            .env_remove("LOFT_LOG");
        // `LOFT_TEST_LOG=FILTER` gives the mounts a log filter, to debug a failing test.
        if let Ok(filter) = std::env::var("LOFT_TEST_LOG") {
            command.env("LOFT_LOG", filter);
        }
        command
    }

    /// `loft ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_deadline(self.command(args), COMMAND_DEADLINE)
    }

    /// `loft ARGS`, which must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "loft {args:?} failed: {}",
            describe(&output)
        );
        String::from_utf8(output.stdout).expect("utf-8 stdout")
    }

    /// `loft ARGS` (which must succeed and print JSON), parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let stdout = self.ok(args);
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("loft {args:?} printed no JSON ({e}): {stdout}"))
    }

    /// `loft ARGS`, which must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "loft {args:?} should have failed: {}",
            describe(&output)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// `loft put LOCAL REMOTE --json`, parsed.
    pub fn put(&self, local: &Path, remote: &str) -> PutStats {
        let local = local.to_string_lossy().into_owned();
        PutStats::from_json(&self.json(&["put", &local, remote, "--json"]))
    }

    /// `loft get REMOTE LOCAL --json`, parsed as (bytes, bytes_downloaded).
    pub fn get(&self, remote: &str, local: &Path) -> (u64, u64) {
        let local = local.to_string_lossy().into_owned();
        let value = self.json(&["get", remote, &local, "--json"]);
        (
            value["bytes"].as_u64().expect("bytes"),
            value["bytes_downloaded"]
                .as_u64()
                .expect("bytes_downloaded"),
        )
    }

    /// A raw gRPC client on this device's session.
    pub fn client(&self, server: &TestServer) -> Arc<GrpcClient> {
        let client = raw_client(server);
        client.set_token(Some(self.token()));
        client
    }
}

/// What `loft put --json` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutStats {
    pub bytes: u64,
    pub bytes_uploaded: u64,
    pub chunks: u64,
    pub chunks_uploaded: u64,
}

impl PutStats {
    pub fn from_json(value: &serde_json::Value) -> PutStats {
        let field = |name: &str| {
            value[name]
                .as_u64()
                .unwrap_or_else(|| panic!("{name} missing in {value}"))
        };
        PutStats {
            bytes: field("bytes"),
            bytes_uploaded: field("bytes_uploaded"),
            chunks: field("chunks"),
            chunks_uploaded: field("chunks_uploaded"),
        }
    }
}

// ------------------------------------------------------------------ raw client

/// An unauthenticated gRPC client to `server` (must be created inside a tokio runtime).
pub fn raw_client(server: &TestServer) -> Arc<GrpcClient> {
    let address: ServerAddress = server.url().parse().expect("server address");
    Arc::new(GrpcClient::connect(&address, &ConnectOptions::default()).expect("client"))
}

/// A client signed in as `user` from a device called `device`.
pub async fn login_client(
    server: &TestServer,
    user: &str,
    device: &str,
) -> (Arc<GrpcClient>, loft_remote::proto::Session) {
    let client = raw_client(server);
    let reply = client
        .login(user, &password_of(user), device)
        .await
        .expect("raw login");
    (client, reply.session.expect("session in login reply"))
}

/// Uploads `data` with the client library's pipeline; returns its manifest and stats.
pub async fn upload_bytes(client: Arc<GrpcClient>, data: Vec<u8>) -> (Manifest, UploadStats) {
    let client: Arc<dyn RemoteClient> = client;
    upload(client, std::io::Cursor::new(data), Arc::new(|_| {}))
        .await
        .expect("upload")
}

/// Creates an empty regular file `name` in `parent` through the raw client.
pub async fn new_file(client: &GrpcClient, parent: u64, name: &[u8]) -> loft_remote::proto::Node {
    client
        .create(loft_remote::proto::CreateRequest {
            parent,
            name: name.to_vec().into(),
            kind: loft_remote::proto::NodeKind::File as i32,
            mode: 0o644,
            exclusive: true,
            ..Default::default()
        })
        .await
        .expect("create")
}
