//! Synthetic key-value histories for benchmarks: clients on a simulated linearizable store,
//! each operation taking effect at a random instant between its invoke and its completion,
//! values unique per key (as the harness writes them), refused cas operations, and a fraction
//! of operations with an unknown outcome (which took effect or not, at random; the process is
//! then replaced, as Jepsen does).

#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use riptide_checker::history::{Event, EventType, Process};
use std::collections::HashMap;

/// Shape of a synthetic history.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Operations in total.
    pub operations: usize,
    /// Keys, chosen uniformly.
    pub keys: usize,
    /// Client processes running at once.
    pub processes: usize,
    /// Fraction of operations whose outcome is unknown (`info`).
    pub info_fraction: f64,
    /// RNG seed.
    pub seed: u64,
}

struct Planned {
    process: u64,
    key: usize,
    f: &'static str,
    invoke: u64,
    effect: u64,
    complete: u64,
    info: bool,
    takes_effect: bool,
    value: serde_json::Value,
    output: serde_json::Value,
    refused: bool,
}

/// Generates the events of a linearizable history of the given shape, in time order.
pub fn generate(shape: Shape) -> Vec<Event> {
    generate_inner(shape, false)
}

/// Like [`generate`], with one stale read planted: a late completed read made to return a
/// value whose write completed and was then overwritten by a write or delete that completed
/// before the read began (so the history is not linearizable).
pub fn generate_with_stale_read(shape: Shape) -> Vec<Event> {
    generate_inner(shape, true)
}

fn generate_inner(shape: Shape, stale_read: bool) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(shape.seed);
    let mut ops: Vec<Planned> = Vec::with_capacity(shape.operations);
    // Each process slot runs operations back to back; an unknown outcome retires its process
    // number.
    let mut clock = vec![0u64; shape.processes];
    let mut process_id: Vec<u64> = (0..shape.processes as u64).collect();
    let mut next_id = shape.processes as u64;
    let mut counters: HashMap<(usize, u64), u64> = HashMap::new();
    for i in 0..shape.operations {
        let slot = i % shape.processes;
        let invoke = clock[slot] + rng.gen_range(1..20);
        let duration = rng.gen_range(5..200);
        let complete = invoke + duration;
        let effect = invoke + rng.gen_range(0..=duration);
        clock[slot] = complete;
        let key = rng.gen_range(0..shape.keys);
        let process = process_id[slot];
        let f = match rng.gen_range(0..100) {
            0..=49 => "read",
            50..=79 => "write",
            80..=94 => "cas",
            _ => "delete",
        };
        let counter = counters.entry((key, process)).or_insert(0);
        *counter += 1;
        let value = match f {
            "write" | "cas" => serde_json::Value::String(format!("{process}-{counter}")),
            _ => serde_json::Value::Null,
        };
        let info = rng.gen_bool(shape.info_fraction);
        if info {
            process_id[slot] = next_id;
            next_id += 1;
        }
        ops.push(Planned {
            process,
            key,
            f,
            invoke,
            effect,
            complete,
            info,
            takes_effect: !info || rng.gen_bool(0.5),
            value,
            output: serde_json::Value::Null,
            refused: false,
        });
    }
    // Apply the effects in effect order on the real store to learn each output.
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| ops[i].effect);
    let mut store: HashMap<usize, serde_json::Value> = HashMap::new();
    let mut previous: HashMap<usize, serde_json::Value> = HashMap::new();
    for i in order {
        if !ops[i].takes_effect {
            continue;
        }
        let key = ops[i].key;
        let current = store.get(&key).cloned().unwrap_or(serde_json::Value::Null);
        match ops[i].f {
            "read" => ops[i].output = current,
            "write" => {
                previous.insert(key, current);
                store.insert(key, ops[i].value.clone());
            }
            "delete" => {
                previous.insert(key, current);
                store.insert(key, serde_json::Value::Null);
            }
            _ => {
                // cas: usually from the current value, sometimes from a stale one.
                // (Never from null: the model's cas compares with the absent value too, and the
                // harness only issues cas from a value.)
                let stale = previous
                    .get(&key)
                    .cloned()
                    .filter(|v| !v.is_null() && *v != current);
                let from = match stale {
                    Some(v) if rng.gen_bool(0.3) || current.is_null() => v,
                    _ if current.is_null() => serde_json::Value::String("never-written".into()),
                    _ => current.clone(),
                };
                let to = ops[i].value.clone();
                ops[i].value = serde_json::json!([from, to]);
                if from == current {
                    previous.insert(key, current);
                    store.insert(key, to);
                } else {
                    ops[i].refused = true;
                }
            }
        }
    }
    if stale_read {
        plant_stale_read(&mut ops);
    }
    // A cas that never took effect still needs a [from, to] value.
    for op in &mut ops {
        if op.f == "cas" && !op.value.is_array() {
            op.value = serde_json::json!(["never-written", op.value.clone()]);
        }
    }
    let mut timed: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, op) in ops.iter().enumerate() {
        timed.push((op.invoke, false, i));
        timed.push((op.complete, true, i));
    }
    timed.sort_unstable();
    let mut events = Vec::with_capacity(timed.len());
    for (t, is_completion, i) in timed {
        let op = &ops[i];
        let (kind, value, error) = if !is_completion {
            let v = if op.f == "read" {
                serde_json::Value::Null
            } else {
                op.value.clone()
            };
            (EventType::Invoke, v, None)
        } else if op.info {
            (
                EventType::Info,
                op.value.clone(),
                Some("timeout".to_string()),
            )
        } else if op.refused {
            (
                EventType::Fail,
                op.value.clone(),
                Some("precondition-failed".to_string()),
            )
        } else if op.f == "read" {
            (EventType::Ok, op.output.clone(), None)
        } else {
            (EventType::Ok, op.value.clone(), None)
        };
        events.push(Event {
            index: events.len() as u64,
            time: t * 1000,
            process: Process::Client(op.process),
            kind,
            f: op.f.to_string(),
            key: Some(format!("k{}", op.key)),
            value,
            error,
        });
    }
    events
}

/// Makes the last read that can be made stale return an overwritten value (see
/// [`generate_with_stale_read`]).
fn plant_stale_read(ops: &mut [Planned]) {
    let completed = |op: &Planned| !op.info;
    for r in (0..ops.len()).rev() {
        if ops[r].f != "read" || !completed(&ops[r]) {
            continue;
        }
        let key = ops[r].key;
        let same_key: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].key == key).collect();
        let stale = same_key.iter().find_map(|&w| {
            let w_op = &ops[w];
            if w_op.f != "write" || !completed(w_op) || w_op.value == ops[r].output {
                return None;
            }
            let overwritten = same_key.iter().any(|&c| {
                let c_op = &ops[c];
                matches!(c_op.f, "write" | "delete")
                    && completed(c_op)
                    && c_op.invoke > w_op.complete
                    && c_op.complete < ops[r].invoke
            });
            overwritten.then(|| w_op.value.clone())
        });
        if let Some(value) = stale {
            ops[r].output = value;
            return;
        }
    }
    panic!("no read to make stale");
}
