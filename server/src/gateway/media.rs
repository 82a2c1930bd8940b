//! What a file name says about its content: the media type sent with a download and
//! whether the page previews it as an image or as text.

/// How the link page previews a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preview {
    Image,
    Text,
    None,
}

const TABLE: &[(&str, &str, Preview)] = &[
    ("png", "image/png", Preview::Image),
    ("jpg", "image/jpeg", Preview::Image),
    ("jpeg", "image/jpeg", Preview::Image),
    ("gif", "image/gif", Preview::Image),
    ("webp", "image/webp", Preview::Image),
    ("svg", "image/svg+xml", Preview::Image),
    ("pdf", "application/pdf", Preview::None),
    ("zip", "application/zip", Preview::None),
    ("json", "application/json", Preview::Text),
    ("txt", "text/plain; charset=utf-8", Preview::Text),
    ("md", "text/markdown; charset=utf-8", Preview::Text),
    ("csv", "text/csv; charset=utf-8", Preview::Text),
    ("log", "text/plain; charset=utf-8", Preview::Text),
    ("toml", "text/plain; charset=utf-8", Preview::Text),
    ("yaml", "text/plain; charset=utf-8", Preview::Text),
    ("yml", "text/plain; charset=utf-8", Preview::Text),
    ("rs", "text/plain; charset=utf-8", Preview::Text),
    ("py", "text/plain; charset=utf-8", Preview::Text),
    ("c", "text/plain; charset=utf-8", Preview::Text),
    ("h", "text/plain; charset=utf-8", Preview::Text),
    ("sh", "text/plain; charset=utf-8", Preview::Text),
    ("js", "text/plain; charset=utf-8", Preview::Text),
    ("html", "text/plain; charset=utf-8", Preview::Text),
    ("css", "text/plain; charset=utf-8", Preview::Text),
];

fn extension(name: &[u8]) -> Option<String> {
    let dot = name.iter().rposition(|&b| b == b'.')?;
    let ext = std::str::from_utf8(&name[dot + 1..]).ok()?;
    Some(ext.to_ascii_lowercase())
}

fn lookup(name: &[u8]) -> Option<&'static (&'static str, &'static str, Preview)> {
    let ext = extension(name)?;
    TABLE.iter().find(|(known, _, _)| *known == ext)
}

/// The media type of a download. Markup is sent as plain text: downloads are served
/// from the gateway's origin and must never run as a page there.
pub fn content_type(name: &[u8]) -> &'static str {
    lookup(name).map_or("application/octet-stream", |(_, media, _)| media)
}

/// How the page previews `name`.
pub fn preview(name: &[u8]) -> Preview {
    lookup(name).map_or(Preview::None, |(_, _, preview)| *preview)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_types_and_previews() {
        assert_eq!(content_type(b"a.PNG"), "image/png");
        assert_eq!(preview(b"photo.jpeg"), Preview::Image);
        assert_eq!(preview(b"notes.txt"), Preview::Text);
        assert_eq!(content_type(b"page.html"), "text/plain; charset=utf-8");
        assert_eq!(content_type(b"noext"), "application/octet-stream");
        assert_eq!(preview(b"archive.tar.gz"), Preview::None);
    }
}
