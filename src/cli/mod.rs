//! The command line: kube-proxy's, plus the agent's own subcommands and
//! flags.
//!
//! - No subcommand means `run`, so kube-proxy's command line works as it
//!   is (`ipvs-agent --config=/var/lib/kube-proxy/config.conf
//!   --hostname-override=$(NODE_NAME)`); `run` says the same explicitly.
//! - [`kube_proxy_flags`]: every kube-proxy flag, with its name, type and
//!   default, and kube-proxy's `--config` precedence.
//! - [`AgentFlags`]: the agent's own (`--manifests`, `--node-ip`,
//!   `--ip-family`, `--ipvs-drain-timeout`, ...).
//! - [`resolve`]: one [`KubeProxyConfiguration`](ipvs_agent::config::KubeProxyConfiguration)
//!   plus the agent's flags into the settings the driver runs with.
//!
//! `plan`, `list` and `cleanup` are the agent's own subcommands.

pub mod kube_proxy_flags;
pub mod resolve;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use ipvs_agent::model::settings::parse_duration;
pub use kube_proxy_flags::KubeProxyFlags;

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| error.to_string())
}

/// A duration that paces a loop: zero would spin (and tokio's interval
/// refuses it).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        Duration::ZERO => Err("must be greater than 0".to_string()),
        period => Ok(period),
    }
}

/// Programs IPVS for Kubernetes Services on this node (a kube-proxy IPVS
/// mode replacement). Without a subcommand it runs, taking kube-proxy's
/// command line.
#[derive(Debug, Parser)]
// args_override_self: a repeated flag keeps its last value, as pflag does
// (a DaemonSet patched by appending `--v=4` still starts).
#[command(
    name = "ipvs-agent",
    version,
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    /// Log lines as human-readable text or as JSON objects (one a line);
    /// kube-proxy's --logging-format says the same.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// A subcommand (none: run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `run`'s flags, when no subcommand is given.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object a line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prints the IPVS table and kube-ipvs0 addresses the manifests ask for.
    /// Needs no root and no kernel.
    #[command(args_override_self = true)]
    Plan(Box<PlanArgs>),
    /// Programs the kernel and keeps it in sync (the default).
    #[command(args_override_self = true)]
    Run(Box<RunArgs>),
    /// Prints the kernel's IPVS table exactly as `ipvsadm -Ln` (or `-Sn`)
    /// would.
    List(ListArgs),
    /// Removes what the agent owns (its virtual servers, kube-ipvs0 and
    /// its nftables tables), never another tool's virtual servers.
    #[command(args_override_self = true)]
    Cleanup(Box<RunArgs>),
}

/// `list`'s flags.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Numeric output (always: accepted for ipvsadm's muscle memory).
    #[arg(short = 'n', long)]
    pub numeric: bool,
    /// Connection, packet and byte counters (`ipvsadm -Ln --stats`).
    #[arg(long)]
    pub stats: bool,
    /// Rates per second (`ipvsadm -Ln --rate`).
    #[arg(long)]
    pub rate: bool,
    /// Counters unscaled (`--exact`).
    #[arg(long)]
    pub exact: bool,
    /// The rules, as `ipvsadm -Sn` prints them.
    #[arg(short = 'S', long)]
    pub save: bool,
}

/// What `plan` prints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    /// The `ipvsadm -Ln` table, then the kube-ipvs0 addresses.
    Text,
    /// Exactly what `ipvsadm -Sn` would print.
    Save,
    /// Both, machine-readable.
    Json,
}

/// `--ip-family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IpFamily {
    /// IPv4 only.
    Ipv4,
    /// IPv6 only.
    Ipv6,
    /// Both.
    Dual,
}

/// `plan`'s flags: `run`'s, and what to print.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// `run`'s flags (`--manifests` is required).
    #[command(flatten)]
    pub run: RunArgs,
    /// What to print.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// `run`'s flags: kube-proxy's and the agent's.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// kube-proxy's flags.
    #[command(flatten)]
    pub kube_proxy: KubeProxyFlags,
    /// The agent's own flags.
    #[command(flatten)]
    pub agent: AgentFlags,
}

/// The agent's own flags (kube-proxy has none of these).
#[derive(Debug, Clone, Args)]
pub struct AgentFlags {
    /// Manifest files (YAML, multi-document) or directories to program
    /// from, watched for changes; without it the agent watches the API.
    #[arg(long, num_args = 1..)]
    pub manifests: Vec<PathBuf>,
    /// How often the manifest files are checked for changes.
    #[arg(long, default_value = "1s", value_parser = positive_duration)]
    pub manifests_poll_interval: Duration,
    /// This node's primary addresses (default: --bind-address when it is
    /// not 0.0.0.0 or ::, else the Node's).
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub node_ip: Vec<IpAddr>,
    /// Which IP families to program. Default: chosen once at start, as
    /// kube-proxy does: both when the node's addresses (--node-ip,
    /// --bind-address, the Node's InternalIPs) have both families and the
    /// kernel has IPv6, else the family of the node's primary address
    /// (IPv4 when none is known). `plan` takes the kernel to have IPv6.
    #[arg(long, value_enum)]
    pub ip_family: Option<IpFamily>,
    /// The cluster's NodePort range.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// Longest drain of a removed TCP real server before it is deleted.
    #[arg(long, default_value = "15m", value_parser = duration)]
    pub ipvs_drain_timeout: Duration,
    /// How often draining real servers are checked.
    #[arg(long, default_value = "2s", value_parser = positive_duration)]
    pub drain_check_interval: Duration,
    /// Keep the agent's nftables tables (masquerade, hairpin, the VIP
    /// filter, source ranges); false leaves netfilter alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub netfilter: bool,
    /// Delete stale UDP and SCTP conntrack entries after syncs that
    /// removed real servers or gave a virtual server its first.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub conntrack_cleanup: bool,
    /// Export each virtual and real server's kernel traffic counters.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub per_server_metrics: bool,
    /// The most virtual plus real servers exported with their own
    /// counters (bounds the metrics' cardinality).
    #[arg(long, default_value_t = 2000)]
    pub per_server_metrics_limit: usize,
    /// The net sysctl tree the agent writes its sysctls in (net.ipv4.vs.*,
    /// ip_forward, the conntrack ones). In an unprivileged container,
    /// whose /proc/sys is read-only, mount the host's /proc/sys/net
    /// read-write elsewhere and give that path (the DaemonSet:
    /// /host/proc/sys/net).
    #[arg(long, default_value = ipvs_agent::system::sysctl::PROC_SYS_NET)]
    pub proc_sys_net: PathBuf,
}

impl Cli {
    /// The command to run: `run` when none is given.
    pub fn into_command(self) -> Command {
        self.command
            .unwrap_or_else(|| Command::Run(Box::new(self.run)))
    }
}

#[cfg(test)]
mod tests;
