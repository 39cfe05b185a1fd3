//! The agent's settings and what it knows of its node: the inputs, beside
//! the Kubernetes objects, of the desired state. Plain data; the command
//! line (and later a `KubeProxyConfiguration`) fills them.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use ipnetwork::IpNetwork;

/// Which IP families the agent programs (`--ip-family`, else chosen at
/// start: [`super::ip_family`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpFamilyMode {
    /// IPv4 only.
    #[default]
    Ipv4,
    /// IPv6 only.
    Ipv6,
    /// Both families (dual-stack).
    Dual,
}

/// As `--ip-family` spells it (`ipv4`, `ipv6`, `dual`).
impl std::fmt::Display for IpFamilyMode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            IpFamilyMode::Ipv4 => "ipv4",
            IpFamilyMode::Ipv6 => "ipv6",
            IpFamilyMode::Dual => "dual",
        })
    }
}

impl IpFamilyMode {
    /// Whether addresses of `address`'s family are programmed.
    pub fn includes(self, address: &IpAddr) -> bool {
        match self {
            IpFamilyMode::Ipv4 => address.is_ipv4(),
            IpFamilyMode::Ipv6 => address.is_ipv6(),
            IpFamilyMode::Dual => true,
        }
    }
}

/// Which node addresses NodePort virtual servers are made on
/// (`--nodeport-addresses`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePortAddresses {
    /// Local addresses inside one of these CIDRs. Empty together with
    /// `primary` false means every eligible local address.
    pub cidrs: Vec<IpNetwork>,
    /// The node's primary addresses (`primary` in the flag's list).
    pub primary: bool,
}

impl NodePortAddresses {
    /// Whether no filter was given (every eligible local address).
    pub fn is_all(&self) -> bool {
        self.cidrs.is_empty() && !self.primary
    }
}

/// How long a removed TCP real server with connections is drained at most
/// (`--ipvs-drain-timeout`'s default).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The agent's settings (kube-proxy's flag names in the docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Default scheduler (`--ipvs-scheduler`, default `rr`).
    pub scheduler: String,
    /// Families programmed (`--ip-family`, else chosen at start from the
    /// node's addresses and the kernel: [`super::ip_family`]).
    pub ip_family: IpFamilyMode,
    /// NodePort address filter (`--nodeport-addresses`).
    pub nodeport_addresses: NodePortAddresses,
    /// Addresses the agent never touches (`--ipvs-exclude-cidrs`).
    pub exclude_cidrs: Vec<IpNetwork>,
    /// The cluster's NodePort range (`--service-node-port-range`,
    /// default 30000-32767): node-address virtual servers in it are the
    /// agent's.
    pub node_port_range: RangeInclusive<u16>,
    /// Longest drain of a removed TCP real server (`--ipvs-drain-timeout`).
    pub drain_timeout: Duration,
    /// The netfilter rules around IPVS.
    pub datapath: DatapathSettings,
    /// Whether stale UDP and SCTP conntrack entries are deleted after a
    /// sync (`--conntrack-cleanup`, default true).
    pub conntrack_cleanup: bool,
}

/// How traffic from the node's own pods is told apart
/// (`--detect-local-mode` and its companions): traffic to a ClusterIP from
/// anywhere else is masqueraded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LocalTrafficDetector {
    /// No detector (`--cluster-cidr` not given): only node-originated
    /// traffic (its source is a VIP) is masqueraded.
    #[default]
    None,
    /// Sources inside these CIDRs (`--cluster-cidr`, mode `ClusterCIDR`).
    ClusterCidr(Vec<IpNetwork>),
    /// Sources inside the node's pod CIDRs (mode `NodeCIDR`: the Node's
    /// `spec.podCIDRs`).
    NodeCidr(Vec<IpNetwork>),
    /// Packets arriving on this bridge (`--pod-bridge-interface`, mode
    /// `BridgeInterface`).
    BridgeInterface(String),
    /// Packets arriving on interfaces whose name starts with this
    /// (`--pod-interface-name-prefix`, mode `InterfaceNamePrefix`).
    InterfaceNamePrefix(String),
}

