//! Deterministic simulation of the Raft core: 3- and 5-node clusters in one process.
//!
//! A seeded scheduler drives every node through the real driver contract (ready -> persist ->
//! send -> apply -> advance) while it delays, drops, duplicates and reorders messages,
//! partitions the cluster, skews clocks, pauses processes, isolates or crashes fresh leaders,
//! crashes nodes (also between `ready()` and `advance()`, losing that Ready) and restarts them
//! from their durable state only, starts leadership transfers, with clients proposing writes
//! and ReadIndex reads all along. Drivers snapshot their state machine (at a per-seed
//! threshold and at random points) and compact the log, keeping a per-seed catch-up window in
//! memory (0 to a few dozen entries, so followers are served both from the window and by
//! snapshot, and leaders compact while transfers are under way).
//!
//! Every node's disk is the node's real storage code (`Storage`: `wal.rs`, `hard_state.rs`,
//! `snapshot.rs`) on an in-memory file system (`storage::memfs::MemFs`) that keeps only what
//! was fsynced (names only after a directory fsync). A crash is either the death of the
//! process (every write survives) or a power loss, which per file drops the unsynced writes,
//! keeps them up to a torn last one, or keeps a random subset of their 16-byte sectors
//! (reordering); crashes also fall between any two system calls of persisting a Ready,
//! writing a snapshot, rewriting the WAL after it and installing a leader's snapshot. A WAL
//! refused after a reordering power loss (the documented refusal) is cut where the error
//! says, as an operator would. At some crashes a copy of the disk gets one bit flipped in cold
//! data and must be refused at open naming the file, or open to what the intact disk gives.
//! The network also cuts single links one way, and inputs are fed between `ready()` and
//! `advance()`, as the driver contract allows.
//!
//! Snapshots travel in chunks of a few bytes; and in a quarter of the seeds
//! one node is restarted with an empty data dir (when that is safe, see `Sim::try_wipe`) and
//! must catch up by snapshot. In half the seeds (`membership_seed`) two spare nodes start
//! outside the configuration and leaders change membership at random amid the faults: add a
//! learner (a spare or a removed node), promote one, remove a voter (the leader itself too)
//! or a learner, now and then crashing or cutting off the leader right after it proposed the
//! change; the checks below hold across configurations, and at the end every member of the
//! final configuration must hold every acknowledged write. Pre-vote and check-quorum are drawn per seed (each on in about
//! three seeds of four), so both the production and the classic paths are exercised.
//! After every single event it checks:
//!
//! - **election safety**: at most one leader per term, over the whole run;
//! - **log matching**: every entry ever written at (index, term) anywhere has the same payload
//!   and the same predecessor term (so, by induction, equal prefixes);
//! - **leader completeness**: an entry committed in term T is in the log of every leader of a
//!   term after T;
//! - **state-machine safety**: no two nodes apply different entries at one index, and each
//!   node applies indices in order; a state restored from a snapshot (at restart or install)
//!   equals, by digest, the state the entries up to its index gave;
//! - **log matching across snapshots**: a log a node restarts with chains from its snapshot;
//! - **linearizable reads**: a confirmed read's index covers every write acknowledged before
//!   the read started.
//!
//! At the end it heals everything, lets the cluster settle, and checks that every acknowledged
//! write (applied by the leader that proposed it, index and term matching) is applied on every
//! node. Then the project's checker (`riptide-checker`, the `kv` model) checks what the
//! clients saw: writes `kN=wM` to a few keys per seed, acknowledged when their proposer
//! applies them, and reads answered from the state machine once it has applied the read's
//! index, at most `MAX_IN_FLIGHT_PER_KEY` operations in flight per key (further load goes to
//! a key nobody checks). A write never acknowledged is of unknown outcome unless no node ever
//! applied it. Two planted bugs only this check sees prove it can fail: leaders serving reads
//! locally (with the read-index check off) and snapshots that lose a key.
//!
//! Seeds: 1,000 by default (even seeds run 3 nodes, odd seeds 5); `RIPTIDE_SIM_SEEDS=N` runs N
//! (nightly; `RIPTIDE_SIM_FIRST_SEED=F` starts them at F, so successive nights can explore new
//! seeds), `RIPTIDE_SIM_SEED=S` replays one seed with a trace of its last events (with
//! `RIPTIDE_SIM_HISTORY=FILE`, its client history is written there in the harness's format).
//!
//! The checks are proven able to fail, each with the kind of violation it must give: each
//! planted [`CoreBugs`] flag is caught, by random seeds (skip_log_check, leader_local_reads)
//! or by Raft's Figure 8 played as a script on the same simulator (commit_old_term, which
//! random schedules hit in well under one seed in a thousand); so are the WAL's planted bugs
//! (no-fsync: an acknowledged entry lost to a power loss; wal-trusts-length: a bit flip cut
//! instead of refused, "amnesia"). Two membership changes in flight at once
//! (`two_changes_in_flight`) are caught by a script that partitions the two configurations'
//! disjoint majorities.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use riptide_checker::history::{EventType, Process};
use riptide_checker::{BuiltinModel, CheckOptions, Event, History, Verdict};
use riptide_server::raft::{
    ConfChange, ConfChangeError, Config, CoreBugs, DurableState, Entry, EntryPayload, LogIndex,
    Membership, Message, MessageBody, NodeId, RaftNode, Role, Snapshot, SnapshotMeta, Term,
};
use riptide_server::storage::fs::Fs;
use riptide_server::storage::memfs::{Crash, MemFs};
use riptide_server::storage::wal::{self, WalBugs};
use riptide_server::storage::{Storage, StorageError, HARD_STATE_FILE, SNAPSHOT_FILE, WAL_FILE};

/// Where every simulated node keeps its data, on its own in-memory disk.
const DATA_DIR: &str = "/data";
/// Bytes a power loss keeps or loses together: small, so that it reorders within the few
/// records of one batch (a WAL record here is 30-40 bytes).
const SECTOR_BYTES: usize = 16;

const ELECTION_TICKS: u32 = 10;
const HEARTBEAT_TICKS: u32 = 2;
/// Ticks of faults and client load per seed.
const FAULT_TICKS: u64 = 800;
/// After healing, the cluster fails the liveness check when no node applies anything for
/// this many ticks before it converges (or after the hard cap).
const STALL_TICKS: u64 = 500;
const SETTLE_TICKS_MAX: u64 = 50_000;
const DEFAULT_SEEDS: u64 = 1000;
/// Client operations in flight on one key at most, as a few Jepsen clients per key give:
/// every checker (Knossos, Porcupine, ours) is exponential in the operations concurrent with
/// one another, so further load goes to a key nobody checks (`LOAD_KEY`), and the Raft core
/// still sees dozens of writes in flight.
const MAX_IN_FLIGHT_PER_KEY: usize = 3;
const LOAD_KEY: &str = "load";
/// How long the checker may take for one seed's client history (it needs milliseconds).
const CHECK_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);
/// Events kept for the trace printed when replaying one seed.
const TRACE_EVENTS: usize = 300;

/// How hostile one seed's world is: drawn per seed so seeds explore different mixes.
#[derive(Debug, Clone, Copy)]
struct Weather {
    drop: f64,
    duplicate: f64,
    /// Probability that a message is held for up to three election timeouts.
    long_delay: f64,
    /// Probability per tick of a partition change, crash or restart.
    fault: f64,
    /// Probability per Ready of crashing before or after persisting it.
    crash_in_ready: f64,
    /// Probability per Ready of crashing between two system calls of persisting it.
    crash_in_persist: f64,
    /// Probability per tick that a client proposes (and, half as often, reads).
    client: f64,
    /// Probability that a new leader is isolated or crashed a few ticks after its election,
    /// halfway through catching followers up: leader churn with partial replication, the
    /// ground of Raft's Figure 8.
    depose: f64,
    /// Small batches and windows make old entries travel without the leader's newer ones,
    /// which is where Figure 8 bites.
    max_entries_per_message: usize,
    max_inflight_messages: usize,
    /// The production robustness features, on in most seeds; seeds with them off keep the
    /// classic-Raft paths (deposing elections on rejoin, leaders that never step down) tested.
    pre_vote: bool,
    check_quorum: bool,
    /// The driver snapshots its state machine and compacts the log once it has applied this
    /// many entries past its last snapshot (None: only at random points).
    snapshot_every: Option<u64>,
    /// Probability per Ready that applied something of a snapshot at a random point.
    snapshot_random: f64,
    /// Chunk size of InstallSnapshot (a few bytes, so snapshots travel in many chunks).
    snapshot_chunk_bytes: usize,
    /// `Config::compaction_keep_entries`: entries kept in memory before the snapshot point.
    compaction_keep_entries: u64,
    /// Probability of a crash at each step of writing a snapshot: before it is durable, after
    /// it is durable but before the log prefix is dropped, and in the middle of installing
    /// one received from the leader.
    crash_in_snapshot: f64,
    /// Tick from which one node is wiped (restarted with an empty data dir) as soon as that
    /// is safe (see `Sim::try_wipe`); None: no wipe in this seed.
    wipe_from: Option<u64>,
    /// Probability that a crash is a power loss (unsynced writes lost, torn or reordered)
    /// rather than the death of the process (the page cache survives).
    power_loss: f64,
    /// Probability per crash that a copy of the node's disk gets a bit flipped in cold data
    /// and must be refused at open (see `Sim::check_bit_flip`).
    bit_flip: f64,
    /// One-way link cuts: a fault may cut messages from one node to another only.
    one_way: bool,
    /// Probability per Ready that an input (a due message, a proposal or a tick) is fed to
    /// the node between `ready()` and `advance()`, as the driver contract allows.
    interleave: f64,
}

impl Weather {
    fn random(rng: &mut ChaCha8Rng) -> Weather {
        Weather {
            drop: rng.gen_range(0.0..0.15),
            duplicate: rng.gen_range(0.0..0.1),
            long_delay: rng.gen_range(0.0..0.05),
            fault: rng.gen_range(0.01..0.1),
            crash_in_ready: rng.gen_range(0.0..0.004),
            crash_in_persist: rng.gen_range(0.0..0.02),
            client: rng.gen_range(0.3..0.9),
            depose: *[0.0, 0.3, 0.7].choose(rng).unwrap_or(&0.0),
            max_entries_per_message: *[1, 2, 3, 8, 64].choose(rng).unwrap_or(&8),
            max_inflight_messages: *[1, 2, 4, 16].choose(rng).unwrap_or(&4),
            pre_vote: rng.gen_bool(0.75),
            check_quorum: rng.gen_bool(0.75),
            snapshot_every: *[None, Some(3), Some(8), Some(20), Some(50)]
                .choose(rng)
                .unwrap_or(&None),
            snapshot_random: rng.gen_range(0.0..0.05),
            snapshot_chunk_bytes: *[2, 5, 16, 1 << 20].choose(rng).unwrap_or(&16),
            compaction_keep_entries: *[0, 0, 1, 3, 10, 40].choose(rng).unwrap_or(&0),
            crash_in_snapshot: rng.gen_range(0.0..0.05),
            wipe_from: rng
                .gen_bool(0.5)
                .then(|| rng.gen_range(FAULT_TICKS / 4..FAULT_TICKS * 3 / 4)),
            power_loss: rng.gen_range(0.3..0.9),
            bit_flip: rng.gen_range(0.0..0.5),
            one_way: rng.gen_bool(0.5),
            interleave: *[0.0, 0.1, 0.4].choose(rng).unwrap_or(&0.0),
        }
    }

    fn calm(self) -> Weather {
        Weather {
            max_entries_per_message: self.max_entries_per_message,
            max_inflight_messages: self.max_inflight_messages,
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            snapshot_every: self.snapshot_every,
            snapshot_random: self.snapshot_random,
            snapshot_chunk_bytes: self.snapshot_chunk_bytes,
            compaction_keep_entries: self.compaction_keep_entries,
            crash_in_snapshot: 0.0,
            wipe_from: None,
            power_loss: self.power_loss,
            bit_flip: 0.0,
            one_way: false,
            interleave: 0.0,
            depose: 0.0,
            drop: 0.0,
            duplicate: 0.0,
            long_delay: 0.0,
            fault: 0.0,
            crash_in_ready: 0.0,
            crash_in_persist: 0.0,
            client: 0.0,
        }
    }
}

