//! `riptide`: the Jepsen-style harness (test, check, campaign, serve).

fn main() {}
