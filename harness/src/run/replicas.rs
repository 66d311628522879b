//! Whether the replicas applied the same log: Raft's State Machine Safety checked from outside.
//!
//! A linearizable history does not prove the nodes agree. When a leader commits an entry of an
//! old term by counting replicas and a later leader overwrites it (Raft's Figure 8), the node
//! that applied the overwritten entry keeps its effects; if that entry was a write its client
//! retried under the same request id, every read afterwards can still look right. So each node
//! says in `/status` what it applied, as a digest: a hash chain over every applied entry's
//! index, term and bytes. Two sightings at the same applied index, from two nodes or from one
//! node before and after a restart, must show the same digest; any two that differ mean some
//! node applied a different entry at some index up to there (or lost an applied one), which no
//! correct Raft does. etcd's corruption check compares members' KV hashes at a revision the
//! same way.
//!
//! The sampler feeds every `/status` answer of the run to a [`DigestBook`]; after the final
//! reads the engine asks every member until they stand at the same applied index, so the end of
//! a run always gives a comparison. Systems that do not report a digest (etcd here) are not
//! compared.

use std::collections::BTreeMap;

/// One node's digest at one applied index, as first seen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sighting {
    /// Index of the node (0-based; `n1` is 0).
    pub node: usize,
    pub digest: String,
    /// Nanoseconds since the history's origin.
    pub time_ns: u64,
}

/// Two sightings at the same applied index with different digests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Divergence {
    pub applied_index: u64,
    pub first: Sighting,
    pub second: Sighting,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = |ns: u64| ns as f64 / 1e9;
        let who = if self.first.node == self.second.node {
            format!(
                "n{} itself showed applied digest {} at {:.2} s and {} at {:.2} s (it lost or replaced an entry it had applied)",
                self.first.node + 1,
                self.first.digest,
                secs(self.first.time_ns),
                self.second.digest,
                secs(self.second.time_ns)
            )
        } else {
            format!(
                "n{} showed applied digest {} (at {:.2} s) and n{} showed {} (at {:.2} s): they applied different entries",
                self.first.node + 1,
                self.first.digest,
                secs(self.first.time_ns),
                self.second.node + 1,
                self.second.digest,
                secs(self.second.time_ns)
            )
        };
        write!(
            f,
            "replicas diverged at applied index {}: {who} (State Machine Safety)",
            self.applied_index
        )
    }
}

/// Every distinct digest seen at each applied index, with who showed it first.
#[derive(Debug, Default)]
pub struct DigestBook {
    by_index: BTreeMap<u64, Vec<Sighting>>,
}

impl DigestBook {
    /// Notes that `node` reported `digest` at `applied_index`. Index 0 (nothing applied) says
    /// nothing.
    pub fn record(&mut self, node: usize, applied_index: u64, digest: &str, time_ns: u64) {
        if applied_index == 0 {
            return;
        }
        let seen = self.by_index.entry(applied_index).or_default();
        if seen.iter().any(|s| s.digest == digest) {
            return;
        }
        seen.push(Sighting {
            node,
            digest: digest.to_string(),
            time_ns,
        });
    }

    /// Notes what `state` says of `node`'s applied digest, if it reports one; a poisoned lock
    /// (a panicked sampler) drops the sighting.
    pub fn record_state(
        book: &std::sync::Mutex<DigestBook>,
        node: usize,
        state: &crate::system::NodeState,
        time_ns: u64,
    ) {
        if let (Some(digest), Ok(mut book)) = (&state.applied_digest, book.lock()) {
            book.record(node, state.applied_index, digest, time_ns);
        }
    }

    /// The lowest applied index at which two digests differ.
    pub fn first_divergence(&self) -> Option<Divergence> {
        self.by_index
            .iter()
            .find(|(_, seen)| seen.len() > 1)
            .map(|(&applied_index, seen)| Divergence {
                applied_index,
                first: seen[0].clone(),
                second: seen[1].clone(),
            })
    }

    /// Whether any digest was recorded at all (false for systems that do not report one).
    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_digests_at_an_index_agree_and_a_different_one_diverges() {
        let mut book = DigestBook::default();
        book.record(0, 5, "aa", 1);
        book.record(1, 5, "aa", 2);
        book.record(1, 6, "bb", 3);
        assert_eq!(book.first_divergence(), None);
        book.record(2, 9, "cc", 4);
        book.record(0, 9, "dd", 5);
        book.record(1, 7, "ee", 6);
        book.record(2, 7, "ff", 7);
        let divergence = book.first_divergence().unwrap();
        assert_eq!(divergence.applied_index, 7);
        assert_eq!((divergence.first.node, divergence.second.node), (1, 2));
        let text = divergence.to_string();
        assert!(text.contains("applied index 7"), "{text}");
        assert!(text.contains("n2") && text.contains("n3"), "{text}");
    }

    #[test]
    fn one_node_showing_two_digests_at_one_index_diverges_too() {
        let mut book = DigestBook::default();
        book.record(0, 3, "aa", 1_000_000_000);
        book.record(0, 3, "bb", 4_000_000_000);
        let divergence = book.first_divergence().unwrap();
        assert!(divergence.to_string().contains("n1 itself"));
    }

    #[test]
    fn nothing_applied_is_not_compared() {
        let mut book = DigestBook::default();
        book.record(0, 0, "aa", 1);
        book.record(1, 0, "bb", 1);
        assert!(book.is_empty());
        assert_eq!(book.first_divergence(), None);
    }
}
