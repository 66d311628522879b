//! The node log lines of a counterexample's window, per node, shown under it: what each node
//! said (elections, step-downs, restarts, storage errors) while the failing operations ran.
//! A node's log is `nodes/<id>.log`; its lines carry the wall-clock time of the node (an
//! RFC 3339 prefix from `tracing`, or the `ts` field of a JSON line as etcd writes them), and
//! the run's `origin_utc` maps them onto the history's clock. Lines without a time (the
//! supervisor's `=== start #N` markers) take the time of the line before them.

use std::path::Path;

use chrono::{DateTime, Utc};

/// How far before and after the window lines are kept: a step-down logged just before the
/// failing read began explains it.
const MARGIN_NS: u64 = 500_000_000;

/// At most this many lines per node, the ones nearest the window's end kept.
const MAX_LINES: usize = 40;

/// One node's lines in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLogLines {
    /// `n1`, `n2`, ...
    pub node: String,
    /// `(nanoseconds since the history's origin, line)`, in log order.
    pub lines: Vec<(u64, String)>,
    /// Lines of the window left out to keep the page short.
    pub dropped: usize,
}

/// The wall-clock time a log line begins with, if any.
fn line_time(line: &str) -> Option<DateTime<Utc>> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(trimmed).ok()?;
        let ts = value.get("ts")?.as_str()?;
        return DateTime::parse_from_rfc3339(ts)
            .ok()
            .map(|t| t.with_timezone(&Utc));
    }
    let first = trimmed.split_whitespace().next()?;
    DateTime::parse_from_rfc3339(first)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The lines of one log text that fall in `[lo - margin, hi + margin]` (history clock).
pub fn window_of_text(
    text: &str,
    origin: DateTime<Utc>,
    lo: u64,
    hi: u64,
) -> (Vec<(u64, String)>, usize) {
    let from = lo.saturating_sub(MARGIN_NS);
    let to = hi.saturating_add(MARGIN_NS);
    let mut last: Option<i64> = None;
    let mut kept = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(t) = line_time(line) {
            last = (t - origin).num_nanoseconds();
        }
        let Some(at) = last else { continue };
        let at = u64::try_from(at).unwrap_or(0);
        if at >= from && at <= to {
            kept.push((at, line.to_string()));
        }
    }
    let dropped = kept.len().saturating_sub(MAX_LINES);
    kept.drain(..dropped);
    (kept, dropped)
}

/// Every node log of a run folder's `nodes/`, cut to the window; empty without an origin time
/// (runs recorded before it was stored) or without logs.
pub fn window_lines(
    nodes_dir: &Path,
    origin_utc: Option<&str>,
    lo: u64,
    hi: u64,
) -> Vec<NodeLogLines> {
    let Some(origin) = origin_utc
        .and_then(|o| DateTime::parse_from_rfc3339(o).ok())
        .map(|t| t.with_timezone(&Utc))
    else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(nodes_dir) else {
        return Vec::new();
    };
    let mut ids: Vec<u64> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids.into_iter()
        .filter_map(|id| {
            let text = std::fs::read_to_string(nodes_dir.join(format!("{id}.log"))).ok()?;
            let (lines, dropped) = window_of_text(&text, origin, lo, hi);
            Some(NodeLogLines {
                node: format!("n{id}"),
                lines,
                dropped,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_cut_to_the_window_on_the_history_clock() {
        let origin = DateTime::parse_from_rfc3339("2026-12-03T09:22:26.000000000Z")
            .unwrap()
            .with_timezone(&Utc);
        let text = "\
2026-12-03T09:22:26.100000Z  INFO riptide_server: starting
2026-12-03T09:22:27.900000Z  INFO riptide_server::node: became leader term=3
=== riptide-nemesis: start #2 ===
2026-12-03T09:22:28.200000Z  INFO riptide_server::node: stepped down term=4
{\"level\":\"info\",\"ts\":\"2026-12-03T09:22:28.300Z\",\"msg\":\"etcd-style line\"}
2026-12-03T09:22:30.000000Z  INFO riptide_server::node: much later
";
        // Window 2.0 s - 2.2 s after the origin, 0.5 s margin each side.
        let (lines, dropped) = window_of_text(text, origin, 2_000_000_000, 2_200_000_000);
        let texts: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(dropped, 0);
        assert_eq!(texts.len(), 4, "{texts:?}");
        assert!(texts[0].contains("became leader"));
        assert!(texts[1].starts_with("=== riptide-nemesis"));
        assert_eq!(
            lines[1].0, lines[0].0,
            "an untimed line takes the time before it"
        );
        assert!(texts[3].contains("etcd-style"));
        assert_eq!(lines[3].0, 2_300_000_000);
    }

    #[test]
    fn a_busy_window_keeps_the_last_lines_and_counts_the_rest() {
        let origin = DateTime::parse_from_rfc3339("2026-12-03T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let text: String = (0..100)
            .map(|i| format!("2026-12-03T00:00:01.{i:03}000Z  INFO x: line {i}\n"))
            .collect();
        let (lines, dropped) = window_of_text(&text, origin, 1_000_000_000, 1_100_000_000);
        assert_eq!(dropped, 100 - MAX_LINES);
        assert_eq!(lines.len(), MAX_LINES);
        assert!(lines.last().unwrap().1.ends_with("line 99"));
    }

    #[test]
    fn no_origin_time_means_no_log_lines() {
        assert!(window_lines(Path::new("/nonexistent"), None, 0, 1).is_empty());
    }
}
