//! `ipvs-agent`: the command line. Everything it does is in the library;
//! this file only turns flags into settings.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnetwork::IpNetwork;
use ipvs_agent::commands::cleanup::cleanup;
use ipvs_agent::commands::list::{list_kernel, ListFormat};
use ipvs_agent::commands::plan::{self, PlanFormat};
use ipvs_agent::config::{duration_of, parse_kube_proxy_configuration};
use ipvs_agent::driver::RunOptions;
use ipvs_agent::model::settings::{
    parse_duration, DatapathSettings, IpFamilyMode, LocalTrafficDetector, NodePortAddresses,
    DEFAULT_MASQUERADE_BIT,
};
use ipvs_agent::model::ProxySettings;
use ipvs_agent::ops::health::Health;
use ipvs_agent::ops::http::{serve_health, serve_metrics};
use ipvs_agent::ops::metrics::ServerMetrics;
use ipvs_agent::ops::node_events::NodeEvents;
use ipvs_agent::ops::Observers;
use ipvs_agent::sources::kubernetes::KubernetesSource;
use ipvs_agent::sources::manifests::ManifestSource;
use ipvs_agent::system::sysctl::ConntrackSysctls;
use netlink_ipvs::format::IpvsListOptions;
use netlink_ipvs::IpvsTimeouts;

