//! `--config FILE`: a kube-proxy `KubeProxyConfiguration`
//! (`kubeproxy.config.k8s.io/v1alpha1`), so an existing kube-proxy
//! ConfigMap drives the agent unchanged.
//!
//! The settings that mean something for an IPVS proxy are read (see
//! [`KubeProxyConfiguration`]); the rest of kube-proxy's format (iptables,
//! nftables, Windows, logging, ...) is accepted and listed in
//! [`LoadedConfig::ignored`] so the caller can say which settings have no
//! effect. A field that is not in kube-proxy's format at all, a wrong
//! type, another `kind`, or a `mode` other than `ipvs` is an error naming
//! the field.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::model::settings::parse_duration;

/// The IPVS part of the configuration (`ipvs:`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpvsConfiguration {
    /// `--ipvs-scheduler`.
    pub scheduler: Option<String>,
    /// `--ipvs-sync-period`.
    pub sync_period: Option<String>,
    /// `--ipvs-min-sync-period`.
    pub min_sync_period: Option<String>,
    /// `--ipvs-exclude-cidrs`.
    #[serde(rename = "excludeCIDRs")]
    pub exclude_cidrs: Option<Vec<String>>,
    /// `--ipvs-strict-arp`.
    #[serde(rename = "strictARP")]
    pub strict_arp: Option<bool>,
    /// `--ipvs-tcp-timeout`.
    pub tcp_timeout: Option<String>,
    /// `--ipvs-tcpfin-timeout`.
    pub tcp_fin_timeout: Option<String>,
    /// `--ipvs-udp-timeout`.
    pub udp_timeout: Option<String>,
}

/// `conntrack:` (kube-proxy's `KubeProxyConntrackConfiguration`), each
/// the `--conntrack-*` flag of the same meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConntrackConfiguration {
    /// `--conntrack-max-per-core`.
    pub max_per_core: Option<i32>,
    /// `--conntrack-min`.
    pub min: Option<i32>,
    /// `--conntrack-tcp-timeout-established`.
    pub tcp_established_timeout: Option<String>,
    /// `--conntrack-tcp-timeout-close-wait`.
    pub tcp_close_wait_timeout: Option<String>,
    /// `--conntrack-tcp-be-liberal`.
    pub tcp_be_liberal: Option<bool>,
    /// `--conntrack-udp-timeout`.
    pub udp_timeout: Option<String>,
    /// `--conntrack-udp-timeout-stream`.
    pub udp_stream_timeout: Option<String>,
}

/// `detectLocal:` (the companions of `detectLocalMode`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetectLocal {
    /// `--pod-bridge-interface`.
    pub bridge_interface: Option<String>,
    /// `--pod-interface-name-prefix`.
    pub interface_name_prefix: Option<String>,
}

/// `iptables:` (only the masquerade settings are used: the agent's
/// netfilter rules are nftables, around IPVS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IptablesConfiguration {
    /// `--masquerade-all`.
    pub masquerade_all: Option<bool>,
    /// `--iptables-masquerade-bit`.
    pub masquerade_bit: Option<i64>,
    /// Everything else (`syncPeriod`, `localhostNodePorts`, ...): not used.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

/// `clientConnection:` (only the kubeconfig is used).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnection {
    /// `--kubeconfig` (empty: in-cluster).
    pub kubeconfig: Option<String>,
    /// Everything else (`qps`, `burst`, `contentType`, ...): not used.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

/// The settings of a `KubeProxyConfiguration` the agent uses. Each is the
/// flag of the same meaning; `None` leaves the flag's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeProxyConfiguration {
    /// Must be `kubeproxy.config.k8s.io/v1alpha1`.
    pub api_version: Option<String>,
    /// Must be `KubeProxyConfiguration`.
    pub kind: Option<String>,
    /// `ipvs` (or empty); anything else is refused.
    pub mode: Option<String>,
    /// `--hostname-override`.
    pub hostname_override: Option<String>,
    /// `--healthz-bind-address`.
    pub healthz_bind_address: Option<String>,
    /// `--metrics-bind-address`.
    pub metrics_bind_address: Option<String>,
    /// `--nodeport-addresses`.
    pub node_port_addresses: Option<Vec<String>>,
    /// `ipvs:`.
    pub ipvs: Option<IpvsConfiguration>,
    /// `conntrack:`.
    pub conntrack: Option<ConntrackConfiguration>,
    /// `--cluster-cidr` (comma-separated).
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    /// `--detect-local-mode`.
    pub detect_local_mode: Option<String>,
    /// `detectLocal:`.
    pub detect_local: Option<DetectLocal>,
    /// `iptables:`.
    pub iptables: Option<IptablesConfiguration>,
    /// `clientConnection:`.
    pub client_connection: Option<ClientConnection>,
    /// Every other field of kube-proxy's format.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

