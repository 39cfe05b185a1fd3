//! The sync engine: keeps the kernel's IPVS table and `kube-ipvs0` equal to
//! the desired state of the cluster, incrementally.
//!
//! It holds what each Service contributed, the merged desired table, its
//! own view of the kernel's table (re-read by each full sync, kept in step
//! from the kernel's answers between them) and the real servers being
//! drained. Four entry points, all level-based (each recomputes from the
//! cluster state it is given, whatever the event was):
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
//! Source-agnostic: `run --manifests` and the Kubernetes watch feed it the
//! same [`ClusterState`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use netlink_ipvs::{IpvsCounters, IpvsError, IpvsHandle, IpvsServiceKey, IpvsTimeouts};
use tracing::{debug, info, warn};

use crate::apply::{apply_batch, reread, MessageCounts};
use crate::desired::node_addresses::KUBE_IPVS_INTERFACE;
use crate::desired::{desired_for_service, ClusterState, FieldError, NoLocalEndpoints, ServiceRef};
use crate::diff::{plan_changes, table, DrainPolicy, Draining, Ownership, Table};
use crate::settings::{LocalAddress, NodeContext, ProxySettings};
use crate::system::link::{is_ipv6_link_local, LinkError, LinkManager};

/// How many times a virtual server whose view was wrong is re-read and
/// planned again within one sync.
const REREAD_ROUNDS: usize = 3;

/// How many virtual servers are planned and applied together.
const VIRTUAL_SERVERS_PER_PLAN: usize = 2048;

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

/// Which kind of sync a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Everything re-read and recomputed.
    Full,
    /// Some Services recomputed.
    Incremental,
    /// Draining real servers checked.
    Drain,
}

impl SyncKind {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Full => "full",
            SyncKind::Incremental => "incremental",
            SyncKind::Drain => "drain",
        }
    }
}

/// What one sync did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// The kind of sync.
    pub kind: SyncKind,
    /// Services recomputed.
    pub services: usize,
    /// IPVS write messages sent, by kind.
    pub sent: MessageCounts,
    /// Operations the kernel refused (retried by the next sync).
    pub failed: usize,
    /// Those refusals by errno (0: not a kernel answer).
    pub errors: BTreeMap<i32, usize>,
    /// Virtual servers re-read because the kernel disagreed with the view.
    pub reread: usize,
    /// Addresses added to `kube-ipvs0`.
    pub addresses_added: usize,
    /// Addresses removed from `kube-ipvs0`.
    pub addresses_removed: usize,
    /// Real servers draining after the sync.
    pub draining: usize,
    /// How long the sync took.
    pub duration: Duration,
    /// Where that time went.
    pub phases: SyncPhases,
}

/// The time of each part of a sync (profiling evidence in the log).
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncPhases {
    /// Reading the kernel (kube-ipvs0, node addresses, the IPVS table).
    pub read: Duration,
    /// Computing the desired state.
    pub compute: Duration,
    /// Planning and sending IPVS messages (with re-reads).
    pub apply: Duration,
    /// Changing addresses on kube-ipvs0.
    pub addresses: Duration,
}

impl SyncReport {
    fn new(kind: SyncKind) -> Self {
        Self {
            kind,
            services: 0,
            sent: MessageCounts::default(),
            failed: 0,
            errors: BTreeMap::new(),
            reread: 0,
            addresses_added: 0,
            addresses_removed: 0,
            draining: 0,
            duration: Duration::ZERO,
            phases: SyncPhases::default(),
        }
    }

    fn log(&self) {
        info!(
            kind = self.kind.as_str(),
            services = self.services,
            writes = self.sent.total(),
            add_service = self.sent.add_service,
            edit_service = self.sent.edit_service,
            delete_service = self.sent.delete_service,
            add_real_server = self.sent.add_real_server,
            edit_real_server = self.sent.edit_real_server,
            delete_real_server = self.sent.delete_real_server,
            failed = self.failed,
            reread = self.reread,
            addresses_added = self.addresses_added,
            addresses_removed = self.addresses_removed,
            draining = self.draining,
            duration_ms = self.duration.as_secs_f64() * 1e3,
            read_ms = self.phases.read.as_secs_f64() * 1e3,
            compute_ms = self.phases.compute.as_secs_f64() * 1e3,
            apply_ms = self.phases.apply.as_secs_f64() * 1e3,
            addresses_ms = self.phases.addresses.as_secs_f64() * 1e3,
            "synced"
        );
    }
}

