//! Table tests of the desired state, one per kube-proxy rule.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use netlink_ipvs::{IpvsProtocol, IpvsServiceFlags, IpvsServiceKey};
use serde_json::{json, Value};

use super::*;
use crate::model::settings::{IpFamilyMode, NodePortAddresses};
use crate::model::{LocalAddress, NodeContext, ProxySettings};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn service(spec: Value) -> Service {
    service_with_meta(json!({"name": "web", "namespace": "default"}), spec)
}

fn service_with_meta(metadata: Value, spec: Value) -> Service {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}),
    )
    .unwrap()
}

fn slice(name: &str, address_type: &str, ports: Value, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    }))
    .unwrap()
}

fn web_ref() -> ObjectRef {
    ObjectRef::new("default", "web")
}

fn node() -> NodeContext {
    NodeContext {
        name: "node1".into(),
        zone: None,
        primary_addresses: vec![ip("192.168.1.5")],
        local_addresses: vec![
            LocalAddress {
                address: ip("192.168.1.5"),
                interface: "eth0".into(),
            },
            LocalAddress {
                address: ip("10.0.0.5"),
                interface: "eth1".into(),
            },
            LocalAddress {
                address: ip("fd00::5"),
                interface: "eth0".into(),
            },
            LocalAddress {
                address: ip("fe80::1"),
                interface: "eth0".into(),
            },
            LocalAddress {
                address: ip("127.0.0.1"),
                interface: "lo".into(),
            },
            LocalAddress {
                address: ip("10.96.0.1"),
                interface: "kube-ipvs0".into(),
            },
        ],
    }
}

fn compute(cluster: &ClusterState, settings: &ProxySettings) -> ServiceDesired {
    desired_for_service(&web_ref(), cluster, &node(), settings).expect("the Service exists")
}

fn cluster_of(service: Service, slices: Vec<EndpointSlice>) -> ClusterState {
    let mut cluster = ClusterState::default();
    cluster.insert_service(service);
    for slice in slices {
        cluster.insert_slice(&slice);
    }
    cluster
}

