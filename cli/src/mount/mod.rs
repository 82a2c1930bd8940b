//! `loft mount`: the mount process. It holds this home's mount lock, runs the core
//! (`loft_vfs`) with its sync engine, serves FUSE through `loft_vfs_linux`, answers
//! the control socket, and on unmount sends what is queued before it exits.

pub mod control;
pub mod daemon;
pub mod record;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use loft_vfs::{Vfs, VfsConfig};
use loft_vfs_linux::MountOptions;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::embedded::try_lock;
use crate::home::LoftHome;
use crate::session::{Session, device_name};
use record::{DirState, MountRecord, dir_state};

/// How many nice levels below the request threads a mount's runtime runs by default:
/// a burst of requests (`tar x`, a build) is answered first and uploaded when the CPU
/// is free, in larger groups; measured on two cores, `tar x` of `/usr/include` took
/// 3.30–3.84 s against 3.88–4.90 s at the same priority, and was on the server as
/// soon.
pub const BACKGROUND_NICE: i32 = 10;

/// What `loft mount` was asked for.
#[derive(Clone, Debug)]
pub struct MountArgs {
    pub dir: PathBuf,
    pub server: Option<String>,
    pub cache_size: u64,
    pub disk_reserve: u64,
    pub upload_debounce: Duration,
    pub background_nice: i32,
    pub options: Vec<String>,
    pub foreground: bool,
    /// Print nothing on success.
    pub quiet: bool,
}

impl MountArgs {
    /// The command line that runs this mount in the foreground.
    fn foreground_argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec!["mount".into(), self.dir.clone().into()];
        argv.push("--foreground".into());
        argv.push(format!("--cache-size={}", self.cache_size).into());
        argv.push(format!("--disk-reserve={}", self.disk_reserve).into());
        argv.push(format!("--upload-debounce={}ms", self.upload_debounce.as_millis()).into());
        argv.push(format!("--background-nice={}", self.background_nice).into());
        if let Some(server) = &self.server {
            argv.push(format!("--server={server}").into());
        }
        for option in &self.options {
            argv.push("-o".into());
            argv.push(option.into());
        }
        argv
    }
}

/// `loft mount`.
pub async fn mount(home: LoftHome, args: MountArgs) -> Result<()> {
    if !args.foreground {
        let dir = absolute(&args.dir)?;
        let args = MountArgs { dir, ..args };
        let note = daemon::spawn_and_wait(&home, &args.foreground_argv())?;
        if !args.quiet {
            println!("mounted {} ({note})", args.dir.display());
        }
        return Ok(());
    }
    let prepared = prepare(&home, &args).await;
    let mounted = match prepared {
        Ok(mounted) => mounted,
        Err(error) => {
            daemon::report(&Err(anyhow!("{error:#}")));
            return Err(error);
        }
    };
    serve(home, mounted).await
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    if dir.is_absolute() {
        Ok(dir.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(dir))
    }
}

struct Live {
    _lock: std::fs::File,
    session: Session,
    vfs: Arc<Vfs>,
    /// The sync engine and the change feed.
    engines: Vec<tokio::task::JoinHandle<()>>,
    mounted: loft_vfs_linux::Mounted,
    mountpoint: PathBuf,
    listener: UnixListener,
}

/// Lazily detaches a dead FUSE mount (its process is gone).
fn detach(dir: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
        // SAFETY: `path` is NUL-terminated.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        return Ok(());
    }
    let status = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(dir)
        .status()?;
    if !status.success() {
        bail!("fusermount3 -uz {} failed", dir.display());
    }
    Ok(())
}

/// How long a new mount waits for an unmounted process of the same home to finish
/// sending its queue and exit.
const LETTING_GO: Duration = Duration::from_secs(60);

