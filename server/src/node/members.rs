//! The node's address book: how to reach every member, as the configuration changes.
//!
//! Why it exists: with membership changes the set of peers is no longer fixed at start, so the
//! transport and the HTTP redirects look addresses up here instead of in the flags alone. An
//! address comes from one of three places, in this order of precedence:
//!
//! 1. the command line (`--peer ID=ADDR`, `--peer-client-url ID=URL`): the harness routes each
//!    link through its own proxy this way, also for spare ids that are not members yet;
//! 2. the member's context in the configuration ([`crate::raft::Member::context`], a small
//!    JSON [`MemberContext`]): a member added at run time brings its addresses with it, so
//!    every node learns them from the log;
//! 3. what a joining node was told by the cluster it joined (`GET`/`POST /cluster/members`
//!    answers): the initial members' contexts are empty, and a joining node must be able to
//!    answer a leader it only knows from its messages.

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::raft::{Membership, NodeId};

/// How to reach a member: what a member added at run time stores in its configuration entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberContext {
    /// Where peers send Raft messages to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_addr: Option<String>,
    /// Its client URL, where followers redirect clients when it leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_url: Option<String>,
}

impl MemberContext {
    /// The bytes stored in [`crate::raft::Member::context`].
    pub fn encode(&self) -> Vec<u8> {
        // Serialising two optional strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The context of a member; empty (the initial members') or unreadable bytes give no
    /// addresses, so the command line must provide them.
    pub fn decode(bytes: &[u8]) -> MemberContext {
        if bytes.is_empty() {
            return MemberContext::default();
        }
        serde_json::from_slice(bytes).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "unreadable member context; ignored");
            MemberContext::default()
        })
    }
}

/// Every address this node knows, by member id (see the module docs for the precedence).
#[derive(Debug)]
pub struct AddressBook {
    self_id: NodeId,
    /// This node's own addresses as others should use them (`--advertise-peer`, its client URL).
    own: MemberContext,
    /// `--peer`: first choice, never overridden.
    cli_peers: BTreeMap<NodeId, String>,
    /// `--peer-client-url`: first choice, never overridden.
    cli_client_urls: BTreeMap<NodeId, String>,
    learned: RwLock<Learned>,
}

/// The addresses that change while the node runs.
#[derive(Debug, Default)]
struct Learned {
    /// From the contexts of the configuration in force (replaced at each change).
    from_config: BTreeMap<NodeId, MemberContext>,
    /// From the answers of the cluster this node joined (only ever added to).
    from_join: BTreeMap<NodeId, MemberContext>,
}

impl AddressBook {
    pub fn new(
        self_id: NodeId,
        own: MemberContext,
        cli_peers: BTreeMap<NodeId, String>,
        cli_client_urls: BTreeMap<NodeId, String>,
    ) -> AddressBook {
        AddressBook {
            self_id,
            own,
            cli_peers,
            cli_client_urls,
            learned: RwLock::new(Learned::default()),
        }
    }

    /// This node's own addresses.
    pub fn own(&self) -> &MemberContext {
        &self.own
    }

    /// The ids given with `--peer` (members or spares).
    pub fn cli_peer_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.cli_peers.keys().copied()
    }

    /// Where to send Raft messages to `id`, if known.
    pub fn peer_addr(&self, id: NodeId) -> Option<String> {
        if id == self.self_id {
            return self.own.peer_addr.clone();
        }
        if let Some(addr) = self.cli_peers.get(&id) {
            return Some(addr.clone());
        }
        self.learned(id, |c| c.peer_addr.clone())
    }

    /// `id`'s client URL, if known.
    pub fn client_url(&self, id: NodeId) -> Option<String> {
        if id == self.self_id {
            return self.own.client_url.clone();
        }
        if let Some(url) = self.cli_client_urls.get(&id) {
            return Some(url.clone());
        }
        self.learned(id, |c| c.client_url.clone())
    }

    /// The configuration's contexts are now these (called at every change of configuration).
    pub fn note_membership(&self, membership: &Membership) {
        let contexts = membership
            .members
            .iter()
            .map(|(&id, member)| (id, MemberContext::decode(&member.context)))
            .filter(|(_, context)| *context != MemberContext::default())
            .collect();
        self.write().from_config = contexts;
    }

    /// Addresses of `id` the joined cluster told us about; fills in only what is missing.
    pub fn learn(&self, id: NodeId, context: MemberContext) {
        if id == self.self_id {
            return;
        }
        let mut learned = self.write();
        let known = learned.from_join.entry(id).or_default();
        if known.peer_addr.is_none() {
            known.peer_addr = context.peer_addr;
        }
        if known.client_url.is_none() {
            known.client_url = context.client_url;
        }
    }

    fn learned(
        &self,
        id: NodeId,
        field: impl Fn(&MemberContext) -> Option<String>,
    ) -> Option<String> {
        let learned = self.learned.read().unwrap_or_else(|e| e.into_inner());
        learned
            .from_config
            .get(&id)
            .and_then(&field)
            .or_else(|| learned.from_join.get(&id).and_then(&field))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Learned> {
        self.learned.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{ConfChange, Membership};

    fn context(peer: &str, client: &str) -> MemberContext {
        MemberContext {
            peer_addr: Some(peer.into()),
            client_url: Some(client.into()),
        }
    }

    #[test]
    fn command_line_beats_the_configuration_which_beats_the_join_answer() {
        let book = AddressBook::new(
            1,
            context("me:7001", "http://me:8001"),
            BTreeMap::from([(4, "proxy:9004".to_string())]),
            BTreeMap::new(),
        );
        assert_eq!(book.peer_addr(1).as_deref(), Some("me:7001"));
        assert_eq!(book.peer_addr(4).as_deref(), Some("proxy:9004"));
        assert_eq!(book.peer_addr(5), None);

        book.learn(5, context("joined:7005", "http://joined:8005"));
        assert_eq!(book.peer_addr(5).as_deref(), Some("joined:7005"));
        let membership = Membership::from_voters([1])
            .apply(&ConfChange::AddLearner {
                id: 4,
                context: context("log:7004", "http://log:8004").encode(),
            })
            .unwrap()
            .apply(&ConfChange::AddLearner {
                id: 5,
                context: context("log:7005", "http://log:8005").encode(),
            })
            .unwrap();
        book.note_membership(&membership);
        assert_eq!(book.peer_addr(4).as_deref(), Some("proxy:9004"));
        assert_eq!(book.client_url(4).as_deref(), Some("http://log:8004"));
        assert_eq!(book.peer_addr(5).as_deref(), Some("log:7005"));
        // Once removed from the configuration, the join answer is what is left.
        book.note_membership(&Membership::from_voters([1]));
        assert_eq!(book.peer_addr(5).as_deref(), Some("joined:7005"));
    }

    #[test]
    fn an_empty_or_unreadable_context_gives_no_address() {
        assert_eq!(MemberContext::decode(b""), MemberContext::default());
        assert_eq!(
            MemberContext::decode(b"{not json"),
            MemberContext::default()
        );
        let c = context("a:1", "http://a:2");
        assert_eq!(MemberContext::decode(&c.encode()), c);
    }
}
