//! `riptide`: the Jepsen-style harness, a thin binary over [`riptide_harness`].

fn main() -> std::process::ExitCode {
    riptide_harness::cli::main()
}
