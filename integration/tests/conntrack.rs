//! The UDP conntrack cleanup and kube-proxy's conntrack sysctls, with real
//! traffic on the two-node cluster (`integration::cluster`).
//!
//! A client that keeps its source port (one datagram every 200 ms from a
//! fixed port, as DNS resolvers do) keeps one conntrack entry alive. When
//! its real server goes, IPVS (with `expire_nodest_conn=1`) drops its
//! packets while the entry stays, and the client never reaches the
//! replacement (kubernetes#125467); packets sent while a Service had no
//! endpoint leave an entry not rewritten by IPVS. The agent deletes those
//! entries after the sync that changed the real servers: each test
//! asserts which pod answers after one sync.
//!
//! One cluster per binary, shared; each test has its own Services and
//! pods. `IPVS_CONNTRACK_AGENT_ARGS` adds agent flags (e.g.
//! `--conntrack-cleanup false` to see the tests fail without the cleanup).
//!
//! Run: `IPVS_GUEST=1 conntrack-HASH --test-threads=1` in the guest.
//!
//! Measured on Debian's 6.1.0-57 kernel: these tests pass with
//! `--conntrack-cleanup false` as well, so on that kernel they do not
//! prove that the cleanup is needed. The likely reason, not verified in
//! the kernel source here: since 5.9, with `expire_nodest_conn=1` IPVS
//! expires the connections of a deleted real server itself and drops
//! their conntrack entries with them, and packets to a virtual server
//! with no real server are dropped before their entry is confirmed (the
//! "first endpoint" control listing shows no entry for that VIP). They
//! stay as regression tests of the datapath with the cleanup on.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use integration::cluster::{
    run_in, shared, Cluster, Node, Protocol, CLUSTER_CIDR, OUTSIDE, PYTHON,
};

/// Non-default conntrack settings, read back by `conntrack_sysctls_read_back`.
const SYSCTL_ARGS: &[&str] = &[
    "--conntrack-tcp-timeout-established",
    "2h",
    "--conntrack-tcp-timeout-close-wait",
    "30m",
    "--conntrack-tcp-be-liberal",
    "--conntrack-udp-timeout",
    "45s",
    "--conntrack-udp-timeout-stream",
    "2m30s",
];

const CLIENT: &str = "ct-client";
const CLIENT_IP: &str = "10.244.2.30";
const NODE1_IP: &str = "192.168.50.11";

/// How long the replacement may take to answer once the sync that made
/// it a real server is logged (a few datagrams, under emulation).
const AFTER_SYNC: Duration = Duration::from_secs(4);

fn service(name: &str, cluster_ip: &str, node_port: Option<u16>, endpoints: &[&str]) -> String {
    let (kind, node_port) = match node_port {
        Some(port) => ("NodePort", format!(", nodePort: {port}")),
        None => ("ClusterIP", String::new()),
    };
    let endpoints: String = endpoints
        .iter()
        .map(|address| {
            format!(
                "- addresses: [\"{address}\"]\n  conditions: {{ready: true}}\n  nodeName: node1\n"
            )
        })
        .collect();
    let endpoints = if endpoints.is_empty() {
        "endpoints: []\n".to_owned()
    } else {
        format!("endpoints:\n{endpoints}")
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  type: {kind}\n  clusterIP: {cluster_ip}\n  ports:\n  \
         - {{name: dns, protocol: UDP, port: 53, targetPort: 5353{node_port}}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata:\n  name: {name}-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: {name}}}\n\
         addressType: IPv4\nports:\n- {{name: dns, protocol: UDP, port: 5353}}\n{endpoints}"
    )
}

fn cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    shared(&CLUSTER, build)
}

