//! The `register` / `kv` model: registers holding a value or nothing, with read, write, cas,
//! delete and append: everything the node's API does to a key. One register per key
//! (P-compositionality: keys are checked independently).

use super::json_text;
use crate::fxhash::FxHashMap as HashMap;
use crate::history::{Completion, Operation};
use crate::model::{Model, PreparedOp};
use crate::value::ExactValue;
use std::sync::Arc;

/// A register's content: the compact JSON text of the value, `None` when absent (JSON `null`).
pub type Datum = Option<Arc<str>>;

/// What a register operation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvInput {
    /// Read the value.
    Read,
    /// Set the value (writing `null` deletes).
    Write(Datum),
    /// Set the value to `to` if it is `from`.
    Cas {
        /// The value expected.
        from: Datum,
        /// The value written when it matched.
        to: Datum,
    },
    /// Remove the value.
    Delete,
    /// Add a suffix to a string value, creating the key (as that string) when absent.
    Append(Arc<str>),
}

/// What a register operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOutput {
    /// A read's value.
    Value(Datum),
    /// A write, delete or successful cas.
    Done,
    /// A cas refused with `precondition-failed`: it saw a value other than `from`.
    CasFailed,
}

/// The register / key-value model. `name` is `register` or `kv`; both split by key.
#[derive(Debug, Clone)]
pub struct KvModel {
    /// The name it was selected by (`register` or `kv`), for messages.
    pub name: &'static str,
    /// Every register's value before any operation (`None`: absent).
    pub initial: Datum,
}

impl KvModel {
    /// The `kv` model.
    pub fn kv() -> Self {
        KvModel {
            name: "kv",
            initial: None,
        }
    }

    /// The `register` model.
    pub fn register() -> Self {
        KvModel {
            name: "register",
            initial: None,
        }
    }
}

/// A value as a register holds it: `null` is absence.
pub(crate) fn datum(value: &ExactValue) -> Datum {
    if value.is_null() {
        None
    } else {
        Some(json_text(value))
    }
}

/// A string's JSON text.
fn json_string(s: &str) -> String {
    ExactValue::String(s.to_string()).text()
}

/// The register after appending `suffix`: the string it holds (or the empty string when
/// absent) followed by `suffix`; `None` when it holds something other than a string.
fn appended(state: &Datum, suffix: &str) -> Option<Datum> {
    let mut text = match state {
        None => String::new(),
        Some(json) => match ExactValue::from_json_text(json) {
            Ok(ExactValue::String(s)) => s,
            _ => return None,
        },
    };
    text.push_str(suffix);
    Some(Some(Arc::from(json_string(&text))))
}

fn show(d: &Datum) -> &str {
    d.as_deref().unwrap_or("null")
}

impl Model for KvModel {
    type State = Datum;
    type Input = KvInput;
    type Output = KvOutput;

    fn name(&self) -> &str {
        self.name
    }

    fn prepare(&self, op: &Operation) -> Result<Option<(KvInput, Option<KvOutput>)>, String> {
        let input = match op.f.as_str() {
            "read" | "get" => KvInput::Read,
            "write" | "put" => KvInput::Write(datum(&op.input)),
            "delete" => KvInput::Delete,
            "append" => match &op.input {
                ExactValue::String(suffix) => KvInput::Append(Arc::from(suffix.as_str())),
                other => return Err(format!("an append's value must be a string, got {other}")),
            },
            "cas" => match op.input.as_array() {
                Some([from, to]) => KvInput::Cas {
                    from: datum(from),
                    to: datum(to),
                },
                _ => return Err(format!("cas value must be [from, to], got {}", op.input)),
            },
            other => {
                return Err(format!(
                    "unknown f `{other}` for the {} model (expected read, write, cas, delete or \
                     append)",
                    self.name
                ))
            }
        };
        let output = match &op.completion {
            Completion::Unknown { .. } => None,
            Completion::Fail { error } => {
                if matches!(input, KvInput::Cas { .. })
                    && error.as_deref() == Some("precondition-failed")
                {
                    Some(KvOutput::CasFailed)
                } else {
                    return Ok(None);
                }
            }
            Completion::Ok => Some(match input {
                KvInput::Read => KvOutput::Value(datum(&op.output)),
                _ => KvOutput::Done,
            }),
        };
        Ok(Some((input, output)))
    }

