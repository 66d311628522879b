//! `report.html`: one self-contained page (inline SVG and CSS, no script from the network) that
//! shows a person what happened in a run.
//!
//! Sections, top to bottom: the verdict and why; the run's parameters; the counterexample drawn
//! as the checker found it (the key's operations on a timeline, the linearizable prefix numbered,
//! the impossible operations highlighted, the model state); a timeline of every operation per
//! process with fault intervals shaded and named; latency over time (a scatter by outcome) and
//! throughput over time, with the fault intervals shaded too; the faults that ran; and, when a
//! node misbehaved, its last log lines. The plots are hand-written SVG: a few hundred lines are
//! simpler to keep correct than a plotting backend's layout, and need no fonts at build time.

use std::collections::HashMap;
use std::fmt::Write as _;

use riptide_checker::history::{Event, EventType};

use crate::run::ops::PairedOp;

mod cluster;
mod logs;
mod minimal;
use crate::store::{CounterexampleView, FaultInterval, NodeProblem};
pub use cluster::{parse_samples, read_samples, NodeSample};
pub use logs::{window_lines, NodeLogLines};

/// Everything the report shows.
pub struct ReportInput<'a> {
    pub title: String,
    /// `linearizable`, `not linearizable`, `unknown` or `run failed`.
    pub verdict: String,
    /// Why the verdict is what it is, one line per reason.
    pub reasons: Vec<String>,
    /// Run parameters, in display order.
    pub parameters: Vec<(String, String)>,
    pub events: &'a [Event],
    /// The history paired into operations ([`crate::run::ops`]).
    pub ops: &'a [PairedOp],
    pub faults: &'a [FaultInterval],
    pub counterexample: Option<&'a CounterexampleView>,
    pub node_problems: &'a [NodeProblem],
    /// The nodes' own view over time (`cluster.jsonl`); empty for runs without it.
    pub cluster: &'a [NodeSample],
    /// Each node's log lines in the counterexample's window ([`counterexample_window`]).
    pub window_logs: &'a [NodeLogLines],
    /// The smallest piece of the history that still fails (`minimal.jsonl`), drawn first.
    pub minimal: Option<&'a crate::run::minimal::MinimalHistory>,
    /// The checker's verdict per key: `(key, verdict, operations, milliseconds)`.
    pub partitions: Vec<(String, String, usize, f64)>,
    /// Total duration to draw (nanoseconds); at least the last event's time.
    pub duration_ns: u64,
}

/// Width of the operations' timeline and of the node lanes above it, which share its x axis.
const TIMELINE_WIDTH: f64 = 1100.0;

/// Above this many operations the page drops tooltips of plain ok operations and samples the
/// latency scatter, so a long run's report stays light enough for a browser.
const DETAIL_LIMIT: usize = 15_000;

const OK_COLOR: &str = "#3a9d5d";
const FAIL_COLOR: &str = "#9aa3ad";
const INFO_COLOR: &str = "#e69b2e";
const BAD_COLOR: &str = "#d7263d";
const FAULT_COLORS: [&str; 6] = [
    "#f2c6c6", "#c6d8f2", "#e5d2f2", "#f2e6c6", "#c6f2e0", "#f2c6e6",
];

fn outcome_color(kind: EventType) -> &'static str {
    match kind {
        EventType::Ok => OK_COLOR,
        EventType::Fail => FAIL_COLOR,
        _ => INFO_COLOR,
    }
}

fn outcome_name(kind: EventType) -> &'static str {
    match kind {
        EventType::Ok => "ok",
        EventType::Fail => "fail",
        EventType::Info => "info",
        EventType::Invoke => "invoke",
    }
}

/// Escapes text for HTML and SVG: the checker's escaping, shared by every page the harness
/// writes.
pub use riptide_checker::escape_html as esc;

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "nil".to_string(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(value_text).collect();
            format!("[{}]", parts.join(" "))
        }
        other => other.to_string(),
    }
}

/// Describes an operation the way Jepsen prints it: `p3 cas k1 [a b] -> fail precondition-failed`.
fn describe(op: &PairedOp) -> String {
    let key = op
        .key
        .as_deref()
        .map(|k| format!(" {k}"))
        .unwrap_or_default();
    let arg = if op.invoke_value.is_null() {
        String::new()
    } else {
        format!(" {}", value_text(&op.invoke_value))
    };
    let result = match op.outcome {
        EventType::Ok if op.f == "read" || op.f == "read-all" => {
            format!("ok {}", value_text(&op.result_value))
        }
        kind => {
            let err = op
                .error
                .as_deref()
                .map(|e| format!(" {e}"))
                .unwrap_or_default();
            format!("{}{err}", outcome_name(kind))
        }
    };
    let dur = match op.end_ns {
        Some(end) => format!(
            " ({:.1} ms)",
            (end.saturating_sub(op.start_ns)) as f64 / 1e6
        ),
        None => " (no completion)".to_string(),
    };
    format!("p{} {}{key}{arg} -> {result}{dur}", op.process, op.f)
}

/// `write p3-7`, `read -> p3-7`, `cas [a b] -> fail`: what fits in a bar.
fn short_op(op: &PairedOp) -> String {
    let arg = if op.invoke_value.is_null() {
        String::new()
    } else {
        format!(" {}", value_text(&op.invoke_value))
    };
    let result = match op.outcome {
        EventType::Ok if op.f == "read" || op.f == "read-all" => {
            format!(" -> {}", value_text(&op.result_value))
        }
        EventType::Ok => String::new(),
        kind => format!(" -> {}", outcome_name(kind)),
    };
    format!("{}{arg}{result}", op.f)
}

/// Maps nanoseconds to an x coordinate.
struct XScale {
    left: f64,
    width: f64,
    duration_ns: f64,
    /// When set, an ordinal scale: these sorted instants are spread evenly, so every
    /// operation of a counterexample gets room for its text while the real-time order (all
    /// that linearizability depends on) is kept exactly.
    ordinal: Option<Vec<u64>>,
}

