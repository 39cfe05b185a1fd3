//! `demo`: the Service document's examples on a two-node cluster, and what
//! a person would check, with the answers (the README's first command,
//! `integration/scripts/demo.sh`, boots the guest and runs this in it).
//!
//! Builds the cluster of `integration::cluster` (node1 192.168.50.11,
//! node2 192.168.50.12, a client outside at 192.168.50.100), copies every
//! `examples/*.yaml` into the manifest folder both agents read, makes a
//! pod at each of the examples' endpoint addresses on the node its
//! `nodeName` says, serving the example's target ports, and the
//! selector-less Service's four external servers (10.28.88.9-12:9000) in
//! the outside namespace; starts both agents with `--cluster-cidr
//! 10.244.0.0/16`; prints each node's IPVS table, `kube-ipvs0`, node1's
//! nftables table and the agents' warnings; then runs the document's
//! checks (and one per other example) and prints PASS or FAIL for each.
//! Exits 1 if any check failed. Needs the guest (`IPVS_GUEST=1`).

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use integration::cluster::{exec_in, ip_batch, Cluster, Node, Protocol, OUTSIDE, OUTSIDE_IP};
use integration::cluster::{CLUSTER_CIDR, PYTHON};

/// Per step (connect, each receive) of one request: generous, the guest
/// is emulated.
const TIMEOUT: Duration = Duration::from_secs(3);

/// How long the external servers may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One pod of the examples: where it runs, its name (what its servers
/// answer), its address and the ports it serves.
struct PodSpec {
    node: Node,
    name: &'static str,
    address: &'static str,
    ports: &'static [u16],
    /// Which example it belongs to.
    example: &'static str,
}

/// Every endpoint of the examples on node1 or node2 (headless.yaml's are
/// on a node `it-zabbix` that is not in this cluster, and DNS only).
const PODS: &[PodSpec] = &[
    PodSpec {
        node: Node::One,
        name: "hostname-69cd56f6d5-cgnrx",
        address: "10.244.1.54",
        ports: &[9376],
        example: "hostname.yaml",
    },
    PodSpec {
        node: Node::One,
        name: "hostname-69cd56f6d5-rlpng",
        address: "10.244.1.55",
        ports: &[9376],
        example: "hostname.yaml",
    },
    PodSpec {
        node: Node::Two,
        name: "hostname-69cd56f6d5-vjd95",
        address: "10.244.2.53",
        ports: &[9376],
        example: "hostname.yaml",
    },
    PodSpec {
        node: Node::Two,
        name: "my-nginx-pod",
        address: "10.244.2.40",
        ports: &[80, 443],
        example: "nodeport-my-nginx.yaml",
    },
    PodSpec {
        node: Node::One,
        name: "nginx-nodeport-pod",
        address: "10.244.1.20",
        ports: &[80],
        example: "nodeport.yaml",
    },
    PodSpec {
        node: Node::One,
        name: "nginx-1-pod",
        address: "10.244.1.30",
        ports: &[80, 9377],
        example: "nginx-1-clusterip.yaml",
    },
    // Outside node1's pod /24: routed to node1 by hand below.
    PodSpec {
        node: Node::One,
        name: "my-service-pod",
        address: "10.244.3.10",
        ports: &[9376],
        example: "externalips.yaml",
    },
];

/// The pod the checks run from (the document's `curl` from a pod).
const CLIENT_POD: &str = "client-pod";
const CLIENT_POD_IP: &str = "10.244.1.10";

/// The selector-less Service's legacy Endpoints (nginx-1-external.yaml),
/// servers outside the cluster.
const EXTERNAL: [&str; 4] = ["10.28.88.9", "10.28.88.10", "10.28.88.11", "10.28.88.12"];
const EXTERNAL_PORT: u16 = 9000;
const EXTERNAL_NET: &str = "10.28.88.0/24";

