//! Riptide's fault injector: it starts and breaks OS processes and TCP links on purpose.
//! It knows nothing of Raft: it controls child processes (signals) and TCP links (proxies).
//!
//! The pieces, from the bottom up:
//! - [`supervisor`]: [`Supervisor`] runs each node as a child process with its output captured to a
//!   log file, and kills (`SIGKILL`), stops (`SIGTERM` then `SIGKILL`), pauses (`SIGSTOP`), resumes
//!   (`SIGCONT`) and restarts it. No child outlives the supervisor, even when the harness is killed.
//! - [`proxy`]: [`LinkProxy`] forwards one directed link (node A to node B) over loopback TCP and can
//!   blackhole, reject, delay or throttle it at any moment while traffic flows.
//! - [`network`]: [`Network`] owns the proxies of every directed pair of an N-node cluster and applies
//!   whole topologies ([`Cuts`]): halves, isolation, majorities ring, bridge, slow links.
//! - [`fault`]: the vocabulary ([`FaultKind`], with stable kebab-case names for the CLI) and concrete,
//!   seeded fault instances ([`FaultPlan`]) with their history events ([`NemesisEvent`]).
//! - [`schedule`]: a seeded [`Schedule`] of fault instances, serializable for exact replay.
//! - [`nemesis`]: [`apply`] a planned fault to a running cluster and [`heal`] it again, or
//!   [`run_schedule`] to do so for a whole schedule.
//!
//! Nodes are 0-based indices everywhere in this API; human-readable descriptions name node `i` as
//! `n{i+1}` (see [`node_name`]).

pub mod error;
pub mod fault;
pub mod nemesis;
pub mod network;
pub mod proxy;
pub mod schedule;
pub mod supervisor;

pub use error::NemesisError;
pub use fault::{
    known_names, node_name, parse_fault_list, FaultFamily, FaultKind, FaultOptions, FaultPlan,
    NemesisEvent, ALL_KINDS,
};
pub use nemesis::{apply, cuts_of, heal, run_schedule, ActiveFault, Undo};
pub use network::{Cuts, Network};
pub use proxy::{LinkFault, LinkProxy, LinkStats};
pub use schedule::{Schedule, ScheduleSpec, ScheduledFault};
pub use supervisor::{ExitInfo, ProcessSpec, ProcessState, Supervisor};
