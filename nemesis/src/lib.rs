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
//! - [`schedule`]: a seeded [`Schedule`] of fault instances with its quiet periods, serializable
//!   for exact replay.
//! - [`nemesis`]: [`apply`] one planned fault to a running cluster and [`heal`] it again.
//! - [`driver`]: [`run_schedule`], the one driver a harness needs: it plays a whole schedule in
//!   time, asks the system under test who leads ([`Primary`]), carries out the faults that act
//!   over time (crash-restarts during an election, leader churn, disk faults), heals on a stop
//!   signal, and tells an [`Observer`] of every start, step, stop and error.
//! - [`disk`]: [`DiskControl`], the seam to the fault-injecting filesystem the `disk` faults need.
//! - [`membership`]: [`MembershipControl`], the seam to the system's membership API and the spare
//!   node slots the `membership` faults need.
//!
//! Nodes are 0-based indices everywhere in this API; human-readable descriptions name node `i` as
//! `n{i+1}` (see [`node_name`]).
//!
//! # Wiring a cluster
//! ```no_run
//! # async fn example(peer_addrs: Vec<std::net::SocketAddr>) -> Result<(), riptide_nemesis::NemesisError> {
//! use std::time::Duration;
//! use riptide_nemesis::*;
//! use tokio::sync::Mutex;
//!
//! // One proxy per directed link, to each node's real peer address.
//! let network = Network::start(peer_addrs.clone()).await?;
//! let mut supervisor = Supervisor::new();
//! for node in 0..peer_addrs.len() {
//!     // Node `node` listens for peers on its real address and reaches each peer through its
//!     // proxy: one `--peer ID=ADDR` per peer, IDs from 1.
//!     let mut spec = ProcessSpec::new("riptide-server", format!("nodes/{}.log", node_name(node)))
//!         .args(["--id", &(node + 1).to_string()])
//!         .args(["--data-dir", &format!("data/{}", node_name(node))])
//!         .args(["--listen-peer", &peer_addrs[node].to_string()]);
//!     for (peer, addr) in network.peer_addrs(node)? {
//!         spec = spec.arg("--peer").arg(format!("{}={addr}", peer + 1));
//!     }
//!     supervisor.spawn(spec).await?;
//! }
//! let supervisor = Mutex::new(supervisor);
//!
//! // A seeded schedule, stored with the run for `--replay`.
//! let spec = ScheduleSpec {
//!     seed: 42,
//!     faults: parse_fault_list("partition,kill,crash,leader-churn")?,
//!     nodes: peer_addrs.len(),
//!     interval_ms: 3_000,
//!     quiet_ms: Some(1_000),
//!     options: FaultOptions::default(),
//! };
//! let schedule = Schedule::generate(spec, Duration::from_secs(60))?;
//!
//! // Who leads: here a fixed answer; a harness asks the nodes.
//! let primary = || async { Some(0) };
//! let targets = Targets { supervisor: &supervisor, network: &network, primary: &primary, disk: None, membership: None };
//! let mut observer = |notice: &Notice| {
//!     if let Some(event) = notice.history_event() {
//!         println!("{:?} {event:?}", notice.at); // {f: "start-partition", value: "partition halves ..."}
//!     }
//! };
//! let stop = tokio::signal::ctrl_c();
//! let report = run_schedule(&schedule, tokio::time::Instant::now(), &targets, &mut observer, async {
//!     let _ = stop.await;
//! })
//! .await?;
//! println!("{} faults, {} errors", report.faults.len(), report.errors.len());
//! # Ok(())
//! # }
//! ```

pub mod disk;
pub mod driver;
pub mod error;
pub mod fault;
pub mod membership;
pub mod nemesis;
pub mod network;
pub mod ports;
pub mod proxy;
pub mod schedule;
pub mod supervisor;

pub use disk::{DiskControl, DiskEffect, DiskError};
pub use driver::{
    check_supported, run_schedule, FaultFailure, FaultInterval, LogView, NodeView, Notice,
    NoticeKind, Observer, Primary, ScheduleReport, Targets,
};
pub use error::NemesisError;
pub use fault::{
    corrupt_all_seed, known_names, node_name, parse_fault_list, FaultFamily, FaultKind,
    FaultOptions, FaultPlan, NemesisEvent, Requirement, VoterCrash, ALL_KINDS,
};
pub use membership::{BoxFuture, ChangeOutcome, MemberChange, MembershipControl, MembershipError};
pub use nemesis::{apply, cuts_of, heal, ActiveFault, Undo};
pub use network::{Cuts, Network};
pub use ports::{free_port, ReservedPort};
pub use proxy::{LinkFault, LinkProxy, LinkStats};
pub use schedule::{Schedule, ScheduleSpec, ScheduledFault};
pub use supervisor::{ExitInfo, ProcessSpec, ProcessState, Supervisor};
