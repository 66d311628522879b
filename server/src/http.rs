//! The HTTP API of a node (axum), as the README's API table documents it.
//!
//! | request                          | answer                                               |
//! |----------------------------------|------------------------------------------------------|
//! | `GET /kv/{key}`                  | 200 raw value, 404 JSON when absent (ReadIndex read) |
//! | `GET /kv/{key}?stale`            | the same from local state, no linearizability        |
//! | `PUT /kv/{key}` body = value     | 200 JSON                                             |
//! | `PUT /kv/{key}?if-value=OLD`     | 200 JSON, or 412 JSON with the current value         |
//! | `DELETE /kv/{key}`               | 200 JSON (`existed` says whether there was a value)  |
//! | `POST /kv/{key}/append` body     | 200 JSON with the new length                         |
//! | `GET /status`, `GET /metrics`    | JSON view of the node, Prometheus text               |
//! | `GET /cluster/members`           | this node's view of the configuration                |
//! | `POST /cluster/members` JSON     | add a learner, or promote one (`"promote": true`)    |
//! | `DELETE /cluster/members/{id}`   | remove a voter or a learner                          |
//!
//! Status codes the harness relies on: `307` + `Location` to the leader from a follower (same
//! path and query, so `curl -L` keeps method and body); `503` + `Retry-After` with
//! `"proposed": false` when no leader is known, sent only when nothing was proposed; `504`
//! with `"proposed": true` when a write was proposed but its outcome is unknown; `4xx` JSON for
//! bad input, which never reaches the log. A `Request-Id: CLIENT:SEQ` header makes a write
//! exactly-once (see [`crate::kv`]).
//!
//! A membership change answers `200` with the new members list once its entry committed on
//! the leader, `307`/`503` like a write, `409` when it may succeed later (`"retryable":
//! true`: another change in flight, a leader that has not committed in its term yet, a
//! learner still behind), `400` when it never will, and `504` when its outcome is unknown.
//! Refusals carry a machine-readable `"reason"` (`in_flight`, `already_member`, ...).
//!
//! Every answer, whatever its status, carries the node's view when it answered: `Raft-Node`
//! (its id), `Raft-Term`, `Raft-Index` (its commit index) and `Raft-Role` (`leader`,
//! `follower`, `candidate`, `precandidate`, as in `/status`). A client that followed redirects
//! learns which node served it and whether that node thought it led: what a history needs so
//! that a stale read from a follower and one from a deposed leader can be told apart.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::oneshot;

use crate::kv::{Command, Op, OpResult, RequestId};
use crate::node::members::MemberContext;
use crate::node::metrics::Metrics;
use crate::node::raft_loop::{ClientRequest, ConfChangeOutcome, ProposeOutcome, ReadOutcome};
use crate::node::NodeHandle;
use crate::raft::{ConfChange, ConfChangeError, MemberRole, NodeId, Role, Status};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest value (or append suffix, or cas expected value), in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Seconds a client should wait after a 503.
const RETRY_AFTER_SECS: &str = "1";

/// The router of a node's client API.
pub fn router(node: NodeHandle) -> Router {
    Router::new()
        .route("/kv/{key}", get(get_kv).put(put_kv).delete(delete_kv))
        .route("/kv/{key}/append", axum::routing::post(append_kv))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/cluster/members", get(list_members).post(post_member))
        .route(
            "/cluster/members/{id}",
            axum::routing::delete(delete_member),
        )
        .fallback(not_found)
        // Read bodies up to 4x the value limit, so a moderately oversized one is read whole and
        // gets our JSON 413 on a healthy connection. Beyond that axum stops reading and answers
        // 413 itself; the connection then closes and the client may see a reset instead.
        .layer(DefaultBodyLimit::max(4 * MAX_VALUE_BYTES))
        .layer(axum::middleware::map_response_with_state(
            node.clone(),
            with_raft_headers,
        ))
        .with_state(node)
}

