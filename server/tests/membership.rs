//! Membership changes on real `riptide-server` processes: the `/cluster/members` API and its
//! answers, replacing a node under write load, removing the leader, and a learner catching up
//! by snapshot on a cluster of 100,000 keys.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{poll, stop_writers, writer, Cluster, DEADLINE};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The status and JSON body of an answer (`Null` when not JSON).
async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `POST /cluster/members` on node `id` (redirects followed).
async fn post_member(cluster: &Cluster, id: u64, body: &Value) -> (StatusCode, Value) {
    let response = cluster
        .http
        .post(format!("{}/cluster/members", cluster.url(id)))
        .json(body)
        .send()
        .await
        .expect("POST /cluster/members");
    answer(response).await
}

/// `DELETE /cluster/members/{member}` on node `id` (redirects followed).
async fn delete_member(cluster: &Cluster, id: u64, member: u64) -> (StatusCode, Value) {
    let response = cluster
        .http
        .delete(format!("{}/cluster/members/{member}", cluster.url(id)))
        .send()
        .await
        .expect("DELETE /cluster/members");
    answer(response).await
}

/// A change that must succeed, retried while the answer says retry (409, 503, 504).
async fn change_until_ok<F, Fut>(what: &str, mut change: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (StatusCode, Value)>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = change().await;
        match status {
            StatusCode::OK => return body,
            StatusCode::CONFLICT
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            _ => panic!("{what}: {status} {body}"),
        }
    }
}

/// Node `id`'s `/status` role of `member` in its configuration (`voter`, `learner`, None).
async fn role_of(cluster: &Cluster, id: u64, member: u64) -> Option<String> {
    let status = cluster.status(id).await?;
    status["members"][member.to_string()]
        .as_str()
        .map(str::to_string)
}

