//! What a campaign shows: the summary table on the terminal, JUnit XML for CI, the index page
//! in the store, and the list of campaigns `riptide serve` puts on its front page. All are
//! rendered from a [`CampaignRecord`], so a merged campaign renders exactly like a single one.

use std::path::Path;

use super::bugs::{detection, DetectionRow};
use super::record::{CampaignRecord, EntryVerdict};
use crate::report::esc;
use crate::store::RunVerdict;

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// A duration in seconds, for messages (`30.0s`).
pub fn summary_secs(d: std::time::Duration) -> String {
    secs(d.as_millis() as u64)
}

fn opt_secs(ms: Option<f64>) -> String {
    ms.map(|m| format!("{:.1}s", m / 1000.0))
        .unwrap_or_else(|| "-".into())
}

/// The summary table printed at the end of a campaign (and of a merge).
pub fn summary_table(record: &CampaignRecord) -> String {
    let mut rows: Vec<[String; 8]> = vec![[
        "#".into(),
        "test".into(),
        "seed".into(),
        "verdict".into(),
        "ops".into(),
        "faults".into(),
        "time".into(),
        "violation at".into(),
    ]];
    for r in &record.runs {
        rows.push([
            r.entry.id.to_string(),
            r.entry.test_name.clone(),
            r.entry.seed.to_string(),
            r.verdict.to_string(),
            r.ops.to_string(),
            r.faults.to_string(),
            secs(r.duration_ms),
            match (&r.first_violation_ms, &r.exposed_by) {
                (Some(t), Some(by)) => format!("{} ({by})", opt_secs(Some(*t))),
                (t, _) => opt_secs(*t),
            },
        ]);
    }
    let mut out = table(&rows);
    let t = record.tally();
    out.push_str(&format!(
        "{} runs: {} linearizable, {} not linearizable,{} {} unknown, {} run failed, {} skipped\n",
        record.runs.len(),
        t.linearizable,
        t.not_linearizable,
        diverged_count(&t),
        t.unknown,
        t.run_failed,
        t.skipped
    ));
    if record.mode == "bugs" {
        out.push('\n');
        out.push_str(&detection_table(&detection(&record.runs)));
    }
    out
}

/// The detection matrix as a text table.
pub fn detection_table(rows: &[DetectionRow]) -> String {
    let mut cells: Vec<[String; 6]> = vec![[
        "bug".into(),
        "test".into(),
        "detected".into(),
        "median first violation".into(),
        "exposed by".into(),
        "inconclusive".into(),
    ]];
    for r in rows {
        cells.push([
            r.bug.clone(),
            format!("{} / {}", r.workload, r.nemesis),
            format!("{}/{}", r.detected, r.runs),
            opt_secs(r.median_first_violation_ms),
            r.exposed_by.clone().unwrap_or_else(|| "-".into()),
            r.inconclusive.to_string(),
        ]);
    }
    table(&cells)
}

/// Left-aligned columns separated by two spaces, a rule under the header.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    out
}

/// Escapes text for XML attributes and content.
fn xml(s: &str) -> String {
    // Control characters other than tab/newline are not allowed in XML 1.0 at all.
    esc(&s
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect::<String>())
}

/// `" N replicas diverged,"` when any run's replicas diverged, else nothing (most campaigns).
fn diverged_count(t: &super::record::Tally) -> String {
    if t.diverged > 0 {
        format!(" {} replicas diverged,", t.diverged)
    } else {
        String::new()
    }
}

