//! Jepsen's `jepsen.independent` histories: many registers in one history, each operation's
//! value a tuple `[key v]` (a cas as `[key [from to]]`, a read invoked as `[key nil]`). Read
//! so, every key is a partition of its own, checked by the model as if it were alone.

use crate::check::CheckError;
use crate::history::{Completion, History};
use crate::models::key_name;
use crate::value::ExactValue;

/// True when the history looks written by `jepsen.independent`: every operation's value is a
/// `[key v]` tuple with a plain key, every cas's `v` is itself a pair, and some read or cas
/// shows the form (a plain register's reads are invoked with `nil`, and its cas values are
/// `[from to]` with plain `to`).
pub fn looks_independent(history: &History) -> bool {
    let mut telling = false;
    for op in &history.operations {
        let Some([key, v]) = op.input.as_array() else {
            return false;
        };
        if matches!(key, ExactValue::Array(_) | ExactValue::Object(_)) {
            return false;
        }
        match op.f.as_str() {
            "cas" => {
                if !matches!(v.as_array(), Some([_, _])) {
                    return false;
                }
                telling = true;
            }
            "read" => telling = true,
            _ => {}
        }
    }
    telling
}

/// The history with each `[key v]` tuple read as key `key` and value `v` (completions that
/// carry no tuple, such as a timeout's `nil`, get `nil`). A value that is not a tuple, or a
/// completion naming another key, is refused with its line.
pub fn split_independent(history: &History) -> Result<History, CheckError> {
    let mut split = history.clone();
    for op in &mut split.operations {
        let Some([key, v]) = op.input.as_array() else {
            return Err(CheckError::BadOperation {
                line: op.invoke_line,
                message: format!(
                    "an independent history's value must be a [key value] tuple, got {}",
                    op.input
                ),
            });
        };
        let key_text = key_name(key);
        let v = v.clone();
        let output = match (&op.completion, op.output.as_array()) {
            (_, Some([out_key, out])) if key_name(out_key) == key_text => out.clone(),
            (Completion::Ok, _) => {
                return Err(CheckError::BadOperation {
                    line: op.complete_line.unwrap_or(op.invoke_line),
                    message: format!(
                        "an independent history's result must be a [key value] tuple for key \
                         {key_text}, got {}",
                        op.output
                    ),
                })
            }
            _ => ExactValue::Null,
        };
        op.key = Some(key_text.to_string());
        op.input = v;
        op.output = output;
    }
    Ok(split)
}
