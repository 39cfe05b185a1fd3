//! kube-proxy's `KubeProxyConfiguration` (`kubeproxy.config.k8s.io/v1alpha1`)
//! whole, field for field as `k8s.io/kube-proxy/config/v1alpha1/types.go`
//! has it, with kube-proxy's defaulting (`SetDefaults_KubeProxyConfiguration`
//! and the Linux `platformApplyDefaults`).
//!
//! One value of [`KubeProxyConfiguration`] is what the agent runs with,
//! however it was given (flags or `--config`), as kube-proxy keeps one:
//! it is what `--write-config-to` writes and `/configz` shows. A `null`
//! where Go has a plain value decodes as that value's zero, as Go's
//! decoder leaves it; then defaulting fills the zeros kube-proxy fills.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::settings::parse_duration;

/// The API version the agent reads and writes.
pub const API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";
/// The kind.
pub const KIND: &str = "KubeProxyConfiguration";
/// kube-proxy's `ports.ProxyHealthzPort`.
pub const HEALTHZ_PORT: u16 = 10256;
/// kube-proxy's `ports.ProxyStatusPort` (metrics).
pub const METRICS_PORT: u16 = 10249;
/// kube-proxy's `qos.KubeProxyOOMScoreAdj`.
pub const DEFAULT_OOM_SCORE_ADJ: i32 = -999;

/// A `metav1.Duration`: Go's duration text (`30s`, `1h0m0s`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// The zero duration (kube-proxy's "not set" for most fields).
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for GoDuration {
    fn from(duration: Duration) -> Self {
        GoDuration(duration)
    }
}

impl std::fmt::Display for GoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&go_duration_text(self.0))
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&go_duration_text(self.0))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        match text {
            None => Ok(GoDuration::default()),
            Some(text) => parse_duration(&text)
                .map(GoDuration)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Go's `time.Duration.String()`: `0s`, `250ms`, `1.5s`, `15m0s`,
/// `24h0m0s`.
pub fn go_duration_text(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let fraction = |value: u128, unit: u128| -> String {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.ilog10() as usize;
        let text = format!("{rest:0digits$}");
        format!("{whole}.{}", text.trim_end_matches('0'))
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", fraction(nanos, 1_000_000));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let seconds = fraction(nanos % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `null` as the type's zero (Go's decoder leaves a plain field as it is).
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_false(value: &bool) -> bool {
    !value
}

/// `clientConnection` (component-base's `ClientConnectionConfiguration`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientConnection {
    /// The kubeconfig file (empty: in-cluster).
    #[serde(deserialize_with = "nullable")]
    pub kubeconfig: String,
    /// Accept header for requests.
    #[serde(deserialize_with = "nullable")]
    pub accept_content_types: String,
    /// Content type of requests.
    #[serde(deserialize_with = "nullable")]
    pub content_type: String,
    /// Client-side rate limit.
    #[serde(rename = "qps", deserialize_with = "nullable")]
    pub qps: f32,
    /// Client-side burst.
    #[serde(deserialize_with = "nullable")]
    pub burst: i32,
}

/// `logging` (component-base's `LoggingConfiguration`); the agent uses
/// `format` and `verbosity`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Logging {
    /// `text` or `json`.
    #[serde(deserialize_with = "nullable")]
    pub format: String,
    /// How often logs are flushed (nanoseconds or a duration).
    #[serde(deserialize_with = "nullable")]
    pub flush_frequency: serde_json::Value,
    /// klog's `-v`.
    #[serde(deserialize_with = "nullable")]
    pub verbosity: u32,
    /// klog's `--vmodule` (no effect on the agent).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub vmodule: serde_json::Value,
    /// Per-format options (no effect on the agent).
    #[serde(deserialize_with = "nullable")]
    pub options: serde_json::Value,
}

/// `iptables`: for the agent, the masquerade settings (which kube-proxy's
/// IPVS mode reads from here too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Iptables {
    /// The fwmark bit that asks for masquerading (0-31; default 14).
    pub masquerade_bit: Option<i32>,
    /// Masquerade all traffic to ClusterIPs.
    #[serde(deserialize_with = "nullable")]
    pub masquerade_all: bool,
    /// iptables mode only.
    pub localhost_node_ports: Option<bool>,
    /// iptables mode only.
    #[serde(rename = "snatNodeInternalIP", skip_serializing_if = "Option::is_none")]
    pub snat_node_internal_ip: Option<bool>,
    /// iptables mode only.
    pub sync_period: GoDuration,
    /// iptables mode only.
    pub min_sync_period: GoDuration,
}