impl XScale {
    fn linear(left: f64, width: f64, duration_ns: u64) -> XScale {
        XScale {
            left,
            width,
            duration_ns: duration_ns.max(1) as f64,
            ordinal: None,
        }
    }

    fn x(&self, ns: u64) -> f64 {
        match &self.ordinal {
            Some(points) => {
                let rank = points.partition_point(|p| *p < ns);
                self.left + self.width * rank as f64 / (points.len().max(2) - 1) as f64
            }
            None => self.left + self.width * (ns as f64 / self.duration_ns).min(1.0),
        }
    }
}

/// Shaded fault intervals with their names, over `top..top+height`.
fn fault_bands(
    out: &mut String,
    faults: &[FaultInterval],
    xs: &XScale,
    top: f64,
    height: f64,
    end_ns: u64,
) {
    let mut names: Vec<&str> = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let color_i = match names.iter().position(|n| *n == f.name) {
            Some(p) => p,
            None => {
                names.push(&f.name);
                names.len() - 1
            }
        };
        let x0 = xs.x(f.start_ns);
        let x1 = xs.x(f.end_ns.unwrap_or(end_ns)).max(x0 + 1.0);
        // Overlapping faults are stacked in label rows so their names stay readable.
        let label_y = top + 11.0 + (i % 3) as f64 * 11.0;
        let _ = write!(
            out,
            r##"<g class="fault"><rect x="{x0:.1}" y="{top:.1}" width="{w:.1}" height="{height:.1}" fill="{c}" opacity="0.55"><title>{t}</title></rect><text x="{tx:.1}" y="{label_y:.1}" font-size="10" fill="#6b2b2b">{n}</text></g>"##,
            w = x1 - x0,
            c = FAULT_COLORS[color_i % FAULT_COLORS.len()],
            t = esc(&format!(
                "{}: {} ({:.2}s - {})",
                f.name,
                f.description,
                f.start_ns as f64 / 1e9,
                f.end_ns
                    .map(|e| format!("{:.2}s", e as f64 / 1e9))
                    .unwrap_or_else(|| "end".into())
            )),
            tx = x0 + 2.0,
            n = esc(&f.name),
        );
    }
}

/// The axis of an ordinal scale: a few of its instants, labelled with their time in the run.
fn ordinal_axis(out: &mut String, xs: &XScale, points: &[u64], y: f64, offset_ns: u64) {
    let _ = write!(
        out,
        r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#555"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">(event order; times in ms)</text>"##,
        xs.left,
        xs.left + xs.width,
        xs.left + xs.width,
        y - 4.0
    );
    let every = points.len().div_ceil(8).max(1);
    for p in points.iter().step_by(every) {
        let x = xs.x(*p);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{:.1}" stroke="#555"/><text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle">{:.1}</text>"##,
            y + 4.0,
            y + 15.0,
            (p + offset_ns) as f64 / 1e6
        );
    }
}

/// An axis from 0 to `duration_ns`, labelled from `offset_ns` (for zoomed windows).
fn time_axis(out: &mut String, xs: &XScale, y: f64, duration_ns: u64, offset_ns: u64) {
    let secs = duration_ns as f64 / 1e9;
    let step = [
        0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
        5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
    ]
    .into_iter()
    .find(|s| secs / s <= 12.0)
    .unwrap_or(600.0);
    let label = |t: f64| {
        let at = t + offset_ns as f64 / 1e9;
        if step < 1.0 {
            format!("{:.1}ms", at * 1000.0)
        } else if offset_ns == 0 {
            format!("{at}s")
        } else {
            format!("{at:.1}s")
        }
    };
    let _ = write!(
        out,
        r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#555"/>"##,
        xs.left,
        xs.left + xs.width
    );
    let mut k = 0u32;
    loop {
        let t = f64::from(k) * step;
        if t > secs + 1e-12 {
            break;
        }
        let x = xs.x((t * 1e9) as u64);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{:.1}" stroke="#555"/><text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
            y + 4.0,
            y + 15.0,
            label(t)
        );
        k += 1;
    }
}

/// How the timeline marks one operation.
#[derive(Debug, Clone)]
struct Mark {
    /// Shown in the tooltip and, on the detailed timeline, in the bar.
    label: String,
    /// Cannot be linearized: red outline. Otherwise (part of the prefix): dark outline.
    failing: bool,
    /// Carries `id="failing-op"`, which the page scrolls into view when it opens (one per page).
    anchor: bool,
}

