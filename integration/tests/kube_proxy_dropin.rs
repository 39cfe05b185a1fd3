//! The agent as a drop-in for kube-proxy, in the guest's real kernel:
//! kubeadm's kube-proxy DaemonSet command line and ConfigMap (both keys,
//! `config.conf` and `kubeconfig.conf`, in one directory as the DaemonSet
//! mounts them at /var/lib/kube-proxy) against the API stand-in, plus
//! `--v=2` and flags only kube-proxy's other modes read; then kube-proxy's
//! `--write-config-to` and `--init-only`.
//!
//! kubeadm's kubeconfig.conf names the in-cluster CA and the service
//! account's token file; the stand-in speaks plain HTTP, so the cluster
//! entry here has the stand-in's `http://` address and no CA, and the
//! token file is a file of this test (the stand-in takes any token),
//! written as the kubelet writes a projected token: no trailing newline
//! (client-go trims one, kube-rs sends it and the header is refused).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use integration::agent::{agent_binary, Agent};
use integration::node::{fresh_node, NODE_IP};
use integration::standin::Standin;
use integration::{example, ipvsadm};

const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// kubeadm's `config.conf` (`kubeadm init` with podSubnet 10.244.0.0/16,
/// as `kubectl -n kube-system get cm kube-proxy` shows it), switched to
/// IPVS with a scheduler, strict ARP and a TCP timeout, and one field of a
/// newer kube-proxy (`futureField`) that strict decoding refuses.
fn kubeadm_config(kubeconfig: &Path) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: {kubeconfig}
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
futureField: true
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
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 901s
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
"#,
        kubeconfig = kubeconfig.display()
    )
}

/// kubeadm's `kubeconfig.conf`, pointed at the stand-in.
fn kubeadm_kubeconfig(server: &str, token_file: &Path) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    namespace: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    tokenFile: {token}
",
        token = token_file.display()
    )
}

/// The stand-in's server URL, from the kubeconfig it wrote.
fn server_of(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).expect("read the stand-in's kubeconfig");
    text.lines()
        .find_map(|line| line.trim().strip_prefix("server: "))
        .expect("a server line")
        .to_owned()
}

/// The ConfigMap's directory (the DaemonSet's /var/lib/kube-proxy).
fn configmap_dir(standin: &Standin) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kube-proxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make the ConfigMap's directory");
    let token = dir.join("token");
    std::fs::write(&token, "kubeadm-service-account-token").expect("write the token");
    std::fs::write(
        dir.join("kubeconfig.conf"),
        kubeadm_kubeconfig(&server_of(&standin.kubeconfig), &token),
    )
    .expect("write kubeconfig.conf");
    std::fs::write(
        dir.join("config.conf"),
        kubeadm_config(&dir.join("kubeconfig.conf")),
    )
    .expect("write config.conf");
    dir
}

fn node_manifest() -> PathBuf {
    let path = std::env::temp_dir().join(format!("node1-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Node
metadata:
  name: node1
status:
  addresses:
  - type: InternalIP
    address: {NODE_IP}
  - type: Hostname
    address: node1
"
        ),
    )
    .expect("write the Node");
    path
}

fn http(url: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn reset_strict_arp() {
    for sysctl in [
        "net/ipv4/conf/all/arp_ignore",
        "net/ipv4/conf/all/arp_announce",
    ] {
        std::fs::write(format!("/proc/sys/{sysctl}"), "0\n").expect("reset a sysctl");
    }
}

fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .expect("read a sysctl")
        .trim()
        .to_owned()
}

/// kubeadm's command line (`--config=/var/lib/kube-proxy/config.conf
/// --hostname-override=$(NODE_NAME)`, no subcommand) with `--v=2` and
/// kube-proxy-only flags starts the agent, which reads both ConfigMap
/// keys, programs the node from the API, serves kube-proxy's /healthz on
/// kubeadm's default address, sets its oom_score_adj, and names what it
/// ignored.
#[test]
fn kubeadms_daemonset_command_line_and_configmap_program_the_node() {
    fresh_node();
    // Strict ARP and the TCP timeout as the kernel's defaults, so that
    // the agent must set both.
    reset_strict_arp();
    ipvsadm(&["--set", "900", "120", "300"]);
    let node = node_manifest();
    let standin = Standin::start(&[&example("hostname.yaml"), &node]);
    let dir = configmap_dir(&standin);
    let config = format!("--config={}", dir.join("config.conf").display());
    let mut agent = Agent::start(&[
        &config,
        "--hostname-override=node1",
        "--v=2",
        "--proxy-mode=ipvs",
        "--iptables-sync-period=10s",
        "--profiling",
        "--feature-gates=SomeGate=true",
    ]);
    agent.wait_for_syncs(1, SYNC_TIMEOUT);
    let saved = ipvsadm(&["-Sn"]);
    assert!(
        saved.contains("-A -t 10.1.115.75:80 -s wrr\n"),
        "the ClusterIP with the configuration's scheduler: {saved}"
    );
    assert_eq!(
        saved.matches("-a -t 10.1.115.75:80 -r ").count(),
        3,
        "its three endpoints, from the API: {saved}"
    );
    let timeouts = ipvsadm(&["-Ln", "--timeout"]);
    assert!(
        timeouts.starts_with("Timeout (tcp tcpfin udp): 901 "),
        "{timeouts}"
    );
    assert_eq!(sysctl("net/ipv4/conf/all/arp_ignore"), "1");
    assert_eq!(sysctl("net/ipv4/conf/all/arp_announce"), "2");
    let chain = integration::pods::run(&["nft", "list", "chain", "ip", "ipvs-agent", "cluster-ip"]);
    assert!(
        chain.contains("ip saddr != 10.244.0.0/16 jump mark-for-masquerade"),
        "clusterCIDR is the local-traffic detector: {chain}"
    );
    // healthzBindAddress "" is kube-proxy's default, 0.0.0.0:10256.
    let (code, body) = http(&format!("http://{NODE_IP}:10256/healthz"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"nodeEligible\": true"), "{body}");
    let pid = agent.pid().expect("the agent runs");
    let oom =
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).expect("read oom_score_adj");
    assert_eq!(oom.trim(), "-999", "kube-proxy's oomScoreAdj default");
    let log = agent.log_text();
    let lenient = log
        .lines()
        .find(|line| line.contains("lenient decoding"))
        .unwrap_or_else(|| panic!("the unknown field is reported: {log}"));
    assert!(lenient.contains("futureField"), "{lenient}");
    let no_effect = log
        .lines()
        .find(|line| line.contains("flags have no effect"))
        .unwrap_or_else(|| panic!("the flags without effect are reported: {log}"));
    assert!(
        no_effect.contains("--iptables-sync-period")
            && no_effect.contains("--profiling")
            && no_effect.contains("--feature-gates"),
        "{no_effect}"
    );
    let overridden = log
        .lines()
        .find(|line| line.contains("ignored because --config is given"))
        .unwrap_or_else(|| panic!("the flags --config overrides are reported: {log}"));
    assert!(
        overridden.contains("--proxy-mode")
            && !overridden.contains("--hostname-override")
            && !overridden.contains("--v,"),
        "--hostname-override and --v win over --config, the others do not: {overridden}"
    );
    agent.stop();
    reset_strict_arp();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&node);
}

