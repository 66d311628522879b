//! The key-value state machine that the Raft log drives, with client sessions.
//!
//! Every write is a [`Command`] encoded (serde_json) into an
//! [`EntryPayload::Command`](crate::raft::EntryPayload::Command); every node applies the same
//! commands in log order with [`KvStore::apply`], so every node reaches the same state.
//!
//! Client sessions make writes exactly-once: a command carrying a [`RequestId`] (`CLIENT:SEQ`,
//! from the `Request-Id` header) is applied at most once, and a retry with the same id gets the
//! result of the first application, even if the retry reaches a different leader. This works
//! because the session table is part of the replicated state: it is updated while applying, on
//! every node, in log order (Raft dissertation §6.3). Each client keeps the results of its last
//! [`SESSION_WINDOW`] requests; a request older than that window cannot be told apart from a
//! new one, so it is refused rather than risk applying it twice.
//!
//! Sessions are bounded by a rule every replica applies the same way (so every replica keeps
//! the same sessions): past `max_sessions` (set with [`KvStore::set_max_sessions`], the same on
//! every node; default [`DEFAULT_MAX_SESSIONS`]), the session used least recently, by the log
//! index of its last request, is evicted. It leaves a tombstone (client id and highest
//! sequence number, a few hundred bytes at most) in a table of [`TOMBSTONES_PER_SESSION`] x
//! `max_sessions` tombstones, oldest evicted first out: a retry from an evicted client is
//! refused as [`OpResult::SessionExpired`] (its outcome is unknown), and its newer requests
//! start a fresh session that refuses the old ones. Exactly-once holds for a client while its
//! session or its tombstone is kept. A stored result keeps no value: a failed cas is stored
//! as [`OpResult::PreconditionFailedEarlier`], so a session costs at most
//! [`SESSION_WINDOW`] small results whatever the values written.
//!
//! Reads do not go through the log; the node serves them with ReadIndex from [`KvStore::get`].
//!
//! [`KvStore::snapshot`] serialises the whole replicated state (data, client sessions and the
//! applied index) for log compaction and InstallSnapshot; [`KvStore::restore`] reads it back.
//! Sessions must be in it: a retry that arrives after the log entry of its first application
//! was compacted away (or at a follower brought up by a snapshot) must still be recognised.
//! The encoding is one format byte ([`SNAPSHOT_FORMAT`], 4) then the image in postcard (a
//! compact binary serde format: strings as length + bytes, integers as varints), so the
//! snapshot file and its InstallSnapshot chunks cost about the size of the data. Format 3,
//! the same image without the applied digest, is still read (the digest is then unknown); a
//! snapshot of another format (the JSON images of format 2 start with `{`) is refused, naming
//! it.
//!
//! The applied digest ([`KvStore::applied_digest`]) is a hash chain over every entry applied,
//! its index, term and bytes. State Machine Safety says every node applies the same entry at
//! each index, so two nodes at the same applied index must show the same digest whatever else
//! differs between them; a node that applied an entry a new leader later overwrote shows
//! another digest from then on, even when the two entries happened to change the data alike.
//! It travels in snapshots, so a node restored from one goes on with the chain (etcd's
//! corruption check compares a hash of the KV state between members the same way).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::raft::LogIndex;

/// How many recent results each client session keeps for retries.
pub const SESSION_WINDOW: usize = 256;

/// Client sessions kept by default: thousands of clients, at most ~16 KiB each (a full window
/// of small results), so 64 MiB in the worst case.
pub const DEFAULT_MAX_SESSIONS: usize = 4096;

/// Tombstones of evicted sessions kept per session slot (see the module docs).
pub const TOMBSTONES_PER_SESSION: usize = 4;

/// A client's request identity: `CLIENT:SEQ`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub client: String,
    pub seq: u64,
}

/// Why a `Request-Id` header value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestIdError {
    #[error("Request-Id must look like CLIENT:SEQ (SEQ a non-negative integer), got {0:?}")]
    Malformed(String),
    #[error("Request-Id client part is longer than {max} bytes")]
    TooLong { max: usize },
}

impl RequestId {
    /// Longest accepted client part.
    pub const MAX_CLIENT_LEN: usize = 256;

