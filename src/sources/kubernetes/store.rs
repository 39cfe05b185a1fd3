//! The cluster state as the watchers see it: every watch event applied to
//! one [`ClusterState`], relists replacing a kind's objects as a whole once
//! complete (and marking only the Services whose objects differ), and the
//! agent's own Node's addresses. An object that does not decode keeps its
//! last good version, in events and relists alike.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;

use crate::model::cluster::prune_service;
use crate::model::node::zone_of;
use crate::model::{ClusterState, ObjectRef, PrunedService, Slice};

/// One event from one of the watchers.
// Each event is moved once through a channel; boxing the larger variants
// would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum WatchEvent {
    /// A Service event.
    Service(Event<Service>),
    /// An EndpointSlice event.
    Slice(Event<EndpointSlice>),
    /// An event of the agent's Node.
    Node(Event<Node>),
    /// A listed, added or modified object of this kind that did not
    /// decode (see [`super::lenient`]): what the store holds of it stays,
    /// and a relist keeps it.
    Undecodable(WatchedKind, ObjectRef),
}

/// The kinds the agent watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchedKind {
    /// Services.
    Service,
    /// EndpointSlices.
    Slice,
    /// The agent's Node.
    Node,
}

/// Objects of one kind received during a relist, applied when complete.
#[derive(Debug)]
struct Relist<K> {
    items: Option<Vec<K>>,
}

impl<K> Default for Relist<K> {
    fn default() -> Self {
        Self { items: None }
    }
}

impl<K> Relist<K> {
    fn start(&mut self) {
        self.items = Some(Vec::new());
    }

    fn push(&mut self, item: K) {
        self.items.get_or_insert_with(Vec::new).push(item);
    }

    fn in_progress(&self) -> bool {
        self.items.is_some()
    }

    fn finish(&mut self) -> Vec<K> {
        self.items.take().unwrap_or_default()
    }
}

/// The cluster state as the watchers see it, and what changed.
#[derive(Debug, Default)]
pub struct Store {
    pub cluster: ClusterState,
    services_listed: bool,
    slices_listed: bool,
    node_listed: bool,
    service_relist: Relist<(ObjectRef, PrunedService)>,
    slice_relist: Relist<(ObjectRef, Slice)>,
    pub node_addresses: Vec<IpAddr>,
    /// The agent's Node's `spec.podCIDRs` (else `spec.podCIDR`).
    pub node_pod_cidrs: Vec<IpNetwork>,
    /// The agent's Node's `topology.kubernetes.io/zone` label.
    pub node_zone: Option<String>,
}

impl Store {
    /// Applies one event; returns the Services it may change.
    pub fn apply(&mut self, change: WatchEvent) -> BTreeSet<ObjectRef> {
        match change {
            WatchEvent::Service(event) => self.apply_service(event),
            WatchEvent::Slice(event) => self.apply_slice(event),
            WatchEvent::Node(event) => {
                match event {
                    Event::Apply(node) | Event::InitApply(node) => {
                        self.node_addresses = node_internal_addresses(&node);
                        self.node_pod_cidrs = node_pod_cidrs(&node);
                        self.node_zone = zone_of(node.metadata.labels.as_ref());
                    }
                    // Listed: the Node is known, or known to be absent.
                    Event::InitDone => self.node_listed = true,
                    Event::Init | Event::Delete(_) => {}
                }
                BTreeSet::new()
            }
            WatchEvent::Undecodable(kind, name) => {
                self.keep_current(kind, &name);
                BTreeSet::new()
            }
        }
    }

    /// An object that did not decode: outside a relist nothing changes
    /// (its last good version stays); during one, its last good version
    /// is listed again, so that the relist neither drops it nor changes
    /// it. A new object that is bad from the start is in neither.
    fn keep_current(&mut self, kind: WatchedKind, name: &ObjectRef) {
        match kind {
            WatchedKind::Service if self.service_relist.in_progress() => {
                if let Some(current) = self.cluster.services().get(name) {
                    self.service_relist.push((name.clone(), current.clone()));
                }
            }
            WatchedKind::Slice if self.slice_relist.in_progress() => {
                if let Some(current) = self.cluster.endpoint_slices().get(name) {
                    self.slice_relist.push((name.clone(), current.clone()));
                }
            }
            // The Node is applied per event: a bad one changes nothing.
            _ => {}
        }
    }

