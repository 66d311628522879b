//! The report's first figure when the run folder has `minimal.jsonl`: the few operations of
//! the failing key that are still not linearizable on their own, on a timeline of their own
//! (the window they span, faults shaded), the one that cannot be linearized in red, and each
//! described in a list. A person reads this before the full counterexample.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{describe, esc, timeline_svg, Mark};
use crate::run::minimal::MinimalHistory;
use crate::run::ops::pair_ops;
use crate::store::{FaultInterval, MINIMAL_FILE};

/// The faults that overlap `[lo, hi]`, with times from `lo` and cut at `hi` (a fault still
/// active at the end of the run lasts until `duration_ns`).
pub(super) fn faults_in_window(
    faults: &[FaultInterval],
    lo: u64,
    hi: u64,
    duration_ns: u64,
) -> Vec<FaultInterval> {
    let end_of = |f: &FaultInterval| f.end_ns.unwrap_or(duration_ns);
    faults
        .iter()
        .filter(|f| end_of(f) >= lo && f.start_ns <= hi)
        .map(|f| FaultInterval {
            start_ns: f.start_ns.saturating_sub(lo),
            end_ns: Some(end_of(f).min(hi).saturating_sub(lo)),
            ..f.clone()
        })
        .collect()
}

/// The section, heading included.
pub(super) fn section(m: &MinimalHistory, faults: &[FaultInterval], duration_ns: u64) -> String {
    let ops = pair_ops(&m.events);
    let mut html = String::from(r#"<h2 id="minimal">Minimal failing history</h2>"#);
    let _ = write!(
        html,
        "<p>{}: still not linearizable on their own (<a href=\"{MINIMAL_FILE}\">{MINIMAL_FILE}</a>, \
         the format of history.jsonl). Each operation is kept whole, in its real-time order; a \
         kept read keeps the writes it saw.</p>",
        esc(&m.summary())
    );
    let lo = ops.iter().map(|o| o.start_ns).min().unwrap_or(0);
    let hi = ops
        .iter()
        .map(|o| o.end_ns.unwrap_or(duration_ns))
        .max()
        .unwrap_or(duration_ns)
        .max(lo + 1);
    let window: Vec<_> = ops
        .iter()
        .map(|o| {
            let mut o = o.clone();
            o.start_ns -= lo;
            o.end_ns = o.end_ns.map(|e| e.min(hi) - lo);
            o
        })
        .collect();
    let window_faults = faults_in_window(faults, lo, hi, duration_ns);
    // Bars are numbered as the list below.
    let marks: HashMap<u64, Mark> = ops
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let failing = m.failing.contains(&o.invoke_index);
            let mark = Mark {
                label: if failing {
                    "CANNOT BE LINEARIZED".to_string()
                } else {
                    format!("{}", i + 1)
                },
                failing,
                anchor: false,
            };
            (o.invoke_index, mark)
        })
        .collect();
    html.push_str(r#"<div class="svgbox">"#);
    html.push_str(&timeline_svg(
        &window,
        &window_faults,
        hi - lo,
        &marks,
        true,
        lo,
    ));
    html.push_str("</div><ol>");
    for o in &ops {
        let class = if m.failing.contains(&o.invoke_index) {
            r#" class="bad""#
        } else {
            ""
        };
        let _ = write!(
            html,
            "<li{class}>{} <small>at {:.3} s</small></li>",
            esc(&describe(o)),
            o.start_ns as f64 / 1e9
        );
    }
    html.push_str("</ol>");
    html
}
