//! SIGTERM of the leader hands leadership to an up-to-date follower before the process exits,
//! so the cluster does not wait an election timeout for a new leader (rolling restarts).

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use reqwest::StatusCode;

/// Long enough that an election after the leader's last heartbeat takes at least this long:
/// a new leader sooner than [`HANDOVER_BOUND`] can only come from the handover.
const ELECTION_MS: u64 = 3000;
const HANDOVER_BOUND: Duration = Duration::from_millis(2000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_leader_hands_leadership_over_within_an_election_timeout() {
    let mut cluster = Cluster::new(3);
    cluster.extra_args = vec!["--election-ms".to_string(), ELECTION_MS.to_string()];
    cluster.start_all();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    let term = cluster.status(leader).await.unwrap()["term"]
        .as_u64()
        .unwrap();
    let response = cluster
        .http
        .put(format!("{}/kv/before", cluster.url(leader)))
        .body("stop")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();

    let stopped_at = Instant::now();
    let exit = cluster
        .stop(leader)
        .expect("the leader exits by itself on SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    let new_leader = cluster.wait_for_leader(&others).await;
    let handover = stopped_at.elapsed();
    assert!(
        handover < HANDOVER_BOUND,
        "new leader only after {handover:?} (an election timeout is {ELECTION_MS} ms)"
    );
    // One campaign, started by the handover: the term moved by exactly one.
    let status = cluster.status(new_leader).await.unwrap();
    assert_eq!(status["term"].as_u64().unwrap(), term + 1);
    let log = std::fs::read_to_string(&cluster.node(leader).log_file).unwrap();
    assert!(log.contains("leadership handed over"), "{log}");
    // The acknowledged write is there, and the new leader takes writes.
    let value = cluster
        .http
        .get(format!("{}/kv/before", cluster.url(new_leader)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(value, "stop");
    let response = cluster
        .http
        .put(format!("{}/kv/after", cluster.url(new_leader)))
        .body("go")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    eprintln!("handover took {handover:?}");
}
