//! The desired state of arbitrary Services, EndpointSlices and legacy
//! Endpoints: objects are built from the input out of small pools of
//! names, addresses, ports and keywords (so that they collide: two
//! Services on one ClusterIP, a slice of another Service, an externalIP
//! that is the node's own address, ports out of range, words the API does
//! not allow), decoded into the API types as the watchers decode them,
//! and the computed state must break none of `ipvs_agent::invariants`.
#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use ipvs_agent::model::ClusterState;
use ipvs_agent_fuzz::{check, node, settings};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const NAMES: &[&str] = &["web", "dns", "db"];
const NAMESPACES: &[&str] = &["default", "kube-system"];
const ADDRESSES: &[&str] = &[
    "10.96.0.10",
    "10.96.0.11",
    "192.168.50.11",
    "192.168.50.12",
    "203.0.113.7",
    "10.244.1.5",
    "10.244.2.6",
    "127.0.0.1",
    "0.0.0.0",
    "fd00::11",
    "fd10:1::5",
    "2001:db8::a",
    "::1",
    "::ffff:10.96.0.10",
    "None",
    "",
    "10.96.0.300",
    "web.example.com",
];
const PORTS: &[i64] = &[
    80, 443, 53, 8080, 30000, 30080, 32767, 0, -5, 65535, 65536, 1,
];
const PROTOCOLS: &[Option<&str>] = &[None, Some("TCP"), Some("UDP"), Some("SCTP"), Some("ICMP")];
const TYPES: &[Option<&str>] = &[
    None,
    Some("ClusterIP"),
    Some("NodePort"),
    Some("LoadBalancer"),
    Some("ExternalName"),
    Some("Bogus"),
];
const POLICIES: &[Option<&str>] = &[None, Some("Cluster"), Some("Local"), Some("Bogus")];
const SCHEDULERS: &[Option<&str>] = &[None, Some("wrr"), Some("sh"), Some(""), Some("No Such")];
const RANGES: &[&str] = &[
    "10.0.0.0/8",
    "192.168.50.100/32",
    "fd00::/64",
    "not a range",
];
const PORT_NAMES: &[Option<&str>] = &[None, Some(""), Some("http"), Some("dns")];
const ZONES: &[Option<&str>] = &[None, Some("zone-a"), Some("zone-b")];
const NODES: &[Option<&str>] = &[None, Some("node1"), Some("node2")];

fn pick<'a, T>(u: &mut Unstructured, pool: &'a [T]) -> Result<&'a T> {
    u.choose(pool)
}

/// One of `pool`, or (also for its `None`) the field left out.
fn some<T: serde::Serialize>(u: &mut Unstructured, pool: &[Option<T>]) -> Result<Value> {
    let value = pick(u, pool)?;
    Ok(match value {
        Some(value) if bool::arbitrary(u)? => json!(value),
        _ => Value::Null,
    })
}

/// One of `pool`, or the field left out.
fn some_of<T: serde::Serialize>(u: &mut Unstructured, pool: &[T]) -> Result<Value> {
    let value = pick(u, pool)?;
    Ok(if bool::arbitrary(u)? {
        json!(value)
    } else {
        Value::Null
    })
}

fn list(
    u: &mut Unstructured,
    most: usize,
    mut item: impl FnMut(&mut Unstructured) -> Result<Value>,
) -> Result<Value> {
    let count = u.int_in_range(0..=most)?;
    (0..count)
        .map(|_| item(u))
        .collect::<Result<Vec<_>>>()
        .map(Value::Array)
}

/// Drops the `null` members, as the API server omits unset fields.
fn object(members: Vec<(&str, Value)>) -> Value {
    Value::Object(
        members
            .into_iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(name, value)| (name.to_string(), value))
            .collect::<Map<_, _>>(),
    )
}

fn address(u: &mut Unstructured) -> Result<Value> {
    Ok(json!(pick(u, ADDRESSES)?))
}