    fn apply_service(&mut self, event: Event<Service>) -> BTreeSet<ObjectRef> {
        let mut touched = BTreeSet::new();
        match event {
            Event::Init => self.service_relist.start(),
            // Kept pruned from the start: a relist of a large cluster
            // must not hold every full object at once.
            Event::InitApply(service) => self
                .service_relist
                .push((ObjectRef::of(&service.metadata), prune_service(service))),
            Event::InitDone => {
                let listed: BTreeMap<ObjectRef, PrunedService> =
                    self.service_relist.finish().into_iter().collect();
                for (name, old) in self.cluster.services() {
                    if listed.get(name) != Some(old) {
                        touched.insert(name.clone());
                    }
                }
                for (name, new) in &listed {
                    if self.cluster.services().get(name) != Some(new) {
                        touched.insert(name.clone());
                    }
                }
                self.cluster.replace_services(listed);
                self.services_listed = true;
            }
            Event::Apply(service) => {
                let name = ObjectRef::of(&service.metadata);
                let service = prune_service(service);
                if self.cluster.services().get(&name) != Some(&service) {
                    touched.insert(name.clone());
                    self.cluster.insert_pruned_service(name, service);
                }
            }
            Event::Delete(service) => {
                let name = ObjectRef::of(&service.metadata);
                if self.cluster.remove_service(&name).is_some() {
                    touched.insert(name);
                }
            }
        }
        touched
    }

    fn apply_slice(&mut self, event: Event<EndpointSlice>) -> BTreeSet<ObjectRef> {
        let mut touched = BTreeSet::new();
        match event {
            Event::Init => self.slice_relist.start(),
            Event::InitApply(slice) => self
                .slice_relist
                .push((ObjectRef::of(&slice.metadata), Slice::from(&slice))),
            Event::InitDone => {
                let listed: BTreeMap<ObjectRef, Slice> =
                    self.slice_relist.finish().into_iter().collect();
                let stale: Vec<ObjectRef> = self
                    .cluster
                    .endpoint_slices()
                    .keys()
                    .filter(|name| !listed.contains_key(*name))
                    .cloned()
                    .collect();
                for name in stale {
                    touched.extend(self.cluster.remove_slice(&name));
                }
                for (name, slice) in listed {
                    if self.cluster.endpoint_slices().get(&name) != Some(&slice) {
                        touched.extend(self.cluster.insert_compact_slice(name, slice));
                    }
                }
                self.slices_listed = true;
            }
            Event::Apply(slice) => {
                let name = ObjectRef::of(&slice.metadata);
                let slice = Slice::from(&slice);
                if self.cluster.endpoint_slices().get(&name) != Some(&slice) {
                    touched.extend(self.cluster.insert_compact_slice(name, slice));
                }
            }
            Event::Delete(slice) => {
                touched.extend(self.cluster.remove_slice(&ObjectRef::of(&slice.metadata)));
            }
        }
        touched
    }

    pub fn ready(&self) -> bool {
        self.services_listed && self.slices_listed
    }

    /// Whether the agent's Node has been listed (its addresses are then
    /// what the API server says, possibly none).
    pub fn node_listed(&self) -> bool {
        self.node_listed
    }
}

/// A Node's pod CIDRs (`spec.podCIDRs`, else `spec.podCIDR`); entries
/// that are not CIDRs are left out.
pub fn node_pod_cidrs(node: &Node) -> Vec<IpNetwork> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    let listed = spec.pod_cidrs.clone().unwrap_or_default();
    let texts = if listed.is_empty() {
        spec.pod_cidr.iter().cloned().collect()
    } else {
        listed
    };
    texts.iter().filter_map(|text| text.parse().ok()).collect()
}

