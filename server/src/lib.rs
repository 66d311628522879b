//! The Riptide KV node: a sans-IO Raft core ([`raft`]) driven by a tokio runtime ([`node`]) with
//! a write-ahead log on disk ([`storage`]), a KV state machine with client sessions ([`kv`]) and
//! an HTTP API ([`http`]).

pub mod bugs;
pub mod http;
pub mod kv;
pub mod node;
pub mod raft;
pub mod storage;
