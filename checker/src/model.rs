//! The `Model` trait: the sequential specification a history is checked against.
//!
//! A model says how an [`Operation`] of the history reads as an input and an output of the
//! specification ([`Model::prepare`]), which operations are independent of each other
//! ([`Model::partition`], P-compositionality: each partition is checked on its own), the initial
//! state and the transition relation ([`Model::step`], which may return several next states for a
//! nondeterministic specification, or none when the output is impossible), and how to print
//! operations and states for counterexamples. Built-in models live in [`crate::models`].

use crate::history::Operation;
use std::fmt::Debug;
use std::hash::Hash;

/// An operation as a model sees it: input, output (unknown when `None`) and where it sits in
/// real time.
#[derive(Debug, Clone)]
pub struct PreparedOp<I, O> {
    /// Index of the operation in [`crate::History::operations`].
    pub op_id: usize,
    /// What the operation asked for.
    pub input: I,
    /// What it returned; `None` when the outcome is unknown (`info` or never completed): it may
    /// then take effect at any point after its invoke, or never.
    pub output: Option<O>,
    /// Real-time position of the invoke (see [`Operation::invoke_seq`]).
    pub invoke: u64,
    /// Real-time position of the completion; `None` exactly when `output` is `None`.
    pub complete: Option<u64>,
}

/// A sequential specification to check histories against.
pub trait Model: Send + Sync {
    /// A state of the specification. Hashable so the search can prune configurations it has seen.
    type State: Clone + Eq + Hash + Debug + Send + Sync;
    /// An operation's input (what it asked for).
    type Input: Clone + Debug + Send + Sync;
    /// An operation's output (what it returned).
    type Output: Clone + Debug + Send + Sync;

    /// The name users select the model by.
    fn name(&self) -> &str;

    /// Reads an operation as an input and an output. `Ok(None)` removes the operation from the
    /// check (e.g. a `fail` that certainly did not happen); `Err` says why the model cannot
    /// understand it (e.g. an unknown `f`), and the check reports it with the operation's line.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        op: &Operation,
    ) -> Result<Option<(Self::Input, Option<Self::Output>)>, String>;

    /// The partition an operation belongs to: operations of different partitions never affect
    /// each other, so each partition is checked alone. Default: one partition per key.
    fn partition(&self, op: &Operation) -> String {
        op.key.clone().unwrap_or_default()
    }

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The states reachable by applying `input` in `state` and returning `output` (`None`:
    /// any output). Empty when that output is impossible in that state.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Vec<Self::State>;

    /// Prints an operation for a person, e.g. `cas("1" -> "4") = ok`.
    fn describe_operation(&self, input: &Self::Input, output: Option<&Self::Output>) -> String;

    /// Prints a state for a person.
    fn describe_state(&self, state: &Self::State) -> String;

    /// For each operation of one partition (sorted by invoke), and used only for those with an
    /// unknown outcome: the latest completion position of a completed operation that could
    /// observe its effect, or `None` when no completed operation can.
    ///
    /// The search drops an unknown-outcome operation once no remaining completed operation can
    /// observe it, since "never took effect" is then as good as any other choice; with the
    /// harness's unique written values this keeps long histories near-linear. The default,
    /// `Some(u64::MAX)` for every operation, never drops anything. An implementation must only
    /// answer `None` or a smaller position when taking effect at any point after that position
    /// can be undone without changing any completed operation's output.
    fn observation_horizons(
        &self,
        ops: &[PreparedOp<Self::Input, Self::Output>],
    ) -> Vec<Option<u64>> {
        vec![Some(u64::MAX); ops.len()]
    }

    /// A proof, found without searching, that no linearization exists: indices into `ops` of
    /// `(earlier, later, impossible)`, where `earlier` and `later` (possibly the same
    /// operation) precede the completed operation `impossible` in real time and together rule
    /// out its output; all three are `impossible` when its output is impossible outright. The
    /// check asks for every partition of a history with several (before searching them) and
    /// for a single partition the search did not decide quickly. The default finds nothing.
    /// An implementation must only answer when the proof holds.
    fn refute(
        &self,
        ops: &[PreparedOp<Self::Input, Self::Output>],
    ) -> Option<(usize, usize, usize)> {
        let _ = ops;
        None
    }
}
