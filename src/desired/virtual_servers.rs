//! Which virtual servers a Service gets, kube-proxy's IPVS way:
//!
//! - one per Service port on each ClusterIP (`spec.clusterIPs`, else
//!   `spec.clusterIP`), each `spec.externalIPs` entry, each
//!   `status.loadBalancer.ingress[].ip` whose `ipMode` is `VIP` or unset,
//!   and, for NodePort and LoadBalancer Services, each node address (see
//!   [`super::node_addresses`]) with the port's `nodePort`;
//! - only addresses of the agent's families (`--ip-family`);
//! - none for headless Services (`clusterIP: None`), ExternalName Services
//!   and Services labelled `service.kubernetes.io/service-proxy-name`
//!   (another proxy's);
//! - scheduler `--ipvs-scheduler`, or the Service's
//!   [`SCHEDULER_ANNOTATION`]; netmask /32 or /128; `sessionAffinity:
//!   ClientIP` makes every virtual server of the Service persistent for
//!   `sessionAffinityConfig.clientIP.timeoutSeconds` (default 10800);
//! - real servers masquerading with weight 1: the port's local endpoints
//!   for the ClusterIPs when `internalTrafficPolicy: Local`, and for the
//!   externalIPs, LoadBalancer IPs and NodePorts when
//!   `externalTrafficPolicy: Local`; the cluster endpoints otherwise;
//! - on `kube-ipvs0`: every ClusterIP, and the externalIPs and
//!   LoadBalancer IPs that no other interface of the node already holds.

use std::collections::BTreeSet;
use std::net::IpAddr;

use netlink_ipvs::{
    IpvsDestination, IpvsForwardingMethod, IpvsProtocol, IpvsService, IpvsServiceKey,
};

use super::endpoints::{collect, select, EndpointSets, PortMatch};
use super::node_addresses::nodeport_addresses;
use super::{port_number, FieldError, ServiceDesired};
use crate::model::cluster::{ClusterState, PrunedService, PrunedServiceSpec};
use crate::model::object_ref::{ObjectRef, SCHEDULER_ANNOTATION};
use crate::model::TableEntry;
use crate::model::KUBE_IPVS_INTERFACE;
use crate::model::{NodeContext, ProxySettings};

/// kube-proxy's default ClientIP affinity timeout (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

/// Which endpoint set a virtual server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Traffic {
    /// ClusterIPs: `internalTrafficPolicy`.
    Internal,
    /// externalIPs, LoadBalancer IPs, NodePorts: `externalTrafficPolicy`.
    External,
}

struct Problems<'a> {
    service: &'a ObjectRef,
    list: Vec<FieldError>,
}

impl Problems<'_> {
    fn add(&mut self, field: impl Into<String>, message: impl std::fmt::Display) {
        self.list
            .push(FieldError::service(self.service, field, message));
    }
}

fn parse_addresses(
    texts: impl IntoIterator<Item = (String, String)>,
    settings: &ProxySettings,
    problems: &mut Problems<'_>,
) -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    for (field, text) in texts {
        match text.parse::<IpAddr>() {
            Ok(address) if settings.ip_family.includes(&address) => {
                if !addresses.contains(&address) {
                    addresses.push(address);
                }
            }
            Ok(_) => {}
            Err(_) => problems.add(field, format!("{text:?} is not an IP address")),
        }
    }
    addresses
}

