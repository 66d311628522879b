//! The checker agrees with two independent oracles on thousands of small random register
//! histories mixing everything the node does to a key (read, write, cas, delete, append;
//! concurrent operations, unknown outcomes, refused cas, valid and corrupted ones):
//! stateright's `LinearizabilityTester` and a brute-force search over every order. The kv
//! model's proof without search (`refute`) is checked against the brute-force search too.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
mod common;

use common::timed::{client_event, history_of};
use riptide_checker::history::{Event, EventType};
use riptide_checker::models::{KvInput, KvModel, KvOutput};
use riptide_checker::{
    check_builtin, BuiltinModel, CheckOptions, History, Model, PreparedOp, Verdict,
};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

/// A register operation as the oracles see it.
#[derive(Debug, Clone, PartialEq)]
enum RegOp {
    Read,
    Write(u8),
    Cas(u8, u8),
    Delete,
    /// Appends the suffix `,N` (creating the key when absent).
    Append(u8),
}

/// What it returned.
#[derive(Debug, Clone, PartialEq)]
enum RegRet {
    Read(Option<String>),
    Done,
    CasRefused,
}

/// The register as stateright's sequential specification (written independently of the
/// checker's model).
#[derive(Debug, Clone, Default)]
struct Register(Option<String>);

impl SequentialSpec for Register {
    type Op = RegOp;
    type Ret = RegRet;

    fn invoke(&mut self, op: &RegOp) -> RegRet {
        match *op {
            RegOp::Read => RegRet::Read(self.0.clone()),
            RegOp::Write(v) => {
                self.0 = Some(v.to_string());
                RegRet::Done
            }
            RegOp::Append(v) => {
                let mut s = self.0.take().unwrap_or_default();
                s.push_str(&format!(",{v}"));
                self.0 = Some(s);
                RegRet::Done
            }
            RegOp::Delete => {
                self.0 = None;
                RegRet::Done
            }
            RegOp::Cas(from, to) => {
                if self.0 == Some(from.to_string()) {
                    self.0 = Some(to.to_string());
                    RegRet::Done
                } else {
                    RegRet::CasRefused
                }
            }
        }
    }
}

/// One operation of a generated history. `ret: None` is an unknown outcome.
#[derive(Debug, Clone)]
struct GenOp {
    process: u64,
    op: RegOp,
    ret: Option<RegRet>,
    invoke: usize,
    complete: Option<usize>,
    /// A plain `fail`: it did not happen.
    failed: bool,
}

