//! The node the end-to-end agent tests run on: its address
//! (`192.168.122.10/24` on a dummy `node0`), a clean IPVS table and no
//! `kube-ipvs0` at the start of each test, and ways to look at what the
//! agent made (addresses on `kube-ipvs0`, `ipvsadm -Sn` lines, `plan`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pods::{prepare_node, run};
use crate::{clear_table, ipvsadm, require_guest};

/// The node's own address (a NodePort address).
pub const NODE_IP: &str = "192.168.122.10";

/// The arguments every test gives `ipvs-agent run` / `plan` for this node.
pub const NODE_ARGS: [&str; 6] = [
    "--node-name",
    "node1",
    "--node-ip",
    NODE_IP,
    "--nodeport-addresses",
    "192.168.122.0/24",
];

/// Clean kernel state and the node's address.
pub fn fresh_node() {
    require_guest();
    clear_table();
    let _ = Command::new("ip")
        .args(["link", "del", "kube-ipvs0"])
        .output();
    let _ = Command::new("ip").args(["link", "del", "node0"]).output();
    // Strict ARP from an earlier test (`--ipvs-strict-arp`, reset by that
    // test only if it passed) would stop pods from reaching their gateway.
    for sysctl in [
        "net/ipv4/conf/all/arp_ignore",
        "net/ipv4/conf/all/arp_announce",
    ] {
        let _ = std::fs::write(format!("/proc/sys/{sysctl}"), "0\n");
    }
    // The agent's nftables tables from an earlier test (never another's).
    for family in ["ip", "ip6"] {
        let _ = Command::new("nft")
            .args(["delete", "table", family, "ipvs-agent"])
            .output();
    }
    run(&["ip", "link", "add", "node0", "type", "dummy"]);
    run(&[
        "ip",
        "addr",
        "add",
        &format!("{NODE_IP}/24"),
        "dev",
        "node0",
    ]);
    run(&["ip", "link", "set", "node0", "up"]);
    prepare_node();
}

/// The addresses on `kube-ipvs0` (`10.1.115.75/32`, ...); empty when the
/// link does not exist.
pub fn kube_ipvs0_addresses() -> BTreeSet<String> {
    let output = Command::new("ip")
        .args(["-o", "addr", "show", "dev", "kube-ipvs0"])
        .output()
        .expect("run ip addr show");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            words.next().map(str::to_owned)
        })
        .collect()
}

/// `ipvsadm -Sn` lines for one virtual server ("-t 10.1.115.75:80").
pub fn saved_lines(service: &str) -> Vec<String> {
    ipvsadm(&["-Sn"])
        .lines()
        .filter(|line| line.contains(&format!("{service} ")))
        .map(str::to_owned)
        .collect()
}

/// `ipvs-agent plan --output save` of these manifests for this node.
pub fn plan_save(manifests: &[&Path], extra: &[&str]) -> String {
    let mut command = Command::new(crate::agent::agent_binary());
    command
        .arg("plan")
        .arg("--manifests")
        .args(manifests)
        .args(NODE_ARGS)
        .args(["--output", "save"]);
    command.args(extra);
    let output = command.output().expect("run ipvs-agent plan");
    assert!(
        output.status.success(),
        "plan failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Each set of the agent's `ip` table as `plan --output json` of
/// `manifests` has it (`netfilterSets.ip`), elements as nft writes them.
pub fn plan_sets(manifests: &[&Path]) -> BTreeMap<String, BTreeSet<String>> {
    let output = Command::new(crate::agent::agent_binary())
        .arg("plan")
        .arg("--manifests")
        .args(manifests)
        .args(NODE_ARGS)
        .args(["--output", "json"])
        .output()
        .expect("run ipvs-agent plan");
    assert!(
        output.status.success(),
        "plan failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("plan's JSON");
    json["netfilterSets"]["ip"]
        .as_object()
        .expect("netfilterSets.ip")
        .iter()
        .map(|(name, elements)| {
            let elements = elements
                .as_array()
                .expect("a set's elements")
                .iter()
                .map(|e| e.as_str().expect("an element").to_owned())
                .collect();
            (name.clone(), elements)
        })
        .collect()
}

/// The elements of every set of the agent's `ip` table, from `nft -j`.
pub fn kernel_sets(names: impl Iterator<Item = String>) -> BTreeMap<String, BTreeSet<String>> {
    names
        .map(|name| {
            let output = std::process::Command::new("nft")
                .args(["-j", "list", "set", "ip", "ipvs-agent", &name])
                .output()
                .expect("run nft");
            let json: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
            let elements = json["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item["set"]["elem"].as_array())
                .flatten()
                .map(element_text)
                .collect();
            (name, elements)
        })
        .collect()
}

/// One element of `nft -j` as nft's text writes it: a concatenation
/// `{"concat": [a, b, c]}` is `a . b . c`; a range `{"range": [a, b]}` is
/// `a-b`; a prefix `{"prefix": {"addr": a, "len": n}}` is `a/n`.
pub fn element_text(element: &Value) -> String {
    match element {
        Value::Object(map) if map.contains_key("concat") => map["concat"]
            .as_array()
            .into_iter()
            .flatten()
            .map(element_text)
            .collect::<Vec<_>>()
            .join(" . "),
        Value::Object(map) if map.contains_key("range") => {
            let parts: Vec<String> = map["range"]
                .as_array()
                .into_iter()
                .flatten()
                .map(element_text)
                .collect();
            parts.join("-")
        }
        Value::Object(map) if map.contains_key("prefix") => format!(
            "{}/{}",
            element_text(&map["prefix"]["addr"]),
            map["prefix"]["len"]
        ),
        Value::Object(map) if map.contains_key("elem") => element_text(&map["elem"]["val"]),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Polls `check` every 100 ms until it returns `Some`; fails the test with
/// `what` and the last value seen (from `describe`) after `timeout`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; now:\n{}",
            describe()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
