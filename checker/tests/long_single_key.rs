//! Long single-key histories with many unknown outcomes (where checkers tend to say
//! `unknown`): 300-2,500 operations on one register, 2-6 live processes plus the retired ones,
//! 2-25 % `info`, every written value unique, deletes among the writes, and in half of them a read
//! that is impossible by construction (it returns a value, or absence, overwritten before it
//! began). Four shapes, by seed: plain; with a writer whose every operation is `info` (a new
//! process each time, so many unknown writes stay open); with many deletes and the impossible
//! read one of absence; both. Refused cas operations from older values keep earlier unknown
//! writes observable in all of them. Each must get its verdict, not `unknown`. The histories
//! come from a seeded generator; a wrong verdict prints the seed to replay.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
mod common;

use common::timed::{client_event, history_of};
use riptide_checker::history::{Event, EventType};
use riptide_checker::{check_builtin, BuiltinModel, CheckOptions, History, Verdict};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Call {
    Read,
    Write(String),
    Cas(Option<String>, String),
    Delete,
}

#[derive(Debug, Clone)]
struct Op {
    process: u64,
    call: Call,
    invoke: usize,
    /// Completion position; `None` for `info`.
    complete: Option<usize>,
    /// A read's result, or whether a cas swapped.
    read: Option<String>,
    swapped: bool,
}

/// A history of one register and, when `impossible`, the index of the read made stale.
fn generate(seed: u64, impossible: bool) -> (Vec<Op>, Option<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let total = rng.gen_range(300..=2500usize);
    let info_writer = (seed / 2) % 2 == 1;
    let many_deletes = (seed / 4) % 2 == 1;
    // The info writer is one more slot, the last.
    let live = rng.gen_range(2..=6usize) + usize::from(info_writer);
    let info_rate = rng.gen_range(0.02..0.25);
    let mut state: Option<String> = None;
    let mut written: Vec<String> = Vec::new();
    let mut ops: Vec<Op> = Vec::new();
    // Per live slot: its process id and its open op (index, applied).
    let mut slots: Vec<(u64, Option<(usize, bool)>)> =
        (0..live as u64).map(|p| (p, None)).collect();
    let mut next_process = live as u64;
    let (mut clock, mut started, mut counter) = (0usize, 0usize, 0u64);
    loop {
        let s = rng.gen_range(0..live);
        match slots[s].1 {
            None if started < total => {
                counter += 1;
                let writer_slot = info_writer && s == live - 1;
                let choice = if writer_slot {
                    8
                } else if many_deletes && rng.gen_bool(0.15) {
                    19
                } else {
                    rng.gen_range(0..20)
                };
                let call = match choice {
                    0..=7 => Call::Read,
                    8..=13 => Call::Write(format!("v{counter}")),
                    14..=18 => {
                        let from = if rng.gen_bool(0.7) || written.is_empty() {
                            state.clone()
                        } else {
                            Some(written[rng.gen_range(0..written.len())].clone())
                        };
                        Call::Cas(from, format!("v{counter}"))
                    }
                    _ => Call::Delete,
                };
                ops.push(Op {
                    process: slots[s].0,
                    call,
                    invoke: clock,
                    complete: None,
                    read: None,
                    swapped: false,
                });
                slots[s].1 = Some((ops.len() - 1, false));
                started += 1;
            }
            None => {
                if slots.iter().all(|(_, open)| open.is_none()) {
                    break;
                }
                continue;
            }
            Some((i, false)) => {
                // Take effect now.
                match ops[i].call.clone() {
                    Call::Read => ops[i].read = state.clone(),
                    Call::Write(v) => {
                        written.push(v.clone());
                        state = Some(v);
                    }
                    Call::Cas(from, to) => {
                        if from == state {
                            written.push(to.clone());
                            state = Some(to);
                            ops[i].swapped = true;
                        }
                    }
                    Call::Delete => state = None,
                }
                slots[s].1 = Some((i, true));
            }
            Some((i, true)) => {
                if rng.gen_bool(info_rate) || (info_writer && s == live - 1) {
                    // Unknown outcome: the process retires.
                    slots[s].0 = next_process;
                    next_process += 1;
                } else {
                    ops[i].complete = Some(clock);
                }
                slots[s].1 = None;
            }
        }
        clock += 1;
    }
    if !impossible {
        return (ops, None);
    }
    if many_deletes {
        if let Some(r) = make_absence_stale(&mut ops) {
            return (ops, Some(r));
        }
    }
    // A read in the second half returns a value whose write completed, then was overwritten
    // by a completed write that itself completed before the read began.
    for r in (ops.len() / 2..ops.len()).rev() {
        if !matches!(ops[r].call, Call::Read) || ops[r].complete.is_none() {
            continue;
        }
        let stale = ops.iter().find_map(|w| {
            let (Call::Write(v), Some(done)) = (&w.call, w.complete) else {
                return None;
            };
            let overwritten = ops.iter().any(|w2| {
                matches!(w2.call, Call::Write(_) | Call::Delete)
                    && w2.invoke > done
                    && w2.complete.is_some_and(|c| c < ops[r].invoke)
            });
            (overwritten && ops[r].read.as_ref() != Some(v)).then(|| v.clone())
        });
        if let Some(v) = stale {
            ops[r].read = Some(v);
            return (ops, Some(r));
        }
    }
    panic!("seed {seed}: no read to make stale");
}

