//! A deterministic simulation of several Loft devices syncing through one server,
//! with faults injected between them.
//!
//! A seed draws a schedule ([`run::schedule`]): file operations on each device, the
//! fault mode of each device's link (lost requests, lost replies, delays, duplicated
//! and reordered feed deliveries, broken streams, a cut network) and server restarts,
//! on a clock that moves one tick per step. The devices are real client cores
//! (`loft_vfs`, with their sync engines and change feeds, without a kernel mount);
//! the server is the real one over in-memory stores. Once the faults stop, every
//! device must show the server's tree, and every write a device made (and did not
//! itself replace) must still exist as a file, a conflicted copy or a version.
//!
//! The same seed gives the same schedule; how the engines' threads interleave within
//! a step is up to the machine, so a failing seed is replayed with its trace.

pub mod clock;
pub mod content;
pub mod device;
pub mod faults;
pub mod run;
pub mod server;
pub mod workload;

pub use run::{Failure, FaultSet, Report, SimConfig, run, schedule, seed_from_env};
