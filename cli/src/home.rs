//! Where a device keeps its config, state and cache: `LOFT_HOME` when set (one
//! directory, so two devices can share a machine), else the XDG directories.

use std::path::{Path, PathBuf};

/// The directories of one Loft device.
#[derive(Clone, Debug)]
pub struct LoftHome {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
}

impl LoftHome {
    /// From `LOFT_HOME`, else `$XDG_CONFIG_HOME/loft`, `$XDG_DATA_HOME/loft` and
    /// `$XDG_CACHE_HOME/loft` (with the usual fallbacks under `$HOME`).
    pub fn from_env() -> anyhow::Result<Self> {
        if let Some(home) = std::env::var_os("LOFT_HOME").filter(|v| !v.is_empty()) {
            return Ok(Self::single(PathBuf::from(home)));
        }
        let user_home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("neither LOFT_HOME nor HOME is set"))?;
        let xdg = |var: &str, fallback: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| user_home.join(fallback))
                .join("loft")
        };
        Ok(LoftHome {
            config_dir: xdg("XDG_CONFIG_HOME", ".config"),
            data_dir: xdg("XDG_DATA_HOME", ".local/share"),
            cache_dir: xdg("XDG_CACHE_HOME", ".cache"),
        })
    }

    /// Everything under one directory.
    pub fn single(root: PathBuf) -> Self {
        LoftHome {
            config_dir: root.clone(),
            data_dir: root.clone(),
            cache_dir: root.join("cache"),
        }
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }
    pub fn token_file(&self) -> PathBuf {
        self.config_dir.join("token")
    }
    /// State of the embedded server.
    pub fn embedded_dir(&self) -> PathBuf {
        self.data_dir.join("server")
    }
    /// The embedded server's socket, which other `loft` processes connect to.
    pub fn embedded_socket(&self) -> PathBuf {
        self.data_dir.join("server.sock")
    }
    /// Held (flock) by the one process that runs the embedded server.
    pub fn embedded_lock(&self) -> PathBuf {
        self.data_dir.join("server.lock")
    }
    /// Held shared (flock) by each other process that uses the embedded server.
    pub fn embedded_users(&self) -> PathBuf {
        self.data_dir.join("server.users")
    }

    /// Held (flock) by the live mount process of this home.
    pub fn mount_lock(&self) -> PathBuf {
        self.data_dir.join("mount.lock")
    }
    /// Where the live mount is and which process serves it.
    pub fn mount_record(&self) -> PathBuf {
        self.data_dir.join("mount.json")
    }
    /// The live mount's control socket (`loft sync`, `status`, `unmount`).
    pub fn mount_socket(&self) -> PathBuf {
        self.data_dir.join("mount.sock")
    }
    /// The background mount process logs here.
    pub fn mount_log(&self) -> PathBuf {
        self.data_dir.join("mount.log")
    }

    /// Creates the directories (mode 0700: they hold a token).
    pub fn create(&self) -> anyhow::Result<()> {
        for dir in [&self.config_dir, &self.data_dir, &self.cache_dir] {
            create_private_dir(dir)?;
        }
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))
}
