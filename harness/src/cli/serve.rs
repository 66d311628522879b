//! `riptide serve`: a small web server over the store of results.
//!
//! `/` lists the campaigns (each linking to its index page), then every run (test, start,
//! seed, nemesis, workload, planted bug, ops, verdict), failing runs first, filtered by
//! verdict, test, bug and date (`?verdict=&test=&bug=&date=`), with links to each report and
//! raw file; `/run/<test>/<run>` is a run's page (what it was, and its history, results,
//! `cluster.jsonl`, node logs and minimal history); `/campaigns` draws the nightly trend
//! (runs, violations and unknowns per night); `/runs/<test>/<run>/<file>` serves the files
//! of a run. Only files inside the store are served.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::campaign::bugs::NO_BUG;
use crate::report::esc;
use crate::store::{
    list_runs, summarize, RunSummary, CLUSTER_FILE, CONFIG_FILE, HISTORY_FILE, MINIMAL_FILE,
    NODES_DIR, REPORT_FILE, RESULTS_FILE, SCHEDULE_FILE,
};

/// Arguments of `riptide serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Folder of the store of results.
    #[arg(long, default_value = "histories")]
    pub store: PathBuf,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

/// Runs the server until Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "serving the runs in {} at http://{addr}/ (Ctrl-C to stop)",
            args.store.display()
        );
        axum::serve(listener, router(args.store))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")?;
        Ok(0)
    })
}

/// The routes, over the store at `store`.
pub fn router(store: PathBuf) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/campaigns", get(campaigns_page))
        .route("/run/{*path}", get(run_page))
        .route("/runs/{*path}", get(file))
        .with_state(Arc::new(store))
}

/// The filters of the front page (`?verdict=&test=&bug=&date=`); empty means any.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct RunFilter {
    #[serde(default)]
    pub verdict: String,
    #[serde(default)]
    pub test: String,
    /// A planted bug's name, or `none` ([`NO_BUG`]) for runs without one.
    #[serde(default)]
    pub bug: String,
    /// A day, `YYYY-MM-DD` (the run's start, UTC).
    #[serde(default)]
    pub date: String,
}

impl RunFilter {
    pub fn matches(&self, run: &RunSummary) -> bool {
        let verdict = self.verdict.is_empty() || run.verdict_name() == self.verdict;
        let test = self.test.is_empty() || run.test == self.test;
        let bug = match (self.bug.as_str(), run.bug.as_deref()) {
            ("", _) => true,
            (NO_BUG, found) => found.is_none(),
            (wanted, found) => found == Some(wanted),
        };
        // `started` is RFC 3339 (`2026-12-03T...`); the run folder starts `20261203T...`.
        let date = self.date.is_empty()
            || run
                .started
                .as_deref()
                .is_some_and(|s| s.starts_with(&self.date))
            || run.run.starts_with(&self.date.replace('-', ""));
        verdict && test && bug && date
    }
}

