//! Workloads: which operations the clients send, and how each one is written in the history.
//!
//! Every value written to a key is unique for the run (`p<process>-<seq>`), so a read names the
//! one write it saw; that is what lets the checker prune its search. Operations are drawn from a
//! per-worker RNG seeded from the run's seed, so a replay sends the same sequence of operations
//! (their interleaving with faults still depends on timing).

use std::collections::HashMap;
use std::sync::Mutex;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::system::Request;

/// The workloads of `--workload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// One register (one key): read, write, cas.
    Register,
    /// `--keys` keys, everything the node can do to each: read, write, cas, delete, append.
    Kv,
    /// Strings per key grown by append (the classic Raft lab model): read, write, append.
    Append,
    /// A grow-only set (Jepsen's set test): add, then read-all.
    Set,
}

impl Workload {
    /// The checker model for this workload.
    pub fn model(self) -> &'static str {
        match self {
            Workload::Register | Workload::Kv => "kv",
            Workload::Append => "append",
            Workload::Set => "set",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Kv => "kv",
            Workload::Append => "append",
            Workload::Set => "set",
        }
    }
}

/// The key of the single register and of the set on the node.
pub const REGISTER_KEY: &str = "register";
pub const SET_KEY: &str = "set";
/// Separator between set elements in the node's value.
const SET_SEPARATOR: char = ',';

/// One operation: what goes on the wire and what goes in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// History `f`: `read`, `write`, `cas`, `delete`, `append`, `add`, `read-all`.
    pub f: &'static str,
    /// History key (`None` for the register and the set).
    pub key: Option<String>,
    /// History value of the invoke (`null` for reads).
    pub value: serde_json::Value,
    /// The request sent to the cluster.
    pub request: Request,
}

impl Op {
    /// The history value of an `ok` completion: a read's result, otherwise the invoke's value.
    pub fn ok_value(&self, read_result: Option<String>) -> serde_json::Value {
        match self.f {
            "read" => read_result.map_or(serde_json::Value::Null, serde_json::Value::String),
            "read-all" => {
                let elements: Vec<serde_json::Value> = read_result
                    .unwrap_or_default()
                    .split(SET_SEPARATOR)
                    .filter(|e| !e.is_empty())
                    .map(|e| serde_json::Value::String(e.to_string()))
                    .collect();
                serde_json::Value::Array(elements)
            }
            _ => self.value.clone(),
        }
    }
}

/// Values the clients have seen per key, shared so a cas has a fair chance to succeed.
#[derive(Debug, Default)]
pub struct KnownValues {
    last: Mutex<HashMap<String, String>>,
}

impl KnownValues {
    pub fn observe(&self, key: &str, value: &str) {
        if let Ok(mut m) = self.last.lock() {
            m.insert(key.to_string(), value.to_string());
        }
    }
    pub fn get(&self, key: &str) -> Option<String> {
        self.last.lock().ok().and_then(|m| m.get(key).cloned())
    }
}

/// Generates the operations of a workload.
#[derive(Debug, Clone)]
pub struct Generator {
    pub workload: Workload,
    /// Number of keys for `kv` and `append`.
    pub keys: usize,
}

impl Generator {
    /// The node keys this workload touches (for final reads).
    pub fn node_keys(&self) -> Vec<String> {
        match self.workload {
            Workload::Register => vec![REGISTER_KEY.to_string()],
            Workload::Set => vec![SET_KEY.to_string()],
            Workload::Kv | Workload::Append => {
                (0..self.keys.max(1)).map(|i| format!("k{i}")).collect()
            }
        }
    }

    /// The next operation of a process. `unique` is a value never written before in this run.
    pub fn next_op<R: Rng>(&self, rng: &mut R, unique: String, known: &KnownValues) -> Op {
        let keys = self.node_keys();
        let node_key = keys[rng.gen_range(0..keys.len())].clone();
        let hist_key = match self.workload {
            Workload::Register | Workload::Set => None,
            _ => Some(node_key.clone()),
        };
        let roll: u32 = rng.gen_range(0..100);
        match self.workload {
            Workload::Register => {
                if roll < 45 {
                    read_op(hist_key, node_key)
                } else if roll < 75 {
                    write_op(hist_key, node_key, unique)
                } else {
                    cas_or_write(hist_key, node_key, unique, known)
                }
            }
            // Everything the node's API can do to a key, so one workload exercises it all:
            // a duplicated append or a lost delete shows as plainly as a stale read.
            Workload::Kv => {
                if roll < 40 {
                    read_op(hist_key, node_key)
                } else if roll < 65 {
                    write_op(hist_key, node_key, unique)
                } else if roll < 85 {
                    cas_or_write(hist_key, node_key, unique, known)
                } else if roll < 95 {
                    let piece = format!("+{unique}");
                    append_op(hist_key, node_key, piece)
                } else {
                    Op {
                        f: "delete",
                        key: hist_key,
                        value: serde_json::Value::Null,
                        request: Request::Delete { key: node_key },
                    }
                }
            }
            Workload::Append => {
                // A separator after each suffix keeps the pieces readable in a read.
                let piece = format!("{unique};");
                if roll < 40 {
                    read_op(hist_key, node_key)
                } else if roll < 90 {
                    append_op(hist_key, node_key, piece)
                } else {
                    write_op(hist_key, node_key, piece)
                }
            }
            Workload::Set => {
                if roll < 15 {
                    self.final_read(&node_key)
                } else {
                    Op {
                        f: "add",
                        key: None,
                        value: serde_json::Value::String(unique.clone()),
                        request: Request::Append {
                            key: node_key,
                            suffix: format!("{unique}{SET_SEPARATOR}"),
                        },
                    }
                }
            }
        }
    }
}

