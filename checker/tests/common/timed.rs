//! Histories built from client events placed at logical times, shared by the tests that
//! generate histories.

#![allow(dead_code)]

use riptide_checker::history::{Event, EventType, Process};
use riptide_checker::History;

/// A client event of a single-register history (no key).
pub fn client_event(
    process: u64,
    f: &str,
    kind: EventType,
    value: serde_json::Value,
    error: Option<&str>,
) -> Event {
    Event {
        index: 0,
        time: 0,
        process: Process::Client(process),
        kind,
        f: f.to_string(),
        key: None,
        value,
        error: error.map(str::to_string),
    }
}

/// The history of events given with their logical times, in time order.
pub fn history_of(mut timed: Vec<(usize, Event)>) -> History {
    timed.sort_by_key(|(t, _)| *t);
    History::from_events(timed.into_iter().enumerate().map(|(i, (_, e))| (i + 1, e)))
        .expect("generated events pair up")
}