/// `ipvs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Ipvs {
    /// Full resync period (default 30s).
    pub sync_period: GoDuration,
    /// Shortest time between syncs.
    pub min_sync_period: GoDuration,
    /// The default scheduler (empty: rr).
    #[serde(deserialize_with = "nullable")]
    pub scheduler: String,
    /// Virtual servers on these CIDRs are never touched.
    #[serde(rename = "excludeCIDRs")]
    pub exclude_cidrs: Option<Vec<String>>,
    /// arp_ignore=1, arp_announce=2.
    #[serde(rename = "strictARP", deserialize_with = "nullable")]
    pub strict_arp: bool,
    /// Idle TCP session timeout (0: the kernel's).
    pub tcp_timeout: GoDuration,
    /// TCP session timeout after FIN (0: the kernel's).
    pub tcp_fin_timeout: GoDuration,
    /// UDP session timeout (0: the kernel's).
    pub udp_timeout: GoDuration,
}

/// `nftables` (nftables mode only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Nftables {
    /// nftables mode only.
    pub masquerade_bit: Option<i32>,
    /// nftables mode only.
    #[serde(deserialize_with = "nullable")]
    pub masquerade_all: bool,
    /// nftables mode only.
    pub sync_period: GoDuration,
    /// nftables mode only.
    pub min_sync_period: GoDuration,
}

/// `winkernel` (Windows only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Winkernel {
    /// Windows only.
    #[serde(deserialize_with = "nullable")]
    pub network_name: String,
    /// Windows only.
    #[serde(deserialize_with = "nullable")]
    pub source_vip: String,
    /// Windows only.
    #[serde(rename = "enableDSR", deserialize_with = "nullable")]
    pub enable_dsr: bool,
    /// Windows only.
    #[serde(deserialize_with = "nullable")]
    pub root_hns_endpoint_name: String,
    /// Windows only.
    #[serde(deserialize_with = "nullable")]
    pub forward_health_check_vip: bool,
}

/// `detectLocal`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DetectLocal {
    /// `BridgeInterface` mode's bridge.
    #[serde(deserialize_with = "nullable")]
    pub bridge_interface: String,
    /// `InterfaceNamePrefix` mode's prefix.
    #[serde(deserialize_with = "nullable")]
    pub interface_name_prefix: String,
}

/// `conntrack`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Conntrack {
    /// Entries per CPU core (default 32768; 0: leave the limit).
    pub max_per_core: Option<i32>,
    /// Least entries (default 131072).
    pub min: Option<i32>,
    /// Established TCP timeout (default 24h).
    pub tcp_established_timeout: Option<GoDuration>,
    /// CLOSE_WAIT timeout (default 1h).
    pub tcp_close_wait_timeout: Option<GoDuration>,
    /// nf_conntrack_tcp_be_liberal.
    #[serde(deserialize_with = "nullable")]
    pub tcp_be_liberal: bool,
    /// UNREPLIED UDP timeout (0: as it is).
    pub udp_timeout: GoDuration,
    /// ASSURED UDP timeout (0: as it is).
    pub udp_stream_timeout: GoDuration,
}

