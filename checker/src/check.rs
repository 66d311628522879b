//! The check: prepares a history's operations for a model, splits them into partitions, searches
//! each partition in parallel, and gathers the verdicts with a readable counterexample.

use crate::history::{History, Operation};
use crate::model::{Model, PreparedOp};
use crate::models::{
    key_name, AppendModel, BuiltinModel, CasRegisterModel, KvModel, MultiRegisterModel, SetModel,
};
use crate::search::{self, Budget, Outcome};
use crate::value::ExactValue;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Limits on a check. Whatever a limit stops gets the verdict `unknown`, never a wrong one.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Wall-clock time the whole check may take.
    pub time_limit: Option<Duration>,
    /// Bytes the search structures of all partitions together may hold (approximate).
    pub memory_budget: Option<usize>,
    /// Finish every partition even after one is found not linearizable. By default (as
    /// Porcupine does) the others are then stopped and get the verdict `unknown`.
    pub all_partitions: bool,
}

/// The answer for a partition or a whole history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Some order of the operations, consistent with real time, satisfies the model.
    Linearizable,
    /// No such order exists.
    NotLinearizable,
    /// A limit stopped the search first.
    Unknown,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "not linearizable",
            Verdict::Unknown => "unknown",
        })
    }
}

/// An operation as a counterexample shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpSummary {
    /// Index into [`History::operations`].
    pub id: usize,
    /// The process that ran it.
    pub process: u64,
    /// The model's rendering, e.g. `cas(1 -> 4) = ok`.
    pub description: String,
    /// Line of its invoke in the history file.
    pub invoke_line: usize,
    /// Line of its completion, if it completed.
    pub complete_line: Option<usize>,
}

/// An operation that could have been linearized next after the longest prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The operation.
    pub op: OpSummary,
    /// Whether the model accepts it in the state after the prefix. When it does, every
    /// continuation through it was explored and led nowhere.
    pub model_accepts: bool,
}

/// Why a partition is not linearizable, at the deepest point the search reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counterexample {
    /// The longest linearizable prefix found: operation ids in linearization order.
    pub prefix: Vec<usize>,
    /// The last operations of that prefix (up to 10), described.
    pub prefix_tail: Vec<OpSummary>,
    /// The model state(s) after the prefix.
    pub states: Vec<String>,
    /// The operation that had completed before it could be linearized: it must come next and
    /// cannot.
    pub blocked_by: Option<OpSummary>,
    /// The operations that could have been linearized next (the blocking one among them), and
    /// whether the model accepts each.
    pub candidates: Vec<Candidate>,
}

/// The verdict for one partition (one key for `kv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionResult {
    /// The partition's name (the key; empty for a single register).
    pub partition: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Why the verdict is `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Operations checked (after removing failed ones).
    pub operations: usize,
    /// For a linearizable partition, a linearization (operation ids in order; unknown-outcome
    /// operations that never took effect are absent); otherwise the longest prefix found.
    pub linearization: Vec<usize>,
    /// For a non-linearizable partition, what goes wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Counterexample>,
    /// Time spent searching this partition.
    pub elapsed_ms: f64,
}

/// The result of checking one history: written as `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The model checked against.
    pub model: String,
    /// `not-linearizable` if any partition is, else `unknown` if any is, else `linearizable`.
    pub verdict: Verdict,
    /// Operations in the history (client operations, failed ones included).
    pub operations: usize,
    /// Per-partition verdicts, ordered by partition name.
    pub partitions: Vec<PartitionResult>,
    /// Wall-clock time of the check.
    pub elapsed_ms: f64,
}

impl CheckResult {
    /// The partitions that are not linearizable.
    pub fn failures(&self) -> impl Iterator<Item = &PartitionResult> {
        self.partitions
            .iter()
            .filter(|p| p.verdict == Verdict::NotLinearizable)
    }
}

/// Why a history cannot be checked against a model.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The model cannot read an operation (e.g. an unknown `f`).
    #[error("line {line}: {message}")]
    BadOperation {
        /// Line of the operation's invoke (or of its completion when the result is at fault).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The model's arguments do not fit it (e.g. an initial value for `set`).
    #[error("{message}")]
    BadModel {
        /// What is wrong.
        message: String,
    },
}

impl CheckError {
    /// The 1-based line at fault (0 when the error concerns no line).
    pub fn line(&self) -> usize {
        match self {
            CheckError::BadOperation { line, .. } => *line,
            CheckError::BadModel { .. } => 0,
        }
    }
}