fn is_valid_scheduler(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn scheduler(
    service: &PrunedService,
    settings: &ProxySettings,
    problems: &mut Problems<'_>,
) -> String {
    match &service.scheduler_annotation {
        Some(name) if is_valid_scheduler(name) => name.clone(),
        Some(name) => {
            problems.add(
                format!("metadata.annotations[{SCHEDULER_ANNOTATION}]"),
                format!(
                    "{name:?} is not a scheduler name; using {:?}",
                    settings.scheduler
                ),
            );
            settings.scheduler.clone()
        }
        None => settings.scheduler.clone(),
    }
}

/// The persistence timeout when `sessionAffinity: ClientIP`.
fn affinity_timeout(spec: &PrunedServiceSpec, problems: &mut Problems<'_>) -> Option<u32> {
    match spec.session_affinity.as_deref() {
        None | Some("None") => None,
        Some("ClientIP") => {
            Some(match spec.client_ip_timeout_seconds {
                None => DEFAULT_AFFINITY_TIMEOUT_SECONDS,
                Some(seconds @ 1..=86400) => seconds as u32,
                Some(seconds) => {
                    problems.add(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        format!("{seconds} is outside 1-86400; using {DEFAULT_AFFINITY_TIMEOUT_SECONDS}"),
                    );
                    DEFAULT_AFFINITY_TIMEOUT_SECONDS
                }
            })
        }
        Some(other) => {
            problems.add(
                "spec.sessionAffinity",
                format!("{other:?} is neither None nor ClientIP; no affinity"),
            );
            None
        }
    }
}

fn protocol(text: &str) -> Option<IpvsProtocol> {
    match text {
        "TCP" => Some(IpvsProtocol::Tcp),
        "UDP" => Some(IpvsProtocol::Udp),
        "SCTP" => Some(IpvsProtocol::Sctp),
        _ => None,
    }
}

/// The desired state of one Service.
pub fn service_desired(
    service_ref: &ObjectRef,
    service: &PrunedService,
    cluster: &ClusterState,
    node: &NodeContext,
    settings: &ProxySettings,
) -> ServiceDesired {
    let mut problems = Problems {
        service: service_ref,
        list: Vec::new(),
    };
    let mut desired = ServiceDesired::default();
    build(
        service_ref,
        service,
        cluster,
        node,
        settings,
        &mut desired,
        &mut problems,
    );
    desired.problems = problems.list;
    desired
}

fn build(
    service_ref: &ObjectRef,
    service: &PrunedService,
    cluster: &ClusterState,
    node: &NodeContext,
    settings: &ProxySettings,
    desired: &mut ServiceDesired,
    problems: &mut Problems<'_>,
) {
    if service.other_proxy {
        return;
    }
    let Some(spec) = service.spec.as_ref() else {
        problems.add("spec", "missing");
        return;
    };
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    let node_ports = match service_type {
        "ExternalName" => return,
        "ClusterIP" => false,
        "NodePort" | "LoadBalancer" => true,
        other => {
            problems.add(
                "spec.type",
                format!(
                    "unknown type {other:?} (ClusterIP, NodePort, LoadBalancer or ExternalName)"
                ),
            );
            return;
        }
    };

    let cluster_ip_texts: Vec<(String, String)> = match &spec.cluster_ips {
        ips if !ips.is_empty() => ips
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("spec.clusterIPs[{i}]"), ip.clone()))
            .collect(),
        _ => spec
            .cluster_ip
            .iter()
            .filter(|ip| !ip.is_empty())
            .map(|ip| ("spec.clusterIP".to_owned(), ip.clone()))
            .collect(),
    };
    if cluster_ip_texts.is_empty() {
        problems.add(
            "spec.clusterIP",
            "not set (the API server assigns it; a manifest must give it)",
        );
        return;
    }
    if cluster_ip_texts.iter().any(|(_, ip)| ip == "None") {
        // Headless: DNS only.
        return;
    }
    let cluster_ips = parse_addresses(cluster_ip_texts, settings, problems);
    let external_ips = parse_addresses(
        spec.external_ips
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("spec.externalIPs[{i}]"), ip.clone())),
        settings,
        problems,
    );
    let load_balancer_ips = parse_addresses(
        service
            .load_balancer_ingress
            .iter()
            .enumerate()
            .filter(|(_, ingress)| matches!(ingress.ip_mode.as_deref(), None | Some("VIP")))
            .filter_map(|(i, ingress)| {
                ingress
                    .ip
                    .as_ref()
                    .map(|ip| (format!("status.loadBalancer.ingress[{i}].ip"), ip.clone()))
            }),
        settings,
        problems,
    );
    let node_addresses: BTreeSet<IpAddr> = if node_ports {
        nodeport_addresses(node, settings)
    } else {
        BTreeSet::new()
    };

    let scheduler = scheduler(service, settings, problems);
    let affinity = affinity_timeout(spec, problems);
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let allocates_node_ports = spec.allocate_load_balancer_node_ports != Some(false);

    for (index, port) in spec.ports.iter().enumerate() {
        let protocol_text = port.protocol.as_deref().unwrap_or("TCP");
        let Some(ipvs_protocol) = protocol(protocol_text) else {
            problems.add(
                format!("spec.ports[{index}].protocol"),
                format!("unsupported protocol {protocol_text:?} (TCP, UDP or SCTP)"),
            );
            continue;
        };
        let Some(service_port) = port_number(port.port) else {
            problems.add(
                format!("spec.ports[{index}].port"),
                format!("{} is not a port number (1-65535)", port.port),
            );
            continue;
        };
        let node_port = if node_ports {
            match port.node_port {
                Some(value) => match port_number(value) {
                    Some(number) => Some(number),
                    None => {
                        problems.add(
                            format!("spec.ports[{index}].nodePort"),
                            format!("{value} is not a port number (1-65535)"),
                        );
                        None
                    }
                },
                None if service_type == "LoadBalancer" && !allocates_node_ports => None,
                None => {
                    problems.add(
                        format!("spec.ports[{index}].nodePort"),
                        "not set (the API server assigns it; a manifest must give it)",
                    );
                    None
                }
            }
        } else {
            None
        };

        let name = port.name.as_deref().unwrap_or("");
        let mut sets: [Option<EndpointSets>; 2] = [None, None];
        let mut endpoints_of = |address: &IpAddr| -> EndpointSets {
            let slot = usize::from(address.is_ipv6());
            sets[slot]
                .get_or_insert_with(|| {
                    let endpoints = collect(
                        service_ref,
                        service,
                        PortMatch {
                            name,
                            protocol: protocol_text,
                            ipv6: address.is_ipv6(),
                        },
                        cluster,
                        &node.name,
                        &mut problems.list,
                    );
                    select(&endpoints)
                })
                .clone()
        };

        let mut virtual_servers: Vec<(IpAddr, u16, Traffic)> = Vec::new();
        virtual_servers.extend(
            cluster_ips
                .iter()
                .map(|ip| (*ip, service_port, Traffic::Internal)),
        );
        virtual_servers.extend(
            external_ips
                .iter()
                .chain(&load_balancer_ips)
                .map(|ip| (*ip, service_port, Traffic::External)),
        );
        if let Some(node_port) = node_port {
            virtual_servers.extend(
                node_addresses
                    .iter()
                    .map(|ip| (*ip, node_port, Traffic::External)),
            );
        }

        for (address, virtual_port, traffic) in virtual_servers {
            let key = IpvsServiceKey::Inet {
                protocol: ipvs_protocol,
                address,
                port: virtual_port,
            };
            if desired.table.contains_key(&key) {
                continue;
            }
            let sets = endpoints_of(&address);
            let local = match traffic {
                Traffic::Internal => internal_local,
                Traffic::External => external_local,
            };
            let chosen = if local { &sets.local } else { &sets.cluster };
            if local && sets.local.is_empty() && !sets.cluster.is_empty() {
                match traffic {
                    Traffic::Internal => desired.no_local_endpoints.internal = true,
                    Traffic::External => desired.no_local_endpoints.external = true,
                }
            }
            let mut ipvs_service = IpvsService::new(key, scheduler.clone());
            if let Some(timeout) = affinity {
                ipvs_service = ipvs_service.persistent(timeout);
            }
            let real_servers = chosen
                .iter()
                .map(|endpoint| {
                    let real = IpvsDestination::new(
                        endpoint.ip(),
                        endpoint.port(),
                        IpvsForwardingMethod::Masquerade,
                        1,
                    );
                    (real.key, real)
                })
                .collect();
            desired.table.insert(
                key,
                TableEntry {
                    service: ipvs_service,
                    real_servers,
                },
            );
        }
    }

    desired.bound_addresses.extend(cluster_ips.iter().copied());
    let held_elsewhere = |address: &IpAddr| {
        node.local_addresses
            .iter()
            .any(|local| local.address == *address && local.interface != KUBE_IPVS_INTERFACE)
    };
    desired.bound_addresses.extend(
        external_ips
            .iter()
            .chain(&load_balancer_ips)
            .filter(|address| !held_elsewhere(address))
            .copied(),
    );
}
