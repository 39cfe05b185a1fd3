//! The sync engine: keeps the kernel's IPVS table, `kube-ipvs0` and the
//! agent's nftables tables equal to the desired state of the cluster,
//! incrementally.
//!
//! It holds the desired state per Service ([`index`]), its own view of the
//! kernel's table (re-read by each full sync, kept in step from the
//! kernel's answers between them) and the real servers being drained. Four
//! entry points, all level-based (each recomputes from the cluster state
//! it is given, whatever the event was):
//!
//! - [`SyncEngine::full_sync`]: re-reads the kernel (table and addresses),
//!   recomputes every Service and repairs any drift. Used at start (which
//!   adopts what the kernel already has: no flush, only the differences are
//!   sent).
//! - [`SyncEngine::resync`]: every `--ipvs-sync-period`, the drift audit:
//!   re-reads the kernel and repairs any drift against the desired state,
//!   recomputing only the Services changed since the last sync (all of
//!   them when the node's own addresses changed).
//! - [`SyncEngine::sync_services`]: recomputes the given Services only and
//!   diffs only their virtual servers against the view.
//! - [`SyncEngine::check_draining`]: re-reads the virtual servers that have
//!   draining real servers and deletes those whose connections ended or
//!   whose drain timed out.
//!
//! Each returns a [`SyncReport`]; the engine logs nothing but its own
//! warnings and knows nothing of health, metrics or events (the driver
//! hands reports to the observers in `ops`). It reaches the kernel only
//! through the [`Kernel`] seam ([`kernel`]): [`NetlinkKernel`] in the
//! agent, an in-memory kernel in the unit tests.
//!
//! - [`index`]: the desired state per Service and merged.
//! - [`converge`]: plan, apply, re-read rounds.
//! - [`apply`]: the kernel's answers, by errno (the only errno-aware part).
//! - [`netfilter`]: the agent's nftables tables, kept like the IPVS table.
//! - [`conntrack`]: the cleanup of stale UDP and SCTP conntrack entries.
//! - [`report`]: what a sync did.

pub mod apply;
pub mod conntrack;
pub mod converge;
pub mod index;
pub mod kernel;
pub mod netfilter;
pub mod report;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use netlink_ipvs::{IpvsCounters, IpvsError, IpvsServiceKey, IpvsTimeouts};

pub use kernel::{Kernel, NetlinkKernel};
pub use report::{SyncKind, SyncReport};

use self::apply::reread;
use self::index::DesiredIndex;
use self::netfilter::NetfilterView;
use crate::desired::health_check::HealthCheck;
use crate::desired::node_addresses::nodeport_addresses;
use crate::diff::{Draining, Ownership};
use crate::model::node::is_ipv6_link_local;
use crate::model::settings::IpFamilyMode;
use crate::model::{
    ClusterState, LocalAddress, NodeContext, ObjectRef, ProxySettings, Table, KUBE_IPVS_INTERFACE,
};
use crate::system::link::LinkError;

