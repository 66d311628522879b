//! The HTTP API of a real node: answers, status codes and refusal of bad input.
//!
//! A single-node cluster leads by itself, so every request reaches a leader.

mod common;

use common::Cluster;
use reqwest::StatusCode;
use serde_json::Value;

/// Asserts the response is JSON with an `error` field and the given status.
async fn assert_json_error(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = response.json().await.expect("JSON body");
    assert!(body["error"].is_string(), "{body}");
    body
}

async fn last_index(cluster: &Cluster) -> u64 {
    cluster.status(1).await.unwrap()["last_index"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_serves_every_operation_with_the_documented_answers() {
    let mut cluster = Cluster::new(1);
    cluster.start(1);
    cluster.wait_for_leader(&[1]).await;
    let url = cluster.url(1);
    let http = &cluster.http;

    let missing = http.get(format!("{url}/kv/k")).send().await.unwrap();
    assert_json_error(missing, StatusCode::NOT_FOUND).await;

    let put = http
        .put(format!("{url}/kv/k"))
        .body("one")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let get = http.get(format!("{url}/kv/k")).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.text().await.unwrap(), "one");

    let cas_fail = http
        .put(format!("{url}/kv/k?if-value=two"))
        .body("three")
        .send()
        .await
        .unwrap();
    let body = assert_json_error(cas_fail, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(body["current"], "one");
    let cas_ok = http
        .put(format!("{url}/kv/k?if-value=one"))
        .body("three")
        .send()
        .await
        .unwrap();
    assert_eq!(cas_ok.status(), StatusCode::OK);

    let append = http
        .post(format!("{url}/kv/k/append"))
        .body("+4")
        .send()
        .await
        .unwrap();
    assert_eq!(append.status(), StatusCode::OK);
    let body: Value = append.json().await.unwrap();
    assert_eq!(body["length"], "three+4".len());
    let created = http
        .post(format!("{url}/kv/new/append"))
        .body("a")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::OK);

    let delete = http.delete(format!("{url}/kv/k")).send().await.unwrap();
    assert_eq!(delete.status(), StatusCode::OK);
    let body: Value = delete.json().await.unwrap();
    assert_eq!(body["existed"], true);
    let gone = http.get(format!("{url}/kv/k")).send().await.unwrap();
    assert_json_error(gone, StatusCode::NOT_FOUND).await;

    // Keys are URL path segments, percent-decoded; values are any UTF-8.
    let put = http
        .put(format!("{url}/kv/caf%C3%A9%20key"))
        .body("välue ✓")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let get = http.get(format!("{url}/kv/café key")).send().await.unwrap();
    assert_eq!(get.text().await.unwrap(), "välue ✓");

    let status: Value = http
        .get(format!("{url}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for field in [
        "id",
        "role",
        "term",
        "leader",
        "leader_url",
        "commit_index",
        "applied_index",
        "applied_digest",
        "last_index",
        "peers",
    ] {
        assert!(
            status.get(field).is_some(),
            "/status lacks {field}: {status}"
        );
    }
    assert_eq!(status["role"], "leader");
    // The applied digest is 16 hex digits (a hash chain over the applied entries).
    let digest = status["applied_digest"].as_str().unwrap_or_default();
    assert!(
        digest.len() == 16 && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "{status}"
    );
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("# TYPE riptide_proposals_total counter"),
        "{metrics}"
    );
    assert!(metrics.contains("riptide_is_leader 1"), "{metrics}");
}

/// Every bad request is refused on a node that leads and could propose it: its log stays
/// where it was, and one good write afterwards moves it by exactly one entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_json_and_changes_nothing() {
    let mut cluster = Cluster::new(1);
    cluster.start(1);
    cluster.wait_for_leader(&[1]).await;
    let url = cluster.url(1);
    let http = &cluster.http;
    let put = http
        .put(format!("{url}/kv/k"))
        .body("original")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let leading = cluster.status(1).await.unwrap();
    assert_eq!(leading["role"], "leader", "{leading}");
    let before = last_index(&cluster).await;

    let long_key = "k".repeat(1025);
    let cases: Vec<(reqwest::RequestBuilder, StatusCode)> = vec![
        (
            http.put(format!("{url}/kv/{long_key}")).body("v"),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.get(format!("{url}/kv/{long_key}")),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.put(format!("{url}/kv/k"))
                .body("v".repeat((1 << 20) + 1)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            http.put(format!("{url}/kv/k")).body("v".repeat(3 << 20)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            http.post(format!("{url}/kv/k/append"))
                .body("v".repeat((1 << 20) + 1)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            http.put(format!("{url}/kv/k")).body(vec![0xff, 0xfe]),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.put(format!("{url}/kv/%FF")).body("v"),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.put(format!("{url}/kv/k?bogus=1")).body("v"),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.put(format!("{url}/kv/k?if-value=a&if-value=b"))
                .body("v"),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.get(format!("{url}/kv/k?stale=maybe")),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.delete(format!("{url}/kv/k?stale")),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.put(format!("{url}/kv/k"))
                .header("Request-Id", "no-seq")
                .body("v"),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.put(format!("{url}/kv/k"))
                .header("Request-Id", "c:-1")
                .body("v"),
            StatusCode::BAD_REQUEST,
        ),
        (
            http.delete(format!("{url}/kv/k"))
                .header("Request-Id", ":3"),
            StatusCode::BAD_REQUEST,
        ),
        (http.get(format!("{url}/nowhere")), StatusCode::NOT_FOUND),
    ];
    for (i, (request, status)) in cases.into_iter().enumerate() {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(response.status(), status, "case {i}");
        assert_json_error(response, status).await;
    }

    let after = cluster.status(1).await.unwrap();
    assert_eq!(after["role"], "leader", "{after}");
    assert_eq!(after["term"], leading["term"], "{after}");
    assert_eq!(
        after["last_index"], before,
        "bad input reached the log: {after}"
    );
    let get = http.get(format!("{url}/kv/k")).send().await.unwrap();
    assert_eq!(get.text().await.unwrap(), "original");
    // The same leader still proposes what is valid: the count above could have moved.
    let put = http
        .put(format!("{url}/kv/k"))
        .body("changed")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(last_index(&cluster).await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_leader_writes_get_503_with_retry_after_and_nothing_proposed() {
    // Node 1 of a 3-node cluster, alone: it can never win an election.
    let mut cluster = Cluster::new(3);
    cluster.start(1);
    common::poll("node 1 to answer", common::DEADLINE, || cluster.status(1)).await;
    for request in [
        cluster
            .http
            .put(format!("{}/kv/k", cluster.url(1)))
            .body("v"),
        cluster.http.get(format!("{}/kv/k", cluster.url(1))),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["retry-after"], "1");
        let body = assert_json_error(response, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(body["proposed"], false);
    }
    // "Nothing proposed" must hold once a leader exists too: the refused write was not kept
    // somewhere and proposed later. The leader's log holds its no-op only.
    cluster.start(2);
    let leader = cluster.wait_for_leader(&[1, 2]).await;
    let status = common::poll("the leader's no-op to commit", common::DEADLINE, || async {
        cluster
            .status(leader)
            .await
            .filter(|s| s["commit_index"].as_u64() >= Some(1))
    })
    .await;
    assert_eq!(status["last_index"], 1, "{status}");
    let get = cluster.http.get(format!("{}/kv/k", cluster.url(leader)));
    assert_eq!(get.send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_from_an_evicted_session_gets_409_outcome_unknown_and_is_not_applied() {
    let mut cluster = Cluster::new(1);
    cluster.extra_args = vec!["--max-sessions=1".into()];
    cluster.start(1);
    cluster.wait_for_leader(&[1]).await;
    let url = cluster.url(1);
    let append = |id: &'static str| {
        cluster
            .http
            .post(format!("{url}/kv/k/append"))
            .header("Request-Id", id)
            .body("x")
            .send()
    };
    assert_eq!(append("a:1").await.unwrap().status(), StatusCode::OK);
    // Client b's session evicts a's (--max-sessions 1).
    assert_eq!(append("b:1").await.unwrap().status(), StatusCode::OK);
    let retry = assert_json_error(append("a:1").await.unwrap(), StatusCode::CONFLICT).await;
    let text = retry["error"].as_str().unwrap();
    assert!(text.contains("outcome unknown"), "{text}");
    let value = cluster
        .http
        .get(format!("{url}/kv/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        value.text().await.unwrap(),
        "xx",
        "the retry was applied again"
    );
}

/// The `Raft-*` headers of one answer: node, term, commit index, role.
fn raft_headers(response: &reqwest::Response) -> (u64, u64, u64, String) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("answer {} lacks {name}", response.status()))
            .to_str()
            .unwrap()
            .to_string()
    };
    let number = |name: &str| header(name).parse::<u64>().expect("a number");
    (
        number("raft-node"),
        number("raft-term"),
        number("raft-index"),
        header("raft-role"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_says_which_node_served_it_in_which_term_and_role() {
    let mut cluster = Cluster::new(3);
    cluster.start_all();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await;
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    let term = cluster.status(leader).await.unwrap()["term"]
        .as_u64()
        .unwrap();
    let http = &cluster.http_no_redirect;

    let put = http
        .put(format!("{}/kv/k", cluster.url(leader)))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let (node, put_term, put_index, role) = raft_headers(&put);
    assert_eq!((node, put_term, role.as_str()), (leader, term, "leader"));
    let written: Value = put.json().await.unwrap();
    // The commit index it reports covers the write it acknowledged.
    assert!(put_index >= written["index"].as_u64().unwrap(), "{written}");

    // A follower's redirect and a refusal carry them too, with the follower's own view.
    let redirect = http
        .get(format!("{}/kv/k", cluster.url(follower)))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
    let (node, _, _, role) = raft_headers(&redirect);
    assert_eq!((node, role.as_str()), (follower, "follower"));
    let missing = http
        .get(format!("{}/kv/absent", cluster.url(leader)))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(raft_headers(&missing).0, leader);
}
