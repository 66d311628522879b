//! The `append` model: a string per key with get (`read`), put (`write`) and append, every key
//! starting as the empty string (absent and empty read the same). The model of a classic Raft
//! KV lab, and of Porcupine's `kv` test histories.

use crate::history::{Completion, Operation};
use crate::model::{Model, PreparedOp};
use crate::value::ExactValue;
use std::sync::Arc;

/// What an append-model operation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendInput {
    /// Read the whole string.
    Get,
    /// Replace the string.
    Put(Arc<str>),
    /// Add a suffix to the string.
    Append(Arc<str>),
}

/// What an append-model operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutput {
    /// A read's string (`null` read as empty).
    Value(Arc<str>),
    /// A put or append completed.
    Done,
}

/// The append model.
#[derive(Debug, Clone, Default)]
pub struct AppendModel;

fn string_of(value: &ExactValue, what: &str) -> Result<Arc<str>, String> {
    match value {
        ExactValue::String(s) => Ok(Arc::from(s.as_str())),
        ExactValue::Null => Ok(Arc::from("")),
        other => Err(format!("{what} must be a string, got {other}")),
    }
}

/// `a` followed by `b`, in one allocation (the `Arc`'s): the text is put together in a reused
/// buffer, since `Arc<str>` cannot take over a `String`'s allocation.
fn concat(a: &str, b: &str) -> Arc<str> {
    thread_local!(static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) });
    TEXT.with(|text| {
        let mut text = text.borrow_mut();
        text.clear();
        text.push_str(a);
        text.push_str(b);
        Arc::from(text.as_str())
    })
}

impl Model for AppendModel {
    type State = Arc<str>;
    type Input = AppendInput;
    type Output = AppendOutput;

    fn name(&self) -> &str {
        "append"
    }

    fn prepare(
        &self,
        op: &Operation,
    ) -> Result<Option<(AppendInput, Option<AppendOutput>)>, String> {
        let input = match op.f.as_str() {
            "read" | "get" => AppendInput::Get,
            "write" | "put" => AppendInput::Put(string_of(&op.input, "a put's value")?),
            "append" => AppendInput::Append(string_of(&op.input, "an append's value")?),
            other => {
                return Err(format!(
                "unknown f `{other}` for the append model (expected read/get, write/put or append)"
            ))
            }
        };
        let output = match op.completion {
            Completion::Fail { .. } => return Ok(None),
            Completion::Unknown { .. } => None,
            Completion::Ok => Some(match input {
                AppendInput::Get => AppendOutput::Value(string_of(&op.output, "a read's result")?),
                _ => AppendOutput::Done,
            }),
        };
        Ok(Some((input, output)))
    }

    fn init(&self) -> Arc<str> {
        Arc::from("")
    }

    fn step(
        &self,
        state: &Arc<str>,
        input: &AppendInput,
        output: Option<&AppendOutput>,
    ) -> Vec<Arc<str>> {
        match (input, output) {
            (AppendInput::Get, Some(AppendOutput::Value(v))) => {
                if v == state {
                    vec![state.clone()]
                } else {
                    vec![]
                }
            }
            (AppendInput::Get, None) => vec![state.clone()],
            (AppendInput::Put(v), None | Some(AppendOutput::Done)) => vec![v.clone()],
            (AppendInput::Append(x), None | Some(AppendOutput::Done)) => {
                vec![concat(state, x)]
            }
            _ => vec![],
        }
    }

    fn describe_operation(&self, input: &AppendInput, output: Option<&AppendOutput>) -> String {
        let call = match input {
            AppendInput::Get => "get".to_string(),
            AppendInput::Put(v) => format!("put({v:?})"),
            AppendInput::Append(v) => format!("append({v:?})"),
        };
        match output {
            None => format!("{call} = ?"),
            Some(AppendOutput::Value(v)) => format!("{call} = {v:?}"),
            Some(AppendOutput::Done) => format!("{call} = ok"),
        }
    }

    fn describe_state(&self, state: &Arc<str>) -> String {
        format!("{state:?}")
    }

    /// An unknown append of `x` is observed only by reads containing `x` (appended text stays
    /// until a put replaces it), an unknown put of `v` only by reads starting with `v`; unknown
    /// reads never are.
    fn observation_horizons(
        &self,
        ops: &[PreparedOp<AppendInput, AppendOutput>],
    ) -> Vec<Option<u64>> {
        // Completed reads by completion position, so each unknown op scans only later ones.
        let mut reads: Vec<(u64, &Arc<str>)> = ops
            .iter()
            .filter_map(|op| match (&op.output, op.complete) {
                (Some(AppendOutput::Value(v)), Some(done)) => Some((done, v)),
                _ => None,
            })
            .collect();
        reads.sort_by_key(|(done, _)| *done);
        ops.iter()
            .map(|op| {
                if op.output.is_some() {
                    return Some(u64::MAX);
                }
                let observes: Box<dyn Fn(&str) -> bool> = match &op.input {
                    AppendInput::Get => return None,
                    AppendInput::Append(x) if x.is_empty() => return None,
                    AppendInput::Append(x) => {
                        let x = x.clone();
                        Box::new(move |v: &str| v.contains(&*x))
                    }
                    AppendInput::Put(p) => {
                        let p = p.clone();
                        Box::new(move |v: &str| v.starts_with(&*p))
                    }
                };
                let first_later = reads.partition_point(|(done, _)| *done <= op.invoke);
                reads[first_later..]
                    .iter()
                    .rev()
                    .find(|(_, v)| observes(v))
                    .map(|(done, _)| *done)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Arc<str> {
        Arc::from(x)
    }

    #[test]
    fn append_adds_a_suffix_and_get_must_match_the_whole_string() {
        let m = AppendModel;
        assert_eq!(
            m.step(
                &s("ab"),
                &AppendInput::Append(s("c")),
                Some(&AppendOutput::Done)
            ),
            vec![s("abc")]
        );
        assert_eq!(
            m.step(
                &s("ab"),
                &AppendInput::Get,
                Some(&AppendOutput::Value(s("ab")))
            ),
            vec![s("ab")]
        );
        assert!(m
            .step(
                &s("ab"),
                &AppendInput::Get,
                Some(&AppendOutput::Value(s("a")))
            )
            .is_empty());
    }

    #[test]
    fn put_replaces_and_every_key_starts_empty() {
        let m = AppendModel;
        assert_eq!(m.init(), s(""));
        assert_eq!(
            m.step(&s("ab"), &AppendInput::Put(s("z")), None),
            vec![s("z")]
        );
        assert_eq!(
            m.step(&s(""), &AppendInput::Get, Some(&AppendOutput::Value(s("")))),
            vec![s("")]
        );
    }
}
