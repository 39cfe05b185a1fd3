//! Two nodes, each a network namespace with its own agent, pods on both,
//! and a client outside the cluster (`integration::cluster`): real
//! connections from a pod, a node and outside through ClusterIPs,
//! NodePorts, external IPs and LoadBalancer IPs, each asserting which pod
//! answered and which client address it saw, as kube-proxy's IPVS mode
//! would make it (`../shared/docs/datapath.md`).
//!
//! One cluster is built per test binary and shared (a build takes about a
//! minute under emulation): no test changes it, so they are independent of
//! their order. The agents' extra flags are [`AGENT_ARGS`], or the
//! whitespace-separated `IPVS_TWO_NODE_AGENT_ARGS` when set (e.g.
//! `--netfilter false` to see which tests need the netfilter layer).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use integration::cluster::{
    shared, Answer, Cluster, Node, Protocol, CLUSTER_CIDR, OUTSIDE, OUTSIDE_IP,
};
use integration::example;

/// The agents' extra flags (both nodes).
const AGENT_ARGS: &[&str] = &["--cluster-cidr", CLUSTER_CIDR];

/// Per step (connect, each receive) of one request. Generous: the guest is
/// emulated.
const TIMEOUT: Duration = Duration::from_secs(3);

const NODE1: &str = "192.168.50.11";
const NODE2: &str = "192.168.50.12";
const CLIENT1: &str = "10.244.1.10";
const CLIENT2: &str = "10.244.2.10";

/// The shared cluster, built on first use.
fn cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    shared(&CLUSTER, build)
}

fn build() -> Cluster {
    let started = std::time::Instant::now();
    let phase = |what: &str| {
        eprintln!(
            "two_node: {what} after {:.1} s",
            started.elapsed().as_secs_f64()
        )
    };
    let mut cluster = Cluster::create();
    phase("nodes and outside");
    let hostname = std::fs::read_to_string(example("hostname.yaml")).expect("read hostname.yaml");
    cluster.write_manifest("hostname.yaml", &hostname);
    cluster.write_manifest("services.yaml", include_str!("two_node/services.yaml"));

    let from_env = std::env::var("IPVS_TWO_NODE_AGENT_ARGS").ok();
    let args: Vec<&str> = match &from_env {
        Some(text) => text.split_whitespace().collect(),
        None => AGENT_ARGS.to_vec(),
    };
    // The agents start (tens of seconds under emulation) while the pods
    // are made: the nodes' uplinks already exist, so kube-ipvs0 comes
    // after them.
    cluster.spawn_agents(&args);
    cluster.add_hostname_pods();
    let client1 = cluster.add_pod(Node::One, "client-1", CLIENT1);
    cluster.serve(&client1.name, &client1.name, Protocol::Tcp, 8080);
    cluster.add_pod(Node::Two, "client-2", CLIENT2);
    let web2 = cluster.add_pod(Node::Two, "web-2", "10.244.2.20");
    cluster.serve(&web2.name, &web2.name, Protocol::Tcp, 8080);
    cluster.serve(&web2.name, &web2.name, Protocol::Udp, 5353);
    cluster.serve(OUTSIDE, "outside", Protocol::Tcp, 9000);
    // A node daemon on every address of node1, port 9999.
    cluster.serve(Node::One.name(), "node1-daemon", Protocol::Tcp, 9999);
    phase("pods");
    cluster.start_servers();
    phase("servers listening");

    for address in ["203.0.113.10", "203.0.113.20"] {
        cluster.route_from_outside(address, Node::One);
    }
    for address in ["203.0.113.21", "203.0.113.22"] {
        cluster.route_from_outside(address, Node::Two);
    }
    cluster.wait_for_agents();
    eprintln!(
        "two_node: cluster built in {:.1} s, agents run with {args:?}",
        started.elapsed().as_secs_f64()
    );
    cluster
}

/// Asserts that `from` -> `address:port` over `protocol` is answered by
/// `server` seeing `client`.
fn assert_answer(
    cluster: &Cluster,
    from: &str,
    protocol: Protocol,
    (address, port): (&str, u16),
    (server, client): (&str, &str),
) {
    let got = match protocol {
        Protocol::Tcp => cluster.tcp(from, address, port, TIMEOUT),
        Protocol::Udp => cluster.udp(from, address, port, TIMEOUT),
    };
    let want = Answer::new(server, client);
    match got {
        Ok(answer) if answer == want => {}
        Ok(answer) => panic!(
            "{protocol:?} {from} -> {address}:{port}: answered by {answer}, expected {want}\n{}",
            cluster.describe()
        ),
        Err(error) => panic!(
            "{protocol:?} {from} -> {address}:{port}: no answer ({error}), expected {want}\n{}",
            cluster.describe()
        ),
    }
}

