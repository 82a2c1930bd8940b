//! `loft mount` without `--foreground`: start the mount process detached (its own
//! session, stdin and stdout on /dev/null, stderr into the log), then wait for it to
//! say the mount is ready or why it failed.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::home::LoftHome;

/// The descriptor the mount process reports readiness on.
pub const READY_FD: i32 = 3;
pub const READY_ENV: &str = "LOFT_MOUNT_READY_FD";

/// Runs `args` (a `loft mount … --foreground` command line) in the background.
pub fn spawn_and_wait(home: &LoftHome, args: &[std::ffi::OsString]) -> Result<String> {
    home.create()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.mount_log())
        .with_context(|| format!("opening {}", home.mount_log().display()))?;
    let (mut reader, writer) = std::io::pipe()?;
    let writer_fd = writer.as_raw_fd();
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(args)
        .env(READY_ENV, READY_FD.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if std::env::var_os("LOFT_LOG").is_none() {
        // When its session ends, fuser unmounts once more a drive that `loft
        // unmount`, umount or fusermount3 has unmounted already, and warns each time
        // that it could not; those warnings are left out, its errors still show.
        command.env("LOFT_LOG", "info,fuser::mnt=error");
    }
    // SAFETY: between fork and exec this only calls async-signal-safe functions
    // (setsid, dup2) on descriptors that exist.
    unsafe {
        command.pre_exec(move || {
            libc::setsid();
            if libc::dup2(writer_fd, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().context("starting the mount process")?;
    drop(writer);
    let mut message = String::new();
    reader.read_to_string(&mut message)?;
    let message = message.trim().to_string();
    if let Some(ready) = message.strip_prefix("ok") {
        return Ok(ready.trim().to_string());
    }
    let _ = child.wait();
    if let Some(error) = message.strip_prefix("error:") {
        bail!("{}", error.trim());
    }
    bail!(
        "the mount process exited before the mount was ready; see {}",
        home.mount_log().display()
    )
}

/// Tells the waiting `loft mount` how it went (no-op when run in the foreground).
pub fn report(result: &Result<String>) {
    let Some(fd) = std::env::var(READY_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    let text = match result {
        Ok(note) => format!("ok {note}\n"),
        Err(error) => format!("error: {error:#}\n"),
    };
    // SAFETY: `fd` was handed to this process for this one message; it is written
    // once and closed.
    unsafe {
        libc::write(fd, text.as_ptr().cast(), text.len());
        libc::close(fd);
    }
    // SAFETY: removing a variable this process set up; no other thread reads it yet.
    unsafe { std::env::remove_var(READY_ENV) };
}
