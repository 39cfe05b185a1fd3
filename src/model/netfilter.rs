//! The netfilter side of the desired state, as nouns: the sets of the
//! agent's nftables tables and their elements. The rules around them are
//! fixed by the settings ([`DatapathSettings`](super::settings::DatapathSettings));
//! a Service change changes elements only.
//!
//! Each family has its own table (`ip ipvs-agent`, `ip6 ipvs-agent`) with
//! the same sets; an element belongs to the table of its family.

use std::collections::BTreeSet;
use std::net::IpAddr;

use netlink_ipvs::IpvsProtocol;

/// The name of the agent's nftables table in each family.
pub const NETFILTER_TABLE: &str = "ipvs-agent";

/// An IP family: one nftables table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NetfilterFamily {
    /// `ip`.
    Ipv4,
    /// `ip6`.
    Ipv6,
}

impl NetfilterFamily {
    /// Both families, IPv4 first.
    pub const ALL: [NetfilterFamily; 2] = [NetfilterFamily::Ipv4, NetfilterFamily::Ipv6];

    /// The family of `address`.
    pub fn of(address: &IpAddr) -> Self {
        if address.is_ipv6() {
            Self::Ipv6
        } else {
            Self::Ipv4
        }
    }

    /// nft's name of the family (`ip`, `ip6`).
    pub fn nft_name(self) -> &'static str {
        match self {
            Self::Ipv4 => "ip",
            Self::Ipv6 => "ip6",
        }
    }
}

/// The sets of the agent's table (the same in both families).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NetfilterSet {
    /// ClusterIP . protocol . port (kube-proxy's KUBE-CLUSTER-IP).
    ClusterIps,
    /// externalIP . protocol . port, `externalTrafficPolicy: Cluster`
    /// (KUBE-EXTERNAL-IP): masqueraded.
    ExternalIps,
    /// The same for `externalTrafficPolicy: Local` (KUBE-EXTERNAL-IP-LOCAL):
    /// the client's address kept.
    ExternalIpsLocal,
    /// LoadBalancer IP . protocol . port, Cluster policy (KUBE-LOAD-BALANCER).
    LoadBalancerIps,
    /// The same, Local policy (KUBE-LOAD-BALANCER-LOCAL).
    LoadBalancerIpsLocal,
    /// LoadBalancer IP . protocol . port of Services with
    /// `loadBalancerSourceRanges` (KUBE-LOAD-BALANCER-FW).
    FirewallIps,
    /// LoadBalancer IP . protocol . port . allowed source range
    /// (KUBE-LOAD-BALANCER-SOURCE-CIDR).
    FirewallAllow,
    /// protocol . NodePort, Cluster policy (KUBE-NODE-PORT-*): masqueraded.
    NodePorts,
    /// `healthCheckNodePort`s (KUBE-HEALTH-CHECK-NODE-PORT): accepted.
    HealthCheckPorts,
    /// endpoint . endpoint of the node's own endpoints (KUBE-LOOP-BACK):
    /// a pod reaching itself through a Service is masqueraded.
    Hairpin,
    /// Every address on `kube-ipvs0` (KUBE-IPVS-IPS): the VIP filter.
    Vips,
}

impl NetfilterSet {
    /// Every set, in the order the table declares them.
    pub const ALL: [NetfilterSet; 11] = [
        NetfilterSet::ClusterIps,
        NetfilterSet::ExternalIps,
        NetfilterSet::ExternalIpsLocal,
        NetfilterSet::LoadBalancerIps,
        NetfilterSet::LoadBalancerIpsLocal,
        NetfilterSet::FirewallIps,
        NetfilterSet::FirewallAllow,
        NetfilterSet::NodePorts,
        NetfilterSet::HealthCheckPorts,
        NetfilterSet::Hairpin,
        NetfilterSet::Vips,
    ];

