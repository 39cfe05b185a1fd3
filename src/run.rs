//! `ipvs-agent run --manifests`: programs the kernel from manifest files
//! and keeps it in sync when the files change.
//!
//! The files are polled (their paths, sizes and modification times): on a
//! change they are loaded again and only the Services whose objects (the
//! Service, its EndpointSlices, its Endpoints) differ are recomputed. A full
//! resync runs every `--ipvs-sync-period`, and draining real servers are
//! checked every few seconds.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use netlink_ipvs::IpvsTimeouts;
use tracing::{info, warn};

use crate::desired::{ClusterState, ServiceRef};
use crate::health::Health;
use crate::manifests::{load_manifests, ManifestError};
use crate::metrics::ServerMetrics;
use crate::settings::ProxySettings;
use crate::sync::{SyncEngine, SyncError};
use crate::system::link::{LinkError, LinkManager};
use crate::system::sysctl::{apply_sysctls, wanted_sysctls, SysctlSettings};

/// How `run` behaves, beside the desired-state settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Manifest files or directories (`run --manifests`; empty when the
    /// objects come from an API server).
    pub manifests: Vec<PathBuf>,
    /// The node's name.
    pub node_name: String,
    /// The node's primary addresses.
    pub node_addresses: Vec<IpAddr>,
    /// Full resync period (`--ipvs-sync-period`).
    pub sync_period: Duration,
    /// How often the manifest files are checked for changes.
    pub poll_interval: Duration,
    /// How often draining real servers are checked.
    pub drain_check_interval: Duration,
    /// Connection timeouts set once at start (zero: unchanged).
    pub timeouts: IpvsTimeouts,
    /// `--ipvs-strict-arp`.
    pub strict_arp: bool,
    /// What `/healthz` and `/livez` report.
    pub health: Health,
    /// The per-server counters `/metrics` shows.
    pub server_metrics: ServerMetrics,
}

/// What stops `run`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The manifests could not be read at all.
    #[error(transparent)]
    Manifests(#[from] ManifestError),
    /// The IPVS netlink connection could not be made.
    #[error("IPVS: {0}")]
    Ipvs(#[from] netlink_ipvs::IpvsError),
    /// The rtnetlink connection could not be made.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The first sync failed as a whole.
    #[error("first sync: {0}")]
    FirstSync(#[from] SyncError),
}

/// Paths, sizes and modification times of the manifest files: a change in
/// any of them means the files are loaded again.
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut seen = Vec::new();
    for path in paths {
        collect_fingerprint(path, &mut seen);
    }
    seen.sort();
    seen
}

fn collect_fingerprint(path: &Path, seen: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
    let Ok(metadata) = std::fs::metadata(path) else {
        seen.push((path.to_owned(), 0, None));
        return;
    };
    if metadata.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                collect_fingerprint(&entry.path(), seen);
            }
        }
        seen.push((path.to_owned(), 0, metadata.modified().ok()));
    } else {
        seen.push((path.to_owned(), metadata.len(), metadata.modified().ok()));
    }
}

fn load(paths: &[PathBuf]) -> Result<ClusterState, ManifestError> {
    let loaded = load_manifests(paths)?;
    for problem in &loaded.problems {
        warn!("skipped: {problem}");
    }
    Ok(loaded.cluster)
}

/// The Services whose desired state may differ between `old` and `new`.
pub fn changed_services(old: &ClusterState, new: &ClusterState) -> BTreeSet<ServiceRef> {
    let mut changed = BTreeSet::new();
    for (service, object) in &new.services {
        if old.services.get(service) != Some(object) {
            changed.insert(service.clone());
        }
    }
    for service in old.services.keys() {
        if !new.services.contains_key(service) {
            changed.insert(service.clone());
        }
    }
    for (name, slice) in &new.endpoint_slices {
        if old.endpoint_slices.get(name) != Some(slice) {
            changed.extend(slice.service.clone());
        }
    }
    for (name, slice) in &old.endpoint_slices {
        if new.endpoint_slices.get(name) != Some(slice) {
            changed.extend(slice.service.clone());
        }
    }
    for (name, endpoints) in &new.endpoints {
        if old.endpoints.get(name) != Some(endpoints) {
            changed.insert(name.clone());
        }
    }
    for name in old.endpoints.keys() {
        if !new.endpoints.contains_key(name) {
            changed.insert(name.clone());
        }
    }
    changed
}

