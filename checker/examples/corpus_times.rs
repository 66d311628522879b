//! Prints the check time and verdict of every Porcupine corpus file (a quick look; the
//! criterion benchmark is the measurement).

#[path = "../tests/common/porcupine.rs"]
mod porcupine;

use riptide_checker::{check_builtin, CheckOptions};
use std::time::{Duration, Instant};

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let options = CheckOptions {
        time_limit: Some(Duration::from_secs(10)),
        memory_budget: Some(2 << 30),
        all_partitions: false,
    };
    let mut total = 0.0;
    for file in porcupine::corpus() {
        if file.expected == "none" || !file.file.contains(&filter) {
            continue;
        }
        let history = porcupine::load(&file);
        let t0 = Instant::now();
        let result = check_builtin(&history, porcupine::model_for(&file.format), &options).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        total += secs;
        let ok = result.verdict.to_string().replace(' ', "-") == file.expected;
        println!(
            "{:24} {:>9.3} ms  {:18} {}",
            file.file,
            secs * 1e3,
            result.verdict.to_string(),
            if ok { "" } else { "WRONG" }
        );
    }
    println!("total {:.3} s", total);
}