    fn init(&self) -> Datum {
        self.initial.clone()
    }

    fn step(&self, state: &Datum, input: &KvInput, output: Option<&KvOutput>) -> Vec<Datum> {
        match (input, output) {
            (KvInput::Read, Some(KvOutput::Value(v))) => {
                if v == state {
                    vec![state.clone()]
                } else {
                    vec![]
                }
            }
            (KvInput::Read, None) => vec![state.clone()],
            (KvInput::Write(v), None | Some(KvOutput::Done)) => vec![v.clone()],
            (KvInput::Delete, None | Some(KvOutput::Done)) => vec![None],
            (KvInput::Append(suffix), None | Some(KvOutput::Done)) => {
                appended(state, suffix).map_or_else(Vec::new, |next| vec![next])
            }
            (KvInput::Cas { from, to }, Some(KvOutput::Done)) => {
                if from == state {
                    vec![to.clone()]
                } else {
                    vec![]
                }
            }
            (KvInput::Cas { from, .. }, Some(KvOutput::CasFailed)) => {
                if from != state {
                    vec![state.clone()]
                } else {
                    vec![]
                }
            }
            (KvInput::Cas { from, to }, None) => {
                if from == state {
                    vec![to.clone()]
                } else {
                    vec![state.clone()]
                }
            }
            // An output that does not belong to the input (cannot come out of `prepare`).
            _ => vec![],
        }
    }

    fn describe_operation(&self, input: &KvInput, output: Option<&KvOutput>) -> String {
        let call = match input {
            KvInput::Read => "read".to_string(),
            KvInput::Write(v) => format!("write({})", show(v)),
            KvInput::Delete => "delete".to_string(),
            KvInput::Append(suffix) => format!("append({})", json_string(suffix)),
            KvInput::Cas { from, to } => format!("cas({} -> {})", show(from), show(to)),
        };
        match output {
            None => format!("{call} = ?"),
            Some(KvOutput::Value(v)) => format!("{call} = {}", show(v)),
            Some(KvOutput::Done) => format!("{call} = ok"),
            Some(KvOutput::CasFailed) => format!("{call} = precondition-failed"),
        }
    }

    fn describe_state(&self, state: &Datum) -> String {
        show(state).to_string()
    }

