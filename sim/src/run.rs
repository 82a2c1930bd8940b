//! One simulation run: the schedule a seed draws (operations, fault modes, server
//! restarts), carried out on real client cores and a real server, then the checks
//! once the faults stop and every side goes quiet.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::clock::SimClock;
use crate::device::{Entry, OpError, SimDevice, Tree};
use crate::faults::{FaultMode, Faults};
use crate::server::SimServer;
use crate::workload::{Op, Written, random_op};

/// Real time per tick of the simulation's clock.
const TICK: Duration = Duration::from_millis(5);

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub devices: usize,
    pub steps: usize,
    /// Which faults the schedule draws.
    pub faults: FaultSet,
    /// How long the devices get to agree once the faults stop.
    pub settle: Duration,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            devices: 3,
            steps: 120,
            faults: FaultSet::All,
            settle: Duration::from_secs(60),
        }
    }
}

/// The faults a schedule may draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultSet {
    /// None: devices race each other over a healthy network.
    None,
    /// Server restarts and cut links: devices go offline and come back.
    Outages,
    /// Outages plus lost requests and replies, delays, duplicated and reordered
    /// deliveries and broken streams.
    All,
}

/// One step of a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Op {
        device: usize,
        op: Op,
    },
    Faults {
        device: usize,
        mode: FaultMode,
    },
    ServerDown,
    ServerUp,
    /// Lets the engines run for a while.
    Pause,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Op { device, op } => write!(f, "device{device}: {op}"),
            Step::Faults { device, mode } => write!(f, "device{device}: link {mode}"),
            Step::ServerDown => write!(f, "server: stop"),
            Step::ServerUp => write!(f, "server: start"),
            Step::Pause => write!(f, "pause"),
        }
    }
}

/// The schedule `config` draws from its seed: the same seed, the same schedule.
pub fn schedule(config: &SimConfig) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut writes = vec![0u64; config.devices];
    let mut steps = Vec::with_capacity(config.steps + 8);
    let mut up_at: Option<usize> = None;
    for index in 0..config.steps {
        if up_at == Some(index) {
            steps.push(Step::ServerUp);
            up_at = None;
        }
        let device = rng.random_range(0..config.devices);
        let step = match rng.random_range(0..100) {
            0..72 => Step::Op {
                device,
                op: random_op(&mut rng, config.seed, device, &mut writes[device]),
            },
            72..84 if config.faults != FaultSet::None => {
                let mode = match rng.random_range(0..10) {
                    0..3 => FaultMode::default(),
                    3..5 => FaultMode::cut(),
                    _ if config.faults == FaultSet::All => FaultMode::random(&mut rng),
                    _ => FaultMode::default(),
                };
                Step::Faults { device, mode }
            }
            84..88 if up_at.is_none() && config.faults != FaultSet::None => {
                up_at = Some(index + rng.random_range(1..15));
                Step::ServerDown
            }
            _ => Step::Pause,
        };
        steps.push(step);
    }
    if up_at.is_some() {
        steps.push(Step::ServerUp);
    }
    steps
}

/// What a run did and saw.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    /// The schedule, one line per step, with what each operation returned.
    pub trace: Vec<String>,
    pub ops_done: usize,
    pub ops_failed: usize,
    pub faults: String,
    pub faults_injected: u64,
    /// Writes that had to survive, and did.
    pub writes_kept: usize,
    pub files: usize,
    pub settle: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {} operations ({} refused), {} faults ({}), {} files agree, {} writes kept, quiet after {:?}",
            self.seed,
            self.ops_done + self.ops_failed,
            self.ops_failed,
            self.faults_injected,
            self.faults,
            self.files,
            self.writes_kept,
            self.settle
        )
    }
}

/// A run that broke an invariant: why, and the trace to replay it.
#[derive(Debug)]
pub struct Failure {
    pub reason: String,
    pub report: Box<Report>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} failed: {}", self.report.seed, self.reason)?;
        writeln!(
            f,
            "replay: LOFT_SEED={} cargo run --release -p loft-sim -- --seed {}",
            self.report.seed, self.report.seed
        )?;
        writeln!(f, "trace:")?;
        for line in &self.report.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Runs one seed on a runtime of its own.
pub fn run(config: &SimConfig) -> Result<Report, Failure> {
    let mut report = Report {
        seed: config.seed,
        ..Report::default()
    };
    let outcome = run_into(config, &mut report);
    match outcome {
        Ok(()) => Ok(report),
        Err(error) => Err(Failure {
            reason: format!("{error:#}"),
            report: Box::new(report),
        }),
    }
}