/// Checks a history against a built-in model with its defaults (initial value absent; a
/// `jepsen.independent` history detected for the register models).
pub fn check_builtin(
    history: &History,
    model: BuiltinModel,
    options: &CheckOptions,
) -> Result<CheckResult, CheckError> {
    check_with(history, &ModelSpec::new(model), options)
}

/// Whether operation values are `jepsen.independent` `[key v]` tuples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Independent {
    /// When [`crate::looks_independent`] says so, for `register`, `kv` and `cas-register`.
    #[default]
    Detect,
    /// Always: every value must be a tuple.
    Always,
    /// Never.
    Never,
}

/// A built-in model with its arguments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSpec {
    /// The model.
    pub model: BuiltinModel,
    /// The initial value (`register`, `kv`, `cas-register`: every key's value; `multi-register`:
    /// an object of key -> value). `None`: absent / `nil` / empty.
    pub initial: Option<ExactValue>,
    /// How to read `[key v]` tuples.
    pub independent: Independent,
}

/// Why a [`ModelSpec`] cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ModelSpecError(String);

impl ModelSpec {
    /// The model with its defaults.
    pub fn new(model: BuiltinModel) -> ModelSpec {
        ModelSpec {
            model,
            ..ModelSpec::default()
        }
    }

    fn initial_datum(&self) -> Option<std::sync::Arc<str>> {
        self.initial
            .as_ref()
            .filter(|v| !v.is_null())
            .map(|v| v.text().into())
    }

    /// Checks that the arguments fit the model.
    pub fn validate(&self) -> Result<(), ModelSpecError> {
        match (&self.model, &self.initial) {
            (_, None | Some(ExactValue::Null)) => Ok(()),
            (BuiltinModel::Register | BuiltinModel::Kv | BuiltinModel::CasRegister, _) => Ok(()),
            (BuiltinModel::MultiRegister, Some(ExactValue::Object(_))) => Ok(()),
            (BuiltinModel::MultiRegister, Some(other)) => Err(ModelSpecError(format!(
                "the multi-register model's initial value must be an object of key -> value, \
                 got {other}"
            ))),
            (model, Some(_)) => Err(ModelSpecError(format!(
                "the {model} model takes no initial value (every key starts empty)"
            ))),
        }
    }
}

/// Checks a history against a built-in model with its arguments.
pub fn check_with(
    history: &History,
    spec: &ModelSpec,
    options: &CheckOptions,
) -> Result<CheckResult, CheckError> {
    spec.validate().map_err(|err| CheckError::BadModel {
        message: err.to_string(),
    })?;
    let register_like = matches!(
        spec.model,
        BuiltinModel::Register | BuiltinModel::Kv | BuiltinModel::CasRegister
    );
    let split = match spec.independent {
        Independent::Always => true,
        Independent::Detect => register_like && crate::independent::looks_independent(history),
        Independent::Never => false,
    };
    let split_history;
    let history = if split {
        split_history = crate::independent::split_independent(history)?;
        &split_history
    } else {
        history
    };
    let initial = spec.initial_datum();
    match spec.model {
        BuiltinModel::Register => check(
            history,
            &KvModel {
                initial,
                ..KvModel::register()
            },
            options,
        ),
        BuiltinModel::Kv => check(
            history,
            &KvModel {
                initial,
                ..KvModel::kv()
            },
            options,
        ),
        BuiltinModel::CasRegister => check(history, &CasRegisterModel { initial }, options),
        BuiltinModel::MultiRegister => {
            let registers = match &spec.initial {
                Some(ExactValue::Object(entries)) => entries
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (key_name(&ExactValue::String(k.clone())), v.text().into()))
                    .collect(),
                _ => Default::default(),
            };
            let model = MultiRegisterModel {
                initial: std::sync::Arc::new(registers),
            };
            check(history, &model, options)
        }
        BuiltinModel::Append => check(history, &AppendModel, options),
        BuiltinModel::Set => check(history, &SetModel, options),
    }
}

/// Steps of a partition's first attempt.
const FIRST_ATTEMPT_STEPS: u64 = 20_000;

type Prepared<M> = PreparedOp<<M as Model>::Input, <M as Model>::Output>;

/// A proof without search that a partition is not linearizable (see [`Model::refute`]).
type Proof = (usize, usize, usize);

