//! The desired state: Kubernetes objects (a [`ClusterState`]) in, the IPVS table and the
//! `kube-ipvs0` addresses out, by kube-proxy's IPVS rules. Pure: no I/O.
//!
//! - [`virtual_servers`]: which virtual servers a Service port gets
//!   (ClusterIPs, externalIPs, LoadBalancer ingress IPs, NodePorts) and
//!   with which scheduler and persistence.
//! - [`node_addresses`]: which node addresses NodePort virtual servers are
//!   made on (`--nodeport-addresses`).
//! - [`endpoints`]: which endpoints become real servers (port matching,
//!   conditions, traffic policies, legacy Endpoints mirroring).
//! - [`health_check`]: the `healthCheckNodePort` a Service needs served
//!   and the local endpoint count it answers with.
//! - [`topology`]: which ready endpoints the node's zone or name selects
//!   from the endpoints' hints (topology-aware routing).
//! - [`netfilter`]: which elements of the agent's nftables sets a Service
//!   needs (masquerade, source ranges, hairpin, the VIP filter's ports).
//!
//! Per-Service scheduler override: the annotation
//! [`SCHEDULER_ANNOTATION`](crate::model::object_ref::SCHEDULER_ANNOTATION) (`ipvs-agent.io/scheduler: wrr`) on a Service
//! picks its scheduler instead of `--ipvs-scheduler`.
//!
//! Every problem names the object and the field ([`FieldError`]); a bad
//! port is skipped with its error while the Service's other ports are
//! still programmed, and one bad Service never stops the others.

pub mod endpoints;
pub mod health_check;
pub mod netfilter;
pub mod node_addresses;
pub mod topology;
pub mod virtual_servers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use netlink_ipvs::IpvsServiceKey;

use crate::model::netfilter::SetElements;
use crate::model::{ClusterState, NodeContext, ObjectRef, ProxySettings, Table};

/// A port number from the API (an `i32`), if it is one (1-65535).
fn port_number(value: i32) -> Option<u16> {
    u16::try_from(value).ok().filter(|port| *port != 0)
}

/// A problem with one field of one object. Displays as
/// `Service default/web: spec.ports[1].protocol: unsupported protocol "ICMP"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {object}: {field}: {message}")]
pub struct FieldError {
    /// The object's kind (`Service`, `EndpointSlice`, `Endpoints`).
    pub kind: &'static str,
    /// `namespace/name`.
    pub object: String,
    /// The field's path (`spec.ports[1].protocol`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// A problem with `field` of the Service `service`.
    pub fn service(
        service: &ObjectRef,
        field: impl Into<String>,
        message: impl fmt::Display,
    ) -> Self {
        Self {
            kind: "Service",
            object: service.to_string(),
            field: field.into(),
            message: message.to_string(),
        }
    }
}

/// The conflict rule, for `plan` and the engine alike: a virtual server
/// claimed by two Services is the first's (by `namespace/name`, or the one
/// programmed first); the other is told so.
pub fn conflict(service: &ObjectRef, key: &IpvsServiceKey, first: &ObjectRef) -> FieldError {
    FieldError::service(
        service,
        "spec",
        format!("virtual server {key} is already {first}'s; not programmed for this Service"),
    )
}

/// The desired state of one Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceDesired {
    /// Its virtual servers with their real servers.
    pub table: Table,
    /// The addresses it needs on `kube-ipvs0`.
    pub bound_addresses: BTreeSet<IpAddr>,
    /// The elements of the agent's nftables sets it needs ([`netfilter`]).
    pub elements: SetElements,
    /// Problems that made parts of it be skipped (the rest is in `table`).
    pub problems: Vec<FieldError>,
    /// Its `healthCheckNodePort` server, if it needs one ([`health_check`]).
    pub health_check: Option<health_check::HealthCheck>,
    /// Whether a Local traffic policy left it without endpoints on this
    /// node although the cluster has some (kube-proxy's
    /// `sync_proxy_rules_no_local_endpoints_total`).
    pub no_local_endpoints: NoLocalEndpoints,
}

/// Which of a Service's traffic policies (`Local`) found no local endpoint
/// while the cluster has usable ones (ready, or serving and terminating):
/// kube-proxy's IPVS proxier counts a Service in
/// `serviceNoLocalEndpointsInternal` / `...External` exactly then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoLocalEndpoints {
    /// `internalTrafficPolicy: Local` (the ClusterIP virtual servers).
    pub internal: bool,
    /// `externalTrafficPolicy: Local` (NodePort, externalIP and
    /// LoadBalancer virtual servers).
    pub external: bool,
}

/// The desired state of one Service of `cluster`: `None` when the Service
/// is not in the cluster state. Parts with problems are skipped and listed
/// in [`ServiceDesired::problems`].
pub fn desired_for_service(
    service_ref: &ObjectRef,
    cluster: &ClusterState,
    node: &NodeContext,
    settings: &ProxySettings,
) -> Option<ServiceDesired> {
    let service = cluster.services().get(service_ref)?;
    Some(virtual_servers::service_desired(
        service_ref,
        service,
        cluster,
        node,
        settings,
    ))
}

/// The desired state of every Service.
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    /// Per Service.
    pub services: BTreeMap<ObjectRef, ServiceDesired>,
    /// Virtual servers claimed by two Services: the first (by namespace and
    /// name) keeps it.
    pub conflicts: Vec<FieldError>,
}

impl DesiredState {
    /// Every problem found, Service by Service.
    pub fn problems(&self) -> Vec<FieldError> {
        self.services
            .values()
            .flat_map(|service| service.problems.iter().cloned())
            .chain(self.conflicts.iter().cloned())
            .collect()
    }

    /// The merged table (conflicting virtual servers: the first Service's).
    pub fn table(&self) -> Table {
        let mut table = Table::new();
        for desired in self.services.values() {
            for (key, entry) in &desired.table {
                table.entry(*key).or_insert_with(|| entry.clone());
            }
        }
        table
    }

    /// Every address wanted on `kube-ipvs0`.
    pub fn bound_addresses(&self) -> BTreeSet<IpAddr> {
        self.services
            .values()
            .flat_map(|service| service.bound_addresses.iter().copied())
            .collect()
    }
}

/// The desired state of every Service of `cluster`.
pub fn desired_state(
    cluster: &ClusterState,
    node: &NodeContext,
    settings: &ProxySettings,
) -> DesiredState {
    let mut state = DesiredState::default();
    let mut owners: BTreeMap<IpvsServiceKey, ObjectRef> = BTreeMap::new();
    for (service_ref, service) in cluster.services() {
        let desired =
            virtual_servers::service_desired(service_ref, service, cluster, node, settings);
        for key in desired.table.keys() {
            match owners.get(key) {
                Some(first) => state.conflicts.push(conflict(service_ref, key, first)),
                None => {
                    owners.insert(*key, service_ref.clone());
                }
            }
        }
        state.services.insert(service_ref.clone(), desired);
    }
    state
}
