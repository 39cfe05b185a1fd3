//! Where NodePort virtual servers are made: the node's own addresses, as
//! kube-proxy's IPVS mode picks them.
//!
//! Every local address of the agent's families, except those on
//! `kube-ipvs0` (the VIPs), loopback and IPv6 link-local addresses; when
//! `--nodeport-addresses` is given, only those inside one of its CIDRs,
//! plus the node's primary addresses if it says `primary`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::model::node::{is_ipv6_link_local, NodeContext, KUBE_IPVS_INTERFACE};
use crate::model::settings::ProxySettings;

/// The node addresses NodePort virtual servers are made on.
pub fn nodeport_addresses(node: &NodeContext, settings: &ProxySettings) -> BTreeSet<IpAddr> {
    let filter = &settings.nodeport_addresses;
    let mut addresses: BTreeSet<IpAddr> = node
        .local_addresses
        .iter()
        .filter(|local| local.interface != KUBE_IPVS_INTERFACE)
        .map(|local| local.address)
        .filter(|address| {
            settings.ip_family.includes(address)
                && !address.is_loopback()
                && !is_ipv6_link_local(address)
                && !address.is_unspecified()
        })
        .filter(|address| {
            filter.is_all() || filter.cidrs.iter().any(|cidr| cidr.contains(*address))
        })
        .collect();
    if filter.primary {
        addresses.extend(
            node.primary_addresses
                .iter()
                .filter(|address| settings.ip_family.includes(address)),
        );
    }
    addresses
}
