//! `--config FILE`: kube-proxy's `KubeProxyConfiguration`
//! (`kubeproxy.config.k8s.io/v1alpha1`, [`v1alpha1`]), decoded as
//! kube-proxy decodes it, so an existing kube-proxy ConfigMap drives the
//! agent unchanged.
//!
//! - **Strict first, then lenient** (kube-proxy's `loadConfig`): a field
//!   kube-proxy's format does not have is not an error; the file is
//!   decoded without it and [`Decoded::unknown_fields`] names it for the
//!   warning kube-proxy logs ("Using lenient decoding as strict decoding
//!   failed"). Not YAML, a wrong type, another `apiVersion` or `kind` are
//!   errors naming the field.
//! - **Defaulting** as kube-proxy's (ports appended to bare bind
//!   addresses, the sync periods, the conntrack limits, ...).
//! - **Validation** as kube-proxy's `validation.Validate` where the agent
//!   uses the field; a `mode` of another Linux proxy mode is a warning
//!   (the agent programs IPVS), an unknown one an error.
//! - [`no_effect`] lists the fields set to something other than their
//!   default that mean nothing to an IPVS proxy (iptables and nftables
//!   modes, Windows, profiling, client rate limits, ...).

pub mod v1alpha1;

use std::net::{IpAddr, SocketAddr};

use ipnetwork::IpNetwork;
use serde_yaml_ng::Value;