/// Timeline of every operation per process, with faults shaded. `marks` outlines operations
/// (by invoke index). `detailed` draws taller bars with each operation written in its bar,
/// for the few operations of a counterexample; `offset_ns` is where the window starts in
/// the run, for the axis labels.
fn timeline_svg(
    ops: &[PairedOp],
    faults: &[FaultInterval],
    duration_ns: u64,
    marks: &HashMap<u64, Mark>,
    detailed: bool,
    offset_ns: u64,
) -> String {
    let mut processes: Vec<u64> = ops.iter().map(|o| o.process).collect();
    processes.sort_unstable();
    processes.dedup();
    let lane_of: HashMap<u64, usize> = processes.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let lane_h = if detailed { 26.0 } else { 14.0 };
    let top = 36.0;
    let mut width = TIMELINE_WIDTH;
    let mut xs = XScale::linear(50.0, width - 60.0, duration_ns);
    if detailed {
        let mut points: Vec<u64> = ops
            .iter()
            .flat_map(|o| [o.start_ns, o.end_ns.unwrap_or(duration_ns)])
            .collect();
        points.sort_unstable();
        points.dedup();
        // About 100 px per instant, so even a one-step operation has room for its text (the
        // page scrolls sideways when the window holds many operations).
        width = f64::max(width, 60.0 + 100.0 * points.len() as f64);
        xs = XScale::linear(50.0, width - 60.0, duration_ns);
        xs.ordinal = Some(points);
    }
    let height = top + lane_h * processes.len().max(1) as f64 + 30.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="zoomable" width="{width}" height="{height:.0}" viewBox="0 0 {width} {height:.0}" font-family="sans-serif">"#
    );
    fault_bands(&mut out, faults, &xs, 0.0, height - 30.0, duration_ns);
    for (i, p) in processes.iter().enumerate() {
        let y = top + i as f64 * lane_h;
        let _ = write!(
            out,
            r##"<text x="45" y="{:.1}" font-size="10" text-anchor="end">p{p}</text><line x1="50" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#eee"/>"##,
            y + 10.0,
            y + lane_h / 2.0,
            width - 10.0,
            y + lane_h / 2.0
        );
    }
    for op in ops {
        let lane = lane_of[&op.process];
        let y = top + lane as f64 * lane_h + 2.0;
        let x0 = xs.x(op.start_ns);
        let x1 = xs.x(op.end_ns.unwrap_or(duration_ns)).max(x0 + 1.5);
        let mark = marks.get(&op.invoke_index);
        let (stroke, label) = match mark {
            Some(m) if m.failing => (
                format!(r#" stroke="{BAD_COLOR}" stroke-width="3""#),
                format!(" [{}]", m.label),
            ),
            Some(m) => (
                r##" stroke="#1f3a93" stroke-width="1.5""##.to_string(),
                format!(" [{}]", m.label),
            ),
            None => (String::new(), String::new()),
        };
        let id = if mark.is_some_and(|m| m.anchor) {
            r#" id="failing-op""#
        } else {
            ""
        };
        // Past a size, plain ok bars lose their tooltip to keep the page light.
        let title = if ops.len() <= DETAIL_LIMIT || mark.is_some() || op.outcome != EventType::Ok {
            format!(
                "<title>{}</title>",
                esc(&format!("{}{label}", describe(op)))
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            r#"<rect{id} x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}" opacity="{}"{stroke}>{title}</rect>"#,
            x1 - x0,
            lane_h - 4.0,
            outcome_color(op.outcome),
            if detailed && mark.is_none() {
                "0.45"
            } else {
                "1"
            },
        );
        if detailed {
            // A nested <svg> clips the text to its bar.
            let prefix = match mark {
                Some(m) if m.failing => "\u{2717} ".to_string(),
                Some(m) => format!("{} ", m.label.trim_start_matches("linearized ")),
                None => String::new(),
            };
            let _ = write!(
                out,
                r#"<svg x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}"><text x="0" y="{:.1}" font-size="10" fill="{}">{}</text></svg>"#,
                x0 + 2.0,
                (x1 - x0 - 3.0).max(0.0),
                lane_h - 4.0,
                lane_h - 9.0,
                if mark.is_some_and(|m| m.failing) {
                    r##"#fff" font-weight="bold"##
                } else {
                    "#000"
                },
                esc(&format!("{prefix}{}", short_op(op)))
            );
        }
    }
    match &xs.ordinal {
        Some(points) => ordinal_axis(&mut out, &xs, points, height - 28.0, offset_ns),
        None => time_axis(&mut out, &xs, height - 28.0, duration_ns, offset_ns),
    }
    out.push_str("</svg>");
    out
}

/// Latency of every operation against its start time, one dot per operation, colored by
/// outcome, on a log scale.
fn latency_svg(ops: &[PairedOp], faults: &[FaultInterval], duration_ns: u64) -> String {
    let width = 1100.0;
    let height = 300.0;
    let top = 10.0;
    let plot_h = height - 50.0;
    let xs = XScale::linear(60.0, width - 80.0, duration_ns);
    let lat_ms: Vec<f64> = ops
        .iter()
        .filter_map(|o| {
            o.end_ns
                .map(|e| (e.saturating_sub(o.start_ns)) as f64 / 1e6)
        })
        .collect();
    let max_ms = lat_ms.iter().cloned().fold(1.0_f64, f64::max);
    let min_ms = 0.1_f64;
    let decades_top = max_ms.log10().ceil().max(0.0);
    let y_of = |ms: f64| {
        let l = (ms.max(min_ms).log10() - min_ms.log10()) / (decades_top - min_ms.log10());
        top + plot_h * (1.0 - l)
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">"#
    );
    fault_bands(&mut out, faults, &xs, top, plot_h, duration_ns);
    let mut d = min_ms.log10() as i32;
    while d as f64 <= decades_top {
        let ms = 10f64.powi(d);
        let y = y_of(ms);
        let label = if ms >= 1000.0 {
            format!("{}s", ms / 1000.0)
        } else {
            format!("{ms}ms")
        };
        let _ = write!(
            out,
            r##"<line x1="60" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="55" y="{:.1}" font-size="10" text-anchor="end">{label}</text>"##,
            width - 20.0,
            y + 3.0
        );
        d += 1;
    }
    // Past a size, draw every `stride`-th ok operation (all fail and info ones).
    let stride = ops.len().div_ceil(DETAIL_LIMIT).max(1);
    for (i, op) in ops.iter().enumerate() {
        let Some(end) = op.end_ns else { continue };
        if op.outcome == EventType::Ok && i % stride != 0 {
            continue;
        }
        let ms = (end.saturating_sub(op.start_ns)) as f64 / 1e6;
        let _ = write!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.8" fill="{}" opacity="0.7"/>"#,
            xs.x(op.start_ns),
            y_of(ms),
            outcome_color(op.outcome)
        );
    }
    time_axis(&mut out, &xs, top + plot_h + 2.0, duration_ns, 0);
    legend(&mut out, width - 220.0, height - 8.0);
    out.push_str("</svg>");
    out
}

