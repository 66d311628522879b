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
        quiet_ms: config.nemesis_quiet_ms,
        options: config.fault_options.clone(),
    };
    Schedule::generate(spec, Duration::from_millis(config.time_limit_ms))
        .map_err(|e| format!("--nemesis {}: {e}", config.nemesis))
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
            quiet_ms: None,
            options: Default::default(),
        };
        let regular = Schedule::generate(spec.clone(), Duration::from_secs(120)).unwrap();
        let quick = Schedule::generate(
            ScheduleSpec {
                quiet_ms: Some(500),
                ..spec
            },
            Duration::from_secs(30),
        )
        .unwrap();
        // 500 ms quiet + 3 s fault, eight times, ends at 28 s; a ninth would end at 31.5 s.
        assert_eq!(quick.faults.len(), 8);
        for (k, fault) in quick.faults.iter().enumerate() {
            assert_eq!(fault.start_ms, 500 + 3500 * k as u64);
            assert_eq!(fault.end_ms, fault.start_ms + 3000);
            assert_eq!(fault.plan, regular.faults[k].plan, "fault {k}");
        }
        let none = Schedule::generate(quick.spec.clone(), Duration::from_secs(3)).unwrap();
        assert!(none.faults.is_empty());
    }
}
