//! The history format shared by the harness (which writes it) and the checker (which reads it).
//!
//! One [`Event`] per JSON line, in the order the events happened, with Jepsen's vocabulary:
//! `invoke`, then exactly one of `ok`, `fail` or `info` for the same process. Events of the
//! process `"nemesis"` record faults; the checker ignores them and reports draw them.

use crate::fxhash::FxHashMap;
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
        let mut pairer = Pairer::default();
        for (line, event, value) in events {
            pairer.push_event(line, event, value)?;
        }
        Ok(pairer.finish())
    }
}

/// A client event with its strings borrowed (from the line it was read from, or an [`Event`]).
struct ClientEvent<'a> {
    process: u64,
    kind: EventType,
    f: &'a str,
    key: Option<&'a str>,
    error: Option<&'a str>,
    time: u64,
}

/// Pairs events, one at a time in the order they happened, into operations.
#[derive(Default)]
struct Pairer {
    history: History,
    /// Open operation of each process: index into `history.operations`.
    open: FxHashMap<u64, usize>,
    /// Events seen so far (nemesis events included): the next event's real-time position.
    seq: u64,
}

impl Pairer {
    fn push_event(
        &mut self,
        line: usize,
        event: Event,
        value: ExactValue,
    ) -> Result<(), HistoryError> {
        let process = match event.process {
            Process::Nemesis(_) => {
                self.seq += 1;
                self.history.nemesis.push(event);
                return Ok(());
            }
            Process::Client(p) => p,
        };
        let client = ClientEvent {
            process,
            kind: event.kind,
            f: &event.f,
            key: event.key.as_deref(),
            error: event.error.as_deref(),
            time: event.time,
        };
        self.push_client(line, client, value)
    }