    /// An unknown write or cas of value `v` can only be observed by a completed read of `v` or
    /// cas from `v` that completes after it began (or, in a chain, through an unknown cas from
    /// `v`), or by a refused cas whose `from` could still be the value it overwrites (see
    /// [`refused_cas_horizons`]); once none of those remain it may as well never have happened.
    /// Absence is treated the same way: an unknown delete, `write(null)` or cas to `null` is
    /// observed only by reads of `null` and cas from `null` (and refused cas), so long histories
    /// with unknown deletes stay near-linear. Unknown reads are never observable.
    /// An impossible read: a completed read of `u` (a value or absence) such that every
    /// operation that can leave `u` and was invoked before the read completed (a write, a cas to
    /// `u` that succeeded or may have, a delete when `u` is absence) completed, and all of them,
    /// and the initial value when it is `u`, were followed in real time by a completed write,
    /// delete or successful cas `C` that leaves a value other than `u` and completed before the
    /// read began. Then whatever produced the value the read saw took effect before `C`, which
    /// took effect before the read: the read cannot see `u`. (A read of a value nothing could
    /// have produced in time is impossible outright.) Sound whether or not values repeat;
    /// O(n log n). It decides the long histories with many unknown outcomes whose search cannot
    /// finish: stale reads of a value, of absence after a delete, of a value written twice.
    fn refute(&self, ops: &[PreparedOp<KvInput, KvOutput>]) -> Option<(usize, usize, usize)> {
        if ops.iter().any(|op| matches!(op.input, KvInput::Append(_))) {
            return None;
        }
        // Per value: the operations that can leave it, by invoke, with the latest completion
        // (and its operation) and whether one had an unknown outcome, among the first k.
        type Producers = Vec<(u64, Option<(u64, usize)>, bool)>;
        let mut producers: HashMap<Option<&Arc<str>>, Producers> = HashMap::default();
        for (i, op) in ops.iter().enumerate() {
            let produced = match (&op.input, &op.output) {
                (KvInput::Write(v), _) => v.as_ref(),
                (KvInput::Cas { to, .. }, None | Some(KvOutput::Done)) => to.as_ref(),
                (KvInput::Delete, _) => None,
                _ => continue,
            };
            let done = op.complete.map(|c| (c, i));
            producers
                .entry(produced)
                .or_default()
                .push((op.invoke, done, done.is_none()));
        }
        for list in producers.values_mut() {
            list.sort_unstable_by_key(|p| p.0);
            for k in 1..list.len() {
                let (before, unknown_before) = (list[k - 1].1, list[k - 1].2);
                list[k].1 = list[k].1.max(before);
                list[k].2 |= unknown_before;
            }
        }
        // Completed changes by completion, each with the value it leaves; best[k]: among
        // changes[..=k], the one invoked last, and the one invoked last among those leaving
        // another value than it.
        let mut changes: Vec<(u64, u64, Option<&Arc<str>>, usize)> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| {
                let left = match (&op.input, &op.output) {
                    (KvInput::Write(v), Some(KvOutput::Done)) => v.as_ref(),
                    (KvInput::Delete, Some(KvOutput::Done)) => None,
                    (KvInput::Cas { to, .. }, Some(KvOutput::Done)) => to.as_ref(),
                    _ => return None,
                };
                Some((op.complete?, op.invoke, left, i))
            })
            .collect();
        changes.sort_unstable_by_key(|c| (c.0, c.3));
        type Latest<'v> = Option<(u64, Option<&'v Arc<str>>, usize)>;
        let mut best: Vec<(Latest<'_>, Latest<'_>)> = Vec::with_capacity(changes.len());
        for &(_, invoke, left, c) in &changes {
            let (mut first, mut second) = best.last().copied().unwrap_or((None, None));
            let this = Some((invoke, left, c));
            match first {
                Some((i, v, _)) if i >= invoke => {
                    if v != left && second.is_none_or(|(j, _, _)| j < invoke) {
                        second = this;
                    }
                }
                Some((_, v, _)) => {
                    if v != left {
                        second = first;
                    }
                    first = this;
                }
                None => first = this,
            }
            best.push((first, second));
        }
        for (r, read) in ops.iter().enumerate() {
            let (KvInput::Read, Some(KvOutput::Value(u)), Some(read_done)) =
                (&read.input, &read.output, read.complete)
            else {
                continue;
            };
            let u = u.as_ref();
            let list = producers.get(&u).map_or(&[][..], |l| &l[..]);
            let k = list.partition_point(|p| p.0 < read_done);
            let (latest, unknown) = match k.checked_sub(1) {
                Some(k) => (list[k].1, list[k].2),
                None => (None, false),
            };
            let initial = self.initial.as_ref() == u;
            if unknown {
                continue;
            }
            if latest.is_none() && !initial {
                return Some((r, r, r));
            }
            // The change completed before the read began, invoked last, leaving another value.
            let before_read = changes.partition_point(|c| c.0 < read.invoke);
            let Some(&(first, second)) = before_read.checked_sub(1).map(|k| &best[k]) else {
                continue;
            };
            let killer = match first {
                Some((_, v, _)) if v == u => second,
                other => other,
            };
            if let Some((invoke, _, c)) = killer {
                match latest {
                    Some((done, p)) if invoke > done => return Some((p, c, r)),
                    None => return Some((c, c, r)),
                    _ => {}
                }
            }
        }
        None
    }

    fn observation_horizons(&self, ops: &[PreparedOp<KvInput, KvOutput>]) -> Vec<Option<u64>> {
        if self.initial.is_some() || ops.iter().any(|op| matches!(op.input, KvInput::Append(_))) {
            // Appends make values that no write wrote (a read of `v` + suffix also observes the
            // write of `v`), and an initial value is one no operation wrote, so the
            // unique-value reasoning below does not hold: drop nothing.
            return vec![Some(u64::MAX); ops.len()];
        }
        // Absence (`None`) is observed like any value: by a read of `null` or a cas from `null`.
        let mut last_observer: HashMap<Option<&Arc<str>>, u64> = HashMap::default();
        for op in ops {
            let Some(done) = op.complete else { continue };
            let observed = match (&op.input, &op.output) {
                (KvInput::Read, Some(KvOutput::Value(v))) => v.as_ref(),
                (KvInput::Cas { from, .. }, Some(KvOutput::Done)) => from.as_ref(),
                _ => continue,
            };
            let e = last_observer.entry(observed).or_insert(done);
            *e = (*e).max(done);
        }
        let refused = refused_cas_horizons(ops);
        let mut horizons: Vec<Option<u64>> = ops
            .iter()
            .zip(refused)
            .map(|(op, refused)| {
                if op.output.is_some() || matches!(op.input, KvInput::Append(_)) {
                    return Some(u64::MAX);
                }
                let Some(produced) = produced_value(&op.input) else {
                    return None; // An unknown read.
                };
                // Only an observer completing after this operation began can see its effect.
                let observed = last_observer
                    .get(&produced)
                    .copied()
                    .filter(|&done| done > op.invoke);
                observed.max(refused)
            })
            .collect();
        // An unknown cas from `v` also observes `v`, and hands it on to whoever observes its
        // own `to`: propagate horizons along such chains until nothing changes.
        let unknown_cas_from: Vec<(usize, Option<&Arc<str>>)> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| match (&op.input, &op.output) {
                (KvInput::Cas { from, .. }, None) => Some((i, from.as_ref())),
                _ => None,
            })
            .collect();
        if !unknown_cas_from.is_empty() {
            let mut changed = true;
            while changed {
                changed = false;
                for (i, op) in ops.iter().enumerate() {
                    if op.output.is_some() {
                        continue;
                    }
                    let Some(produced) = produced_value(&op.input) else {
                        continue;
                    };
                    for &(j, from) in &unknown_cas_from {
                        if from == produced && horizons[j] > horizons[i] {
                            horizons[i] = horizons[j];
                            changed = true;
                        }
                    }
                }
            }
        }
        horizons
    }
}