/// Asserts that `from` -> `address:port` (TCP) gets no answer.
fn assert_no_answer(cluster: &Cluster, from: &str, (address, port): (&str, u16)) {
    if let Ok(answer) = cluster.tcp(from, address, port, TIMEOUT) {
        panic!(
            "TCP {from} -> {address}:{port}: answered by {answer}, expected no answer\n{}",
            cluster.describe()
        );
    }
}

/// A pod reaches a ClusterIP whose pod is on its own node; no masquerade
/// (the pod sees the client pod's address).
#[test]
fn pod_to_cluster_ip_local_pod() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        "client-1",
        Protocol::Tcp,
        ("10.96.0.11", 80),
        ("hostname-1", CLIENT1),
    );
}

/// A pod reaches a ClusterIP whose pod is on the other node, both ways;
/// the pod sees the client pod's address.
#[test]
fn pod_to_cluster_ip_remote_pod() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        "client-1",
        Protocol::Tcp,
        ("10.96.0.12", 80),
        ("web-2", CLIENT1),
    );
    assert_answer(
        &cluster,
        "client-2",
        Protocol::Tcp,
        ("10.96.0.11", 80),
        ("hostname-1", CLIENT2),
    );
}

/// A pod reaching itself through its own Service (hairpin) is answered,
/// and sees the node's address (kube-proxy's KUBE-LOOP-BACK masquerade).
#[test]
fn pod_to_its_own_service_hairpin_is_masqueraded() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        "client-1",
        Protocol::Tcp,
        ("10.96.0.17", 80),
        ("client-1", NODE1),
    );
}

/// The hostname example from a pod: three requests, three different pods
/// (round-robin), none masqueraded.
#[test]
fn hostname_cluster_ip_round_robins_over_three_pods() {
    let cluster = cluster();
    let answers: Vec<Answer> = (0..3)
        .map(|_| {
            cluster
                .tcp("client-2", "10.1.115.75", 80, TIMEOUT)
                .unwrap_or_else(|e| panic!("the hostname ClusterIP answers: {e}"))
        })
        .collect();
    let servers: BTreeSet<&str> = answers.iter().map(|a| a.server.as_str()).collect();
    assert_eq!(
        servers,
        BTreeSet::from(["hostname-1", "hostname-2", "hostname-3"]),
        "round-robin over the three pods: {answers:?}"
    );
    assert!(
        answers.iter().all(|a| a.client == CLIENT2),
        "pods see the client pod: {answers:?}"
    );
}

/// A node reaches a ClusterIP whose pod is on the other node; the pod
/// sees the node's address (node-originated traffic is masqueraded).
#[test]
fn node_to_cluster_ip_remote_pod_is_masqueraded() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        Node::One.name(),
        Protocol::Tcp,
        ("10.96.0.12", 80),
        ("web-2", NODE1),
    );
}

/// node2 reaches node1's NodePorts: for a pod on node1 and for a pod on
/// node2 itself; both see node1's address (NodePorts are masqueraded).
#[test]
fn node_to_node_port_of_the_other_node() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        Node::Two.name(),
        Protocol::Tcp,
        (NODE1, 30011),
        ("hostname-1", NODE1),
    );
    assert_answer(
        &cluster,
        Node::Two.name(),
        Protocol::Tcp,
        (NODE1, 30080),
        ("web-2", NODE1),
    );
}

/// Outside -> NodePort on the node that runs the pod: answered; with
/// `externalTrafficPolicy: Cluster` masqueraded to the node's address.
#[test]
fn outside_to_node_port_on_the_node_with_the_pod() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        OUTSIDE,
        Protocol::Tcp,
        (NODE2, 30080),
        ("web-2", NODE2),
    );
}

/// Outside -> NodePort on a node without the pod: answered through the
/// receiving node, whose address the pod sees.
#[test]
fn outside_to_node_port_on_a_node_without_the_pod() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        OUTSIDE,
        Protocol::Tcp,
        (NODE1, 30080),
        ("web-2", NODE1),
    );
}

