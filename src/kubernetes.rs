//! `ipvs-agent run` against a Kubernetes API server, as kube-proxy runs.
//!
//! Three kube-runtime watchers (Services and EndpointSlices in every
//! namespace, and the agent's own Node), each with the default backoff and
//! managedFields stripped, feed one [`ClusterState`] (the agent's store:
//! the objects, with slices indexed by Service).
//!
//! - No sync until Services and EndpointSlices have both been listed
//!   (syncing on half a view would delete good state). Then a full sync.
//! - Then incremental: each event marks the Services it touches; after the
//!   coalescing window (`--ipvs-min-sync-period` since the last sync) only
//!   those are recomputed and diffed. A full resync runs every
//!   `--ipvs-sync-period`.
//! - A relist (a restarted watch, a 410 Gone) replaces that kind's objects
//!   as a whole once complete and marks only the Services whose objects
//!   differ, so an unchanged relist sends nothing.
//! - If the API server goes away or cuts the streams, the watchers retry
//!   with backoff and the kernel table stays exactly as it is.
//! - Each incremental sync logs the time from the first event it covers
//!   to the kernel's last ACK (`event_to_ack_ms`, kube-proxy's network
//!   programming latency measured from the agent's receipt of the event).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::desired::cluster::{prune_service, PrunedService, Slice};
use crate::desired::{ClusterState, ServiceRef};
use crate::health::Health;
use crate::metrics::ServerMetrics;
use crate::node_events::NodeEvents;
use crate::run::{prepare_node, RunError, RunOptions};
use crate::settings::ProxySettings;
use crate::sync::{SyncEngine, SyncKind, SyncReport};

/// How `run` behaves against an API server, beside [`RunOptions`].
#[derive(Debug, Clone)]
pub struct KubernetesOptions {
    /// Shortest time between two incremental syncs
    /// (`--ipvs-min-sync-period`): events within it are coalesced.
    pub min_sync_period: Duration,
}

/// One event from one of the watchers.
// Each event is moved once through a channel; boxing the larger variants
// would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Change {
    Service(Event<Service>),
    Slice(Event<EndpointSlice>),
    Node(Event<Node>),
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

    fn finish(&mut self) -> Vec<K> {
        self.items.take().unwrap_or_default()
    }
}

/// The cluster state as the watchers see it, and what changed.
#[derive(Debug, Default)]
struct Store {
    cluster: ClusterState,
    services_listed: bool,
    slices_listed: bool,
    service_relist: Relist<(ServiceRef, PrunedService)>,
    slice_relist: Relist<(ServiceRef, Slice)>,
    node_addresses: Vec<IpAddr>,
}