fn run_into(config: &SimConfig, report: &mut Report) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let rt = runtime.handle().clone();
    let clock = SimClock::default();
    let ticking = clock.spawn_ticker(&rt, TICK);
    let mut server = rt.block_on(SimServer::start(config.seed))?;
    let address = server.address();
    let mut devices = Vec::new();
    for index in 0..config.devices {
        let faults = Faults::new(config.seed.rotate_left(8) ^ index as u64, clock.clone());
        devices.push(SimDevice::start(&rt, &address, index, faults)?);
    }
    let mut written = vec![Written::default(); config.devices];

    for step in schedule(config) {
        let mut line = step.to_string();
        match &step {
            Step::Op { device, op } => match devices[*device].apply(op) {
                Ok(file) => {
                    written[*device].completed(op, file);
                    report.ops_done += 1;
                }
                Err(OpError::Torn { len, start }) => {
                    report.trace.push(line);
                    bail!(
                        "device{device}: {op}: a read returned {len} bytes that are no single version: {start:?}"
                    );
                }
                Err(error) => {
                    report.ops_failed += 1;
                    line.push_str(&format!(" -> {error}"));
                }
            },
            Step::Faults { device, mode } => devices[*device].faults.set(mode.clone()),
            Step::ServerDown => rt.block_on(server.down())?,
            Step::ServerUp => rt.block_on(server.up())?,
            Step::Pause => std::thread::sleep(Duration::from_millis(20)),
        }
        report.trace.push(line);
        std::thread::sleep(Duration::from_millis(2));
    }

    // The faults stop; everyone must agree.
    report.trace.push("all links clean, server up".into());
    for device in &devices {
        device.faults.set(FaultMode::default());
    }
    rt.block_on(server.up())?;
    let settle_start = Instant::now();
    let observer = SimDevice::start(&rt, &address, config.devices, Faults::new(0, clock.clone()))?;
    let trees = settle(&devices, &observer, config.settle)?;
    report.settle = settle_start.elapsed();
    report.files = trees.len();

    for device in &devices {
        report.faults_injected += device.faults.counts.total();
    }
    report.faults = devices
        .iter()
        .map(|device| format!("device{}: {}", device.index, device.faults.counts))
        .collect::<Vec<_>>()
        .join("; ");

    report.writes_kept = check_writes_kept(&server, &trees, &written)?;
    drop(devices);
    drop(observer);
    rt.block_on(server.down())?;
    ticking.abort();
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

/// Waits until every device has sent everything and shows the server's tree (as a
/// device with an empty cache sees it); returns that tree.
fn settle(devices: &[SimDevice], observer: &SimDevice, deadline: Duration) -> Result<Tree> {
    let start = Instant::now();
    loop {
        let last_difference;
        if devices.iter().all(SimDevice::is_quiet) {
            match compare(devices, observer) {
                Ok(tree) => return Ok(tree),
                Err(difference) => last_difference = difference,
            }
        } else {
            let busy: Vec<String> = devices
                .iter()
                .filter(|d| !d.is_quiet())
                .map(|d| {
                    format!(
                        "device{} ({} pending, online {}: {})",
                        d.index,
                        d.vfs.pending_changes(),
                        d.vfs.is_online(),
                        d.vfs.describe_pending().join("; ")
                    )
                })
                .collect();
            last_difference = format!("still sending: {}", busy.join(", "));
        }
        if start.elapsed() > deadline {
            bail!("the devices did not agree within {deadline:?}: {last_difference}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server's tree if every device shows exactly it; else what differs.
fn compare(devices: &[SimDevice], observer: &SimDevice) -> Result<Tree, String> {
    let server = observer
        .tree()
        .map_err(|e| format!("reading the server's tree: {e}"))?;
    for device in devices {
        let tree = device
            .tree()
            .map_err(|e| format!("device{}: reading its tree: {e}", device.index))?;
        if tree != server {
            return Err(format!(
                "device{}: {}",
                device.index,
                difference(&server, &tree)
            ));
        }
    }
    Ok(server)
}

fn difference(server: &Tree, device: &Tree) -> String {
    let mut lines = Vec::new();
    let paths: BTreeSet<&String> = server.keys().chain(device.keys()).collect();
    for path in paths {
        let (a, b) = (server.get(path), device.get(path));
        if a != b {
            lines.push(format!(
                "{path}: server {} / device {}",
                describe(a),
                describe(b)
            ));
        }
    }
    lines.join("; ")
}

fn describe(entry: Option<&Entry>) -> String {
    match entry {
        None => "missing".into(),
        Some(Entry::Dir) => "folder".into(),
        Some(Entry::Other) => "special".into(),
        Some(Entry::File {
            len, token, head, ..
        }) => match token {
            Some(token) => format!("device{} write {}", token.device, token.write),
            None if *len == 0 => "0 bytes".into(),
            None => format!("{len} bytes starting {head:?}"),
        },
    }
}

/// Every write that no later operation on its own device replaced must exist on the
/// server: as a current file (a conflicted copy included) or an old version, in the
/// drive or in the trash. Returns how many were checked.
fn check_writes_kept(server: &SimServer, tree: &Tree, written: &[Written]) -> Result<usize> {
    let mut kept: HashSet<[u8; 32]> = tree
        .values()
        .filter_map(|entry| match entry {
            Entry::File { hash, .. } => Some(*hash),
            _ => None,
        })
        .collect();
    kept.extend(server.version_hashes()?);
    let mut missing: BTreeMap<String, String> = BTreeMap::new();
    let mut checked = 0;
    for (device, written) in written.iter().enumerate() {
        for (path, token) in &written.files {
            checked += 1;
            if !kept.contains(&token.hash()) {
                missing.insert(
                    format!("device{device} write {}", token.write),
                    format!("last at {path}"),
                );
            }
        }
    }
    if !missing.is_empty() {
        bail!("writes lost (in no file, conflicted copy or version): {missing:?}");
    }
    Ok(checked)
}

/// The seed named by `LOFT_SEED`, if set.
pub fn seed_from_env() -> Option<u64> {
    std::env::var("LOFT_SEED").ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let lines = |seed| {
            schedule(&SimConfig::new(seed))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(lines(42), lines(42));
        assert_ne!(lines(42), lines(43));
        // Every stop of the server is followed by a start.
        let steps = schedule(&SimConfig::new(42));
        let downs = steps.iter().filter(|s| **s == Step::ServerDown).count();
        let ups = steps.iter().filter(|s| **s == Step::ServerUp).count();
        assert_eq!(downs, ups);
    }
}
