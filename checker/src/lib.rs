//! Riptide's linearizability checker.
//!
//! Data path: a recorded [`history`] of events is paired into operations, partitioned by a model
//! (per key for `kv`), each partition is searched for a linearization (Wing & Gong with Lowe's
//! cache, as Porcupine does), and the verdicts are gathered with a readable counterexample.

pub mod history;
