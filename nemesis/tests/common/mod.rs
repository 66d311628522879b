//! Helpers shared by the test files that run real child processes.

// Each test file uses its own subset.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use riptide_nemesis::{Network, ProcessSpec};
use tokio::time::Instant;

/// Generous bound for anything that should happen promptly on a loaded 2-core machine.
pub const PROMPTLY: Duration = Duration::from_secs(10);

/// Kernel state letter of a process (`R`, `S`, `T`, `Z`...), `None` when it does not exist.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may contain spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.trim_start().chars().next()
}

/// True when the process is gone or only a zombie (dead, not yet reaped by its new parent).
pub fn is_not_running(pid: u32) -> bool {
    matches!(process_state(pid), None | Some('Z') | Some('X'))
}

/// Polls `condition` every 20 ms until it holds or `PROMPTLY` passes.
pub async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PROMPTLY;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

/// A node that does nothing for a long time: `sleep 1000`, logging to `dir/name.log`.
pub fn sleeper(dir: &Path, name: &str) -> ProcessSpec {
    ProcessSpec::new("sleep", dir.join(format!("{name}.log"))).arg("1000")
}

/// Proxies for `nodes` nodes towards loopback ports nobody listens on: enough for process faults
/// and for watching which links a fault cuts, which the proxies report.
pub async fn network_to_nowhere(nodes: usize) -> Network {
    let unused: Vec<std::net::SocketAddr> = (0..nodes)
        .map(|_| std::net::SocketAddr::from(([127, 0, 0, 1], riptide_nemesis::free_port())))
        .collect();
    Network::start(unused)
        .await
        .expect("cannot start the link proxies")
}