    /// Parses `CLIENT:SEQ`; the client part is everything before the last `:`.
    pub fn parse(text: &str) -> Result<RequestId, RequestIdError> {
        let malformed = || RequestIdError::Malformed(text.to_string());
        let (client, seq) = text.rsplit_once(':').ok_or_else(malformed)?;
        if client.is_empty() || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        if client.len() > Self::MAX_CLIENT_LEN {
            return Err(RequestIdError::TooLong {
                max: Self::MAX_CLIENT_LEN,
            });
        }
        let seq = seq.parse().map_err(|_| malformed())?;
        Ok(RequestId {
            client: client.to_string(),
            seq,
        })
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.client, self.seq)
    }
}

/// A write operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// Set the value.
    Write { key: String, value: String },
    /// Set the value only if the current one equals `expected`.
    Cas {
        key: String,
        expected: String,
        new: String,
    },
    /// Remove the key.
    Delete { key: String },
    /// Append `suffix` to the value, creating the key when absent.
    Append { key: String, suffix: String },
}

/// What is replicated through the log: an operation and, optionally, its request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub request_id: Option<RequestId>,
    pub op: Op,
}

/// A command that is not valid JSON of a [`Command`].
#[derive(Debug, thiserror::Error)]
#[error("undecodable command: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

impl Command {
    /// The bytes that go into the log entry.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a command back from a log entry.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// The result of applying one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// A write, or a cas whose expected value matched.
    Written,
    /// A cas whose expected value did not match; nothing changed.
    PreconditionFailed { current: Option<String> },
    /// A delete; `existed` says whether there was a value.
    Deleted { existed: bool },
    /// An append; `length` is the value's length in bytes afterwards.
    Appended { length: usize },
    /// A retry of a cas that failed when first applied; the value it saw then is not kept.
    PreconditionFailedEarlier,
    /// The request id is older than what its client's session remembers (its window moved on,
    /// or the session was evicted): it may or may not have been applied before, so its outcome
    /// is unknown, and it is not applied now.
    SessionExpired,
}

impl OpResult {
    /// The result as a session stores it for retries: without a value.
    fn without_value(&self) -> OpResult {
        match self {
            OpResult::PreconditionFailed { .. } => OpResult::PreconditionFailedEarlier,
            other => other.clone(),
        }
    }
}

/// The outcome of [`KvStore::apply`]: the result and where it was first applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub result: OpResult,
    /// Log index at which the operation took effect (for a retry: the first application).
    pub index: LogIndex,
    /// True when this was a retry answered from the session table.
    #[serde(skip)]
    pub duplicate: bool,
}

/// Recent results of one client.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    /// seq -> result of its first application (without values); at most [`SESSION_WINDOW`]
    /// entries.
    results: BTreeMap<u64, Applied>,
    /// Sequence numbers up to this one that `results` does not hold are refused: they fell out
    /// of the window, or out of an earlier, evicted session of the same client.
    floor: u64,
    /// Log index of this client's last request: the least recently used session is evicted.
    last_used: LogIndex,
}

impl Session {
    /// The highest sequence number this session has seen (or refuses).
    fn highest_seq(&self) -> u64 {
        self.results
            .last_key_value()
            .map_or(self.floor, |(&seq, _)| seq.max(self.floor))
    }
}

/// What an evicted session leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Tombstone {
    /// The highest sequence number the session had seen: retries up to it are refused.
    highest_seq: u64,
    /// Log index of the request that evicted it: the oldest tombstone goes first.
    evicted_at: LogIndex,
}

/// Version of the snapshot encoding, its first byte, checked by [`KvStore::restore`]. Format 2
/// was a JSON object (first byte `{`); 3 is postcard; 4 adds the applied digest.
pub const SNAPSHOT_FORMAT: u8 = 4;

/// The postcard format before the applied digest, still read.
const SNAPSHOT_FORMAT_WITHOUT_DIGEST: u8 = 3;

/// What kind of entry a link of the applied digest stands for (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Noop = 0,
    Membership = 1,
    Command = 2,
}

/// The snapshot encoding, borrowing the store's maps so taking a snapshot copies nothing but
/// the output bytes.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    applied_index: LogIndex,
    data: &'a HashMap<String, String>,
    sessions: &'a HashMap<String, Session>,
    tombstones: &'a HashMap<String, Tombstone>,
    applied_digest: Option<u64>,
}