/// `(virtual server, real servers)` as strings, each level sorted as
/// strings, for readable assertions.
fn summary(desired: &ServiceDesired) -> Vec<(String, Vec<String>)> {
    let mut summary: Vec<(String, Vec<String>)> = desired
        .table
        .iter()
        .map(|(key, entry)| {
            let mut reals: Vec<String> = entry
                .real_servers
                .keys()
                .map(|real| SocketAddr::new(real.address, real.port).to_string())
                .collect();
            reals.sort();
            (key.to_string(), reals)
        })
        .collect();
    summary.sort();
    summary
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

fn keys(desired: &ServiceDesired) -> BTreeSet<String> {
    desired.table.keys().map(ToString::to_string).collect()
}

fn ready_endpoint(address: &str) -> Value {
    json!({"addresses": [address], "conditions": {"ready": true}, "nodeName": "node2"})
}

fn http_port(port: u16) -> Value {
    json!([{"name": "http", "protocol": "TCP", "port": port}])
}

fn basic_spec() -> Value {
    json!({"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]})
}

#[test]
fn cluster_ip_port_gets_a_virtual_server_with_ready_endpoints() {
    let cluster = cluster_of(
        service(basic_spec()),
        vec![slice(
            "web-1",
            "IPv4",
            http_port(8080),
            json!([ready_endpoint("10.244.0.1"), ready_endpoint("10.244.0.2")]),
        )],
    );
    let desired = compute(&cluster, &ProxySettings::default());
    assert_eq!(
        summary(&desired),
        sorted(vec![(
            "TCP 10.96.0.10:80".to_owned(),
            vec!["10.244.0.1:8080".to_owned(), "10.244.0.2:8080".to_owned()]
        )])
    );
    let entry = desired.table.values().next().unwrap();
    assert_eq!(entry.service.scheduler, "rr");
    assert!(!entry.service.is_persistent());
    assert_eq!(entry.service.netmask.0, u32::MAX, "netmask /32");
    let real = entry.real_servers.values().next().unwrap();
    assert_eq!(
        (real.weight, real.forwarding),
        (1, netlink_ipvs::IpvsForwardingMethod::Masquerade)
    );
    assert_eq!(desired.bound_addresses, [ip("10.96.0.10")].into());
    assert!(desired.problems.is_empty(), "{:?}", desired.problems);
}

#[test]
fn ports_match_by_name_and_protocol_and_take_the_slice_port_number() {
    let spec = json!({
        "clusterIP": "10.96.0.10",
        "ports": [
            {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": "dns"},
            {"name": "dns-tcp", "protocol": "TCP", "port": 53, "targetPort": "dns-tcp"},
        ],
    });
    // A named targetPort resolved differently per pod: two slices.
    let slices = vec![
        slice(
            "web-1",
            "IPv4",
            json!([{"name": "dns", "protocol": "UDP", "port": 5353}, {"name": "dns-tcp", "protocol": "TCP", "port": 5353}]),
            json!([ready_endpoint("10.244.0.1")]),
        ),
        slice(
            "web-2",
            "IPv4",
            json!([{"name": "dns", "protocol": "UDP", "port": 1053}, {"name": "dns", "protocol": "TCP", "port": 9999}]),
            json!([ready_endpoint("10.244.0.2")]),
        ),
    ];
    let desired = compute(
        &cluster_of(service(spec), slices),
        &ProxySettings::default(),
    );
    assert_eq!(
        summary(&desired),
        sorted(vec![
            (
                "TCP 10.96.0.10:53".to_owned(),
                vec!["10.244.0.1:5353".to_owned()]
            ),
            (
                "UDP 10.96.0.10:53".to_owned(),
                vec!["10.244.0.1:5353".to_owned(), "10.244.0.2:1053".to_owned()]
            ),
        ]),
        "the TCP port named dns in web-2 does not match the UDP port dns, nor dns-tcp"
    );
}

#[test]
fn endpoint_conditions_and_terminating_fallback() {
    let endpoints = json!([
        {"addresses": ["10.244.0.1"], "conditions": {}},
        {"addresses": ["10.244.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true}},
        {"addresses": ["10.244.0.3"], "conditions": {"ready": false, "serving": false, "terminating": true}},
        {"addresses": ["10.244.0.4"], "conditions": {"ready": false}},
    ]);
    let cluster = cluster_of(
        service(basic_spec()),
        vec![slice("web-1", "IPv4", http_port(8080), endpoints)],
    );
    assert_eq!(
        summary(&compute(&cluster, &ProxySettings::default()))[0].1,
        vec!["10.244.0.1:8080"],
        "ready unset counts as ready; terminating ones are not used while one is ready"
    );

    let only_terminating = json!([
        {"addresses": ["10.244.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true}},
        {"addresses": ["10.244.0.3"], "conditions": {"ready": false, "serving": false, "terminating": true}},
        {"addresses": ["10.244.0.5"], "conditions": {"ready": false, "terminating": true}},
    ]);
    let cluster = cluster_of(
        service(basic_spec()),
        vec![slice("web-1", "IPv4", http_port(8080), only_terminating)],
    );
    assert_eq!(
        summary(&compute(&cluster, &ProxySettings::default()))[0].1,
        vec!["10.244.0.2:8080", "10.244.0.5:8080"],
        "no ready endpoint: serving (unset = true) and terminating ones serve"
    );
}

#[test]
fn duplicate_endpoints_across_slices_merge_ready_wins() {
    let slices = vec![
        slice(
            "web-1",
            "IPv4",
            http_port(8080),
            json!([{"addresses": ["10.244.0.1"], "conditions": {"ready": false, "serving": false}}]),
        ),
        slice(
            "web-2",
            "IPv4",
            http_port(8080),
            json!([{"addresses": ["10.244.0.1"], "conditions": {"ready": true}}, {"addresses": ["10.244.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true}}]),
        ),
    ];
    let desired = compute(
        &cluster_of(service(basic_spec()), slices),
        &ProxySettings::default(),
    );
    assert_eq!(summary(&desired)[0].1, vec!["10.244.0.1:8080"]);
}

#[test]
fn local_policies_without_local_endpoints_are_flagged() {
    let spec = json!({
        "type": "NodePort",
        "clusterIP": "10.96.0.10",
        "internalTrafficPolicy": "Local",
        "externalTrafficPolicy": "Local",
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
    });
    let settings = ProxySettings {
        nodeport_addresses: NodePortAddresses {
            cidrs: vec!["192.168.1.0/24".parse().unwrap()],
            primary: false,
        },
        ..ProxySettings::default()
    };
    let on = |node: &str| json!([{"addresses": ["10.244.0.2"], "conditions": {"ready": true}, "nodeName": node}]);
    let cases = [
        ("only another node's endpoint", on("node2"), (true, true)),
        ("a local endpoint", on("node1"), (false, false)),
        ("no endpoint at all", json!([]), (false, false)),
    ];
    for (what, endpoints, (internal, external)) in cases {
        let desired = compute(
            &cluster_of(
                service(spec.clone()),
                vec![slice("web-1", "IPv4", http_port(8080), endpoints)],
            ),
            &settings,
        );
        assert_eq!(
            desired.no_local_endpoints,
            crate::desired::NoLocalEndpoints { internal, external },
            "{what}"
        );
    }
}

#[test]
fn traffic_policies_local_use_local_endpoints() {
    let endpoints = json!([
        {"addresses": ["10.244.0.1"], "conditions": {"ready": true}, "nodeName": "node1"},
        {"addresses": ["10.244.0.2"], "conditions": {"ready": true}, "nodeName": "node2"},
        {"addresses": ["10.244.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}, "nodeName": "node1"},
    ]);
    let spec = json!({
        "type": "NodePort",
        "clusterIP": "10.96.0.10",
        "externalIPs": ["203.0.113.7"],
        "internalTrafficPolicy": "Local",
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
    });
    let settings = ProxySettings {
        nodeport_addresses: NodePortAddresses {
            cidrs: vec!["192.168.1.0/24".parse().unwrap()],
            primary: false,
        },
        ..ProxySettings::default()
    };
    let desired = compute(
        &cluster_of(
            service(spec),
            vec![slice("web-1", "IPv4", http_port(8080), endpoints.clone())],
        ),
        &settings,
    );
    assert_eq!(
        summary(&desired),
        sorted(vec![
            (
                "TCP 192.168.1.5:30080".to_owned(),
                vec!["10.244.0.1:8080".to_owned(), "10.244.0.2:8080".to_owned()]
            ),
            (
                "TCP 203.0.113.7:80".to_owned(),
                vec!["10.244.0.1:8080".to_owned(), "10.244.0.2:8080".to_owned()]
            ),
            (
                "TCP 10.96.0.10:80".to_owned(),
                vec!["10.244.0.1:8080".to_owned()]
            ),
        ]),
        "internalTrafficPolicy: Local: only the ClusterIP uses local endpoints"
    );

    let spec = json!({
        "type": "NodePort",
        "clusterIP": "10.96.0.10",
        "externalIPs": ["203.0.113.7"],
        "externalTrafficPolicy": "Local",
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
    });
    let desired = compute(
        &cluster_of(
            service(spec),
            vec![slice("web-1", "IPv4", http_port(8080), endpoints)],
        ),
        &settings,
    );
    assert_eq!(
        summary(&desired),
        sorted(vec![
            (
                "TCP 192.168.1.5:30080".to_owned(),
                vec!["10.244.0.1:8080".to_owned()]
            ),
            (
                "TCP 203.0.113.7:80".to_owned(),
                vec!["10.244.0.1:8080".to_owned()]
            ),
            (
                "TCP 10.96.0.10:80".to_owned(),
                vec!["10.244.0.1:8080".to_owned(), "10.244.0.2:8080".to_owned()]
            ),
        ]),
        "externalTrafficPolicy: Local: NodePort and externalIP use local endpoints"
    );

    let only_terminating_local = json!([
        {"addresses": ["10.244.0.2"], "conditions": {"ready": true}, "nodeName": "node2"},
        {"addresses": ["10.244.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}, "nodeName": "node1"},
    ]);
    let spec = json!({"clusterIP": "10.96.0.10", "internalTrafficPolicy": "Local", "ports": [{"name": "http", "port": 80}]});
    let desired = compute(
        &cluster_of(
            service(spec),
            vec![slice(
                "web-1",
                "IPv4",
                http_port(8080),
                only_terminating_local,
            )],
        ),
        &settings,
    );
    assert_eq!(
        summary(&desired)[0].1,
        vec!["10.244.0.3:8080"],
        "local falls back to local serving+terminating"
    );
}

#[test]
fn nodeport_on_every_eligible_node_address_or_the_filtered_ones() {
    let spec = json!({"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
    let cluster = cluster_of(service(spec), vec![]);
    let all = compute(&cluster, &ProxySettings::default());
    assert_eq!(
        keys(&all),
        [
            "TCP 10.0.0.5:30080",
            "TCP 10.96.0.10:80",
            "TCP 192.168.1.5:30080"
        ]
        .map(String::from)
        .into(),
        "every IPv4 local address except loopback and kube-ipvs0's"
    );
    let filtered = ProxySettings {
        nodeport_addresses: NodePortAddresses {
            cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            primary: false,
        },
        ..ProxySettings::default()
    };
    assert_eq!(
        keys(&compute(&cluster, &filtered)),
        ["TCP 10.0.0.5:30080", "TCP 10.96.0.10:80"]
            .map(String::from)
            .into()
    );
    let primary = ProxySettings {
        nodeport_addresses: NodePortAddresses {
            cidrs: vec![],
            primary: true,
        },
        ..ProxySettings::default()
    };
    assert_eq!(
        keys(&compute(&cluster, &primary)),
        ["TCP 10.96.0.10:80", "TCP 192.168.1.5:30080"]
            .map(String::from)
            .into()
    );
    let ipv6 = ProxySettings {
        ip_family: IpFamilyMode::Ipv6,
        ..ProxySettings::default()
    };
    let spec6 = json!({"type": "NodePort", "clusterIP": "fd00:96::10", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
    assert_eq!(
        keys(&compute(&cluster_of(service(spec6), vec![]), &ipv6)),
        ["TCP [fd00:96::10]:80", "TCP [fd00::5]:30080"]
            .map(String::from)
            .into(),
        "IPv6: link-local fe80::1 is never a node address"
    );
    assert!(
        all.bound_addresses
            .iter()
            .all(|address| *address == ip("10.96.0.10")),
        "node addresses are never bound"
    );
}

#[test]
fn load_balancer_ingress_vip_or_unset_ip_mode_only() {
    let mut svc = service(json!({
        "type": "LoadBalancer",
        "clusterIP": "10.96.0.10",
        "allocateLoadBalancerNodePorts": false,
        "ports": [{"name": "http", "port": 80}],
    }));
    svc.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [
        {"ip": "203.0.113.1"},
        {"ip": "203.0.113.2", "ipMode": "VIP"},
        {"ip": "203.0.113.3", "ipMode": "Proxy"},
        {"hostname": "lb.example.com"},
    ]}}))
    .unwrap();
    let desired = compute(&cluster_of(svc, vec![]), &ProxySettings::default());
    assert_eq!(
        keys(&desired),
        [
            "TCP 10.96.0.10:80",
            "TCP 203.0.113.1:80",
            "TCP 203.0.113.2:80"
        ]
        .map(String::from)
        .into()
    );
    assert!(
        desired.problems.is_empty(),
        "no nodePort is fine when not allocated: {:?}",
        desired.problems
    );
    assert_eq!(
        desired.bound_addresses,
        [ip("10.96.0.10"), ip("203.0.113.1"), ip("203.0.113.2")].into()
    );
}

#[test]
fn nothing_for_headless_externalname_or_another_proxys_services() {
    let headless = service(json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}));
    let external_name = service(json!({"type": "ExternalName", "externalName": "www.baidu.com"}));
    let other_proxy = service_with_meta(
        json!({"name": "web", "namespace": "default", "labels": {"service.kubernetes.io/service-proxy-name": "cilium"}}),
        basic_spec(),
    );
    for (what, svc) in [
        ("headless", headless),
        ("ExternalName", external_name),
        ("other proxy", other_proxy),
    ] {
        let desired = compute(
            &cluster_of(
                svc,
                vec![slice(
                    "web-1",
                    "IPv4",
                    http_port(8080),
                    json!([ready_endpoint("10.244.0.1")]),
                )],
            ),
            &ProxySettings::default(),
        );
        assert_eq!(desired, ServiceDesired::default(), "{what}");
    }
}

#[test]
fn families_single_and_dual_stack() {
    let spec = json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:96::10"], "externalIPs": ["203.0.113.7", "2001:db8::7"], "ports": [{"name": "http", "port": 80}]});
    let slices = vec![
        slice(
            "web-4",
            "IPv4",
            http_port(8080),
            json!([ready_endpoint("10.244.0.1")]),
        ),
        slice(
            "web-6",
            "IPv6",
            http_port(8080),
            json!([ready_endpoint("fd00:244::1")]),
        ),
        slice(
            "web-f",
            "FQDN",
            http_port(8080),
            json!([ready_endpoint("pod.example.com")]),
        ),
    ];
    let cluster = cluster_of(service(spec), slices);
    let v4 = compute(&cluster, &ProxySettings::default());
    assert_eq!(
        summary(&v4),
        sorted(vec![
            (
                "TCP 203.0.113.7:80".to_owned(),
                vec!["10.244.0.1:8080".to_owned()]
            ),
            (
                "TCP 10.96.0.10:80".to_owned(),
                vec!["10.244.0.1:8080".to_owned()]
            ),
        ]),
        "IPv4 only: no IPv6 address, no IPv6 endpoint, FQDN slices ignored"
    );
    let dual = compute(
        &cluster,
        &ProxySettings {
            ip_family: IpFamilyMode::Dual,
            ..ProxySettings::default()
        },
    );
    assert_eq!(
        summary(&dual),
        sorted(vec![
            (
                "TCP 203.0.113.7:80".to_owned(),
                vec!["10.244.0.1:8080".to_owned()]
            ),
            (
                "TCP 10.96.0.10:80".to_owned(),
                vec!["10.244.0.1:8080".to_owned()]
            ),
            (
                "TCP [2001:db8::7]:80".to_owned(),
                vec!["[fd00:244::1]:8080".to_owned()]
            ),
            (
                "TCP [fd00:96::10]:80".to_owned(),
                vec!["[fd00:244::1]:8080".to_owned()]
            ),
        ])
    );
    let v6_entry = dual
        .table
        .get(&IpvsServiceKey::tcp(ip("fd00:96::10"), 80))
        .unwrap();
    assert_eq!(v6_entry.service.netmask.0, 128, "netmask /128 for IPv6");
}

/// A Service's ports go only to the families of its ClusterIPs (its
/// `spec.ipFamilies`), as kube-proxy's one proxier per family: NodePorts
/// on node addresses of those families, externalIPs and ingress IPs of the
/// other family ignored.
#[test]
fn a_services_ports_go_only_to_its_own_families() {
    let dual = ProxySettings {
        ip_family: IpFamilyMode::Dual,
        ..ProxySettings::default()
    };
    let v4_node = ProxySettings::default();
    let v6_node = ProxySettings {
        ip_family: IpFamilyMode::Ipv6,
        ..ProxySettings::default()
    };
    let node_port = |cluster_ips: Value, families: Value, policy: &str| {
        json!({"type": "NodePort", "clusterIP": cluster_ips[0], "clusterIPs": cluster_ips,
               "ipFamilies": families, "ipFamilyPolicy": policy,
               "externalIPs": ["203.0.113.7", "2001:db8::7"],
               "ports": [{"name": "http", "port": 80, "nodePort": 30080}]})
    };
    let single_v4 = node_port(json!(["10.96.0.10"]), json!(["IPv4"]), "SingleStack");
    let single_v6 = node_port(json!(["fd00:96::10"]), json!(["IPv6"]), "SingleStack");
    let prefer_dual = node_port(
        json!(["10.96.0.10", "fd00:96::10"]),
        json!(["IPv4", "IPv6"]),
        "PreferDualStack",
    );
    let require_dual = node_port(
        json!(["fd00:96::10", "10.96.0.10"]),
        json!(["IPv6", "IPv4"]),
        "RequireDualStack",
    );
    let v4_keys = [
        "TCP 10.0.0.5:30080",
        "TCP 10.96.0.10:80",
        "TCP 192.168.1.5:30080",
        "TCP 203.0.113.7:80",
    ];
    let v6_keys = [
        "TCP [2001:db8::7]:80",
        "TCP [fd00:96::10]:80",
        "TCP [fd00::5]:30080",
    ];
    let both: Vec<&str> = v4_keys.iter().chain(&v6_keys).copied().collect();
    let cases: &[(&str, &Value, &ProxySettings, &[&str])] = &[
        (
            "single-stack IPv4 NodePort on a dual-stack node: nothing on the node's IPv6 addresses, the IPv6 externalIP ignored",
            &single_v4,
            &dual,
            &v4_keys,
        ),
        (
            "single-stack IPv6 NodePort on a dual-stack node: IPv6 only",
            &single_v6,
            &dual,
            &v6_keys,
        ),
        (
            "single-stack IPv6 Service on an IPv4 node: nothing at all",
            &single_v6,
            &v4_node,
            &[],
        ),
        (
            "dual-stack Service on a dual-stack node: both families",
            &require_dual,
            &dual,
            &both,
        ),
        (
            "PreferDualStack on an IPv4 node: the IPv4 half",
            &prefer_dual,
            &v4_node,
            &v4_keys,
        ),
        (
            "PreferDualStack on an IPv6 node: the IPv6 half",
            &prefer_dual,
            &v6_node,
            &v6_keys,
        ),
    ];
    for (what, spec, settings, expected) in cases {
        let desired = compute(&cluster_of(service((*spec).clone()), vec![]), settings);
        let expected: BTreeSet<String> = expected.iter().map(|key| key.to_string()).collect();
        assert_eq!(keys(&desired), expected, "{what}");
        assert!(
            desired.problems.is_empty(),
            "{what}: {:?}",
            desired.problems
        );
        let node_port_families: BTreeSet<String> = element_lines(&desired)
            .into_iter()
            .filter(|line| line.contains("node-ports"))
            .map(|line| line.split(' ').next().unwrap_or("").to_owned())
            .collect();
        let expected_families: BTreeSet<String> = expected
            .iter()
            .filter(|key| key.ends_with(":30080"))
            .map(|key| if key.contains('[') { "ip6" } else { "ip" }.to_owned())
            .collect();
        assert_eq!(
            node_port_families, expected_families,
            "{what}: the node-ports set of the Service's families only"
        );
    }
}

#[test]
fn scheduler_flag_and_annotation_override() {
    let settings = ProxySettings {
        scheduler: "lc".into(),
        ..ProxySettings::default()
    };
    let plain = compute(&cluster_of(service(basic_spec()), vec![]), &settings);
    assert_eq!(plain.table.values().next().unwrap().service.scheduler, "lc");
    let annotated = service_with_meta(
        json!({"name": "web", "namespace": "default", "annotations": {"ipvs-agent.io/scheduler": "mh"}}),
        basic_spec(),
    );
    let desired = compute(&cluster_of(annotated, vec![]), &settings);
    assert_eq!(
        desired.table.values().next().unwrap().service.scheduler,
        "mh"
    );
    let bad = service_with_meta(
        json!({"name": "web", "namespace": "default", "annotations": {"ipvs-agent.io/scheduler": "Round Robin!"}}),
        basic_spec(),
    );
    let desired = compute(&cluster_of(bad, vec![]), &settings);
    assert_eq!(
        desired.table.values().next().unwrap().service.scheduler,
        "lc"
    );
    assert_eq!(
        desired.problems[0].field,
        "metadata.annotations[ipvs-agent.io/scheduler]"
    );
}

#[test]
fn client_ip_affinity_makes_every_virtual_server_persistent() {
    let spec = json!({"type": "NodePort", "clusterIP": "10.96.0.10", "sessionAffinity": "ClientIP", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
    let desired = compute(
        &cluster_of(service(spec), vec![]),
        &ProxySettings::default(),
    );
    assert_eq!(desired.table.len(), 3);
    for entry in desired.table.values() {
        assert!(entry.service.flags.contains(IpvsServiceFlags::PERSISTENT));
        assert_eq!(entry.service.timeout, 10800, "default timeoutSeconds");
    }
    let spec = json!({"clusterIP": "10.96.0.10", "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}, "ports": [{"name": "http", "port": 80}]});
    let desired = compute(
        &cluster_of(service(spec), vec![]),
        &ProxySettings::default(),
    );
    assert_eq!(desired.table.values().next().unwrap().service.timeout, 60);
}

#[test]
fn externalips_bound_unless_held_by_another_interface() {
    // 10.0.0.5 is eth1's: not bound on kube-ipvs0 (nor in the VIP filter).
    // The agent owns a virtual server on a node address only inside the
    // NodePort range, so port 80 there is refused (once the Service went,
    // it could never be deleted: the fuzz target desired_state found it),
    // port 30080 is programmed.
    let spec = json!({"clusterIP": "10.96.0.10", "externalIPs": ["203.0.113.7", "10.0.0.5"],
        "ports": [{"name": "http", "port": 80}, {"name": "alt", "port": 30080}]});
    let desired = compute(
        &cluster_of(service(spec), vec![]),
        &ProxySettings::default(),
    );
    assert!(!desired
        .table
        .contains_key(&IpvsServiceKey::tcp(ip("10.0.0.5"), 80)));
    assert!(desired
        .table
        .contains_key(&IpvsServiceKey::tcp(ip("10.0.0.5"), 30080)));
    assert!(desired
        .table
        .contains_key(&IpvsServiceKey::tcp(ip("203.0.113.7"), 80)));
    assert_eq!(
        desired.bound_addresses,
        [ip("10.96.0.10"), ip("203.0.113.7")].into(),
        "10.0.0.5 is eth1's"
    );
    let problems: Vec<String> = desired.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        ["Service default/web: spec.ports[0].port: 10.0.0.5 is this node's own address (on eth1); \
          a virtual server on it at port 80, outside the NodePort range 30000-32767 \
          (--service-node-port-range), could not be told from another tool's, so it is not \
          programmed on this node"]
    );
}

#[test]
fn node_ports_outside_the_node_port_range_are_refused() {
    // The agent owns node-address virtual servers by the range; the fuzz
    // target manifest found one outside it that would have leaked.
    let spec = json!({"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [
        {"name": "a", "port": 80, "nodePort": 30080},
        {"name": "b", "port": 81, "nodePort": 33235},
    ]});
    let desired = compute(
        &cluster_of(service(spec), vec![]),
        &ProxySettings::default(),
    );
    let node_ports: Vec<u16> = desired
        .table
        .keys()
        .filter_map(|key| match key {
            IpvsServiceKey::Inet { address, port, .. } if *address != ip("10.96.0.10") => {
                Some(*port)
            }
            _ => None,
        })
        .collect();
    assert!(
        node_ports.iter().all(|port| *port == 30080),
        "{node_ports:?}"
    );
    assert!(!node_ports.is_empty());
    let problems: Vec<String> = desired.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "Service default/web: spec.ports[1].nodePort: 33235 is outside the NodePort range \
          30000-32767 (--service-node-port-range, which must match the API server's); not \
          programmed"
        ]
    );
}

#[test]
fn protocols_and_bad_ports_are_reported_per_field() {
    let spec = json!({"clusterIP": "10.96.0.10", "ports": [
        {"name": "a", "protocol": "UDP", "port": 53},
        {"name": "b", "protocol": "SCTP", "port": 3868},
        {"name": "c", "protocol": "ICMP", "port": 1},
        {"name": "d", "port": 70000},
    ]});
    let desired = compute(
        &cluster_of(service(spec), vec![]),
        &ProxySettings::default(),
    );
    let protocols: Vec<IpvsProtocol> = desired
        .table
        .keys()
        .map(|key| match key {
            IpvsServiceKey::Inet { protocol, .. } => *protocol,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(protocols, vec![IpvsProtocol::Udp, IpvsProtocol::Sctp]);
    let fields: Vec<&str> = desired.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, vec!["spec.ports[2].protocol", "spec.ports[3].port"]);
    assert_eq!(
        desired.problems[0].to_string(),
        "Service default/web: spec.ports[2].protocol: unsupported protocol \"ICMP\" (TCP, UDP or SCTP)"
    );
}

#[test]
fn a_bad_slice_port_is_reported_with_its_value_not_a_debug_form() {
    for (port, expected) in [
        (
            json!(-5),
            "EndpointSlice default/web-1: ports[0].port: -5 is not a port number (1-65535)",
        ),
        (
            json!(null),
            "EndpointSlice default/web-1: ports[0].port: missing: a port number (1-65535) is required",
        ),
    ] {
        let bad = slice(
            "web-1",
            "IPv4",
            json!([{"name": "http", "protocol": "TCP", "port": port}]),
            json!([ready_endpoint("10.244.1.5")]),
        );
        let desired = compute(
            &cluster_of(service(basic_spec()), vec![bad]),
            &ProxySettings::default(),
        );
        let problems: Vec<String> = desired.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems, [expected], "{port}");
    }
}

#[test]
fn missing_cluster_ip_and_node_port_are_reported() {
    let no_ip = compute(
        &cluster_of(service(json!({"ports": [{"port": 80}]})), vec![]),
        &ProxySettings::default(),
    );
    assert!(no_ip.table.is_empty());
    assert_eq!(no_ip.problems[0].field, "spec.clusterIP");
    let no_node_port = compute(
        &cluster_of(
            service(
                json!({"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}),
            ),
            vec![],
        ),
        &ProxySettings::default(),
    );
    assert_eq!(keys(&no_node_port), ["TCP 10.96.0.10:80".to_owned()].into());
    assert_eq!(no_node_port.problems[0].field, "spec.ports[0].nodePort");
}

#[test]
fn selectorless_service_mirrors_legacy_endpoints() {
    let endpoints: Endpoints = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": [{
            "addresses": [{"ip": "10.28.88.9"}, {"ip": "10.28.88.10"}],
            "notReadyAddresses": [{"ip": "10.28.88.11"}],
            "ports": [{"port": 9000, "protocol": "TCP"}],
        }],
    }))
    .unwrap();
    let spec = json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80, "targetPort": 9000}]});
    let mut cluster = cluster_of(service(spec.clone()), vec![]);
    cluster.insert_endpoints(endpoints.clone());
    assert_eq!(
        summary(&compute(&cluster, &ProxySettings::default()))[0].1,
        vec!["10.28.88.10:9000", "10.28.88.9:9000"]
            .into_iter()
            .map(String::from)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );

    let mut with_selector = spec.clone();
    with_selector["selector"] = json!({"app": "web"});
    let mut cluster = cluster_of(service(with_selector), vec![]);
    cluster.insert_endpoints(endpoints.clone());
    assert!(
        summary(&compute(&cluster, &ProxySettings::default()))[0]
            .1
            .is_empty(),
        "Endpoints of a Service with a selector are not mirrored"
    );

    let mut skipped = endpoints;
    skipped.metadata.labels = Some(
        [(
            "endpointslice.kubernetes.io/skip-mirror".to_owned(),
            "true".to_owned(),
        )]
        .into(),
    );
    let mut cluster = cluster_of(service(spec), vec![]);
    cluster.insert_endpoints(skipped);
    assert!(
        summary(&compute(&cluster, &ProxySettings::default()))[0]
            .1
            .is_empty(),
        "skip-mirror"
    );
}

#[test]
fn one_bad_service_never_stops_the_others_and_conflicts_keep_the_first() {
    let mut cluster = ClusterState::default();
    cluster.insert_service(service_with_meta(
        json!({"name": "a", "namespace": "default"}),
        json!({"clusterIP": "not-an-ip", "ports": [{"port": 80}]}),
    ));
    cluster.insert_service(service_with_meta(
        json!({"name": "b", "namespace": "default"}),
        json!({"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}),
    ));
    cluster.insert_service(service_with_meta(
        json!({"name": "c", "namespace": "default"}),
        json!({"clusterIP": "10.96.0.30", "externalIPs": ["10.96.0.20"], "ports": [{"port": 80}]}),
    ));
    let state = desired_state(&cluster, &node(), &ProxySettings::default());
    let table = state.table();
    assert_eq!(
        table.keys().map(ToString::to_string).collect::<Vec<_>>(),
        vec!["TCP 10.96.0.20:80", "TCP 10.96.0.30:80"]
    );
    let problems: Vec<String> = state.problems().iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("Service default/a: spec.clusterIP: \"not-an-ip\""),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("TCP 10.96.0.20:80 is already default/b's"),
        "{problems:?}"
    );
}

#[test]
fn slices_are_indexed_by_service_and_follow_relabelling() {
    let mut cluster = cluster_of(
        service(basic_spec()),
        vec![slice(
            "web-1",
            "IPv4",
            http_port(8080),
            json!([ready_endpoint("10.244.0.1")]),
        )],
    );
    assert_eq!(cluster.slices_of(&web_ref()).count(), 1);
    let mut moved = slice(
        "web-1",
        "IPv4",
        http_port(8080),
        json!([ready_endpoint("10.244.0.1")]),
    );
    moved.metadata.labels =
        Some([("kubernetes.io/service-name".to_owned(), "other".to_owned())].into());
    let touched = cluster.insert_slice(&moved);
    assert_eq!(
        touched,
        [web_ref(), ObjectRef::new("default", "other")].into()
    );
    assert_eq!(cluster.slices_of(&web_ref()).count(), 0);
    let removed = cluster.remove_slice(&ObjectRef::new("default", "web-1"));
    assert_eq!(removed, [ObjectRef::new("default", "other")].into());
    assert!(cluster.endpoint_slices().is_empty());
}

/// The set elements of `web` as `set: element` lines (nft's text).
fn element_lines(desired: &ServiceDesired) -> Vec<String> {
    desired
        .elements
        .iter()
        .map(|element| {
            format!(
                "{} {}: {}",
                element.family.nft_name(),
                element.set.name(),
                crate::system::netfilter::script::element_text(&element.key)
            )
        })
        .collect()
}

#[test]
fn netfilter_elements_follow_kube_proxys_sets() {
    let endpoints = || {
        slice(
            "web-1",
            "IPv4",
            json!([{"port": 8080}]),
            json!([
                {"addresses": ["10.244.1.7"], "conditions": {"ready": true}, "nodeName": "node1"},
                {"addresses": ["10.244.2.7"], "conditions": {"ready": true}, "nodeName": "node2"}
            ]),
        )
    };
    let settings = ProxySettings {
        ip_family: IpFamilyMode::Dual,
        ..ProxySettings::default()
    };
    let cases: &[(&str, Value, &[&str])] = &[
        (
            "ClusterIP: its address and port, the VIP, and the local endpoint's hairpin",
            json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80, "targetPort": 8080}]}),
            &[
                "ip cluster-ips: 10.96.0.10 . tcp . 80",
                "ip hairpin: 10.244.1.7 . 10.244.1.7",
                "ip vips: 10.96.0.10",
            ],
        ),
        (
            "NodePort with externalIPs, Cluster policy: masqueraded sets",
            json!({"type": "NodePort", "clusterIP": "10.96.0.10", "externalIPs": ["192.0.2.1"],
                   "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "UDP"}]}),
            &[
                "ip cluster-ips: 10.96.0.10 . udp . 80",
                "ip external-ips: 192.0.2.1 . udp . 80",
                "ip node-ports: udp . 30080",
                "ip vips: 10.96.0.10",
                "ip vips: 192.0.2.1",
            ],
        ),
        (
            "LoadBalancer, Local policy, source ranges of both families and a bad one",
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.10", "externalTrafficPolicy": "Local",
                   "healthCheckNodePort": 32000,
                   "loadBalancerSourceRanges": ["203.0.113.0/24", " 198.51.100.7/32 ", "fd00:1::/64", "nonsense"],
                   "ports": [{"port": 443, "targetPort": 8080, "nodePort": 30443}]}),
            &[
                "ip cluster-ips: 10.96.0.10 . tcp . 443",
                "ip load-balancer-ips-local: 192.0.2.50 . tcp . 443",
                "ip firewall-ips: 192.0.2.50 . tcp . 443",
                "ip firewall-allow: 192.0.2.50 . tcp . 443 . 198.51.100.7",
                "ip firewall-allow: 192.0.2.50 . tcp . 443 . 203.0.113.0-203.0.113.255",
                "ip health-check-ports: 32000",
                "ip hairpin: 10.244.1.7 . 10.244.1.7",
                "ip vips: 10.96.0.10",
                "ip vips: 192.0.2.50",
            ],
        ),
    ];
    for (what, spec, expected) in cases {
        let mut cluster = ClusterState::default();
        let mut service = service(spec.clone());
        if spec["type"] == "LoadBalancer" {
            service.status = Some(
                serde_json::from_value(
                    json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}]}}),
                )
                .unwrap(),
            );
        }
        cluster.insert_service(service);
        cluster.insert_slice(&endpoints());
        let desired = compute(&cluster, &settings);
        let mut lines = element_lines(&desired);
        let mut expected: Vec<String> = expected.iter().map(|line| line.to_string()).collect();
        lines.sort();
        expected.sort();
        assert_eq!(lines, expected, "{what}");
    }
    // The bad range is reported by index; the Service is still programmed.
    let mut cluster = ClusterState::default();
    let mut lb = service(cases[2].1.clone());
    lb.status = Some(
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}]}}))
            .unwrap(),
    );
    cluster.insert_service(lb);
    let desired = compute(&cluster, &settings);
    assert_eq!(
        desired.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        vec!["Service default/web: spec.loadBalancerSourceRanges[3]: \"nonsense\" is not a CIDR; ignored"]
    );
}

