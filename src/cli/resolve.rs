//! From the command line to what the agent runs with: the one
//! [`KubeProxyConfiguration`] (from `--config`, or from the flags), then
//! the settings, addresses and periods it means for an IPVS proxy.
//!
//! [`load_configuration`] is kube-proxy's `Complete` and `Validate`;
//! [`resolve`] turns the configuration and the agent's flags into
//! [`Resolved`]. Both only compute (and read `--config`): what they would
//! warn about is returned in `notes`, for the caller to log once logging
//! is set up from the configuration.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use ipnetwork::IpNetwork;

use super::{AgentFlags, IpFamily, RunArgs};
use ipvs_agent::config::{self, ConfigError, KubeProxyConfiguration};
use ipvs_agent::model::settings::{
    DatapathSettings, IpFamilyMode, LocalTrafficDetector, NodePortAddresses,
};
use ipvs_agent::model::ProxySettings;
use ipvs_agent::system::sysctl::ConntrackSysctls;

/// A command line that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `--config` could not be read.
    #[error("reading --config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A flag's value (or the configuration field it fills) is refused.
    #[error("{flag}: {message}")]
    Invalid {
        /// The flag (with `--config`, the field).
        flag: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(flag: &str, message: impl Into<String>) -> CliError {
    CliError::Invalid {
        flag: flag.to_owned(),
        message: message.into(),
    }
}

/// The configuration and what to warn about it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfiguration {
    /// The configuration the agent runs with.
    pub config: KubeProxyConfiguration,
    /// Warnings: unknown fields, settings and flags without effect, flags
    /// `--config` overrides, another proxy mode.
    pub notes: Vec<String>,
}

/// kube-proxy's configuration for this command line: `--config`'s file
/// (decoded as kube-proxy decodes it) with `--hostname-override` and the
/// logging flags over it, or the flags over kube-proxy's defaults.
pub fn load_configuration(args: &RunArgs) -> Result<LoadedConfiguration, CliError> {
    let flags = &args.kube_proxy;
    if flags
        .hostname_override
        .as_ref()
        .is_some_and(|name| !name.is_empty() && name.trim().is_empty())
    {
        return Err(invalid(
            "--hostname-override",
            "an empty hostname-override is invalid",
        ));
    }
    let mut notes = Vec::new();
    let config = match &flags.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
                path: path.clone(),
                source,
            })?;
            let decoded = config::decode(&path.display().to_string(), &text)?;
            if !decoded.unknown_fields.is_empty() {
                notes.push(format!(
                    "{}: using lenient decoding as strict decoding failed: unknown fields {} (ignored, as kube-proxy ignores them)",
                    path.display(),
                    decoded.unknown_fields.join(", ")
                ));
            }
            notes.extend(decoded.warnings);
            let mut config = decoded.config;
            let overridden = flags.overridden_by_config();
            if !overridden.is_empty() {
                notes.push(format!(
                    "these flags are ignored because --config is given (kube-proxy's rule; set them in the file): {}",
                    overridden.join(", ")
                ));
            }
            flags.apply_overrides(&mut config);
            // The overrides validated too (kube-proxy validates after
            // Complete); the file's own warnings are already noted.
            config::validate(&config).map_err(|(field, message)| invalid(&field, message))?;
            config
        }
        None => {
            let config = flags.configuration();
            let warnings = config::validate(&config)
                .map_err(|(field, message)| invalid(&flag_of(&field), message))?;
            notes.extend(warnings);
            config
        }
    };
    let unused = config::no_effect(&config);
    if flags.config.is_some() && !unused.is_empty() {
        notes.push(format!(
            "these KubeProxyConfiguration settings have no effect on ipvs-agent (they configure other proxy modes or kube-proxy's process): {}",
            unused.join(", ")
        ));
    }
    let without_effect = flags.without_effect();
    if !without_effect.is_empty() {
        notes.push(format!(
            "these flags have no effect on ipvs-agent (they configure other proxy modes or kube-proxy's process): {}",
            without_effect.join(", ")
        ));
    }
    Ok(LoadedConfiguration { config, notes })
}

