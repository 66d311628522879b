//! `minimal.jsonl`: the smallest piece of a failing run's history that is still not
//! linearizable, for a person to read before the whole history.
//!
//! The shrinking itself is the checker's ([`riptide_checker::shrink`]: delta debugging over the
//! failing key's operations, each candidate checked); this module maps what it keeps back to
//! the run's events, writes them in the history's own format (one [`Event`] per line, indices
//! renumbered from 0, times and every other field as recorded), and reads them back for the
//! report, checking them again so that what is drawn is what the checker says.

use std::path::Path;
use std::time::{Duration, Instant};

use riptide_checker::history::{Event, Process};
use riptide_checker::{check_builtin, BuiltinModel, CheckOptions, History, ShrinkError, Verdict};

use super::ops::RunHistory;

/// How long a failing `riptide test` spends shrinking by default.
pub const DEFAULT_SHRINK_BUDGET: Duration = Duration::from_secs(30);

/// A minimal history and what the report says of it.
#[derive(Debug, Clone)]
pub struct MinimalHistory {
    /// Its events, in order, indices from 0.
    pub events: Vec<Event>,
    /// The failing key (empty for a single register).
    pub key: String,
    /// Invoke indices (in `events`) of the operations that cannot be linearized.
    pub failing: Vec<u64>,
    /// What the shrinking did, when this process did it: operations of the key before,
    /// whether it finished (1-minimal), candidates checked, time taken.
    pub shrunk: Option<ShrinkStats>,
}

/// How a minimal history was found.
#[derive(Debug, Clone, Copy)]
pub struct ShrinkStats {
    pub key_operations: usize,
    pub one_minimal: bool,
    pub checks: usize,
    pub elapsed: Duration,
}

impl MinimalHistory {
    /// Client operations in it.
    pub fn operations(&self) -> usize {
        self.events
            .iter()
            .filter(|e| {
                matches!(e.process, Process::Client(_))
                    && e.kind == riptide_checker::history::EventType::Invoke
            })
            .count()
    }

    /// One line for a person: `3 operations of key k2 (of 1,204), 1-minimal, 41 checks in
    /// 0.3 s`.
    pub fn summary(&self) -> String {
        let key = if self.key.is_empty() {
            "the register".to_string()
        } else {
            format!("key {}", self.key)
        };
        let mut text = format!("{} operations of {key}", self.operations());
        if let Some(s) = &self.shrunk {
            text.push_str(&format!(
                " (of {}), {}, {} checks in {:.1} s",
                s.key_operations,
                if s.one_minimal {
                    "1-minimal"
                } else {
                    "budget ran out before 1-minimal"
                },
                s.checks,
                s.elapsed.as_secs_f64()
            ));
        }
        text
    }

    /// The events as JSON Lines, as `history.jsonl` holds them.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            // An Event always serializes.
            if let Ok(line) = serde_json::to_string(e) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }
}

/// Shrinks a run's failing history within `budget` (`partition`: the failing key when known).
pub fn shrink_run(
    history: &RunHistory,
    model: BuiltinModel,
    partition: Option<&str>,
    budget: Duration,
) -> Result<MinimalHistory, ShrinkError> {
    let started = Instant::now();
    let checkable = match &history.checkable {
        Ok(h) => h,
        Err(_) => {
            return Err(ShrinkError::NotFailing {
                verdict: Verdict::Unknown,
            })
        }
    };
    let shrunk = riptide_checker::shrink(
        checkable,
        &riptide_checker::ModelSpec::new(model),
        partition,
        budget,
    )?;
    // Lines are 1-based event positions (see RunHistory::new).
    let mut positions: Vec<usize> = shrunk
        .history
        .operations
        .iter()
        .flat_map(|op| std::iter::once(op.invoke_line).chain(op.complete_line))
        .map(|line| line - 1)
        .collect();
    positions.sort_unstable();
    let events: Vec<Event> = positions
        .iter()
        .filter_map(|&p| history.events.get(p).cloned())
        .enumerate()
        .map(|(i, mut e)| {
            e.index = i as u64;
            e
        })
        .collect();
    let stats = ShrinkStats {
        key_operations: shrunk.partition_operations,
        one_minimal: shrunk.one_minimal,
        checks: shrunk.checks,
        elapsed: started.elapsed(),
    };
    let mut minimal = from_events(events, model).ok_or(ShrinkError::NotFailing {
        verdict: Verdict::Linearizable,
    })?;
    minimal.shrunk = Some(stats);
    Ok(minimal)
}

