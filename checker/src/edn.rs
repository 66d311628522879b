//! Jepsen EDN histories, so people can re-check the `history.edn` files they already have.
//!
//! Jepsen writes one operation map per line (`{:type :invoke, :f :cas, :value [1 4],
//! :process 3, :time 123}`), or a single vector of such maps. This module holds a small EDN
//! reader (maps, vectors, lists, sets, keywords, strings, numbers, `nil`, booleans; tagged
//! literals such as `#jepsen.history.Op{...}` are read as their value) and the conversion of each
//! map into an [`Event`], keywords becoming strings (`:cas` -> `"cas"`, `nil` -> `null`).
//! Numbers keep their literal text, suffix included ([`ExactValue`]): `12345678901234567890123N`
//! and `...124N` differ, and `1M` (a decimal) is not `1`.

use crate::history::{Event, EventType, History, HistoryError, NemesisTag, Process};
use crate::value::ExactValue;

/// An EDN value, as much of EDN as histories use.
#[derive(Debug, Clone, PartialEq)]
enum Edn {
    Nil,
    Bool(bool),
    /// A number's literal text (`12`, `-1.5e3`, `123N`, `1M`).
    Number(String),
    Str(String),
    Keyword(String),
    Symbol(String),
    Vector(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
}

/// Reads a Jepsen EDN history.
pub fn parse_edn(text: &str) -> Result<History, HistoryError> {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
        map_lines: Vec::new(),
    };
    let mut events = Vec::new();
    loop {
        reader.skip_blank();
        if reader.pos >= reader.bytes.len() {
            break;
        }
        let line = reader.line;
        match reader.value()? {
            Edn::Map(entries) => events.push(event_of(line, entries)?),
            Edn::Vector(items) => {
                // A whole history as one vector: the reader recorded where each item started.
                let item_lines = reader.take_map_lines();
                for (i, item) in items.into_iter().enumerate() {
                    let item_line = item_lines.get(i).copied().unwrap_or(line);
                    match item {
                        Edn::Map(entries) => events.push(event_of(item_line, entries)?),
                        other => {
                            return Err(syntax(
                                item_line,
                                format!("expected an operation map, got {other:?}"),
                            ))
                        }
                    }
                }
            }
            other => {
                return Err(syntax(
                    line,
                    format!("expected an operation map, got {other:?}"),
                ))
            }
        }
        reader.take_map_lines();
    }
    History::from_exact_events(events)
}

fn syntax(line: usize, message: String) -> HistoryError {
    HistoryError::Syntax { line, message }
}

/// The event of one operation map, with its value exactly and its line.
fn event_of(
    line: usize,
    entries: Vec<(Edn, Edn)>,
) -> Result<(usize, Event, ExactValue), HistoryError> {
    let mut process = None;
    let mut kind = None;
    let mut f = None;
    let mut key = None;
    let mut value = ExactValue::Null;
    let mut time = 0u64;
    let mut index = None;
    let mut error = None;
    for (k, v) in entries {
        let Edn::Keyword(k) = k else { continue };
        match k.as_str() {
            "process" => {
                process = Some(match v {
                    Edn::Number(ref n) if integer(n).is_some() => {
                        Process::Client(integer(n).unwrap_or_default())
                    }
                    Edn::Keyword(ref n) | Edn::Symbol(ref n) | Edn::Str(ref n)
                        if n == "nemesis" =>
                    {
                        Process::Nemesis(NemesisTag::Nemesis)
                    }
                    other => {
                        return Err(syntax(
                            line,
                            format!(":process must be a number or :nemesis, got {other:?}"),
                        ))
                    }
                })
            }
            "type" => {
                kind = Some(match name_of(&v).as_deref() {
                    Some("invoke") => EventType::Invoke,
                    Some("ok") => EventType::Ok,
                    Some("fail") => EventType::Fail,
                    Some("info") => EventType::Info,
                    _ => {
                        return Err(syntax(
                            line,
                            format!(":type must be :invoke, :ok, :fail or :info, got {v:?}"),
                        ))
                    }
                })
            }
            "f" => f = name_of(&v),
            "key" => {
                key = match v {
                    Edn::Nil => None,
                    Edn::Number(n) => Some(n),
                    other => name_of(&other),
                }
            }
            "value" => value = to_exact(v),
            "time" => {
                if let Edn::Number(t) = v {
                    time = integer(&t).unwrap_or(0);
                }
            }
            "index" => {
                if let Edn::Number(i) = v {
                    index = integer(&i);
                }
            }
            "error" => {
                error = match v {
                    Edn::Nil => None,
                    other => Some(name_of(&other).unwrap_or_else(|| to_exact(other).text())),
                }
            }
            _ => {}
        }
    }
    let process = process.ok_or_else(|| syntax(line, "operation map without :process".into()))?;
    let kind = kind.ok_or_else(|| syntax(line, "operation map without :type".into()))?;
    let f = f.ok_or_else(|| syntax(line, "operation map without :f".into()))?;
    let event = Event {
        index: index.unwrap_or(0),
        time,
        process,
        kind,
        f,
        key,
        // Nemesis values are only drawn: the lossy JSON form is enough for them.
        value: match process {
            Process::Nemesis(_) => serde_json::to_value(&value).unwrap_or_default(),
            Process::Client(_) => serde_json::Value::Null,
        },
        error,
    };
    Ok((line, event, value))
}

