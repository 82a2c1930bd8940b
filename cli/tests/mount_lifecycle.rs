//! How a mount starts and ends: refusals with clear messages (missing directory, a
//! directory mounted twice, a second mount of one LOFT_HOME), recovery from a mount
//! process killed with SIGKILL, coming up offline from the mirror when the server is
//! down and sending the journal once it is back, unmounting with `fusermount3 -u`,
//! `-o fsname=…,ro`, the `mount.fuse.loft` helper behind `mount -t fuse.loft`, a
//! mount by an unprivileged user (through fusermount3), and the priorities of a mount's
//! threads.

mod common;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::mount::{Mount, open_dir};
use common::{
    COMMAND_DEADLINE, DEADLINE, Device, TestServer, describe, loft_bin, run_with_deadline, wait_for,
};
use tempfile::TempDir;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A mount directory `drive` in an open parent that the test keeps (a `Mount` that is
/// killed or unmounted from outside is forgotten, and its directory is reused).
fn mount_dir() -> (TempDir, PathBuf) {
    let parent = open_dir("loft-life-");
    let dir = parent.path().join("drive");
    fs::create_dir(&dir).unwrap();
    (parent, dir)
}

/// `device.mount_at` on a directory the test owns.
fn mount_on<'d>(device: &'d Device, dir: &Path, extra: &[&str]) -> Mount<'d> {
    device.mount_at(open_dir("loft-unused-"), dir.to_path_buf(), extra)
}

/// The fields of `dir`'s line in `mounts` (a /proc/…/mounts file), if it is mounted.
fn mount_entry(mounts: &str, dir: &Path) -> Option<Vec<String>> {
    let wanted = dir.to_string_lossy().replace(' ', "\\040");
    mounts
        .lines()
        .map(|line| line.split(' ').map(str::to_string).collect::<Vec<_>>())
        .find(|fields| fields.get(1) == Some(&wanted))
}

fn proc_mounts() -> String {
    fs::read_to_string("/proc/self/mounts").unwrap()
}

/// True while `pid` runs. A zombie has ended: the mount process is detached, and not
/// every init reaps orphans promptly.
fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks existence.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) == 0 };
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false);
    exists && !zombie
}

fn wait_process_gone(pid: u32) {
    wait_for("the mount process to exit", DEADLINE, || {
        (!pid_alive(pid)).then_some(())
    });
}

/// A device signed in to `server` with a mounted drive holding a small tree that has
/// reached the server.
fn tree(mount: &Mount<'_>) {
    fs::create_dir_all(mount.path().join("docs/old")).unwrap();
    fs::write(mount.path().join("docs/notes.txt"), b"notes\n").unwrap();
    fs::write(mount.path().join("docs/old/2019.txt"), b"twenty nineteen\n").unwrap();
    fs::write(mount.path().join("top.txt"), b"top\n").unwrap();
    let output = mount.device.run(&["sync", "--timeout", "120s"]);
    assert!(
        output.status.success(),
        "sync: {}\nmount log:\n{}",
        describe(&output),
        mount.device.mount_log()
    );
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            names.push(path.strip_prefix(dir).unwrap().display().to_string());
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    names.sort();
    names
}

const TREE: [&str; 5] = [
    "docs",
    "docs/notes.txt",
    "docs/old",
    "docs/old/2019.txt",
    "top.txt",
];

#[test]
fn mounting_a_missing_directory_or_a_file_fails_clearly() {
    let device = Device::new("laptop");
    let parent = open_dir("loft-life-");
    let missing = parent.path().join("nowhere");
    let missing_arg = missing.to_string_lossy().into_owned();
    let error = device.fails(&["mount", &missing_arg]);
    assert!(
        error.contains(&missing_arg) && error.contains("no such directory"),
        "{error}"
    );
    assert!(!missing.exists(), "the mount created the directory");

    let file = parent.path().join("file");
    fs::write(&file, b"x").unwrap();
    let file_arg = file.to_string_lossy().into_owned();
    let error = device.fails(&["mount", &file_arg]);
    assert!(error.contains("not a directory"), "{error}");

    // An option a drive cannot honour is named, with the reason.
    let (_parent, dir) = mount_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let error = device.fails(&["mount", &dir_arg, "-o", "relatime"]);
    assert!(
        error.contains("-o relatime") && error.contains("noatime"),
        "{error}"
    );

    // Nothing is left running: the home can mount for real now.
    let (_parent, dir) = mount_dir();
    let mount = mount_on(&device, &dir, &[]);
    fs::write(mount.path().join("works"), b"yes").unwrap();
    mount.unmount();
}