    fn push_client(
        &mut self,
        line: usize,
        event: ClientEvent<'_>,
        value: ExactValue,
    ) -> Result<(), HistoryError> {
        let seq = self.seq;
        self.seq += 1;
        let process = event.process;
        let history = &mut self.history;
        match event.kind {
            EventType::Invoke => {
                if let Some(&prev) = self.open.get(&process) {
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
                self.open.insert(process, id);
                history.operations.push(Operation {
                    id,
                    process,
                    f: event.f.to_string(),
                    key: event.key.map(str::to_string),
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
                let Some(id) = self.open.remove(&process) else {
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
                if event.key.is_some() && event.key != op.key.as_deref() {
                    return Err(HistoryError::Pairing {
                        line,
                        message: format!(
                            "process {process} completes {} on key {:?} but invoked it on \
                             key {:?} at line {}",
                            event.f,
                            event.key.map(str::to_string),
                            op.key,
                            op.invoke_line
                        ),
                    });
                }
                op.complete_line = Some(line);
                op.complete_time = Some(event.time);
                let error = event.error.map(str::to_string);
                match event.kind {
                    EventType::Ok => {
                        op.completion = Completion::Ok;
                        op.output = value;
                        op.complete_seq = Some(seq);
                    }
                    EventType::Fail => {
                        op.completion = Completion::Fail { error };
                        op.output = value;
                        op.complete_seq = Some(seq);
                    }
                    _ => {
                        op.completion = Completion::Unknown { error };
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> History {
        self.history
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
///
/// Lines of the usual shape (the fields above, strings without escapes, values that are
/// literals, numbers or arrays of them) are read by a one-pass reader that borrows from the
/// line ([`fast`]) and paired at once, so the history is read at several hundred MB/s with one
/// allocation per string kept; any other line goes through serde, which also words the errors.
pub fn parse_jsonl(reader: impl std::io::BufRead) -> Result<History, HistoryError> {
    parse_jsonl_in_blocks(reader, BLOCK_BYTES)
}

fn parse_jsonl_in_blocks(
    mut reader: impl std::io::BufRead,
    block_bytes: usize,
) -> Result<History, HistoryError> {
    use rayon::prelude::*;
    use std::io::Read;
    let mut pairer = Pairer::default();
    let mut line_no = 0;
    // The file is read in blocks of whole lines; the lines of a block are read by the one-pass
    // reader in parallel, then paired in order (lines it leaves go through serde, in order, so
    // errors are the same and name the same first bad line).
    let mut block: Vec<u8> = Vec::with_capacity(2 * block_bytes);
    loop {
        let wanted = block_bytes.max(1) as u64;
        let read = (&mut reader).take(wanted).read_to_end(&mut block)?;
        let eof = (read as u64) < wanted;
        let cut = if eof {
            block.len()
        } else {
            match memchr::memrchr(b'\n', &block) {
                Some(nl) => nl + 1,
                // One line longer than a block: read on until it ends.
                None => continue,
            }
        };
        let mut lines: Vec<&[u8]> = Vec::new();
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &block[..cut]) {
            lines.push(&block[start..nl]);
            start = nl + 1;
        }
        if start < cut {
            lines.push(&block[start..cut]);
        }
        let fast: Vec<Option<fast::Line<'_>>> = lines
            .par_iter()
            .with_min_len(1024)
            .map(|bytes| {
                let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
                std::str::from_utf8(bytes).ok().and_then(fast::parse_line)
            })
            .collect();
        for (bytes, event) in lines.iter().zip(fast) {
            line_no += 1;
            match event {
                Some(event) => {
                    let client = ClientEvent {
                        process: event.process,
                        kind: event.kind,
                        f: event.f,
                        key: event.key,
                        error: event.error,
                        time: event.time,
                    };
                    pairer.push_client(line_no, client, event.value)?;
                }
                None => pairer.push_line(line_no, bytes)?,
            }
        }
        drop(lines);
        if eof {
            break;
        }
        block.drain(..cut);
    }
    Ok(pairer.finish())
}

/// Bytes read at a time by [`parse_jsonl`].
const BLOCK_BYTES: usize = 1 << 20;

impl Pairer {
    /// Reads (with serde) and pairs one line (without its `\n`), as `BufRead::lines` would
    /// give it: a trailing `\r` is dropped, and a line that is not UTF-8 is an I/O error.
    fn push_line(&mut self, line_no: usize, bytes: &[u8]) -> Result<(), HistoryError> {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = std::str::from_utf8(bytes).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            )
        })?;
        if line.trim().is_empty() {
            return Ok(());
        }
        let (event, exact) = parse_line_with_serde(line, line_no)?;
        self.push_event(line_no, event, exact)
    }
}

/// Reads one event with serde: any valid line, and the error of an invalid one.
fn parse_line_with_serde(line: &str, line_no: usize) -> Result<(Event, ExactValue), HistoryError> {
    let syntax = |err: serde_json::Error| HistoryError::Syntax {
        line: line_no,
        message: format!("not a history event: {err}"),
    };
    let raw: RawEvent<'_> = serde_json::from_str(line).map_err(syntax)?;
    let exact = match raw.value {
        Some(text) => ExactValue::from_json_text(text.get()).map_err(syntax)?,
        None => ExactValue::Null,
    };
    // Nemesis values are only drawn, so the lossy `serde_json::Value` is enough there.
    let value = match (raw.process, raw.value) {
        (Process::Nemesis(_), Some(text)) => serde_json::from_str(text.get()).map_err(syntax)?,
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
    Ok((event, exact))
}

/// The one-pass reader of client event lines of the usual shape. It answers `None` for
/// anything else (nemesis events, escapes in strings, objects as values, unknown or repeated
/// fields, invalid JSON), which then goes through serde: whatever it accepts, serde reads the
/// same way, so the fast path changes speed, never a result or an error.
mod fast {
    use super::EventType;
    use crate::value::ExactValue;

    /// A client event read from a line, its strings borrowed.
    pub(super) struct Line<'a> {
        pub time: u64,
        pub process: u64,
        pub kind: EventType,
        pub f: &'a str,
        pub key: Option<&'a str>,
        pub value: ExactValue,
        pub error: Option<&'a str>,
    }

    /// Bytes that end a string's fast scan: its closing quote, an escape, a control character.
    static STRING_STOP: [bool; 256] = {
        let mut stop = [false; 256];
        let mut b = 0;
        while b < 0x20 {
            stop[b] = true;
            b += 1;
        }
        stop[b'"' as usize] = true;
        stop[b'\\' as usize] = true;
        stop
    };

    /// Arrays nested deeper than this go to serde.
    const MAX_DEPTH: usize = 16;

    struct Cursor<'a> {
        text: &'a str,
        pos: usize,
    }

    impl<'a> Cursor<'a> {
        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.pos).copied()
        }

        fn skip_ws(&mut self) {
            while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
                self.pos += 1;
            }
        }

        fn eat(&mut self, byte: u8) -> Option<()> {
            self.skip_ws();
            (self.peek()? == byte).then(|| self.pos += 1)
        }

        /// A string without escapes or control characters, at the cursor.
        fn simple_string(&mut self) -> Option<&'a str> {
            self.skip_ws();
            let bytes = self.text.as_bytes();
            if bytes.get(self.pos) != Some(&b'"') {
                return None;
            }
            let start = self.pos + 1;
            let mut end = start;
            while end < bytes.len() && !STRING_STOP[usize::from(bytes[end])] {
                end += 1;
            }
            if bytes.get(end) != Some(&b'"') {
                return None;
            }
            let len = end - start;
            self.pos = end + 1;
            // Both ends are ASCII quotes of a valid UTF-8 line, so this is a char boundary.
            self.text.get(start..start + len)
        }

        /// A non-negative integer that fits in 64 bits, as serde reads a `u64`.
        fn uint(&mut self) -> Option<u64> {
            self.skip_ws();
            let bytes = self.text.as_bytes();
            let start = self.pos;
            let mut n: u64 = 0;
            while let Some(&b @ b'0'..=b'9') = bytes.get(self.pos) {
                n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                self.pos += 1;
            }
            let digits = self.pos - start;
            let leading_zero = digits > 1 && bytes[start] == b'0';
            if digits == 0 || leading_zero {
                return None;
            }
            match bytes.get(self.pos) {
                Some(b'.' | b'e' | b'E' | b'-' | b'+') => None,
                _ => Some(n),
            }
        }

        /// A JSON number's text (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`).
        fn number(&mut self) -> Option<&'a str> {
            let bytes = self.text.as_bytes();
            let start = self.pos;
            let digits = |pos: &mut usize| {
                let from = *pos;
                while let Some(b'0'..=b'9') = bytes.get(*pos) {
                    *pos += 1;
                }
                *pos - from
            };
            let mut pos = start;
            if bytes.get(pos) == Some(&b'-') {
                pos += 1;
            }
            let int_start = pos;
            let int_digits = digits(&mut pos);
            if int_digits == 0 || (int_digits > 1 && bytes[int_start] == b'0') {
                return None;
            }
            if bytes.get(pos) == Some(&b'.') {
                pos += 1;
                if digits(&mut pos) == 0 {
                    return None;
                }
            }
            if let Some(b'e' | b'E') = bytes.get(pos) {
                pos += 1;
                if let Some(b'+' | b'-') = bytes.get(pos) {
                    pos += 1;
                }
                if digits(&mut pos) == 0 {
                    return None;
                }
            }
            self.pos = pos;
            self.text.get(start..pos)
        }

        fn literal(&mut self, word: &str) -> Option<()> {
            let rest = self.text.get(self.pos..)?;
            rest.starts_with(word).then(|| self.pos += word.len())
        }

        fn value(&mut self, depth: usize) -> Option<ExactValue> {
            self.skip_ws();
            Some(match self.peek()? {
                b'n' => self.literal("null").map(|()| ExactValue::Null)?,
                b't' => self.literal("true").map(|()| ExactValue::Bool(true))?,
                b'f' => self.literal("false").map(|()| ExactValue::Bool(false))?,
                b'"' => ExactValue::String(self.simple_string()?.to_string()),
                b'-' | b'0'..=b'9' => ExactValue::Number(self.number()?.into()),
                b'[' if depth < MAX_DEPTH => {
                    self.pos += 1;
                    let mut items = Vec::new();
                    self.skip_ws();
                    if self.peek()? == b']' {
                        self.pos += 1;
                    } else {
                        loop {
                            items.push(self.value(depth + 1)?);
                            self.skip_ws();
                            match self.peek()? {
                                b',' => self.pos += 1,
                                b']' => {
                                    self.pos += 1;
                                    break;
                                }
                                _ => return None,
                            }
                        }
                    }
                    ExactValue::Array(items)
                }
                _ => return None,
            })
        }

        /// `null` or a simple string.
        fn optional_string(&mut self) -> Option<Option<&'a str>> {
            self.skip_ws();
            if self.peek()? == b'n' {
                self.literal("null")?;
                return Some(None);
            }
            self.simple_string().map(Some)
        }
    }

