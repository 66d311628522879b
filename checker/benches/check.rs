//! Benchmarks: Porcupine's whole test corpus (with the sum over files of the median check time,
//! the figure Porcupine is compared on) and synthetic key-value histories of 10k, 100k and 1M
//! operations over 1,000 keys with 10-50 concurrent processes and 1% unknown outcomes
//! (throughput printed as operations checked per second).
//!
//! `cargo bench -p riptide-checker`; `cargo bench -p riptide-checker -- synthetic` for a part.

#[path = "../tests/common/porcupine.rs"]
mod porcupine;
#[path = "../tests/common/synth.rs"]
mod synth;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use riptide_checker::{check_builtin, BuiltinModel, CheckOptions, History, Verdict};
use std::time::{Duration, Instant};

fn corpus() -> Vec<(String, BuiltinModel, History)> {
    porcupine::corpus()
        .into_iter()
        .filter(|f| f.expected != "none")
        .map(|f| {
            let model = porcupine::model_for(&f.format);
            let history = porcupine::load(&f);
            (f.file, model, history)
        })
        .collect()
}

/// Sum over files of the median of 21 check times, printed once.
fn print_sum_of_medians(files: &[(String, BuiltinModel, History)]) {
    let mut total = Duration::ZERO;
    let mut slowest: Vec<(Duration, &str)> = Vec::new();
    for (name, model, history) in files {
        let mut times: Vec<Duration> = (0..21)
            .map(|_| {
                let t0 = Instant::now();
                let r = check_builtin(history, *model, &CheckOptions::default()).unwrap();
                let t = t0.elapsed();
                assert_ne!(r.verdict, Verdict::Unknown);
                t
            })
            .collect();
        times.sort();
        total += times[10];
        slowest.push((times[10], name));
    }
    slowest.sort();
    slowest.reverse();
    println!(
        "porcupine corpus: sum of median check times = {:.3} s over {} files",
        total.as_secs_f64(),
        files.len()
    );
    for (t, name) in slowest.iter().take(3) {
        println!("  slowest: {name} {:.1} ms", t.as_secs_f64() * 1e3);
    }
}

fn porcupine_corpus(c: &mut Criterion) {
    let files = corpus();
    print_sum_of_medians(&files);
    let mut group = c.benchmark_group("porcupine");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("whole-corpus", |b| {
        b.iter(|| {
            for (_, model, history) in &files {
                check_builtin(history, *model, &CheckOptions::default()).unwrap();
            }
        })
    });
    for name in ["jepsen/etcd_002.log", "kv/c50-ok.txt", "kv/c50-bad.txt"] {
        if let Some((_, model, history)) = files.iter().find(|(n, _, _)| n == name) {
            group.bench_function(name, |b| {
                b.iter(|| check_builtin(history, *model, &CheckOptions::default()).unwrap())
            });
        }
    }
    group.finish();
}

fn synthetic(c: &mut Criterion) {
    let mut group = c.benchmark_group("synthetic");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for (operations, processes) in [(10_000, 10), (100_000, 30), (1_000_000, 50)] {
        let events = synth::generate(synth::Shape {
            operations,
            keys: 1000,
            processes,
            info_fraction: 0.01,
            seed: 42,
        });
        let history =
            History::from_events(events.into_iter().enumerate().map(|(i, e)| (i + 1, e))).unwrap();
        let t0 = Instant::now();
        let result = check_builtin(&history, BuiltinModel::Kv, &CheckOptions::default()).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(result.verdict, Verdict::Linearizable);
        println!(
            "synthetic {operations} ops, 1000 keys, {processes} processes: {:.3} s, {:.0} operations checked per second",
            secs,
            operations as f64 / secs
        );
        group.throughput(Throughput::Elements(operations as u64));
        group.bench_with_input(
            BenchmarkId::new(
                "kv-1000-keys",
                format!("{operations}-ops-{processes}-procs"),
            ),
            &history,
            |b, h| b.iter(|| check_builtin(h, BuiltinModel::Kv, &CheckOptions::default()).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(benches, porcupine_corpus, synthetic);
criterion_main!(benches);