fn service(u: &mut Unstructured) -> Result<Value> {
    let ports = list(u, 3, |u| {
        Ok(object(vec![
            ("name", some(u, PORT_NAMES)?),
            ("protocol", some(u, PROTOCOLS)?),
            ("port", json!(pick(u, PORTS)?)),
            ("nodePort", some_of(u, PORTS)?),
        ]))
    })?;
    let cluster_ip = pick(u, ADDRESSES)?;
    let cluster_ips = if bool::arbitrary(u)? {
        json!([cluster_ip, pick(u, ADDRESSES)?])
    } else {
        Value::Null
    };
    let affinity = if bool::arbitrary(u)? {
        json!({"clientIP": {"timeoutSeconds": pick(u, &[-1, 0, 1, 10800, 86400, 86401])?}})
    } else {
        Value::Null
    };
    let annotations = match pick(u, SCHEDULERS)? {
        Some(name) => json!({"ipvs-agent.io/scheduler": name}),
        None => Value::Null,
    };
    let labels = if u.ratio(1, 8)? {
        json!({"service.kubernetes.io/service-proxy-name": "other"})
    } else {
        Value::Null
    };
    let ingress = list(u, 2, |u| {
        Ok(object(vec![
            ("ip", address(u)?),
            ("ipMode", some_of(u, &["VIP", "Proxy", "Bogus"])?),
        ]))
    })?;
    let selector = if bool::arbitrary(u)? {
        json!({"app": "x"})
    } else {
        Value::Null
    };
    Ok(object(vec![
        ("apiVersion", json!("v1")),
        ("kind", json!("Service")),
        (
            "metadata",
            object(vec![
                ("name", json!(pick(u, NAMES)?)),
                ("namespace", json!(pick(u, NAMESPACES)?)),
                ("annotations", annotations),
                ("labels", labels),
            ]),
        ),
        (
            "spec",
            object(vec![
                ("type", some(u, TYPES)?),
                ("clusterIP", some_of(u, &[cluster_ip])?),
                ("clusterIPs", cluster_ips),
                ("externalIPs", list(u, 2, address)?),
                ("ports", ports),
                ("selector", selector),
                ("sessionAffinity", some_of(u, &["ClientIP", "None"])?),
                ("sessionAffinityConfig", affinity),
                ("internalTrafficPolicy", some(u, POLICIES)?),
                ("externalTrafficPolicy", some(u, POLICIES)?),
                ("allocateLoadBalancerNodePorts", some_of(u, &[true, false])?),
                (
                    "loadBalancerSourceRanges",
                    list(u, 2, |u| Ok(json!(pick(u, RANGES)?)))?,
                ),
                ("healthCheckNodePort", some_of(u, PORTS)?),
            ]),
        ),
        (
            "status",
            json!({"loadBalancer": object(vec![("ingress", ingress)])}),
        ),
    ]))
}

fn endpoint(u: &mut Unstructured) -> Result<Value> {
    let hints = if u.ratio(1, 4)? {
        json!({
            "forZones": list(u, 2, |u| Ok(json!({"name": pick(u, ZONES)?.unwrap_or("")})))?,
            "forNodes": list(u, 1, |u| Ok(json!({"name": pick(u, NODES)?.unwrap_or("")})))?,
        })
    } else {
        Value::Null
    };
    Ok(object(vec![
        ("addresses", list(u, 2, address)?),
        (
            "conditions",
            object(vec![
                ("ready", some_of(u, &[true, false])?),
                ("serving", some_of(u, &[true, false])?),
                ("terminating", some_of(u, &[true, false])?),
            ]),
        ),
        ("nodeName", some(u, NODES)?),
        ("zone", some(u, ZONES)?),
        ("hints", hints),
    ]))
}

fn slice(u: &mut Unstructured, index: usize) -> Result<Value> {
    let labels = if u.ratio(7, 8)? {
        json!({"kubernetes.io/service-name": pick(u, NAMES)?})
    } else {
        Value::Null
    };
    Ok(object(vec![
        ("apiVersion", json!("discovery.k8s.io/v1")),
        ("kind", json!("EndpointSlice")),
        (
            "metadata",
            object(vec![
                ("name", json!(format!("slice-{index}"))),
                ("namespace", json!(pick(u, NAMESPACES)?)),
                ("labels", labels),
            ]),
        ),
        (
            "addressType",
            json!(pick(u, &["IPv4", "IPv6", "FQDN", "Bogus"])?),
        ),
        (
            "ports",
            list(u, 3, |u| {
                Ok(object(vec![
                    ("name", some(u, PORT_NAMES)?),
                    ("protocol", some(u, PROTOCOLS)?),
                    ("port", some_of(u, PORTS)?),
                ]))
            })?,
        ),
        ("endpoints", list(u, 4, endpoint)?),
    ]))
}

fn legacy_endpoints(u: &mut Unstructured) -> Result<Value> {
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": pick(u, NAMES)?, "namespace": pick(u, NAMESPACES)?},
        "subsets": list(u, 2, |u| Ok(json!({
            "addresses": list(u, 2, |u| Ok(json!({"ip": pick(u, ADDRESSES)?})))?,
            "notReadyAddresses": list(u, 1, |u| Ok(json!({"ip": pick(u, ADDRESSES)?})))?,
            "ports": list(u, 2, |u| Ok(object(vec![
                ("name", some(u, PORT_NAMES)?),
                ("protocol", some(u, PROTOCOLS)?),
                ("port", json!(pick(u, PORTS)?)),
            ])))?,
        })))?,
    }))
}

fn cluster(u: &mut Unstructured) -> Result<ClusterState> {
    let mut cluster = ClusterState::default();
    for _ in 0..u.int_in_range(0..=4)? {
        if let Ok(service) = serde_json::from_value::<Service>(service(u)?) {
            cluster.insert_service(service);
        }
    }
    for index in 0..u.int_in_range(0..=4)? {
        if let Ok(slice) = serde_json::from_value::<EndpointSlice>(slice(u, index)?) {
            cluster.insert_slice(&slice);
        }
    }
    if u.ratio(1, 4)? {
        if let Ok(endpoints) = serde_json::from_value::<Endpoints>(legacy_endpoints(u)?) {
            cluster.insert_endpoints(endpoints);
        }
    }
    Ok(cluster)
}

fuzz_target!(|bytes: &[u8]| {
    let mut u = Unstructured::new(bytes);
    let Ok(family) = u8::arbitrary(&mut u) else {
        return;
    };
    let Ok(zone) = pick(&mut u, ZONES).copied() else {
        return;
    };
    let Ok(cluster) = cluster(&mut u) else {
        return;
    };
    check(&cluster, &node(zone), &settings(family));
});
