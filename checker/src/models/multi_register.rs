//! Knossos's `multi-register`: a map of registers changed by transactions (`:f :txn`, value
//! `[[:read :x nil] [:write :y 2]]`). A transaction's micro-operations apply in order; a read
//! whose value is `nil` matches anything, any other read must see the current value (a key
//! never written reads as `nil`). The initial map is the model's argument (empty by default).
//! Transactions may touch any key, so the whole history is one partition.

use super::json_text;
use super::kv::datum;
use crate::history::{Completion, Operation};
use crate::model::Model;
use crate::value::ExactValue;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The registers: key -> value text (a key holding `nil` is absent).
pub type Registers = Arc<BTreeMap<Arc<str>, Arc<str>>>;

/// One micro-operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MicroOp {
    /// Read a key; `None` matches any value.
    Read(Arc<str>, Option<Arc<str>>),
    /// Write a key (`None`: `nil`).
    Write(Arc<str>, Option<Arc<str>>),
}

/// Knossos's `multi-register` with its initial registers.
#[derive(Debug, Clone, Default)]
pub struct MultiRegisterModel {
    /// The registers before any transaction.
    pub initial: Registers,
}

/// The name of a key: a string or keyword as is, anything else as its text.
pub(crate) fn key_name(key: &ExactValue) -> Arc<str> {
    match key {
        ExactValue::String(s) => Arc::from(s.as_str()),
        other => json_text(other),
    }
}

/// Reads a transaction `[[f k v] ...]`.
fn txn(value: &ExactValue, what: &str) -> Result<Vec<MicroOp>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("{what} must be a vector of [f k v], got {value}"))?;
    items
        .iter()
        .map(|item| match item.as_array() {
            Some([f, k, v]) => match f.as_str() {
                Some("read") => Ok(MicroOp::Read(key_name(k), datum(v))),
                Some("write") => Ok(MicroOp::Write(key_name(k), datum(v))),
                _ => Err(format!(
                    "a micro-operation must be :read or :write, got {f} in {what}"
                )),
            },
            _ => Err(format!("{what} must be a vector of [f k v], got {item}")),
        })
        .collect()
}

impl Model for MultiRegisterModel {
    type State = Registers;
    type Input = Vec<MicroOp>;
    /// A completed transaction carries its reads in the input; nothing else is returned.
    type Output = ();

    fn name(&self) -> &str {
        "multi-register"
    }

    #[allow(clippy::type_complexity)]
    fn prepare(&self, op: &Operation) -> Result<Option<(Vec<MicroOp>, Option<()>)>, String> {
        if op.f != "txn" {
            return Err(format!(
                "unknown f `{}` for the multi-register model (expected txn)",
                op.f
            ));
        }
        match op.completion {
            Completion::Fail { .. } => Ok(None),
            // Its reads are unknown: only the invoke's transaction (reads of nil) is known.
            Completion::Unknown { .. } => Ok(Some((txn(&op.input, "a txn's value")?, None))),
            Completion::Ok => Ok(Some((txn(&op.output, "a txn's result")?, Some(())))),
        }
    }

    fn partition(&self, _op: &Operation) -> String {
        String::new()
    }

    fn init(&self) -> Registers {
        self.initial.clone()
    }

    fn step(
        &self,
        state: &Registers,
        input: &Vec<MicroOp>,
        _output: Option<&()>,
    ) -> Vec<Registers> {
        let mut next: Option<BTreeMap<Arc<str>, Arc<str>>> = None;
        for micro in input {
            let current = next.as_ref().unwrap_or(state);
            match micro {
                MicroOp::Read(_, None) => {}
                MicroOp::Read(k, Some(v)) => {
                    if current.get(k) != Some(v) {
                        return vec![];
                    }
                }
                MicroOp::Write(k, v) => {
                    let map = next.get_or_insert_with(|| (**state).clone());
                    match v {
                        Some(v) => map.insert(k.clone(), v.clone()),
                        None => map.remove(k),
                    };
                }
            }
        }
        vec![next.map_or_else(|| state.clone(), Arc::new)]
    }

    fn describe_operation(&self, input: &Vec<MicroOp>, output: Option<&()>) -> String {
        let show = |v: &Option<Arc<str>>| v.as_deref().unwrap_or("nil").to_string();
        let micros: Vec<String> = input
            .iter()
            .map(|m| match m {
                MicroOp::Read(k, v) => format!("[read {k} {}]", show(v)),
                MicroOp::Write(k, v) => format!("[write {k} {}]", show(v)),
            })
            .collect();
        let call = format!("txn[{}]", micros.join(" "));
        match output {
            None => format!("{call} = ?"),
            Some(()) => format!("{call} = ok"),
        }
    }

    fn describe_state(&self, state: &Registers) -> String {
        let items: Vec<String> = state.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!("{{{}}}", items.join(", "))
    }
}
