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

use integration::cluster::{Answer, Cluster, Node, Protocol, CLUSTER_CIDR, OUTSIDE, OUTSIDE_IP};
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
    CLUSTER
        .get_or_init(|| Mutex::new(build()))
        .lock()
        // A failed test panics while holding the lock; the cluster is
        // unchanged by tests, so the next one may use it.
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    for (node, name, address) in [
        (Node::One, "hostname-1", "10.244.1.54"),
        (Node::One, "hostname-2", "10.244.1.55"),
        (Node::Two, "hostname-3", "10.244.2.53"),
    ] {
        let pod = cluster.add_pod(node, name, address);
        cluster.serve(&pod.name, &pod.name, Protocol::Tcp, 9376);
    }
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
/// answer (the same Service answers on node2: see the test above).
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
