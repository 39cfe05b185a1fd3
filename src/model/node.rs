//! What the agent knows of its own node: its name, its zone, its
//! addresses, and the dummy interface that holds the VIPs.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::object_ref::ZONE_LABEL;

/// The interface that holds the VIPs; its addresses are never node
/// addresses.
pub const KUBE_IPVS_INTERFACE: &str = "kube-ipvs0";

/// Whether `address` is an IPv6 link-local address (`fe80::/10`): never a
/// NodePort address, and the one address on `kube-ipvs0` that is not a VIP.
pub fn is_ipv6_link_local(address: &IpAddr) -> bool {
    match address {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(_) => false,
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
    /// The node's name (endpoints with this `nodeName` are local, and
    /// `hints.forNodes` are matched against it).
    pub name: String,
    /// The node's zone: its Node's `topology.kubernetes.io/zone` label
    /// (`None` without the label, or without a Node object). Matched
    /// against the endpoints' `hints.forZones`.
    pub zone: Option<String>,
    /// The node's primary addresses (`--node-ip`, or the Node object's
    /// InternalIPs).
    pub primary_addresses: Vec<IpAddr>,
    /// Every address on the node's interfaces, read from the kernel (in
    /// `plan`, the `--node-ip` addresses on a nameless interface).
    pub local_addresses: Vec<LocalAddress>,
}

/// The zone a Node's `metadata.labels` give it ([`ZONE_LABEL`]); `None`
/// without labels or without that one. The value is taken as it is (a
/// label value the API server would refuse is still just a string).
pub fn zone_of(labels: Option<&BTreeMap<String, String>>) -> Option<String> {
    labels.and_then(|labels| labels.get(ZONE_LABEL)).cloned()
}

/// The InternalIP addresses of a Node (its primary addresses), in the
/// order of `status.addresses`.
pub fn node_internal_addresses(node: &k8s_openapi::api::core::v1::Node) -> Vec<IpAddr> {
    node.status
        .as_ref()
        .and_then(|status| status.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|address| address.type_ == "InternalIP")
        .filter_map(|address| address.address.parse().ok())
        .collect()
}

/// The taint the cluster autoscaler puts on a node before deleting it.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// Whether a Node is eligible for traffic, as kube-proxy's `SyncNode`
/// decides: not being deleted and not tainted `ToBeDeletedByClusterAutoscaler`.
pub fn node_eligible(node: &k8s_openapi::api::core::v1::Node) -> bool {
    let deleting = node.metadata.deletion_timestamp.is_some();
    let tainted = node
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.as_ref())
        .is_some_and(|taints| taints.iter().any(|taint| taint.key == TO_BE_DELETED_TAINT));
    !deleting && !tainted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_eligibility_is_kube_proxys() {
        use k8s_openapi::api::core::v1::{Node, NodeSpec, Taint};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let tainted = |key: &str| Node {
            spec: Some(NodeSpec {
                taints: Some(vec![Taint {
                    key: key.to_owned(),
                    effect: "NoSchedule".to_owned(),
                    ..Taint::default()
                }]),
                ..NodeSpec::default()
            }),
            ..Node::default()
        };
        assert!(node_eligible(&Node::default()));
        assert!(node_eligible(&tainted("node.kubernetes.io/unschedulable")));
        assert!(!node_eligible(&tainted(TO_BE_DELETED_TAINT)));
        let mut deleting = Node::default();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert!(!node_eligible(&deleting));
    }
}