/// The nice value of each thread of process `pid`, with the thread's name.
fn thread_nices(pid: u32) -> Vec<(String, i32)> {
    let mut threads = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue;
        };
        // pid (name) state ppid … : the name may hold spaces, so fields count from
        // the last ')'; nice is the 19th field, the 17th after the name.
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_string();
        let nice = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        threads.push((name, nice));
    }
    threads
}

/// The nice value of the calling thread.
fn own_nice() -> i32 {
    // SAFETY: getpriority with PRIO_PROCESS and 0 reads the calling thread's value.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

#[test]
fn background_work_runs_below_the_request_threads() {
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let own = own_nice();
    for (extra, lowered) in [(&[][..], 10), (&["--background-nice", "0"][..], 0)] {
        let mount = device.mount(extra);
        // Some uploading, so the runtime has started blocking threads too.
        fs::write(mount.path().join("file"), b"content").unwrap();
        mount.sync();
        let threads = thread_nices(mount.pid());
        let nice_of = |prefix: &str| -> Vec<i32> {
            threads
                .iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(_, nice)| *nice)
                .collect()
        };
        let runtime = nice_of("tokio-rt-worker");
        let requests = nice_of("fuser-");
        assert!(!runtime.is_empty() && !requests.is_empty(), "{threads:?}");
        let background = (own + lowered).min(19);
        assert!(runtime.iter().all(|n| *n == background), "{threads:?}");
        // The kernel's requests, and the mirror's commits they may wait on, keep the
        // process's priority.
        assert!(requests.iter().all(|n| *n == own), "{threads:?}");
        assert!(
            nice_of("mirror-commit").iter().all(|n| *n == own),
            "{threads:?}"
        );
        mount.unmount();
    }
    let error = device.fails(&["mount", "/nonexistent", "--background-nice", "20"]);
    assert!(error.contains("--background-nice"), "{error}");
}

#[test]
fn a_directory_mounts_once_and_a_home_mounts_once() {
    let server = TestServer::start();
    server.add_user("ann");
    let laptop = Device::login(&server, "ann", "laptop");
    let desktop = Device::login(&server, "ann", "desktop");
    let (_parent, dir) = mount_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let mount = mount_on(&laptop, &dir, &[]);
    fs::write(mount.path().join("first"), b"first").unwrap();
    let pid = mount.pid();

    // The same directory again, from another home: already mounted.
    let error = desktop.fails(&["mount", &dir_arg]);
    assert!(
        error.contains(&dir_arg) && error.contains("already mounted"),
        "{error}"
    );

    // The same home on another directory: refused, naming the live mount.
    let (_other_parent, other) = mount_dir();
    let other_arg = other.to_string_lossy().into_owned();
    let error = laptop.fails(&["mount", &other_arg]);
    assert!(
        error.contains("already has a live mount")
            && error.contains(&dir_arg)
            && error.contains(&pid.to_string()),
        "{error}"
    );
    assert!(mount_entry(&proc_mounts(), &other).is_none());

    // The same home on the same directory: refused too.
    let error = laptop.fails(&["mount", &dir_arg]);
    assert!(error.contains(&dir_arg), "{error}");

    // The first mount is untouched.
    assert_eq!(mount.pid(), pid);
    assert_eq!(fs::read(mount.path().join("first")).unwrap(), b"first");
    let entries = proc_mounts()
        .lines()
        .filter(|line| mount_entry(line, &dir).is_some())
        .count();
    assert_eq!(entries, 1, "{}", proc_mounts());
    mount.unmount();
}

