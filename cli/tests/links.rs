//! Public links end to end: `loft link` against a real `loft-server` with its HTTP
//! gateway on loopback, and a real HTTP client on the gateway (pages, signed downloads
//! with Range, expiry, passwords and their throttle, upload-only links, download
//! limits, revocation, `/healthz`, `/metrics`).

mod common;

use std::net::SocketAddr;

use common::*;
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response, multipart};
use tempfile::TempDir;

/// A server with its gateway, and a signed-in device of `alice`.
struct Gateway {
    server: TestServer,
    http: SocketAddr,
    alice: Device,
    files: TempDir,
}

impl Gateway {
    fn start() -> Gateway {
        Gateway::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Gateway {
        let files = tempfile::tempdir().expect("tempdir");
        let (server, http) = TestServer::start_with_gateway(extra);
        server.add_user("alice");
        let alice = Device::login(&server, "alice", "laptop");
        Gateway {
            server,
            http,
            alice,
            files,
        }
    }

    /// Stores `bytes` at drive path `remote` through `loft put`.
    fn put(&self, remote: &str, bytes: &[u8]) {
        let local = self.files.path().join("upload");
        std::fs::write(&local, bytes).expect("local file");
        self.alice.put(&local, remote);
    }

    /// The drive file `remote`, read through `loft get`.
    fn get(&self, remote: &str) -> Vec<u8> {
        let local = self.files.path().join("download");
        self.alice.get(remote, &local);
        std::fs::read(&local).expect("downloaded file")
    }

    /// `loft link create ARGS`; returns the URL (the first line of its output).
    fn link(&self, args: &[&str]) -> String {
        let mut all = vec!["link", "create"];
        all.extend_from_slice(args);
        let out = self.alice.ok(&all);
        let url = out.lines().next().expect("a first line").to_string();
        assert!(
            url.starts_with(&format!("http://{}/l/", self.http)),
            "first line is not a link URL: {out}"
        );
        url
    }

    /// `loft link create ARGS --json`.
    fn link_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["link", "create"];
        all.extend_from_slice(args);
        all.push("--json");
        self.alice.json(&all)
    }

    /// An absolute URL for a path the gateway put in a page or a Location header.
    fn absolute(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("http://{}{path}", self.http)
        }
    }

    fn password_file(&self, password: &str) -> String {
        let file = self.files.path().join("link-password");
        std::fs::write(&file, format!("{password}\n")).expect("password file");
        file.to_string_lossy().into_owned()
    }
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(COMMAND_DEADLINE)
        .build()
        .expect("HTTP client")
}

