//! Every history of Porcupine's test corpus gets the verdict its `expected.tsv` lists.

mod common;

use common::porcupine::{corpus, load, model_for};
use riptide_checker::{check_builtin, CheckOptions, Verdict};

#[test]
fn every_corpus_history_gets_the_expected_verdict() {
    let files = corpus();
    assert!(
        files.len() >= 100,
        "corpus looks incomplete: {} files",
        files.len()
    );
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in &files {
        if file.expected == "none" {
            continue;
        }
        let history = load(file);
        assert!(
            !history.operations.is_empty(),
            "{} parsed to no operations",
            file.file
        );
        let result =
            check_builtin(&history, model_for(&file.format), &CheckOptions::default()).unwrap();
        let expected = match file.expected.as_str() {
            "linearizable" => Verdict::Linearizable,
            "not-linearizable" => Verdict::NotLinearizable,
            other => panic!("unknown expected verdict {other}"),
        };
        if result.verdict != expected {
            wrong.push(format!(
                "{}: expected {expected}, got {}",
                file.file, result.verdict
            ));
        }
        if expected == Verdict::NotLinearizable {
            let failing = result.failures().next().expect("a failing partition");
            assert!(
                failing.counterexample.is_some(),
                "{}: no counterexample",
                file.file
            );
        }
        checked += 1;
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} verdicts wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
