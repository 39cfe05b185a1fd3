//! Taking a node over from kube-proxy's IPVS mode, in the guest: the agent
//! removes kube-proxy's leftover iptables chains, jumps and ipsets (in both
//! iptables backends and both families) once it carries the traffic, and
//! leaves kubelet's and every other tool's alone; traffic to a ClusterIP
//! never fails on the way.
//!
//! The leftovers are loaded with Debian's `iptables-restore` and `ipset
//! restore`, shaped as kube-proxy writes them (`pkg/proxy/ipvs/proxier.go`
//! `writeIptablesRules`, `createAndLinkKubeChain`; iptables mode for the
//! older ones), with kubelet's chains and foreign ones beside them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use integration::agent::Agent;
use integration::example;
use integration::iptables::{
    chains, ipset_names, ipset_restore, reset_netfilter, restore, save, state_lines, Backend,
    NetfilterReset, BACKENDS, LEGACY_V4, NFT_V4, NFT_V6,
};
use integration::node::{fresh_node, wait_until, NODE_ARGS};
use integration::pods::{hostname_pods, run, Pod};

/// The first sync took 41 s in an emulated guest (its first nftables transaction).
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after its first sync the agent may take to remove them.
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// kube-proxy's sets on a node with the hostname Service (10.1.115.75:80
/// -> three pods on 9376), as `ipset save` prints them; the IPv6 twins
/// carry kube-proxy's `KUBE-6-` names (one cut to 31 characters).
const KUBE_PROXY_SETS: &str = "\
create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536
add KUBE-CLUSTER-IP 10.1.115.75,tcp:80
create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536
add KUBE-LOOP-BACK 10.244.1.54,tcp:9376,10.244.1.54
add KUBE-LOOP-BACK 10.244.1.55,tcp:9376,10.244.1.55
add KUBE-LOOP-BACK 10.244.2.53,tcp:9376,10.244.2.53
create KUBE-EXTERNAL-IP hash:ip,port family inet hashsize 1024 maxelem 65536
create KUBE-EXTERNAL-IP-LOCAL hash:ip,port family inet hashsize 1024 maxelem 65536
create KUBE-LOAD-BALANCER hash:ip,port family inet hashsize 1024 maxelem 65536
create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
create KUBE-HEALTH-CHECK-NODE-PORT bitmap:port range 0-65535
create KUBE-IPVS-IPS hash:ip family inet hashsize 1024 maxelem 65536
add KUBE-IPVS-IPS 10.1.115.75
create KUBE-6-CLUSTER-IP hash:ip,port family inet6 hashsize 1024 maxelem 65536
create KUBE-6-LOAD-BALANCER-SOURCE-CID hash:ip,port,net family inet6 hashsize 1024 maxelem 65536
";

/// Sets that are not kube-proxy's: one a foreign rule matches, one that
/// only looks like kube-proxy's.
const FOREIGN_SETS: &str = "\
create cni-allowed hash:ip family inet hashsize 1024 maxelem 65536
add cni-allowed 10.244.9.9
create KUBE-ROUTER-SERVICES hash:ip family inet hashsize 1024 maxelem 65536
";

/// IPv4, iptables-legacy: kube-proxy's IPVS mode for the hostname Service
/// (cluster CIDR 10.244.0.0/16), kubelet's chains, and a CNI chain.
const LEGACY_V4_RULES: &str = r#"*mangle
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
*nat
:CNI-HOSTPORT-DNAT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-DROP - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A CNI-HOSTPORT-DNAT -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.244.9.9:80
-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ
-A KUBE-MARK-DROP -j MARK --or-mark 0x8000
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
-A KUBE-SERVICES ! -s 10.244.0.0/16 -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
COMMIT
*filter
:CNI-FORWARD - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-IPVS-FILTER - [0:0]
:KUBE-IPVS-OUT-FILTER - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SOURCE-RANGES-FIREWALL - [0:0]
-A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER
-A INPUT -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check rules" -j KUBE-NODE-PORT
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD
-A OUTPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-OUT-FILTER
-A OUTPUT -j KUBE-FIREWALL
-A CNI-FORWARD -m set --match-set cni-allowed src -j ACCEPT
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j RETURN
-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT
-A KUBE-NODE-PORT -m comment --comment "Kubernetes health check node port" -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT
-A KUBE-SOURCE-RANGES-FIREWALL -j DROP
COMMIT
"#;

