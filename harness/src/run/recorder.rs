//! The history recorder: every client and nemesis event of a run, in the order it happened.
//!
//! Events get their `index` and `time` (nanoseconds since the run started, monotonic) under one
//! lock, so the file order, the index order and the time order agree: that is what the checker's
//! real-time order relies on. Each event is also appended to `history.jsonl` as it happens (and
//! flushed often), so a run interrupted by Ctrl-C or a crash still leaves what it recorded.
//!
//! A completion may also say which node answered it ([`Served`], Jepsen's `:node`): those
//! fields are written on its line after the checker's, and kept apart in memory (the checker's
//! [`Event`] has no place for them and needs none).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use riptide_checker::history::{Event, EventType, Process};

use crate::system::Served;

/// What an event says, before the recorder stamps it with an index and a time.
#[derive(Debug, Clone)]
pub struct EventBody {
    pub process: Process,
    pub kind: EventType,
    pub f: String,
    pub key: Option<String>,
    pub value: serde_json::Value,
    pub error: Option<String>,
}

struct Inner {
    events: Vec<Event>,
    /// Who answered, by the index of the completion event.
    served: HashMap<u64, Served>,
    /// The JSONL file, or `None` when recording only in memory (tests) or after a write error.
    file: Option<std::io::BufWriter<std::fs::File>>,
    /// The first write error, reported once at the end instead of failing every client.
    write_error: Option<std::io::Error>,
}

/// A shared, append-only history. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    inner: Arc<Mutex<Inner>>,
}

impl Recorder {
    /// Records into memory and into `path` (created or truncated).
    pub fn create(path: &Path, start: Instant) -> std::io::Result<Recorder> {
        let file = std::fs::File::create(path)?;
        Ok(Recorder {
            start,
            inner: Arc::new(Mutex::new(Inner {
                events: Vec::new(),
                served: HashMap::new(),
                file: Some(std::io::BufWriter::new(file)),
                write_error: None,
            })),
        })
    }

    /// Records into memory only.
    #[cfg(test)]
    pub fn in_memory(start: Instant) -> Recorder {
        Recorder {
            start,
            inner: Arc::new(Mutex::new(Inner {
                events: Vec::new(),
                served: HashMap::new(),
                file: None,
                write_error: None,
            })),
        }
    }

    /// Nanoseconds since the start of the run.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Stamps and appends one event; returns it as recorded.
    pub fn record(&self, body: EventBody) -> Event {
        self.record_served(body, None)
    }

    /// [`Self::record`], with the node that answered (for a completion).
    pub fn record_served(&self, body: EventBody, served: Option<Served>) -> Event {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // The time is taken under the lock so that times never decrease along the file.
        let event = Event {
            index: inner.events.len() as u64,
            time: self.now_ns(),
            process: body.process,
            kind: body.kind,
            f: body.f,
            key: body.key,
            value: body.value,
            error: body.error,
        };
        if let Some(file) = inner.file.as_mut() {
            let line = serde_json::to_string(&HistoryLine {
                event: &event,
                served: served.as_ref(),
            })
            .map_err(std::io::Error::other);
            let result = line.and_then(|l| writeln!(file, "{l}"));
            if let Err(e) = result {
                inner.file = None;
                inner.write_error.get_or_insert(e);
            }
        }
        if let Some(served) = served {
            inner.served.insert(event.index, served);
        }
        inner.events.push(event.clone());
        event
    }

    /// Pushes buffered lines to the file.
    pub fn flush(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = inner.file.as_mut() {
            if let Err(e) = file.flush() {
                inner.file = None;
                inner.write_error.get_or_insert(e);
            }
        }
    }

    /// A copy of every event so far.
    pub fn snapshot(&self) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.events.clone()
    }

    /// Who answered each completion so far, by event index.
    pub fn served_snapshot(&self) -> HashMap<u64, Served> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.served.clone()
    }

    /// Flushes and returns the first error met while writing the file, if any.
    pub fn finish(&self) -> Option<String> {
        self.flush();
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.write_error.as_ref().map(|e| e.to_string())
    }
}

/// One line of `history.jsonl`: the checker's event, then who answered.
#[derive(serde::Serialize)]
struct HistoryLine<'a> {
    #[serde(flatten)]
    event: &'a Event,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    served: Option<&'a Served>,
}

/// Who answered each completion of a stored `history.jsonl`, by event index: the optional
/// fields the recorder writes. Lines without them (older histories, invokes, failures no node
/// answered) and lines that do not parse add nothing; the checker reads the events.
pub fn served_of_history(text: &str) -> HashMap<u64, Served> {
    #[derive(serde::Deserialize)]
    struct Line {
        index: u64,
        #[serde(flatten)]
        served: Option<Served>,
    }
    text.lines()
        .filter(|l| l.contains("\"node\""))
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .filter_map(|l| Some((l.index, l.served?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(p: u64, kind: EventType) -> EventBody {
        EventBody {
            process: Process::Client(p),
            kind,
            f: "write".into(),
            key: Some("k".into()),
            value: serde_json::json!("p1-1"),
            error: None,
        }
    }

    #[test]
    fn indexes_are_dense_and_times_never_decrease() {
        let rec = Recorder::in_memory(Instant::now());
        for i in 0..100 {
            rec.record(body(i % 3, EventType::Invoke));
        }
        let events = rec.snapshot();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.index, i as u64);
        }
        assert!(events.windows(2).all(|w| w[0].time <= w[1].time));
    }

    /// The events of a history file, as serde reads them.
    fn events_of(text: &str) -> Vec<Event> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn file_holds_one_parseable_event_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let rec = Recorder::create(&path, Instant::now()).unwrap();
        rec.record(body(1, EventType::Invoke));
        rec.record(body(1, EventType::Ok));
        assert!(rec.finish().is_none());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(events_of(&text), rec.snapshot());
    }

    #[test]
    fn who_answered_is_written_on_the_completion_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let rec = Recorder::create(&path, Instant::now()).unwrap();
        rec.record(body(1, EventType::Invoke));
        let served = Served {
            node: 2,
            term: Some(3),
            commit_index: Some(118),
            role: Some("follower".into()),
        };
        rec.record_served(body(1, EventType::Ok), Some(served.clone()));
        assert!(rec.finish().is_none());
        let text = std::fs::read_to_string(&path).unwrap();
        let second = text.lines().nth(1).unwrap();
        assert!(
            second.ends_with(r#","node":"n2","term":3,"commit_index":118,"role":"follower"}"#),
            "{second}"
        );
        // The checker's events are unchanged by the extra fields.
        assert_eq!(events_of(&text), rec.snapshot());
        let read = served_of_history(&text);
        assert_eq!(read.len(), 1);
        assert_eq!(read[&1], served);
        assert_eq!(rec.served_snapshot(), read);
        // A history written before these fields existed has none, and still loads.
        assert!(served_of_history(
            r#"{"index":0,"time":1,"process":1,"type":"ok","f":"read","value":null}"#
        )
        .is_empty());
    }
}
