//! The fault matrix (issue 15) on the two-node cluster
//! (`integration::cluster`), each fault made while a client loop runs:
//! connections from node1 itself to the ClusterIP of `two` (its only pod,
//! web-2, is on node2: the node's own traffic needs the IPVS virtual
//! server, the VIP on `kube-ipvs0` and the agent's masquerade) and from
//! `outside` to node1's NodePort 30080 (the same pod, through a node
//! without it: the NodePort virtual server and the masquerade), in turn.
//! Each test states its bound and prints its figures (`faults: ...`
//! lines, the table in RELIABILITY.md):
//!
//! - someone else changes the node under the agent (`ipvsadm -C`, a real
//!   server deleted, a VIP removed, `kube-ipvs0` deleted, `nft flush
//!   ruleset`): the node's state is back as it was within one resync
//!   (`--ipvs-sync-period`, [`SYNC_PERIOD`] here) plus the sync's own time,
//!   and connections fail only inside that window;
//! - the agent killed with SIGKILL in a steady state and started again:
//!   no connection fails, and its first sync sends no IPVS message;
//! - the kernel refusing one virtual server in the middle of a batch (an
//!   unknown scheduler): the rest applied, the refusal reported with the
//!   Service's name, retried at every resync, the view true (the retries
//!   send only the refused message), and applied once the Service is
//!   fixed.
//!
//! kill -9 in the middle of a large sync is `agent_kubernetes.rs`'s
//! `kill_during_a_large_sync_and_restart_without_failed_connections`; a
//! receive buffer overrun (ENOBUFS) is `client_operations.rs`'s
//! `receive_buffer_overrun_reports_no_false_success`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use integration::agent::{parse_sync_line, SyncLine};
use integration::cluster::{
    exec_in, run_in, shared, Answer, Cluster, Node, Protocol, CLUSTER_CIDR, OUTSIDE,
};
use integration::example;

/// The agents' resync period: the repair bound.
const SYNC_PERIOD: Duration = Duration::from_secs(10);

/// What a resync may take on top of the period under emulation (reading
/// the table, one nft transaction, re-adding a link): generous.
const SYNC_MARGIN: Duration = Duration::from_secs(10);

/// Per step (connect, each receive) of one request.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The client loop's pause between two connections.
const PAUSE: Duration = Duration::from_millis(100);

const NODE1: &str = "192.168.50.11";

/// The loop's two targets, in turn: (from, address, port); both answered
/// by web-2 seeing node1's address.
const TARGETS: [(&str, &str, u16); 2] = [("node1", "10.96.0.12", 80), (OUTSIDE, NODE1, 30080)];

fn cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    shared(&CLUSTER, build)
}

fn build() -> Cluster {
    let mut cluster = Cluster::create();
    let hostname = std::fs::read_to_string(example("hostname.yaml")).expect("read hostname.yaml");
    cluster.write_manifest("hostname.yaml", &hostname);
    cluster.write_manifest("services.yaml", include_str!("two_node/services.yaml"));
    let period = format!("{}s", SYNC_PERIOD.as_secs());
    cluster.spawn_agents(&[
        "--cluster-cidr",
        CLUSTER_CIDR,
        "--ipvs-sync-period",
        &period,
    ]);
    let web2 = cluster.add_pod(Node::Two, "web-2", "10.244.2.20");
    cluster.serve(&web2.name, &web2.name, Protocol::Tcp, 8080);
    cluster.add_hostname_pods();
    cluster.start_servers();
    cluster.wait_for_agents();
    cluster
}

/// node1's state as an operator would compare it: `ipvsadm -Sn` (sorted),
/// the addresses on `kube-ipvs0`, and the agent's nftables table (its
/// words sorted: set elements may list in another order after a rewrite;
/// counters dropped).
fn node1_state() -> (Vec<String>, BTreeSet<String>, Vec<String>) {
    let mut ipvs: Vec<String> = run_in("node1", &["ipvsadm", "-Sn"])
        .lines()
        .map(str::to_owned)
        .collect();
    ipvs.sort();
    let addresses = exec_in("node1", &["ip", "-o", "addr", "show", "dev", "kube-ipvs0"]);
    let addresses: BTreeSet<String> = String::from_utf8_lossy(&addresses.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|word| *word == "inet" || *word == "inet6")?;
            words.next().map(str::to_owned)
        })
        .collect();
    let table = exec_in("node1", &["nft", "list", "table", "ip", "ipvs-agent"]);
    let text = String::from_utf8_lossy(&table.stdout);
    let mut words: Vec<String> = Vec::new();
    let mut tokens = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|word| !word.is_empty());
    while let Some(word) = tokens.next() {
        if word == "packets" || word == "bytes" {
            tokens.next();
        } else {
            words.push(word.to_owned());
        }
    }
    words.sort();
    (ipvs, addresses, words)
}

