//! The Riptide client: one operation against a Riptide cluster, as a careful real client does it.
//!
//! A request goes to the node believed to lead (shared by all clients, learned from `307`
//! redirects), or round-robin over nodes when no leader is known. Each reply is classified
//! ([`classify_response`], [`classify_transport`]) into "it happened", "it certainly did not",
//! or "unknown", and [`RiptideClient::execute`] turns a series of attempts into one
//! [`Completion`] with Jepsen semantics:
//!
//! - `412` is a definite `fail` with `precondition-failed` (the cas saw another value);
//! - a refusal that proposed nothing (`503` with `"proposed":false`, connection refused) is
//!   retried with the same `Request-Id` until the deadline, then `fail`;
//! - an ambiguous failure (timeout, connection broken after sending, `504`) is retried with the
//!   same `Request-Id` (exactly-once makes that safe) until the deadline; if no later attempt
//!   gives a definite answer, the operation is `info` and its process is retired by the caller.
//!
//! Reads change nothing, so a read that never got an answer is a `fail`, not an `info`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::system::{
    cluster_http_client, transport_failure, Answer, Client, ClientTargets, ClientTimeouts,
    Completion, Request, Route, Served, SystemError, TransportFailure,
};

/// How one HTTP attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// It happened. For a read, the value (`None` when the key is absent).
    Done(Option<String>),
    /// A cas whose `from` differed from the current value (`412`): completed, definitely failed.
    PreconditionFailed,
    /// Certainly not applied, but another attempt may succeed (`503` proposing nothing,
    /// connection refused, no leader).
    Refused(String),
    /// Certainly not applied and retrying cannot help (a `4xx` for bad input).
    Rejected(String),
    /// May or may not have been applied (`504`, timeout, connection lost after sending).
    Ambiguous(String),
    /// `307`/`308` to the leader: the `Location`.
    Redirect(String),
}

/// Classifies an HTTP response of the KV API. `body` is the raw body (a value for reads, JSON
/// otherwise).
pub fn classify_response(
    request_is_read: bool,
    is_delete: bool,
    status: u16,
    location: Option<&str>,
    body: &[u8],
) -> Reply {
    let json_field = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get(name).cloned())
    };
    let error_text = || {
        json_field("error")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("http {status}"))
    };
    match status {
        200..=299 => {
            if request_is_read {
                Reply::Done(Some(String::from_utf8_lossy(body).into_owned()))
            } else {
                Reply::Done(None)
            }
        }
        // Deleting an absent key has nothing to delete: it happened.
        404 if request_is_read || is_delete => Reply::Done(None),
        301 | 302 | 303 | 307 | 308 => match location {
            Some(loc) if !loc.is_empty() => Reply::Redirect(loc.to_string()),
            _ => Reply::Refused(format!("http {status} without Location")),
        },
        412 => Reply::PreconditionFailed,
        503 | 504 => {
            // The node says whether it proposed the write; without that, assume the worst:
            // a 504 is "unknown" by the API's definition, a 503 "nothing proposed".
            let proposed = json_field("proposed").and_then(|v| v.as_bool());
            let definite = match proposed {
                Some(p) => !p,
                None => status == 503,
            };
            if definite || request_is_read {
                Reply::Refused(error_text())
            } else {
                Reply::Ambiguous(error_text())
            }
        }
        400..=499 => Reply::Rejected(error_text()),
        // A 500 may come after the proposal: unknown for a write.
        _ if request_is_read => Reply::Refused(error_text()),
        _ => Reply::Ambiguous(error_text()),
    }
}

/// Classifies a transport error: nothing was sent when the connection could not be made;
/// anything else (timeout, reset after sending) is unknown for a write.
pub fn classify_transport(request_is_read: bool, err: &reqwest::Error) -> Reply {
    match transport_failure(request_is_read, err) {
        TransportFailure::NotSent(text) => Reply::Refused(text),
        TransportFailure::MaybeApplied(text) => Reply::Ambiguous(text),
        TransportFailure::Invalid(text) => Reply::Rejected(text),
    }
}

