//! Names under which a shared item appears at the root of a member's drive: its own
//! name, or `name (2)`, `name (3)`, … when that is taken (before the extension of a file).

use loft_remote::names::NAME_MAX;

/// The `number`-th candidate for `name` (1 is the name itself), within [`NAME_MAX`] bytes.
pub fn numbered_name(name: &[u8], number: u32, is_dir: bool) -> Vec<u8> {
    if number <= 1 {
        return name.to_vec();
    }
    // A file's extension starts at its last '.', unless that dot starts the name.
    let split = name
        .iter()
        .rposition(|&b| b == b'.')
        .filter(|&i| !is_dir && i > 0 && name.len() - i <= 16);
    let (stem, ext) = match split {
        Some(i) => name.split_at(i),
        None => (name, &b""[..]),
    };
    let tag = format!(" ({number})");
    let room = NAME_MAX.saturating_sub(tag.len() + ext.len());
    let mut out = stem[..stem.len().min(room)].to_vec();
    // Cutting may split a UTF-8 character: drop its leftover bytes.
    while !out.is_empty() && std::str::from_utf8(stem).is_ok() && std::str::from_utf8(&out).is_err()
    {
        out.pop();
    }
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(ext);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_go_before_a_files_extension_and_after_a_folders_name() {
        assert_eq!(numbered_name(b"notes.txt", 1, false), b"notes.txt");
        assert_eq!(numbered_name(b"notes.txt", 2, false), b"notes (2).txt");
        assert_eq!(numbered_name(b"v1.2", 3, true), b"v1.2 (3)");
        assert_eq!(numbered_name(b".bashrc", 2, false), b".bashrc (2)");
    }

    #[test]
    fn long_names_are_shortened_to_fit() {
        let long = "é".repeat(200);
        let name = numbered_name(long.as_bytes(), 12, true);
        assert!(name.len() <= NAME_MAX);
        let text = std::str::from_utf8(&name).unwrap();
        assert!(text.ends_with(" (12)"));
    }
}
