//! What the desired-state fuzz targets share: the node they compute for
//! (node1 of the two-node test cluster, both families) and the check that
//! the computed state breaks none of `ipvs_agent::invariants`.

use std::net::IpAddr;

use ipvs_agent::desired::desired_state;
use ipvs_agent::invariants::violations;
use ipvs_agent::model::node::LocalAddress;
use ipvs_agent::model::settings::IpFamilyMode;
use ipvs_agent::model::{ClusterState, NodeContext, ProxySettings};

/// node1: `192.168.50.11` and `fd00::11` on `eth0`, loopback on `lo`.
pub fn node(zone: Option<&str>) -> NodeContext {
    let local = |address: &str, interface: &str| LocalAddress {
        address: address.parse().expect("an address"),
        interface: interface.to_string(),
    };
    NodeContext {
        name: "node1".to_string(),
        zone: zone.map(str::to_string),
        primary_addresses: ["192.168.50.11", "fd00::11"]
            .iter()
            .map(|text| text.parse::<IpAddr>().expect("an address"))
            .collect(),
        local_addresses: vec![
            local("192.168.50.11", "eth0"),
            local("fd00::11", "eth0"),
            local("127.0.0.1", "lo"),
            local("::1", "lo"),
        ],
    }
}

/// The default settings in one of the three family modes.
pub fn settings(family: u8) -> ProxySettings {
    ProxySettings {
        ip_family: match family % 3 {
            0 => IpFamilyMode::Ipv4,
            1 => IpFamilyMode::Ipv6,
            _ => IpFamilyMode::Dual,
        },
        ..ProxySettings::default()
    }
}

/// Computes the desired state of `cluster` and panics (a finding) when it
/// breaks an invariant.
pub fn check(cluster: &ClusterState, node: &NodeContext, settings: &ProxySettings) {
    let state = desired_state(cluster, node, settings);
    for problem in state.problems() {
        // Every problem names its object (kind and namespace/name).
        let text = problem.to_string();
        assert!(
            text.starts_with(problem.kind) && !problem.object.is_empty(),
            "a problem that names no object: {text}"
        );
    }
    let broken = violations(&state, cluster, node, settings);
    assert!(broken.is_empty(), "invariants broken: {broken:#?}");
}