fn build() -> Cluster {
    let mut cluster = Cluster::create();
    cluster.write_manifest(
        "a.yaml",
        &service("ct-a", "10.96.1.10", None, &["10.244.1.21"]),
    );
    cluster.write_manifest("b.yaml", &service("ct-b", "10.96.1.20", None, &[]));
    cluster.write_manifest(
        "c.yaml",
        &service("ct-c", "10.96.1.30", Some(30053), &["10.244.1.24"]),
    );
    let mut args = vec!["--cluster-cidr", CLUSTER_CIDR];
    args.extend_from_slice(SYSCTL_ARGS);
    let extra = std::env::var("IPVS_CONNTRACK_AGENT_ARGS").unwrap_or_default();
    args.extend(extra.split_whitespace());
    cluster.spawn_agents(&args);
    for (name, address) in [
        ("udp-a1", "10.244.1.21"),
        ("udp-a2", "10.244.1.22"),
        ("udp-b1", "10.244.1.23"),
        ("udp-c1", "10.244.1.24"),
        ("udp-c2", "10.244.1.25"),
    ] {
        let pod = cluster.add_pod(Node::One, name, address);
        cluster.serve(&pod.name, &pod.name, Protocol::Udp, 5353);
    }
    cluster.add_pod(Node::Two, CLIENT, CLIENT_IP);
    cluster.start_servers();
    cluster.wait_for_agents();
    eprintln!("conntrack: cluster built, agents run with {args:?}");
    cluster
}

/// A UDP client in `ns` bound to `source_port`, one datagram to
/// `host:port` every 200 ms; prints the name of each answering server.
const STICKY_PY: &str = r#"
import socket, sys, time
host, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", sport))
s.settimeout(0.2)
print("started", flush=True)
while True:
    s.sendto(b"hi", (host, port))
    end = time.time() + 0.2
    while time.time() < end:
        try:
            data = s.recv(2048)
            print(data.decode(errors="replace").split()[0], flush=True)
        except socket.timeout:
            break
        except OSError as e:
            print("ERR %s" % e, flush=True)
            time.sleep(0.2)
            break
"#;

struct StickyClient {
    child: Child,
    lines: Receiver<String>,
}

impl StickyClient {
    fn start(ns: &str, host: &str, port: u16, source_port: u16) -> StickyClient {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, PYTHON, "-c", STICKY_PY, host])
            .args([port.to_string(), source_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the sticky UDP client");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let client = StickyClient { child, lines };
        assert_eq!(
            client
                .lines
                .recv_timeout(Duration::from_secs(60))
                .ok()
                .as_deref(),
            Some("started")
        );
        client
    }

    /// Forgets what was printed so far.
    fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Waits for an answer from `server`; returns what came before it.
    fn wait_for(&self, server: &str, timeout: Duration) -> Result<Vec<String>, Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line == server => return Ok(seen),
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        Err(seen)
    }
}

impl Drop for StickyClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node's conntrack table as `/proc/net/nf_conntrack` shows it (UDP
/// lines only), for the test's control output.
fn conntrack_udp(node: Node) -> String {
    let output = integration::cluster::exec_in(node.name(), &["cat", "/proc/net/nf_conntrack"]);
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().filter(|line| line.contains(" udp ")).collect();
    if lines.is_empty() {
        format!(
            "(no UDP entries; {})",
            String::from_utf8_lossy(&output.stderr).trim()
        )
    } else {
        lines.join("\n")
    }
}

/// Writes `manifest` as `file`, waits for `node`'s agent's next sync, then
/// for `client` to be answered by `server` within [`AFTER_SYNC`].
fn change_and_expect(
    cluster: &mut Cluster,
    node: Node,
    client: &StickyClient,
    (file, manifest): (&str, &str),
    server: &str,
    what: &str,
) {
    let agent = cluster
        .agents
        .iter()
        .position(|agent| agent.node == node)
        .expect("the node's agent");
    let before = cluster.agents[agent].sync_count();
    eprintln!(
        "{what}: before the change, {node} held:\n{}",
        conntrack_udp(node)
    );
    client.drain();
    cluster.write_manifest(file, manifest);
    cluster.agents[agent].wait_for_syncs(before + 1, Duration::from_secs(60));
    let synced = Instant::now();
    match client.wait_for(server, AFTER_SYNC) {
        Ok(before) => eprintln!(
            "{what}: {server} answered {:.1} s after the sync (before it: {before:?})",
            synced.elapsed().as_secs_f64()
        ),
        Err(seen) => panic!(
            "{what}: {server} did not answer within {AFTER_SYNC:?} of the sync; answers: {seen:?}\n\
             {node} conntrack:\n{}\n{}",
            conntrack_udp(node),
            cluster.describe()
        ),
    }
}

