//! Rate limits end to end: a real `loft-server` with tight limits set explicitly. The
//! CLI waits out a per-user limit by itself (every command still succeeds) while the
//! server counts the refusals; the HTTP gateway answers 429 with `Retry-After` past the
//! per-address limit; bad limits are refused at start.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::*;
use reqwest::StatusCode;
use reqwest::blocking::Client;

/// The value of counter `name` in the gateway's `/metrics`.
fn counter(http: SocketAddr, name: &str) -> u64 {
    let text = metrics(http);
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
        .parse()
        .expect("a counter value")
}

#[test]
fn the_client_waits_out_the_per_user_limit() {
    let (server, http) = TestServer::start_with_gateway(&["--rate-limit", "user=2,ip=off"]);
    let dir = tempfile::tempdir().expect("tempdir");
    server.add_user("alice");
    let alice = Device::login(&server, "alice", "laptop");
    let local = dir.path().join("note.txt");
    std::fs::write(&local, b"hello\n").unwrap();
    // Each command makes several calls: far more than two a second in all.
    for round in 0..4 {
        alice.put(&local, &format!("/note-{round}.txt"));
        let listed = alice.ok(&["ls", "/"]);
        assert!(listed.contains(&format!("note-{round}.txt")), "{listed}");
    }
    assert!(
        counter(http, "loft_grpc_rate_limited_total") > 0,
        "no call was refused; the limit did not apply"
    );
    // Nothing was lost or doubled by the retries.
    let listed = alice.ok(&["ls", "/"]);
    assert_eq!(listed.matches("note-").count(), 4, "{listed}");
}

#[test]
fn the_gateway_answers_429_past_the_address_limit() {
    let (_server, http) = TestServer::start_with_gateway(&["--rate-limit", "user=off,ip=3"]);
    let client = Client::new();
    let refused = (0..50)
        .map(|_| {
            client
                .get(format!("http://{http}/healthz"))
                .send()
                .expect("GET /healthz")
        })
        .find(|response| response.status() == StatusCode::TOO_MANY_REQUESTS)
        .expect("50 requests at once never hit a limit of 3 a second");
    let wait: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert!(refused.text().unwrap().contains("Too many requests"));
    // After the wait, the address is served again.
    std::thread::sleep(std::time::Duration::from_secs(wait));
    let again = client
        .get(format!("http://{http}/healthz"))
        .send()
        .expect("GET /healthz");
    assert_eq!(again.status(), StatusCode::OK);
}

#[test]
fn bad_rate_limits_are_refused_at_start() {
    for (bad, says) in [
        ("user=0", "user"),
        ("disk=5", "disk"),
        ("ip=fast", "fast"),
        ("user", "user=N"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(server_bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--rate-limit",
                bad,
                "--data",
            ])
            .arg(dir.path())
            .output()
            .expect("running loft-server");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{bad} was accepted");
        assert!(stderr.contains(says), "{bad}: {stderr}");
        // Refused before anything was created.
        assert!(!dir.path().join("meta.sqlite").exists());
    }
}
