//! Where the cluster state comes from. Each source keeps one
//! [`ClusterState`] and yields what changed in it; the driver syncs the
//! engine from whichever source runs.
//!
//! - [`manifests`]: files and directories (`run --manifests`), polled.
//! - [`kubernetes`]: the API server, through kube-runtime watchers.

pub mod kubernetes;
pub mod manifests;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::time::Instant;

use ipnetwork::IpNetwork;

use crate::model::trigger_time::TriggerTime;
use crate::model::{ClusterState, ObjectRef};

/// One change of a source's cluster state.
#[derive(Debug, Clone)]
pub struct Change {
    /// The Services whose desired state may differ now (empty: nothing to
    /// sync, e.g. a Node update or an unchanged relist; a change of the
    /// node's zone is seen by the driver through [`Source::node_zone`]).
    pub services: BTreeSet<ObjectRef>,
    /// When the source received it (the network-programming latency runs
    /// from here).
    pub received: Instant,
    /// EndpointSlice (and v1 Endpoints) objects changed: kube-proxy counts
    /// them apart from Service changes.
    pub endpoint_changes: usize,
    /// Service objects changed.
    pub service_changes: usize,
    /// The `last-change-trigger-time` of each changed (not deleted)
    /// EndpointSlice that has one: the network-programming latency runs
    /// from these.
    pub trigger_times: Vec<TriggerTime>,
    /// Whether the agent's own Node may be proxied to (`false` while it is
    /// being deleted), when this change says.
    pub node_eligible: Option<bool>,
}

/// A source of cluster state.
pub trait Source {
    /// Waits for the next change and applies it to the cluster state.
    /// `None`: the source has ended. Cancel-safe: a change is never lost
    /// when the wait is dropped.
    fn next_change(&mut self) -> impl Future<Output = Option<Change>>;

    /// The cluster state as of the last change.
    fn cluster(&self) -> &ClusterState;

    /// Whether the state is complete enough for a first sync (syncing on
    /// half a view would delete good state).
    fn ready(&self) -> bool;

    /// The node's primary addresses as the source knows them (the Node
    /// object's InternalIPs; none from files).
    fn node_addresses(&self) -> Vec<IpAddr>;

    /// Whether the source has looked for the agent's Node (the API's
    /// list of it is done; files are read whole, so always).
    fn node_listed(&self) -> bool {
        true
    }

    /// The node's pod CIDRs as the source knows them (the Node object's
    /// `spec.podCIDRs`; none from files).
    fn node_pod_cidrs(&self) -> Vec<IpNetwork>;

    /// The node's zone as the source knows it (its Node object's
    /// `topology.kubernetes.io/zone` label; from files, the Node object
    /// named like the node, if any). The driver recomputes every Service
    /// when it changes.
    fn node_zone(&self) -> Option<String>;
}