/// Adds the node's id, term, commit index and role to an answer (see the module docs).
async fn with_raft_headers(State(node): State<NodeHandle>, mut response: Response) -> Response {
    let (term, commit, role) = {
        let status = node.status.borrow();
        let raft = &status.raft;
        (raft.term, raft.commit_index, raft.role)
    };
    let role = match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "precandidate",
    };
    let headers = response.headers_mut();
    headers.insert("raft-node", HeaderValue::from(node.id));
    headers.insert("raft-term", HeaderValue::from(term));
    headers.insert("raft-index", HeaderValue::from(commit));
    headers.insert("raft-role", HeaderValue::from_static(role));
    response
}

/// A refusal of bad input (or a plain error), answered as `{"error": ...}` JSON.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
    .into_response()
}

/// Checks the key from the path.
fn key_from(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = path.map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad key: {e}")))?;
    if key.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "empty key"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("key is {} bytes, the limit is {MAX_KEY_BYTES}", key.len()),
        ));
    }
    Ok(key)
}

/// Checks a request body as a value: UTF-8 and at most [`MAX_VALUE_BYTES`].
fn value_from(body: Result<Bytes, BytesRejection>) -> Result<String, ApiError> {
    let body = body.map_err(|e| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("cannot read the body (the value limit is {MAX_VALUE_BYTES} bytes): {e}"),
        )
    })?;
    if body.len() > MAX_VALUE_BYTES {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "value is {} bytes, the limit is {MAX_VALUE_BYTES}",
                body.len()
            ),
        ));
    }
    String::from_utf8(body.to_vec())
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("value is not UTF-8: {e}")))
}

type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Parses the query string, allowing only the parameters in `allowed`, each at most once.
fn query_from(query: QueryPairs, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let Query(pairs) =
        query.map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !allowed.contains(&name.as_str()) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("unknown query parameter {name:?} (allowed: {allowed:?})"),
            ));
        }
        if pairs[..i].iter().any(|(other, _)| other == name) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("query parameter {name:?} given twice"),
            ));
        }
    }
    Ok(pairs)
}

/// Reads the optional `Request-Id` header.
fn request_id_from(headers: &HeaderMap) -> Result<Option<RequestId>, ApiError> {
    let Some(value) = headers.get("request-id") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| error(StatusCode::BAD_REQUEST, "Request-Id is not ASCII"))?;
    RequestId::parse(text)
        .map(Some)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))
}

/// `503`: no leader known, nothing proposed; the client may retry anywhere.
fn unavailable(node: &NodeHandle, why: &str) -> Response {
    Metrics::inc(&node.metrics.unavailable_total);
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": why, "proposed": false })),
    )
        .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    response
}