/// Takes this home's mount lock. A live mount is an error; a process that was
/// unmounted and is still letting go is waited for.
async fn acquire_mount_lock(home: &LoftHome) -> Result<std::fs::File> {
    let deadline = tokio::time::Instant::now() + LETTING_GO;
    loop {
        if let Some(lock) = try_lock(&home.mount_lock())? {
            return Ok(lock);
        }
        if let Some(live) = MountRecord::live(home) {
            bail!(
                "this LOFT_HOME already has a live mount at {} (pid {})",
                live.mountpoint.display(),
                live.pid
            );
        }
        if tokio::time::Instant::now() > deadline {
            bail!("another process holds this LOFT_HOME's mount lock");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn prepare(home: &LoftHome, args: &MountArgs) -> Result<Live> {
    home.create()?;
    let lock = acquire_mount_lock(home).await?;
    // A crashed mount of this home leaves its directory dead: clean it up.
    if let Ok(text) = std::fs::read(home.mount_record()) {
        if let Ok(old) = serde_json::from_slice::<MountRecord>(&text)
            && dir_state(&old.mountpoint) == DirState::DeadMount
        {
            info!("cleaning up the dead mount at {}", old.mountpoint.display());
            detach(&old.mountpoint)?;
        }
        MountRecord::remove(home);
    }
    let dir = &args.dir;
    match dir_state(dir) {
        DirState::Missing => bail!("{}: no such directory", dir.display()),
        DirState::NotADirectory => bail!("{}: not a directory", dir.display()),
        DirState::Mounted => bail!("{}: already mounted", dir.display()),
        DirState::DeadMount => {
            info!("cleaning up the dead mount at {}", dir.display());
            detach(dir)?;
        }
        DirState::Plain => {}
    }
    let mountpoint = dir.canonicalize()?;
    let session = Session::open_at(home.clone(), args.server.clone()).await?;
    // SAFETY: geteuid/getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let root = uid == 0;
    let mut config = VfsConfig::new(home.cache_dir.clone());
    config.cache_size = args.cache_size;
    config.disk_reserve = args.disk_reserve;
    config.upload_debounce = args.upload_debounce;
    config.owner = (!root).then_some((uid, gid));
    config.device = device_name(&session.config);
    let client = session.client.clone();
    let runtime = tokio::runtime::Handle::current();
    let vfs = on_own_thread("open-cache", move || Vfs::new(config, client, runtime))
        .await?
        .map_err(|e| anyhow!("opening the local cache: {e}"))?;
    let engines = vec![
        tokio::spawn(vfs.clone().run_sync()),
        tokio::spawn(vfs.clone().run_feed()),
    ];
    let options = MountOptions {
        options: args.options.clone(),
        allow_other: root,
        passthrough: root,
        threads: 4,
    };
    let fs = vfs.clone();
    let point = mountpoint.clone();
    let mounted = on_own_thread("mount", move || loft_vfs_linux::mount(fs, &point, &options))
        .await?
        .with_context(|| format!("mounting {}", mountpoint.display()))?;
    let socket = home.mount_socket();
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    MountRecord {
        pid: std::process::id(),
        mountpoint: mountpoint.clone(),
    }
    .save(home)?;
    Ok(Live {
        _lock: lock,
        session,
        vfs,
        engines,
        mounted,
        mountpoint,
        listener,
    })
}

/// Runs `job` on a thread started from the calling one, which is the process's main
/// thread here, not one of the runtime's: the threads `job` starts (the FUSE
/// session's request threads, the mirror's commit thread) then keep the main thread's
/// priority instead of the runtime's lower one (see [`BACKGROUND_NICE`]), which an
/// unprivileged process could not raise again.
async fn on_own_thread<T: Send + 'static>(
    name: &str,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = sender.send(job());
        })
        .with_context(|| format!("starting the {name} thread"))?;
    receiver
        .await
        .map_err(|_| anyhow!("the {name} thread ended without an answer"))
}

/// Waits for the mount to end (`loft unmount`, `umount`, SIGTERM), then sends what
/// is queued while the server is reachable.
async fn serve(home: LoftHome, live: Live) -> Result<()> {
    let Live {
        _lock,
        session,
        vfs,
        engines,
        mut mounted,
        mountpoint,
        listener,
    } = live;
    let online = tokio::time::timeout(Duration::from_secs(2), session.client.who_am_i())
        .await
        .is_ok_and(|r| r.is_ok());
    let note = if online {
        "online".to_string()
    } else {
        "offline: server unreachable, serving from the local mirror".to_string()
    };
    info!("mounted {} ({note})", mountpoint.display());
    daemon::report(&Ok(note));

    let (unmount_sender, mut unmount_requests) = mpsc::channel(1);
    let control = tokio::spawn(control::serve(
        listener,
        vfs.clone(),
        mountpoint.display().to_string(),
        unmount_sender,
    ));
    let mut waiter = tokio::task::spawn_blocking(move || mounted.wait());
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            ended = &mut waiter => {
                if let Ok(Err(error)) = ended {
                    warn!("FUSE session ended: {error}");
                }
                break;
            }
            _ = unmount_requests.recv() => unmount_now(&mountpoint, false),
            _ = terminate.recv() => unmount_now(&mountpoint, true),
            _ = interrupt.recv() => unmount_now(&mountpoint, true),
        }
    }
    info!("unmounted {}", mountpoint.display());
    // No longer a live mount: a new one may start and wait for the lock.
    let _ = std::fs::remove_file(home.mount_socket());
    MountRecord::remove(&home);
    if vfs.is_online()
        && let Err(left) = vfs.wait_synced(Duration::from_secs(10)).await
    {
        warn!("{left} changes stay queued for the next mount");
    }
    // Everything holding a connection to the server goes before the session closes
    // (an embedded server waits for connected clients).
    control.abort();
    let _ = control.await;
    for engine in engines {
        engine.abort();
        let _ = engine.await;
    }
    if let Err(error) = vfs.sync_metadata() {
        warn!("committing the mirror: {error}");
    }
    drop(vfs);
    session.close().await;
    Ok(())
}

fn unmount_now(mountpoint: &Path, force: bool) {
    match loft_vfs_linux::unmount_path(mountpoint) {
        Ok(()) => {}
        Err(error) if force => {
            warn!("unmount: {error}; detaching");
            let _ = detach(mountpoint);
        }
        Err(error) => warn!("unmount of {} failed: {error}", mountpoint.display()),
    }
}
