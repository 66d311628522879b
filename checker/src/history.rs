//! The history format shared by the harness (which writes it) and the checker (which reads it).
//!
//! One [`Event`] per JSON line, in the order the events happened, with Jepsen's vocabulary:
//! `invoke`, then exactly one of `ok`, `fail` or `info` for the same process. Events of the
//! process `"nemesis"` record faults; the checker ignores them and reports draw them.

use crate::value::ExactValue;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Completion {
    /// `ok`: it happened and returned `output`.
    Ok,
    /// `fail`: it certainly did not take effect, for the reason in `error` (a cas with
    /// `precondition-failed` also tells which value it saw not to be).
    Fail {
        /// The `error` field of the completion, if any.
        error: Option<String>,
    },
    /// `info`, or no completion at all before the end of the history: it may take effect at any
    /// point after its invoke, or never.
    Unknown {
        /// The `error` field of the `info` event, if any.
        error: Option<String>,
    },
}

/// One operation: an `invoke` paired with its completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Position of this operation in [`History::operations`] (ordered by invoke).
    pub id: usize,
    /// The client process that ran it.
    pub process: u64,
    /// What it does: `read`, `write`, `cas`, ...
    pub f: String,
    /// The key it touches, absent for a single register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The `value` of the invoke: the argument, numbers as written.
    pub input: ExactValue,
    /// The `value` of the completion: the result (`null` when unknown), numbers as written.
    pub output: ExactValue,
    /// How it ended.
    pub completion: Completion,
    /// Position of the invoke among all events of the file (real-time order).
    pub invoke_seq: u64,
    /// Position of the completion among all events, `None` when unknown (`info` or missing):
    /// an operation with an unknown outcome is concurrent with everything after its invoke.
    pub complete_seq: Option<u64>,
    /// 1-based line of the invoke in the source file.
    pub invoke_line: usize,
    /// 1-based line of the completion, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_line: Option<usize>,
    /// `time` of the invoke (ns since the start of the test).
    pub invoke_time: u64,
    /// `time` of the completion, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_time: Option<u64>,
}

impl Operation {
    /// True when the outcome is unknown (`info` or never completed).
    pub fn is_unknown(&self) -> bool {
        matches!(self.completion, Completion::Unknown { .. })
    }
}

/// A parsed history: the client operations, paired and ordered by invoke, and the nemesis
/// events kept aside for reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Client operations ordered by invoke.
    pub operations: Vec<Operation>,
    /// Events of the nemesis (faults), which the checker ignores and reports draw.
    pub nemesis: Vec<Event>,
}

/// Why a history could not be read. Every variant names the 1-based line at fault.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be read.
    #[error("cannot read history: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a valid event.
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The events do not pair into operations (e.g. an `ok` without its `invoke`).
    #[error("line {line}: {message}")]
    Pairing {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl HistoryError {
    /// The 1-based line at fault, if the error concerns one.
    pub fn line(&self) -> Option<usize> {
        match self {
            HistoryError::Io(_) => None,
            HistoryError::Syntax { line, .. } | HistoryError::Pairing { line, .. } => Some(*line),
        }
    }
}

impl History {
    /// Pairs events (each with its 1-based source line), in the order they happened, into
    /// operations. Nemesis events are set aside. An `invoke` without a completion by the end
    /// counts as `info`.
    pub fn from_events(
        events: impl IntoIterator<Item = (usize, Event)>,
    ) -> Result<History, HistoryError> {
        History::from_exact_events(events.into_iter().map(|(line, event)| {
            let value = ExactValue::from(&event.value);
            (line, event, value)
        }))
    }

    /// Like [`History::from_events`], with each client event's value given exactly (the
    /// event's own `value` is then only kept for nemesis events).
    pub(crate) fn from_exact_events(
        events: impl IntoIterator<Item = (usize, Event, ExactValue)>,
    ) -> Result<History, HistoryError> {
        let mut history = History::default();
        // Open operation of each process: index into `history.operations`.
        let mut open: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
        for (seq, (line, event, value)) in events.into_iter().enumerate() {
            let seq = seq as u64;
            let process = match event.process {
                Process::Nemesis(_) => {
                    history.nemesis.push(event);
                    continue;
                }
                Process::Client(p) => p,
            };
            match event.kind {
                EventType::Invoke => {
                    if let Some(&prev) = open.get(&process) {
                        let prev_line = history.operations[prev].invoke_line;
                        return Err(HistoryError::Pairing {
                            line,
                            message: format!(
                                "process {process} invokes {} while its {} invoked at line \
                                 {prev_line} is still open (two open operations on one process)",
                                event.f, history.operations[prev].f
                            ),
                        });
                    }
                    let id = history.operations.len();
                    open.insert(process, id);
                    history.operations.push(Operation {
                        id,
                        process,
                        f: event.f,
                        key: event.key,
                        input: value,
                        output: ExactValue::Null,
                        completion: Completion::Unknown { error: None },
                        invoke_seq: seq,
                        complete_seq: None,
                        invoke_line: line,
                        complete_line: None,
                        invoke_time: event.time,
                        complete_time: None,
                    });
                }
                EventType::Ok | EventType::Fail | EventType::Info => {
                    let Some(id) = open.remove(&process) else {
                        return Err(HistoryError::Pairing {
                            line,
                            message: format!(
                                "{} of {} on process {process} without an open invoke",
                                type_name(event.kind),
                                event.f
                            ),
                        });
                    };
                    let op = &mut history.operations[id];
                    if op.f != event.f {
                        return Err(HistoryError::Pairing {
                            line,
                            message: format!(
                                "process {process} completes {} but invoked {} at line {}",
                                event.f, op.f, op.invoke_line
                            ),
                        });
                    }
                    if event.key.is_some() && event.key != op.key {
                        return Err(HistoryError::Pairing {
                            line,
                            message: format!(
                                "process {process} completes {} on key {:?} but invoked it on \
                                 key {:?} at line {}",
                                event.f, event.key, op.key, op.invoke_line
                            ),
                        });
                    }
                    op.complete_line = Some(line);
                    op.complete_time = Some(event.time);
                    match event.kind {
                        EventType::Ok => {
                            op.completion = Completion::Ok;
                            op.output = value;
                            op.complete_seq = Some(seq);
                        }
                        EventType::Fail => {
                            op.completion = Completion::Fail { error: event.error };
                            op.output = value;
                            op.complete_seq = Some(seq);
                        }
                        _ => {
                            op.completion = Completion::Unknown { error: event.error };
                        }
                    }
                }
            }
        }
        Ok(history)
    }
}

fn type_name(kind: EventType) -> &'static str {
    match kind {
        EventType::Invoke => "invoke",
        EventType::Ok => "ok",
        EventType::Fail => "fail",
        EventType::Info => "info",
    }
}

