//! The agent with only the capabilities the DaemonSet grants it, run the
//! way its unprivileged container runs it (deploy/README.md, Privileges):
//!
//! - its own mount namespace, in which `/proc/sys` and `/sys` are
//!   read-only (the runtime's `readonlyPaths` / read-only sysfs of an
//!   unprivileged container);
//! - the host's `/proc/sys/net` bind-mounted read-write at another path
//!   (the DaemonSet's hostPath at `/host/proc/sys/net`), given as
//!   `--proc-sys-net`;
//! - uid 0 with the bounding set cut to the granted capabilities, no
//!   inheritable or ambient ones and `no_new_privs` (what the runtime
//!   gives root with `capabilities: drop [ALL], add [...]` and
//!   `allowPrivilegeEscalation: false`), through `setpriv`.
//!
//! The seccomp profile (RuntimeDefault) is not reproduced here.
//!
//! Proven: with NET_ADMIN and NET_RAW the agent programs IPVS (loading a
//! scheduler module the kernel did not have: no CAP_SYS_MODULE needed),
//! `kube-ipvs0`, its nftables table and its sysctls (read back), removes
//! kube-proxy's iptables (both backends) and ipset leftovers, and a pod's
//! request to the ClusterIP is answered. With NET_ADMIN alone everything
//! but the iptables-legacy leftovers works; without the host mount the
//! sysctls are left (read-only); without NET_ADMIN the agent refuses to
//! start and says why.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use integration::agent::agent_binary;
use integration::node::{fresh_node, kube_ipvs0_addresses, saved_lines, NODE_ARGS};
use integration::pods::{hostname_pods, run, Pod};
use integration::{example, ipvsadm};

const SYNC_TIMEOUT: Duration = Duration::from_secs(90);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// CAP_NET_ADMIN's and CAP_NET_RAW's bits.
const NET_ADMIN: u64 = 1 << 12;
const NET_RAW: u64 = 1 << 13;

/// The DaemonSet's set (`capabilities.add` in deploy/daemonset.yaml).
const DAEMONSET_CAPS: &str = "-all,+net_admin,+net_raw";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Builds the container's view and execs the command in it:
/// `$1` the folder for the host's net sysctls, `$2` the bounding set,
/// `$3` `host-net` to mount them there (anything else: no mount), then
/// the command.
const CONFINE: &str = r#"
set -e
dir=$1; caps=$2; mount_net=$3; shift 3
if [ "$mount_net" = host-net ]; then
    mount --bind /proc/sys/net "$dir"
fi
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount -o remount,bind,ro /sys
value=$(cat /proc/sys/net/ipv4/ip_forward)
if echo "$value" > /proc/sys/net/ipv4/ip_forward 2>/dev/null; then
    echo "confinement failed: /proc/sys is writable" >&2
    exit 99
fi
echo "confinement: /proc/sys and /sys read-only, bounding set $caps" >&2
exec setpriv --bounding-set="$caps" --inh-caps=-all --no-new-privs -- "$@"
"#;

/// The agent in its container's view.
struct Confined {
    child: Option<Child>,
    log: PathBuf,
}

