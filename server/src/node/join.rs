//! Joining a running cluster: what `riptide-server --join URL` does once the node runs.
//!
//! Why it lives in the node and not in the binary: the answers of the cluster feed the
//! running node's address book (the initial members' contexts are empty, so a joining node
//! learns how to reach them from the members list it is given), and the node must be serving
//! its peer port while it joins, since the leader starts replicating to it as soon as it is a
//! learner.
//!
//! The steps, each retried with backoff for at most `timeout` while the answer says "retry"
//! (`409`: a change in flight, the leader not ready, the learner still behind; `503`/`504`,
//! connection errors), and failing at once on a refusal (`400`):
//!
//! 1. `POST URL/cluster/members {"id", "peer_addr", "client_url"}`: add this node as a
//!    learner (307s to the leader are followed). Skipped when this node's data dir already
//!    holds a configuration naming it (a restart); `already_member` counts as done (an
//!    earlier attempt whose answer was lost).
//! 2. Learn the members' addresses from the answer (or from `GET URL/cluster/members`).
//! 3. Unless `--join-as-learner`: `POST URL/cluster/members {"id", "promote": true}`, retried
//!    while the leader says the learner is behind, until this node is a voter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use super::members::{AddressBook, MemberContext};
use super::NodeStatus;
use crate::raft::{MemberRole, NodeId};

/// What `--join` asks for.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Client URL of any member of the cluster to join.
    pub url: String,
    /// Stay a learner (`--join-as-learner`): never ask to be promoted.
    pub as_learner: bool,
    /// How long each step may be retried.
    pub timeout: Duration,
}

/// Why joining failed (the node then stops).
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot build an HTTP client: {0}")]
    Client(String),
    #[error("the cluster refused to {what}: HTTP {status}: {body}")]
    Refused {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("could not {what} through {url} within {timeout:?}; last answer: {last}")]
    TimedOut {
        what: &'static str,
        url: String,
        timeout: Duration,
        last: String,
    },
}

/// What one attempt at a step came to.
enum Attempt {
    Done(Value),
    Retry(String),
    Refused { status: u16, body: Value },
}

/// First and largest wait between attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Joins the cluster at `options.url` as node `id` (see the module docs).
pub async fn join(
    id: NodeId,
    options: JoinOptions,
    book: Arc<AddressBook>,
    status: watch::Receiver<NodeStatus>,
) -> Result<(), JoinError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| JoinError::Client(e.to_string()))?;
    let joiner = Joiner {
        id,
        options,
        client,
        book,
        status,
    };
    joiner.run().await
}

struct Joiner {
    id: NodeId,
    options: JoinOptions,
    client: reqwest::Client,
    book: Arc<AddressBook>,
    status: watch::Receiver<NodeStatus>,
}

impl Joiner {
    fn local_role(&self) -> Option<MemberRole> {
        self.status.borrow().raft.membership.role(self.id)
    }

    fn members_url(&self) -> String {
        format!("{}/cluster/members", self.options.url.trim_end_matches('/'))
    }

    async fn run(&self) -> Result<(), JoinError> {
        match self.local_role() {
            None => {
                let own: &MemberContext = self.book.own();
                let body = json!({
                    "id": self.id,
                    "peer_addr": own.peer_addr,
                    "client_url": own.client_url,
                });
                let answer = self
                    .retry("add this node as a learner", Some(&body), |status, body| {
                        reason(body) == "already_member" && status == 400
                    })
                    .await?;
                tracing::info!(url = %self.options.url, "joined the cluster as a learner");
                if !self.learn(&answer) {
                    self.learn_from_members_list().await;
                }
            }
            Some(role) => {
                tracing::info!(
                    ?role,
                    "this node's data dir already names it a member: not added again"
                );
                self.learn_from_members_list().await;
            }
        }
        if self.options.as_learner || self.local_role() == Some(MemberRole::Voter) {
            return Ok(());
        }
        let body = json!({ "id": self.id, "promote": true });
        self.retry("promote this node to voter", Some(&body), |status, body| {
            // Already a voter: an earlier attempt's answer was lost.
            status == 400 && reason(body) == "not_learner"
        })
        .await?;
        tracing::info!("promoted to voter");
        Ok(())
    }

    /// Learns every member's addresses from a members list; false when there is none.
    fn learn(&self, answer: &Value) -> bool {
        let Some(members) = answer["members"].as_array() else {
            return false;
        };
        for member in members {
            let Some(id) = member["id"].as_u64() else {
                continue;
            };
            let context = MemberContext {
                peer_addr: member["peer_addr"].as_str().map(str::to_string),
                client_url: member["client_url"].as_str().map(str::to_string),
            };
            self.book.learn(id, context);
        }
        true
    }

    /// `GET /cluster/members` for the addresses; a failure is only a warning (the command
    /// line and the configuration's contexts may be enough).
    async fn learn_from_members_list(&self) {
        match self.retry("list the members", None, |_, _| false).await {
            Ok(answer) => {
                self.learn(&answer);
            }
            Err(e) => tracing::warn!(error = %e, "the members' addresses were not learned"),
        }
    }

    /// Runs one step until it is done, refused, or out of time. `also_done` says which
    /// refusals mean the step was already done.
    async fn retry(
        &self,
        what: &'static str,
        body: Option<&Value>,
        also_done: impl Fn(u16, &Value) -> bool,
    ) -> Result<Value, JoinError> {
        let deadline = Instant::now() + self.options.timeout;
        let mut backoff = MIN_BACKOFF;
        loop {
            let last = match self.attempt(body).await {
                Attempt::Done(answer) => return Ok(answer),
                Attempt::Refused { status, body } if also_done(status, &body) => {
                    return Ok(Value::Null)
                }
                Attempt::Refused { status, body } => {
                    return Err(JoinError::Refused {
                        what,
                        status,
                        body: body.to_string(),
                    })
                }
                Attempt::Retry(last) => last,
            };
            if Instant::now() + backoff > deadline {
                return Err(JoinError::TimedOut {
                    what,
                    url: self.options.url.clone(),
                    timeout: self.options.timeout,
                    last,
                });
            }
            tracing::info!(what, %last, "joining: retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(&self, body: Option<&Value>) -> Attempt {
        let request = match body {
            Some(body) => self.client.post(self.members_url()).json(body),
            None => self.client.get(self.members_url()),
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Attempt::Retry(format!("request failed: {e}")),
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        match status {
            200 => Attempt::Done(answer),
            400..=499 if status != 409 && status != 408 => Attempt::Refused {
                status,
                body: answer,
            },
            _ => Attempt::Retry(format!("HTTP {status}: {answer}")),
        }
    }
}

/// The machine-readable reason of a refusal (`"reason"` in the answer).
fn reason(body: &Value) -> &str {
    body["reason"].as_str().unwrap_or_default()
}
