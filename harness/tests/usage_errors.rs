//! Every usage error of every subcommand exits 3 (bad input), never clap's 2, which is
//! `riptide`'s "unknown" verdict: a script must be able to tell a broken command from an
//! undecided history. `--help` still exits 0.

use std::process::Command;

fn exit_code(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(args)
        .output()
        .expect("run riptide");
    (
        out.status.code().expect("riptide exited by a signal"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_flag_exits_3_for_every_subcommand() {
    for sub in ["test", "check", "report", "shrink", "serve", "campaign"] {
        let (code, stderr) = exit_code(&[sub, "--nosuchflag"]);
        assert_eq!(code, 3, "riptide {sub} --nosuchflag: {stderr}");
        assert!(stderr.contains("--nosuchflag"), "{sub}: {stderr}");
    }
    let (code, stderr) = exit_code(&["campaign", "merge", "--nosuchflag"]);
    assert_eq!(code, 3, "{stderr}");
}

#[test]
fn bad_values_and_unknown_names_exit_3_with_clap_s_message() {
    for args in [
        &["check", "h.edn", "--model", "nosuch"][..],
        &["check", "h.jsonl", "--timeout", "inf"],
        &["check", "h.jsonl", "--timeout", "1e400"],
        &["test", "--rate", "1e-300"],
        &["test", "--time-limit", "1000000000000000000000000s"],
        &["test", "--nodes", "0"],
        &["nosuchcommand"],
        &[],
    ] {
        let (code, stderr) = exit_code(args);
        assert_eq!(code, 3, "riptide {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "riptide {args:?}: {stderr}");
    }
}

#[test]
fn help_and_version_exit_0() {
    assert_eq!(exit_code(&["--help"]).0, 0);
    assert_eq!(exit_code(&["--version"]).0, 0);
    assert_eq!(exit_code(&["test", "--help"]).0, 0);
}

#[test]
fn shrinking_a_folder_that_is_not_a_run_exits_3_and_says_why() {
    let (code, stderr) = exit_code(&["shrink", "/nonexistent/run"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("no such run folder"), "{stderr}");
    let empty = tempfile::tempdir().unwrap();
    let (code, stderr) = exit_code(&["shrink", empty.path().to_str().unwrap()]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("config.json"), "{stderr}");
}