    /// Reads a client event line of the usual shape; `None` for anything else.
    pub(super) fn parse_line(text: &str) -> Option<Line<'_>> {
        let mut c = Cursor { text, pos: 0 };
        c.eat(b'{')?;
        let (mut index, mut time, mut process, mut kind, mut f) = (None, None, None, None, None);
        let (mut key, mut value, mut error) = (None, None, None);
        // Sets a field once; a repeated field goes to serde (which refuses it).
        fn set<T>(slot: &mut Option<T>, v: T) -> Option<()> {
            slot.is_none().then(|| *slot = Some(v))
        }
        loop {
            let name = c.simple_string()?;
            c.eat(b':')?;
            // Byte patterns, which compile to a few comparisons (string patterns call memcmp).
            match name.as_bytes() {
                b"index" => set(&mut index, c.uint()?)?,
                b"time" => set(&mut time, c.uint()?)?,
                b"process" => set(&mut process, c.uint()?)?,
                b"type" => {
                    let k = match c.simple_string()?.as_bytes() {
                        b"invoke" => EventType::Invoke,
                        b"ok" => EventType::Ok,
                        b"fail" => EventType::Fail,
                        b"info" => EventType::Info,
                        _ => return None,
                    };
                    set(&mut kind, k)?
                }
                b"f" => set(&mut f, c.simple_string()?)?,
                b"key" => set(&mut key, c.optional_string()?)?,
                b"value" => set(&mut value, c.value(0)?)?,
                b"error" => set(&mut error, c.optional_string()?)?,
                // Who answered (the harness's Jepsen-style `:node` fields): read past them, as
                // serde ignores fields an event does not have.
                b"node" | b"role" => {
                    c.optional_string()?;
                }
                b"term" | b"commit_index" => {
                    c.uint()?;
                }
                _ => return None,
            }
            c.skip_ws();
            match c.peek()? {
                b',' => c.pos += 1,
                b'}' => {
                    c.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
        c.skip_ws();
        if c.pos != text.len() {
            return None;
        }
        index?;
        Some(Line {
            time: time?,
            process: process?,
            kind: kind?,
            f: f?,
            key: key.flatten(),
            value: value.unwrap_or_default(),
            error: error.flatten(),
        })
    }
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

    /// Whatever the one-pass reader accepts, serde reads the same way.
    fn assert_fast_agrees_with_serde(line: &str) -> bool {
        let Some(fast) = fast::parse_line(line) else {
            return false;
        };
        let (event, exact) = parse_line_with_serde(line, 1)
            .unwrap_or_else(|e| panic!("fast path accepted what serde refuses: {line}: {e}"));
        assert_eq!(event.process, Process::Client(fast.process), "{line}");
        assert_eq!(event.kind, fast.kind, "{line}");
        assert_eq!(event.f, fast.f, "{line}");
        assert_eq!(event.key.as_deref(), fast.key, "{line}");
        assert_eq!(event.error.as_deref(), fast.error, "{line}");
        assert_eq!(event.time, fast.time, "{line}");
        assert_eq!(exact, fast.value, "{line}");
        true
    }

    #[test]
    fn the_one_pass_reader_reads_what_serde_reads_and_leaves_the_rest_to_it() {
        use rand::{Rng, SeedableRng};
        let templates = [
            r#"{"index":0,"time":0,"process":1,"type":"invoke","f":"read","value":null}"#,
            r#"{"index":12,"time":345,"process":7,"type":"ok","f":"read","key":"k1","value":"7-3"}"#,
            r#"{"index":3,"time":4,"process":2,"type":"fail","f":"cas","key":"x","value":["a",null],"error":"precondition-failed"}"#,
            r#"{ "index" : 3 , "time":4,"process":2,"type":"info","f":"write","value":-1.5e+7,"error":null,"key":null }"#,
            r#"{"index":1,"time":1,"process":0,"type":"ok","f":"write","value":[18446744073709551616,[true,false],[]]}"#,
            r#"{"index":1,"time":1,"process":"nemesis","type":"info","f":"kill","value":"n1"}"#,
            r#"{"index":9,"time":10,"process":3,"type":"ok","f":"read","key":"k0","value":"3-1","node":"n2","term":3,"commit_index":118,"role":"follower"}"#,
        ];
        // Bytes a mutation inserts: JSON's structure, escapes, digits, letters, UTF-8.
        let alphabet: Vec<char> = "{}[]\",:\\/ \t0123456789-+.eEnultrfasxé{}\u{1}"
            .chars()
            .collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
        let mut accepted = 0;
        for t in templates {
            assert_eq!(
                assert_fast_agrees_with_serde(t),
                !t.contains("nemesis"),
                "{t}"
            );
            for _ in 0..3000 {
                let mut chars: Vec<char> = t.chars().collect();
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..chars.len());
                    match rng.gen_range(0..3) {
                        0 => {
                            chars.remove(at);
                        }
                        1 => chars.insert(at, alphabet[rng.gen_range(0..alphabet.len())]),
                        _ => chars[at] = alphabet[rng.gen_range(0..alphabet.len())],
                    }
                    if chars.is_empty() {
                        chars.push('{');
                    }
                }
                let line: String = chars.into_iter().collect();
                if assert_fast_agrees_with_serde(&line) {
                    accepted += 1;
                }
            }
        }
        assert!(
            accepted > 500,
            "only {accepted} mutated lines took the fast path"
        );
    }

