//! Work that must not take CPU from requests: it runs on a thread of its own at a
//! lower scheduling priority, so that when the cores are busy, serving clients (and
//! anything else on the machine) goes first.

use tokio::sync::oneshot;

use crate::error::{Result, ServerError};

/// How much the thread lowers its priority (`nice` steps): at 10 it gets about a
/// tenth of the CPU a default thread gets when both want the same core.
const NICENESS: i32 = 10;

/// Runs `work` on a new thread named `name` at a lower priority, and returns its result.
pub async fn run<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (done, result) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_priority();
            let _ = done.send(work());
        })
        .map_err(|e| ServerError::internal(format!("starting the {name} thread: {e}")))?;
    result
        .await
        .map_err(|_| ServerError::internal(format!("the {name} thread stopped early")))
}

/// Lowers the calling thread's priority; a failure leaves it as it was.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // On Linux the nice value belongs to the thread, and `who = 0` is the caller.
        // SAFETY: setpriority reads only its integer arguments.
        let lowered = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICENESS) };
        if lowered != 0 {
            tracing::debug!(
                "lowering a background thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_work_runs_on_a_thread_of_lower_priority() {
        let (name, nice) = run("loft-test-bg", || {
            // SAFETY: getpriority reads only its integer arguments.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            (std::thread::current().name().map(str::to_string), nice)
        })
        .await
        .unwrap();
        assert_eq!(name.as_deref(), Some("loft-test-bg"));
        // SAFETY: as above.
        let here = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(nice, (here + NICENESS).min(19));
    }
}
