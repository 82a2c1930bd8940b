//! The control socket of a live mount: one JSON request per connection, one JSON
//! reply. `loft status`, `sync`, `conflicts` and `unmount` talk to the mount process through it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use loft_vfs::Vfs;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    PathStatus { path: Vec<u8> },
    Conflicts,
    Sync { timeout_ms: u64 },
    Unmount { timeout_ms: u64 },
}

/// Sends one request to the mount whose socket is `socket`.
pub async fn ask(socket: &Path, request: &Request) -> Result<Value> {
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("no live mount answers at {}", socket.display()))?;
    let (reader, mut writer) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    writer.write_all(&line).await?;
    let mut reply = String::new();
    BufReader::new(reader).read_line(&mut reply).await?;
    if reply.is_empty() {
        return Err(anyhow!("the mount process closed the connection"));
    }
    let value: Value = serde_json::from_str(&reply)?;
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        return Err(anyhow!("{error}"));
    }
    Ok(value)
}

/// Serves the control socket until the process ends. An unmount request is passed
/// on through `unmount` after its reply is sent.
pub async fn serve(
    listener: UnixListener,
    vfs: Arc<Vfs>,
    mountpoint: String,
    unmount: mpsc::Sender<()>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let vfs = vfs.clone();
        let unmount = unmount.clone();
        let mountpoint = mountpoint.clone();
        tokio::spawn(async move {
            let (reader, mut writer) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(reader).read_line(&mut line).await.is_err() {
                return;
            }
            let (reply, then_unmount) = match serde_json::from_str::<Request>(&line) {
                Ok(request) => answer(&vfs, &mountpoint, request).await,
                Err(error) => (json!({ "error": format!("bad request: {error}") }), false),
            };
            let mut text = reply.to_string();
            text.push('\n');
            let _ = writer.write_all(text.as_bytes()).await;
            let _ = writer.shutdown().await;
            if then_unmount {
                let _ = unmount.send(()).await;
            }
        });
    }
}

async fn answer(vfs: &Arc<Vfs>, mountpoint: &str, request: Request) -> (Value, bool) {
    match request {
        Request::Status => match vfs.mount_status() {
            Ok(status) => {
                let mut value = serde_json::to_value(status).unwrap_or_default();
                value["mountpoint"] = json!(mountpoint);
                value["pid"] = json!(std::process::id());
                (value, false)
            }
            Err(error) => (json!({ "error": error.to_string() }), false),
        },
        Request::PathStatus { path } => {
            let vfs = vfs.clone();
            let status = tokio::task::spawn_blocking(move || {
                let ino = vfs.resolve(&path)?;
                vfs.path_status(ino)
            })
            .await;
            match status {
                Ok(Ok(status)) => (serde_json::to_value(status).unwrap_or_default(), false),
                Ok(Err(error)) => (json!({ "error": error.to_string() }), false),
                Err(error) => (json!({ "error": error.to_string() }), false),
            }
        }
        Request::Conflicts => match vfs.conflicts() {
            Ok(conflicts) => (json!({ "conflicts": conflicts }), false),
            Err(error) => (json!({ "error": error.to_string() }), false),
        },
        Request::Sync { timeout_ms } => {
            let result = vfs.wait_synced(Duration::from_millis(timeout_ms)).await;
            (synced(vfs, result), false)
        }
        Request::Unmount { timeout_ms } => {
            let result = vfs.wait_synced(Duration::from_millis(timeout_ms)).await;
            (synced(vfs, result), true)
        }
    }
}

fn synced(vfs: &Vfs, result: Result<(), u64>) -> Value {
    match result {
        Ok(()) => json!({ "synced": true, "pending": 0, "online": vfs.is_online() }),
        Err(pending) => json!({ "synced": false, "pending": pending, "online": vfs.is_online() }),
    }
}
