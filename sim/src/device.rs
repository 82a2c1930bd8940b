//! One simulated device: a client core ([`Vfs`]) with its sync engine and change
//! feed, talking to the server through [`FaultyClient`]. Operations arrive here by
//! path, as a kernel adapter would turn a process's calls into the core's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use loft_remote::RemoteClient;
use loft_remote::client::{ConnectOptions, GrpcClient, ServerAddress};
use loft_vfs::{Caller, Kind, OpenMode, ROOT_INO, SetAttr, Vfs, VfsConfig, VfsError};
use tempfile::TempDir;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Root creating nodes with modes already final (no umask).
const ROOT: Caller = Caller {
    uid: 0,
    gid: 0,
    umask: 0,
};
use tracing::Instrument;

use crate::content::Token;
use crate::faults::{Faults, FaultyClient};
use crate::server::{PASSWORD, USER};
use crate::workload::Op;

/// Read and write in pieces of this size, as the kernel would.
const PIECE: usize = 128 << 10;

/// A file or folder as a device shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir,
    /// The content's hash and the write it is (`None`: empty, or not one write).
    File {
        hash: [u8; 32],
        len: usize,
        token: Option<Token>,
        /// The first line (up to 80 bytes), to tell what a file that is not one
        /// write holds.
        head: String,
    },
    Other,
}

/// A device's whole tree by path.
pub type Tree = BTreeMap<String, Entry>;

/// Why an operation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Fs(#[from] VfsError),
    /// A read returned bytes that are not one version of the file.
    #[error("read {len} bytes that are no single write: {start:?}…")]
    Torn { len: usize, start: String },
    /// Reading the tree failed at this path.
    #[error("{path}: {error}")]
    At { path: String, error: Box<OpError> },
}

pub struct SimDevice {
    pub index: usize,
    pub vfs: Arc<Vfs>,
    pub faults: Arc<Faults>,
    /// The same server without faults (the run's own checks use it).
    pub direct: Arc<GrpcClient>,
    tasks: Vec<JoinHandle<()>>,
    _dir: TempDir,
}

impl SimDevice {
    /// Signs in as device `index` and starts its core, sync engine and feed.
    pub fn start(
        rt: &Handle,
        server: &ServerAddress,
        index: usize,
        faults: Arc<Faults>,
    ) -> Result<SimDevice> {
        let name = format!("device{index}");
        let _runtime = rt.enter();
        let direct = GrpcClient::connect(server, &ConnectOptions::default())?;
        let reply = rt
            .block_on(direct.login(USER, PASSWORD, &name))
            .context("signing in")?;
        direct.set_token(Some(reply.token));
        let direct = Arc::new(direct);
        let client: Arc<dyn RemoteClient> =
            Arc::new(FaultyClient::new(direct.clone(), faults.clone()));
        let dir = tempfile::Builder::new().prefix("loft-sim-").tempdir()?;
        let mut config = VfsConfig::new(dir.path().join("cache"));
        config.upload_debounce = Duration::from_millis(5);
        config.create_wait = Duration::from_millis(200);
        config.retry_cap = Duration::from_millis(200);
        // The server says "caught up" every 5 s on an idle stream.
        config.feed_silence = Duration::from_secs(7);
        config.disk_reserve = 0;
        config.device = name;
        let vfs = Vfs::new(config, client, rt.clone())?;
        let span = tracing::info_span!("device", n = index);
        let tasks = vec![
            rt.spawn(vfs.clone().run_sync().instrument(span.clone())),
            rt.spawn(vfs.clone().run_feed().instrument(span)),
        ];
        Ok(SimDevice {
            index,
            vfs,
            faults,
            direct,
            tasks,
            _dir: dir,
        })
    }

    /// Carries out `op` as a process on this device would. Returns the file it
    /// wrote, or the one a rename replaced or an unlink removed (its inode).
    pub fn apply(&self, op: &Op) -> Result<Option<u64>, OpError> {
        let _span = tracing::info_span!("device", n = self.index).entered();
        tracing::debug!(%op, "operation");
        match op {
            Op::Write { path, token } => self.write(path, &token.bytes()).map(Some),
            Op::Read { path } => {
                let content = self.read(self.resolve(path)?)?;
                if !content.is_empty() && Token::parse(&content).is_none() {
                    return Err(torn(&content));
                }
                Ok(None)
            }
            Op::Unlink { path } => {
                let removed = self.resolve(path).ok();
                let (parent, name) = self.parent_of(path)?;
                self.vfs.unlink(parent, name.as_bytes())?;
                Ok(removed)
            }
            Op::Mkdir { path } => {
                let (parent, name) = self.parent_of(path)?;
                self.vfs.mkdir(parent, name.as_bytes(), 0o755, ROOT)?;
                Ok(None)
            }
            Op::Rmdir { path } => {
                let (parent, name) = self.parent_of(path)?;
                self.vfs.rmdir(parent, name.as_bytes())?;
                Ok(None)
            }
            Op::Rename { from, to } => {
                let replaced = if from != to {
                    self.resolve(to).ok()
                } else {
                    None
                };
                let (old_parent, old_name) = self.parent_of(from)?;
                let (new_parent, new_name) = self.parent_of(to)?;
                self.vfs.rename(
                    old_parent,
                    old_name.as_bytes(),
                    new_parent,
                    new_name.as_bytes(),
                    false,
                    false,
                )?;
                Ok(replaced)
            }
        }
    }