/// Checks a history against a model: each partition in parallel.
pub fn check<M: Model>(
    history: &History,
    model: &M,
    options: &CheckOptions,
) -> Result<CheckResult, CheckError> {
    let started = Instant::now();
    let mut partition_of: crate::fxhash::FxHashMap<String, usize> = Default::default();
    let mut partitions: Vec<(String, Vec<Prepared<M>>)> = Vec::new();
    for op in &history.operations {
        let prepared = model.prepare(op).map_err(|message| {
            let line = if message.contains("result") {
                op.complete_line.unwrap_or(op.invoke_line)
            } else {
                op.invoke_line
            };
            CheckError::BadOperation { line, message }
        })?;
        let Some((input, output)) = prepared else {
            continue;
        };
        let complete = if output.is_some() {
            op.complete_seq
        } else {
            None
        };
        // A completed operation must have a completion position; one without is unknown.
        let (output, complete) = match complete {
            Some(c) => (output, Some(c)),
            None => (None, None),
        };
        let name = model.partition(op);
        let index = match partition_of.get(&name) {
            Some(&index) => index,
            None => {
                partition_of.insert(name.clone(), partitions.len());
                partitions.push((name, Vec::new()));
                partitions.len() - 1
            }
        };
        partitions[index].1.push(PreparedOp {
            op_id: op.id,
            input,
            output,
            invoke: op.invoke_seq,
            complete,
        });
    }
    let budget = Budget {
        deadline: options.time_limit.map(|t| started + t),
        memory_limit: options.memory_budget,
        memory_used: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    };
    // A proof found without search (Knossos likewise races other algorithms beside its search):
    // the polynomial `refute` of every partition first, when there are several, so that a
    // failing partition is found (and, unless `all_partitions`, stops the rest) before the
    // others are searched. A partition with a proof is still searched briefly, for the usual
    // counterexample (its longest linearizable prefix); the proof stands in when that search
    // does not finish. Then every partition gets a short attempt, so that a small failing
    // partition is found before hard linearizable ones are finished; those that need more get a
    // second attempt without a step limit, after `refute` where it did not run yet.
    // In name order, as results are listed.
    partitions.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let prepass = partitions.len() > 1;
    let proofs: Vec<Option<Proof>> = if prepass {
        partitions
            .par_iter()
            .map(|(_, ops)| model.refute(ops))
            .collect()
    } else {
        vec![None; partitions.len()]
    };
    let refuted = |ops: &[Prepared<M>], (earlier, later, impossible): Proof| {
        let state = if later == impossible {
            model.describe_state(&model.init())
        } else {
            model
                .step(&model.init(), &ops[later].input, ops[later].output.as_ref())
                .first()
                .map(|s| model.describe_state(s))
                .unwrap_or_default()
        };
        let mut prefix = Vec::new();
        for i in [earlier, later] {
            if i != impossible && !prefix.contains(&ops[i].op_id) {
                prefix.push(ops[i].op_id);
            }
        }
        Outcome::NotLinearizable(search::Failure {
            prefix,
            states: vec![state],
            blocked_by: Some(ops[impossible].op_id),
            candidates: vec![(ops[impossible].op_id, false)],
        })
    };
    // One partition's work: its search is kept between attempts and resumed.
    struct Work<'a, M: Model> {
        name: String,
        ops: Vec<Prepared<M>>,
        proof: Option<Proof>,
        search: Option<search::PartitionSearch<'a, M>>,
        elapsed: std::time::Duration,
    }
    let attempt = |step_limit: Option<u64>, parts: Vec<_>| {
        parts
            .into_par_iter()
            .map(|mut work: Work<M>| {
                let t0 = Instant::now();
                let ops = &work.ops;
                let outcome = if !options.all_partitions && budget.stop.load(Ordering::Relaxed) {
                    Outcome::Unknown {
                        reason: search::STOPPED.to_string(),
                    }
                } else if let Some(proof) = work.proof {
                    match search::PartitionSearch::start(model, ops.clone(), &budget)
                        .run(Some(FIRST_ATTEMPT_STEPS))
                    {
                        found @ Outcome::NotLinearizable(_) => found,
                        _ => refuted(ops, proof),
                    }
                } else {
                    let proof = (step_limit.is_none() && !prepass)
                        .then(|| model.refute(ops))
                        .flatten();
                    match proof {
                        Some(proof) => refuted(ops, proof),
                        None => work
                            .search
                            .get_or_insert_with(|| {
                                search::PartitionSearch::start(model, ops.clone(), &budget)
                            })
                            .run(step_limit),
                    }
                };
                if matches!(outcome, Outcome::NotLinearizable(_)) && !options.all_partitions {
                    budget.stop.store(true, Ordering::Relaxed);
                }
                if !matches!(outcome, Outcome::StepLimit) {
                    work.search = None;
                }
                work.elapsed += t0.elapsed();
                (work, outcome)
            })
            .collect::<Vec<_>>()
    };
    let (with_proof, without): (Vec<_>, Vec<_>) = partitions
        .into_iter()
        .zip(proofs)
        .map(|((name, ops), proof)| Work {
            name,
            ops,
            proof,
            search: None,
            elapsed: std::time::Duration::ZERO,
        })
        .partition(|work| work.proof.is_some());
    let mut done = Vec::new();
    let mut again = Vec::new();
    let first = attempt(None, with_proof)
        .into_iter()
        .chain(attempt(Some(FIRST_ATTEMPT_STEPS), without));
    for (work, outcome) in first {
        if matches!(outcome, Outcome::StepLimit) {
            again.push(work);
        } else {
            done.push((work, outcome));
        }
    }
    done.extend(attempt(None, again));
    let done: Vec<_> = done
        .into_iter()
        .map(|(work, outcome)| (work.name, work.ops, outcome, work.elapsed))
        .collect();
    let mut results: Vec<PartitionResult> = done
        .into_iter()
        .map(|(name, ops, outcome, elapsed)| {
            let descriptions = Describer {
                model,
                history,
                ops: &ops,
            };
            let count = ops.len();
            let elapsed_ms = elapsed.as_secs_f64() * 1e3;
            match outcome {
                Outcome::Linearizable { order } => PartitionResult {
                    partition: name,
                    verdict: Verdict::Linearizable,
                    reason: None,
                    operations: count,
                    linearization: order,
                    counterexample: None,
                    elapsed_ms,
                },
                Outcome::StepLimit | Outcome::Unknown { .. } => PartitionResult {
                    partition: name,
                    verdict: Verdict::Unknown,
                    reason: Some(match outcome {
                        Outcome::Unknown { reason } => reason,
                        _ => "step limit".to_string(),
                    }),
                    operations: count,
                    linearization: Vec::new(),
                    counterexample: None,
                    elapsed_ms,
                },
                Outcome::NotLinearizable(failure) => {
                    let tail_start = failure.prefix.len().saturating_sub(10);
                    let counterexample = Counterexample {
                        prefix_tail: failure.prefix[tail_start..]
                            .iter()
                            .map(|&id| descriptions.op(id))
                            .collect(),
                        states: failure.states,
                        blocked_by: failure.blocked_by.map(|id| descriptions.op(id)),
                        candidates: failure
                            .candidates
                            .into_iter()
                            .map(|(id, model_accepts)| Candidate {
                                op: descriptions.op(id),
                                model_accepts,
                            })
                            .collect(),
                        prefix: failure.prefix.clone(),
                    };
                    PartitionResult {
                        partition: name,
                        verdict: Verdict::NotLinearizable,
                        reason: None,
                        operations: count,
                        linearization: failure.prefix,
                        counterexample: Some(counterexample),
                        elapsed_ms,
                    }
                }
            }
        })
        .collect();
    results.sort_by(|a, b| a.partition.cmp(&b.partition));
    let verdict = if results
        .iter()
        .any(|p| p.verdict == Verdict::NotLinearizable)
    {
        Verdict::NotLinearizable
    } else if results.iter().any(|p| p.verdict == Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Linearizable
    };
    Ok(CheckResult {
        model: model.name().to_string(),
        verdict,
        operations: history.operations.len(),
        partitions: results,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// Renders the operations of one partition for counterexamples.
struct Describer<'a, M: Model> {
    model: &'a M,
    history: &'a History,
    /// The partition's prepared operations, sorted by `op_id`.
    ops: &'a [Prepared<M>],
}

impl<M: Model> Describer<'_, M> {
    fn op(&self, id: usize) -> OpSummary {
        let op: &Operation = &self.history.operations[id];
        let description = match self.ops.binary_search_by_key(&id, |p| p.op_id) {
            Ok(i) => self
                .model
                .describe_operation(&self.ops[i].input, self.ops[i].output.as_ref()),
            Err(_) => op.f.clone(),
        };
        OpSummary {
            id,
            process: op.process,
            description,
            invoke_line: op.invoke_line,
            complete_line: op.complete_line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::parse_jsonl;

    #[test]
    fn an_unknown_f_is_an_error_naming_the_line_not_a_verdict() {
        let text = concat!(
            r#"{"index":0,"time":0,"process":1,"type":"invoke","f":"read","value":null}"#,
            "\n",
            r#"{"index":1,"time":0,"process":2,"type":"invoke","f":"frobnicate","value":null}"#,
        );
        let history = parse_jsonl(text.as_bytes()).unwrap();
        let err = check_builtin(&history, BuiltinModel::Kv, &CheckOptions::default()).unwrap_err();
        assert_eq!(err.line(), 2);
        assert!(err.to_string().contains("unknown f `frobnicate`"), "{err}");
    }
}