/// A whole `KubeProxyConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeProxyConfiguration {
    /// `kubeproxy.config.k8s.io/v1alpha1`.
    #[serde(deserialize_with = "nullable")]
    pub api_version: String,
    /// `KubeProxyConfiguration`.
    #[serde(deserialize_with = "nullable")]
    pub kind: String,
    /// Feature gates (no effect on the agent).
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub feature_gates: BTreeMap<String, bool>,
    /// `clientConnection`.
    #[serde(deserialize_with = "nullable")]
    pub client_connection: ClientConnection,
    /// `logging`.
    #[serde(deserialize_with = "nullable")]
    pub logging: Logging,
    /// The Node's name.
    #[serde(deserialize_with = "nullable")]
    pub hostname_override: String,
    /// The node's primary IP (not a bind address, despite its name).
    #[serde(deserialize_with = "nullable")]
    pub bind_address: String,
    /// `/healthz` and `/livez` (`IP:port`).
    #[serde(deserialize_with = "nullable")]
    pub healthz_bind_address: String,
    /// `/metrics` (`IP:port`; empty: off).
    #[serde(deserialize_with = "nullable")]
    pub metrics_bind_address: String,
    /// Exit when a port cannot be bound (else retry every 5 s).
    #[serde(deserialize_with = "nullable")]
    pub bind_address_hard_fail: bool,
    /// /debug/pprof (no effect on the agent).
    #[serde(deserialize_with = "nullable")]
    pub enable_profiling: bool,
    /// No effect on the agent.
    #[serde(deserialize_with = "nullable")]
    pub show_hidden_metrics_for_version: String,
    /// `ipvs` (or empty).
    #[serde(deserialize_with = "nullable")]
    pub mode: String,
    /// `iptables`.
    #[serde(deserialize_with = "nullable")]
    pub iptables: Iptables,
    /// `ipvs`.
    #[serde(deserialize_with = "nullable")]
    pub ipvs: Ipvs,
    /// `nftables`.
    #[serde(deserialize_with = "nullable")]
    pub nftables: Nftables,
    /// `winkernel`.
    #[serde(deserialize_with = "nullable")]
    pub winkernel: Winkernel,
    /// ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix.
    #[serde(deserialize_with = "nullable")]
    pub detect_local_mode: String,
    /// `detectLocal`.
    #[serde(deserialize_with = "nullable")]
    pub detect_local: DetectLocal,
    /// The pods' CIDRs, comma-separated.
    #[serde(rename = "clusterCIDR", deserialize_with = "nullable")]
    pub cluster_cidr: String,
    /// CIDRs and keywords (`primary`, `all`, `localhost`).
    pub node_port_addresses: Option<Vec<String>>,
    /// The process's oom_score_adj (default -999).
    pub oom_score_adj: Option<i32>,
    /// `conntrack`.
    #[serde(deserialize_with = "nullable")]
    pub conntrack: Conntrack,
    /// Informer resync period (no effect on the agent).
    pub config_sync_period: GoDuration,
    /// Unused by kube-proxy too.
    #[serde(deserialize_with = "nullable")]
    pub port_range: String,
    /// Windows only.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "is_false")]
    pub windows_run_as_service: bool,
}

/// kube-proxy's `AppendPortIfNeeded`: a bare IP gets `port`; anything
/// else is left for validation.
pub fn append_port_if_needed(address: &str, port: u16) -> String {
    if address.parse::<std::net::SocketAddr>().is_ok() {
        return address.to_owned();
    }
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => format!("{ip}:{port}"),
        Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        Err(_) => address.to_owned(),
    }
}

impl KubeProxyConfiguration {
    /// kube-proxy's defaults, as `--write-config-to` writes them with no
    /// other flag.
    pub fn defaulted() -> Self {
        let mut config = KubeProxyConfiguration::default();
        config.apply_defaults();
        config
    }

