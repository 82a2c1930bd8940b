//! Turning path arguments into drive paths. A path inside a mount of this device is a
//! mount path; anything else must be a drive path starting with `/`. Paths are bytes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Result, bail};
use loft_remote::names::split_path;

/// The drive path an argument names.
pub fn drive_path(arg: &OsStr) -> Result<Vec<u8>> {
    let bytes = arg.as_bytes();
    if bytes.first() != Some(&b'/') {
        bail!("{}: drive paths start with '/'", arg.to_string_lossy());
    }
    if let Err((_, reason)) = split_path(bytes) {
        bail!("{}: {reason}", arg.to_string_lossy());
    }
    Ok(bytes.to_vec())
}

/// Splits a drive path into its parent's components and its last name; `None` for `/`.
pub fn parent_and_name(path: &[u8]) -> Option<(Vec<&[u8]>, &[u8])> {
    let mut parts = split_path(path).ok()?;
    let name = parts.pop()?;
    Some((parts, name))
}

/// Joins components back into a drive path.
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut path = Vec::new();
    for part in parts {
        path.push(b'/');
        path.extend_from_slice(part);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    path
}

/// A drive path for messages.
pub fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}
