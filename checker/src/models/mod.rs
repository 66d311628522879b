//! The built-in models, selectable by name: `register`, `kv`, `append`, `set`, and Knossos's
//! `cas-register` and `multi-register` for imported Jepsen histories.

mod append;
mod cas_register;
mod kv;
mod multi_register;
mod set;

pub use append::{AppendInput, AppendModel, AppendOutput};
pub use cas_register::{CasRegisterInput, CasRegisterModel, CasRegisterOutput};
pub use kv::{Datum, KvInput, KvModel, KvOutput};
pub(crate) use multi_register::key_name;
pub use multi_register::{MicroOp, MultiRegisterModel, Registers};
pub use set::{SetInput, SetModel, SetOutput};

use crate::value::ExactValue;
use std::sync::Arc;

/// A built-in model, chosen by name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuiltinModel {
    /// One register: read / write / cas / delete (absent = null). Operations carrying a key are
    /// still split by key, so it equals `kv` on keyed histories.
    Register,
    /// A map of independent registers, checked key by key.
    #[default]
    Kv,
    /// Strings per key with get (`read`) / put (`write`) / append, every key starting empty.
    Append,
    /// A grow-only set: `add` and `read-all` (Jepsen's set).
    Set,
    /// Knossos's `cas-register`: initial value given (default `nil`), a read of `nil` matches
    /// anything, a `fail` did not happen.
    CasRegister,
    /// Knossos's `multi-register`: transactions (`txn`) of reads and writes over a map.
    MultiRegister,
}

impl BuiltinModel {
    /// Every built-in model, for help texts.
    pub const ALL: [BuiltinModel; 6] = [
        BuiltinModel::Register,
        BuiltinModel::Kv,
        BuiltinModel::Append,
        BuiltinModel::Set,
        BuiltinModel::CasRegister,
        BuiltinModel::MultiRegister,
    ];

    /// The name the model is selected by.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinModel::Register => "register",
            BuiltinModel::Kv => "kv",
            BuiltinModel::Append => "append",
            BuiltinModel::Set => "set",
            BuiltinModel::CasRegister => "cas-register",
            BuiltinModel::MultiRegister => "multi-register",
        }
    }
}

impl std::str::FromStr for BuiltinModel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "register" => Ok(BuiltinModel::Register),
            "kv" => Ok(BuiltinModel::Kv),
            "append" => Ok(BuiltinModel::Append),
            "set" => Ok(BuiltinModel::Set),
            "cas-register" => Ok(BuiltinModel::CasRegister),
            "multi-register" => Ok(BuiltinModel::MultiRegister),
            other => Err(format!(
                "unknown model `{other}` (expected register, kv, append, set, cas-register or \
                 multi-register)"
            )),
        }
    }
}

impl std::fmt::Display for BuiltinModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A value as an exact, hashable datum: its compact JSON text with numbers as written (`"a"`
/// and `1` stay distinct, and so do `18446744073709551616` and `18446744073709551617`).
pub(crate) fn json_text(value: &ExactValue) -> Arc<str> {
    if let ExactValue::Number(text) = value {
        return Arc::from(&**text);
    }
    // One allocation (the Arc's) per value: the text is built in a reused buffer.
    thread_local!(static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) });
    TEXT.with(|text| {
        let mut text = text.borrow_mut();
        text.clear();
        value.write_text(&mut text);
        Arc::from(text.as_str())
    })
}