/// Who answered, from the headers every Riptide answer carries (`Raft-Node`, `Raft-Term`,
/// `Raft-Index`, `Raft-Role`); `None` without a valid `Raft-Node`. A header that is missing or
/// not a number leaves its field out rather than refusing the answer.
pub fn served_from_headers(headers: &reqwest::header::HeaderMap) -> Option<Served> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let number = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
    Some(Served {
        node: number("raft-node")?,
        term: number("raft-term"),
        commit_index: number("raft-index"),
        role: text("raft-role").map(str::to_string),
    })
}

/// Turns the replies of successive attempts at one operation into its completion, or `None`
/// when the operation should be tried again (deadline permitting).
#[derive(Debug, Default)]
pub struct AttemptLog {
    /// The first ambiguous failure: once an attempt may have been applied, only a definite
    /// answer from a later attempt with the same `Request-Id` can close the operation.
    ambiguous: Option<String>,
    /// The last reason an attempt did not go through, for the final `fail`/`info` error.
    last_error: Option<String>,
}

impl AttemptLog {
    /// Folds one reply in; returns the completion when the reply settles the operation.
    pub fn settle(&mut self, request_is_read: bool, reply: &Reply) -> Option<Completion> {
        match reply {
            Reply::Done(v) => Some(Completion::Ok(v.clone())),
            Reply::PreconditionFailed => Some(Completion::Fail("precondition-failed".into())),
            Reply::Rejected(e) => Some(match &self.ambiguous {
                Some(first) if !request_is_read => Completion::Info(first.clone()),
                _ => Completion::Fail(e.clone()),
            }),
            Reply::Refused(e) => {
                self.last_error = Some(e.clone());
                None
            }
            Reply::Ambiguous(e) => {
                if !request_is_read {
                    self.ambiguous.get_or_insert_with(|| e.clone());
                }
                self.last_error = Some(e.clone());
                None
            }
            Reply::Redirect(_) => None,
        }
    }

    /// The completion when the deadline passed without a definite answer.
    pub fn give_up(&self, request_is_read: bool) -> Completion {
        let last = self
            .last_error
            .clone()
            .unwrap_or_else(|| "deadline passed".to_string());
        match &self.ambiguous {
            Some(first) if !request_is_read => Completion::Info(first.clone()),
            _ => Completion::Fail(last),
        }
    }
}

/// A client for the whole cluster, shared by every logical process.
#[derive(Clone)]
pub struct RiptideClient {
    http: reqwest::Client,
    /// Client base URLs of the nodes (`http://127.0.0.1:PORT`), in node-id order.
    nodes: Arc<Vec<String>>,
    /// The base URL of the node believed to lead, learned from redirects.
    leader: Arc<RwLock<Option<String>>>,
    /// Round-robin cursor used when no leader is known (and for reads under
    /// [`Route::Any`]).
    next: Arc<AtomicUsize>,
    /// Which nodes round-robin may pick; `None`: all of them.
    targets: Option<Arc<ClientTargets>>,
    timeouts: ClientTimeouts,
    /// Where reads are sent first.
    read_from: Route,
    /// Where writes are sent first.
    write_to: Route,
}

impl RiptideClient {
    /// A client of the nodes at `nodes` (client base URLs); at least one.
    pub fn new(nodes: Vec<String>, timeouts: ClientTimeouts) -> Result<RiptideClient, SystemError> {
        let http = cluster_http_client(&nodes, &timeouts)?;
        Ok(RiptideClient {
            http,
            nodes: Arc::new(nodes),
            leader: Arc::new(RwLock::new(None)),
            next: Arc::new(AtomicUsize::new(0)),
            targets: None,
            timeouts,
            read_from: Route::Leader,
            write_to: Route::Leader,
        })
    }

    /// Sends reads first to the nodes `read_from` says.
    pub fn with_read_from(mut self, read_from: Route) -> RiptideClient {
        self.read_from = read_from;
        self
    }

    /// Sends writes first to the nodes `write_to` says.
    pub fn with_write_to(mut self, write_to: Route) -> RiptideClient {
        self.write_to = write_to;
        self
    }

    /// Picks round-robin only among `targets` (all nodes when it has none).
    pub fn with_targets(mut self, targets: Option<Arc<ClientTargets>>) -> RiptideClient {
        self.targets = targets;
        self
    }

