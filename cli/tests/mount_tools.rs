//! The mount with ordinary tools on it, against a real server on loopback: a tree
//! survives unmount and a wiped cache, and git, tar, make, SQLite (WAL) and rsync
//! work inside the mount.

mod common;

use std::path::Path;
use std::process::Command;

use common::{COMMAND_DEADLINE, Device, TestServer, describe, random_file, run_with_deadline};

fn sh(dir: &Path, script: &str) -> String {
    let mut command = Command::new("sh");
    command.arg("-ec").arg(script).current_dir(dir);
    let output = run_with_deadline(command, COMMAND_DEADLINE);
    assert!(output.status.success(), "{script}: {}", describe(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn diff_r(a: &Path, b: &Path) {
    let output = run_with_deadline(
        {
            let mut c = Command::new("diff");
            c.arg("-r").arg(a).arg(b);
            c
        },
        COMMAND_DEADLINE,
    );
    assert!(output.status.success(), "diff -r: {}", describe(&output));
}

/// A small tree with text, binary, empty and nested files.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::write(root.join("readme.txt"), "hello loft\n").unwrap();
    std::fs::write(root.join("empty"), "").unwrap();
    std::fs::write(root.join("a/b/c/deep.txt"), "deep\n".repeat(1000)).unwrap();
    random_file(&root.join("a/big.bin"), 9 * 1024 * 1024 + 17, 7);
    random_file(&root.join("a/b/small.bin"), 4097, 8);
}

#[test]
fn a_tree_survives_unmount_and_a_wiped_cache() {
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let source = tempfile::tempdir().unwrap();
    make_tree(source.path());
    let mount = device.mount(&[]);
    sh(
        mount.path(),
        &format!(
            "cp -a {}/. tree/ 2>/dev/null || (mkdir tree && cp -a {}/. tree/)",
            source.path().display(),
            source.path().display()
        ),
    );
    diff_r(source.path(), &mount.path().join("tree"));
    mount.unmount();
    std::fs::remove_dir_all(device.cache_dir()).unwrap();
    let mount = device.mount(&[]);
    diff_r(source.path(), &mount.path().join("tree"));
    mount.unmount();
}

/// rsync writes each file under a temporary name, closes it, sets its times and
/// renames it. The kernel sends the handle's release on its own time, and the time
/// read from the file's body then must not undo the one just set.
#[test]
fn times_rsync_sets_right_after_close_are_kept() {
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let source = tempfile::tempdir().unwrap();
    std::fs::create_dir(source.path().join("a")).unwrap();
    for i in 0..100 {
        std::fs::write(source.path().join(format!("a/f{i}")), format!("file {i}")).unwrap();
    }
    sh(
        source.path(),
        "find . -exec touch -h -d '2021-02-03 04:05:06.789' {} +",
    );
    let mount = device.mount(&[]);
    let copies = 5;
    for copy in 0..copies {
        sh(
            mount.path(),
            &format!("rsync -a {}/ copy{copy}/", source.path().display()),
        );
    }
    let wrong = |p: &Path| {
        sh(p, "find . -mindepth 1 -printf '%p %T@\\n' | sort")
            .lines()
            .filter(|line| !line.ends_with(" 1612325106.7890000000"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        wrong(mount.path()),
        Vec::<String>::new(),
        "times in the mount"
    );
    mount.sync();
    mount.unmount();
    std::fs::remove_dir_all(device.cache_dir()).unwrap();
    let mount = device.mount(&[]);
    assert_eq!(
        wrong(mount.path()),
        Vec::<String>::new(),
        "times on the server"
    );
    mount.unmount();
}

/// `tar x` sets each file's and folder's times and mode after writing it (a
/// folder's after its files). The sync engine sends folders and attribute changes
/// ahead of the new files it gathers; what the server ends up with is still what
/// tar set.
#[test]
fn an_unpacked_tarball_keeps_its_times_and_modes_on_the_server() {
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let source = tempfile::tempdir().unwrap();
    for d in 0..12 {
        let dir = source.path().join(format!("d{d}/sub"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..15 {
            std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f}\n")).unwrap();
            std::fs::write(dir.join(format!("../g{f}")), format!("{d}: {f}\n")).unwrap();
        }
    }
    sh(
        source.path(),
        "find . -mindepth 1 -type d -exec chmod 750 {} + && \
         find . -type f -exec chmod 640 {} + && \
         find . -mindepth 1 -exec touch -h -d '2021-02-03 04:05:06' {} +",
    );
    let listing = |p: &Path| sh(p, "find . -mindepth 1 -printf '%p %m %T@\n' | sort");
    let want = listing(source.path());
    let tarball = source.path().join("../loft-times.tar");
    sh(source.path(), &format!("tar -cf {} .", tarball.display()));
    let mount = device.mount(&[]);
    sh(
        mount.path(),
        &format!("mkdir x && tar -xf {} -C x", tarball.display()),
    );
    let _ = std::fs::remove_file(&tarball);
    assert_eq!(listing(&mount.path().join("x")), want, "in the mount");
    mount.sync();
    mount.unmount();
    std::fs::remove_dir_all(device.cache_dir()).unwrap();
    let mount = device.mount(&[]);
    assert_eq!(listing(&mount.path().join("x")), want, "on the server");
    mount.unmount();
}

#[test]
fn git_tar_make_sqlite_and_rsync_work_in_the_mount() {
    let server = TestServer::start();
    server.add_user("ann");
    let device = Device::login(&server, "ann", "laptop");
    let mount = device.mount(&[]);
    let dir = mount.path();

    // git
    sh(
        dir,
        "mkdir repo && cd repo && git init -q && git config user.email a@b && \
         git config user.name ann && echo one > f && git add f && git commit -qm one && \
         echo two >> f && git commit -qam two && git status --short && git log --oneline | wc -l",
    );
    let log = sh(&dir.join("repo"), "git log --oneline | wc -l");
    assert_eq!(log.trim(), "2");
    let status = sh(&dir.join("repo"), "git status --porcelain");
    assert!(status.trim().is_empty(), "git status: {status}");
    sh(&dir.join("repo"), "git fsck --no-progress");

    // tar
    let source = tempfile::tempdir().unwrap();
    make_tree(source.path());
    let tarball = source.path().join("../loft-tools.tar");
    sh(source.path(), &format!("tar -cf {} .", tarball.display()));
    sh(
        dir,
        &format!("mkdir untar && tar -xf {} -C untar", tarball.display()),
    );
    diff_r(source.path(), &dir.join("untar"));
    let _ = std::fs::remove_file(&tarball);

    // make
    sh(
        dir,
        "mkdir cproj && cd cproj && printf '#include <stdio.h>\\nint main(void){puts(\"built in loft\");return 0;}\\n' > hello.c && \
         printf 'hello: hello.c\\n\\tcc -o hello hello.c\\n' > Makefile && make -s && ./hello > out.txt",
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("cproj/out.txt")).unwrap(),
        "built in loft\n"
    );

    // SQLite in WAL mode
    {
        let db = rusqlite::Connection::open(dir.join("data.db")).unwrap();
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
        db.execute_batch("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
            .unwrap();
        let tx = db.unchecked_transaction().unwrap();
        for k in 0..2000 {
            tx.execute(
                "INSERT INTO t VALUES (?1, ?2)",
                rusqlite::params![k, format!("value {k}")],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let count: i64 = db
            .query_row("SELECT COUNT(*) FROM t WHERE v LIKE 'value 1%'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(count, 1111);
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    // rsync in and back out. Old times: rsync skips setting a time that matches to
    // the second, so a freshly made tree would not show whether times survive.
    sh(
        source.path(),
        "find . -exec touch -h -d '2021-02-03 04:05:06.789' {} +",
    );
    let out = tempfile::tempdir().unwrap();
    sh(
        dir,
        &format!("rsync -a {}/ synced/", source.path().display()),
    );
    sh(dir, &format!("rsync -a synced/ {}/", out.path().display()));
    diff_r(source.path(), out.path());
    let listing = |p: &Path| sh(p, "find . -printf '%P %m %s %T@\\n' | sort");
    assert_eq!(
        listing(source.path()),
        listing(out.path()),
        "rsync -a kept modes, sizes and times; in the mount:\n{}",
        listing(&dir.join("synced"))
    );

    mount.sync();
    mount.unmount();
}
