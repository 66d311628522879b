//! Campaigns: many `riptide test` runs in sequence over a matrix, and what they found.
//!
//! A single run says little; a nightly campaign over workloads x nemeses x seeds is what finds
//! the rare interleavings. This module tree holds the parts of `riptide campaign` that are not
//! command-line plumbing:
//!
//! - [`matrix`]: the matrix of runs, from flags or a TOML file, its expansion into numbered
//!   entries (seed-major, so a campaign cut short by its budget has still covered every
//!   combination once) and sharding (`--shard I/N`);
//! - [`record`]: `campaign.json` (one [`record::RunRecord`] per matrix entry), merging the
//!   records of several shards, and the campaign's exit code;
//! - [`render`]: the summary table on the terminal, JUnit XML for CI, and the index page in the
//!   store that `riptide serve` links to;
//! - [`bugs`]: the detection matrix of `riptide campaign --bugs`: every planted bug of the node
//!   with the workload and nemesis that should expose it, plus the same runs with no bug.

pub mod bugs;
pub mod matrix;
pub mod record;
pub mod render;

/// The folder of the store that holds one folder per campaign (`<store>/campaigns/<name>-<stamp>/`).
pub const CAMPAIGNS_DIR: &str = "campaigns";
/// File names inside a campaign folder.
pub const CAMPAIGN_FILE: &str = "campaign.json";
pub const JUNIT_FILE: &str = "junit.xml";
pub const INDEX_FILE: &str = "index.html";
