//! The Riptide harness as a library: Jepsen-style fault-injection runs against a cluster of
//! real processes, with the `riptide` binary a thin layer over it.
//!
//! - [`system`]: the seams to the system under test, Jepsen's `db` and `client` protocols,
//!   with Riptide as one implementation ([`system::riptide`]).
//! - [`run`]: the engine: a [`run::RunPlan`] in; the cluster driven, the history recorded
//!   ([`run::Recording`]), then analysed into results (check, counterexample, statistics,
//!   verdict).
//! - [`store`]: the run folder and its typed files, written and read by the same types.
//! - [`report`]: `report.html`, rendering only.
//! - [`campaign`]: many runs over a matrix, their records, the planted-bug detection matrix.
//! - [`cli`]: the clap types of every subcommand, how they become plans, and the one place
//!   errors become exit codes.
//!
//! Faults (kill, pause, links, schedules) come from the `riptide_nemesis` crate and checking
//! from `riptide_checker`.

pub mod campaign;
pub mod cli;
pub mod report;
pub mod run;
pub mod store;
pub mod system;