/// IPv4, iptables-nft: what iptables mode left before the switch to IPVS
/// (a Service since deleted, 10.1.46.104:8080), kubelet's firewall chain,
/// and Docker's chains.
const NFT_V4_RULES: &str = r#"*mangle
:KUBE-PROXY-CANARY - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
*nat
:DOCKER - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-SEP-IT2ZTR26TO4XFPTO - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]
:KUBE-EXT-NPX46M4PTMTKRN6Y - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A DOCKER -i docker0 -j RETURN
-A KUBE-EXT-NPX46M4PTMTKRN6Y -j KUBE-MARK-MASQ
-A KUBE-EXT-NPX46M4PTMTKRN6Y -j KUBE-SVC-NPX46M4PTMTKRN6Y
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/nginx" -m tcp --dport 30000 -j KUBE-EXT-NPX46M4PTMTKRN6Y
-A KUBE-SEP-IT2ZTR26TO4XFPTO -s 10.244.1.20/32 -m comment --comment "default/nginx" -j KUBE-MARK-MASQ
-A KUBE-SEP-IT2ZTR26TO4XFPTO -p tcp -m comment --comment "default/nginx" -m tcp -j DNAT --to-destination 10.244.1.20:80
-A KUBE-SERVICES -d 10.1.46.104/32 -p tcp -m comment --comment "default/nginx cluster IP" -m tcp --dport 8080 -j KUBE-SVC-NPX46M4PTMTKRN6Y
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-NPX46M4PTMTKRN6Y -m comment --comment "default/nginx -> 10.244.1.20:80" -j KUBE-SEP-IT2ZTR26TO4XFPTO
COMMIT
*filter
:DOCKER - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -o docker0 -j DOCKER
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j KUBE-FIREWALL
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-SERVICES -d 10.1.46.99/32 -p tcp -m comment --comment "default/gone has no endpoints" -m tcp --dport 80 -j REJECT
COMMIT
"#;

/// IPv6, ip6tables-nft: kube-proxy's IPVS mode (IPv6 sets), kubelet's
/// canary and a CNI chain.
const NFT_V6_RULES: &str = r#"*nat
:CNI-V6 - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s fd00:10:244::/48 -j CNI-V6
-A CNI-V6 -j RETURN
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES -s ::1/128 -j RETURN
-A KUBE-SERVICES ! -s fd00:10:244::/48 -m set --match-set KUBE-6-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
COMMIT
*filter
:KUBE-IPVS-FILTER - [0:0]
:KUBE-SOURCE-RANGES-FIREWALL - [0:0]
-A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER
-A KUBE-IPVS-FILTER -m set --match-set KUBE-6-CLUSTER-IP dst,dst -j RETURN
-A KUBE-SOURCE-RANGES-FIREWALL -m set --match-set KUBE-6-LOAD-BALANCER-SOURCE-CID dst,dst,src -j RETURN
-A KUBE-SOURCE-RANGES-FIREWALL -j DROP
COMMIT
"#;

/// kube-proxy's chains in the fixtures above, by table: what must go.
const KUBE_PROXY_CHAINS: [(&str, &[&str]); 3] = [
    (
        "nat",
        &[
            "KUBE-SERVICES",
            "KUBE-POSTROUTING",
            "KUBE-MARK-MASQ",
            "KUBE-NODE-PORT",
            "KUBE-LOAD-BALANCER",
            "KUBE-NODEPORTS",
            "KUBE-PROXY-CANARY",
            "KUBE-SEP-IT2ZTR26TO4XFPTO",
            "KUBE-SVC-NPX46M4PTMTKRN6Y",
            "KUBE-EXT-NPX46M4PTMTKRN6Y",
        ],
    ),
    (
        "filter",
        &[
            "KUBE-FORWARD",
            "KUBE-IPVS-FILTER",
            "KUBE-IPVS-OUT-FILTER",
            "KUBE-NODE-PORT",
            "KUBE-PROXY-FIREWALL",
            "KUBE-SOURCE-RANGES-FIREWALL",
            "KUBE-EXTERNAL-SERVICES",
            "KUBE-SERVICES",
            "KUBE-PROXY-CANARY",
        ],
    ),
    ("mangle", &["KUBE-PROXY-CANARY"]),
];

/// The `KUBE-*` chains that must stay (kubelet's), per backend and table.
fn kubelet_chains(backend: Backend, table: &str) -> BTreeSet<String> {
    let names: &[&str] = match (backend, table) {
        (LEGACY_V4, "mangle") => &["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"],
        (LEGACY_V4, "nat") => &["KUBE-KUBELET-CANARY", "KUBE-MARK-DROP"],
        (LEGACY_V4, "filter") => &["KUBE-FIREWALL", "KUBE-KUBELET-CANARY"],
        (NFT_V4, "mangle") => &["KUBE-KUBELET-CANARY"],
        (NFT_V4, "filter") => &["KUBE-FIREWALL"],
        (NFT_V6, "nat") => &["KUBE-KUBELET-CANARY"],
        _ => &[],
    };
    names.iter().map(|name| name.to_string()).collect()
}