/// The snapshot encoding, owned, as read back.
#[derive(Deserialize)]
struct SnapshotOwned {
    applied_index: LogIndex,
    data: HashMap<String, String>,
    sessions: HashMap<String, Session>,
    tombstones: HashMap<String, Tombstone>,
    applied_digest: Option<u64>,
}

/// Format 3: the image without the applied digest.
#[derive(Deserialize)]
struct SnapshotWithoutDigest {
    applied_index: LogIndex,
    data: HashMap<String, String>,
    sessions: HashMap<String, Session>,
    tombstones: HashMap<String, Tombstone>,
}

/// Why snapshot bytes could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("snapshot is not a valid KV snapshot: {0}")]
    Decode(#[from] postcard::Error),
    #[error("empty snapshot (not even a format byte)")]
    Empty,
    #[error("KV snapshot followed by {0} stray bytes")]
    TrailingBytes(usize),
    #[error(
        "snapshot format {found}{hint} is not supported (this build reads formats 3 and {SNAPSHOT_FORMAT})",
        hint = if *.found == b'{' { " (a JSON image: a riptide-server from before format 3)" } else { "" }
    )]
    Format { found: u8 },
}

/// The replicated key-value state: data and client sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvStore {
    data: HashMap<String, String>,
    sessions: HashMap<String, Session>,
    /// `last_used` -> client of every session, to find the least recently used one (derived
    /// from `sessions`; one request per log index keeps the keys unique).
    sessions_by_use: BTreeMap<LogIndex, String>,
    tombstones: HashMap<String, Tombstone>,
    /// `evicted_at` -> client of every tombstone (derived from `tombstones`).
    tombstones_by_age: BTreeMap<LogIndex, String>,
    /// Index of the last applied entry.
    applied_index: LogIndex,
    /// The hash chain over every applied entry (see the module docs); `None` after a restore
    /// from a snapshot of format 3, which did not carry it.
    applied_digest: Option<u64>,
    /// Sessions kept before the least recently used is evicted (a setting, the same on every
    /// node; not part of a snapshot).
    max_sessions: usize,
    /// PLANTED BUG (no-dedup): when set, request ids are ignored and retries applied again.
    no_dedup: bool,
}

impl Default for KvStore {
    fn default() -> KvStore {
        KvStore {
            data: HashMap::new(),
            sessions: HashMap::new(),
            sessions_by_use: BTreeMap::new(),
            tombstones: HashMap::new(),
            tombstones_by_age: BTreeMap::new(),
            applied_index: 0,
            applied_digest: Some(0),
            max_sessions: DEFAULT_MAX_SESSIONS,
            no_dedup: false,
        }
    }
}

impl KvStore {
    /// An empty store.
    pub fn new() -> KvStore {
        KvStore::default()
    }

    /// Sets how many client sessions are kept (at least 1); see the module docs. Every node
    /// must use the same value, or their answers to retries differ.
    pub fn set_max_sessions(&mut self, max_sessions: usize) {
        self.max_sessions = max_sessions.max(1);
        self.evict_sessions(self.applied_index);
    }

    /// How many client sessions are kept.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// Number of client sessions held.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The current value of a key. Only linearizable when the caller has done ReadIndex.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Index of the last applied log entry.
    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    /// The applied digest at [`KvStore::applied_index`] (see the module docs), when known.
    pub fn applied_digest(&self) -> Option<u64> {
        self.applied_digest
    }

    /// Extends the applied digest with the entry at `index` of `term` about to be applied
    /// (`bytes`: its command; empty for the other kinds). Called once per applied entry, in
    /// log order, by whoever applies the log.
    pub fn chain_entry(
        &mut self,
        index: LogIndex,
        term: crate::raft::Term,
        kind: EntryKind,
        bytes: &[u8],
    ) {
        use std::hash::Hasher;
        if let Some(previous) = self.applied_digest {
            let mut hasher = fnv::FnvHasher::default();
            hasher.write(&previous.to_le_bytes());
            hasher.write(&index.to_le_bytes());
            hasher.write(&term.to_le_bytes());
            hasher.write(&[kind as u8]);
            hasher.write(bytes);
            self.applied_digest = Some(hasher.finish());
        }
    }

