//! The part of `main` both binaries share: the allocator's arenas capped, logging to
//! stderr (filter from `LOFT_LOG`), a tokio runtime, and one `program: error` line
//! with a failure exit code.

use std::future::Future;
use std::process::ExitCode;

/// Runs `work` on a new runtime and turns its outcome into the process's exit code.
pub fn run_main<E: std::fmt::Display>(
    program: &str,
    default_log: &str,
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
    let runtime = match tokio::runtime::Runtime::new() {
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