/// What one Service contributed to the desired state.
#[derive(Debug, Clone, Default)]
struct ServiceRecord {
    /// Its virtual servers (without those another Service had first).
    keys: Vec<IpvsServiceKey>,
    /// The addresses it needs on `kube-ipvs0`.
    bound_addresses: BTreeSet<IpAddr>,
    /// Whether a Local traffic policy left it without local endpoints.
    no_local_endpoints: NoLocalEndpoints,
}

/// Totals over the desired state, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
struct DesiredCounts {
    real_servers: usize,
    no_local_internal: usize,
    no_local_external: usize,
}

/// The sync engine; see the module docs.
#[derive(Debug)]
pub struct SyncEngine {
    settings: ProxySettings,
    node: NodeContext,
    ipvs: IpvsHandle,
    links: LinkManager,
    /// What each Service contributed, as last computed (its entries are in
    /// `desired`, not held twice).
    services: BTreeMap<ServiceRef, ServiceRecord>,
    /// Totals over `services` and `desired`, kept as they change (the
    /// metrics must not cost a walk over the table on every event).
    counts: DesiredCounts,
    /// The merged desired table, and which Service each key came from.
    desired: Table,
    key_owner: BTreeMap<IpvsServiceKey, ServiceRef>,
    /// How many Services want each address on `kube-ipvs0`.
    wanted_addresses: BTreeMap<IpAddr, usize>,
    /// Addresses on `kube-ipvs0`, as last read or set.
    bound_addresses: BTreeSet<IpAddr>,
    /// The agent's view of the kernel's table.
    kernel: Table,
    /// Whether `kernel` holds the whole table (false after a full read
    /// failed: the view was dropped before reading, so incremental syncs
    /// read what they touch first).
    kernel_complete: bool,
    /// Whether the view keeps the kernel's counters (only the per-server
    /// metrics read them: otherwise full reads skip them).
    keep_counters: bool,
    draining: Draining,
    /// The problems last reported per Service (to log each only once).
    problems: BTreeMap<ServiceRef, Vec<FieldError>>,
    /// Full syncs done (after the first, their writes are drift repairs).
    full_syncs: u64,
}

impl SyncEngine {
    /// An engine for the node `node_name` whose primary addresses are
    /// `primary_addresses`. Nothing is read or written until the first
    /// [`SyncEngine::full_sync`].
    pub fn new(
        settings: ProxySettings,
        node_name: String,
        primary_addresses: Vec<IpAddr>,
        ipvs: IpvsHandle,
        links: LinkManager,
    ) -> Self {
        Self {
            settings,
            node: NodeContext {
                name: node_name,
                primary_addresses,
                local_addresses: Vec::new(),
            },
            ipvs,
            links,
            services: BTreeMap::new(),
            counts: DesiredCounts::default(),
            desired: Table::new(),
            key_owner: BTreeMap::new(),
            wanted_addresses: BTreeMap::new(),
            bound_addresses: BTreeSet::new(),
            kernel: Table::new(),
            kernel_complete: false,
            keep_counters: false,
            draining: Draining::new(),
            problems: BTreeMap::new(),
            full_syncs: 0,
        }
    }

    /// Keeps the kernel's counters in the view (for the per-server
    /// metrics); without it full reads drop them.
    pub fn keeping_counters(mut self, keep: bool) -> Self {
        self.keep_counters = keep;
        self
    }

    /// Records a completed sync in the metrics.
    fn record_metrics(&self, report: &SyncReport) {
        let repair = report.kind == SyncKind::Full && self.full_syncs > 1;
        crate::metrics::record_sync(report, repair);
        crate::metrics::record_table(
            self.desired.len(),
            self.counts.real_servers,
            self.counts.no_local_internal,
            self.counts.no_local_external,
        );
    }

    /// Refreshes the per-server counters from the kernel view (as read by
    /// the last full sync), for the virtual servers the agent owns.
    pub fn update_server_metrics(&self, servers: &crate::metrics::ServerMetrics) {
        let ownership = self.ownership();
        servers.update(&self.kernel, |key| ownership.owns(key));
    }

    /// The agent's view of the kernel's table.
    pub fn kernel_view(&self) -> &Table {
        &self.kernel
    }

    /// The merged desired table.
    pub fn desired_table(&self) -> &Table {
        &self.desired
    }