/// `307` to the leader's client URL with the same path and query, or `503` when the leader
/// is unknown (or has no known URL).
fn redirect_to_leader(node: &NodeHandle, leader: Option<NodeId>, uri: &Uri) -> Response {
    let Some(leader) = leader.filter(|&l| l != node.id) else {
        return unavailable(node, "no known leader");
    };
    let Some(base) = node.addresses.client_url(leader) else {
        return unavailable(
            node,
            &format!("leader is node {leader} but its client URL is unknown"),
        );
    };
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("{}{}", base.trim_end_matches('/'), path_and_query);
    let Ok(location_header) = HeaderValue::from_str(&location) else {
        return unavailable(node, "leader URL is not a valid header");
    };
    Metrics::inc(&node.metrics.redirects_total);
    let mut response = (
        StatusCode::TEMPORARY_REDIRECT,
        Json(json!({ "error": "not the leader", "leader": leader, "location": location })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, location_header);
    response
}

/// `504`: the write was proposed and its outcome is unknown.
fn unknown_outcome(why: &str) -> Response {
    (
        StatusCode::GATEWAY_TIMEOUT,
        Json(json!({ "error": why, "proposed": true })),
    )
        .into_response()
}

/// Hands a request to the Raft loop, waiting for room in its queue no later than `deadline`
/// (the request's whole `--request-timeout-ms` budget); `503` when it never got in: nothing
/// was proposed.
async fn enqueue(
    node: &NodeHandle,
    request: ClientRequest,
    deadline: tokio::time::Instant,
) -> Result<(), Response> {
    match tokio::time::timeout_at(deadline, node.to_raft.send(request)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(unavailable(node, "node is shutting down")),
        Err(_) => Err(unavailable(
            node,
            "the node's request queue stayed full for the whole request timeout; nothing was \
             proposed",
        )),
    }
}

/// Hands a write to the Raft loop and turns its outcome into a response.
async fn propose(node: &NodeHandle, uri: &Uri, request_id: Option<RequestId>, op: Op) -> Response {
    let deadline = tokio::time::Instant::now() + node.request_timeout;
    let (reply, outcome) = oneshot::channel();
    let command = Command { request_id, op };
    if let Err(response) = enqueue(node, ClientRequest::Propose { command, reply }, deadline).await
    {
        return response;
    }
    let outcome = match tokio::time::timeout_at(deadline, outcome).await {
        Err(_) => return unknown_outcome("not committed before the request timeout"),
        // The loop dropped the request (shutdown); it may have been proposed.
        Ok(Err(_)) => return unknown_outcome("node stopped while the write was pending"),
        Ok(Ok(outcome)) => outcome,
    };
    let applied = match outcome {
        ProposeOutcome::NotLeader { leader } => return redirect_to_leader(node, leader, uri),
        ProposeOutcome::Unknown { reason } => return unknown_outcome(reason),
        ProposeOutcome::Applied(applied) => applied,
    };
    let index = applied.index;
    let duplicate = applied.duplicate;
    match applied.result {
        OpResult::Written => ok_json(json!({ "ok": true, "index": index, "duplicate": duplicate })),
        OpResult::Deleted { existed } => ok_json(
            json!({ "ok": true, "existed": existed, "index": index, "duplicate": duplicate }),
        ),
        OpResult::Appended { length } => {
            ok_json(json!({ "ok": true, "length": length, "index": index, "duplicate": duplicate }))
        }
        OpResult::PreconditionFailed { current } => (
            StatusCode::PRECONDITION_FAILED,
            Json(json!({
                "error": "precondition failed: the current value differs",
                "current": current,
                "index": index,
                "duplicate": duplicate,
            })),
        )
            .into_response(),
        OpResult::PreconditionFailedEarlier => (
            StatusCode::PRECONDITION_FAILED,
            Json(json!({
                "error": "precondition failed when first applied (the value it saw is not kept)",
                "index": index,
                "duplicate": duplicate,
            })),
        )
            .into_response(),
        OpResult::SessionExpired => error(
            StatusCode::CONFLICT,
            "Request-Id is older than what its client's session remembers (the window moved on \
             or the session was evicted): outcome unknown, it may have been applied before; \
             not applied now",
        )
        .into_response(),
    }
}

fn ok_json(body: serde_json::Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

async fn get_kv(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
    query: QueryPairs,
    uri: Uri,
) -> Response {
    let key = match key_from(path) {
        Ok(key) => key,
        Err(e) => return e.into_response(),
    };
    let query = match query_from(query, &["stale"]) {
        Ok(query) => query,
        Err(e) => return e.into_response(),
    };
    let stale = match query.first() {
        None => false,
        Some((_, v)) if v.is_empty() || v == "true" || v == "1" => true,
        Some((_, v)) if v == "false" || v == "0" => false,
        Some((_, v)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("stale must be empty, true or false, got {v:?}"),
            )
            .into_response()
        }
    };
    let deadline = tokio::time::Instant::now() + node.request_timeout;
    let value = if stale {
        let (reply, value) = oneshot::channel();
        if let Err(response) =
            enqueue(&node, ClientRequest::StaleRead { key, reply }, deadline).await
        {
            return response;
        }
        match tokio::time::timeout_at(deadline, value).await {
            Ok(Ok(value)) => value,
            Ok(Err(_)) => return unavailable(&node, "node is shutting down"),
            Err(_) => return unavailable(&node, "no answer before the request timeout"),
        }
    } else {
        let (reply, outcome) = oneshot::channel();
        if let Err(response) = enqueue(&node, ClientRequest::Read { key, reply }, deadline).await {
            return response;
        }
        let outcome = match tokio::time::timeout_at(deadline, outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => return unavailable(&node, "node is shutting down"),
            Err(_) => {
                Metrics::inc(&node.metrics.reads_failed_total);
                return (
                    StatusCode::GATEWAY_TIMEOUT,
                    Json(json!({ "error": "read not confirmed before the request timeout", "proposed": false })),
                )
                    .into_response();
            }
        };
        match outcome {
            ReadOutcome::Value(value) => value,
            ReadOutcome::NotLeader { leader } => return redirect_to_leader(&node, leader, &uri),
            ReadOutcome::Failed { reason } => return unavailable(&node, reason),
        }
    };
    match value {
        Some(value) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            value,
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "key not found").into_response(),
    }
}