#[test]
fn a_killed_mount_is_cleaned_up_by_the_next_mount() {
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let (_parent, dir) = mount_dir();
    let mount = mount_on(&device, &dir, &[]);
    tree(&mount);
    let pid = mount.pid();
    common::signal(pid, libc::SIGKILL);
    wait_process_gone(pid);
    mount.forget();
    // The directory is a dead mount now: the kernel says ENOTCONN, or ECONNABORTED
    // when the connection was torn down with a request in flight.
    let dead = fs::metadata(&dir).unwrap_err().raw_os_error();
    assert!(
        dead == Some(libc::ENOTCONN) || dead == Some(libc::ECONNABORTED),
        "{dead:?}"
    );

    let mount = mount_on(&device, &dir, &[]);
    assert_ne!(mount.pid(), pid);
    assert_eq!(listing(mount.path()), TREE);
    assert_eq!(
        fs::read(mount.path().join("docs/old/2019.txt")).unwrap(),
        b"twenty nineteen\n"
    );
    fs::write(mount.path().join("after"), b"after the crash").unwrap();
    let entries = proc_mounts()
        .lines()
        .filter(|line| mount_entry(line, &dir).is_some())
        .count();
    assert_eq!(entries, 1, "one mount at the directory:\n{}", proc_mounts());
    mount.sync();
    mount.unmount();
    assert!(mount_entry(&proc_mounts(), &dir).is_none());
}

#[test]
fn offline_from_the_mirror_then_the_journal_drains() {
    let mut server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let (_parent, dir) = mount_dir();
    let dir_arg = dir.to_string_lossy().into_owned();
    let mount = mount_on(&device, &dir, &[]);
    tree(&mount);
    mount.unmount();

    server.kill9();
    let output = device.run(&["mount", &dir_arg]);
    assert!(
        output.status.success(),
        "mount with the server down: {}\nlog:\n{}",
        describe(&output),
        device.mount_log()
    );
    let said = stdout(&output);
    assert!(
        said.contains(&dir_arg) && said.contains("offline"),
        "the mount should say it is offline: {said}"
    );
    let mount = Adopted::new(&device, &dir);
    assert_eq!(listing(&mount.path("")), TREE, "the mirror's tree");
    assert_eq!(
        fs::read(mount.path("docs/old/2019.txt")).unwrap(),
        b"twenty nineteen\n"
    );
    assert_eq!(mount.status()["online"], serde_json::json!(false));

    // Changes while offline are kept, and sync says they are not on the server.
    fs::write(mount.path("offline.txt"), b"written offline\n").unwrap();
    fs::create_dir(mount.path("made-offline")).unwrap();
    let output = device.run(&["sync", "--timeout", "2s"]);
    assert!(
        !output.status.success(),
        "sync while offline: {}",
        describe(&output)
    );
    assert!(stderr(&output).contains("offline"), "{}", describe(&output));

    // Unmounting offline says how much is left and still unmounts.
    let said = mount.unmount();
    let pending: u64 = said
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("unmount should say how many changes wait: {said}"));
    assert!(pending >= 1, "{said}");
    assert!(said.contains("queued"), "{said}");
    assert!(mount_entry(&proc_mounts(), &dir).is_none());
    assert!(!dir.join("offline.txt").exists());

    // Back online: the next mount sends the journal.
    server.restart();
    let mount = mount_on(&device, &dir, &[]);
    mount.sync();
    mount.unmount();
    let listed = device.json(&["ls", "/", "--json"]);
    let names: Vec<&str> = listed
        .as_array()
        .expect("ls --json prints a list")
        .iter()
        .map(|entry| entry["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"offline.txt") && names.contains(&"made-offline"),
        "on the server: {names:?}"
    );

    // And from the server alone (a wiped cache), the bytes are right.
    fs::remove_dir_all(device.cache_dir()).unwrap();
    let mount = mount_on(&device, &dir, &[]);
    assert_eq!(
        fs::read(mount.path().join("offline.txt")).unwrap(),
        b"written offline\n"
    );
    assert!(mount.path().join("made-offline").is_dir());
    mount.unmount();
}

#[test]
fn fusermount3_u_ends_the_mount() {
    let device = Device::new("laptop");
    let (_parent, dir) = mount_dir();
    let mount = mount_on(&device, &dir, &[]);
    fs::write(mount.path().join("kept"), b"kept").unwrap();
    let pid = mount.pid();
    let output = run_with_deadline(
        {
            let mut command = Command::new("fusermount3");
            command.arg("-u").arg(&dir);
            command
        },
        COMMAND_DEADLINE,
    );
    assert!(
        output.status.success(),
        "fusermount3 -u: {}",
        describe(&output)
    );
    mount.forget();
    wait_process_gone(pid);
    assert!(mount_entry(&proc_mounts(), &dir).is_none());
    assert!(
        device.run(&["sync"]).status.code() != Some(0),
        "no live mount is left to sync"
    );

    // What was written is there on the next mount.
    let mount = mount_on(&device, &dir, &[]);
    assert_eq!(fs::read(mount.path().join("kept")).unwrap(), b"kept");
    mount.unmount();
}