/// `externalTrafficPolicy: Local` on the node with the pod: the pod sees
/// the outside client's own address.
#[test]
fn local_traffic_policy_keeps_the_client_address() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        OUTSIDE,
        Protocol::Tcp,
        (NODE2, 30081),
        ("web-2", OUTSIDE_IP),
    );
}

/// `externalTrafficPolicy: Local` on a node without a local endpoint: no
/// answer (the same Service answers on node2: see the test above). The
/// NodePort does get the cluster's endpoints (kube-proxy's IPVS fallback,
/// for this node's own pods), but an outside client's traffic is not
/// masqueraded, so the pod's reply leaves node2 from the pod's address and
/// the client drops it.
#[test]
fn local_traffic_policy_no_answer_without_a_local_endpoint() {
    let cluster = cluster();
    assert_no_answer(&cluster, OUTSIDE, (NODE1, 30081));
}

/// An external IP routed from outside to a node without the pod: answered,
/// masqueraded to the receiving node's address.
#[test]
fn external_ip_through_a_node_without_the_pod() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        OUTSIDE,
        Protocol::Tcp,
        ("203.0.113.10", 80),
        ("web-2", NODE1),
    );
}

/// A LoadBalancer ingress IP routed from outside to a node without the
/// pod: answered, masqueraded to the receiving node's address.
#[test]
fn load_balancer_ip_through_a_node_without_the_pod() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        OUTSIDE,
        Protocol::Tcp,
        ("203.0.113.20", 80),
        ("web-2", NODE1),
    );
}

/// `loadBalancerSourceRanges` holding the outside client: answered (routed
/// to the pod's node; masqueraded, eTP Cluster).
#[test]
fn load_balancer_source_range_allows_the_client() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        OUTSIDE,
        Protocol::Tcp,
        ("203.0.113.21", 80),
        ("web-2", NODE2),
    );
}

/// `loadBalancerSourceRanges` not holding the outside client: no answer on
/// the LB IP, though the same Service's NodePort on the same node answers
/// the same client (source ranges guard the LB IP only; who it saw is the
/// NodePort tests' business).
#[test]
fn load_balancer_source_range_denies_other_clients() {
    let cluster = cluster();
    assert_no_answer(&cluster, OUTSIDE, ("203.0.113.22", 80));
    let answer = cluster
        .tcp(OUTSIDE, NODE2, 30083, TIMEOUT)
        .unwrap_or_else(|e| panic!("the NodePort of ranges-denied answers: {e}"));
    assert_eq!(answer.server, "web-2", "{answer}");
}

/// A node daemon on 0.0.0.0:9999 answers on node1's own address, but not
/// on node1's Service addresses (an external IP, a ClusterIP) at that
/// port: the VIP filter (kubernetes#72236).
#[test]
fn non_service_port_on_a_vip_is_refused() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        OUTSIDE,
        Protocol::Tcp,
        (NODE1, 9999),
        ("node1-daemon", OUTSIDE_IP),
    );
    assert_answer(
        &cluster,
        "client-1",
        Protocol::Tcp,
        (NODE1, 9999),
        ("node1-daemon", CLIENT1),
    );
    assert_no_answer(&cluster, OUTSIDE, ("203.0.113.10", 9999));
    assert_no_answer(&cluster, "client-1", ("10.96.0.11", 9999));
}

/// UDP from a pod on node1 to a ClusterIP whose pod is on node2.
#[test]
fn udp_across_nodes() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        "client-1",
        Protocol::Udp,
        ("10.96.0.13", 53),
        ("web-2", CLIENT1),
    );
}

/// A selector-less Service whose legacy Endpoints are outside the
/// cluster, from a pod: the server sees the pod (pod traffic is not
/// masqueraded; `outside` routes the pod /24s).
#[test]
fn selectorless_service_outside_the_cluster_from_a_pod() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        "client-2",
        Protocol::Tcp,
        ("10.96.0.18", 80),
        ("outside", CLIENT2),
    );
}

/// The same from a node: the server sees the node's address (masquerade;
/// without it the source would be the ClusterIP).
#[test]
fn selectorless_service_outside_the_cluster_from_a_node() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        Node::Two.name(),
        Protocol::Tcp,
        ("10.96.0.18", 80),
        ("outside", NODE2),
    );
}