async fn put_kv(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
    query: QueryPairs,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed: Result<_, ApiError> = (|| {
        let key = key_from(path)?;
        let query = query_from(query, &["if-value"])?;
        let request_id = request_id_from(&headers)?;
        let value = value_from(body)?;
        let op = match query.into_iter().next() {
            Some((_, expected)) => {
                if expected.len() > MAX_VALUE_BYTES {
                    return Err(error(StatusCode::BAD_REQUEST, "if-value is too long"));
                }
                Op::Cas {
                    key,
                    expected,
                    new: value,
                }
            }
            None => Op::Write { key, value },
        };
        Ok((request_id, op))
    })();
    match parsed {
        Ok((request_id, op)) => propose(&node, &uri, request_id, op).await,
        Err(e) => e.into_response(),
    }
}

async fn delete_kv(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
    query: QueryPairs,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let parsed: Result<_, ApiError> = (|| {
        let key = key_from(path)?;
        query_from(query, &[])?;
        let request_id = request_id_from(&headers)?;
        Ok((request_id, Op::Delete { key }))
    })();
    match parsed {
        Ok((request_id, op)) => propose(&node, &uri, request_id, op).await,
        Err(e) => e.into_response(),
    }
}

async fn append_kv(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
    query: QueryPairs,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed: Result<_, ApiError> = (|| {
        let key = key_from(path)?;
        query_from(query, &[])?;
        let request_id = request_id_from(&headers)?;
        let suffix = value_from(body)?;
        Ok((request_id, Op::Append { key, suffix }))
    })();
    match parsed {
        Ok((request_id, op)) => propose(&node, &uri, request_id, op).await,
        Err(e) => e.into_response(),
    }
}

async fn status(State(node): State<NodeHandle>) -> Response {
    let status = node.status.borrow().clone();
    let raft = &status.raft;
    let leader_url = raft.leader.and_then(|l| node.addresses.client_url(l));
    let peers: Vec<_> = raft
        .membership
        .members
        .keys()
        .filter(|&&id| id != node.id)
        .map(|&id| json!({ "id": id, "client_url": node.addresses.client_url(id) }))
        .collect();
    let members: serde_json::Map<String, serde_json::Value> = raft
        .membership
        .members
        .iter()
        .map(|(id, member)| (id.to_string(), json!(role_name(member.role))))
        .collect();
    ok_json(json!({
        "id": node.id,
        "role": raft.role,
        "term": raft.term,
        "leader": raft.leader,
        "leader_url": leader_url,
        "commit_index": raft.commit_index,
        "applied_index": status.applied_index,
        "applied_digest": status.applied_digest.map(|d| format!("{d:016x}")),
        "last_index": raft.last_index,
        "snapshot_index": raft.snapshot_index,
        "peers": peers,
        "members": members,
        "membership_index": raft.membership_index,
        "membership_committed": raft.membership_committed,
    }))
}