/// Simulates clients on a real register (each operation takes effect at a random point while
/// open), records the history, then maybe corrupts one result.
fn generate(seed: u64) -> Vec<GenOp> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let processes = rng.gen_range(1..=4u64);
    let total_ops = rng.gen_range(1..=7usize);
    let values = rng.gen_range(1..=4u8);
    // Half the histories write unique values, as the harness does (where the checker prunes),
    // half reuse a few values (where it must search fully).
    let unique = rng.gen_bool(0.5);
    let mut next_unique = values;
    let mut reg = Register::default();
    let mut ops: Vec<GenOp> = Vec::new();
    // Per process: the open op's index and whether it has taken effect.
    let mut open: Vec<Option<(usize, bool)>> = vec![None; processes as usize];
    let mut process_ids: Vec<u64> = (0..processes).collect();
    let mut next_process = processes;
    let mut clock = 0;
    let mut started = 0;
    loop {
        let p = rng.gen_range(0..processes as usize);
        match open[p] {
            None if started < total_ops => {
                let op = match rng.gen_range(0..10) {
                    0..=3 => RegOp::Read,
                    4..=5 if unique => {
                        next_unique += 1;
                        RegOp::Write(next_unique)
                    }
                    4..=5 => RegOp::Write(rng.gen_range(0..values)),
                    6 if unique => {
                        next_unique += 1;
                        RegOp::Append(next_unique)
                    }
                    6 => RegOp::Append(rng.gen_range(0..values)),
                    7..=8 if unique => {
                        next_unique += 1;
                        RegOp::Cas(rng.gen_range(0..next_unique), next_unique)
                    }
                    7..=8 => RegOp::Cas(rng.gen_range(0..values), rng.gen_range(0..values)),
                    _ => RegOp::Delete,
                };
                ops.push(GenOp {
                    process: process_ids[p],
                    op,
                    ret: None,
                    invoke: clock,
                    complete: None,
                    failed: false,
                });
                open[p] = Some((ops.len() - 1, false));
                started += 1;
            }
            None => {
                if open.iter().all(Option::is_none) {
                    break;
                }
                continue;
            }
            Some((i, false)) if rng.gen_bool(0.6) => {
                let ret = reg.invoke(&ops[i].op);
                ops[i].ret = Some(ret);
                open[p] = Some((i, true));
                continue;
            }
            Some((i, applied)) => {
                let roll = rng.gen_range(0..10);
                if roll == 0 {
                    // Unknown outcome: the process is never used again.
                    ops[i].ret = None;
                    process_ids[p] = next_process;
                    next_process += 1;
                } else if !applied && roll == 1 {
                    ops[i].failed = true;
                    ops[i].complete = Some(clock);
                } else if applied {
                    ops[i].complete = Some(clock);
                } else {
                    continue;
                }
                open[p] = None;
            }
        }
        clock += 1;
    }
    if rng.gen_bool(0.3) {
        let candidates: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].complete.is_some() && !ops[i].failed)
            .collect();
        if !candidates.is_empty() {
            let i = candidates[rng.gen_range(0..candidates.len())];
            ops[i].ret = Some(match (&ops[i].op, &ops[i].ret) {
                (RegOp::Read, Some(RegRet::Read(v))) => {
                    let other = rng.gen_range(0..=values);
                    let w = (other < values).then(|| other.to_string());
                    RegRet::Read(if w == *v {
                        w.map_or(Some("0".to_string()), |_| None)
                    } else {
                        w
                    })
                }
                (RegOp::Cas(..), Some(RegRet::Done)) => RegRet::CasRefused,
                (RegOp::Cas(..), Some(RegRet::CasRefused)) => RegRet::Done,
                (_, r) => r.clone().unwrap_or(RegRet::Done),
            });
        }
    }
    ops
}

fn json(v: Option<String>) -> serde_json::Value {
    v.map_or(serde_json::Value::Null, serde_json::Value::String)
}

/// The generated operations as history events, in time order.
fn to_history(ops: &[GenOp]) -> History {
    let mut timed: Vec<(usize, Event)> = Vec::new();
    for op in ops {
        let (f, input) = match op.op {
            RegOp::Read => ("read", serde_json::Value::Null),
            RegOp::Write(v) => ("write", json(Some(v.to_string()))),
            RegOp::Append(v) => ("append", json(Some(format!(",{v}")))),
            RegOp::Cas(a, b) => ("cas", serde_json::json!([a.to_string(), b.to_string()])),
            RegOp::Delete => ("delete", serde_json::Value::Null),
        };
        let event =
            |kind, value, error: Option<&str>| client_event(op.process, f, kind, value, error);
        timed.push((op.invoke, event(EventType::Invoke, input.clone(), None)));
        if let Some(c) = op.complete {
            let completion = if op.failed {
                event(EventType::Fail, input.clone(), Some("timeout"))
            } else {
                match &op.ret {
                    Some(RegRet::Read(v)) => event(EventType::Ok, json(v.clone()), None),
                    Some(RegRet::CasRefused) => {
                        event(EventType::Fail, input.clone(), Some("precondition-failed"))
                    }
                    _ => event(EventType::Ok, input.clone(), None),
                }
            };
            timed.push((c, completion));
        }
    }
    history_of(timed)
}

/// Brute force: tries every order (and every subset of unknown-outcome operations) that
/// respects real time.
fn brute_force(ops: &[GenOp]) -> bool {
    let ops: Vec<&GenOp> = ops.iter().filter(|o| !o.failed).collect();
    fn go(ops: &[&GenOp], used: &mut Vec<bool>, state: Option<String>) -> bool {
        if ops
            .iter()
            .zip(used.iter())
            .all(|(o, &u)| u || o.complete.is_none())
        {
            return true;
        }
        for i in 0..ops.len() {
            if used[i] {
                continue;
            }
            // Every unused completed op that returned before this one's invoke must go first.
            let blocked = ops
                .iter()
                .zip(used.iter())
                .any(|(o, &u)| !u && o.complete.is_some_and(|c| c < ops[i].invoke));
            if blocked {
                continue;
            }
            let mut reg = Register(state.clone());
            let ret = reg.invoke(&ops[i].op);
            if ops[i].ret.as_ref().is_some_and(|want| *want != ret) {
                continue;
            }
            used[i] = true;
            let ok = go(ops, used, reg.0);
            used[i] = false;
            if ok {
                return true;
            }
        }
        false
    }
    let mut used = vec![false; ops.len()];
    go(&ops, &mut used, None)
}