/// An [`Event`] as read from a line, its `value` still as text so that numbers keep their
/// literal text.
#[derive(Deserialize)]
struct RawEvent<'a> {
    index: u64,
    time: u64,
    process: Process,
    #[serde(rename = "type")]
    kind: EventType,
    f: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<String>,
}

/// Reads a JSON Lines history (one [`Event`] per line; blank lines are skipped). Values keep
/// their literal text ([`ExactValue`]).
pub fn parse_jsonl(reader: impl std::io::BufRead) -> Result<History, HistoryError> {
    let mut events = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let syntax = |err: serde_json::Error| HistoryError::Syntax {
            line: line_no,
            message: format!("not a history event: {err}"),
        };
        let raw: RawEvent<'_> = serde_json::from_str(&line).map_err(syntax)?;
        let exact = match raw.value {
            Some(text) => ExactValue::from_json_text(text.get()).map_err(syntax)?,
            None => ExactValue::Null,
        };
        // Nemesis values are only drawn, so the lossy `serde_json::Value` is enough there.
        let value = match (raw.process, raw.value) {
            (Process::Nemesis(_), Some(text)) => {
                serde_json::from_str(text.get()).map_err(syntax)?
            }
            _ => serde_json::Value::Null,
        };
        let event = Event {
            index: raw.index,
            time: raw.time,
            process: raw.process,
            kind: raw.kind,
            f: raw.f,
            key: raw.key,
            value,
            error: raw.error,
        };
        events.push((line_no, event, exact));
    }
    History::from_exact_events(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVOKE: &str =
        r#"{"index":0,"time":0,"process":1,"type":"invoke","f":"read","value":null}"#;

    fn line_of(text: &str) -> Option<usize> {
        parse_jsonl(text.as_bytes()).unwrap_err().line()
    }

    #[test]
    fn bad_json_names_its_line() {
        assert_eq!(line_of(&format!("{INVOKE}\n{{\"index\":")), Some(2));
        assert_eq!(
            line_of(r#"{"index":0,"time":0,"process":1,"type":"maybe","f":"read"}"#),
            Some(1)
        );
    }

    #[test]
    fn a_completion_without_its_invoke_names_its_line() {
        let ok = r#"{"index":0,"time":0,"process":1,"type":"ok","f":"read","value":null}"#;
        assert_eq!(line_of(&format!("\n{ok}")), Some(2));
    }

    #[test]
    fn two_open_operations_on_one_process_name_the_second_invoke() {
        let err = parse_jsonl(format!("{INVOKE}\n{INVOKE}").as_bytes()).unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert!(err.to_string().contains("still open"), "{err}");
    }

    #[test]
    fn pairs_operations_sets_nemesis_aside_and_leaves_unfinished_ones_unknown() {
        let text = format!(
            "{INVOKE}\n{}\n{}\n{}",
            r#"{"index":1,"time":5,"process":"nemesis","type":"info","f":"kill","value":"n1"}"#,
            r#"{"index":2,"time":6,"process":1,"type":"ok","f":"read","value":"7"}"#,
            r#"{"index":3,"time":7,"process":2,"type":"invoke","f":"write","value":"8"}"#,
        );
        let h = parse_jsonl(text.as_bytes()).unwrap();
        assert_eq!(h.nemesis.len(), 1);
        assert_eq!(h.operations.len(), 2);
        assert_eq!(h.operations[0].output, ExactValue::String("7".into()));
        assert_eq!(h.operations[0].complete_line, Some(3));
        assert!(h.operations[1].is_unknown());
    }

    #[test]
    fn numbers_keep_their_literal_text() {
        let text = concat!(
            r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":18446744073709551616}"#,
            "\n",
            r#"{"index":1,"time":1,"process":0,"type":"ok","f":"write","value":1e400}"#,
        );
        let h = parse_jsonl(text.as_bytes()).unwrap();
        assert_eq!(h.operations[0].input.text(), "18446744073709551616");
        assert_eq!(h.operations[0].output.text(), "1e400");
    }
}
