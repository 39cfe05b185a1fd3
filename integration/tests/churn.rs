//! The churn soak (issue 15): random Service and EndpointSlice changes at
//! a steady rate through the API stand-in (`kube-standin`, the real kube
//! client in the agent), and at each quiet point a checker that compares
//! what the kernel holds — `ipvsadm -Sn`, the addresses on `kube-ipvs0`,
//! the elements of every set of the agent's nftables table — with
//! `ipvs-agent plan --output json` of the same objects (written to a
//! manifest from the test's own model of what it sent): zero differences,
//! so no leaked VIP, no left-over or draining real server, no stale set
//! element; and the agent's memory (VmRSS) flat across the run.
//!
//! `CHURN_SECONDS` (default 120: CI) is how long changes are made;
//! `CHURN_SEED` picks the sequence (printed, to replay a failure). The
//! long run (30 minutes) and its figures are in RELIABILITY.md.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use integration::agent::{status_kib, Agent};
use integration::bulk::{endpoint_ip, service_ip};
use integration::node::{fresh_node, kernel_sets, kube_ipvs0_addresses, NODE_ARGS, NODE_IP};
use integration::standin::Standin;
use serde_json::{json, Value};

/// Services the model draws from (`churn-0` .. `churn-{N-1}`).
const SERVICES: usize = 300;
/// Changes between two quiet points.
const CHANGES_PER_ROUND: usize = 60;
/// The longest a quiet point may wait for the kernel to equal the plan.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

/// A small deterministic generator (xorshift64*): the seed replays a run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One Service of the model and its EndpointSlice.
#[derive(Debug, Clone, PartialEq)]
struct ChurnService {
    https: bool,
    node_port: bool,
    external_ip: bool,
    affinity: bool,
    /// Endpoint index → ready.
    endpoints: BTreeMap<usize, bool>,
}

impl ChurnService {
    fn random(random: &mut Random) -> Self {
        let mut service = ChurnService {
            https: random.chance(30),
            node_port: random.chance(30),
            external_ip: random.chance(20),
            affinity: random.chance(10),
            endpoints: BTreeMap::new(),
        };
        for endpoint in 0..random.below(4) {
            service.endpoints.insert(endpoint, random.chance(85));
        }
        service
    }

    fn service_object(&self, index: usize) -> Value {
        let ip = service_ip(index);
        let mut ports =
            vec![json!({"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080})];
        if self.https {
            ports
                .push(json!({"name": "https", "protocol": "TCP", "port": 443, "targetPort": 8443}));
        }
        if self.node_port {
            ports[0]["nodePort"] = json!(30000 + index);
            if self.https {
                ports[1]["nodePort"] = json!(30000 + SERVICES + index);
            }
        }
        let mut spec = json!({
            "type": if self.node_port { "NodePort" } else { "ClusterIP" },
            "clusterIP": ip, "clusterIPs": [ip],
            "selector": {"app": format!("churn-{index}")},
            "ports": ports,
            "sessionAffinity": if self.affinity { "ClientIP" } else { "None" },
        });
        if self.external_ip {
            spec["externalIPs"] = json!([format!("198.18.{}.{}", index / 250, index % 250 + 1)]);
        }
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("churn-{index}"), "namespace": "churn"},
            "spec": spec,
        })
    }

    fn slice_object(&self, index: usize) -> Value {
        let endpoints: Vec<Value> = self
            .endpoints
            .iter()
            .map(|(endpoint, ready)| {
                json!({"addresses": [endpoint_ip(index, *endpoint)],
                       "conditions": {"ready": ready}, "nodeName": "node1"})
            })
            .collect();
        let mut ports = vec![json!({"name": "http", "protocol": "TCP", "port": 8080})];
        if self.https {
            ports.push(json!({"name": "https", "protocol": "TCP", "port": 8443}));
        }
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("churn-{index}-abcde"), "namespace": "churn",
                         "labels": {"kubernetes.io/service-name": format!("churn-{index}")}},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        })
    }
}