fn is_kube_proxy_chain(table: &str, chain: &str) -> bool {
    KUBE_PROXY_CHAINS
        .iter()
        .any(|(t, chains)| *t == table && chains.contains(&chain))
}

/// Whether a [`state_lines`] line is kube-proxy's: its chain, a rule in
/// it, or a jump to it.
fn is_kube_proxy_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let table = words.next().unwrap_or("");
    let rest: Vec<&str> = words.collect();
    if let Some(chain) = rest.first().and_then(|w| w.strip_prefix(':')) {
        return is_kube_proxy_chain(table, chain);
    }
    let in_chain = rest.get(1).is_some_and(|c| is_kube_proxy_chain(table, c));
    let jumps = rest
        .windows(2)
        .any(|w| matches!(w[0], "-j" | "-g") && is_kube_proxy_chain(table, w[1]));
    in_chain || jumps
}

/// Loads every fixture; returns each backend's save before the agent.
fn load_leftovers() -> Vec<(Backend, String)> {
    reset_netfilter();
    ipset_restore(&format!("{KUBE_PROXY_SETS}{FOREIGN_SETS}"));
    restore(LEGACY_V4, LEGACY_V4_RULES);
    restore(NFT_V4, NFT_V4_RULES);
    restore(NFT_V6, NFT_V6_RULES);
    let saves: Vec<(Backend, String)> = BACKENDS.iter().map(|b| (*b, save(*b))).collect();
    // The fixtures really are loaded: kube-proxy's chains are there in each
    // backend written, and its sets.
    for (backend, saved) in &saves {
        let kube_proxy = state_lines(saved)
            .into_iter()
            .filter(|line| is_kube_proxy_line(line))
            .count();
        let expected_some = *backend != integration::iptables::LEGACY_V6;
        assert_eq!(
            kube_proxy > 0,
            expected_some,
            "{}: kube-proxy's lines before the agent:\n{saved}",
            backend.0
        );
    }
    assert!(ipset_names().contains("KUBE-6-LOAD-BALANCER-SOURCE-CID"));
    saves
}

/// Whether any kube-proxy line is left in any backend, or a kube-proxy set.
fn leftovers_remaining() -> Vec<String> {
    let mut left: Vec<String> = BACKENDS
        .iter()
        .flat_map(|backend| {
            state_lines(&save(*backend))
                .into_iter()
                .filter(|line| is_kube_proxy_line(line))
                .map(move |line| format!("{}: {line}", backend.0))
        })
        .collect();
    left.extend(
        ipset_names()
            .into_iter()
            .filter(|name| name.starts_with("KUBE-") && name != "KUBE-ROUTER-SERVICES")
            .map(|name| format!("ipset {name}")),
    );
    left
}

/// Everything not kube-proxy's is exactly as before; kubelet's chains and
/// the foreign sets are there.
fn assert_only_kube_proxys_removed(before: &[(Backend, String)]) {
    for (backend, saved) in before {
        let after = save(*backend);
        let expected: BTreeSet<String> = state_lines(saved)
            .into_iter()
            .filter(|line| !is_kube_proxy_line(line))
            .collect();
        assert_eq!(
            state_lines(&after),
            expected,
            "{}: everything but kube-proxy's stays, unchanged",
            backend.0
        );
        for table in ["nat", "filter", "mangle"] {
            let kube: BTreeSet<String> = chains(&after, table)
                .into_iter()
                .filter(|chain| chain.starts_with("KUBE-"))
                .collect();
            assert_eq!(
                kube,
                kubelet_chains(*backend, table),
                "{} {table}",
                backend.0
            );
        }
    }
    assert_eq!(
        ipset_names(),
        BTreeSet::from(["KUBE-ROUTER-SERVICES".to_owned(), "cni-allowed".to_owned()]),
        "only the foreign sets stay"
    );
}

