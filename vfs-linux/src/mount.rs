//! Mounting: FUSE options, the session with its worker threads, and the thread that
//! passes the core's cache invalidations to the kernel.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use fuser::{BackgroundSession, Config, INodeNo, MountOption, SessionACL};
use loft_vfs::{KernelNote, Vfs};
use tracing::debug;

use crate::fs::LoftFs;

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// `-o` options as given (`fsname=…`, `allow_other`, `ro`, …).
    pub options: Vec<String>,
    /// Let other users in (root mounts always do, so permission checks apply to all).
    pub allow_other: bool,
    /// Try FUSE passthrough for files whose bytes are all local.
    pub passthrough: bool,
    /// Worker threads answering the kernel.
    pub threads: usize,
}

/// A live mount; unmounts when [`Mounted::unmount`] is called or the directory is
/// unmounted from outside.
pub struct Mounted {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

/// What the `-o` options ask of the kernel's mount and of Loft.
struct Chosen {
    mount_options: Vec<MountOption>,
    allow_other: bool,
    /// POSIX ACLs (`acl`, the default; `noacl` turns them off, as on ext4).
    acls: bool,
}

/// The `-o` options, or why one cannot be honoured.
fn fuse_options(options: &MountOptions) -> io::Result<Chosen> {
    let mut acls = true;
    let mut out = vec![
        MountOption::DefaultPermissions,
        MountOption::FSName("loft".into()),
        MountOption::Subtype("loft".into()),
    ];
    let mut allow_other = options.allow_other;
    for option in options.options.iter().flat_map(|o| o.split(',')) {
        let option = option.trim();
        match option {
            ""
            | "defaults"
            | "_netdev"
            | "auto"
            | "noauto"
            | "user"
            | "users"
            | "nofail"
            | "default_permissions" => {}
            o if o.starts_with("x-") || o.starts_with("comment=") => {}
            "allow_other" => allow_other = true,
            "acl" => acls = true,
            "noacl" => acls = false,
            "ro" => out.push(MountOption::RO),
            "rw" => out.push(MountOption::RW),
            "noexec" => out.push(MountOption::NoExec),
            "exec" => out.push(MountOption::Exec),
            "nosuid" => out.push(MountOption::NoSuid),
            "suid" => out.push(MountOption::Suid),
            "nodev" => out.push(MountOption::NoDev),
            "dev" => out.push(MountOption::Dev),
            "noatime" => out.push(MountOption::NoAtime),
            "atime" => out.push(MountOption::Atime),
            "relatime" | "strictatime" => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "-o {option}: reading a file on a Loft drive does not change its \
                         access time (it behaves as noatime)"
                    ),
                ));
            }
            o if o.starts_with("fsname=") => {
                out.retain(|m| !matches!(m, MountOption::FSName(_)));
                out.push(MountOption::FSName(o["fsname=".len()..].into()));
            }
            o if o.starts_with("subtype=") => {
                out.retain(|m| !matches!(m, MountOption::Subtype(_)));
                out.push(MountOption::Subtype(o["subtype=".len()..].into()));
            }
            o => out.push(MountOption::CUSTOM(o.into())),
        }
    }
    Ok(Chosen {
        mount_options: out,
        allow_other,
        acls,
    })
}

/// Mounts `vfs` at `mountpoint`; returns once the kernel has initialised the mount.
pub fn mount(vfs: Arc<Vfs>, mountpoint: &Path, options: &MountOptions) -> io::Result<Mounted> {
    let chosen = fuse_options(options)?;
    let mut config = Config::default();
    config.mount_options = chosen.mount_options;
    config.acl = if chosen.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(options.threads.max(1));
    config.clone_fd = true;
    let fs = LoftFs::new(vfs.clone(), options.passthrough, chosen.acls);
    let session = fuser::Session::new(fs, mountpoint, &config)?;
    let notifier = session.notifier();
    let (sender, receiver) = mpsc::channel::<KernelNote>();
    vfs.set_kernel_notes(Box::new(move |note| {
        let _ = sender.send(note);
    }));
    std::thread::Builder::new()
        .name("loft-kernel-notes".into())
        .spawn(move || {
            for note in receiver {
                let result = match &note {
                    KernelNote::Inode(ino) => notifier.inval_inode(INodeNo(*ino), 0, 0),
                    KernelNote::Entry { parent, name } => {
                        notifier.inval_entry(INodeNo(*parent), OsStr::from_bytes(name))
                    }
                    KernelNote::Delete {
                        parent,
                        child,
                        name,
                    } => {
                        notifier.delete(INodeNo(*parent), INodeNo(*child), OsStr::from_bytes(name))
                    }
                };
                if let Err(error) = result {
                    debug!(?note, "kernel invalidation: {error}");
                }
            }
        })?;
    let session = session.spawn()?;
    Ok(Mounted {
        session: Some(session),
        mountpoint: mountpoint.to_path_buf(),
    })
}

impl Mounted {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Waits until the file system is unmounted (by [`Mounted::unmount`], `umount` or
    /// `fusermount3 -u`).
    pub fn wait(&mut self) -> io::Result<()> {
        match self.session.take() {
            Some(session) => session.join(),
            None => Ok(()),
        }
    }

    /// Unmounts; fails with EBUSY while files are open on it.
    pub fn unmount(mountpoint: &Path) -> io::Result<()> {
        unmount_path(mountpoint)
    }
}

/// Unmounts `mountpoint`: umount(2) as root, `fusermount3 -u` otherwise.
pub fn unmount_path(mountpoint: &Path) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `path` is a valid NUL-terminated string.
        if unsafe { libc::umount2(path.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(());
    }
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(mountpoint)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("fusermount3 -u failed: {status}")))
    }
}