/// The fields of kube-proxy's format the agent accepts and does not use
/// (they configure other proxy modes or kube-proxy's process).
const KNOWN_UNUSED: &[&str] = &[
    "bindAddress",
    "bindAddressHardFail",
    "configSyncPeriod",
    "enableProfiling",
    "featureGates",
    "linux",
    "logging",
    "nftables",
    "oomScoreAdj",
    "portRange",
    "showHiddenMetricsForVersion",
    "udpIdleTimeout",
    "windowsRunAsService",
    "winkernel",
];

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not YAML, or a field of the wrong type.
    #[error("{file}: {field}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// The field's path (`ipvs.syncPeriod`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// A loaded configuration and what in it has no effect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedConfig {
    /// The settings.
    pub config: KubeProxyConfiguration,
    /// Fields set (non-null) that the agent does not use.
    pub ignored: Vec<String>,
}

fn invalid(file: &str, field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_owned(),
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Parses a `KubeProxyConfiguration` (`file` names it in errors).
pub fn parse_kube_proxy_configuration(file: &str, text: &str) -> Result<LoadedConfig, ConfigError> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let config: KubeProxyConfiguration =
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let field = error.path().to_string();
            invalid(file, &field, error.into_inner().to_string())
        })?;
    match config.api_version.as_deref() {
        Some("kubeproxy.config.k8s.io/v1alpha1") => {}
        other => {
            return Err(invalid(
                file,
                "apiVersion",
                format!("{other:?}: expected kubeproxy.config.k8s.io/v1alpha1"),
            ))
        }
    }
    if config.kind.as_deref() != Some("KubeProxyConfiguration") {
        return Err(invalid(
            file,
            "kind",
            format!("{:?}: expected KubeProxyConfiguration", config.kind),
        ));
    }
    match config.mode.as_deref() {
        None | Some("") | Some("ipvs") => {}
        Some(other) => {
            return Err(invalid(
                file,
                "mode",
                format!("{other:?}: ipvs-agent is an IPVS proxy (mode: ipvs)"),
            ))
        }
    }
    let mut ignored = Vec::new();
    for (key, value) in &config.other {
        if !KNOWN_UNUSED.contains(&key.as_str()) {
            return Err(invalid(
                file,
                key,
                "unknown field of KubeProxyConfiguration",
            ));
        }
        if !is_empty(value) {
            ignored.push(key.clone());
        }
    }
    if let Some(iptables) = &config.iptables {
        for (key, value) in &iptables.other {
            if !is_empty(value) {
                ignored.push(format!("iptables.{key}"));
            }
        }
        if let Some(bit) = iptables.masquerade_bit {
            if !(0..=31).contains(&bit) {
                return Err(invalid(
                    file,
                    "iptables.masqueradeBit",
                    format!("{bit} is outside 0-31"),
                ));
            }
        }
    }
    if let Some(connection) = &config.client_connection {
        for (key, value) in &connection.other {
            if !is_empty(value) {
                ignored.push(format!("clientConnection.{key}"));
            }
        }
    }
    if let Some(ipvs) = &config.ipvs {
        for (field, value) in [
            ("ipvs.syncPeriod", &ipvs.sync_period),
            ("ipvs.minSyncPeriod", &ipvs.min_sync_period),
            ("ipvs.tcpTimeout", &ipvs.tcp_timeout),
            ("ipvs.tcpFinTimeout", &ipvs.tcp_fin_timeout),
            ("ipvs.udpTimeout", &ipvs.udp_timeout),
        ] {
            if let Some(text) = value {
                parse_duration(text).map_err(|error| invalid(file, field, error.to_string()))?;
            }
        }
    }
    if let Some(conntrack) = &config.conntrack {
        for (field, value) in [
            (
                "conntrack.tcpEstablishedTimeout",
                &conntrack.tcp_established_timeout,
            ),
            (
                "conntrack.tcpCloseWaitTimeout",
                &conntrack.tcp_close_wait_timeout,
            ),
            ("conntrack.udpTimeout", &conntrack.udp_timeout),
            ("conntrack.udpStreamTimeout", &conntrack.udp_stream_timeout),
        ] {
            if let Some(text) = value {
                parse_duration(text).map_err(|error| invalid(file, field, error.to_string()))?;
            }
        }
        for (field, value) in [
            ("conntrack.maxPerCore", conntrack.max_per_core),
            ("conntrack.min", conntrack.min),
        ] {
            if value.is_some_and(|value| value < 0) {
                return Err(invalid(file, field, "must be 0 or more"));
            }
        }
    }
    Ok(LoadedConfig { config, ignored })
}

/// Null, false, zero, empty string, list or map: "not set" in a
/// kube-proxy ConfigMap (kubeadm writes every field, mostly empty).
fn is_empty(value: &serde_yaml_ng::Value) -> bool {
    use serde_yaml_ng::Value;
    match value {
        Value::Null => true,
        Value::Bool(set) => !set,
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::String(text) => text.is_empty() || text == "0" || text == "0s",
        Value::Sequence(items) => items.is_empty(),
        Value::Mapping(map) => map.values().all(is_empty),
        Value::Tagged(tagged) => is_empty(&tagged.value),
    }
}

