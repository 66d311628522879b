//! A self-contained HTML page (no network, no scripts needed) drawing a checked history in the
//! spirit of Porcupine's visualization: per partition, one row per process along time, each
//! operation a bar from invoke to completion (unknown outcomes run to the end, hatched), the
//! linearization order numbered on the bars, the operation that cannot be linearized in red, the
//! other candidates outlined, and every detail in the bar's hover text.
//!
//! Time is drawn as event order (every invoke and completion one step apart), which keeps
//! concurrency exact and short operations visible. Operations are assigned to partitions by key,
//! as the built-in models partition.

use crate::check::{CheckResult, PartitionResult, Verdict};
use crate::history::{Completion, History, Operation};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

/// Operations drawn per partition at most; longer partitions show a window (around the failure
/// for a failing one, the start otherwise).
const MAX_DRAWN: usize = 1500;
/// Linearizable or unknown partitions drawn at most (failing ones are always drawn).
const MAX_OTHER_PARTITIONS: usize = 20;

/// Renders a history and its check result as a self-contained HTML page.
pub fn render_html(history: &History, result: &CheckResult) -> String {
    let mut by_partition: HashMap<&str, Vec<&Operation>> = HashMap::new();
    for op in &history.operations {
        by_partition
            .entry(op.key.as_deref().unwrap_or(""))
            .or_default()
            .push(op);
    }
    let mut page = String::with_capacity(64 * 1024);
    page.push_str(HEAD);
    let _ = write!(
        page,
        "<h1>Linearizability check: <span class=\"v-{}\">{}</span></h1>\n<p>model <b>{}</b>, {} operations, {} partitions, checked in {:.1} ms.</p>\n",
        verdict_class(result.verdict),
        result.verdict,
        esc(&result.model),
        result.operations,
        result.partitions.len(),
        result.elapsed_ms
    );
    page.push_str("<table class=\"summary\"><tr><th>partition</th><th>verdict</th><th>operations</th><th>ms</th></tr>\n");
    for p in &result.partitions {
        let _ = writeln!(
            page,
            "<tr><td><a href=\"#p-{}\">{}</a></td><td class=\"v-{}\">{}{}</td><td>{}</td><td>{:.1}</td></tr>",
            anchor(&p.partition),
            esc(display_name(&p.partition)),
            verdict_class(p.verdict),
            p.verdict,
            p.reason.as_deref().map(|r| format!(" ({})", esc(r))).unwrap_or_default(),
            p.operations,
            p.elapsed_ms
        );
    }
    page.push_str("</table>\n");
    page.push_str(LEGEND);
    let mut others = 0;
    for p in result
        .partitions
        .iter()
        .filter(|p| p.verdict == Verdict::NotLinearizable)
    {
        partition_section(
            &mut page,
            p,
            by_partition
                .get(p.partition.as_str())
                .map_or(&[][..], |v| v),
            true,
        );
    }
    for p in result
        .partitions
        .iter()
        .filter(|p| p.verdict != Verdict::NotLinearizable)
    {
        if others == MAX_OTHER_PARTITIONS {
            let _ = writeln!(
                page,
                "<p>… {} more partitions not drawn.</p>",
                result.partitions.len() - others
            );
            break;
        }
        others += 1;
        partition_section(
            &mut page,
            p,
            by_partition
                .get(p.partition.as_str())
                .map_or(&[][..], |v| v),
            false,
        );
    }
    page.push_str("</body></html>\n");
    page
}

