//! The in-memory Raft log after the latest snapshot, and how much of it is durable, committed
//! and handed out to apply.
//!
//! The snapshot point (`snapshot.index`, `snapshot.term`; index 0, term 0 without a snapshot)
//! is where the durable log starts: the entries up to it were compacted into a state-machine
//! snapshot (by the driver, [`RaftLog::compact`]) or replaced by one received from the leader
//! ([`RaftLog::install`]). In memory, a compaction keeps a *catch-up window* of up to
//! `keep` entries before the snapshot point (etcd's `SnapshotCatchUpEntries`), so a follower
//! only slightly behind is sent entries rather than a whole snapshot. The in-memory log
//! therefore starts after the *start point* (`start.index`, `start.term`), at or before the
//! snapshot point: `start == snapshot` after a restart, an install, or a compaction without a
//! window. The start point keeps its term, so the consistency check works at the edge:
//! `term_at(start.index)` is known, anything before it is `None` (compacted), as is anything
//! after the last entry (not there). The window holds only committed entries (the snapshot is
//! applied state), so it never conflicts with a leader's log and is never truncated; it is
//! memory only (the driver drops everything up to the snapshot point from its log on disk,
//! and a restarted node has only the suffix, which is still a valid log). The driver mirrors
//! the log after the snapshot on disk from `Ready::entries`; four cursors, all absolute
//! indices, make the durability rules explicit:
//!
//! ```text
//!  start ..... snapshot.index ... applied ...... commit ....... persisted ....... handed_out ....... last
//!  |<- window ->|<- given to the driver ->|                    |<- in a Ready,  ->|<- not yet in  ->|
//!  (memory only; on disk the log starts after snapshot.index)  |   not advanced   |   any Ready     |
//! ```
//!
//! (`commit` may also lie beyond `persisted`: a follower can learn that an entry is committed
//! before its own copy is durable.) Entries are handed to the state machine only up to
//! `min(commit, persisted)`, and the leader counts its own log toward a majority only up to
//! `persisted`: nothing is acknowledged or applied before its fsync. Every cursor is at least
//! `snapshot.index`: a snapshot only ever holds committed, applied state.

use super::{Entry, EntryPayload, LogIndex, SnapshotMeta, Term};

/// The log of one node after its snapshot, plus its durability, commit and apply cursors.
#[derive(Debug, Clone)]
pub(crate) struct RaftLog {
    /// The latest snapshot: every entry up to `snapshot.index` is in it, and the durable log
    /// starts after it.
    snapshot: SnapshotMeta,
    /// Where the in-memory log starts (the last entry dropped from memory, with its term): at
    /// or before `snapshot`, the entries in between being the catch-up window.
    start: SnapshotMeta,
    /// The entries after the start point, `entries[i]` holding index `start.index + 1 + i`.
    entries: Vec<Entry>,
    /// Last index whose entry is durable *and* identical to the in-memory one: a truncation
    /// lowers it, `advance()` raises it.
    persisted: LogIndex,
    /// Last index handed out in a Ready; it becomes `persisted` at the next `advance()`.
    handed_out: LogIndex,
    /// Highest index known committed.
    commit: LogIndex,
    /// Last index handed to the driver in `Ready::committed_entries` (or restored from a
    /// snapshot).
    applied: LogIndex,
}

impl RaftLog {
    /// A log restored from disk: a snapshot point and the entries after it, all durable.
    /// `commit` and `applied` are clamped between the snapshot (which holds only committed,
    /// applied state) and the log's end (a durable commit index can never be trusted beyond
    /// the log itself).
    pub(crate) fn restore(
        snapshot: SnapshotMeta,
        entries: Vec<Entry>,
        commit: LogIndex,
        applied: LogIndex,
    ) -> RaftLog {
        let mut entries = entries;
        // Entries the snapshot already covers (a crash between writing a snapshot and
        // compacting the log on disk) are dropped.
        entries.retain(|e| e.index > snapshot.index);
        // The storage layer validates the log; still, never run on a log with holes, which
        // would break every index computation below.
        if let Some(bad) = entries
            .iter()
            .enumerate()
            .position(|(i, e)| e.index != snapshot.index + 1 + i as LogIndex)
        {
            tracing::error!(
                position = bad,
                snapshot_index = snapshot.index,
                "restored log is not contiguous from the snapshot; cut there"
            );
            entries.truncate(bad);
        }
        let last = snapshot.index + entries.len() as LogIndex;
        let applied = applied.clamp(snapshot.index, last);
        RaftLog {
            snapshot,
            start: snapshot,
            entries,
            persisted: last,
            handed_out: last,
            commit: commit.max(applied).min(last),
            applied,
        }
    }