/// A non-negative integer literal (an `N` suffix allowed), for `:process`, `:time` and `:index`.
fn integer(literal: &str) -> Option<u64> {
    literal.strip_suffix('N').unwrap_or(literal).parse().ok()
}

/// The name of a keyword, symbol or string.
fn name_of(v: &Edn) -> Option<String> {
    match v {
        Edn::Keyword(s) | Edn::Symbol(s) | Edn::Str(s) => Some(s.clone()),
        _ => None,
    }
}

fn to_exact(v: Edn) -> ExactValue {
    match v {
        Edn::Nil => ExactValue::Null,
        Edn::Bool(b) => ExactValue::Bool(b),
        Edn::Number(n) => ExactValue::Number(n.into()),
        Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => ExactValue::String(s),
        Edn::Vector(items) => ExactValue::Array(items.into_iter().map(to_exact).collect()),
        Edn::Map(entries) => {
            let mut entries: Vec<(String, ExactValue)> = entries
                .into_iter()
                .map(|(k, v)| {
                    (
                        name_of(&k).unwrap_or_else(|| to_exact(k).text()),
                        to_exact(v),
                    )
                })
                .collect();
            // Sorted by key, a repeated key keeping its last value, as JSON objects are read.
            entries.reverse();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries.dedup_by(|a, b| a.0 == b.0);
            ExactValue::Object(entries)
        }
    }
}

/// A recursive-descent EDN reader that tracks line numbers.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
    /// Lines where the items nested directly in a top-level form started, so that an error in a
    /// history written as one vector still names the line of the item at fault.
    map_lines: Vec<usize>,
}

impl Reader<'_> {
    fn take_map_lines(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.map_lines)
    }

    fn err(&self, message: impl Into<String>) -> HistoryError {
        syntax(self.line, message.into())
    }

    fn skip_blank(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' | b',' => self.pos += 1,
                b';' => {
                    while self.bytes.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn value(&mut self) -> Result<Edn, HistoryError> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<Edn, HistoryError> {
        if depth > 64 {
            return Err(self.err("EDN nested too deeply"));
        }
        self.skip_blank();
        let Some(&b) = self.bytes.get(self.pos) else {
            return Err(self.err("unexpected end of input"));
        };
        match b {
            b'{' => {
                self.pos += 1;
                let items = self.seq(b'}', depth)?;
                if items.len() % 2 != 0 {
                    return Err(self.err("map with an odd number of forms"));
                }
                let mut entries = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    entries.push((k, v));
                }
                Ok(Edn::Map(entries))
            }
            b'[' | b'(' => {
                self.pos += 1;
                let close = if b == b'[' { b']' } else { b')' };
                Ok(Edn::Vector(self.seq(close, depth)?))
            }
            b'#' => {
                self.pos += 1;
                match self.bytes.get(self.pos) {
                    Some(b'{') => {
                        self.pos += 1;
                        Ok(Edn::Vector(self.seq(b'}', depth)?))
                    }
                    Some(b'_') => {
                        // Discard the next form.
                        self.pos += 1;
                        self.value_at(depth + 1)?;
                        self.value_at(depth)
                    }
                    _ => {
                        // A tagged literal: read the tag, then the value it tags.
                        self.token();
                        self.value_at(depth)
                    }
                }
            }
            b'"' => self.string(),
            b':' => {
                self.pos += 1;
                let t = self.token();
                if t.is_empty() {
                    return Err(self.err("empty keyword"));
                }
                Ok(Edn::Keyword(t))
            }
            b'\\' => {
                self.pos += 1;
                let t = self.token();
                Ok(Edn::Str(t))
            }
            b'}' | b']' | b')' => Err(self.err(format!("unexpected '{}'", b as char))),
            _ => {
                let t = self.token();
                if t.is_empty() {
                    return Err(self.err(format!("unexpected character '{}'", b as char)));
                }
                Ok(atom(t))
            }
        }
    }

    fn seq(&mut self, close: u8, depth: usize) -> Result<Vec<Edn>, HistoryError> {
        let mut items = Vec::new();
        loop {
            self.skip_blank();
            match self.bytes.get(self.pos) {
                None => return Err(self.err(format!("missing closing '{}'", close as char))),
                Some(&c) if c == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(_) => {
                    if depth == 0 {
                        self.map_lines.push(self.line);
                    }
                    items.push(self.value_at(depth + 1)?)
                }
            }
        }
    }

    fn token(&mut self) -> String {
        let start = self.pos;
        while let Some(&b) = self.bytes.get(self.pos) {
            if b.is_ascii_whitespace()
                || matches!(
                    b,
                    b',' | b'{' | b'}' | b'[' | b']' | b'(' | b')' | b'"' | b';'
                )
            {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned()
    }

    fn string(&mut self) -> Result<Edn, HistoryError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(self.err("unterminated string"));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.bytes.get(self.pos) else {
                        return Err(self.err("unterminated string"));
                    };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'u' => {
                            let hex = self
                                .bytes
                                .get(self.pos..self.pos + 4)
                                .ok_or_else(|| self.err("bad \\u escape"))?;
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.err("bad \\u escape"))?;
                            self.pos += 4;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(code.encode_utf8(&mut buf).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                b'\n' => {
                    self.line += 1;
                    out.push(b);
                }
                _ => out.push(b),
            }
        }
        String::from_utf8(out)
            .map(Edn::Str)
            .map_err(|_| self.err("string is not UTF-8"))
    }
}