/// What stopped a sync from starting. Failures of single operations do not:
/// they are counted in the [`SyncReport`] and retried by the next sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Reading or writing IPVS failed as a whole.
    #[error("IPVS: {0}")]
    Ipvs(#[from] IpvsError),
    /// `kube-ipvs0` or the node's addresses could not be read or changed.
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// The sync engine; see the module docs.
#[derive(Debug)]
pub struct SyncEngine<K = NetlinkKernel> {
    settings: ProxySettings,
    node: NodeContext,
    kernel: K,
    /// The desired state, per Service and merged.
    desired: DesiredIndex,
    /// Addresses on `kube-ipvs0`, as last read or set.
    bound_addresses: BTreeSet<IpAddr>,
    /// The agent's view of the kernel's table.
    view: Table,
    /// Whether `view` holds the whole table (false after a full read
    /// failed: the view was dropped before reading, so incremental syncs
    /// read what they touch first).
    view_complete: bool,
    /// Whether full reads keep the kernel's counters (only the per-server
    /// metrics read them).
    counters: IpvsCounters,
    draining: Draining,
    /// Full syncs done (after the first, their writes are drift repairs).
    full_syncs: u64,
    /// What the engine knows of its nftables tables.
    netfilter: NetfilterView,
    /// Whether a conntrack cleanup is due (set before the first sync).
    conntrack_pending: bool,
}

impl<K: Kernel> SyncEngine<K> {
    /// An engine for the node `node_name` whose primary addresses are
    /// `primary_addresses`. Nothing is read or written until the first
    /// [`SyncEngine::full_sync`].
    pub fn new(
        settings: ProxySettings,
        node_name: String,
        primary_addresses: Vec<IpAddr>,
        kernel: K,
    ) -> Self {
        Self {
            settings,
            node: NodeContext {
                name: node_name,
                zone: None,
                primary_addresses,
                local_addresses: Vec::new(),
            },
            kernel,
            desired: DesiredIndex::default(),
            bound_addresses: BTreeSet::new(),
            view: Table::new(),
            view_complete: false,
            counters: IpvsCounters::Skip,
            draining: Draining::new(),
            full_syncs: 0,
            netfilter: NetfilterView::default(),
            conntrack_pending: true,
        }
    }

    /// Keeps the kernel's counters in the view (for the per-server
    /// metrics); without it full reads skip them.
    pub fn keeping_counters(mut self, keep: bool) -> Self {
        self.counters = if keep {
            IpvsCounters::Keep
        } else {
            IpvsCounters::Skip
        };
        self
    }

    /// The agent's view of the kernel's table (with the counters of the
    /// last full read when kept).
    pub fn kernel_view(&self) -> &Table {
        &self.view
    }

    /// Which virtual servers of the kernel are the agent's.
    pub fn ownership(&self) -> Ownership {
        let bound = self
            .bound_addresses
            .iter()
            .chain(self.desired.wanted_addresses())
            .copied()
            .collect();
        Ownership::new(&self.settings, bound, &self.node.local_addresses)
    }

    /// The `healthCheckNodePort` servers the Services need, with their
    /// local endpoint counts (as of the last sync).
    pub fn health_checks(&self) -> &BTreeMap<ObjectRef, HealthCheck> {
        self.desired.health_checks()
    }

    /// Where health-check ports are served: `None` for every address
    /// (no `--nodeport-addresses`, as kube-proxy listens on `0.0.0.0`),
    /// else the NodePort addresses.
    pub fn health_check_addresses(&self) -> Option<BTreeSet<IpAddr>> {
        if self.settings.nodeport_addresses.is_all() {
            return None;
        }
        Some(nodeport_addresses(&self.node, &self.settings))
    }

    /// The node's zone, as the desired state is computed with it.
    /// The families this engine programs.
    pub fn ip_family(&self) -> IpFamilyMode {
        self.settings.ip_family
    }

    pub fn node_zone(&self) -> Option<&str> {
        self.node.zone.as_deref()
    }

    /// Sets the node's zone (its `topology.kubernetes.io/zone` label) for
    /// the Services recomputed from now on; the caller marks every
    /// Service changed (topology reads the zone for all of them).
    pub fn set_node_zone(&mut self, zone: Option<String>) {
        self.node.zone = zone;
    }

    /// Whether some real servers are draining.
    pub fn has_draining(&self) -> bool {
        !self.draining.is_empty()
    }

    /// Sets the kernel's TCP, TCP FIN and UDP timeouts (`--ipvs-tcp-timeout`
    /// and friends, like `ipvsadm --set`); zero leaves a value unchanged, and
    /// nothing is sent when all three are zero.
    pub async fn set_timeouts(&mut self, timeouts: &IpvsTimeouts) -> Result<(), IpvsError> {
        if timeouts.tcp == 0 && timeouts.tcp_fin == 0 && timeouts.udp == 0 {
            return Ok(());
        }
        self.kernel.set_timeouts(timeouts).await
    }

    /// Re-reads everything from the kernel, recomputes every Service of
    /// `cluster` and sends what differs.
    pub async fn full_sync(&mut self, cluster: &ClusterState) -> Result<SyncReport, SyncError> {
        self.read_and_converge_all(cluster, None).await
    }

    /// The periodic drift audit: re-reads everything from the kernel and
    /// sends what differs from the desired state. That state is kept as
    /// events arrive, so only the `pending` Services (changed since the
    /// last sync) are recomputed, unless the node's own addresses changed
    /// (NodePorts and externalIPs depend on them): then all are.
    pub async fn resync(
        &mut self,
        cluster: &ClusterState,
        pending: &BTreeSet<ObjectRef>,
    ) -> Result<SyncReport, SyncError> {
        self.read_and_converge_all(cluster, Some(pending)).await
    }

    async fn read_and_converge_all(
        &mut self,
        cluster: &ClusterState,
        pending: Option<&BTreeSet<ObjectRef>>,
    ) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let mut report = SyncReport::new(SyncKind::Full);
        report.repair = self.full_syncs > 0;
        self.kernel.ensure_dummy(KUBE_IPVS_INTERFACE).await?;
        let node_before = self.node.local_addresses.clone();
        self.read_addresses().await?;
        // The old view goes before the new one is read: holding both
        // (and the dump in between) was the agent's peak memory.
        self.view = Table::new();
        self.view_complete = false;
        self.view = self.kernel.read_table(self.counters).await?;
        self.view_complete = true;
        report.phases.read = started.elapsed();
        let phase = Instant::now();

        let pending =
            pending.filter(|_| self.full_syncs > 0 && self.node.local_addresses == node_before);
        report.services = match pending {
            Some(pending) => {
                for service in pending {
                    self.desired
                        .recompute(service, cluster, &self.node, &self.settings);
                }
                pending.len()
            }
            None => self
                .desired
                .recompute_all(cluster, &self.node, &self.settings)
                .len(),
        };
        report.phases.compute = phase.elapsed();

        let keys: BTreeSet<IpvsServiceKey> = self
            .desired
            .table()
            .keys()
            .chain(self.view.keys())
            .copied()
            .collect();
        self.draining.retain(|(key, _), _| keys.contains(key));
        self.note_conntrack_changes(&keys);
        let phase = Instant::now();
        self.converge(keys, &mut report).await;
        report.phases.apply = phase.elapsed();
        self.clean_conntrack(&mut report).await;
        let phase = Instant::now();
        self.sync_netfilter(true, &mut report).await;
        report.phases.netfilter = phase.elapsed();
        let phase = Instant::now();
        self.sync_addresses(&mut report).await?;
        report.phases.addresses = phase.elapsed();
        self.full_syncs += 1;
        Ok(self.finish(report, started))
    }

    /// Recomputes `changed` Services of `cluster` (added, changed or
    /// deleted) and sends what differs for their virtual servers only.
    pub async fn sync_services(
        &mut self,
        cluster: &ClusterState,
        changed: &BTreeSet<ObjectRef>,
    ) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let mut report = SyncReport::new(SyncKind::Incremental);
        let mut keys = BTreeSet::new();
        for service in changed {
            keys.extend(
                self.desired
                    .recompute(service, cluster, &self.node, &self.settings),
            );
        }
        report.services = changed.len();
        if !self.view_complete {
            reread(&mut self.kernel, &keys, &mut self.view).await?;
        }
        self.note_conntrack_changes(&keys);
        let phase = Instant::now();
        self.converge(keys, &mut report).await;
        report.phases.apply = phase.elapsed();
        self.clean_conntrack(&mut report).await;
        let phase = Instant::now();
        self.sync_netfilter(false, &mut report).await;
        report.phases.netfilter = phase.elapsed();
        self.sync_addresses(&mut report).await?;
        Ok(self.finish(report, started))
    }

    /// Re-reads the virtual servers with draining real servers and deletes
    /// those drained (or timed out).
    pub async fn check_draining(&mut self) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let mut report = SyncReport::new(SyncKind::Drain);
        let keys: BTreeSet<IpvsServiceKey> = self.draining.keys().map(|(key, _)| *key).collect();
        if keys.is_empty() {
            return Ok(self.finish(report, started));
        }
        reread(&mut self.kernel, &keys, &mut self.view).await?;
        self.converge(keys, &mut report).await;
        Ok(self.finish(report, started))
    }

    /// Fills in what every report ends with.
    fn finish(&self, mut report: SyncReport, started: Instant) -> SyncReport {
        report.draining = self.draining.len();
        report.totals = self.desired.totals();
        report.duration = started.elapsed();
        report
    }

    async fn read_addresses(&mut self) -> Result<(), SyncError> {
        let local: Vec<LocalAddress> = self.kernel.local_addresses().await?;
        let (bound, node): (Vec<LocalAddress>, Vec<LocalAddress>) = local
            .into_iter()
            .partition(|address| address.interface == KUBE_IPVS_INTERFACE);
        self.bound_addresses = bound
            .into_iter()
            .map(|address| address.address)
            .filter(|address| !is_ipv6_link_local(address))
            .collect();
        // Only the node's own addresses: the rules never look at the VIPs
        // here, and with 20,000 of them every lookup would walk them all.
        self.node.local_addresses = node;
        Ok(())
    }

    async fn sync_addresses(&mut self, report: &mut SyncReport) -> Result<(), SyncError> {
        let wanted: BTreeSet<IpAddr> = self.desired.wanted_addresses().copied().collect();
        if wanted == self.bound_addresses {
            return Ok(());
        }
        let changes = self
            .kernel
            .sync_addresses(KUBE_IPVS_INTERFACE, &wanted)
            .await?;
        report.addresses_added += changes.added.len();
        report.addresses_removed += changes.removed.len();
        self.bound_addresses = wanted;
        Ok(())
    }
}
