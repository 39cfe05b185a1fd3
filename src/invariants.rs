//! What every desired state must satisfy, whatever the objects: the
//! checker the fuzz targets (`fuzz/`) and the table tests run over the
//! output of [`desired_state`](crate::desired::desired_state). Pure; it
//! reads [`desired`](crate::desired) and the ownership rules of
//! [`diff`](crate::diff), and nothing depends on it.
//!
//! - every virtual server is one a Service port asks for: its address is
//!   one of the Service's ClusterIPs, externalIPs or LoadBalancer ingress
//!   IPs (at the port's `port`) or a NodePort address (at its `nodePort`),
//!   with the port's protocol;
//! - every real server is an endpoint address of that Service (its
//!   EndpointSlices, or its legacy Endpoints), at one of their ports;
//! - every virtual server on a VIP has its address wanted on `kube-ipvs0`
//!   (unless another interface of the node holds it),
//!   and every virtual server of the merged table is the agent's by its
//!   ownership rules ([`Ownership`]): nothing is made that the agent would
//!   not later recognise as its own (and so leak);
//! - every virtual server claimed by two Services is reported as a
//!   conflict, and the merged table keeps the first Service's;
//! - each Service's desired state is the same computed alone
//!   ([`desired_for_service`], what the engine's
//!   per-Service index recomputes) as with all the others.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use netlink_ipvs::{IpvsProtocol, IpvsServiceKey};

use crate::desired::{desired_for_service, node_addresses::nodeport_addresses, DesiredState};
use crate::diff::ownership::Ownership;
use crate::model::cluster::EndpointAddress;
use crate::model::{ClusterState, NodeContext, ObjectRef, ProxySettings, KUBE_IPVS_INTERFACE};

/// The broken rules, one sentence each naming the Service and the virtual
/// server (empty: the state is sound).
pub fn violations(
    state: &DesiredState,
    cluster: &ClusterState,
    node: &NodeContext,
    settings: &ProxySettings,
) -> Vec<String> {
    let mut broken = Vec::new();
    let node_addresses = nodeport_addresses(node, settings);
    let bound = state.bound_addresses();
    for (service_ref, desired) in &state.services {
        let Some(service) = cluster.services().get(service_ref) else {
            broken.push(format!("{service_ref}: desired but not in the cluster"));
            continue;
        };
        let alone = desired_for_service(service_ref, cluster, node, settings);
        if alone.as_ref() != Some(desired) {
            broken.push(format!(
                "{service_ref}: computed alone, its desired state differs"
            ));
        }
        let spec = service.spec.clone().unwrap_or_default();
        let vips: BTreeSet<IpAddr> = spec
            .cluster_ip
            .iter()
            .chain(&spec.cluster_ips)
            .chain(&spec.external_ips)
            .chain(
                service
                    .load_balancer_ingress
                    .iter()
                    .filter_map(|ingress| ingress.ip.as_ref()),
            )
            .filter_map(|text| text.parse().ok())
            .collect();
        let (endpoint_addresses, endpoint_ports) = endpoints_of(cluster, service_ref);
        for (key, entry) in &desired.table {
            let IpvsServiceKey::Inet {
                protocol,
                address,
                port,
            } = *key
            else {
                broken.push(format!("{service_ref}: fwmark virtual server {key}"));
                continue;
            };
            let asked = spec.ports.iter().any(|service_port| {
                protocol_of(service_port.protocol.as_deref()) == Some(protocol)
                    && ((vips.contains(&address) && service_port.port == i32::from(port))
                        || (node_addresses.contains(&address)
                            && service_port.node_port == Some(i32::from(port))))
            });
            if !asked {
                broken.push(format!(
                    "{service_ref}: virtual server {key} is no port of the Service"
                ));
            }
            let held_elsewhere = node
                .local_addresses
                .iter()
                .any(|local| local.address == address && local.interface != KUBE_IPVS_INTERFACE);
            if vips.contains(&address)
                && !held_elsewhere
                && !desired.bound_addresses.contains(&address)
            {
                broken.push(format!(
                    "{service_ref}: virtual server {key}'s address is not wanted on kube-ipvs0"
                ));
            }
            for real_server in entry.real_servers.keys() {
                if !endpoint_addresses.contains(&real_server.address)
                    || !endpoint_ports.contains(&i32::from(real_server.port))
                {
                    broken.push(format!(
                        "{service_ref}: real server {real_server} of {key} is no endpoint of the Service"
                    ));
                }
            }
        }
    }

    let ownership = Ownership::new(settings, bound, &node.local_addresses);
    let merged = state.table();
    for key in merged.keys() {
        if !ownership.owns(key) {
            broken.push(format!(
                "virtual server {key} is not the agent's by its ownership rules"
            ));
        }
    }
    let mut claimed: BTreeMap<IpvsServiceKey, Vec<&ObjectRef>> = BTreeMap::new();
    for (service_ref, desired) in &state.services {
        for key in desired.table.keys() {
            claimed.entry(*key).or_default().push(service_ref);
        }
    }
    for (key, owners) in &claimed {
        let first = owners[0];
        if merged.get(key) != state.services[first].table.get(key) {
            broken.push(format!(
                "virtual server {key}: the merged table does not keep {first}'s"
            ));
        }
        let reported = state
            .conflicts
            .iter()
            .filter(|conflict| conflict.message.contains(&format!("virtual server {key} ")))
            .count();
        if reported < owners.len() - 1 {
            broken.push(format!(
                "virtual server {key}: claimed by {} Services, {reported} conflicts reported",
                owners.len()
            ));
        }
    }
    broken
}

/// The protocol a Service port's `protocol` programs (`None`: one the agent
/// does not program).
fn protocol_of(protocol: Option<&str>) -> Option<IpvsProtocol> {
    match protocol.unwrap_or("TCP") {
        "TCP" => Some(IpvsProtocol::Tcp),
        "UDP" => Some(IpvsProtocol::Udp),
        "SCTP" => Some(IpvsProtocol::Sctp),
        _ => None,
    }
}

/// Every endpoint address and port of `service`'s EndpointSlices and
/// legacy Endpoints.
fn endpoints_of(cluster: &ClusterState, service: &ObjectRef) -> (BTreeSet<IpAddr>, BTreeSet<i32>) {
    let mut addresses = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for slice in cluster.endpoint_slices().values() {
        if slice.service.as_ref() != Some(service) {
            continue;
        }
        ports.extend(slice.ports.iter().filter_map(|port| port.port));
        addresses.extend(slice.endpoints.iter().filter_map(|endpoint| {
            match endpoint.address.as_ref()? {
                EndpointAddress::Ip(address) => Some(*address),
                EndpointAddress::Invalid(_) => None,
            }
        }));
    }
    if let Some(endpoints) = cluster.endpoints().get(service) {
        for subset in endpoints.subsets.iter().flatten() {
            ports.extend(subset.ports.iter().flatten().map(|port| port.port));
            addresses.extend(
                subset
                    .addresses
                    .iter()
                    .flatten()
                    .chain(subset.not_ready_addresses.iter().flatten())
                    .filter_map(|address| address.ip.parse::<IpAddr>().ok()),
            );
        }
    }
    (addresses, ports)
}
