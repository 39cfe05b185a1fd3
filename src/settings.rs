//! The agent's settings and what it knows of its node: the inputs, beside
//! the Kubernetes objects, of the desired state. Plain data; the command
//! line (and later a `KubeProxyConfiguration`) fills them.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use ipnetwork::IpNetwork;

/// Which IP families the agent programs (`--ip-family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpFamilyMode {
    /// IPv4 only.
    #[default]
    Ipv4,
    /// IPv6 only.
    Ipv6,
    /// Both families (dual-stack).
    Dual,
}

impl IpFamilyMode {
    /// Whether addresses of `address`'s family are programmed.
    pub fn includes(self, address: &IpAddr) -> bool {
        match self {
            IpFamilyMode::Ipv4 => address.is_ipv4(),
            IpFamilyMode::Ipv6 => address.is_ipv6(),
            IpFamilyMode::Dual => true,
        }
    }
}

/// Which node addresses NodePort virtual servers are made on
/// (`--nodeport-addresses`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePortAddresses {
    /// Local addresses inside one of these CIDRs. Empty together with
    /// `primary` false means every eligible local address.
    pub cidrs: Vec<IpNetwork>,
    /// The node's primary addresses (`primary` in the flag's list).
    pub primary: bool,
}

impl NodePortAddresses {
    /// Whether no filter was given (every eligible local address).
    pub fn is_all(&self) -> bool {
        self.cidrs.is_empty() && !self.primary
    }
}

/// The agent's settings (kube-proxy's flag names in the docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Default scheduler (`--ipvs-scheduler`, default `rr`).
    pub scheduler: String,
    /// Families programmed (`--ip-family`).
    pub ip_family: IpFamilyMode,
    /// NodePort address filter (`--nodeport-addresses`).
    pub nodeport_addresses: NodePortAddresses,
    /// Addresses the agent never touches (`--ipvs-exclude-cidrs`).
    pub exclude_cidrs: Vec<IpNetwork>,
    /// The cluster's NodePort range (`--service-node-port-range`,
    /// default 30000-32767): node-address virtual servers in it are the
    /// agent's.
    pub node_port_range: RangeInclusive<u16>,
    /// Longest drain of a removed TCP real server (`--ipvs-drain-timeout`).
    pub drain_timeout: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            scheduler: "rr".to_owned(),
            ip_family: IpFamilyMode::default(),
            nodeport_addresses: NodePortAddresses::default(),
            exclude_cidrs: Vec::new(),
            node_port_range: 30000..=32767,
            drain_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// An address on one of the node's interfaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalAddress {
    /// The address.
    pub address: IpAddr,
    /// The interface that holds it (`eth0`, `lo`, `kube-ipvs0`, ...).
    pub interface: String,
}

/// What the agent knows of its own node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeContext {
    /// The node's name (endpoints with this `nodeName` are local).
    pub name: String,
    /// The node's primary addresses (`--node-ip`, or the Node object's
    /// InternalIPs).
    pub primary_addresses: Vec<IpAddr>,
    /// Every address on the node's interfaces, read from the kernel (in
    /// `plan`, the `--node-ip` addresses on a nameless interface).
    pub local_addresses: Vec<LocalAddress>,
}
