//! A password link opened in headless Chromium (through chromedriver's WebDriver API):
//! the page asks for the password, the password is typed and sent, and the file the
//! browser downloads (DevTools download behaviour) is the file on the drive. Screenshots
//! of the pages are written to `LOFT_SCREENSHOT_DIR` when it is set (README shows them
//! from `docs/`).
//!
//! CI runs this as its own stage with `LOFT_REQUIRE_BROWSER=1`; elsewhere it is skipped
//! when `chromium` and `chromedriver` are not installed.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session in it.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

impl Browser {
    fn start(profile: &Path, downloads: &Path) -> Browser {
        // A free port for chromedriver, which cannot pick one itself and report it.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
        };
        wait_for("chromedriver to answer", DEADLINE, || {
            let status = browser.http.get(format!("{}/status", browser.base)).send();
            status.ok().filter(|r| r.status().is_success()).map(|_| ())
        });
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--window-size=900,640",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.to_string_lossy(),
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let reply = browser.call("POST", "/session", capabilities);
        browser.session = reply["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_string();
        // Headless Chromium downloads only where DevTools says it may.
        browser.session_call(
            "POST",
            "/goog/cdp/execute",
            json!({ "cmd": "Browser.setDownloadBehavior", "params": {
                "behavior": "allow", "downloadPath": downloads.to_string_lossy(),
            }}),
        );
        browser
    }

    /// A WebDriver call; returns its `value`.
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        };
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let text = response.text().expect("a WebDriver reply");
        let value: Value = serde_json::from_str(&text).expect("WebDriver JSON");
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) {
        self.session_call("POST", "/url", json!({ "url": url }));
    }

    fn element(&self, css: &str) -> String {
        let found = self.session_call(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    fn source(&self) -> String {
        self.session_call("GET", "/source", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("LOFT_SCREENSHOT_DIR") else {
            return;
        };
        let png = self.session_call("GET", "/screenshot", Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .expect("PNG bytes");
        std::fs::write(PathBuf::from(dir).join(name), bytes).expect("writing the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.http.delete(url).send();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn browser_installed() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

#[test]
fn a_password_link_opens_and_downloads_in_chromium() {
    if !browser_installed() {
        assert!(
            std::env::var_os("LOFT_REQUIRE_BROWSER").is_none(),
            "chromium and chromium-driver are required (scripts/install-packages)"
        );
        eprintln!("skipped: chromium or chromedriver is not installed");
        return;
    }
    let server_files = tempfile::tempdir().expect("tempdir");
    let port_file = server_files.path().join("http-port");
    let server = TestServer::start_with(&[
        "--http",
        "127.0.0.1:0",
        "--http-port-file",
        &port_file.to_string_lossy(),
    ]);
    server.add_user("alice");
    let alice = Device::login(&server, "alice", "laptop");
    let report = "Quarterly report\n\nRevenue grew in every region.\n".repeat(20);
    let local = server_files.path().join("report.txt");
    std::fs::write(&local, &report).expect("local file");
    alice.put(&local, "/work/report.txt");
    let password_file = server_files.path().join("link-password");
    std::fs::write(&password_file, "open sesame\n").expect("password file");
    let out = alice.ok(&[
        "link",
        "create",
        "/work/report.txt",
        "--password-file",
        &password_file.to_string_lossy(),
    ]);
    let url = out.lines().next().expect("the link URL").to_string();
    let open_url = alice.ok(&["link", "create", "/work/report.txt"]);
    let open_url = open_url.lines().next().expect("the link URL").to_string();

    let profile = tempfile::tempdir().expect("profile dir");
    let downloads = tempfile::tempdir().expect("download dir");
    let browser = Browser::start(profile.path(), downloads.path());

    // A link without a password: the page with its preview (for README).
    browser.open(&open_url);
    assert!(browser.source().contains("Revenue grew"));
    browser.screenshot("link-page.png");

    // The password link: the form, the password typed, the file downloaded.
    browser.open(&url);
    let page = browser.source();
    assert!(page.contains("protected by a password"), "{page}");
    let field = browser.element("#password");
    browser.session_call(
        "POST",
        &format!("/element/{field}/value"),
        json!({ "text": "open sesame" }),
    );
    browser.screenshot("link-password.png");
    let unlock = browser.element("#unlock");
    browser.session_call("POST", &format!("/element/{unlock}/click"), json!({}));
    let saved = downloads.path().join("report.txt");
    wait_for("the browser to save the file", COMMAND_DEADLINE, || {
        std::fs::read(&saved)
            .ok()
            .filter(|bytes| bytes.len() == report.len())
    });
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), report);
}
