//! Writes every file of the vendored Porcupine corpus that has an upstream verdict as a JSON
//! Lines history, so that other checkers can be timed on exactly the input `riptide check`
//! reads: `cargo run --release -p riptide-checker --example corpus_jsonl -- OUT_DIR`.
//! Files go to `OUT_DIR/register/` (the etcd logs, model `register`) and `OUT_DIR/append/`
//! (the kv histories, model `append`), and `OUT_DIR/expected.tsv` lists `path<TAB>verdict`.

#[path = "../tests/common/porcupine.rs"]
mod porcupine;

use riptide_checker::{Completion, History};
use std::io::Write;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "corpus-jsonl".into()),
    );
    let mut expected = std::fs::File::create({
        std::fs::create_dir_all(&out)?;
        out.join("expected.tsv")
    })?;
    for file in porcupine::corpus() {
        if file.expected == "none" {
            continue;
        }
        let model = porcupine::model_for(&file.format).name();
        let dir = out.join(model);
        std::fs::create_dir_all(&dir)?;
        let stem = file.file.replace('/', "_");
        let path = dir.join(format!("{stem}.jsonl"));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
        write_jsonl(&porcupine::load(&file), &mut w)?;
        w.flush()?;
        writeln!(expected, "{}\t{}", path.display(), file.expected)?;
    }
    Ok(())
}

/// The events of a parsed history in their original order (by source line): an operation's
/// invoke, then its completion (`ok`, `fail` with its error, or `info`).
fn write_jsonl(history: &History, w: &mut impl Write) -> std::io::Result<()> {
    let mut events: Vec<(usize, usize, bool)> = Vec::new();
    for (i, op) in history.operations.iter().enumerate() {
        events.push((op.invoke_line, i, false));
        if let Some(line) = op.complete_line {
            events.push((line, i, true));
        }
    }
    events.sort_unstable();
    for (index, &(line, i, completion)) in events.iter().enumerate() {
        let op = &history.operations[i];
        let (kind, value, error) = match (&op.completion, completion) {
            (_, false) => ("invoke", &op.input, None),
            (Completion::Ok, true) => ("ok", &op.output, None),
            (Completion::Fail { error }, true) => ("fail", &op.output, error.as_deref()),
            (Completion::Unknown { error }, true) => ("info", &op.input, error.as_deref()),
        };
        let json = |s: &str| serde_json::Value::from(s).to_string();
        write!(
            w,
            r#"{{"index":{index},"time":{line},"process":{},"type":"{kind}","f":{}"#,
            op.process,
            json(&op.f)
        )?;
        if let Some(key) = &op.key {
            write!(w, r#","key":{}"#, json(key))?;
        }
        write!(w, r#","value":{}"#, value.text())?;
        if let Some(error) = error {
            write!(w, r#","error":{}"#, json(error))?;
        }
        writeln!(w, "}}")?;
    }
    Ok(())
}