    /// The snapshot point: every entry up to it is compacted.
    pub(crate) fn snapshot(&self) -> SnapshotMeta {
        self.snapshot
    }

    /// The first index still held as an entry in memory (`start.index + 1`; inside the
    /// catch-up window when there is one, else `snapshot.index + 1`).
    pub(crate) fn first_index(&self) -> LogIndex {
        self.start.index + 1
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.start.index + self.entries.len() as LogIndex
    }

    /// The term of the last entry, or of the start point when no entry follows it.
    pub(crate) fn last_term(&self) -> Term {
        self.entries.last().map_or(self.start.term, |e| e.term)
    }

    /// The term at `index`: of an entry held in memory, or of the start point (`Some(0)` for
    /// index 0 without a snapshot); `None` for a compacted index or one beyond the end.
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.start.index {
            return Some(self.start.term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if the in-memory log (window included) holds it.
    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// True when `index` lies before the start point, so neither its entry nor its term is
    /// available any more (a follower needing it is sent the snapshot).
    pub(crate) fn is_compacted(&self, index: LogIndex) -> bool {
        index < self.start.index
    }

    pub(crate) fn commit(&self) -> LogIndex {
        self.commit
    }

    pub(crate) fn persisted(&self) -> LogIndex {
        self.persisted
    }

    pub(crate) fn applied(&self) -> LogIndex {
        self.applied
    }

    /// The entries held in memory, from `first_index()` (the catch-up window included).
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Position in `entries` of `index`, which must lie in `first_index()..=last_index() + 1`.
    fn position(&self, index: LogIndex) -> usize {
        (index - self.first_index()) as usize
    }

    /// Entries from `from` on, at most `max_entries` and about `max_bytes` of payload (always
    /// at least one entry when there is one). Empty when `from` is compacted (the caller sends
    /// the snapshot instead) or beyond the end. Entries of the catch-up window are served.
    pub(crate) fn slice_from(
        &self,
        from: LogIndex,
        max_entries: usize,
        max_bytes: usize,
    ) -> Vec<Entry> {
        if from < self.first_index() || from > self.last_index() {
            return Vec::new();
        }
        let mut bytes = 0usize;
        let mut out = Vec::new();
        for entry in self.entries[self.position(from)..]
            .iter()
            .take(max_entries.max(1))
        {
            let size = match &entry.payload {
                EntryPayload::Noop => 0,
                EntryPayload::Command(c) => c.len(),
                EntryPayload::Membership(m) => m
                    .members
                    .values()
                    .map(|member| 16 + member.context.len())
                    .sum(),
            };
            if !out.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            out.push(entry.clone());
        }
        out
    }

    /// The first index of the run of entries sharing the term at `index` (which must exist):
    /// the follower's backtracking hint, so the leader skips a whole term per round trip. The
    /// run stops at the first entry held in memory: the snapshot's entries (and the catch-up
    /// window's) are committed, so they match the leader's log and are never a conflict.
    pub(crate) fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let Some(term) = self.term_at(index) else {
            return self.last_index() + 1;
        };
        let mut first = index.max(self.first_index());
        while first > self.first_index() && self.term_at(first - 1) == Some(term) {
            first -= 1;
        }
        first
    }

    /// The last index holding an entry of `term`, if any (terms never decrease along the log);
    /// the start point counts when no later entry has that term.
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        self.entries
            .iter()
            .rev()
            .take_while(|e| e.term >= term)
            .find(|e| e.term == term)
            .map(|e| e.index)
            .or_else(|| {
                (self.start.index > 0 && self.start.term == term).then_some(self.start.index)
            })
    }

    /// Appends one entry at the end (leader side).
    pub(crate) fn append(&mut self, term: Term, payload: EntryPayload) -> LogIndex {
        let index = self.last_index() + 1;
        self.entries.push(Entry {
            index,
            term,
            payload,
        });
        index
    }

