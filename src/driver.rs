//! The one run loop, whatever the source: waits for the source to be
//! ready, readies the node and runs the first full sync, then syncs
//! incrementally as changes arrive, audits the kernel every
//! `--ipvs-sync-period` and checks draining real servers, until shutdown.
//!
//! - No sync until the source is ready (for the API server: Services and
//!   EndpointSlices both listed; syncing on half a view would delete good
//!   state). A first sync that fails as a whole stops the agent.
//! - Each change marks the Services it touches; after the coalescing
//!   window (`--ipvs-min-sync-period` since the last sync; none for files)
//!   only those are recomputed and diffed.
//! - A change of the node's zone (its Node's `topology.kubernetes.io/zone`
//!   label, which topology-aware routing reads) marks every Service.
//! - The periodic resync re-reads the kernel and repairs drift, covering
//!   the changes still pending.
//! - Every report goes to the [`Observers`]; a sync that fails is retried
//!   by the next one, and the kernel table is left as it is on shutdown.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use netlink_ipvs::{IpvsError, IpvsTimeouts};
use tracing::{info, warn};

use crate::engine::kernel::{connect_ipvs, Kernel, NetlinkKernel};
use crate::engine::{SyncEngine, SyncError, SyncKind, SyncReport};
use crate::model::ip_family::choose_ip_family;
use crate::model::settings::{IpFamilyMode, LocalTrafficDetector};
use crate::model::trigger_time::TriggerTime;
use crate::model::{ClusterState, ObjectRef, ProxySettings};
use crate::ops::Observers;
use crate::sources::{Change, Source};
use crate::system::conntrack::ConntrackSocket;
use crate::system::ipv6::ipv6_support;
use crate::system::kube_proxy_leftovers::remove_kube_proxy_leftovers;
use crate::system::link::{LinkError, LinkManager};
use crate::system::sysctl::{
    apply_sysctl_values, apply_sysctls, wanted_conntrack_sysctls, wanted_hashsize, wanted_sysctls,
    write_if_different, ConntrackSysctls, SysctlSettings, CONNTRACK_HASHSIZE, CONNTRACK_MAX,
};

/// How the loop runs, beside the desired-state settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The node's name.
    pub node_name: String,
    /// The node's primary addresses (`--node-ip`; empty: the source's).
    pub node_addresses: Vec<IpAddr>,
    /// `--ip-family` as given; `None`: chosen at start from the node's
    /// addresses and the kernel ([`choose_ip_family`]).
    pub ip_family: Option<IpFamilyMode>,
    /// Full resync period (`--ipvs-sync-period`).
    pub sync_period: Duration,
    /// Shortest time between two incremental syncs
    /// (`--ipvs-min-sync-period`): changes within it are coalesced.
    pub min_sync_period: Duration,
    /// How often draining real servers are checked.
    pub drain_check_interval: Duration,
    /// Connection timeouts set once at start (zero: unchanged).
    pub timeouts: IpvsTimeouts,
    /// `--ipvs-strict-arp`.
    pub strict_arp: bool,
    /// `--conntrack-*`: kube-proxy's conntrack sysctls, set at start.
    pub conntrack: ConntrackSysctls,
    /// `--proc-sys-net`: the net sysctl tree the sysctls are written in.
    pub proc_sys_net: PathBuf,
    /// Whether the engine keeps the kernel's counters (for
    /// `--per-server-metrics`).
    pub keep_counters: bool,
    /// Whether the first sync waits for the Node's `spec.podCIDRs`
    /// (`--detect-local-mode NodeCIDR`, as kube-proxy waits).
    pub wait_for_pod_cidrs: bool,
    /// Whether kube-proxy's iptables and ipset leftovers are removed once
    /// the agent's own nftables tables carry the traffic.
    pub remove_kube_proxy_leftovers: bool,
}

