//! The "bogus follower log" scenario with two real processes and their data dirs.
//!
//! Before starting, the data dirs are written with the storage module: node 1 (the leader to
//! be) has a log whose tail is of term 2; node 2's tail was replaced by different entries of
//! term 1 (a leader of term 1 that crashed before replicating them, say). Node 2 cannot win an
//! election (its log is less up to date), node 1 can. Once they talk, node 2's log on disk must
//! equal node 1's, and new writes must replicate to it.

mod common;

use common::{poll, Cluster, DEADLINE};
use reqwest::StatusCode;
use riptide_server::kv::{Command, Op};
use riptide_server::raft::{Entry, EntryPayload, HardState};
use riptide_server::storage::Storage;

fn write_entry(index: u64, term: u64, key: &str, value: &str) -> Entry {
    let command = Command {
        request_id: None,
        op: Op::Write {
            key: key.into(),
            value: value.into(),
        },
    };
    Entry {
        index,
        term,
        payload: EntryPayload::Command(command.encode()),
    }
}

fn durable_log(dir: &std::path::Path) -> Vec<Entry> {
    Storage::open(dir).expect("open data dir").1.log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_with_a_bogus_tail_converges_to_the_leaders_log_on_disk() {
    let mut cluster = Cluster::new(2);
    // Common prefix: index 1-2 in term 1.
    let prefix = vec![write_entry(1, 1, "a", "1"), write_entry(2, 1, "b", "1")];

    let mut leader_log = prefix.clone();
    leader_log.extend([
        write_entry(3, 2, "c", "leader"),
        write_entry(4, 2, "d", "leader"),
        write_entry(5, 2, "e", "leader"),
    ]);
    let (mut storage, _) = Storage::open(cluster.data_dir(1)).unwrap();
    let hard_state = HardState {
        term: 2,
        voted_for: Some(1),
        commit: 2,
    };
    storage.persist(Some(&hard_state), &leader_log).unwrap();
    drop(storage);

    let mut follower_log = prefix.clone();
    follower_log.extend([
        write_entry(3, 1, "c", "bogus"),
        write_entry(4, 1, "x", "bogus"),
        write_entry(5, 1, "y", "bogus"),
        write_entry(6, 1, "z", "bogus"),
    ]);
    let (mut storage, _) = Storage::open(cluster.data_dir(2)).unwrap();
    let hard_state = HardState {
        term: 1,
        voted_for: Some(2),
        commit: 2,
    };
    storage.persist(Some(&hard_state), &follower_log).unwrap();
    drop(storage);

    cluster.start_all();
    let leader = cluster.wait_for_leader(&[1, 2]).await;
    assert_eq!(leader, 1, "only node 1 has an up-to-date log");

    let response = cluster
        .http
        .put(format!("{}/kv/new", cluster.url(1)))
        .body("after")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let applied = cluster.status(1).await.unwrap()["applied_index"]
        .as_u64()
        .unwrap();
    cluster.wait_for_applied(2, applied).await;

    // The follower's state machine holds the leader's entries, not its bogus ones.
    let stale_read = |key: &'static str| {
        let client = cluster.http.clone();
        let url = format!("{}/kv/{key}?stale", cluster.url(2));
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    assert_eq!(stale_read("new").await, (StatusCode::OK, "after".into()));
    assert_eq!(stale_read("c").await, (StatusCode::OK, "leader".into()));
    assert_eq!(stale_read("x").await.0, StatusCode::NOT_FOUND);

    // The follower's last index matches the leader's before both stop.
    let leader_last = cluster.status(1).await.unwrap()["last_index"]
        .as_u64()
        .unwrap();
    poll(
        "the follower's log to end where the leader's does",
        DEADLINE,
        || async {
            let status = cluster.status(2).await?;
            (status["last_index"].as_u64()? == leader_last).then_some(())
        },
    )
    .await;
    cluster.stop(2);
    cluster.stop(1);

    let on_leader = durable_log(cluster.data_dir(1));
    let on_follower = durable_log(cluster.data_dir(2));
    // Stopping with its follower already gone, the leader's handover is given up after an
    // election timeout, which appends a no-op no one else has: past the follower's end the
    // leader's log holds only such no-ops.
    assert!(on_leader.len() >= on_follower.len());
    assert_eq!(
        on_follower[..],
        on_leader[..on_follower.len()],
        "the follower's WAL differs from the leader's"
    );
    assert!(
        on_leader[on_follower.len()..]
            .iter()
            .all(|e| e.payload == EntryPayload::Noop),
        "{:?}",
        &on_leader[on_follower.len()..]
    );
    assert_eq!(
        on_leader[..5],
        leader_log[..],
        "the leader kept its own entries"
    );
    assert!(on_leader.len() > 5, "the new term's entries are in the log");
}
