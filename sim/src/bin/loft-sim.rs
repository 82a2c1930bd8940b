//! `loft-sim`: runs seeds of the multi-device simulation and prints one line per seed;
//! a failing seed prints its trace and the command that replays it.

use std::process::ExitCode;
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOFT_LOG")
                .unwrap_or_else(|_| "off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
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
