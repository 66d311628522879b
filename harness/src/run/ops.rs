//! The one operation model of a run: its history paired into operations once, used by every
//! consumer (statistics, the report's plots and counterexample, the time of the first
//! violation, campaign records) instead of each pairing the events again.

use std::collections::HashMap;

use riptide_checker::history::{Event, EventType, Process};
use riptide_checker::History;

use crate::system::Served;

/// One client operation: its invoke and completion paired.
#[derive(Debug, Clone)]
pub struct PairedOp {
    pub process: u64,
    pub invoke_index: u64,
    pub f: String,
    pub key: Option<String>,
    pub invoke_value: serde_json::Value,
    pub start_ns: u64,
    /// `None` when the history ended before the completion (counts as `info`).
    pub end_ns: Option<u64>,
    pub outcome: EventType,
    pub result_value: serde_json::Value,
    pub error: Option<String>,
    /// The index of its completion event; `None` without one.
    pub completion_index: Option<u64>,
    /// The node that answered it and what that node knew then, when recorded.
    pub served: Option<Served>,
}

/// Pairs every client invoke with the next completion of the same process.
pub fn pair_ops(events: &[Event]) -> Vec<PairedOp> {
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut ops: Vec<PairedOp> = Vec::new();
    for e in events {
        let Process::Client(p) = e.process else {
            continue;
        };
        match e.kind {
            EventType::Invoke => {
                open.insert(p, ops.len());
                ops.push(PairedOp {
                    process: p,
                    invoke_index: e.index,
                    f: e.f.clone(),
                    key: e.key.clone(),
                    invoke_value: e.value.clone(),
                    start_ns: e.time,
                    end_ns: None,
                    outcome: EventType::Info,
                    result_value: serde_json::Value::Null,
                    error: None,
                    completion_index: None,
                    served: None,
                });
            }
            kind => {
                if let Some(i) = open.remove(&p) {
                    let op = &mut ops[i];
                    op.end_ns = Some(e.time);
                    op.outcome = kind;
                    op.result_value = e.value.clone();
                    op.error = e.error.clone();
                    op.completion_index = Some(e.index);
                }
            }
        }
    }
    ops
}

/// A run's history with its operations: built once by the analysis.
pub struct RunHistory {
    pub events: Vec<Event>,
    /// Every client operation, in invoke order.
    pub ops: Vec<PairedOp>,
    /// The history as the checker reads it, or why it cannot be read.
    pub checkable: Result<History, String>,
}

impl RunHistory {
    pub fn new(events: Vec<Event>) -> RunHistory {
        let ops = pair_ops(&events);
        // The checker's line numbers are 1-based event positions: the harness writes one
        // event per line with index = position.
        let checkable =
            History::from_events(events.iter().cloned().enumerate().map(|(i, e)| (i + 1, e)))
                .map_err(|e| format!("history: {e}"));
        RunHistory {
            events,
            ops,
            checkable,
        }
    }

    /// Attaches who answered each operation (by completion event index, as recorded).
    pub fn with_served(mut self, served: &HashMap<u64, Served>) -> RunHistory {
        if !served.is_empty() {
            for op in &mut self.ops {
                op.served = op.completion_index.and_then(|i| served.get(&i).cloned());
            }
        }
        self
    }

    /// The invoke event index of the checker's operation `id`.
    pub fn invoke_index(&self, id: usize) -> Option<u64> {
        let history = self.checkable.as_ref().ok()?;
        history
            .operations
            .get(id)
            .map(|op| op.invoke_line as u64 - 1)
    }

    /// The time (ns since the run started) of the event with `index`.
    pub fn event_time_ns(&self, index: u64) -> Option<u64> {
        self.events
            .iter()
            .find(|e| e.index == index)
            .map(|e| e.time)
    }
}