// Topology-aware routing and the Local-policy fallback (kube-proxy v1.35:
// `pkg/proxy/topology.go`, `pkg/proxy/ipvs/proxier.go` `syncEndpoint`).

/// [`node`] in `zone` (its Node's `topology.kubernetes.io/zone` label).
fn node_in(zone: Option<&str>) -> NodeContext {
    NodeContext {
        zone: zone.map(str::to_owned),
        ..node()
    }
}

/// A ready endpoint on `node_name` with zone and node hints.
fn hinted(address: &str, node_name: &str, zones: &[&str], nodes: &[&str]) -> Value {
    let names = |names: &[&str]| {
        names
            .iter()
            .map(|name| json!({"name": name}))
            .collect::<Vec<_>>()
    };
    json!({"addresses": [address], "conditions": {"ready": true}, "nodeName": node_name,
           "hints": {"forZones": names(zones), "forNodes": names(nodes)}})
}

/// The real servers of `web`'s virtual server `key`.
fn reals_of(desired: &ServiceDesired, key: &str) -> Vec<String> {
    summary(desired)
        .into_iter()
        .find(|(virtual_server, _)| virtual_server == key)
        .unwrap_or_else(|| panic!("no virtual server {key}: {:?}", summary(desired)))
        .1
}

#[test]
fn topology_hints_choose_the_cluster_endpoints_by_kube_proxys_rules() {
    let a1 = || hinted("10.244.0.1", "node1", &["zone-a"], &[]);
    let a2 = || hinted("10.244.0.2", "node2", &["zone-a"], &[]);
    let b3 = || hinted("10.244.0.3", "node3", &["zone-b"], &[]);
    let all = vec!["10.244.0.1:8080", "10.244.0.2:8080", "10.244.0.3:8080"];
    let not_ready_unhinted =
        json!({"addresses": ["10.244.0.9"], "conditions": {"ready": false}, "nodeName": "node4"});
    let terminating = |address: &str, zone: &str| {
        json!({"addresses": [address], "nodeName": "node2",
               "conditions": {"ready": false, "serving": true, "terminating": true},
               "hints": {"forZones": [{"name": zone}]}})
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, Option<&str>, Vec<&str>)> = vec![
        ("every ready endpoint hinted: the ones for this node's zone",
            json!([a1(), a2(), b3()]), Some("zone-a"), vec!["10.244.0.1:8080", "10.244.0.2:8080"]),
        ("the same from the other zone",
            json!([a1(), a2(), b3()]), Some("zone-b"), vec!["10.244.0.3:8080"]),
        ("one ready endpoint without hints: no topology",
            json!([a1(), b3(), ready_endpoint("10.244.0.2")]), Some("zone-a"), all.clone()),
        ("no endpoint hinted for this node's zone: all of them",
            json!([a1(), a2(), b3()]), Some("zone-c"), all.clone()),
        ("a node without the zone label: all of them",
            json!([a1(), a2(), b3()]), None, all.clone()),
        ("a not-ready endpoint without hints does not stop topology",
            json!([a1(), a2(), b3(), not_ready_unhinted]), Some("zone-b"), vec!["10.244.0.3:8080"]),
        ("PreferSameNode: node hints on every ready endpoint, one for this node, before zones",
            json!([hinted("10.244.0.1", "node1", &["zone-a"], &["node1"]),
                   hinted("10.244.0.2", "node2", &["zone-a"], &["node2"]),
                   hinted("10.244.0.3", "node3", &["zone-b"], &["node3"])]),
            Some("zone-a"), vec!["10.244.0.1:8080"]),
        ("node hints but none for this node: the zone hints decide",
            json!([hinted("10.244.0.2", "node2", &["zone-a"], &["node2"]),
                   hinted("10.244.0.3", "node3", &["zone-b"], &["node3"])]),
            Some("zone-a"), vec!["10.244.0.2:8080"]),
        ("node hints on some endpoints only: the zone hints decide",
            json!([hinted("10.244.0.1", "node1", &["zone-b"], &["node1"]), a2(), b3()]),
            Some("zone-a"), vec!["10.244.0.2:8080"]),
        ("no ready endpoint: the serving terminating ones, topology ignored",
            json!([terminating("10.244.0.5", "zone-a"), terminating("10.244.0.6", "zone-b")]),
            Some("zone-a"), vec!["10.244.0.5:8080", "10.244.0.6:8080"]),
        ("a terminating endpoint in this zone does not make topology: the ready one elsewhere",
            json!([b3(), terminating("10.244.0.5", "zone-a")]),
            Some("zone-a"), vec!["10.244.0.3:8080"]),
    ];
    for (what, endpoints, zone, expected) in cases {
        let cluster = cluster_of(
            service(basic_spec()),
            vec![slice("web-1", "IPv4", http_port(8080), endpoints)],
        );
        let desired = desired_for_service(
            &web_ref(),
            &cluster,
            &node_in(zone),
            &ProxySettings::default(),
        )
        .unwrap();
        assert_eq!(reals_of(&desired, "TCP 10.96.0.10:80"), expected, "{what}");
        assert!(
            desired.problems.is_empty(),
            "{what}: {:?}",
            desired.problems
        );
    }
}

