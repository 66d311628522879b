//! The `set` model: a grow-only set with `add` and `read-all` (Jepsen's set workload), checked
//! for linearizability: a `read-all` returns exactly the elements added before it.

use super::json_text;
use crate::history::{Completion, Operation};
use crate::model::{Model, PreparedOp};
use crate::value::ExactValue;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The elements of a set, each as its compact JSON text.
pub type Elements = Arc<BTreeSet<Arc<str>>>;

/// What a set operation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetInput {
    /// Add an element.
    Add(Arc<str>),
    /// Read every element.
    ReadAll,
}

/// What a set operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOutput {
    /// The elements a `read-all` saw.
    Elements(Elements),
    /// An `add` completed.
    Done,
}

/// The set model.
#[derive(Debug, Clone, Default)]
pub struct SetModel;

impl Model for SetModel {
    type State = Elements;
    type Input = SetInput;
    type Output = SetOutput;

    fn name(&self) -> &str {
        "set"
    }

    fn prepare(&self, op: &Operation) -> Result<Option<(SetInput, Option<SetOutput>)>, String> {
        let input = match op.f.as_str() {
            "add" => SetInput::Add(json_text(&op.input)),
            "read-all" | "read" => SetInput::ReadAll,
            other => {
                return Err(format!(
                    "unknown f `{other}` for the set model (expected add or read-all)"
                ))
            }
        };
        let output = match op.completion {
            Completion::Fail { .. } => return Ok(None),
            Completion::Unknown { .. } => None,
            Completion::Ok => Some(match input {
                SetInput::ReadAll => match &op.output {
                    ExactValue::Array(items) => {
                        let mut elements = BTreeSet::new();
                        for item in items {
                            let text = json_text(item);
                            if !elements.insert(text.clone()) {
                                return Err(format!(
                                    "a read-all's result lists {text} twice (a set has each \
                                     element once)"
                                ));
                            }
                        }
                        SetOutput::Elements(Arc::new(elements))
                    }
                    ExactValue::Null => SetOutput::Elements(Arc::default()),
                    other => {
                        return Err(format!("a read-all's result must be an array, got {other}"))
                    }
                },
                SetInput::Add(_) => SetOutput::Done,
            }),
        };
        Ok(Some((input, output)))
    }

    fn init(&self) -> Elements {
        Arc::default()
    }

    fn step(
        &self,
        state: &Elements,
        input: &SetInput,
        output: Option<&SetOutput>,
    ) -> Vec<Elements> {
        match (input, output) {
            (SetInput::ReadAll, Some(SetOutput::Elements(seen))) => {
                if seen == state {
                    vec![state.clone()]
                } else {
                    vec![]
                }
            }
            (SetInput::ReadAll, None) => vec![state.clone()],
            (SetInput::Add(x), None | Some(SetOutput::Done)) => {
                if state.contains(x) {
                    vec![state.clone()]
                } else {
                    let mut next = (**state).clone();
                    next.insert(x.clone());
                    vec![Arc::new(next)]
                }
            }
            _ => vec![],
        }
    }

    fn describe_operation(&self, input: &SetInput, output: Option<&SetOutput>) -> String {
        let call = match input {
            SetInput::Add(x) => format!("add({x})"),
            SetInput::ReadAll => "read-all".to_string(),
        };
        match output {
            None => format!("{call} = ?"),
            Some(SetOutput::Elements(e)) => format!("{call} = {}", self.describe_state(e)),
            Some(SetOutput::Done) => format!("{call} = ok"),
        }
    }

    fn describe_state(&self, state: &Elements) -> String {
        let items: Vec<&str> = state.iter().map(|x| &**x).collect();
        format!("#{{{}}}", items.join(" "))
    }

    /// An unknown add of `x` is observed only by reads that contain `x` (elements are never
    /// removed); unknown reads never are.
    fn observation_horizons(&self, ops: &[PreparedOp<SetInput, SetOutput>]) -> Vec<Option<u64>> {
        let mut last_seen: std::collections::HashMap<&Arc<str>, u64> = Default::default();
        for op in ops {
            if let (Some(SetOutput::Elements(e)), Some(done)) = (&op.output, op.complete) {
                for x in e.iter() {
                    let t = last_seen.entry(x).or_insert(done);
                    *t = (*t).max(done);
                }
            }
        }
        ops.iter()
            .map(|op| match (&op.output, &op.input) {
                (Some(_), _) => Some(u64::MAX),
                (None, SetInput::ReadAll) => None,
                (None, SetInput::Add(x)) => last_seen.get(x).copied(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(xs: &[&str]) -> Elements {
        Arc::new(xs.iter().map(|x| Arc::from(*x)).collect())
    }

    #[test]
    fn add_inserts_and_read_all_must_see_exactly_the_set() {
        let m = SetModel;
        assert_eq!(
            m.step(
                &set(&["1"]),
                &SetInput::Add(Arc::from("2")),
                Some(&SetOutput::Done)
            ),
            vec![set(&["1", "2"])]
        );
        assert_eq!(
            m.step(
                &set(&["1"]),
                &SetInput::ReadAll,
                Some(&SetOutput::Elements(set(&["1"])))
            ),
            vec![set(&["1"])]
        );
        assert!(m
            .step(
                &set(&["1"]),
                &SetInput::ReadAll,
                Some(&SetOutput::Elements(set(&[])))
            )
            .is_empty());
    }
}
