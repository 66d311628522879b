//! The fault schedule of a run: replayed from a stored run, or generated from the seed.

use std::time::Duration;

use riptide_nemesis::{parse_fault_list, Schedule, ScheduleSpec};

use crate::store::RunConfig;

/// The fault schedule: replayed, or generated from the seed.
pub fn make_schedule(config: &RunConfig, replayed: Option<Schedule>) -> Result<Schedule, String> {
    if let Some(s) = replayed {
        return Ok(s);
    }
    let faults = parse_fault_list(&config.nemesis).map_err(|e| {
        format!(
            "--nemesis {}: {e} (known: {})",
            config.nemesis,
            riptide_nemesis::fault::known_names()
        )
    })?;
    let spec = ScheduleSpec {
        seed: config.seed,
        faults,
        nodes: config.nodes,
        interval_ms: config.nemesis_interval_ms.max(1),
        options: Default::default(),
    };
    match config.nemesis_quiet_ms {
        None => Schedule::generate(spec, Duration::from_millis(config.time_limit_ms)),
        Some(quiet_ms) => with_quiet_periods(spec, quiet_ms, config.time_limit_ms),
    }
    .map_err(|e| format!("--nemesis {}: {e}", config.nemesis))
}

/// The schedule of `spec` with a quiet period of `quiet_ms` (instead of one interval) before
/// each fault: the same faults in the same order, each still lasting `spec.interval_ms`, as
/// many as end within `run_ms`.
///
/// The nemesis draws fault `k` after faults `0..k` whatever their timing, so generating the
/// regular schedule long enough to hold that many faults and re-timing it keeps the choices
/// (which fault, which node) of the seed.
pub fn with_quiet_periods(
    spec: ScheduleSpec,
    quiet_ms: u64,
    run_ms: u64,
) -> Result<Schedule, riptide_nemesis::NemesisError> {
    let fault_ms = spec.interval_ms.max(1);
    let period_ms = fault_ms.saturating_add(quiet_ms);
    let count = run_ms
        .checked_sub(period_ms)
        .map_or(0, |rest| rest / period_ms + 1);
    // The regular schedule has fault k in [(2k+1)i, (2k+2)i]: `count` faults need 2*count*i.
    let regular_ms = count.saturating_mul(2).saturating_mul(fault_ms);
    let mut schedule = Schedule::generate(spec, Duration::from_millis(regular_ms))?;
    for (k, fault) in schedule.faults.iter_mut().enumerate() {
        fault.start_ms = quiet_ms + k as u64 * period_ms;
        fault.end_ms = fault.start_ms + fault_ms;
    }
    Ok(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_periods_retime_the_same_faults_within_the_run() {
        let spec = ScheduleSpec {
            seed: 4,
            faults: parse_fault_list("pause-leader,kill-one,isolate-one").unwrap(),
            nodes: 3,
            interval_ms: 3000,
            options: Default::default(),
        };
        let regular = Schedule::generate(spec.clone(), Duration::from_secs(120)).unwrap();
        let quick = with_quiet_periods(spec, 500, 30_000).unwrap();
        // 500 ms quiet + 3 s fault, eight times, ends at 28 s; a ninth would end at 31.5 s.
        assert_eq!(quick.faults.len(), 8);
        for (k, fault) in quick.faults.iter().enumerate() {
            assert_eq!(fault.start_ms, 500 + 3500 * k as u64);
            assert_eq!(fault.end_ms, fault.start_ms + 3000);
            assert_eq!(fault.plan, regular.faults[k].plan, "fault {k}");
        }
        let none = with_quiet_periods(quick.spec.clone(), 500, 3000).unwrap();
        assert!(none.faults.is_empty());
    }
}
