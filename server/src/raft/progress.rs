//! What the leader knows about each follower's log, and how it sends to it.
//!
//! A follower is in one of three states, as in etcd's `tracker/progress`:
//! - **Probe**: the leader does not know where the follower's log diverges. It sends one
//!   AppendEntries and waits for the answer (or the next heartbeat) before sending another; a
//!   rejection moves `next_index` back by the follower's conflict hint, one term per round trip.
//! - **Replicate**: the follower's log matches up to `match_index`. The leader pipelines: it
//!   advances `next_index` optimistically as it sends, with at most `max_inflight_messages`
//!   unacknowledged messages ([`Inflights`]). Any rejection falls back to Probe.
//! - **Snapshot**: the entries the follower needs next are compacted. The leader sends its
//!   snapshot in chunks, one chunk in flight at a time, resending the unacknowledged chunk at
//!   every heartbeat (like a probe). The transfer is pinned to the snapshot it started with
//!   (the progress holds it): a compaction on the leader meanwhile does not restart it, or a
//!   large state would never arrive while the leader compacts faster than it can be sent.
//!   Once the follower says the snapshot is installed (or that its log already held it),
//!   `match_index` is the snapshot's index, the pin is released, and the leader continues
//!   from the next index (Replicate): with entries, or with its newer snapshot if those
//!   entries were compacted meanwhile.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{LogIndex, Snapshot, SnapshotMeta};

/// Heartbeat intervals without any acknowledgement before a pipeline is presumed stalled.
pub(crate) const STALL_HEARTBEATS: u32 = 3;

/// How the leader currently sends to a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressState {
    Probe,
    Replicate,
    Snapshot,
}

/// The leader's view of one follower.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    /// Highest index known to match the leader's log and be durable on the follower.
    pub(crate) match_index: LogIndex,
    /// Index of the next entry to send.
    pub(crate) next_index: LogIndex,
    pub(crate) state: ProgressState,
    /// In Probe: a probe is on the wire; in Snapshot: a chunk is. Wait for its answer or the
    /// next heartbeat.
    pub(crate) probe_sent: bool,
    /// In Snapshot: the snapshot being sent, pinned for the whole transfer (shared with the
    /// leader's, so it costs memory only once the leader has a newer one); None otherwise.
    pub(crate) snapshot: Option<Arc<Snapshot>>,
    /// In Snapshot: the offset of the next chunk (what the follower said it expects).
    pub(crate) snapshot_offset: u64,
    /// In Replicate: the messages with entries not yet acknowledged.
    pub(crate) inflights: Inflights,
    /// Highest ReadIndex heartbeat round this follower acknowledged in the current term.
    pub(crate) acked_round: u64,
    /// `match_index` at the previous heartbeat, and how many heartbeats in a row found it
    /// unchanged with messages in flight: a pipeline stalled that long probably lost a message
    /// and falls back to Probe.
    pub(crate) match_at_heartbeat: LogIndex,
    pub(crate) stalled_heartbeats: u32,
    /// The follower answered an AppendEntries of this term since the last check-quorum.
    pub(crate) recent_active: bool,
    /// `recent_active` at the last check-quorum, so a follower that answered just before the
    /// check still counts as active right after it.
    pub(crate) was_active: bool,
}

impl Progress {
    /// A follower the new leader knows nothing about: probe from the end of the leader's log.
    pub(crate) fn new(next_index: LogIndex, max_inflight: usize) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            snapshot: None,
            snapshot_offset: 0,
            inflights: Inflights::new(max_inflight),
            acked_round: 0,
            match_at_heartbeat: 0,
            stalled_heartbeats: 0,
            recent_active: false,
            was_active: false,
        }
    }

    /// Heard from within the last one or two election timeouts (membership checks).
    pub(crate) fn active(&self) -> bool {
        self.recent_active || self.was_active
    }

    /// Back to one message at a time from `next_index`.
    pub(crate) fn become_probe(&mut self, next_index: LogIndex) {
        self.state = ProgressState::Probe;
        self.stalled_heartbeats = 0;
        self.next_index = next_index.max(self.match_index + 1);
        self.probe_sent = false;
        self.snapshot = None;
        self.inflights.clear();
    }

    /// The follower matches up to `match_index`: stream from there.
    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.snapshot = None;
        self.inflights.clear();
    }

    /// The entries from `next_index` are compacted: send `snapshot` from its start, and keep
    /// sending that one until the follower has it.
    pub(crate) fn become_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.state = ProgressState::Snapshot;
        self.stalled_heartbeats = 0;
        self.snapshot = Some(snapshot);
        self.snapshot_offset = 0;
        self.probe_sent = false;
        self.inflights.clear();
    }

    /// Records a successful append; returns true when `match_index` moved.
    pub(crate) fn on_success(&mut self, match_index: LogIndex) -> bool {
        self.inflights.free_up_to(match_index);
        self.probe_sent = false;
        if match_index > self.match_index {
            self.match_index = match_index;
            self.next_index = self.next_index.max(match_index + 1);
            true
        } else {
            false
        }
    }

    /// The snapshot being sent, in Snapshot state.
    pub(crate) fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.snapshot.as_ref().map(|s| s.meta)
    }

    /// May the leader send a message carrying entries now?
    pub(crate) fn can_send_entries(&self) -> bool {
        match self.state {
            ProgressState::Probe | ProgressState::Snapshot => !self.probe_sent,
            ProgressState::Replicate => !self.inflights.is_full(),
        }
    }

    /// At a heartbeat: a pipeline with messages in flight and no acknowledgement over
    /// [`STALL_HEARTBEATS`] heartbeat intervals is presumed to have lost one; probe again from
    /// `match_index`. (A round trip longer than one interval must not trigger this, or a slow
    /// link would be re-sent everything.)
    pub(crate) fn on_heartbeat(&mut self) {
        if self.state == ProgressState::Replicate
            && !self.inflights.is_empty()
            && self.match_index == self.match_at_heartbeat
        {
            self.stalled_heartbeats += 1;
            if self.stalled_heartbeats >= STALL_HEARTBEATS {
                self.become_probe(self.match_index + 1);
            }
        } else {
            self.stalled_heartbeats = 0;
        }
        self.match_at_heartbeat = self.match_index;
        if matches!(self.state, ProgressState::Probe | ProgressState::Snapshot) {
            // A probe or snapshot chunk lost on the way is retried at every heartbeat.
            self.probe_sent = false;
        }
    }

    /// Bookkeeping after sending entries up to `last` (or a probe without entries).
    pub(crate) fn on_sent(&mut self, last: Option<LogIndex>) {
        match self.state {
            ProgressState::Probe | ProgressState::Snapshot => self.probe_sent = true,
            ProgressState::Replicate => {
                if let Some(last) = last {
                    self.next_index = last + 1;
                    self.inflights.add(last);
                }
            }
        }
    }
}

