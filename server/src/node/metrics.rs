//! Counters of a running node, rendered in the Prometheus text format for `GET /metrics`.
//!
//! Plain atomics: the Raft loop, the transport and the HTTP handlers bump them from different
//! threads, and a scrape only needs each counter to be monotone, not a consistent snapshot.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::NodeStatus;

/// Every counter the node exports. Names follow Prometheus conventions (`_total` for counters).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Client writes handed to the Raft core (accepted by a leader).
    pub proposals_total: AtomicU64,
    /// Client writes answered after being applied.
    pub proposals_applied_total: AtomicU64,
    /// Client writes answered 504 (timed out, overwritten or leadership lost).
    pub proposals_failed_total: AtomicU64,
    /// Writes whose Request-Id had already been applied (answered from the session table).
    pub duplicate_requests_total: AtomicU64,
    /// Linearizable reads answered.
    pub reads_total: AtomicU64,
    /// Reads answered 504 or failed because leadership was lost.
    pub reads_failed_total: AtomicU64,
    /// Requests answered with 307 to the leader.
    pub redirects_total: AtomicU64,
    /// Requests answered 503 (no known leader).
    pub unavailable_total: AtomicU64,
    /// `Ready`s persisted: each costs at most one WAL fsync (group commit).
    pub persist_batches_total: AtomicU64,
    /// Log entries made durable.
    pub persisted_entries_total: AtomicU64,
    /// Time spent persisting, in microseconds.
    pub persist_micros_total: AtomicU64,
    /// fsync calls (WAL and hard state).
    pub fsyncs_total: AtomicU64,
    /// Log entries applied to the state machine.
    pub applied_entries_total: AtomicU64,
    /// Raft messages queued to peers.
    pub peer_messages_sent_total: AtomicU64,
    /// Raft messages dropped because a peer's queue was full or its link was down.
    pub peer_messages_dropped_total: AtomicU64,
    /// Raft messages received from peers.
    pub peer_messages_received_total: AtomicU64,
    /// Bytes of Raft frames written to peer connections (length prefixes included).
    pub peer_bytes_sent_total: AtomicU64,
    /// Outbound peer connections established.
    pub peer_connects_total: AtomicU64,
    /// Snapshots this node took of its own state machine (each followed by a log compaction).
    pub snapshots_taken_total: AtomicU64,
    /// Snapshots received from a leader and installed (this node had fallen behind its log).
    pub snapshots_installed_total: AtomicU64,
    /// Time from the start of a snapshot to its compaction (clone, then serialise, write and
    /// fsync in the background, then compact), in microseconds.
    pub snapshot_micros_total: AtomicU64,
    /// Gauge: size of the write-ahead log in bytes (bounded by snapshots).
    pub wal_bytes: AtomicU64,
    /// Gauge: size of the snapshot file in bytes.
    pub snapshot_bytes: AtomicU64,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    /// The Prometheus text exposition of the counters and of the node's Raft view.
    pub fn render(&self, status: &NodeStatus) -> String {
        let mut out = String::new();
        let counters: [(&str, &AtomicU64, &str); 21] = [
            (
                "riptide_proposals_total",
                &self.proposals_total,
                "Client writes proposed to Raft.",
            ),
            (
                "riptide_proposals_applied_total",
                &self.proposals_applied_total,
                "Client writes answered after apply.",
            ),
            (
                "riptide_proposals_failed_total",
                &self.proposals_failed_total,
                "Client writes with an unknown outcome (504).",
            ),
            (
                "riptide_duplicate_requests_total",
                &self.duplicate_requests_total,
                "Retried Request-Ids answered from the session table.",
            ),
            (
                "riptide_reads_total",
                &self.reads_total,
                "Linearizable reads answered.",
            ),
            (
                "riptide_reads_failed_total",
                &self.reads_failed_total,
                "Linearizable reads that failed or timed out.",
            ),
            (
                "riptide_redirects_total",
                &self.redirects_total,
                "Requests redirected to the leader.",
            ),
            (
                "riptide_unavailable_total",
                &self.unavailable_total,
                "Requests refused with 503 (no known leader).",
            ),
            (
                "riptide_persist_batches_total",
                &self.persist_batches_total,
                "Ready batches persisted (group commits).",
            ),
            (
                "riptide_persisted_entries_total",
                &self.persisted_entries_total,
                "Log entries made durable.",
            ),
            (
                "riptide_persist_microseconds_total",
                &self.persist_micros_total,
                "Time spent persisting, in microseconds.",
            ),
            (
                "riptide_fsyncs_total",
                &self.fsyncs_total,
                "fsync calls (WAL and hard state).",
            ),
            (
                "riptide_applied_entries_total",
                &self.applied_entries_total,
                "Log entries applied to the state machine.",
            ),
            (
                "riptide_peer_messages_sent_total",
                &self.peer_messages_sent_total,
                "Raft messages queued to peers.",
            ),
            (
                "riptide_peer_messages_dropped_total",
                &self.peer_messages_dropped_total,
                "Raft messages dropped (queue full or link down).",
            ),
            (
                "riptide_peer_messages_received_total",
                &self.peer_messages_received_total,
                "Raft messages received from peers.",
            ),
            (
                "riptide_peer_bytes_sent_total",
                &self.peer_bytes_sent_total,
                "Bytes of Raft frames written to peers (length prefixes included).",
            ),
            (
                "riptide_peer_connects_total",
                &self.peer_connects_total,
                "Outbound peer connections established.",
            ),
            (
                "riptide_snapshots_taken_total",
                &self.snapshots_taken_total,
                "Snapshots taken of the state machine (each compacts the log).",
            ),
            (
                "riptide_snapshots_installed_total",
                &self.snapshots_installed_total,
                "Snapshots received from a leader and installed.",
            ),
            (
                "riptide_snapshot_microseconds_total",
                &self.snapshot_micros_total,
                "Time spent taking snapshots, in microseconds.",
            ),
        ];
        for (name, value, help) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let raft = &status.raft;
        let gauges: [(&str, u64, &str); 9] = [
            ("riptide_term", raft.term, "Current Raft term."),
            (
                "riptide_commit_index",
                raft.commit_index,
                "Highest log index known committed.",
            ),
            (
                "riptide_applied_index",
                status.applied_index,
                "Highest log index applied.",
            ),
            (
                "riptide_last_index",
                raft.last_index,
                "Index of the last log entry.",
            ),
            (
                "riptide_is_leader",
                u64::from(raft.role == crate::raft::Role::Leader),
                "1 when this node is the leader.",
            ),
            (
                "riptide_leader_id",
                raft.leader.unwrap_or(0),
                "Id of the known leader (0 when unknown).",
            ),
            (
                "riptide_snapshot_index",
                raft.snapshot_index,
                "Index the latest snapshot covers (0 without one).",
            ),
            (
                "riptide_wal_bytes",
                self.wal_bytes.load(Ordering::Relaxed),
                "Size of the write-ahead log in bytes.",
            ),
            (
                "riptide_snapshot_bytes",
                self.snapshot_bytes.load(Ordering::Relaxed),
                "Size of the snapshot file in bytes.",
            ),
        ];
        for (name, value, help) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}