fn role_name(role: MemberRole) -> &'static str {
    match role {
        MemberRole::Voter => "voter",
        MemberRole::Learner => "learner",
    }
}

/// The members list of `GET /cluster/members` and of a change's answer, from a node's view.
fn members_json(node: &NodeHandle, raft: &Status) -> serde_json::Value {
    let leading = raft.role == Role::Leader;
    let members: Vec<_> = raft
        .membership
        .members
        .iter()
        .map(|(&id, member)| {
            let match_index = match (leading, id == node.id) {
                (false, _) => None,
                (true, true) => Some(raft.last_index),
                (true, false) => Some(raft.match_index.get(&id).copied().unwrap_or(0)),
            };
            json!({
                "id": id,
                "role": role_name(member.role),
                "peer_addr": node.addresses.peer_addr(id),
                "client_url": node.addresses.client_url(id),
                "match_index": match_index,
            })
        })
        .collect();
    json!({
        "leader": raft.leader,
        "membership_index": raft.membership_index,
        "committed": raft.membership_committed,
        "members": members,
    })
}

async fn list_members(State(node): State<NodeHandle>) -> Response {
    let raft = node.status.borrow().raft.clone();
    ok_json(members_json(&node, &raft))
}

/// The body of `POST /cluster/members`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberRequest {
    id: NodeId,
    #[serde(default)]
    peer_addr: Option<String>,
    #[serde(default)]
    client_url: Option<String>,
    #[serde(default)]
    promote: bool,
}

/// Checks a `POST /cluster/members` body and turns it into a change.
fn member_change(body: Result<Bytes, BytesRejection>) -> Result<ConfChange, ApiError> {
    let body = body.map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )
    })?;
    let request: MemberRequest = serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!(
                "bad member JSON: {e} (expected {{\"id\":N,\"peer_addr\":\"HOST:PORT\",\
                 \"client_url\":\"http://HOST:PORT\"}} or {{\"id\":N,\"promote\":true}})"
            ),
        )
    })?;
    if request.promote {
        if request.peer_addr.is_some() || request.client_url.is_some() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "a promotion takes only the id: the learner's addresses are already known",
            ));
        }
        return Ok(ConfChange::Promote { id: request.id });
    }
    let Some(peer_addr) = request.peer_addr.filter(|a| !a.is_empty()) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "a new member needs its peer_addr (HOST:PORT), where the others send it Raft messages",
        ));
    };
    if let Some(url) = &request.client_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("client_url must be an http:// URL, got {url:?}"),
            ));
        }
    }
    let context = MemberContext {
        peer_addr: Some(peer_addr),
        client_url: request.client_url,
    };
    Ok(ConfChange::AddLearner {
        id: request.id,
        context: context.encode(),
    })
}

async fn post_member(
    State(node): State<NodeHandle>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match member_change(body) {
        Ok(change) => change_members(&node, &uri, change).await,
        Err(e) => e.into_response(),
    }
}

async fn delete_member(
    State(node): State<NodeHandle>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    let id = match path.map(|Path(id)| id.parse::<NodeId>()) {
        Ok(Ok(id)) => id,
        Ok(Err(_)) | Err(_) => {
            return error(StatusCode::BAD_REQUEST, "the member id must be a number").into_response()
        }
    };
    change_members(&node, &uri, ConfChange::Remove { id }).await
}

/// Hands a membership change to the Raft loop and turns its outcome into a response.
async fn change_members(node: &NodeHandle, uri: &Uri, change: ConfChange) -> Response {
    let deadline = tokio::time::Instant::now() + node.request_timeout;
    let (reply, outcome) = oneshot::channel();
    if let Err(response) =
        enqueue(node, ClientRequest::ConfChange { change, reply }, deadline).await
    {
        return response;
    }
    let outcome = match tokio::time::timeout_at(deadline, outcome).await {
        Err(_) => return unknown_outcome("the change did not commit before the request timeout"),
        Ok(Err(_)) => return unknown_outcome("node stopped while the change was pending"),
        Ok(Ok(outcome)) => outcome,
    };
    match outcome {
        ConfChangeOutcome::Committed { status, .. } => ok_json(members_json(node, &status)),
        ConfChangeOutcome::NotLeader { leader } => redirect_to_leader(node, leader, uri),
        ConfChangeOutcome::Unknown { reason } => unknown_outcome(reason),
        ConfChangeOutcome::Refused(refused) => change_refused(&refused),
    }
}