/// Makes a read in the second half that saw a value return absence instead, when absence was
/// gone for good before it began: every delete invoked before the read completed, completed,
/// and was followed by a completed write that completed before the read began (and the initial
/// absence too). Unknown writes (the info writer's) are never deletes, so they cannot bring
/// absence back.
fn make_absence_stale(ops: &mut [Op]) -> Option<usize> {
    let written_after = |ops: &[Op], from: Option<usize>, before: usize| {
        ops.iter().any(|w| {
            matches!(w.call, Call::Write(_))
                && from.is_none_or(|from| w.invoke > from)
                && w.complete.is_some_and(|c| c < before)
        })
    };
    for r in (ops.len() / 2..ops.len()).rev() {
        let (Call::Read, Some(done), Some(_)) = (&ops[r].call, ops[r].complete, &ops[r].read)
        else {
            continue;
        };
        let invoke = ops[r].invoke;
        let gone = written_after(ops, None, invoke)
            && ops
                .iter()
                .filter(|d| matches!(d.call, Call::Delete) && d.invoke < done)
                .all(|d| {
                    d.complete
                        .is_some_and(|c| written_after(ops, Some(c), invoke))
                });
        if gone {
            ops[r].read = None;
            return Some(r);
        }
    }
    None
}

fn to_history(ops: &[Op]) -> History {
    let json = |v: &Option<String>| v.clone().map_or(serde_json::Value::Null, Into::into);
    let mut timed: Vec<(usize, Event)> = Vec::new();
    for op in ops {
        let (f, input) = match &op.call {
            Call::Read => ("read", serde_json::Value::Null),
            Call::Write(v) => ("write", v.clone().into()),
            Call::Cas(from, to) => ("cas", serde_json::json!([json(from), to])),
            Call::Delete => ("delete", serde_json::Value::Null),
        };
        let event =
            |kind, value, error: Option<&str>| client_event(op.process, f, kind, value, error);
        timed.push((op.invoke, event(EventType::Invoke, input.clone(), None)));
        let completion = match (&op.call, op.complete) {
            (_, None) => continue,
            (Call::Read, Some(_)) => event(EventType::Ok, json(&op.read), None),
            (Call::Cas(..), Some(_)) if !op.swapped => {
                event(EventType::Fail, input, Some("precondition-failed"))
            }
            _ => event(EventType::Ok, input, None),
        };
        timed.push((op.complete.unwrap_or_default(), completion));
    }
    history_of(timed)
}

#[test]
fn long_single_key_histories_with_many_unknown_outcomes_are_decided() {
    let options = CheckOptions {
        // Generous (2 shared cores): a miss shows as `unknown`; the times are printed.
        time_limit: Some(Duration::from_secs(120)),
        ..CheckOptions::default()
    };
    let mut slowest = (Duration::ZERO, 0);
    let mut wrong = Vec::new();
    for seed in 0..120u64 {
        let impossible = seed % 2 == 1;
        let (ops, stale) = generate(seed, impossible);
        let unknown = ops.iter().filter(|o| o.complete.is_none()).count();
        assert!(unknown > 0, "seed {seed}: no unknown outcome");
        let history = to_history(&ops);
        let started = Instant::now();
        let result = check_builtin(&history, BuiltinModel::Register, &options).unwrap();
        let took = started.elapsed();
        println!(
            "seed {seed}: {} ops, {unknown} unknown, {} in {took:?}",
            ops.len(),
            result.verdict
        );
        if took > slowest.0 {
            slowest = (took, seed);
        }
        let expected = if impossible {
            Verdict::NotLinearizable
        } else {
            Verdict::Linearizable
        };
        if result.verdict != expected {
            wrong.push(format!(
                "seed {seed} ({} ops, {unknown} unknown, stale read {stale:?}): expected \
                 {expected}, got {} in {took:?}",
                ops.len(),
                result.verdict
            ));
        }
    }
    println!("slowest: seed {} in {:?}", slowest.1, slowest.0);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
