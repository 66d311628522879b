//! A node partitioned away and rejoining must not change the leader (pre-vote, check-quorum):
//! three real processes; the partition is node restarts with unreachable peer addresses.

mod common;

use std::time::{Duration, Instant};

use common::{poll, Cluster, DEADLINE};

/// Long enough for a cut-off node to time out several times (default election timeout
/// 500 ms, randomised up to 1 s).
const ISOLATION: Duration = Duration::from_secs(4);
/// How long the rejoined cluster is watched for a change of leader or term.
const WATCH: Duration = Duration::from_secs(3);

/// What happened around the partition.
struct Outcome {
    leader: u64,
    term_before: u64,
    /// The cut-off node's highest term while isolated, and whether it was seen trying to get
    /// elected (pre-candidate or candidate).
    isolated_max_term: u64,
    isolated_tried: bool,
    /// (leader, term) of every node, polled after the rejoin.
    after: Vec<(u64, Option<u64>, u64)>,
}

/// Cuts a follower off for [`ISOLATION`] while the majority keeps writing, restarts it with
/// its real peers and the same data dir, waits until it caught up, then watches the cluster.
async fn partition_and_rejoin_a_follower(extra_args: &[&str]) -> Outcome {
    let mut cluster = Cluster::new(3);
    cluster.extra_args = extra_args.iter().map(|a| a.to_string()).collect();
    cluster.start_all();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    let isolated = (1..=3).find(|&id| id != leader).unwrap();
    cluster.put_ok(leader, "before", "1").await;
    let term_before = cluster.status(leader).await.unwrap()["term"]
        .as_u64()
        .unwrap();

    cluster.kill(isolated);
    cluster.start_isolated(isolated);
    let mut isolated_max_term = 0;
    let mut isolated_tried = false;
    let end = Instant::now() + ISOLATION;
    while Instant::now() < end {
        if let Some(status) = cluster.status(isolated).await {
            isolated_max_term = isolated_max_term.max(status["term"].as_u64().unwrap());
            isolated_tried |= status["role"] == "precandidate" || status["role"] == "candidate";
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The majority kept working meanwhile.
    let written = cluster.put_ok(leader, "during", "2").await["index"]
        .as_u64()
        .unwrap();

    cluster.kill(isolated);
    cluster.start(isolated);
    cluster.wait_for_applied(isolated, written).await;
    let mut after = Vec::new();
    let end = Instant::now() + WATCH;
    while Instant::now() < end {
        for id in 1..=3 {
            let status = poll("a status", DEADLINE, || cluster.status(id)).await;
            after.push((
                id,
                status["leader"].as_u64(),
                status["term"].as_u64().unwrap(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Outcome {
        leader,
        term_before,
        isolated_max_term,
        isolated_tried,
        after,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_partitioned_away_and_rejoining_does_not_change_the_leader() {
    let outcome = partition_and_rejoin_a_follower(&[]).await;
    assert!(outcome.isolated_tried, "the cut-off node never timed out");
    // Cut off, it only asked for pre-votes: its term never moved...
    assert_eq!(outcome.isolated_max_term, outcome.term_before);
    // ...so on rejoining it simply follows the leader it had.
    for &(id, leader, term) in &outcome.after {
        assert_eq!(
            (leader, term),
            (Some(outcome.leader), outcome.term_before),
            "node {id} after the rejoin"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pre_vote_a_rejoining_node_forces_a_new_term() {
    // The contrast that shows the test above can fail: classic Raft lets the cut-off node
    // campaign its term up, and that term deposes the leader when it comes back.
    let outcome = partition_and_rejoin_a_follower(&["--no-pre-vote", "--no-check-quorum"]).await;
    assert!(outcome.isolated_max_term > outcome.term_before);
    let (_, _, last_term) = *outcome.after.last().unwrap();
    assert!(last_term > outcome.term_before);
}