/// What stops the loop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The IPVS netlink connection could not be made.
    #[error("IPVS: {0}")]
    Ipvs(#[from] IpvsError),
    /// The rtnetlink connection could not be made.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The first sync failed as a whole.
    #[error("first sync: {0}")]
    FirstSync(#[from] SyncError),
    /// The node's primary family is IPv6 and the kernel has no IPv6
    /// (kube-proxy refuses to start too).
    #[error("the node's primary address is IPv6 ({0}) but the kernel has no IPv6 in this network namespace; enable IPv6 there, or give --ip-family for a family the node has")]
    PrimaryFamilyUnsupported(String),
}

/// What the source knows of the node once it is ready.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    /// Its primary addresses.
    pub primary_addresses: Vec<IpAddr>,
    /// Its Node object's InternalIPs (empty without a Node object), for
    /// the family choice.
    pub node_object_addresses: Vec<IpAddr>,
    /// Its pod CIDRs (for `--detect-local-mode NodeCIDR`).
    pub pod_cidrs: Vec<IpNetwork>,
}

/// Readies the node for the first sync: opens the IPVS connection, sets
/// kube-proxy's sysctls, opens rtnetlink, sets the IPVS timeouts. Failures
/// of sysctls and timeouts are logged, not fatal (as kube-proxy). With
/// `--detect-local-mode NodeCIDR` the node's pod CIDRs become the
/// detector's.
pub async fn prepare_node(
    settings: &ProxySettings,
    options: &RunOptions,
    node: NodeFacts,
) -> Result<SyncEngine<NetlinkKernel>, RunError> {
    let mut settings = settings.clone();
    if let LocalTrafficDetector::NodeCidr(cidrs) = &mut settings.datapath.local_detector {
        if cidrs.is_empty() {
            info!(pod_cidrs = ?node.pod_cidrs, "local traffic: the Node's pod CIDRs");
            *cidrs = node.pod_cidrs;
        }
    }
    if options.ip_family.is_none() {
        settings.ip_family =
            automatic_ip_family(&options.node_addresses, &node.node_object_addresses)?;
    } else {
        info!(ip_family = %settings.ip_family, "IP families: as --ip-family says");
    }
    let primary_addresses = node.primary_addresses;
    // IPVS first: asking the kernel for it loads ip_vs when needed, and
    // the net/ipv4/vs sysctls exist only once it is loaded.
    let ipvs = connect_ipvs()?;
    if let Err(error) = ipvs.info().await {
        warn!(%error, "reading IPVS information");
    }
    set_sysctls(options.strict_arp, &options.proc_sys_net);
    set_conntrack_sysctls(&options.conntrack, &options.proc_sys_net).await;
    let kernel = NetlinkKernel::new(ipvs, LinkManager::new()?);
    let mut engine = SyncEngine::new(
        settings,
        options.node_name.clone(),
        primary_addresses,
        kernel,
    )
    .keeping_counters(options.keep_counters);
    if let Err(error) = engine.set_timeouts(&options.timeouts).await {
        warn!(%error, "setting IPVS timeouts");
    }
    Ok(engine)
}

/// The families to program without `--ip-family`, logged once: both when
/// the node has addresses of both and the kernel has IPv6, else the
/// primary address's ([`choose_ip_family`]). A kernel whose IPv6 support
/// cannot be read is taken to have it (kube-proxy's nftables mode assumes
/// both families too); the syncs then say what the kernel refuses.
fn automatic_ip_family(
    explicit: &[IpAddr],
    node_object: &[IpAddr],
) -> Result<IpFamilyMode, RunError> {
    let kernel_ipv6 = match ipv6_support(Path::new("/proc")) {
        Ok(support) => support.usable(),
        Err(error) => {
            warn!(%error, "reading the kernel's IPv6 support; taking it as enabled");
            true
        }
    };
    let choice = choose_ip_family(explicit, node_object, kernel_ipv6);
    if choice.primary_unsupported {
        let primary = explicit
            .iter()
            .chain(node_object)
            .find(|address| !address.is_unspecified())
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(RunError::PrimaryFamilyUnsupported(primary));
    }
    info!(
        ip_family = %choice.mode,
        primary = if choice.primary_ipv6 { "IPv6" } else { "IPv4" },
        kernel_ipv6,
        node_addresses = ?explicit,
        node_object_addresses = ?node_object,
        "IP families chosen (no --ip-family): {}",
        choice.reason
    );
    Ok(choice.mode)
}