fn get(url: &str) -> Response {
    client()
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn get_range(url: &str, range: &str) -> Response {
    client()
        .get(url)
        .header("Range", range)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// An `application/x-www-form-urlencoded` body.
fn form_body(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn post_form(url: &str, pairs: &[(&str, &str)]) -> Response {
    client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(pairs))
        .send()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

fn post_password(url: &str, password: &str) -> Response {
    post_form(url, &[("password", password)])
}

fn text(response: Response) -> String {
    response.text().expect("response body")
}

/// Undoes the escaping of an attribute value.
fn unescape(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Every `href` of an element that has `class="button"` (the download buttons).
fn download_hrefs(html: &str) -> Vec<String> {
    html.split("<a class=\"button\"")
        .skip(1)
        .filter_map(|rest| {
            let start = rest.find("href=\"")? + 6;
            let end = start + rest[start..].find('"')?;
            Some(unescape(&rest[start..end]))
        })
        .collect()
}

/// The one download button of a file page.
fn download_href(html: &str) -> String {
    let hrefs = download_hrefs(html);
    assert_eq!(hrefs.len(), 1, "one download button expected in:\n{html}");
    hrefs[0].clone()
}

#[test]
fn file_link_page_and_range_downloads() {
    let gw = Gateway::start();
    let note = b"first line <script>alert(1)</script> & more\nsecond line\n";
    gw.put("/docs/notes.txt", note);
    let data = random_bytes(3 * MIB + 12_345, 7);
    gw.put("/docs/big.bin", &data);

    // --json: exactly id, url and expires.
    let created = gw.link_json(&["/docs/notes.txt", "--expires", "7d"]);
    let object = created.as_object().expect("an object");
    let mut keys: Vec<_> = object.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["expires", "id", "url"]);
    assert!(created["id"].as_u64().is_some());
    assert!(
        created["expires"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    // The page: name, size, escaped text preview, a download button; nothing external.
    let page = get(created["url"].as_str().unwrap());
    assert_eq!(page.status(), StatusCode::OK);
    let html = text(page);
    assert!(html.contains("notes.txt"), "{html}");
    assert!(html.contains(&format!("{} bytes", note.len())), "{html}");
    assert!(html.contains(
        "<pre id=\"preview\">first line &lt;script&gt;alert(1)&lt;/script&gt; &amp; more"
    ));
    assert!(!html.contains("<script>"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    let download = gw.absolute(&download_href(&html));
    let response = get(&download);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"].to_str().unwrap(),
        note.len().to_string()
    );
    assert_eq!(response.bytes().unwrap().as_ref(), note);

    // Range requests on a file of several chunks.
    let url = gw.link(&["/docs/big.bin"]);
    let download = gw.absolute(&download_href(&text(get(&url))));
    let whole = get(&download);
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert!(whole.bytes().unwrap().as_ref() == data.as_slice());
    let size = data.len();
    for (range, start, end) in [
        ("bytes=0-0".to_string(), 0, 0),
        ("bytes=10-19".to_string(), 10, 19),
        ("bytes=1000000-2600000".to_string(), 1_000_000, 2_600_000),
        ("bytes=-100".to_string(), size - 100, size - 1),
        (format!("bytes={}-", size - 5), size - 5, size - 1),
        (format!("bytes=3000000-{}", size * 2), 3_000_000, size - 1),
    ] {
        let response = get_range(&download, &range);
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            response.headers()["content-range"].to_str().unwrap(),
            format!("bytes {start}-{end}/{size}"),
            "{range}"
        );
        let body = response.bytes().unwrap();
        assert!(body.as_ref() == &data[start..=end], "{range}: wrong bytes");
    }
    for range in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 1, size + 9),
    ] {
        let response = get_range(&download, &range);
        assert_eq!(
            response.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{range}"
        );
        assert_eq!(
            response.headers()["content-range"].to_str().unwrap(),
            format!("bytes */{size}")
        );
    }

    // A signature that does not match its URL is refused.
    let tampered = download.replace("sig=", "sig=00");
    assert_eq!(get(&tampered).status(), StatusCode::FORBIDDEN);
    let other_name = download.replace("/big.bin?", "/notes.txt?");
    assert_eq!(get(&other_name).status(), StatusCode::FORBIDDEN);
    let unsigned = download.split('?').next().unwrap().to_string();
    assert_eq!(get(&unsigned).status(), StatusCode::FORBIDDEN);
}

#[test]
fn folder_listing_image_preview_and_subfolders() {
    let gw = Gateway::start();
    let png = random_bytes(2000, 3);
    gw.put("/photos/cat.png", &png);
    gw.put("/photos/readme.txt", b"hello");
    gw.put("/photos/2024/beach.txt", b"sand");

    let url = gw.link(&["/photos"]);
    let html = text(get(&url));
    assert!(
        html.contains("cat.png") && html.contains("readme.txt"),
        "{html}"
    );
    assert!(html.contains("2024/"), "{html}");
    let hrefs = download_hrefs(&html);
    assert_eq!(hrefs.len(), 2, "one download button per file: {html}");
    let bodies: Vec<Vec<u8>> = hrefs
        .iter()
        .map(|h| get(&gw.absolute(h)).bytes().unwrap().to_vec())
        .collect();
    assert!(bodies.contains(&png));
    assert!(bodies.contains(&b"hello".to_vec()));

    // The subfolder opens as its own page, under the same link.
    let sub_html = text(get(&format!("{url}/2024")));
    assert!(sub_html.contains("beach.txt"), "{sub_html}");
    let beach = download_href(&sub_html);
    assert_eq!(get(&gw.absolute(&beach)).bytes().unwrap().as_ref(), b"sand");
    // Nothing outside the linked folder is reachable through it.
    gw.put("/private.txt", b"secret");
    assert_eq!(get(&format!("{url}/..")).status(), StatusCode::NOT_FOUND);
    assert_eq!(
        get(&format!("{url}/%2E%2E/private.txt")).status().as_u16() / 100,
        4
    );

    // An image link previews the image through its signed URL.
    let image_url = gw.link(&["/photos/cat.png"]);
    let image_html = text(get(&image_url));
    let download = download_href(&image_html);
    assert!(
        image_html.contains(&format!(
            "<img class=\"preview\" id=\"preview\" src=\"{}\"",
            download.replace('&', "&amp;")
        )),
        "{image_html}"
    );
    let image = get(&gw.absolute(&download));
    assert_eq!(image.headers()["content-type"], "image/png");
    assert_eq!(image.bytes().unwrap().as_ref(), png.as_slice());
}

#[test]
fn an_expired_link_answers_404() {
    let gw = Gateway::start();
    gw.put("/soon.txt", b"gone soon");
    let url = gw.link(&["/soon.txt", "--expires", "2s"]);
    let page = get(&url);
    // The page may already be gone on a slow machine; the download URL then is too.
    if page.status() == StatusCode::OK {
        let download = gw.absolute(&download_href(&text(page)));
        wait_for("the link to expire", DEADLINE, || {
            (get(&url).status() == StatusCode::NOT_FOUND).then_some(())
        });
        assert_eq!(get(&download).status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(get(&url).status(), StatusCode::NOT_FOUND);
    let links = gw.alice.json(&["link", "list", "--json"]);
    assert_eq!(links[0]["live"], false);
    assert_eq!(links[0]["revoked"], false);
}

#[test]
fn a_password_link_asks_and_redirects_to_a_signed_download() {
    let gw = Gateway::start();
    gw.put("/tax.pdf", b"%PDF numbers");
    let password = gw.password_file("open sesame");
    let url = gw.link(&["/tax.pdf", "--password-file", &password]);

    let html = text(get(&url));
    assert!(html.contains("type=\"password\""), "{html}");
    assert!(
        download_hrefs(&html).is_empty(),
        "no download before the password"
    );
    assert!(!html.contains("/d/"));

    let wrong = post_password(&url, "open barley");
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert!(text(wrong).contains("Wrong password"));

    let right = post_password(&url, "open sesame");
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let location = right.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.contains("/d/") && location.contains("sig="),
        "{location}"
    );
    let file = get(&gw.absolute(&location));
    assert_eq!(file.status(), StatusCode::OK);
    assert!(
        file.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("tax.pdf")
    );
    assert_eq!(file.bytes().unwrap().as_ref(), b"%PDF numbers");

    // A form without the field is a clear refusal.
    let empty = post_form(&url, &[("pass", "x")]);
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);

    // A folder behind a password: the redirect carries a grant that opens the listing.
    gw.put("/shared/a.txt", b"a");
    let folder = gw.link(&["/shared", "--password-file", &password]);
    assert!(text(get(&folder)).contains("type=\"password\""));
    let right = post_password(&folder, "open sesame");
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let listing = text(get(
        &gw.absolute(right.headers()["location"].to_str().unwrap())
    ));
    assert!(listing.contains("a.txt"), "{listing}");
    let forged = format!("{folder}?grant=99999999999.00");
    assert!(text(get(&forged)).contains("type=\"password\""));
}

#[test]
fn wrong_passwords_are_throttled_per_link_and_per_address() {
    let gw = Gateway::start_with(&[
        "--link-password-attempts",
        "5",
        "--link-password-window",
        "4s",
    ]);
    gw.put("/vault.txt", b"gold");
    let password = gw.password_file("right one");
    let first = gw.link(&["/vault.txt", "--password-file", &password]);
    let second = gw.link(&["/vault.txt", "--password-file", &password]);

    let mut statuses = Vec::new();
    for attempt in 0..100 {
        statuses.push(post_password(&first, &format!("wrong {attempt}")).status());
    }
    assert!(
        statuses[..5].iter().all(|s| *s == StatusCode::FORBIDDEN),
        "{statuses:?}"
    );
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        throttled >= 90,
        "only {throttled} of 100 throttled: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::FORBIDDEN || *s == StatusCode::TOO_MANY_REQUESTS)
    );

    // While throttled, the right password is refused too, on this link and (same
    // address) on another one.
    let refused = post_password(&first, "right one");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(text(refused).contains("Too many wrong passwords"));
    assert_eq!(
        post_password(&second, "right one").status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // After the window the right password opens the link.
    let metrics = text(get(&format!("http://{}/metrics", gw.http)));
    assert!(
        metrics.contains("loft_link_password_failures_total 5\n"),
        "{metrics}"
    );
    let location = wait_for("the throttle window to end", DEADLINE, || {
        let response = post_password(&first, "right one");
        (response.status() == StatusCode::SEE_OTHER)
            .then(|| response.headers()["location"].to_str().unwrap().to_string())
    });
    assert_eq!(
        get(&gw.absolute(&location)).bytes().unwrap().as_ref(),
        b"gold"
    );

    // The throttle is kept in the metadata store (read here when it is SQLite).
    if std::env::var_os("LOFT_TEST_CLI_SCALE_OUT").is_some() {
        return;
    }
    let rows: i64 = gw
        .server
        .db()
        .query_row(
            "SELECT COUNT(*) FROM link_throttle WHERE subject LIKE 'ip:%' OR subject LIKE 'link:%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(rows >= 2);
}

#[test]
fn an_upload_link_accepts_files_and_shows_nothing() {
    let gw = Gateway::start();
    gw.put("/inbox/report.txt", b"original");
    let url = gw.link(&["/inbox", "--role", "upload"]);
    let html = text(get(&url));
    assert!(html.contains("enctype=\"multipart/form-data\""), "{html}");
    assert!(
        !html.contains("report.txt"),
        "an upload link lists nothing: {html}"
    );
    let action = {
        let start = html.find("action=\"").unwrap() + 8;
        let end = start + html[start..].find('"').unwrap();
        gw.absolute(&unescape(&html[start..end]))
    };

    let sqlite = std::env::var_os("LOFT_TEST_CLI_SCALE_OUT").is_none();
    let journal_before = if sqlite {
        gw.server.count("journal")
    } else {
        0
    };
    let big = random_bytes(2 * MIB + 99, 11);
    let form = multipart::Form::new()
        .part(
            "file",
            multipart::Part::bytes(b"from a stranger".to_vec()).file_name("report.txt"),
        )
        .part(
            "file",
            multipart::Part::bytes(big.clone()).file_name("scan.bin"),
        );
    let response = client().post(&action).multipart(form).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let result = text(response);
    assert!(
        result.contains("report (1).txt") && result.contains("scan.bin"),
        "{result}"
    );

    // The name clash got a suffix; the original is untouched; both are journaled.
    assert_eq!(gw.get("/inbox/report.txt"), b"original");
    assert_eq!(gw.get("/inbox/report (1).txt"), b"from a stranger");
    assert!(gw.get("/inbox/scan.bin") == big);
    if sqlite {
        assert!(gw.server.count("journal") >= journal_before + 2);
    }
    let listing = gw.alice.ok(&["ls", "/inbox"]);
    assert!(listing.contains("report (1).txt"), "{listing}");

    // Nothing can be read through it: no download URL is ever made for it, and
    // pages below it do not exist.
    assert_eq!(
        get(&format!("{url}/report.txt")).status(),
        StatusCode::NOT_FOUND
    );
    let links = gw.alice.json(&["link", "list", "--json"]);
    let id = links[0]["id"].as_u64().unwrap();
    let guess = format!(
        "http://{}/d/{id}/report.txt?exp=99999999999&sig=00",
        gw.http
    );
    assert_eq!(get(&guess).status(), StatusCode::FORBIDDEN);
    // A viewer link cannot upload.
    let viewer = gw.link(&["/inbox"]);
    let secret = viewer.rsplit('/').next().unwrap();
    let form = multipart::Form::new().part(
        "file",
        multipart::Part::bytes(b"x".to_vec()).file_name("x.txt"),
    );
    let response = client()
        .post(format!("http://{}/u/{secret}", gw.http))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        gw.alice
            .run(&["get", "/inbox/x.txt", "/dev/null"])
            .status
            .code()
            != Some(0)
    );
}

#[test]
fn max_downloads_counts_completed_downloads() {
    let gw = Gateway::start();
    let data = random_bytes(MIB / 2, 5);
    gw.put("/twice.bin", &data);
    let url = gw.link(&["/twice.bin", "--max-downloads", "2"]);
    let download = gw.absolute(&download_href(&text(get(&url))));

    // A partial range that stops short of the end is not a completed download.
    assert_eq!(
        get_range(&download, "bytes=0-99").status(),
        StatusCode::PARTIAL_CONTENT
    );
    assert!(get(&download).bytes().unwrap().as_ref() == data.as_slice());
    let count = |gw: &Gateway| gw.alice.json(&["link", "list", "--json"])[0]["downloads"].as_u64();
    wait_for("the first download to count", DEADLINE, || {
        (count(&gw) == Some(1)).then_some(())
    });
    assert_eq!(get(&url).status(), StatusCode::OK);
    assert!(get(&download).bytes().unwrap().as_ref() == data.as_slice());
    wait_for("the link to be used up", DEADLINE, || {
        (get(&url).status() == StatusCode::NOT_FOUND).then_some(())
    });
    assert_eq!(get(&download).status(), StatusCode::NOT_FOUND);
    assert_eq!(count(&gw), Some(2));
}

#[test]
fn a_revoked_link_looks_like_one_that_never_existed() {
    let gw = Gateway::start();
    gw.put("/a.txt", b"a");
    let created = gw.link_json(&["/a.txt"]);
    let url = created["url"].as_str().unwrap().to_string();
    let id = created["id"].as_u64().unwrap().to_string();
    let download = gw.absolute(&download_href(&text(get(&url))));

    // Another user cannot revoke it.
    gw.server.add_user("bob");
    let bob = Device::login(&gw.server, "bob", "phone");
    assert!(bob.fails(&["link", "revoke", &id]).contains("not found"));
    assert_eq!(get(&url).status(), StatusCode::OK);

    let out = gw.alice.ok(&["link", "revoke", &id]);
    assert!(out.contains(&format!("revoked link {id}")));
    let revoked = get(&url);
    assert_eq!(revoked.status(), StatusCode::NOT_FOUND);
    let revoked_body = text(revoked);
    assert_eq!(get(&download).status(), StatusCode::NOT_FOUND);
    let never = format!("http://{}/l/{}", gw.http, "A".repeat(43));
    let never_response = get(&never);
    assert_eq!(never_response.status(), StatusCode::NOT_FOUND);
    assert_eq!(text(never_response), revoked_body);

    let list = gw.alice.json(&["link", "list", "--json"]);
    assert_eq!(list[0]["revoked"], true);
    assert_eq!(list[0]["live"], false);
    assert!(gw.alice.ok(&["link", "list"]).contains("revoked"));
    assert!(
        gw.alice
            .fails(&["link", "revoke", "9999"])
            .contains("not found")
    );
    assert!(
        gw.alice
            .fails(&["link", "revoke", "abc"])
            .contains("numbers")
    );
}

#[test]
fn link_secrets_and_passwords_are_not_in_the_database() {
    let gw = Gateway::start();
    gw.put("/s.txt", b"s");
    let password = gw.password_file("hunter2 is my password");
    let url = gw.link(&["/s.txt", "--password-file", &password]);
    let secret = url.rsplit('/').next().unwrap().to_string();
    assert!(secret.len() >= 22, "at least 128 bits: {secret}");
    // Two links to one file share nothing: the secret comes from no id or path.
    let again = gw.link(&["/s.txt"]);
    assert_ne!(again.rsplit('/').next().unwrap(), secret);

    let mut stored = Vec::new();
    for name in ["meta.sqlite", "meta.sqlite-wal"] {
        if let Ok(bytes) = std::fs::read(gw.server.data.join(name)) {
            stored.extend(bytes);
        }
    }
    let contains = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(secret.as_bytes()),
        "the link secret is stored in plaintext"
    );
    assert!(
        !contains(b"hunter2 is my password"),
        "the password is stored in plaintext"
    );
    let (hash, password_hash): (Vec<u8>, String) = gw
        .server
        .db()
        .query_row(
            "SELECT secret_hash, password_hash FROM links WHERE password_hash IS NOT NULL",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(hash.len(), 32);
    assert!(password_hash.starts_with("$argon2id$"));
}

#[test]
fn healthz_and_metrics() {
    let gw = Gateway::start();
    let health = get(&format!("http://{}/healthz", gw.http));
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(text(health).trim(), "ok");

    gw.put("/m.txt", b"twelve bytes");
    let url = gw.link(&["/m.txt"]);
    let download = gw.absolute(&download_href(&text(get(&url))));
    assert_eq!(get(&download).bytes().unwrap().as_ref(), b"twelve bytes");
    assert_eq!(
        get(&format!("http://{}/nothing", gw.http)).status(),
        StatusCode::NOT_FOUND
    );

    let metrics = wait_for("the download to be counted", DEADLINE, || {
        let metrics = text(get(&format!("http://{}/metrics", gw.http)));
        metrics
            .contains("loft_link_downloads_total 1\n")
            .then_some(metrics)
    });
    for line in [
        "# TYPE loft_http_requests_total counter",
        "loft_http_requests_total{route=\"download\",status=\"200\"} 1",
        "loft_http_requests_total{route=\"page\",status=\"200\"} 1",
        "loft_http_requests_total{route=\"healthz\",status=\"200\"} 1",
        "loft_http_requests_total{route=\"other\",status=\"404\"} 1",
        "loft_http_bytes_served_total 12",
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }
    let connections = metrics
        .lines()
        .find_map(|l| l.strip_prefix("loft_grpc_connections_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .expect("gRPC connection counter");
    assert!(connections >= 1);
}

#[test]
fn bad_link_requests_are_refused_and_change_nothing() {
    let gw = Gateway::start();
    gw.put("/docs/f.txt", b"f");
    let fails = |args: &[&str]| {
        let mut all = vec!["link", "create"];
        all.extend_from_slice(args);
        gw.alice.fails(&all)
    };
    assert!(fails(&["/missing.txt"]).contains("not found"));
    assert!(fails(&["/docs/f.txt", "--role", "upload"]).contains("folder"));
    assert!(fails(&["/docs/f.txt", "--max-downloads", "0"]).contains("at least 1"));
    assert!(fails(&["/docs/f.txt", "--expires", "soon"]).contains("soon"));
    assert!(fails(&["docs/f.txt"]).contains("start with '/'"));
    let empty = gw.files.path().join("empty-password");
    std::fs::write(&empty, "\n").unwrap();
    assert!(fails(&["/docs/f.txt", "--password-file", &empty.to_string_lossy()]).contains("empty"));

    // Another user cannot see, so cannot link, alice's files.
    gw.server.add_user("bob");
    let bob = Device::login(&gw.server, "bob", "phone");
    assert!(
        bob.fails(&["link", "create", "/docs/f.txt"])
            .contains("not found")
    );
    assert_eq!(gw.server.count("links"), 0);

    // Garbage on the gateway is a 404, never a crash.
    for path in [
        "/l/",
        "/l/x",
        "/l/%ff%fe",
        "/d/abc/x",
        "/d/1/x?exp=1&sig=zz",
        "/u/x",
    ] {
        let status = get(&format!("http://{}{path}", gw.http)).status();
        assert!(status.is_client_error(), "{path}: {status}");
    }

    // A server without a gateway says how to get one.
    let plain = TestServer::start();
    plain.add_user("carol");
    let carol = Device::login(&plain, "carol", "pc");
    let local = gw.files.path().join("c.txt");
    std::fs::write(&local, "c").unwrap();
    carol.put(&local, "/c.txt");
    assert!(
        carol
            .fails(&["link", "create", "/c.txt"])
            .contains("--http")
    );
}