/// A message on the simulated wire.
struct Flight {
    msg: Message,
    deliver_at: u64,
}

/// One node's disk: an in-memory file system that loses, tears and reorders unsynced
/// writes (`MemFs`), with the node's real storage code on it while the node runs. What
/// survives a crash is exactly what that code made durable there.
#[derive(Debug)]
struct SimDisk {
    fs: MemFs,
    /// The open storage (None while the node is down).
    storage: Option<Storage>,
    /// The last crash was a power loss that kept a later sector of an unsynced WAL write
    /// without an earlier one: the WAL may then refuse to open (documented; see `open_disk`).
    wal_reordered: bool,
}

impl Default for SimDisk {
    fn default() -> SimDisk {
        SimDisk {
            fs: MemFs::with_sector(SECTOR_BYTES),
            storage: None,
            wal_reordered: false,
        }
    }
}

impl SimDisk {
    fn snapshot_index(&self) -> LogIndex {
        self.storage
            .as_ref()
            .and_then(|s| s.snapshot_meta())
            .map_or(0, |m| m.index)
    }
}

/// The simulated state machine: a key-value map that the clients' writes (`k3=w17`) set, the
/// index it applied and a digest of every entry applied up to it, so a state restored from a
/// snapshot can be compared with what the entries gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SimState {
    index: LogIndex,
    digest: u64,
    kv: BTreeMap<String, String>,
}

/// A client write's command: `key=value`. Commands of the scripted scenarios (`x`) set nothing.
fn write_command(key: &str, value: &str) -> Vec<u8> {
    format!("{key}={value}").into_bytes()
}

fn parse_write(command: &[u8]) -> Option<(&str, &str)> {
    std::str::from_utf8(command).ok()?.split_once('=')
}

impl SimState {
    fn apply(&mut self, entry: &Entry) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (self.digest, entry.index, entry.term).hash(&mut hasher);
        match &entry.payload {
            EntryPayload::Noop => 0u8.hash(&mut hasher),
            EntryPayload::Membership(membership) => {
                (2u8, format!("{membership:?}")).hash(&mut hasher)
            }
            EntryPayload::Command(command) => {
                (1u8, command).hash(&mut hasher);
                if let Some((key, value)) = parse_write(command) {
                    self.kv.insert(key.to_string(), value.to_string());
                }
            }
        }
        self.digest = hasher.finish();
        self.index = entry.index;
    }

    /// Snapshot bytes: a few dozen to a few hundred, so small chunk sizes split them. `lossy`
    /// leaves the last key out (a planted bug).
    fn encode(&self, lossy: bool) -> Vec<u8> {
        let mut text = format!("state index={} digest={:016x}", self.index, self.digest);
        let kept = self.kv.len() - usize::from(lossy && !self.kv.is_empty());
        for (key, value) in self.kv.iter().take(kept) {
            text.push_str(&format!(" {key}={value}"));
        }
        text.into_bytes()
    }

    fn decode(data: &[u8]) -> Result<SimState, String> {
        let text = std::str::from_utf8(data).map_err(|e| format!("snapshot: {e}"))?;
        let parse = || -> Option<SimState> {
            let rest = text.strip_prefix("state index=")?;
            let (index, rest) = rest.split_once(" digest=")?;
            let mut fields = rest.split(' ');
            let digest = fields.next()?;
            let kv = fields
                .map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key.to_string(), value.to_string()))
                })
                .collect::<Option<BTreeMap<_, _>>>()?;
            Some(SimState {
                index: index.parse().ok()?,
                digest: u64::from_str_radix(digest, 16).ok()?,
                kv,
            })
        };
        parse().ok_or_else(|| format!("snapshot: garbled data {text:?}"))
    }
}

/// One simulated node: its core (None while crashed), its disk and its state machine.
#[derive(Default)]
struct SimNode {
    raft: Option<RaftNode>,
    /// What survives a crash: exactly what persisted Readies and finished snapshot steps wrote.
    disk: SimDisk,
    /// The state machine (restored from the snapshot, then rebuilt from the log, at restart).
    state: SimState,
    /// Writes proposed here and not yet applied: index -> (term, command, the client's
    /// process in the history; none for scripted writes).
    proposals: HashMap<LogIndex, (Term, Vec<u8>, Option<u64>)>,
    /// Reads in flight here: read id -> the read.
    reads: HashMap<u64, PendingRead>,
    /// Reads confirmed here, answered once the state machine has applied their index.
    serving: Vec<(LogIndex, PendingRead)>,
    /// The term in which this node was last seen leading (leader completeness is checked
    /// once when it takes office).
    led_term: Option<Term>,
    /// The term in which this node, leading, was last seen a non-leader again (counted once).
    stepped_down_term: Option<Term>,
    restarts: u64,
    /// A paused process (think SIGSTOP) neither ticks nor handles anything before this tick;
    /// messages to it wait on the wire.
    paused_until: u64,
}

/// A client's read of one key, in flight on a node.
#[derive(Debug, Clone)]
struct PendingRead {
    /// The highest write acknowledged when it started: the index it must cover.
    min_index: LogIndex,
    key: String,
    /// The client's process in the history (none for load on `LOAD_KEY`).
    process: Option<u64>,
}

/// Counts that show a run exercised something.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    leaders: u64,
    acked_writes: u64,
    confirmed_reads: u64,
    /// Reads answered to their client (and checked by the linearizability checker).
    served_reads: u64,
    crashes: u64,
    delivered: u64,
    /// Seeds run with pre-vote, with check-quorum on.
    pre_vote_seeds: u64,
    check_quorum_seeds: u64,
    /// Leaders that stepped down in their own term (only check-quorum does that: a
    /// transferring leader steps down in its successor's term).
    quorum_step_downs: u64,
    /// Leadership transfers started.
    transfers: u64,
    /// Snapshots taken (and logs compacted) by drivers; snapshots installed from a leader,
    /// and the InstallSnapshot chunks delivered.
    snapshots_taken: u64,
    snapshots_installed: u64,
    snapshot_chunks: u64,
    /// Installs of a snapshot its leader had already replaced by a newer one (a transfer
    /// pinned across a compaction), and AppendEntries delivered with entries the sender's
    /// snapshot covers (served from its catch-up window).
    pinned_installs: u64,
    window_appends: u64,
    /// Crashes while writing a snapshot (before durable, between durable and the log
    /// compaction, mid-install), and nodes restarted with an empty data dir.
    snapshot_crashes: u64,
    wipes: u64,
    wipes_caught_up_by_snapshot: u64,
    /// Crashes that were power losses; bit flips checked on copies of disks; WAL refusals
    /// after a power loss that reordered unsynced writes (cut by the operator); inputs fed
    /// between `ready()` and `advance()`.
    power_losses: u64,
    crashes_in_storage: u64,
    bit_flips: u64,
    reorder_refusals: u64,
    interleaved_inputs: u64,
    /// Seeds with membership changes; changes a leader accepted, and those refused (another
    /// in flight, a learner behind, no active majority after it...); changes whose leader
    /// was crashed or isolated right after proposing them.
    membership_seeds: u64,
    conf_changes: u64,
    conf_refused: u64,
    conf_deposed: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, other: Stats) {
        self.leaders += other.leaders;
        self.acked_writes += other.acked_writes;
        self.confirmed_reads += other.confirmed_reads;
        self.served_reads += other.served_reads;
        self.crashes += other.crashes;
        self.delivered += other.delivered;
        self.pre_vote_seeds += other.pre_vote_seeds;
        self.check_quorum_seeds += other.check_quorum_seeds;
        self.quorum_step_downs += other.quorum_step_downs;
        self.transfers += other.transfers;
        self.snapshots_taken += other.snapshots_taken;
        self.snapshots_installed += other.snapshots_installed;
        self.snapshot_chunks += other.snapshot_chunks;
        self.pinned_installs += other.pinned_installs;
        self.window_appends += other.window_appends;
        self.snapshot_crashes += other.snapshot_crashes;
        self.wipes += other.wipes;
        self.wipes_caught_up_by_snapshot += other.wipes_caught_up_by_snapshot;
        self.power_losses += other.power_losses;
        self.crashes_in_storage += other.crashes_in_storage;
        self.bit_flips += other.bit_flips;
        self.reorder_refusals += other.reorder_refusals;
        self.interleaved_inputs += other.interleaved_inputs;
        self.membership_seeds += other.membership_seeds;
        self.conf_changes += other.conf_changes;
        self.conf_refused += other.conf_refused;
        self.conf_deposed += other.conf_deposed;
    }
}

struct Sim {
    seed: u64,
    bugs: CoreBugs,
    rng: ChaCha8Rng,
    weather: Weather,
    /// The seed's weather before healing, for the failure report.
    stormy: Weather,
    now: u64,
    /// `nodes[id - 1]`: the initial voters first, then the spare nodes that membership
    /// changes may add (they start with an empty configuration, as a joining node does).
    nodes: Vec<SimNode>,
    /// How many of `nodes` form the initial configuration.
    initial: usize,
    /// Leaders make random membership changes amid the faults (see `change_membership`).
    membership_changes: bool,
    net: Vec<Flight>,
    /// Partition group of each node: messages between groups are lost.
    group: Vec<u8>,
    /// Election safety: the leader seen for each term, over the whole run.
    leaders: HashMap<Term, NodeId>,
    /// Log matching: (index, term) -> (payload, predecessor's term), over the whole run.
    written: HashMap<(LogIndex, Term), (EntryPayload, Term)>,
    /// Entries known committed, by index, with the term of the leader that committed them.
    committed: Vec<(Entry, Term)>,
    /// The entry applied at each index (by whichever node applied it first), and the state
    /// machine's digest after it.
    applied: Vec<Entry>,
    digests: Vec<u64>,
    /// The node restarted with an empty data dir in this run, if any (at most one), and
    /// whether it has installed a snapshot since.
    wiped: Option<NodeId>,
    wiped_caught_up: bool,
    /// Acknowledged writes: applied by the leader that proposed them.
    acked: Vec<Entry>,
    max_acked_index: LogIndex,
    next_command: u64,
    next_read: u64,
    /// A new leader to isolate or crash at the given tick (see `Weather::depose`).
    depose_at: Option<(NodeId, u64)>,
    /// Highest match index each follower reported in each term, and how many times one grew:
    /// replication progress the logs' lengths do not show (a follower re-verifying entries
    /// it already holds).
    best_match: HashMap<(NodeId, Term), LogIndex>,
    match_advances: u64,
    /// Scripted scenarios: entries of terms above this are cut out of every AppendEntries (as
    /// if the leader had sent fewer), to hold a leader's own entries back.
    strip_above: Option<Term>,
    /// Wipe a node whenever the wipe is due, ignoring the operator rule (see `try_wipe`):
    /// shows that the rule is needed and that the checks see its breach.
    careless_wipes: bool,
    /// The WAL's planted bugs, on every node (the storage bugs the simulation must catch).
    wal_bugs: WalBugs,
    /// One-way link cuts: messages from the first node to the second are lost.
    cut: HashSet<(NodeId, NodeId)>,
    /// The keys clients write and read (`k0`..): per seed, few keys make many conflicts.
    keys: u64,
    /// Every client operation as its client saw it (invoke, then ok or fail, or no
    /// completion when the outcome is unknown), for the linearizability checker; each
    /// operation has its own process.
    history: Vec<Event>,
    next_process: u64,
    /// Check that a confirmed read's index covers every write acknowledged before it started
    /// (off, to show that the checker alone sees stale reads).
    check_read_indexes: bool,
    /// A planted driver bug: snapshots leave out the state machine's last key (the digest of
    /// the entries still matches, so only what clients read can show it).
    lossy_snapshots: bool,
    /// A violation found where it cannot be returned at once (inside a crash).
    deferred: Option<String>,
    trace: Option<Vec<String>>,
    stats: Stats,
}

type Check = Result<(), String>;