/// `--init-only` (kube-proxy's): what needs full root privileges, then
/// nothing else: loads IPVS and conntrack, sets kube-proxy's sysctls and
/// the IPVS timeouts. No IPVS in the kernel is an error; the sysctls'
/// and timeouts' failures are logged, as at a normal start.
pub async fn initialize_node(options: &RunOptions) -> Result<(), RunError> {
    let ipvs = connect_ipvs()?;
    if let Err(error) = ipvs.info().await {
        warn!(%error, "reading IPVS information");
    }
    set_sysctls(options.strict_arp, &options.proc_sys_net);
    set_conntrack_sysctls(&options.conntrack, &options.proc_sys_net).await;
    let timeouts = &options.timeouts;
    if timeouts.tcp != 0 || timeouts.tcp_fin != 0 || timeouts.udp != 0 {
        if let Err(error) = ipvs.set_timeouts(timeouts).await {
            warn!(%error, "setting IPVS timeouts");
        }
    }
    Ok(())
}

/// Sets the sysctls kube-proxy's IPVS mode needs in the net sysctl tree
/// `net_root`, logging what changed. The kernel release is only read (a
/// read-only `/proc/sys` is enough).
fn set_sysctls(strict_arp: bool, net_root: &Path) {
    let release = match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(release) => release.trim().to_owned(),
        Err(error) => {
            warn!(%error, "reading the kernel release; sysctls left as they are");
            return;
        }
    };
    let wanted = wanted_sysctls(&release, &SysctlSettings { strict_arp });
    match apply_sysctls(net_root, &wanted) {
        Ok(changed) => {
            for (sysctl, value) in changed {
                info!("set {sysctl} = {value}");
            }
        }
        Err(error) => warn!(%error, "setting sysctls"),
    }
}

