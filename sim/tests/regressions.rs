//! Seeds that once failed, each named for what it found; each must keep passing.
//! A new failing seed (`loft-sim --seed N`, replayed with `LOFT_SEED=N`) joins
//! them once fixed and passing reliably.

use std::time::Duration;

use loft_sim::{FaultSet, SimConfig, run};

fn passes(seed: u64, faults: FaultSet) {
    let config = SimConfig {
        faults,
        settle: Duration::from_secs(60),
        ..SimConfig::new(seed)
    };
    if let Err(failure) = run(&config) {
        panic!(
            "seed {seed} ({faults:?}) failed: {}\n{}",
            failure.reason,
            failure.report.trace.join("\n")
        );
    }
}

/// Device1 wrote `b/y/f4` while device0 removed `b/y`, which it saw empty. The
/// file's creation was refused (its folder gone on the server) and the file was
/// stranded: dirty, unknown to the server, with nothing queued to send it. Now the
/// folder is made again with the file in it.
#[test]
fn outage_seed_4_a_file_made_in_a_folder_removed_elsewhere_reaches_the_server() {
    passes(4, FaultSet::Outages);
}