/// The unacknowledged AppendEntries of a pipelined follower, by the last index each carried.
///
/// Invariant: indices are increasing from front to back and there are at most `capacity` of
/// them. An acknowledgement up to `i` frees every message ending at or before `i` (responses
/// may arrive out of order or be lost; a later ack covers an earlier message).
#[derive(Debug, Clone)]
pub(crate) struct Inflights {
    last_indices: VecDeque<LogIndex>,
    capacity: usize,
}

impl Inflights {
    pub(crate) fn new(capacity: usize) -> Inflights {
        Inflights {
            last_indices: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.last_indices.len() >= self.capacity
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.last_indices.is_empty()
    }

    pub(crate) fn add(&mut self, last: LogIndex) {
        self.last_indices.push_back(last);
    }

    pub(crate) fn free_up_to(&mut self, index: LogIndex) {
        while self.last_indices.front().is_some_and(|&last| last <= index) {
            self.last_indices.pop_front();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.last_indices.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflights_fill_up_and_free_in_order() {
        let mut inflights = Inflights::new(2);
        inflights.add(3);
        assert!(!inflights.is_full());
        inflights.add(7);
        assert!(inflights.is_full());
        inflights.free_up_to(5);
        assert!(
            !inflights.is_full(),
            "the message ending at 3 is acknowledged"
        );
        inflights.free_up_to(2);
        assert!(!inflights.is_full());
        inflights.add(9);
        inflights.free_up_to(9);
        assert!(
            inflights.last_indices.is_empty(),
            "a later ack covers earlier messages"
        );
    }

    #[test]
    fn probe_never_moves_next_below_match() {
        let mut progress = Progress::new(10, 4);
        assert!(progress.on_success(6));
        progress.become_probe(2);
        assert_eq!(progress.next_index, 7);
        assert!(progress.can_send_entries());
        progress.on_sent(Some(8));
        assert!(!progress.can_send_entries(), "one probe at a time");
        progress.become_replicate();
        assert_eq!(progress.next_index, 7);
        progress.on_sent(Some(9));
        assert_eq!(
            progress.next_index, 10,
            "pipelining advances next optimistically"
        );
    }

    #[test]
    fn a_snapshot_transfer_keeps_one_chunk_in_flight_and_retries_at_heartbeats() {
        let mut progress = Progress::new(10, 4);
        progress.become_replicate();
        progress.on_sent(Some(12));
        let meta = SnapshotMeta { index: 20, term: 3 };
        progress.become_snapshot(Arc::new(Snapshot {
            meta,
            membership: None,
            data: b"state".to_vec(),
        }));
        assert_eq!(progress.snapshot_meta(), Some(meta));
        assert_eq!(progress.snapshot_offset, 0);
        assert!(progress.inflights.is_empty(), "the pipeline is abandoned");
        assert!(progress.can_send_entries());
        progress.on_sent(None);
        assert!(!progress.can_send_entries(), "one chunk at a time");
        progress.on_heartbeat();
        assert!(
            progress.can_send_entries(),
            "a lost chunk is resent at the heartbeat"
        );
        assert_eq!(
            progress.state,
            ProgressState::Snapshot,
            "a heartbeat never ends it"
        );
        assert!(progress.on_success(20));
        progress.become_replicate();
        assert_eq!(progress.next_index, 21);
        assert_eq!(progress.snapshot_meta(), None, "the pin is released");
    }
}