    /// The next node round-robin among the open targets; when none is open, the next node.
    fn round_robin(&self) -> String {
        let n = self.nodes.len();
        let is_open = |i: usize| self.targets.as_ref().is_none_or(|t| t.is_open(i));
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut i = first;
        for _ in 0..n {
            if is_open(i) {
                return self.nodes[i].clone();
            }
            i = self.next.fetch_add(1, Ordering::Relaxed) % n;
        }
        self.nodes[first].clone()
    }

    /// The leader as the clients currently believe it to be.
    pub fn leader_hint(&self) -> Option<String> {
        self.leader.read().map(|g| g.clone()).unwrap_or(None)
    }

    fn pick_target(&self) -> String {
        if let Some(l) = self.leader_hint() {
            return l;
        }
        self.round_robin()
    }

    fn forget_leader(&self, base: &str) {
        if let Ok(mut g) = self.leader.write() {
            if g.as_deref() == Some(base) {
                *g = None;
            }
        }
    }

    fn learn_leader(&self, base: String) {
        if let Ok(mut g) = self.leader.write() {
            *g = Some(base);
        }
    }

    /// Runs one operation until it is settled or `deadline` passes. `request_id` is
    /// `CLIENT:SEQ`, the same for every attempt (sent as `Request-Id`).
    pub async fn execute(&self, request: &Request, request_id: &str, deadline: Instant) -> Answer {
        let is_read = request.is_read();
        let mut log = AttemptLog::default();
        let route = if is_read {
            self.read_from
        } else {
            self.write_to
        };
        let mut target = match route {
            Route::Any => self.round_robin(),
            Route::Leader => self.pick_target(),
        };
        let mut redirects_in_a_row = 0u32;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Answer::unserved(log.give_up(is_read));
            }
            let budget = (deadline - now).min(self.timeouts.attempt);
            let (reply, served) = self.attempt(&target, request, request_id, budget).await;
            if let Some(completion) = log.settle(is_read, &reply) {
                return Answer { completion, served };
            }
            match reply {
                Reply::Redirect(location) => {
                    redirects_in_a_row += 1;
                    let base = base_url(&location).unwrap_or_else(|| target.clone());
                    self.learn_leader(base.clone());
                    target = base;
                    // Two nodes that each think the other leads: do not spin.
                    if redirects_in_a_row > 3 {
                        tokio::time::sleep(self.timeouts.backoff).await;
                    }
                }
                _ => {
                    redirects_in_a_row = 0;
                    self.forget_leader(&target);
                    tokio::time::sleep(self.timeouts.backoff).await;
                    target = self.pick_target();
                }
            }
        }
    }

    async fn attempt(
        &self,
        base: &str,
        request: &Request,
        request_id: &str,
        budget: Duration,
    ) -> (Reply, Option<Served>) {
        let key = request.key();
        let url = format!("{base}/kv/{}", encode_path_segment(key));
        let builder = match request {
            Request::Read { .. } => self.http.get(&url),
            Request::Write { value, .. } => self.http.put(&url).body(value.clone()),
            Request::Cas { from, to, .. } => self
                .http
                .put(&url)
                .query(&[("if-value", from.as_str())])
                .body(to.clone()),
            Request::Delete { .. } => self.http.delete(&url),
            Request::Append { suffix, .. } => {
                self.http.post(format!("{url}/append")).body(suffix.clone())
            }
        };
        let builder = if request.is_read() {
            builder
        } else {
            builder.header("Request-Id", request_id)
        };
        let is_read = request.is_read();
        let is_delete = matches!(request, Request::Delete { .. });
        let response = match builder.timeout(budget).send().await {
            Ok(r) => r,
            Err(e) => return (classify_transport(is_read, &e), None),
        };
        // A node without the headers (an older build) is still named by where it was asked.
        let served = served_from_headers(response.headers()).or_else(|| {
            let position = self.nodes.iter().position(|n| n == base)?;
            Some(Served {
                node: position as u64 + 1,
                ..Served::default()
            })
        });
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match response.bytes().await {
            Ok(body) => (
                classify_response(is_read, is_delete, status, location.as_deref(), &body),
                served,
            ),
            // The answer broke off: nothing it said settles the operation.
            Err(e) => (classify_transport(is_read, &e), None),
        }
    }
}

