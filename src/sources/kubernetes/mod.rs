//! The Kubernetes API server as a [`Source`], as kube-proxy watches it.
//!
//! Three kube-runtime watchers (Services and EndpointSlices in every
//! namespace, and the agent's own Node), each with the default backoff and
//! managedFields stripped, feed one [`ClusterState`] (the agent's store:
//! the objects, with slices indexed by Service).
//!
//! - No sync until Services and EndpointSlices have both been listed
//!   (syncing on half a view would delete good state). Then a full sync.
//! - Then incremental: each event marks the Services it touches (the
//!   driver coalesces them and syncs only those).
//! - A relist (a restarted watch, a 410 Gone) replaces that kind's objects
//!   as a whole once complete and marks only the Services whose objects
//!   differ, so an unchanged relist sends nothing.
//! - If the API server goes away or cuts the streams, the watchers retry
//!   with backoff and the kernel table stays exactly as it is; a 410
//!   Expired (the history moved on while away) relists at once.
//! - One object that does not decode as its type (its JSON refused by
//!   the typed struct) never stops the others: it is logged with its
//!   kind, name and field and counted
//!   (`ipvs_agent_undecodable_objects_total`), and its last good version
//!   is kept (a new object bad from the start is skipped).
//! - Every event is stamped on receipt, so the time it waits behind a
//!   sync counts in the network-programming latency.
//!
//! - [`lenient`]: the objects as watched, decoded or not.
//! - [`store`]: the events applied to the cluster state.
//! - [`watch`]: the watchers and the reachability probe.

pub mod lenient;
pub mod store;
pub mod watch;

use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::mpsc;

use self::lenient::Lenient;
use self::store::{Store, WatchEvent, WatchedKind};
use self::watch::{spawn_reachability_probe, spawn_watcher};
use super::{Change, Source};
use crate::model::trigger_time::{family_label, trigger_time, TriggerTime};
use crate::model::ClusterState;
use crate::ops::health::Health;

/// What stops the Kubernetes source from starting.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// `--kubeconfig` could not be read.
    #[error("reading --kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What went wrong.
        source: kube::config::KubeconfigError,
    },
    /// No configuration was found anywhere.
    #[error("no Kubernetes configuration: give --kubeconfig or --manifests, set KUBECONFIG, or run in a cluster: {0}")]
    NoConfiguration(#[source] kube::config::InferConfigError),
    /// The client could not be made from the configuration.
    #[error("creating the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// `--master` is not a URL.
    #[error("--master {master:?}: not a URL (https://HOST:PORT)")]
    Master {
        /// The value given.
        master: String,
    },
}

/// A client from `kubeconfig`, else as kubectl finds one ($KUBECONFIG,
/// ~/.kube/config) or the in-cluster service account; `master` (kube-proxy's
/// `--master`) replaces the API server's address.
pub async fn client(
    kubeconfig: Option<&Path>,
    master: Option<&str>,
) -> Result<Client, KubernetesError> {
    let kubeconfig_error = |source| KubernetesError::Kubeconfig {
        path: kubeconfig
            .map(|path| path.display().to_string())
            .unwrap_or_default(),
        source,
    };
    // kube-proxy's `--master`: the API server's address over the
    // kubeconfig's; without a scheme, https (client-go's default).
    let master = match master.filter(|master| !master.is_empty()) {
        Some(master) => {
            let url = if master.contains("://") {
                master.to_owned()
            } else {
                format!("https://{master}")
            };
            Some(url.parse().map_err(|_| KubernetesError::Master {
                master: master.to_owned(),
            })?)
        }
        None => None,
    };
    let mut config = match (kubeconfig, master) {
        (Some(path), master) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            let mut config = kube::Config::from_custom_kubeconfig(
                file,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(kubeconfig_error)?;
            if let Some(master) = master {
                config.cluster_url = master;
            }
            config
        }
        (None, master) => match (kube::Config::infer().await, master) {
            (Ok(mut config), Some(master)) => {
                config.cluster_url = master;
                config
            }
            (Ok(config), None) => config,
            // `--master` alone is a configuration, as for client-go's
            // BuildConfigFromFlags: the address and no credentials.
            (Err(_), Some(master)) => kube::Config::new(master),
            (Err(error), None) => return Err(KubernetesError::NoConfiguration(error)),
        },
    };
    // The client's own retry of 503/429/504 (15 tries, minutes in all)
    // would hide an unavailable API server from the watchers; they have
    // their own backoff, and health must see the outage.
    config.default_retry = false;
    Client::try_from(config).map_err(KubernetesError::Client)
}