/// The restart test's client loop: at most this many connections, ...
const RESTART_LOOP_MAX: usize = 400;
/// ... none started after this long, ...
const RESTART_LOOP_DEADLINE: Duration = Duration::from_secs(180);
/// ... this pause between two, ...
const RESTART_LOOP_PAUSE: Duration = Duration::from_millis(200);
/// ... this one while the restarted agent starts and makes its first
/// sync (about 7 s under emulation, ~20 connections a second back to
/// back: dense where a gap would be, and room for a slower start) ...
const RESTART_LOOP_FLUX_PAUSE: Duration = Duration::from_millis(20);
/// ... and going on this long after that first sync.
const RESTART_LOOP_AFTER: Duration = Duration::from_secs(3);

/// When the restart's steps happened, for the assertions.
struct Restart {
    stop_sent: std::time::Instant,
    stopped_cleanly: bool,
    spawned: std::time::Instant,
    first_sync: Option<(std::time::Instant, String)>,
    /// The restarted agent's log (its part of the node's log file).
    log: String,
}

/// The fields of a `synced` log line (`key=value` after ` synced`).
fn sync_fields(line: &str) -> std::collections::BTreeMap<String, String> {
    let at = line
        .find(" synced")
        .map(|at| at + " synced".len())
        .unwrap_or(0);
    line[at..]
        .split_whitespace()
        .filter_map(|token| token.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.trim_matches('"').to_owned()))
        .collect()
}

