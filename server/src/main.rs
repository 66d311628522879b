//! `riptide-server`: one node of a Riptide cluster.

fn main() {}