/// (a) A pod on node2 keeps its source port towards a UDP ClusterIP whose
/// endpoint (on node1) is replaced: the replacement answers within one
/// sync of node2's agent.
#[test]
fn udp_client_keeping_its_port_reaches_the_replacement_endpoint() {
    let mut cluster = cluster();
    let client = StickyClient::start(CLIENT, "10.96.1.10", 53, 40001);
    client
        .wait_for("udp-a1", Duration::from_secs(10))
        .expect("udp-a1 answers first");
    change_and_expect(
        &mut cluster,
        Node::Two,
        &client,
        (
            "a.yaml",
            &service("ct-a", "10.96.1.10", None, &["10.244.1.22"]),
        ),
        "udp-a2",
        "ClusterIP endpoint replaced",
    );
}

/// (b) A UDP Service without endpoints gets datagrams from a fixed port,
/// then its first endpoint: the same client reaches it within one sync.
#[test]
fn udp_client_reaches_a_service_whose_first_endpoint_came_later() {
    let mut cluster = cluster();
    let client = StickyClient::start(CLIENT, "10.96.1.20", 53, 40002);
    std::thread::sleep(Duration::from_secs(2));
    let early = client.drain();
    assert!(
        !early.iter().any(|line| line.starts_with("udp-")),
        "answered without endpoints: {early:?}"
    );
    change_and_expect(
        &mut cluster,
        Node::Two,
        &client,
        (
            "b.yaml",
            &service("ct-b", "10.96.1.20", None, &["10.244.1.23"]),
        ),
        "udp-b1",
        "first endpoint",
    );
}

/// (c) From outside to a UDP NodePort of node1 with a fixed source port,
/// the endpoint replaced: the replacement answers within one sync of
/// node1's agent.
#[test]
fn udp_node_port_from_outside_reaches_the_replacement_endpoint() {
    let mut cluster = cluster();
    let client = StickyClient::start(OUTSIDE, NODE1_IP, 30053, 40003);
    client
        .wait_for("udp-c1", Duration::from_secs(10))
        .expect("udp-c1 answers first");
    change_and_expect(
        &mut cluster,
        Node::One,
        &client,
        (
            "c.yaml",
            &service("ct-c", "10.96.1.30", Some(30053), &["10.244.1.25"]),
        ),
        "udp-c2",
        "NodePort endpoint replaced",
    );
}

/// (d) The conntrack sysctls set by flags read back in the node's
/// namespace. `nf_conntrack_max` is read-only outside the host's
/// namespace: the agent logs it and goes on (asserted from the log).
#[test]
fn conntrack_sysctls_read_back() {
    let cluster = cluster();
    for node in Node::ALL {
        for (name, want) in [
            ("nf_conntrack_tcp_timeout_established", "7200"),
            ("nf_conntrack_tcp_timeout_close_wait", "1800"),
            ("nf_conntrack_tcp_be_liberal", "1"),
            ("nf_conntrack_udp_timeout", "45"),
            ("nf_conntrack_udp_timeout_stream", "150"),
        ] {
            let got = run_in(
                node.name(),
                &["cat", &format!("/proc/sys/net/netfilter/{name}")],
            );
            assert_eq!(got.trim(), want, "{node}: {name}\n{}", cluster.agent_logs());
        }
    }
    // nf_conntrack_max: read-only here, so the agent says it left it, unless
    // it already holds the wanted max(32768 × CPUs, 131072) (an earlier
    // agent in the host's namespace, in the same boot, may have set it).
    let cpus: u64 = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let wanted = (32768 * cpus).max(131072);
    let current = run_in(
        Node::One.name(),
        &["cat", "/proc/sys/net/netfilter/nf_conntrack_max"],
    );
    let log = cluster.agents[0].log_text();
    assert!(
        log.contains("nf_conntrack_max") || current.trim() == wanted.to_string(),
        "the agent says what it did with nf_conntrack_max (now {}, wanted {wanted}):\n{log}",
        current.trim()
    );
}