    /// Replaces (or creates) the file at `path`, creating missing parent folders;
    /// returns the file's inode.
    fn write(&self, path: &str, content: &[u8]) -> Result<u64, OpError> {
        let (parent_path, name) = split(path);
        let mut parent = ROOT_INO;
        for part in parent_path.split('/').filter(|part| !part.is_empty()) {
            parent = match self.vfs.lookup(parent, part.as_bytes()) {
                Ok(attr) => attr.ino,
                Err(VfsError::NotFound) => {
                    self.vfs.mkdir(parent, part.as_bytes(), 0o755, ROOT)?.ino
                }
                Err(error) => return Err(error.into()),
            };
        }
        let (ino, fh) = match self.vfs.lookup(parent, name.as_bytes()) {
            Ok(attr) => {
                // O_TRUNC as the kernel sends it (no atomic O_TRUNC): a setattr to
                // size 0, then the open.
                let empty = SetAttr {
                    size: Some(0),
                    ..SetAttr::default()
                };
                self.vfs.setattr(attr.ino, empty)?;
                let mode = OpenMode {
                    write: true,
                    truncate: false,
                };
                (attr.ino, self.vfs.open(attr.ino, mode)?.fh)
            }
            Err(VfsError::NotFound) => {
                let created = self
                    .vfs
                    .create(parent, name.as_bytes(), 0o644, ROOT, true)?;
                (created.attr.ino, created.fh)
            }
            Err(error) => return Err(error.into()),
        };
        let mut written = Ok(());
        for (index, piece) in content.chunks(PIECE).enumerate() {
            if let Err(error) = self.vfs.write(fh, (index * PIECE) as u64, piece) {
                written = Err(error);
                break;
            }
        }
        let released = self.vfs.release(fh);
        written?;
        released?;
        Ok(ino)
    }

    /// A whole file's content through one handle.
    fn read(&self, ino: u64) -> Result<Vec<u8>, OpError> {
        let mode = OpenMode {
            write: false,
            truncate: false,
        };
        let fh = self.vfs.open(ino, mode)?.fh;
        let mut content = Vec::new();
        let read = loop {
            match self.vfs.read(fh, content.len() as u64, PIECE as u32) {
                Ok(piece) if piece.is_empty() => break Ok(()),
                Ok(piece) => content.extend_from_slice(&piece),
                Err(error) => break Err(error),
            }
        };
        let released = self.vfs.release(fh);
        read?;
        released?;
        Ok(content)
    }

    fn resolve(&self, path: &str) -> Result<u64, VfsError> {
        let mut ino = ROOT_INO;
        for part in path.split('/').filter(|part| !part.is_empty()) {
            ino = self.vfs.lookup(ino, part.as_bytes())?.ino;
        }
        Ok(ino)
    }

    fn parent_of<'a>(&self, path: &'a str) -> Result<(u64, &'a str), VfsError> {
        let (parent, name) = split(path);
        Ok((self.resolve(parent)?, name))
    }

    /// Everything this device shows, with each file's content read through it.
    pub fn tree(&self) -> Result<Tree, OpError> {
        let mut tree = Tree::new();
        self.walk(ROOT_INO, "", &mut tree)?;
        Ok(tree)
    }

    fn walk(&self, dir: u64, path: &str, tree: &mut Tree) -> Result<(), OpError> {
        let at = |error: OpError| OpError::At {
            path: path.to_string(),
            error: Box::new(error),
        };
        let fh = self.vfs.opendir(dir).map_err(|e| at(e.into()))?;
        let mut entries = Vec::new();
        let listed = self.vfs.readdir(dir, fh, 0, |name, attr, _| {
            if name != b"." && name != b".." {
                entries.push((String::from_utf8_lossy(name).into_owned(), attr.clone()));
            }
            false
        });
        self.vfs.releasedir(fh);
        listed.map_err(|e| at(e.into()))?;
        for (name, attr) in entries {
            let child = if path.is_empty() {
                name
            } else {
                format!("{path}/{name}")
            };
            match attr.kind {
                Kind::Directory => {
                    tree.insert(child.clone(), Entry::Dir);
                    self.walk(attr.ino, &child, tree)?;
                }
                Kind::File => {
                    let content = self.read(attr.ino).map_err(|error| OpError::At {
                        path: child.clone(),
                        error: Box::new(error),
                    })?;
                    let entry = Entry::File {
                        hash: *blake3::hash(&content).as_bytes(),
                        len: content.len(),
                        token: Token::parse(&content),
                        head: {
                            let line = content.split(|b| *b == b'\n').next().unwrap_or_default();
                            String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned()
                        },
                    };
                    tree.insert(child, entry);
                }
                _ => {
                    tree.insert(child, Entry::Other);
                }
            }
        }
        Ok(())
    }

    /// True when nothing of this device waits to be sent.
    pub fn is_quiet(&self) -> bool {
        self.vfs.is_online() && self.vfs.pending_changes() == 0
    }
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn torn(content: &[u8]) -> OpError {
    let start = String::from_utf8_lossy(&content[..content.len().min(80)]).into_owned();
    OpError::Torn {
        len: content.len(),
        start,
    }
}
