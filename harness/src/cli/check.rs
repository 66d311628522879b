//! `riptide check`: check one or more recorded histories for linearizability, in one process.
//!
//! Prints, per file, the verdict and the verdict of each partition, and for a failing partition
//! the counterexample (longest linearizable prefix, the state after it, the operation that
//! cannot come next). Optionally writes `results.json` and a self-contained HTML page. Exit
//! code: 0 all linearizable, 1 some history is not, 2 some verdict is unknown, 3 bad input.

use anyhow::Context;
use riptide_checker::{
    check_with, read_history, render_html, BuiltinModel, CheckOptions, CheckResult, ExactValue,
    Format, Independent, ModelSpec, PartitionResult, Verdict,
};
use std::path::{Path, PathBuf};

use crate::cli::console::outln;

/// Arguments of `riptide check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// History files (JSON Lines, or Jepsen EDN for `.edn` files).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Model to check against: register, kv, append, set, cas-register or multi-register.
    #[arg(long, short, default_value = "kv")]
    pub model: BuiltinModel,
    /// Initial value, as JSON (register, kv, cas-register: every key's; multi-register: an
    /// object of key -> value). Default: absent / nil.
    #[arg(long, value_name = "JSON")]
    pub initial: Option<String>,
    /// Read every value as a jepsen.independent `[key value]` tuple (detected by default for
    /// register, kv and cas-register).
    #[arg(long)]
    pub independent: bool,
    /// History format; default from the extension (`.edn` is EDN, anything else JSON Lines).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Write a self-contained HTML visualization here (a directory when checking several files).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Write the results as JSON here (a directory when checking several files).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Seconds each file may be searched before its unfinished partitions are `unknown`.
    #[arg(long, default_value = "300", value_parser = parse_seconds)]
    pub timeout: std::time::Duration,
    /// Memory the search of one file may use, in MiB, before its unfinished partitions are
    /// `unknown`.
    #[arg(long, default_value_t = 2048)]
    pub memory_mib: usize,
    /// Finish every partition even after one is found not linearizable.
    #[arg(long)]
    pub all_partitions: bool,
}

/// Parses `--timeout`: seconds, finite and not negative (`inf` and values that overflow are
/// refused, not a panic).
pub fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("bad number of seconds {text:?}"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "bad number of seconds {text:?}: a finite number >= 0"
        ));
    }
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{text:?} seconds is too long"))
}

/// `--format` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    /// One JSON event per line.
    Jsonl,
    /// Jepsen EDN.
    Edn,
}

/// Partitions listed one by one at most; beyond, linearizable ones are counted.
const LISTED_PARTITIONS: usize = 20;

/// Runs the check; returns the process exit code (0 linearizable, 1 not, 2 unknown, 3 bad input).
pub fn run(args: CheckArgs) -> anyhow::Result<u8> {
    let format = args.format.map(|f| match f {
        FormatArg::Jsonl => Format::Jsonl,
        FormatArg::Edn => Format::Edn,
    });
    let options = CheckOptions {
        time_limit: Some(args.timeout),
        memory_budget: Some(args.memory_mib << 20),
        all_partitions: args.all_partitions,
    };
    let initial = args
        .initial
        .as_deref()
        .map(ExactValue::from_json_text)
        .transpose()
        .context("--initial must be a JSON value")?;
    let spec = ModelSpec {
        model: args.model,
        initial,
        independent: if args.independent {
            Independent::Always
        } else {
            Independent::Detect
        },
    };
    spec.validate()?;
    let several = args.files.len() > 1;
    for dir in [&args.html, &args.results]
        .into_iter()
        .flatten()
        .filter(|_| several)
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let (mut bad_input, mut failing, mut unknown) = (false, false, false);
    for (index, file) in args.files.iter().enumerate() {
        let checked = read_history(file, format)
            .map_err(|e| e.to_string())
            .and_then(|history| {
                check_with(&history, &spec, &options)
                    .map(|result| (history, result))
                    .map_err(|e| e.to_string())
            });
        let (history, result) = match checked {
            Ok(pair) => pair,
            Err(message) => {
                outln!("{}: bad input: {message}", file.display());
                bad_input = true;
                continue;
            }
        };
        print_result(file, &result);
        failing |= result.verdict == Verdict::NotLinearizable;
        unknown |= result.verdict == Verdict::Unknown;
        if let Some(target) = &args.results {
            let path = output_path(target, several, index, file, "json");
            let json = serde_json::to_string_pretty(&result).context("serializing the results")?;
            std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(target) = &args.html {
            let path = output_path(target, several, index, file, "html");
            std::fs::write(&path, render_html(&history, &result))
                .with_context(|| format!("writing {}", path.display()))?;
            outln!("  visualization: {}", path.display());
        }
    }
    Ok(if bad_input {
        3
    } else if failing {
        1
    } else if unknown {
        2
    } else {
        0
    })
}

/// Where the output for one input goes: `target` itself for a single input, else a file in
/// the directory `target` named after the input's position and path.
fn output_path(target: &Path, several: bool, index: usize, input: &Path, ext: &str) -> PathBuf {
    if !several {
        return target.to_path_buf();
    }
    let name: String = input
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_start_matches('_');
    target.join(format!("{index:03}-{name}.{ext}"))
}

fn print_result(file: &Path, result: &CheckResult) {
    outln!(
        "{}: {} (model {}, {} operations, {} partitions, {:.1} ms)",
        file.display(),
        result.verdict.to_string().to_uppercase(),
        result.model,
        result.operations,
        result.partitions.len(),
        result.elapsed_ms
    );
    let many = result.partitions.len() > LISTED_PARTITIONS;
    let mut hidden = 0;
    for p in &result.partitions {
        if many && p.verdict == Verdict::Linearizable {
            hidden += 1;
            continue;
        }
        print_partition(p);
    }
    if hidden > 0 {
        outln!("  {hidden} more partitions linearizable");
    }
}

fn print_partition(p: &PartitionResult) {
    let name = if p.partition.is_empty() {
        "(single register)".to_string()
    } else {
        format!("{:?}", p.partition)
    };
    let reason = p
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    outln!(
        "  partition {name}: {}{reason} ({} operations)",
        p.verdict,
        p.operations
    );
    let Some(c) = &p.counterexample else { return };
    outln!(
        "    longest linearizable prefix: {} operations, ending with:",
        c.prefix.len()
    );
    for o in &c.prefix_tail {
        outln!(
            "      #{:<6} p{:<4} {}  (line {})",
            o.id,
            o.process,
            o.description,
            o.invoke_line
        );
    }
    outln!("    state after it: {}", c.states.join(" | "));
    if let Some(b) = &c.blocked_by {
        outln!(
            "    cannot be linearized next: #{} p{} {} (lines {}-{}): it had completed, and no \
             order of the operations open then makes it legal",
            b.id,
            b.process,
            b.description,
            b.invoke_line,
            b.complete_line.map_or("end".to_string(), |l| l.to_string())
        );
    }
    outln!("    operations that could have come next:");
    for cand in &c.candidates {
        outln!(
            "      #{:<6} p{:<4} {}  ({})",
            cand.op.id,
            cand.op.process,
            cand.op.description,
            if cand.model_accepts {
                "the model accepts it, but every continuation fails"
            } else {
                "the model rejects it in this state"
            }
        );
    }
}
