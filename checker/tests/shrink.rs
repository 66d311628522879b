//! Shrinking synthetic histories with a planted stale read: thousands of operations on many
//! keys, concurrent clients, refused cas operations and unknown outcomes; the piece found must
//! be tiny, check not linearizable on its own, and be 1-minimal (each single operation dropped,
//! with what only it needed, leaves a linearizable rest).

#[path = "common/synth.rs"]
mod synth;

use std::time::Duration;

use riptide_checker::history::Event;
use riptide_checker::shrink::sub_history;
use riptide_checker::{
    check_with, shrink, BuiltinModel, CheckOptions, History, ModelSpec, Verdict,
};

fn history_of(events: Vec<Event>) -> History {
    History::from_events(events.into_iter().enumerate().map(|(i, e)| (i + 1, e))).unwrap()
}

#[test]
fn a_planted_stale_read_shrinks_to_a_handful_of_operations_that_still_fail() {
    let spec = ModelSpec::new(BuiltinModel::Kv);
    for seed in 1..=4 {
        let shape = synth::Shape {
            operations: 4_000,
            keys: 4,
            processes: 8,
            info_fraction: 0.02,
            seed,
        };
        let history = history_of(synth::generate_with_stale_read(shape));
        let shrunk = shrink(&history, &spec, None, Duration::from_secs(30)).unwrap();
        assert!(shrunk.one_minimal, "seed {seed}: budget ran out");
        assert!(
            shrunk.operations.len() <= 6,
            "seed {seed}: {} operations kept of {}",
            shrunk.operations.len(),
            shrunk.partition_operations
        );
        assert!(shrunk.partition_operations > 500, "seed {seed}");
        let again = check_with(&shrunk.history, &spec, &CheckOptions::default()).unwrap();
        assert_eq!(again.verdict, Verdict::NotLinearizable, "seed {seed}");
        // Every kept operation is of the failing key, and real-time order is kept.
        for w in shrunk.operations.windows(2) {
            assert!(history.operations[w[0]].invoke_seq < history.operations[w[1]].invoke_seq);
        }
        assert!(shrunk
            .operations
            .iter()
            .all(|&i| history.operations[i].key.as_deref() == Some(shrunk.partition.as_str())));
        // Without any one kept read the rest is linearizable (writes may be needed by reads,
        // so only operations no kept read depends on are tried alone).
        for skip in 0..shrunk.operations.len() {
            let op = &history.operations[shrunk.operations[skip]];
            if op.f != "read" {
                continue;
            }
            let rest: Vec<usize> = shrunk
                .operations
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, &id)| id)
                .collect();
            let result = check_with(
                &sub_history(&history, &rest),
                &spec,
                &CheckOptions::default(),
            )
            .unwrap();
            assert_eq!(result.verdict, Verdict::Linearizable, "seed {seed}");
        }
    }
}

#[test]
fn a_linearizable_synthetic_history_is_not_shrunk() {
    let shape = synth::Shape {
        operations: 2_000,
        keys: 3,
        processes: 6,
        info_fraction: 0.02,
        seed: 9,
    };
    let history = history_of(synth::generate(shape));
    let err = shrink(
        &history,
        &ModelSpec::new(BuiltinModel::Kv),
        None,
        Duration::from_secs(30),
    )
    .unwrap_err();
    assert!(err.to_string().contains("linearizable"), "{err}");
}