/// One random change to `model`, sent to the stand-in; returns its kind.
fn change(
    random: &mut Random,
    model: &mut BTreeMap<usize, ChurnService>,
    standin: &Standin,
) -> &'static str {
    let index = random.below(SERVICES);
    let Some(current) = model.get(&index).cloned() else {
        let service = ChurnService::random(random);
        standin.apply(&service.service_object(index));
        standin.apply(&service.slice_object(index));
        model.insert(index, service);
        return "create";
    };
    let mut next = current.clone();
    let kind = match random.below(7) {
        0 => {
            standin.delete("Service", "churn", &format!("churn-{index}"));
            standin.delete("EndpointSlice", "churn", &format!("churn-{index}-abcde"));
            model.remove(&index);
            return "delete";
        }
        1 => {
            next.https = !next.https;
            "port"
        }
        2 => {
            next.node_port = !next.node_port;
            "type"
        }
        3 => {
            next.external_ip = !next.external_ip;
            "externalIP"
        }
        4 => {
            next.affinity = !next.affinity;
            "affinity"
        }
        5 => {
            let endpoint = random.below(4);
            if next.endpoints.remove(&endpoint).is_none() {
                next.endpoints.insert(endpoint, true);
            }
            "endpoint"
        }
        _ => {
            for ready in next.endpoints.values_mut() {
                if random.chance(50) {
                    *ready = !*ready;
                }
            }
            "readiness"
        }
    };
    let service_changed = next.https != current.https
        || next.node_port != current.node_port
        || next.external_ip != current.external_ip
        || next.affinity != current.affinity;
    if service_changed {
        standin.apply(&next.service_object(index));
    }
    if next.https != current.https || next.endpoints != current.endpoints {
        standin.apply(&next.slice_object(index));
    }
    model.insert(index, next);
    kind
}

/// The model as a manifest (JSON documents are YAML).
fn manifest(model: &BTreeMap<usize, ChurnService>) -> String {
    let mut text = String::new();
    for (index, service) in model {
        text.push_str(&service.service_object(*index).to_string());
        text.push_str("\n---\n");
        text.push_str(&service.slice_object(*index).to_string());
        text.push_str("\n---\n");
    }
    text
}

/// What the node must hold: the IPVS rules (`ipvsadm -Sn` lines, sorted),
/// the `kube-ipvs0` addresses, and each set's elements.
#[derive(Debug, PartialEq, Eq)]
struct NodeState {
    rules: Vec<String>,
    addresses: BTreeSet<String>,
    sets: BTreeMap<String, BTreeSet<String>>,
}

