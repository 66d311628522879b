//! Riptide's linearizability checker.
//!
//! Data path: a recorded [`history`] of events is paired into operations
//! ([`parse_jsonl`], [`parse_edn`], [`read_history`]), each operation is read by a [`Model`]
//! (built-in: [`BuiltinModel`] `register`, `kv`, `append`, `set`, Knossos's `cas-register`
//! and `multi-register`, chosen with their arguments in a [`ModelSpec`]), the operations are split into
//! independent partitions (per key for `kv`), each partition is searched for a linearization in
//! parallel (Wing & Gong with Lowe's cache, as Porcupine does, cut into segments at quiescent
//! points), and the verdicts are gathered in a [`CheckResult`] with a readable [`Counterexample`].
//! [`render_html`] draws a history and its result as a self-contained page.
//!
//! ```
//! use riptide_checker::{check_builtin, parse_jsonl, BuiltinModel, CheckOptions, Verdict};
//! let history = parse_jsonl(&br#"
//! {"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":"a"}
//! {"index":1,"time":5,"process":0,"type":"ok","f":"write","value":"a"}
//! {"index":2,"time":6,"process":1,"type":"invoke","f":"read","value":null}
//! {"index":3,"time":9,"process":1,"type":"ok","f":"read","value":"b"}
//! "#[..]).unwrap();
//! let result = check_builtin(&history, BuiltinModel::Register, &CheckOptions::default()).unwrap();
//! assert_eq!(result.verdict, Verdict::NotLinearizable);
//! ```

mod check;
mod edn;
mod fxhash;
pub mod history;
mod html;
mod independent;
mod keyset;
mod model;
pub mod models;
mod search;
pub mod shrink;
mod value;

pub use check::{
    check, check_builtin, check_with, Candidate, CheckError, CheckOptions, CheckResult,
    Counterexample, Independent, ModelSpec, ModelSpecError, OpSummary, PartitionResult, Verdict,
};
pub use edn::parse_edn;
pub use history::{parse_jsonl, Completion, Event, History, HistoryError, Operation};
pub use html::{esc as escape_html, render_html};
pub use independent::{looks_independent, split_independent};
pub use model::{Model, PreparedOp};
pub use models::BuiltinModel;
pub use shrink::{ddmin, shrink, ShrinkError, Shrunk};
pub use value::ExactValue;

/// The formats a history file can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON Lines, one event per line (what the harness writes).
    Jsonl,
    /// Jepsen EDN (`history.edn`).
    Edn,
}

impl Format {
    /// The format a file name suggests: `.edn` is EDN, anything else JSON Lines.
    pub fn from_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("edn") => Format::Edn,
            _ => Format::Jsonl,
        }
    }
}

/// Reads a history file in the given format (or the one its extension suggests).
pub fn read_history(
    path: &std::path::Path,
    format: Option<Format>,
) -> Result<History, HistoryError> {
    match format.unwrap_or_else(|| Format::from_path(path)) {
        Format::Jsonl => parse_jsonl(std::io::BufReader::with_capacity(
            1 << 16,
            std::fs::File::open(path)?,
        )),
        Format::Edn => parse_edn(&std::fs::read_to_string(path)?),
    }
}