#[async_trait::async_trait]
impl Client for RiptideClient {
    async fn invoke(&self, request: &Request, request_id: &str, deadline: Instant) -> Answer {
        self.execute(request, request_id, deadline).await
    }
}

/// `http://host:port/kv/k?x` -> `http://host:port`.
pub fn base_url(location: &str) -> Option<String> {
    let rest = location
        .strip_prefix("http://")
        .map(|r| ("http://", r))
        .or_else(|| location.strip_prefix("https://").map(|r| ("https://", r)))?;
    let authority = rest.1.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return None;
    }
    Some(format!("{}{}", rest.0, authority))
}

/// Percent-encodes a key for use as one path segment.
pub fn encode_path_segment(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(status: u16, body: &str) -> Reply {
        classify_response(false, false, status, None, body.as_bytes())
    }

    #[test]
    fn success_and_absent_reads_are_done() {
        assert_eq!(
            classify_response(true, false, 200, None, b"p1-3"),
            Reply::Done(Some("p1-3".into()))
        );
        assert_eq!(
            classify_response(true, false, 404, None, b""),
            Reply::Done(None)
        );
        assert_eq!(write(200, "{}"), Reply::Done(None));
        assert_eq!(write(204, ""), Reply::Done(None));
        assert_eq!(
            classify_response(false, true, 404, None, b""),
            Reply::Done(None)
        );
    }

    #[test]
    fn precondition_failed_is_a_definite_failure_with_its_own_error() {
        assert_eq!(
            write(412, r#"{"error":"value differs"}"#),
            Reply::PreconditionFailed
        );
        let mut log = AttemptLog::default();
        assert_eq!(
            log.settle(false, &Reply::PreconditionFailed),
            Some(Completion::Fail("precondition-failed".into()))
        );
    }

    #[test]
    fn service_unavailable_that_proposed_nothing_is_a_retryable_refusal() {
        assert_eq!(
            write(503, r#"{"error":"no leader","proposed":false}"#),
            Reply::Refused("no leader".into())
        );
        // No body at all: a 503 still means "not proposed".
        assert!(matches!(write(503, ""), Reply::Refused(_)));
    }

    #[test]
    fn gateway_timeout_and_proposed_true_are_ambiguous_for_writes_only() {
        assert!(matches!(
            write(504, r#"{"error":"commit timeout","proposed":true}"#),
            Reply::Ambiguous(_)
        ));
        assert!(matches!(write(504, ""), Reply::Ambiguous(_)));
        assert!(matches!(
            write(503, r#"{"error":"x","proposed":true}"#),
            Reply::Ambiguous(_)
        ));
        assert!(matches!(
            classify_response(true, false, 504, None, b""),
            Reply::Refused(_)
        ));
        assert!(matches!(write(500, "boom"), Reply::Ambiguous(_)));
    }

    #[test]
    fn redirect_carries_the_location_and_bad_input_is_rejected() {
        assert_eq!(
            classify_response(false, false, 307, Some("http://127.0.0.1:9/kv/k"), b""),
            Reply::Redirect("http://127.0.0.1:9/kv/k".into())
        );
        assert!(matches!(write(307, ""), Reply::Refused(_)));
        assert_eq!(
            write(400, r#"{"error":"key too long"}"#),
            Reply::Rejected("key too long".into())
        );
    }

    #[test]
    fn an_ambiguous_write_stays_unknown_unless_a_retry_settles_it() {
        let mut log = AttemptLog::default();
        assert_eq!(log.settle(false, &Reply::Ambiguous("timeout".into())), None);
        assert_eq!(log.settle(false, &Reply::Refused("no leader".into())), None);
        // Deadline passes: the first ambiguity decides.
        assert_eq!(log.give_up(false), Completion::Info("timeout".into()));
        // A retry with the same Request-Id that succeeds settles it as ok.
        assert_eq!(
            log.settle(false, &Reply::Done(None)),
            Some(Completion::Ok(None))
        );
    }

    #[test]
    fn refusals_only_give_a_definite_fail() {
        let mut log = AttemptLog::default();
        assert_eq!(log.settle(false, &Reply::Refused("no leader".into())), None);
        assert_eq!(log.give_up(false), Completion::Fail("no leader".into()));
    }

    #[test]
    fn a_read_is_never_info() {
        let mut log = AttemptLog::default();
        assert_eq!(log.settle(true, &Reply::Ambiguous("timeout".into())), None);
        assert_eq!(log.give_up(true), Completion::Fail("timeout".into()));
    }

    #[test]
    fn rejection_after_an_ambiguous_attempt_is_still_unknown() {
        let mut log = AttemptLog::default();
        log.settle(false, &Reply::Ambiguous("timeout".into()));
        assert_eq!(
            log.settle(false, &Reply::Rejected("bad".into())),
            Some(Completion::Info("timeout".into()))
        );
    }

    #[test]
    fn base_url_keeps_scheme_and_authority() {
        assert_eq!(
            base_url("http://127.0.0.1:8080/kv/a?if-value=x").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(base_url("/kv/a"), None);
        assert_eq!(encode_path_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn round_robin_picks_only_open_targets_and_any_node_when_none_is_open() {
        let urls: Vec<String> = (1..=4).map(|i| format!("http://127.0.0.1:{i}")).collect();
        let targets = Arc::new(ClientTargets::from_open([true, false, true, false]));
        let client = RiptideClient::new(urls.clone(), ClientTimeouts::default())
            .unwrap()
            .with_targets(Some(targets.clone()));
        let picks = |n: usize| (0..n).map(|_| client.round_robin()).collect::<Vec<_>>();
        let first = picks(6);
        assert!(
            first.iter().all(|u| *u == urls[0] || *u == urls[2]),
            "{first:?}"
        );
        assert!(
            first.contains(&urls[0]) && first.contains(&urls[2]),
            "{first:?}"
        );

        targets.open(3);
        targets.close(0);
        let then = picks(6);
        assert!(
            then.iter().all(|u| *u == urls[2] || *u == urls[3]),
            "{then:?}"
        );
        assert!(then.contains(&urls[3]), "{then:?}");

        targets.close(2);
        targets.close(3);
        let fallback: std::collections::HashSet<String> = picks(8).into_iter().collect();
        assert_eq!(
            fallback.len(),
            4,
            "with nothing open, clients still try every node in turn"
        );
        let without = RiptideClient::new(urls.clone(), ClientTimeouts::default()).unwrap();
        let all: std::collections::HashSet<String> =
            (0..8).map(|_| without.round_robin()).collect();
        assert_eq!(all.len(), 4, "without targets every node takes its turn");
    }

    #[tokio::test]
    async fn connection_refused_is_a_refusal_and_the_deadline_gives_fail() {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = RiptideClient::new(
            vec![format!("http://127.0.0.1:{port}")],
            ClientTimeouts::default(),
        )
        .unwrap();
        let req = Request::Write {
            key: "k".into(),
            value: "p1-1".into(),
        };
        let done = client
            .execute(&req, "1:1", Instant::now() + Duration::from_millis(300))
            .await;
        assert!(matches!(done.completion, Completion::Fail(_)), "{done:?}");
        assert_eq!(done.served, None);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> reqwest::header::HeaderMap {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_raft_headers_name_the_node_its_term_index_and_role() {
        let served = served_from_headers(&headers(&[
            ("Raft-Node", "2"),
            ("Raft-Term", "3"),
            ("Raft-Index", "118"),
            ("Raft-Role", "follower"),
        ]));
        assert_eq!(
            served,
            Some(Served {
                node: 2,
                term: Some(3),
                commit_index: Some(118),
                role: Some("follower".into()),
            })
        );
        assert_eq!(served.unwrap().was_leader(), Some(false));
    }

    #[test]
    fn a_missing_or_garbled_raft_header_leaves_its_field_out() {
        assert_eq!(served_from_headers(&headers(&[("Raft-Term", "3")])), None);
        assert_eq!(served_from_headers(&headers(&[("Raft-Node", "x")])), None);
        assert_eq!(
            served_from_headers(&headers(&[
                ("Raft-Node", "1"),
                ("Raft-Term", "-4"),
                ("Raft-Role", "leader"),
            ])),
            Some(Served {
                node: 1,
                term: None,
                commit_index: None,
                role: Some("leader".into()),
            })
        );
    }
}