/// The external servers, one process in `outside`: each listens on its
/// own address (the cluster's servers listen on 0.0.0.0, one name per
/// namespace) and answers `external-ADDRESS CLIENT-ADDRESS` to one HTTP
/// request, as the cluster's servers do. Prints `ready` once bound.
const EXTERNAL_PY: &str = r#"
import socket, sys, threading
def answer(c, peer, name):
    try:
        c.settimeout(30)
        data = b""
        while b"\r\n\r\n" not in data and b"\n\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        body = ("%s %s" % (name, peer[0])).encode()
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    except Exception:
        pass
    finally:
        c.close()
def serve(s, name):
    while True:
        c, peer = s.accept()
        threading.Thread(target=answer, args=(c, peer, name), daemon=True).start()
port = int(sys.argv[1])
for address in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.listen(64)
    threading.Thread(target=serve, args=(s, "external-" + address), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// A process killed when dropped (also when the demo panics).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the external servers in `outside` (their addresses must be
/// there already); waits until they listen.
fn start_external_servers() -> Killed {
    let mut child = Command::new("ip")
        .args(["netns", "exec", OUTSIDE, PYTHON, "-c", EXTERNAL_PY])
        .arg(EXTERNAL_PORT.to_string())
        .args(EXTERNAL)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the external servers: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let servers = Killed(child);
    let ready = receiver.recv_timeout(START_TIMEOUT);
    assert_eq!(
        ready.as_deref().map(str::trim),
        Ok("ready"),
        "the external servers did not start within {START_TIMEOUT:?}"
    );
    servers
}

/// The examples folder of this checkout.
fn examples_dir() -> PathBuf {
    integration::example("")
}

/// Copies every `examples/*.yaml` into the cluster's manifest folder; the
/// names copied, sorted.
fn copy_examples(cluster: &Cluster) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap_or_else(|e| panic!("read {}: {e}", examples_dir().display()))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect();
    names.sort();
    for name in &names {
        let text = std::fs::read_to_string(examples_dir().join(name))
            .unwrap_or_else(|e| panic!("read examples/{name}: {e}"));
        cluster.write_manifest(name, &text);
    }
    names
}

fn heading(text: &str) {
    println!("\n==== {text}");
}

/// Runs `argv` in `ns` and prints the command and its output, indented.
fn show(ns: &str, argv: &[&str]) {
    heading(&format!("{ns}: {}", argv.join(" ")));
    let output = exec_in(ns, argv);
    print_indented(&String::from_utf8_lossy(&output.stdout));
    print_indented(&String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        println!("    ({} exited {})", argv[0], output.status);
    }
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}

/// node1's `ip ipvs-agent` table, readable: the chains and rules in
/// full, each set's declaration with its element count instead of its
/// elements (`nft -t`, and `nft -j` for the counts).
fn show_nft_table(node: Node) {
    let argv = ["nft", "list", "table", "ip", "ipvs-agent"];
    heading(&format!(
        "{node}: {} (sets: element counts instead of elements)",
        argv.join(" ")
    ));
    let counts = set_element_counts(node);
    let terse = exec_in(
        node.name(),
        &["nft", "-t", "list", "table", "ip", "ipvs-agent"],
    );
    if !terse.status.success() {
        print_indented(&String::from_utf8_lossy(&terse.stderr));
        return;
    }
    for line in String::from_utf8_lossy(&terse.stdout).lines() {
        let trimmed = line.trim_start();
        let set_name = trimmed
            .strip_prefix("set ")
            .or_else(|| trimmed.strip_prefix("map "))
            .and_then(|rest| rest.strip_suffix(" {"));
        match set_name.and_then(|name| counts.iter().find(|(n, _)| n == name)) {
            Some((_, count)) => println!(
                "    {line}   # {count} element{}",
                if *count == 1 { "" } else { "s" }
            ),
            None => println!("    {line}"),
        }
    }
}