/// The flag that fills a configuration field (for errors without
/// `--config`).
fn flag_of(field: &str) -> String {
    let flag = match field {
        "mode" => "--proxy-mode",
        "ipvs.syncPeriod" => "--ipvs-sync-period",
        "ipvs.minSyncPeriod" => "--ipvs-min-sync-period",
        "ipvs.excludeCIDRs" => "--ipvs-exclude-cidrs",
        "iptables.masqueradeBit" => "--iptables-masquerade-bit",
        "conntrack.maxPerCore" => "--conntrack-max-per-core",
        "conntrack.min" => "--conntrack-min",
        "oomScoreAdj" => "--oom-score-adj",
        "bindAddress" => "--bind-address",
        "healthzBindAddress" => "--healthz-bind-address",
        "metricsBindAddress" => "--metrics-bind-address",
        "clusterCIDR" => "--cluster-cidr",
        "nodePortAddresses" => "--nodeport-addresses",
        "detectLocalMode" => "--detect-local-mode",
        "detectLocal.bridgeInterface" => "--pod-bridge-interface",
        "detectLocal.interfaceNamePrefix" => "--pod-interface-name-prefix",
        "logging.format" => "--logging-format",
        "clientConnection.qps" => "--kube-api-qps",
        "clientConnection.burst" => "--kube-api-burst",
        other => other,
    };
    flag.to_owned()
}

/// Logging as the configuration asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    /// klog's verbosity.
    pub verbosity: u32,
    /// JSON lines instead of text.
    pub json: bool,
}

impl LogSettings {
    /// The `tracing` level for klog's verbosity: up to 3 is info (what
    /// kube-proxy logs at -v=2 the agent logs at info), 4 debug, 5 and
    /// above trace.
    pub fn level(&self) -> &'static str {
        match self.verbosity {
            0..=3 => "info",
            4 => "debug",
            _ => "trace",
        }
    }
}

/// What the agent runs with.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The configuration (for `--write-config-to` and `/configz`).
    pub config: KubeProxyConfiguration,
    /// The desired-state settings.
    pub settings: ProxySettings,
    /// `--ip-family` as given (`None`: chosen from the node, as
    /// kube-proxy chooses).
    pub ip_family: Option<IpFamilyMode>,
    /// `hostnameOverride` (empty: `$NODE_NAME`, then the hostname).
    pub hostname_override: String,
    /// The node's primary addresses: `--node-ip`, else `bindAddress`
    /// unless unspecified; empty: the Node's.
    pub node_addresses: Vec<IpAddr>,
    /// `ipvs.syncPeriod`.
    pub sync_period: Duration,
    /// `ipvs.minSyncPeriod`.
    pub min_sync_period: Duration,
    /// `ipvs.tcpTimeout`, `tcpFinTimeout`, `udpTimeout` in seconds (0:
    /// unchanged).
    pub ipvs_timeouts: (u32, u32, u32),
    /// `ipvs.strictARP`.
    pub strict_arp: bool,
    /// `conntrack`.
    pub conntrack: ConntrackSysctls,
    /// Where `/healthz` and `/livez` are served (`None`: not served).
    pub healthz_address: Option<SocketAddr>,
    /// Where `/metrics` is served (`None`: not served).
    pub metrics_address: Option<SocketAddr>,
    /// `bindAddressHardFail`.
    pub bind_address_hard_fail: bool,
    /// `clientConnection.kubeconfig` (`None`: in-cluster or the usual
    /// places).
    pub kubeconfig: Option<PathBuf>,
    /// `oomScoreAdj`.
    pub oom_score_adj: i32,
    /// `logging`.
    pub log: LogSettings,
}