    /// Whether some real servers are draining.
    pub fn has_draining(&self) -> bool {
        !self.draining.is_empty()
    }

    /// Sets the kernel's TCP, TCP FIN and UDP timeouts (`--ipvs-tcp-timeout`
    /// and friends, like `ipvsadm --set`); zero leaves a value unchanged, and
    /// nothing is sent when all three are zero.
    pub async fn set_timeouts(&self, timeouts: &IpvsTimeouts) -> Result<(), IpvsError> {
        if timeouts.tcp == 0 && timeouts.tcp_fin == 0 && timeouts.udp == 0 {
            return Ok(());
        }
        self.ipvs.set_timeouts(timeouts).await
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
        pending: &BTreeSet<ServiceRef>,
    ) -> Result<SyncReport, SyncError> {
        self.read_and_converge_all(cluster, Some(pending)).await
    }

    /// Forgets the desired state and recomputes every Service of
    /// `cluster`; returns them.
    fn recompute_all(&mut self, cluster: &ClusterState) -> BTreeSet<ServiceRef> {
        self.services.clear();
        self.counts = DesiredCounts::default();
        self.desired.clear();
        self.key_owner.clear();
        self.wanted_addresses.clear();
        let all: BTreeSet<ServiceRef> = cluster.services.keys().cloned().collect();
        self.problems.retain(|service, _| all.contains(service));
        for service in &all {
            self.recompute(service, cluster);
        }
        all
    }

    async fn read_and_converge_all(
        &mut self,
        cluster: &ClusterState,
        pending: Option<&BTreeSet<ServiceRef>>,
    ) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let mut report = SyncReport::new(SyncKind::Full);
        self.links.ensure_dummy(KUBE_IPVS_INTERFACE).await?;
        let node_before = self.node.local_addresses.clone();
        self.read_addresses().await?;
        // The old view goes before the new one is read: holding both
        // (and the dump in between) was the agent's peak memory.
        self.kernel = Table::new();
        self.kernel_complete = false;
        let counters = if self.keep_counters {
            IpvsCounters::Keep
        } else {
            IpvsCounters::Skip
        };
        self.kernel = self
            .ipvs
            .table_with(counters, table::entry_of)
            .await?
            .into_iter()
            .collect();
        self.kernel_complete = true;
        report.phases.read = started.elapsed();
        let phase = Instant::now();

        let pending =
            pending.filter(|_| self.full_syncs > 0 && self.node.local_addresses == node_before);
        let recomputed: BTreeSet<ServiceRef> = match pending {
            Some(pending) => {
                for service in pending {
                    self.recompute(service, cluster);
                }
                pending.clone()
            }
            None => self.recompute_all(cluster),
        };
        report.services = recomputed.len();
        report.phases.compute = phase.elapsed();

