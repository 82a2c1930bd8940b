//! The device's config file (`config.toml`) and its token file (mode 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::home::LoftHome;

/// What `loft login` remembers. Without `servers`, the device uses the embedded server.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientConfig {
    /// Server addresses, tried in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Extra CA certificate for `https://` servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<std::path::PathBuf>,
}

impl ClientConfig {
    pub fn load(home: &LoftHome) -> Result<Self> {
        let path = home.config_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, home: &LoftHome) -> Result<()> {
        home.create()?;
        let text = toml::to_string(self)?;
        write_private(&home.config_file(), text.as_bytes())
    }
}

/// The stored bearer token, if any.
pub fn load_token(home: &LoftHome) -> Result<Option<String>> {
    match std::fs::read_to_string(home.token_file()) {
        Ok(text) => Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("reading the token file"),
    }
}

pub fn save_token(home: &LoftHome, token: &str) -> Result<()> {
    home.create()?;
    write_private(&home.token_file(), format!("{token}\n").as_bytes())
}

pub fn remove_token(home: &LoftHome) -> Result<()> {
    match std::fs::remove_file(home.token_file()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).context("removing the token file")
        }
        _ => Ok(()),
    }
}

/// Writes a file readable by its owner only, replacing it atomically.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