/// The API server's Services, EndpointSlices and the agent's own Node, as
/// a [`Source`].
#[derive(Debug)]
pub struct KubernetesSource {
    changes: mpsc::Receiver<(Instant, WatchEvent)>,
    store: Store,
}

impl KubernetesSource {
    /// Starts the watchers of `client` (the Node named `node_name`) and
    /// the reachability probe, reporting the API server's answers to
    /// `health`.
    pub fn start(client: Client, node_name: &str, health: &Health) -> Self {
        let (sender, changes) = mpsc::channel::<(Instant, WatchEvent)>(4096);
        spawn_watcher(
            Api::<Lenient<Service>>::all(client.clone()),
            watcher::Config::default(),
            WatchedKind::Service,
            WatchEvent::Service,
            sender.clone(),
            health.clone(),
        );
        spawn_watcher(
            Api::<Lenient<EndpointSlice>>::all(client.clone()),
            watcher::Config::default(),
            WatchedKind::Slice,
            WatchEvent::Slice,
            sender.clone(),
            health.clone(),
        );
        spawn_watcher(
            Api::<Lenient<Node>>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={node_name}")),
            WatchedKind::Node,
            WatchEvent::Node,
            sender,
            health.clone(),
        );
        spawn_reachability_probe(client, health.clone());
        Self {
            changes,
            store: Store::default(),
        }
    }
}

/// A created or updated slice's trigger time (kube-proxy ignores the
/// annotation of a deleted slice: it is the time of the last update, not
/// of the deletion).
fn slice_trigger_time(slice: &EndpointSlice) -> Option<TriggerTime> {
    Some(TriggerTime {
        service: ClusterState::service_of_slice(slice)?,
        family: family_label(&slice.address_type)?,
        at: trigger_time(slice.metadata.annotations.as_ref())?,
    })
}

impl Source for KubernetesSource {
    async fn next_change(&mut self) -> Option<Change> {
        let (received, event) = self.changes.recv().await?;
        let node_eligible = match &event {
            WatchEvent::Node(Event::Apply(node) | Event::InitApply(node)) => {
                Some(crate::model::node::node_eligible(node))
            }
            _ => None,
        };
        let (endpoint_changes, service_changes) = match &event {
            WatchEvent::Slice(_) => (1, 0),
            WatchEvent::Service(_) => (0, 1),
            WatchEvent::Node(_) | WatchEvent::Undecodable(..) => (0, 0),
        };
        let trigger_times = match &event {
            WatchEvent::Slice(Event::Apply(slice) | Event::InitApply(slice)) => {
                slice_trigger_time(slice).into_iter().collect()
            }
            _ => Vec::new(),
        };
        let services = self.store.apply(event);
        Some(Change {
            services,
            received,
            endpoint_changes,
            service_changes,
            trigger_times,
            node_eligible,
        })
    }

    fn cluster(&self) -> &ClusterState {
        &self.store.cluster
    }

    fn ready(&self) -> bool {
        self.store.ready()
    }

    fn node_addresses(&self) -> Vec<IpAddr> {
        self.store.node_addresses.clone()
    }

    fn node_listed(&self) -> bool {
        self.store.node_listed()
    }

    fn node_pod_cidrs(&self) -> Vec<ipnetwork::IpNetwork> {
        self.store.node_pod_cidrs.clone()
    }

    fn node_zone(&self) -> Option<String> {
        self.store.node_zone.clone()
    }
}