    /// Follower side of AppendEntries after the consistency check: entries already present
    /// with the same term are kept (a stale or duplicated message must never cut matching
    /// entries); at the first entry whose term differs, the log's suffix from there is
    /// replaced. Entries the snapshot covers are skipped: they are committed, so equal to the
    /// snapshot's. Returns the index where a truncation happened, if one did.
    pub(crate) fn merge(&mut self, entries: Vec<Entry>) -> Option<LogIndex> {
        let mut truncated_at = None;
        let mut iter = entries
            .into_iter()
            .skip_while(|e| e.index <= self.snapshot.index)
            .collect::<Vec<_>>()
            .into_iter();
        for entry in iter.by_ref() {
            match self.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    truncated_at = Some(entry.index);
                    self.truncate_from(entry.index);
                    self.entries.push(entry);
                    break;
                }
                None => {
                    self.entries.push(entry);
                    break;
                }
            }
        }
        self.entries.extend(iter);
        truncated_at
    }

    /// Drops every entry from `index` (after the snapshot) on, moving the cursors that pointed
    /// past it.
    fn truncate_from(&mut self, index: LogIndex) {
        let keep = index.saturating_sub(1).max(self.snapshot.index);
        if keep < self.commit {
            // Only reachable with a planted bug: a correct Raft never cuts committed entries.
            tracing::error!(index, commit = self.commit, "truncating committed entries");
            self.commit = keep;
        }
        self.applied = self.applied.min(keep);
        let position = self.position(keep + 1);
        self.entries.truncate(position);
        self.persisted = self.persisted.min(keep);
        self.handed_out = self.handed_out.min(keep);
    }

    /// Raises the commit index (never lowers it, never past the log's end).
    pub(crate) fn commit_to(&mut self, index: LogIndex) -> bool {
        let index = index.min(self.last_index());
        if index > self.commit {
            self.commit = index;
            true
        } else {
            false
        }
    }

    /// The driver made a snapshot of its state machine at `meta` durable: it becomes the
    /// snapshot point, and the entries up to `meta.index` are dropped from memory except the
    /// last `keep` of them (the catch-up window; a window left by earlier compactions only
    /// shrinks). The caller checked that `meta.index` is applied, not before the current
    /// snapshot, and that `meta.term` is the log's term there.
    pub(crate) fn compact(&mut self, meta: SnapshotMeta, keep: u64) {
        debug_assert!(meta.index <= self.applied && meta.index >= self.snapshot.index);
        debug_assert_eq!(self.term_at(meta.index), Some(meta.term));
        self.snapshot = meta;
        let new_start = meta.index.saturating_sub(keep).max(self.start.index);
        if new_start == self.start.index {
            return;
        }
        let Some(start_term) = self.term_at(new_start) else {
            // Cannot happen: start <= new_start <= meta.index, all held.
            tracing::error!(
                new_start,
                "no term at the new start of the log; not dropped"
            );
            return;
        };
        let drop = self.position(new_start + 1);
        self.entries.drain(..drop);
        self.start = SnapshotMeta {
            index: new_start,
            term: start_term,
        };
    }

    /// Replaces the whole log by a snapshot received from the leader, which the log does not
    /// hold and which is beyond this node's commit index (so no committed entry is lost: they
    /// are all inside the snapshot). The snapshot counts as persisted and applied from here:
    /// it goes out in the next Ready, which the driver persists (and restores its state
    /// machine from) before anything that depends on it.
    pub(crate) fn install(&mut self, meta: SnapshotMeta) {
        debug_assert!(meta.index > self.commit);
        self.entries.clear();
        self.snapshot = meta;
        self.start = meta;
        self.commit = self.commit.max(meta.index);
        self.applied = meta.index;
        self.persisted = meta.index;
        self.handed_out = meta.index;
    }

    /// True when entries exist that no Ready has carried yet.
    pub(crate) fn has_unsent(&self) -> bool {
        self.handed_out < self.last_index()
    }

    /// The entries for the next Ready: everything after what was handed out before (starting
    /// lower than the durable end when a suffix was replaced).
    pub(crate) fn take_unsent(&mut self) -> Vec<Entry> {
        let from = self.position(self.handed_out + 1);
        let out = self.entries[from..].to_vec();
        self.handed_out = self.last_index();
        out
    }

    /// The driver made everything handed out so far durable.
    pub(crate) fn advance(&mut self) {
        self.persisted = self.persisted.max(self.handed_out);
    }

    fn applicable(&self) -> LogIndex {
        self.commit.min(self.persisted)
    }

    /// True when committed, durable entries wait to be applied.
    pub(crate) fn has_committable(&self) -> bool {
        self.applicable() > self.applied
    }

    /// Committed, durable entries not yet handed to the driver.
    pub(crate) fn take_committable(&mut self) -> Vec<Entry> {
        let to = self.applicable();
        if to <= self.applied {
            return Vec::new();
        }
        let out = self.entries[self.position(self.applied + 1)..self.position(to + 1)].to_vec();
        self.applied = to;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of_terms(terms: &[Term]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry {
                index: i as LogIndex + 1,
                term,
                payload: EntryPayload::Noop,
            })
            .collect();
        RaftLog::restore(SnapshotMeta::default(), entries, 0, 0)
    }

    fn terms(log: &RaftLog) -> Vec<Term> {
        log.entries().iter().map(|e| e.term).collect()
    }

    fn entry(index: LogIndex, term: Term) -> Entry {
        Entry {
            index,
            term,
            payload: EntryPayload::Noop,
        }
    }

    #[test]
    fn merge_keeps_matching_entries_of_a_stale_message() {
        let mut log = log_of_terms(&[1, 1, 2, 2]);
        // A delayed copy of an older AppendEntries carrying only entries 2..3.
        assert_eq!(log.merge(vec![entry(2, 1), entry(3, 2)]), None);
        assert_eq!(terms(&log), vec![1, 1, 2, 2]);
        assert_eq!(log.persisted(), 4);
    }

    #[test]
    fn merge_replaces_only_the_conflicting_suffix() {
        let mut log = log_of_terms(&[1, 1, 2, 2]);
        assert_eq!(log.merge(vec![entry(2, 1), entry(3, 3)]), Some(3));
        assert_eq!(terms(&log), vec![1, 1, 3]);
        assert_eq!(
            log.persisted(),
            2,
            "the replaced suffix is no longer durable"
        );
        assert_eq!(log.take_unsent(), vec![entry(3, 3)]);
    }

    #[test]
    fn backtracking_hints_cover_a_whole_term() {
        let log = log_of_terms(&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6]);
        assert_eq!(log.first_index_of_term_at(9), 8);
        assert_eq!(log.first_index_of_term_at(5), 4);
        assert_eq!(log.first_index_of_term_at(2), 1);
        assert_eq!(log.last_index_of_term(4), Some(5));
        assert_eq!(log.last_index_of_term(3), None);
    }

    #[test]
    fn committed_entries_wait_for_durability() {
        let mut log = log_of_terms(&[]);
        log.append(1, EntryPayload::Noop);
        log.append(1, EntryPayload::Noop);
        log.commit_to(2);
        assert!(!log.has_committable(), "nothing is durable yet");
        assert_eq!(log.take_unsent().len(), 2);
        assert!(!log.has_committable(), "handed out is not durable");
        log.advance();
        assert_eq!(log.take_committable().len(), 2);
        assert!(!log.has_committable());
    }

    /// A log compacted up to 4@2, holding 5@2, 6@3, 7@3.
    fn compacted_log() -> RaftLog {
        let mut log = log_of_terms(&[1, 1, 2, 2, 2, 3, 3]);
        log.commit_to(7);
        log.advance();
        assert_eq!(log.take_committable().len(), 7);
        log.compact(SnapshotMeta { index: 4, term: 2 }, 0);
        log
    }

    #[test]
    fn indices_are_offset_by_the_snapshot() {
        let log = compacted_log();
        assert_eq!(log.first_index(), 5);
        assert_eq!(log.last_index(), 7);
        assert_eq!(log.last_term(), 3);
        assert_eq!(log.term_at(3), None, "compacted");
        assert_eq!(log.term_at(4), Some(2), "the snapshot point keeps its term");
        assert_eq!(log.term_at(5), Some(2));
        assert_eq!(log.term_at(8), None);
        assert!(log.is_compacted(3) && !log.is_compacted(4));
        assert_eq!(
            log.slice_from(4, 10, 1000),
            vec![],
            "compacted: send the snapshot"
        );
        assert_eq!(log.slice_from(6, 10, 1000), vec![entry(6, 3), entry(7, 3)]);
    }

    #[test]
    fn an_empty_suffix_ends_at_the_snapshot() {
        let mut log = log_of_terms(&[1, 2]);
        log.commit_to(2);
        log.advance();
        log.take_committable();
        log.compact(SnapshotMeta { index: 2, term: 2 }, 0);
        assert!(log.entries().is_empty());
        assert_eq!((log.last_index(), log.last_term()), (2, 2));
        assert_eq!(log.take_unsent(), vec![]);
        assert_eq!(log.append(3, EntryPayload::Noop), 3);
        assert_eq!(log.take_unsent(), vec![entry(3, 3)]);
    }

    #[test]
    fn backtracking_hints_stop_at_the_snapshot() {
        let log = compacted_log();
        assert_eq!(
            log.first_index_of_term_at(5),
            5,
            "term 2 runs into the snapshot, which is committed: no conflict there"
        );
        assert_eq!(log.first_index_of_term_at(7), 6);
        assert_eq!(log.last_index_of_term(3), Some(7));
        assert_eq!(log.last_index_of_term(2), Some(5));
        let mut only_snapshot = log_of_terms(&[1, 2]);
        only_snapshot.commit_to(2);
        only_snapshot.advance();
        only_snapshot.take_committable();
        only_snapshot.compact(SnapshotMeta { index: 2, term: 2 }, 0);
        assert_eq!(only_snapshot.last_index_of_term(2), Some(2));
        assert_eq!(only_snapshot.last_index_of_term(1), None);
    }

    #[test]
    fn merge_skips_entries_inside_the_snapshot_and_truncates_after_it() {
        let mut log = compacted_log();
        assert_eq!(log.merge(vec![entry(3, 1), entry(4, 2), entry(5, 2)]), None);
        assert_eq!(terms(&log), vec![2, 3, 3]);
        assert_eq!(
            log.merge(vec![entry(4, 2), entry(5, 2), entry(6, 4)]),
            Some(6)
        );
        assert_eq!(terms(&log), vec![2, 4]);
        assert_eq!(log.take_unsent(), vec![entry(6, 4)]);
    }

    #[test]
    fn a_restored_log_drops_entries_its_snapshot_covers() {
        let entries: Vec<Entry> = (1..=6).map(|i| entry(i, 1)).collect();
        let log = RaftLog::restore(SnapshotMeta { index: 4, term: 1 }, entries, 0, 0);
        assert_eq!(log.first_index(), 5);
        assert_eq!(log.last_index(), 6);
        assert_eq!(log.commit(), 4, "the snapshot is committed");
        assert_eq!(
            log.applied(),
            4,
            "and its state already in the state machine"
        );
        let gap = RaftLog::restore(SnapshotMeta { index: 4, term: 1 }, vec![entry(6, 1)], 0, 0);
        assert_eq!(gap.last_index(), 4, "a gap after the snapshot is cut");
    }

    #[test]
    fn installing_a_snapshot_replaces_the_log_and_moves_every_cursor() {
        let mut log = log_of_terms(&[1, 1, 2]);
        log.commit_to(1);
        log.install(SnapshotMeta { index: 5, term: 3 });
        assert!(log.entries().is_empty());
        assert_eq!(log.commit(), 5);
        assert_eq!(log.applied(), 5);
        assert_eq!(log.persisted(), 5);
        assert!(!log.has_unsent() && !log.has_committable());
        assert_eq!(log.term_at(5), Some(3));
    }

    #[test]
    fn compaction_keeps_a_catch_up_window_whose_edge_keeps_its_term() {
        let mut log = log_of_terms(&[1, 1, 2, 2, 2, 3, 3]);
        log.commit_to(7);
        log.advance();
        assert_eq!(log.take_committable().len(), 7);
        log.compact(SnapshotMeta { index: 6, term: 3 }, 3);
        assert_eq!(log.snapshot(), SnapshotMeta { index: 6, term: 3 });
        assert_eq!(
            log.first_index(),
            4,
            "entries 4..=6 kept before the snapshot"
        );
        assert_eq!(log.term_at(3), Some(2), "the edge keeps its term");
        assert_eq!(log.term_at(2), None);
        assert_eq!(log.term_at(6), Some(3));
        assert!(log.is_compacted(2) && !log.is_compacted(3));
        assert_eq!(log.slice_from(3, 10, 1000), vec![], "before the edge");
        assert_eq!(
            log.slice_from(4, 2, 1000),
            vec![entry(4, 2), entry(5, 2)],
            "served from the window"
        );
        assert_eq!(log.last_index_of_term(2), Some(5));
        assert_eq!(log.last_index_of_term(1), None);
        assert_eq!(
            log.first_index_of_term_at(5),
            4,
            "stops at the window's start"
        );
        // Entries the snapshot covers are skipped by a merge; the window is untouched.
        assert_eq!(
            log.merge(vec![entry(5, 2), entry(6, 3), entry(7, 3), entry(8, 3)]),
            None
        );
        assert_eq!(log.take_unsent(), vec![entry(8, 3)]);
        assert_eq!(terms(&log), vec![2, 2, 3, 3, 3]);
        // Later compactions only shrink the window.
        log.compact(SnapshotMeta { index: 7, term: 3 }, 10);
        assert_eq!(log.first_index(), 4);
        log.compact(SnapshotMeta { index: 7, term: 3 }, 1);
        assert_eq!(log.first_index(), 7);
        assert_eq!(log.term_at(6), Some(3));
        // An installed snapshot drops everything, window included.
        log.install(SnapshotMeta { index: 20, term: 4 });
        assert_eq!(log.first_index(), 21);
        assert!(log.entries().is_empty());
        assert_eq!(log.term_at(20), Some(4));
    }
}
