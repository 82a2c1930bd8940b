//! Progress bars for long transfers, drawn on stderr only when it is a terminal.

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use loft_remote::transfer::Progress;

/// A byte-counting bar of `len` bytes and the callback that advances it.
pub fn bytes_bar(len: u64, label: &str) -> (ProgressBar, Progress) {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    let advance = bar.clone();
    (bar, Arc::new(move |delta| advance.inc(delta)))
}
