//! The part of `main` both binaries share: the allocator's arenas capped, logging to
//! stderr (filter from `LOFT_LOG`), a tokio runtime, and one `program: error` line
//! with a failure exit code.
//!
//! A process whose runtime does background work for threads of its own (a mount:
//! uploads, the change feed and the embedded server on the runtime, the kernel's
//! requests answered on the FUSE session's threads) runs the runtime's threads at a
//! lower priority, so that a program waiting on the mount gets the CPU first.

use std::future::Future;
use std::process::ExitCode;

/// Runs `work` on a new runtime and turns its outcome into the process's exit code.
/// `runtime_nice`: how many nice levels below the process's own its runtime's worker
/// and blocking threads run (0: the same); the thread that calls this keeps its own.
pub fn run_main<E: std::fmt::Display>(
    program: &str,
    default_log: &str,
    runtime_nice: i32,
    work: impl Future<Output = Result<(), E>>,
) -> ExitCode {
    crate::allocator::limit_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOFT_LOG")
                .unwrap_or_else(|_| default_log.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if runtime_nice > 0
        && let Some(own) = thread_nice()
    {
        // A thread inherits its starter's nice value, so each runtime thread sets the
        // value outright rather than lowering what it was born with.
        let lowered = (own + runtime_nice).min(19);
        builder.on_thread_start(move || set_thread_nice(lowered));
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{program}: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The calling thread's nice value. On Linux a nice value belongs to a thread, and a
/// thread starts with that of the thread that starts it.
#[cfg(target_os = "linux")]
fn thread_nice() -> Option<i32> {
    // SAFETY: getpriority with PRIO_PROCESS and 0 reads the calling thread's value;
    // errno is how it tells a failure from a value of -1.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        (nice != -1 || *libc::__errno_location() == 0).then_some(nice)
    }
}

/// Sets the calling thread's nice value; a failure leaves it as it was.
#[cfg(target_os = "linux")]
fn set_thread_nice(nice: i32) {
    // SAFETY: setpriority with PRIO_PROCESS and 0 acts on the calling thread only.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
    }
}

#[cfg(not(target_os = "linux"))]
fn thread_nice() -> Option<i32> {
    None
}

#[cfg(not(target_os = "linux"))]
fn set_thread_nice(_nice: i32) {}
