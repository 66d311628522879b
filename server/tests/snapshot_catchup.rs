//! Snapshots and log compaction with real processes: a follower that was down while the
//! leader compacted its log (or that lost its whole data directory) is brought up by
//! InstallSnapshot, keeps exactly-once retries, and a node restarts from its snapshot plus the
//! log suffix with a bounded WAL.

mod common;

use common::{poll, Cluster, DEADLINE};
use reqwest::StatusCode;
use serde_json::Value;

/// Low, so a few hundred writes compact the log several times.
const SNAPSHOT_ENTRIES: u64 = 50;
/// Keys the writes cycle through (values are overwritten, as in a real workload).
const KEYS: usize = 40;

/// A cluster that snapshots every [`SNAPSHOT_ENTRIES`] and keeps `catchup_entries` entries
/// before each snapshot for followers slightly behind.
fn cluster_with_window(size: u64, catchup_entries: u64) -> Cluster {
    let mut cluster = Cluster::new(size);
    cluster.extra_args = vec![
        "--snapshot-entries".to_string(),
        SNAPSHOT_ENTRIES.to_string(),
        "--snapshot-catchup-entries".to_string(),
        catchup_entries.to_string(),
    ];
    cluster
}

/// Without a catch-up window: a follower behind the latest snapshot needs InstallSnapshot.
fn cluster(size: u64) -> Cluster {
    cluster_with_window(size, 0)
}

/// PUT that must succeed (through redirects); returns the index it was applied at.
async fn put(cluster: &Cluster, id: u64, key: &str, value: &str) -> u64 {
    let body = cluster.put_ok(id, key, value).await;
    body["index"].as_u64().expect("PUT answers its index")
}

/// An append carrying a Request-Id; returns the answer.
async fn append_with_id(cluster: &Cluster, id: u64, key: &str, request_id: &str) -> Value {
    let response = cluster
        .http
        .post(format!("{}/kv/{key}/append", cluster.url(id)))
        .header("Request-Id", request_id)
        .body("x")
        .send()
        .await
        .expect("POST append");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("append answers JSON")
}

/// The node's own value of `key` (`?stale`: no leader involved), None when absent.
async fn local_value(cluster: &Cluster, id: u64, key: &str) -> Option<String> {
    let (status, body) = cluster.get_text(id, &format!("kv/{key}?stale")).await;
    match status {
        StatusCode::OK => Some(body),
        StatusCode::NOT_FOUND => None,
        other => panic!("GET {key}?stale on node {id}: {other}"),
    }
}

async fn status_field(cluster: &Cluster, id: u64, field: &str) -> u64 {
    poll(&format!("{field} of node {id}"), DEADLINE, || async {
        cluster.status(id).await?[field].as_u64()
    })
    .await
}

/// Writes `count` values over [`KEYS`] keys, tagging each with `round`; returns the last
/// write's index and the value each key must end with.
async fn write_round(
    cluster: &Cluster,
    leader: u64,
    round: &str,
    count: usize,
) -> (u64, Vec<(String, String)>) {
    let mut last = 0;
    let mut expected: Vec<(String, String)> = (0..KEYS)
        .map(|k| (format!("key-{k}"), String::new()))
        .collect();
    for i in 0..count {
        let (key, value) = &mut expected[i % KEYS];
        *value = format!("{round}-{i}");
        last = put(cluster, leader, key, value).await;
    }
    expected.retain(|(_, value)| !value.is_empty());
    (last, expected)
}

/// Asserts node `id` holds every expected value in its own state.
async fn assert_values(cluster: &Cluster, id: u64, expected: &[(String, String)]) {
    for (key, value) in expected {
        assert_eq!(
            local_value(cluster, id, key).await.as_deref(),
            Some(value.as_str()),
            "{key} on node {id}"
        );
    }
}

