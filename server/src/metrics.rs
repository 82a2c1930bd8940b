//! Every metric the server exports, defined in one place and rendered in the Prometheus
//! text format (version 0.0.4) at `/metrics` on the HTTP gateway.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most distinct gRPC method paths counted by name (the API has fewer than 100).
const MAX_GRPC_METHODS: usize = 200;

/// The server's counters. Cheap to update from any task.
#[derive(Default)]
pub struct Metrics {
    /// HTTP requests by (route, status code).
    http_requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Body bytes of downloads sent.
    http_bytes_served: AtomicU64,
    /// Completed downloads through links.
    link_downloads: AtomicU64,
    /// Files created through upload links.
    link_uploads: AtomicU64,
    /// Wrong link passwords.
    link_password_failures: AtomicU64,
    /// Password attempts refused because of the throttle.
    link_password_throttled: AtomicU64,
    /// TCP connections the gRPC listener accepted.
    grpc_connections: AtomicU64,
    /// gRPC calls refused by a rate limit.
    grpc_rate_limited: AtomicU64,
    /// gRPC calls received, by method path (`/loft.Commit/CommitBatch`).
    grpc_calls: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn http_request(&self, route: &'static str, status: u16) {
        if let Ok(mut requests) = self.http_requests.lock() {
            *requests.entry((route, status)).or_default() += 1;
        }
    }

    pub fn bytes_served(&self, bytes: u64) {
        self.http_bytes_served.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn link_download(&self) {
        self.link_downloads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn link_upload(&self) {
        self.link_uploads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn password_failure(&self) {
        self.link_password_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn password_throttled(&self) {
        self.link_password_throttled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn grpc_connection(&self) {
        self.grpc_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a gRPC call to `method` (its request path). Paths come from clients,
    /// so past [`MAX_GRPC_METHODS`] distinct ones the rest count as `other`.
    pub fn grpc_call(&self, method: &str) {
        if let Ok(mut calls) = self.grpc_calls.lock() {
            if let Some(count) = calls.get_mut(method) {
                *count += 1;
            } else if calls.len() < MAX_GRPC_METHODS {
                calls.insert(method.to_string(), 1);
            } else {
                *calls.entry("other".to_string()).or_default() += 1;
            }
        }
    }

    pub fn grpc_rate_limited(&self) {
        self.grpc_rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP loft_http_requests_total HTTP requests to the gateway by route and status."
        );
        let _ = writeln!(out, "# TYPE loft_http_requests_total counter");
        if let Ok(requests) = self.http_requests.lock() {
            for ((route, status), count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "loft_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP loft_grpc_calls_total gRPC calls received by method."
        );
        let _ = writeln!(out, "# TYPE loft_grpc_calls_total counter");
        if let Ok(calls) = self.grpc_calls.lock() {
            for (method, count) in calls.iter() {
                let _ = writeln!(out, "loft_grpc_calls_total{{method=\"{method}\"}} {count}");
            }
        }
        let counters: [(&str, &str, &AtomicU64); 7] = [
            (
                "loft_http_bytes_served_total",
                "Download body bytes sent by the gateway.",
                &self.http_bytes_served,
            ),
            (
                "loft_link_downloads_total",
                "Completed downloads through public links.",
                &self.link_downloads,
            ),
            (
                "loft_link_uploads_total",
                "Files created through upload links.",
                &self.link_uploads,
            ),
            (
                "loft_link_password_failures_total",
                "Wrong link passwords.",
                &self.link_password_failures,
            ),
            (
                "loft_link_password_throttled_total",
                "Link password attempts refused by the throttle.",
                &self.link_password_throttled,
            ),
            (
                "loft_grpc_connections_total",
                "TCP connections accepted by the gRPC listener.",
                &self.grpc_connections,
            ),
            (
                "loft_grpc_rate_limited_total",
                "gRPC calls refused by a rate limit (per user or per client address).",
                &self.grpc_rate_limited,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let metrics = Metrics::default();
        metrics.http_request("download", 206);
        metrics.http_request("download", 206);
        metrics.bytes_served(10);
        metrics.grpc_call("/loft.Commit/CommitBatch");
        metrics.grpc_call("/loft.Commit/CommitBatch");
        let text = metrics.render();
        assert!(text.contains("loft_grpc_calls_total{method=\"/loft.Commit/CommitBatch\"} 2\n"));
        assert!(text.contains("loft_http_requests_total{route=\"download\",status=\"206\"} 2\n"));
        assert!(text.contains("# TYPE loft_http_bytes_served_total counter\n"));
        assert!(text.contains("loft_http_bytes_served_total 10\n"));
    }

    #[test]
    fn made_up_grpc_paths_cannot_grow_the_counters_without_bound() {
        let metrics = Metrics::default();
        for i in 0..MAX_GRPC_METHODS + 50 {
            metrics.grpc_call(&format!("/made.Up/M{i}"));
        }
        let text = metrics.render();
        let lines = text.matches("loft_grpc_calls_total{").count();
        assert_eq!(lines, MAX_GRPC_METHODS + 1);
        assert!(text.contains("loft_grpc_calls_total{method=\"other\"} 50\n"));
    }
}
