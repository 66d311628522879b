//! Loading Porcupine's test-data corpus (vendored in `tests/data/porcupine`), shared by the corpus
//! test and the benchmark. The `jepsen/etcd_NNN.log` text logs are converted here into history
//! events with the semantics upstream's parser gives them (see the corpus README); the
//! `kv/*.txt` files are EDN and go through the library's own EDN reader.

#![allow(dead_code)]

use riptide_checker::history::{Event, EventType, Process};
use riptide_checker::{parse_edn, BuiltinModel, History};
use std::path::PathBuf;

/// One line of `expected.tsv`.
pub struct CorpusFile {
    /// Path relative to the corpus directory.
    pub file: String,
    /// `jepsen-etcd-log` or `jepsen-kv-edn`.
    pub format: String,
    /// `linearizable`, `not-linearizable` or `none` (no verdict upstream).
    pub expected: String,
}

/// The corpus directory, part of the repository; panics clearly if it is incomplete.
pub fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine");
    assert!(
        dir.join("expected.tsv").is_file(),
        "Porcupine corpus not found at {} (it is part of the repository: is the checkout \
         complete?)",
        dir.display()
    );
    dir
}

/// Every file of the corpus with its expected verdict.
pub fn corpus() -> Vec<CorpusFile> {
    let text = std::fs::read_to_string(corpus_dir().join("expected.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            CorpusFile {
                file: cols[0].to_string(),
                format: cols[1].to_string(),
                expected: cols[3].to_string(),
            }
        })
        .collect()
}

/// The model a corpus format is checked with.
pub fn model_for(format: &str) -> BuiltinModel {
    match format {
        "jepsen-etcd-log" => BuiltinModel::Register,
        "jepsen-kv-edn" => BuiltinModel::Append,
        other => panic!("unknown corpus format {other}"),
    }
}

/// Reads and parses one corpus file.
pub fn load(file: &CorpusFile) -> History {
    let text = std::fs::read_to_string(corpus_dir().join(&file.file)).unwrap();
    parse(&text, &file.format)
}

/// Parses the text of a corpus file.
pub fn parse(text: &str, format: &str) -> History {
    match format {
        "jepsen-etcd-log" => parse_etcd_log(text),
        "jepsen-kv-edn" => parse_edn(text).unwrap(),
        other => panic!("unknown corpus format {other}"),
    }
}

/// `INFO  jepsen.util - 4 :invoke :cas [1 2]` lines into events: a `:fail :cas` is a refused
/// compare (`precondition-failed`), a `:fail :read :timed-out` a read that may have returned
/// anything (equivalent to removing it), an `:info` an unknown outcome.
pub fn parse_etcd_log(text: &str) -> History {
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((_, rest)) = line.split_once("jepsen.util - ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let process: u64 = fields[0].parse().unwrap();
        let kind = match fields[1] {
            ":invoke" => EventType::Invoke,
            ":ok" => EventType::Ok,
            ":fail" => EventType::Fail,
            ":info" => EventType::Info,
            other => panic!("line {}: type {other}", i + 1),
        };
        let f = fields[2].trim_start_matches(':').to_string();
        let raw = fields[3..].join(" ");
        let value = match raw.as_str() {
            "nil" | ":timed-out" => serde_json::Value::Null,
            v if v.starts_with('[') => {
                let parts: Vec<serde_json::Value> = v
                    .trim_matches(['[', ']'])
                    .split_whitespace()
                    .map(|x| serde_json::Value::from(x.parse::<i64>().unwrap()))
                    .collect();
                serde_json::Value::Array(parts)
            }
            v => serde_json::Value::from(v.parse::<i64>().unwrap()),
        };
        let error = match (kind, f.as_str()) {
            (EventType::Fail, "cas") => Some("precondition-failed".to_string()),
            (EventType::Fail | EventType::Info, _) => Some("timed-out".to_string()),
            _ => None,
        };
        events.push((
            i + 1,
            Event {
                index: i as u64,
                time: i as u64,
                process: Process::Client(process),
                kind,
                f,
                key: None,
                value,
                error,
            },
        ));
    }
    History::from_events(events).unwrap()
}
