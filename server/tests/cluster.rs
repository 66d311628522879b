//! Three real `riptide-server` processes: redirects, `kill -9` of the leader, failover,
//! durability of acknowledged writes, catch-up of the restarted node, exactly-once retries.

mod common;

use std::collections::BTreeMap;

use common::{poll, stop_writers, writer, Cluster, DEADLINE};
use reqwest::StatusCode;
use serde_json::Value;

async fn get(cluster: &Cluster, id: u64, key: &str) -> (StatusCode, String) {
    cluster.get_text(id, &format!("kv/{key}")).await
}

async fn append_with_id(
    cluster: &Cluster,
    id: u64,
    key: &str,
    suffix: &str,
    request_id: &str,
) -> Value {
    let response = cluster
        .http
        .post(format!("{}/kv/{key}/append", cluster.url(id)))
        .header("Request-Id", request_id)
        .body(suffix.to_string())
        .send()
        .await
        .expect("POST append");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("append answers JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keeps_acknowledged_writes_across_a_leader_kill_and_catches_up_the_restarted_node()
{
    let mut cluster = Cluster::new(3);
    cluster.start_all();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    let follower = (1..=3).find(|&id| id != leader).unwrap();

    // A write sent to a follower is redirected to the leader with the same path and query...
    let response = cluster
        .http_no_redirect
        .put(format!("{}/kv/via-follower", cluster.url(follower)))
        .body("v0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("{}/kv/via-follower", cluster.url(leader)));
    // ...and following it (method and body kept) writes the value.
    let response = cluster.http.put(&location).body("v0").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A client that follows redirects by itself (like curl -L) gets there too.
    let (status, _) = cluster.put(follower, "via-follower-auto", "v1").await;
    assert_eq!(status, StatusCode::OK);

    let mut acknowledged = BTreeMap::new();
    acknowledged.insert("via-follower".to_string(), "v0".to_string());
    acknowledged.insert("via-follower-auto".to_string(), "v1".to_string());
    for i in 0..30 {
        let (key, value) = (format!("key-{i}"), format!("value-{i}"));
        let (status, body) = cluster.put(leader, &key, &value).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        acknowledged.insert(key, value);
    }

    // A write with a Request-Id, retried: applied once, the retry gets the first result.
    let first = append_with_id(&cluster, leader, "log", "x", "client-a:1").await;
    let retry = append_with_id(&cluster, leader, "log", "x", "client-a:1").await;
    assert_eq!(first["duplicate"], false);
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["index"], first["index"]);
    assert_eq!(retry["length"], 1);
    assert_eq!(
        get(&cluster, leader, "log").await,
        (StatusCode::OK, "x".into())
    );

    // kill -9 the leader; the other two elect a new one.
    cluster.kill(leader);
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let new_leader = cluster.wait_for_leader(&survivors).await;
    assert_ne!(new_leader, leader);

    // Every acknowledged value is still there (linearizable reads through the new leader).
    for (key, value) in &acknowledged {
        assert_eq!(
            get(&cluster, new_leader, key).await,
            (StatusCode::OK, value.clone()),
            "key {key}"
        );
    }
    // The retry after the leader change is still answered from the replicated session table.
    let retry = append_with_id(&cluster, new_leader, "log", "x", "client-a:1").await;
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["index"], first["index"]);
    assert_eq!(
        get(&cluster, new_leader, "log").await,
        (StatusCode::OK, "x".into())
    );

    let (status, _) = cluster.put(new_leader, "after-failover", "yes").await;
    assert_eq!(status, StatusCode::OK);

    // The killed node restarts from its data dir and catches up.
    cluster.start(leader);
    let target = cluster.status(new_leader).await.unwrap()["applied_index"]
        .as_u64()
        .unwrap();
    cluster.wait_for_applied(leader, target).await;
    let stale = poll("a stale read on the restarted node", DEADLINE, || async {
        let response = cluster
            .http
            .get(format!("{}/kv/after-failover?stale", cluster.url(leader)))
            .send()
            .await
            .ok()?;
        (response.status() == StatusCode::OK).then_some(response.text().await.ok()?)
    })
    .await;
    assert_eq!(stale, "yes");
    for (key, value) in &acknowledged {
        let response = cluster
            .http
            .get(format!("{}/kv/{key}?stale", cluster.url(leader)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), *value, "key {key}");
    }
    // Every node applied the same log: once all stand at the same applied index (no writes
    // now), their applied digests are equal, the restarted node's included.
    let digests = poll("every node at one applied index", DEADLINE, || async {
        let mut seen = Vec::new();
        for id in 1..=3 {
            let status = cluster.status(id).await?;
            seen.push((
                status["applied_index"].as_u64()?,
                status["applied_digest"].as_str()?.to_string(),
            ));
        }
        seen.iter().all(|s| s.0 == seen[0].0).then_some(seen)
    })
    .await;
    assert!(
        digests.iter().all(|d| d.1 == digests[0].1),
        "replicas diverged: {digests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_acknowledged_under_concurrent_load_survive_a_kill_of_the_leader() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let mut cluster = Cluster::new(3);
    cluster.start_all();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    let urls: Vec<String> = (1..=3).map(|id| cluster.url(id)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| tokio::spawn(writer(cluster.http.clone(), urls.clone(), w, stop.clone())))
        .collect();

    // Let writes flow, then kill -9 the leader in the middle of them.
    poll("some writes to commit", DEADLINE, || async {
        let status = cluster.status(leader).await?;
        (status["commit_index"].as_u64()? > 200).then_some(())
    })
    .await;
    cluster.kill(leader);
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let new_leader = cluster.wait_for_leader(&survivors).await;
    // Keep writing until the new leader has taken writes of its own.
    cluster.wait_for_more_commits(new_leader, 100).await;
    let acknowledged = stop_writers(&stop, writers, 300).await;
    cluster
        .assert_keys_hold_themselves(new_leader, &acknowledged)
        .await;
}