#[test]
fn fsname_and_ro_options() {
    let device = Device::new("laptop");
    let (_parent, dir) = mount_dir();
    let mount = mount_on(&device, &dir, &[]);
    fs::write(mount.path().join("file"), b"bytes").unwrap();
    fs::create_dir(mount.path().join("dir")).unwrap();
    mount.unmount();

    let mount = mount_on(&device, &dir, &["-o", "fsname=myloft,ro"]);
    let entry = mount_entry(&proc_mounts(), &dir).expect("the mount is in /proc/mounts");
    assert_eq!(entry[0], "myloft", "{entry:?}");
    assert!(entry[2].starts_with("fuse"), "{entry:?}");
    assert!(entry[3].split(',').any(|o| o == "ro"), "{entry:?}");

    let root = mount.path();
    assert_eq!(fs::read(root.join("file")).unwrap(), b"bytes");
    let erofs = |result: io::Result<()>, what: &str| {
        let error = result.expect_err(what);
        assert_eq!(error.raw_os_error(), Some(libc::EROFS), "{what}: {error}");
    };
    erofs(fs::write(root.join("new"), b"x"), "create");
    erofs(
        fs::OpenOptions::new()
            .write(true)
            .open(root.join("file"))
            .map(drop),
        "open for writing",
    );
    erofs(fs::create_dir(root.join("new-dir")), "mkdir");
    erofs(fs::remove_file(root.join("file")), "unlink");
    erofs(fs::remove_dir(root.join("dir")), "rmdir");
    erofs(fs::rename(root.join("file"), root.join("moved")), "rename");
    erofs(
        fs::set_permissions(root.join("file"), fs::Permissions::from_mode(0o600)),
        "chmod",
    );
    assert_eq!(listing(root), ["dir", "file"]);
    mount.unmount();
}

/// Where `mount -t fuse.loft` finds its helper.
const HELPER: &str = "/sbin/mount.fuse.loft";

/// Runs `mount ARGS` so that `mount -t fuse.loft` reaches this build's `loft` as
/// `mount.fuse.loft`. With no helper installed, or a link to a binary that is gone (a
/// removed build), the link is made. When the installed helper is something else that
/// exists (another build, a stand-in), it is left alone: the call runs
/// in a private mount namespace where this build's binary is bind-mounted over it. The
/// mount then lives in that namespace (kept alive by the mount process); the test
/// reaches it through `/proc/PID/root` and `/proc/PID/mounts`, and `loft unmount` works
/// as usual through the control socket. Copies of other FUSE mounts are detached in that
/// namespace first, so it never keeps them alive after their own unmount.
fn mount_with_helper(args: &[&str]) -> Output {
    let helper = Path::new(HELPER);
    if fs::metadata(helper).is_err() {
        // Made beside it and renamed over it, so tests running at once never see it
        // missing.
        let fresh = PathBuf::from(format!("{HELPER}.{}", std::process::id()));
        let _ = fs::remove_file(&fresh);
        std::os::unix::fs::symlink(loft_bin(), &fresh).expect("making the helper link");
        fs::rename(&fresh, helper).expect("installing the helper link");
    }
    let ours = fs::canonicalize(helper).ok() == fs::canonicalize(loft_bin()).ok();
    let mut command = if ours {
        let mut command = Command::new("mount");
        command.args(args);
        command
    } else {
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "sh", "-ec"])
            .arg(
                r#"awk '$3 == "fuse" || $3 ~ /^fuse\./ { print $2 }' /proc/self/mounts |
                   while read -r point; do umount -l "$(printf '%b' "$point")" || true; done
                   mount --bind "$0" "$1"
                   shift
                   exec mount "$@""#,
            )
            .arg(loft_bin())
            .arg(HELPER)
            .args(args);
        command
    };
    command.current_dir("/");
    run_with_deadline(command, COMMAND_DEADLINE)
}