impl Sim {
    fn new(seed: u64, nodes: usize, bugs: CoreBugs, trace: bool) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut weather = Weather::random(&mut rng);
        if membership_seed(seed) {
            // Wipes follow the operator rule for a fixed membership; a replacement here is
            // a removal and an addition instead.
            weather.wipe_from = None;
            // Classic Raft (neither pre-vote nor check-quorum) has no leader lease, and a
            // node removed without learning it would campaign forever and depose every
            // leader (dissertation §4.2.3): membership changes need one of the two, as the
            // node's defaults have both.
            if !weather.pre_vote && !weather.check_quorum {
                weather.pre_vote = true;
            }
        }
        let mut sim = Sim::with_weather(seed, rng, weather, nodes, bugs, trace);
        if membership_seed(seed) {
            sim.enable_membership_changes(SPARE_NODES);
        }
        sim
    }

    /// Adds `spares` nodes outside the configuration and lets leaders change membership.
    fn enable_membership_changes(&mut self, spares: usize) {
        self.membership_changes = true;
        self.stats.membership_seeds = 1;
        for _ in 0..spares {
            self.nodes.push(SimNode::default());
            self.group.push(0);
            let id = self.nodes.len() as NodeId;
            self.start(id).expect("an empty disk opens");
        }
    }

    fn with_weather(
        seed: u64,
        rng: ChaCha8Rng,
        weather: Weather,
        nodes: usize,
        bugs: CoreBugs,
        trace: bool,
    ) -> Sim {
        let mut sim = Sim {
            seed,
            bugs,
            rng,
            weather,
            stormy: weather,
            now: 0,
            nodes: Vec::new(),
            initial: nodes,
            membership_changes: false,
            net: Vec::new(),
            group: vec![0; nodes],
            leaders: HashMap::new(),
            written: HashMap::new(),
            committed: Vec::new(),
            applied: Vec::new(),
            digests: Vec::new(),
            wiped: None,
            wiped_caught_up: false,
            acked: Vec::new(),
            max_acked_index: 0,
            next_command: 0,
            next_read: 0,
            depose_at: None,
            best_match: HashMap::new(),
            match_advances: 0,
            strip_above: None,
            careless_wipes: false,
            wal_bugs: WalBugs::default(),
            cut: HashSet::new(),
            keys: 1 + (seed / 2) % 8,
            history: Vec::new(),
            next_process: 0,
            check_read_indexes: true,
            lossy_snapshots: false,
            deferred: None,
            trace: trace.then(Vec::new),
            stats: Stats {
                pre_vote_seeds: u64::from(weather.pre_vote),
                check_quorum_seeds: u64::from(weather.check_quorum),
                ..Stats::default()
            },
        };
        for _ in 0..nodes {
            sim.nodes.push(SimNode::default());
        }
        for id in 1..=nodes as NodeId {
            sim.start(id).expect("an empty disk opens");
        }
        sim
    }

    /// Every simulated node, member or not.
    fn members(&self) -> Vec<NodeId> {
        (1..=self.nodes.len() as NodeId).collect()
    }

    /// The initial configuration's voters; a spare node starts with none (it joins).
    fn initial_members(&self, id: NodeId) -> Vec<NodeId> {
        if id as usize <= self.initial {
            (1..=self.initial as NodeId).collect()
        } else {
            Vec::new()
        }
    }

    /// A membership change by the current leader, amid the faults: add a spare (or removed)
    /// node as a learner, promote a learner, or remove a voter (the leader itself too) or a
    /// learner. Now and then the leader is crashed or isolated right after proposing, so the
    /// change is in flight while leadership moves.
    fn change_membership(&mut self) -> Check {
        // Mostly leaders ready for a change (one committed entry of their term), as an
        // operator retrying gets; now and then any leader, for the refusal.
        let any = self.rng.gen_bool(0.1);
        let leaders: Vec<NodeId> = self
            .members()
            .into_iter()
            .filter(|&id| {
                !self.paused(id)
                    && self.raft(id).is_some_and(|r| {
                        let status = r.status();
                        status.role == Role::Leader
                            && (any || r.term_at(status.commit_index) == Some(status.term))
                    })
            })
            .collect();
        let Some(&leader) = leaders.choose(&mut self.rng) else {
            return Ok(());
        };
        let Some(membership) = self.raft(leader).map(|r| r.membership().clone()) else {
            return Ok(());
        };
        let voters: Vec<NodeId> = membership.voters().collect();
        let learners: Vec<NodeId> = membership.learners().collect();
        let outside: Vec<NodeId> = self
            .members()
            .into_iter()
            .filter(|&id| !membership.contains(id))
            .collect();
        let mut options = Vec::new();
        if let Some(&id) = outside.choose(&mut self.rng) {
            options.push(ConfChange::AddLearner {
                id,
                context: format!("node-{id}").into_bytes(),
            });
        }
        if let Some(&id) = learners.choose(&mut self.rng) {
            options.push(ConfChange::Promote { id });
            options.push(ConfChange::Promote { id });
            options.push(ConfChange::Remove { id });
        }
        // Fewer than the initial voters: grow back more often than shrink further.
        if voters.len() > 1 && (voters.len() >= self.initial || self.rng.gen_bool(0.3)) {
            if let Some(&id) = voters.choose(&mut self.rng) {
                options.push(ConfChange::Remove { id });
            }
        }
        let Some(change) = options.choose(&mut self.rng).cloned() else {
            return Ok(());
        };
        let Some(raft) = self.nodes[leader as usize - 1].raft.as_mut() else {
            return Ok(());
        };
        match raft.propose_conf_change(change.clone()) {
            Ok((index, term)) => {
                self.stats.conf_changes += 1;
                self.note(|| format!("{leader} proposes {change:?} at ({index}, {term})"));
                if self.rng.gen_bool(0.2) {
                    self.stats.conf_deposed += 1;
                    let at = self.now + self.rng.gen_range(0..4);
                    self.depose_at = Some((leader, at));
                }
            }
            Err(e) => {
                self.stats.conf_refused += 1;
                self.note(|| format!("{leader} refuses {change:?}: {e}"));
            }
        }
        self.process(leader)
    }

    /// The configuration of the leader with the highest term, if any.
    fn leader_membership(&self) -> Option<Membership> {
        let leader = self.leader_among(&self.members())?;
        self.raft(leader).map(|r| r.membership().clone())
    }

    fn node(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[id as usize - 1]
    }

    fn note(&mut self, event: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("t={} {}", self.now, event()));
            if trace.len() > 2 * TRACE_EVENTS {
                trace.drain(..TRACE_EVENTS);
            }
        }
    }

    /// Starts (or restarts) a node from its disk only: the state machine from the snapshot
    /// file, the core from the snapshot and the log after it.
    fn start(&mut self, id: NodeId) -> Check {
        let durable = self.open_disk(id)?;
        let state = match &durable.snapshot {
            Some(snapshot) => self.restore(id, snapshot)?,
            None => SimState::default(),
        };
        let mut config = Config::new(id, self.initial_members(id));
        config.election_ticks = ELECTION_TICKS;
        config.heartbeat_ticks = HEARTBEAT_TICKS;
        config.max_entries_per_message = self.weather.max_entries_per_message;
        config.max_inflight_messages = self.weather.max_inflight_messages;
        config.bugs = self.bugs;
        config.pre_vote = self.weather.pre_vote;
        config.check_quorum = self.weather.check_quorum;
        config.snapshot_chunk_bytes = self.weather.snapshot_chunk_bytes;
        config.compaction_keep_entries = self.weather.compaction_keep_entries;
        config.applied = state.index;
        // Log matching on restart: what the disk kept must chain from the snapshot (a log
        // the received snapshot replaced must not survive under it).
        let mut prev_term = durable.snapshot.as_ref().map_or(0, |s| s.meta.term);
        for entry in &durable.log {
            match self.written.get(&(entry.index, entry.term)) {
                Some((payload, term)) if *payload == entry.payload && *term == prev_term => {}
                other => {
                    return Err(format!(
                        "log matching: node {id} restarts with ({}, term {}) after term \
                         {prev_term}, but it was written as {other:?}",
                        entry.index, entry.term
                    ))
                }
            }
            prev_term = entry.term;
        }
        let node = self.node(id);
        config.seed = (id << 48) ^ (node.restarts << 32) ^ 0x5eed;
        node.restarts += 1;
        node.raft = Some(RaftNode::new(config, durable));
        let index = state.index;
        node.state = state;
        node.paused_until = 0;
        self.note(|| format!("start {id} from a snapshot at {index}"));
        Ok(())
    }

    /// Opens the node's storage on its disk. A refusal is a violation, except the one the
    /// storage documents after a power loss that reordered an unsynced WAL write (a bad record
    /// followed by a valid one, which a bit flip would also give): then the operator cuts the
    /// WAL where the error says, which loses only unsynced entries (the checks would see
    /// anything more), and the node starts.
    fn open_disk(&mut self, id: NodeId) -> Result<DurableState, String> {
        let fs = self.nodes[id as usize - 1].disk.fs.clone();
        let open = |bugs| Storage::open_on(Arc::new(fs.clone()), Path::new(DATA_DIR), bugs);
        let opened = match open(self.wal_bugs) {
            Err(StorageError::Corrupt { path, offset, why })
                if path.ends_with(WAL_FILE) && self.nodes[id as usize - 1].disk.wal_reordered =>
            {
                self.stats.reorder_refusals += 1;
                self.note(|| format!("{id} refuses its WAL ({why} at {offset}): operator cuts it"));
                let cut = fs.open(&path).and_then(|mut file| {
                    file.set_len(offset)?;
                    file.sync(true)
                });
                cut.map_err(|e| format!("operator: cannot cut {}: {e}", path.display()))?;
                open(self.wal_bugs)
            }
            other => other,
        };
        let disk = &mut self.node(id).disk;
        disk.wal_reordered = false;
        match opened {
            Ok((storage, durable)) => {
                disk.storage = Some(storage);
                Ok(durable)
            }
            Err(e) => Err(format!(
                "storage: node {id} refuses to start from its disk: {e}"
            )),
        }
    }

    /// A bit flipped in cold data on a copy of the node's disk (a durable byte of the hard
    /// state, the snapshot, or a WAL record followed by another one) must make the storage
    /// refuse to open it, naming the file, or open to exactly what the intact disk gives (a
    /// flip in a JSON key the state does not depend on): never start having forgotten. The
    /// run goes on from the intact disk. A flip in the WAL's last record is the one fault the
    /// WAL cannot tell from a torn write (see the README), so it is not drawn.
    fn check_bit_flip(&mut self, id: NodeId) -> Check {
        let disk = self.nodes[id as usize - 1].disk.fs.deep_copy();
        let dir = Path::new(DATA_DIR);
        if !disk.exists(&dir.join(HARD_STATE_FILE)).unwrap_or(false) {
            return Ok(());
        }
        let files: Vec<&str> = [HARD_STATE_FILE, SNAPSHOT_FILE, WAL_FILE]
            .into_iter()
            .filter(|f| disk.exists(&dir.join(f)).unwrap_or(false))
            .collect();
        let Some(&file) = files.choose(&mut self.rng) else {
            return Ok(());
        };
        let path = dir.join(file);
        let Ok(bytes) = disk.read(&path) else {
            return Ok(());
        };
        let cold_end = if file == WAL_FILE {
            match wal::record_offsets(&path, &bytes) {
                Ok(offsets) => offsets.last().copied().unwrap_or(wal::FILE_HEADER_LEN),
                // Already refused as it is (a reordered power loss): nothing to add.
                Err(_) => return Ok(()),
            }
        } else {
            bytes.len() as u64
        };
        if cold_end == 0 {
            return Ok(());
        }
        let Ok((_, intact)) = Storage::open_on(Arc::new(disk.deep_copy()), dir, self.wal_bugs)
        else {
            // Refused as it is (a reordered power loss, cut when the node restarts).
            return Ok(());
        };
        let offset = self.rng.gen_range(0..cold_end);
        let bit = self.rng.gen_range(0..8u8);
        disk.flip_bit(&path, offset, bit);
        self.stats.bit_flips += 1;
        self.note(|| {
            format!("bit {bit} of byte {offset} of {file} flipped on a copy of {id}'s disk")
        });
        match Storage::open_on(Arc::new(disk), dir, self.wal_bugs) {
            Err(e) if e.to_string().contains(file) => Ok(()),
            Err(e) => Err(format!(
                "storage: node {id} refuses a bit flip in {file} without naming the file: {e}"
            )),
            Ok((_, durable)) if durable == intact => Ok(()),
            Ok((_, durable)) => Err(format!(
                "amnesia: node {id} opens a disk with bit {bit} of byte {offset} of {file} \
                 flipped instead of refusing it: {} entries after the snapshot at {:?}, the \
                 intact disk gives {} entries",
                durable.log.len(),
                durable.snapshot.map(|s| s.meta),
                intact.log.len()
            )),
        }
    }

    /// Maybe arms a crash of the node's disk within its next `max_changes` changing calls
    /// (a crash between any two system calls of what follows). Half the time among the
    /// first two: a write and its fsync, where a power loss tears or reorders the write.
    fn arm_crash(&mut self, id: NodeId, probability: f64, max_changes: u64) {
        if self.rng.gen_bool(probability.min(1.0)) {
            let first = if self.rng.gen_bool(0.5) {
                2
            } else {
                max_changes
            };
            let changes = self.rng.gen_range(0..first.min(max_changes));
            self.node(id).disk.fs.arm_crash(changes);
        }
    }

    /// The outcome of a storage call: `Ok(true)` when it is done, `Ok(false)` when the node
    /// crashed in the middle (an armed crash) and is now down, an error for a storage failure
    /// no crash explains.
    fn storage_done(
        &mut self,
        id: NodeId,
        result: Result<(), StorageError>,
        what: &str,
    ) -> Result<bool, String> {
        let fs = &self.node(id).disk.fs;
        let crashed = fs.crashed();
        fs.disarm();
        if crashed {
            self.stats.crashes_in_storage += 1;
            self.note(|| format!("{id} crashes {what}"));
            self.crash(id);
            return Ok(false);
        }
        result
            .map(|()| true)
            .map_err(|e| format!("storage: node {id} failed {what}: {e}"))
    }

    /// A state machine restored from a snapshot: it must be exactly the state the entries up
    /// to its index gave wherever they were applied.
    fn restore(&self, id: NodeId, snapshot: &Snapshot) -> Result<SimState, String> {
        let state = SimState::decode(&snapshot.data)?;
        let index = snapshot.meta.index;
        let expected = match index {
            0 => Some(0),
            i => self.digests.get(i as usize - 1).copied(),
        };
        if state.index != index || expected != Some(state.digest) {
            return Err(format!(
                "snapshot: node {id} restores {state:?} labelled {:?}, but the entries up to \
                 {index} give digest {expected:?}",
                snapshot.meta
            ));
        }
        Ok(state)
    }

    /// The driver's log compaction, with a crash possible at each step: take a snapshot of
    /// the state machine, make it durable, tell the core, then drop the log prefix from disk.
    fn maybe_snapshot(&mut self, id: NodeId) -> Check {
        let node = &self.nodes[id as usize - 1];
        let state = node.state.clone();
        let since = state.index - node.disk.snapshot_index();
        let due = self
            .weather
            .snapshot_every
            .is_some_and(|every| since >= every);
        if since == 0 || !(due || self.rng.gen_bool(self.weather.snapshot_random)) {
            return Ok(());
        }
        // Everything this node committed must be recorded before its entries disappear.
        self.check_node(id)?;
        let Some(raft) = self.raft(id) else {
            return Ok(());
        };
        let Some(term) = raft.term_at(state.index) else {
            return Err(format!(
                "node {id}: no term for its applied index {} (first index {})",
                state.index,
                raft.first_index()
            ));
        };
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                index: state.index,
                term,
            },
            membership: raft.membership_at(state.index),
            data: state.encode(self.lossy_snapshots),
        };
        // A crash may fall between any two calls of writing the snapshot (temp file, write,
        // fsync, rename, directory fsync) and then of rewriting the WAL without the prefix.
        self.arm_crash(id, 2.0 * self.weather.crash_in_snapshot, 6);
        let saved = self.storage(id).save_snapshot(&snapshot);
        if !self.storage_done(id, saved, "writing its snapshot")? {
            self.stats.snapshot_crashes += 1;
            return Ok(());
        }
        let node = self.node(id);
        let Some(raft) = node.raft.as_mut() else {
            return Ok(());
        };
        raft.compact(snapshot)
            .map_err(|e| format!("node {id}: compact at {}: {e}", state.index))?;
        self.arm_crash(id, 2.0 * self.weather.crash_in_snapshot, 6);
        let compacted = self.storage(id).compact_log(state.index);
        if !self.storage_done(id, compacted, "dropping the log its snapshot covers")? {
            self.stats.snapshot_crashes += 1;
            return Ok(());
        }
        self.stats.snapshots_taken += 1;
        self.note(|| format!("{id} snapshots and compacts at {}@{term}", state.index));
        Ok(())
    }

    /// The node goes down: a process crash or a power loss (what its disk keeps of unsynced
    /// writes is drawn by `MemFs::crash`), and now and then a bit flip checked on a copy.
    fn crash(&mut self, id: NodeId) {
        let kind = if self.rng.gen_bool(self.weather.power_loss) {
            Crash::PowerLoss
        } else {
            Crash::Process
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.rng.gen());
        let node = self.node(id);
        node.raft = None;
        node.disk.storage = None;
        let reordered = node.disk.fs.crash(kind, &mut rng);
        node.disk.wal_reordered = reordered.iter().any(|p| p.ends_with(WAL_FILE));
        node.proposals.clear();
        node.reads.clear();
        node.serving.clear();
        node.led_term = None;
        self.stats.crashes += 1;
        if kind == Crash::PowerLoss {
            self.stats.power_losses += 1;
        }
        self.note(|| format!("crash {id} ({kind:?})"));
        if self.rng.gen_bool(self.weather.bit_flip) {
            if let Err(violation) = self.check_bit_flip(id) {
                self.deferred.get_or_insert(violation);
            }
        }
    }

    /// The storage of a live node.
    fn storage(&mut self, id: NodeId) -> &mut Storage {
        self.node(id)
            .disk
            .storage
            .as_mut()
            .expect("a live node has its storage open")
    }

    fn alive(&self, id: NodeId) -> bool {
        self.nodes[id as usize - 1].raft.is_some()
    }

    fn raft(&self, id: NodeId) -> Option<&RaftNode> {
        self.nodes[id as usize - 1].raft.as_ref()
    }

    /// Puts a message on the wire: maybe lost, maybe twice, each copy with its own delay.
    fn send(&mut self, msg: Message) {
        if self.rng.gen_bool(self.weather.drop) {
            return;
        }
        let copies = if self.rng.gen_bool(self.weather.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if self.rng.gen_bool(self.weather.long_delay) {
                self.rng.gen_range(1..=3 * ELECTION_TICKS as u64)
            } else {
                self.rng.gen_range(1..=2)
            };
            self.net.push(Flight {
                msg: msg.clone(),
                deliver_at: self.now + delay,
            });
        }
    }

    /// The driver loop of one node, with the scheduler's chance to crash it mid-way.
    fn process(&mut self, id: NodeId) -> Check {
        loop {
            let Some(raft) = self.node(id).raft.as_mut() else {
                return Ok(());
            };
            if !raft.has_ready() {
                break;
            }
            let ready = raft.ready();
            self.check_written(id, &ready.entries)?;
            if self.rng.gen_bool(self.weather.crash_in_ready) {
                self.crash(id); // before the fsync: the whole Ready is lost
                return Ok(());
            }
            if let Some(snapshot) = &ready.snapshot {
                // Installing a snapshot from the leader (the snapshot file first, then the
                // log reset, a crash possible between any two calls); the state machine
                // restored before anything is applied.
                let state = self.restore(id, snapshot)?;
                self.arm_crash(id, 3.0 * self.weather.crash_in_snapshot, 11);
                let installed = self.storage(id).install_snapshot(snapshot);
                if !self.storage_done(id, installed, "installing a snapshot")? {
                    self.stats.snapshot_crashes += 1;
                    return Ok(());
                }
                let leader_snapshot = self
                    .raft(id)
                    .and_then(|r| r.status().leader)
                    .and_then(|leader| self.raft(leader))
                    .and_then(|r| r.snapshot_meta());
                if leader_snapshot.is_some_and(|m| m.index > snapshot.meta.index) {
                    self.stats.pinned_installs += 1;
                }
                let node = self.node(id);
                let index = state.index;
                node.state = state;
                node.proposals.retain(|&i, _| i > index);
                self.stats.snapshots_installed += 1;
                if self.wiped == Some(id) && !self.wiped_caught_up {
                    self.wiped_caught_up = true;
                    self.stats.wipes_caught_up_by_snapshot += 1;
                }
                self.note(|| format!("{id} installs a snapshot at {:?}", snapshot.meta));
            }
            // The hard state, then the entries (a conflicting suffix cut and fsynced first),
            // with a crash possible between any two calls.
            self.arm_crash(id, self.weather.crash_in_persist, 10);
            let persisted = self
                .storage(id)
                .persist(ready.hard_state.as_ref(), &ready.entries);
            if !self.storage_done(id, persisted, "persisting a Ready")? {
                return Ok(());
            }
            if self.rng.gen_bool(self.weather.crash_in_ready) {
                self.crash(id); // after the fsync, before sending or advancing
                return Ok(());
            }
            for msg in ready.messages {
                self.send(msg);
            }
            for entry in ready.committed_entries {
                self.apply(id, entry)?;
            }
            for read in ready.read_states {
                let Some(pending) = self.node(id).reads.remove(&read.id) else {
                    return Err(format!("node {id}: unknown read {}", read.id));
                };
                if self.check_read_indexes && read.index < pending.min_index {
                    return Err(format!(
                        "linearizability: node {id} confirmed read {} at index {} but a write \
                         at index {} was acknowledged before the read started",
                        read.id, read.index, pending.min_index
                    ));
                }
                self.stats.confirmed_reads += 1;
                self.note(|| format!("read {} confirmed on {id} at {}", read.id, read.index));
                self.node(id).serving.push((read.index, pending));
            }
            for read in ready.failed_reads {
                let pending = self.node(id).reads.remove(&read);
                if let Some(PendingRead {
                    key,
                    process: Some(process),
                    ..
                }) = pending
                {
                    self.record(process, EventType::Fail, "read", &key, None);
                }
            }
            self.serve_reads(id);
            self.maybe_snapshot(id)?;
            if self.alive(id) && self.rng.gen_bool(self.weather.interleave) {
                self.feed_before_advance(id);
            }
            if let Some(raft) = self.node(id).raft.as_mut() {
                raft.advance();
            }
        }
        self.check_node(id)
    }

    /// Feeds the node one input between `ready()` and `advance()` (the driver contract allows
    /// it: what it produces goes into the next Ready): a message due for it, a proposal or a
    /// tick. Not `process`: the Ready just taken is not advanced yet.
    fn feed_before_advance(&mut self, id: NodeId) {
        let now = self.now;
        let due = self.net.iter().position(|f| {
            f.deliver_at <= now
                && f.msg.to == id
                && self.group[f.msg.from as usize - 1] == self.group[id as usize - 1]
                && !self.cut.contains(&(f.msg.from, id))
        });
        self.stats.interleaved_inputs += 1;
        match (due, self.rng.gen_range(0..3)) {
            (Some(at), 0 | 1) => {
                let msg = self.net.swap_remove(at).msg;
                self.stats.delivered += 1;
                self.note(|| {
                    format!(
                        "deliver {}->{id} before advance: term {} {}",
                        msg.from,
                        msg.term,
                        describe(&msg.body)
                    )
                });
                if let Some(raft) = self.node(id).raft.as_mut() {
                    raft.step(msg);
                }
            }
            (_, 2) => self.client_write(id, "before advance "),
            _ => {
                if let Some(raft) = self.node(id).raft.as_mut() {
                    raft.tick();
                }
            }
        }
    }

    /// Log matching, checked on every entry a node writes (a Ready's entries are exactly the
    /// changes to its log since the previous Ready).
    fn check_written(&mut self, id: NodeId, entries: &[Entry]) -> Check {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let raft = self.raft(id).expect("only live nodes produce Readies");
        if first.index == 0 {
            return Err(format!("node {id}: an entry at index 0"));
        }
        let Some(mut prev_term) = raft.term_at(first.index - 1) else {
            return Err(format!(
                "node {id}: wrote entry {} without its predecessor (first index {})",
                first.index,
                raft.first_index()
            ));
        };
        for entry in entries {
            match self.written.get(&(entry.index, entry.term)) {
                Some((payload, term)) if *payload != entry.payload || *term != prev_term => {
                    return Err(format!(
                        "log matching: node {id} wrote ({}, term {}) = {:?} after term {}, but \
                         ({}, term {}) = {:?} after term {} exists elsewhere",
                        entry.index,
                        entry.term,
                        entry.payload,
                        prev_term,
                        entry.index,
                        entry.term,
                        payload,
                        term
                    ));
                }
                Some(_) => {}
                None => {
                    self.written.insert(
                        (entry.index, entry.term),
                        (entry.payload.clone(), prev_term),
                    );
                }
            }
            prev_term = entry.term;
        }
        Ok(())
    }

    /// State-machine safety, and acknowledgement of the writes this node proposed.
    fn apply(&mut self, id: NodeId, entry: Entry) -> Check {
        let node = self.node(id);
        if entry.index != node.state.index + 1 {
            return Err(format!(
                "node {id} applied index {} after {}",
                entry.index, node.state.index
            ));
        }
        node.state.apply(&entry);
        let digest = node.state.digest;
        let proposal = node.proposals.remove(&entry.index);
        let slot = entry.index as usize - 1;
        if let Some(first) = self.applied.get(slot) {
            if *first != entry || self.digests[slot] != digest {
                return Err(format!(
                    "state-machine safety: node {id} applied {entry:?} (digest {digest:x}), \
                     another node applied {first:?} (digest {:x})",
                    self.digests[slot]
                ));
            }
        } else {
            self.applied.push(entry.clone());
            self.digests.push(digest);
        }
        if let Some((term, command, process)) = proposal {
            if entry.term == term
                && matches!(&entry.payload, EntryPayload::Command(c) if *c == command)
            {
                self.note(|| format!("write acked by {id} at {}@{}", entry.index, entry.term));
                if let (Some(process), Some((key, value))) = (process, parse_write(&command)) {
                    self.record(process, EventType::Ok, "write", key, Some(value));
                }
                self.max_acked_index = self.max_acked_index.max(entry.index);
                self.acked.push(entry);
                self.stats.acked_writes += 1;
            }
        }
        Ok(())
    }

    /// Election safety, commit bookkeeping and leader completeness for one node.
    fn check_node(&mut self, id: NodeId) -> Check {
        let Some(raft) = self.raft(id) else {
            return Ok(());
        };
        let status = raft.status();
        let node = &self.nodes[id as usize - 1];
        if status.role != Role::Leader
            && node.led_term == Some(status.term)
            && node.stepped_down_term != Some(status.term)
        {
            self.nodes[id as usize - 1].stepped_down_term = Some(status.term);
            self.stats.quorum_step_downs += 1;
            self.note(|| format!("{id} steps down in term {} (check-quorum)", status.term));
        }
        if status.role == Role::Leader {
            let leader = *self.leaders.entry(status.term).or_insert(id);
            if leader != id {
                return Err(format!(
                    "election safety: nodes {leader} and {id} both led term {}",
                    status.term
                ));
            }
            if self.nodes[id as usize - 1].led_term != Some(status.term) {
                self.stats.leaders += 1;
                self.note(|| format!("{id} leads term {}", status.term));
                self.nodes[id as usize - 1].led_term = Some(status.term);
                if self.depose_at.is_none() && self.rng.gen_bool(self.weather.depose) {
                    let at = self.now + self.rng.gen_range(1..=4);
                    self.depose_at = Some((id, at));
                }
                let raft = self.raft(id).expect("checked alive");
                for (entry, commit_term) in &self.committed {
                    // Entries inside its snapshot are checked through the snapshot's digest.
                    if *commit_term < status.term
                        && entry.index > status.snapshot_index
                        && raft.entry(entry.index) != Some(entry)
                    {
                        return Err(format!(
                            "leader completeness: node {id} leads term {} without {entry:?} \
                             committed in term {commit_term}",
                            status.term
                        ));
                    }
                }
            }
        }
        let known = self.committed.len() as LogIndex;
        if status.commit_index > known {
            let raft = self.raft(id).expect("checked alive");
            let mut new: Vec<Entry> = Vec::new();
            for index in known + 1..=status.commit_index {
                // Every committed entry is recorded by the node that committed it before any
                // snapshot can cover it (see `maybe_snapshot`).
                let Some(entry) = raft.entry(index) else {
                    return Err(format!(
                        "node {id} commits up to {} but holds no entry {index} (first index \
                         {}), and nobody recorded it",
                        status.commit_index,
                        raft.first_index()
                    ));
                };
                new.push(entry.clone());
            }
            let commit_term = status.term;
            self.note(|| format!("{id} commits up to {}", status.commit_index));
            // Leaders of later terms that took office before this commit was seen must hold
            // it too.
            for other in self.members() {
                let Some(raft) = self.raft(other) else {
                    continue;
                };
                let other_status = raft.status();
                if other_status.role != Role::Leader || other_status.term <= commit_term {
                    continue;
                }
                for entry in &new {
                    if entry.index > other_status.snapshot_index
                        && raft.entry(entry.index) != Some(entry)
                    {
                        return Err(format!(
                            "leader completeness: node {other} leads term {} without {entry:?} \
                             committed in term {commit_term}",
                            other_status.term
                        ));
                    }
                }
            }
            self.committed
                .extend(new.into_iter().map(|entry| (entry, commit_term)));
        }
        Ok(())
    }

    fn deliver(&mut self, mut msg: Message) -> Check {
        let (from, to) = (msg.from, msg.to);
        if !self.alive(to)
            || self.group[from as usize - 1] != self.group[to as usize - 1]
            || self.cut.contains(&(from, to))
        {
            return Ok(());
        }
        if self.paused(to) {
            let deliver_at = self.nodes[to as usize - 1].paused_until + self.rng.gen_range(0..=1);
            self.net.push(Flight { msg, deliver_at });
            return Ok(());
        }
        if let (Some(max_term), MessageBody::AppendEntries { entries, .. }) =
            (self.strip_above, &mut msg.body)
        {
            entries.retain(|e| e.term <= max_term);
        }
        self.stats.delivered += 1;
        match &msg.body {
            MessageBody::InstallSnapshot { .. } => self.stats.snapshot_chunks += 1,
            MessageBody::AppendEntries { entries, .. } => {
                let covered = self
                    .raft(from)
                    .and_then(|r| r.snapshot_meta())
                    .is_some_and(|m| entries.first().is_some_and(|e| e.index <= m.index));
                if covered {
                    self.stats.window_appends += 1;
                }
            }
            _ => {}
        }
        if let MessageBody::AppendEntriesResponse {
            success: true,
            match_index,
            ..
        } = msg.body
        {
            let best = self.best_match.entry((from, msg.term)).or_insert(0);
            if match_index > *best {
                *best = match_index;
                self.match_advances += 1;
            }
        }
        self.note(|| {
            format!(
                "deliver {from}->{to} term {} {}",
                msg.term,
                describe(&msg.body)
            )
        });
        if let Some(raft) = self.node(to).raft.as_mut() {
            raft.step(msg);
        }
        self.process(to)
    }

    fn paused(&self, id: NodeId) -> bool {
        self.now < self.nodes[id as usize - 1].paused_until
    }

    /// A client sends to the node that believes it leads (or to anyone, to be turned away).
    fn client_target(&mut self) -> NodeId {
        let leaders: Vec<NodeId> = self
            .members()
            .into_iter()
            .filter(|&id| {
                !self.paused(id)
                    && self
                        .raft(id)
                        .is_some_and(|r| r.status().role == Role::Leader)
            })
            .collect();
        match leaders.choose(&mut self.rng) {
            Some(&id) if self.rng.gen_bool(0.9) => id,
            _ => self.rng.gen_range(1..=self.nodes.len() as NodeId),
        }
    }

    fn propose(&mut self) -> Check {
        let id = self.client_target();
        if self.paused(id) {
            return Ok(());
        }
        self.client_write(id, "");
        self.process(id)
    }

    /// A client writes a fresh value to a random key on node `id` (if it is up): the write
    /// enters the history when the node accepts it, and completes when that node applies it.
    fn client_write(&mut self, id: NodeId, when: &str) {
        let key = self.client_key();
        let value = format!("w{}", self.next_command);
        self.next_command += 1;
        let command = write_command(&key, &value);
        let Some(raft) = self.node(id).raft.as_mut() else {
            return;
        };
        if let Ok((index, term)) = raft.propose(command.clone()) {
            self.note(|| format!("propose {key}={value} on {id} {when}at {index}@{term}"));
            let process =
                (key != LOAD_KEY).then(|| self.record_invoke("write", &key, Some(&value)));
            self.node(id)
                .proposals
                .insert(index, (term, command, process));
        }
    }

    /// A random checked key, or `LOAD_KEY` when that key has its fill of operations in flight.
    fn client_key(&mut self) -> String {
        let key = format!("k{}", self.rng.gen_range(0..self.keys));
        if self.in_flight(&key) < MAX_IN_FLIGHT_PER_KEY {
            key
        } else {
            LOAD_KEY.to_string()
        }
    }

    /// Recorded operations on `key` whose client still waits for an answer (an operation
    /// whose node crashed is of unknown outcome: its client has given up, as Jepsen's do).
    fn in_flight(&self, key: &str) -> usize {
        let writes = self.nodes.iter().flat_map(|n| n.proposals.values());
        let writes = writes
            .filter(|(_, command, process)| {
                process.is_some() && parse_write(command).is_some_and(|(k, _)| k == key)
            })
            .count();
        let reads = self.nodes.iter().flat_map(|n| {
            n.reads
                .values()
                .chain(n.serving.iter().map(|(_, read)| read))
        });
        writes + reads.filter(|read| read.key == key).count()
    }

    /// Records an operation's invocation by a new client process; returns the process.
    fn record_invoke(&mut self, f: &str, key: &str, value: Option<&str>) -> u64 {
        let process = self.next_process;
        self.next_process += 1;
        self.record(process, EventType::Invoke, f, key, value);
        process
    }

    fn read(&mut self) -> Check {
        let id = self.client_target();
        let read_id = self.next_read;
        self.next_read += 1;
        let min_index = self.max_acked_index;
        if self.paused(id) {
            return Ok(());
        }
        let key = self.client_key();
        let Some(raft) = self.node(id).raft.as_mut() else {
            return Ok(());
        };
        if raft.read_index(read_id).is_ok() {
            self.note(|| format!("read {read_id} of {key} on {id}, must see {min_index}"));
            let process = (key != LOAD_KEY).then(|| self.record_invoke("read", &key, None));
            let pending = PendingRead {
                min_index,
                key,
                process,
            };
            self.node(id).reads.insert(read_id, pending);
        }
        self.process(id)
    }

    /// Answers the confirmed reads whose index the node's state machine has applied, from
    /// that state (as the server's driver does).
    fn serve_reads(&mut self, id: NodeId) {
        let node = self.node(id);
        let applied = node.state.index;
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut node.serving)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        node.serving = waiting;
        for (_, read) in due {
            let value = self.node(id).state.kv.get(&read.key).cloned();
            self.note(|| format!("read of {} served by {id}: {value:?}", read.key));
            if let Some(process) = read.process {
                self.record(process, EventType::Ok, "read", &read.key, value.as_deref());
                self.stats.served_reads += 1;
            }
        }
    }

    /// Appends a client event to the history (time: its position, a logical clock).
    fn record(&mut self, process: u64, kind: EventType, f: &str, key: &str, value: Option<&str>) {
        let index = self.history.len() as u64;
        self.history.push(Event {
            index,
            time: index,
            process: Process::Client(process),
            kind,
            f: f.to_string(),
            key: Some(key.to_string()),
            value: value.map_or(serde_json::Value::Null, |v| v.into()),
            error: None,
        });
    }

    /// Linearizability of what the clients saw, by the project's checker (the `kv` model,
    /// key by key): every ok read returned the latest write before it in some order that
    /// respects real time, writes of unknown outcome taking effect at any point or never.
    ///
    /// A write whose outcome its client never learned is resolved the way only a simulation
    /// can: one that no node ever applied certainly did not happen (`fail`, so the search
    /// need not try every subset of them); one that was applied stays unknown.
    fn check_history(&self) -> Check {
        let applied: HashSet<&str> = self
            .applied
            .iter()
            .filter_map(|entry| match &entry.payload {
                EntryPayload::Command(command) => parse_write(command).map(|(_, value)| value),
                EntryPayload::Noop | EntryPayload::Membership(_) => None,
            })
            .collect();
        let mut events = self.history.clone();
        let completed: HashSet<Process> = events
            .iter()
            .filter(|e| e.kind != EventType::Invoke)
            .map(|e| e.process)
            .collect();
        let never_applied: Vec<Event> = events
            .iter()
            .filter(|e| e.kind == EventType::Invoke && e.f == "write")
            .filter(|e| !completed.contains(&e.process))
            .filter(|e| e.value.as_str().is_some_and(|v| !applied.contains(v)))
            .cloned()
            .collect();
        for invoke in never_applied {
            let index = events.len() as u64;
            events.push(Event {
                index,
                time: index,
                kind: EventType::Fail,
                error: Some("never applied".to_string()),
                ..invoke
            });
        }
        if let Some(path) = std::env::var_os("RIPTIDE_SIM_HISTORY") {
            let lines: Vec<String> = events
                .iter()
                .map(|e| serde_json::to_string(e).map_err(|e| format!("history: {e}")))
                .collect::<Result<_, _>>()?;
            std::fs::write(&path, lines.join("\n") + "\n")
                .map_err(|e| format!("history: writing {path:?}: {e}"))?;
        }
        let history = History::from_events(events.into_iter().enumerate().map(|(i, e)| (i + 1, e)))
            .map_err(|e| format!("history: {e}"))?;
        let options = CheckOptions {
            time_limit: Some(CHECK_TIME_LIMIT),
            ..CheckOptions::default()
        };
        let result = riptide_checker::check_builtin(&history, BuiltinModel::Kv, &options)
            .map_err(|e| format!("history: {e}"))?;
        match result.verdict {
            Verdict::Linearizable => Ok(()),
            Verdict::NotLinearizable => {
                let failure = result.failures().next();
                let key = failure.map_or("?", |p| p.partition.as_str());
                let blocked = failure
                    .and_then(|p| p.counterexample.as_ref())
                    .and_then(|c| c.blocked_by.as_ref())
                    .map_or("?".to_string(), |op| {
                        format!("{} (history line {})", op.description, op.invoke_line)
                    });
                Err(format!(
                    "not linearizable: key {key}: no order of its operations explains \
                     {blocked} (RIPTIDE_SIM_HISTORY=FILE writes the history for `riptide check`)"
                ))
            }
            Verdict::Unknown => Err(format!(
                "checker: no verdict within {CHECK_TIME_LIMIT:?} ({} operations)",
                result.operations
            )),
        }
    }

    /// One fault: a new partition, a heal, a crash, a restart or a pause. Dead nodes come back
    /// more often than live ones die, so the cluster spends time both with and without a
    /// quorum.
    fn fault(&mut self) -> Check {
        let dead: Vec<NodeId> = self
            .members()
            .into_iter()
            .filter(|&id| !self.alive(id))
            .collect();
        match self.rng.gen_range(0..13) {
            0 if self.weather.one_way => {
                // A one-way cut: messages from one node to another are lost, the other
                // direction still flows (a half-broken link, or a firewall rule).
                let n = self.nodes.len() as NodeId;
                let from = self.rng.gen_range(1..=n);
                let to = self.rng.gen_range(1..n);
                let to = if to >= from { to + 1 } else { to };
                self.cut.insert((from, to));
                self.note(|| format!("cut {from}->{to} one way"));
            }
            0..=2 => {
                // A random split into two or three sides (a side may be a single node).
                let sides = self.rng.gen_range(2..=3);
                for g in self.group.iter_mut() {
                    *g = self.rng.gen_range(0..sides);
                }
                let group = self.group.clone();
                self.note(|| format!("partition {group:?}"));
            }
            3..=4 => {
                self.group.iter_mut().for_each(|g| *g = 0);
                self.cut.clear();
                self.note(|| "heal".to_string());
            }
            5..=6 => {
                let id = self.rng.gen_range(1..=self.nodes.len() as NodeId);
                if self.alive(id) {
                    self.crash(id);
                }
            }
            10..=11 => {
                // Pause, most often a leader: on resuming it still believes it leads, and
                // clients reach it before the news of a newer term does.
                let id = self.client_target();
                let ticks = self.rng.gen_range(5..=4 * ELECTION_TICKS as u64);
                self.nodes[id as usize - 1].paused_until = self.now + ticks;
                self.note(|| format!("pause {id} for {ticks}"));
            }
            12 => {
                // Leadership transfer (what SIGTERM of a leader starts), amid all the faults.
                let leaders: Vec<NodeId> = self
                    .members()
                    .into_iter()
                    .filter(|&id| {
                        !self.paused(id)
                            && self
                                .raft(id)
                                .is_some_and(|r| r.status().role == Role::Leader)
                    })
                    .collect();
                if let Some(&id) = leaders.choose(&mut self.rng) {
                    let raft = self.nodes[id as usize - 1].raft.as_mut();
                    if let Some(to) = raft.and_then(|r| r.transfer_leadership()) {
                        self.stats.transfers += 1;
                        self.note(|| format!("{id} transfers leadership to {to}"));
                        self.process(id)?;
                    }
                }
            }
            _ => {
                if let Some(&id) = dead.choose(&mut self.rng) {
                    self.start(id)?;
                    self.process(id)?;
                }
            }
        }
        Ok(())
    }

    fn wipe_due(&self) -> bool {
        self.wiped.is_none() && self.weather.wipe_from.is_some_and(|t| self.now >= t)
    }

    /// Restarts one node with an empty data dir (an operator replaced its disk), once the
    /// run has reached `Weather::wipe_from`, as soon as that is safe.
    ///
    /// A node that forgets its log and vote can break Raft's safety: its old acknowledgements
    /// may have been what made an entry committed, and it may vote twice in one term. The
    /// operator rule (as in etcd, where such a member is removed and added back) is to wipe
    /// one node only while the rest of the cluster is healthy: here, every node up and
    /// connected, one leader and no candidate in the leader's term, and every entry the wiped
    /// node holds (so every acknowledgement it gave) committed and present on every other
    /// node. And only one node is ever wiped per run: the others then still hold every entry
    /// committed before the wipe, so any leader they elect has them all.
    fn try_wipe(&mut self) -> Check {
        if !self.wipe_due() {
            return Ok(());
        }
        if self.careless_wipes {
            let victim = self.rng.gen_range(1..=self.nodes.len() as NodeId);
            return self.wipe(victim);
        }
        let ids = self.members();
        let healthy = ids.iter().all(|&id| self.alive(id) && !self.paused(id))
            && self.group.iter().all(|&g| g == self.group[0])
            && self.cut.is_empty();
        let Some(leader) = self.leader_among(&ids) else {
            return Ok(());
        };
        let Some(lead) = self.raft(leader).map(|r| r.status()) else {
            return Ok(());
        };
        let statuses: Vec<_> = ids.iter().filter_map(|&id| self.raft(id)).collect();
        if !healthy
            || statuses.iter().any(|r| {
                let status = r.status();
                status.term != lead.term || (status.role != Role::Follower && status.id != leader)
            })
        {
            return Ok(());
        }
        let commit = lead.commit_index;
        let commit_term = self.raft(leader).and_then(|r| r.term_at(commit));
        let holds_commit =
            |r: &RaftNode| r.status().snapshot_index >= commit || r.term_at(commit) == commit_term;
        let candidates: Vec<NodeId> = ids
            .iter()
            .copied()
            .filter(|&w| w != leader)
            .filter(|&w| {
                self.raft(w)
                    .is_some_and(|r| r.status().last_index <= commit)
            })
            .filter(|&w| {
                ids.iter()
                    .filter(|&&o| o != w)
                    .all(|&o| self.raft(o).is_some_and(holds_commit))
            })
            .collect();
        let Some(&victim) = candidates.choose(&mut self.rng) else {
            return Ok(());
        };
        self.wipe(victim)
    }

    /// Restarts `victim` with an empty data dir.
    fn wipe(&mut self, victim: NodeId) -> Check {
        if self.alive(victim) {
            self.crash(victim);
        }
        self.wiped = Some(victim);
        self.stats.wipes += 1;
        self.note(|| format!("wipe {victim}: restarted with an empty data dir"));
        let node = self.node(victim);
        node.disk = SimDisk::default();
        node.state = SimState::default();
        self.start(victim)?;
        self.process(victim)
    }

    /// One tick of simulated time: faults, clients, due messages in random order, clocks.
    fn time_step(&mut self) -> Check {
        if let Some(violation) = self.deferred.take() {
            return Err(violation);
        }
        self.now += 1;
        if self.careless_wipes {
            if self.rng.gen_bool(self.weather.fault) {
                self.fault()?;
            }
            self.try_wipe()?;
        } else if self.wipe_due() {
            // Heal and hold the faults until the wipe is safe (see `try_wipe`).
            self.depose_at = None;
            if self.group.iter().any(|&g| g != 0) || !self.cut.is_empty() {
                self.group.iter_mut().for_each(|g| *g = 0);
                self.cut.clear();
                self.note(|| "heal for the wipe".to_string());
            }
            for id in self.members() {
                if !self.alive(id) {
                    self.start(id)?;
                    self.process(id)?;
                }
            }
            self.try_wipe()?;
        } else if self.rng.gen_bool(self.weather.fault) {
            self.fault()?;
        }
        if let Some((id, at)) = self.depose_at {
            if at <= self.now {
                self.depose_at = None;
                if self.rng.gen_bool(0.5) {
                    self.crash(id);
                } else {
                    for (i, g) in self.group.iter_mut().enumerate() {
                        *g = u8::from(i + 1 == id as usize);
                    }
                    self.note(|| format!("isolate {id}"));
                }
            }
        }
        if self.membership_changes && self.weather.fault > 0.0 && self.rng.gen_bool(0.1) {
            self.change_membership()?;
        }
        if self.rng.gen_bool(self.weather.client) {
            for _ in 0..self.rng.gen_range(1..=3) {
                self.propose()?;
            }
        }
        if self.rng.gen_bool(self.weather.client / 2.0) {
            self.read()?;
        }
        let now = self.now;
        let (mut due, later): (Vec<Flight>, Vec<Flight>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|f| f.deliver_at <= now);
        self.net = later;
        due.shuffle(&mut self.rng);
        for flight in due {
            self.deliver(flight.msg)?;
        }
        let mut order = self.members();
        order.shuffle(&mut self.rng);
        for id in order {
            // Clock skew: now and then a node misses a tick.
            if self.rng.gen_bool(0.05) || self.paused(id) {
                continue;
            }
            if let Some(raft) = self.node(id).raft.as_mut() {
                raft.tick();
                self.process(id)?;
            }
        }
        Ok(())
    }

    /// Has the healed cluster settled: one leader that committed its term, everyone applied
    /// its whole log?
    fn converged(&self) -> bool {
        let Some(leader) = self
            .members()
            .into_iter()
            .filter_map(|id| self.raft(id))
            .filter(|r| r.status().role == Role::Leader)
            .max_by_key(|r| r.status().term)
        else {
            return false;
        };
        let status = leader.status();
        if status.commit_index != status.last_index
            || leader.term_at(status.last_index) != Some(status.term)
        {
            return false;
        }
        // Nodes outside the configuration get nothing more.
        let membership = leader.membership();
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| membership.contains(*i as NodeId + 1))
            .all(|(_, node)| {
                node.raft.as_ref().is_some_and(|r| {
                    r.status().term == status.term && r.status().last_index == status.last_index
                }) && node.state.index == status.last_index
            })
    }

    /// Grows while the healed cluster makes progress: what the nodes applied, and how often a
    /// follower acknowledged more of the log than before (catching up on a long log applies
    /// nothing until the new leader's first entry reaches a majority, and a replaced suffix
    /// even shortens the follower's log first).
    fn progress(&self) -> u64 {
        let applied: u64 = self.nodes.iter().map(|n| n.state.index).sum();
        applied + self.match_advances
    }

    fn run(&mut self) -> Check {
        for _ in 0..FAULT_TICKS {
            self.time_step()?;
        }
        self.settle()?;
        self.deferred.take().map_or(Ok(()), Err)?;
        self.check_history()
    }

    /// Heals everything, lets the cluster settle, and checks every acknowledged write is
    /// applied everywhere.
    fn settle(&mut self) -> Check {
        self.weather = self.weather.calm();
        self.depose_at = None;
        self.nodes.iter_mut().for_each(|n| n.paused_until = 0);
        self.group.iter_mut().for_each(|g| *g = 0);
        self.cut.clear();
        self.note(|| "heal all".to_string());
        for id in self.members() {
            if !self.alive(id) {
                self.start(id)?;
                self.process(id)?;
            }
        }
        // Liveness: after healing, the cluster must keep making progress until it has
        // converged; a catch-up of a long log over one-entry messages may take long, a stuck
        // cluster is caught after STALL_TICKS.
        let mut settled = false;
        let mut last_progress = (self.now, self.progress());
        for _ in 0..SETTLE_TICKS_MAX {
            self.time_step()?;
            if self.converged() {
                settled = true;
                break;
            }
            let progress = self.progress();
            if progress > last_progress.1 {
                last_progress = (self.now, progress);
            } else if self.now - last_progress.0 > STALL_TICKS {
                break;
            }
        }
        if !settled {
            let statuses: Vec<_> = self
                .members()
                .into_iter()
                .filter_map(|id| self.raft(id).map(|r| r.status()))
                .collect();
            return Err(format!(
                "liveness: no convergence after healing, no progress for {STALL_TICKS} \
                 ticks: {statuses:?}"
            ));
        }
        let membership = self.leader_membership().unwrap_or_default();
        for entry in &self.acked {
            for (i, node) in self
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| membership.contains(*i as NodeId + 1))
            {
                let applied = self.applied.get(entry.index as usize - 1);
                if node.state.index < entry.index || applied != Some(entry) {
                    return Err(format!(
                        "acknowledged write {entry:?} is not in node {}'s state",
                        i + 1
                    ));
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Scripted scenarios: the same nodes, scheduler and checks, with faults chosen by hand.

impl Sim {
    /// Runs ticks until `done` holds (checked after each tick); false after `max` ticks.
    fn tick_until(&mut self, max: u64, done: impl Fn(&Sim) -> bool) -> Result<bool, String> {
        for _ in 0..max {
            self.time_step()?;
            if done(self) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Splits the cluster: nodes of one slice talk to each other only.
    fn set_groups(&mut self, groups: &[&[NodeId]]) {
        for (g, ids) in groups.iter().enumerate() {
            for &id in ids.iter() {
                self.group[id as usize - 1] = g as u8;
            }
        }
        let groups: Vec<Vec<NodeId>> = groups.iter().map(|g| g.to_vec()).collect();
        self.note(|| format!("groups {groups:?}"));
    }

    /// The leader with the highest term among `ids`, if any.
    fn leader_among(&self, ids: &[NodeId]) -> Option<NodeId> {
        ids.iter()
            .copied()
            .filter_map(|id| self.raft(id).map(|r| (id, r.status())))
            .filter(|(_, status)| status.role == Role::Leader)
            .max_by_key(|(_, status)| status.term)
            .map(|(id, _)| id)
    }

    fn log_len(&self, id: NodeId) -> usize {
        self.raft(id).map_or(0, |r| r.status().last_index as usize)
    }

    fn term(&self, id: NodeId) -> Term {
        self.raft(id).map_or(0, |r| r.status().term)
    }

    /// A membership change on `id`, processed at once.
    fn conf_change_on(&mut self, id: NodeId, change: ConfChange) -> Result<(), ConfChangeError> {
        let Some(raft) = self.node(id).raft.as_mut() else {
            return Err(ConfChangeError::NotLeader { leader: None });
        };
        raft.propose_conf_change(change.clone())?;
        self.note(|| format!("{id} proposes {change:?}"));
        // A violation while processing surfaces at the next tick.
        if let Err(violation) = self.process(id) {
            self.deferred.get_or_insert(violation);
        }
        Ok(())
    }

    fn propose_on(&mut self, id: NodeId, command: &[u8]) -> Check {
        let Some(raft) = self.node(id).raft.as_mut() else {
            return Err(format!("script: node {id} is down"));
        };
        let (index, term) = raft
            .propose(command.to_vec())
            .map_err(|e| format!("script: propose on {id}: {e}"))?;
        self.node(id)
            .proposals
            .insert(index, (term, command.to_vec(), None));
        self.process(id)
    }
}

/// Raft's Figure 8, played on a 5-node simulated cluster with one entry per message:
///
/// ```text
/// (a) L1 (term t1) writes x at index 2 to itself and B only
/// (b) Y is elected in term t2 by the other three and cut off with its no-op at index 2
/// (c) L3 (L1 or B, term t3) is elected; its own entries are held back, but x at index 2
///     reaches C: x is on a majority (L3, B, C) without any entry of term t3
/// (d) L3 is cut off; Y is elected again with C's and D's votes and overwrites index 2
/// ```
///
/// Correct Raft never commits x in (c), so (d) is safe. A leader that commits by counting
/// replicas of an earlier term's entry applies x, which (d) then replaces.
fn figure8_scenario(bugs: CoreBugs) -> Check {
    let weather = Weather {
        max_entries_per_message: 1,
        max_inflight_messages: 1,
        ..Weather::random(&mut ChaCha8Rng::seed_from_u64(0)).calm()
    };
    let mut sim = Sim::with_weather(8, ChaCha8Rng::seed_from_u64(8), weather, 5, bugs, true);
    play(&mut sim, figure8_script)
}

/// Runs a scripted scenario, printing the last events of its trace when it fails.
fn play(sim: &mut Sim, script: fn(&mut Sim) -> Check) -> Check {
    let result = script(sim);
    if result.is_err() {
        if let Some(trace) = &sim.trace {
            for line in trace.iter().rev().take(60).rev() {
                eprintln!("  {line}");
            }
        }
    }
    result
}

fn figure8_script(sim: &mut Sim) -> Check {
    let all: Vec<NodeId> = sim.members();
    let setup = |what: &str| Err(format!("script: {what}"));
    if !sim.tick_until(500, |s| s.converged())? {
        return setup("no first leader");
    }
    let l1 = sim.leader_among(&all).expect("converged");
    let others: Vec<NodeId> = all.iter().copied().filter(|&id| id != l1).collect();
    let (b, rest) = (others[0], others[1..].to_vec());
    // (a)
    sim.set_groups(&[&[l1, b], &[rest[0]], &[rest[1]], &[rest[2]]]);
    sim.propose_on(l1, b"x")?;
    if !sim.tick_until(50, |s| s.log_len(b) >= 2)? {
        return setup("x did not reach B");
    }
    // (b)
    sim.set_groups(&[&[l1, b], &rest]);
    if !sim.tick_until(500, |s| s.leader_among(&rest).is_some())? {
        return setup("no leader among the other three");
    }
    let y = sim.leader_among(&rest).expect("checked");
    let cd: Vec<NodeId> = rest.iter().copied().filter(|&id| id != y).collect();
    sim.set_groups(&[&[l1, b], &[y], &[cd[0]], &[cd[1]]]);
    let t2 = sim.term(y);
    if sim.log_len(y) != 2 || sim.log_len(cd[0]) != 1 || sim.log_len(cd[1]) != 1 {
        return setup("Y's no-op escaped");
    }
    // (c)
    let (c, d) = (cd[0], cd[1]);
    sim.strip_above = Some(t2);
    sim.set_groups(&[&[l1, b, c], &[y], &[d]]);
    let elected = sim.tick_until(500, |s| {
        s.leader_among(&[l1, b, c])
            .is_some_and(|l| s.term(l) > t2 && s.log_len(c) >= 2)
    })?;
    if !elected {
        return setup("no leader of term t3 holding x on a majority");
    }
    let l3 = sim.leader_among(&[l1, b, c]).expect("checked");
    sim.tick_until(20, |_| false)?;
    // (d)
    let b3 = if l3 == l1 { b } else { l1 };
    sim.strip_above = None;
    sim.set_groups(&[&[l3], &[y, c, d], &[b3]]);
    let t3 = sim.term(l3);
    let overwritten = sim.tick_until(500, |s| {
        s.leader_among(&[y, c, d]) == Some(y)
            && s.term(y) > t3
            && s.raft(y).is_some_and(|r| r.status().commit_index >= 2)
    })?;
    if !overwritten {
        return setup("Y was not re-elected");
    }
    sim.settle()
}

#[test]
fn figure8_in_the_simulation_never_commits_an_earlier_term_entry_by_counting() {
    if let Err(failure) = figure8_scenario(CoreBugs::default()) {
        panic!("{failure}");
    }
}

#[test]
fn the_simulation_catches_commits_of_earlier_term_entries_by_counting() {
    let failure = figure8_scenario(CoreBugs {
        commit_old_term: true,
        ..CoreBugs::default()
    })
    .expect_err("the planted bug went unnoticed");
    assert!(!failure.starts_with("script:"), "{failure}");
    eprintln!("caught: {failure}");
}

/// Two membership changes in flight at once, played on 3 voters and 2 learners:
///
/// ```text
/// (a) leader L of {1, 2, 3} adds learners 4 and 5, one change at a time, and they catch up
/// (b) L is cut off from the other two voters, with 4 and 5 on its side
/// (c) L promotes 4, then 5 before the first commits: its configuration is {1..5}, where
///     {L, 4, 5} is a majority, and it commits a write there
/// (d) the other two voters, still in {1, 2, 3}, are a majority of it: they elect a leader
///     and commit another write at the same index
/// ```
///
/// Single-server changes keep every majority of one configuration overlapping every majority
/// of the next only when there is one change at a time: a correct leader refuses the second
/// promotion in (c) (`InFlight`) and the script ends there.
fn two_changes_scenario(bugs: CoreBugs) -> Check {
    let weather = Weather::random(&mut ChaCha8Rng::seed_from_u64(0)).calm();
    let mut sim = Sim::with_weather(9, ChaCha8Rng::seed_from_u64(9), weather, 3, bugs, true);
    sim.enable_membership_changes(2);
    play(&mut sim, two_changes_script)
}

fn two_changes_script(sim: &mut Sim) -> Check {
    let setup = |what: &str| Err(format!("script: {what}"));
    let voters: Vec<NodeId> = vec![1, 2, 3];
    if !sim.tick_until(500, |s| s.converged())? {
        return setup("no first leader");
    }
    let l = sim.leader_among(&voters).expect("converged");
    let others: Vec<NodeId> = voters.iter().copied().filter(|&id| id != l).collect();
    // (a)
    for learner in [4, 5] {
        let add = ConfChange::AddLearner {
            id: learner,
            context: Vec::new(),
        };
        if let Err(e) = sim.conf_change_on(l, add) {
            return setup(&format!("adding learner {learner}: {e}"));
        }
        if !sim.tick_until(500, |s| s.converged())? {
            return setup("learner did not catch up");
        }
    }
    // (b)
    sim.set_groups(&[&[l, 4, 5], &others]);
    // (c)
    if let Err(e) = sim.conf_change_on(l, ConfChange::Promote { id: 4 }) {
        return setup(&format!("promoting 4: {e}"));
    }
    match sim.conf_change_on(l, ConfChange::Promote { id: 5 }) {
        Err(ConfChangeError::InFlight { .. }) => return sim.settle(),
        Err(e) => return setup(&format!("promoting 5: {e}")),
        Ok(()) => {}
    }
    sim.propose_on(l, b"k0=left")?;
    let left_index = sim.raft(l).map_or(0, |r| r.status().last_index);
    if !sim.tick_until(200, |s| {
        s.raft(l)
            .is_some_and(|r| r.status().commit_index >= left_index)
    })? {
        return setup("no commit on the side of L");
    }
    // (d)
    if !sim.tick_until(500, |s| s.leader_among(&others).is_some())? {
        return setup("no leader among the other two");
    }
    let right = sim.leader_among(&others).expect("checked");
    sim.propose_on(right, b"k0=right")?;
    sim.tick_until(200, |_| false)?;
    sim.settle()
}

#[test]
fn one_membership_change_at_a_time_keeps_majorities_overlapping() {
    if let Err(failure) = two_changes_scenario(CoreBugs::default()) {
        panic!("{failure}");
    }
}

#[test]
fn the_simulation_catches_two_membership_changes_in_flight() {
    let failure = two_changes_scenario(CoreBugs {
        two_changes_in_flight: true,
        ..CoreBugs::default()
    })
    .expect_err("the planted bug went unnoticed");
    let violation = violation_of(&failure);
    assert!(
        [
            "state-machine safety",
            "log matching",
            "leader completeness"
        ]
        .iter()
        .any(|kind| violation.starts_with(kind)),
        "expected a safety violation, got: {failure}"
    );
    eprintln!("caught: {failure}");
}

fn describe(body: &MessageBody) -> String {
    match body {
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
            read_round,
        } => format!(
            "Append prev={prev_log_index}@{prev_log_term} entries={:?} commit={leader_commit} \
             round={read_round}",
            entries
                .iter()
                .map(|e| format!("{}@{}", e.index, e.term))
                .collect::<Vec<_>>()
        ),
        other => format!("{other:?}"),
    }
}

/// Spare nodes of a seed with membership changes.
const SPARE_NODES: usize = 2;

/// Half the seeds of each cluster size change membership (seeds 2, 3, 6, 7, ...).
fn membership_seed(seed: u64) -> bool {
    (seed / 2) % 2 == 1
}

fn cluster_size(seed: u64) -> usize {
    match seed % 2 {
        0 => 3,
        _ => 5,
    }
}

/// Runs one seed; on failure the error says how to replay it.
fn run_seed(seed: u64, bugs: CoreBugs, trace: bool) -> Result<Stats, String> {
    run_sim(Sim::new(seed, cluster_size(seed), bugs, trace))
}

/// The violation in a failure of `run_sim`: what follows "failed at t=N: ".
fn violation_of(failure: &str) -> &str {
    failure
        .split_once(" failed at t=")
        .and_then(|(_, rest)| rest.split_once(": "))
        .map_or(failure, |(_, violation)| violation)
}

fn run_sim(mut sim: Sim) -> Result<Stats, String> {
    let seed = sim.seed;
    match sim.run() {
        Ok(()) => Ok(sim.stats),
        Err(violation) => {
            if let Some(trace) = &sim.trace {
                let from = trace.len().saturating_sub(TRACE_EVENTS);
                eprintln!("last events of seed {seed}:");
                for line in &trace[from..] {
                    eprintln!("  {line}");
                }
            }
            Err(format!(
                "seed {} ({} nodes, {:?}) failed at t={}: {violation}\n  replay: \
                 RIPTIDE_SIM_SEED={} cargo test -p riptide-server --test raft_sim",
                sim.seed,
                sim.nodes.len(),
                sim.stormy,
                sim.now,
                sim.seed
            ))
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name} must be a number, got {value:?}"),
    }
}

/// Runs the seeds of one cluster size (`parity` 0: 3 nodes, 1: 5 nodes).
fn run_seeds(parity: u64) {
    let seeds: Vec<u64> = match env_u64("RIPTIDE_SIM_SEED") {
        Some(seed) if seed % 2 == parity => vec![seed],
        Some(_) => return,
        None => {
            let count = env_u64("RIPTIDE_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
            let first = env_u64("RIPTIDE_SIM_FIRST_SEED").unwrap_or(0);
            (first..first + count).filter(|s| s % 2 == parity).collect()
        }
    };
    let trace = seeds.len() == 1;
    let mut total = Stats::default();
    for &seed in &seeds {
        match run_seed(seed, CoreBugs::default(), trace) {
            Ok(stats) => total += stats,
            Err(failure) => panic!("{failure}"),
        }
    }
    eprintln!(
        "{} seeds of {} nodes: {total:?}",
        seeds.len(),
        cluster_size(parity)
    );
    // The run must have done real work, or its safety proves nothing (checked over many
    // seeds only: one replayed seed may be quiet).
    let n = seeds.len() as u64;
    if n >= 100 {
        assert!(total.leaders >= 3 * n, "too few elections: {total:?}");
        assert!(
            total.acked_writes >= 50 * n,
            "too few acknowledged writes: {total:?}"
        );
        assert!(
            total.confirmed_reads >= 10 * n,
            "too few confirmed reads: {total:?}"
        );
        assert!(
            total.served_reads >= 5 * n,
            "too few reads checked by the checker: {total:?}"
        );
        assert!(total.crashes >= 3 * n, "too few crashes: {total:?}");
        // Both settings of pre-vote and check-quorum ran, and check-quorum did depose leaders.
        for count in [total.pre_vote_seeds, total.check_quorum_seeds] {
            assert!(
                count >= n / 2 && count < n,
                "pre-vote/check-quorum mix: {total:?}"
            );
        }
        assert!(
            total.quorum_step_downs >= n / 10,
            "too few check-quorum step-downs: {total:?}"
        );
        assert!(
            total.transfers >= n / 4,
            "too few leadership transfers: {total:?}"
        );
        assert!(
            total.snapshots_taken >= 10 * n,
            "too few snapshots: {total:?}"
        );
        assert!(
            total.snapshots_installed >= n / 4,
            "too few snapshot installs: {total:?}"
        );
        assert!(
            total.snapshot_chunks >= 2 * total.snapshots_installed,
            "snapshots were not chunked: {total:?}"
        );
        assert!(
            total.pinned_installs >= n / 4,
            "too few transfers pinned across a compaction: {total:?}"
        );
        assert!(
            total.window_appends >= 5 * n,
            "too few catch-ups from the window: {total:?}"
        );
        assert!(
            total.snapshot_crashes >= n / 4,
            "too few crashes while writing snapshots: {total:?}"
        );
        // Half the seeds change membership instead of wiping.
        assert!(total.wipes >= n / 8, "too few wiped nodes: {total:?}");
        assert!(
            total.membership_seeds >= n / 3 && total.conf_changes >= total.membership_seeds,
            "too few membership changes: {total:?}"
        );
        assert!(
            total.conf_deposed >= total.membership_seeds / 5,
            "too few leaders crashed or cut off with a change in flight: {total:?}"
        );
        // The disks misbehaved: power losses, crashes inside storage calls, bit flips, and
        // inputs between ready() and advance().
        assert!(
            total.power_losses >= 3 * n,
            "too few power losses: {total:?}"
        );
        assert!(
            total.crashes_in_storage >= n,
            "too few crashes inside storage calls: {total:?}"
        );
        assert!(total.bit_flips >= n, "too few bit flips: {total:?}");
        assert!(
            total.interleaved_inputs >= 50 * n,
            "too few inputs between ready and advance: {total:?}"
        );
        assert!(
            total.wipes_caught_up_by_snapshot >= total.wipes / 2,
            "wiped nodes did not catch up by snapshot: {total:?}"
        );
    }
}

#[test]
fn three_node_clusters_stay_safe_under_faults() {
    run_seeds(0);
}

#[test]
fn five_node_clusters_stay_safe_under_faults() {
    run_seeds(1);
}

/// A planted bug must make the simulation report a violation within `max_seeds` seeds, of one
/// of the `kinds` expected (the words a violation's message starts with): a run that fails
/// for another reason does not count as catching it.
fn assert_simulation_catches(bugs: CoreBugs, wal_bugs: WalBugs, max_seeds: u64, kinds: &[&str]) {
    let what = format!("{bugs:?} {wal_bugs:?}");
    assert_planted_caught(&what, bugs, |sim| sim.wal_bugs = wal_bugs, max_seeds, kinds);
}

/// The loop of every "catches the bug" test: seeds from 0, each with the core's planted `bugs`
/// and what `plant` sets on the simulator, until one fails with a violation of the `kinds`.
fn assert_planted_caught(
    what: &str,
    bugs: CoreBugs,
    plant: impl Fn(&mut Sim),
    max_seeds: u64,
    kinds: &[&str],
) {
    if env_u64("RIPTIDE_SIM_SEED").is_some() {
        return;
    }
    for seed in 0..max_seeds {
        let mut sim = Sim::new(seed, cluster_size(seed), bugs, false);
        plant(&mut sim);
        if let Err(failure) = run_sim(sim) {
            let violation = violation_of(&failure);
            assert!(
                kinds.iter().any(|kind| violation.starts_with(kind)),
                "{what}: expected a violation of {kinds:?}, got: {failure}"
            );
            eprintln!("{what} caught: {failure}");
            return;
        }
    }
    panic!("{what}: no violation in {max_seeds} seeds; the checks cannot see this bug");
}

#[test]
fn the_simulation_catches_followers_skipping_the_log_check() {
    assert_simulation_catches(
        CoreBugs {
            skip_log_check: true,
            ..CoreBugs::default()
        },
        WalBugs::default(),
        200,
        &[
            "log matching",
            "state-machine safety",
            "leader completeness",
        ],
    );
}

/// With the read-index check: a locally served read's index misses an acknowledged write.
#[test]
fn the_simulation_catches_leaders_serving_reads_locally() {
    assert_simulation_catches(
        CoreBugs {
            leader_local_reads: true,
            ..CoreBugs::default()
        },
        WalBugs::default(),
        200,
        &["linearizability"],
    );
}

/// Without the read-index check, by what the clients saw alone: the checker finds a read that
/// returned a value older than a write acknowledged before the read began.
#[test]
fn the_checker_catches_leaders_serving_reads_locally_from_the_client_history() {
    let bugs = CoreBugs {
        leader_local_reads: true,
        ..CoreBugs::default()
    };
    assert_checker_catches(bugs, |_| {});
}

/// A state machine whose snapshots lose a key: every index and digest is right, the nodes
/// restored from such a snapshot answer reads of that key wrongly; only the client history
/// shows it.
#[test]
fn the_checker_catches_snapshots_that_lose_a_key() {
    assert_checker_catches(CoreBugs::default(), |sim| sim.lossy_snapshots = true);
}

/// Planted `bugs` (and driver bugs `plant` sets) must make the checker, with the read-index
/// check off, report a non-linearizable history within 200 seeds.
fn assert_checker_catches(bugs: CoreBugs, plant: impl Fn(&mut Sim)) {
    let plant = |sim: &mut Sim| {
        plant(sim);
        sim.check_read_indexes = false;
    };
    let what = format!("{bugs:?} (checker only)");
    assert_planted_caught(&what, bugs, plant, 200, &["not linearizable"]);
}

/// The planted `no-fsync` bug (the WAL acknowledges entries it never fsynced): power losses
/// on the simulated disks drop acknowledged entries, and a committed entry goes missing.
#[test]
fn the_simulation_catches_a_wal_that_never_fsyncs() {
    assert_simulation_catches(
        CoreBugs::default(),
        WalBugs {
            no_fsync: true,
            ..WalBugs::default()
        },
        200,
        &[
            "state-machine safety",
            "leader completeness",
            "acknowledged write",
            "log matching",
            "election safety",
        ],
    );
}

/// The planted `wal-trusts-length` bug (recovery takes any bad record for a torn tail): a bit
/// flip in a record followed by others is cut with them instead of refused.
#[test]
fn the_simulation_catches_a_wal_that_cuts_records_after_a_bit_flip() {
    assert_simulation_catches(
        CoreBugs::default(),
        WalBugs {
            trusts_length: true,
            ..WalBugs::default()
        },
        200,
        &["amnesia"],
    );
}

#[test]
fn the_simulation_catches_wipes_that_break_the_operator_rule() {
    if env_u64("RIPTIDE_SIM_SEED").is_some() {
        return;
    }
    for seed in 0..200 {
        let mut sim = Sim::new(seed, cluster_size(seed), CoreBugs::default(), false);
        if sim.weather.wipe_from.is_none() {
            continue;
        }
        sim.careless_wipes = true;
        if let Err(failure) = run_sim(sim) {
            eprintln!("a careless wipe caught: {failure}");
            return;
        }
    }
    panic!("no violation from careless wipes in 200 seeds; the checks cannot see amnesia");
}