/// JUnit XML: one test case per run; `not linearizable` and `replicas diverged` are failures, `run failed` and
/// `unknown` are errors, skipped runs are skipped. Understood by GitLab, Jenkins, GitHub
/// test-report actions and most CI systems.
pub fn junit(record: &CampaignRecord) -> String {
    let t = record.tally();
    let total_s: f64 = record
        .runs
        .iter()
        .map(|r| r.duration_ms as f64 / 1000.0)
        .sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"riptide campaign {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{total_s:.3}\">\n",
        xml(&record.name),
        record.runs.len(),
        t.violations(),
        t.unknown + t.run_failed,
        t.skipped
    ));
    out.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{total_s:.3}\" timestamp=\"{}\">\n",
        xml(&record.name),
        record.runs.len(),
        t.violations(),
        t.unknown + t.run_failed,
        t.skipped,
        xml(&record.started)
    ));
    for r in &record.runs {
        let e = &r.entry;
        let bug = e
            .bug
            .as_deref()
            .map(|b| format!(" bug={b}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "    <testcase classname=\"riptide.{}\" name=\"{} seed={}{bug}\" time=\"{:.3}\">",
            xml(&e.workload),
            xml(&e.test_name),
            e.seed,
            r.duration_ms as f64 / 1000.0
        ));
        let details = format!(
            "nemesis: {}\nrun: {}\n{}",
            e.nemesis,
            r.run_dir.as_deref().unwrap_or("-"),
            r.reasons.join("\n")
        );
        match r.verdict {
            EntryVerdict::Ran(RunVerdict::Linearizable) => {}
            EntryVerdict::Ran(v @ (RunVerdict::NotLinearizable | RunVerdict::Diverged)) => out
                .push_str(&format!(
                    "\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    ",
                    v.name(),
                    v.name().replace(' ', "-"),
                    xml(&details)
                )),
            EntryVerdict::Skipped(_) => out.push_str(&format!(
                "\n      <skipped message=\"{}\"/>\n    ",
                xml(r.reasons.first().map_or("skipped", |s| s.as_str()))
            )),
            other => out.push_str(&format!(
                "\n      <error message=\"{}\" type=\"{}\">{}</error>\n    ",
                xml(other.name()),
                xml(&other.name().replace(' ', "-")),
                xml(&details)
            )),
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// The campaign's index page, written to `<store>/campaigns/<folder>/index.html`. Links to
/// runs are relative (`../../<test>/<run>/report.html`) so they work from the file system and
/// through `riptide serve` alike.
pub fn index_html(record: &CampaignRecord) -> String {
    let t = record.tally();
    let mut html = format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>campaign {name}</title><style>
body{{font-family:sans-serif;margin:20px}} table{{border-collapse:collapse;margin-bottom:16px}} td,th{{border:1px solid #ddd;padding:4px 8px;font-size:13px;text-align:left}}
.v-linearizable{{background:#d9f2e1}} .v-not-linearizable,.v-run-failed{{background:#f9d6da}} .v-unknown{{background:#fbecd0}} .v-skipped{{color:#888}}
</style></head><body><h1>campaign {name}</h1>
<p>{mode} campaign, started {started}, finished {finished}{shard}; {n} runs of {limit} each:
<b>{nl} not linearizable</b>,{diverged} {lin} linearizable, {unk} unknown, {failed} run failed, {skipped} skipped.
<a href="campaign.json">campaign.json</a> <a href="junit.xml">junit.xml</a></p>"#,
        name = esc(&record.name),
        mode = esc(&record.mode),
        started = esc(&record.started),
        finished = esc(record.finished.as_deref().unwrap_or("-")),
        shard = record
            .shard
            .map(|s| format!(", shard {s}"))
            .unwrap_or_default(),
        n = record.runs.len(),
        limit = secs(record.time_limit_ms),
        nl = t.not_linearizable,
        diverged = diverged_count(&t),
        lin = t.linearizable,
        unk = t.unknown,
        failed = t.run_failed,
        skipped = t.skipped,
    );
    if record.mode == "bugs" {
        html.push_str("<h2>detection matrix</h2><table><tr><th>bug</th><th>workload</th><th>nemesis</th><th>detected</th><th>median first violation</th><th>exposed by</th><th>inconclusive</th></tr>");
        for r in detection(&record.runs) {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.bug),
                esc(&r.workload),
                esc(&r.nemesis),
                r.detected,
                r.runs,
                opt_secs(r.median_first_violation_ms),
                esc(r.exposed_by.as_deref().unwrap_or("-")),
                r.inconclusive
            ));
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>runs</h2><table><tr><th>#</th><th>verdict</th><th>test</th><th>seed</th><th>workload</th><th>nemesis</th><th>bug</th><th>ops</th><th>faults</th><th>time</th><th>violation at</th><th>why</th></tr>");
    for r in &record.runs {
        let e = &r.entry;
        let verdict = match &r.run_dir {
            Some(dir) => format!(
                r#"<a href="../../{}/report.html"><b>{}</b></a>"#,
                esc(dir),
                esc(r.verdict.name())
            ),
            None => esc(r.verdict.name()),
        };
        html.push_str(&format!(
            r#"<tr class="v-{}"><td>{}</td><td>{verdict}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&r.verdict.name().replace(' ', "-")),
            e.id,
            esc(&e.test_name),
            e.seed,
            esc(&e.workload),
            esc(&e.nemesis),
            esc(e.bug.as_deref().unwrap_or("")),
            r.ops,
            r.faults,
            secs(r.duration_ms),
            match (&r.first_violation_ms, &r.exposed_by) {
                (Some(t), Some(by)) => format!("{} ({})", opt_secs(Some(*t)), esc(by)),
                (t, _) => opt_secs(*t),
            },
            esc(r.reasons.first().map_or("", |s| s.as_str())),
        ));
    }
    html.push_str("</table></body></html>\n");
    html
}

/// Writes `campaign.json`, `junit.xml` and `index.html` into `dir`.
pub fn write_all(record: &CampaignRecord, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    record.write(&dir.join(super::CAMPAIGN_FILE))?;
    std::fs::write(dir.join(super::JUNIT_FILE), junit(record))?;
    std::fs::write(dir.join(super::INDEX_FILE), index_html(record))?;
    Ok(())
}

/// The campaigns of a store, newest first: (folder name, record).
pub fn list_campaigns(store: &Path) -> Vec<(String, CampaignRecord)> {
    let Ok(entries) = std::fs::read_dir(store.join(super::CAMPAIGNS_DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, CampaignRecord)> = entries
        .flatten()
        .filter_map(|e| {
            let record = CampaignRecord::load(&e.path().join(super::CAMPAIGN_FILE)).ok()?;
            Some((e.file_name().to_string_lossy().to_string(), record))
        })
        .collect();
    out.sort_by(|a, b| b.1.started.cmp(&a.1.started).then(b.0.cmp(&a.0)));
    out
}

/// The "campaigns" section of `riptide serve`'s front page (empty when there are none).
pub fn serve_section(store: &Path) -> String {
    campaigns_table(&list_campaigns(store))
}

/// The table of `campaigns` (as [`list_campaigns`] gives them), linking each index page;
/// empty when there are none.
pub fn campaigns_table(campaigns: &[(String, CampaignRecord)]) -> String {
    if campaigns.is_empty() {
        return String::new();
    }
    let mut html = String::from("<h2>campaigns</h2><table><tr><th>campaign</th><th>mode</th><th>started</th><th>runs</th><th>violations</th><th>linearizable</th><th>other</th></tr>");
    for (folder, r) in campaigns {
        let t = r.tally();
        html.push_str(&format!(
            r#"<tr class="{}"><td><a href="/runs/{}/{}/index.html">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            if t.violations() > 0 { "v-not-linearizable" } else { "v-linearizable" },
            super::CAMPAIGNS_DIR,
            esc(folder),
            esc(&r.name),
            esc(&r.mode),
            esc(&r.started),
            r.runs.len(),
            t.violations(),
            t.linearizable,
            t.unknown + t.run_failed + t.skipped,
        ));
    }
    html.push_str("</table>");
    html
}

/// One night of the trend: campaigns, runs (not skipped), violations, unknowns, failed runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Night {
    pub campaigns: usize,
    pub runs: usize,
    pub violations: usize,
    pub unknowns: usize,
    pub failed: usize,
}

/// The campaigns' verdicts per night (the UTC day each campaign started), oldest first.
pub fn nights(campaigns: &[(String, CampaignRecord)]) -> Vec<(String, Night)> {
    let mut nights: std::collections::BTreeMap<String, Night> = Default::default();
    for (_, record) in campaigns {
        let day = record
            .started
            .get(..10)
            .unwrap_or(&record.started)
            .to_string();
        let t = record.tally();
        let night = nights.entry(day).or_default();
        night.campaigns += 1;
        night.runs += t.linearizable + t.violations() + t.unknown + t.run_failed;
        night.violations += t.violations();
        night.unknowns += t.unknown;
        night.failed += t.run_failed;
    }
    nights.into_iter().collect()
}

/// The trend over nights: a bar chart (runs, violations and unknowns per night, in its own
/// scrolling box) and a table, newest night first.
pub fn trend_html(campaigns: &[(String, CampaignRecord)]) -> String {
    let nights = nights(campaigns);
    if nights.is_empty() {
        return "<p>No campaigns in this store yet.</p>".to_string();
    }
    const BAR: usize = 10;
    const SLOT: usize = 4 * BAR + 12;
    const HEIGHT: usize = 160;
    let max = nights.iter().map(|(_, n)| n.runs).max().unwrap_or(0).max(1);
    let width = nights.len() * SLOT + 20;
    let mut svg = format!(
        r#"<div class="scroll"><svg id="trend" width="{width}" height="{}" role="img" aria-label="runs, violations and unknowns per night">"#,
        HEIGHT + 40
    );
    for (i, (day, night)) in nights.iter().enumerate() {
        let x = 10 + i * SLOT;
        let bars = [
            (night.runs, "#9aa5b1", "runs"),
            (night.violations, "#d64550", "violations"),
            (night.unknowns, "#e0a030", "unknowns"),
        ];
        for (j, (count, color, what)) in bars.into_iter().enumerate() {
            let h = count * HEIGHT / max;
            svg.push_str(&format!(
                r#"<rect x="{}" y="{}" width="{BAR}" height="{h}" fill="{color}"><title>{} {what}: {count}</title></rect>"#,
                x + j * BAR,
                10 + HEIGHT - h,
                esc(day),
            ));
        }
        svg.push_str(&format!(
            r#"<text x="{x}" y="{}" font-size="10">{}</text>"#,
            HEIGHT + 30,
            esc(day.get(5..).unwrap_or(day))
        ));
    }
    svg.push_str("</svg></div><p>Grey: runs; red: not linearizable; amber: unknown.</p>");
    svg.push_str("<table><tr><th>night</th><th>campaigns</th><th>runs</th><th>not linearizable</th><th>unknown</th><th>run failed</th></tr>");
    for (day, n) in nights.iter().rev() {
        let class = if n.violations > 0 {
            "v-not-linearizable"
        } else if n.unknowns + n.failed > 0 {
            "v-unknown"
        } else {
            "v-linearizable"
        };
        svg.push_str(&format!(
            r#"<tr class="{class}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(day),
            n.campaigns,
            n.runs,
            n.violations,
            n.unknowns,
            n.failed
        ));
    }
    svg.push_str("</table>");
    svg
}

#[cfg(test)]
mod tests {
    use super::super::matrix::MatrixEntry;
    use super::super::record::RunRecord;
    use super::*;

    fn run_with(id: usize, verdict: &str) -> RunRecord {
        RunRecord {
            entry: MatrixEntry {
                id,
                test_name: "kv-<x>".into(),
                workload: "kv".into(),
                nemesis: "partition".into(),
                seed: 7,
                bug: None,
                args: vec![],
            },
            verdict: verdict.parse().unwrap(),
            exit_code: Some(0),
            run_dir: Some("kv-x/20261123T010000-7".into()),
            ops: 10,
            faults: 1,
            duration_ms: 1500,
            first_violation_ms: Some(1200.0),
            exposed_by: Some("isolate-leader".into()),
            reasons: vec!["key k1 is \"bad\" & \u{1}odd".into()],
        }
    }

    fn record() -> CampaignRecord {
        let run = run_with;
        CampaignRecord {
            name: "n&ghtly".into(),
            mode: "matrix".into(),
            started: "2026-11-23T01:00:00Z".into(),
            finished: None,
            shard: None,
            matrix_size: 4,
            time_limit_ms: 30_000,
            budget_ms: None,
            store: "histories".into(),
            runs: vec![
                run(0, "linearizable"),
                run(1, "not linearizable"),
                run(2, "run failed"),
                run(3, super::super::record::SKIPPED),
            ],
            merged_from: vec![],
            detection: vec![],
        }
    }

    #[test]
    fn junit_counts_failures_errors_and_skips_and_escapes_text() {
        let x = junit(&record());
        assert!(
            x.contains(r#"tests="4" failures="1" errors="1" skipped="1""#),
            "{x}"
        );
        assert_eq!(x.matches("<testcase ").count(), 4);
        assert_eq!(x.matches("<failure ").count(), 1);
        assert_eq!(x.matches("<error ").count(), 1);
        assert_eq!(x.matches("<skipped ").count(), 1);
        assert!(x.contains("kv-&lt;x&gt;"));
        assert!(x.contains("n&amp;ghtly"));
        assert!(!x.contains('\u{1}'));
        assert!(!x.contains("\"bad\""));
    }

    #[test]
    fn the_summary_and_the_index_show_every_run_and_link_reports() {
        let r = record();
        let table = summary_table(&r);
        assert_eq!(table.lines().count(), 2 + 4 + 1, "{table}");
        assert!(table.contains("1.2s (isolate-leader)"), "{table}");
        let html = index_html(&r);
        assert!(html.contains(r#"href="../../kv-x/20261123T010000-7/report.html""#));
        assert!(html.contains("1 not linearizable"));
    }

    #[test]
    fn the_trend_counts_runs_violations_and_unknowns_per_night() {
        let first = record();
        let mut second = record();
        second.started = "2026-11-24T01:00:00Z".into();
        second.runs = vec![run_with(0, "unknown"), run_with(1, "linearizable")];
        let mut third = second.clone();
        third.started = "2026-11-24T03:00:00Z".into();
        let campaigns: Vec<(String, CampaignRecord)> = [first, second, third]
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("c{i}"), r))
            .collect();
        let nights = nights(&campaigns);
        let expected = [
            (
                "2026-11-23".to_string(),
                Night {
                    campaigns: 1,
                    runs: 3,
                    violations: 1,
                    unknowns: 0,
                    failed: 1,
                },
            ),
            (
                "2026-11-24".to_string(),
                Night {
                    campaigns: 2,
                    runs: 4,
                    violations: 0,
                    unknowns: 2,
                    failed: 0,
                },
            ),
        ];
        assert_eq!(nights, expected);
        let html = trend_html(&campaigns);
        // Three bars per night, the tallest (4 runs) the full height.
        assert_eq!(html.matches("<rect ").count(), 6, "{html}");
        assert!(html.contains(r##"height="160" fill="#9aa5b1""##), "{html}");
        assert!(html.contains("2026-11-24 unknowns: 2"), "{html}");
    }

    #[test]
    fn campaigns_written_to_a_store_are_listed_for_serve() {
        let store = tempfile::tempdir().unwrap();
        let dir = store.path().join("campaigns").join("nightly-1");
        write_all(&record(), &dir).unwrap();
        assert!(dir.join("junit.xml").is_file());
        let listed = list_campaigns(store.path());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1, record());
        let section = serve_section(store.path());
        assert!(
            section.contains("/runs/campaigns/nightly-1/index.html"),
            "{section}"
        );
        assert_eq!(serve_section(&store.path().join("nothing")), "");
    }
}