/// A live mount started some other way than `Device::mount` (the helper, or a `loft
/// mount` whose output the test reads itself); unmounted when dropped, so a failed
/// assertion does not leave it behind.
struct Adopted<'d> {
    device: &'d Device,
    dir: PathBuf,
    pid: u32,
}

impl<'d> Adopted<'d> {
    /// The live mount of `device`, which must be at `dir`.
    fn new(device: &'d Device, dir: &Path) -> Adopted<'d> {
        let status = device.json(&["status", "--json"]);
        let pid = status["pid"].as_u64().expect("the mount is live") as u32;
        assert_eq!(
            status["mountpoint"].as_str(),
            Some(dir.to_string_lossy().as_ref()),
            "{status}"
        );
        Adopted {
            device,
            dir: dir.to_path_buf(),
            pid,
        }
    }

    /// `rel` inside the drive, as the mount process sees it (through its mount
    /// namespace, which may be a private one).
    fn path(&self, rel: &str) -> PathBuf {
        let inside = self.dir.join(rel);
        PathBuf::from(format!("/proc/{}/root{}", self.pid, inside.display()))
    }

    /// The mount table of the mount process's namespace.
    fn mounts(&self) -> String {
        fs::read_to_string(format!("/proc/{}/mounts", self.pid)).unwrap()
    }

    fn status(&self) -> serde_json::Value {
        self.device.json(&["status", "--json"])
    }

    /// `loft unmount` (which must succeed, and prints what it says); waits for the
    /// mount process to end.
    fn unmount(mut self) -> String {
        let dir = self.dir.to_string_lossy().into_owned();
        let output = self.device.run(&["unmount", &dir]);
        assert!(output.status.success(), "unmount: {}", describe(&output));
        wait_process_gone(self.pid);
        self.dir = PathBuf::new();
        stdout(&output)
    }
}

impl Drop for Adopted<'_> {
    fn drop(&mut self) {
        if self.dir.as_os_str().is_empty() {
            return;
        }
        let dir = self.dir.to_string_lossy().into_owned();
        if !self.device.run(&["unmount", &dir]).status.success() && pid_alive(self.pid) {
            common::signal(self.pid, libc::SIGTERM);
        }
    }
}

fn helper_mount<'d>(device: &'d Device, dir: &Path, options: Option<&str>) -> Adopted<'d> {
    let home = device.path().to_string_lossy().into_owned();
    let dir_arg = dir.to_string_lossy().into_owned();
    let mut args = vec!["-t", "fuse.loft"];
    if let Some(options) = options {
        args.extend(["-o", options]);
    }
    args.extend([home.as_str(), dir_arg.as_str()]);
    let output = mount_with_helper(&args);
    assert!(
        output.status.success(),
        "mount {args:?}: {}\nlog:\n{}",
        describe(&output),
        device.mount_log()
    );
    Adopted::new(device, dir)
}

#[test]
fn mount_t_fuse_loft_runs_the_helper() {
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let (_parent, dir) = mount_dir();

    let mount = helper_mount(&device, &dir, None);
    let entry = mount_entry(&mount.mounts(), &dir).expect("the helper mounted the drive");
    assert!(
        entry[2] == "fuse" || entry[2].starts_with("fuse."),
        "{entry:?}"
    );
    // Named after its source, as mount(8) was given it.
    assert_eq!(Path::new(&entry[0]), device.path(), "{entry:?}");
    fs::write(mount.path("hello.txt"), b"hello from mount(8)\n").unwrap();
    assert_eq!(
        fs::read(mount.path("hello.txt")).unwrap(),
        b"hello from mount(8)\n"
    );
    device.ok(&["sync", "--timeout", "120s"]);
    mount.unmount();

    let listed = device.json(&["ls", "/", "--json"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "hello.txt"),
        "{listed}"
    );
}

