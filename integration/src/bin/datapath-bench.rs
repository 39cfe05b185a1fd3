//! The datapath part of a sync (issue 12), run inside the real-kernel
//! guest in one go; every figure beside baselines measured in the same run.
//!
//! `datapath-bench [SERVICES] [ROUNDS]` (default 20,000 and 3), as root in a
//! kernel with IPVS and nf_tables, with the release `ipvs-agent` built
//! beside it and `nft`, `ipset`, `iptables-restore` installed. One cluster
//! of SERVICES ClusterIP Services with 10 ready endpoints each is written
//! as manifests: every tenth Service is a NodePort, and the endpoints are
//! spread over 100 nodes, so that one in 100 is on this node (`node1`; a
//! hairpin element each). Each measurement runs in a **fresh network
//! namespace** (empty nftables, iptables, ipsets and IPVS), ROUNDS times,
//! rotating between them:
//!
//! - **agent**: `ipvs-agent run --manifests DIR`; its first `synced` line's
//!   `netfilter_ms` (netlink read of its tables + the one `nft -f -`
//!   transaction) and `nft_elements_added`. In the first round, then, one
//!   extra Service (NodePort, one endpoint here: one element in each of
//!   four sets) is added to the folder, one of its remote endpoints
//!   changed (no set changes: must send no transaction), and the Service
//!   removed again, ROUNDS times: `netfilter_ms` of each of those syncs.
//! - **kube-proxy** (baseline A, for each iptables backend present; in
//!   the first round only, its initial load being the slow one):
//!   kube-proxy's IPVS-mode sets for the same Services loaded by one
//!   `ipset restore`, then its nat and filter rules by one
//!   `iptables-restore --noflush --counters` (`pkg/proxy/ipvs/proxier.go`,
//!   `writeIptablesRules`), timed together. The one-Service change the way
//!   kube-proxy makes it: one `ipset add` (`ipset del`) process per entry,
//!   then its whole `iptables-restore` again; and, apart, the 20
//!   `iptables -N` / `iptables -C` processes its `createAndLinkKubeChain`
//!   runs on every sync.
//! - **nft floor** (baseline B): one `nft -f` of the agent's own table (as
//!   `nft list table` prints it, taken from an agent run on an empty
//!   folder) with every element, into a fresh table; the one-Service
//!   change as one `nft -f` of `add element` (`delete element`) lines.
//!
//! Prints one `RESULT key value` line per sample and a summary of medians.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration::agent::{Agent, SyncLine};
use integration::bulk::{endpoint_ip, service_ip};

const USAGE: &str = "usage: datapath-bench [SERVICES] [ROUNDS]";
const WAIT: Duration = Duration::from_secs(1200);
const ENDPOINTS: usize = 10;
const NODES: usize = 100;
const FIRST_NODE_PORT: usize = 30000;
/// The extra Service's ClusterIP, NodePort and endpoints (outside the
/// cluster's ranges).
const EXTRA_IP: &str = "10.99.0.1";
const EXTRA_NODE_PORT: u16 = 32700;
/// The floor's table: the agent's, under another name.
const FLOOR_TABLE: &str = "ipvs-floor";

fn extra_endpoint(endpoint: usize) -> String {
    format!("10.199.0.{}", endpoint + 1)
}

/// The node of endpoint `endpoint` of Service `index` (1-based).
fn node_of(index: usize, endpoint: usize) -> usize {
    (index * ENDPOINTS + endpoint) % NODES + 1
}

fn node_port_of(index: usize) -> Option<u16> {
    (index % 10 == 5).then(|| (FIRST_NODE_PORT + index / 10) as u16)
}

/// What the agent's sets (and kube-proxy's) hold for the cluster.
#[derive(Debug, Default)]
struct Elements {
    /// ClusterIP, port (cluster-ips / KUBE-CLUSTER-IP).
    cluster_ips: Vec<(String, u16)>,
    /// VIPs on kube-ipvs0 (vips / KUBE-IPVS-IPS).
    vips: Vec<String>,
    /// TCP NodePorts (node-ports / KUBE-NODE-PORT-TCP).
    node_ports: Vec<u16>,
    /// Local endpoint, its port (hairpin / KUBE-LOOP-BACK).
    hairpin: Vec<(String, u16)>,
}

