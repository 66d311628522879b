//! The Riptide KV node: a sans-IO Raft core ([`raft`]) driven by a tokio runtime with a WAL on
//! disk, a KV state machine and an HTTP API.

pub mod kv;
pub mod raft;
pub mod storage;
