//! The cluster's network: one [`LinkProxy`] per directed pair of nodes, and the topologies
//! ([`Cuts`]) that say which links a partition cuts.
//!
//! With N nodes there are N×(N−1) directed links. Link `(a, b)` carries every connection node `a`
//! opens to node `b` (requests and their answers), so cutting `(a, b)` and `(b, a)` separates the
//! two nodes completely. Symmetric topologies always cut both; only the 3-node majorities ring needs
//! one-way cuts (see [`Cuts::majorities_ring`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::NemesisError;
use crate::proxy::{LinkFault, LinkProxy};

/// A set of cut directed links `(from, to)` over a cluster of `nodes` nodes: `from` cannot reach
/// `to`. Built by the topology constructors; applied with [`Network::apply_cuts`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cuts {
    /// Size of the cluster the cuts are about.
    nodes: usize,
    /// The cut links.
    links: BTreeSet<(usize, usize)>,
}

impl Cuts {
    /// No cut at all.
    pub fn none(nodes: usize) -> Cuts {
        Cuts {
            nodes,
            links: BTreeSet::new(),
        }
    }

    /// Cuts every link between the two groups, both ways. Links inside each group stay up.
    pub fn between(nodes: usize, left: &[usize], right: &[usize]) -> Cuts {
        let mut cuts = Cuts::none(nodes);
        for &a in left {
            for &b in right {
                if a != b {
                    cuts.links.insert((a, b));
                    cuts.links.insert((b, a));
                }
            }
        }
        cuts
    }

    /// Separates `node` from every other node.
    pub fn isolate(nodes: usize, node: usize) -> Cuts {
        let others: Vec<usize> = (0..nodes).filter(|&n| n != node).collect();
        Cuts::between(nodes, &[node], &others)
    }

    /// Cuts every link into `node` and none out of it: it still reaches every other node, and
    /// hears from none.
    pub fn deafen(nodes: usize, node: usize) -> Cuts {
        let mut cuts = Cuts::none(nodes);
        cuts.links
            .extend((0..nodes).filter(|&n| n != node).map(|n| (n, node)));
        cuts
    }

    /// Separates each node of `isolated` from every other node (each alone, not together).
    pub fn isolate_each(nodes: usize, isolated: &[usize]) -> Cuts {
        let mut cuts = Cuts::none(nodes);
        for &node in isolated {
            cuts.links.extend(Cuts::isolate(nodes, node).links);
        }
        cuts
    }

    /// Every node sees a majority of the cluster (itself included), and no two nodes see the same
    /// majority (Jepsen's `majorities-ring`). `ring` is all nodes in ring order.
    ///
    /// With N ≥ 4 nodes, node `i` keeps the links to the nodes within ring distance `k`, with
    /// `2k + 1` the smallest odd number ≥ the majority `N/2 + 1`; all other links are cut both ways.
    /// Each node's view is a different window of the ring. With N = 3 no symmetric cut works (two
    /// nodes seeing each other plus a third would make that third see everyone), so each node keeps
    /// only its link *to* the next node in the ring: `a→b`, `b→c`, `c→a` stay up and the three
    /// reverse links are cut. Fails for fewer than 3 nodes.
    pub fn majorities_ring(ring: &[usize]) -> Result<Cuts, NemesisError> {
        let n = ring.len();
        if n < 3 {
            return Err(NemesisError::TooFewNodes {
                topology: "majorities-ring",
                needed: 3,
                count: n,
            });
        }
        let mut cuts = Cuts::none(n);
        if n == 3 {
            for i in 0..n {
                cuts.links.insert((ring[(i + 1) % n], ring[i]));
            }
            return Ok(cuts);
        }
        let majority = n / 2 + 1;
        let reach = majority / 2; // k with 2k + 1 >= majority
        for i in 0..n {
            for j in 0..n {
                let d = i.abs_diff(j);
                let ring_distance = d.min(n - d);
                if ring_distance > reach {
                    cuts.links.insert((ring[i], ring[j]));
                }
            }
        }
        Ok(cuts)
    }