#[test]
fn hints_count_across_slices_and_need_no_service_annotation() {
    // kube-proxy v1.35 reads the hints alone: no
    // service.kubernetes.io/topology-mode annotation, no trafficDistribution.
    let slices = vec![
        slice(
            "web-1",
            "IPv4",
            http_port(8080),
            json!([hinted("10.244.0.1", "node1", &["zone-a"], &[])]),
        ),
        slice(
            "web-2",
            "IPv4",
            http_port(8080),
            json!([hinted("10.244.0.3", "node3", &["zone-b"], &[])]),
        ),
    ];
    let desired = desired_for_service(
        &web_ref(),
        &cluster_of(service(basic_spec()), slices),
        &node_in(Some("zone-b")),
        &ProxySettings::default(),
    )
    .unwrap();
    assert_eq!(
        reals_of(&desired, "TCP 10.96.0.10:80"),
        vec!["10.244.0.3:8080"]
    );
}

#[test]
fn local_policies_ignore_hints() {
    let spec = json!({
        "type": "NodePort", "clusterIP": "10.96.0.10",
        "externalTrafficPolicy": "Local",
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
    });
    let settings = ProxySettings {
        nodeport_addresses: NodePortAddresses {
            cidrs: vec!["192.168.1.0/24".parse().unwrap()],
            primary: false,
        },
        ..ProxySettings::default()
    };
    // The local endpoint is hinted for zone-b; the node is in zone-a.
    let endpoints = json!([
        hinted("10.244.0.1", "node1", &["zone-b"], &[]),
        hinted("10.244.0.2", "node2", &["zone-a"], &[]),
    ]);
    let desired = desired_for_service(
        &web_ref(),
        &cluster_of(
            service(spec),
            vec![slice("web-1", "IPv4", http_port(8080), endpoints)],
        ),
        &node_in(Some("zone-a")),
        &settings,
    )
    .unwrap();
    assert_eq!(
        reals_of(&desired, "TCP 192.168.1.5:30080"),
        vec!["10.244.0.1:8080"],
        "the Local NodePort keeps its local endpoint whatever its hints"
    );
    assert_eq!(
        reals_of(&desired, "TCP 10.96.0.10:80"),
        vec!["10.244.0.2:8080"],
        "the ClusterIP (Cluster policy) follows the zone hints"
    );
}

