//! What stays on this device: the default list (editor swap and lock files),
//! `.loftignore` files (gitignore syntax) and the `user.loft.ignore` xattr. Ignored
//! entries work like any others in the mount, never reach the server or the other
//! device, and `loft status` calls them local-only.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use common::{Device, TestServer, wait_for};

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let c_name = CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings; `value` is valid for its length.
    let rc = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name}: {}",
        std::io::Error::last_os_error()
    );
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn ignored_entries_stay_on_this_device() {
    let server = TestServer::start();
    server.add_user("alice");
    let laptop = Device::login(&server, "alice", "laptop");
    let desktop = Device::login(&server, "alice", "desktop");
    let a = laptop.mount(&[]);
    let b = desktop.mount(&[]);

    let project = a.path().join("proj");
    fs::create_dir(&project).unwrap();
    fs::write(project.join(".loftignore"), "build/\n*.log\n!keep.log\n").unwrap();
    a.sync();
    fs::create_dir_all(project.join("build/deep")).unwrap();
    fs::write(project.join("build/deep/out.o"), b"object").unwrap();
    fs::write(project.join("run.log"), b"log").unwrap();
    fs::write(project.join("keep.log"), b"kept log").unwrap();
    fs::write(project.join("main.c"), b"int main(void) { return 0; }\n").unwrap();
    fs::create_dir_all(project.join("target/debug")).unwrap();
    fs::write(project.join("target/debug/app"), b"binary").unwrap();
    fs::create_dir(project.join("node_modules")).unwrap();
    fs::write(project.join("node_modules/x.js"), b"x").unwrap();
    // Editor swap and lock files, by the default list.
    fs::write(project.join(".main.c.swp"), b"swap").unwrap();
    fs::write(project.join("~$report.docx"), b"lock").unwrap();
    fs::write(project.join(".#main.c"), b"lock").unwrap();
    // A file marked by the xattr while it is being written (a new file goes to the
    // server only after its first close).
    let mut secret = fs::File::create(project.join("secret.txt")).unwrap();
    std::io::Write::write_all(&mut secret, b"mine only").unwrap();
    set_xattr(&project.join("secret.txt"), "user.loft.ignore", b"1");
    drop(secret);
    a.sync();

    let synced = [
        ".loftignore",
        "keep.log",
        "main.c",
        "node_modules",
        "target",
    ];
    wait_for(
        "the synced entries on the other device",
        Duration::from_secs(5),
        || (names(&b.path().join("proj")) == synced).then_some(()),
    );
    assert_eq!(
        fs::read(b.path().join("proj/target/debug/app")).unwrap(),
        b"binary"
    );
    // Everything still works locally.
    assert_eq!(
        fs::read(project.join("build/deep/out.o")).unwrap(),
        b"object"
    );
    assert_eq!(names(&project).len(), 11);
    for local in [
        "build",
        "build/deep/out.o",
        "run.log",
        ".main.c.swp",
        "secret.txt",
    ] {
        assert_eq!(
            a.path_status(&format!("proj/{local}"))["state"],
            "local-only",
            "{local}"
        );
    }
    assert_eq!(a.path_status("proj/main.c")["state"], "hydrated");
    // The server never heard of them.
    let listed = laptop.ok(&["ls", "/proj"]);
    for local in [
        "build",
        "run.log",
        ".main.c.swp",
        "~$report.docx",
        "secret.txt",
    ] {
        assert!(
            !listed.contains(local),
            "{local} reached the server: {listed}"
        );
    }

    // Clearing the xattr sends it; a local-only file renamed to a plain name too.
    set_xattr(&project.join("secret.txt"), "user.loft.ignore", b"0");
    fs::rename(project.join("run.log"), project.join("run.txt")).unwrap();
    a.sync();
    wait_for(
        "the published files on the other device",
        Duration::from_secs(5),
        || {
            let names = names(&b.path().join("proj"));
            (names.contains(&"secret.txt".to_string()) && names.contains(&"run.txt".to_string()))
                .then_some(())
        },
    );
    assert_eq!(fs::read(b.path().join("proj/run.txt")).unwrap(), b"log");
    a.unmount();
    b.unmount();
}