impl Elements {
    fn total(&self) -> usize {
        self.cluster_ips.len() + self.vips.len() + self.node_ports.len() + self.hairpin.len()
    }

    fn of_cluster(services: usize) -> Self {
        let mut elements = Elements::default();
        for index in 0..services {
            let ip = service_ip(index);
            elements.cluster_ips.push((ip.clone(), 80));
            elements.vips.push(ip);
            elements.node_ports.extend(node_port_of(index));
            for endpoint in 0..ENDPOINTS {
                if node_of(index, endpoint) == 1 {
                    elements.hairpin.push((endpoint_ip(index, endpoint), 8080));
                }
            }
        }
        elements
    }

    fn of_extra() -> Self {
        Elements {
            cluster_ips: vec![(EXTRA_IP.to_owned(), 80)],
            vips: vec![EXTRA_IP.to_owned()],
            node_ports: vec![EXTRA_NODE_PORT],
            hairpin: vec![(extra_endpoint(0), 8080)],
        }
    }

    /// `VERB element ip TABLE SET { ... }` lines, one per non-empty set.
    fn nft_lines(&self, verb: &str, table: &str) -> String {
        let mut script = String::new();
        let mut line = |set: &str, items: Vec<String>| {
            // 512 to a line, as the agent writes them.
            for chunk in items.chunks(512) {
                let _ = writeln!(
                    script,
                    "{verb} element ip {table} {set} {{ {} }}",
                    chunk.join(", ")
                );
            }
        };
        line(
            "cluster-ips",
            self.cluster_ips
                .iter()
                .map(|(ip, port)| format!("{ip} . tcp . {port}"))
                .collect(),
        );
        line("vips", self.vips.clone());
        line(
            "node-ports",
            self.node_ports
                .iter()
                .map(|port| format!("tcp . {port}"))
                .collect(),
        );
        line(
            "hairpin",
            self.hairpin
                .iter()
                .map(|(ip, _)| format!("{ip} . {ip}"))
                .collect(),
        );
        script
    }

    /// kube-proxy's entries: (set, entry) as `ipset add` takes them.
    fn ipset_entries(&self) -> Vec<(&'static str, String)> {
        let mut entries = Vec::with_capacity(self.total());
        entries.extend(
            self.cluster_ips
                .iter()
                .map(|(ip, port)| ("KUBE-CLUSTER-IP", format!("{ip},tcp:{port}"))),
        );
        entries.extend(self.vips.iter().map(|ip| ("KUBE-IPVS-IPS", ip.clone())));
        entries.extend(
            self.node_ports
                .iter()
                .map(|port| ("KUBE-NODE-PORT-TCP", port.to_string())),
        );
        entries.extend(
            self.hairpin
                .iter()
                .map(|(ip, port)| ("KUBE-LOOP-BACK", format!("{ip},tcp:{port},{ip}"))),
        );
        entries
    }
}

/// The cluster as manifests (`cluster.yaml`), in the bulk.rs layout.
fn cluster_manifests(services: usize) -> String {
    let mut text = String::with_capacity(services * (500 + ENDPOINTS * 80));
    for index in 0..services {
        let endpoints: Vec<(String, usize)> = (0..ENDPOINTS)
            .map(|endpoint| (endpoint_ip(index, endpoint), node_of(index, endpoint)))
            .collect();
        service_documents(
            &mut text,
            &format!("svc-{index}"),
            &service_ip(index),
            node_port_of(index),
            &endpoints,
        );
    }
    text
}

/// The extra Service; `changed`: its endpoint 5 (on node6) replaced.
fn extra_manifest(changed: bool) -> String {
    let endpoints: Vec<(String, usize)> = (0..ENDPOINTS)
        .map(|endpoint| {
            let ip = if changed && endpoint == 5 {
                "10.199.1.6".to_owned()
            } else {
                extra_endpoint(endpoint)
            };
            (ip, endpoint + 1)
        })
        .collect();
    let mut text = String::new();
    service_documents(
        &mut text,
        "svc-extra",
        EXTRA_IP,
        Some(EXTRA_NODE_PORT),
        &endpoints,
    );
    text
}