/// What an fstab line passes: `defaults` and `_netdev` are for mount(8) and must not
/// reach the kernel (which would refuse them); the rest applies.
#[test]
fn mount_t_fuse_loft_filters_fstab_options() {
    let device = Device::new("laptop");
    let (_parent, dir) = mount_dir();
    let mount = helper_mount(
        &device,
        &dir,
        Some("defaults,_netdev,noatime,fsname=tabbed"),
    );
    let entry = mount_entry(&mount.mounts(), &dir).expect("mounted");
    assert_eq!(entry[0], "tabbed", "{entry:?}");
    let options: Vec<&str> = entry[3].split(',').collect();
    assert!(options.contains(&"rw"), "{entry:?}");
    assert!(options.contains(&"noatime"), "{entry:?}");
    for filtered in ["defaults", "_netdev"] {
        assert!(!options.contains(&filtered), "{entry:?}");
    }
    fs::create_dir(mount.path("dir")).unwrap();
    fs::write(mount.path("dir/file"), b"fstab").unwrap();
    assert_eq!(fs::read(mount.path("dir/file")).unwrap(), b"fstab");
    mount.unmount();
}

/// The helper parses `SOURCE DIR -o OPTS` itself when invoked under its name.
#[test]
fn the_helper_takes_source_dir_and_options() {
    let device = Device::new("laptop");
    let (_parent, dir) = mount_dir();
    let mut command = Command::new(loft_bin());
    command
        .arg0("mount.fuse.loft")
        .arg(device.path())
        .arg(&dir)
        .args(["-o", "rw,fsname=helper,_netdev"])
        .env_remove("LOFT_HOME")
        .env_remove("LOFT_LOG");
    let output = run_with_deadline(command, COMMAND_DEADLINE);
    assert!(
        output.status.success(),
        "mount.fuse.loft: {}\nlog:\n{}",
        describe(&output),
        device.mount_log()
    );
    let mount = Adopted::new(&device, &dir);
    let entry = mount_entry(&proc_mounts(), &dir).expect("mounted");
    assert_eq!(entry[0], "helper", "{entry:?}");
    fs::write(mount.path("via-helper"), b"ok").unwrap();
    mount.unmount();

    // Without a directory it says how it is used.
    let mut command = Command::new(loft_bin());
    command.arg0("mount.fuse.loft").arg(device.path());
    let output = run_with_deadline(command, COMMAND_DEADLINE);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("usage"), "{}", describe(&output));
}

// ------------------------------------------------------------------ an unprivileged user

const NOBODY: &str = "nobody";