/// Each set's (or map's) name and element count in `node`'s table.
fn set_element_counts(node: Node) -> Vec<(String, usize)> {
    let output = exec_in(
        node.name(),
        &["nft", "-j", "list", "table", "ip", "ipvs-agent"],
    );
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
        return Vec::new();
    };
    let Some(objects) = json["nftables"].as_array() else {
        return Vec::new();
    };
    objects
        .iter()
        .filter_map(|object| object.get("set").or_else(|| object.get("map")))
        .filter_map(|set| {
            let name = set["name"].as_str()?.to_owned();
            let count = set["elem"].as_array().map(Vec::len).unwrap_or(0);
            Some((name, count))
        })
        .collect()
}

/// The address of the pod (or external server) named `server`.
fn address_of(server: &str) -> String {
    if let Some(address) = server.strip_prefix("external-") {
        return address.to_owned();
    }
    PODS.iter()
        .find(|pod| pod.name == server)
        .map(|pod| pod.address.to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

/// The checks' results.
#[derive(Default)]
struct Checks {
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    fn record(&mut self, ok: bool, what: &str) {
        if ok {
            self.passed += 1;
            println!("  PASS: {what}");
        } else {
            self.failed.push(what.to_owned());
            println!("  FAIL: {what}");
        }
    }
}

/// `count` requests from `from` to `address:port`, each answer printed;
/// the servers that answered (`None` for a request that got no answer).
fn requests(
    cluster: &Cluster,
    from: &str,
    (address, port): (&str, u16),
    count: usize,
) -> Vec<Option<String>> {
    (1..=count)
        .map(|i| match cluster.tcp(from, address, port, TIMEOUT) {
            Ok(answer) => {
                println!(
                    "  {i}: answered by {} ({}), which saw client {}",
                    answer.server,
                    address_of(&answer.server),
                    answer.client
                );
                Some(answer.server)
            }
            Err(error) => {
                println!("  {i}: NO ANSWER: {error}");
                None
            }
        })
        .collect()
}

/// Three requests that must be answered by three different pods among
/// `pods`.
fn check_round_robin(
    checks: &mut Checks,
    cluster: &Cluster,
    (from, from_label): (&str, &str),
    target: (&str, u16),
    pods: &[&str],
) {
    heading(&format!(
        "curl {}:{} three times from {from_label}",
        target.0, target.1
    ));
    let answers = requests(cluster, from, target, 3);
    let distinct: BTreeSet<&str> = answers.iter().flatten().map(String::as_str).collect();
    let ok = answers.iter().all(|answer| {
        answer
            .as_deref()
            .is_some_and(|server| pods.contains(&server))
    }) && distinct.len() == 3;
    checks.record(
        ok,
        &format!(
            "{from_label} -> {}:{}: three different pods answered (round-robin)",
            target.0, target.1
        ),
    );
}

/// One request that must be answered by `server` (`None`: by any of the
/// external servers).
fn check_one(
    checks: &mut Checks,
    cluster: &Cluster,
    (from, from_label): (&str, &str),
    (target, target_label): ((&str, u16), &str),
    server: Option<&str>,
) {
    heading(&format!("curl {target_label} from {from_label}"));
    let answer = requests(cluster, from, target, 1).remove(0);
    let (ok, want) = match server {
        Some(server) => (
            answer.as_deref() == Some(server),
            format!("{server} ({})", address_of(server)),
        ),
        None => (
            answer
                .as_deref()
                .is_some_and(|got| got.starts_with("external-")),
            format!("one of the external servers {}", EXTERNAL.join(", ")),
        ),
    };
    checks.record(
        ok,
        &format!("{from_label} -> {target_label}: answered by {want}"),
    );
}

fn main() -> ExitCode {
    let started = Instant::now();
    let elapsed = || started.elapsed().as_secs_f64();
    println!("ipvs-agent demo: the Service document's examples on a two-node cluster");
    println!(
        "  node1 {}, node2 {}, a client outside the cluster {OUTSIDE_IP}; pods 10.244.1.0/24 on node1, 10.244.2.0/24 on node2",
        Node::One.ip(),
        Node::Two.ip()
    );

    let mut cluster = Cluster::create();
    let examples = copy_examples(&cluster);
    println!(
        "  manifests (copied from {}): {}",
        examples_dir().display(),
        examples.join(", ")
    );
    // The agents take tens of seconds to start under emulation: started
    // first, the pods are made meanwhile.
    let agent_args = ["--cluster-cidr", CLUSTER_CIDR];
    cluster.spawn_agents(&agent_args);
    println!(
        "  agents: ip netns exec nodeN ipvs-agent run --manifests DIR --node-name nodeN --node-ip IP {}",
        agent_args.join(" ")
    );

    for pod in PODS {
        cluster.add_pod(pod.node, pod.name, pod.address);
        for port in pod.ports {
            cluster.serve(pod.name, pod.name, Protocol::Tcp, *port);
        }
    }
    cluster.add_pod(Node::One, CLIENT_POD, CLIENT_POD_IP);
    // Pods outside their node's /24 (externalips.yaml's 10.244.3.10 on
    // node1): the other node and outside route them to their node.
    for pod in PODS {
        if !pod_in_node_cidr(pod) {
            ip_batch(
                Some(pod.node.other().name()),
                &[format!(
                    "route add {}/32 via {}",
                    pod.address,
                    pod.node.ip()
                )],
            );
            cluster.route_from_outside(pod.address, pod.node);
        }
    }
    // The selector-less Service's external servers: their addresses in
    // `outside`, routed there from both nodes.
    ip_batch(
        Some(OUTSIDE),
        &EXTERNAL
            .iter()
            .map(|address| format!("addr add {address}/32 dev lo"))
            .collect::<Vec<_>>(),
    );
    for node in Node::ALL {
        ip_batch(
            Some(node.name()),
            &[format!("route add {EXTERNAL_NET} via {OUTSIDE_IP}")],
        );
    }
    // externalips.yaml's external IP, routed from outside to node1 (the
    // pod's node).
    cluster.route_from_outside("198.51.100.32", Node::One);
    let _external_servers = start_external_servers();
    cluster.start_servers();
    cluster.wait_for_agents();
    println!(
        "  cluster up, pods serving, both agents synced after {:.0} s",
        elapsed()
    );

    heading("pods (name, address, node, ports served, example)");
    for pod in PODS {
        println!(
            "    {:<26} {:<12} {} {:<9} {}",
            pod.name,
            pod.address,
            pod.node,
            pod.ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
            pod.example
        );
    }
    println!(
        "    {CLIENT_POD:<26} {CLIENT_POD_IP:<12} node1 -         the client pod of the checks"
    );
    println!(
        "    external servers {} :{EXTERNAL_PORT} in the outside namespace (nginx-1-external.yaml)",
        EXTERNAL.join(", ")
    );

    for node in Node::ALL {
        show(node.name(), &["ipvsadm", "-Ln"]);
        show(node.name(), &["ip", "addr", "show", "kube-ipvs0"]);
    }
    show_nft_table(Node::One);

    heading("what the agents warned about (the examples conflict: both nodeport.yaml and nodeport-my-nginx.yaml claim nodePort 30000; the first by namespace/name, default/my-nginx, keeps it)");
    for agent in &cluster.agents {
        for line in agent.log_text().lines() {
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                println!("    {}: {}", agent.node, line.trim());
            }
        }
    }
    println!("    (headless.yaml and externalname.yaml are DNS only: no virtual server, no address on kube-ipvs0)");

    println!("\n######## the Service document's checks");
    let mut checks = Checks::default();
    let hostname_pods: Vec<&str> = PODS
        .iter()
        .filter(|pod| pod.example == "hostname.yaml")
        .map(|pod| pod.name)
        .collect();
    let from_pod = (
        CLIENT_POD,
        &*format!("pod {CLIENT_POD} ({CLIENT_POD_IP}, node1)"),
    );
    let from_node1 = (Node::One.name(), &*format!("node1 ({})", Node::One.ip()));
    let from_outside = (OUTSIDE, &*format!("outside ({OUTSIDE_IP})"));
    let hostname = ("10.1.115.75", 80);
    check_round_robin(&mut checks, &cluster, from_pod, hostname, &hostname_pods);
    check_round_robin(&mut checks, &cluster, from_node1, hostname, &hostname_pods);
    for node in Node::ALL {
        check_one(
            &mut checks,
            &cluster,
            from_outside,
            (
                (node.ip(), 30000),
                &format!("{node}:30000 ({}:30000)", node.ip()),
            ),
            Some("my-nginx-pod"),
        );
    }
    let selectorless = (
        ("172.20.226.170", 80),
        "172.20.226.170 (nginx-1, no selector)",
    );
    check_one(&mut checks, &cluster, from_pod, selectorless, None);
    check_one(&mut checks, &cluster, from_node1, selectorless, None);

    println!("\n######## the other examples");
    check_one(
        &mut checks,
        &cluster,
        from_outside,
        (
            (Node::Two.ip(), 31446),
            "node2:31446 (my-nginx's https nodePort)",
        ),
        Some("my-nginx-pod"),
    );
    check_one(
        &mut checks,
        &cluster,
        from_pod,
        (("10.1.246.166", 8080), "10.1.246.166:8080 (my-nginx)"),
        Some("my-nginx-pod"),
    );
    check_one(
        &mut checks,
        &cluster,
        from_pod,
        (
            ("10.1.46.104", 8080),
            "10.1.46.104:8080 (nginx, nodeport.yaml; its nodePort 30000 is my-nginx's)",
        ),
        Some("nginx-nodeport-pod"),
    );
    check_one(
        &mut checks,
        &cluster,
        from_pod,
        (
            ("172.20.173.132", 80),
            "172.20.173.132:80 (clusterip/nginx-1, port http)",
        ),
        Some("nginx-1-pod"),
    );
    check_one(
        &mut checks,
        &cluster,
        from_pod,
        (
            ("172.20.173.132", 443),
            "172.20.173.132:443 (clusterip/nginx-1, port https -> 9377)",
        ),
        Some("nginx-1-pod"),
    );
    check_one(
        &mut checks,
        &cluster,
        from_pod,
        (("10.1.200.10", 80), "10.1.200.10 (my-service)"),
        Some("my-service-pod"),
    );
    check_one(
        &mut checks,
        &cluster,
        from_outside,
        (
            ("198.51.100.32", 80),
            "198.51.100.32 (my-service's external IP, routed via node1)",
        ),
        Some("my-service-pod"),
    );

    heading("node1: ipvsadm -Ln --stats (after the checks)");
    print_indented(&String::from_utf8_lossy(
        &exec_in(Node::One.name(), &["ipvsadm", "-Ln", "--stats"]).stdout,
    ));

    println!(
        "\n######## {} passed, {} failed, in {:.0} s",
        checks.passed,
        checks.failed.len(),
        elapsed()
    );
    for what in &checks.failed {
        println!("  FAILED: {what}");
    }
    if checks.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("\n{}", cluster.describe());
        ExitCode::FAILURE
    }
}

/// Whether `pod`'s address is inside its node's pod /24 (the cluster
/// routes those; others need a route of their own).
fn pod_in_node_cidr(pod: &PodSpec) -> bool {
    let prefix = pod
        .node
        .pod_cidr()
        .strip_suffix("0/24")
        .expect("the nodes' pod CIDRs are /24s ending in .0");
    pod.address.starts_with(prefix)
}
