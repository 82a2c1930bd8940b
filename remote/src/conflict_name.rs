//! Names of conflicted copies (`name (conflicted copy from DEVICE YYYY-MM-DD).ext`) and of
//! items restored from the trash onto a taken name (`name (restored).ext`).

use crate::names::NAME_MAX;

/// The name for the `attempt`-th conflicted copy of `name` (attempt 1 has no number),
/// shortened so that it stays within [`NAME_MAX`] bytes and keeps its extension.
pub fn conflicted_copy_name(name: &[u8], device: &str, date: &str, attempt: u32) -> Vec<u8> {
    let mut device = device.replace('/', "_");
    truncate_str(&mut device, 64);
    with_tag(
        name,
        &format!(" (conflicted copy from {device} {date}{})", number(attempt)),
    )
}

/// The name for the `attempt`-th item restored from the trash onto a taken `name`:
/// `name (restored).ext`, then `name (restored 2).ext`, ...
pub fn restored_name(name: &[u8], attempt: u32) -> Vec<u8> {
    with_tag(name, &format!(" (restored{})", number(attempt)))
}

fn number(attempt: u32) -> String {
    if attempt > 1 {
        format!(" {attempt}")
    } else {
        String::new()
    }
}

/// `name` with `tag` before its extension, within [`NAME_MAX`] bytes.
fn with_tag(name: &[u8], tag: &str) -> Vec<u8> {
    // The extension starts at the last '.', unless that dot starts the name (".bashrc").
    let split = name
        .iter()
        .rposition(|&b| b == b'.')
        .filter(|&i| i > 0 && name.len() - i <= 16);
    let (stem, ext) = match split {
        Some(i) => name.split_at(i),
        None => (name, &b""[..]),
    };
    let room = NAME_MAX.saturating_sub(tag.len() + ext.len());
    let mut out = shorten(stem, room);
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(ext);
    out
}

/// At most `max` bytes of `stem`, cut at a character boundary when it is UTF-8.
fn shorten(stem: &[u8], max: usize) -> Vec<u8> {
    if stem.len() <= max {
        return stem.to_vec();
    }
    match std::str::from_utf8(stem) {
        Ok(text) => {
            let mut text = text.to_string();
            truncate_str(&mut text, max);
            text.into_bytes()
        }
        Err(_) => stem[..max].to_vec(),
    }
}

fn truncate_str(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_extension() {
        let name = conflicted_copy_name(b"report.txt", "laptop", "2026-11-26", 1);
        assert_eq!(name, b"report (conflicted copy from laptop 2026-11-26).txt");
        let name = conflicted_copy_name(b".bashrc", "pc", "2026-11-26", 2);
        assert_eq!(name, b".bashrc (conflicted copy from pc 2026-11-26 2)");
    }

    #[test]
    fn restored_names_count_up() {
        assert_eq!(restored_name(b"a.txt", 1), b"a (restored).txt");
        assert_eq!(restored_name(b"dir", 3), b"dir (restored 3)");
    }

    #[test]
    fn stays_within_name_max() {
        let long = "é".repeat(200);
        let name = conflicted_copy_name(format!("{long}.md").as_bytes(), "device", "2026-11-26", 7);
        assert!(name.len() <= NAME_MAX);
        assert!(std::str::from_utf8(&name).is_ok());
        assert!(name.ends_with(b" 7).md"));
    }
}