/// `409` for a change that may succeed if retried later, `400` for one that never will.
fn change_refused(refused: &ConfChangeError) -> Response {
    let (status, reason) = match refused {
        ConfChangeError::InFlight { .. } => (StatusCode::CONFLICT, "in_flight"),
        ConfChangeError::LeaderNotReady => (StatusCode::CONFLICT, "leader_not_ready"),
        ConfChangeError::LearnerBehind { .. } => (StatusCode::CONFLICT, "learner_behind"),
        // Answered as a redirect before; here only if the core says so in another way.
        ConfChangeError::NotLeader { .. } => (StatusCode::SERVICE_UNAVAILABLE, "not_leader"),
        ConfChangeError::AlreadyMember { .. } => (StatusCode::BAD_REQUEST, "already_member"),
        ConfChangeError::NotMember { .. } => (StatusCode::BAD_REQUEST, "not_member"),
        ConfChangeError::NotLearner { .. } => (StatusCode::BAD_REQUEST, "not_learner"),
        ConfChangeError::InvalidId => (StatusCode::BAD_REQUEST, "invalid_id"),
        ConfChangeError::LastVoter { .. } => (StatusCode::BAD_REQUEST, "last_voter"),
        ConfChangeError::WouldLoseQuorum { .. } => (StatusCode::BAD_REQUEST, "would_lose_quorum"),
    };
    let retryable = status != StatusCode::BAD_REQUEST;
    (
        status,
        Json(json!({
            "error": refused.to_string(),
            "reason": reason,
            "retryable": retryable,
            "proposed": false,
        })),
    )
        .into_response()
}

async fn metrics(State(node): State<NodeHandle>) -> Response {
    let status = node.status.borrow().clone();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        node.metrics.render(&status),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeStatus;
    use std::time::Duration;

    /// The ends a test keeps so the node's channels stay open.
    type Kept = (
        tokio::sync::mpsc::Receiver<ClientRequest>,
        tokio::sync::watch::Sender<NodeStatus>,
    );

    /// A handle whose Raft loop never takes anything from its queue of one, already full.
    fn handle_with_a_full_queue(request_timeout: Duration) -> (NodeHandle, Kept) {
        let (to_raft, queue) = tokio::sync::mpsc::channel(1);
        let (reply, _) = oneshot::channel();
        to_raft
            .try_send(ClientRequest::StaleRead {
                key: "k".into(),
                reply,
            })
            .unwrap();
        let (status_tx, status) = tokio::sync::watch::channel(NodeStatus::fresh_leader());
        let node = NodeHandle {
            id: 1,
            to_raft,
            status,
            metrics: Default::default(),
            addresses: std::sync::Arc::new(crate::node::members::AddressBook::new(
                1,
                Default::default(),
                Default::default(),
                Default::default(),
            )),
            request_timeout,
        };
        (node, (queue, status_tx))
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_cannot_enter_a_full_queue_gets_503_at_its_timeout() {
        let timeout = Duration::from_millis(3000);
        let (node, _kept) = handle_with_a_full_queue(timeout);
        let started = tokio::time::Instant::now();
        let op = Op::Write {
            key: "k".into(),
            value: "v".into(),
        };
        let answer = tokio::time::timeout(
            3 * timeout,
            propose(&node, &Uri::from_static("/kv/k"), None, op),
        )
        .await
        .expect("the write waited for the queue past its request timeout");
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() >= timeout && started.elapsed() < 2 * timeout);
    }
}