    /// Records that the entry at `index` (a no-op, or a command that failed to decode) was
    /// applied without changing anything.
    pub fn apply_noop(&mut self, index: LogIndex) {
        self.applied_index = self.applied_index.max(index);
    }

    /// The whole replicated state (data, client sessions, applied index) as bytes, for a
    /// snapshot at [`KvStore::applied_index`].
    pub fn snapshot(&self) -> Vec<u8> {
        let image = SnapshotRef {
            applied_index: self.applied_index,
            data: &self.data,
            sessions: &self.sessions,
            tombstones: &self.tombstones,
            applied_digest: self.applied_digest,
        };
        // Maps of strings, integers and plain enums always serialise.
        postcard::to_io(&image, vec![SNAPSHOT_FORMAT]).unwrap_or_default()
    }

    /// The store a snapshot was taken of. Local settings (`max_sessions`, the planted
    /// `no-dedup` bug) are not part of a snapshot: set them again on the result.
    pub fn restore(bytes: &[u8]) -> Result<KvStore, RestoreError> {
        let (&format, body) = bytes.split_first().ok_or(RestoreError::Empty)?;
        let (image, rest): (SnapshotOwned, _) = match format {
            SNAPSHOT_FORMAT => postcard::take_from_bytes(body)?,
            SNAPSHOT_FORMAT_WITHOUT_DIGEST => {
                let (old, rest): (SnapshotWithoutDigest, _) = postcard::take_from_bytes(body)?;
                let image = SnapshotOwned {
                    applied_index: old.applied_index,
                    data: old.data,
                    sessions: old.sessions,
                    tombstones: old.tombstones,
                    applied_digest: None,
                };
                (image, rest)
            }
            _ => return Err(RestoreError::Format { found: format }),
        };
        if !rest.is_empty() {
            return Err(RestoreError::TrailingBytes(rest.len()));
        }
        let sessions_by_use = image
            .sessions
            .iter()
            .map(|(client, session)| (session.last_used, client.clone()))
            .collect();
        let tombstones_by_age = image
            .tombstones
            .iter()
            .map(|(client, tombstone)| (tombstone.evicted_at, client.clone()))
            .collect();
        Ok(KvStore {
            data: image.data,
            sessions: image.sessions,
            sessions_by_use,
            tombstones: image.tombstones,
            tombstones_by_age,
            applied_index: image.applied_index,
            applied_digest: image.applied_digest,
            ..KvStore::default()
        })
    }

    /// Turns on the planted bug `no-dedup` (test only; see [`crate::bugs`]).
    pub fn set_no_dedup(&mut self, on: bool) {
        self.no_dedup = on;
    }

    /// Applies the command of the entry at `index`, at most once per request id.
    pub fn apply(&mut self, index: LogIndex, command: &Command) -> Applied {
        self.applied_index = self.applied_index.max(index);
        // PLANTED BUG (no-dedup): forget the request id, so a retry is applied again.
        let request_id = command.request_id.as_ref().filter(|_| !self.no_dedup);
        let Some(id) = request_id else {
            return self.execute(index, &command.op);
        };
        let session = self.touch_session(&id.client, index);
        if let Some(first) = session.results.get(&id.seq) {
            return Applied {
                duplicate: true,
                ..first.clone()
            };
        }
        if id.seq <= session.floor {
            return Applied {
                result: OpResult::SessionExpired,
                index,
                duplicate: false,
            };
        }
        let applied = self.execute(index, &command.op);
        if let Some(session) = self.sessions.get_mut(&id.client) {
            session.results.insert(
                id.seq,
                Applied {
                    result: applied.result.without_value(),
                    ..applied.clone()
                },
            );
            if session.results.len() > SESSION_WINDOW {
                if let Some((dropped, _)) = session.results.pop_first() {
                    session.floor = session.floor.max(dropped);
                }
            }
        }
        applied
    }

    /// The session of `client`, marked used at `index`: created (from its tombstone, if it has
    /// one) when absent, evicting the least recently used session past `max_sessions`.
    fn touch_session(&mut self, client: &str, index: LogIndex) -> &mut Session {
        if let Some(session) = self.sessions.get(client) {
            self.sessions_by_use.remove(&session.last_used);
        } else {
            let floor = match self.tombstones.remove(client) {
                Some(tombstone) => {
                    self.tombstones_by_age.remove(&tombstone.evicted_at);
                    tombstone.highest_seq
                }
                None => 0,
            };
            self.sessions.insert(
                client.to_string(),
                Session {
                    floor,
                    ..Session::default()
                },
            );
        }
        self.sessions_by_use.insert(index, client.to_string());
        self.evict_sessions(index);
        let session = self.sessions.entry(client.to_string()).or_default();
        session.last_used = index;
        session
    }