pub use v1alpha1::{GoDuration, KubeProxyConfiguration};

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not YAML, a field of the wrong type, or a value kube-proxy refuses.
    #[error("{file}: {}{message}", field_prefix(field))]
    Invalid {
        /// The file.
        file: String,
        /// The field's path (`ipvs.syncPeriod`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// `field: `, or nothing for the document as a whole (`.` is
/// serde_path_to_error's name for it).
fn field_prefix(field: &str) -> String {
    match field {
        "" | "." => String::new(),
        field => format!("{field}: "),
    }
}

fn invalid(file: &str, field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_owned(),
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A decoded, defaulted and validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The configuration.
    pub config: KubeProxyConfiguration,
    /// Fields kube-proxy's format does not have (strict decoding failed on
    /// them; they were dropped, as kube-proxy's lenient decoding drops
    /// them).
    pub unknown_fields: Vec<String>,
    /// What is accepted but worth a warning (another proxy mode).
    pub warnings: Vec<String>,
}

/// Fields whose values are free-form (maps of anything): not checked for
/// unknown keys below them.
const FREE_FORM: &[&str] = &[
    "featureGates",
    "logging.options",
    "logging.flushFrequency",
    "logging.vmodule",
];

/// Fields serialized only when set, so missing from the schema value.
const OPTIONAL_FIELDS: &[&str] = &[
    "featureGates",
    "windowsRunAsService",
    "iptables.snatNodeInternalIP",
    "logging.vmodule",
];

/// Drops the keys of `value` that `schema` does not have, naming them in
/// `unknown`.
fn drop_unknown(
    value: &mut Value,
    schema: &serde_json::Value,
    path: &str,
    unknown: &mut Vec<String>,
) {
    let (Value::Mapping(map), serde_json::Value::Object(known)) = (value, schema) else {
        return;
    };
    map.retain(|key, child| {
        let name = match key {
            Value::String(name) => name.clone(),
            other => serde_yaml_ng::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        let child_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        if FREE_FORM.contains(&child_path.as_str()) {
            return true;
        }
        match known.get(&name) {
            Some(child_schema) => {
                drop_unknown(child, child_schema, &child_path, unknown);
                true
            }
            None if OPTIONAL_FIELDS.contains(&child_path.as_str()) => true,
            None => {
                unknown.push(child_path);
                false
            }
        }
    });
}

/// Every field of the format, as a JSON object tree.
fn schema() -> serde_json::Value {
    serde_json::to_value(KubeProxyConfiguration::defaulted()).unwrap_or_default()
}

/// Decodes, defaults and validates a `KubeProxyConfiguration` (`file`
/// names it in errors).
pub fn decode(file: &str, text: &str) -> Result<Decoded, ConfigError> {
    let mut value: Value =
        serde_yaml_ng::from_str(text).map_err(|error| invalid(file, "", error.to_string()))?;
    if !matches!(value, Value::Mapping(_)) {
        return Err(invalid(
            file,
            "",
            "expected a KubeProxyConfiguration object",
        ));
    }
    let mut unknown_fields = Vec::new();
    drop_unknown(&mut value, &schema(), "", &mut unknown_fields);
    unknown_fields.sort();
    let mut config: KubeProxyConfiguration =
        serde_path_to_error::deserialize(value).map_err(|error| {
            let field = error.path().to_string();
            invalid(file, &field, error.into_inner().to_string())
        })?;
    if config.api_version != v1alpha1::API_VERSION {
        return Err(invalid(
            file,
            "apiVersion",
            format!(
                "{:?}: expected {}",
                config.api_version,
                v1alpha1::API_VERSION
            ),
        ));
    }
    if config.kind != v1alpha1::KIND {
        return Err(invalid(
            file,
            "kind",
            format!("{:?}: expected {}", config.kind, v1alpha1::KIND),
        ));
    }
    config.apply_defaults();
    let warnings = validate(&config).map_err(|(field, message)| invalid(file, &field, message))?;
    Ok(Decoded {
        config,
        unknown_fields,
        warnings,
    })
}

/// kube-proxy's validation of the fields the agent uses: `Err((field,
/// message))` for the first refused, else the warnings.
pub fn validate(config: &KubeProxyConfiguration) -> Result<Vec<String>, (String, String)> {
    let refuse = |field: &str, message: String| Err((field.to_owned(), message));
    let mut warnings = Vec::new();
    match config.mode.as_str() {
        "" | "ipvs" => {}
        mode @ ("iptables" | "nftables") => warnings.push(format!(
            "mode {mode:?}: ipvs-agent is an IPVS proxy; it programs IPVS (and, with --netfilter, removes kube-proxy's iptables leftovers)"
        )),
        // kernelspace is Windows' mode: kube-proxy on Linux refuses it.
        mode => {
            return refuse(
                "mode",
                format!("{mode:?}: must be ipvs (or iptables, nftables)"),
            )
        }
    }
    let ipvs = &config.ipvs;
    if ipvs.sync_period.is_zero() {
        return refuse("ipvs.syncPeriod", "must be greater than 0".into());
    }
    if ipvs.min_sync_period > ipvs.sync_period {
        return refuse(
            "ipvs.minSyncPeriod",
            format!(
                "{} must be less than or equal to ipvs.syncPeriod ({})",
                ipvs.min_sync_period, ipvs.sync_period
            ),
        );
    }
    for cidr in ipvs.exclude_cidrs.iter().flatten() {
        if parse_cidr(cidr).is_none() {
            return refuse("ipvs.excludeCIDRs", format!("{cidr:?} is not a CIDR"));
        }
    }
    if let Some(bit) = config.iptables.masquerade_bit {
        if !(0..=31).contains(&bit) {
            return refuse(
                "iptables.masqueradeBit",
                format!("{bit} must be within the range [0, 31]"),
            );
        }
    }
    for (field, value) in [
        ("conntrack.maxPerCore", config.conntrack.max_per_core),
        ("conntrack.min", config.conntrack.min),
    ] {
        if value.is_some_and(|value| value < 0) {
            return refuse(field, "must be greater than or equal to 0".into());
        }
    }
    if let Some(adj) = config.oom_score_adj {
        if !(-1000..=1000).contains(&adj) {
            return refuse(
                "oomScoreAdj",
                format!("{adj} must be within the range [-1000, 1000]"),
            );
        }
    }
    if config.bind_address.parse::<IpAddr>().is_err() {
        return refuse(
            "bindAddress",
            format!("{:?} is not an IP address", config.bind_address),
        );
    }
    for (field, address) in [
        ("healthzBindAddress", &config.healthz_bind_address),
        ("metricsBindAddress", &config.metrics_bind_address),
    ] {
        match address.parse::<SocketAddr>() {
            _ if address.is_empty() => {}
            Ok(socket) if socket.port() == 0 => {
                return refuse(field, format!("{address:?}: the port must be 1-65535"));
            }
            Ok(_) => {}
            Err(_) => {
                return refuse(
                    field,
                    format!("{address:?} must be IP:port (a bare IP gets the default port)"),
                );
            }
        }
    }
    let cidrs = cluster_cidrs(&config.cluster_cidr)
        .map_err(|message| ("clusterCIDR".to_owned(), message))?;
    if cidrs.len() > 2 || (cidrs.len() == 2 && cidrs[0].is_ipv4() == cidrs[1].is_ipv4()) {
        return refuse(
            "clusterCIDR",
            format!(
                "{:?}: at most one CIDR per family (a dual-stack pair)",
                config.cluster_cidr
            ),
        );
    }
    let node_port_addresses = config.node_port_addresses.as_deref().unwrap_or_default();
    if node_port_addresses.len() > 1 && node_port_addresses.iter().any(|entry| entry == "primary") {
        return refuse(
            "nodePortAddresses",
            "can't use both 'primary' and CIDRs".into(),
        );
    }
    for entry in node_port_addresses {
        if matches!(entry.as_str(), "all" | "localhost") {
            warnings.push(format!(
                "nodePortAddresses {entry:?} is ipvs-agent's own keyword; kube-proxy refuses it (use CIDRs for a configuration both read)"
            ));
        }
        if !NODE_PORT_KEYWORDS.contains(&entry.as_str()) && parse_cidr(entry).is_none() {
            return refuse(
                "nodePortAddresses",
                format!("{entry:?} is not a CIDR nor one of primary, all, localhost"),
            );
        }
    }
    match config.detect_local_mode.as_str() {
        "" | "ClusterCIDR" | "NodeCIDR" => {}
        "BridgeInterface" if config.detect_local.bridge_interface.is_empty() => {
            return refuse(
                "detectLocal.bridgeInterface",
                "must be set with detectLocalMode BridgeInterface".into(),
            )
        }
        "InterfaceNamePrefix" if config.detect_local.interface_name_prefix.is_empty() => {
            return refuse(
                "detectLocal.interfaceNamePrefix",
                "must be set with detectLocalMode InterfaceNamePrefix".into(),
            )
        }
        "BridgeInterface" | "InterfaceNamePrefix" => {}
        other => {
            return refuse(
                "detectLocalMode",
                format!(
                "{other:?}: must be ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix"
            ),
            )
        }
    }
    match config.logging.format.as_str() {
        "" | "text" | "json" => {}
        other => return refuse("logging.format", format!("{other:?}: must be text or json")),
    }
    let connection = &config.client_connection;
    if connection.qps < 0.0 {
        return refuse(
            "clientConnection.qps",
            "must be greater than or equal to 0".into(),
        );
    }
    if connection.burst < 0 {
        return refuse(
            "clientConnection.burst",
            "must be greater than or equal to 0".into(),
        );
    }
    Ok(warnings)
}

/// A CIDR as kube-proxy parses one (`ParseCIDRSloppy`: the prefix length
/// is required; `ipnetwork` alone would take a bare IP as a /32).
pub fn parse_cidr(text: &str) -> Option<IpNetwork> {
    if !text.contains('/') {
        return None;
    }
    text.parse().ok()
}

/// `nodePortAddresses` keywords kube-proxy accepts beside CIDRs.
pub const NODE_PORT_KEYWORDS: &[&str] = &["primary", "all", "localhost"];

/// `clusterCIDR`: comma-separated CIDRs (empty: none).
pub fn cluster_cidrs(text: &str) -> Result<Vec<IpNetwork>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|cidr| !cidr.is_empty())
        .map(|cidr| parse_cidr(cidr).ok_or_else(|| format!("{cidr:?} is not a CIDR")))
        .collect()
}

