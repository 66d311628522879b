//! The etcd client: one operation against an etcd cluster over the v3 JSON gateway, with
//! Jepsen's outcomes.
//!
//! | operation | gateway request |
//! |-----------|-----------------|
//! | read      | `POST /v3/kv/range` (`serializable: true` in [`EtcdReads::Serializable`] mode) |
//! | write     | `POST /v3/kv/put` |
//! | cas       | `POST /v3/kv/txn`: compare `VALUE == from`, then put `to` |
//! | delete    | `POST /v3/kv/deleterange` |
//! | append    | a range, then `POST /v3/kv/txn`: compare `MOD == mod_revision`, then put the concatenation; on a failed compare, again from the txn's own range |
//!
//! etcd has no append, so it is built from a compare-and-put on the key's `mod_revision`: the
//! put happens only if nobody changed the key since it was read, which makes the append
//! atomic, and a failed compare applied nothing, so trying again is safe. Refusing append
//! instead would refuse the default `kv` workload, which appends.
//!
//! etcd has no idempotency token (its v3 API has nothing like a request id), so a write whose
//! request was sent and then timed out, or whose connection broke, may or may not have been
//! applied, and sending it again could apply it twice: it completes `info`, never retried.
//! Only a write that was certainly not sent (the connection was refused) goes to another node.
//! Since a write cannot be retried anyway, its one attempt may use the operation's whole
//! deadline (`--op-timeout`) instead of `--attempt-timeout`: waiting longer turns more writes
//! into a definite answer. Reads change nothing, so they are retried on another node after
//! `--attempt-timeout`, and a read that never got an answer is a `fail`.
//!
//! etcd members forward proposals to their leader and serve linearizable reads through the
//! leader's read index, so a client may talk to any member: [`Route::Any`] sends each
//! operation to the next member round-robin, [`Route::Leader`] keeps to the last member that
//! answered (as etcd's own client pins one endpoint), moving on when it fails.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::EtcdReads;
use crate::system::{
    cluster_http_client, transport_failure, Answer, Client, ClientTimeouts, Completion, Request,
    Route, Served, SystemError, TransportFailure,
};

/// How one HTTP attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The gateway answered `200` with this JSON body.
    Done(Value),
    /// Certainly not applied; another node may do better (connection refused, or an error
    /// etcd returns before proposing anything).
    Refused(String),
    /// Certainly not applied and retrying cannot help (bad input).
    Rejected(String),
    /// May or may not have been applied (timeout, connection lost after sending, an error
    /// after the proposal).
    Ambiguous(String),
}

/// gRPC status codes the gateway puts in `"code"` that say nothing was proposed.
const GRPC_INVALID_ARGUMENT: i64 = 3;
const GRPC_RESOURCE_EXHAUSTED: i64 = 8;
const GRPC_FAILED_PRECONDITION: i64 = 9;

/// Classifies a gateway response. `is_read` decides what an error means: nothing for a read,
/// "unknown" for a write unless etcd's error says it refused before proposing.
pub fn classify_response(is_read: bool, status: u16, body: &[u8]) -> Reply {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        return match parsed {
            Some(v) => Reply::Done(v),
            None if is_read => Reply::Refused(format!("http {status}: body is not JSON")),
            None => Reply::Ambiguous(format!("http {status}: body is not JSON")),
        };
    }
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message").or_else(|| v.get("error")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("http {status}"));
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_i64);
    match code {
        // A malformed request (e.g. a key too large): it never reached Raft.
        Some(GRPC_INVALID_ARGUMENT) => Reply::Rejected(message),
        // "etcdserver: too many requests" (the applied index lags far behind the committed
        // one) and "not capable" are refused before anything is proposed.
        Some(GRPC_RESOURCE_EXHAUSTED) | Some(GRPC_FAILED_PRECONDITION) => Reply::Refused(message),
        _ if is_read => Reply::Refused(message),
        // Anything else ("request timed out", "leader changed", "server stopped", ...) may
        // come after the proposal.
        _ => Reply::Ambiguous(message),
    }
}

/// Classifies a transport error ([`transport_failure`]): only a connection that could not
/// be made certainly sent nothing.
pub fn classify_transport(is_read: bool, err: &reqwest::Error) -> Reply {
    match transport_failure(is_read, err) {
        TransportFailure::NotSent(text) => Reply::Refused(text),
        TransportFailure::MaybeApplied(text) => Reply::Ambiguous(text),
        TransportFailure::Invalid(text) => Reply::Rejected(text),
    }
}