/// This build's `loft`, copied into `home` where `nobody` may run it (the build
/// directory may sit under a directory closed to other users). It goes with `home`.
fn nobody_bin(home: &Path) -> PathBuf {
    let bin = home.join("loft-bin");
    if !bin.exists() {
        fs::copy(loft_bin(), &bin).expect("copying loft for nobody");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

/// `loft ARGS` as `nobody`, with `home` as LOFT_HOME.
fn as_nobody(home: &Path, args: &[&str]) -> Output {
    let mut command = Command::new("runuser");
    command
        .args(["-u", NOBODY, "--", "env"])
        .arg(format!("LOFT_HOME={}", home.display()))
        .arg(format!("HOME={}", home.display()))
        .arg(nobody_bin(home))
        .args(args)
        .current_dir("/");
    run_with_deadline(command, COMMAND_DEADLINE)
}

/// A shell script as `nobody`, in `dir` (entered as nobody: root may not enter nobody's
/// mount).
fn sh_as_nobody(dir: &Path, script: &str) -> Output {
    let mut command = Command::new("runuser");
    command
        .args(["-u", NOBODY, "--", "sh", "-ec"])
        .arg(format!("cd \"$0\"\n{script}"))
        .arg(dir)
        .current_dir("/");
    run_with_deadline(command, COMMAND_DEADLINE)
}

fn chown_nobody(path: &Path) {
    let output = run_with_deadline(
        {
            let mut command = Command::new("chown");
            command.args(["-R", "nobody:"]).arg(path);
            command
        },
        COMMAND_DEADLINE,
    );
    assert!(output.status.success(), "chown: {}", describe(&output));
}

/// fusermount3 opens /dev/fuse as the user who mounts (it drops its setuid privilege
/// for that), so a user mount needs the device open to everyone: mode 0666, which the
/// fuse3 package's udev rule gives it on a Debian host. A container's devtmpfs without
/// udev leaves it 0600; it is given the usual mode then.
fn dev_fuse_open_to_all() {
    let dev = Path::new("/dev/fuse");
    let mode = fs::metadata(dev).expect("/dev/fuse").permissions().mode();
    if mode & 0o666 != 0o666 {
        eprintln!("/dev/fuse is {mode:o}; giving it the usual 0666 so users can mount");
        fs::set_permissions(dev, fs::Permissions::from_mode(0o666)).expect("chmod /dev/fuse");
    }
}

/// Unmounts nobody's drive if the test fails half-way.
struct NobodyMount {
    home: PathBuf,
    dir: PathBuf,
    mounted: bool,
}

impl Drop for NobodyMount {
    fn drop(&mut self) {
        if self.mounted {
            let dir = self.dir.to_string_lossy().into_owned();
            let _ = as_nobody(&self.home, &["unmount", &dir]);
        }
    }
}

#[test]
fn an_unprivileged_user_mounts_and_uses_the_drive() {
    dev_fuse_open_to_all();
    let home = open_dir("loft-nobody-home-");
    chown_nobody(home.path());
    let parent = open_dir("loft-nobody-mnt-");
    let dir = parent.path().join("drive");
    fs::create_dir(&dir).unwrap();
    chown_nobody(&dir);
    let dir_arg = dir.to_string_lossy().into_owned();

    let output = as_nobody(home.path(), &["mount", &dir_arg]);
    let log = || fs::read_to_string(home.path().join("mount.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "mount as nobody: {}\nlog:\n{}",
        describe(&output),
        log()
    );
    let mut guard = NobodyMount {
        home: home.path().to_path_buf(),
        dir: dir.clone(),
        mounted: true,
    };
    assert!(
        stdout(&output).contains("(online)"),
        "{}",
        describe(&output)
    );
    let entry = mount_entry(&proc_mounts(), &dir).expect("nobody's mount is listed");
    assert!(entry[2].starts_with("fuse"), "{entry:?}");
    assert!(
        entry[3].split(',').any(|o| o == "user_id=65534"),
        "{entry:?}"
    );

    // nobody works in the drive.
    let output = sh_as_nobody(
        &dir,
        "echo hello > a.txt
         mkdir -p docs/deep
         cat a.txt > docs/deep/copy.txt
         echo more >> docs/deep/copy.txt
         mv a.txt docs/renamed.txt
         dd if=/dev/urandom of=big.bin bs=64k count=40 status=none
         cp big.bin docs/big-copy.bin
         cmp big.bin docs/big-copy.bin
         rm big.bin
         cat docs/renamed.txt docs/deep/copy.txt
         find . | sort",
    );
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        stdout(&output),
        "hello\nhello\nmore\n.\n./docs\n./docs/big-copy.bin\n./docs/deep\n./docs/deep/copy.txt\n./docs/renamed.txt\n"
    );

    // The drive is private to nobody (no allow_other): even root is turned away.
    let refused = fs::metadata(dir.join("docs")).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EACCES), "{refused}");

    let output = as_nobody(home.path(), &["status", "--json"]);
    assert!(output.status.success(), "{}", describe(&output));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["passthrough"], serde_json::json!(false), "{status}");
    assert_eq!(status["mountpoint"].as_str(), Some(dir_arg.as_str()));
    let pid = status["pid"].as_u64().unwrap() as u32;

    let output = as_nobody(home.path(), &["sync", "--timeout", "120s"]);
    assert!(output.status.success(), "{}", describe(&output));
    let output = as_nobody(home.path(), &["unmount", &dir_arg]);
    assert!(
        output.status.success(),
        "unmount as nobody: {}\nlog:\n{}",
        describe(&output),
        log()
    );
    guard.mounted = false;
    wait_process_gone(pid);
    assert!(mount_entry(&proc_mounts(), &dir).is_none());
    assert!(!dir.join("docs").exists());

    // Mounted again, the drive still holds what nobody wrote.
    let output = as_nobody(home.path(), &["mount", &dir_arg]);
    assert!(
        output.status.success(),
        "{}\nlog:\n{}",
        describe(&output),
        log()
    );
    guard.mounted = true;
    let output = sh_as_nobody(&dir, "cat docs/renamed.txt");
    assert_eq!(stdout(&output), "hello\n", "{}", describe(&output));
    let output = as_nobody(home.path(), &["unmount", &dir_arg]);
    assert!(output.status.success(), "{}", describe(&output));
    guard.mounted = false;
}