/// stateright's tester, fed the same history (plain fails removed, unknown outcomes left in
/// flight).
fn stateright(ops: &[GenOp]) -> bool {
    let mut events: Vec<(usize, u64, Option<&GenOp>)> = Vec::new();
    for op in ops.iter().filter(|o| !o.failed) {
        events.push((op.invoke, op.process, Some(op)));
        if let Some(c) = op.complete {
            events.push((c, op.process, None));
        }
    }
    events.sort_by_key(|e| e.0);
    let mut tester = LinearizabilityTester::new(Register::default());
    let mut open: std::collections::HashMap<u64, &GenOp> = Default::default();
    for (_, process, op) in events {
        match op {
            Some(op) => {
                tester.on_invoke(process, op.op.clone()).unwrap();
                open.insert(process, op);
            }
            None => {
                let op = open.remove(&process).unwrap();
                tester.on_return(process, op.ret.clone().unwrap()).unwrap();
            }
        }
    }
    tester.is_consistent()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn checker_agrees_with_stateright_and_brute_force(seed in any::<u64>()) {
        let ops = generate(seed);
        let history = to_history(&ops);
        let result = check_builtin(&history, BuiltinModel::Register, &CheckOptions::default()).unwrap();
        let brute = brute_force(&ops);
        let oracle = stateright(&ops);
        prop_assert_eq!(brute, oracle, "the oracles disagree on {:?}", ops);
        let expected = if brute { Verdict::Linearizable } else { Verdict::NotLinearizable };
        prop_assert_eq!(result.verdict, expected, "history {:?}\nresult {:?}", ops, result);
    }
}

#[test]
fn generated_histories_include_both_verdicts_and_unknown_outcomes() {
    let (mut good, mut bad, mut unknown, mut appends) = (0, 0, 0, 0);
    for seed in 0..500 {
        let ops = generate(seed);
        unknown += ops.iter().filter(|o| o.complete.is_none()).count();
        appends += ops
            .iter()
            .filter(|o| matches!(o.op, RegOp::Append(_)))
            .count();
        if brute_force(&ops) {
            good += 1;
        } else {
            bad += 1;
        }
    }
    assert!(
        good > 100 && bad > 50 && unknown > 50 && appends > 100,
        "good {good} bad {bad} unknown {unknown} appends {appends}"
    );
}

/// The operations of a single-register history as the `register` model prepares them.
fn prepared(history: &History, model: &KvModel) -> Vec<PreparedOp<KvInput, KvOutput>> {
    history
        .operations
        .iter()
        .filter_map(|op| {
            let (input, output) = model.prepare(op).unwrap()?;
            let complete = output.as_ref().and(op.complete_seq);
            Some(PreparedOp {
                op_id: op.id,
                output: complete.and(output),
                input,
                invoke: op.invoke_seq,
                complete,
            })
        })
        .collect()
}

#[test]
fn every_refutation_without_search_is_confirmed_by_brute_force() {
    let model = KvModel::register();
    let (mut refuted, mut not_linearizable) = (0, 0);
    for seed in 0..20_000 {
        let ops = generate(seed);
        let linearizable = brute_force(&ops);
        not_linearizable += usize::from(!linearizable);
        let history = to_history(&ops);
        if let Some(proof) = model.refute(&prepared(&history, &model)) {
            refuted += 1;
            assert!(
                !linearizable,
                "seed {seed}: refuted {proof:?} but linearizable: {ops:?}"
            );
        }
    }
    // The proof covers the common shapes of impossible reads, not all of them.
    assert!(
        refuted * 4 > not_linearizable,
        "refuted {refuted} of {not_linearizable} non-linearizable histories"
    );
}
