//! The nodes' own view of the run in the report: one lane per node drawn from `cluster.jsonl`
//! (leader, follower, candidate, down, plus paused and cut off from the faults), on the time
//! axis of the operations, so one sees who led when; and, for a counterexample, whether the
//! node that served an operation led in its term then, with one sentence that says what
//! happened. A run folder without `cluster.jsonl` (older runs) draws no lanes.

use std::fmt::Write as _;
use std::path::Path;

use riptide_checker::history::EventType;

use super::{esc, value_text, XScale};
use crate::run::ops::PairedOp;
use crate::store::FaultInterval;

/// One line of `cluster.jsonl` as the report reads it (the sampler writes more).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct NodeSample {
    /// Nanoseconds since the history's origin.
    pub time: u64,
    /// `n1`, `n2`, ...
    pub node: String,
    /// `false`: the node did not answer its `/status` (down, paused or too slow).
    pub answered: bool,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub term: Option<u64>,
}

/// The samples of a `cluster.jsonl` text, in file order; lines that do not parse are skipped.
pub fn parse_samples(text: &str) -> Vec<NodeSample> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The samples of a run folder's `cluster.jsonl`; none when it is missing or unreadable.
pub fn read_samples(path: &Path) -> Vec<NodeSample> {
    std::fs::read_to_string(path)
        .map(|t| parse_samples(&t))
        .unwrap_or_default()
}

/// The node's last sample at or before `t` (`node` as `n2`).
pub(super) fn sample_at<'a>(
    samples: &'a [NodeSample],
    node: &str,
    t: u64,
) -> Option<&'a NodeSample> {
    samples
        .iter()
        .filter(|s| s.node == node && s.time <= t)
        .max_by_key(|s| s.time)
}

/// `[n1, n2, n3]` sorted by number.
fn nodes_of(samples: &[NodeSample]) -> Vec<String> {
    let mut nodes: Vec<String> = samples.iter().map(|s| s.node.clone()).collect();
    nodes.sort_by_key(|n| (n.len(), n.clone()));
    nodes.dedup();
    nodes
}

/// What a lane shows at one sample: the role, or `down`.
fn state_of(s: &NodeSample) -> String {
    if s.answered {
        s.role.clone().unwrap_or_else(|| "unknown".into())
    } else {
        "down".into()
    }
}

fn state_color(state: &str) -> &'static str {
    match state {
        "leader" => "#1f3a93",
        "follower" => "#9cc3e6",
        "candidate" | "precandidate" => "#e69b2e",
        "down" => "#555",
        _ => "#ccc",
    }
}

