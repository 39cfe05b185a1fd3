//! Which virtual servers in the kernel belong to the agent. Everything else
//! (another tool's virtual servers) is never changed or deleted.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnetwork::IpNetwork;
use netlink_ipvs::IpvsServiceKey;

use crate::model::{LocalAddress, ProxySettings, KUBE_IPVS_INTERFACE};

/// The agent owns a virtual server when its address is bound on
/// `kube-ipvs0`, or is a node address with a port in the NodePort range;
/// and the address is not inside an excluded CIDR (`--ipvs-exclude-cidrs`).
/// Fwmark virtual servers are never the agent's.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    /// Addresses bound on `kube-ipvs0`.
    pub bound_addresses: BTreeSet<IpAddr>,
    /// The node's own addresses (NodePort virtual servers live on them).
    pub node_addresses: BTreeSet<IpAddr>,
    /// The NodePort range (`--service-node-port-range`, default 30000-32767).
    pub node_port_range: Option<RangeInclusive<u16>>,
    /// Addresses never touched (`--ipvs-exclude-cidrs`).
    pub excluded: Vec<IpNetwork>,
}

impl Ownership {
    /// What the agent owns on a node whose interfaces hold `local`
    /// (`kube-ipvs0`'s addresses are not node addresses), with
    /// `bound_addresses` on `kube-ipvs0` (held or wanted there).
    pub fn new(
        settings: &ProxySettings,
        bound_addresses: BTreeSet<IpAddr>,
        local: &[LocalAddress],
    ) -> Self {
        Self {
            bound_addresses,
            node_addresses: local
                .iter()
                .filter(|local| local.interface != KUBE_IPVS_INTERFACE)
                .map(|local| local.address)
                .collect(),
            node_port_range: Some(settings.node_port_range.clone()),
            excluded: settings.exclude_cidrs.clone(),
        }
    }

    /// Whether the agent may change or delete the virtual server `key`.
    pub fn owns(&self, key: &IpvsServiceKey) -> bool {
        let IpvsServiceKey::Inet { address, port, .. } = key else {
            return false;
        };
        if self
            .excluded
            .iter()
            .any(|network| network.contains(*address))
        {
            return false;
        }
        if self.bound_addresses.contains(address) {
            return true;
        }
        self.node_addresses.contains(address)
            && self
                .node_port_range
                .as_ref()
                .is_some_and(|range| range.contains(port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_ipvs::{IpvsAddressFamily, IpvsServiceKey};

    fn ownership() -> Ownership {
        Ownership {
            bound_addresses: ["10.96.0.10".parse().unwrap()].into(),
            node_addresses: ["192.168.1.5".parse().unwrap()].into(),
            node_port_range: Some(30000..=32767),
            excluded: vec!["10.96.0.0/28".parse().unwrap()],
        }
    }

    #[test]
    fn owns_only_what_the_rules_say() {
        let cases: &[(&str, IpvsServiceKey, bool)] = &[
            (
                "a VIP on kube-ipvs0, but excluded",
                IpvsServiceKey::tcp("10.96.0.10".parse().unwrap(), 80),
                false,
            ),
            (
                "a node address in the NodePort range",
                IpvsServiceKey::tcp("192.168.1.5".parse().unwrap(), 30080),
                true,
            ),
            (
                "a node address outside the NodePort range",
                IpvsServiceKey::tcp("192.168.1.5".parse().unwrap(), 80),
                false,
            ),
            (
                "an address that is neither bound nor the node's",
                IpvsServiceKey::tcp("10.0.0.1".parse().unwrap(), 80),
                false,
            ),
            (
                "a fwmark service",
                IpvsServiceKey::Fwmark {
                    family: IpvsAddressFamily::Inet,
                    mark: 1,
                },
                false,
            ),
        ];
        for (what, key, expected) in cases {
            assert_eq!(ownership().owns(key), *expected, "{what}");
        }
        let mut not_excluded = ownership();
        not_excluded.excluded.clear();
        assert!(not_excluded.owns(&IpvsServiceKey::tcp("10.96.0.10".parse().unwrap(), 80)));
    }
}