    /// Two halves that cannot see each other, joined by one `bridge` node that sees everyone.
    pub fn bridge(nodes: usize, left: &[usize], bridge: usize, right: &[usize]) -> Cuts {
        let left: Vec<usize> = left.iter().copied().filter(|&n| n != bridge).collect();
        let right: Vec<usize> = right.iter().copied().filter(|&n| n != bridge).collect();
        Cuts::between(nodes, &left, &right)
    }

    /// Cluster size.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// True when `from` cannot reach `to`.
    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        self.links.contains(&(from, to))
    }

    /// The cut links, sorted.
    pub fn links(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.links.iter().copied()
    }

    /// Number of cut links.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// True when nothing is cut.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The nodes `node` can reach, itself included, sorted.
    pub fn reachable_from(&self, node: usize) -> Vec<usize> {
        (0..self.nodes)
            .filter(|&to| to == node || !self.is_cut(node, to))
            .collect()
    }
}

/// The proxies of every directed link of an N-node cluster.
///
/// Dropping it closes every proxy (and every connection through them).
#[derive(Debug)]
pub struct Network {
    /// The real addresses of the nodes, by index.
    targets: Vec<SocketAddr>,
    /// `proxies[from][to]`; `None` on the diagonal.
    proxies: Vec<Vec<Option<LinkProxy>>>,
}