/// The value an operation leaves when it takes effect (`Some(None)`: absence); `None` for a
/// read, which changes nothing, and for an append, whose result depends on the state (the
/// callers keep unknown appends).
fn produced_value(input: &KvInput) -> Option<Option<&Arc<str>>> {
    match input {
        KvInput::Read | KvInput::Append(_) => None,
        KvInput::Write(v) | KvInput::Cas { to: v, .. } => Some(v.as_ref()),
        KvInput::Delete => Some(None),
    }
}

/// For each unknown-outcome operation, the latest completion of a refused cas it could matter
/// to. Taking effect hides the value before it, which a refused cas from that value needs
/// hidden. A value `u` written by exactly one operation `W` that completed is gone for good once
/// a completed write, delete or cas invoked after `W` completed has itself completed (values
/// are not written twice, so nothing brings `u` back): a refused cas from `u` cannot matter to
/// an operation invoked after that. Values written several times (or never completed) are
/// never considered gone, and neither is absence (`null`).
fn refused_cas_horizons(ops: &[PreparedOp<KvInput, KvOutput>]) -> Vec<Option<u64>> {
    // Producers of each value: how many, and the completion of the first.
    let mut producers: HashMap<&Arc<str>, (usize, Option<u64>)> = HashMap::default();
    // Completed state changes as (invoke, complete).
    let mut changes: Vec<(u64, u64)> = Vec::new();
    for op in ops {
        let produced = match (&op.input, &op.output) {
            (KvInput::Write(Some(v)), _) => Some(v),
            (KvInput::Cas { to: Some(v), .. }, None | Some(KvOutput::Done)) => Some(v),
            _ => None,
        };
        if let Some(v) = produced {
            let entry = producers.entry(v).or_insert((0, op.complete));
            entry.0 += 1;
        }
        let changes_state = matches!(
            (&op.input, &op.output),
            (KvInput::Write(_) | KvInput::Delete, Some(KvOutput::Done))
                | (KvInput::Cas { .. }, Some(KvOutput::Done))
        );
        if let (true, Some(done)) = (changes_state, op.complete) {
            changes.push((op.invoke, done));
        }
    }
    changes.sort_unstable();
    // suffix_min[k]: the earliest completion among changes[k..].
    let mut suffix_min = vec![u64::MAX; changes.len() + 1];
    for k in (0..changes.len()).rev() {
        suffix_min[k] = suffix_min[k + 1].min(changes[k].1);
    }
    let gone_at = |u: &Option<Arc<str>>| -> u64 {
        let Some(u) = u else { return u64::MAX };
        match producers.get(u) {
            None => 0,
            Some(&(1, Some(written))) => {
                let k = changes.partition_point(|&(invoke, _)| invoke <= written);
                suffix_min[k]
            }
            Some(_) => u64::MAX,
        }
    };
    // Each refused cas matters to unknown operations invoked before `limit`.
    let mut refused: Vec<(u64, u64)> = ops
        .iter()
        .filter_map(|op| match (&op.input, &op.output, op.complete) {
            (KvInput::Cas { from, .. }, Some(KvOutput::CasFailed), Some(done)) => {
                Some((gone_at(from).min(done), done))
            }
            _ => None,
        })
        .collect();
    refused.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
    let mut unknown: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].output.is_none())
        .collect();
    unknown.sort_unstable_by(|&a, &b| ops[b].invoke.cmp(&ops[a].invoke));
    let mut result = vec![None; ops.len()];
    let (mut k, mut latest) = (0, None);
    for i in unknown {
        while k < refused.len() && refused[k].0 > ops[i].invoke {
            latest = latest.max(Some(refused[k].1));
            k += 1;
        }
        result[i] = latest;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Datum {
        Some(Arc::from(s))
    }

    #[test]
    fn read_must_return_the_current_value_and_absent_reads_as_null() {
        let m = KvModel::kv();
        assert_eq!(
            m.step(&d("1"), &KvInput::Read, Some(&KvOutput::Value(d("1")))),
            vec![d("1")]
        );
        assert!(m
            .step(&d("1"), &KvInput::Read, Some(&KvOutput::Value(d("2"))))
            .is_empty());
        assert_eq!(
            m.step(&None, &KvInput::Read, Some(&KvOutput::Value(None))),
            vec![None]
        );
        assert_eq!(m.step(&d("7"), &KvInput::Read, None), vec![d("7")]);
    }

    #[test]
    fn write_and_delete_set_the_value_whatever_it_was() {
        let m = KvModel::kv();
        assert_eq!(
            m.step(&None, &KvInput::Write(d("3")), Some(&KvOutput::Done)),
            vec![d("3")]
        );
        assert_eq!(
            m.step(&d("3"), &KvInput::Delete, Some(&KvOutput::Done)),
            vec![None]
        );
        assert_eq!(m.step(&d("3"), &KvInput::Delete, None), vec![None]);
    }

    #[test]
    fn cas_swaps_only_from_the_expected_value_and_refusal_needs_another_value() {
        let m = KvModel::kv();
        let cas = KvInput::Cas {
            from: d("1"),
            to: d("2"),
        };
        assert_eq!(m.step(&d("1"), &cas, Some(&KvOutput::Done)), vec![d("2")]);
        assert!(m.step(&d("3"), &cas, Some(&KvOutput::Done)).is_empty());
        assert_eq!(
            m.step(&d("3"), &cas, Some(&KvOutput::CasFailed)),
            vec![d("3")]
        );
        assert!(m.step(&d("1"), &cas, Some(&KvOutput::CasFailed)).is_empty());
        // Unknown outcome: swaps when it can, else changes nothing.
        assert_eq!(m.step(&d("1"), &cas, None), vec![d("2")]);
        assert_eq!(m.step(&None, &cas, None), vec![None]);
    }

    #[test]
    fn append_extends_a_string_and_creates_an_absent_key() {
        let m = KvModel::kv();
        let append = KvInput::Append(Arc::from("b"));
        assert_eq!(
            m.step(&None, &append, Some(&KvOutput::Done)),
            vec![d(r#""b""#)]
        );
        assert_eq!(m.step(&d(r#""a""#), &append, None), vec![d(r#""ab""#)]);
        assert!(
            m.step(&d("7"), &append, Some(&KvOutput::Done)).is_empty(),
            "a number is not a string to append to"
        );
    }

    #[test]
    fn only_refused_cas_fails_are_kept() {
        let m = KvModel::kv();
        let mut op = Operation {
            id: 0,
            process: 1,
            f: "cas".into(),
            key: None,
            input: ExactValue::from(serde_json::json!(["1", "2"])),
            output: ExactValue::Null,
            completion: Completion::Fail {
                error: Some("precondition-failed".into()),
            },
            invoke_seq: 0,
            complete_seq: Some(1),
            invoke_line: 1,
            complete_line: Some(2),
            invoke_time: 0,
            complete_time: Some(1),
        };
        let (_, out) = m.prepare(&op).unwrap().unwrap();
        assert_eq!(out, Some(KvOutput::CasFailed));
        op.completion = Completion::Fail {
            error: Some("timeout".into()),
        };
        assert!(m.prepare(&op).unwrap().is_none());
        op.f = "frobnicate".into();
        assert!(m
            .prepare(&op)
            .unwrap_err()
            .contains("unknown f `frobnicate`"));
    }

    fn prepared(
        input: KvInput,
        output: Option<KvOutput>,
        invoke: u64,
        complete: Option<u64>,
    ) -> PreparedOp<KvInput, KvOutput> {
        PreparedOp {
            op_id: invoke as usize,
            input,
            output,
            invoke,
            complete,
        }
    }

    #[test]
    fn an_unknown_write_matters_to_a_refused_cas_only_while_its_from_value_can_come_back() {
        let m = KvModel::kv();
        let history = |refused_from: &str| {
            vec![
                prepared(KvInput::Write(d("a")), Some(KvOutput::Done), 0, Some(1)),
                prepared(KvInput::Write(d("b")), Some(KvOutput::Done), 2, Some(3)),
                prepared(KvInput::Write(d("x")), None, 4, None),
                prepared(
                    KvInput::Cas {
                        from: d(refused_from),
                        to: d("y"),
                    },
                    Some(KvOutput::CasFailed),
                    5,
                    Some(6),
                ),
            ]
        };
        // `a` was overwritten for good before the unknown write began: nothing can observe it.
        assert_eq!(m.observation_horizons(&history("a"))[2], None);
        // `b` may still be the value the unknown write hides from the refused cas.
        assert_eq!(m.observation_horizons(&history("b"))[2], Some(6));
    }

    #[test]
    fn an_unknown_write_read_later_stays_observable_until_that_read() {
        let m = KvModel::kv();
        let ops = vec![
            prepared(KvInput::Write(d("x")), None, 0, None),
            prepared(KvInput::Read, Some(KvOutput::Value(d("x"))), 1, Some(2)),
            prepared(KvInput::Read, None, 3, None),
        ];
        let h = m.observation_horizons(&ops);
        assert_eq!(h[0], Some(2));
        assert_eq!(h[2], None, "an unknown read is never observable");
    }
}