fn start_agent(manifests: &Path) -> Agent {
    let mut args = vec!["run".to_owned(), "--manifests".to_owned()];
    args.push(manifests.display().to_string());
    args.extend(NODE_ARGS.map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Agent::start(&refs)
}

fn wait_for_removal(agent: &Agent) {
    wait_until(
        "the agent to remove kube-proxy's leftovers",
        REMOVAL_TIMEOUT,
        || leftovers_remaining().is_empty().then_some(()),
        || {
            format!(
                "left:\n{}\nagent log:\n{}",
                leftovers_remaining().join("\n"),
                agent.log_text()
            )
        },
    );
}

/// After its first sync the agent removes kube-proxy's chains, jumps and
/// sets from iptables-legacy, iptables-nft and ip6tables-nft, and leaves
/// kubelet's chains, Docker's and CNI chains and rules and the foreign
/// sets exactly as they were.
#[test]
fn kube_proxys_leftovers_and_only_those_are_removed() {
    fresh_node();
    let _reset = NetfilterReset;
    let before = load_leftovers();
    let mut agent = start_agent(&example("hostname.yaml"));
    agent.wait_for_syncs(1, SYNC_TIMEOUT);
    wait_for_removal(&agent);
    assert_only_kube_proxys_removed(&before);
    agent.stop();
}

/// The client loop a pod runs: `count` HTTP GETs to `address:port`, one
/// every `interval` seconds, each with its own timeout; prints one line
/// per failure and `ok=N failed=M` at the end.
const CLIENT_LOOP: &str = r#"
import socket, sys, time
address, port, count, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ok = failed = 0
for i in range(count):
    started = time.time()
    try:
        s = socket.create_connection((address, port), timeout=5)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        if b"hostname-" in data:
            ok += 1
        else:
            failed += 1
            print("request %d: answer %r" % (i, data), flush=True)
    except Exception as e:
        failed += 1
        print("request %d: %s" % (i, e), flush=True)
    time.sleep(max(0.0, interval - (time.time() - started)))
print("ok=%d failed=%d" % (ok, failed), flush=True)
"#;

/// The migration under load: the node as kube-proxy left it (its IPVS
/// virtual server, `kube-ipvs0`, its rules and sets), a client pod sending
/// 800 requests to the ClusterIP over about forty seconds while the agent
/// starts, takes the table over and removes the leftovers: not one request
/// fails, and the leftovers are gone.
#[test]
fn traffic_to_a_cluster_ip_never_fails_while_the_leftovers_go() {
    fresh_node();
    let _reset = NetfilterReset;
    let mut pods: Vec<Pod> = hostname_pods();
    let client = Pod::create("client", "10.244.9.9");
    let before = load_leftovers();
    // What kube-proxy's IPVS mode left in IPVS and on kube-ipvs0.
    run(&["ip", "link", "add", "kube-ipvs0", "type", "dummy"]);
    run(&["ip", "addr", "add", "10.1.115.75/32", "dev", "kube-ipvs0"]);
    integration::ipvsadm(&["-A", "-t", "10.1.115.75:80", "-s", "rr"]);
    for pod in ["10.244.1.54", "10.244.1.55", "10.244.2.53"] {
        integration::ipvsadm(&[
            "-a",
            "-t",
            "10.1.115.75:80",
            "-r",
            &format!("{pod}:9376"),
            "-m",
        ]);
    }
    run(&["sysctl", "-q", "net.ipv4.vs.conntrack=1"]);
    assert!(
        client
            .http_get("10.1.115.75", 80, Duration::from_secs(5))
            .is_some_and(|answer| answer.starts_with("hostname-")),
        "the ClusterIP answers through kube-proxy's leftovers before the agent starts"
    );

    let started = Instant::now();
    let mut loop_process = Command::new("ip")
        .args(["netns", "exec", &client.name, "python3", "-c", CLIENT_LOOP])
        .args(["10.1.115.75", "80", "800", "0.05"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the client loop");
    std::thread::sleep(Duration::from_secs(1));
    let mut agent = start_agent(&example("hostname.yaml"));
    agent.wait_for_syncs(1, SYNC_TIMEOUT);
    // Not failing here yet: the loop's result is worth seeing either way.
    let deadline = Instant::now() + REMOVAL_TIMEOUT;
    let removed = loop {
        if leftovers_remaining().is_empty() {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let removed_during_loop = removed && loop_process.try_wait().ok().flatten().is_none();
    let output = loop_process
        .wait_with_output()
        .expect("wait for the client loop");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "client loop: {printed}");
    assert!(
        printed.trim_end().ends_with("ok=800 failed=0"),
        "every request answered (loop took {:?}):\n{printed}\nagent log:\n{}",
        started.elapsed(),
        agent.log_text()
    );
    assert!(
        removed,
        "the agent did not remove kube-proxy's leftovers within {REMOVAL_TIMEOUT:?} of its \
         first sync; left:\n{}\nagent log:\n{}",
        leftovers_remaining().join("\n"),
        agent.log_text()
    );
    assert!(
        removed_during_loop,
        "the leftovers went only after the client loop ended: the loop proved nothing"
    );
    assert_only_kube_proxys_removed(&before);
    agent.stop();
    pods.clear();
}
