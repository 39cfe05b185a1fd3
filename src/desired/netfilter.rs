//! Which elements of the agent's nftables sets a Service needs, by
//! kube-proxy's IPVS-mode rules (`../shared/docs/datapath.md`): pure, called
//! by [`super::virtual_servers`] as it makes each port's virtual servers.
//!
//! - every ClusterIP . protocol . port in `cluster-ips`;
//! - externalIPs in `external-ips`, LoadBalancer IPs in
//!   `load-balancer-ips` (the `-local` sets for
//!   `externalTrafficPolicy: Local`, whose traffic is not masqueraded);
//! - with `loadBalancerSourceRanges`, each LoadBalancer IP . protocol .
//!   port in `firewall-ips` and one `firewall-allow` element per range of
//!   its family (ranges of the other family do not close it);
//! - protocol . NodePort in `node-ports` (Cluster policy only), in each
//!   family the node has NodePort addresses in;
//! - `healthCheckNodePort` in `health-check-ports`;
//! - each local endpoint in `hairpin` (a pod reaching itself);
//! - each address it needs on `kube-ipvs0` in `vips`.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_ipvs::IpvsProtocol;

use super::port_number;
use super::FieldError;
use crate::model::netfilter::{
    network_bounds, ElementKey, NetfilterFamily, NetfilterSet, SetElement, SetElements,
};
use crate::model::object_ref::ObjectRef;

/// What a Service's set elements depend on, besides each port.
#[derive(Debug)]
pub struct ServiceSets<'a> {
    /// Its ClusterIPs.
    pub cluster_ips: &'a [IpAddr],
    /// Its externalIPs.
    pub external_ips: &'a [IpAddr],
    /// Its LoadBalancer ingress IPs (VIP mode).
    pub load_balancer_ips: &'a [IpAddr],
    /// The families its NodePorts are made in (none: no NodePorts).
    pub node_port_families: &'a [NetfilterFamily],
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// Its valid `loadBalancerSourceRanges`.
    pub source_ranges: &'a [IpNetwork],
}

fn service_key(address: IpAddr, protocol: IpvsProtocol, port: u16) -> SetElement {
    SetElement {
        family: NetfilterFamily::of(&address),
        set: NetfilterSet::ClusterIps,
        key: ElementKey::Service {
            address,
            protocol,
            port,
        },
    }
}

impl ServiceSets<'_> {
    /// Adds the elements of one Service port to `elements`.
    pub fn add_port(
        &self,
        protocol: IpvsProtocol,
        port: u16,
        node_port: Option<u16>,
        elements: &mut SetElements,
    ) {
        let in_set = |set, address| SetElement {
            set,
            ..service_key(address, protocol, port)
        };
        elements.extend(
            self.cluster_ips
                .iter()
                .map(|ip| in_set(NetfilterSet::ClusterIps, *ip)),
        );
        let (external, load_balancer) = if self.external_local {
            (
                NetfilterSet::ExternalIpsLocal,
                NetfilterSet::LoadBalancerIpsLocal,
            )
        } else {
            (NetfilterSet::ExternalIps, NetfilterSet::LoadBalancerIps)
        };
        elements.extend(self.external_ips.iter().map(|ip| in_set(external, *ip)));
        for address in self.load_balancer_ips {
            elements.insert(in_set(load_balancer, *address));
            let family = NetfilterFamily::of(address);
            let ranges: Vec<&IpNetwork> = self
                .source_ranges
                .iter()
                .filter(|range| NetfilterFamily::of(&range.ip()) == family)
                .collect();
            if ranges.is_empty() {
                continue;
            }
            elements.insert(in_set(NetfilterSet::FirewallIps, *address));
            for range in ranges {
                let (first, last) = network_bounds(range);
                elements.insert(SetElement {
                    family,
                    set: NetfilterSet::FirewallAllow,
                    key: ElementKey::ServiceSource {
                        address: *address,
                        protocol,
                        port,
                        first,
                        last,
                    },
                });
            }
        }
        if let (Some(node_port), false) = (node_port, self.external_local) {
            elements.extend(self.node_port_families.iter().map(|family| SetElement {
                family: *family,
                set: NetfilterSet::NodePorts,
                key: ElementKey::ProtocolPort {
                    protocol,
                    port: node_port,
                },
            }));
        }
    }
}

/// The element that lets `endpoint` reach itself through a Service.
pub fn hairpin(endpoint: IpAddr) -> SetElement {
    SetElement {
        family: NetfilterFamily::of(&endpoint),
        set: NetfilterSet::Hairpin,
        key: ElementKey::AddressPair(endpoint),
    }
}

/// The `vips` element of an address on `kube-ipvs0`.
pub fn vip(address: IpAddr) -> SetElement {
    SetElement {
        family: NetfilterFamily::of(&address),
        set: NetfilterSet::Vips,
        key: ElementKey::Address(address),
    }
}

/// The `health-check-ports` elements of a `healthCheckNodePort`, one per
/// family in `families`; a value that is not a port is a problem.
pub fn health_check_port(
    service: &ObjectRef,
    value: Option<i32>,
    families: &[NetfilterFamily],
    elements: &mut SetElements,
    problems: &mut Vec<FieldError>,
) {
    let Some(value) = value else {
        return;
    };
    let Some(port) = port_number(value) else {
        problems.push(FieldError::service(
            service,
            "spec.healthCheckNodePort",
            format!("{value} is not a port number (1-65535)"),
        ));
        return;
    };
    elements.extend(families.iter().map(|family| SetElement {
        family: *family,
        set: NetfilterSet::HealthCheckPorts,
        key: ElementKey::Port(port),
    }));
}

/// The valid entries of `loadBalancerSourceRanges` (kube-proxy trims
/// spaces); each invalid one is a problem naming its index.
pub fn source_ranges(
    service: &ObjectRef,
    texts: &[String],
    problems: &mut Vec<FieldError>,
) -> Vec<IpNetwork> {
    let mut ranges = Vec::new();
    for (index, text) in texts.iter().enumerate() {
        match text.trim().parse::<IpNetwork>() {
            Ok(range) => ranges.push(range),
            Err(_) => problems.push(FieldError::service(
                service,
                format!("spec.loadBalancerSourceRanges[{index}]"),
                format!("{text:?} is not a CIDR; ignored"),
            )),
        }
    }
    ranges
}