impl Store {
    /// Applies one event; returns the Services it may change.
    fn apply(&mut self, change: Change) -> BTreeSet<ServiceRef> {
        let mut touched = BTreeSet::new();
        match change {
            Change::Service(event) => match event {
                Event::Init => self.service_relist.start(),
                // Kept pruned from the start: a relist of a large cluster
                // must not hold every full object at once.
                Event::InitApply(service) => self
                    .service_relist
                    .push((ServiceRef::of(&service.metadata), prune_service(service))),
                Event::InitDone => {
                    let listed: BTreeMap<ServiceRef, PrunedService> =
                        self.service_relist.finish().into_iter().collect();
                    for (name, old) in &self.cluster.services {
                        if listed.get(name) != Some(old) {
                            touched.insert(name.clone());
                        }
                    }
                    for (name, new) in &listed {
                        if self.cluster.services.get(name) != Some(new) {
                            touched.insert(name.clone());
                        }
                    }
                    self.cluster.services = listed;
                    self.services_listed = true;
                }
                Event::Apply(service) => {
                    let name = ServiceRef::of(&service.metadata);
                    let service = prune_service(service);
                    if self.cluster.services.get(&name) != Some(&service) {
                        touched.insert(name.clone());
                        self.cluster.insert_pruned_service(name, service);
                    }
                }
                Event::Delete(service) => {
                    let name = ServiceRef::of(&service.metadata);
                    if self.cluster.remove_service(&name).is_some() {
                        touched.insert(name);
                    }
                }
            },
            Change::Slice(event) => match event {
                Event::Init => self.slice_relist.start(),
                Event::InitApply(slice) => self
                    .slice_relist
                    .push((ServiceRef::of(&slice.metadata), Slice::from(&slice))),
                Event::InitDone => {
                    let listed: BTreeMap<ServiceRef, Slice> =
                        self.slice_relist.finish().into_iter().collect();
                    let stale: Vec<ServiceRef> = self
                        .cluster
                        .endpoint_slices
                        .keys()
                        .filter(|name| !listed.contains_key(*name))
                        .cloned()
                        .collect();
                    for name in stale {
                        touched.extend(self.cluster.remove_slice(&name));
                    }
                    for (name, slice) in listed {
                        if self.cluster.endpoint_slices.get(&name) != Some(&slice) {
                            touched.extend(self.cluster.insert_compact_slice(name, slice));
                        }
                    }
                    self.slices_listed = true;
                }
                Event::Apply(slice) => {
                    let name = ServiceRef::of(&slice.metadata);
                    let slice = Slice::from(&slice);
                    if self.cluster.endpoint_slices.get(&name) != Some(&slice) {
                        touched.extend(self.cluster.insert_compact_slice(name, slice));
                    }
                }
                Event::Delete(slice) => {
                    touched.extend(self.cluster.remove_slice(&ServiceRef::of(&slice.metadata)));
                }
            },
            Change::Node(event) => {
                if let Event::Apply(node) | Event::InitApply(node) = event {
                    self.node_addresses = node_internal_addresses(&node);
                }
            }
        }
        touched
    }

    fn ready(&self) -> bool {
        self.services_listed && self.slices_listed
    }
}

/// The InternalIP addresses of a Node (its primary addresses).
fn node_internal_addresses(node: &Node) -> Vec<IpAddr> {
    node.status
        .as_ref()
        .and_then(|status| status.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|address| address.type_ == "InternalIP")
        .filter_map(|address| address.address.parse().ok())
        .collect()
}

fn spawn_watcher<K, F>(
    api: Api<K>,
    config: watcher::Config,
    wrap: F,
    sender: mpsc::Sender<(Instant, Change)>,
    health: Health,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: Fn(Event<K>) -> Change + Send + 'static,
{
    let kind = K::kind(&()).to_string();
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, config)
            .default_backoff()
            .modify(|object: &mut K| object.managed_fields_mut().clear())
            .boxed();
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    health.api_answered();
                    // Stamped on receipt, so time spent queued behind a
                    // sync counts in the event-to-ACK time.
                    if sender.send((Instant::now(), wrap(event))).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    health.api_failed();
                    warn!(%error, kind, "watch failed; retrying with backoff, the kernel table is left as it is")
                }
            }
        }
    });
}

/// What the loop reports after events and syncs: health, the change
/// metrics, per-server counters and Node events.
#[derive(Debug)]
struct Progress {
    health: Health,
    server_metrics: ServerMetrics,
    events: NodeEvents,
    endpoint_changes: usize,
    service_changes: usize,
}

impl Progress {
    /// A change that needs a sync arrived (`slice`: an EndpointSlice one).
    fn queued(&mut self, slice: bool) {
        self.health.queued();
        let (endpoints, services) = if slice { (1, 0) } else { (0, 1) };
        self.endpoint_changes += endpoints;
        self.service_changes += services;
        crate::metrics::record_changes(
            endpoints,
            services,
            self.endpoint_changes,
            self.service_changes,
        );
    }