/// One connection of the loop.
struct Probe {
    at: Instant,
    target: (&'static str, &'static str, u16),
    result: Result<(), String>,
}

fn probe(cluster: &Cluster, target: (&'static str, &'static str, u16)) -> Probe {
    let at = Instant::now();
    let (from, address, port) = target;
    let result = match cluster.tcp(from, address, port, TIMEOUT) {
        Ok(answer) if answer == Answer::new("web-2", NODE1) => Ok(()),
        Ok(answer) => Err(format!("answered by {answer}")),
        Err(error) => Err(error),
    };
    Probe { at, target, result }
}

/// Runs the client loop from before `fault` until `settled` (polled in the
/// loop's thread's stead, every 200 ms, after `fault`) returns true, and
/// 3 s more; returns the probes, when the fault was made and when
/// `settled` first held (None: not within `bound` after the fault).
fn under_client_loop(
    cluster: &Cluster,
    fault: impl FnOnce(),
    settled: impl Fn() -> bool,
    bound: Duration,
) -> (Vec<Probe>, Instant, Option<Instant>) {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let client_loop = scope.spawn(|| {
            let mut probes = Vec::new();
            let deadline = Instant::now() + bound + Duration::from_secs(60);
            let mut turn = 0;
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                probes.push(probe(cluster, TARGETS[turn % TARGETS.len()]));
                turn += 1;
                std::thread::sleep(PAUSE);
            }
            probes
        });
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let (made, settled_at) = {
            let _done = Done(&done);
            std::thread::sleep(Duration::from_secs(3));
            let made = Instant::now();
            fault();
            let settled_at = loop {
                if settled() {
                    break Some(Instant::now());
                }
                if made.elapsed() > bound {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            std::thread::sleep(Duration::from_secs(3));
            (made, settled_at)
        };
        let probes = client_loop.join().expect("the client loop panicked");
        (probes, made, settled_at)
    })
}