fn partition_section(page: &mut String, p: &PartitionResult, ops: &[&Operation], open: bool) {
    let _ = writeln!(
        page,
        "<details id=\"p-{}\"{}><summary>partition <b>{}</b>: <span class=\"v-{}\">{}</span>, {} operations</summary>",
        anchor(&p.partition),
        if open { " open" } else { "" },
        esc(display_name(&p.partition)),
        verdict_class(p.verdict),
        p.verdict,
        ops.len()
    );
    let order: HashMap<usize, usize> = p
        .linearization
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i + 1))
        .collect();
    let blocked = p
        .counterexample
        .as_ref()
        .and_then(|c| c.blocked_by.as_ref())
        .map(|o| o.id);
    let candidates: BTreeSet<usize> = p
        .counterexample
        .as_ref()
        .map(|c| c.candidates.iter().map(|c| c.op.id).collect())
        .unwrap_or_default();
    if let Some(c) = &p.counterexample {
        page.push_str("<div class=\"cex\"><h3>Counterexample</h3>");
        let _ = write!(
            page,
            "<p>The longest linearizable prefix has {} operations; it ends with:</p><ol start=\"{}\">",
            c.prefix.len(),
            c.prefix.len() - c.prefix_tail.len() + 1
        );
        for o in &c.prefix_tail {
            let _ = write!(page, "<li>{}</li>", esc(&summary(o)));
        }
        let _ = write!(
            page,
            "</ol><p>State after it: <code>{}</code></p>",
            esc(&c.states.join(" | "))
        );
        if let Some(b) = &c.blocked_by {
            let _ = write!(
                page,
                "<p class=\"blocked\">Cannot be linearized next: <b>{}</b> had completed by then, and no order of the operations concurrent with it works.</p>",
                esc(&summary(b))
            );
        }
        page.push_str("<p>Operations that could have come next:</p><ul>");
        for cand in &c.candidates {
            let _ = write!(
                page,
                "<li>{}: {}</li>",
                esc(&summary(&cand.op)),
                if cand.model_accepts {
                    "the model accepts it, but every continuation fails"
                } else {
                    "the model rejects it in this state"
                }
            );
        }
        page.push_str("</ul></div>\n");
    }
    let drawn = window(ops, p, blocked);
    if drawn.len() < ops.len() {
        let _ = writeln!(
            page,
            "<p class=\"note\">Showing {} of {} operations.</p>",
            drawn.len(),
            ops.len()
        );
    }
    timeline(page, &drawn, &order, blocked, &candidates);
    page.push_str("</details>\n");
}

/// The operations to draw: all, or a window of at most `MAX_DRAWN`.
fn window<'a>(
    ops: &[&'a Operation],
    p: &PartitionResult,
    blocked: Option<usize>,
) -> Vec<&'a Operation> {
    if ops.len() <= MAX_DRAWN {
        return ops.to_vec();
    }
    let focus = blocked
        .or_else(|| {
            p.counterexample
                .as_ref()
                .and_then(|c| c.prefix.last().copied())
        })
        .and_then(|id| ops.iter().position(|o| o.id == id))
        .unwrap_or(0);
    let start = focus.saturating_sub(MAX_DRAWN * 3 / 4);
    ops[start..(start + MAX_DRAWN).min(ops.len())].to_vec()
}

fn timeline(
    page: &mut String,
    ops: &[&Operation],
    order: &HashMap<usize, usize>,
    blocked: Option<usize>,
    candidates: &BTreeSet<usize>,
) {
    // Compress event positions to consecutive steps.
    let mut seqs: Vec<u64> = ops
        .iter()
        .flat_map(|o| std::iter::once(o.invoke_seq).chain(o.complete_seq))
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    let step = |seq: u64| seqs.partition_point(|&s| s < seq) as f64;
    let processes: Vec<u64> = ops
        .iter()
        .map(|o| o.process)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (dx, row, left) = (16.0, 24.0, 60.0);
    let end = seqs.len() as f64;
    let width = left + (end + 2.0) * dx;
    let height = 10.0 + processes.len() as f64 * row + 10.0;
    let _ = writeln!(
        page,
        "<div class=\"tl\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\">"
    );
    for (i, p) in processes.iter().enumerate() {
        let y = 10.0 + i as f64 * row;
        let _ = writeln!(
            page,
            "<text x=\"4\" y=\"{:.0}\" class=\"proc\">p{p}</text>",
            y + 15.0
        );
    }
    for op in ops {
        let Some(row_i) = processes.iter().position(|&p| p == op.process) else {
            continue;
        };
        let y = 10.0 + row_i as f64 * row + 3.0;
        let x0 = left + step(op.invoke_seq) * dx;
        let x1 = left + op.complete_seq.map_or(end + 1.0, step) * dx + dx * 0.8;
        let class = if Some(op.id) == blocked {
            "op blocked"
        } else if candidates.contains(&op.id) {
            "op cand"
        } else {
            match op.completion {
                Completion::Ok => "op ok",
                Completion::Fail { .. } => "op fail",
                Completion::Unknown { .. } => "op info",
            }
        };
        let label = order.get(&op.id).map(|n| n.to_string()).unwrap_or_default();
        let _ = writeln!(
            page,
            "<g class=\"{class}\"><title>{}</title><rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"3\"/><text x=\"{:.1}\" y=\"{:.1}\">{} {}</text></g>",
            esc(&details(op, order.get(&op.id).copied())),
            (x1 - x0).max(4.0),
            row - 6.0,
            x0 + 3.0,
            y + 13.0,
            label,
            esc(&short(op))
        );
    }
    page.push_str("</svg></div>\n");
}

