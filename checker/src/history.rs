//! The history format shared by the harness (which writes it) and the checker (which reads it).
//!
//! One [`Event`] per JSON line, in the order the events happened, with Jepsen's vocabulary:
//! `invoke`, then exactly one of `ok`, `fail` or `info` for the same process. Events of the
//! process `"nemesis"` record faults; the checker ignores them and reports draw them.

use serde::{Deserialize, Serialize};

/// Who produced an event: a logical client process or the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    /// A client process number. After an `info` it is never used again.
    Client(u64),
    /// The fault injector, serialized as the string `"nemesis"`.
    Nemesis(NemesisTag),
}

/// The literal string `"nemesis"` (a unit type so [`Process`] serializes as Jepsen does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NemesisTag {
    #[serde(rename = "nemesis")]
    Nemesis,
}

impl Process {
    /// The nemesis process.
    pub const NEMESIS: Process = Process::Nemesis(NemesisTag::Nemesis);
}

/// The four event types of a Jepsen history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The operation was sent.
    Invoke,
    /// It happened.
    Ok,
    /// It certainly did not happen (a cas with `error: "precondition-failed"` completed and
    /// saw a value other than its `from`).
    Fail,
    /// Its outcome is unknown (timeout, crash); it may take effect at any point after its invoke.
    Info,
}

/// One line of a history file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history, from 0.
    pub index: u64,
    /// Nanoseconds since the test started, from a monotonic clock.
    pub time: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// `read`, `write`, `cas`, `delete`, `append`, `add`, `read-all`, or a nemesis fault name.
    pub f: String,
    /// The key for keyed workloads; absent for a single register and for nemesis events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A read's result on `ok` (`null` when absent), the written value, `[from, to]` for cas,
    /// or a fault's description for the nemesis.
    #[serde(default)]
    pub value: serde_json::Value,
    /// Why an operation failed or is unknown, e.g. `precondition-failed` or `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