/// A virtual server and its real servers, as [`summary`] gives them.
type VirtualServerSummary<'a> = (&'a str, Vec<String>);

/// What the case is, the Service, its virtual servers, and the
/// `(internal, external)` no-local-endpoint flags.
type FallbackCase<'a> = (
    &'a str,
    Service,
    Vec<VirtualServerSummary<'a>>,
    (bool, bool),
);

#[test]
fn local_policies_without_a_local_endpoint_fall_back_as_kube_proxys_ipvs_proxier() {
    let settings = ProxySettings {
        nodeport_addresses: NodePortAddresses {
            cidrs: vec!["192.168.1.0/24".parse().unwrap()],
            primary: false,
        },
        ..ProxySettings::default()
    };
    let remote = json!([
        hinted("10.244.0.2", "node2", &["zone-a"], &[]),
        hinted("10.244.0.3", "node3", &["zone-b"], &[]),
    ]);
    let with_lb = |spec: Value| {
        let mut service = service(spec);
        service.status = Some(
            serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}]}}))
                .unwrap(),
        );
        service
    };
    let only_a = vec!["10.244.0.2:8080".to_owned()];
    let none: Vec<String> = vec![];
    #[rustfmt::skip]
    let cases: Vec<FallbackCase<'_>> = vec![
        ("eTP Local: the NodePort, externalIP and LoadBalancer IP get the (topology-aware) \
          cluster endpoints so that this node's pods still reach them (kubernetes PR 97081)",
            with_lb(json!({"type": "LoadBalancer", "clusterIP": "10.96.0.10",
                "externalIPs": ["203.0.113.7"], "externalTrafficPolicy": "Local",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}]})),
            vec![("TCP 192.168.1.5:30080", only_a.clone()), ("TCP 203.0.113.7:80", only_a.clone()),
                 ("TCP 192.0.2.50:80", only_a.clone()), ("TCP 10.96.0.10:80", only_a.clone())],
            (false, true)),
        ("iTP Local on a ClusterIP-only Service: the port never uses Cluster endpoints, stays empty",
            service(json!({"clusterIP": "10.96.0.10", "internalTrafficPolicy": "Local",
                "ports": [{"name": "http", "port": 80}]})),
            vec![("TCP 10.96.0.10:80", none.clone())],
            (true, false)),
        ("iTP Local on a NodePort Service: externally accessible, so upstream's clusterEndpoints \
          exist and its ClusterIP falls back too",
            service(json!({"type": "NodePort", "clusterIP": "10.96.0.10",
                "internalTrafficPolicy": "Local",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}]})),
            vec![("TCP 192.168.1.5:30080", only_a.clone()), ("TCP 10.96.0.10:80", only_a.clone())],
            (true, false)),
        ("both Local on a NodePort Service: every virtual server falls back, both counted",
            service(json!({"type": "NodePort", "clusterIP": "10.96.0.10",
                "internalTrafficPolicy": "Local", "externalTrafficPolicy": "Local",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}]})),
            vec![("TCP 192.168.1.5:30080", only_a.clone()), ("TCP 10.96.0.10:80", only_a.clone())],
            (true, true)),
    ];
    for (what, service, expected, (internal, external)) in cases {
        let desired = desired_for_service(
            &web_ref(),
            &cluster_of(
                service,
                vec![slice("web-1", "IPv4", http_port(8080), remote.clone())],
            ),
            &node_in(Some("zone-a")),
            &settings,
        )
        .unwrap();
        let mut expected: Vec<(String, Vec<String>)> = expected
            .into_iter()
            .map(|(key, reals)| (key.to_owned(), reals))
            .collect();
        expected.sort();
        assert_eq!(summary(&desired), expected, "{what}");
        assert_eq!(
            desired.no_local_endpoints,
            NoLocalEndpoints { internal, external },
            "{what}: counted as kube-proxy's no_local_endpoints_total"
        );
    }
}