/// An append of `piece` to `node_key`.
fn append_op(hist_key: Option<String>, node_key: String, piece: String) -> Op {
    Op {
        f: "append",
        key: hist_key,
        value: serde_json::Value::String(piece.clone()),
        request: Request::Append {
            key: node_key,
            suffix: piece,
        },
    }
}

/// A cas from the value the key is known to have had, or a write when none is known yet.
fn cas_or_write(
    hist_key: Option<String>,
    node_key: String,
    unique: String,
    known: &KnownValues,
) -> Op {
    match known.get(&node_key) {
        Some(from) => Op {
            f: "cas",
            key: hist_key,
            value: serde_json::json!([from, unique]),
            request: Request::Cas {
                key: node_key,
                from,
                to: unique,
            },
        },
        None => write_op(hist_key, node_key, unique),
    }
}

impl Generator {
    /// The read of `node_key` done once the cluster has healed.
    pub fn final_read(&self, node_key: &str) -> Op {
        match self.workload {
            Workload::Set => Op {
                f: "read-all",
                key: None,
                value: serde_json::Value::Null,
                request: Request::Read {
                    key: node_key.to_string(),
                },
            },
            Workload::Register => read_op(None, node_key.to_string()),
            _ => read_op(Some(node_key.to_string()), node_key.to_string()),
        }
    }
}

fn read_op(hist_key: Option<String>, node_key: String) -> Op {
    Op {
        f: "read",
        key: hist_key,
        value: serde_json::Value::Null,
        request: Request::Read { key: node_key },
    }
}

fn write_op(hist_key: Option<String>, node_key: String, value: String) -> Op {
    Op {
        f: "write",
        key: hist_key,
        value: serde_json::Value::String(value.clone()),
        request: Request::Write {
            key: node_key,
            value,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ops(workload: Workload, seed: u64, n: usize) -> Vec<Op> {
        let gen = Generator { workload, keys: 4 };
        let known = KnownValues::default();
        known.observe("k0", "p0-0");
        known.observe(REGISTER_KEY, "p0-0");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|i| gen.next_op(&mut rng, format!("p1-{i}"), &known))
            .collect()
    }

    #[test]
    fn same_seed_gives_the_same_operations() {
        for w in [
            Workload::Register,
            Workload::Kv,
            Workload::Append,
            Workload::Set,
        ] {
            assert_eq!(ops(w, 7, 200), ops(w, 7, 200));
            assert_ne!(ops(w, 7, 200), ops(w, 8, 200));
        }
    }

    #[test]
    fn register_ops_have_no_key_and_kv_ops_name_theirs() {
        assert!(ops(Workload::Register, 1, 100)
            .iter()
            .all(|o| o.key.is_none()));
        assert!(ops(Workload::Kv, 1, 100).iter().all(|o| o.key.is_some()));
    }

    #[test]
    fn every_written_value_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for op in ops(Workload::Kv, 3, 500) {
            let written = match &op.request {
                Request::Write { value, .. } => Some(value.clone()),
                Request::Cas { to, .. } => Some(to.clone()),
                Request::Append { suffix, .. } => Some(suffix.clone()),
                _ => None,
            };
            if let Some(v) = written {
                assert!(seen.insert(v), "value written twice");
            }
        }
        assert!(!seen.is_empty());
    }

    #[test]
    fn workloads_mix_their_operations() {
        let fs = |w| {
            ops(w, 5, 400)
                .iter()
                .map(|o| o.f)
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(
            fs(Workload::Kv).into_iter().collect::<Vec<_>>(),
            ["append", "cas", "delete", "read", "write"]
        );
        assert_eq!(
            fs(Workload::Append).into_iter().collect::<Vec<_>>(),
            ["append", "read", "write"]
        );
        assert_eq!(
            fs(Workload::Set).into_iter().collect::<Vec<_>>(),
            ["add", "read-all"]
        );
    }

    #[test]
    fn set_reads_split_the_stored_elements() {
        let gen = Generator {
            workload: Workload::Set,
            keys: 1,
        };
        let op = gen.final_read(SET_KEY);
        assert_eq!(
            op.ok_value(Some("a,b,".into())),
            serde_json::json!(["a", "b"])
        );
        assert_eq!(op.ok_value(None), serde_json::json!([]));
    }
}
