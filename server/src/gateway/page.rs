//! The link page: a small HTML page with inline CSS and no external assets. A file
//! shows its name, size, a preview (images, the start of text files) and a download
//! button; a folder lists its entries with a download button per file; an upload link
//! shows an upload form; a password link first asks for the password.

use std::sync::Arc;

use axum::extract::State;
use axum::http::Uri;
use axum::response::{Html, IntoResponse, Response};
use loft_remote::content::decode;
use loft_remote::proto::NodeKind;

use super::link::{self, Access, download_url, link_name, page_url};
use super::media::{Preview, preview};
use super::{Gateway, GatewayError};
use crate::meta::{LinkGrant, LinkRole};

/// Bytes of a text file shown on its page.
const TEXT_PREVIEW: usize = 4096;
/// Most folder entries listed on one page.
const MAX_ENTRIES: usize = 5000;

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f4f5f7;\
color:#1d2330;margin:0;padding:2rem 1rem}\
main{max-width:46rem;margin:0 auto;background:#fff;border-radius:12px;\
box-shadow:0 1px 3px rgba(0,0,0,.08),0 8px 24px rgba(0,0,0,.06);padding:1.75rem 2rem}\
h1{font-size:1.35rem;margin:0 0 .25rem;word-break:break-all}\
.meta{color:#6b7280;margin:0 0 1.25rem}\
.brand{font-size:.8rem;letter-spacing:.08em;text-transform:uppercase;color:#4f46e5;\
font-weight:600;margin-bottom:1rem}\
a.button,button{display:inline-block;background:#4f46e5;color:#fff;border:0;\
border-radius:8px;padding:.55rem 1.1rem;font-size:.95rem;text-decoration:none;cursor:pointer}\
a.button:hover,button:hover{background:#4338ca}\
input[type=password],input[type=file]{font-size:1rem;padding:.5rem;border:1px solid #d1d5db;\
border-radius:8px;margin-right:.5rem}\
pre{background:#f8f9fb;border:1px solid #e5e7eb;border-radius:8px;padding:1rem;\
overflow:auto;max-height:24rem;font-size:.85rem}\
img.preview{max-width:100%;border-radius:8px;border:1px solid #e5e7eb;margin-bottom:1rem}\
table{width:100%;border-collapse:collapse}\
td{padding:.5rem .25rem;border-top:1px solid #eef0f3;word-break:break-all}\
td.size{color:#6b7280;white-space:nowrap;text-align:right}td.action{text-align:right;width:1%}\
td a.button{padding:.3rem .8rem;font-size:.85rem}\
.error{color:#b91c1c}.ok{color:#047857}";

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A name (any bytes) as escaped text.
fn name_html(name: &[u8]) -> String {
    escape(&String::from_utf8_lossy(name))
}

/// A byte count for people: `1.5 MiB`.
pub fn human_size(bytes: u64) -> String {
    loft_remote::units::format_size(bytes)
}

/// A whole page around `body`.
pub fn layout(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{} · Loft</title><style>{STYLE}</style></head>\
         <body><main><div class=\"brand\">Loft</div>{body}</main></body></html>",
        escape(title)
    ))
}

/// A page that only says something.
pub fn message(title: &str, text: &str) -> Html<String> {
    layout(
        title,
        &format!(
            "<h1>{}</h1><p class=\"meta\">{}</p>",
            escape(title),
            escape(text)
        ),
    )
}

/// The password form of a protected link; `error` says why it is shown again.
pub fn password_form(name: &[u8], action: &str, error: Option<&str>) -> Html<String> {
    let error = error
        .map(|e| format!("<p class=\"error\" id=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    layout(
        &String::from_utf8_lossy(name),
        &format!(
            "<h1>{}</h1><p class=\"meta\">This link is protected by a password.</p>{error}\
             <form method=\"post\" action=\"{}\">\
             <input type=\"password\" name=\"password\" id=\"password\" placeholder=\"Password\" \
             autocomplete=\"current-password\" required autofocus>\
             <button type=\"submit\" id=\"unlock\">Open</button></form>",
            name_html(name),
            escape(action)
        ),
    )
}

/// `GET /l/SECRET[/PATH…][?grant=…]`.
pub async fn show(State(gateway): State<Arc<Gateway>>, uri: Uri) -> Result<Response, GatewayError> {
    let (secret, segments) = link::secret_and_path(uri.path())?;
    let grant = link::open(&gateway, &secret).await?;
    let granted = match link::access(&gateway, &grant, uri.query()) {
        Access::Open => None,
        Access::Granted(offered) => Some(offered),
        Access::NeedsPassword => {
            let action = page_url(&gateway, &secret, &[], None);
            return Ok(password_form(&link_name(&grant), &action, None).into_response());
        }
    };
    let granted = granted.as_deref();
    match grant.link.role {
        LinkRole::Upload if segments.is_empty() => {
            Ok(upload_form(&gateway, &grant, &secret, granted, None).into_response())
        }
        LinkRole::Upload => Err(GatewayError::NotFound),
        LinkRole::Viewer => {
            let node = link::resolve(&gateway, &grant, &segments).await?;
            match node.kind() {
                NodeKind::File => file_page(&gateway, &grant, &segments, &node).await,
                NodeKind::Directory => {
                    folder_page(&gateway, &grant, &secret, &segments, node.id, granted).await
                }
                _ => Err(GatewayError::NotFound),
            }
        }
    }
}

/// The path of a file inside its link as the download URL names it: the file's name
/// for a file link, its path below the folder for a folder link.
fn download_segments(grant: &LinkGrant, segments: &[Vec<u8>]) -> Vec<Vec<u8>> {
    if segments.is_empty() {
        vec![link_name(grant)]
    } else {
        segments.to_vec()
    }
}

async fn file_page(
    gateway: &Gateway,
    grant: &LinkGrant,
    segments: &[Vec<u8>],
    node: &loft_remote::proto::Node,
) -> Result<Response, GatewayError> {
    let target = download_segments(grant, segments);
    let name = target.last().cloned().unwrap_or_default();
    let url = download_url(gateway, grant, &target);
    // A preview is a download too; on a link with a download limit it would use one up.
    let limited = grant.link.max_downloads.is_some();
    let preview_html = match preview(&name) {
        _ if limited => String::new(),
        Preview::Image => format!(
            "<img class=\"preview\" id=\"preview\" src=\"{}\" alt=\"{}\">",
            escape(&url),
            name_html(&name)
        ),
        Preview::Text => match text_start(gateway, grant, node.id).await {
            Ok(text) if !text.is_empty() => {
                format!("<pre id=\"preview\">{}</pre>", escape(&text))
            }
            _ => String::new(),
        },
        Preview::None => String::new(),
    };
    let body = format!(
        "<h1 id=\"name\">{}</h1><p class=\"meta\" id=\"size\">{}</p>{preview_html}\
         <p><a class=\"button\" id=\"download\" href=\"{}\" download>Download</a></p>",
        name_html(&name),
        human_size(node.size),
        escape(&url)
    );
    Ok(layout(&String::from_utf8_lossy(&name), &body).into_response())
}

/// The first [`TEXT_PREVIEW`] bytes of a file as text (invalid UTF-8 replaced).
async fn text_start(
    gateway: &Gateway,
    grant: &LinkGrant,
    node: u64,
) -> Result<String, GatewayError> {
    let manifest = gateway.meta.manifest(&grant.caller, node, 0).await?;
    let Some(first) = manifest.chunks.first() else {
        return Ok(String::new());
    };
    let record = gateway
        .meta
        .readable_chunks(&grant.caller, &[first.id])
        .await?
        .into_iter()
        .next()
        .flatten()
        .ok_or(GatewayError::NotFound)?;
    let stored = gateway.chunks.get(&first.id).await?;
    let plain = if stored.compressed {
        let length = record.length as usize;
        tokio::task::spawn_blocking(move || decode(&stored.data, true, length))
            .await
            .map_err(|_| GatewayError::Internal)?
            .map_err(|_| GatewayError::Internal)?
    } else {
        stored.data.to_vec()
    };
    let mut end = plain.len().min(TEXT_PREVIEW);
    // Do not cut a UTF-8 sequence in half at the end.
    while end > 0 && end < plain.len() && (plain[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    Ok(String::from_utf8_lossy(&plain[..end]).into_owned())
}

async fn folder_page(
    gateway: &Gateway,
    grant: &LinkGrant,
    secret: &str,
    segments: &[Vec<u8>],
    dir: u64,
    granted: Option<&str>,
) -> Result<Response, GatewayError> {
    let mut entries = Vec::new();
    let mut after = Vec::new();
    loop {
        let listing = gateway.meta.list(&grant.caller, dir, &after, 1000).await?;
        if let Some((last, _)) = listing.entries.last() {
            after = last.clone();
        }
        entries.extend(listing.entries);
        if !listing.more || entries.len() >= MAX_ENTRIES {
            break;
        }
    }
    entries.truncate(MAX_ENTRIES);
    let mut rows = String::new();
    if !segments.is_empty() {
        let up = page_url(gateway, secret, &segments[..segments.len() - 1], granted);
        rows.push_str(&format!(
            "<tr><td><a href=\"{}\">..</a></td><td></td><td></td></tr>",
            escape(&up)
        ));
    }
    for (name, node) in &entries {
        let mut path = segments.to_vec();
        path.push(name.clone());
        match node.kind() {
            NodeKind::Directory => rows.push_str(&format!(
                "<tr><td><a href=\"{}\">{}/</a></td><td class=\"size\"></td><td></td></tr>",
                escape(&page_url(gateway, secret, &path, granted)),
                name_html(name)
            )),
            NodeKind::File => rows.push_str(&format!(
                "<tr><td>{}</td><td class=\"size\">{}</td><td class=\"action\">\
                 <a class=\"button\" href=\"{}\" download>Download</a></td></tr>",
                name_html(name),
                human_size(node.size),
                escape(&download_url(gateway, grant, &path))
            )),
            _ => {}
        }
    }
    let title = segments.last().cloned().unwrap_or_else(|| link_name(grant));
    let count = entries.len();
    let body = format!(
        "<h1>{}</h1><p class=\"meta\">Folder · {count} {}</p><table id=\"listing\">{rows}</table>",
        name_html(&title),
        if count == 1 { "item" } else { "items" }
    );
    Ok(layout(&String::from_utf8_lossy(&title), &body).into_response())
}

/// The form of an upload link; `uploaded` lists what the last post created.
pub fn upload_form(
    gateway: &Gateway,
    grant: &LinkGrant,
    secret: &str,
    granted: Option<&str>,
    uploaded: Option<&[Vec<u8>]>,
) -> Html<String> {
    let mut action = format!("{}/u/{secret}", gateway.base_path);
    if let Some(granted) = granted {
        action.push_str("?grant=");
        action.push_str(&link::encode_query(granted));
    }
    let done = match uploaded {
        Some(names) => {
            let names: Vec<String> = names.iter().map(|n| name_html(n)).collect();
            format!(
                "<p class=\"ok\" id=\"uploaded\">Uploaded: {}</p>",
                names.join(", ")
            )
        }
        None => String::new(),
    };
    let name = link_name(grant);
    layout(
        &String::from_utf8_lossy(&name),
        &format!(
            "<h1>{}</h1><p class=\"meta\">Upload files into this folder. \
             Its contents are not shown.</p>{done}\
             <form method=\"post\" action=\"{}\" enctype=\"multipart/form-data\">\
             <input type=\"file\" name=\"file\" id=\"file\" multiple required>\
             <button type=\"submit\" id=\"upload\">Upload</button></form>",
            name_html(&name),
            escape(&action)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_sizes_read_well() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(human_size(12), "12 bytes");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }

    #[test]
    fn pages_have_no_external_assets() {
        let page = message("Hi", "there").0;
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(page.contains("<style>"));
    }
}