fn b64(text: &str) -> String {
    B64.encode(text.as_bytes())
}

/// The first key-value of a range response (a `kvs` list; absent when the key is absent):
/// its value and its `mod_revision` (0 when absent, as etcd compares an absent key's).
pub fn first_kv(range: &Value) -> Result<Option<(String, i64)>, String> {
    let Some(kv) = range
        .get("kvs")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    else {
        return Ok(None);
    };
    // proto3 JSON leaves empty fields out: an empty value has no "value".
    let value = match kv.get("value").and_then(Value::as_str) {
        Some(encoded) => {
            let bytes = B64
                .decode(encoded)
                .map_err(|e| format!("value is not base64: {e}"))?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        None => String::new(),
    };
    // int64 fields are JSON strings in proto3 JSON.
    let revision = kv
        .get("mod_revision")
        .and_then(|r| r.as_str().and_then(|s| s.parse().ok()).or(r.as_i64()))
        .ok_or_else(|| "a key-value without mod_revision".to_string())?;
    Ok(Some((value, revision)))
}

/// Whether a txn response says its compares held (proto3 JSON leaves out `false`).
pub fn txn_succeeded(response: &Value) -> bool {
    response
        .get("succeeded")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Who answered: member `node` (0-based position) and the Raft term its response header gives
/// (`"header":{"raft_term":"3",...}`, a uint64 as a string in proto3 JSON). The gateway says
/// nothing of the member's role or commit index.
pub fn served_by(node: usize, response: &Value) -> Served {
    let term = response
        .get("header")
        .and_then(|h| h.get("raft_term"))
        .and_then(|t| t.as_str().and_then(|s| s.parse().ok()).or(t.as_u64()));
    Served {
        node: node as u64 + 1,
        term,
        ..Served::default()
    }
}

/// The range response inside a failed txn's `responses` (its failure branch is one range).
fn txn_failure_range(response: &Value) -> Option<&Value> {
    response
        .get("responses")?
        .as_array()?
        .first()?
        .get("response_range")
}

/// A client for the whole cluster, shared by every logical process.
#[derive(Clone)]
pub struct EtcdClient {
    http: reqwest::Client,
    /// Client base URLs of the members (`http://127.0.0.1:PORT`), in node order.
    nodes: Arc<Vec<String>>,
    /// Round-robin cursor ([`Route::Any`]).
    next: Arc<AtomicUsize>,
    /// The pinned member ([`Route::Leader`]).
    pinned: Arc<AtomicUsize>,
    timeouts: ClientTimeouts,
    reads: EtcdReads,
    read_from: Route,
    write_to: Route,
}

impl EtcdClient {
    /// A client of the members at `nodes` (client base URLs); at least one.
    pub fn new(
        nodes: Vec<String>,
        timeouts: ClientTimeouts,
        reads: EtcdReads,
    ) -> Result<EtcdClient, SystemError> {
        let http = cluster_http_client(&nodes, &timeouts)?;
        Ok(EtcdClient {
            http,
            nodes: Arc::new(nodes),
            next: Arc::new(AtomicUsize::new(0)),
            pinned: Arc::new(AtomicUsize::new(0)),
            timeouts,
            reads,
            read_from: Route::Any,
            write_to: Route::Any,
        })
    }

    /// Where reads and writes go first.
    pub fn with_routes(mut self, read_from: Route, write_to: Route) -> EtcdClient {
        self.read_from = read_from;
        self.write_to = write_to;
        self
    }

    /// The member an operation starts at.
    fn first_target(&self, route: Route) -> usize {
        match route {
            Route::Any => self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len(),
            Route::Leader => self.pinned.load(Ordering::Relaxed) % self.nodes.len(),
        }
    }

    /// The member after `failed`; a pinned client re-pins there.
    fn move_on(&self, route: Route, failed: usize) -> usize {
        let next = (failed + 1) % self.nodes.len();
        if route == Route::Leader {
            let _ =
                self.pinned
                    .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
        }
        next
    }

    async fn post(
        &self,
        node: usize,
        path: &str,
        body: &Value,
        budget: Duration,
        is_read: bool,
    ) -> Reply {
        let url = format!("{}{path}", self.nodes[node]);
        let response = match self.http.post(&url).json(body).timeout(budget).send().await {
            Ok(r) => r,
            Err(e) => return classify_transport(is_read, &e),
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(bytes) => classify_response(is_read, status, &bytes),
            Err(e) => classify_transport(is_read, &e),
        }
    }

    /// A range of `key` until it answers or `deadline` passes: `Ok(kv)` or the last error.
    async fn range(
        &self,
        key: &str,
        serializable: bool,
        deadline: Instant,
    ) -> Result<(Option<(String, i64)>, Served), String> {
        let mut body = json!({ "key": b64(key) });
        if serializable {
            body["serializable"] = Value::Bool(true);
        }
        let mut target = self.first_target(self.read_from);
        let mut last = "deadline passed".to_string();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(last);
            }
            let budget = (deadline - now).min(self.timeouts.attempt);
            match self.post(target, "/v3/kv/range", &body, budget, true).await {
                Reply::Done(v) => return first_kv(&v).map(|kv| (kv, served_by(target, &v))),
                Reply::Rejected(e) => return Err(e),
                Reply::Refused(e) | Reply::Ambiguous(e) => last = e,
            }
            target = self.move_on(self.read_from, target);
            tokio::time::sleep(self.timeouts.backoff).await;
        }
    }

    /// Sends one write request, to another member only while the connection is refused:
    /// the reply that settles it (`Done`, `Rejected` or `Ambiguous`), or the last refusal
    /// once `deadline` passed; with the member that answered when it did (`Done`).
    async fn write_once(
        &self,
        path: &str,
        body: &Value,
        deadline: Instant,
    ) -> (Reply, Option<Served>) {
        let mut target = self.first_target(self.write_to);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return (Reply::Refused("deadline passed".into()), None);
            }
            match self.post(target, path, body, deadline - now, false).await {
                Reply::Refused(e) => {
                    if Instant::now() + self.timeouts.backoff >= deadline {
                        return (Reply::Refused(e), None);
                    }
                }
                Reply::Done(v) => {
                    let served = served_by(target, &v);
                    return (Reply::Done(v), Some(served));
                }
                settled => return (settled, None),
            }
            target = self.move_on(self.write_to, target);
            tokio::time::sleep(self.timeouts.backoff).await;
        }
    }

    /// Runs one operation until it is settled or `deadline` passes.
    pub async fn execute(&self, request: &Request, deadline: Instant) -> Answer {
        let write_answer = |(reply, served): (Reply, Option<Served>)| Answer {
            completion: match reply {
                Reply::Done(_) => Completion::Ok(None),
                Reply::Refused(e) | Reply::Rejected(e) => Completion::Fail(e),
                Reply::Ambiguous(e) => Completion::Info(e),
            },
            served,
        };
        match request {
            Request::Read { key } => {
                let serializable = self.reads == EtcdReads::Serializable;
                match self.range(key, serializable, deadline).await {
                    Ok((kv, served)) => Answer {
                        completion: Completion::Ok(kv.map(|(v, _)| v)),
                        served: Some(served),
                    },
                    Err(e) => Answer::unserved(Completion::Fail(e)),
                }
            }
            Request::Write { key, value } => {
                let body = json!({ "key": b64(key), "value": b64(value) });
                write_answer(self.write_once("/v3/kv/put", &body, deadline).await)
            }
            Request::Delete { key } => {
                let body = json!({ "key": b64(key) });
                write_answer(self.write_once("/v3/kv/deleterange", &body, deadline).await)
            }
            Request::Cas { key, from, to } => {
                let body = json!({
                    "compare": [{
                        "key": b64(key), "target": "VALUE", "result": "EQUAL", "value": b64(from)
                    }],
                    "success": [{ "requestPut": { "key": b64(key), "value": b64(to) } }],
                });
                match self.write_once("/v3/kv/txn", &body, deadline).await {
                    (Reply::Done(v), served) => Answer {
                        completion: if txn_succeeded(&v) {
                            Completion::Ok(None)
                        } else {
                            Completion::Fail("precondition-failed".into())
                        },
                        served,
                    },
                    other => write_answer(other),
                }
            }
            Request::Append { key, suffix } => self.append(key, suffix, deadline).await,
        }
    }

    /// Append as a compare-and-put on the key's `mod_revision`, until it holds.
    async fn append(&self, key: &str, suffix: &str, deadline: Instant) -> Answer {
        let fail = |e: String| Answer::unserved(Completion::Fail(e));
        let mut current = match self.range(key, false, deadline).await {
            Ok((kv, _)) => kv,
            Err(e) => return fail(e),
        };
        loop {
            let (value, revision) = current.unwrap_or_default();
            let body = json!({
                "compare": [{
                    "key": b64(key), "target": "MOD", "result": "EQUAL",
                    "modRevision": revision.to_string()
                }],
                "success": [{
                    "requestPut": { "key": b64(key), "value": b64(&format!("{value}{suffix}")) }
                }],
                "failure": [{ "requestRange": { "key": b64(key) } }],
            });
            match self.write_once("/v3/kv/txn", &body, deadline).await {
                (Reply::Done(v), served) if txn_succeeded(&v) => {
                    return Answer {
                        completion: Completion::Ok(None),
                        served,
                    }
                }
                // Someone changed the key since it was read: nothing was applied; try again
                // from the value the txn read.
                (Reply::Done(v), _) => {
                    current = match txn_failure_range(&v).map(first_kv) {
                        Some(Ok(kv)) => kv,
                        Some(Err(e)) => return fail(e),
                        None => return fail("a failed txn without its range".into()),
                    };
                    if Instant::now() >= deadline {
                        return fail("deadline passed".into());
                    }
                }
                (Reply::Refused(e) | Reply::Rejected(e), _) => return fail(e),
                (Reply::Ambiguous(e), _) => return Answer::unserved(Completion::Info(e)),
            }
        }
    }
}