impl Confined {
    /// Starts `ipvs-agent ARGS...` confined, with `caps` as its bounding
    /// set; with `host_net`, the host's `/proc/sys/net` is mounted at
    /// `<temp>/host/proc/sys/net` and `--proc-sys-net` names it.
    fn start(caps: &str, host_net: bool, args: &[&str]) -> Confined {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let base = std::env::temp_dir().join(format!("least-{}-{n}", std::process::id()));
        let net = base.join("host/proc/sys/net");
        std::fs::create_dir_all(&net).expect("create the mount point");
        let log = base.join("agent.log");
        let file = std::fs::File::create(&log).expect("create the agent's log");
        let mut command = Command::new("unshare");
        command
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                CONFINE,
                "sh",
            ])
            .arg(&net)
            .arg(caps)
            .arg(if host_net { "host-net" } else { "none" })
            .arg(agent_binary())
            .args(args);
        if host_net {
            command.arg("--proc-sys-net").arg(&net);
        }
        let child = command
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start unshare");
        Confined {
            child: Some(child),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the first `synced` line (the first full sync).
    fn wait_for_first_sync(&mut self) {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            if self.log_text().contains(" synced") {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the agent exited ({status}); log:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "no sync within {SYNC_TIMEOUT:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the log holds `text`.
    fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        while !self.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the agent never logged {text:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The agent's capability sets from `/proc/PID/status` (unshare, sh and
    /// setpriv exec, so the child's pid is the agent's).
    fn capabilities(&self) -> Vec<(String, u64)> {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        assert!(
            status.lines().next().unwrap_or("").contains("ipvs-agent"),
            "pid {pid} is the agent: {status}"
        );
        status
            .lines()
            .filter_map(|line| {
                let (name, mask) = line.split_once(":\t")?;
                let mask = u64::from_str_radix(mask.trim(), 16).ok()?;
                name.starts_with("Cap").then(|| (name.to_owned(), mask))
            })
            .collect()
    }

    /// SIGTERM; the agent must exit cleanly.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let status = child.wait().expect("wait for the agent");
            assert!(
                status.success(),
                "exited with {status}; log:\n{}",
                self.log_text()
            );
        }
    }

    /// Waits for the agent to exit by itself; its status.
    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the agent did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Confined {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The sysctls the agent sets on this kernel and what the test puts there
/// first (each differs from what the agent wants).
const SYSCTLS: [(&str, &str, &str); 6] = [
    ("net/ipv4/vs/conntrack", "0", "1"),
    ("net/ipv4/vs/expire_nodest_conn", "0", "1"),
    ("net/ipv4/vs/expire_quiescent_template", "0", "1"),
    ("net/ipv4/ip_forward", "0", "1"),
    (
        "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
        "60",
        "3600",
    ),
    (
        "net/netfilter/nf_conntrack_tcp_timeout_established",
        "600",
        "86400",
    ),
];

fn sysctl(name: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .unwrap_or_else(|e| panic!("read {name}: {e}"))
        .trim()
        .to_owned()
}

fn set_unwanted_sysctls() {
    // ctnetlink's statistics load nf_conntrack (and its sysctls) as the
    // agent does; conntrack -S asks for them.
    let _ = Command::new("conntrack").arg("-S").output();
    for (name, before, _) in SYSCTLS {
        std::fs::write(Path::new("/proc/sys").join(name), format!("{before}\n"))
            .unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
}

/// kube-proxy's leftovers in both iptables backends and an ipset, as a
/// migration finds them.
fn plant_leftovers() {
    clear_leftovers();
    run(&["iptables-legacy", "-t", "nat", "-N", "KUBE-SERVICES"]);
    run(&[
        "iptables-legacy",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-j",
        "KUBE-SERVICES",
    ]);
    run(&["iptables-nft", "-t", "nat", "-N", "KUBE-POSTROUTING"]);
    run(&[
        "iptables-nft",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-j",
        "KUBE-POSTROUTING",
    ]);
    run(&["ipset", "create", "KUBE-CLUSTER-IP", "hash:ip,port"]);
}

fn clear_leftovers() {
    for (tool, chain, from) in [
        ("iptables-legacy", "KUBE-SERVICES", "PREROUTING"),
        ("iptables-nft", "KUBE-POSTROUTING", "POSTROUTING"),
    ] {
        let _ = Command::new(tool)
            .args(["-t", "nat", "-D", from, "-j", chain])
            .output();
        let _ = Command::new(tool).args(["-t", "nat", "-X", chain]).output();
    }
    let _ = Command::new("ipset")
        .args(["destroy", "KUBE-CLUSTER-IP"])
        .output();
}

fn nat_chains(save: &str) -> String {
    run(&[save, "-t", "nat"])
        .lines()
        .filter(|line| line.contains("KUBE-"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A scheduler module nothing else in the guest uses, unloaded, so that
/// the agent's first virtual server makes the kernel load it.
const SCHEDULER: &str = "nq";

fn unload_scheduler() {
    let module = format!("/sys/module/ip_vs_{SCHEDULER}");
    if Path::new(&module).exists() {
        run(&["modprobe", "-r", &format!("ip_vs_{SCHEDULER}")]);
    }
    assert!(!Path::new(&module).exists(), "ip_vs_{SCHEDULER} unloaded");
}

fn agent_args(manifests: &str) -> Vec<&str> {
    let mut args = vec!["run", "--manifests", manifests];
    args.extend(NODE_ARGS);
    args.extend(["--ipvs-scheduler", SCHEDULER]);
    args
}

/// With the DaemonSet's capabilities (NET_ADMIN, NET_RAW) and its mounts,
/// the agent programs everything it programs as root, and traffic flows.
#[test]
fn the_daemonsets_capabilities_program_the_node_and_traffic_answers() {
    fresh_node();
    let pods: Vec<Pod> = hostname_pods();
    let client = Pod::create("least-client", "10.244.9.20");
    set_unwanted_sysctls();
    plant_leftovers();
    unload_scheduler();

    let manifests = example("hostname.yaml").display().to_string();
    let mut agent = Confined::start(DAEMONSET_CAPS, true, &agent_args(&manifests));
    agent.wait_for_first_sync();

    let caps: Vec<(String, u64)> = agent.capabilities();
    for (name, mask) in &caps {
        let expected = match name.as_str() {
            "CapPrm" | "CapEff" | "CapBnd" => NET_ADMIN | NET_RAW,
            _ => 0,
        };
        assert_eq!(*mask, expected, "{name} of the agent: {caps:?}");
    }

    // IPVS, with a scheduler module the kernel loaded for it.
    let lines = saved_lines("-t 10.1.115.75:80");
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("-A ") && line.contains(&format!("-s {SCHEDULER}"))),
        "the ClusterIP's virtual server with {SCHEDULER}: {lines:?}\n{}",
        ipvsadm(&["-Sn"])
    );
    assert_eq!(
        lines.len(),
        4,
        "a virtual server and 3 real servers: {lines:?}"
    );
    assert!(
        Path::new(&format!("/sys/module/ip_vs_{SCHEDULER}")).exists(),
        "the kernel loaded ip_vs_{SCHEDULER} without CAP_SYS_MODULE"
    );
    // kube-ipvs0 and its nftables table.
    assert!(
        kube_ipvs0_addresses().contains("10.1.115.75/32"),
        "{:?}",
        kube_ipvs0_addresses()
    );
    let table = run(&["nft", "list", "table", "ip", "ipvs-agent"]);
    assert!(table.contains("10.1.115.75"), "{table}");
    // The sysctls, read back from the host's /proc/sys.
    for (name, _, wanted) in SYSCTLS {
        assert_eq!(sysctl(name), wanted, "{name}; log:\n{}", agent.log_text());
    }
    let log = agent.log_text();
    assert!(
        !log.contains("setting sysctls"),
        "no sysctl warning:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // kube-proxy's leftovers, both backends and the set (legacy needs
    // NET_RAW: iptables-legacy-save opens a raw socket).
    agent.wait_for_log("removed kube-proxy's iptables and ipset leftovers");
    assert_eq!(nat_chains("iptables-legacy-save"), "");
    assert_eq!(nat_chains("iptables-nft-save"), "");
    let sets = run(&["ipset", "list", "-n"]);
    assert!(!sets.contains("KUBE-CLUSTER-IP"), "{sets}");

    // Traffic: the pod's request to the ClusterIP is answered by a pod.
    let names: Vec<&str> = pods.iter().map(|pod| pod.name.as_str()).collect();
    let answer = client.http_get("10.1.115.75", 80, REQUEST_TIMEOUT);
    assert!(
        answer.as_deref().is_some_and(|name| names.contains(&name)),
        "the ClusterIP answered {answer:?} (wanted one of {names:?}); log:\n{}",
        agent.log_text()
    );
    agent.stop();
}

/// What each missing piece costs, measured: NET_ADMIN alone and no host
/// mount (`--proc-sys-net` left at `/proc/sys/net`, read-only). IPVS,
/// `kube-ipvs0` and the nftables table are still programmed; the sysctls
/// are not written (a warning says why); the iptables-legacy leftovers
/// cannot be read (a warning says why) and stay.
#[test]
fn net_admin_alone_without_the_mount_programs_ipvs_but_not_sysctls_or_legacy_leftovers() {
    fresh_node();
    set_unwanted_sysctls();
    plant_leftovers();
    let manifests = example("hostname.yaml").display().to_string();
    let mut agent = Confined::start("-all,+net_admin", false, &agent_args(&manifests));
    agent.wait_for_first_sync();
    let caps = agent.capabilities();
    assert!(
        caps.iter()
            .any(|(name, mask)| name == "CapEff" && *mask == NET_ADMIN),
        "{caps:?}"
    );
    assert_eq!(saved_lines("-t 10.1.115.75:80").len(), 4);
    assert!(kube_ipvs0_addresses().contains("10.1.115.75/32"));
    run(&["nft", "list", "table", "ip", "ipvs-agent"]);
    agent.wait_for_log("removing kube-proxy's leftovers");
    let log = agent.log_text();
    assert!(
        log.contains("setting sysctls") && log.contains("Read-only file system"),
        "the read-only /proc/sys is reported:\n{log}"
    );
    assert_eq!(sysctl("net/ipv4/vs/conntrack"), "0", "left as it was");
    assert!(
        log.contains("iptables-legacy-save failed") && log.contains("Permission denied"),
        "the legacy leftovers' failure is reported:\n{log}"
    );
    assert!(
        nat_chains("iptables-legacy-save").contains("KUBE-SERVICES"),
        "the legacy leftovers stay without NET_RAW"
    );
    assert!(!log.contains("panicked"), "{log}");
    agent.stop();
    clear_leftovers();
}

/// Without NET_ADMIN the agent refuses to start, naming the capability,
/// and changes nothing.
#[test]
fn without_net_admin_the_agent_refuses_to_start_and_says_why() {
    fresh_node();
    let manifests = example("hostname.yaml").display().to_string();
    let mut agent = Confined::start("-all,+net_raw", true, &agent_args(&manifests));
    let status = agent.wait_exit(Duration::from_secs(60));
    let log = agent.log_text();
    assert!(!status.success(), "the agent must fail: {status}\n{log}");
    assert_eq!(
        status.code(),
        Some(1),
        "an error exit, not a panic (101): {log}"
    );
    assert!(log.contains("confinement:"), "{log}");
    assert!(
        log.contains("needs CAP_NET_ADMIN") && log.contains("deploy/README.md"),
        "the error names the capability and where to read more:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(kube_ipvs0_addresses().is_empty(), "kube-ipvs0 not created");
    assert_eq!(ipvsadm(&["-Sn"]), "", "no virtual server");
}
