//! Table tests of the command line: every flag of kube-proxy's
//! `cmd/kube-proxy/app/options.go` (`AddFlags`, Linux) and of
//! component-base's logging flags parses with kube-proxy's name and type
//! and lands where kube-proxy puts it.

use std::time::Duration;

use clap::Parser;

use super::resolve::{load_configuration, resolve};
use super::{Cli, Command, RunArgs};
use ipvs_agent::config::KubeProxyConfiguration;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("ipvs-agent").chain(args.iter().copied()))
}

fn run_args(args: &[&str]) -> RunArgs {
    match parse(args)
        .unwrap_or_else(|error| panic!("{args:?}: {error}"))
        .into_command()
    {
        Command::Run(run) => *run,
        other => panic!("{args:?}: not run: {other:?}"),
    }
}

fn configuration(args: &[&str]) -> KubeProxyConfiguration {
    load_configuration(&run_args(args))
        .unwrap_or_else(|error| panic!("{args:?}: {error}"))
        .config
}

/// Every kube-proxy flag on Linux, a value of its type, and what it sets
/// in the configuration (as JSON: the field's path and value).
const KUBE_PROXY_FLAGS: &[(&str, &str, &str, &str)] = &[
    ("--config", "", "", ""),
    ("--write-config-to", "/tmp/out.yaml", "", ""),
    ("--cleanup", "true", "", ""),
    (
        "--feature-gates",
        "A=true,B=false",
        "featureGates",
        r#"{"A":true,"B":false}"#,
    ),
    (
        "--kubeconfig",
        "/etc/kubeconfig",
        "clientConnection.kubeconfig",
        r#""/etc/kubeconfig""#,
    ),
    ("--master", "https://10.0.0.1:6443", "", ""),
    (
        "--kube-api-content-type",
        "application/json",
        "clientConnection.contentType",
        r#""application/json""#,
    ),
    ("--kube-api-burst", "20", "clientConnection.burst", "20"),
    ("--kube-api-qps", "7.5", "clientConnection.qps", "7.5"),
    (
        "--hostname-override",
        "Node-A",
        "hostnameOverride",
        r#""node-a""#,
    ),
    (
        "--bind-address",
        "192.168.1.5",
        "bindAddress",
        r#""192.168.1.5""#,
    ),
    (
        "--healthz-bind-address",
        "127.0.0.1:1256",
        "healthzBindAddress",
        r#""127.0.0.1:1256""#,
    ),
    (
        "--metrics-bind-address",
        "0.0.0.0",
        "metricsBindAddress",
        r#""0.0.0.0:10249""#,
    ),
    (
        "--bind-address-hard-fail",
        "true",
        "bindAddressHardFail",
        "true",
    ),
    ("--profiling", "true", "enableProfiling", "true"),
    (
        "--show-hidden-metrics-for-version",
        "1.33",
        "showHiddenMetricsForVersion",
        r#""1.33""#,
    ),
    ("--init-only", "true", "", ""),
    ("--proxy-mode", "ipvs", "mode", r#""ipvs""#),
    (
        "--iptables-masquerade-bit",
        "10",
        "iptables.masqueradeBit",
        "10",
    ),
    ("--masquerade-all", "true", "iptables.masqueradeAll", "true"),
    (
        "--iptables-localhost-nodeports",
        "false",
        "iptables.localhostNodePorts",
        "false",
    ),
    (
        "--iptables-sync-period",
        "10s",
        "iptables.syncPeriod",
        r#""10s""#,
    ),
    (
        "--iptables-min-sync-period",
        "2s",
        "iptables.minSyncPeriod",
        r#""2s""#,
    ),
    ("--ipvs-sync-period", "1m", "ipvs.syncPeriod", r#""1m0s""#),
    (
        "--ipvs-min-sync-period",
        "5s",
        "ipvs.minSyncPeriod",
        r#""5s""#,
    ),
    ("--ipvs-scheduler", "wrr", "ipvs.scheduler", r#""wrr""#),
    (
        "--ipvs-exclude-cidrs",
        "10.0.0.0/8,fd00::/8",
        "ipvs.excludeCIDRs",
        r#"["10.0.0.0/8","fd00::/8"]"#,
    ),
    ("--ipvs-strict-arp", "true", "ipvs.strictARP", "true"),
    (
        "--ipvs-tcp-timeout",
        "900s",
        "ipvs.tcpTimeout",
        r#""15m0s""#,
    ),
    (
        "--ipvs-tcpfin-timeout",
        "30s",
        "ipvs.tcpFinTimeout",
        r#""30s""#,
    ),
    ("--ipvs-udp-timeout", "10s", "ipvs.udpTimeout", r#""10s""#),
    (
        "--detect-local-mode",
        "NodeCIDR",
        "detectLocalMode",
        r#""NodeCIDR""#,
    ),
    (
        "--pod-bridge-interface",
        "cbr0",
        "detectLocal.bridgeInterface",
        r#""cbr0""#,
    ),
    (
        "--pod-interface-name-prefix",
        "veth",
        "detectLocal.interfaceNamePrefix",
        r#""veth""#,
    ),
    (
        "--cluster-cidr",
        "10.244.0.0/16,fd00:10:244::/56",
        "clusterCIDR",
        r#""10.244.0.0/16,fd00:10:244::/56""#,
    ),
    (
        "--nodeport-addresses",
        "primary",
        "nodePortAddresses",
        r#"["primary"]"#,
    ),
    ("--oom-score-adj", "-500", "oomScoreAdj", "-500"),
    ("--conntrack-max-per-core", "0", "conntrack.maxPerCore", "0"),
    ("--conntrack-min", "262144", "conntrack.min", "262144"),
    (
        "--conntrack-tcp-timeout-established",
        "2h",
        "conntrack.tcpEstablishedTimeout",
        r#""2h0m0s""#,
    ),
    (
        "--conntrack-tcp-timeout-close-wait",
        "30m",
        "conntrack.tcpCloseWaitTimeout",
        r#""30m0s""#,
    ),
    (
        "--conntrack-tcp-be-liberal",
        "true",
        "conntrack.tcpBeLiberal",
        "true",
    ),
    (
        "--conntrack-udp-timeout",
        "30s",
        "conntrack.udpTimeout",
        r#""30s""#,
    ),
    (
        "--conntrack-udp-timeout-stream",
        "2m",
        "conntrack.udpStreamTimeout",
        r#""2m0s""#,
    ),
    (
        "--config-sync-period",
        "5m",
        "configSyncPeriod",
        r#""5m0s""#,
    ),
    ("--healthz-port", "0", "healthzBindAddress", r#""""#),
    ("--metrics-port", "0", "metricsBindAddress", r#""""#),
    // component-base's logging flags (logsapi.AddFlags).
    ("--v", "2", "logging.verbosity", "2"),
    (
        "--vmodule",
        "proxier=4",
        "logging.vmodule",
        r#"[{"filePattern":"proxier","verbosity":4}]"#,
    ),
    ("--logging-format", "json", "logging.format", r#""json""#),
    ("--log-flush-frequency", "10s", "", ""),
    ("--log-text-split-stream", "true", "", ""),
    ("--log-text-info-buffer-size", "0", "", ""),
    ("--log-json-split-stream", "true", "", ""),
    ("--log-json-info-buffer-size", "0", "", ""),
];

fn at(config: &KubeProxyConfiguration, path: &str) -> serde_json::Value {
    let value = serde_json::to_value(config).unwrap();
    path.split('.')
        .try_fold(&value, |value, key| value.get(key))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn every_kube_proxy_flag_is_accepted_where_kube_proxy_puts_it() {
    for (flag, value, field, wanted) in KUBE_PROXY_FLAGS {
        if *flag == "--config" {
            continue;
        }
        let argument = format!("{flag}={value}");
        let args = run_args(&[&argument]);
        if field.is_empty() {
            continue;
        }
        let config = load_configuration(&args)
            .unwrap_or_else(|error| panic!("{argument}: {error}"))
            .config;
        let wanted: serde_json::Value = serde_json::from_str(wanted).unwrap();
        assert_eq!(at(&config, field), wanted, "{argument} sets {field}");
    }
}

#[test]
fn without_flags_the_configuration_is_kube_proxys_defaults() {
    assert_eq!(configuration(&[]), KubeProxyConfiguration::defaulted());
}

#[test]
fn flags_take_pflags_forms() {
    for (args, strict_arp) in [
        (&["--ipvs-strict-arp"][..], true),
        (&["--ipvs-strict-arp=false"][..], false),
        (&["--ipvs-strict-arp=true"][..], true),
    ] {
        assert_eq!(configuration(args).ipvs.strict_arp, strict_arp, "{args:?}");
    }
    for args in [
        &["-v", "4"][..],
        &["--v=4"][..],
        &["--v", "4"][..],
        &["-v=4"][..],
    ] {
        assert_eq!(configuration(args).logging.verbosity, 4, "{args:?}");
    }
    assert_eq!(
        configuration(&[
            "--nodeport-addresses",
            "10.0.0.0/8",
            "--nodeport-addresses",
            "192.168.0.0/16"
        ])
        .node_port_addresses,
        Some(vec!["10.0.0.0/8".into(), "192.168.0.0/16".into()]),
        "string slices repeat"
    );
    assert_eq!(
        configuration(&["--nodeport-addresses="]).node_port_addresses,
        Some(vec![]),
        "an empty string slice is an empty list, as pflag's"
    );
    for (args, expected) in [
        (&["--masquerade-all=1"][..], true),
        (&["--masquerade-all=T"][..], true),
        (&["--masquerade-all=True"][..], true),
        (&["--masquerade-all=F"][..], false),
        (&["--masquerade-all=0"][..], false),
        (&["--masquerade-all", "--masquerade-all=false"][..], false),
    ] {
        assert_eq!(
            configuration(args).iptables.masquerade_all,
            expected,
            "Go's ParseBool: {args:?}"
        );
    }
    assert!(
        Cli::try_parse_from(["ipvs-agent", "--masquerade-all=yes"]).is_err(),
        "ParseBool refuses yes"
    );
    assert_eq!(
        configuration(&["--v=2", "--v=4"]).logging.verbosity,
        4,
        "a repeated flag keeps its last value, as pflag's"
    );
    assert_eq!(
        configuration(&["--oom-score-adj", "-1000"]).oom_score_adj,
        Some(-1000)
    );
}

#[test]
fn bad_flag_values_are_refused_naming_the_flag() {
    for (args, flag) in [
        (&["--ipvs-sync-period=soon"][..], "--ipvs-sync-period"),
        (
            &["--iptables-masquerade-bit=32"][..],
            "--iptables-masquerade-bit",
        ),
        (&["--oom-score-adj=1001"][..], "--oom-score-adj"),
        (&["--feature-gates=A=maybe"][..], "--feature-gates"),
        (&["--bind-address=node1"][..], "--bind-address"),
        (&["--not-a-kube-proxy-flag"][..], "--not-a-kube-proxy-flag"),
        (&["--healthz-port=70000"][..], "--healthz-port"),
        (&["--vmodule=proxier"][..], "--vmodule"),
        (
            &["--ipvs-sync-period=3000000000000000h"][..],
            "--ipvs-sync-period",
        ),
        (&["--drain-check-interval=0"][..], "--drain-check-interval"),
        (
            &["--manifests-poll-interval=0s"][..],
            "--manifests-poll-interval",
        ),
    ] {
        let error = parse(args).expect_err(flag).to_string();
        assert!(error.contains(flag), "{args:?}: {error}");
    }
    for (args, flag) in [
        (&["--proxy-mode=userspace"][..], "--proxy-mode"),
        (
            &["--healthz-bind-address=node1:1"][..],
            "--healthz-bind-address",
        ),
        (&["--cluster-cidr=10.0.0.1"][..], "--cluster-cidr"),
        (
            &["--detect-local-mode=BridgeInterface"][..],
            "--pod-bridge-interface",
        ),
        (
            &["--ipvs-min-sync-period=1m", "--ipvs-sync-period=30s"][..],
            "--ipvs-min-sync-period",
        ),
        (&["--hostname-override= "][..], "--hostname-override"),
        (
            &["--metrics-bind-address=127.0.0.1:0"][..],
            "--metrics-bind-address",
        ),
        (&["--proxy-mode=kernelspace"][..], "--proxy-mode"),
    ] {
        let error = load_configuration(&run_args(args))
            .expect_err(flag)
            .to_string();
        assert!(error.starts_with(flag), "{args:?}: {error}");
    }
}

#[test]
fn flags_without_effect_are_named() {
    let loaded = load_configuration(&run_args(&[
        "--profiling",
        "--kube-api-qps=50",
        "--iptables-sync-period=10s",
        "--ipvs-sync-period=10s",
    ]))
    .unwrap();
    let note = loaded
        .notes
        .iter()
        .find(|note| note.contains("no effect"))
        .expect("a note");
    assert!(
        note.contains("--profiling")
            && note.contains("--kube-api-qps")
            && note.contains("--iptables-sync-period")
            && !note.contains("--ipvs-sync-period"),
        "{note}"
    );
}

#[test]
fn kubeadms_command_line_runs_with_the_file_over_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.conf");
    std::fs::write(
        &path,
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
hostnameOverride: from-file
mode: ipvs
ipvs:
  scheduler: lc
  syncPeriod: 10s
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
logging:
  verbosity: 1
futureField: true
",
    )
    .unwrap();
    let config_flag = format!("--config={}", path.display());
    let args = run_args(&[
        &config_flag,
        "--hostname-override=Node1",
        "--v=2",
        "--ipvs-scheduler=wrr",
        "--proxy-mode=ipvs",
    ]);
    let loaded = load_configuration(&args).unwrap();
    let config = &loaded.config;
    assert_eq!(
        config.ipvs.scheduler, "lc",
        "the file wins over --ipvs-scheduler"
    );
    assert_eq!(
        config.hostname_override, "node1",
        "--hostname-override wins"
    );
    assert_eq!(config.logging.verbosity, 2, "logging flags win");
    let notes = loaded.notes.join("\n");
    assert!(notes.contains("futureField"), "{notes}");
    assert!(
        notes.contains("ignored because --config is given")
            && notes.contains("--ipvs-scheduler")
            && notes.contains("--proxy-mode"),
        "{notes}"
    );
    let mut notes = Vec::new();
    let resolved = resolve(loaded.config.clone(), &args.agent, &mut notes).unwrap();
    assert_eq!(resolved.settings.scheduler, "lc");
    assert_eq!(resolved.sync_period, Duration::from_secs(10));
    assert_eq!(
        resolved.kubeconfig.as_deref(),
        Some(std::path::Path::new("/var/lib/kube-proxy/kubeconfig.conf"))
    );
    assert_eq!(resolved.log.level(), "info");
    assert_eq!(
        resolved.healthz_address,
        Some("0.0.0.0:10256".parse().unwrap())
    );
}

#[test]
fn the_agents_subcommands_and_flags_stay() {
    assert!(matches!(
        parse(&["plan", "--manifests", "examples", "--node-ip", "10.0.0.1"])
            .unwrap()
            .into_command(),
        Command::Plan(_)
    ));
    assert!(matches!(
        parse(&["list", "-n"]).unwrap().into_command(),
        Command::List(_)
    ));
    assert!(matches!(
        parse(&["cleanup", "--ipvs-exclude-cidrs", "10.1.200.0/24"])
            .unwrap()
            .into_command(),
        Command::Cleanup(_)
    ));
    let explicit = run_args(&["run", "--manifests", "examples", "--ip-family", "dual"]);
    let implicit = run_args(&["--manifests", "examples", "--ip-family", "dual"]);
    assert_eq!(explicit.agent.manifests, implicit.agent.manifests);
    assert_eq!(implicit.agent.ip_family, Some(super::IpFamily::Dual));
    assert_eq!(
        run_args(&["--node-name", "n1"])
            .kube_proxy
            .hostname_override
            .as_deref(),
        Some("n1"),
        "--node-name is the agent's old name of --hostname-override"
    );
}

#[test]
fn resolution_follows_kube_proxys_meaning() {
    let args = run_args(&[
        "--bind-address=192.168.1.5",
        "--nodeport-addresses=all",
        "--healthz-port=0",
        "--v=5",
        "--cluster-cidr=10.244.0.0/16",
    ]);
    let loaded = load_configuration(&args).unwrap();
    let mut notes = Vec::new();
    let resolved = resolve(loaded.config, &args.agent, &mut notes).unwrap();
    assert_eq!(
        resolved.node_addresses,
        ["192.168.1.5".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        resolved.settings.nodeport_addresses.cidrs.len(),
        2,
        "all: 0.0.0.0/0 and ::/0"
    );
    assert_eq!(
        resolved.healthz_address, None,
        "--healthz-port=0 turns it off"
    );
    assert_eq!(resolved.log.level(), "trace");
    assert_eq!(resolved.settings.scheduler, "rr");
    assert!(matches!(
        resolved.settings.datapath.local_detector,
        ipvs_agent::model::settings::LocalTrafficDetector::ClusterCidr(_)
    ));
    let args = run_args(&["--bind-address=0.0.0.0", "--node-ip=10.0.0.9"]);
    let loaded = load_configuration(&args).unwrap();
    let resolved = resolve(loaded.config, &args.agent, &mut notes).unwrap();
    assert_eq!(
        resolved.node_addresses,
        ["10.0.0.9".parse::<std::net::IpAddr>().unwrap()]
    );
}