/// The InternalIP addresses of a Node (in `model::node`: the manifest
/// source reads them too).
pub use crate::model::node::node_internal_addresses;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str, ip: &str) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}))
        .unwrap()
    }

    fn slice(name: &str, service: &str, address: &str) -> EndpointSlice {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default",
                "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"port": 8080}],
            "endpoints": [{"addresses": [address]}]}))
        .unwrap()
    }

    fn names(touched: BTreeSet<ObjectRef>) -> Vec<String> {
        touched.into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn ready_only_after_both_lists_and_relists_touch_only_what_differs() {
        let mut store = Store::default();
        store.apply(WatchEvent::Service(Event::Init));
        store.apply(WatchEvent::Service(Event::InitApply(service(
            "a", "10.1.0.1",
        ))));
        store.apply(WatchEvent::Service(Event::InitApply(service(
            "b", "10.1.0.2",
        ))));
        assert_eq!(
            names(store.apply(WatchEvent::Service(Event::InitDone))),
            vec!["a", "b"]
        );
        assert!(!store.ready(), "slices not listed yet");
        store.apply(WatchEvent::Slice(Event::Init));
        store.apply(WatchEvent::Slice(Event::InitApply(slice(
            "a-1",
            "a",
            "10.244.0.1",
        ))));
        assert_eq!(
            names(store.apply(WatchEvent::Slice(Event::InitDone))),
            vec!["a"]
        );
        assert!(store.ready());
        assert!(!store.node_listed(), "the Node is not listed yet");
        store.apply(WatchEvent::Node(Event::Init));
        store.apply(WatchEvent::Node(Event::InitDone));
        assert!(store.node_listed(), "listed, even with no such Node");

        // A relist with the same objects touches nothing.
        store.apply(WatchEvent::Service(Event::Init));
        store.apply(WatchEvent::Service(Event::InitApply(service(
            "a", "10.1.0.1",
        ))));
        store.apply(WatchEvent::Service(Event::InitApply(service(
            "b", "10.1.0.2",
        ))));
        assert!(store.apply(WatchEvent::Service(Event::InitDone)).is_empty());

        // A relist that lost an object and changed another.
        store.apply(WatchEvent::Slice(Event::Init));
        store.apply(WatchEvent::Slice(Event::InitApply(slice(
            "b-1",
            "b",
            "10.244.0.2",
        ))));
        assert_eq!(
            names(store.apply(WatchEvent::Slice(Event::InitDone))),
            vec!["a", "b"]
        );
        assert_eq!(
            store
                .cluster
                .slices_of(&ObjectRef::new("default", "a"))
                .count(),
            0
        );

        // Events.
        assert_eq!(
            names(store.apply(WatchEvent::Slice(Event::Apply(slice(
                "b-1",
                "b",
                "10.244.0.3"
            ))))),
            vec!["b"]
        );
        assert!(
            store
                .apply(WatchEvent::Slice(Event::Apply(slice(
                    "b-1",
                    "b",
                    "10.244.0.3"
                ))))
                .is_empty(),
            "an unchanged object touches nothing"
        );
        assert_eq!(
            names(store.apply(WatchEvent::Service(Event::Delete(service("a", "10.1.0.1"))))),
            vec!["a"]
        );
    }

    #[test]
    fn an_undecodable_object_keeps_its_last_good_version_and_the_others_flow() {
        let bad = |name: &str| {
            WatchEvent::Undecodable(WatchedKind::Service, ObjectRef::new("default", name))
        };
        let bad_slice = |name: &str| {
            WatchEvent::Undecodable(WatchedKind::Slice, ObjectRef::new("default", name))
        };
        let has = |store: &Store, name: &str| {
            store
                .cluster
                .services()
                .contains_key(&ObjectRef::new("default", name))
        };
        let mut store = Store::default();
        // First list: `new-bad` is bad from the start and is skipped.
        store.apply(WatchEvent::Service(Event::Init));
        store.apply(WatchEvent::Service(Event::InitApply(service(
            "a", "10.1.0.1",
        ))));
        store.apply(bad("new-bad"));
        store.apply(WatchEvent::Service(Event::InitApply(service(
            "b", "10.1.0.2",
        ))));
        assert_eq!(
            names(store.apply(WatchEvent::Service(Event::InitDone))),
            vec!["a", "b"]
        );
        assert!(!has(&store, "new-bad"), "never good: skipped");
        store.apply(WatchEvent::Slice(Event::Init));
        store.apply(WatchEvent::Slice(Event::InitApply(slice(
            "a-1",
            "a",
            "10.244.0.1",
        ))));
        store.apply(WatchEvent::Slice(Event::InitDone));
        let a_before = store.cluster.services()[&ObjectRef::new("default", "a")].clone();

        // `a` turns bad: nothing changes, and `b` still updates.
        assert!(store.apply(bad("a")).is_empty());
        assert!(store.apply(bad_slice("a-1")).is_empty());
        assert_eq!(
            names(store.apply(WatchEvent::Service(Event::Apply(service("b", "10.1.0.3"))))),
            vec!["b"]
        );
        assert_eq!(
            store.cluster.services()[&ObjectRef::new("default", "a")],
            a_before
        );

        // A relist (after an outage) in which `a` and its slice are still
        // bad keeps their last good versions: only `b`'s change is news.
        store.apply(WatchEvent::Service(Event::Init));
        store.apply(bad("a"));
        store.apply(WatchEvent::Service(Event::InitApply(service(
            "b", "10.1.0.4",
        ))));
        assert_eq!(
            names(store.apply(WatchEvent::Service(Event::InitDone))),
            vec!["b"]
        );
        assert_eq!(
            store.cluster.services()[&ObjectRef::new("default", "a")],
            a_before
        );
        store.apply(WatchEvent::Slice(Event::Init));
        store.apply(bad_slice("a-1"));
        assert!(store.apply(WatchEvent::Slice(Event::InitDone)).is_empty());
        assert_eq!(
            store
                .cluster
                .slices_of(&ObjectRef::new("default", "a"))
                .count(),
            1,
            "the bad slice's last good version is kept"
        );

        // Fixed: applied as any change. Deleted: gone.
        assert_eq!(
            names(store.apply(WatchEvent::Service(Event::Apply(service("a", "10.1.0.9"))))),
            vec!["a"]
        );
        assert_eq!(
            names(store.apply(WatchEvent::Service(Event::Delete(service("a", "10.1.0.9"))))),
            vec!["a"]
        );
        assert!(!has(&store, "a"));
        // A bad Node changes nothing.
        assert!(store
            .apply(WatchEvent::Undecodable(
                WatchedKind::Node,
                ObjectRef::new("", "node1")
            ))
            .is_empty());
    }

    #[test]
    fn the_nodes_zone_follows_its_label() {
        let node = |labels: serde_json::Value| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "node1", "labels": labels}}))
                .unwrap()
        };
        let mut store = Store::default();
        let touched = store.apply(WatchEvent::Node(Event::Apply(node(
            json!({"topology.kubernetes.io/zone": "zone-a"}),
        ))));
        assert!(touched.is_empty(), "the driver marks the Services itself");
        assert_eq!(store.node_zone.as_deref(), Some("zone-a"));
        store.apply(WatchEvent::Node(Event::Apply(node(json!({"other": "x"})))));
        assert_eq!(store.node_zone, None, "label removed");
    }

    #[test]
    fn node_internal_addresses_are_its_primary_addresses() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "node1"},
        "status": {"addresses": [
            {"type": "Hostname", "address": "node1"},
            {"type": "InternalIP", "address": "192.168.122.10"},
            {"type": "ExternalIP", "address": "203.0.113.9"},
            {"type": "InternalIP", "address": "fd00::10"},
        ]}}))
        .unwrap();
        assert_eq!(
            node_internal_addresses(&node),
            vec![
                "192.168.122.10".parse::<IpAddr>().unwrap(),
                "fd00::10".parse().unwrap()
            ]
        );
    }

    #[test]
    fn a_nodes_pod_cidrs_come_from_pod_cidrs_else_pod_cidr() {
        let node = |spec: serde_json::Value| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "node1"}, "spec": spec})).unwrap()
        };
        let cidrs = |texts: &[&str]| -> Vec<IpNetwork> {
            texts.iter().map(|text| text.parse().unwrap()).collect()
        };
        let cases = [
            (
                json!({"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]}),
                cidrs(&["10.244.1.0/24", "fd00:10:244:1::/64"]),
            ),
            (
                json!({"podCIDR": "10.244.2.0/24"}),
                cidrs(&["10.244.2.0/24"]),
            ),
            (json!({"podCIDRs": ["nonsense"]}), vec![]),
            (json!({}), vec![]),
        ];
        for (spec, expected) in cases {
            assert_eq!(node_pod_cidrs(&node(spec.clone())), expected, "{spec}");
        }
    }
}
