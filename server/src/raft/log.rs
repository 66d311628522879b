//! The in-memory Raft log, and how much of it is durable, committed and handed out to apply.
//!
//! The log lives in memory in full; the driver mirrors it on disk from `Ready::entries`. Three
//! cursors make the durability rules explicit:
//!
//! ```text
//!  1 ........ applied ........ commit ........ persisted ....... handed_out ....... last
//!  |<- given to the driver ->|                 |<- in a Ready,  ->|<- not yet in  ->|
//!                                              |   not advanced   |   any Ready     |
//! ```
//!
//! (`commit` may also lie beyond `persisted`: a follower can learn that an entry is committed
//! before its own copy is durable.) Entries are handed to the state machine only up to
//! `min(commit, persisted)`, and the leader counts its own log toward a majority only up to
//! `persisted`: nothing is acknowledged or applied before its fsync.

use super::{Entry, EntryPayload, LogIndex, Term};

/// The log of one node plus its durability, commit and apply cursors.
#[derive(Debug, Clone)]
pub(crate) struct RaftLog {
    /// Every entry, `entries[i]` holding index `i + 1` (no compaction yet).
    entries: Vec<Entry>,
    /// Last index whose entry is durable *and* identical to the in-memory one: a truncation
    /// lowers it, `advance()` raises it.
    persisted: LogIndex,
    /// Last index handed out in a Ready; it becomes `persisted` at the next `advance()`.
    handed_out: LogIndex,
    /// Highest index known committed.
    commit: LogIndex,
    /// Last index handed to the driver in `Ready::committed_entries`.
    applied: LogIndex,
}

impl RaftLog {
    /// A log restored from disk: everything in it is durable. `commit` and `applied` are
    /// clamped to the log (a durable commit index can never be trusted beyond the log itself).
    pub(crate) fn restore(entries: Vec<Entry>, commit: LogIndex, applied: LogIndex) -> RaftLog {
        let mut entries = entries;
        // The storage layer validates the log; still, never run on a log with holes, which
        // would break every index computation below.
        if let Some(bad) = entries
            .iter()
            .enumerate()
            .position(|(i, e)| e.index != i as LogIndex + 1)
        {
            tracing::error!(
                position = bad,
                "restored log is not contiguous from 1; cut there"
            );
            entries.truncate(bad);
        }
        let last = entries.len() as LogIndex;
        let applied = applied.min(last);
        RaftLog {
            entries,
            persisted: last,
            handed_out: last,
            commit: commit.max(applied).min(last),
            applied,
        }
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.entries.len() as LogIndex
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.last().map_or(0, |e| e.term)
    }

    /// The term at `index`; `Some(0)` for index 0 ("before the log"), `None` beyond the end.
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == 0 {
            return Some(0);
        }
        self.entries.get(index as usize - 1).map(|e| e.term)
    }

    pub(crate) fn commit(&self) -> LogIndex {
        self.commit
    }

    pub(crate) fn persisted(&self) -> LogIndex {
        self.persisted
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entries from `from` on, at most `max_entries` and about `max_bytes` of payload (always
    /// at least one entry when there is one).
    pub(crate) fn slice_from(
        &self,
        from: LogIndex,
        max_entries: usize,
        max_bytes: usize,
    ) -> Vec<Entry> {
        let start = (from.max(1) - 1) as usize;
        if start >= self.entries.len() {
            return Vec::new();
        }
        let mut bytes = 0usize;
        let mut out = Vec::new();
        for entry in self.entries[start..].iter().take(max_entries.max(1)) {
            let size = match &entry.payload {
                EntryPayload::Noop => 0,
                EntryPayload::Command(c) => c.len(),
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
    /// the follower's backtracking hint, so the leader skips a whole term per round trip.
    pub(crate) fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let Some(term) = self.term_at(index) else {
            return self.last_index() + 1;
        };
        let mut first = index;
        while first > 1 && self.term_at(first - 1) == Some(term) {
            first -= 1;
        }
        first
    }

    /// The last index holding an entry of `term`, if any (terms never decrease along the log).
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        self.entries
            .iter()
            .rev()
            .take_while(|e| e.term >= term)
            .find(|e| e.term == term)
            .map(|e| e.index)
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
    /// replaced. Returns the index where a truncation happened, if one did.
    pub(crate) fn merge(&mut self, entries: Vec<Entry>) -> Option<LogIndex> {
        let mut truncated_at = None;
        let mut iter = entries.into_iter();
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

    /// Drops every entry from `index` on, moving the cursors that pointed past it.
    fn truncate_from(&mut self, index: LogIndex) {
        let keep = index.saturating_sub(1);
        if keep < self.commit {
            // Only reachable with a planted bug: a correct Raft never cuts committed entries.
            tracing::error!(index, commit = self.commit, "truncating committed entries");
            self.commit = keep;
        }
        self.applied = self.applied.min(keep);
        self.entries.truncate(keep as usize);
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

    /// True when entries exist that no Ready has carried yet.
    pub(crate) fn has_unsent(&self) -> bool {
        self.handed_out < self.last_index()
    }

    /// The entries for the next Ready: everything after what was handed out before (starting
    /// lower than the durable end when a suffix was replaced).
    pub(crate) fn take_unsent(&mut self) -> Vec<Entry> {
        let from = self.handed_out as usize;
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
        let out = self.entries[self.applied as usize..to as usize].to_vec();
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
        RaftLog::restore(entries, 0, 0)
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
}