impl Network {
    /// Starts one healthy proxy per directed pair; `targets[i]` is the real address node `i` listens
    /// on for its peers. Needs a tokio runtime.
    pub async fn start(targets: Vec<SocketAddr>) -> Result<Network, NemesisError> {
        let mut proxies = Vec::with_capacity(targets.len());
        for from in 0..targets.len() {
            let mut row = Vec::with_capacity(targets.len());
            for (to, &target) in targets.iter().enumerate() {
                row.push(if from == to {
                    None
                } else {
                    Some(LinkProxy::bind(target).await?)
                });
            }
            proxies.push(row);
        }
        Ok(Network { targets, proxies })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// True for a cluster of no nodes.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The proxy of link `from -> to`.
    pub fn proxy(&self, from: usize, to: usize) -> Result<&LinkProxy, NemesisError> {
        let count = self.len();
        let row = self
            .proxies
            .get(from)
            .ok_or(NemesisError::UnknownNode { node: from, count })?;
        row.get(to)
            .and_then(Option::as_ref)
            .ok_or(NemesisError::UnknownNode { node: to, count })
    }

    /// The address node `from` must use to reach node `to`.
    pub fn proxy_addr(&self, from: usize, to: usize) -> Result<SocketAddr, NemesisError> {
        Ok(self.proxy(from, to)?.addr())
    }

    /// For node `from`, the address to reach each other node: `(to, address)` in node order.
    pub fn peer_addrs(&self, from: usize) -> Result<Vec<(usize, SocketAddr)>, NemesisError> {
        (0..self.len())
            .filter(|&to| to != from)
            .map(|to| Ok((to, self.proxy_addr(from, to)?)))
            .collect()
    }

    /// Sets the fault of one directed link.
    pub fn set_link(&self, from: usize, to: usize, fault: LinkFault) -> Result<(), NemesisError> {
        self.proxy(from, to)?.set_fault(fault);
        Ok(())
    }

    /// Makes the network look exactly like `cuts`: cut links black-holed, every other link healed.
    pub fn apply_cuts(&self, cuts: &Cuts) {
        for (from, to, proxy) in self.links() {
            proxy.set_fault(if cuts.is_cut(from, to) {
                LinkFault::Blackhole
            } else {
                LinkFault::Heal
            });
        }
    }

    /// Sets `fault` on each listed link, leaving the others as they are.
    pub fn set_links(
        &self,
        links: &[(usize, usize)],
        fault: LinkFault,
    ) -> Result<(), NemesisError> {
        for &(from, to) in links {
            self.set_link(from, to, fault)?;
        }
        Ok(())
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for (_, _, proxy) in self.links() {
            proxy.heal();
        }
    }

    /// The links that are currently cut (black-holed or rejecting), sorted.
    pub fn cut_links(&self) -> Vec<(usize, usize)> {
        self.links()
            .filter(|(_, _, proxy)| proxy.is_cut())
            .map(|(from, to, _)| (from, to))
            .collect()
    }

    /// Every link that is not healthy, with its faults `(forward, backward)`, sorted.
    pub fn faulty_links(&self) -> Vec<((usize, usize), (LinkFault, LinkFault))> {
        self.links()
            .filter(|(_, _, proxy)| !proxy.is_healthy())
            .map(|(from, to, proxy)| ((from, to), proxy.faults()))
            .collect()
    }

    /// Every directed link with its proxy, in `(from, to)` order.
    pub fn links(&self) -> impl Iterator<Item = (usize, usize, &LinkProxy)> + '_ {
        self.proxies.iter().enumerate().flat_map(|(from, row)| {
            row.iter()
                .enumerate()
                .filter_map(move |(to, proxy)| proxy.as_ref().map(|p| (from, to, p)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deafened_node_reaches_every_peer_and_hears_from_none() {
        let cuts = Cuts::deafen(3, 1);
        assert_eq!(cuts.reachable_from(1), vec![0, 1, 2]);
        for other in [0, 2] {
            assert!(
                !cuts.reachable_from(other).contains(&1),
                "{other} reaches 1"
            );
        }
    }

    #[test]
    fn majorities_ring_gives_every_node_a_distinct_majority() {
        for n in 3..=9 {
            let ring: Vec<usize> = (0..n).rev().collect();
            let cuts = Cuts::majorities_ring(&ring).unwrap();
            let views: Vec<Vec<usize>> = (0..n).map(|i| cuts.reachable_from(i)).collect();
            for view in &views {
                assert!(view.len() > n / 2, "n={n}: view {view:?} is not a majority");
                assert!(view.len() < n, "n={n}: view {view:?} sees everyone");
            }
            let distinct: BTreeSet<&Vec<usize>> = views.iter().collect();
            assert_eq!(distinct.len(), n, "n={n}: views {views:?} repeat");
        }
    }

    #[test]
    fn majorities_ring_is_symmetric_from_four_nodes() {
        for n in 4..=9 {
            let ring: Vec<usize> = (0..n).collect();
            let cuts = Cuts::majorities_ring(&ring).unwrap();
            for (a, b) in cuts.links() {
                assert!(cuts.is_cut(b, a), "n={n}: {a}->{b} cut one way only");
            }
        }
    }

    #[test]
    fn majorities_ring_refuses_two_nodes() {
        assert!(Cuts::majorities_ring(&[0, 1]).is_err());
    }

    #[test]
    fn bridge_node_sees_everyone_and_halves_see_only_their_side() {
        let cuts = Cuts::bridge(5, &[0, 1], 2, &[3, 4]);
        assert_eq!(cuts.reachable_from(2), vec![0, 1, 2, 3, 4]);
        assert_eq!(cuts.reachable_from(0), vec![0, 1, 2]);
        assert_eq!(cuts.reachable_from(4), vec![2, 3, 4]);
        assert_eq!(cuts.len(), 8);
    }

    #[test]
    fn isolate_cuts_both_directions_to_every_other_node() {
        let cuts = Cuts::isolate(4, 1);
        assert_eq!(cuts.len(), 6);
        for other in [0, 2, 3] {
            assert!(cuts.is_cut(1, other) && cuts.is_cut(other, 1));
        }
        assert!(!cuts.is_cut(0, 2));
    }
}