/// Node names a fault's description mentions (`n2` in `isolate [n2]`).
fn nodes_named(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() > 1 && w.starts_with('n') && w[1..].chars().all(|c| c.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

/// How a fault hit `node`: `paused`, `cut off`, `removed`, or not at all. A partition cuts off
/// the nodes of its smallest group (`halves [n1] [n2 n3]` cuts off n1); isolating names the
/// node; a membership fault removes the first node it names (`replace n1 by n4` removes n1),
/// unless the change was refused or not applied.
pub(super) fn fault_effect(f: &FaultInterval, node: &str) -> Option<&'static str> {
    if matches!(
        f.name.as_str(),
        "remove-voter" | "remove-leader" | "replace-node"
    ) {
        let done = !["refused", "not applied", "nothing done"]
            .iter()
            .any(|w| f.description.contains(w));
        return (done
            && nodes_named(&f.description)
                .first()
                .is_some_and(|n| n == node))
        .then_some("removed");
    }
    if f.name.contains("pause") || f.name.contains("stall") {
        return nodes_named(&f.description)
            .iter()
            .any(|n| n == node)
            .then_some("paused");
    }
    if f.name.starts_with("isolate") {
        return nodes_named(&f.description)
            .iter()
            .any(|n| n == node)
            .then_some("cut off");
    }
    if f.name.starts_with("partition") {
        let smallest = f
            .description
            .split('[')
            .skip(1)
            .map(|g| nodes_named(g.split(']').next().unwrap_or_default()))
            .filter(|g| !g.is_empty())
            .min_by_key(Vec::len)?;
        return smallest.iter().any(|n| n == node).then_some("cut off");
    }
    None
}

/// The lanes, one per node, with the width and x scale of the operations' timeline
/// (`left`, `plot_w`), so both read on one axis. Empty without samples.
pub(super) fn lanes_svg(
    samples: &[NodeSample],
    faults: &[FaultInterval],
    duration_ns: u64,
    width: f64,
) -> String {
    let nodes = nodes_of(samples);
    if nodes.is_empty() {
        return String::new();
    }
    let xs = XScale::linear(50.0, width - 60.0, duration_ns);
    let lane_h = 18.0;
    let height = 8.0 + lane_h * nodes.len() as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="lanes zoomable" width="{width}" height="{height:.0}" viewBox="0 0 {width} {height:.0}" font-family="sans-serif">"#
    );
    for (i, node) in nodes.iter().enumerate() {
        let y = 4.0 + i as f64 * lane_h;
        let _ = write!(
            out,
            r#"<text x="45" y="{:.1}" font-size="10" text-anchor="end">{node}</text>"#,
            y + 12.0
        );
        let mine: Vec<&NodeSample> = {
            let mut v: Vec<&NodeSample> = samples.iter().filter(|s| &s.node == node).collect();
            v.sort_by_key(|s| s.time);
            v
        };
        // A run of equal samples becomes one segment, drawn until the next sample.
        let mut k = 0;
        while k < mine.len() {
            let (state, term) = (state_of(mine[k]), mine[k].term);
            let mut j = k + 1;
            while j < mine.len() && state_of(mine[j]) == state && mine[j].term == term {
                j += 1;
            }
            let start = mine[k].time;
            let end = mine.get(j).map_or(duration_ns, |s| s.time);
            let (x0, x1) = (xs.x(start), xs.x(end));
            let term_text = term.map(|t| format!(" term {t}")).unwrap_or_default();
            let _ = write!(
                out,
                r#"<rect class="role-{cls}" x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{c}"><title>{t}</title></rect>"#,
                cls = state.replace(' ', "-"),
                w = (x1 - x0).max(0.5),
                h = lane_h - 4.0,
                c = state_color(&state),
                t = esc(&format!(
                    "{node} {state}{term_text} ({:.2}s - {:.2}s)",
                    start as f64 / 1e9,
                    end as f64 / 1e9
                )),
            );
            if x1 - x0 > 40.0 {
                if let Some(t) = term {
                    let _ = write!(
                        out,
                        r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="{}">t{t}</text>"##,
                        x0 + 2.0,
                        y + 11.0,
                        if state == "leader" || state == "down" {
                            "#fff"
                        } else {
                            "#000"
                        }
                    );
                }
            }
            k = j;
        }
        for f in faults {
            let Some(effect) = fault_effect(f, node) else {
                continue;
            };
            let x0 = xs.x(f.start_ns);
            let x1 = xs.x(f.end_ns.unwrap_or(duration_ns)).max(x0 + 1.0);
            let _ = write!(
                out,
                r##"<rect class="effect-{cls}" x="{x0:.1}" y="{:.1}" width="{:.1}" height="4" fill="{c}"><title>{t}</title></rect>"##,
                y + lane_h - 6.0,
                x1 - x0,
                cls = effect.replace(' ', "-"),
                c = match effect {
                    "paused" => "#7a4c00",
                    "removed" => "#6b3fa0",
                    _ => "#d7263d",
                },
                t = esc(&format!("{node} {effect} ({}: {})", f.name, f.description)),
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// The legend under the lanes.
pub(super) const LANES_LEGEND: &str = "<p class=\"legend\">Node lanes (from cluster.jsonl): \
    <span style=\"color:#1f3a93\">leader</span>, <span style=\"color:#6a9cc9\">follower</span>, \
    <span style=\"color:#e69b2e\">candidate</span>, <span style=\"color:#555\">down (no answer)</span>; \
    a thin <span style=\"color:#7a4c00\">brown</span> bar: paused, \
    <span style=\"color:#d7263d\">red</span>: cut off by a partition, \
    <span style=\"color:#6b3fa0\">purple</span>: removed from the configuration. <code>tN</code> is the term.</p>";

/// Whether the node that served `op` led in the term it answered with, by the samples around
/// its completion: `leader`, `follower`, ..., or `None` without samples.
pub(super) fn role_when_served(samples: &[NodeSample], op: &PairedOp) -> Option<String> {
    let served = op.served.as_ref()?;
    if let Some(role) = &served.role {
        return Some(role.clone());
    }
    let at = op.end_ns?;
    let s = sample_at(samples, &format!("n{}", served.node), at)?;
    // A sample of another term says nothing about this one.
    if s.term.is_some() && served.term.is_some() && s.term != served.term {
        return None;
    }
    Some(state_of(s))
}

/// `a follower in term 3`, `the leader in term 4`, `a node in term 2`.
fn role_phrase(role: Option<&str>, term: Option<u64>) -> String {
    let term = term.map(|t| format!(" in term {t}")).unwrap_or_default();
    match role {
        Some("leader") => format!("the leader{term}"),
        Some(r) => format!("a {r}{term}"),
        None => format!("a node{term}"),
    }
}

/// One sentence on the failing operation: who served it and in what role, and for a read the
/// latest acknowledged write of another value before it began. `key_ops` are the key's
/// operations.
pub(super) fn sentence(failing: &PairedOp, key_ops: &[PairedOp], samples: &[NodeSample]) -> String {
    let from = match &failing.served {
        Some(s) => format!(
            " from n{}, {}",
            s.node,
            role_phrase(role_when_served(samples, failing).as_deref(), s.term)
        ),
        None => String::new(),
    };
    let is_read = failing.f == "read" && failing.outcome == EventType::Ok;
    if !is_read {
        return format!(
            "p{} {} {}{from} cannot be linearized after the prefix.",
            failing.process,
            failing.f,
            value_text(&failing.invoke_value)
        );
    }
    let seen = &failing.result_value;
    // The last change acknowledged before the read began that did not write what it saw.
    let conflicting = key_ops
        .iter()
        .filter(|o| o.f != "read" && o.outcome == EventType::Ok)
        .filter(|o| o.end_ns.is_some_and(|e| e <= failing.start_ns))
        .filter(|o| !(o.f == "write" && &o.invoke_value == seen))
        .max_by_key(|o| o.end_ns);
    let mut text = format!("p{} read {}{from}", failing.process, value_text(seen));
    if let Some(w) = conflicting {
        let gap_ms = failing.start_ns.saturating_sub(w.end_ns.unwrap_or(0)) as f64 / 1e6;
        let by = w
            .served
            .as_ref()
            .map(|s| format!("n{}", s.node))
            .unwrap_or_else(|| format!("p{}'s node", w.process));
        let what = if w.f == "write" {
            value_text(&w.invoke_value)
        } else if w.invoke_value.is_null() {
            format!("p{}'s {}", w.process, w.f)
        } else {
            format!("p{}'s {} {}", w.process, w.f, value_text(&w.invoke_value))
        };
        let _ = write!(text, ", {gap_ms:.0} ms after {by} had acknowledged {what}");
    }
    text.push('.');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(name: &str, description: &str) -> FaultInterval {
        FaultInterval {
            name: name.into(),
            description: description.into(),
            start_ns: 0,
            end_ns: Some(1),
            steps: Vec::new(),
        }
    }

    #[test]
    fn a_membership_fault_marks_the_node_it_removed_unless_it_was_refused() {
        let replace = fault("replace-node", "replace n1 by n4 (new id, empty data dir)");
        assert_eq!(fault_effect(&replace, "n1"), Some("removed"));
        assert_eq!(fault_effect(&replace, "n4"), None);
        let remove = fault(
            "remove-voter",
            "remove voter n5, add it back as a learner and promote it at the end",
        );
        assert_eq!(fault_effect(&remove, "n5"), Some("removed"));
        let refused = fault(
            "remove-leader",
            "remove leader n2 (refused: would lose quorum)",
        );
        assert_eq!(fault_effect(&refused, "n2"), None);
        let added = fault(
            "add-learner",
            "add learner n4 on a spare slot, promote it at the end",
        );
        assert_eq!(fault_effect(&added, "n4"), None);
        // Nodes beyond the initial ones get lanes like the others, in number order.
        let samples: Vec<NodeSample> = ["n10", "n2", "n4", "n1"]
            .iter()
            .map(|n| NodeSample {
                time: 0,
                node: n.to_string(),
                answered: true,
                role: Some("follower".into()),
                term: Some(1),
            })
            .collect();
        assert_eq!(nodes_of(&samples), ["n1", "n2", "n4", "n10"]);
        let svg = lanes_svg(&samples, &[replace], 10, 800.0);
        assert!(svg.contains("n1 removed (replace-node"), "{svg}");
    }
}