/// Readies the node for the first sync: sets kube-proxy's sysctls, opens
/// the IPVS and rtnetlink connections, sets the IPVS timeouts. Failures of
/// sysctls and timeouts are logged, not fatal (as kube-proxy).
pub async fn prepare_node(
    settings: &ProxySettings,
    options: &RunOptions,
    primary_addresses: Vec<IpAddr>,
) -> Result<SyncEngine, RunError> {
    // IPVS first: asking the kernel for it loads ip_vs when needed, and
    // the net/ipv4/vs sysctls exist only once it is loaded.
    let (connection, ipvs) = netlink_ipvs::new_connection()?;
    tokio::spawn(connection);
    if let Err(error) = ipvs.info().await {
        warn!(%error, "reading IPVS information");
    }
    let sysctl_settings = SysctlSettings {
        strict_arp: options.strict_arp,
    };
    match kernel_release() {
        Ok(release) => {
            let wanted = wanted_sysctls(&release, &sysctl_settings);
            match apply_sysctls(Path::new("/proc/sys"), &wanted) {
                Ok(changed) => {
                    for (sysctl, value) in changed {
                        info!("set {sysctl} = {value}");
                    }
                }
                Err(error) => warn!(%error, "setting sysctls"),
            }
        }
        Err(error) => warn!(%error, "reading the kernel release; sysctls left as they are"),
    }
    let links = LinkManager::new()?;
    let engine = SyncEngine::new(
        settings.clone(),
        options.node_name.clone(),
        primary_addresses,
        ipvs,
        links,
    )
    .keeping_counters(options.server_metrics.is_enabled());
    if let Err(error) = engine.set_timeouts(&options.timeouts).await {
        warn!(%error, "setting IPVS timeouts");
    }
    Ok(engine)
}

/// Runs until `shutdown` completes.
pub async fn run_manifests(
    settings: ProxySettings,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let mut cluster = load(&options.manifests)?;
    let mut seen = fingerprint(&options.manifests);

    let mut engine = prepare_node(&settings, &options, options.node_addresses.clone()).await?;
    engine.full_sync(&cluster).await?;
    options.health.synced();
    engine.update_server_metrics(&options.server_metrics);

    let mut resync = tokio::time::interval(options.sync_period);
    resync.reset();
    let mut poll = tokio::time::interval(options.poll_interval);
    let mut drain = tokio::time::interval(options.drain_check_interval);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!("shutting down; the kernel table is left as it is");
                return Ok(());
            }
            _ = resync.tick() => {
                match engine.resync(&cluster, &BTreeSet::new()).await {
                    Ok(_) => {
                        options.health.synced();
                        engine.update_server_metrics(&options.server_metrics);
                    }
                    Err(error) => warn!(%error, "full resync failed; retrying at the next period"),
                }
            }
            _ = poll.tick() => {
                let now_seen = fingerprint(&options.manifests);
                if now_seen == seen {
                    continue;
                }
                seen = now_seen;
                let new_cluster = match load(&options.manifests) {
                    Ok(new_cluster) => new_cluster,
                    Err(error) => {
                        warn!(%error, "reading manifests; keeping the last state");
                        continue;
                    }
                };
                let changed = changed_services(&cluster, &new_cluster);
                cluster = new_cluster;
                if changed.is_empty() {
                    continue;
                }
                options.health.queued();
                match engine.sync_services(&cluster, &changed).await {
                    Ok(_) => options.health.synced(),
                    Err(error) => warn!(%error, "sync failed; the next resync retries"),
                }
            }
            _ = drain.tick(), if engine.has_draining() => {
                if let Err(error) = engine.check_draining().await {
                    warn!(%error, "checking draining real servers");
                }
            }
        }
    }
}

fn kernel_release() -> std::io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster(documents: &[serde_json::Value]) -> ClusterState {
        let mut loaded = crate::manifests::LoadedManifests::default();
        let text = documents
            .iter()
            .map(|document| serde_json::to_string(document).unwrap())
            .collect::<Vec<_>>()
            .join("\n---\n");
        crate::manifests::load_text(Path::new("test.yaml"), &text, &mut loaded);
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

    fn names(changed: BTreeSet<ServiceRef>) -> Vec<String> {
        changed.into_iter().map(|s| s.name).collect()
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
}
