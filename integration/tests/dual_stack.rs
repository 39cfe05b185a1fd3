//! Dual-stack by default: the two-node cluster (`integration::cluster`)
//! with IPv6 on nodes and pods, the agents started without `--ip-family`:
//! node1's with both its addresses as `--node-ip`, node2's with its IPv4
//! address only and its Node object (in the manifests) listing both as
//! InternalIPs. Both agents choose both families themselves, and real
//! connections over IPv6 and IPv4 prove it:
//! a single-stack IPv6 ClusterIP from a pod and from a node, a dual-stack
//! Service on both its ClusterIPs, its NodePort over IPv6 from outside
//! through the node without the pod (masqueraded by the ip6 table), and
//! no IPv6 NodePort for a single-stack IPv4 Service.
//!
//! One cluster per test binary, shared, unchanged by the tests.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use integration::cluster::{
    exec_in, shared, Answer, Cluster, Node, Protocol, CLUSTER_CIDR, CLUSTER_CIDR6, OUTSIDE,
};

/// Per step (connect, each receive) of one request.
const TIMEOUT: Duration = Duration::from_secs(3);

const POD_A: &str = "pod-a";
const POD_A_IP: &str = "10.244.1.30";
const POD_A_IP6: &str = "fd10:1::30";
const POD_B: &str = "pod-b";

fn cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    shared(&CLUSTER, build)
}

fn build() -> Cluster {
    let mut cluster = Cluster::create();
    cluster.write_manifest("services.yaml", include_str!("dual_stack/services.yaml"));
    cluster.write_manifest("nodes.yaml", include_str!("dual_stack/nodes.yaml"));
    // The pod CIDRs of both families (the local-traffic detector); no
    // --ip-family. node1 is told both addresses, node2 its IPv4 one (its
    // Node object adds the IPv6 one).
    let cluster_cidrs = format!("{CLUSTER_CIDR},{CLUSTER_CIDR6}");
    let node_ip = |node: Node| match node {
        Node::One => format!("{},{}", node.ip(), node.ip6()),
        Node::Two => node.ip().to_owned(),
    };
    cluster.spawn_agents_with(node_ip, &["--cluster-cidr", &cluster_cidrs]);
    cluster.add_dual_stack_pod(Node::One, POD_A, POD_A_IP, POD_A_IP6);
    let pod_b = cluster.add_dual_stack_pod(Node::Two, POD_B, "10.244.2.30", "fd10:2::30");
    cluster.serve(&pod_b.name, &pod_b.name, Protocol::Tcp, 8080);
    cluster.start_servers();
    cluster.wait_for_agents();
    cluster
}

fn assert_answer(cluster: &Cluster, from: &str, (address, port): (&str, u16), want: Answer) {
    let target = match address.contains(':') {
        true => format!("[{address}]:{port}"),
        false => format!("{address}:{port}"),
    };
    match cluster.tcp(from, address, port, TIMEOUT) {
        Ok(answer) if answer == want => eprintln!("dual_stack: {from} -> {target}: {answer}"),
        Ok(answer) => panic!(
            "{from} -> {target}: answered by {answer}, expected {want}\n{}",
            cluster.describe()
        ),
        Err(error) => panic!(
            "{from} -> {target}: no answer ({error}), expected {want}\n{}",
            cluster.describe()
        ),
    }
}

/// Without `--ip-family`, on nodes with addresses of both families (from
/// `--node-ip` on node1, from its Node object on node2), each agent chose
/// both and said so once.
#[test]
fn agents_choose_both_families_without_the_flag() {
    let cluster = cluster();
    for agent in &cluster.agents {
        let log = agent.log_text();
        let chosen: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("IP families chosen"))
            .collect();
        assert_eq!(chosen.len(), 1, "{}: one choice logged:\n{log}", agent.node);
        assert!(
            chosen[0].contains("ip_family=dual"),
            "{}: {}",
            agent.node,
            chosen[0]
        );
        if agent.node == Node::Two {
            assert!(
                chosen[0].contains("node_object_addresses=[192.168.50.12, fd00::12]"),
                "node2 learnt its IPv6 address from its Node object: {}",
                chosen[0]
            );
        }
    }
}

/// A single-stack IPv6 ClusterIP answers over IPv6 from a pod (its own
/// address seen: pods are not masqueraded) and from a node (masqueraded to
/// the node's IPv6 address: its source was the VIP).
#[test]
fn ipv6_cluster_ip_from_a_pod_and_from_a_node() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        POD_A,
        ("fd00:96::10", 80),
        Answer::new(POD_B, POD_A_IP6),
    );
    assert_answer(
        &cluster,
        Node::One.name(),
        ("fd00:96::10", 80),
        Answer::new(POD_B, Node::One.ip6()),
    );
}

/// A dual-stack Service answers on both its ClusterIPs.
#[test]
fn dual_stack_service_answers_on_both_cluster_ips() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        POD_A,
        ("10.96.0.20", 80),
        Answer::new(POD_B, POD_A_IP),
    );
    assert_answer(
        &cluster,
        POD_A,
        ("fd00:96::20", 80),
        Answer::new(POD_B, POD_A_IP6),
    );
}

/// The dual-stack Service's NodePort answers over IPv6 on the node's IPv6
/// address from outside, through the node without the pod (masqueraded
/// there, so the reply comes back through it) and through the pod's node.
#[test]
fn ipv6_node_port_from_outside() {
    let cluster = cluster();
    assert_answer(
        &cluster,
        OUTSIDE,
        (Node::One.ip6(), 30020),
        Answer::new(POD_B, Node::One.ip6()),
    );
    let through_pods_node = cluster
        .tcp(OUTSIDE, Node::Two.ip6(), 30020, TIMEOUT)
        .unwrap_or_else(|error| panic!("[fd00::12]:30020: {error}\n{}", cluster.describe()));
    assert_eq!(through_pods_node.server, POD_B, "{through_pods_node}");
    eprintln!("dual_stack: outside -> [fd00::12]:30020: {through_pods_node}");
}

/// The single-stack IPv4 NodePort Service has virtual servers on the
/// nodes' IPv4 addresses only (`ipvsadm -Ln` in each node), answers there
/// and not on the IPv6 addresses; the dual-stack one has both.
#[test]
fn ipv4_only_node_port_has_no_ipv6_virtual_server() {
    let cluster = cluster();
    for node in Node::ALL {
        let output = exec_in(node.name(), &["ipvsadm", "-Ln"]);
        let table = String::from_utf8_lossy(&output.stdout);
        let v4 = format!("TCP  {}:30030", node.ip());
        let v6 = format!("[{}]:30030", node.ip6());
        assert!(table.contains(&v4), "{node}: {v4} in\n{table}");
        assert!(
            !table.lines().any(|line| line.contains("]:30030")),
            "{node}: no {v6} (nor any IPv6 :30030) in\n{table}"
        );
        let dual6 = format!("TCP  [{}]:30020", node.ip6());
        assert!(table.contains(&dual6), "{node}: {dual6} in\n{table}");
    }
    assert_answer(
        &cluster,
        OUTSIDE,
        (Node::One.ip(), 30030),
        Answer::new(POD_B, Node::One.ip()),
    );
    if let Ok(answer) = cluster.tcp(OUTSIDE, Node::One.ip6(), 30030, TIMEOUT) {
        panic!(
            "[{}]:30030 answered by {answer}: a single-stack IPv4 Service has no IPv6 NodePort",
            Node::One.ip6()
        );
    }
}
