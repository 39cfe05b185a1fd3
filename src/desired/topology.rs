//! Topology-aware routing: which of a Service port's ready endpoints this
//! node uses for `Cluster` traffic policies, from the endpoints' hints.
//!
//! The rules are kube-proxy's as of Kubernetes v1.35 (`pkg/proxy/topology.go`:
//! `topologyModeFromHints` and `availableForTopology`, with the
//! `PreferSameTrafficDistribution` gate GA and locked on in v1.35, so node
//! hints always count):
//!
//! 1. Only ready endpoints are looked at; with none, no topology.
//! 2. **PreferSameNode** when every ready endpoint has a
//!    `hints.forNodes` entry and at least one names this node: the cluster
//!    endpoints are the ready ones hinted for this node.
//! 3. Else **PreferSameZone** when every ready endpoint has a
//!    `hints.forZones` entry and at least one names this node's zone (its
//!    Node's `topology.kubernetes.io/zone` label): the ready ones hinted
//!    for this zone.
//! 4. Else no topology: every ready endpoint.
//!
//! What the current upstream code no longer requires, and this module
//! does not either: the Service's `service.kubernetes.io/topology-mode`
//! (formerly `topology-aware-hints`) annotation or
//! `spec.trafficDistribution`. The v1.35 code trusts the hints alone (the
//! EndpointSlice controller writes them only when the Service asks);
//! older kube-proxy (`canUseTopology`, v1.31 and before) also required a
//! non-empty, non-`disabled` annotation and knew no node hints.
//!
//! A node without the zone label is matched as the zone `""`, exactly as
//! upstream reads a missing map key: no real hint names `""` (the API
//! server refuses it), so such a node gets no zone topology.
//!
//! Not here, by kube-proxy's design: hints never narrow the `Local`
//! policies' endpoints, and the fallback to serving-and-terminating
//! endpoints when none is ready ignores topology (see [`super::endpoints`]).

use crate::model::cluster::EndpointHints;

/// Which topology the cluster endpoints follow (kube-proxy's
/// `topologyMode`: `""`, `PreferSameZone` or `PreferSameNode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyMode {
    /// Every ready endpoint.
    All,
    /// The ready endpoints hinted for this node's zone.
    PreferSameZone,
    /// The ready endpoints hinted for this node.
    PreferSameNode,
}

/// The topology mode that `endpoints` (each as whether it is ready, and
/// its hints) give the node `node_name` in `zone` (kube-proxy's
/// `topologyModeFromHints`).
pub fn topology_mode<'h>(
    endpoints: impl IntoIterator<Item = (bool, Option<&'h EndpointHints>)>,
    node_name: &str,
    zone: Option<&str>,
) -> TopologyMode {
    let zone = zone.unwrap_or("");
    let mut has_ready = false;
    let mut all_have_node_hints = true;
    let mut has_endpoint_for_node = false;
    let mut all_have_zone_hints = true;
    let mut has_endpoint_for_zone = false;
    for (_, hints) in endpoints.into_iter().filter(|(ready, _)| *ready) {
        has_ready = true;
        let (for_nodes, for_zones) = match hints {
            Some(hints) => (&hints.for_nodes[..], &hints.for_zones[..]),
            None => (&[][..], &[][..]),
        };
        if for_nodes.is_empty() {
            all_have_node_hints = false;
        } else if for_nodes.iter().any(|name| &**name == node_name) {
            has_endpoint_for_node = true;
        }
        if for_zones.is_empty() {
            all_have_zone_hints = false;
        } else if for_zones.iter().any(|name| &**name == zone) {
            has_endpoint_for_zone = true;
        }
    }
    if !has_ready {
        TopologyMode::All
    } else if all_have_node_hints && has_endpoint_for_node {
        TopologyMode::PreferSameNode
    } else if all_have_zone_hints && has_endpoint_for_zone {
        TopologyMode::PreferSameZone
    } else {
        TopologyMode::All
    }
}