/// The ids in a members list, with their roles.
fn roles(members: &Value) -> Vec<(u64, String)> {
    members["members"]
        .as_array()
        .expect("a members list")
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["role"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn peer_addr(cluster: &Cluster, id: u64) -> String {
    format!("127.0.0.1:{}", cluster.node(id).peer_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_api_redirects_from_a_follower_and_refuses_bad_changes_with_their_reason() {
    let mut cluster = Cluster::with_spares(3, 3);
    for id in 1..=3 {
        cluster.start(id);
    }
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let other = (1..=3).find(|&id| id != leader && id != follower).unwrap();
    // The leader takes changes once it committed in its term.
    cluster.put_ok(leader, "warm-up", "x").await;

    // Any node lists its view; only the leader knows match indexes.
    let listed: Value = cluster
        .http
        .get(format!("{}/cluster/members", cluster.url(follower)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        roles(&listed),
        vec![
            (1, "voter".into()),
            (2, "voter".into()),
            (3, "voter".into())
        ]
    );
    assert_eq!(listed["leader"], leader);
    assert_eq!(listed["committed"], true);
    assert!(listed["members"][0]["match_index"].is_null(), "{listed}");
    assert_eq!(
        listed["members"][(leader - 1) as usize]["client_url"],
        cluster.url(leader)
    );

    // A follower redirects a change to the leader, same path.
    let add_4 = json!({"id": 4, "peer_addr": peer_addr(&cluster, 4), "client_url": cluster.url(4)});
    let response = cluster
        .http_no_redirect
        .post(format!("{}/cluster/members", cluster.url(follower)))
        .json(&add_4)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        format!("{}/cluster/members", cluster.url(leader))
    );

    // Followed, it adds node 4 (never started) as a learner, answered once committed.
    let added = change_until_ok("add 4", || post_member(&cluster, follower, &add_4)).await;
    assert_eq!(roles(&added)[3], (4, "learner".into()), "{added}");
    assert!(added["members"][3]["match_index"].is_u64(), "{added}");
    assert_eq!(added["members"][3]["peer_addr"], peer_addr(&cluster, 4));
    assert_eq!(added["committed"], true);
    assert_eq!(
        role_of(&cluster, leader, 4).await.as_deref(),
        Some("learner")
    );
    let status = cluster.status(leader).await.unwrap();
    assert_eq!(status["membership_committed"], true);
    assert_eq!(status["membership_index"], added["membership_index"]);
    // Every node learns it from the log.
    poll("node 4 in every node's view", DEADLINE, || async {
        for id in 1..=3 {
            (role_of(&cluster, id, 4).await.as_deref() == Some("learner")).then_some(())?;
        }
        Some(())
    })
    .await;

    // A learner that never caught up cannot be promoted yet: 409, retryable.
    let (status, body) = post_member(&cluster, leader, &json!({"id": 4, "promote": true})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["reason"], "learner_behind");
    assert_eq!(body["retryable"], true);

    // Refusals that will never succeed: 400 with their reason, nothing changes.
    let index_before = cluster.status(leader).await.unwrap()["membership_index"].clone();
    let refusals = [
        (delete_member(&cluster, leader, 99).await, "not_member"),
        (
            post_member(
                &cluster,
                leader,
                &json!({"id": 0, "peer_addr": "127.0.0.1:1"}),
            )
            .await,
            "invalid_id",
        ),
        (
            post_member(
                &cluster,
                leader,
                &json!({"id": 1, "peer_addr": "127.0.0.1:1"}),
            )
            .await,
            "already_member",
        ),
        (
            post_member(&cluster, leader, &json!({"id": other, "promote": true})).await,
            "not_learner",
        ),
    ];
    for ((status, body), reason) in refusals {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reason}: {body}");
        assert_eq!(body["reason"], reason, "{body}");
        assert_eq!(body["retryable"], false, "{body}");
    }
    for bad in [
        "{\"id\":",
        "{\"id\":7}",
        "{\"id\":7,\"colour\":\"red\"}",
        "[]",
    ] {
        let response = cluster
            .http
            .post(format!("{}/cluster/members", cluster.url(leader)))
            .body(bad)
            .send()
            .await
            .unwrap();
        let (status, body) = answer(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let response = cluster
        .http
        .delete(format!("{}/cluster/members/abc", cluster.url(leader)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let status = cluster.status(leader).await.unwrap();
    assert_eq!(status["membership_index"], index_before);

    // A learner can be removed.
    let removed = change_until_ok("remove 4", || delete_member(&cluster, leader, 4)).await;
    assert!(roles(&removed).iter().all(|(id, _)| *id != 4), "{removed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_refused_by_the_cluster_stops_the_node_with_the_reason() {
    let mut cluster = Cluster::with_spares(1, 1);
    cluster.start(1);
    cluster.wait_for_leader(&[1]).await;
    cluster.start_joining(2, 1, &["--client-url", "ftp://nowhere"]);
    let exit = cluster.wait_for_exit(2);
    assert!(!exit.success(), "{exit}");
    let log = std::fs::read_to_string(&cluster.node(2).log_file).unwrap();
    assert!(
        log.contains("joining the cluster failed")
            && log.contains("refused to add this node as a learner: HTTP 400")
            && log.contains("client_url must be an http:// URL"),
        "{log}"
    );
    assert_eq!(role_of(&cluster, 1, 2).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_change_while_one_is_in_flight_is_refused_and_the_first_ends_unknown() {
    let mut cluster = Cluster::with_spares(3, 2);
    // A long election timeout: the leader, cut off below, keeps leading (check-quorum) for
    // at least one of them, while the test makes its two requests.
    cluster.extra_args = vec!["--election-ms=3000".into()];
    for id in 1..=3 {
        cluster.start(id);
    }
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    cluster.put_ok(leader, "warm-up", "x").await;
    for id in (1..=3).filter(|&id| id != leader) {
        cluster.kill(id);
    }
    // Adding a learner needs no active quorum to be proposed, but cannot commit now.
    let add_4 = json!({"id": 4, "peer_addr": peer_addr(&cluster, 4)});
    let first = {
        let (http, url) = (cluster.http.clone(), cluster.url(leader));
        tokio::spawn(async move {
            let response = http
                .post(format!("{url}/cluster/members"))
                .json(&add_4)
                .send()
                .await
                .expect("POST");
            answer(response).await
        })
    };
    poll("the first change in flight", DEADLINE, || async {
        let status = cluster.status(leader).await?;
        (status["members"]["4"] == "learner" && status["membership_committed"] == false)
            .then_some(())
    })
    .await;
    let add_5 = json!({"id": 5, "peer_addr": peer_addr(&cluster, 5)});
    let (status, body) = post_member(&cluster, leader, &add_5).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["reason"], "in_flight");
    assert_eq!(body["retryable"], true);
    // The first never commits: its outcome is unknown (leadership lost, or the timeout).
    let (status, body) = first.await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["proposed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_voter_cannot_be_removed() {
    let mut cluster = Cluster::new(1);
    cluster.start(1);
    cluster.wait_for_leader(&[1]).await;
    cluster.put_ok(1, "k", "v").await;
    let (status, body) = delete_member(&cluster, 1, 1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["reason"], "last_voter");
    assert_eq!(role_of(&cluster, 1, 1).await.as_deref(), Some("voter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_node_under_write_load_loses_no_acknowledged_write() {
    let mut cluster = Cluster::with_spares(3, 1);
    for id in 1..=3 {
        cluster.start(id);
    }
    cluster.wait_for_leader(&[1, 2, 3]).await;
    // The writers go through nodes 1 and 2, which stay members throughout.
    let urls = vec![cluster.url(1), cluster.url(2)];
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(writer(cluster.http.clone(), urls.clone(), w, stop.clone())))
        .collect();
    poll("some writes to commit", DEADLINE, || async {
        let status = cluster.status(1).await?;
        (status["commit_index"].as_u64()? > 100).then_some(())
    })
    .await;

    // Remove node 3 (the leader or not), then stop it.
    let removed = change_until_ok("remove 3", || delete_member(&cluster, 1, 3)).await;
    assert_eq!(
        roles(&removed),
        vec![(1, "voter".into()), (2, "voter".into())]
    );
    cluster.stop(3);

    // Node 4 joins with an empty data dir, catches up and promotes itself.
    cluster.start_joining(4, 1, &[]);
    poll("node 4 to be a voter", DEADLINE, || async {
        (role_of(&cluster, 1, 4).await.as_deref() == Some("voter")).then_some(())
    })
    .await;
    let leader = cluster.wait_for_leader(&[1, 2, 4]).await;
    // Writes keep being acknowledged in the new configuration.
    cluster.wait_for_more_commits(leader, 100).await;
    let acknowledged = stop_writers(&stop, writers, 200).await;
    let leader = cluster.wait_for_leader(&[1, 2, 4]).await;
    cluster
        .assert_keys_hold_themselves(leader, &acknowledged)
        .await;
    // Restarted with the same --join, node 4 is not added again.
    let index = cluster.status(leader).await.unwrap()["membership_index"].clone();
    cluster.stop(4);
    cluster.start(4);
    poll("node 4 back", DEADLINE, || async {
        let log = std::fs::read_to_string(&cluster.node(4).log_file).ok()?;
        log.contains("already names it a member").then_some(())
    })
    .await;
    let leader = cluster.wait_for_leader(&[1, 2, 4]).await;
    let status = cluster.status(leader).await.unwrap();
    assert_eq!(status["membership_index"], index, "{status}");
    assert_eq!(status["members"]["4"], "voter", "{status}");

    // The new node holds them too.
    let target = cluster.status(leader).await.unwrap()["commit_index"]
        .as_u64()
        .unwrap();
    cluster.wait_for_applied(4, target).await;
    let last = acknowledged.last().unwrap();
    let (status, value) = cluster.get_text(4, &format!("kv/{last}?stale")).await;
    assert_eq!((status, value.as_str()), (StatusCode::OK, last.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_leader_elects_another_that_keeps_taking_writes() {
    let mut cluster = Cluster::new(3);
    cluster.start_all();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    cluster.put_ok(leader, "before", "1").await;

    let removed = change_until_ok("remove the leader", || {
        delete_member(&cluster, leader, leader)
    })
    .await;
    assert!(
        roles(&removed).iter().all(|(id, _)| *id != leader),
        "{removed}"
    );
    let rest: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let new_leader = cluster.wait_for_leader(&rest).await;
    assert_ne!(new_leader, leader);
    for i in 0..20 {
        cluster.put_ok(new_leader, &format!("after-{i}"), "2").await;
    }
    let (status, value) = cluster.get_text(new_leader, "kv/before").await;
    assert_eq!((status, value.as_str()), (StatusCode::OK, "1"));
    // The removed node stopped leading and never leads again.
    let status = cluster
        .status(leader)
        .await
        .expect("the removed node answers");
    assert_ne!(status["role"], "leader", "{status}");
    assert!(
        status["members"].get(leader.to_string()).is_none(),
        "{status}"
    );
    for id in &rest {
        assert_eq!(role_of(&cluster, *id, leader).await, None);
    }
}

/// Writes `count` keys `bulk-{i}` with `clients` concurrent clients to `id`.
async fn write_bulk(cluster: &Cluster, id: u64, count: u64, clients: u64) {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, next) = (cluster.http.clone(), cluster.url(id), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    let response = http
                        .put(format!("{url}/kv/bulk-{i}"))
                        .body(format!("v{i}"))
                        .send()
                        .await
                        .expect("PUT");
                    assert_eq!(response.status(), StatusCode::OK, "bulk-{i}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a bulk writer failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joining_a_cluster_of_100k_keys_catches_up_by_snapshot_while_writes_continue() {
    let mut cluster = Cluster::with_spares(3, 1);
    for id in 1..=3 {
        cluster.start(id);
    }
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    let started = Instant::now();
    write_bulk(&cluster, leader, 100_000, 64).await;
    eprintln!("100,000 keys written in {:?}", started.elapsed());
    // The leader compacted its log (default --snapshot-entries 10000).
    cluster.wait_for_snapshot_past(leader, 0).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let urls = vec![cluster.url(leader)];
            tokio::spawn(writer(cluster.http.clone(), urls, w, stop.clone()))
        })
        .collect();
    let joined = Instant::now();
    cluster.start_joining(4, leader, &["--join-as-learner"]);
    poll("node 4 to install a snapshot", DEADLINE, || async {
        let installed = cluster
            .metric(4, "riptide_snapshots_installed_total")
            .await?;
        (installed >= 1).then_some(())
    })
    .await;
    let target = cluster.status(leader).await.unwrap()["commit_index"]
        .as_u64()
        .unwrap();
    cluster.wait_for_applied(4, target).await;
    eprintln!("node 4 caught up in {:?}", joined.elapsed());
    let acknowledged = stop_writers(&stop, writers, 0).await;

    // It stays a learner and holds the bulk keys and the writes made while it caught up.
    assert_eq!(
        role_of(&cluster, leader, 4).await.as_deref(),
        Some("learner")
    );
    for key in ["bulk-0", "bulk-54321", "bulk-99999"] {
        let (status, value) = cluster.get_text(4, &format!("kv/{key}?stale")).await;
        assert_eq!(status, StatusCode::OK, "{key}");
        assert_eq!(value, format!("v{}", &key[5..]));
    }
    let last = acknowledged.last().unwrap();
    let value = poll("the last write on node 4", DEADLINE, || async {
        let (status, value) = cluster.get_text(4, &format!("kv/{last}?stale")).await;
        (status == StatusCode::OK).then_some(value)
    })
    .await;
    assert_eq!(value, *last);
}