/// kube-proxy's default masquerade bit (`--iptables-masquerade-bit`):
/// mark `0x4000`.
pub const DEFAULT_MASQUERADE_BIT: u8 = 14;

/// The netfilter rules around IPVS (kube-proxy's masquerade flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapathSettings {
    /// Whether the agent keeps its nftables tables at all.
    pub enabled: bool,
    /// Masquerade every packet to a ClusterIP (`--masquerade-all`).
    pub masquerade_all: bool,
    /// The packet mark bit that asks for masquerading
    /// (`--iptables-masquerade-bit`, 0-31).
    pub masquerade_bit: u8,
    /// How local traffic is told apart.
    pub local_detector: LocalTrafficDetector,
}

impl DatapathSettings {
    /// The mark bit as a mask (`1 << masquerade_bit`).
    pub fn masquerade_mark(&self) -> u32 {
        1u32 << (self.masquerade_bit & 31)
    }
}

impl Default for DatapathSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            masquerade_all: false,
            masquerade_bit: DEFAULT_MASQUERADE_BIT,
            local_detector: LocalTrafficDetector::None,
        }
    }
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            scheduler: "rr".to_owned(),
            ip_family: IpFamilyMode::default(),
            nodeport_addresses: NodePortAddresses::default(),
            exclude_cidrs: Vec::new(),
            node_port_range: 30000..=32767,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            datapath: DatapathSettings::default(),
            conntrack_cleanup: true,
        }
    }
}

/// A malformed duration (`--ipvs-sync-period 30x`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {text:?}: {reason} (write it as kube-proxy does: 30s, 15m, 1h30m, 500ms)"
)]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

/// Parses a duration as kube-proxy's flags and configuration write them (Go's
/// `time.ParseDuration`: a sequence of decimal numbers with units `ns`,
/// `us`, `µs`, `ms`, `s`, `m`, `h`, such as `30s` or `1h15m`; `0` alone).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let error = |reason| DurationError {
        text: text.to_owned(),
        reason,
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(error("empty"));
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_length = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_length == 0 {
            return Err(error("expected a number"));
        }
        let number: f64 = rest[..number_length]
            .parse()
            .map_err(|_| error("bad number"))?;
        rest = &rest[number_length..];
        let unit_length = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_length] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(error("missing unit")),
            _ => return Err(error("unknown unit")),
        };
        rest = &rest[unit_length..];
        total += number * seconds_per_unit;
    }
    // Go's time.Duration is an i64 of nanoseconds: ~292 years at most.
    if total > GO_DURATION_MAX_SECONDS {
        return Err(error("out of range"));
    }
    Duration::try_from_secs_f64(total).map_err(|_| error("out of range"))
}

/// The longest duration Go's `time.ParseDuration` accepts
/// (2562047h47m16.854775807s), in seconds.
const GO_DURATION_MAX_SECONDS: f64 = 9_223_372_036.854_775;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("30s", Some(Duration::from_secs(30))),
            ("15m", Some(Duration::from_secs(900))),
            ("1h30m", Some(Duration::from_secs(5400))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("0", Some(Duration::ZERO)),
            ("0s", Some(Duration::ZERO)),
            ("", None),
            ("30", None),
            ("30x", None),
            ("s", None),
            ("-1s", None),
            ("2562047h", Some(Duration::from_secs(2_562_047 * 3600))),
            ("2562048h", None),
            ("3000000000000000h", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).ok(), *expected, "{text:?}");
        }
    }

    #[test]
    fn family_mode_includes_its_addresses() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert!(IpFamilyMode::Ipv4.includes(&v4) && !IpFamilyMode::Ipv4.includes(&v6));
        assert!(IpFamilyMode::Ipv6.includes(&v6) && !IpFamilyMode::Ipv6.includes(&v4));
        assert!(IpFamilyMode::Dual.includes(&v4) && IpFamilyMode::Dual.includes(&v6));
    }
}
