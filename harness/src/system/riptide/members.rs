//! Riptide's membership API as the harness uses it: `GET /cluster/members`,
//! `POST /cluster/members` (add a learner, or promote one) and `DELETE /cluster/members/{id}`,
//! with what each status means (`200` committed, `307` to the leader, `409` retry, `400`
//! invalid). Redirects are followed by the HTTP client given (reqwest keeps the method and the
//! body on a `307`).

use serde::Deserialize;

use crate::system::{Member, MemberAnswer, MemberRequest};

/// `GET /cluster/members`, the fields the harness reads.
#[derive(Debug, Deserialize)]
struct MembersBody {
    #[serde(default)]
    members: Vec<MemberBody>,
}

#[derive(Debug, Deserialize)]
struct MemberBody {
    id: u64,
    role: String,
}

/// The configuration in an answer's body; `None` when the body is not one.
fn members_of(body: &str) -> Option<Vec<Member>> {
    let parsed: MembersBody = serde_json::from_str(body).ok()?;
    Some(
        parsed
            .members
            .into_iter()
            .map(|m| Member {
                id: m.id,
                voter: m.role.eq_ignore_ascii_case("voter"),
            })
            .collect(),
    )
}

/// The `error` of a JSON error body, else the body itself (shortened).
fn error_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// What an answer's status and body mean.
pub fn classify(status: u16, body: &str) -> MemberAnswer {
    match status {
        200..=299 => MemberAnswer::Done(members_of(body)),
        409 | 503 => MemberAnswer::Busy(format!("{status}: {}", error_of(body))),
        400 => MemberAnswer::Refused(error_of(body)),
        // Proposed, fate unknown: like a timeout, a refusal of the retry may mean it applied.
        504 => MemberAnswer::Unreachable(format!("timeout (504: {})", error_of(body))),
        // Another node would not have it either: give up at once.
        404 | 405 => MemberAnswer::Refused(format!(
            "{status}: the node has no membership API (a riptide-server from before it?)"
        )),
        _ => MemberAnswer::Unreachable(format!("{status}: {}", error_of(body))),
    }
}

/// Sends `request` to the node at `url`.
pub async fn request(url: &str, http: &reqwest::Client, request: &MemberRequest) -> MemberAnswer {
    let base = format!("{}/cluster/members", url.trim_end_matches('/'));
    let sent = match request {
        MemberRequest::List => http.get(&base),
        MemberRequest::AddLearner {
            id,
            peer_addr,
            client_url,
        } => http.post(&base).json(&serde_json::json!({
            "id": id,
            "peer_addr": peer_addr.to_string(),
            "client_url": client_url,
        })),
        MemberRequest::Promote { id } => http
            .post(&base)
            .json(&serde_json::json!({"id": id, "promote": true})),
        MemberRequest::Remove { id } => http.delete(format!("{base}/{id}")),
    }
    .send()
    .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            classify(status, &body)
        }
        Err(e) => MemberAnswer::Unreachable(if e.is_timeout() {
            "timeout".into()
        } else {
            e.to_string()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_mean_committed_retry_refused_or_elsewhere() {
        let body = r#"{"leader":1,"membership_index":7,"committed":true,"members":[
            {"id":1,"role":"voter","peer_addr":"a","client_url":"u","match_index":7},
            {"id":4,"role":"learner","peer_addr":"b","client_url":"v","match_index":3}]}"#;
        assert_eq!(
            classify(200, body),
            MemberAnswer::Done(Some(vec![
                Member { id: 1, voter: true },
                Member {
                    id: 4,
                    voter: false
                }
            ]))
        );
        assert_eq!(classify(200, ""), MemberAnswer::Done(None));
        assert_eq!(
            classify(409, r#"{"error":"another change is in flight"}"#),
            MemberAnswer::Busy("409: another change is in flight".into())
        );
        assert_eq!(
            classify(400, r#"{"error":"would lose quorum"}"#),
            MemberAnswer::Refused("would lose quorum".into())
        );
        assert!(matches!(classify(404, ""), MemberAnswer::Refused(_)));
        assert!(matches!(classify(500, "x"), MemberAnswer::Unreachable(_)));
    }
}