/// A duration from the configuration (already checked by the parser).
pub fn duration_of(text: &Option<String>) -> Option<Duration> {
    text.as_deref().and_then(|text| parse_duration(text).ok())
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

    #[test]
    fn kubeadm_configmap_is_read() {
        let loaded = parse_kube_proxy_configuration("config.conf", KUBEADM).unwrap();
        let ipvs = loaded.config.ipvs.clone().unwrap();
        assert_eq!(ipvs.scheduler.as_deref(), Some("wrr"));
        assert_eq!(
            duration_of(&ipvs.sync_period),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            duration_of(&ipvs.tcp_timeout),
            Some(Duration::from_secs(900))
        );
        assert_eq!(ipvs.strict_arp, Some(true));
        assert_eq!(
            loaded
                .config
                .client_connection
                .unwrap()
                .kubeconfig
                .as_deref(),
            Some("/var/lib/kube-proxy/kubeconfig.conf")
        );
        assert_eq!(
            loaded.ignored,
            vec!["bindAddress"],
            "set, but meaningless for the agent"
        );
        assert!(!loaded.ignored.iter().any(|field| field == "clusterCIDR"));
        assert_eq!(loaded.config.cluster_cidr.as_deref(), Some("10.244.0.0/16"));
        let iptables = loaded.config.iptables.as_ref().expect("iptables:");
        assert_eq!(iptables.masquerade_all, Some(false));
    }

    #[test]
    fn conntrack_block_is_read() {
        let kubeadm = parse_kube_proxy_configuration("config.conf", KUBEADM).unwrap();
        let nulls = kubeadm.config.conntrack.unwrap();
        assert_eq!(
            (nulls.max_per_core, nulls.min, nulls.tcp_be_liberal),
            (None, None, Some(false)),
            "kubeadm's nulls leave the flags' defaults"
        );
        let text = KUBEADM
            .replace("  maxPerCore: null", "  maxPerCore: 0")
            .replace("  min: null", "  min: 262144")
            .replace("  tcpBeLiberal: false", "  tcpBeLiberal: true")
            .replace("  tcpCloseWaitTimeout: null", "  tcpCloseWaitTimeout: 30m")
            .replace(
                "  tcpEstablishedTimeout: null",
                "  tcpEstablishedTimeout: 2h0m0s",
            )
            .replace("  udpStreamTimeout: 0s", "  udpStreamTimeout: 2m30s")
            .replace("  udpTimeout: 0s", "  udpTimeout: 45s");
        let conntrack = parse_kube_proxy_configuration("config.conf", &text)
            .unwrap()
            .config
            .conntrack
            .unwrap();
        let cases = [
            (
                "tcpEstablishedTimeout",
                &conntrack.tcp_established_timeout,
                7200,
            ),
            (
                "tcpCloseWaitTimeout",
                &conntrack.tcp_close_wait_timeout,
                1800,
            ),
            ("udpTimeout", &conntrack.udp_timeout, 45),
            ("udpStreamTimeout", &conntrack.udp_stream_timeout, 150),
        ];
        for (field, value, seconds) in cases {
            assert_eq!(
                duration_of(value),
                Some(Duration::from_secs(seconds)),
                "{field}"
            );
        }
        assert_eq!(
            (
                conntrack.max_per_core,
                conntrack.min,
                conntrack.tcp_be_liberal
            ),
            (Some(0), Some(262144), Some(true))
        );
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let cases = [
            (KUBEADM.replace("mode: ipvs", "mode: iptables"), "mode"),
            (
                KUBEADM.replace("syncPeriod: 15s", "syncPeriod: soon"),
                "ipvs.syncPeriod",
            ),
            (
                KUBEADM.replace("strictARP: true", "strictARP: [1]"),
                "ipvs.strictARP",
            ),
            (KUBEADM.replace("  scheduler:", "  schedular:"), "ipvs"),
            (
                KUBEADM.replace("oomScoreAdj: null", "oomScore: 1"),
                "oomScore",
            ),
            (
                KUBEADM.replace("udpStreamTimeout: 0s", "udpStreamTimeout: 5 minutes"),
                "conntrack.udpStreamTimeout",
            ),
            (KUBEADM.replace("  min: null", "  min: -1"), "conntrack.min"),
            (KUBEADM.replace("  min: null", "  minimum: 1"), "conntrack"),
            (
                KUBEADM.replace("kind: KubeProxyConfiguration", "kind: KubeletConfiguration"),
                "kind",
            ),
        ];
        for (text, field) in cases {
            match parse_kube_proxy_configuration("config.conf", &text) {
                Err(ConfigError::Invalid { field: got, .. }) => {
                    assert!(got.starts_with(field), "{field}: got {got}")
                }
                Ok(_) => panic!("{field}: accepted"),
            }
        }
    }
}
