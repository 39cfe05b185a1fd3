//! The `healthCheckNodePort` a Service needs served on this node, and the
//! count it reports, by kube-proxy's rules
//! (`pkg/proxy/service.go`, `pkg/proxy/endpointschangetracker.go`
//! `LocalReadyEndpoints`, Kubernetes 1.32):
//!
//! - only a `type: LoadBalancer` Service with `externalTrafficPolicy:
//!   Local` has one (`NeedsHealthCheck`);
//! - the count is the number of distinct endpoint IPs that are ready and
//!   on this node, over every port of the Service. Serving but
//!   terminating endpoints do not count: a node left with only
//!   terminating endpoints fails the check, so load balancers move away
//!   while those endpoints finish.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::endpoints::{collect, PortMatch};
use super::{port_number, FieldError};
use crate::model::cluster::{ClusterState, PrunedService, PrunedServiceSpec};
use crate::model::{ObjectRef, ProxySettings};

/// A health-check port and what it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    /// `spec.healthCheckNodePort`.
    pub port: u16,
    /// Ready endpoints of the Service on this node (distinct IPs).
    pub local_endpoints: usize,
}

/// The health check of `service`, if it needs one. A
/// `healthCheckNodePort` that is not a port number gives none (the
/// problem is reported with the nftables element it would have had).
pub fn health_check(
    service_ref: &ObjectRef,
    service: &PrunedService,
    spec: &PrunedServiceSpec,
    cluster: &ClusterState,
    node_name: &str,
    settings: &ProxySettings,
) -> Option<HealthCheck> {
    let needs_one = spec.type_.as_deref() == Some("LoadBalancer")
        && spec.external_traffic_policy.as_deref() == Some("Local");
    if !needs_one {
        return None;
    }
    let port = port_number(spec.health_check_node_port?)?;
    let families = [false, true].into_iter().filter(|ipv6| {
        let probe: IpAddr = if *ipv6 {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        };
        settings.ip_family.includes(&probe)
    });
    let mut local_ready: BTreeSet<IpAddr> = BTreeSet::new();
    // Problems in the slices are reported by the virtual servers' pass.
    let mut ignored: Vec<FieldError> = Vec::new();
    for ipv6 in families {
        for port in &spec.ports {
            let port_match = PortMatch {
                name: port.name.as_deref().unwrap_or(""),
                protocol: port.protocol.as_deref().unwrap_or("TCP"),
                ipv6,
            };
            let endpoints = collect(
                service_ref,
                service,
                port_match,
                cluster,
                node_name,
                &mut ignored,
            );
            local_ready.extend(
                endpoints
                    .iter()
                    .filter(|(_, state)| state.local && state.ready)
                    .map(|(address, _)| address.ip()),
            );
        }
    }
    Some(HealthCheck {
        port,
        local_endpoints: local_ready.len(),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::{json, Value};

    use super::*;
    use crate::model::settings::IpFamilyMode;

    fn cluster(spec: Value, endpoints: Value) -> ClusterState {
        let service: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080},
                      {"name": "dns", "protocol": "UDP", "port": 53}],
            "endpoints": endpoints,
        }))
        .unwrap();
        let mut cluster = ClusterState::default();
        cluster.insert_service(service);
        cluster.insert_slice(&slice);
        cluster
    }

    fn check(cluster: &ClusterState, settings: &ProxySettings) -> Option<HealthCheck> {
        let service_ref = ObjectRef::new("default", "web");
        let service = &cluster.services()[&service_ref];
        let spec = service.spec.as_ref().unwrap();
        health_check(&service_ref, service, spec, cluster, "node1", settings)
    }

    #[test]
    fn health_checks_by_kube_proxys_rules() {
        let lb_local = json!({
            "type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 32000, "clusterIP": "10.96.0.10",
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "nodePort": 30080},
                      {"name": "dns", "protocol": "UDP", "port": 53, "nodePort": 30053}],
        });
        let endpoint = |ip: &str, node: &str, conditions: Value| json!({"addresses": [ip], "nodeName": node, "conditions": conditions});
        let ready = json!({"ready": true});
        let terminating = json!({"ready": false, "serving": true, "terminating": true});
        let not_ready = json!({"ready": false});
        let with = |changes: Value| {
            let mut spec = lb_local.clone();
            for (key, value) in changes.as_object().unwrap() {
                spec[key] = value.clone();
            }
            spec
        };
        let cases: Vec<(&str, Value, Value, Option<usize>)> = vec![
            (
                "two local ready endpoints, one remote: two (distinct IPs over both ports)",
                lb_local.clone(),
                json!([
                    endpoint("10.244.1.2", "node1", ready.clone()),
                    endpoint("10.244.1.3", "node1", json!({})),
                    endpoint("10.244.2.2", "node2", ready.clone())
                ]),
                Some(2),
            ),
            (
                "only remote endpoints: zero",
                lb_local.clone(),
                json!([endpoint("10.244.2.2", "node2", ready.clone())]),
                Some(0),
            ),
            (
                "local but terminating or not ready: zero (the check fails, LBs move away)",
                lb_local.clone(),
                json!([
                    endpoint("10.244.1.2", "node1", terminating.clone()),
                    endpoint("10.244.1.3", "node1", not_ready.clone())
                ]),
                Some(0),
            ),
            (
                "externalTrafficPolicy Cluster: no health check",
                with(json!({"externalTrafficPolicy": "Cluster"})),
                json!([endpoint("10.244.1.2", "node1", ready.clone())]),
                None,
            ),
            (
                "type NodePort with Local policy: no health check",
                with(json!({"type": "NodePort"})),
                json!([endpoint("10.244.1.2", "node1", ready.clone())]),
                None,
            ),
            (
                "healthCheckNodePort not a port: none",
                with(json!({"healthCheckNodePort": 70000})),
                json!([endpoint("10.244.1.2", "node1", ready.clone())]),
                None,
            ),
        ];
        let settings = ProxySettings::default();
        for (what, spec, endpoints, expected) in cases {
            let found = check(&cluster(spec, endpoints), &settings);
            assert_eq!(found.map(|check| check.local_endpoints), expected, "{what}");
            if let Some(found) = found {
                assert_eq!(found.port, 32000, "{what}");
            }
        }
        let ipv6_only = ProxySettings {
            ip_family: IpFamilyMode::Ipv6,
            ..ProxySettings::default()
        };
        let ipv4_endpoints = cluster(
            lb_local.clone(),
            json!([endpoint("10.244.1.2", "node1", ready.clone())]),
        );
        assert_eq!(
            check(&ipv4_endpoints, &ipv6_only).map(|check| check.local_endpoints),
            Some(0),
            "an IPv6 agent counts only IPv6 endpoints, as kube-proxy's IPv6 proxier"
        );
    }
}
