//! Every flag of kube-proxy's command line (`cmd/kube-proxy/app/options.go`
//! `AddFlags`, and component-base's logging flags), with kube-proxy's
//! name and type; unset flags keep kube-proxy's defaults, which are those
//! of [`KubeProxyConfiguration::defaulted`].
//!
//! [`KubeProxyFlags::configuration`] is kube-proxy's `Complete` for the
//! command line: without `--config` the flags fill a defaulted
//! configuration (`processV1Alpha1Flags` and the deprecated
//! `--healthz-port` / `--metrics-port`); with `--config` the file's
//! configuration is used and the flags are ignored, except
//! `--hostname-override` and the logging flags, which win (kube-proxy's
//! precedence). Flags that mean nothing to an IPVS proxy are accepted and
//! named by [`KubeProxyFlags::without_effect`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use ipvs_agent::config::v1alpha1::append_port_if_needed;
use ipvs_agent::config::{GoDuration, KubeProxyConfiguration};
use ipvs_agent::model::settings::parse_duration;

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| error.to_string())
}

/// `--vmodule PATTERN=N,...` as component-base's configuration holds it:
/// a list of `{filePattern, verbosity}` (so that `--write-config-to`
/// writes a file kube-proxy reads).
fn vmodule_list(text: &str) -> Result<serde_json::Value, String> {
    text.split(',')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (pattern, verbosity) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?}: expected PATTERN=N"))?;
            let verbosity: u32 = verbosity
                .parse()
                .map_err(|_| format!("{item:?}: {verbosity:?} is not a verbosity"))?;
            Ok(serde_json::json!({"filePattern": pattern, "verbosity": verbosity}))
        })
        .collect()
}

/// A string-slice flag's items: pflag reads `--flag=` as an empty list.
fn non_empty(items: &[String]) -> Vec<String> {
    items
        .iter()
        .filter(|item| !item.is_empty())
        .cloned()
        .collect()
}

/// A boolean as pflag reads it (Go's `strconv.ParseBool`).
fn go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean (true or false)")),
    }
}

/// `--feature-gates A=true,B=false` (pflag's `MapStringBool`).
fn feature_gates(text: &str) -> Result<BTreeMap<String, bool>, String> {
    let mut gates = BTreeMap::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?}: expected NAME=true|false"))?;
        let value = go_bool(value.trim()).map_err(|error| format!("{name}: {error}"))?;
        gates.insert(name.trim().to_owned(), value);
    }
    Ok(gates)
}

