//! Knossos's `cas-register`, for re-checking Jepsen histories with exactly the semantics Jepsen's
//! own register tests use: the initial value is the model's argument (`nil` by default), a read
//! whose value is `nil` matches any state (a read of unknown value), `write` sets the value,
//! `cas [from to]` swaps only from `from`, and a `fail` is an operation that did not happen
//! (whatever its `error`). Unlike `register`, there is no delete and `nil` is not "absent".

use super::kv::{datum, Datum};
use crate::history::{Completion, Operation};
use crate::model::Model;

/// What a cas-register operation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasRegisterInput {
    /// Read the value.
    Read,
    /// Set the value.
    Write(Datum),
    /// Set the value to `to` if it is `from`.
    Cas {
        /// The value expected.
        from: Datum,
        /// The value written when it matched.
        to: Datum,
    },
}

/// What a cas-register operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasRegisterOutput {
    /// A read's value; `None` (`nil`) matches any state.
    Value(Datum),
    /// A write or cas completed.
    Done,
}

/// Knossos's `cas-register` with its initial value.
#[derive(Debug, Clone, Default)]
pub struct CasRegisterModel {
    /// The value before any operation (`None`: `nil`).
    pub initial: Datum,
}

fn show(d: &Datum) -> &str {
    d.as_deref().unwrap_or("nil")
}

impl Model for CasRegisterModel {
    type State = Datum;
    type Input = CasRegisterInput;
    type Output = CasRegisterOutput;

    fn name(&self) -> &str {
        "cas-register"
    }

    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        op: &Operation,
    ) -> Result<Option<(CasRegisterInput, Option<CasRegisterOutput>)>, String> {
        let input = match op.f.as_str() {
            "read" => CasRegisterInput::Read,
            "write" => CasRegisterInput::Write(datum(&op.input)),
            "cas" => match op.input.as_array() {
                Some([from, to]) => CasRegisterInput::Cas {
                    from: datum(from),
                    to: datum(to),
                },
                _ => return Err(format!("cas value must be [from, to], got {}", op.input)),
            },
            other => {
                return Err(format!(
                    "unknown f `{other}` for the cas-register model (expected read, write or cas)"
                ))
            }
        };
        let output = match op.completion {
            Completion::Fail { .. } => return Ok(None),
            Completion::Unknown { .. } => None,
            Completion::Ok => Some(match input {
                CasRegisterInput::Read => CasRegisterOutput::Value(datum(&op.output)),
                _ => CasRegisterOutput::Done,
            }),
        };
        Ok(Some((input, output)))
    }

    fn init(&self) -> Datum {
        self.initial.clone()
    }

    fn step(
        &self,
        state: &Datum,
        input: &CasRegisterInput,
        output: Option<&CasRegisterOutput>,
    ) -> Vec<Datum> {
        match (input, output) {
            (CasRegisterInput::Read, Some(CasRegisterOutput::Value(Some(v)))) => {
                if state.as_ref() == Some(v) {
                    vec![state.clone()]
                } else {
                    vec![]
                }
            }
            (CasRegisterInput::Read, None | Some(CasRegisterOutput::Value(None))) => {
                vec![state.clone()]
            }
            (CasRegisterInput::Write(v), None | Some(CasRegisterOutput::Done)) => vec![v.clone()],
            (CasRegisterInput::Cas { from, to }, Some(CasRegisterOutput::Done)) => {
                if from == state {
                    vec![to.clone()]
                } else {
                    vec![]
                }
            }
            (CasRegisterInput::Cas { from, to }, None) => {
                if from == state {
                    vec![to.clone()]
                } else {
                    vec![state.clone()]
                }
            }
            _ => vec![],
        }
    }

    fn describe_operation(
        &self,
        input: &CasRegisterInput,
        output: Option<&CasRegisterOutput>,
    ) -> String {
        let call = match input {
            CasRegisterInput::Read => "read".to_string(),
            CasRegisterInput::Write(v) => format!("write({})", show(v)),
            CasRegisterInput::Cas { from, to } => format!("cas({} -> {})", show(from), show(to)),
        };
        match output {
            None => format!("{call} = ?"),
            Some(CasRegisterOutput::Value(v)) => format!("{call} = {}", show(v)),
            Some(CasRegisterOutput::Done) => format!("{call} = ok"),
        }
    }

    fn describe_state(&self, state: &Datum) -> String {
        show(state).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_nil_read_matches_any_state_and_the_initial_value_is_the_argument() {
        let m = CasRegisterModel {
            initial: Some(Arc::from("0")),
        };
        let zero = m.init();
        assert_eq!(zero.as_deref(), Some("0"));
        let nil_read = CasRegisterOutput::Value(None);
        assert_eq!(
            m.step(&zero, &CasRegisterInput::Read, Some(&nil_read)),
            vec![zero.clone()]
        );
        let read_one = CasRegisterOutput::Value(Some(Arc::from("1")));
        assert!(m
            .step(&zero, &CasRegisterInput::Read, Some(&read_one))
            .is_empty());
    }
}