#[test]
fn the_fallback_leaves_the_set_elements_as_they_were() {
    // The eTP Local sets (no masquerade, source kept) are what keeps
    // external clients from being answered through the fallback: they
    // must not change, and no hairpin element appears for remote pods.
    let spec = json!({"type": "LoadBalancer", "clusterIP": "10.96.0.10",
        "externalIPs": ["203.0.113.7"], "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 32000,
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
    let mut lb = service(spec);
    lb.status = Some(
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}]}}))
            .unwrap(),
    );
    let desired = compute(
        &cluster_of(
            lb,
            vec![slice(
                "web-1",
                "IPv4",
                http_port(8080),
                json!([ready_endpoint("10.244.0.2")]),
            )],
        ),
        &ProxySettings::default(),
    );
    let mut lines = element_lines(&desired);
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "ip cluster-ips: 10.96.0.10 . tcp . 80",
            "ip external-ips-local: 203.0.113.7 . tcp . 80",
            "ip health-check-ports: 32000",
            "ip load-balancer-ips-local: 192.0.2.50 . tcp . 80",
            "ip vips: 10.96.0.10",
            "ip vips: 192.0.2.50",
            "ip vips: 203.0.113.7",
        ]
    );
    assert!(summary(&desired)
        .iter()
        .all(|(_, reals)| reals == &["10.244.0.2:8080"]));
}

#[test]
fn nothing_is_counted_when_the_cluster_has_no_usable_endpoint() {
    let spec = json!({"type": "NodePort", "clusterIP": "10.96.0.10",
        "internalTrafficPolicy": "Local", "externalTrafficPolicy": "Local",
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
    let cases = [
        ("no endpoint", json!([])),
        (
            "only a not-ready, not-serving one",
            json!([{"addresses": ["10.244.0.2"],
            "conditions": {"ready": false, "serving": false}, "nodeName": "node2"}]),
        ),
    ];
    for (what, endpoints) in cases {
        let desired = compute(
            &cluster_of(
                service(spec.clone()),
                vec![slice("web-1", "IPv4", http_port(8080), endpoints)],
            ),
            &ProxySettings::default(),
        );
        assert_eq!(
            desired.no_local_endpoints,
            NoLocalEndpoints::default(),
            "{what}"
        );
        assert!(
            summary(&desired).iter().all(|(_, reals)| reals.is_empty()),
            "{what}"
        );
    }
}