    /// The set's name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClusterIps => "cluster-ips",
            Self::ExternalIps => "external-ips",
            Self::ExternalIpsLocal => "external-ips-local",
            Self::LoadBalancerIps => "load-balancer-ips",
            Self::LoadBalancerIpsLocal => "load-balancer-ips-local",
            Self::FirewallIps => "firewall-ips",
            Self::FirewallAllow => "firewall-allow",
            Self::NodePorts => "node-ports",
            Self::HealthCheckPorts => "health-check-ports",
            Self::Hairpin => "hairpin",
            Self::Vips => "vips",
        }
    }

    /// The set named `name`, if it is one of the agent's.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|set| set.name() == name)
    }

    /// The shape of its elements.
    pub fn shape(self) -> ElementShape {
        match self {
            Self::ClusterIps
            | Self::ExternalIps
            | Self::ExternalIpsLocal
            | Self::LoadBalancerIps
            | Self::LoadBalancerIpsLocal
            | Self::FirewallIps => ElementShape::Service,
            Self::FirewallAllow => ElementShape::ServiceSource,
            Self::NodePorts => ElementShape::ProtocolPort,
            Self::HealthCheckPorts => ElementShape::Port,
            Self::Hairpin => ElementShape::AddressPair,
            Self::Vips => ElementShape::Address,
        }
    }
}

/// What an element of a set is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementShape {
    /// address . protocol . port.
    Service,
    /// address . protocol . port . source range (an interval set).
    ServiceSource,
    /// protocol . port.
    ProtocolPort,
    /// port.
    Port,
    /// address . address.
    AddressPair,
    /// address.
    Address,
}

/// The key of one element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElementKey {
    /// address . protocol . port.
    Service {
        /// The Service address.
        address: IpAddr,
        /// Its protocol.
        protocol: IpvsProtocol,
        /// Its port.
        port: u16,
    },
    /// address . protocol . port . first-last (an allowed source range).
    ServiceSource {
        /// The LoadBalancer IP.
        address: IpAddr,
        /// Its protocol.
        protocol: IpvsProtocol,
        /// Its port.
        port: u16,
        /// The range's first address.
        first: IpAddr,
        /// The range's last address.
        last: IpAddr,
    },
    /// protocol . port.
    ProtocolPort {
        /// The protocol.
        protocol: IpvsProtocol,
        /// The port.
        port: u16,
    },
    /// A port (TCP).
    Port(u16),
    /// An endpoint reaching itself: endpoint . endpoint.
    AddressPair(IpAddr),
    /// An address.
    Address(IpAddr),
}

/// One element of one set of one family's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetElement {
    /// Whose table.
    pub family: NetfilterFamily,
    /// Which set.
    pub set: NetfilterSet,
    /// The key.
    pub key: ElementKey,
}

/// Elements of the agent's sets.
pub type SetElements = BTreeSet<SetElement>;

/// The first and last address of `network` (`10.0.0.0/8` →
/// `10.0.0.0`–`10.255.255.255`).
pub fn network_bounds(network: &ipnetwork::IpNetwork) -> (IpAddr, IpAddr) {
    match network {
        ipnetwork::IpNetwork::V4(v4) => (IpAddr::V4(v4.network()), IpAddr::V4(v4.broadcast())),
        ipnetwork::IpNetwork::V6(v6) => {
            let bits = u128::from(v6.network());
            let host_bits = 128 - u32::from(v6.prefix());
            let mask = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            (
                IpAddr::V6(v6.network()),
                IpAddr::V6(std::net::Ipv6Addr::from(bits | mask)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names_round_trip() {
        for set in NetfilterSet::ALL {
            assert_eq!(NetfilterSet::from_name(set.name()), Some(set));
        }
        assert_eq!(NetfilterSet::from_name("KUBE-CLUSTER-IP"), None);
    }

    #[test]
    fn network_bounds_cover_the_prefix() {
        let cases = [
            ("10.0.0.0/8", "10.0.0.0", "10.255.255.255"),
            ("192.168.50.100/32", "192.168.50.100", "192.168.50.100"),
            ("0.0.0.0/0", "0.0.0.0", "255.255.255.255"),
            ("fd00::/64", "fd00::", "fd00::ffff:ffff:ffff:ffff"),
            ("::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ];
        for (network, first, last) in cases {
            let (low, high) = network_bounds(&network.parse().unwrap());
            assert_eq!(
                (low, high),
                (first.parse().unwrap(), last.parse().unwrap()),
                "{network}"
            );
        }
    }
}
