//! Rules for entry names, checked the same way on both sides of the wire.

use crate::errors::ErrorKind;

/// Longest name, in bytes, that Loft accepts (NAME_MAX on Linux).
pub const NAME_MAX: usize = 255;

/// Checks one path component: non-empty, at most [`NAME_MAX`] bytes, no `/` or NUL,
/// not `.` or `..`. Names are bytes and need not be UTF-8.
pub fn check_name(name: &[u8]) -> Result<(), (ErrorKind, &'static str)> {
    if name.is_empty() {
        return Err((ErrorKind::InvalidName, "empty name"));
    }
    if name.len() > NAME_MAX {
        return Err((ErrorKind::NameTooLong, "name longer than 255 bytes"));
    }
    if name == b"." || name == b".." {
        return Err((ErrorKind::InvalidName, "'.' and '..' are not entry names"));
    }
    if name.contains(&b'/') {
        return Err((ErrorKind::InvalidName, "name contains '/'"));
    }
    if name.contains(&0) {
        return Err((ErrorKind::InvalidName, "name contains NUL"));
    }
    Ok(())
}

/// Splits a drive path (`/a/b/c`) into its components, checking each; `/` gives none.
pub fn split_path(path: &[u8]) -> Result<Vec<&[u8]>, (ErrorKind, &'static str)> {
    if path.first() != Some(&b'/') {
        return Err((ErrorKind::InvalidArgument, "drive paths start with '/'"));
    }
    path.split(|&b| b == b'/')
        .filter(|part| !part.is_empty())
        .map(|part| check_name(part).map(|()| part))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", &[b'x'; 256]] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&[b'x'; 255]).is_ok());
        assert!(check_name(b"\xff\xfe not utf-8").is_ok());
    }

    #[test]
    fn splits_paths() {
        assert_eq!(split_path(b"/").unwrap(), Vec::<&[u8]>::new());
        assert_eq!(split_path(b"/a//b/").unwrap(), vec![&b"a"[..], b"b"]);
        assert!(split_path(b"a/b").is_err());
        assert!(split_path(b"/a/../b").is_err());
    }
}