    /// kube-proxy's defaulting: v1alpha1's `SetDefaults_KubeProxyConfiguration`,
    /// the logging defaults, then Linux's `platformApplyDefaults` with the
    /// agent's one mode (`ipvs`).
    pub fn apply_defaults(&mut self) {
        if self.api_version.is_empty() {
            self.api_version = API_VERSION.to_owned();
        }
        if self.kind.is_empty() {
            self.kind = KIND.to_owned();
        }
        if self.bind_address.is_empty() {
            self.bind_address = "0.0.0.0".to_owned();
        }
        let ipv4 = self
            .bind_address
            .parse::<std::net::IpAddr>()
            .map_or(true, |ip| ip.is_ipv4());
        let (healthz, metrics) = if ipv4 {
            ("0.0.0.0", "127.0.0.1")
        } else {
            ("[::]", "[::1]")
        };
        self.healthz_bind_address = if self.healthz_bind_address.is_empty() {
            format!("{healthz}:{HEALTHZ_PORT}")
        } else {
            append_port_if_needed(&self.healthz_bind_address, HEALTHZ_PORT)
        };
        self.metrics_bind_address = if self.metrics_bind_address.is_empty() {
            format!("{metrics}:{METRICS_PORT}")
        } else {
            append_port_if_needed(&self.metrics_bind_address, METRICS_PORT)
        };
        self.oom_score_adj.get_or_insert(DEFAULT_OOM_SCORE_ADJ);
        let default_period = |period: &mut GoDuration, value: u64| {
            if period.is_zero() {
                *period = GoDuration(Duration::from_secs(value));
            }
        };
        default_period(&mut self.iptables.sync_period, 30);
        default_period(&mut self.iptables.min_sync_period, 1);
        default_period(&mut self.ipvs.sync_period, 30);
        default_period(&mut self.nftables.sync_period, 30);
        default_period(&mut self.nftables.min_sync_period, 1);
        self.iptables.masquerade_bit.get_or_insert(14);
        self.iptables.localhost_node_ports.get_or_insert(true);
        self.nftables.masquerade_bit.get_or_insert(14);
        self.conntrack.max_per_core.get_or_insert(32 * 1024);
        self.conntrack.min.get_or_insert(128 * 1024);
        self.conntrack
            .tcp_established_timeout
            .get_or_insert(GoDuration(Duration::from_secs(24 * 3600)));
        self.conntrack
            .tcp_close_wait_timeout
            .get_or_insert(GoDuration(Duration::from_secs(3600)));
        default_period(&mut self.config_sync_period, 15 * 60);
        let connection = &mut self.client_connection;
        if connection.content_type.is_empty() {
            connection.content_type = "application/vnd.kubernetes.protobuf".to_owned();
        }
        if connection.qps == 0.0 {
            connection.qps = 5.0;
        }
        if connection.burst == 0 {
            connection.burst = 10;
        }
        let logging = &mut self.logging;
        if logging.format.is_empty() {
            logging.format = "text".to_owned();
        }
        if logging.flush_frequency.is_null() || logging.flush_frequency == serde_json::json!(0) {
            logging.flush_frequency = serde_json::json!("5s");
        }
        if logging.options.is_null() {
            logging.options = serde_json::json!({
                "json": {"infoBufferSize": "0"},
                "text": {"infoBufferSize": "0"},
            });
        }
        if self.mode.is_empty() {
            self.mode = "ipvs".to_owned();
        }
        if self.detect_local_mode.is_empty() {
            self.detect_local_mode = "ClusterCIDR".to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(20), "20ns"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(900), "15m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(24 * 3600), "24h0m0s"),
            (Duration::from_secs(3661), "1h1m1s"),
        ] {
            assert_eq!(go_duration_text(duration), text);
            assert_eq!(parse_duration(text).unwrap(), duration, "{text}");
        }
    }

    #[test]
    fn ports_are_appended_to_bare_addresses() {
        for (address, wanted) in [
            ("0.0.0.0", "0.0.0.0:10256"),
            ("127.0.0.1:9999", "127.0.0.1:9999"),
            ("::", "[::]:10256"),
            ("[::1]:1", "[::1]:1"),
            ("node1", "node1"),
        ] {
            assert_eq!(append_port_if_needed(address, 10256), wanted, "{address}");
        }
    }

    #[test]
    fn defaults_are_kube_proxys() {
        let config = KubeProxyConfiguration::defaulted();
        assert_eq!(config.healthz_bind_address, "0.0.0.0:10256");
        assert_eq!(config.metrics_bind_address, "127.0.0.1:10249");
        assert_eq!(config.ipvs.sync_period.to_string(), "30s");
        assert_eq!(config.ipvs.min_sync_period.to_string(), "0s");
        assert_eq!(config.iptables.masquerade_bit, Some(14));
        assert_eq!(config.conntrack.max_per_core, Some(32768));
        assert_eq!(config.conntrack.min, Some(131072));
        assert_eq!(config.oom_score_adj, Some(-999));
        assert_eq!(config.config_sync_period.to_string(), "15m0s");
        assert_eq!(config.mode, "ipvs");
        let ipv6 = KubeProxyConfiguration {
            bind_address: "fd00::1".into(),
            ..Default::default()
        };
        let mut ipv6 = ipv6;
        ipv6.apply_defaults();
        assert_eq!(ipv6.healthz_bind_address, "[::]:10256");
        assert_eq!(ipv6.metrics_bind_address, "[::1]:10249");
    }
}
