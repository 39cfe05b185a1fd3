//! Loading Kubernetes objects from manifest files (`--manifests`).
//!
//! A path is a YAML file (several documents separated by `---`) or a
//! directory, whose `*.yaml`, `*.yml` and `*.json` files are read in name
//! order (not recursively). Kept: v1 `Service`, v1 `Endpoints`,
//! discovery.k8s.io/v1 `EndpointSlice`, v1 `Node` (its zone label and
//! InternalIPs only: the Node named like the agent's node gives it its
//! zone, so topology hints can be checked without a cluster, and its
//! addresses, as the API server's Node would; other Nodes are ignored), and
//! the items of a v1 `List`.
//! Other kinds (Deployments, Pods, ...) are skipped without a word: they
//! legitimately live in the same files. A kept kind with another
//! `apiVersion`, or an object that does not parse, is reported with its
//! file, document, object and field, and skipped; the rest still loads.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use tracing::warn;

use super::{Change, Source};
use crate::model::node::{node_internal_addresses, zone_of};
use crate::model::trigger_time::{family_label, trigger_time, TriggerTime};
use crate::model::{changed_services, ClusterState, ObjectRef};

/// A path that could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct ManifestError {
    /// The path.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// One object (or document) skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem {
    /// The file.
    pub file: PathBuf,
    /// The document's position in the file, from 1.
    pub document: usize,
    /// `Kind namespace/name`, when known.
    pub object: Option<String>,
    /// The field at fault, when known (`spec.ports[0].port`).
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)?;
        if let Some(object) = &self.object {
            write!(f, ": {object}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What the manifests held.
#[derive(Debug, Clone, Default)]
pub struct LoadedManifests {
    /// The objects that loaded.
    pub cluster: ClusterState,
    /// Each Node object's zone (`topology.kubernetes.io/zone`), by
    /// `metadata.name`.
    pub node_zones: BTreeMap<String, Option<String>>,
    /// Each Node object's InternalIPs (`status.addresses`), by
    /// `metadata.name`.
    pub node_addresses: BTreeMap<String, Vec<IpAddr>>,
    /// The objects that did not.
    pub problems: Vec<ManifestProblem>,
    /// Files read.
    pub files: Vec<PathBuf>,
    /// Each EndpointSlice's trigger time: its
    /// `last-change-trigger-time` annotation, else its file's
    /// modification time.
    pub slice_trigger_times: BTreeMap<ObjectRef, SystemTime>,
}

fn is_manifest_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The manifest files directly inside the directory `dir`, in name order
/// (the one walker: loading and change detection both use it).
fn directory_manifests(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|entry| entry.is_file() && is_manifest_file(entry))
        .collect();
    entries.sort();
    Ok(entries)
}

/// The files behind `paths` (directories expanded, in name order).
pub fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut files = Vec::new();
    for path in paths {
        let error = |source| ManifestError {
            path: path.clone(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(error)?;
        if metadata.is_dir() {
            files.extend(directory_manifests(path).map_err(error)?);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Path, size and modification time of one watched path.
type Stamp = (PathBuf, u64, Option<SystemTime>);

/// Paths, sizes and modification times of the given paths and of the
/// manifest files in the given directories (the files [`load_manifests`]
/// reads): a change in any of them means the files are loaded again.
pub fn fingerprint(paths: &[PathBuf]) -> Vec<Stamp> {
    let stamp = |path: &Path| -> Stamp {
        match std::fs::metadata(path) {
            Ok(metadata) => {
                let size = if metadata.is_dir() { 0 } else { metadata.len() };
                (path.to_owned(), size, metadata.modified().ok())
            }
            Err(_) => (path.to_owned(), 0, None),
        }
    };
    let mut seen = Vec::new();
    for path in paths {
        seen.push(stamp(path));
        if path.is_dir() {
            for file in directory_manifests(path).unwrap_or_default() {
                seen.push(stamp(&file));
            }
        }
    }
    seen.sort();
    seen
}

/// Loads every object of `paths`.
pub fn load_manifests(paths: &[PathBuf]) -> Result<LoadedManifests, ManifestError> {
    let mut loaded = LoadedManifests::default();
    for file in manifest_files(paths)? {
        let text = std::fs::read_to_string(&file).map_err(|source| ManifestError {
            path: file.clone(),
            source,
        })?;
        load_text(&file, &text, &mut loaded);
        loaded.files.push(file);
    }
    Ok(loaded)
}

/// Loads the documents of one file's text into `loaded`.
pub fn load_text(file: &Path, text: &str, loaded: &mut LoadedManifests) {
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let problem = |message: String| ManifestProblem {
            file: file.to_owned(),
            document: index + 1,
            object: None,
            field: None,
            message,
        };
        let value = match Value::deserialize(document) {
            Ok(Value::Null) => continue,
            Ok(value) => value,
            Err(error) => {
                loaded
                    .problems
                    .push(problem(format!("not valid YAML: {error}")));
                // The parser cannot go on after a syntax error.
                break;
            }
        };
        load_value(file, index + 1, value, loaded);
    }
}

fn describe(value: &Value) -> String {
    let kind = value["kind"].as_str().unwrap_or("object");
    let name = value["metadata"]["name"].as_str().unwrap_or("<unnamed>");
    let namespace = value["metadata"]["namespace"].as_str().unwrap_or("default");
    format!("{kind} {namespace}/{name}")
}

fn load_value(file: &Path, document: usize, value: Value, loaded: &mut LoadedManifests) {
    let problem = |field: Option<&str>, message: String| ManifestProblem {
        file: file.to_owned(),
        document,
        object: Some(describe(&value)),
        field: field.map(str::to_owned),
        message,
    };
    if !value.is_object() {
        loaded.problems.push(ManifestProblem {
            file: file.to_owned(),
            document,
            object: None,
            field: None,
            message: "not a Kubernetes object (a mapping with apiVersion and kind)".into(),
        });
        return;
    }
    let kind = value["kind"].as_str().unwrap_or("");
    let api_version = value["apiVersion"].as_str().unwrap_or("");
    let expected = match kind {
        "Service" | "Endpoints" | "Node" | "List" => "v1",
        "EndpointSlice" => "discovery.k8s.io/v1",
        "" => {
            loaded
                .problems
                .push(problem(Some("kind"), "missing".into()));
            return;
        }
        _ => return,
    };
    if api_version != expected {
        loaded.problems.push(problem(
            Some("apiVersion"),
            format!("{api_version:?} is not {expected} (the {kind} is skipped)"),
        ));
        return;
    }
    match kind {
        "List" => {
            if let Some(items) = value["items"].as_array() {
                for item in items.clone() {
                    load_value(file, document, item, loaded);
                }
            }
        }
        "Service" => {
            if let Some(service) = parse::<Service>(&value, &problem, loaded) {
                loaded.cluster.insert_service(service);
            }
        }
        "Endpoints" => {
            if let Some(endpoints) = parse::<Endpoints>(&value, &problem, loaded) {
                loaded.cluster.insert_endpoints(endpoints);
            }
        }
        "EndpointSlice" => {
            if let Some(slice) = parse::<EndpointSlice>(&value, &problem, loaded) {
                // The annotation when the file has one, else the time the
                // file was written: a changed file is a change made then.
                let at = trigger_time(slice.metadata.annotations.as_ref()).or_else(|| {
                    std::fs::metadata(file)
                        .and_then(|metadata| metadata.modified())
                        .ok()
                });
                if let Some(at) = at {
                    loaded
                        .slice_trigger_times
                        .insert(ObjectRef::of(&slice.metadata), at);
                }
                loaded.cluster.insert_slice(&slice);
            }
        }
        "Node" => {
            if let Some(node) = parse::<Node>(&value, &problem, loaded) {
                let name = node.metadata.name.clone().unwrap_or_default();
                let zone = zone_of(node.metadata.labels.as_ref());
                loaded
                    .node_addresses
                    .insert(name.clone(), node_internal_addresses(&node));
                loaded.node_zones.insert(name, zone);
            }
        }
        _ => {}
    }
}

fn parse<T: DeserializeOwned>(
    value: &Value,
    problem: &dyn Fn(Option<&str>, String) -> ManifestProblem,
    loaded: &mut LoadedManifests,
) -> Option<T> {
    if value["metadata"]["name"].as_str().unwrap_or("").is_empty() {
        loaded
            .problems
            .push(problem(Some("metadata.name"), "missing".into()));
        return None;
    }
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(object) => Some(object),
        Err(error) => {
            let field = error.path().to_string();
            loaded
                .problems
                .push(problem(Some(&field), error.into_inner().to_string()));
            None
        }
    }
}

/// The manifest files as a [`Source`]: loaded at start, then polled (their
/// paths, sizes and modification times); on a change they are loaded again
/// and only the Services whose objects (the Service, its EndpointSlices, its
/// Endpoints) differ are yielded. A file that fails to load as a whole
/// keeps the last state. The node's zone is that of the Node object named
/// like the node, if the files hold one (the driver recomputes every
/// Service when it changes). Its InternalIPs are the node's addresses
/// when `--node-ip` is not given, as they are read when the agent starts
/// (the family choice), like the API server's Node.
#[derive(Debug)]
pub struct ManifestSource {
    paths: Vec<PathBuf>,
    node_name: String,
    seen: Vec<Stamp>,
    cluster: ClusterState,
    node_zone: Option<String>,
    node_addresses: Vec<IpAddr>,
    poll: tokio::time::Interval,
}

impl ManifestSource {
    /// Loads `paths` (failing when they cannot be read at all) for the
    /// node `node_name` and polls them every `poll_interval`.
    pub fn open(
        paths: Vec<PathBuf>,
        node_name: String,
        poll_interval: Duration,
    ) -> Result<Self, ManifestError> {
        let seen = fingerprint(&paths);
        let loaded = load_reporting(&paths)?;
        let node_zone = loaded.zone_of_node(&node_name);
        let node_addresses = loaded.addresses_of_node(&node_name);
        let mut poll = tokio::time::interval(poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self {
            paths,
            node_name,
            seen,
            cluster: loaded.cluster,
            node_zone,
            node_addresses,
            poll,
        })
    }
}

impl LoadedManifests {
    /// The zone of the Node object named `node_name` (`None` without such
    /// a Node, or without the label).
    pub fn zone_of_node(&self, node_name: &str) -> Option<String> {
        self.node_zones.get(node_name).cloned().flatten()
    }

    /// The InternalIPs of the Node object named `node_name` (empty without
    /// such a Node).
    pub fn addresses_of_node(&self, node_name: &str) -> Vec<IpAddr> {
        self.node_addresses
            .get(node_name)
            .cloned()
            .unwrap_or_default()
    }
}

/// Loads `paths`, logging each object that was skipped.
fn load_reporting(paths: &[PathBuf]) -> Result<LoadedManifests, ManifestError> {
    let loaded = load_manifests(paths)?;
    for problem in &loaded.problems {
        warn!("skipped: {problem}");
    }
    Ok(loaded)
}

/// How many objects differ between two loads of the files, counted as
/// kube-proxy counts watch events: one per Service, and one per
/// EndpointSlice or v1 Endpoints, created, changed or deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectChanges {
    /// Services.
    pub services: usize,
    /// EndpointSlices and v1 Endpoints.
    pub endpoints: usize,
}

fn differing<K: Ord, V: PartialEq>(old: &BTreeMap<K, V>, new: &BTreeMap<K, V>) -> usize {
    let changed_or_new = new
        .iter()
        .filter(|(key, value)| old.get(key) != Some(value))
        .count();
    let deleted = old.keys().filter(|key| !new.contains_key(key)).count();
    changed_or_new + deleted
}

/// The objects that differ between `old` and `new`.
pub fn changed_objects(old: &ClusterState, new: &ClusterState) -> ObjectChanges {
    ObjectChanges {
        services: differing(old.services(), new.services()),
        endpoints: differing(old.endpoint_slices(), new.endpoint_slices())
            + differing(old.endpoints(), new.endpoints()),
    }
}

/// The trigger times of the slices created or changed between `old` and
/// `new` (deleted ones have none, as in kube-proxy).
pub fn changed_slice_trigger_times(
    old: &ClusterState,
    new: &ClusterState,
    times: &BTreeMap<ObjectRef, SystemTime>,
) -> Vec<TriggerTime> {
    new.endpoint_slices()
        .iter()
        .filter(|(name, slice)| old.endpoint_slices().get(*name) != Some(*slice))
        .filter_map(|(name, slice)| {
            Some(TriggerTime {
                service: slice.service.clone()?,
                family: family_label(&slice.address_type)?,
                at: *times.get(name)?,
            })
        })
        .collect()
}

impl Source for ManifestSource {
    async fn next_change(&mut self) -> Option<Change> {
        loop {
            self.poll.tick().await;
            let now_seen = fingerprint(&self.paths);
            if now_seen == self.seen {
                continue;
            }
            self.seen = now_seen;
            let received = Instant::now();
            let loaded = match load_reporting(&self.paths) {
                Ok(loaded) => loaded,
                Err(error) => {
                    warn!(%error, "reading manifests; keeping the last state");
                    continue;
                }
            };
            let node_zone = loaded.zone_of_node(&self.node_name);
            let zone_changed = node_zone != self.node_zone;
            self.node_zone = node_zone;
            self.node_addresses = loaded.addresses_of_node(&self.node_name);
            let services = changed_services(&self.cluster, &loaded.cluster);
            let counts = changed_objects(&self.cluster, &loaded.cluster);
            let trigger_times = changed_slice_trigger_times(
                &self.cluster,
                &loaded.cluster,
                &loaded.slice_trigger_times,
            );
            self.cluster = loaded.cluster;
            // A zone change alone is a change too: the driver sees the new
            // zone and recomputes every Service.
            if !services.is_empty() || zone_changed {
                return Some(Change {
                    services,
                    received,
                    endpoint_changes: counts.endpoints,
                    service_changes: counts.services,
                    trigger_times,
                    node_eligible: None,
                });
            }
        }
    }

    fn cluster(&self) -> &ClusterState {
        &self.cluster
    }

    fn ready(&self) -> bool {
        true
    }

    fn node_addresses(&self) -> Vec<IpAddr> {
        self.node_addresses.clone()
    }

    fn node_pod_cidrs(&self) -> Vec<ipnetwork::IpNetwork> {
        Vec::new()
    }

    fn node_zone(&self) -> Option<String> {
        self.node_zone.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectRef;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn cluster(documents: &[serde_json::Value]) -> ClusterState {
        let mut loaded = LoadedManifests::default();
        let text = documents
            .iter()
            .map(|document| serde_json::to_string(document).unwrap())
            .collect::<Vec<_>>()
            .join("\n---\n");
        load_text(Path::new("test.yaml"), &text, &mut loaded);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        loaded.cluster
    }

    fn service(name: &str, ip: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"clusterIP": ip, "ports": [{"port": 80}]}})
    }

    fn slice(name: &str, service: &str, address: &str) -> serde_json::Value {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
               "addressType": "IPv4", "ports": [{"port": 8080}],
               "endpoints": [{"addresses": [address]}]})
    }

    fn names(changed: BTreeSet<ObjectRef>) -> Vec<String> {
        changed.into_iter().map(|s| s.name).collect()
    }

    fn loaded(documents: &[serde_json::Value]) -> LoadedManifests {
        let mut loaded = LoadedManifests::default();
        let text: Vec<String> = documents.iter().map(|d| d.to_string()).collect();
        load_text(Path::new("test.yaml"), &text.join("\n---\n"), &mut loaded);
        loaded
    }

    /// Objects are counted as kube-proxy counts watch events, and only
    /// created or changed slices carry a trigger time (the annotation; a
    /// file that cannot be stat'ed, as here, gives no fallback time).
    #[test]
    fn changes_are_counted_per_object_and_timed_by_annotation() {
        let before = loaded(&[
            service("a", "10.1.0.1"),
            service("b", "10.1.0.2"),
            slice("a-1", "a", "10.244.0.1"),
            slice("b-1", "b", "10.244.0.2"),
        ]);
        let mut changed = slice("a-1", "a", "10.244.0.9");
        changed["metadata"]["annotations"] =
            json!({"endpoints.kubernetes.io/last-change-trigger-time": "2026-12-02T15:04:05Z"});
        let after = loaded(&[
            service("a", "10.1.0.1"),
            service("c", "10.1.0.3"),
            changed,
            slice("c-1", "c", "10.244.0.3"),
        ]);
        assert_eq!(
            changed_objects(&before.cluster, &after.cluster),
            ObjectChanges {
                services: 2,  // b deleted, c created
                endpoints: 3, // a-1 changed, b-1 deleted, c-1 created
            }
        );
        let times = changed_slice_trigger_times(
            &before.cluster,
            &after.cluster,
            &after.slice_trigger_times,
        );
        assert_eq!(
            times,
            [TriggerTime {
                service: ObjectRef::new("default", "a"),
                family: "IPv4",
                at: crate::model::trigger_time::parse_rfc3339("2026-12-02T15:04:05Z").unwrap(),
            }]
        );
        assert_eq!(
            changed_objects(&after.cluster, &after.cluster.clone()),
            ObjectChanges::default()
        );
    }

    /// Without the annotation, a slice's trigger time is its file's
    /// modification time: a changed file is a change made then.
    #[test]
    fn a_slice_without_the_annotation_is_timed_by_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slices.yaml");
        std::fs::write(&file, slice("a-1", "a", "10.244.0.1").to_string()).unwrap();
        let loaded = load_manifests(std::slice::from_ref(&file)).unwrap();
        let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
        assert_eq!(
            loaded
                .slice_trigger_times
                .get(&ObjectRef::new("default", "a-1")),
            Some(&modified)
        );
    }

    #[test]
    fn only_services_whose_objects_changed_are_recomputed() {
        let before = cluster(&[
            service("a", "10.1.0.1"),
            service("b", "10.1.0.2"),
            service("c", "10.1.0.3"),
            slice("a-1", "a", "10.244.0.1"),
            slice("b-1", "b", "10.244.0.2"),
        ]);
        assert!(changed_services(&before, &before.clone()).is_empty());
        let after = cluster(&[
            service("a", "10.1.0.1"),
            service("b", "10.1.0.2"),
            service("d", "10.1.0.4"),
            slice("a-1", "a", "10.244.0.9"),
            slice("b-1", "b", "10.244.0.2"),
        ]);
        assert_eq!(
            names(changed_services(&before, &after)),
            vec!["a", "c", "d"],
            "a's slice changed, c was deleted, d was added; b is untouched"
        );
        let moved = cluster(&[
            service("a", "10.1.0.1"),
            service("b", "10.1.0.2"),
            service("c", "10.1.0.3"),
            slice("a-1", "b", "10.244.0.1"),
            slice("b-1", "b", "10.244.0.2"),
        ]);
        assert_eq!(names(changed_services(&before, &moved)), vec!["a", "b"]);
    }

    #[test]
    fn the_node_named_like_the_agents_gives_its_zone_and_other_nodes_are_ignored() {
        let text = r#"
apiVersion: v1
kind: Node
metadata:
  name: node1
  labels:
    topology.kubernetes.io/zone: zone-a
    kubernetes.io/hostname: node1
---
apiVersion: v1
kind: Node
metadata:
  name: node2
  labels:
    topology.kubernetes.io/zone: "not a valid label value!"
---
apiVersion: v1
kind: Node
metadata:
  name: node3
status:
  addresses:
  - {type: Hostname, address: node3}
  - {type: InternalIP, address: 192.168.50.13}
  - {type: ExternalIP, address: 203.0.113.13}
  - {type: InternalIP, address: "fd00::13"}
---
apiVersion: v2
kind: Node
metadata:
  name: node4
"#;
        let mut loaded = LoadedManifests::default();
        load_text(Path::new("nodes.yaml"), text, &mut loaded);
        assert_eq!(loaded.zone_of_node("node1"), Some("zone-a".to_owned()));
        assert_eq!(
            loaded.zone_of_node("node2"),
            Some("not a valid label value!".to_owned()),
            "a label value is a string, whatever the API server would say of it"
        );
        assert_eq!(loaded.zone_of_node("node3"), None, "no label");
        assert_eq!(loaded.zone_of_node("node9"), None, "no such Node");
        assert_eq!(
            loaded.addresses_of_node("node3"),
            vec![
                "192.168.50.13".parse::<IpAddr>().unwrap(),
                "fd00::13".parse().unwrap()
            ],
            "InternalIPs, in order"
        );
        assert!(loaded.addresses_of_node("node1").is_empty());
        assert_eq!(
            loaded
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![
                "nodes.yaml: document 4: Node default/node4: apiVersion: \"v2\" is not v1 (the Node is skipped)"
            ]
        );
        assert!(loaded.cluster.services().is_empty());
    }
}
