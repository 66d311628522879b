//! The report and `riptide serve`'s pages as a person sees them: a real failing run (planted
//! bug `stale-follower-reads`), served by a real `riptide serve` on a port of its own, opened
//! in Debian's Chromium at 1280 px through the DevTools protocol (`headless_chrome`). Each page
//! must load without a script error and without horizontal overflow of the page; the report's
//! failing operation must be in view (inside the window and inside its scroll box); every link
//! of the index, run and campaigns pages must answer 200.
//!
//! Chromium is found as `CHROME` or `chromium` on the PATH (`.ci/run` installs Debian's
//! `chromium`); without it the test fails and says so, it is never skipped.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions, Tab};

/// `riptide serve`, killed when dropped (also when an assertion fails).
struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `riptide serve` on port 0 and reads the address it printed.
fn serve(store: &std::path::Path) -> Serve {
    let mut child = Command::new(common::riptide_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning riptide serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut serve = Serve {
        child,
        base: String::new(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("http://") {
                let url = line[at..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let _ = tx.send(url);
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("riptide serve printed its address");
    serve.base = url.trim_end_matches('/').to_string();
    serve
}

fn chromium() -> Browser {
    // CHROME, else Chrome or Chromium on the PATH (.ci/run installs Debian's chromium).
    let path = headless_chrome::browser::default_executable()
        .unwrap_or_else(|e| panic!("no Chromium to drive: {e}"));
    let options = LaunchOptions::default_builder()
        .path(Some(path))
        .headless(true)
        // Root in CI containers: Chromium's sandbox needs user namespaces it may not have.
        .sandbox(false)
        .window_size(Some((1280, 900)))
        .idle_browser_timeout(Duration::from_secs(300))
        .build()
        .expect("launch options");
    Browser::new(options).expect("starting Chromium")
}

/// Opens `url` in a new tab and returns it with the script errors it raised so far.
fn open(browser: &Browser, url: &str) -> (Arc<Tab>, Arc<Mutex<Vec<String>>>) {
    let tab = browser.new_tab().expect("a tab");
    tab.set_default_timeout(Duration::from_secs(60));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = errors.clone();
    tab.enable_runtime().expect("Runtime domain");
    tab.add_event_listener(Arc::new(move |event: &Event| {
        if let Event::RuntimeExceptionThrown(e) = event {
            let d = &e.params.exception_details;
            sink.lock().expect("error list").push(format!(
                "{} at {}:{}",
                d.text, d.line_number, d.column_number
            ));
        }
    }))
    .expect("listening for exceptions");
    tab.navigate_to(url).expect("navigating");
    tab.wait_until_navigated().expect("page loaded");
    (tab, errors)
}

/// The value of `js` (awaited when a promise), through JSON: the protocol returns objects by
/// reference, so the page serialises the result itself.
fn eval(tab: &Tab, js: &str) -> serde_json::Value {
    let wrapped = format!("Promise.resolve({js}).then(v => JSON.stringify(v))");
    let text = tab
        .evaluate(&wrapped, true)
        .unwrap_or_else(|e| panic!("evaluating {js}: {e}"))
        .value
        .unwrap_or(serde_json::Value::Null);
    serde_json::from_str(text.as_str().unwrap_or("null")).unwrap_or(serde_json::Value::Null)
}

/// No script error, and the page itself is no wider than the window.
fn assert_page_fits(tab: &Tab, errors: &Mutex<Vec<String>>, what: &str) {
    let widths = eval(
        tab,
        "[document.documentElement.scrollWidth, window.innerWidth]",
    );
    let (scroll, inner) = (
        widths[0].as_f64().unwrap_or(0.0),
        widths[1].as_f64().unwrap_or(0.0),
    );
    assert!(inner >= 1200.0, "{what}: window {inner} px wide");
    assert!(
        scroll <= inner,
        "{what}: the page is {scroll} px wide in a {inner} px window"
    );
    let errors = errors.lock().expect("error list");
    assert!(errors.is_empty(), "{what}: script errors {errors:?}");
}

/// Every link of the page answers 200 (fetched by the page, so relative links resolve as a
/// person's click would).
fn assert_links_answer(tab: &Tab, what: &str) -> usize {
    let statuses = eval(
        tab,
        "Promise.all(Array.from(document.links).map(a => a.href)
           .filter(h => h.startsWith(location.origin))
           .map(h => fetch(h).then(r => [h, r.status]).catch(e => [h, String(e)])))",
    );
    let list: Vec<(String, serde_json::Value)> =
        serde_json::from_value(statuses).expect("statuses");
    let bad: Vec<_> = list
        .iter()
        .filter(|(_, s)| s != &serde_json::json!(200))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: links that do not answer 200: {bad:?}"
    );
    list.len()
}

#[test]
fn a_failing_report_and_the_serve_pages_fit_1280px_with_the_failing_operation_in_view() {
    let found = common::stale_follower_read_run();
    let store = found.store.path();
    let run = std::fs::canonicalize(store.join("latest")).expect("latest run");
    let rel = run
        .strip_prefix(std::fs::canonicalize(store).expect("store"))
        .expect("run inside the store")
        .to_str()
        .expect("UTF-8")
        .to_string();
    let server = serve(store);
    let browser = chromium();

    let (tab, errors) = open(&browser, &format!("{}/runs/{rel}/report.html", server.base));
    assert_page_fits(&tab, &errors, "report.html");
    let in_view = eval(
        &tab,
        "(() => { const f = document.getElementById('failing-op');
                  if (!f) return 'no element with id failing-op';
                  const r = f.getBoundingClientRect();
                  const box = f.closest('.svgbox').getBoundingClientRect();
                  const inWindow = r.right > 0 && r.left < innerWidth && r.bottom > 0 && r.top < innerHeight;
                  const inBox = r.right > box.left && r.left < box.right;
                  return inWindow && inBox ? 'visible' : JSON.stringify([r.left, r.top, box.left, box.right, innerWidth, innerHeight]); })()",
    );
    assert_eq!(in_view, "visible", "the failing operation is in view");
    let sentence = eval(&tab, "document.querySelector('p.what').textContent");
    assert!(
        sentence
            .as_str()
            .is_some_and(|s| s.contains(" read ") && s.contains(" from n")),
        "the counterexample says who served the read: {sentence}"
    );

    for page in ["/", &format!("/run/{rel}"), "/campaigns"] {
        let (tab, errors) = open(&browser, &format!("{}{page}", server.base));
        assert_page_fits(&tab, &errors, page);
        let links = assert_links_answer(&tab, page);
        if page != "/campaigns" {
            assert!(links >= 3, "{page}: only {links} links");
        }
    }
}