/// Checks `events` again and keeps them when they are not linearizable.
pub fn from_events(events: Vec<Event>, model: BuiltinModel) -> Option<MinimalHistory> {
    let history =
        History::from_events(events.iter().cloned().enumerate().map(|(i, e)| (i + 1, e))).ok()?;
    let result = check_builtin(&history, model, &CheckOptions::default()).ok()?;
    let failing = result.failures().next()?;
    let cx = failing.counterexample.as_ref()?;
    let mut ids: Vec<usize> = cx.blocked_by.iter().map(|b| b.id).collect();
    if ids.is_empty() {
        ids.extend(cx.candidates.iter().map(|c| c.op.id));
    }
    let failing_ops = ids
        .iter()
        .filter_map(|&id| history.operations.get(id))
        .map(|op| op.invoke_line as u64 - 1)
        .collect();
    Some(MinimalHistory {
        events,
        key: failing.partition.clone(),
        failing: failing_ops,
        shrunk: None,
    })
}

/// Reads a stored `minimal.jsonl` back (checking it again); `None` when absent or when it no
/// longer fails (e.g. written by an older checker).
pub fn load(path: &Path, model: BuiltinModel) -> Option<MinimalHistory> {
    let text = std::fs::read_to_string(path).ok()?;
    let events: Vec<Event> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .ok()?;
    from_events(events, model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_checker::history::EventType;

    fn ev(index: u64, p: u64, kind: EventType, f: &str, key: &str, value: &str) -> Event {
        Event {
            index,
            time: index * 1_000_000,
            process: Process::Client(p),
            kind,
            f: f.into(),
            key: Some(key.into()),
            value: if value.is_empty() {
                serde_json::Value::Null
            } else {
                value.into()
            },
            error: None,
        }
    }

    #[test]
    fn a_stale_read_shrinks_to_its_three_operations_renumbered_and_rechecks() {
        use EventType::{Invoke, Ok};
        let mut events = Vec::new();
        let mut push = |p: u64, kind: EventType, f: &str, key: &str, value: &str| {
            let i = events.len() as u64;
            events.push(ev(i, p, kind, f, key, value));
        };
        for i in 0..30 {
            let v = format!("p9-{i}");
            push(9, Invoke, "write", "other", &v);
            push(9, Ok, "write", "other", &v);
        }
        push(1, Invoke, "write", "k", "p1-1");
        push(1, Ok, "write", "k", "p1-1");
        push(2, Invoke, "write", "k", "p2-1");
        push(2, Ok, "write", "k", "p2-1");
        push(3, Invoke, "read", "k", "");
        push(3, Ok, "read", "k", "p1-1");
        let history = RunHistory::new(events);
        let minimal =
            shrink_run(&history, BuiltinModel::Kv, None, Duration::from_secs(30)).unwrap();
        assert_eq!(minimal.key, "k");
        assert_eq!(minimal.operations(), 3);
        let indices: Vec<u64> = minimal.events.iter().map(|e| e.index).collect();
        assert_eq!(indices, [0, 1, 2, 3, 4, 5]);
        assert_eq!(minimal.events[0].time, 60_000_000, "times as recorded");
        assert_eq!(minimal.failing, [4], "the read cannot be linearized");
        assert!(
            minimal.summary().contains("1-minimal"),
            "{}",
            minimal.summary()
        );
        // Written and read back, it still fails.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("minimal.jsonl");
        std::fs::write(&path, minimal.to_jsonl()).unwrap();
        let again = load(&path, BuiltinModel::Kv).unwrap();
        assert_eq!(again.events, minimal.events);
        assert_eq!(again.failing, [4]);
    }
}