#[async_trait::async_trait]
impl Client for EtcdClient {
    async fn invoke(&self, request: &Request, _request_id: &str, deadline: Instant) -> Answer {
        // etcd has no request id to make a retry safe: `execute` never resends a write.
        self.execute(request, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_gives_the_decoded_value_and_its_revision() {
        let v = json!({"header": {}, "kvs": [{"key": "azE=", "mod_revision": "5", "value": "djI="}], "count": "1"});
        assert_eq!(first_kv(&v).unwrap(), Some(("v2".to_string(), 5)));
        assert_eq!(first_kv(&json!({"header": {}})).unwrap(), None);
        // An empty value is left out of the JSON.
        let empty = json!({"kvs": [{"key": "azE=", "mod_revision": "7"}]});
        assert_eq!(first_kv(&empty).unwrap(), Some((String::new(), 7)));
    }

    #[test]
    fn a_txn_without_succeeded_failed() {
        assert!(txn_succeeded(&json!({"succeeded": true})));
        assert!(!txn_succeeded(&json!({"header": {}})));
        let failed = json!({"responses": [{"response_range": {"kvs": [{"mod_revision": "3", "value": "eA=="}]}}]});
        let range = txn_failure_range(&failed).unwrap();
        assert_eq!(first_kv(range).unwrap(), Some(("x".to_string(), 3)));
    }

    #[test]
    fn errors_after_a_proposal_are_unknown_for_writes_only() {
        let timed_out = br#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#;
        assert!(matches!(
            classify_response(false, 503, timed_out),
            Reply::Ambiguous(m) if m == "etcdserver: request timed out"
        ));
        assert!(matches!(
            classify_response(true, 503, timed_out),
            Reply::Refused(_)
        ));
        let too_many = br#"{"message":"etcdserver: too many requests","code":8}"#;
        assert!(matches!(
            classify_response(false, 429, too_many),
            Reply::Refused(_)
        ));
        let bad = br#"{"message":"etcdserver: key is not provided","code":3}"#;
        assert!(matches!(
            classify_response(false, 400, bad),
            Reply::Rejected(_)
        ));
        assert!(matches!(
            classify_response(false, 502, b"<html>"),
            Reply::Ambiguous(_)
        ));
        assert!(matches!(
            classify_response(false, 200, b"{}"),
            Reply::Done(_)
        ));
    }

    #[tokio::test]
    async fn a_refused_write_fails_and_is_never_unknown() {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = EtcdClient::new(
            vec![format!("http://127.0.0.1:{port}")],
            ClientTimeouts::default(),
            EtcdReads::Linearizable,
        )
        .unwrap();
        let req = Request::Write {
            key: "k".into(),
            value: "p1-1".into(),
        };
        let done = client
            .execute(&req, Instant::now() + Duration::from_millis(300))
            .await;
        assert!(matches!(done.completion, Completion::Fail(_)), "{done:?}");
        assert_eq!(done.served, None);
    }

    #[test]
    fn the_member_that_answered_is_named_with_the_term_of_its_header() {
        let range = json!({"header": {"cluster_id": "1", "member_id": "2", "revision": "9", "raft_term": "3"}});
        assert_eq!(
            served_by(1, &range),
            Served {
                node: 2,
                term: Some(3),
                commit_index: None,
                role: None,
            }
        );
        // A header without a term (or none at all) still names the member.
        assert_eq!(served_by(0, &json!({})).node, 1);
        assert_eq!(
            served_by(0, &json!({"header": {"raft_term": "x"}})).term,
            None
        );
    }
}
