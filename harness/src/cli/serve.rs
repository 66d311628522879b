//! `riptide serve`: a small web server over the store of results.
//!
//! `/` lists the campaigns (each linking to its index page), then every run (test, start,
//! seed, nemesis, workload, ops, verdict), failing runs first, with links to each report and
//! raw file; `/runs/<test>/<run>/<file>` serves the files of a run (reports, histories, node
//! logs). Only files inside the store are served.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::report::esc;
use crate::store::list_runs;

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
        .route("/runs/{*path}", get(file))
        .with_state(Arc::new(store))
}

async fn index(State(store): State<Arc<PathBuf>>) -> Response {
    let store = store.as_ref().clone();
    let campaigns = crate::campaign::render::serve_section(&store);
    let runs = match tokio::task::spawn_blocking(move || list_runs(&store)).await {
        Ok(Ok(runs)) => runs,
        Ok(Err(e)) => return (StatusCode::NOT_FOUND, e.to_string()).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let mut html = String::from(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>riptide runs</title><style>
body{font-family:sans-serif;margin:20px} table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:4px 8px;font-size:13px;text-align:left}
.v-linearizable{background:#d9f2e1} .v-not-linearizable,.v-run-failed{background:#f9d6da} .v-unknown,.v-incomplete{background:#fbecd0}
</style></head><body><h1>riptide runs</h1>"#,
    );
    // Campaigns first (each links to its index page), then every run.
    html.push_str(&campaigns);
    html.push_str(&format!("<p>{} runs, failing first.</p>", runs.len()));
    html.push_str("<table><tr><th>verdict</th><th>test</th><th>started</th><th>seed</th><th>workload</th><th>nemesis</th><th>ops</th><th>files</th></tr>");
    for r in &runs {
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
            r#"<tr class="{class}"><td><a href="{base}/report.html"><b>{}</b></a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(r.verdict_name()),
            esc(&r.test),
            esc(r.started.as_deref().unwrap_or(&r.run)),
            r.seed.map(|s| s.to_string()).unwrap_or_default(),
            esc(r.workload.as_deref().unwrap_or("")),
            esc(r.nemesis.as_deref().unwrap_or("")),
            r.ops.map(|s| s.to_string()).unwrap_or_default(),
            files.join(" "),
            base = esc(&base),
        ));
    }
    html.push_str("</table></body></html>");
    Html(html).into_response()
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
        let rel = run
            .path
            .strip_prefix(store.path())
            .unwrap()
            .display()
            .to_string();
        let report = reqwest::get(format!("http://{addr}/runs/{rel}/report.html"))
            .await
            .unwrap();
        assert_eq!(report.status(), 200);
        assert_eq!(report.text().await.unwrap(), "<html>report</html>");
        server.abort();
    }
}