    /// A sync completed.
    fn synced(&mut self, engine: &SyncEngine, report: &SyncReport) {
        self.health.synced();
        self.events.report(report);
        (self.endpoint_changes, self.service_changes) = (0, 0);
        crate::metrics::record_changes(0, 0, 0, 0);
        if report.kind == SyncKind::Full {
            engine.update_server_metrics(&self.server_metrics);
        }
    }
}

/// Records the network programming latency of the events first received
/// at `started`, now in the kernel (metric and log line).
fn network_programmed(started: Instant, services: usize) {
    let latency = started.elapsed();
    crate::metrics::record_network_programming(latency);
    info!(
        services,
        event_to_ack_ms = latency.as_secs_f64() * 1e3,
        "network programmed"
    );
}

/// While the API server is known to be unreachable (a watcher failed and
/// none has heard from it since), asks it for its version every few
/// seconds, so that health recovers even when no object changes.
fn spawn_reachability_probe(client: Client, health: Health) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3));
        loop {
            every.tick().await;
            if health.api_unreachable() && client.apiserver_version().await.is_ok() {
                health.api_answered();
            }
        }
    });
}

/// Runs against the API server `client` until `shutdown` completes.
pub async fn run_kubernetes(
    client: Client,
    settings: ProxySettings,
    options: RunOptions,
    kubernetes: KubernetesOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let (sender, mut changes) = mpsc::channel::<(Instant, Change)>(4096);
    spawn_watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        Change::Service,
        sender.clone(),
        options.health.clone(),
    );
    spawn_watcher(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default(),
        Change::Slice,
        sender.clone(),
        options.health.clone(),
    );
    spawn_watcher(
        Api::<Node>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={}", options.node_name)),
        Change::Node,
        sender,
        options.health.clone(),
    );
    spawn_reachability_probe(client.clone(), options.health.clone());
    let health = options.health.clone();
    let events = NodeEvents::new(client, &options.node_name);
    let mut progress = Progress {
        health: health.clone(),
        server_metrics: options.server_metrics.clone(),
        events: events.clone(),
        endpoint_changes: 0,
        service_changes: 0,
    };

    let mut store = Store::default();
    let mut engine: Option<SyncEngine> = None;
    let mut dirty: BTreeSet<ServiceRef> = BTreeSet::new();
    let mut first_event: Option<Instant> = None;
    let mut last_sync = Instant::now();
    let mut resync = tokio::time::interval(options.sync_period);
    resync.reset();
    let mut drain = tokio::time::interval(options.drain_check_interval);
    tokio::pin!(shutdown);
    info!(node = %options.node_name, "waiting for Services and EndpointSlices to be listed");
    loop {
        let coalesce = if dirty.is_empty() || engine.is_none() {
            Duration::from_secs(3600)
        } else {
            kubernetes
                .min_sync_period
                .saturating_sub(last_sync.elapsed())
        };
        tokio::select! {
            _ = &mut shutdown => {
                info!("shutting down; the kernel table is left as it is");
                return Ok(());
            }
            change = changes.recv() => {
                let Some((received, change)) = change else { return Ok(()) };
                if let Change::Node(Event::Apply(node) | Event::InitApply(node)) = &change {
                    health.set_node_eligible(node.metadata.deletion_timestamp.is_none());
                }
                let is_slice = matches!(change, Change::Slice(_));
                let touched = store.apply(change);
                if !touched.is_empty() {
                    progress.queued(is_slice);
                    first_event.get_or_insert(received);
                    dirty.extend(touched);
                }
                if engine.is_none() && store.ready() {
                    let primary = if options.node_addresses.is_empty() {
                        store.node_addresses.clone()
                    } else {
                        options.node_addresses.clone()
                    };
                    let mut new_engine = prepare_node(&settings, &options, primary).await?;
                    events.starting();
                    let report = new_engine.full_sync(&store.cluster).await.inspect_err(|error| events.sync_failed(error))?;
                    progress.synced(&new_engine, &report);
                    engine = Some(new_engine);
                    dirty.clear();
                    first_event = None;
                    last_sync = Instant::now();
                }
            }
            _ = tokio::time::sleep(coalesce), if engine.is_some() && !dirty.is_empty() => {
                let Some(engine) = engine.as_mut() else { continue };
                let services = std::mem::take(&mut dirty);
                let started = first_event.take();
                match engine.sync_services(&store.cluster, &services).await {
                    Ok(report) => {
                        progress.synced(engine, &report);
                        if let Some(started) = started {
                            network_programmed(started, services.len());
                        }
                    }
                    Err(error) => {
                        warn!(%error, "sync failed; the next resync retries");
                        events.sync_failed(&error);
                    }
                }
                last_sync = Instant::now();
            }
            _ = resync.tick(), if engine.is_some() => {
                if let Some(engine) = engine.as_mut() {
                    match engine.resync(&store.cluster, &dirty).await {
                        Ok(report) => {
                            progress.synced(engine, &report);
                            // Events it covered were programmed by it.
                            if let Some(started) = first_event {
                                network_programmed(started, dirty.len());
                            }
                        }
                        Err(error) => {
                            warn!(%error, "full resync failed; retrying at the next period");
                            events.sync_failed(&error);
                        }
                    }
                    dirty.clear();
                    first_event = None;
                    last_sync = Instant::now();
                }
            }
            _ = drain.tick(), if engine.as_ref().is_some_and(SyncEngine::has_draining) => {
                if let Some(engine) = engine.as_mut() {
                    if let Err(error) = engine.check_draining().await {
                        warn!(%error, "checking draining real servers");
                    }
                }
            }
        }
    }
}

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

    fn names(touched: BTreeSet<ServiceRef>) -> Vec<String> {
        touched.into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn ready_only_after_both_lists_and_relists_touch_only_what_differs() {
        let mut store = Store::default();
        store.apply(Change::Service(Event::Init));
        store.apply(Change::Service(Event::InitApply(service("a", "10.1.0.1"))));
        store.apply(Change::Service(Event::InitApply(service("b", "10.1.0.2"))));
        assert_eq!(
            names(store.apply(Change::Service(Event::InitDone))),
            vec!["a", "b"]
        );
        assert!(!store.ready(), "slices not listed yet");
        store.apply(Change::Slice(Event::Init));
        store.apply(Change::Slice(Event::InitApply(slice(
            "a-1",
            "a",
            "10.244.0.1",
        ))));
        assert_eq!(
            names(store.apply(Change::Slice(Event::InitDone))),
            vec!["a"]
        );
        assert!(store.ready());

        // A relist with the same objects touches nothing.
        store.apply(Change::Service(Event::Init));
        store.apply(Change::Service(Event::InitApply(service("a", "10.1.0.1"))));
        store.apply(Change::Service(Event::InitApply(service("b", "10.1.0.2"))));
        assert!(store.apply(Change::Service(Event::InitDone)).is_empty());

        // A relist that lost an object and changed another.
        store.apply(Change::Slice(Event::Init));
        store.apply(Change::Slice(Event::InitApply(slice(
            "b-1",
            "b",
            "10.244.0.2",
        ))));
        assert_eq!(
            names(store.apply(Change::Slice(Event::InitDone))),
            vec!["a", "b"]
        );
        assert_eq!(
            store
                .cluster
                .slices_of(&ServiceRef::new("default", "a"))
                .count(),
            0
        );

        // Events.
        assert_eq!(
            names(store.apply(Change::Slice(Event::Apply(slice("b-1", "b", "10.244.0.3"))))),
            vec!["b"]
        );
        assert!(
            store
                .apply(Change::Slice(Event::Apply(slice("b-1", "b", "10.244.0.3"))))
                .is_empty(),
            "an unchanged object touches nothing"
        );
        assert_eq!(
            names(store.apply(Change::Service(Event::Delete(service("a", "10.1.0.1"))))),
            vec!["a"]
        );
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
}
