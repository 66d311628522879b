//! The manual log-replication test, all ten steps, on three real processes:
//!
//! 1. nodes 1 and 2 start (node 3's data dir stays empty) and elect a leader;
//! 2. writes through it;
//! 3. node 3 starts empty: the whole log is replicated to an empty follower;
//! 4. the leader is stopped (SIGTERM: it hands over, a new term begins) and restarted; more
//!    writes, in the new term;
//! 5. the whole cluster shuts down;
//! 6. bogus tails are written into two stopped followers' WALs with the storage module: on
//!    one, the entries of the newest term are replaced by a longer run of different entries
//!    of an *older* term; on the other, entries of a *newer* term than any in the cluster
//!    are appended after its end (Raft Figure 7's followers (e)/(f) and (d)); every node's
//!    term is moved past that newer term, so the next leader's term is higher still;
//! 7. the leader and the older-tail follower restart: the leader (its log is more up to
//!    date) wins, writes go on, and it repairs that follower;
//! 8. the newer-tail follower restarts: its tail conflicts with the leader's entries of a
//!    higher term, so it cannot win, and the leader repairs it too;
//! 9. a last write reaches every node;
//! 10. after a final shutdown, both followers' WALs equal the leader's and their state
//!     machines hold the real values, none of the bogus ones.

mod common;

use common::{poll, Cluster, DEADLINE};
use reqwest::StatusCode;
use riptide_server::kv::{Command, Op};
use riptide_server::raft::{Entry, EntryPayload, HardState, LogIndex, Term};
use riptide_server::storage::Storage;