/// A page of `riptide serve`: the shared style, a title and the navigation.
fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{title}</title><style>
body{{font-family:sans-serif;margin:20px;max-width:1240px}} table{{border-collapse:collapse}} td,th{{border:1px solid #ddd;padding:4px 8px;font-size:13px;text-align:left}}
.scroll{{overflow-x:auto;max-width:100%}} nav a{{margin-right:12px}} form label{{margin-right:10px;font-size:13px}}
.v-linearizable{{background:#d9f2e1}} .v-not-linearizable,.v-run-failed{{background:#f9d6da}} .v-unknown,.v-incomplete{{background:#fbecd0}}
</style></head><body><nav><a href="/">runs</a><a href="/campaigns">campaigns</a></nav><h1>{title}</h1>{body}</body></html>"#,
        title = esc(title),
    )
}

/// A `<select>` of the distinct `values`, `current` selected, "any" first.
fn select(name: &str, values: &[String], current: &str) -> String {
    let mut html = format!(r#"<label>{name} <select name="{name}"><option value="">any</option>"#);
    for v in values {
        let selected = if v == current { " selected" } else { "" };
        html.push_str(&format!(
            r#"<option value="{v}"{selected}>{v}</option>"#,
            v = esc(v)
        ));
    }
    html.push_str("</select></label>");
    html
}

fn distinct(values: impl Iterator<Item = String>) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = values.collect();
    set.into_iter().collect()
}

async fn index(State(store): State<Arc<PathBuf>>, Query(filter): Query<RunFilter>) -> Response {
    let store = store.as_ref().clone();
    let listed = tokio::task::spawn_blocking(move || {
        (
            crate::campaign::render::serve_section(&store),
            list_runs(&store),
        )
    })
    .await;
    let (campaigns, runs) = match listed {
        Ok((campaigns, Ok(runs))) => (campaigns, runs),
        Ok((_, Err(e))) => return (StatusCode::NOT_FOUND, e.to_string()).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let verdicts = distinct(runs.iter().map(|r| r.verdict_name().to_string()));
    let tests = distinct(runs.iter().map(|r| r.test.clone()));
    let bugs = distinct(
        runs.iter()
            .map(|r| r.bug.clone().unwrap_or_else(|| NO_BUG.to_string())),
    );
    let mut html = String::new();
    // Campaigns first (each links to its index page), then every run.
    html.push_str(&campaigns);
    html.push_str("<h2>runs</h2>");
    html.push_str(r#"<form method="get" action="/">"#);
    html.push_str(&select("verdict", &verdicts, &filter.verdict));
    html.push_str(&select("test", &tests, &filter.test));
    html.push_str(&select("bug", &bugs, &filter.bug));
    html.push_str(&format!(
        r#"<label>date <input type="date" name="date" value="{}"></label><button type="submit">filter</button> <a href="/">clear</a></form>"#,
        esc(&filter.date)
    ));
    let shown: Vec<&RunSummary> = runs.iter().filter(|r| filter.matches(r)).collect();
    html.push_str(&format!(
        "<p>{} of {} runs, failing first.</p>",
        shown.len(),
        runs.len()
    ));
    html.push_str(r#"<div class="scroll"><table><tr><th>verdict</th><th>test</th><th>started</th><th>seed</th><th>workload</th><th>nemesis</th><th>bug</th><th>ops</th><th>files</th></tr>"#);
    for r in shown {
        let class = format!("v-{}", r.verdict_name().replace(' ', "-"));
        let base = format!("/runs/{}", r.rel_path);
        let files: Vec<String> = r
            .files
            .iter()
            .map(|f| format!(r#"<a href="{}/{}">{}</a>"#, esc(&base), esc(f), esc(f)))
            .chain(std::iter::once(format!(
                r#"<a href="{}/nodes/">nodes/</a>"#,
                esc(&base)
            )))
            .collect();
        html.push_str(&format!(
            r#"<tr class="{class}"><td><a href="{base}/report.html"><b>{}</b></a></td><td><a href="/run/{rel}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(r.verdict_name()),
            esc(&r.test),
            esc(r.started.as_deref().unwrap_or(&r.run)),
            r.seed.map(|s| s.to_string()).unwrap_or_default(),
            esc(r.workload.as_deref().unwrap_or("")),
            esc(r.nemesis.as_deref().unwrap_or("")),
            esc(r.bug.as_deref().unwrap_or("")),
            r.ops.map(|s| s.to_string()).unwrap_or_default(),
            files.join(" "),
            base = esc(&base),
            rel = esc(&r.rel_path),
        ));
    }
    html.push_str("</table></div>");
    Html(page("riptide runs", &html)).into_response()
}

/// What the run page links, in this order, when the run has it: (file, what it is).
const RUN_FILES: &[(&str, &str)] = &[
    (REPORT_FILE, "the report"),
    (MINIMAL_FILE, "the smallest failing piece of the history"),
    (HISTORY_FILE, "the history"),
    (RESULTS_FILE, "the checker's results"),
    (CLUSTER_FILE, "the nodes' status, sampled"),
    (SCHEDULE_FILE, "the fault schedule"),
    (CONFIG_FILE, "the run's configuration"),
];

/// `/run/<test>/<run>`: what the run was, and a link to each of its artifacts and node logs.
async fn run_page(State(store): State<Arc<PathBuf>>, UrlPath(rel): UrlPath<String>) -> Response {
    let store = store.as_ref().clone();
    let found = tokio::task::spawn_blocking(move || {
        let summary = summarize(&store, &rel)?;
        let nodes = store.join(&summary.rel_path).join(NODES_DIR);
        let mut logs: Vec<String> = std::fs::read_dir(nodes)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.ends_with(".log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        Some((summary, logs))
    })
    .await;
    let (run, logs) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such run").into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let base = format!("/runs/{}", run.rel_path);
    let mut html = format!(
        r#"<table><tr><th>verdict</th><td class="v-{}"><b>{}</b></td></tr>"#,
        run.verdict_name().replace(' ', "-"),
        esc(run.verdict_name())
    );
    let facts = [
        ("test", Some(run.test.clone())),
        ("started", run.started.clone()),
        ("seed", run.seed.map(|s| s.to_string())),
        ("workload", run.workload.clone()),
        ("nemesis", run.nemesis.clone()),
        ("planted bug", run.bug.clone()),
        ("operations", run.ops.map(|o| o.to_string())),
    ];
    for (name, value) in facts {
        if let Some(value) = value {
            html.push_str(&format!("<tr><th>{name}</th><td>{}</td></tr>", esc(&value)));
        }
    }
    html.push_str("</table><h2>files</h2><ul>");
    for (file, what) in RUN_FILES {
        if run.files.iter().any(|f| f == file) {
            html.push_str(&format!(
                r#"<li><a href="{}/{file}">{file}</a>: {what}</li>"#,
                esc(&base)
            ));
        }
    }
    for file in &run.files {
        if !RUN_FILES.iter().any(|(f, _)| f == file) {
            html.push_str(&format!(
                r#"<li><a href="{}/{f}">{f}</a></li>"#,
                esc(&base),
                f = esc(file)
            ));
        }
    }
    html.push_str("</ul><h2>node logs</h2><ul>");
    for log in &logs {
        html.push_str(&format!(
            r#"<li><a href="{}/{NODES_DIR}/{l}">{l}</a></li>"#,
            esc(&base),
            l = esc(log)
        ));
    }
    html.push_str(&format!(
        r#"</ul><p><a href="{}/{NODES_DIR}/">every file of the nodes</a></p>"#,
        esc(&base)
    ));
    Html(page(&format!("run {}", run.rel_path), &html)).into_response()
}

/// `/campaigns`: the trend over nights (runs, violations, unknowns per night), then every
/// campaign.
async fn campaigns_page(State(store): State<Arc<PathBuf>>) -> Response {
    let store = store.as_ref().clone();
    let built = tokio::task::spawn_blocking(move || {
        let campaigns = crate::campaign::render::list_campaigns(&store);
        let trend = crate::campaign::render::trend_html(&campaigns);
        let table = crate::campaign::render::campaigns_table(&campaigns);
        format!("{trend}{table}")
    })
    .await;
    match built {
        Ok(html) => Html(page("riptide campaigns", &html)).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Joins a URL path under the store, refusing anything that could leave it.
pub fn safe_join(store: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = store.to_path_buf();
    for component in Path::new(rel).components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    }
}

async fn file(State(store): State<Arc<PathBuf>>, UrlPath(rel): UrlPath<String>) -> Response {
    let Some(path) = safe_join(&store, &rel) else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    if path.is_dir() {
        let mut names: Vec<String> = match std::fs::read_dir(&path) {
            Ok(rd) => rd
                .flatten()
                .map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    if e.path().is_dir() {
                        format!("{name}/")
                    } else {
                        name
                    }
                })
                .collect(),
            Err(e) => return (StatusCode::NOT_FOUND, e.to_string()).into_response(),
        };
        names.sort();
        let base = format!("/runs/{}", rel.trim_end_matches('/'));
        let items: String = names
            .iter()
            .map(|n| {
                format!(
                    r#"<li><a href="{}/{}">{}</a></li>"#,
                    esc(&base),
                    esc(n),
                    esc(n)
                )
            })
            .collect();
        return Html(format!(
            "<!DOCTYPE html><html><body><h1>{}</h1><ul>{items}</ul></body></html>",
            esc(&rel)
        ))
        .into_response();
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&path))], bytes).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_store() {
        let store = Path::new("/s");
        assert_eq!(
            safe_join(store, "t/r/report.html"),
            Some(PathBuf::from("/s/t/r/report.html"))
        );
        assert_eq!(safe_join(store, "../etc/passwd"), None);
        assert_eq!(safe_join(store, "/etc/passwd"), None);
    }

    #[tokio::test]
    async fn index_lists_runs_and_files_are_served() {
        let store = tempfile::tempdir().unwrap();
        let run =
            crate::store::RunDir::create(store.path(), "kv-x", chrono::Utc::now(), 9).unwrap();
        std::fs::write(
            run.config(),
            r#"{"seed":9,"nemesis":"kill","workload":"kv"}"#,
        )
        .unwrap();
        std::fs::write(
            run.results(),
            r#"{"verdict":"not linearizable","stats":{"invocations":3}}"#,
        )
        .unwrap();
        std::fs::write(run.report(), "<html>report</html>").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(store.path().to_path_buf());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let index = reqwest::get(format!("http://{addr}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(index.contains("not linearizable"));
        assert!(index.contains("kv-x"));
        let rel = rel_of(store.path(), &run);
        let report = reqwest::get(format!("http://{addr}/runs/{rel}/report.html"))
            .await
            .unwrap();
        assert_eq!(report.status(), 200);
        assert_eq!(report.text().await.unwrap(), "<html>report</html>");
        server.abort();
    }

    /// A run folder with a config (node arguments included) and results.
    fn make_run(
        store: &Path,
        test: &str,
        seed: u64,
        verdict: &str,
        node_args: &[&str],
    ) -> crate::store::RunDir {
        let stamp = chrono::DateTime::from_timestamp(1_790_000_000 + seed as i64 * 86_400, 0)
            .expect("a valid time");
        let run = crate::store::RunDir::create(store, test, stamp, seed).unwrap();
        let config = serde_json::json!({
            "seed": seed,
            "nemesis": "kill",
            "workload": "kv",
            "started": stamp.to_rfc3339(),
            "node_args": node_args,
        });
        std::fs::write(run.config(), config.to_string()).unwrap();
        std::fs::write(
            run.results(),
            format!(r#"{{"verdict":"{verdict}","stats":{{"invocations":3}}}}"#),
        )
        .unwrap();
        run
    }

    async fn serve(store: &Path) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(store.to_path_buf());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, server)
    }

    async fn get(url: String) -> (u16, String) {
        let response = reqwest::get(url).await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    fn rel_of(store: &Path, run: &crate::store::RunDir) -> String {
        run.path.strip_prefix(store).unwrap().display().to_string()
    }

    fn hrefs(html: &str) -> Vec<String> {
        html.split(r#"href=""#)
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn the_front_page_filters_runs_by_verdict_test_bug_and_date() {
        let store = tempfile::tempdir().unwrap();
        make_run(
            store.path(),
            "kv-a",
            1,
            "not linearizable",
            &["--unsafe", "--bug=no-dedup"],
        );
        make_run(store.path(), "kv-a", 2, "linearizable", &[]);
        make_run(
            store.path(),
            "kv-b",
            3,
            "linearizable",
            &["--unsafe", "--bug", "no-fsync"],
        );
        let (addr, server) = serve(store.path()).await;
        let count = |html: &str| {
            html.split_once(" of 3 runs")
                .and_then(|(head, _)| head.rsplit("<p>").next())
                .and_then(|n| n.parse::<usize>().ok())
        };
        let cases = [
            ("", 3),
            ("?verdict=linearizable", 2),
            ("?test=kv-b", 1),
            ("?bug=no-dedup", 1),
            ("?bug=none", 1),
            ("?verdict=linearizable&bug=no-fsync", 1),
            ("?verdict=not+linearizable&test=kv-b", 0),
            // Seed 2's run started 2 days after 2026-09-21.
            ("?date=2026-09-23", 1),
            ("?date=2026-09-20", 0),
            ("?verdict=&test=&bug=&date=", 3),
        ];
        for (query, expected) in cases {
            let (status, html) = get(format!("http://{addr}/{query}")).await;
            assert_eq!(status, 200, "{query}");
            assert_eq!(count(&html), Some(expected), "{query}: {html}");
        }
        let (_, html) = get(format!("http://{addr}/?bug=no-dedup")).await;
        assert!(
            html.contains(r#"<option value="no-dedup" selected>"#),
            "{html}"
        );
        assert!(html.contains("<td>no-dedup</td>"), "{html}");
        server.abort();
    }

    #[tokio::test]
    async fn the_run_page_links_every_artifact_and_each_link_answers() {
        let store = tempfile::tempdir().unwrap();
        let run = make_run(store.path(), "kv-a", 1, "not linearizable", &[]);
        for file in [
            run.history(),
            run.cluster_samples(),
            run.minimal(),
            run.report(),
        ] {
            std::fs::write(file, "{}\n").unwrap();
        }
        std::fs::write(run.node_log(1), "a log line\n").unwrap();
        std::fs::write(run.node_log(2), "another\n").unwrap();
        let rel = rel_of(store.path(), &run);
        let (addr, server) = serve(store.path()).await;
        let (status, html) = get(format!("http://{addr}/run/{rel}")).await;
        assert_eq!(status, 200);
        let links = hrefs(&html);
        for file in [
            HISTORY_FILE,
            RESULTS_FILE,
            CLUSTER_FILE,
            MINIMAL_FILE,
            REPORT_FILE,
            CONFIG_FILE,
            "nodes/1.log",
            "nodes/2.log",
        ] {
            let wanted = format!("/runs/{rel}/{file}");
            assert!(links.contains(&wanted), "no link to {wanted}: {html}");
        }
        for link in &links {
            let (status, _) = get(format!("http://{addr}{link}")).await;
            assert_eq!(status, 200, "{link}");
        }
        let (_, front) = get(format!("http://{addr}/")).await;
        assert!(front.contains(&format!(r#"href="/run/{rel}""#)), "{front}");
        let (status, _) = get(format!("http://{addr}/run/kv-a/nothing")).await;
        assert_eq!(status, 404);
        let (status, _) = get(format!("http://{addr}/run/../etc")).await;
        assert_ne!(status, 200);
        server.abort();
    }

    #[tokio::test]
    async fn the_campaigns_page_draws_the_trend_and_lists_campaigns() {
        let store = tempfile::tempdir().unwrap();
        let (addr, server) = serve(store.path()).await;
        let (status, empty) = get(format!("http://{addr}/campaigns")).await;
        assert_eq!(status, 200);
        assert!(empty.contains("No campaigns"), "{empty}");
        let record = crate::campaign::record::CampaignRecord {
            name: "nightly".into(),
            mode: "matrix".into(),
            started: "2026-11-23T01:00:00Z".into(),
            finished: None,
            shard: None,
            matrix_size: 0,
            time_limit_ms: 30_000,
            budget_ms: None,
            store: "histories".into(),
            runs: vec![],
            merged_from: vec![],
            detection: vec![],
        };
        let dir = store
            .path()
            .join(crate::campaign::CAMPAIGNS_DIR)
            .join("nightly-1");
        crate::campaign::render::write_all(&record, &dir).unwrap();
        let (status, html) = get(format!("http://{addr}/campaigns")).await;
        assert_eq!(status, 200);
        assert!(html.contains(r#"<svg id="trend""#), "{html}");
        assert!(html.contains("<td>2026-11-23</td>"), "{html}");
        for link in hrefs(&html) {
            let (status, _) = get(format!("http://{addr}{link}")).await;
            assert_eq!(status, 200, "{link}");
        }
        server.abort();
    }
}