/// Whether an endpoint with `hints` serves this node under `mode`
/// (kube-proxy's `availableForTopology`; no fallback here: that is in
/// choosing the mode).
pub fn available_for_topology(
    hints: Option<&EndpointHints>,
    mode: TopologyMode,
    node_name: &str,
    zone: Option<&str>,
) -> bool {
    let hinted = |names: &[Box<str>], wanted: &str| names.iter().any(|name| &**name == wanted);
    match (mode, hints) {
        (TopologyMode::All, _) => true,
        (_, None) => false,
        (TopologyMode::PreferSameNode, Some(hints)) => hinted(&hints.for_nodes, node_name),
        (TopologyMode::PreferSameZone, Some(hints)) => hinted(&hints.for_zones, zone.unwrap_or("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(zones: &[&str], nodes: &[&str]) -> EndpointHints {
        EndpointHints {
            for_zones: zones.iter().map(|zone| Box::from(*zone)).collect(),
            for_nodes: nodes.iter().map(|node| Box::from(*node)).collect(),
        }
    }

    /// An endpoint as [`topology_mode`] reads it: ready, and its hints.
    type Endpoint<'h> = (bool, Option<&'h EndpointHints>);

    fn state(ready: bool, hints: Option<&EndpointHints>) -> Endpoint<'_> {
        (ready, hints)
    }

    #[test]
    fn the_mode_follows_kube_proxys_topology_mode_from_hints() {
        let zone_a = hints(&["zone-a"], &[]);
        let zone_b = hints(&["zone-b"], &[]);
        let node1_in_a = hints(&["zone-a"], &["node1"]);
        let node2_in_b = hints(&["zone-b"], &["node2"]);
        let empty_name = hints(&[""], &[]);
        use TopologyMode::*;
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<Endpoint<'_>>, Option<&str>, TopologyMode)> = vec![
            ("no endpoint", vec![], Some("zone-a"), All),
            ("no ready endpoint", vec![state(false, Some(&zone_a))], Some("zone-a"), All),
            ("every ready one hinted, one for this zone",
                vec![state(true, Some(&zone_a)), state(true, Some(&zone_b))], Some("zone-a"), PreferSameZone),
            ("one ready endpoint without hints",
                vec![state(true, Some(&zone_a)), state(true, None)], Some("zone-a"), All),
            ("a not-ready endpoint without hints does not count",
                vec![state(true, Some(&zone_a)), state(false, None)], Some("zone-a"), PreferSameZone),
            ("no hint for this zone", vec![state(true, Some(&zone_b))], Some("zone-a"), All),
            ("node without a zone label", vec![state(true, Some(&zone_a))], None, All),
            ("an empty zone name matches a missing label, as upstream's map lookup",
                vec![state(true, Some(&empty_name))], None, PreferSameZone),
            ("node hints on every ready one, one for this node: before zones",
                vec![state(true, Some(&node1_in_a)), state(true, Some(&node2_in_b))], Some("zone-a"), PreferSameNode),
            ("node hints, none for this node: zone hints next",
                vec![state(true, Some(&node2_in_b)), state(true, Some(&node2_in_b))], Some("zone-b"), PreferSameZone),
            ("node hints on some only: zone hints",
                vec![state(true, Some(&node1_in_a)), state(true, Some(&zone_a))], Some("zone-a"), PreferSameZone),
        ];
        for (what, endpoints, zone, expected) in cases {
            assert_eq!(topology_mode(endpoints, "node1", zone), expected, "{what}");
        }
    }

    #[test]
    fn availability_checks_only_the_chosen_kind_of_hint() {
        let node1_in_b = hints(&["zone-b"], &["node1"]);
        let zone_a = hints(&["zone-a"], &[]);
        use TopologyMode::*;
        let cases = [
            (Some(&node1_in_b), All, true),
            (Some(&node1_in_b), PreferSameNode, true),
            (Some(&node1_in_b), PreferSameZone, false),
            (Some(&zone_a), PreferSameNode, false),
            (Some(&zone_a), PreferSameZone, true),
            (None, All, true),
            (None, PreferSameZone, false),
        ];
        for (hints, mode, expected) in cases {
            assert_eq!(
                available_for_topology(hints, mode, "node1", Some("zone-a")),
                expected,
                "{hints:?} {mode:?}"
            );
        }
    }
}