/// kube-proxy's flags. Each is `None` unless given; boolean flags take
/// pflag's forms (`--flag`, `--flag=true`, `--flag=false`).
#[derive(Debug, Clone, Default, Args)]
pub struct KubeProxyFlags {
    /// The path to the configuration file (a KubeProxyConfiguration).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// If set, write the configuration values to this file and exit.
    #[arg(long)]
    pub write_config_to: Option<PathBuf>,
    /// If true, clean up IPVS (the agent's virtual servers), kube-ipvs0,
    /// the agent's nftables tables and kube-proxy's iptables and ipset
    /// leftovers, and exit.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub cleanup: Option<bool>,
    /// If true, set the sysctls that need full root privileges and exit.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub init_only: Option<bool>,
    /// Feature gates, NAME=true|false,... (no effect on the agent).
    #[arg(long, value_parser = feature_gates)]
    pub feature_gates: Option<BTreeMap<String, bool>>,
    /// Path to the kubeconfig file (default: in-cluster, or $KUBECONFIG,
    /// ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The API server's address (overrides the kubeconfig's).
    #[arg(long)]
    pub master: Option<String>,
    /// Content type of requests (no effect: the agent's client speaks JSON).
    #[arg(long)]
    pub kube_api_content_type: Option<String>,
    /// Client burst (no effect on the agent).
    #[arg(long)]
    pub kube_api_burst: Option<i32>,
    /// Client QPS (no effect on the agent).
    #[arg(long)]
    pub kube_api_qps: Option<f32>,
    /// The name of this node (default: the hostname; also --node-name).
    #[arg(long, alias = "node-name")]
    pub hostname_override: Option<String>,
    /// Overrides the node's primary IP (kube-proxy binds nothing to it).
    #[arg(long)]
    pub bind_address: Option<IpAddr>,
    /// /healthz and /livez: IP:port, or a bare IP (port 10256) [default:
    /// 0.0.0.0:10256].
    #[arg(long)]
    pub healthz_bind_address: Option<String>,
    /// /metrics: IP:port, or a bare IP (port 10249); empty: off [default:
    /// 127.0.0.1:10249].
    #[arg(long)]
    pub metrics_bind_address: Option<String>,
    /// Exit when a port cannot be bound (else retry every 5 s).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub bind_address_hard_fail: Option<bool>,
    /// /debug/pprof (no effect on the agent).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub profiling: Option<bool>,
    /// No effect on the agent.
    #[arg(long)]
    pub show_hidden_metrics_for_version: Option<String>,
    /// The proxy mode: ipvs (iptables and nftables are accepted with a
    /// warning: the agent programs IPVS).
    #[arg(long)]
    pub proxy_mode: Option<String>,
    /// The fwmark bit that asks for masquerading, 0-31 [default: 14].
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=31))]
    pub iptables_masquerade_bit: Option<i32>,
    /// Masquerade all traffic sent to ClusterIPs.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub masquerade_all: Option<bool>,
    /// iptables mode only (no effect).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub iptables_localhost_nodeports: Option<bool>,
    /// iptables mode only (no effect).
    #[arg(long, value_parser = duration)]
    pub iptables_sync_period: Option<Duration>,
    /// iptables mode only (no effect).
    #[arg(long, value_parser = duration)]
    pub iptables_min_sync_period: Option<Duration>,
    /// Full resync period [default: 30s].
    #[arg(long, value_parser = duration)]
    pub ipvs_sync_period: Option<Duration>,
    /// Shortest time between syncs; changes within it are coalesced
    /// [default: 0s].
    #[arg(long, value_parser = duration)]
    pub ipvs_min_sync_period: Option<Duration>,
    /// The default IPVS scheduler [default: rr].
    #[arg(long)]
    pub ipvs_scheduler: Option<String>,
    /// Virtual servers on addresses in these CIDRs are never touched.
    #[arg(long, value_delimiter = ',')]
    pub ipvs_exclude_cidrs: Option<Vec<String>>,
    /// Set arp_ignore=1 and arp_announce=2.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub ipvs_strict_arp: Option<bool>,
    /// Idle TCP session timeout (0: the kernel's).
    #[arg(long, value_parser = duration)]
    pub ipvs_tcp_timeout: Option<Duration>,
    /// TCP session timeout after a FIN (0: the kernel's).
    #[arg(long, value_parser = duration)]
    pub ipvs_tcpfin_timeout: Option<Duration>,
    /// UDP session timeout (0: the kernel's).
    #[arg(long, value_parser = duration)]
    pub ipvs_udp_timeout: Option<Duration>,
    /// ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix
    /// [default: ClusterCIDR].
    #[arg(long)]
    pub detect_local_mode: Option<String>,
    /// The pods' bridge (BridgeInterface).
    #[arg(long)]
    pub pod_bridge_interface: Option<String>,
    /// The pods' interface name prefix (InterfaceNamePrefix).
    #[arg(long)]
    pub pod_interface_name_prefix: Option<String>,
    /// The pods' CIDRs, comma-separated (a dual-stack pair at most).
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// CIDRs (or `primary`, `all`, `localhost`) whose node addresses get
    /// NodePorts [default: all].
    #[arg(long, value_delimiter = ',')]
    pub nodeport_addresses: Option<Vec<String>>,
    /// The process's oom_score_adj, -1000 to 1000 [default: -999].
    #[arg(long, allow_hyphen_values = true, value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    pub oom_score_adj: Option<i32>,
    /// Conntrack entries per CPU core (0: leave the limit) [default: 32768].
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub conntrack_max_per_core: Option<i32>,
    /// Least conntrack entries [default: 131072].
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub conntrack_min: Option<i32>,
    /// Idle timeout of established TCP connections [default: 24h0m0s].
    #[arg(long, value_parser = duration)]
    pub conntrack_tcp_timeout_established: Option<Duration>,
    /// NAT timeout of TCP connections in CLOSE_WAIT [default: 1h0m0s].
    #[arg(long, value_parser = duration)]
    pub conntrack_tcp_timeout_close_wait: Option<Duration>,
    /// nf_conntrack_tcp_be_liberal = 1.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub conntrack_tcp_be_liberal: Option<bool>,
    /// Idle timeout of UNREPLIED UDP connections (0: as it is).
    #[arg(long, value_parser = duration)]
    pub conntrack_udp_timeout: Option<Duration>,
    /// Idle timeout of ASSURED UDP connections (0: as it is).
    #[arg(long, value_parser = duration)]
    pub conntrack_udp_timeout_stream: Option<Duration>,
    /// Informer resync period (no effect: the agent's watches do not
    /// resync).
    #[arg(long, value_parser = duration)]
    pub config_sync_period: Option<Duration>,
    /// Deprecated: the health port (0: off).
    #[arg(long)]
    pub healthz_port: Option<u16>,
    /// Deprecated: the metrics port (0: off).
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Log verbosity (klog's -v): 0-3 info, 4 debug, 5 and more trace.
    #[arg(short = 'v', long = "v")]
    pub verbosity: Option<u32>,
    /// klog's per-file verbosity (no effect on the agent).
    #[arg(long, value_parser = vmodule_list)]
    pub vmodule: Option<serde_json::Value>,
    /// text or json.
    #[arg(long)]
    pub logging_format: Option<String>,
    /// No effect: the agent writes each line as it logs.
    #[arg(long, value_parser = duration)]
    pub log_flush_frequency: Option<Duration>,
    /// No effect on the agent.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub log_text_split_stream: Option<bool>,
    /// No effect on the agent.
    #[arg(long)]
    pub log_text_info_buffer_size: Option<String>,
    /// No effect on the agent.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool
    )]
    pub log_json_split_stream: Option<bool>,
    /// No effect on the agent.
    #[arg(long)]
    pub log_json_info_buffer_size: Option<String>,
}