/// Fields that mean nothing to an IPVS proxy: listed by [`no_effect`]
/// when set to something other than their default.
const NO_EFFECT: &[&str] = &[
    "featureGates",
    "enableProfiling",
    "showHiddenMetricsForVersion",
    "configSyncPeriod",
    "portRange",
    "windowsRunAsService",
    "clientConnection.acceptContentTypes",
    "clientConnection.contentType",
    "clientConnection.qps",
    "clientConnection.burst",
    "logging.flushFrequency",
    "logging.vmodule",
    "logging.options",
    "iptables.localhostNodePorts",
    "iptables.snatNodeInternalIP",
    "iptables.syncPeriod",
    "iptables.minSyncPeriod",
    "nftables",
    "winkernel",
];

/// The fields of `config` with no effect on the agent that are set to
/// something other than kube-proxy's default.
pub fn no_effect(config: &KubeProxyConfiguration) -> Vec<String> {
    let defaults = schema();
    let given = serde_json::to_value(config).unwrap_or_default();
    let at = |value: &serde_json::Value, path: &str| {
        path.split('.')
            .try_fold(value, |value, key| value.get(key))
            .cloned()
    };
    NO_EFFECT
        .iter()
        .filter(|path| {
            let set = at(&given, path);
            set.is_some() && set != at(&defaults, path)
        })
        .map(|path| (*path).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kubeadm's kube-proxy ConfigMap (`kubectl -n kube-system get cm
    /// kube-proxy -o yaml`, config.conf), switched to IPVS.
    const KUBEADM: &str = r#"
apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpBeLiberal: false
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
  udpStreamTimeout: 0s
  udpTimeout: 0s
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: "wrr"
  strictARP: true
  syncPeriod: 15s
  tcpFinTimeout: 0s
  tcpTimeout: 900s
  udpTimeout: 0s
kind: KubeProxyConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
metricsBindAddress: ""
mode: ipvs
nftables:
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
winkernel:
  enableDSR: false
  forwardHealthCheckVip: false
  networkName: ""
  rootHnsEndpointName: ""
  sourceVip: ""
"#;

    fn decoded(text: &str) -> Decoded {
        decode("config.conf", text).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn kubeadm_configmap_decodes_with_kube_proxys_defaults() {
        let decoded = decoded(KUBEADM);
        let config = &decoded.config;
        assert_eq!(config.ipvs.scheduler, "wrr");
        assert_eq!(config.ipvs.sync_period.to_string(), "15s");
        assert_eq!(config.ipvs.tcp_timeout.to_string(), "15m0s");
        assert!(config.ipvs.strict_arp);
        assert_eq!(
            config.client_connection.kubeconfig,
            "/var/lib/kube-proxy/kubeconfig.conf"
        );
        assert_eq!(config.cluster_cidr, "10.244.0.0/16");
        // kubeadm's empty and null fields take kube-proxy's defaults.
        assert_eq!(config.healthz_bind_address, "0.0.0.0:10256");
        assert_eq!(config.metrics_bind_address, "127.0.0.1:10249");
        assert_eq!(config.conntrack.max_per_core, Some(32768));
        assert_eq!(config.conntrack.min, Some(131072));
        assert_eq!(
            config
                .conntrack
                .tcp_established_timeout
                .map(|d| d.to_string()),
            Some("24h0m0s".into())
        );
        assert_eq!(config.iptables.masquerade_bit, Some(14));
        assert_eq!(config.oom_score_adj, Some(-999));
        assert_eq!(config.client_connection.qps, 5.0);
        assert_eq!(config.detect_local_mode, "ClusterCIDR");
        assert!(decoded.unknown_fields.is_empty());
        assert!(decoded.warnings.is_empty());
        assert_eq!(
            no_effect(config),
            Vec::<String>::new(),
            "kubeadm sets nothing that has no effect"
        );
    }

    #[test]
    fn unknown_fields_are_dropped_and_named_as_kube_proxys_lenient_decoding() {
        let text = KUBEADM
            .replace(
                "  scheduler: \"wrr\"",
                "  scheduler: \"wrr\"\n  schedular: lc",
            )
            .replace("  min: null", "  min: null\n  minimum: 1")
            .replace("mode: ipvs", "mode: ipvs\nfutureField: {a: 1}");
        let decoded = decoded(&text);
        assert_eq!(
            decoded.unknown_fields,
            ["conntrack.minimum", "futureField", "ipvs.schedular"]
        );
        assert_eq!(
            decoded.config.ipvs.scheduler, "wrr",
            "the known fields still count"
        );
    }

    #[test]
    fn bare_bind_addresses_get_kube_proxys_ports() {
        let text = KUBEADM
            .replace("healthzBindAddress: \"\"", "healthzBindAddress: 127.0.0.1")
            .replace("metricsBindAddress: \"\"", "metricsBindAddress: \"::\"");
        let config = decoded(&text).config;
        assert_eq!(config.healthz_bind_address, "127.0.0.1:10256");
        assert_eq!(config.metrics_bind_address, "[::]:10249");
    }

    #[test]
    fn node_port_address_keywords_are_accepted() {
        let text = KUBEADM.replace("nodePortAddresses: null", "nodePortAddresses: [primary]");
        assert_eq!(
            decoded(&text).config.node_port_addresses.unwrap(),
            ["primary"]
        );
        let mixed = KUBEADM.replace(
            "nodePortAddresses: null",
            "nodePortAddresses: [primary, 10.0.0.0/8]",
        );
        let error = decode("config.conf", &mixed).unwrap_err().to_string();
        assert_eq!(
            error, "config.conf: nodePortAddresses: can't use both 'primary' and CIDRs",
            "kube-proxy's rule"
        );
        // The agent's own keywords: accepted, with a warning each.
        let own = KUBEADM.replace(
            "nodePortAddresses: null",
            "nodePortAddresses: [10.0.0.0/8, all, localhost]",
        );
        let decoded = decoded(&own);
        assert_eq!(
            decoded.config.node_port_addresses.unwrap(),
            ["10.0.0.0/8", "all", "localhost"]
        );
        assert_eq!(
            decoded
                .warnings
                .iter()
                .filter(|warning| warning.contains("kube-proxy refuses it"))
                .count(),
            2,
            "{:?}",
            decoded.warnings
        );
    }

    #[test]
    fn another_proxy_mode_is_a_warning() {
        let decoded = decoded(&KUBEADM.replace("mode: ipvs", "mode: iptables"));
        assert_eq!(decoded.warnings.len(), 1, "{:?}", decoded.warnings);
        assert!(decoded.warnings[0].contains("\"iptables\""));
    }

    #[test]
    fn settings_without_effect_are_listed() {
        let text = KUBEADM
            .replace("enableProfiling: false", "enableProfiling: true")
            .replace(
                "nftables:\n  masqueradeAll: false",
                "nftables:\n  masqueradeAll: true",
            )
            .replace("  qps: 0", "  qps: 50")
            .replace("bindAddress: 0.0.0.0", "bindAddress: 192.168.1.5");
        assert_eq!(
            no_effect(&decoded(&text).config),
            ["enableProfiling", "clientConnection.qps", "nftables"],
            "bindAddress (the node's primary IP) has an effect"
        );
    }

    #[test]
    fn the_defaults_written_decode_back_to_themselves() {
        let defaults = KubeProxyConfiguration::defaulted();
        let text = serde_yaml_ng::to_string(&defaults).unwrap();
        let back = decoded(&text);
        assert_eq!(back.config, defaults, "{text}");
        assert!(back.unknown_fields.is_empty());
        let kubeadm = decoded(KUBEADM).config;
        let text = serde_yaml_ng::to_string(&kubeadm).unwrap();
        assert_eq!(decoded(&text).config, kubeadm, "{text}");
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let cases = [
            (KUBEADM.replace("mode: ipvs", "mode: userspace"), "mode"),
            (
                KUBEADM.replace("syncPeriod: 15s", "syncPeriod: soon"),
                "ipvs.syncPeriod",
            ),
            (
                KUBEADM.replace(
                    "  minSyncPeriod: 0s\n  scheduler",
                    "  minSyncPeriod: 1m\n  scheduler",
                ),
                "ipvs.minSyncPeriod",
            ),
            (
                KUBEADM.replace("strictARP: true", "strictARP: [1]"),
                "ipvs.strictARP",
            ),
            (
                KUBEADM.replace("udpStreamTimeout: 0s", "udpStreamTimeout: 5 minutes"),
                "conntrack.udpStreamTimeout",
            ),
            (KUBEADM.replace("  min: null", "  min: -1"), "conntrack.min"),
            (
                KUBEADM.replace("oomScoreAdj: null", "oomScoreAdj: 2000"),
                "oomScoreAdj",
            ),
            (
                KUBEADM.replace(
                    "  masqueradeBit: null\n  minSyncPeriod: 0s\n  syncPeriod: 0s\nipvs",
                    "  masqueradeBit: 32\n  minSyncPeriod: 0s\n  syncPeriod: 0s\nipvs",
                ),
                "iptables.masqueradeBit",
            ),
            (
                KUBEADM.replace("healthzBindAddress: \"\"", "healthzBindAddress: node1"),
                "healthzBindAddress",
            ),
            (
                KUBEADM.replace(
                    "clusterCIDR: 10.244.0.0/16",
                    "clusterCIDR: 10.244.0.0/16,10.245.0.0/16",
                ),
                "clusterCIDR",
            ),
            (
                KUBEADM.replace("nodePortAddresses: null", "nodePortAddresses: [10.0.0.1]"),
                "nodePortAddresses",
            ),
            (
                KUBEADM.replace("detectLocalMode: \"\"", "detectLocalMode: BridgeInterface"),
                "detectLocal.bridgeInterface",
            ),
            (
                KUBEADM.replace("kind: KubeProxyConfiguration", "kind: KubeletConfiguration"),
                "kind",
            ),
            (
                KUBEADM.replace(
                    "kubeproxy.config.k8s.io/v1alpha1",
                    "kubeproxy.config.k8s.io/v1beta1",
                ),
                "apiVersion",
            ),
        ];
        for (text, field) in cases {
            match decode("config.conf", &text) {
                Err(ConfigError::Invalid { field: got, .. }) => {
                    assert_eq!(got, field)
                }
                Ok(_) => panic!("{field}: accepted"),
            }
        }
    }
}