/// The scenario of both catch-up tests: an append with a Request-Id, node `behind` stopped
/// (and its data dir removed when `wipe`), enough writes that every live node compacts past
/// what `behind` holds, then `behind` restarted. It must catch up by a snapshot, hold the
/// latest values, and still refuse to apply the old Request-Id twice.
async fn follower_catches_up_by_snapshot(wipe: bool) {
    let mut cluster = cluster(3);
    cluster.start_all();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    let behind = (1..=3).find(|&id| id != leader).unwrap();
    let first = append_with_id(&cluster, leader, "dedup", "old-client:1").await;
    let first_index = first["index"].as_u64().unwrap();
    cluster.wait_for_applied(behind, first_index).await;
    let behind_last = status_field(&cluster, behind, "last_index").await;

    cluster.kill(behind);
    if wipe {
        std::fs::remove_dir_all(cluster.data_dir(behind)).unwrap();
    }
    let (last, expected) =
        write_round(&cluster, leader, "round1", 4 * SNAPSHOT_ENTRIES as usize).await;
    // Every live node compacts past the stopped node's log (in the background, so maybe only
    // after the writes), so whichever leads must send it a snapshot.
    for id in (1..=3).filter(|&id| id != behind) {
        cluster.wait_for_snapshot_past(id, behind_last).await;
    }

    cluster.start(behind);
    cluster.wait_for_applied(behind, last).await;
    let installed = poll("the installed-snapshot counter", DEADLINE, || {
        cluster.metric(behind, "riptide_snapshots_installed_total")
    })
    .await;
    assert!(installed >= 1, "node {behind} caught up without a snapshot");
    assert!(status_field(&cluster, behind, "snapshot_index").await > behind_last);
    assert!(
        cluster.data_dir(behind).join("snapshot.bin").exists(),
        "the installed snapshot is durable"
    );
    assert_values(&cluster, behind, &expected).await;
    assert_eq!(
        local_value(&cluster, behind, "dedup").await.as_deref(),
        Some("x")
    );

    // The retry of the first request is answered from the session table, on every node: the
    // restarted one only knows that session from the snapshot.
    let retry = append_with_id(&cluster, leader, "dedup", "old-client:1").await;
    assert_eq!(retry["index"].as_u64(), Some(first_index), "{retry}");
    assert_eq!(retry["length"], first["length"], "{retry}");
    // A later write makes sure the retry's log entry was applied on the restarted node too.
    let after = put(&cluster, leader, "after-retry", "1").await;
    cluster.wait_for_applied(behind, after).await;
    assert_eq!(
        local_value(&cluster, behind, "dedup").await.as_deref(),
        Some("x"),
        "the retry was applied twice on the node restored from a snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_down_while_the_log_is_compacted_catches_up_by_snapshot() {
    follower_catches_up_by_snapshot(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_an_empty_data_dir_catches_up_by_snapshot() {
    follower_catches_up_by_snapshot(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_slightly_behind_catches_up_from_the_catchup_window_without_a_snapshot() {
    // The window outlasts every write of the test, so the leader always has the entries.
    let mut cluster = cluster_with_window(3, 100 * SNAPSHOT_ENTRIES);
    cluster.start_all();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    let behind = (1..=3).find(|&id| id != leader).unwrap();
    let first = put(&cluster, leader, "first", "1").await;
    cluster.wait_for_applied(behind, first).await;
    let behind_last = status_field(&cluster, behind, "last_index").await;

    cluster.kill(behind);
    let (last, expected) =
        write_round(&cluster, leader, "window", 4 * SNAPSHOT_ENTRIES as usize).await;
    cluster.wait_for_snapshot_past(leader, behind_last).await;

    cluster.start(behind);
    cluster.wait_for_applied(behind, last).await;
    let installed = poll("the installed-snapshot counter", DEADLINE, || {
        cluster.metric(behind, "riptide_snapshots_installed_total")
    })
    .await;
    assert_eq!(
        installed, 0,
        "node {behind} was sent a snapshot although the leader still had its entries"
    );
    assert_values(&cluster, behind, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_the_snapshot_and_the_log_suffix_with_a_bounded_wal() {
    let mut cluster = cluster(1);
    cluster.start(1);
    cluster.wait_for_leader(&[1]).await;
    let count = 6 * SNAPSHOT_ENTRIES as usize + 7;
    let (mut last, mut expected) = write_round(&cluster, 1, "restart", count).await;
    // Snapshots are written in the background, one at a time, so while the writes go on the
    // log can run well past the last one. Once they stop, the node snapshots until fewer than
    // SNAPSHOT_ENTRIES applied entries are left after its latest snapshot, and no snapshot is
    // in flight or due any more.
    let snapshot_index = poll(
        "the snapshots to catch up with the writes",
        DEADLINE,
        || async {
            let index = cluster.status(1).await?["snapshot_index"].as_u64()?;
            (index + SNAPSHOT_ENTRIES > last).then_some(index)
        },
    )
    .await;
    let taken = cluster.metric(1, "riptide_snapshots_taken_total").await;
    assert!(
        taken.is_some_and(|taken| taken >= 2),
        "{taken:?} snapshots after {count} writes"
    );
    // The WAL holds only the entries since that snapshot (about 100 bytes each, fewer than
    // SNAPSHOT_ENTRIES of them); without compaction it would hold all ~300.
    let wal_path = cluster.data_dir(1).join("wal.log");
    let wal_bytes = std::fs::metadata(&wal_path).unwrap().len();
    assert_eq!(
        cluster.metric(1, "riptide_wal_bytes").await,
        Some(wal_bytes),
        "the WAL metric is the file's size"
    );
    assert!(
        wal_bytes < 2 * 100 * SNAPSHOT_ENTRIES,
        "WAL of {wal_bytes} bytes after {count} writes, snapshot at {snapshot_index} of {last}"
    );
    if snapshot_index == last {
        // The restart must replay a log suffix: a few writes, too few for another snapshot.
        let (suffix_last, suffix) = write_round(&cluster, 1, "suffix", 7).await;
        last = suffix_last;
        expected.retain(|(key, _)| !suffix.iter().any(|(written, _)| written == key));
        expected.extend(suffix);
    }
    assert_eq!(
        status_field(&cluster, 1, "snapshot_index").await,
        snapshot_index
    );
    assert!(snapshot_index > 0 && snapshot_index < last);

    // kill -9: the restart has only the disk.
    cluster.kill(1);
    cluster.start(1);
    cluster.wait_for_leader(&[1]).await;
    cluster.wait_for_applied(1, last).await;
    // No snapshot was in flight or due at the kill, and the suffix is too short for one.
    assert_eq!(
        status_field(&cluster, 1, "snapshot_index").await,
        snapshot_index,
        "the restart's snapshot"
    );
    assert_eq!(
        cluster.metric(1, "riptide_snapshots_installed_total").await,
        Some(0)
    );
    assert_values(&cluster, 1, &expected).await;
    // Linearizable reads agree, and new writes continue the log after the suffix.
    let next = put(&cluster, 1, "key-0", "after-restart").await;
    assert!(next > last);
    let response = cluster
        .http
        .get(format!("{}/kv/key-0", cluster.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "after-restart");
}
