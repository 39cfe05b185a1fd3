//! The agent's nftables tables in the guest, on one node: what `nft` shows
//! after the first sync, repair within one resync after `nft flush
//! ruleset`, and `ipvs-agent cleanup` removing the agent's tables while a
//! foreign table with its own rules and set survives. The traffic those
//! rules carry is tested on two nodes (`two_node.rs`).

use std::time::Duration;

use integration::agent::{agent_binary, Agent};
use integration::example;
use integration::node::{fresh_node, NODE_ARGS};
use integration::pods::{hostname_pods, run, Pod};

const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Another tool's table: a set with an element and a base chain with a
/// rule, all of which the agent must leave alone.
const FOREIGN_TABLE: &str = "
table inet foreign-firewall {
    set allowed { type ipv4_addr; elements = { 192.0.2.99 } }
    chain input {
        type filter hook input priority 10; policy accept;
        ip saddr @allowed tcp dport 9999 counter accept
    }
}
";

fn nft(args: &[&str]) -> String {
    let mut argv = vec!["nft"];
    argv.extend_from_slice(args);
    run(&argv)
}

fn load_foreign_table() {
    let file = std::env::temp_dir().join(format!("foreign-{}.nft", std::process::id()));
    std::fs::write(&file, FOREIGN_TABLE).expect("write the foreign table");
    nft(&["-f", &file.display().to_string()]);
}

fn assert_foreign_table_intact() {
    let listed = nft(&["list", "table", "inet", "foreign-firewall"]);
    assert!(
        listed.contains("192.0.2.99")
            && listed.contains("ip saddr @allowed tcp dport 9999 counter"),
        "the foreign table lost something:\n{listed}"
    );
}

fn tables() -> String {
    nft(&["list", "tables"])
}

#[test]
fn the_tables_are_repaired_after_a_ruleset_flush_and_cleanup_leaves_foreign_ones() {
    fresh_node();
    load_foreign_table();
    let _pods: Vec<Pod> = hostname_pods();
    let client = Pod::create("client", "10.244.9.9");
    let manifests = example("hostname.yaml");
    let mut args = vec!["run", "--manifests"];
    let manifests_text = manifests.display().to_string();
    args.push(&manifests_text);
    args.extend(NODE_ARGS);
    args.extend([
        "--cluster-cidr",
        "10.244.0.0/16",
        "--ipvs-sync-period",
        "3s",
    ]);
    let mut agent = Agent::start(&args);
    let first = agent.wait_for_syncs(1, SYNC_TIMEOUT)[0].clone();
    assert_eq!(
        (
            first.count("nft_transactions"),
            first.count("nft_rules_written")
        ),
        (1, 1),
        "the first sync writes the IPv4 table in one transaction: {first:?}"
    );
    let table = nft(&["list", "table", "ip", "ipvs-agent"]);
    for expected in [
        "10.1.115.75 . tcp . 80",
        "ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
        "masquerade fully-random",
        "ct state new ip daddr @vips jump vip-filter",
    ] {
        assert!(
            table.contains(expected),
            "{expected:?} missing from\n{table}"
        );
    }
    assert!(client
        .http_get("10.1.115.75", 80, REQUEST_TIMEOUT)
        .is_some_and(|answer| answer.starts_with("hostname-")));
    assert_foreign_table_intact();

    // Someone flushes the whole ruleset: the next resync writes the
    // agent's table again, elements included, and sends nothing after.
    nft(&["flush", "ruleset"]);
    let before = agent.syncs().len();
    let repair = agent.wait_for_syncs(before + 1, SYNC_TIMEOUT)[before].clone();
    assert_eq!(repair.kind(), "full");
    assert_eq!(
        repair.count("nft_rules_written"),
        1,
        "repaired within one resync: {repair:?}"
    );
    assert!(repair.count("nft_elements_added") >= 2, "{repair:?}");
    let table = nft(&["list", "table", "ip", "ipvs-agent"]);
    assert!(table.contains("10.1.115.75 . tcp . 80"), "{table}");
    let quiet = agent.wait_for_syncs(before + 2, SYNC_TIMEOUT)[before + 1].clone();
    assert_eq!(
        quiet.count("nft_transactions"),
        0,
        "a resync of a right table sends nothing: {quiet:?}"
    );
    assert!(client
        .http_get("10.1.115.75", 80, REQUEST_TIMEOUT)
        .is_some_and(|answer| answer.starts_with("hostname-")));

    // cleanup: the agent's tables go, the foreign one stays as it was.
    agent.stop();
    load_foreign_table();
    let output = std::process::Command::new(agent_binary())
        .args(["cleanup"])
        .args(NODE_ARGS)
        .output()
        .expect("run ipvs-agent cleanup");
    assert!(
        output.status.success(),
        "cleanup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("nftables table ip ipvs-agent"),
        "cleanup says what it deleted: {said}"
    );
    let left = tables();
    assert!(!left.contains("ipvs-agent"), "agent tables left: {left}");
    assert_foreign_table_intact();
    run(&["nft", "delete", "table", "inet", "foreign-firewall"]);
}

/// Dual-stack: the agent keeps an `ip6 ipvs-agent` table with the same
/// rules (the kernel accepts them) and the IPv6 Service's elements.
#[test]
fn dual_stack_keeps_an_ipv6_table_with_the_same_rules() {
    fresh_node();
    let dir = std::env::temp_dir().join(format!("dual-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a manifest folder");
    std::fs::write(
        dir.join("dual.yaml"),
        r#"
apiVersion: v1
kind: Service
metadata: {name: dual, namespace: default}
spec:
  clusterIP: 10.1.0.80
  clusterIPs: [10.1.0.80, "fd00:1::80"]
  ipFamilies: [IPv4, IPv6]
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dual-v6
  namespace: default
  labels: {kubernetes.io/service-name: dual}
addressType: IPv6
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
- addresses: ["fd00:244::5"]
  conditions: {ready: true}
  nodeName: node1
"#,
    )
    .expect("write the manifest");
    let dir_text = dir.display().to_string();
    let mut args = vec!["run", "--manifests", &dir_text];
    args.extend(NODE_ARGS);
    args.extend([
        "--ip-family",
        "dual",
        "--cluster-cidr",
        "10.244.0.0/16,fd00:244::/64",
    ]);
    let mut agent = Agent::start(&args);
    let first = agent.wait_for_syncs(1, SYNC_TIMEOUT)[0].clone();
    assert_eq!(
        first.count("nft_rules_written"),
        2,
        "both families' tables: {first:?}"
    );
    let table = nft(&["list", "table", "ip6", "ipvs-agent"]);
    for expected in [
        "fd00:1::80 . tcp . 80",
        "fd00:244::5 . fd00:244::5",
        "ip6 saddr != fd00:244::/64 jump mark-for-masquerade",
        "ip6 saddr ::1 return",
        "ct state new ip6 daddr @vips jump vip-filter",
        "masquerade fully-random",
    ] {
        assert!(
            table.contains(expected),
            "{expected:?} missing from\n{table}"
        );
    }
    let v4 = nft(&["list", "set", "ip", "ipvs-agent", "cluster-ips"]);
    assert!(v4.contains("10.1.0.80 . tcp . 80"), "{v4}");
    assert!(
        !v4.contains("fd00"),
        "no IPv6 element in the IPv4 table: {v4}"
    );
    agent.stop();
}