fn legend(out: &mut String, x: f64, y: f64) {
    for (i, (name, color)) in [("ok", OK_COLOR), ("fail", FAIL_COLOR), ("info", INFO_COLOR)]
        .iter()
        .enumerate()
    {
        let lx = x + i as f64 * 60.0;
        let _ = write!(
            out,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{y:.1}" font-size="11">{name}</text>"#,
            y - 9.0,
            lx + 14.0
        );
    }
}

/// Completed operations per second over time, one line per outcome.
fn throughput_svg(ops: &[PairedOp], faults: &[FaultInterval], duration_ns: u64) -> String {
    let width = 1100.0;
    let height = 240.0;
    let top = 10.0;
    let plot_h = height - 50.0;
    let xs = XScale::linear(60.0, width - 80.0, duration_ns);
    let bucket_ns: u64 = if duration_ns > 120_000_000_000 {
        2_000_000_000
    } else if duration_ns > 20_000_000_000 {
        1_000_000_000
    } else {
        500_000_000
    };
    let buckets = (duration_ns / bucket_ns + 1) as usize;
    let mut counts = vec![[0u64; 3]; buckets];
    for op in ops {
        let Some(end) = op.end_ns else { continue };
        let b = ((end / bucket_ns) as usize).min(buckets - 1);
        let slot = match op.outcome {
            EventType::Ok => 0,
            EventType::Fail => 1,
            _ => 2,
        };
        counts[b][slot] += 1;
    }
    let per_sec = |c: u64| c as f64 * 1e9 / bucket_ns as f64;
    let max_rate = counts
        .iter()
        .flat_map(|c| c.iter().map(|&v| per_sec(v)))
        .fold(1.0_f64, f64::max);
    let y_of = |r: f64| top + plot_h * (1.0 - r / max_rate);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">"#
    );
    fault_bands(&mut out, faults, &xs, top, plot_h, duration_ns);
    for frac in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let r = max_rate * frac;
        let y = y_of(r);
        let _ = write!(
            out,
            r##"<line x1="60" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="55" y="{:.1}" font-size="10" text-anchor="end">{r:.0}/s</text>"##,
            width - 20.0,
            y + 3.0
        );
    }
    for (slot, color) in [OK_COLOR, FAIL_COLOR, INFO_COLOR].iter().enumerate() {
        let points: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mid = i as u64 * bucket_ns + bucket_ns / 2;
                format!(
                    "{:.1},{:.1}",
                    xs.x(mid.min(duration_ns)),
                    y_of(per_sec(c[slot]))
                )
            })
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"#,
            points.join(" ")
        );
    }
    time_axis(&mut out, &xs, top + plot_h + 2.0, duration_ns, 0);
    legend(&mut out, width - 220.0, height - 8.0);
    out.push_str("</svg>");
    out
}