fn atom(t: String) -> Edn {
    match t.as_str() {
        "nil" => return Edn::Nil,
        "true" => return Edn::Bool(true),
        "false" => return Edn::Bool(false),
        _ => {}
    }
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(&t);
    if unsigned.starts_with(|c: char| c.is_ascii_digit()) {
        // Kept as written: exactness matters more than a numeric form here.
        return Edn::Number(t);
    }
    Edn::Symbol(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_map_per_line_with_keywords_as_strings() {
        let h = parse_edn(
            "{:type :invoke, :f :cas, :value [1 4], :process 3, :time 123}\n\
             {:type :fail, :f :cas, :value [1 4], :process 3, :time 130, :error :precondition-failed}\n\
             {:type :info, :f :start, :value nil, :process :nemesis}\n",
        )
        .unwrap();
        assert_eq!(h.operations.len(), 1);
        let op = &h.operations[0];
        assert_eq!(op.f, "cas");
        assert_eq!(op.input.text(), "[1,4]");
        assert_eq!(op.invoke_line, 1);
        assert_eq!(op.complete_line, Some(2));
        assert_eq!(h.nemesis.len(), 1);
    }

    #[test]
    fn reads_a_vector_of_maps_and_tagged_literals() {
        let h = parse_edn(
            "[{:type :invoke, :f :read, :value nil, :process 0}\n #jepsen.history.Op{:type :ok, :f :read, :value \"a\", :process 0}]",
        )
        .unwrap();
        assert_eq!(h.operations[0].output, ExactValue::String("a".into()));
        assert_eq!(h.operations[0].complete_line, Some(2));
    }

    #[test]
    fn names_the_line_of_a_syntax_error() {
        let err = parse_edn("{:type :invoke, :f :read, :process 0}\n{:type :ok :f\n").unwrap_err();
        assert!(err.line().is_some(), "{err}");
    }

    #[test]
    fn numbers_keep_their_literal_text_and_suffix() {
        let h = parse_edn(
            "{:type :invoke, :f :write, :value 9223372036854775808, :process 0}\n\
             {:type :ok, :f :write, :value 12345678901234567890123N, :process 0}\n\
             {:type :invoke, :f :write, :value 1M, :process 1}\n\
             {:type :ok, :f :write, :value 1, :process 1}\n",
        )
        .unwrap();
        assert_eq!(h.operations[0].input.text(), "9223372036854775808");
        assert_eq!(h.operations[0].output.text(), "12345678901234567890123N");
        assert_ne!(h.operations[1].input, h.operations[1].output);
    }

    #[test]
    fn a_vector_history_with_trailing_non_maps_is_refused_with_the_line() {
        let err = parse_edn(
            "[{:type :invoke, :f :read, :value nil, :process 0}\n\
             {:type :ok, :f :read, :value nil, :process 0}\n\
             5 6]",
        )
        .unwrap_err();
        assert_eq!(err.line(), Some(3), "{err}");
        assert!(err.to_string().contains("operation map"), "{err}");
    }
}