    #[test]
    fn lines_the_fast_path_leaves_to_serde_are_read_or_refused_as_before() {
        let text = concat!(
            r#"{"index":0,"time":0,"process":1,"type":"invoke","f":"w\u0072ite","value":{"b":1,"a":"\n"}}"#,
            "\r\n",
            r#"{"index":1,"time":1,"process":"nemesis","type":"info","f":"kill","value":"n1"}"#,
            "\n",
            r#"{"index":2,"time":2,"process":1,"type":"ok","f":"write","value":null,"extra":5}"#,
        );
        let h = parse_jsonl(text.as_bytes()).unwrap();
        assert_eq!(h.operations[0].f, "write");
        assert_eq!(h.operations[0].input.text(), r#"{"a":"\n","b":1}"#);
        assert_eq!(
            h.operations[0].complete_seq,
            Some(2),
            "the nemesis event counts"
        );
        assert_eq!(h.nemesis.len(), 1);
        assert_eq!(
            line_of(r#"{"index":0,"time":0,"process":1,"type":"invoke","f":"read","f":"x"}"#),
            Some(1)
        );
        assert_eq!(line_of(&format!("{INVOKE}\n{INVOKE} x")), Some(2));
        let not_utf8 = parse_jsonl(&b"\xff\n"[..]).unwrap_err();
        assert!(matches!(not_utf8, HistoryError::Io(_)), "{not_utf8}");
    }

    #[test]
    fn lines_cut_by_the_read_buffer_are_read_whole() {
        let text = format!(
            "{INVOKE}\r\n\n{}\r\n{}",
            r#"{"index":1,"time":6,"process":1,"type":"ok","f":"read","value":"7"}"#,
            r#"{"index":2,"time":7,"process":2,"type":"invoke","f":"write","value":"8"}"#,
        );
        let whole = parse_jsonl(text.as_bytes()).unwrap();
        for block in 0..200 {
            let cut = parse_jsonl_in_blocks(text.as_bytes(), block).unwrap();
            assert_eq!(cut, whole, "blocks of {block} bytes");
        }
        assert_eq!(whole.operations[1].invoke_line, 4);
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