/// `ipvs-agent plan --output json` + `--output save` of `model`.
fn planned(model: &BTreeMap<usize, ChurnService>) -> NodeState {
    let file = std::env::temp_dir().join(format!("churn-{}.yaml", std::process::id()));
    std::fs::write(&file, manifest(model)).expect("write the churn manifest");
    let plan = |output: &str| {
        let result = std::process::Command::new(integration::agent::agent_binary())
            .arg("plan")
            .arg("--manifests")
            .arg(&file)
            .args(NODE_ARGS)
            .args(["--output", output])
            .output()
            .expect("run ipvs-agent plan");
        assert!(
            result.status.success() && result.stderr.is_empty(),
            "plan: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        String::from_utf8(result.stdout).expect("UTF-8")
    };
    let mut rules: Vec<String> = plan("save").lines().map(str::to_owned).collect();
    rules.sort();
    let json: Value = serde_json::from_str(&plan("json")).expect("plan's JSON");
    let addresses = json["kubeIpvs0Addresses"]
        .as_array()
        .expect("kubeIpvs0Addresses")
        .iter()
        .map(|a| format!("{}/32", a.as_str().expect("an address")))
        .collect();
    let sets = json["netfilterSets"]["ip"]
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
        .collect();
    NodeState {
        rules,
        addresses,
        sets,
    }
}

fn kernel_state(set_names: impl Iterator<Item = String>) -> NodeState {
    let mut rules: Vec<String> = integration::ipvsadm(&["-Sn"])
        .lines()
        .map(str::to_owned)
        .collect();
    rules.sort();
    NodeState {
        rules,
        addresses: kube_ipvs0_addresses(),
        sets: kernel_sets(set_names),
    }
}

/// The differences, for the failure message.
fn differences(want: &NodeState, got: &NodeState) -> Vec<String> {
    let mut lines = Vec::new();
    let want_rules: BTreeSet<&String> = want.rules.iter().collect();
    let got_rules: BTreeSet<&String> = got.rules.iter().collect();
    for rule in want_rules.difference(&got_rules) {
        lines.push(format!("missing rule {rule}"));
    }
    for rule in got_rules.difference(&want_rules) {
        lines.push(format!("extra rule {rule}"));
    }
    for address in want.addresses.difference(&got.addresses) {
        lines.push(format!("missing address {address}"));
    }
    for address in got.addresses.difference(&want.addresses) {
        lines.push(format!("leaked address {address}"));
    }
    for (name, elements) in &want.sets {
        let got = got.sets.get(name).cloned().unwrap_or_default();
        for element in elements.difference(&got) {
            lines.push(format!("set {name}: missing {element}"));
        }
        for element in got.difference(elements) {
            lines.push(format!("set {name}: stale {element}"));
        }
    }
    lines
}

#[test]
fn churn_leaves_the_kernel_equal_to_plan_at_every_quiet_point() {
    fresh_node();
    let seconds: u64 = std::env::var("CHURN_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(120);
    let seed: u64 = std::env::var("CHURN_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001);
    let mut random = Random(seed | 1);
    let standin = Standin::start(&[]);
    standin.apply(&json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node1"},
        "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}
    }));
    // Half the Services to start with.
    let mut model: BTreeMap<usize, ChurnService> = BTreeMap::new();
    for index in (0..SERVICES).step_by(2) {
        let service = ChurnService::random(&mut random);
        standin.apply(&service.service_object(index));
        standin.apply(&service.slice_object(index));
        model.insert(index, service);
    }
    let kubeconfig = standin.kubeconfig.display().to_string();
    let mut args = vec!["run", "--kubeconfig", &kubeconfig];
    args.extend(NODE_ARGS);
    args.extend(["--ipvs-sync-period", "30s"]);
    let mut agent = Agent::start(&args);
    agent.wait_for_syncs(1, Duration::from_secs(120));
    let pid = agent.pid().expect("the agent runs");

    let started = Instant::now();
    let mut changes = 0usize;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut quiet_points = Vec::new();
    let mut rss = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        let round_started = Instant::now();
        for _ in 0..CHANGES_PER_ROUND {
            *kinds
                .entry(change(&mut random, &mut model, &standin))
                .or_default() += 1;
            changes += 1;
        }
        let churn_time = round_started.elapsed();
        let want = planned(&model);
        let quiet = Instant::now();
        let mut got = kernel_state(want.sets.keys().cloned());
        while got != want && quiet.elapsed() < CONVERGE_TIMEOUT {
            std::thread::sleep(Duration::from_millis(250));
            got = kernel_state(want.sets.keys().cloned());
        }
        let converged = quiet.elapsed();
        let diff = differences(&want, &got);
        assert!(
            diff.is_empty(),
            "seed {seed}: after {changes} changes the kernel differs from plan ({} \
             differences, {:.0} s after the last change):\n{}\n== agent log (tail):\n{}",
            diff.len(),
            converged.as_secs_f64(),
            diff.iter().take(40).cloned().collect::<Vec<_>>().join("\n"),
            tail(&agent.log_text(), 40)
        );
        rss.push(status_kib(pid, "VmRSS"));
        quiet_points.push((churn_time, converged, want.rules.len()));
    }
    let rate = changes as f64 / quiet_points.iter().map(|q| q.0.as_secs_f64()).sum::<f64>();
    let worst = quiet_points.iter().map(|q| q.1).max().unwrap_or_default();
    let first_rss = rss.first().copied().unwrap_or(0);
    let last_rss = rss.last().copied().unwrap_or(0);
    let peak_rss = rss.iter().copied().max().unwrap_or(0);
    eprintln!(
        "faults: churn soak: seed {seed}, {changes} changes in {:.0} s ({rate:.1}/s while \
         churning; {kinds:?}), {} quiet points, 0 differences, worst convergence {:.2} s, \
         ipvsadm rules at the end {}, agent VmRSS first/peak/last {first_rss}/{peak_rss}/{last_rss} KiB",
        started.elapsed().as_secs_f64(),
        quiet_points.len(),
        worst.as_secs_f64(),
        quiet_points.last().map(|q| q.2).unwrap_or(0),
    );
    assert!(quiet_points.len() >= 2, "at least two quiet points");
    // Flat: the last quiet point within 25% (+4 MiB of allocator slack)
    // of the second (the first includes the start-up's peak).
    let baseline = rss.get(1).copied().unwrap_or(first_rss);
    assert!(
        last_rss <= baseline + baseline / 4 + 4096,
        "memory grows under churn: VmRSS per quiet point {rss:?} KiB"
    );
    agent.stop();
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
