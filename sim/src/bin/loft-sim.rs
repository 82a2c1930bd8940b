//! `loft-sim`: runs seeds of the multi-device simulation and prints one line per seed;
//! a failing seed prints its trace and the command that replays it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use loft_sim::{FaultSet, SimConfig, run, seed_from_env};

#[derive(Parser)]
#[command(about = "Simulates Loft devices syncing through faults, seed by seed")]
struct Args {
    /// Run only this seed (also taken from LOFT_SEED).
    #[arg(long)]
    seed: Option<u64>,
    /// The first seed of a range.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// How many seeds, from --from.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// Devices per run.
    #[arg(long, default_value_t = 3)]
    devices: usize,
    /// Steps per run.
    #[arg(long, default_value_t = 120)]
    steps: usize,
    /// Seconds the devices get to agree once the faults stop.
    #[arg(long, default_value_t = 60)]
    settle: u64,
    /// Which faults the schedules draw.
    #[arg(long, value_enum, default_value_t = FaultSet::All)]
    faults: FaultSet,
    /// Print every seed's trace, not only failing ones.
    #[arg(long)]
    trace: bool,
    /// Keep each seed's log in memory (LOFT_LOG's filter, `loft_vfs=debug,loft_cache=trace,info` by
    /// default) and write a failing seed's to DIR/seed-N.log, with its trace.
    #[arg(long, value_name = "DIR")]
    failure_logs: Option<PathBuf>,
}

/// One seed's log, kept until the seed's outcome is known.
#[derive(Clone, Default)]
struct SeedLog(Arc<Mutex<Vec<u8>>>);

impl SeedLog {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Write for SeedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs to stderr as LOFT_LOG says (off by default), or into `seed_log` when failing
/// seeds keep theirs.
fn init_logging(seed_log: Option<&SeedLog>) {
    let filter = |default: &str| {
        tracing_subscriber::EnvFilter::try_from_env("LOFT_LOG").unwrap_or_else(|_| default.into())
    };
    match seed_log {
        Some(log) => {
            let log = log.clone();
            tracing_subscriber::fmt()
                .with_env_filter(filter("loft_vfs=debug,loft_cache=trace,info"))
                .with_ansi(false)
                .with_writer(move || log.clone())
                .init();
        }
        None => tracing_subscriber::fmt()
            .with_env_filter(filter("off"))
            .with_writer(std::io::stderr)
            .init(),
    }
}

/// Writes a failing seed's log and trace to `dir/seed-N.log`.
fn keep_failure_log(
    dir: &std::path::Path,
    seed: u64,
    log: Vec<u8>,
    failure: &impl std::fmt::Display,
) {
    let path = dir.join(format!("seed-{seed}.log"));
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&log)?;
        writeln!(file, "{failure}")
    });
    match written {
        Ok(()) => println!("     log: {}", path.display()),
        Err(error) => println!("     log not written to {}: {error}", path.display()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seed_log = args.failure_logs.as_ref().map(|_| SeedLog::default());
    init_logging(seed_log.as_ref());
    let seeds: Vec<u64> = match args.seed.or_else(seed_from_env) {
        Some(seed) => vec![seed],
        None => (args.from..args.from + args.seeds).collect(),
    };
    let mut failed = Vec::new();
    for seed in &seeds {
        let config = SimConfig {
            devices: args.devices,
            steps: args.steps,
            faults: args.faults,
            settle: Duration::from_secs(args.settle),
            ..SimConfig::new(*seed)
        };
        if let Some(log) = &seed_log {
            log.take();
        }
        match run(&config) {
            Ok(report) => {
                println!("ok   {report}");
                if args.trace {
                    for line in &report.trace {
                        println!("       {line}");
                    }
                }
            }
            Err(failure) => {
                println!("FAIL {failure}");
                if let (Some(dir), Some(log)) = (&args.failure_logs, &seed_log) {
                    keep_failure_log(dir, *seed, log.take(), &failure);
                }
                failed.push(*seed);
            }
        }
    }
    println!(
        "{} of {} seeds passed{}",
        seeds.len() - failed.len(),
        seeds.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; failed: {failed:?}")
        }
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