/// Stops `agent` (SIGTERM, as a rolling update does) and starts node1's
/// agent again in its place ([`NodeAgent::respawn`]: same flags, same
/// manifests, its log appended to the same file, so that
/// `NodeAgent::sync_count` and the cluster's failure messages go on
/// working); waits (bounded) for the new agent's first sync. `in_flux` is
/// set while the new agent starts and syncs.
///
/// [`NodeAgent::respawn`]: integration::cluster::NodeAgent::respawn
fn restart_agent(
    agent: &mut integration::cluster::NodeAgent,
    in_flux: &std::sync::atomic::AtomicBool,
) -> Restart {
    use std::sync::atomic::Ordering;
    use std::time::Instant;
    let stop_sent = Instant::now();
    let stopped_cleanly = agent.stop();
    // A moment with no agent at all on node1.
    std::thread::sleep(Duration::from_secs(1));
    in_flux.store(true, Ordering::SeqCst);
    let spawned = Instant::now();
    let offset = agent.respawn();
    let log = agent.log.clone();
    let restarted_log = || {
        let text = std::fs::read(&log).unwrap_or_default();
        String::from_utf8_lossy(text.get(offset..).unwrap_or_default()).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let first_sync = loop {
        if let Some(line) = restarted_log()
            .lines()
            .find(|line| line.contains(" synced"))
        {
            break Some((Instant::now(), line.to_owned()));
        }
        if !agent.is_running() || Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    in_flux.store(false, Ordering::SeqCst);
    Restart {
        stop_sent,
        stopped_cleanly,
        spawned,
        first_sync,
        log: restarted_log(),
    }
}

/// node1's agent is stopped and started again under a bounded loop of
/// connections from node1 itself to a ClusterIP whose only pod is on
/// node2 (`two`, 10.96.0.12 -> web-2): the node's own traffic needs the
/// agent's masquerade (without it the source is the VIP and the reply
/// never comes back), so a moment without the rules would fail a
/// connection. None fails: the stopped agent leaves the kernel's tables
/// as they are, and the restarted one, which knows nothing of the rules
/// it finds, writes them again (`nft_rules_written=1`) in one
/// flush-and-add transaction, no gap. The cluster is left as it was:
/// node1's agent running again and synced.
#[test]
fn agent_restart_under_a_client_loop_drops_no_connection() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;
    let mut cluster = cluster();
    let target = ("10.96.0.12", 80);
    assert_answer(
        &cluster,
        Node::One.name(),
        Protocol::Tcp,
        target,
        ("web-2", NODE1),
    );
    let mut agents = std::mem::take(&mut cluster.agents);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cluster: &Cluster = &cluster;
        let node1 = agents
            .iter_mut()
            .find(|agent| agent.node == Node::One)
            .expect("node1 has an agent");
        let done = AtomicBool::new(false);
        let in_flux = AtomicBool::new(false);
        let started = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let client_loop = scope.spawn(|| {
                let deadline = Instant::now() + RESTART_LOOP_DEADLINE;
                let mut results = Vec::new();
                while !done.load(Ordering::SeqCst)
                    && results.len() < RESTART_LOOP_MAX
                    && Instant::now() < deadline
                {
                    let at = Instant::now();
                    let answer = cluster.tcp(Node::One.name(), target.0, target.1, TIMEOUT);
                    results.push((at, answer));
                    if results.len() >= 5 {
                        started.store(true, Ordering::SeqCst);
                    }
                    std::thread::sleep(if in_flux.load(Ordering::SeqCst) {
                        RESTART_LOOP_FLUX_PAUSE
                    } else {
                        RESTART_LOOP_PAUSE
                    });
                }
                results
            });
            // Ends the loop however the restart goes (a panic included).
            struct Done<'a>(&'a AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            let restart = {
                let _done = Done(&done);
                let wait_until = Instant::now() + Duration::from_secs(30);
                while !started.load(Ordering::SeqCst) && Instant::now() < wait_until {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let restart = restart_agent(node1, &in_flux);
                std::thread::sleep(RESTART_LOOP_AFTER);
                restart
            };
            let results = client_loop.join().expect("the client loop panicked");
            (restart, results)
        })
    }));
    // Back in the shared cluster whatever happened.
    cluster.agents = agents;
    let (restart, results) = outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let Some((synced_at, first_sync)) = &restart.first_sync else {
        panic!(
            "node1's restarted agent made no sync within 90 s; its log:\n{}",
            restart.log
        );
    };
    assert!(
        restart.stopped_cleanly,
        "node1's agent did not exit cleanly on SIGTERM"
    );
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(at, answer)| match answer {
            Ok(answer) if *answer == Answer::new("web-2", NODE1) => None,
            Ok(answer) => Some(format!(
                "at +{:.2} s: answered by {answer}, expected web-2 seeing {NODE1}",
                at.duration_since(restart.stop_sent).as_secs_f64()
            )),
            Err(error) => Some(format!(
                "at +{:.2} s: {error}",
                at.duration_since(restart.stop_sent).as_secs_f64()
            )),
        })
        .collect();
    let since_stop = |at: Instant| {
        if at >= restart.stop_sent {
            format!(
                "+{:.2} s",
                at.duration_since(restart.stop_sent).as_secs_f64()
            )
        } else {
            format!(
                "-{:.2} s",
                restart.stop_sent.duration_since(at).as_secs_f64()
            )
        }
    };
    let summary = format!(
        "{} connections from node1 to {}:{}, {} failed; first {}, last {} (times since the SIGTERM; \
         agent started again at {}, its first sync logged by {}); first sync: {first_sync}",
        results.len(),
        target.0,
        target.1,
        failed.len(),
        since_stop(results.first().map(|(at, _)| *at).unwrap_or(restart.stop_sent)),
        since_stop(results.last().map(|(at, _)| *at).unwrap_or(restart.stop_sent)),
        since_stop(restart.spawned),
        since_stop(*synced_at),
    );
    eprintln!("two_node restart: {summary}");
    assert!(
        failed.is_empty(),
        "{summary}\nfailed:\n{}\n{}",
        failed.join("\n"),
        cluster.describe()
    );
    let (first_at, last_at) = (results[0].0, results[results.len() - 1].0);
    assert!(
        first_at < restart.stop_sent && last_at > *synced_at,
        "the loop must span the restart: {summary}"
    );
    let fields = sync_fields(first_sync);
    assert_eq!(
        fields.get("nft_rules_written").map(String::as_str),
        Some("1"),
        "the restarted agent's first sync rewrites its rules (one family): {first_sync}"
    );
    // Still synced and answering afterwards.
    assert_answer(
        &cluster,
        Node::One.name(),
        Protocol::Tcp,
        target,
        ("web-2", NODE1),
    );
}