/// Sets kube-proxy's conntrack sysctls (and the hashsize with the max),
/// each on its own: one that cannot be written is logged (read-only in a
/// network namespace other than the host's) and the others still go.
async fn set_conntrack_sysctls(settings: &ConntrackSysctls, net_root: &Path) {
    // The sysctls exist once nf_conntrack is loaded: asking ctnetlink
    // for its statistics loads it.
    let probe = tokio::task::spawn_blocking(|| ConntrackSocket::new()?.stats()).await;
    if let Ok(Err(error)) = probe {
        warn!(%error, "loading conntrack; its sysctls may be missing");
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let wanted = wanted_conntrack_sysctls(settings, cpus);
    let results = apply_sysctl_values(net_root, &wanted);
    for ((name, value), result) in wanted.iter().zip(results) {
        match result {
            Ok(true) => info!("set {name} = {value}"),
            Ok(false) => {}
            Err(error) => warn!(%error, "setting {name} = {value} (left as it is)"),
        }
        if *name != CONNTRACK_MAX {
            continue;
        }
        let Some(max) = value.parse().ok() else {
            continue;
        };
        let hashsize = Path::new(CONNTRACK_HASHSIZE);
        let current = std::fs::read_to_string(hashsize)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        match current.and_then(|current| wanted_hashsize(max, current)) {
            Some(size) => match write_if_different(hashsize, &size.to_string()) {
                Ok(_) => info!("set conntrack hashsize = {size}"),
                Err(error) => warn!(%error, "setting the conntrack hashsize (left as it is)"),
            },
            None if current.is_none() => {
                warn!("reading {CONNTRACK_HASHSIZE}; hashsize left as it is")
            }
            None => {}
        }
    }
}

/// Changes received and not yet synced.
#[derive(Debug, Default)]
struct Pending {
    services: BTreeSet<ObjectRef>,
    /// When the first of them was received.
    since: Option<Instant>,
    /// The EndpointSlice trigger times among them.
    trigger_times: Vec<TriggerTime>,
}

impl Pending {
    /// Notes a change (and tells the observers).
    fn receive(&mut self, change: Change, observers: &mut Observers) {
        if let Some(eligible) = change.node_eligible {
            observers.node_eligible(eligible);
        }
        if !change.services.is_empty() {
            observers.queued(change.endpoint_changes, change.service_changes);
            self.since.get_or_insert(change.received);
            self.services.extend(change.services);
            self.trigger_times.extend(change.trigger_times);
        }
    }

    /// Marks every Service of `cluster` (the node's zone changed, and
    /// topology reads it for all of them).
    fn mark_all(&mut self, cluster: &ClusterState, received: Instant) {
        self.since.get_or_insert(received);
        self.services.extend(cluster.services().keys().cloned());
    }

    fn take(&mut self) -> Taken {
        Taken {
            services: std::mem::take(&mut self.services),
            since: self.since.take(),
            trigger_times: std::mem::take(&mut self.trigger_times),
        }
    }
}

/// The pending changes a sync covers.
#[derive(Debug)]
struct Taken {
    services: BTreeSet<ObjectRef>,
    since: Option<Instant>,
    trigger_times: Vec<TriggerTime>,
}

/// Runs the loop over `source` until `shutdown` completes (or the source
/// ends), with the real kernel.
pub async fn run(
    source: impl Source,
    settings: ProxySettings,
    options: RunOptions,
    observers: Observers,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let mut observers = observers;
    // --ip-family's, or a placeholder until the families are chosen.
    observers.set_ip_families(settings.ip_family);
    let start = |node| prepare_node(&settings, &options, node);
    run_with(source, start, &options, observers, shutdown).await
}

/// [`run`] with the engine made by `start` from what the source knows of
/// the node once it is ready.
pub async fn run_with<K, S, F, Fut>(
    mut source: S,
    start: F,
    options: &RunOptions,
    mut observers: Observers,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError>
where
    K: Kernel,
    S: Source,
    F: FnOnce(NodeFacts) -> Fut,
    Fut: Future<Output = Result<SyncEngine<K>, RunError>>,
{
    tokio::pin!(shutdown);
    observers.loop_started();
    if !source.ready() {
        info!(node = %options.node_name, "waiting for Services and EndpointSlices to be listed");
    }
    // Without --ip-family the families come from the Node's addresses
    // too (kube-proxy also waits for its Node before choosing).
    let waiting = |source: &S| {
        !source.ready()
            || (options.wait_for_pod_cidrs && source.node_pod_cidrs().is_empty())
            || (options.ip_family.is_none() && !source.node_listed())
    };
    if source.ready() && waiting(&source) {
        info!(node = %options.node_name, "waiting for the Node (its spec.podCIDRs for --detect-local-mode NodeCIDR, its addresses for the IP families)");
    }
    while waiting(&source) {
        tokio::select! {
            _ = &mut shutdown => return shut_down(),
            change = source.next_change() => {
                let Some(change) = change else { return Ok(()) };
                // The first sync covers every Service anyway.
                Pending::default().receive(change, &mut observers);
            }
        }
    }
    let primary = if options.node_addresses.is_empty() {
        source.node_addresses()
    } else {
        options.node_addresses.clone()
    };
    let mut engine = start(NodeFacts {
        primary_addresses: primary,
        node_object_addresses: source.node_addresses(),
        pod_cidrs: source.node_pod_cidrs(),
    })
    .await?;
    // The families as chosen (without --ip-family, only now): the
    // metrics' ip_family labels and the latencies kept.
    observers.set_ip_families(engine.ip_family());
    engine.set_node_zone(source.node_zone());
    observers.starting();
    let report = engine
        .full_sync(source.cluster())
        .await
        .inspect_err(|error| observers.sync_failed(error))?;
    synced(&mut observers, &engine, &report);
    let mut leftovers = options.remove_kube_proxy_leftovers;
    if leftovers {
        leftovers = !remove_leftovers_after(&report).await;
    }

    let mut pending = Pending::default();
    let mut last_sync = Instant::now();
    let mut resync = tokio::time::interval(options.sync_period);
    resync.reset();
    let mut drain = tokio::time::interval(options.drain_check_interval);
    loop {
        let coalesce = options.min_sync_period.saturating_sub(last_sync.elapsed());
        tokio::select! {
            _ = &mut shutdown => return shut_down(),
            change = source.next_change() => {
                let Some(change) = change else { return Ok(()) };
                let received = change.received;
                pending.receive(change, &mut observers);
                let zone = source.node_zone();
                if zone.as_deref() != engine.node_zone() {
                    info!(zone = ?zone, "the node's zone changed; recomputing every Service");
                    engine.set_node_zone(zone);
                    pending.mark_all(source.cluster(), received);
                }
            }
            _ = tokio::time::sleep(coalesce), if !pending.services.is_empty() => {
                let taken = pending.take();
                let result = engine.sync_services(source.cluster(), &taken.services).await;
                let failed = "sync failed; the next resync retries";
                after_sync(result, failed, taken, &mut observers, &engine);
                last_sync = Instant::now();
            }
            _ = resync.tick() => {
                // The changes still pending are covered by the audit.
                let taken = pending.take();
                let result = engine.resync(source.cluster(), &taken.services).await;
                if let (true, Ok(report)) = (leftovers, &result) {
                    leftovers = !remove_leftovers_after(report).await;
                }
                let failed = "full resync failed; retrying at the next period";
                after_sync(result, failed, taken, &mut observers, &engine);
                last_sync = Instant::now();
            }
            _ = drain.tick(), if engine.has_draining() => {
                match engine.check_draining().await {
                    Ok(report) => synced(&mut observers, &engine, &report),
                    Err(error) => warn!(%error, "checking draining real servers"),
                }
            }
        }
    }
}

/// Once a full sync has written the agent's nftables tables, removes
/// kube-proxy's leftovers (its `KUBE-*` chains, jumps and ipsets: the
/// agent's rules carry the traffic now, so the swap drops nothing).
/// Returns whether it is done (else the next full sync tries again).
async fn remove_leftovers_after(report: &SyncReport) -> bool {
    if report.netfilter.failed {
        return false;
    }
    let result = tokio::task::spawn_blocking(remove_kube_proxy_leftovers).await;
    match result {
        Ok(Ok(removed)) => {
            for note in &removed.notes {
                info!("kube-proxy leftovers: {note}");
            }
            for kept in &removed.sets_kept {
                warn!(set = %kept.name, reason = %kept.reason, "kube-proxy's ipset kept");
            }
            if !removed.removed_nothing() {
                info!(
                    jumps = removed.jumps_deleted(),
                    chains = removed.chains_deleted(),
                    sets = removed.sets_destroyed.len(),
                    sets_destroyed = ?removed.sets_destroyed,
                    "removed kube-proxy's iptables and ipset leftovers"
                );
            }
            true
        }
        Ok(Err(error)) => {
            warn!(%error, "removing kube-proxy's leftovers (retried at the next resync)");
            false
        }
        Err(error) => {
            warn!(%error, "removing kube-proxy's leftovers (retried at the next resync)");
            false
        }
    }
}

/// Reports a sync of the `taken` changes, or its failure (logged as
/// `failed`; the next sync retries; their trigger times are dropped, as
/// kube-proxy drops them when a sync fails).
fn after_sync<K: Kernel>(
    result: Result<SyncReport, SyncError>,
    failed: &str,
    taken: Taken,
    observers: &mut Observers,
    engine: &SyncEngine<K>,
) {
    match result {
        Ok(report) => {
            synced(observers, engine, &report);
            if let Some(since) = taken.since {
                observers.network_programmed(since, taken.services.len(), &taken.trigger_times);
            }
        }
        Err(error) => {
            warn!(%error, "{failed}");
            observers.sync_failed(&error);
        }
    }
}

/// Hands a report to the observers, and the Services' health checks; after
/// a full sync (which re-read the kernel's counters) also the view, for
/// the per-server metrics.
fn synced<K: Kernel>(observers: &mut Observers, engine: &SyncEngine<K>, report: &SyncReport) {
    observers.synced(report);
    if report.kind != SyncKind::Drain {
        let addresses = engine.health_check_addresses();
        observers.health_checks(engine.health_checks(), addresses.as_ref());
    }
    if report.kind == SyncKind::Full && observers.wants_server_metrics() {
        let ownership = engine.ownership();
        observers.update_server_metrics(engine.kernel_view(), |key| ownership.owns(key));
    }
}

fn shut_down() -> Result<(), RunError> {
    info!("shutting down; the kernel table is left as it is");
    Ok(())
}
