//! Riptide's fault injector: it starts and breaks OS processes and TCP links on purpose.
//! It knows nothing of Raft.