/// A LoadBalancer Service with `externalTrafficPolicy: Local` and a
/// `healthCheckNodePort` (32140), its one endpoint on `on`: the manifest.
fn health_checked_service(endpoint: (&str, Node)) -> String {
    let (address, node) = endpoint;
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: checked, namespace: default}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: 32140
  selector: {{app: checked}}
  clusterIP: 10.96.0.40
  ports:
  - {{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30140}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: checked-x1y2z
  namespace: default
  labels: {{kubernetes.io/service-name: checked}}
addressType: IPv4
ports:
- {{name: http, protocol: TCP, port: 8080}}
endpoints:
- addresses: [\"{address}\"]
  conditions: {{ready: true}}
  nodeName: {}
",
        node.name()
    )
}

/// `curl -i http://NODE:32140/any/path` from outside: (status, the
/// endpoint-weight header, the parsed body).
fn health_check_from_outside(node_ip: &str) -> (u16, String, serde_json::Value) {
    let url = format!("http://{node_ip}:32140/any/path");
    let text =
        integration::cluster::run_in(OUTSIDE, &["curl", "-s", "-i", "--max-time", "5", &url]);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer from {url}: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status from {url}: {head}"));
    let header = |name: &str| {
        head.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), "application/json", "{head}");
    assert_eq!(header("x-content-type-options"), "nosniff", "{head}");
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{url}: {e}: {body:?}"));
    (status, header("x-load-balancing-endpoint-weight"), body)
}

/// Asserts what both nodes' health-check ports answer from outside, as
/// kube-proxy's: 200 with `localEndpoints: 1` on `with`, 503 with 0 on
/// the other.
fn assert_health_checks(cluster: &Cluster, with: Node) {
    for node in Node::ALL {
        let (status, weight, body) = health_check_from_outside(node.ip());
        let local = usize::from(node == with);
        let expected_status = if local == 1 { 200 } else { 503 };
        assert_eq!(
            (status, weight.as_str()),
            (expected_status, local.to_string().as_str()),
            "health check of {node} (endpoint on {with}): {body}\n{}",
            cluster.agent_logs()
        );
        assert_eq!(body["localEndpoints"], local, "{node}: {body}");
        assert_eq!(body["serviceProxyHealthy"], true, "{node}: {body}");
        assert_eq!(body["service"]["namespace"], "default", "{body}");
        assert_eq!(body["service"]["name"], "checked", "{body}");
    }
}

/// The `healthCheckNodePort` of an eTP Local LoadBalancer Service, read
/// by curl from outside as a cloud load balancer would: 200/1 on the node
/// with the endpoint, 503/0 on the other; when the endpoint moves, both
/// answers change with the one sync that follows; when the Service goes,
/// the port closes.
#[test]
fn health_check_node_port_follows_the_local_endpoint() {
    let mut cluster = cluster();
    cluster.write_manifest(
        "health-check.yaml",
        &health_checked_service(("10.244.2.20", Node::Two)),
    );
    let wait_one_sync = |cluster: &mut Cluster, before: &[usize]| {
        for (agent, before) in cluster.agents.iter_mut().zip(before) {
            agent.wait_for_syncs(before + 1, Duration::from_secs(60));
        }
    };
    let counts = |cluster: &Cluster| -> Vec<usize> {
        cluster
            .agents
            .iter()
            .map(|agent| agent.sync_count())
            .collect()
    };
    // The first answer may need the sync of the new file.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while exec_status(OUTSIDE, &format!("http://{NODE2}:32140/")) != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "node2's health-check port never answered 200\n{}",
            cluster.agent_logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_health_checks(&cluster, Node::Two);

    // The endpoint moves to node1 (client-1's server): one sync each.
    let before = counts(&cluster);
    cluster.write_manifest(
        "health-check.yaml",
        &health_checked_service(("10.244.1.10", Node::One)),
    );
    wait_one_sync(&mut cluster, &before);
    assert_health_checks(&cluster, Node::One);

    // The Service goes: so does its port, on both nodes.
    let before = counts(&cluster);
    std::fs::remove_file(cluster.manifests().join("health-check.yaml"))
        .expect("remove the manifest");
    wait_one_sync(&mut cluster, &before);
    for node in Node::ALL {
        assert_eq!(
            exec_status(OUTSIDE, &format!("http://{}:32140/", node.ip())),
            None,
            "{node}'s health-check port is closed with its Service"
        );
    }
}

/// The HTTP status `curl` gets from `url` in `ns` (`None`: no answer).
fn exec_status(ns: &str, url: &str) -> Option<u16> {
    let output = integration::cluster::exec_in(
        ns,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
            url,
        ],
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|code| *code != 0)
}