/// The figures of one fault, printed and checked: no failure before the
/// fault, repaired within `bound`, failures only between the fault and
/// the repair (plus one request's time), every connection after answered.
fn check_fault(
    cluster: &Cluster,
    name: &str,
    (probes, made, repaired): (Vec<Probe>, Instant, Option<Instant>),
    bound: Duration,
) {
    let at = |instant: Instant| {
        if instant >= made {
            instant.duration_since(made).as_secs_f64()
        } else {
            -made.duration_since(instant).as_secs_f64()
        }
    };
    let failed: Vec<&Probe> = probes.iter().filter(|p| p.result.is_err()).collect();
    let window = match (failed.first(), failed.last()) {
        (Some(first), Some(last)) => format!("{:+.2} to {:+.2} s", at(first.at), at(last.at)),
        _ => "none".to_owned(),
    };
    let figures = format!(
        "faults: {name}: {} connections, {} failed (window {window}), repaired in {} (bound {} s)",
        probes.len(),
        failed.len(),
        repaired
            .map(|r| format!("{:.2} s", at(r)))
            .unwrap_or_else(|| "NOT".to_owned()),
        bound.as_secs()
    );
    eprintln!("{figures}");
    let details = || {
        failed
            .iter()
            .map(|p| {
                format!(
                    "  {:+.2} s {} -> {}:{}: {}",
                    at(p.at),
                    p.target.0,
                    p.target.1,
                    p.target.2,
                    p.result.as_ref().unwrap_err()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let Some(repaired) = repaired else {
        panic!(
            "{figures}\nnode1's state is not back; now: {:?}\n{}",
            node1_state(),
            cluster.agent_logs()
        );
    };
    assert!(
        probes.iter().any(|p| p.at < made) && probes.iter().any(|p| p.at > repaired),
        "{figures}: the loop must span the fault and the repair"
    );
    // A connection started just before the repair may still fail: one
    // request's time of slack (connect + receive).
    let slack = TIMEOUT * 2 + Duration::from_millis(500);
    let outside: Vec<&&Probe> = failed
        .iter()
        .filter(|p| p.at < made || p.at > repaired + slack)
        .collect();
    assert!(
        outside.is_empty(),
        "{figures}: connections failed outside the fault's window:\n{}\n{}",
        details(),
        cluster.agent_logs()
    );
}

/// Makes `fault` on node1 under the client loop and checks that node1's
/// state comes back as it was within one resync.
fn fault_is_repaired_within_one_resync(name: &str, fault: &[&[&str]]) {
    let cluster = cluster();
    let before = node1_state();
    assert!(
        !before.0.is_empty() && !before.1.is_empty() && !before.2.is_empty(),
        "node1 is programmed before the fault: {before:?}"
    );
    let bound = SYNC_PERIOD + SYNC_MARGIN;
    let outcome = under_client_loop(
        &cluster,
        || {
            for argv in fault {
                run_in("node1", argv);
            }
        },
        || node1_state() == before,
        bound,
    );
    check_fault(&cluster, name, outcome, bound);
}

#[test]
fn ipvsadm_clear_is_repaired_within_one_resync() {
    fault_is_repaired_within_one_resync("ipvsadm -C", &[&["ipvsadm", "-C"]]);
}

#[test]
fn deleted_real_server_is_repaired_within_one_resync() {
    fault_is_repaired_within_one_resync(
        "real server deleted",
        &[
            &[
                "ipvsadm",
                "-d",
                "-t",
                "10.96.0.12:80",
                "-r",
                "10.244.2.20:8080",
            ],
            &[
                "ipvsadm",
                "-d",
                "-t",
                "192.168.50.11:30080",
                "-r",
                "10.244.2.20:8080",
            ],
        ],
    );
}

#[test]
fn removed_vip_is_repaired_within_one_resync() {
    fault_is_repaired_within_one_resync(
        "VIP removed",
        &[&["ip", "addr", "del", "10.96.0.12/32", "dev", "kube-ipvs0"]],
    );
}

#[test]
fn deleted_kube_ipvs0_is_repaired_within_one_resync() {
    fault_is_repaired_within_one_resync(
        "kube-ipvs0 deleted",
        &[&["ip", "link", "del", "kube-ipvs0"]],
    );
}

#[test]
fn flushed_ruleset_is_repaired_within_one_resync() {
    fault_is_repaired_within_one_resync("nft flush ruleset", &[&["nft", "flush", "ruleset"]]);
}

/// node1's agent killed with SIGKILL in a steady state and started again
/// at once: the kernel keeps forwarding meanwhile (the tables are the
/// kernel's), no connection fails, and the new agent adopts the table: its
/// first sync sends no IPVS message.
#[test]
fn kill_9_in_a_steady_state_drops_no_connection() {
    let mut cluster = cluster();
    let before = node1_state();
    let mut agents = std::mem::take(&mut cluster.agents);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let node1 = agents
            .iter_mut()
            .find(|agent| agent.node == Node::One)
            .expect("node1 has an agent");
        let offset = std::cell::Cell::new(0);
        let log = node1.log.clone();
        let first_sync = || {
            let text = std::fs::read(&log).unwrap_or_default();
            String::from_utf8_lossy(text.get(offset.get()..).unwrap_or_default())
                .lines()
                .find(|line| line.contains(" synced"))
                .map(str::to_owned)
        };
        let node1 = std::cell::RefCell::new(node1);
        let bound = Duration::from_secs(90);
        let outcome = under_client_loop(
            &cluster,
            || {
                let mut node1 = node1.borrow_mut();
                node1.kill();
                offset.set(node1.respawn());
            },
            || first_sync().is_some() || !node1.borrow_mut().is_running(),
            bound,
        );
        let running = node1.borrow_mut().is_running();
        (outcome, first_sync(), running)
    }));
    cluster.agents = agents;
    let ((probes, made, synced), first_sync, running) =
        outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let failed = probes.iter().filter(|p| p.result.is_err()).count();
    let (Some(synced), true) = (synced, first_sync.is_some()) else {
        panic!(
            "the restarted agent made no sync within 90 s (running: {running})\n{}",
            cluster.agent_logs()
        );
    };
    let first_sync = first_sync.expect("a first sync line");
    eprintln!(
        "faults: kill -9 in a steady state: {} connections, {failed} failed, first sync {:.2} s \
         after the kill: {first_sync}",
        probes.len(),
        synced.duration_since(made).as_secs_f64()
    );
    assert_eq!(
        failed,
        0,
        "connections failed across kill -9 and restart:\n{}",
        probes
            .iter()
            .filter_map(|p| p.result.as_ref().err())
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        first_sync.contains(" writes=0 "),
        "the restarted agent adopts the table (no IPVS write): {first_sync}"
    );
    assert_eq!(node1_state(), before, "node1's state after the restart");
}

/// Services of the refusal test: `refused-0` with a scheduler the kernel
/// does not have, `fine-1` .. `fine-N` beside it (one manifest file: one
/// batch).
fn refusal_manifest(scheduler: &str, fine: usize) -> String {
    let mut text = String::new();
    let service = |name: &str, ip: &str, annotations: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default{annotations}}}\n\
             spec:\n  clusterIP: {ip}\n  ports:\n  - {{name: http, protocol: TCP, port: 80, targetPort: 9376}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-x\n  namespace: default\n  \
             labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports:\n- {{name: http, protocol: TCP, port: 9376}}\n\
             endpoints:\n- addresses: [\"10.244.2.53\"]\n  conditions: {{ready: true}}\n  nodeName: node2\n---\n"
        )
    };
    text.push_str(&service(
        "refused-0",
        "10.96.7.100",
        &format!(", annotations: {{ipvs-agent.io/scheduler: {scheduler}}}"),
    ));
    for index in 1..=fine {
        text.push_str(&service(
            &format!("fine-{index}"),
            &format!("10.96.7.{index}"),
            "",
        ));
    }
    text
}

