//! What every node said of itself during the run, about every 100 ms, in `cluster.jsonl`:
//! role, term, the leader it follows, commit and applied index with the applied digest (each
//! answer also goes to the run's [`DigestBook`]), or that it did not answer
//! (killed, paused, or too slow: that is information too). With the history's faults it shows
//! who led when, so a stale read from a follower and one from a deposed leader can be told
//! apart.
//!
//! One task per node, so a paused node (whose `/status` waits for the client's timeout) leaves
//! a gap in its own lane only. Times are nanoseconds since the history's origin, as in
//! `history.jsonl`.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::cluster::Cluster;
use super::recorder::Recorder;
use super::replicas::DigestBook;

/// How often each node is asked.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// One line of `cluster.jsonl`.
#[derive(Debug, Serialize)]
struct Sample<'a> {
    /// Nanoseconds since the history's origin, when the answer came (or did not).
    time: u64,
    /// `n1`, `n2`, ...
    node: String,
    answered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied_digest: Option<&'a str>,
}

/// Samples every node of `cluster` into `path` and `digests` until the returned tasks are
/// aborted (the engine does at the end of the workload). A file that cannot be written ends
/// the sampling with a warning; the run goes on.
pub fn start(
    cluster: Arc<Cluster>,
    recorder: Recorder,
    path: &Path,
    digests: Arc<Mutex<DigestBook>>,
) -> std::io::Result<tokio::task::JoinSet<()>> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let file = Arc::new(Mutex::new(file));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..cluster.nodes.len() {
        let (cluster, recorder, file) = (cluster.clone(), recorder.clone(), file.clone());
        let digests = digests.clone();
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval(SAMPLE_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut samples: u64 = 0;
            loop {
                ticker.tick().await;
                // A spare slot has no lane until a membership fault starts its node.
                let never_started = matches!(
                    cluster.supervisor.lock().await.state(i),
                    Ok(riptide_nemesis::ProcessState::NotStarted)
                );
                if never_started {
                    continue;
                }
                let state = cluster.state_of(i).await;
                let time = recorder.now_ns();
                if let Some(s) = &state {
                    DigestBook::record_state(&digests, i, s, time);
                }
                let sample = Sample {
                    time,
                    node: format!("n{}", i + 1),
                    answered: state.is_some(),
                    role: state.as_ref().map(|s| s.role.as_str()),
                    term: state.as_ref().map(|s| s.term),
                    leader: state
                        .as_ref()
                        .and_then(|s| s.leader)
                        .map(|l| format!("n{l}")),
                    commit_index: state.as_ref().map(|s| s.commit_index),
                    applied_index: state.as_ref().map(|s| s.applied_index),
                    applied_digest: state.as_ref().and_then(|s| s.applied_digest.as_deref()),
                };
                samples += 1;
                let written = match (serde_json::to_string(&sample), file.lock()) {
                    (Ok(line), Ok(mut file)) => writeln!(file, "{line}").and_then(|()| {
                        // Flushed at every tenth sample of node 1 (about once a second), so
                        // an abrupt end loses little without a write per sample.
                        if i == 0 && samples.is_multiple_of(10) {
                            file.flush()
                        } else {
                            Ok(())
                        }
                    }),
                    _ => Ok(()),
                };
                if let Err(e) = written {
                    tracing::warn!("cluster.jsonl: {e}; no more samples");
                    return;
                }
            }
        });
    }
    // The last samples reach the file when the last task (and its Arc of the writer) is gone.
    Ok(tasks)
}
