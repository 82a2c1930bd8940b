//! Which files are searched by their text, and that text: plain text, Markdown and
//! source code, told by extension or, failing that, by sniffing the first bytes. Other
//! files (images, archives, anything with NUL bytes or not UTF-8) are found by name only.

/// Most text indexed per file; the rest of a longer file is found by name only.
pub const TEXT_CAP: usize = 1 << 20;

/// Extensions whose files are never read for text.
const BINARY_EXTENSIONS: &[&str] = &[
    "7z", "a", "avi", "bin", "bmp", "bz2", "class", "dll", "dmg", "doc", "docx", "exe", "flac",
    "gif", "gz", "heic", "ico", "iso", "jar", "jpeg", "jpg", "mkv", "mov", "mp3", "mp4", "o",
    "ogg", "pdf", "png", "ppt", "pptx", "so", "sqlite", "tar", "tgz", "tif", "tiff", "wasm", "wav",
    "webm", "webp", "xls", "xlsx", "xz", "zip", "zst",
];

/// Whether a file named `name` may hold indexable text (its bytes decide the rest).
pub fn may_be_text(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((_, extension)) => {
            !BINARY_EXTENSIONS.contains(&extension.to_ascii_lowercase().as_str())
        }
        None => true,
    }
}

/// The text of a file's first bytes (at most [`TEXT_CAP`] of them), or `None` when
/// they do not look like text.
pub fn extract(bytes: &[u8]) -> Option<String> {
    let bytes = &bytes[..bytes.len().min(TEXT_CAP)];
    if bytes.contains(&0) {
        return None;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text.to_string()),
        // Cut inside a character at the cap: keep what is whole.
        Err(error) if error.error_len().is_none() => {
            Some(String::from_utf8_lossy(&bytes[..error.valid_up_to()]).into_owned())
        }
        Err(_) => None,
    }
}

/// A short excerpt of `body` around the first word that starts with one of `terms`
/// (lower-case), on one line; the start of the body when none does.
pub fn snippet(body: &str, terms: &[String]) -> String {
    const BEFORE: usize = 30;
    const LENGTH: usize = 100;
    let lower: Vec<(usize, char)> = body.char_indices().collect();
    let at = first_match(body, terms).unwrap_or(0);
    // Back up to a word start at most BEFORE characters earlier.
    let index = lower.partition_point(|&(offset, _)| offset < at);
    let mut start = index.saturating_sub(BEFORE);
    while start > 0 && start < index && lower[start - 1].1.is_alphanumeric() {
        start += 1;
    }
    let end = (start + LENGTH).min(lower.len());
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut space = false;
    for &(_, c) in &lower[start..end] {
        if c.is_whitespace() || c.is_control() {
            space = true;
            continue;
        }
        if space && !out.is_empty() && !out.ends_with('…') {
            out.push(' ');
        }
        space = false;
        out.push(c);
    }
    if end < lower.len() {
        out.push('…');
    }
    out
}

/// Byte offset of the first word of `body` that starts with one of `terms`.
fn first_match(body: &str, terms: &[String]) -> Option<usize> {
    let mut word_start = None;
    for (offset, c) in body.char_indices().chain([(body.len(), ' ')]) {
        match (c.is_alphanumeric(), word_start) {
            (true, None) => word_start = Some(offset),
            (false, Some(start)) => {
                let word = body[start..offset].to_lowercase();
                if terms.iter().any(|term| word.starts_with(term.as_str())) {
                    return Some(start);
                }
                word_start = None;
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_utf8_without_nul_bytes() {
        assert_eq!(extract(b"hello\nworld").as_deref(), Some("hello\nworld"));
        assert_eq!(extract(b"\x89PNG\r\n\x1a\n\0\0"), None);
        assert_eq!(extract(b"caf\xc3"), Some("caf".to_string()));
        assert_eq!(extract(b"\xff\xfe bad"), None);
    }

    #[test]
    fn binary_extensions_are_found_by_name_only() {
        assert!(may_be_text("notes.md"));
        assert!(may_be_text("Makefile"));
        assert!(!may_be_text("photo.JPG"));
    }

    #[test]
    fn snippets_show_the_first_match_on_one_line() {
        let body = "first\nsecond has the Needle in it\nthird";
        let terms = vec!["needle".to_string()];
        assert_eq!(
            snippet(body, &terms),
            "first second has the Needle in it third"
        );
        // More than 30 characters before the match: cut at a whole word.
        let body = "first line\nsecond line has the Needle in it\nthird";
        assert_eq!(
            snippet(body, &terms),
            "…line second line has the Needle in it third"
        );
        let long = format!("{} needle {}", "word ".repeat(40), "tail ".repeat(40));
        let cut = snippet(&long, &terms);
        assert!(cut.starts_with('…') && cut.ends_with('…'), "{cut}");
        assert!(cut.contains("needle"), "{cut}");
    }
}