fn service_documents(
    text: &mut String,
    name: &str,
    ip: &str,
    node_port: Option<u16>,
    endpoints: &[(String, usize)],
) {
    let (kind, node_port) = match node_port {
        Some(port) => ("NodePort", format!(", nodePort: {port}")),
        None => ("ClusterIP", String::new()),
    };
    let _ = write!(
        text,
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: bulk}}\n\
         spec: {{type: {kind}, clusterIP: {ip}, clusterIPs: [{ip}], selector: {{app: {name}}},\n  \
         ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080{node_port}}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-abcde, namespace: bulk, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: http, protocol: TCP, port: 8080}}]\nendpoints:\n"
    );
    for (address, node) in endpoints {
        let _ = writeln!(
            text,
            "- {{addresses: [{address}], conditions: {{ready: true}}, nodeName: node{node}}}"
        );
    }
    text.push_str("---\n");
}

fn result(key: &str, value: impl std::fmt::Display) {
    println!("RESULT {key} {value}");
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs a command (stdin from `input` if given), which must succeed;
/// returns its wall time in milliseconds.
fn timed_ms(argv: &[&str], input: Option<&Path>) -> f64 {
    let mut command = Command::new(argv[0]);
    command.args(&argv[1..]).stdout(Stdio::null());
    if let Some(path) = input {
        command.stdin(std::fs::File::open(path).expect("open the input"));
    }
    let start = Instant::now();
    let output = command.output().expect("run a command");
    let elapsed = start.elapsed().as_secs_f64() * 1e3;
    assert!(
        output.status.success(),
        "{}: {}",
        argv.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

fn run(argv: &[&str]) -> std::process::Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .expect("run a command")
}

fn run_ok(argv: &[&str]) -> String {
    let output = run(argv);
    assert!(
        output.status.success(),
        "{}: {}",
        argv.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The node's address (as agent-bench sets it up).
fn node_address() {
    let _ = run(&["ip", "link", "add", "node0", "type", "dummy"]);
    let _ = run(&["ip", "addr", "add", "192.168.122.10/24", "dev", "node0"]);
}

fn start_agent(manifests: &Path) -> Agent {
    let manifests = manifests.display().to_string();
    Agent::start(&[
        "run",
        "--manifests",
        &manifests,
        "--node-name",
        "node1",
        "--node-ip",
        "192.168.122.10",
        "--nodeport-addresses",
        "192.168.122.0/24",
        "--cluster-cidr",
        "10.244.0.0/16",
        "--ipvs-sync-period",
        "1h",
        "--healthz-bind-address",
        "",
        "--metrics-bind-address",
        "",
    ])
}

fn sync_fields(prefix: &str, sync: &SyncLine) {
    for field in [
        "netfilter_ms",
        "nft_transactions",
        "nft_rules_written",
        "nft_elements_added",
        "nft_elements_removed",
        "duration_ms",
    ] {
        result(&format!("{prefix}_{field}"), sync.count_f64(field));
    }
}

/// Waits for the agent's next sync line (every change the folder shows
/// is one sync) and reports it as `agent_WHAT_*`.
fn next_sync(agent: &mut Agent, before: usize, what: &str) -> SyncLine {
    let sync = agent.wait_for_syncs(before + 1, WAIT)[before].clone();
    sync_fields(&format!("agent_{what}"), &sync);
    sync
}

/// Writes `text` to `path` atomically (the agent polls the folder).
fn write_manifest(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write a manifest");
    std::fs::rename(&temporary, path).expect("move a manifest into place");
}

/// The agent from empty tables: its first sync; with `rounds`, then the
/// one-Service add / endpoint change / remove cycles.
fn measure_agent(work: &Path, rounds: usize) {
    node_address();
    let manifests = work.join("manifests");
    let mut agent = start_agent(&manifests);
    let first = agent.wait_for_syncs(1, WAIT)[0].clone();
    sync_fields("agent_initial", &first);
    let extra = manifests.join("zz-extra.yaml");
    for _ in 0..rounds {
        let before = agent.syncs().len();
        write_manifest(&extra, &extra_manifest(false));
        let added = next_sync(&mut agent, before, "add");
        assert_eq!(added.count("nft_elements_added"), 4, "{added:?}");
        let before = agent.syncs().len();
        write_manifest(&extra, &extra_manifest(true));
        let changed = next_sync(&mut agent, before, "endpoint");
        assert_eq!(changed.count("nft_transactions"), 0, "{changed:?}");
        let before = agent.syncs().len();
        std::fs::remove_file(&extra).expect("remove the extra Service");
        let removed = next_sync(&mut agent, before, "remove");
        assert_eq!(removed.count("nft_elements_removed"), 4, "{removed:?}");
        // The agent compares modification times: a rewrite within the
        // same tick must still look new.
        std::thread::sleep(Duration::from_millis(1100));
    }
    agent.stop();
}

/// The agent's table as `nft list table` prints it, from an agent run on
/// an empty folder (empty sets: the listing is the declarations and
/// rules alone).
fn measure_table(work: &Path) {
    node_address();
    let empty = work.join("empty");
    std::fs::create_dir_all(&empty).expect("an empty folder");
    let mut agent = start_agent(&empty);
    agent.wait_for_syncs(1, WAIT);
    let listing = run_ok(&["nft", "list", "table", "ip", "ipvs-agent"]);
    agent.stop();
    std::fs::write(work.join("table.nft"), listing).expect("write the table");
}

/// Baseline B: the whole table with every element in one `nft -f`, into
/// a fresh table; then the one-Service change as `add element` /
/// `delete element` transactions.
fn measure_floor(work: &Path, services: usize, rounds: usize) {
    let listing = std::fs::read_to_string(work.join("table.nft")).expect("the agent's table");
    assert!(listing.contains("table ip ipvs-agent"), "{listing}");
    let mut script = listing.replace("table ip ipvs-agent", &format!("table ip {FLOOR_TABLE}"));
    script.push('\n');
    script.push_str(&Elements::of_cluster(services).nft_lines("add", FLOOR_TABLE));
    let full = work.join("floor-full.nft");
    std::fs::write(&full, script).expect("write the floor's script");
    result(
        "floor_initial_ms",
        timed_ms(&["nft", "-f", &full.display().to_string()], None),
    );
    if rounds == 0 {
        return;
    }
    let add = work.join("floor-add.nft");
    let delete = work.join("floor-delete.nft");
    std::fs::write(&add, Elements::of_extra().nft_lines("add", FLOOR_TABLE)).expect("write");
    std::fs::write(
        &delete,
        Elements::of_extra().nft_lines("delete", FLOOR_TABLE),
    )
    .expect("write");
    for _ in 0..rounds {
        result(
            "floor_add_ms",
            timed_ms(&["nft", "-f", &add.display().to_string()], None),
        );
        result(
            "floor_remove_ms",
            timed_ms(&["nft", "-f", &delete.display().to_string()], None),
        );
    }
}

/// kube-proxy's sets (every one it creates, `ipsetInfo`) and the
/// cluster's entries, as `ipset restore` reads them.
fn ipset_restore_text(elements: &Elements) -> String {
    let mut text = String::new();
    let hash = "family inet hashsize 1024 maxelem 65536";
    for (name, kind) in [
        ("KUBE-LOOP-BACK", "hash:ip,port,ip"),
        ("KUBE-CLUSTER-IP", "hash:ip,port"),
        ("KUBE-EXTERNAL-IP", "hash:ip,port"),
        ("KUBE-EXTERNAL-IP-LOCAL", "hash:ip,port"),
        ("KUBE-LOAD-BALANCER", "hash:ip,port"),
        ("KUBE-LOAD-BALANCER-FW", "hash:ip,port"),
        ("KUBE-LOAD-BALANCER-LOCAL", "hash:ip,port"),
        ("KUBE-LOAD-BALANCER-SOURCE-IP", "hash:ip,port,ip"),
        ("KUBE-LOAD-BALANCER-SOURCE-CIDR", "hash:ip,port,net"),
        ("KUBE-NODE-PORT-TCP", "bitmap:port"),
        ("KUBE-NODE-PORT-LOCAL-TCP", "bitmap:port"),
        ("KUBE-NODE-PORT-UDP", "bitmap:port"),
        ("KUBE-NODE-PORT-LOCAL-UDP", "bitmap:port"),
        ("KUBE-NODE-PORT-SCTP-HASH", "hash:ip,port"),
        ("KUBE-NODE-PORT-LOCAL-SCTP-HASH", "hash:ip,port"),
        ("KUBE-HEALTH-CHECK-NODE-PORT", "bitmap:port"),
        ("KUBE-IPVS-IPS", "hash:ip"),
    ] {
        let options = if kind.starts_with("bitmap") {
            "range 0-65535"
        } else {
            hash
        };
        let _ = writeln!(text, "create {name} {kind} {options}");
    }
    for (set, entry) in elements.ipset_entries() {
        let _ = writeln!(text, "add {set} {entry}");
    }
    text
}

const MASQ_MARK: &str = "0x004000";

/// kube-proxy's IPVS-mode `iptables-restore` input for this cluster
/// (`writeIptablesRules`: sets non-empty here are KUBE-CLUSTER-IP,
/// KUBE-NODE-PORT-TCP, KUBE-LOOP-BACK, KUBE-IPVS-IPS). `jumps`: also the
/// rules from the built-in chains (kube-proxy adds those with `iptables
/// -I` on its first sync; a restore with `--noflush` would duplicate them
/// afterwards).
fn iptables_restore_text(jumps: bool) -> String {
    let mut text = String::from("*nat\n");
    for chain in [
        "KUBE-SERVICES",
        "KUBE-POSTROUTING",
        "KUBE-NODE-PORT",
        "KUBE-LOAD-BALANCER",
        "KUBE-MARK-MASQ",
    ] {
        let _ = writeln!(text, ":{chain} - [0:0]");
    }
    if jumps {
        text.push_str(
            "-I OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             -I PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             -I POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n",
        );
    }
    let _ = write!(
        text,
        "-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN\n\
         -A KUBE-POSTROUTING -m comment --comment \"Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose\" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE\n\
         -A KUBE-NODE-PORT -p tcp -m comment --comment \"Kubernetes nodeport TCP port for masquerade purpose\" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ\n\
         -A KUBE-SERVICES -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ\n\
         -A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT\n\
         -A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ\n\
         -A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT\n\
         -A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}\n\
         COMMIT\n*filter\n"
    );
    for chain in [
        "KUBE-FORWARD",
        "KUBE-NODE-PORT",
        "KUBE-PROXY-FIREWALL",
        "KUBE-SOURCE-RANGES-FIREWALL",
        "KUBE-IPVS-FILTER",
        "KUBE-IPVS-OUT-FILTER",
    ] {
        let _ = writeln!(text, ":{chain} - [0:0]");
    }
    if jumps {
        for (from, comment, to) in JUMPS.iter().filter(|jump| jump.0 != "nat") {
            let _ = writeln!(text, "-I {from} -m comment --comment \"{comment}\" -j {to}");
        }
    }
    let _ = write!(
        text,
        "-A KUBE-SOURCE-RANGES-FIREWALL -j DROP\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A KUBE-NODE-PORT -m comment --comment \"Kubernetes health check node port\" -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT\n\
         -A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER dst,dst -j RETURN\n\
         -A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN\n\
         -A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP dst,dst -j RETURN\n\
         -A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -j RETURN\n\
         -A KUBE-IPVS-FILTER -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j RETURN\n\
         -A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT\n\
         COMMIT\n"
    );
    text
}

/// kube-proxy's `iptablesJumpChain` rows in the filter table (built-in
/// chain, comment, target); the nat ones are written in the restore text.
const JUMPS: [(&str, &str, &str); 6] = [
    ("FORWARD", "kubernetes forwarding rules", "KUBE-FORWARD"),
    ("INPUT", "kubernetes health check rules", "KUBE-NODE-PORT"),
    ("INPUT", "kube-proxy firewall rules", "KUBE-PROXY-FIREWALL"),
    (
        "FORWARD",
        "kube-proxy firewall rules",
        "KUBE-PROXY-FIREWALL",
    ),
    ("INPUT", "kubernetes ipvs access filter", "KUBE-IPVS-FILTER"),
    (
        "OUTPUT",
        "kubernetes ipvs access filter",
        "KUBE-IPVS-OUT-FILTER",
    ),
];

/// What kube-proxy's `createAndLinkKubeChain` runs on every sync: one
/// `iptables -N` per chain (already there: exit 1 is fine) and one
/// `iptables -C` per jump rule. Returns the time in milliseconds.
fn ensure_chains_ms(iptables: &str) -> f64 {
    let start = Instant::now();
    let nat = [
        "KUBE-SERVICES",
        "KUBE-POSTROUTING",
        "KUBE-NODE-PORT",
        "KUBE-LOAD-BALANCER",
        "KUBE-MARK-MASQ",
    ];
    let filter = [
        "KUBE-FORWARD",
        "KUBE-NODE-PORT",
        "KUBE-PROXY-FIREWALL",
        "KUBE-SOURCE-RANGES-FIREWALL",
        "KUBE-IPVS-FILTER",
        "KUBE-IPVS-OUT-FILTER",
    ];
    for (table, chain) in nat
        .iter()
        .map(|c| ("nat", c))
        .chain(filter.iter().map(|c| ("filter", c)))
    {
        let _ = run(&[iptables, "-w", "-t", table, "-N", chain]);
    }
    let nat_jumps = [
        ("OUTPUT", "kubernetes service portals", "KUBE-SERVICES"),
        ("PREROUTING", "kubernetes service portals", "KUBE-SERVICES"),
        (
            "POSTROUTING",
            "kubernetes postrouting rules",
            "KUBE-POSTROUTING",
        ),
    ];
    for (table, (from, comment, to)) in nat_jumps
        .iter()
        .map(|j| ("nat", j))
        .chain(JUMPS.iter().map(|j| ("filter", j)))
    {
        let output = run(&[
            iptables,
            "-w",
            "-t",
            table,
            "-C",
            from,
            "-m",
            "comment",
            "--comment",
            comment,
            "-j",
            to,
        ]);
        assert!(
            output.status.success(),
            "{iptables} -C {from} ... -j {to}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    start.elapsed().as_secs_f64() * 1e3
}

/// Baseline A with one iptables backend (`nft` or `legacy`).
fn measure_kube_proxy(work: &Path, services: usize, backend: &str, rounds: usize) {
    let restore = format!("iptables-{backend}-restore");
    let iptables = format!("iptables-{backend}");
    let sets = work.join("kube-proxy.ipset");
    let initial = work.join("kube-proxy-initial.rules");
    let rules = work.join("kube-proxy.rules");
    std::fs::write(&sets, ipset_restore_text(&Elements::of_cluster(services))).expect("write");
    std::fs::write(&initial, iptables_restore_text(true)).expect("write");
    std::fs::write(&rules, iptables_restore_text(false)).expect("write");
    let restore_args = [restore.as_str(), "-w", "5", "--noflush", "--counters"];
    let ipset_ms = timed_ms(
        &["ipset", "restore", "-f", &sets.display().to_string()],
        None,
    );
    let iptables_ms = timed_ms(&restore_args, Some(&initial));
    result(&format!("kp_{backend}_initial_ipset_ms"), ipset_ms);
    result(&format!("kp_{backend}_initial_iptables_ms"), iptables_ms);
    result(&format!("kp_{backend}_initial_ms"), ipset_ms + iptables_ms);
    if rounds == 0 {
        return;
    }
    let entries = Elements::of_extra().ipset_entries();
    for _ in 0..rounds {
        for (verb, what) in [("add", "add"), ("del", "remove")] {
            let mut execs = 0.0;
            for (set, entry) in &entries {
                let ms = timed_ms(&["ipset", verb, set, entry, "-exist"], None);
                result("kp_one_ipset_process_ms", ms);
                execs += ms;
            }
            let restored = timed_ms(&restore_args, Some(&rules));
            result(&format!("kp_{backend}_{what}_ipset_ms"), execs);
            result(&format!("kp_{backend}_{what}_iptables_ms"), restored);
            result(&format!("kp_{backend}_{what}_ms"), execs + restored);
            result(
                &format!("kp_{backend}_{what}_ensure_chains_ms"),
                ensure_chains_ms(&iptables),
            );
        }
    }
    // The restore must have left kube-proxy's rules, once each.
    let saved = run_ok(&[&format!("iptables-{backend}-save"), "-t", "nat"]);
    assert_eq!(saved.matches("-j KUBE-MARK-MASQ").count(), 3, "{saved}");
    assert_eq!(saved.matches("-A PREROUTING").count(), 1, "{saved}");
}

/// Runs `datapath-bench --measure ARGS...` in a fresh network namespace
/// with loopback up; returns its RESULT lines.
fn in_fresh_namespace(args: &[&str]) -> Vec<(String, String)> {
    let namespace = format!("datapath-bench-{}-{}", std::process::id(), args[0]);
    let ok = |output: std::process::Output| output.status.success();
    assert!(ok(run(&["ip", "netns", "add", &namespace])));
    assert!(ok(run(&[
        "ip", "netns", "exec", &namespace, "ip", "link", "set", "lo", "up"
    ])));
    let output = Command::new("ip")
        .args(["netns", "exec", &namespace])
        .arg(std::env::current_exe().expect("own path"))
        .arg("--measure")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run a measurement");
    // Empty the big tables before the namespace goes, so that their
    // teardown does not run beside the next measurement.
    for cleanup in [
        vec!["ipvsadm", "-C"],
        vec!["ip", "link", "del", "kube-ipvs0"],
        vec!["nft", "flush", "ruleset"],
    ] {
        let _ = Command::new("ip")
            .args(["netns", "exec", &namespace])
            .args(&cleanup)
            .stderr(Stdio::null())
            .status();
    }
    let _ = run(&["ip", "netns", "delete", &namespace]);
    std::thread::sleep(Duration::from_secs(3));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    print!("{text}");
    assert!(
        output.status.success(),
        "the {} measurement failed",
        args.join(" ")
    );
    text.lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("RESULT ")?.splitn(2, ' ');
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let number = |text: &str| -> usize { text.parse().unwrap_or_else(|_| panic!("{USAGE}")) };
    if words.first() == Some(&"--measure") {
        match words[1..] {
            ["agent", work, rounds] => measure_agent(Path::new(work), number(rounds)),
            ["table", work] => measure_table(Path::new(work)),
            ["floor", work, services, rounds] => {
                measure_floor(Path::new(work), number(services), number(rounds))
            }
            ["kube-proxy", work, services, backend, rounds] => {
                measure_kube_proxy(Path::new(work), number(services), backend, number(rounds))
            }
            _ => panic!("{USAGE}"),
        }
        return;
    }
    let (services, rounds) = match words.as_slice() {
        [] => (20_000, 3),
        [s] => (number(s), 3),
        [s, r] => (number(s), number(r)),
        _ => panic!("{USAGE}"),
    };
    assert!(
        services / 10 + FIRST_NODE_PORT < usize::from(EXTRA_NODE_PORT),
        "at most 27,000 Services (their NodePorts)"
    );
    let work: PathBuf = std::env::temp_dir().join(format!("datapath-bench-{}", std::process::id()));
    std::fs::create_dir_all(work.join("manifests")).expect("a work folder");
    std::fs::write(
        work.join("manifests").join("cluster.yaml"),
        cluster_manifests(services),
    )
    .expect("write the cluster");
    let elements = Elements::of_cluster(services);
    println!(
        "cluster: {services} Services x {ENDPOINTS} endpoints over {NODES} nodes; expected set \
         elements: cluster-ips {}, vips {}, node-ports {}, hairpin {} = {} (kube-proxy's entries \
         the same, per set); kernel {}; {}; {}",
        elements.cluster_ips.len(),
        elements.vips.len(),
        elements.node_ports.len(),
        elements.hairpin.len(),
        elements.total(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        run_ok(&["nft", "--version"]).trim(),
        run_ok(&["iptables-restore", "--version"]).trim(),
    );
    let backends: Vec<&str> = ["nft", "legacy"]
        .into_iter()
        .filter(|backend| {
            // Usable here: the nat table can be listed in a new namespace.
            Command::new("unshare")
                .args([
                    "-n",
                    &format!("iptables-{backend}"),
                    "-t",
                    "nat",
                    "-L",
                    "-n",
                ])
                .output()
                .is_ok_and(|output| output.status.success())
        })
        .collect();
    let work_arg = work.display().to_string();
    let services_arg = services.to_string();
    let rounds_arg = rounds.to_string();
    let mut results: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut collect = |lines: Vec<(String, String)>| {
        for (key, value) in lines {
            if let Ok(value) = value.parse::<f64>() {
                results.entry(key).or_default().push(value);
            }
        }
    };
    collect(in_fresh_namespace(&["table", &work_arg]));
    // Rounds rotate over the measurements; the incremental cycles run in
    // the first round only (each is `rounds` cycles).
    for round in 0..rounds {
        let cycles = if round == 0 { rounds_arg.as_str() } else { "0" };
        let mut order: Vec<Vec<&str>> = vec![vec!["agent", &work_arg, cycles]];
        order.push(vec!["floor", &work_arg, &services_arg, cycles]);
        // kube-proxy's initial load is measured in the first round only:
        // its `ipset restore` took about 13 ms per entry in the guest
        // (9.4 minutes for 44,000), the one figure not worth repeating.
        for backend in backends.iter().filter(|_| round == 0) {
            order.push(vec![
                "kube-proxy",
                &work_arg,
                &services_arg,
                backend,
                cycles,
            ]);
        }
        let length = order.len();
        order.rotate_left(round % length);
        for args in order {
            collect(in_fresh_namespace(&args));
        }
    }
    let value = |key: &str| -> f64 { median(&mut results.get(key).cloned().unwrap_or_default()) };
    let agent_initial = value("agent_initial_netfilter_ms");
    let floor_initial = value("floor_initial_ms");
    println!(
        "SUMMARY initial sync ({} elements; agent nft_elements_added {}): agent netfilter_ms \
         {agent_initial:.1} | floor (one nft -f of the whole table) {floor_initial:.1} ms = {:.2}x",
        elements.total(),
        value("agent_initial_nft_elements_added"),
        agent_initial / floor_initial,
    );
    for backend in &backends {
        let initial = value(&format!("kp_{backend}_initial_ms"));
        println!(
            "SUMMARY initial sync, kube-proxy (iptables-{backend}): ipset restore {:.1} + \
             iptables-restore {:.1} = {initial:.1} ms; agent {:.2}x faster",
            value(&format!("kp_{backend}_initial_ipset_ms")),
            value(&format!("kp_{backend}_initial_iptables_ms")),
            initial / agent_initial,
        );
    }
    for what in ["add", "remove"] {
        let agent = value(&format!("agent_{what}_netfilter_ms"));
        let floor = value(&format!("floor_{what}_ms"));
        let mut line = format!(
            "SUMMARY one Service {what}: agent netfilter_ms {agent:.2} | floor {floor:.2} ms = {:.2}x",
            agent / floor
        );
        for backend in &backends {
            let kube_proxy = value(&format!("kp_{backend}_{what}_ms"));
            let _ = write!(
                line,
                " | kube-proxy (iptables-{backend}) {kube_proxy:.2} ms (ipset {:.2} + iptables-restore \
                 {:.2}; + {:.2} ms of per-sync iptables -N/-C) = agent {:.1}x faster",
                value(&format!("kp_{backend}_{what}_ipset_ms")),
                value(&format!("kp_{backend}_{what}_iptables_ms")),
                value(&format!("kp_{backend}_{what}_ensure_chains_ms")),
                kube_proxy / agent,
            );
        }
        println!("{line}");
    }
    println!(
        "SUMMARY endpoint change that changes no set: agent nft_transactions {} (all {} samples: \
         max {}), netfilter_ms {:.3}",
        value("agent_endpoint_nft_transactions"),
        results
            .get("agent_endpoint_nft_transactions")
            .map_or(0, Vec::len),
        results
            .get("agent_endpoint_nft_transactions")
            .and_then(|values| values.iter().copied().reduce(f64::max))
            .unwrap_or(f64::NAN),
        value("agent_endpoint_netfilter_ms"),
    );
    println!(
        "SUMMARY kube-proxy's own initial way (one ipset add process per entry, as its sync \
         does): {} processes x {:.2} ms (median one process) = {:.1} s, estimated",
        elements.total(),
        value("kp_one_ipset_process_ms"),
        elements.total() as f64 * value("kp_one_ipset_process_ms") / 1e3,
    );
    let _ = std::fs::remove_dir_all(&work);
}