    /// Evicts least recently used sessions past `max_sessions`, leaving tombstones, and the
    /// oldest tombstones past their bound.
    fn evict_sessions(&mut self, index: LogIndex) {
        while self.sessions.len() > self.max_sessions {
            let Some((_, client)) = self.sessions_by_use.pop_first() else {
                break;
            };
            let Some(session) = self.sessions.remove(&client) else {
                continue;
            };
            // Several evictions at one index (a lowered max_sessions) get distinct keys.
            let mut evicted_at = index;
            while self.tombstones_by_age.contains_key(&evicted_at) {
                evicted_at += 1;
            }
            self.tombstones_by_age.insert(evicted_at, client.clone());
            self.tombstones.insert(
                client,
                Tombstone {
                    highest_seq: session.highest_seq(),
                    evicted_at,
                },
            );
        }
        let max_tombstones = self.max_sessions.saturating_mul(TOMBSTONES_PER_SESSION);
        while self.tombstones.len() > max_tombstones {
            let Some((_, client)) = self.tombstones_by_age.pop_first() else {
                break;
            };
            self.tombstones.remove(&client);
        }
    }

    fn execute(&mut self, index: LogIndex, op: &Op) -> Applied {
        let result = match op {
            Op::Write { key, value } => {
                self.data.insert(key.clone(), value.clone());
                OpResult::Written
            }
            Op::Cas { key, expected, new } => match self.data.get_mut(key) {
                Some(current) if current == expected => {
                    *current = new.clone();
                    OpResult::Written
                }
                current => OpResult::PreconditionFailed {
                    current: current.map(|c| c.clone()),
                },
            },
            Op::Delete { key } => OpResult::Deleted {
                existed: self.data.remove(key).is_some(),
            },
            Op::Append { key, suffix } => {
                let value = self.data.entry(key.clone()).or_default();
                value.push_str(suffix);
                OpResult::Appended {
                    length: value.len(),
                }
            }
        };
        Applied {
            result,
            index,
            duplicate: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(op: Op) -> Command {
        Command {
            request_id: None,
            op,
        }
    }

    fn with_id(client: &str, seq: u64, op: Op) -> Command {
        Command {
            request_id: Some(RequestId {
                client: client.into(),
                seq,
            }),
            op,
        }
    }

    fn write(key: &str, value: &str) -> Op {
        Op::Write {
            key: key.into(),
            value: value.into(),
        }
    }

    fn append(key: &str, suffix: &str) -> Op {
        Op::Append {
            key: key.into(),
            suffix: suffix.into(),
        }
    }

    #[test]
    fn write_then_read() {
        let mut kv = KvStore::new();
        let a = kv.apply(1, &cmd(write("k", "v")));
        assert_eq!(a.result, OpResult::Written);
        assert_eq!(kv.get("k"), Some("v"));
        assert_eq!(kv.applied_index(), 1);
    }

    #[test]
    fn cas_swaps_only_when_the_current_value_matches() {
        let mut kv = KvStore::new();
        kv.apply(1, &cmd(write("k", "1")));
        let cas = |expected: &str, new: &str| {
            cmd(Op::Cas {
                key: "k".into(),
                expected: expected.into(),
                new: new.into(),
            })
        };
        assert_eq!(
            kv.apply(2, &cas("2", "3")).result,
            OpResult::PreconditionFailed {
                current: Some("1".into())
            }
        );
        assert_eq!(kv.get("k"), Some("1"));
        assert_eq!(kv.apply(3, &cas("1", "3")).result, OpResult::Written);
        assert_eq!(kv.get("k"), Some("3"));
    }

    #[test]
    fn cas_on_an_absent_key_fails_with_no_current_value() {
        let mut kv = KvStore::new();
        let r = kv.apply(
            1,
            &cmd(Op::Cas {
                key: "k".into(),
                expected: "".into(),
                new: "x".into(),
            }),
        );
        assert_eq!(r.result, OpResult::PreconditionFailed { current: None });
        assert_eq!(kv.get("k"), None);
    }

    #[test]
    fn delete_reports_whether_the_key_existed() {
        let mut kv = KvStore::new();
        kv.apply(1, &cmd(write("k", "v")));
        let del = || cmd(Op::Delete { key: "k".into() });
        assert_eq!(
            kv.apply(2, &del()).result,
            OpResult::Deleted { existed: true }
        );
        assert_eq!(
            kv.apply(3, &del()).result,
            OpResult::Deleted { existed: false }
        );
        assert_eq!(kv.get("k"), None);
    }

    #[test]
    fn append_creates_then_extends() {
        let mut kv = KvStore::new();
        assert_eq!(
            kv.apply(1, &cmd(append("k", "ab"))).result,
            OpResult::Appended { length: 2 }
        );
        kv.apply(2, &cmd(append("k", "c")));
        assert_eq!(kv.get("k"), Some("abc"));
    }

    #[test]
    fn retried_request_id_is_applied_once_and_gets_the_first_result() {
        let mut kv = KvStore::new();
        let first = kv.apply(1, &with_id("c1", 7, append("k", "x")));
        kv.apply(2, &with_id("c2", 1, append("k", "y")));
        let retry = kv.apply(3, &with_id("c1", 7, append("k", "x")));
        assert_eq!(kv.get("k"), Some("xy"));
        assert_eq!(retry.result, first.result);
        assert_eq!(retry.index, 1);
        assert!(retry.duplicate);
        assert_eq!(kv.applied_index(), 3);
    }

    #[test]
    fn requests_older_than_the_session_window_are_refused_not_applied() {
        let mut kv = KvStore::new();
        for seq in 1..=(SESSION_WINDOW as u64 + 1) {
            kv.apply(seq, &with_id("c", seq, append("k", "a")));
        }
        let len_before = kv.get("k").map(str::len);
        let old = kv.apply(1000, &with_id("c", 1, append("k", "a")));
        assert_eq!(old.result, OpResult::SessionExpired);
        assert_eq!(kv.get("k").map(str::len), len_before);
    }

    #[test]
    fn out_of_order_sequence_numbers_within_the_window_apply_once_each() {
        let mut kv = KvStore::new();
        kv.apply(1, &with_id("c", 5, append("k", "5")));
        kv.apply(2, &with_id("c", 3, append("k", "3")));
        kv.apply(3, &with_id("c", 5, append("k", "5")));
        assert_eq!(kv.get("k"), Some("53"));
    }

    #[test]
    fn commands_round_trip_through_their_encoding() {
        let c = with_id(
            "client:with:colons",
            42,
            Op::Cas {
                key: "k".into(),
                expected: "é".into(),
                new: "\u{0}".into(),
            },
        );
        assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        assert!(Command::decode(b"not json").is_err());
    }

    #[test]
    fn restore_of_a_snapshot_gives_the_same_store() {
        let mut kv = KvStore::new();
        kv.apply(1, &cmd(write("a", "1")));
        kv.apply(2, &with_id("c1", 4, append("b", "x")));
        kv.apply(
            3,
            &cmd(Op::Cas {
                key: "a".into(),
                expected: "0".into(),
                new: "2".into(),
            }),
        );
        kv.apply_noop(4);
        let restored = KvStore::restore(&kv.snapshot()).unwrap();
        assert_eq!(restored, kv);
        assert_eq!(restored.applied_index(), 4);
        assert_eq!(restored.get("a"), Some("1"));
        assert_eq!(restored.get("b"), Some("x"));
    }

    #[test]
    fn a_retry_after_a_snapshot_is_still_answered_from_the_session() {
        let mut kv = KvStore::new();
        let first = kv.apply(1, &with_id("c1", 7, append("k", "x")));
        let mut restored = KvStore::restore(&kv.snapshot()).unwrap();
        let retry = restored.apply(2, &with_id("c1", 7, append("k", "x")));
        assert!(retry.duplicate);
        assert_eq!((retry.result, retry.index), (first.result, 1));
        assert_eq!(restored.get("k"), Some("x"));
        // The session window survives too: an id older than it is still refused.
        for seq in 100..100 + SESSION_WINDOW as u64 {
            restored.apply(seq, &with_id("c1", seq, append("w", "a")));
        }
        let mut again = KvStore::restore(&restored.snapshot()).unwrap();
        let old = again.apply(10_000, &with_id("c1", 1, append("w", "a")));
        assert_eq!(old.result, OpResult::SessionExpired);
    }

    fn cas(key: &str, expected: &str, new: &str) -> Op {
        Op::Cas {
            key: key.into(),
            expected: expected.into(),
            new: new.into(),
        }
    }

    #[test]
    fn sessions_past_the_limit_evict_the_least_recently_used_and_its_retry_is_refused() {
        let mut kv = KvStore::new();
        kv.set_max_sessions(3);
        for (index, client) in ["a", "b", "c"].iter().enumerate() {
            kv.apply(index as u64 + 1, &with_id(client, 1, append("k", client)));
        }
        // `a` is used again, so `b` is now the least recently used.
        kv.apply(4, &with_id("a", 2, append("k", "a")));
        kv.apply(5, &with_id("d", 1, append("k", "d")));
        assert_eq!(kv.session_count(), 3);
        let value = kv.get("k").map(str::to_string);
        // `b`'s retry cannot be answered from a session any more: refused, not applied again.
        let retry = kv.apply(6, &with_id("b", 1, append("k", "b")));
        assert_eq!(retry.result, OpResult::SessionExpired);
        assert_eq!(kv.get("k").map(str::to_string), value);
        // `a` (used recently) still gets its first result.
        assert!(kv.apply(7, &with_id("a", 1, append("k", "a"))).duplicate);
        // A newer request of `b` is applied, and its old ones stay refused.
        let newer = kv.apply(8, &with_id("b", 2, append("k", "b")));
        assert_eq!(newer.result, OpResult::Appended { length: 6 });
        let old = kv.apply(9, &with_id("b", 1, append("k", "b")));
        assert_eq!(old.result, OpResult::SessionExpired);
    }

    #[test]
    fn many_clients_keep_a_bounded_number_of_sessions_and_tombstones() {
        let mut kv = KvStore::new();
        kv.set_max_sessions(10);
        for index in 1..=1000u64 {
            kv.apply(index, &with_id(&format!("c{index}"), 1, write("k", "v")));
        }
        assert_eq!(kv.session_count(), 10);
        assert_eq!(kv.tombstones.len(), 10 * TOMBSTONES_PER_SESSION);
        let restored = KvStore::restore(&kv.snapshot()).unwrap();
        assert_eq!(restored.session_count(), 10);
        assert_eq!(restored.tombstones.len(), 10 * TOMBSTONES_PER_SESSION);
    }

    #[test]
    fn eviction_is_the_same_on_every_replica_and_after_a_snapshot() {
        let commands: Vec<Command> = (0..500u64)
            .map(|i| with_id(&format!("c{}", (i * 7919) % 37), i, append("k", "x")))
            .collect();
        let mut replica_a = KvStore::new();
        replica_a.set_max_sessions(5);
        let mut replica_b = KvStore::new();
        replica_b.set_max_sessions(5);
        for (i, command) in commands.iter().enumerate() {
            let index = i as u64 + 1;
            assert_eq!(
                replica_a.apply(index, command),
                replica_b.apply(index, command)
            );
            if i == 250 {
                replica_b = KvStore::restore(&replica_b.snapshot()).unwrap();
                replica_b.set_max_sessions(5);
            }
        }
        assert_eq!(replica_a, replica_b);
    }

    #[test]
    fn a_session_keeps_no_value_of_a_failed_cas() {
        let mut kv = KvStore::new();
        let big = "v".repeat(100_000);
        kv.apply(1, &cmd(write("k", &big)));
        let first = kv.apply(2, &with_id("c", 1, cas("k", "other", "new")));
        assert_eq!(
            first.result,
            OpResult::PreconditionFailed {
                current: Some(big.clone())
            }
        );
        let retry = kv.apply(3, &with_id("c", 1, cas("k", "other", "new")));
        assert!(retry.duplicate);
        assert_eq!(retry.result, OpResult::PreconditionFailedEarlier);
        assert!(
            kv.snapshot().len() < big.len() + 1000,
            "the snapshot holds the value twice: {} bytes",
            kv.snapshot().len()
        );
    }

    #[test]
    fn restore_refuses_garbage_and_unknown_formats() {
        let mut garbage = vec![SNAPSHOT_FORMAT];
        garbage.extend_from_slice(&[0xff; 12]);
        assert!(matches!(
            KvStore::restore(&garbage),
            Err(RestoreError::Decode(_))
        ));
        assert!(matches!(KvStore::restore(b""), Err(RestoreError::Empty)));
        // A JSON image of format 2 (an older node's snapshot.bin) is named as such.
        let json = br#"{"format":2,"applied_index":1,"data":{},"sessions":{}}"#;
        let err = KvStore::restore(json).unwrap_err();
        assert!(matches!(err, RestoreError::Format { found: b'{' }), "{err}");
        assert!(err.to_string().contains("JSON"), "{err}");
        let mut future = KvStore::new().snapshot();
        future[0] = SNAPSHOT_FORMAT + 1;
        assert!(matches!(
            KvStore::restore(&future),
            Err(RestoreError::Format { found }) if found == SNAPSHOT_FORMAT + 1
        ));
        let mut long = KvStore::new().snapshot();
        long.push(0);
        assert!(matches!(
            KvStore::restore(&long),
            Err(RestoreError::TrailingBytes(1))
        ));
    }

    #[test]
    fn request_id_parses_client_and_seq() {
        assert_eq!(
            RequestId::parse("worker:3:17").unwrap(),
            RequestId {
                client: "worker:3".into(),
                seq: 17
            }
        );
        for bad in [
            "",
            "abc",
            ":1",
            "c:",
            "c:-1",
            "c:1x",
            "c:99999999999999999999999",
        ] {
            assert!(RequestId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
    #[test]
    fn the_applied_digest_is_the_same_for_the_same_entries_and_differs_for_another_term() {
        let commands: Vec<Command> = (0..20u64)
            .map(|i| with_id("c", i + 1, append("k", &i.to_string())))
            .collect();
        let replay = |term_of_ten: u64| {
            let mut kv = KvStore::new();
            for (i, command) in commands.iter().enumerate() {
                let index = i as u64 + 1;
                let term = if index == 10 { term_of_ten } else { 1 };
                kv.chain_entry(index, term, EntryKind::Command, &command.encode());
                kv.apply(index, command);
            }
            kv
        };
        let (a, b) = (replay(1), replay(1));
        assert_eq!(a.applied_digest(), b.applied_digest());
        assert_ne!(a.applied_digest(), KvStore::new().applied_digest());
        // The same command at index 10 from another term: same data, another digest.
        let other = replay(2);
        assert_eq!(other.get("k"), a.get("k"));
        assert_ne!(other.applied_digest(), a.applied_digest());
        // A no-op differs from a command with no bytes.
        let (mut noop, mut empty) = (KvStore::new(), KvStore::new());
        noop.chain_entry(1, 1, EntryKind::Noop, &[]);
        empty.chain_entry(1, 1, EntryKind::Command, &[]);
        assert_ne!(noop.applied_digest(), empty.applied_digest());
    }

    #[test]
    fn the_applied_digest_travels_in_a_snapshot_and_format_3_reads_without_it() {
        let mut kv = KvStore::new();
        kv.chain_entry(1, 1, EntryKind::Command, b"x");
        kv.apply(1, &cmd(write("k", "v")));
        let restored = KvStore::restore(&kv.snapshot()).unwrap();
        assert_eq!(restored.applied_digest(), kv.applied_digest());
        assert!(restored.applied_digest().is_some());
        // Format 3: the same image without the digest (postcard writes a struct as its
        // fields in order, as a tuple).
        let data = HashMap::from([("k".to_string(), "v".to_string())]);
        let old = (
            7u64,
            data,
            HashMap::<String, Session>::new(),
            HashMap::<String, Tombstone>::new(),
        );
        let bytes = postcard::to_io(&old, vec![SNAPSHOT_FORMAT_WITHOUT_DIGEST]).unwrap();
        let mut restored = KvStore::restore(&bytes).unwrap();
        assert_eq!(restored.applied_index(), 7);
        assert_eq!(restored.get("k"), Some("v"));
        assert_eq!(restored.applied_digest(), None);
        // Unknown stays unknown: no chain is made up from the middle.
        restored.chain_entry(8, 1, EntryKind::Noop, &[]);
        assert_eq!(restored.applied_digest(), None);
    }
}
