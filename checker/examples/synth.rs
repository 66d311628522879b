//! Writes a synthetic key-value history (JSON Lines) for benchmarks:
//! `cargo run --release -p riptide-checker --example synth -- OPS KEYS PROCESSES INFO_FRACTION SEED [stale] > h.jsonl`
//! (defaults: 1000000 1000 50 0.01 1), then `riptide check h.jsonl --model kv`. With `stale`,
//! one read returns an overwritten value, so the history is not linearizable.

#[path = "../tests/common/synth.rs"]
mod synth;

use std::io::Write;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let shape = synth::Shape {
        operations: arg(0, "1000000").parse().expect("OPS"),
        keys: arg(1, "1000").parse().expect("KEYS"),
        processes: arg(2, "50").parse().expect("PROCESSES"),
        info_fraction: arg(3, "0.01").parse().expect("INFO_FRACTION"),
        seed: arg(4, "1").parse().expect("SEED"),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let events = if arg(5, "") == "stale" {
        synth::generate_with_stale_read(shape)
    } else {
        synth::generate(shape)
    };
    for event in events {
        serde_json::to_writer(&mut out, &event)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
