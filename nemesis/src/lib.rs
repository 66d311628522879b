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
//!
//! # Wiring a cluster
//! ```no_run
//! # async fn example(peer_addrs: Vec<std::net::SocketAddr>) -> Result<(), riptide_nemesis::NemesisError> {
//! use std::time::Duration;
//! use riptide_nemesis::*;
//!
//! // One proxy per directed link, to each node's real peer address.
//! let network = Network::start(peer_addrs.clone()).await?;
//! let mut supervisor = Supervisor::new();
//! for node in 0..peer_addrs.len() {
//!     // Node `node` reaches each peer through its proxy.
//!     let peers: Vec<String> = network
//!         .peer_addrs(node)?
//!         .iter()
//!         .map(|(peer, addr)| format!("{}={addr}", node_name(*peer)))
//!         .collect();
//!     let spec = ProcessSpec::new("riptide-server", format!("nodes/{}.log", node_name(node)))
//!         .arg("--peers")
//!         .arg(peers.join(","));
//!     supervisor.spawn(spec).await?;
//! }
//!
//! // A seeded schedule, stored with the run for `--replay`.
//! let spec = ScheduleSpec {
//!     seed: 42,
//!     faults: parse_fault_list("partition,kill")?,
//!     nodes: peer_addrs.len(),
//!     interval_ms: 5_000,
//!     options: FaultOptions::default(),
//! };
//! let schedule = Schedule::generate(spec, Duration::from_secs(60))?;
//! for fault in &schedule.faults {
//!     let active = apply(&fault.plan, &mut supervisor, &network, Some(0)).await?;
//!     println!("{:?}", active.start_event()); // {f: "start-partition", value: "partition halves ..."}
//!     let stop = heal(&active, &mut supervisor, &network).await?;
//!     println!("{stop:?}");
//! }
//! # Ok(())
//! # }
//! ```

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