        let keys: BTreeSet<IpvsServiceKey> = self
            .desired
            .keys()
            .chain(self.kernel.keys())
            .copied()
            .collect();
        self.draining.retain(|(key, _), _| keys.contains(key));
        let phase = Instant::now();
        self.converge(keys, &mut report).await;
        report.phases.apply = phase.elapsed();
        let phase = Instant::now();
        self.sync_addresses(&mut report).await?;
        report.phases.addresses = phase.elapsed();
        report.draining = self.draining.len();
        report.duration = started.elapsed();
        report.log();
        self.full_syncs += 1;
        self.record_metrics(&report);
        Ok(report)
    }

    /// Recomputes `changed` Services of `cluster` (added, changed or
    /// deleted) and sends what differs for their virtual servers only.
    pub async fn sync_services(
        &mut self,
        cluster: &ClusterState,
        changed: &BTreeSet<ServiceRef>,
    ) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let mut report = SyncReport::new(SyncKind::Incremental);
        let mut keys = BTreeSet::new();
        for service in changed {
            keys.extend(self.recompute(service, cluster));
        }
        report.services = changed.len();
        if !self.kernel_complete {
            reread(&self.ipvs, &keys, &mut self.kernel).await?;
        }
        self.converge(keys, &mut report).await;
        self.sync_addresses(&mut report).await?;
        report.draining = self.draining.len();
        report.duration = started.elapsed();
        report.log();
        self.record_metrics(&report);
        Ok(report)
    }

    /// Re-reads the virtual servers with draining real servers and deletes
    /// those drained (or timed out).
    pub async fn check_draining(&mut self) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let mut report = SyncReport::new(SyncKind::Drain);
        let keys: BTreeSet<IpvsServiceKey> = self.draining.keys().map(|(key, _)| *key).collect();
        if keys.is_empty() {
            return Ok(report);
        }
        reread(&self.ipvs, &keys, &mut self.kernel).await?;
        self.converge(keys, &mut report).await;
        report.draining = self.draining.len();
        report.duration = started.elapsed();
        if report.sent.total() > 0 || report.failed > 0 {
            report.log();
            self.record_metrics(&report);
        }
        Ok(report)
    }

    /// Recomputes one Service into the desired table; returns the virtual
    /// servers whose desired state may have changed (its old and new ones).
    fn recompute(
        &mut self,
        service: &ServiceRef,
        cluster: &ClusterState,
    ) -> BTreeSet<IpvsServiceKey> {
        let mut touched = BTreeSet::new();
        if let Some(old) = self.services.remove(service) {
            self.counts.no_local_internal -= usize::from(old.no_local_endpoints.internal);
            self.counts.no_local_external -= usize::from(old.no_local_endpoints.external);
            for key in &old.keys {
                if self.key_owner.get(key) == Some(service) {
                    self.key_owner.remove(key);
                    if let Some(entry) = self.desired.remove(key) {
                        self.counts.real_servers -= entry.real_servers.len();
                    }
                }
                touched.insert(*key);
            }
            for address in &old.bound_addresses {
                if let Some(count) = self.wanted_addresses.get_mut(address) {
                    *count -= 1;
                    if *count == 0 {
                        self.wanted_addresses.remove(address);
                    }
                }
            }
        }
        if !cluster.services.contains_key(service) {
            self.problems.remove(service);
            return touched;
        }
        let Some(mut new) = desired_for_service(service, cluster, &self.node, &self.settings)
        else {
            return touched;
        };
        if new.problems.is_empty() {
            self.problems.remove(service);
        } else {
            if self.problems.get(service) != Some(&new.problems) {
                for problem in &new.problems {
                    warn!(service = %service, "skipped: {problem}");
                }
            }
            self.problems.insert(service.clone(), new.problems.clone());
        }
        let mut conflicts = Vec::new();
        new.table.retain(|key, _| match self.key_owner.get(key) {
            Some(other) if other != service => {
                conflicts.push((*key, other.clone()));
                false
            }
            _ => true,
        });
        for (key, other) in conflicts {
            warn!(service = %service, "virtual server {key} is already {other}'s; not programmed for this Service");
        }
        let keys: Vec<IpvsServiceKey> = new.table.keys().copied().collect();
        for (key, entry) in std::mem::take(&mut new.table) {
            self.key_owner.insert(key, service.clone());
            self.counts.real_servers += entry.real_servers.len();
            if let Some(replaced) = self.desired.insert(key, entry) {
                self.counts.real_servers -= replaced.real_servers.len();
            }
            touched.insert(key);
        }
        for address in &new.bound_addresses {
            *self.wanted_addresses.entry(*address).or_default() += 1;
        }
        self.counts.no_local_internal += usize::from(new.no_local_endpoints.internal);
        self.counts.no_local_external += usize::from(new.no_local_endpoints.external);
        self.services.insert(
            service.clone(),
            ServiceRecord {
                keys,
                bound_addresses: new.bound_addresses,
                no_local_endpoints: new.no_local_endpoints,
            },
        );
        touched
    }

    fn ownership(&self) -> Ownership {
        let node_addresses = self
            .node
            .local_addresses
            .iter()
            .filter(|local| local.interface != KUBE_IPVS_INTERFACE)
            .map(|local| local.address)
            .collect();
        Ownership {
            bound_addresses: self
                .bound_addresses
                .iter()
                .chain(self.wanted_addresses.keys())
                .copied()
                .collect(),
            node_addresses,
            node_port_range: Some(self.settings.node_port_range.clone()),
            excluded: self.settings.exclude_cidrs.clone(),
        }
    }

    /// Plans and applies the virtual servers `keys` once; returns those
    /// the kernel disagreed about.
    async fn plan_and_apply(
        &mut self,
        keys: &BTreeSet<IpvsServiceKey>,
        ownership: &Ownership,
        policy: &DrainPolicy,
        report: &mut SyncReport,
    ) -> BTreeSet<IpvsServiceKey> {
        let desired = restrict(&self.desired, keys);
        let kernel = restrict(&self.kernel, keys);
        let draining: Draining = self
            .draining
            .iter()
            .filter(|((key, _), _)| keys.contains(key))
            .map(|(entry, started)| (*entry, *started))
            .collect();
        let plan = plan_changes(
            &desired,
            &kernel,
            ownership,
            &draining,
            policy,
            Instant::now(),
        );
        self.draining.retain(|(key, _), _| !keys.contains(key));
        self.draining.extend(plan.draining);
        let batch = apply_batch(&self.ipvs, plan.operations, &mut self.kernel).await;
        report.sent.add(&batch.sent);
        for failed in &batch.failed {
            warn!(error = %failed.error, "kernel refused: {}", failed.operation);
            *report
                .errors
                .entry(failed.error.errno().unwrap_or(0))
                .or_default() += 1;
        }
        report.failed += batch.failed.len();
        batch.reread
    }

    /// Plans and applies the virtual servers `keys`, re-reading those the
    /// kernel disagreed about and planning them again.
    async fn converge(&mut self, mut keys: BTreeSet<IpvsServiceKey>, report: &mut SyncReport) {
        let ownership = self.ownership();
        let policy = DrainPolicy {
            timeout: self.settings.drain_timeout,
        };
        // Real servers about to leave a TCP virtual server are drained only
        // if they have connections: read their current counts first (the
        // view's are from the last read).
        let leaving: BTreeSet<IpvsServiceKey> = keys
            .iter()
            .filter(|key| is_tcp(key))
            .filter(|key| match (self.desired.get(key), self.kernel.get(key)) {
                (Some(wanted), Some(current)) => current
                    .real_servers
                    .keys()
                    .any(|real| !wanted.real_servers.contains_key(real)),
                _ => false,
            })
            .copied()
            .collect();
        if !leaving.is_empty() {
            if let Err(error) = reread(&self.ipvs, &leaving, &mut self.kernel).await {
                warn!(%error, "reading connection counts of leaving real servers");
            }
        }
        for round in 0..=REREAD_ROUNDS {
            if keys.is_empty() {
                return;
            }
            // A chunk of virtual servers at a time: planning a whole table
            // at once held a copy of both tables and every operation
            // (hundreds of MiB for 220,000 objects) for no gain; the
            // batches are pipelined either way.
            let mut disagreed = BTreeSet::new();
            let all: Vec<IpvsServiceKey> = keys.iter().copied().collect();
            for chunk in all.chunks(VIRTUAL_SERVERS_PER_PLAN) {
                let chunk: BTreeSet<IpvsServiceKey> = chunk.iter().copied().collect();
                disagreed.extend(
                    self.plan_and_apply(&chunk, &ownership, &policy, report)
                        .await,
                );
            }
            if disagreed.is_empty() || round == REREAD_ROUNDS {
                if !disagreed.is_empty() {
                    warn!(
                        virtual_servers = disagreed.len(),
                        "the kernel still disagrees after {REREAD_ROUNDS} re-reads; the next sync retries"
                    );
                }
                return;
            }
            debug!(
                virtual_servers = disagreed.len(),
                "re-reading what the kernel disagreed about"
            );
            report.reread += disagreed.len();
            if let Err(error) = reread(&self.ipvs, &disagreed, &mut self.kernel).await {
                warn!(%error, "re-reading virtual servers failed; the next sync retries");
                return;
            }
            keys = disagreed;
        }
    }

    async fn read_addresses(&mut self) -> Result<(), SyncError> {
        let local: Vec<LocalAddress> = self.links.local_addresses().await?;
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
        let wanted: BTreeSet<IpAddr> = self.wanted_addresses.keys().copied().collect();
        if wanted == self.bound_addresses {
            return Ok(());
        }
        let changes = self
            .links
            .sync_addresses(KUBE_IPVS_INTERFACE, &wanted)
            .await?;
        report.addresses_added += changes.added.len();
        report.addresses_removed += changes.removed.len();
        self.bound_addresses = wanted;
        Ok(())
    }
}

/// The entries of `table` whose keys are in `keys`.
fn restrict(table: &Table, keys: &BTreeSet<IpvsServiceKey>) -> Table {
    keys.iter()
        .filter_map(|key| table.get(key).map(|entry| (*key, entry.clone())))
        .collect()
}

fn is_tcp(key: &IpvsServiceKey) -> bool {
    matches!(
        key,
        IpvsServiceKey::Inet {
            protocol: netlink_ipvs::IpvsProtocol::Tcp,
            ..
        }
    )
}
