//! Cluster configurations and single-server membership changes (Raft dissertation §4.1).
//!
//! Why single-server changes rather than joint consensus: adding or removing one voter at a
//! time keeps every majority of the old configuration overlapping every majority of the new
//! one, so a change needs no intermediate joint configuration, and a node only ever has one
//! configuration to count votes and commits in. Replacing a node is two changes (remove,
//! then add), which the operator or the script sequences.
//!
//! The rules the core follows (chapter 4 and its errata):
//! - A configuration is a log entry holding the *whole* new configuration (not a delta), so a
//!   node that joins with an empty log learns every member from the entry that adds it.
//! - A node uses the latest configuration in its log as soon as it is appended, committed or
//!   not; a follower whose log is truncated goes back to the latest one left (or the
//!   snapshot's). A snapshot carries the configuration at its index.
//! - At most one change is in flight: a leader refuses a change while its log holds an
//!   uncommitted configuration entry.
//! - A leader accepts changes only once it committed an entry of its own term (the errata of
//!   the single-server algorithm: otherwise a change from an older term it has not committed
//!   yet and its own new one could together break the overlap of majorities).
//! - New members join as learners (replicated to, never counted, never campaigning) and are
//!   promoted to voters only when their log is close to the leader's, so a new voter does not
//!   stall commits while it catches up.
//! - A leader that removed itself keeps leading until the change commits, without counting
//!   itself toward majorities, then steps down.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{LogIndex, NodeId};

/// Whether a member counts toward majorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// Votes in elections and counts toward the commit and read majorities.
    Voter,
    /// Receives the log but never votes, campaigns or counts.
    Learner,
}

/// One member of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub role: MemberRole,
    /// Opaque to the core: the node stores how to reach the member (peer address, client
    /// URL) here, so every node learns it from the log. Empty for the initial members, whose
    /// addresses come from the command line.
    #[serde(with = "serde_bytes")]
    pub context: Vec<u8>,
}

/// A cluster configuration: every member with its role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub members: BTreeMap<NodeId, Member>,
}

/// One single-server change, as a client asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfChange {
    /// Add a node as a learner, with its context.
    AddLearner {
        id: NodeId,
        #[serde(with = "serde_bytes")]
        context: Vec<u8>,
    },
    /// Make a caught-up learner a voter.
    Promote { id: NodeId },
    /// Remove a voter or a learner.
    Remove { id: NodeId },
}

/// Why a membership change was refused. None changes anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    /// Only the leader takes changes; `leader` is the best known leader (None while
    /// unknown or while the leader hands leadership over).
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// Another change (at `index`) is not committed yet.
    #[error("the membership change at index {index} is still in flight")]
    InFlight { index: LogIndex },
    /// The leader has not committed an entry of its own term yet; retry shortly.
    #[error("the leader has not committed an entry of its term yet")]
    LeaderNotReady,
    /// The learner's log is too far behind the leader's to be promoted yet; retry later.
    #[error("learner {id} matches index {match_index}, the leader's log ends at {last_index}")]
    LearnerBehind {
        id: NodeId,
        match_index: LogIndex,
        last_index: LogIndex,
    },
    #[error("node {id} is already a member")]
    AlreadyMember { id: NodeId },
    #[error("node {id} is not a member")]
    NotMember { id: NodeId },
    #[error("node {id} is not a learner")]
    NotLearner { id: NodeId },
    #[error("node id 0 is not a valid id")]
    InvalidId,
    /// Removing the only voter would leave a configuration that can never commit.
    #[error("node {id} is the last voter")]
    LastVoter { id: NodeId },
    /// After the change, the voters the leader heard from recently would not be a majority
    /// of the new configuration, which could then commit nothing (etcd's strict
    /// reconfiguration check).
    #[error("after the change {active} of {voters} voters would be active, {needed} are needed")]
    WouldLoseQuorum {
        active: usize,
        voters: usize,
        needed: usize,
    },
}

impl Membership {
    /// A configuration of voters only, with empty contexts (the initial one).
    pub fn from_voters(ids: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            members: ids
                .into_iter()
                .map(|id| {
                    (
                        id,
                        Member {
                            role: MemberRole::Voter,
                            context: Vec::new(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The voters, ascending.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .filter(|(_, m)| m.role == MemberRole::Voter)
            .map(|(&id, _)| id)
    }

    /// The learners, ascending.
    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .filter(|(_, m)| m.role == MemberRole::Learner)
            .map(|(&id, _)| id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.members.contains_key(&id)
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.role(id) == Some(MemberRole::Voter)
    }

    pub fn role(&self, id: NodeId) -> Option<MemberRole> {
        self.members.get(&id).map(|m| m.role)
    }

    pub fn voter_count(&self) -> usize {
        self.voters().count()
    }

    /// Votes or acknowledgements needed: a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voter_count() / 2 + 1
    }

    /// The configuration after `change`, checked against this one only (not against the
    /// leader's state: see the node for in-flight, readiness and catch-up checks).
    pub fn apply(&self, change: &ConfChange) -> Result<Membership, ConfChangeError> {
        let mut next = self.clone();
        match change {
            ConfChange::AddLearner { id, context } => {
                if *id == 0 {
                    return Err(ConfChangeError::InvalidId);
                }
                if self.contains(*id) {
                    return Err(ConfChangeError::AlreadyMember { id: *id });
                }
                next.members.insert(
                    *id,
                    Member {
                        role: MemberRole::Learner,
                        context: context.clone(),
                    },
                );
            }
            ConfChange::Promote { id } => match next.members.get_mut(id) {
                None => return Err(ConfChangeError::NotMember { id: *id }),
                Some(member) if member.role != MemberRole::Learner => {
                    return Err(ConfChangeError::NotLearner { id: *id })
                }
                Some(member) => member.role = MemberRole::Voter,
            },
            ConfChange::Remove { id } => {
                match self.role(*id) {
                    None => return Err(ConfChangeError::NotMember { id: *id }),
                    Some(MemberRole::Voter) if self.voter_count() == 1 => {
                        return Err(ConfChangeError::LastVoter { id: *id })
                    }
                    Some(_) => {}
                }
                next.members.remove(id);
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_counts_voters_only() {
        let mut m = Membership::from_voters([1, 2, 3]);
        assert_eq!(m.quorum(), 2);
        m = m
            .apply(&ConfChange::AddLearner {
                id: 4,
                context: vec![],
            })
            .unwrap();
        assert_eq!(m.quorum(), 2);
        assert_eq!(m.learners().collect::<Vec<_>>(), vec![4]);
        m = m.apply(&ConfChange::Promote { id: 4 }).unwrap();
        assert_eq!(m.quorum(), 3);
        assert_eq!(m.voters().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn invalid_changes_are_refused_with_their_reason() {
        let m = Membership::from_voters([1]);
        assert_eq!(
            m.apply(&ConfChange::Remove { id: 1 }),
            Err(ConfChangeError::LastVoter { id: 1 })
        );
        assert_eq!(
            m.apply(&ConfChange::Remove { id: 7 }),
            Err(ConfChangeError::NotMember { id: 7 })
        );
        assert_eq!(
            m.apply(&ConfChange::Promote { id: 1 }),
            Err(ConfChangeError::NotLearner { id: 1 })
        );
        assert_eq!(
            m.apply(&ConfChange::AddLearner {
                id: 1,
                context: vec![]
            }),
            Err(ConfChangeError::AlreadyMember { id: 1 })
        );
        assert_eq!(
            m.apply(&ConfChange::AddLearner {
                id: 0,
                context: vec![]
            }),
            Err(ConfChangeError::InvalidId)
        );
    }
}