fn seconds(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs()).unwrap_or(u32::MAX)
}

/// `--service-node-port-range LOW-HIGH`.
pub fn node_port_range(text: &str) -> Result<RangeInclusive<u16>, CliError> {
    let flag = "--service-node-port-range";
    let (low, high) = text
        .split_once('-')
        .ok_or_else(|| invalid(flag, format!("{text:?}: expected LOW-HIGH")))?;
    let port = |part: &str| {
        part.trim()
            .parse::<u16>()
            .map_err(|_| invalid(flag, format!("{text:?}: {part:?} is not a port")))
    };
    let (low, high) = (port(low)?, port(high)?);
    if low > high {
        return Err(invalid(flag, format!("{text:?}: {low} is above {high}")));
    }
    Ok(low..=high)
}

/// `nodePortAddresses`: CIDRs and kube-proxy's keywords.
fn node_port_addresses(entries: &[String]) -> (NodePortAddresses, Vec<String>) {
    let mut addresses = NodePortAddresses::default();
    let mut notes = Vec::new();
    let all = ["0.0.0.0/0", "::/0"];
    let localhost = ["127.0.0.0/8", "::1/128"];
    for entry in entries {
        let cidrs: Vec<&str> = match entry.as_str() {
            "primary" => {
                addresses.primary = true;
                continue;
            }
            "all" => all.to_vec(),
            "localhost" => {
                notes.push(
                    "nodePortAddresses: localhost: IPVS serves no NodePort on loopback addresses (as kube-proxy's IPVS mode)".to_owned(),
                );
                localhost.to_vec()
            }
            cidr => vec![cidr],
        };
        // Checked by the validation.
        addresses.cidrs.extend(
            cidrs
                .into_iter()
                .filter_map(|cidr| cidr.parse::<IpNetwork>().ok()),
        );
    }
    (addresses, notes)
}

fn bind_address(text: &str) -> Option<SocketAddr> {
    // Checked by the validation (IP:port or empty).
    text.parse().ok()
}

/// The local-traffic detector of `detectLocalMode` (kube-proxy's rules:
/// ClusterCIDR without a `clusterCIDR` means none).
fn local_detector(config: &KubeProxyConfiguration) -> Result<LocalTrafficDetector, CliError> {
    let cidrs = config::cluster_cidrs(&config.cluster_cidr)
        .map_err(|message| invalid("clusterCIDR", message))?;
    Ok(match config.detect_local_mode.as_str() {
        "" | "ClusterCIDR" if cidrs.is_empty() => LocalTrafficDetector::None,
        "" | "ClusterCIDR" => LocalTrafficDetector::ClusterCidr(cidrs),
        "BridgeInterface" => {
            LocalTrafficDetector::BridgeInterface(config.detect_local.bridge_interface.clone())
        }
        "InterfaceNamePrefix" => LocalTrafficDetector::InterfaceNamePrefix(
            config.detect_local.interface_name_prefix.clone(),
        ),
        // Filled from the Node's spec.podCIDRs when `run` starts.
        "NodeCIDR" => LocalTrafficDetector::NodeCidr(Vec::new()),
        other => {
            return Err(invalid(
                "detectLocalMode",
                format!(
                "{other:?}: expected ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix"
            ),
            ))
        }
    })
}