fn write_entry(index: LogIndex, term: Term, key: &str, value: &str) -> Entry {
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

/// The hard state and log a stopped node's data dir holds.
fn durable(dir: &std::path::Path) -> (HardState, Vec<Entry>) {
    let (_, state) = Storage::open(dir).expect("open data dir");
    (state.hard_state, state.log)
}

/// A read of `key` from node `id`'s own state machine: status and body.
async fn stale_read(cluster: &Cluster, id: u64, key: &str) -> (StatusCode, String) {
    cluster.get_text(id, &format!("kv/{key}?stale")).await
}

/// Writes `entries` (maybe none) into the stopped node's data dir with the storage module,
/// under a hard state moved to `term` (vote cleared, commit kept: `persist` keeps it below
/// the entries).
fn write_into(dir: &std::path::Path, term: Term, entries: &[Entry]) {
    let (hs, _) = durable(dir);
    let (mut storage, _) = Storage::open(dir).expect("open data dir");
    let moved = HardState {
        term,
        voted_for: None,
        commit: hs.commit,
    };
    storage.persist(Some(&moved), entries).expect("persist");
}

/// Waits until every node in `ids` has applied what `leader` has.
async fn wait_all_applied(cluster: &Cluster, leader: u64, ids: &[u64]) {
    let applied = cluster.status(leader).await.expect("leader status")["applied_index"]
        .as_u64()
        .expect("applied_index");
    for &id in ids {
        cluster.wait_for_applied(id, applied).await;
    }
}

/// `log` is `leader`'s log up to `log`'s end, and past it the leader holds only no-ops (a
/// leader stopped after its followers gives its handover up and appends one).
fn assert_same_log(name: &str, log: &[Entry], leader: &[Entry]) {
    assert!(
        leader.len() >= log.len(),
        "{name}: longer than the leader's"
    );
    assert_eq!(
        log[..],
        leader[..log.len()],
        "{name}'s WAL differs from the leader's"
    );
    assert!(
        leader[log.len()..]
            .iter()
            .all(|e| e.payload == EntryPayload::Noop),
        "{name}: the leader holds entries it lacks: {:?}",
        &leader[log.len()..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_repairs_followers_with_bogus_tails_of_older_and_newer_terms() {
    let mut cluster = Cluster::new(3);

    // 1. Two nodes of three elect a leader; node 3 has never run.
    cluster.start(1);
    cluster.start(2);
    let first_leader = cluster.wait_for_leader(&[1, 2]).await;

    // 2. Writes, committed by the two.
    for i in 1..=3 {
        cluster
            .put_ok(first_leader, &format!("a{i}"), "first")
            .await;
    }

    // 3. Replication to an empty follower.
    cluster.start(3);
    wait_all_applied(&cluster, first_leader, &[3]).await;
    assert_eq!(
        stale_read(&cluster, 3, "a3").await,
        (StatusCode::OK, "first".into())
    );

    // 4. A new term: the leader hands over on SIGTERM, then comes back as a follower.
    cluster.stop(first_leader);
    let others: Vec<u64> = (1..=3).filter(|&id| id != first_leader).collect();
    let leader = cluster.wait_for_leader(&others).await;
    cluster.start(first_leader);
    for i in 1..=3 {
        cluster.put_ok(leader, &format!("b{i}"), "second").await;
    }
    wait_all_applied(&cluster, leader, &[1, 2, 3]).await;

    // 5. Shutdown, followers first.
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let (old_tail, new_tail) = (followers[0], followers[1]);
    for &id in &followers {
        cluster.stop(id);
    }
    cluster.stop(leader);

    // 6. The bogus tails, written while the nodes are down.
    let (_, leader_log) = durable(cluster.data_dir(leader));
    let last_term = leader_log.last().expect("a log").term;
    let newest_start = leader_log
        .iter()
        .find(|e| e.term == last_term)
        .expect("an entry of the last term")
        .index;
    let older_term = leader_log[(newest_start - 2) as usize].term;
    assert!(
        older_term < last_term,
        "two terms in the log: {leader_log:?}"
    );
    let newer_term = last_term + 5;
    let next_term = last_term + 10;

    // An older term over the newest entries, and longer than them.
    let (_, log) = durable(cluster.data_dir(old_tail));
    let end = log.last().expect("a log").index;
    let bogus_old: Vec<Entry> = (newest_start..=end + 2)
        .map(|i| write_entry(i, older_term, &format!("old{i}"), "bogus"))
        .collect();
    write_into(cluster.data_dir(old_tail), next_term, &bogus_old);

    // A newer term than any in the cluster, after the end.
    let (_, log) = durable(cluster.data_dir(new_tail));
    let end = log.last().expect("a log").index;
    let bogus_new: Vec<Entry> = (end + 1..=end + 3)
        .map(|i| write_entry(i, newer_term, &format!("new{i}"), "bogus"))
        .collect();
    write_into(cluster.data_dir(new_tail), next_term, &bogus_new);

    write_into(cluster.data_dir(leader), next_term, &[]);
    assert_eq!(
        durable(cluster.data_dir(old_tail)).1.last(),
        bogus_old.last()
    );
    assert_eq!(
        durable(cluster.data_dir(new_tail)).1.last(),
        bogus_new.last()
    );

    // 7. The leader and the older-tail follower: the leader's log is more up to date.
    cluster.start(leader);
    cluster.start(old_tail);
    let again = cluster.wait_for_leader(&[leader, old_tail]).await;
    assert_eq!(again, leader, "the follower with the older tail cannot win");
    let term = cluster.status(leader).await.unwrap()["term"]
        .as_u64()
        .unwrap();
    assert!(term > next_term, "term {term}");
    cluster.put_ok(leader, "c1", "third").await;
    wait_all_applied(&cluster, leader, &[old_tail]).await;

    // 8. The newer-tail follower: its tail loses to the leader's higher-term entries.
    cluster.start(new_tail);
    cluster.put_ok(leader, "c2", "third").await;
    wait_all_applied(&cluster, leader, &[new_tail]).await;
    assert_eq!(
        cluster.wait_for_leader(&[1, 2, 3]).await,
        leader,
        "the follower with the newer tail cannot win either"
    );

    // 9. A last write everywhere, then every log ends where the leader's does.
    cluster.put_ok(leader, "d", "last").await;
    wait_all_applied(&cluster, leader, &[old_tail, new_tail]).await;
    let leader_last = cluster.status(leader).await.unwrap()["last_index"]
        .as_u64()
        .unwrap();
    poll(
        "every log to end where the leader's does",
        DEADLINE,
        || async {
            for &id in &followers {
                let status = cluster.status(id).await?;
                (status["last_index"].as_u64()? == leader_last).then_some(())?;
            }
            Some(())
        },
    )
    .await;

    // 10. Every state machine holds the real values and none of the bogus ones; on disk,
    // both followers' WALs are the leader's.
    for &id in &followers {
        for (key, value) in [
            ("a1", "first"),
            ("b3", "second"),
            ("c2", "third"),
            ("d", "last"),
        ] {
            assert_eq!(
                stale_read(&cluster, id, key).await,
                (StatusCode::OK, value.to_string()),
                "node {id}, key {key}"
            );
        }
        for entry in bogus_old.iter().chain(&bogus_new) {
            let EntryPayload::Command(bytes) = &entry.payload else {
                continue;
            };
            let Op::Write { key, .. } = Command::decode(bytes).unwrap().op else {
                continue;
            };
            assert_eq!(
                stale_read(&cluster, id, &key).await.0,
                StatusCode::NOT_FOUND,
                "node {id} applied the bogus {key}"
            );
        }
    }
    for &id in &followers {
        cluster.stop(id);
    }
    cluster.stop(leader);
    let (_, on_leader) = durable(cluster.data_dir(leader));
    assert_eq!(
        on_leader[..leader_log.len()],
        leader_log[..],
        "the leader kept its own entries"
    );
    for (name, id) in [
        ("the older-tail follower", old_tail),
        ("the newer-tail follower", new_tail),
    ] {
        let (_, log) = durable(cluster.data_dir(id));
        assert_same_log(name, &log, &on_leader);
        assert!(log.iter().all(|e| e.term != newer_term), "{name}: {log:?}");
    }
}
