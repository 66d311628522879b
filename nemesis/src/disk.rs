//! The seam to a fault-injecting filesystem under the nodes' data directories.
//!
//! The nemesis kills and restarts nodes; what happens to their files in between (unsynced writes
//! lost as in a power cut, a write torn in half, bits flipped in a stopped node's file) is up to the
//! filesystem layer the harness mounts under each data directory. The harness implements
//! [`DiskControl`] over that layer and hands it to [`crate::run_schedule`] through
//! [`crate::Targets::disk`]; the `disk` fault family is refused when it does not.
//!
//! Every method is called while the node is dead (after `SIGKILL`, before the restart), from the
//! task that plays the schedule: it should return within milliseconds.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What a disk fault did to a node's files, for the run's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskEffect {
    /// The files it changed.
    pub files: Vec<PathBuf>,
    /// How many bytes it dropped, cut off or flipped bits in.
    pub bytes: u64,
    /// What it did in a few words, e.g. `dropped 3 unsynced writes (12 KiB) of wal.log`; it is
    /// recorded as a step of the fault.
    pub detail: String,
}

/// An error from the filesystem layer, in its own terms.
pub type DiskError = Box<dyn std::error::Error + Send + Sync>;

/// What the `disk` faults ask of the filesystem layer, per node (0-based index).
pub trait DiskControl: Send + Sync {
    /// Drops every write to the node's data directory that was not fsynced (`lose-unsynced`).
    fn lose_unsynced(&self, node: usize) -> Result<DiskEffect, DiskError>;

    /// Keeps only part of the node's last unsynced write, the part chosen from `seed`
    /// (`torn-write`).
    fn tear_last_write(&self, node: usize, seed: u64) -> Result<DiskEffect, DiskError>;

    /// Flips bits in one of the node's data files (write-ahead log, hard state or snapshot), the
    /// file and the bits chosen from `seed` (`corrupt`).
    fn corrupt(&self, node: usize, seed: u64) -> Result<DiskEffect, DiskError>;
}