/// The configuration and the agent's flags as the agent's settings;
/// `notes` gets what is worth a warning.
pub fn resolve(
    config: KubeProxyConfiguration,
    agent: &AgentFlags,
    notes: &mut Vec<String>,
) -> Result<Resolved, CliError> {
    let ip_family = agent.ip_family.map(|family| match family {
        IpFamily::Ipv4 => IpFamilyMode::Ipv4,
        IpFamily::Ipv6 => IpFamilyMode::Ipv6,
        IpFamily::Dual => IpFamilyMode::Dual,
    });
    let (nodeport_addresses, nodeport_notes) =
        node_port_addresses(config.node_port_addresses.as_deref().unwrap_or_default());
    notes.extend(nodeport_notes);
    let exclude_cidrs = config
        .ipvs
        .exclude_cidrs
        .iter()
        .flatten()
        .map(|cidr| {
            cidr.parse()
                .map_err(|_| invalid("ipvs.excludeCIDRs", format!("{cidr:?} is not a CIDR")))
        })
        .collect::<Result<_, _>>()?;
    let scheduler = if config.ipvs.scheduler.is_empty() {
        "rr".to_owned()
    } else {
        config.ipvs.scheduler.clone()
    };
    let masquerade_bit = config.iptables.masquerade_bit.unwrap_or(14);
    let settings = ProxySettings {
        scheduler,
        // Without --ip-family this IPv4 is a placeholder: `run` chooses the
        // families once the node's addresses are known (the driver's
        // `prepare_node`), `plan` from --node-ip (model::ip_family).
        ip_family: ip_family.unwrap_or_default(),
        nodeport_addresses,
        exclude_cidrs,
        node_port_range: node_port_range(&agent.service_node_port_range)?,
        drain_timeout: agent.ipvs_drain_timeout,
        datapath: DatapathSettings {
            enabled: agent.netfilter,
            masquerade_all: config.iptables.masquerade_all,
            masquerade_bit: u8::try_from(masquerade_bit).map_err(|_| {
                invalid(
                    "iptables.masqueradeBit",
                    format!("{masquerade_bit} is outside 0-31"),
                )
            })?,
            local_detector: local_detector(&config)?,
        },
        conntrack_cleanup: agent.conntrack_cleanup,
    };
    let mut node_addresses = agent.node_ip.clone();
    if node_addresses.is_empty() {
        if let Ok(address) = config.bind_address.parse::<IpAddr>() {
            if !address.is_unspecified() {
                node_addresses.push(address);
            }
        }
    }
    let conntrack = &config.conntrack;
    let duration_or =
        |value: Option<ipvs_agent::config::GoDuration>| value.map(|d| d.0).unwrap_or_default();
    let resolved = Resolved {
        settings,
        ip_family,
        hostname_override: config.hostname_override.clone(),
        node_addresses,
        sync_period: config.ipvs.sync_period.0,
        min_sync_period: config.ipvs.min_sync_period.0,
        ipvs_timeouts: (
            seconds(config.ipvs.tcp_timeout.0),
            seconds(config.ipvs.tcp_fin_timeout.0),
            seconds(config.ipvs.udp_timeout.0),
        ),
        strict_arp: config.ipvs.strict_arp,
        conntrack: ConntrackSysctls {
            max_per_core: conntrack.max_per_core.unwrap_or(0).max(0) as u32,
            min: conntrack.min.unwrap_or(0).max(0) as u32,
            tcp_established_timeout: duration_or(conntrack.tcp_established_timeout),
            tcp_close_wait_timeout: duration_or(conntrack.tcp_close_wait_timeout),
            tcp_be_liberal: conntrack.tcp_be_liberal,
            udp_timeout: conntrack.udp_timeout.0,
            udp_stream_timeout: conntrack.udp_stream_timeout.0,
        },
        healthz_address: bind_address(&config.healthz_bind_address),
        metrics_address: bind_address(&config.metrics_bind_address),
        bind_address_hard_fail: config.bind_address_hard_fail,
        kubeconfig: Some(&config.client_connection.kubeconfig)
            .filter(|path| !path.is_empty())
            .map(PathBuf::from),
        oom_score_adj: config
            .oom_score_adj
            .unwrap_or(ipvs_agent::config::v1alpha1::DEFAULT_OOM_SCORE_ADJ),
        log: LogSettings {
            verbosity: config.logging.verbosity,
            json: config.logging.format == "json",
        },
        config,
    };
    Ok(resolved)
}