fn short(op: &Operation) -> String {
    let v = |x: &crate::ExactValue| {
        if x.is_null() {
            String::new()
        } else {
            x.to_string()
        }
    };
    match op.completion {
        Completion::Ok if op.f == "read" || op.f == "get" || op.f == "read-all" => {
            format!("{}→{}", op.f, v(&op.output))
        }
        _ => format!("{} {}", op.f, v(&op.input)),
    }
}

fn details(op: &Operation, position: Option<usize>) -> String {
    let outcome = match &op.completion {
        Completion::Ok => format!("ok {}", op.output),
        Completion::Fail { error } => format!("fail {}", error.as_deref().unwrap_or("")),
        Completion::Unknown { error } => {
            format!("unknown outcome {}", error.as_deref().unwrap_or(""))
        }
    };
    format!(
        "op #{} process {} key {}\n{} {}\n→ {}\nlines {}–{}, time {}–{} ns\n{}",
        op.id,
        op.process,
        op.key.as_deref().unwrap_or("-"),
        op.f,
        op.input,
        outcome,
        op.invoke_line,
        op.complete_line
            .map_or("end".to_string(), |l| l.to_string()),
        op.invoke_time,
        op.complete_time
            .map_or("end".to_string(), |t| t.to_string()),
        position.map_or("not in the linearization".to_string(), |n| format!(
            "linearized #{n}"
        ))
    )
}

fn summary(o: &crate::check::OpSummary) -> String {
    format!(
        "#{} p{} {} (line {})",
        o.id, o.process, o.description, o.invoke_line
    )
}

fn display_name(partition: &str) -> &str {
    if partition.is_empty() {
        "(single register)"
    } else {
        partition
    }
}

fn anchor(partition: &str) -> String {
    partition.bytes().map(|b| format!("{b:02x}")).collect()
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Linearizable => "ok",
        Verdict::NotLinearizable => "bad",
        Verdict::Unknown => "unknown",
    }
}

/// Escapes text for HTML content and attributes (also used by the harness's report pages).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>riptide check</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
.v-ok{color:#1a7f37;font-weight:bold}.v-bad{color:#c62828;font-weight:bold}.v-unknown{color:#b26a00;font-weight:bold}
table.summary{border-collapse:collapse;margin:1em 0}table.summary td,table.summary th{border:1px solid #ccc;padding:2px 8px;text-align:left}
details{margin:1em 0;border:1px solid #ddd;border-radius:4px;padding:.5em}
summary{cursor:pointer}
.cex{background:#fff5f5;border-left:4px solid #c62828;padding:.3em 1em;margin:.5em 0}
.blocked{color:#c62828}
.tl{overflow-x:auto;border:1px solid #eee;margin-top:.5em}
.proc{font:12px monospace;fill:#555}
.op rect{stroke:#456;stroke-width:1}
.op text{font:10px monospace;fill:#111;pointer-events:none}
.op.ok rect{fill:#cfe8d4}.op.fail rect{fill:#e4e4e4;stroke-dasharray:3 2}
.op.info rect{fill:#fff1c2;stroke-dasharray:4 2}
.op.blocked rect{fill:#ff9a9a;stroke:#c62828;stroke-width:2.5}
.op.cand rect{fill:#ffe0b2;stroke:#e65100;stroke-width:2}
.op:hover rect{stroke:#000;stroke-width:2}
.legend span{display:inline-block;padding:0 .5em;margin-right:.5em;border:1px solid #456;font-size:12px}
.note{color:#666}
</style></head><body>
"#;

const LEGEND: &str = r#"<p class="legend">Bars run from invoke to completion, numbered in linearization order (for a failing partition: the longest prefix found); hover for details.
<span style="background:#cfe8d4">ok</span><span style="background:#e4e4e4">fail</span><span style="background:#fff1c2">unknown outcome (info)</span><span style="background:#ff9a9a">cannot be linearized</span><span style="background:#ffe0b2">candidate next</span></p>
"#;