/// The counterexample: the key's operations on their own timeline, the linearizable prefix
/// numbered in linearization order, the impossible operations in red, and the model state.
fn counterexample_html(
    cx: &CounterexampleView,
    ops: &[PairedOp],
    faults: &[FaultInterval],
    samples: &[NodeSample],
    duration_ns: u64,
) -> String {
    let mut html = String::new();
    let key_ops = key_ops_of(cx, ops);
    let mut marks: HashMap<u64, Mark> = HashMap::new();
    for (i, idx) in cx.prefix.iter().enumerate() {
        marks.insert(
            *idx,
            Mark {
                label: format!("linearized #{}", i + 1),
                failing: false,
                anchor: false,
            },
        );
    }
    for (i, idx) in cx.failing.iter().enumerate() {
        marks.insert(
            *idx,
            Mark {
                label: "CANNOT BE LINEARIZED".to_string(),
                failing: true,
                anchor: i == 0,
            },
        );
    }
    let failing_ops: Vec<&PairedOp> = key_ops
        .iter()
        .filter(|o| cx.failing.contains(&o.invoke_index))
        .collect();
    let (lo, hi) = window_of(cx, &key_ops, duration_ns);
    let in_window: Vec<&PairedOp> = key_ops
        .iter()
        .filter(|o| o.end_ns.unwrap_or(duration_ns) >= lo && o.start_ns <= hi)
        .collect();
    let window: Vec<PairedOp> = in_window
        .iter()
        .map(|o| {
            let mut o = (*o).clone();
            // Operations that began before the window are drawn from its left edge.
            o.start_ns = o.start_ns.saturating_sub(lo);
            o.end_ns = o.end_ns.map(|e| e.min(hi).saturating_sub(lo));
            o
        })
        .collect();
    let window_faults: Vec<FaultInterval> = faults
        .iter()
        .filter(|f| f.end_ns.unwrap_or(duration_ns) >= lo && f.start_ns <= hi)
        .map(|f| FaultInterval {
            start_ns: f.start_ns.saturating_sub(lo),
            end_ns: Some(f.end_ns.unwrap_or(duration_ns).min(hi).saturating_sub(lo)),
            ..f.clone()
        })
        .collect();
    let _ = write!(
        html,
        "<p>Key <b>{}</b>: the window {:.3}s - {:.3}s of the run. Red outline: operations that cannot be linearized after the prefix; hover any bar for details.</p>",
        esc(cx.key.as_deref().unwrap_or("(single register)")),
        lo as f64 / 1e9,
        hi as f64 / 1e9
    );
    if let Some(first) = failing_ops.first() {
        let _ = write!(
            html,
            r#"<p class="what">{}</p>"#,
            esc(&cluster::sentence(first, &key_ops, samples))
        );
    }
    html.push_str(r#"<div class="svgbox" id="cx-box">"#);
    html.push_str(&timeline_svg(
        &window,
        &window_faults,
        hi.saturating_sub(lo),
        &marks,
        true,
        lo,
    ));
    html.push_str("</div>");
    html.push_str(&served_table(&in_window, &marks, samples));
    let _ = write!(
        html,
        "<h3>Model state after the linearizable prefix</h3><pre>{}</pre>",
        esc(&cx.state)
    );
    html.push_str("<h3>Operations that cannot be linearized</h3><ul>");
    for o in &failing_ops {
        let _ = write!(html, r#"<li class="bad">{}</li>"#, esc(&describe(o)));
    }
    html.push_str("</ul><h3>Linearizable prefix (last 20, in order)</h3><ol>");
    let by_index: HashMap<u64, &PairedOp> = key_ops.iter().map(|o| (o.invoke_index, o)).collect();
    let skip = cx.prefix.len().saturating_sub(20);
    for idx in cx.prefix.iter().skip(skip) {
        if let Some(o) = by_index.get(idx) {
            let _ = write!(html, "<li>{}</li>", esc(&describe(o)));
        }
    }
    html.push_str("</ol>");
    if !cx.explanation.is_empty() {
        let _ = write!(
            html,
            "<details><summary>The checker's explanation</summary><pre>{}</pre></details>",
            esc(&cx.explanation)
        );
    }
    html
}

/// Each node's log lines in the counterexample's window, a box per node (time in seconds on
/// the history's clock before each line).
fn window_logs_html(logs: &[NodeLogLines]) -> String {
    if logs.iter().all(|l| l.lines.is_empty()) {
        return String::new();
    }
    let mut html = String::from(
        "<h3>Node logs in this window</h3><p>Each node's log from half a second before the window to half a second after it.</p>",
    );
    for log in logs.iter().filter(|l| !l.lines.is_empty()) {
        let _ = write!(
            html,
            r#"<details open class="nodelog"><summary>{} ({} lines{})</summary><pre>"#,
            esc(&log.node),
            log.lines.len(),
            if log.dropped > 0 {
                format!(", {} earlier ones left out", log.dropped)
            } else {
                String::new()
            }
        );
        for (at, line) in &log.lines {
            let _ = writeln!(html, "{:>8.3}s  {}", *at as f64 / 1e9, esc(line));
        }
        html.push_str("</pre></details>");
    }
    html
}

/// The counterexample key's operations (without nemesis events).
fn key_ops_of(cx: &CounterexampleView, ops: &[PairedOp]) -> Vec<PairedOp> {
    ops.iter()
        .filter(|o| o.key == cx.key && o.f != "nemesis")
        .cloned()
        .collect()
}

/// The part of the run the counterexample zooms on: its failing operations and the last few
/// operations of the linearizable prefix, in nanoseconds since the history's origin.
pub fn counterexample_window(
    cx: &CounterexampleView,
    ops: &[PairedOp],
    duration_ns: u64,
) -> (u64, u64) {
    window_of(cx, &key_ops_of(cx, ops), duration_ns)
}

fn window_of(cx: &CounterexampleView, key_ops: &[PairedOp], duration_ns: u64) -> (u64, u64) {
    let mut lo = u64::MAX;
    let mut hi = 0;
    let last_of_prefix =
        |o: &&PairedOp| cx.prefix.iter().rev().take(6).any(|i| *i == o.invoke_index);
    for o in key_ops
        .iter()
        .filter(|o| cx.failing.contains(&o.invoke_index) || last_of_prefix(o))
    {
        lo = lo.min(o.start_ns);
        hi = hi.max(o.end_ns.unwrap_or(duration_ns));
    }
    if lo == u64::MAX {
        (0, duration_ns)
    } else {
        (lo, hi.min(duration_ns))
    }
}

/// Each operation of the counterexample's window: the node that served it, the term it
/// answered with, and whether it led in that term then (from `cluster.jsonl`).
fn served_table(
    in_window: &[&PairedOp],
    marks: &HashMap<u64, Mark>,
    samples: &[NodeSample],
) -> String {
    let mut html = String::from(
        "<div class=\"svgbox\"><table class=\"served\"><tr><th>at (s)</th><th>operation</th><th>mark</th><th>served by</th><th>term</th><th>leader then?</th></tr>",
    );
    for &o in in_window {
        let mark = marks.get(&o.invoke_index);
        let (node, term, led) = match &o.served {
            Some(s) => {
                let led = match cluster::role_when_served(samples, o).as_deref() {
                    Some("leader") => "yes".to_string(),
                    Some(r) => format!("no ({r})"),
                    None => "?".to_string(),
                };
                (
                    format!("n{}", s.node),
                    s.term.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                    led,
                )
            }
            None => ("-".into(), "-".into(), "-".into()),
        };
        let class = if mark.is_some_and(|m| m.failing) {
            r#" class="bad""#
        } else {
            ""
        };
        let _ = write!(
            html,
            "<tr{class}><td>{:.3}</td><td>{}</td><td>{}</td><td>{node}</td><td>{term}</td><td>{}</td></tr>",
            o.start_ns as f64 / 1e9,
            esc(&describe(o)),
            esc(mark.map(|m| m.label.as_str()).unwrap_or_default()),
            esc(&led)
        );
    }
    html.push_str("</table></div>");
    html
}

/// Scrolls the failing operation into view inside its box, and zooms the operations' timeline
/// (the lanes with it) by scaling every `svg.zoomable` in `#timeline`.
const PAGE_SCRIPT: &str = r#"<script>
(function(){
var f=document.getElementById('failing-op');
if(f){f.scrollIntoView({block:'center',inline:'center'});}
var z=document.getElementById('zoom');
if(z){z.addEventListener('input',function(){
var k=Number(z.value);
document.querySelectorAll('#timeline svg.zoomable').forEach(function(s){
if(!s.dataset.w){s.dataset.w=s.getAttribute('width');s.dataset.h=s.getAttribute('height');}
s.setAttribute('width',String(Number(s.dataset.w)*k));
s.setAttribute('height',String(Number(s.dataset.h)));
s.setAttribute('preserveAspectRatio','none');
});});}
})();
</script>"#;

/// Renders the whole page.
pub fn render(input: &ReportInput<'_>) -> String {
    let ops = input.ops;
    let duration_ns = input
        .duration_ns
        .max(input.events.last().map(|e| e.time).unwrap_or(0))
        .max(1);
    let verdict_class = match input.verdict.as_str() {
        "linearizable" => "good",
        "not linearizable" | "replicas diverged" | "run failed" => "bad",
        _ => "unknown",
    };
    let count = |k: EventType| ops.iter().filter(|o| o.outcome == k).count();
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>
body{{font-family:sans-serif;margin:20px;color:#222;max-width:1160px;overflow-wrap:anywhere}}
h1{{font-size:20px}} h2{{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}}
.verdict{{font-size:22px;font-weight:bold;padding:8px 12px;display:inline-block;border-radius:4px}}
.good{{background:#d9f2e1;color:#1d6b38}} .bad{{background:#f9d6da;color:#8c1020}} .unknown{{background:#fbecd0;color:#7a4c00}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}}
li.bad{{color:#8c1020;font-weight:bold}} pre{{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}}
.svgbox{{overflow-x:auto}}
</style></head><body><h1>{title}</h1><div class="verdict {verdict_class}">{verdict}</div>"#,
        title = esc(&input.title),
        verdict = esc(&input.verdict),
    );
    if !input.reasons.is_empty() {
        html.push_str("<ul>");
        for r in &input.reasons {
            let _ = write!(html, "<li>{}</li>", esc(r));
        }
        html.push_str("</ul>");
    }
    let _ = write!(
        html,
        "<p>{} operations: {} ok, {} fail, {} info; {} faults injected.</p>",
        ops.len(),
        count(EventType::Ok),
        count(EventType::Fail),
        ops.len() - count(EventType::Ok) - count(EventType::Fail),
        input.faults.len()
    );
    if let Some(m) = input.minimal {
        html.push_str(&minimal::section(m, input.faults, duration_ns));
    }
    html.push_str("<h2>Parameters</h2><table>");
    for (k, v) in &input.parameters {
        let _ = write!(html, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    html.push_str("</table>");

    if !input.node_problems.is_empty() {
        html.push_str("<h2>Node problems</h2>");
        for p in input.node_problems {
            let _ = write!(
                html,
                "<h3>n{}: {}</h3><pre>{}</pre>",
                p.node,
                esc(&p.what),
                esc(&p.last_log_lines.join("\n"))
            );
        }
    }

    let mut highlight: HashMap<u64, Mark> = HashMap::new();
    if let Some(cx) = input.counterexample {
        html.push_str("<h2>Counterexample</h2>");
        html.push_str(&counterexample_html(
            cx,
            ops,
            input.faults,
            input.cluster,
            duration_ns,
        ));
        html.push_str(&window_logs_html(input.window_logs));
        for idx in &cx.failing {
            highlight.insert(
                *idx,
                Mark {
                    label: "cannot be linearized".into(),
                    failing: true,
                    anchor: false,
                },
            );
        }
    }

    html.push_str("<h2>Operations per process</h2><p>One bar per operation from invoke to completion: <span style=\"color:#3a9d5d\">ok</span>, <span style=\"color:#9aa3ad\">fail</span>, <span style=\"color:#e69b2e\">info</span> (unknown; the process is then retired). Shaded bands are faults. Hover for details. Zoom: <input type=\"range\" id=\"zoom\" min=\"1\" max=\"20\" step=\"0.5\" value=\"1\"></p>");
    if !input.cluster.is_empty() {
        html.push_str(cluster::LANES_LEGEND);
    }
    html.push_str("<div class=\"svgbox\" id=\"timeline\">");
    html.push_str(&cluster::lanes_svg(
        input.cluster,
        input.faults,
        duration_ns,
        TIMELINE_WIDTH,
    ));
    html.push_str(&timeline_svg(
        ops,
        input.faults,
        duration_ns,
        &highlight,
        false,
        0,
    ));
    html.push_str("</div><h2>Latency</h2><div class=\"svgbox\">");
    html.push_str(&latency_svg(ops, input.faults, duration_ns));
    html.push_str("</div><h2>Throughput</h2><div class=\"svgbox\">");
    html.push_str(&throughput_svg(ops, input.faults, duration_ns));
    html.push_str("</div><h2>Checker</h2>");
    if input.partitions.is_empty() {
        html.push_str("<p>No checker result.</p>");
    } else {
        html.push_str(
            "<table><tr><th>key</th><th>verdict</th><th>operations</th><th>search time</th></tr>",
        );
        for (key, verdict, ops, ms) in &input.partitions {
            let class = match verdict.as_str() {
                "linearizable" => "good",
                "unknown" => "unknown",
                _ => "bad",
            };
            let _ = write!(
                html,
                r#"<tr><td>{}</td><td class="{class}">{}</td><td>{ops}</td><td>{ms:.1} ms</td></tr>"#,
                esc(if key.is_empty() {
                    "(single register)"
                } else {
                    key
                }),
                esc(verdict)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>Faults</h2>");
    if input.faults.is_empty() {
        html.push_str("<p>None.</p>");
    } else {
        html.push_str("<table><tr><th>fault</th><th>target</th><th>start</th><th>end</th></tr>");
        for f in input.faults {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{:.2}s</td><td>{}</td></tr>",
                esc(&f.name),
                esc(&f.description),
                f.start_ns as f64 / 1e9,
                f.end_ns
                    .map(|e| format!("{:.2}s", e as f64 / 1e9))
                    .unwrap_or_else(|| "still active at the end".into())
            );
        }
        html.push_str("</table>");
    }
    html.push_str("<p>Raw files: <a href=\"history.jsonl\">history.jsonl</a>, <a href=\"results.json\">results.json</a>, <a href=\"config.json\">config.json</a>, <a href=\"schedule.json\">schedule.json</a>, node logs in <a href=\"nodes/\">nodes/</a>.</p>");
    html.push_str(PAGE_SCRIPT);
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_checker::history::Process;

    fn ev(
        index: u64,
        time: u64,
        p: u64,
        kind: EventType,
        f: &str,
        value: serde_json::Value,
    ) -> Event {
        Event {
            index,
            time,
            process: Process::Client(p),
            kind,
            f: f.into(),
            key: Some("k1".into()),
            value,
            error: None,
        }
    }

    fn history() -> Vec<Event> {
        vec![
            ev(0, 10, 0, EventType::Invoke, "write", "p0-1".into()),
            ev(1, 20, 1, EventType::Invoke, "read", serde_json::Value::Null),
            ev(2, 30_000_000, 0, EventType::Ok, "write", "p0-1".into()),
            ev(3, 40_000_000, 1, EventType::Ok, "read", "p9-9".into()),
            ev(
                4,
                50_000_000,
                2,
                EventType::Invoke,
                "write",
                "<script>".into(),
            ),
        ]
    }

    #[test]
    fn pairs_invokes_with_completions_and_open_ops_are_info() {
        let ops = crate::run::ops::pair_ops(&history());
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].outcome, EventType::Ok);
        assert_eq!(ops[1].result_value, serde_json::json!("p9-9"));
        assert_eq!(ops[2].outcome, EventType::Info);
        assert_eq!(ops[2].end_ns, None);
    }

    #[test]
    fn report_is_self_contained_escaped_and_draws_faults_and_counterexample() {
        let events = history();
        let faults = vec![FaultInterval {
            name: "partition-halves".into(),
            description: "halves [n1] [n2 n3]".into(),
            start_ns: 5_000_000,
            end_ns: Some(35_000_000),
            steps: Vec::new(),
        }];
        let cx = CounterexampleView {
            key: Some("k1".into()),
            prefix: vec![0],
            failing: vec![1],
            state: "p0-1".into(),
            explanation: "read saw p9-9".into(),
            first_violation_ns: None,
        };
        let html = render(&ReportInput {
            title: "kv run".into(),
            verdict: "not linearizable".into(),
            reasons: vec!["key k1".into()],
            parameters: vec![("seed".into(), "42".into())],
            events: &events,
            ops: &crate::run::ops::pair_ops(&events),
            faults: &faults,
            counterexample: Some(&cx),
            node_problems: &[],
            cluster: &[],
            window_logs: &[],
            minimal: None,
            partitions: vec![("k1".into(), "not linearizable".into(), 2, 0.1)],
            duration_ns: 60_000_000,
        });
        assert!(html.contains("partition-halves"));
        assert!(html.contains("CANNOT BE LINEARIZED"));
        assert!(html.contains("&lt;script&gt;"));
        // The page's own script is the only one.
        assert_eq!(html.matches("<script>").count(), 1);
        assert!(html.contains(PAGE_SCRIPT));
        // No external resources: every URL is the SVG namespace.
        for (i, _) in html.match_indices("http") {
            assert!(
                html[i..].starts_with("http://www.w3.org/2000/svg"),
                "external reference at {i}"
            );
        }
        assert!(html.matches("<svg").count() >= 4);
    }

    fn served(node: u64, term: u64) -> crate::system::Served {
        crate::system::Served {
            node,
            term: Some(term),
            ..Default::default()
        }
    }

    /// p9 writes p9-178, p8 writes p8-183 (both via n3, the leader of term 3), then p9 reads
    /// p9-178 from n2, a follower, 195 ms after the second write was acknowledged; `filler`
    /// reads by p7 in between (of p8-183) widen the counterexample.
    fn stale_read_run(filler: u64) -> (Vec<Event>, Vec<PairedOp>, CounterexampleView) {
        let ms = 1_000_000;
        let mut events = vec![
            ev(0, 0, 9, EventType::Invoke, "write", "p9-178".into()),
            ev(1, 10 * ms, 9, EventType::Ok, "write", "p9-178".into()),
            ev(2, 20 * ms, 8, EventType::Invoke, "write", "p8-183".into()),
            ev(3, 160 * ms, 8, EventType::Ok, "write", "p8-183".into()),
            ev(
                4,
                355 * ms,
                9,
                EventType::Invoke,
                "read",
                serde_json::Value::Null,
            ),
            ev(5, 360 * ms, 9, EventType::Ok, "read", "p9-178".into()),
        ];
        for k in 0..filler {
            let (i, t) = (6 + 2 * k, (170 + 10 * k) * ms);
            events.push(ev(
                i,
                t,
                7,
                EventType::Invoke,
                "read",
                serde_json::Value::Null,
            ));
            events.push(ev(
                i + 1,
                t + 5 * ms,
                7,
                EventType::Ok,
                "read",
                "p8-183".into(),
            ));
        }
        let mut ops = crate::run::ops::pair_ops(&events);
        for o in &mut ops {
            o.served = Some(if o.f == "read" {
                served(2, 3)
            } else {
                served(3, 3)
            });
        }
        let cx = CounterexampleView {
            key: Some("k1".into()),
            prefix: vec![0, 2],
            failing: vec![4],
            state: "p8-183".into(),
            explanation: "read saw p9-178".into(),
            first_violation_ns: None,
        };
        (events, ops, cx)
    }

    /// n1 leads term 2 then goes down; n2 follows and becomes leader of term 3; n3 follows.
    fn synthetic_cluster() -> Vec<NodeSample> {
        let text = [
            r#"{"time":0,"node":"n1","answered":true,"role":"leader","term":2}"#,
            r#"{"time":0,"node":"n2","answered":true,"role":"follower","term":2}"#,
            r#"{"time":0,"node":"n3","answered":true,"role":"follower","term":2}"#,
            r#"{"time":100000000,"node":"n1","answered":false}"#,
            r#"{"time":100000000,"node":"n2","answered":true,"role":"candidate","term":3}"#,
            r#"{"time":150000000,"node":"n2","answered":true,"role":"follower","term":3}"#,
            r#"{"time":150000000,"node":"n3","answered":true,"role":"leader","term":3}"#,
            "not json",
        ]
        .join("\n");
        parse_samples(&text)
    }

    fn render_stale_read(cluster: &[NodeSample], filler: u64) -> String {
        let (events, ops, cx) = stale_read_run(filler);
        let faults = vec![FaultInterval {
            name: "pause-one".into(),
            description: "pause n1".into(),
            start_ns: 90_000_000,
            end_ns: Some(140_000_000),
            steps: Vec::new(),
        }];
        let logs = vec![NodeLogLines {
            node: "n2".into(),
            lines: vec![(
                350_000_000,
                "2026-12-03T09:22:27.350Z INFO riptide_server::node: follower term=3 <b>".into(),
            )],
            dropped: 0,
        }];
        render(&ReportInput {
            title: "kv run".into(),
            verdict: "not linearizable".into(),
            reasons: Vec::new(),
            parameters: Vec::new(),
            events: &events,
            ops: &ops,
            faults: &faults,
            counterexample: Some(&cx),
            node_problems: &[],
            cluster,
            window_logs: &logs,
            minimal: None,
            partitions: Vec::new(),
            duration_ns: 500_000_000,
        })
    }

    #[test]
    fn node_lanes_show_each_nodes_roles_and_pauses_from_cluster_samples() {
        let cluster = synthetic_cluster();
        assert_eq!(cluster.len(), 7, "the bad line is skipped");
        let html = render_stale_read(&cluster, 0);
        let lanes_at = html.find(r#"class="lanes zoomable""#).expect("lanes drawn");
        let ops_at = html[lanes_at..].find("<svg").map(|i| i + lanes_at);
        assert!(
            ops_at.is_some(),
            "the operations' timeline follows the lanes"
        );
        let lanes = &html[lanes_at..html[lanes_at..].find("</svg>").unwrap() + lanes_at];
        for expected in [
            "n1 leader term 2",
            "n1 down",
            "n2 follower term 2",
            "n2 candidate term 3",
            "n2 follower term 3",
            "n3 leader term 3",
            "n1 paused (pause-one: pause n1)",
        ] {
            assert!(lanes.contains(expected), "lanes lack {expected:?}");
        }
        assert!(!lanes.contains("n2 paused"));
        assert!(!lanes.contains("n2 leader"));
    }

    #[test]
    fn node_log_lines_of_the_window_sit_under_the_counterexample() {
        let html = render_stale_read(&synthetic_cluster(), 0);
        let cx_at = html
            .find("<h2>Counterexample</h2>")
            .expect("counterexample");
        let ops_at = html
            .find("<h2>Operations per process</h2>")
            .expect("timeline");
        let log_at = html
            .find("riptide_server::node: follower term=3 &lt;b&gt;")
            .expect("the log line, escaped");
        assert!(cx_at < log_at && log_at < ops_at);
        assert!(html[cx_at..log_at].contains("<summary>n2 (1 lines)</summary>"));
        assert!(html[cx_at..log_at].contains("   0.350s  "));
    }

    #[test]
    fn report_without_cluster_samples_draws_no_lanes() {
        assert!(read_samples(std::path::Path::new("/nonexistent/cluster.jsonl")).is_empty());
        let html = render_stale_read(&[], 0);
        assert!(!html.contains("class=\"lanes"));
        assert!(html.contains("CANNOT BE LINEARIZED"));
    }

    #[test]
    fn counterexample_says_who_served_the_stale_read_and_which_write_it_missed() {
        let html = render_stale_read(&synthetic_cluster(), 0);
        assert!(html.contains(
            "p9 read p9-178 from n2, a follower in term 3, 195 ms after n3 had acknowledged p8-183."
        ));
        // The table: the read was served by n2 in term 3, not a leader; p8-183 by n3, the
        // leader of term 3 by then; p9-178 by n3 before any sample of term 3 (unknown).
        let table = &html[html.find(r#"<table class="served">"#).unwrap()..];
        let row = |needle: &str| {
            let at = table.find(needle).unwrap();
            &table[at..at + table[at..].find("</tr>").unwrap()]
        };
        assert!(row("p9 read k1 -&gt; ok p9-178")
            .contains("<td>n2</td><td>3</td><td>no (follower)</td>"));
        assert!(row("p8 write k1 p8-183").contains("<td>n3</td><td>3</td><td>yes</td>"));
        assert!(row("p9 write k1 p9-178").contains("<td>n3</td><td>3</td><td>?</td>"));
    }

    #[test]
    fn failing_op_is_anchored_and_nothing_wider_than_1280px_sits_outside_a_scroll_box() {
        let html = render_stale_read(&synthetic_cluster(), 12);
        assert_eq!(html.matches(r#"id="failing-op""#).count(), 1);
        assert!(html.contains("scrollIntoView"));
        assert!(html.contains(r#"id="zoom""#));
        let body = &html[html.find("body{").unwrap()..];
        let max: u32 = body[body.find("max-width:").unwrap() + 10..]
            .split("px")
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(max <= 1280);
        let mut wide = 0;
        for (i, _) in html.match_indices("<svg xmlns") {
            let tag = &html[i..i + html[i..].find('>').unwrap()];
            let w: f64 = tag[tag.find(" width=\"").unwrap() + 8..]
                .split('"')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap();
            if w > 1280.0 {
                wide += 1;
                let div = html[..i].rfind("<div").unwrap();
                assert!(
                    html[div..].starts_with(r#"<div class="svgbox""#)
                        && !html[div..i].contains("</div>"),
                    "an svg {w} px wide outside a scroll box"
                );
            }
        }
        assert!(
            wide >= 1,
            "the test draws a counterexample wider than the window"
        );
    }
}