/// Whether node1 has a virtual server at `address:80`.
fn has_virtual_server(address: &str) -> bool {
    exec_in("node1", &["ipvsadm", "-Ln", "-t", &format!("{address}:80")])
        .status
        .success()
}

/// The `synced` lines of node1's agent after the first `skip`.
fn synced_lines(cluster: &Cluster, skip: usize) -> Vec<SyncLine> {
    cluster.agents[0]
        .log_text()
        .lines()
        .filter_map(parse_sync_line)
        .skip(skip)
        .collect()
}

/// One Service with an unknown scheduler among 40 new ones: the kernel
/// refuses its virtual server (ENOENT) in the middle of the batch, the
/// other 40 are applied, the refusal is logged with the Service's name
/// and the errno, retried at each resync (sending only that message: the
/// agent's view of the rest stays true), and applied once the Service's
/// annotation is fixed. Its VIP and the others' traffic are unaffected.
#[test]
fn kernel_refusal_in_the_middle_of_a_batch_leaves_the_rest_applied() {
    const FINE: usize = 40;
    let cluster = cluster();
    assert_eq!(cluster.agents[0].node, Node::One);
    let skip = synced_lines(&cluster, 0).len();
    let started = Instant::now();
    /// Removes the test's manifest however the test ends: the other
    /// tests share the cluster.
    struct RemoveOnDrop(std::path::PathBuf);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let file = RemoveOnDrop(cluster.manifests().join("refusal.yaml"));
    cluster.write_manifest("refusal.yaml", &refusal_manifest("nosuchsched", FINE));
    let deadline = Instant::now() + SYNC_PERIOD * 2 + SYNC_MARGIN;
    // Two syncs after the change (the change's and a resync): the refused
    // one is retried.
    let lines = loop {
        let lines: Vec<SyncLine> = synced_lines(&cluster, skip)
            .into_iter()
            .filter(|line| line.count("failed") == 1)
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "no two syncs with failed=1 after the refusal manifest:\n{}",
            cluster.agent_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let applied = (1..=FINE)
        .filter(|index| has_virtual_server(&format!("10.96.7.{index}")))
        .count();
    let log = cluster.agents[0].log_text();
    let refusal = log
        .lines()
        .find(|line| line.contains("kernel refused") && line.contains("default/refused-0"))
        .map(str::to_owned);
    eprintln!(
        "faults: kernel refusal mid-batch: {applied}/{FINE} beside it applied, refused one \
         retried ({} syncs with failed=1 in {:.1} s); log: {refusal:?}",
        lines.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(applied, FINE, "the rest of the batch is applied");
    assert!(
        !has_virtual_server("10.96.7.100"),
        "the refused one is absent"
    );
    let refusal = refusal
        .unwrap_or_else(|| panic!("no `kernel refused` line naming default/refused-0:\n{log}"));
    assert!(
        refusal.contains("No such file or directory") || refusal.contains("ENOENT"),
        "the refusal gives the kernel's answer: {refusal}"
    );
    // The retry sends only the refused virtual server and its real server
    // (which the kernel answers "no such service"), once: nothing else is
    // re-sent, nothing deleted, nothing re-read.
    let retry = &lines[1];
    assert!(
        retry.count("add_service") == 1
            && retry.writes() == 2
            && retry.count("reread") == 0
            && retry.count("delete_service") == 0
            && retry.count("delete_real_server") == 0,
        "a resync retries only the refused virtual server: {retry:?}"
    );
    let probe = probe(&cluster, TARGETS[0]);
    assert!(
        probe.result.is_ok(),
        "traffic beside it: {:?}",
        probe.result
    );

    // Fixed: applied at the next sync.
    cluster.write_manifest("refusal.yaml", &refusal_manifest("rr", FINE));
    integration::node::wait_until(
        "the fixed Service's virtual server",
        SYNC_PERIOD + SYNC_MARGIN,
        || has_virtual_server("10.96.7.100").then_some(()),
        || cluster.agent_logs(),
    );
    // Leaves the cluster as it was for the other tests.
    drop(file);
    integration::node::wait_until(
        "the refusal test's virtual servers removed",
        SYNC_PERIOD + SYNC_MARGIN,
        || (!has_virtual_server("10.96.7.1") && !has_virtual_server("10.96.7.100")).then_some(()),
        || cluster.agent_logs(),
    );
}