/// mimalloc instead of glibc's malloc: the agent rebuilds its view of a
/// 220,000-object kernel table on reader threads at every resync, and
/// glibc's per-thread arenas kept the freed views as resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Programs IPVS for Kubernetes Services on this node (a kube-proxy IPVS
/// mode replacement).
#[derive(Debug, Parser)]
#[command(name = "ipvs-agent", version)]
struct Cli {
    /// Log lines as human-readable text or as JSON objects (one a line).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints the IPVS table and kube-ipvs0 addresses the manifests ask for.
    /// Needs no root and no kernel.
    Plan(PlanArgs),
    /// Programs the kernel from the manifests and keeps it in sync when
    /// they change.
    Run(Box<RunArgs>),
    /// Prints the kernel's IPVS table exactly as `ipvsadm -Ln` (or `-Sn`)
    /// would.
    List(ListArgs),
    /// Removes what the agent owns (its virtual servers and kube-ipvs0),
    /// never another tool's virtual servers.
    Cleanup(CleanupArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Numeric output (always: accepted for ipvsadm's muscle memory).
    #[arg(short = 'n', long)]
    numeric: bool,
    /// Connection, packet and byte counters (`ipvsadm -Ln --stats`).
    #[arg(long)]
    stats: bool,
    /// Rates per second (`ipvsadm -Ln --rate`).
    #[arg(long)]
    rate: bool,
    /// Counters unscaled (`--exact`).
    #[arg(long)]
    exact: bool,
    /// The rules, as `ipvsadm -Sn` prints them.
    #[arg(short = 'S', long)]
    save: bool,
}

#[derive(Debug, Args)]
struct CleanupArgs {
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    /// The `ipvsadm -Ln` table, then the kube-ipvs0 addresses.
    Text,
    /// Exactly what `ipvsadm -Sn` would print.
    Save,
    /// Both, machine-readable.
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum IpFamily {
    Ipv4,
    Ipv6,
    Dual,
}

/// The settings `plan` and `run` share (kube-proxy's flag names).
#[derive(Debug, Args)]
struct SettingsArgs {
    /// This node's name (endpoints with this nodeName are local).
    #[arg(long, alias = "hostname-override")]
    node_name: Option<String>,
    /// This node's primary addresses.
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    node_ip: Vec<IpAddr>,
    /// Default IPVS scheduler (any the kernel has: rr, wrr, lc, sh, mh, ...).
    #[arg(long, default_value = "rr")]
    ipvs_scheduler: String,
    /// Only node addresses in these CIDRs (or `primary`) get NodePort
    /// virtual servers.
    #[arg(long, value_delimiter = ',')]
    nodeport_addresses: Vec<String>,
    /// Virtual servers on addresses in these CIDRs are never touched.
    #[arg(long, value_delimiter = ',')]
    ipvs_exclude_cidrs: Vec<IpNetwork>,
    /// Which IP families to program.
    #[arg(long, value_enum, default_value = "ipv4")]
    ip_family: IpFamily,
    /// The cluster's NodePort range.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Longest drain of a removed TCP real server before it is deleted.
    #[arg(long, default_value = "15m", value_parser = duration)]
    ipvs_drain_timeout: Duration,
    /// The cluster's pod CIDRs: traffic to a ClusterIP from outside them
    /// is masqueraded (with `--detect-local-mode ClusterCIDR`).
    #[arg(long, value_delimiter = ',')]
    cluster_cidr: Vec<IpNetwork>,
    /// How traffic from the node's pods is told apart: ClusterCIDR,
    /// NodeCIDR, BridgeInterface or InterfaceNamePrefix (default
    /// ClusterCIDR when `--cluster-cidr` is given).
    #[arg(long)]
    detect_local_mode: Option<String>,
    /// The pods' bridge (`--detect-local-mode BridgeInterface`).
    #[arg(long)]
    pod_bridge_interface: Option<String>,
    /// The pods' interface name prefix (`--detect-local-mode
    /// InterfaceNamePrefix`).
    #[arg(long)]
    pod_interface_name_prefix: Option<String>,
    /// Masquerade every packet to a ClusterIP.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    masquerade_all: bool,
    /// The packet mark bit that asks for masquerading (0-31).
    #[arg(long, default_value_t = DEFAULT_MASQUERADE_BIT, value_parser = clap::value_parser!(u8).range(0..=31))]
    iptables_masquerade_bit: u8,
    /// Keep the agent's nftables tables (masquerade, hairpin, the VIP
    /// filter, source ranges); false leaves netfilter alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    netfilter: bool,
    /// Delete stale UDP and SCTP conntrack entries after syncs that
    /// removed real servers or gave a virtual server its first (the
    /// agent's own flag; kube-proxy always does).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    conntrack_cleanup: bool,
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// Manifest files (YAML, multi-document) or directories of them.
    #[arg(long, num_args = 1.., required = true)]
    manifests: Vec<PathBuf>,
    #[command(flatten)]
    settings: SettingsArgs,
    /// What to print.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A kube-proxy KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1)
    /// file; flags given on the command line override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Manifest files or directories to program from (watched for
    /// changes). Without it the agent watches the Kubernetes API.
    #[arg(long, num_args = 1..)]
    manifests: Vec<PathBuf>,
    /// Kubeconfig file (else $KUBECONFIG, ~/.kube/config, or the in-cluster
    /// service account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Shortest time between two syncs driven by API events; events within
    /// it are coalesced.
    #[arg(long, default_value = "0s", value_parser = duration)]
    ipvs_min_sync_period: Duration,
    #[command(flatten)]
    settings: SettingsArgs,
    /// Full resync period: re-read the kernel and repair drift.
    #[arg(long, default_value = "30s", value_parser = duration)]
    ipvs_sync_period: Duration,
    /// How often the manifest files are checked for changes.
    #[arg(long, default_value = "1s", value_parser = duration)]
    manifests_poll_interval: Duration,
    /// How often draining real servers are checked.
    #[arg(long, default_value = "2s", value_parser = duration)]
    drain_check_interval: Duration,
    /// Idle TCP session timeout (0: leave the kernel's).
    #[arg(long, default_value = "0s", value_parser = duration)]
    ipvs_tcp_timeout: Duration,
    /// TCP session timeout after a FIN (0: leave the kernel's).
    #[arg(long, default_value = "0s", value_parser = duration)]
    ipvs_tcpfin_timeout: Duration,
    /// UDP session timeout (0: leave the kernel's).
    #[arg(long, default_value = "0s", value_parser = duration)]
    ipvs_udp_timeout: Duration,
    /// Set arp_ignore=1 and arp_announce=2 (needed with MetalLB in L2 mode).
    #[arg(long)]
    ipvs_strict_arp: bool,
    /// Maximum number of NAT connections to track per CPU core (0 to
    /// leave the limit as-is and ignore --conntrack-min).
    #[arg(long, default_value_t = 32 * 1024, value_parser = clap::value_parser!(i32).range(0..))]
    conntrack_max_per_core: i32,
    /// Minimum number of conntrack entries to allocate, regardless of
    /// --conntrack-max-per-core.
    #[arg(long, default_value_t = 128 * 1024, value_parser = clap::value_parser!(i32).range(0..))]
    conntrack_min: i32,
    /// Idle timeout for established TCP connections (0 to leave as-is).
    #[arg(long, default_value = "24h0m0s", value_parser = duration)]
    conntrack_tcp_timeout_established: Duration,
    /// NAT timeout for TCP connections in the CLOSE_WAIT state (0 to
    /// leave as-is).
    #[arg(long, default_value = "1h0m0s", value_parser = duration)]
    conntrack_tcp_timeout_close_wait: Duration,
    /// Enable liberal mode for tracking TCP packets
    /// (nf_conntrack_tcp_be_liberal = 1).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    conntrack_tcp_be_liberal: bool,
    /// Idle timeout for UNREPLIED UDP connections (0 to leave as-is).
    #[arg(long, default_value = "0s", value_parser = duration)]
    conntrack_udp_timeout: Duration,
    /// Idle timeout for ASSURED UDP connections (0 to leave as-is).
    #[arg(long, default_value = "0s", value_parser = duration)]
    conntrack_udp_timeout_stream: Duration,
    /// Remove what the agent owns and exit (kube-proxy's `--cleanup`; the
    /// same as `ipvs-agent cleanup`).
    #[arg(long)]
    cleanup: bool,
    /// Where `/healthz` and `/livez` are served (empty: not served).
    #[arg(long, default_value = "0.0.0.0:10256")]
    healthz_bind_address: String,
    /// Where `/metrics` is served (empty: not served).
    #[arg(long, default_value = "127.0.0.1:10249")]
    metrics_bind_address: String,
    /// Export each virtual and real server's kernel traffic counters.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    per_server_metrics: bool,
    /// The most virtual plus real servers exported with their own
    /// counters (bounds the metrics' cardinality).
    #[arg(long, default_value_t = 2000)]
    per_server_metrics_limit: usize,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| error.to_string())
}

fn node_port_range(text: &str) -> anyhow::Result<RangeInclusive<u16>> {
    let (low, high) = text
        .split_once('-')
        .with_context(|| format!("--service-node-port-range {text:?}: expected LOW-HIGH"))?;
    let low: u16 = low
        .trim()
        .parse()
        .with_context(|| format!("--service-node-port-range {text:?}"))?;
    let high: u16 = high
        .trim()
        .parse()
        .with_context(|| format!("--service-node-port-range {text:?}"))?;
    if low > high {
        bail!("--service-node-port-range {text:?}: {low} is above {high}");
    }
    Ok(low..=high)
}

/// The local-traffic detector of `--detect-local-mode` and its companion
/// flags (kube-proxy's rules: ClusterCIDR without `--cluster-cidr` means
/// no detector).
fn local_detector(args: &SettingsArgs) -> anyhow::Result<LocalTrafficDetector> {
    let mode = args.detect_local_mode.as_deref().unwrap_or("");
    let non_empty = |value: &Option<String>, flag: &str| -> anyhow::Result<String> {
        value
            .clone()
            .filter(|value| !value.is_empty())
            .with_context(|| format!("--detect-local-mode {mode}: {flag} must be given"))
    };
    Ok(match mode {
        "" | "ClusterCIDR" if args.cluster_cidr.is_empty() => LocalTrafficDetector::None,
        "" | "ClusterCIDR" => LocalTrafficDetector::ClusterCidr(args.cluster_cidr.clone()),
        "BridgeInterface" => LocalTrafficDetector::BridgeInterface(non_empty(
            &args.pod_bridge_interface,
            "--pod-bridge-interface",
        )?),
        "InterfaceNamePrefix" => LocalTrafficDetector::InterfaceNamePrefix(non_empty(
            &args.pod_interface_name_prefix,
            "--pod-interface-name-prefix",
        )?),
        // Filled from the Node's spec.podCIDRs when `run` starts.
        "NodeCIDR" => LocalTrafficDetector::NodeCidr(Vec::new()),
        other => bail!(
            "--detect-local-mode {other:?}: expected ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix"
        ),
    })
}

fn settings(args: &SettingsArgs) -> anyhow::Result<ProxySettings> {
    let mut nodeport_addresses = NodePortAddresses::default();
    for entry in &args.nodeport_addresses {
        if entry == "primary" {
            nodeport_addresses.primary = true;
        } else {
            nodeport_addresses
                .cidrs
                .push(entry.parse().with_context(|| {
                    format!("--nodeport-addresses: {entry:?} is not a CIDR nor `primary`")
                })?);
        }
    }
    Ok(ProxySettings {
        scheduler: args.ipvs_scheduler.clone(),
        ip_family: match args.ip_family {
            IpFamily::Ipv4 => IpFamilyMode::Ipv4,
            IpFamily::Ipv6 => IpFamilyMode::Ipv6,
            IpFamily::Dual => IpFamilyMode::Dual,
        },
        nodeport_addresses,
        exclude_cidrs: args.ipvs_exclude_cidrs.clone(),
        node_port_range: node_port_range(&args.service_node_port_range)?,
        drain_timeout: args.ipvs_drain_timeout,
        datapath: DatapathSettings {
            enabled: args.netfilter,
            masquerade_all: args.masquerade_all,
            masquerade_bit: args.iptables_masquerade_bit,
            local_detector: local_detector(args)?,
        },
        conntrack_cleanup: args.conntrack_cleanup,
    })
}

fn node_name(args: &SettingsArgs) -> anyhow::Result<String> {
    if let Some(name) = &args.node_name {
        return Ok(name.clone());
    }
    if let Ok(name) = std::env::var("NODE_NAME") {
        if !name.is_empty() {
            return Ok(name);
        }
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("--node-name not given and the hostname could not be read")?;
    Ok(hostname.trim().to_lowercase())
}

fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let settings = settings(&args.settings)?;
    let format = match args.output {
        Output::Text => PlanFormat::Text,
        Output::Save => PlanFormat::Save,
        Output::Json => PlanFormat::Json,
    };
    let node_name = node_name(&args.settings)?;
    let planned = plan::plan(
        &args.manifests,
        node_name,
        &args.settings.node_ip,
        &settings,
        format,
    )?;
    for problem in &planned.problems {
        eprintln!("ipvs-agent: skipped: {problem}");
    }
    print!("{}", planned.text);
    Ok(if planned.nothing_read {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn seconds(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs()).unwrap_or(u32::MAX)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let format = if args.save {
        ListFormat::Save
    } else {
        ListFormat::Table(IpvsListOptions {
            stats: args.stats,
            rate: args.rate,
            exact: args.exact,
            ..IpvsListOptions::default()
        })
    };
    let text = runtime()?
        .block_on(list_kernel(format))
        .context("reading the kernel's IPVS table")?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn cleanup_owned(settings: &ProxySettings) -> anyhow::Result<ExitCode> {
    let report = runtime()?
        .block_on(cleanup(settings))
        .context("cleaning up")?;
    let tables: Vec<String> = report
        .tables_deleted
        .iter()
        .map(|family| format!(", nftables table {} ipvs-agent", family.nft_name()))
        .collect();
    println!(
        "deleted {} virtual servers{}{}; left {} that are not the agent's",
        report.deleted.len(),
        if report.link_deleted {
            " and kube-ipvs0"
        } else {
            ""
        },
        tables.concat(),
        report.kept.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// An `IP:port` flag value; empty means "off".
fn bind_address(flag: &str, text: &str) -> anyhow::Result<Option<SocketAddr>> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .with_context(|| format!("{flag} {text:?}: expected IP:port (or empty to turn it off)"))
}

/// Fills the flags not given on the command line from `--config`.
fn apply_config(args: &mut RunArgs, given: &clap::ArgMatches) -> anyhow::Result<()> {
    let Some(path) = &args.config else {
        return Ok(());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --config {}", path.display()))?;
    let loaded = parse_kube_proxy_configuration(&path.display().to_string(), &text)?;
    if !loaded.ignored.is_empty() {
        tracing::warn!(
            file = %path.display(),
            "these KubeProxyConfiguration settings have no effect on ipvs-agent (they configure other proxy modes or kube-proxy's process): {}",
            loaded.ignored.join(", ")
        );
    }
    let unset = |id: &str| given.value_source(id) != Some(clap::parser::ValueSource::CommandLine);
    let config = loaded.config;
    let non_empty = |text: &Option<String>| text.clone().filter(|text| !text.is_empty());
    if let Some(kubeconfig) = config
        .client_connection
        .and_then(|c| non_empty(&c.kubeconfig))
    {
        if unset("kubeconfig") {
            args.kubeconfig = Some(kubeconfig.into());
        }
    }
    if let Some(name) = non_empty(&config.hostname_override) {
        if unset("node_name") {
            args.settings.node_name = Some(name);
        }
    }
    if let Some(address) = non_empty(&config.healthz_bind_address) {
        if unset("healthz_bind_address") {
            args.healthz_bind_address = address;
        }
    }
    if let Some(address) = non_empty(&config.metrics_bind_address) {
        if unset("metrics_bind_address") {
            args.metrics_bind_address = address;
        }
    }
    if let Some(addresses) = config.node_port_addresses.filter(|a| !a.is_empty()) {
        if unset("nodeport_addresses") {
            args.settings.nodeport_addresses = addresses;
        }
    }
    if let Some(cidrs) = non_empty(&config.cluster_cidr) {
        if unset("cluster_cidr") {
            args.settings.cluster_cidr = cidrs
                .split(',')
                .map(|cidr| {
                    cidr.trim().parse().with_context(|| {
                        format!("{}: clusterCIDR: {cidr:?} is not a CIDR", path.display())
                    })
                })
                .collect::<anyhow::Result<_>>()?;
        }
    }
    if let Some(mode) = non_empty(&config.detect_local_mode) {
        if unset("detect_local_mode") {
            args.settings.detect_local_mode = Some(mode);
        }
    }
    if let Some(detect_local) = &config.detect_local {
        if let Some(bridge) = non_empty(&detect_local.bridge_interface) {
            if unset("pod_bridge_interface") {
                args.settings.pod_bridge_interface = Some(bridge);
            }
        }
        if let Some(prefix) = non_empty(&detect_local.interface_name_prefix) {
            if unset("pod_interface_name_prefix") {
                args.settings.pod_interface_name_prefix = Some(prefix);
            }
        }
    }
    if let Some(iptables) = &config.iptables {
        if let Some(all) = iptables.masquerade_all {
            if unset("masquerade_all") {
                args.settings.masquerade_all = all;
            }
        }
        if let Some(bit) = iptables.masquerade_bit {
            if unset("iptables_masquerade_bit") {
                // Checked to be 0-31 by the parser.
                args.settings.iptables_masquerade_bit = bit as u8;
            }
        }
    }
    if let Some(conntrack) = &config.conntrack {
        // Checked to be 0 or more by the parser.
        for (id, value, target) in [
            (
                "conntrack_max_per_core",
                conntrack.max_per_core,
                &mut args.conntrack_max_per_core,
            ),
            ("conntrack_min", conntrack.min, &mut args.conntrack_min),
        ] {
            if let Some(value) = value {
                if unset(id) {
                    *target = value;
                }
            }
        }
        for (id, value, target) in [
            (
                "conntrack_tcp_timeout_established",
                &conntrack.tcp_established_timeout,
                &mut args.conntrack_tcp_timeout_established,
            ),
            (
                "conntrack_tcp_timeout_close_wait",
                &conntrack.tcp_close_wait_timeout,
                &mut args.conntrack_tcp_timeout_close_wait,
            ),
            (
                "conntrack_udp_timeout",
                &conntrack.udp_timeout,
                &mut args.conntrack_udp_timeout,
            ),
            (
                "conntrack_udp_timeout_stream",
                &conntrack.udp_stream_timeout,
                &mut args.conntrack_udp_timeout_stream,
            ),
        ] {
            if let Some(duration) = duration_of(value) {
                if unset(id) {
                    *target = duration;
                }
            }
        }
        if let Some(liberal) = conntrack.tcp_be_liberal {
            if unset("conntrack_tcp_be_liberal") {
                args.conntrack_tcp_be_liberal = liberal;
            }
        }
    }
    let Some(ipvs) = config.ipvs else {
        return Ok(());
    };
    if let Some(scheduler) = non_empty(&ipvs.scheduler) {
        if unset("ipvs_scheduler") {
            args.settings.ipvs_scheduler = scheduler;
        }
    }
    // A zero sync period is kube-proxy's "use the default".
    if let Some(period) = duration_of(&ipvs.sync_period).filter(|p| !p.is_zero()) {
        if unset("ipvs_sync_period") {
            args.ipvs_sync_period = period;
        }
    }
    for (id, value, target) in [
        (
            "ipvs_min_sync_period",
            &ipvs.min_sync_period,
            &mut args.ipvs_min_sync_period,
        ),
        (
            "ipvs_tcp_timeout",
            &ipvs.tcp_timeout,
            &mut args.ipvs_tcp_timeout,
        ),
        (
            "ipvs_tcpfin_timeout",
            &ipvs.tcp_fin_timeout,
            &mut args.ipvs_tcpfin_timeout,
        ),
        (
            "ipvs_udp_timeout",
            &ipvs.udp_timeout,
            &mut args.ipvs_udp_timeout,
        ),
    ] {
        if let Some(duration) = duration_of(value) {
            if unset(id) {
                *target = duration;
            }
        }
    }
    if let Some(strict_arp) = ipvs.strict_arp {
        if unset("ipvs_strict_arp") {
            args.ipvs_strict_arp = strict_arp;
        }
    }
    if let Some(cidrs) = ipvs.exclude_cidrs.filter(|c| !c.is_empty()) {
        if unset("ipvs_exclude_cidrs") {
            args.settings.ipvs_exclude_cidrs = cidrs
                .iter()
                .map(|cidr| {
                    cidr.parse().with_context(|| {
                        format!(
                            "{}: ipvs.excludeCIDRs: {cidr:?} is not a CIDR",
                            path.display()
                        )
                    })
                })
                .collect::<anyhow::Result<_>>()?;
        }
    }
    Ok(())
}

fn run(mut args: RunArgs, given: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    apply_config(&mut args, given)?;
    let settings = settings(&args.settings)?;
    if args.cleanup {
        return cleanup_owned(&settings);
    }
    let node_name = node_name(&args.settings)?;
    let node_cidr = matches!(
        settings.datapath.local_detector,
        LocalTrafficDetector::NodeCidr(_)
    );
    if node_cidr && !args.manifests.is_empty() {
        bail!(
            "--detect-local-mode NodeCIDR reads the Node's spec.podCIDRs from the API server; \
             with --manifests use ClusterCIDR (--cluster-cidr), BridgeInterface or InterfaceNamePrefix"
        );
    }
    let options = RunOptions {
        node_name: node_name.clone(),
        node_addresses: args.settings.node_ip.clone(),
        sync_period: args.ipvs_sync_period,
        // Files are loaded whole when they change: nothing to coalesce.
        min_sync_period: if args.manifests.is_empty() {
            args.ipvs_min_sync_period
        } else {
            Duration::ZERO
        },
        drain_check_interval: args.drain_check_interval,
        timeouts: IpvsTimeouts {
            tcp: seconds(args.ipvs_tcp_timeout),
            tcp_fin: seconds(args.ipvs_tcpfin_timeout),
            udp: seconds(args.ipvs_udp_timeout),
        },
        strict_arp: args.ipvs_strict_arp,
        conntrack: ConntrackSysctls {
            max_per_core: args.conntrack_max_per_core.max(0) as u32,
            min: args.conntrack_min.max(0) as u32,
            tcp_established_timeout: args.conntrack_tcp_timeout_established,
            tcp_close_wait_timeout: args.conntrack_tcp_timeout_close_wait,
            tcp_be_liberal: args.conntrack_tcp_be_liberal,
            udp_timeout: args.conntrack_udp_timeout,
            udp_stream_timeout: args.conntrack_udp_timeout_stream,
        },
        keep_counters: args.per_server_metrics,
        wait_for_pod_cidrs: node_cidr,
        remove_kube_proxy_leftovers: settings.datapath.enabled,
    };
    // kube-proxy's health timeout: twice the sync period.
    let health = Health::new(args.ipvs_sync_period * 2);
    let server_metrics = ServerMetrics::new(args.per_server_metrics, args.per_server_metrics_limit);
    runtime()?.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        let prometheus =
            ipvs_agent::ops::metrics::install().context("installing the metrics recorder")?;
        if let Some(address) = bind_address("--healthz-bind-address", &args.healthz_bind_address)? {
            serve_health(address, health.clone()).await?;
        }
        if let Some(address) = bind_address("--metrics-bind-address", &args.metrics_bind_address)? {
            serve_metrics(address, prometheus, server_metrics.clone(), health.clone()).await?;
        }
        if args.manifests.is_empty() {
            let client =
                ipvs_agent::sources::kubernetes::client(args.kubeconfig.as_deref()).await?;
            let source = KubernetesSource::start(client.clone(), &node_name, &health);
            let events = NodeEvents::new(client, &node_name);
            let observers = Observers::new(health, server_metrics, Some(events));
            ipvs_agent::driver::run(source, settings, options, observers, shutdown).await?;
        } else {
            let source = ManifestSource::open(
                args.manifests.clone(),
                node_name.clone(),
                args.manifests_poll_interval,
            )?;
            let observers = Observers::new(health, server_metrics, None);
            ipvs_agent::driver::run(source, settings, options, observers, shutdown).await?;
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> anyhow::Result<ExitCode> {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)?;
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        );
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match cli.command {
        Command::Plan(args) => plan(args),
        Command::Run(args) => {
            let given = matches
                .subcommand_matches("run")
                .context("the run subcommand's arguments")?;
            run(*args, given)
        }
        Command::List(args) => list(args),
        Command::Cleanup(args) => cleanup_owned(&settings(&args.settings)?),
    }
}