/// A flag value with a name, for the reports.
struct Given(&'static str, bool);

impl KubeProxyFlags {
    /// The flags given that mean nothing to an IPVS proxy.
    pub fn without_effect(&self) -> Vec<&'static str> {
        [
            Given("--feature-gates", self.feature_gates.is_some()),
            Given(
                "--kube-api-content-type",
                self.kube_api_content_type.is_some(),
            ),
            Given("--kube-api-burst", self.kube_api_burst.is_some()),
            Given("--kube-api-qps", self.kube_api_qps.is_some()),
            Given("--profiling", self.profiling.is_some()),
            Given(
                "--show-hidden-metrics-for-version",
                self.show_hidden_metrics_for_version.is_some(),
            ),
            Given(
                "--iptables-localhost-nodeports",
                self.iptables_localhost_nodeports.is_some(),
            ),
            Given(
                "--iptables-sync-period",
                self.iptables_sync_period.is_some(),
            ),
            Given(
                "--iptables-min-sync-period",
                self.iptables_min_sync_period.is_some(),
            ),
            Given("--config-sync-period", self.config_sync_period.is_some()),
            Given("--vmodule", self.vmodule.is_some()),
            Given("--log-flush-frequency", self.log_flush_frequency.is_some()),
            Given(
                "--log-text-split-stream",
                self.log_text_split_stream.is_some(),
            ),
            Given(
                "--log-text-info-buffer-size",
                self.log_text_info_buffer_size.is_some(),
            ),
            Given(
                "--log-json-split-stream",
                self.log_json_split_stream.is_some(),
            ),
            Given(
                "--log-json-info-buffer-size",
                self.log_json_info_buffer_size.is_some(),
            ),
        ]
        .into_iter()
        .filter(|given| given.1)
        .map(|given| given.0)
        .collect()
    }

    /// The flags given that `--config` overrides (kube-proxy ignores them
    /// when a configuration file is given).
    pub fn overridden_by_config(&self) -> Vec<&'static str> {
        [
            Given("--feature-gates", self.feature_gates.is_some()),
            Given("--kubeconfig", self.kubeconfig.is_some()),
            Given(
                "--kube-api-content-type",
                self.kube_api_content_type.is_some(),
            ),
            Given("--kube-api-burst", self.kube_api_burst.is_some()),
            Given("--kube-api-qps", self.kube_api_qps.is_some()),
            Given("--bind-address", self.bind_address.is_some()),
            Given(
                "--healthz-bind-address",
                self.healthz_bind_address.is_some(),
            ),
            Given(
                "--metrics-bind-address",
                self.metrics_bind_address.is_some(),
            ),
            Given(
                "--bind-address-hard-fail",
                self.bind_address_hard_fail.is_some(),
            ),
            Given("--profiling", self.profiling.is_some()),
            Given(
                "--show-hidden-metrics-for-version",
                self.show_hidden_metrics_for_version.is_some(),
            ),
            Given("--proxy-mode", self.proxy_mode.is_some()),
            Given(
                "--iptables-masquerade-bit",
                self.iptables_masquerade_bit.is_some(),
            ),
            Given("--masquerade-all", self.masquerade_all.is_some()),
            Given(
                "--iptables-localhost-nodeports",
                self.iptables_localhost_nodeports.is_some(),
            ),
            Given(
                "--iptables-sync-period",
                self.iptables_sync_period.is_some(),
            ),
            Given(
                "--iptables-min-sync-period",
                self.iptables_min_sync_period.is_some(),
            ),
            Given("--ipvs-sync-period", self.ipvs_sync_period.is_some()),
            Given(
                "--ipvs-min-sync-period",
                self.ipvs_min_sync_period.is_some(),
            ),
            Given("--ipvs-scheduler", self.ipvs_scheduler.is_some()),
            Given("--ipvs-exclude-cidrs", self.ipvs_exclude_cidrs.is_some()),
            Given("--ipvs-strict-arp", self.ipvs_strict_arp.is_some()),
            Given("--ipvs-tcp-timeout", self.ipvs_tcp_timeout.is_some()),
            Given("--ipvs-tcpfin-timeout", self.ipvs_tcpfin_timeout.is_some()),
            Given("--ipvs-udp-timeout", self.ipvs_udp_timeout.is_some()),
            Given("--detect-local-mode", self.detect_local_mode.is_some()),
            Given(
                "--pod-bridge-interface",
                self.pod_bridge_interface.is_some(),
            ),
            Given(
                "--pod-interface-name-prefix",
                self.pod_interface_name_prefix.is_some(),
            ),
            Given("--cluster-cidr", self.cluster_cidr.is_some()),
            Given("--nodeport-addresses", self.nodeport_addresses.is_some()),
            Given("--oom-score-adj", self.oom_score_adj.is_some()),
            Given(
                "--conntrack-max-per-core",
                self.conntrack_max_per_core.is_some(),
            ),
            Given("--conntrack-min", self.conntrack_min.is_some()),
            Given(
                "--conntrack-tcp-timeout-established",
                self.conntrack_tcp_timeout_established.is_some(),
            ),
            Given(
                "--conntrack-tcp-timeout-close-wait",
                self.conntrack_tcp_timeout_close_wait.is_some(),
            ),
            Given(
                "--conntrack-tcp-be-liberal",
                self.conntrack_tcp_be_liberal.is_some(),
            ),
            Given(
                "--conntrack-udp-timeout",
                self.conntrack_udp_timeout.is_some(),
            ),
            Given(
                "--conntrack-udp-timeout-stream",
                self.conntrack_udp_timeout_stream.is_some(),
            ),
            Given("--config-sync-period", self.config_sync_period.is_some()),
            Given("--healthz-port", self.healthz_port.is_some()),
            Given("--metrics-port", self.metrics_port.is_some()),
        ]
        .into_iter()
        .filter(|given| given.1)
        .map(|given| given.0)
        .collect()
    }

    /// kube-proxy's configuration from the command line alone (no
    /// `--config`): the defaults, with each flag given set.
    pub fn configuration(&self) -> KubeProxyConfiguration {
        let mut config = KubeProxyConfiguration::defaulted();
        let set_string = |target: &mut String, value: &Option<String>| {
            if let Some(value) = value {
                *target = value.clone();
            }
        };
        let set_duration = |target: &mut GoDuration, value: Option<Duration>| {
            if let Some(value) = value {
                *target = GoDuration(value);
            }
        };
        let set_bool = |target: &mut bool, value: Option<bool>| {
            if let Some(value) = value {
                *target = value;
            }
        };
        if let Some(gates) = &self.feature_gates {
            config.feature_gates = gates.clone();
        }
        if let Some(kubeconfig) = &self.kubeconfig {
            config.client_connection.kubeconfig = kubeconfig.display().to_string();
        }
        set_string(
            &mut config.client_connection.content_type,
            &self.kube_api_content_type,
        );
        if let Some(burst) = self.kube_api_burst {
            config.client_connection.burst = burst;
        }
        if let Some(qps) = self.kube_api_qps {
            config.client_connection.qps = qps;
        }
        if let Some(address) = self.bind_address {
            config.bind_address = address.to_string();
        }
        set_string(&mut config.healthz_bind_address, &self.healthz_bind_address);
        set_string(&mut config.metrics_bind_address, &self.metrics_bind_address);
        set_bool(
            &mut config.bind_address_hard_fail,
            self.bind_address_hard_fail,
        );
        set_bool(&mut config.enable_profiling, self.profiling);
        set_string(
            &mut config.show_hidden_metrics_for_version,
            &self.show_hidden_metrics_for_version,
        );
        set_string(&mut config.mode, &self.proxy_mode);
        if self.iptables_masquerade_bit.is_some() {
            config.iptables.masquerade_bit = self.iptables_masquerade_bit;
        }
        set_bool(&mut config.iptables.masquerade_all, self.masquerade_all);
        if self.iptables_localhost_nodeports.is_some() {
            config.iptables.localhost_node_ports = self.iptables_localhost_nodeports;
        }
        set_duration(&mut config.iptables.sync_period, self.iptables_sync_period);
        set_duration(
            &mut config.iptables.min_sync_period,
            self.iptables_min_sync_period,
        );
        // kube-proxy takes --ipvs-sync-period only in IPVS mode: the
        // agent's one mode.
        set_duration(&mut config.ipvs.sync_period, self.ipvs_sync_period);
        set_duration(&mut config.ipvs.min_sync_period, self.ipvs_min_sync_period);
        set_string(&mut config.ipvs.scheduler, &self.ipvs_scheduler);
        if let Some(cidrs) = &self.ipvs_exclude_cidrs {
            config.ipvs.exclude_cidrs = Some(non_empty(cidrs));
        }
        set_bool(&mut config.ipvs.strict_arp, self.ipvs_strict_arp);
        set_duration(&mut config.ipvs.tcp_timeout, self.ipvs_tcp_timeout);
        set_duration(&mut config.ipvs.tcp_fin_timeout, self.ipvs_tcpfin_timeout);
        set_duration(&mut config.ipvs.udp_timeout, self.ipvs_udp_timeout);
        set_string(&mut config.detect_local_mode, &self.detect_local_mode);
        set_string(
            &mut config.detect_local.bridge_interface,
            &self.pod_bridge_interface,
        );
        set_string(
            &mut config.detect_local.interface_name_prefix,
            &self.pod_interface_name_prefix,
        );
        set_string(&mut config.cluster_cidr, &self.cluster_cidr);
        if let Some(addresses) = &self.nodeport_addresses {
            config.node_port_addresses = Some(non_empty(addresses));
        }
        if self.oom_score_adj.is_some() {
            config.oom_score_adj = self.oom_score_adj;
        }
        let conntrack = &mut config.conntrack;
        if self.conntrack_max_per_core.is_some() {
            conntrack.max_per_core = self.conntrack_max_per_core;
        }
        if self.conntrack_min.is_some() {
            conntrack.min = self.conntrack_min;
        }
        if let Some(timeout) = self.conntrack_tcp_timeout_established {
            conntrack.tcp_established_timeout = Some(GoDuration(timeout));
        }
        if let Some(timeout) = self.conntrack_tcp_timeout_close_wait {
            conntrack.tcp_close_wait_timeout = Some(GoDuration(timeout));
        }
        set_bool(&mut conntrack.tcp_be_liberal, self.conntrack_tcp_be_liberal);
        set_duration(&mut conntrack.udp_timeout, self.conntrack_udp_timeout);
        set_duration(
            &mut conntrack.udp_stream_timeout,
            self.conntrack_udp_timeout_stream,
        );
        set_duration(&mut config.config_sync_period, self.config_sync_period);
        // The deprecated ports (kube-proxy's addressFromDeprecatedFlags):
        // 0 turns the server off, another port goes on a bare address.
        for (address, port, default) in [
            (
                &mut config.healthz_bind_address,
                self.healthz_port,
                ipvs_agent::config::v1alpha1::HEALTHZ_PORT,
            ),
            (
                &mut config.metrics_bind_address,
                self.metrics_port,
                ipvs_agent::config::v1alpha1::METRICS_PORT,
            ),
        ] {
            match port {
                Some(0) => address.clear(),
                Some(port) => *address = append_port_if_needed(address, port),
                None if !address.is_empty() => *address = append_port_if_needed(address, default),
                None => {}
            }
        }
        if config.mode.is_empty() {
            config.mode = "ipvs".to_owned();
        }
        self.apply_overrides(&mut config);
        config
    }

    /// What the command line sets even over `--config`:
    /// `--hostname-override` (trimmed and lowercased, as kube-proxy's
    /// `processHostnameOverrideFlag`; a blank one is refused by
    /// [`crate::cli::resolve::load_configuration`]) and the logging flags.
    pub fn apply_overrides(&self, config: &mut KubeProxyConfiguration) {
        if let Some(name) = &self.hostname_override {
            let name = name.trim();
            if !name.is_empty() {
                config.hostname_override = name.to_lowercase();
            }
        }
        if let Some(verbosity) = self.verbosity {
            config.logging.verbosity = verbosity;
        }
        if let Some(format) = &self.logging_format {
            config.logging.format = format.clone();
        }
        if let Some(vmodule) = &self.vmodule {
            config.logging.vmodule = vmodule.clone();
        }
    }
}