fn run_to_exit(args: &[&str]) -> (bool, String) {
    let output = Command::new(agent_binary())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run ipvs-agent");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `--write-config-to` writes the configuration in force (the file's,
/// defaulted as kube-proxy defaults it, with the command line's overrides)
/// and exits without touching the kernel; the file it wrote runs the
/// agent again.
#[test]
fn write_config_to_writes_the_configuration_in_force() {
    fresh_node();
    let standin = Standin::start(&[&example("hostname.yaml")]);
    let dir = configmap_dir(&standin);
    let config = format!("--config={}", dir.join("config.conf").display());
    let written = dir.join("written.yaml");
    let write = format!("--write-config-to={}", written.display());
    let (ok, log) = run_to_exit(&[&config, "--hostname-override=Node1", &write]);
    assert!(ok, "{log}");
    let text = std::fs::read_to_string(&written).expect("the file is written");
    for line in [
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1",
        "kind: KubeProxyConfiguration",
        "hostnameOverride: node1",
        "healthzBindAddress: 0.0.0.0:10256",
        "metricsBindAddress: 127.0.0.1:10249",
        "  scheduler: wrr",
        "  syncPeriod: 30s",
        "  tcpTimeout: 15m1s",
        "  maxPerCore: 32768",
        "oomScoreAdj: -999",
    ] {
        assert!(
            text.lines().any(|written| written == line),
            "{line:?} in:\n{text}"
        );
    }
    assert!(!text.contains("futureField"), "{text}");
    assert_eq!(ipvsadm(&["-Sn"]), "", "nothing was programmed");
    // The written file is a configuration the agent (and kube-proxy) reads.
    let again = format!("--config={}", written.display());
    let mut agent = Agent::start(&[&again]);
    agent.wait_for_syncs(1, SYNC_TIMEOUT);
    assert!(ipvsadm(&["-Sn"]).contains("-A -t 10.1.115.75:80 -s wrr\n"));
    assert!(
        !agent.log_text().contains("lenient decoding"),
        "{}",
        agent.log_text()
    );
    agent.stop();
    reset_strict_arp();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--init-only` sets what needs full root privileges (kube-proxy's
/// sysctls, the IPVS timeouts) and exits without programming anything.
#[test]
fn init_only_sets_the_sysctls_and_exits() {
    fresh_node();
    reset_strict_arp();
    // Loaded by earlier tests: set back so that the agent must set it.
    let _ = std::fs::write("/proc/sys/net/ipv4/vs/conntrack", "0\n");
    let (ok, log) = run_to_exit(&[
        "--init-only",
        "--ipvs-strict-arp",
        "--ipvs-udp-timeout=77s",
        "--hostname-override=node1",
    ]);
    assert!(ok, "{log}");
    assert!(log.contains("--init-only"), "{log}");
    assert_eq!(sysctl("net/ipv4/conf/all/arp_ignore"), "1");
    assert_eq!(sysctl("net/ipv4/vs/conntrack"), "1");
    let timeouts = ipvsadm(&["-Ln", "--timeout"]);
    assert!(timeouts.trim_end().ends_with(" 77"), "{timeouts}");
    assert_eq!(ipvsadm(&["-Sn"]), "", "nothing was programmed");
    let link = Command::new("ip")
        .args(["link", "show", "kube-ipvs0"])
        .output()
        .expect("run ip");
    assert!(!link.status.success(), "no kube-ipvs0");
    reset_strict_arp();
    // The kernel's default timeouts, for the tests after this one.
    ipvsadm(&["--set", "900", "120", "300"]);
}
