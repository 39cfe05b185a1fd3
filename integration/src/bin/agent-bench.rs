//! The agent's benchmark suite (issue 6), run inside the real-kernel guest
//! in one go; every figure beside a baseline measured in the same run.
//!
//! `agent-bench [SERVICES] [ENDPOINTS] [--resyncs N] [--changes N]`
//! (default 20,000 × 10, 10 resyncs, 100 changes), as root in a
//! kernel with IPVS, with the release `ipvs-agent` and `kube-standin` built
//! beside it. One cluster of SERVICES ClusterIP Services with ENDPOINTS
//! ready endpoints each is written as manifests; `ipvs-agent plan` gives
//! the identical table as `ipvsadm -Sn` rules. Then, each in a fresh
//! network namespace (a cold, empty IPVS table):
//!
//! - **P1 initial sync**: `ipvsadm -R` of the rules; a raw burst of the
//!   same operations, pre-encoded (the kernel's floor); the agent started
//!   against the API stand-in holding the cluster, from process start to
//!   its first `synced` line (and the sync's own duration), its table then
//!   checked equal to the rules.
//! - **P4 memory**: the agent's peak RSS (`VmHWM`) holding that cluster.
//! - **P3 steady state**: `--resyncs` periodic full resyncs without a
//!   change (their write messages must be 0; each is a full drift audit:
//!   dump, diff), against `ipvsadm -Ln` of the same table and `nft list`
//!   of the agent's nftables table.
//! - **P2 one change**: the agent restarted (adoption: 0 writes), then
//!   `--changes` single-endpoint changes through the API (one added, one removed, in
//!   turn): messages per change (must be 1) and the event-to-kernel-ACK
//!   time p50/p99, beside the time of one `ipvsadm -a` / `-d` process.
//!
//! Prints one `RESULT` line per figure and a summary.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use integration::agent::{agent_binary, status_kib, Agent};
use integration::bulk::{many_services, service_slice};
use integration::raw::{timed_raw_burst, timed_raw_dumps};
use integration::standin::Standin;
use integration::{connect, ipvsadm, ipvsadm_restore};
use netlink_ipvs::{
    IpvsBatchOptions, IpvsDestination, IpvsForwardingMethod, IpvsOperation, IpvsService,
    IpvsServiceKey,
};

const USAGE: &str = "usage: agent-bench [SERVICES] [ENDPOINTS] [--resyncs N] [--changes N]";
const WAIT: Duration = Duration::from_secs(1800);
/// The phases a `synced` line times, each reported per sync.
const PHASES: [&str; 5] = [
    "read_ms",
    "compute_ms",
    "apply_ms",
    "addresses_ms",
    "netfilter_ms",
];

fn median(values: &mut [f64]) -> f64 {
    percentile(values, 0.5)
}

fn percentile(values: &mut [f64], at: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * at).round() as usize;
    values[index.min(values.len() - 1)]
}

/// `-A -t A:P -s rr` / `-a -t A:P -r R:Q -m -w 1` rules (what `plan
/// --output save` prints for this cluster) as operations.
fn operations_of(rules: &str) -> Vec<IpvsOperation> {
    let key_of = |text: &str| -> IpvsServiceKey {
        let address: std::net::SocketAddr = text.parse().expect("a virtual server address");
        IpvsServiceKey::tcp(address.ip(), address.port())
    };
    rules
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["-A", "-t", service, "-s", scheduler] => {
                    IpvsOperation::AddService(IpvsService::new(key_of(service), *scheduler))
                }
                ["-a", "-t", service, "-r", real, "-m", "-w", weight] => {
                    let real: std::net::SocketAddr = real.parse().expect("a real server");
                    IpvsOperation::AddDestination(
                        key_of(service),
                        IpvsDestination::new(
                            real.ip(),
                            real.port(),
                            IpvsForwardingMethod::Masquerade,
                            weight.parse().expect("a weight"),
                        ),
                    )
                }
                _ => panic!("unexpected rule {line:?}"),
            }
        })
        .collect()
}

fn result(key: &str, value: impl std::fmt::Display) {
    println!("RESULT {key} {value}");
}

/// Wall time of one command, which must succeed.
fn timed(argv: &[&str]) -> f64 {
    let start = Instant::now();
    let output = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .expect("run a command");
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "{}: {}",
        argv.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

/// `ipvsadm -R` of the rules, in this (fresh) namespace.
fn measure_restore(rules: &str) {
    let start = Instant::now();
    ipvsadm_restore(rules);
    result("p1_ipvsadm_restore_seconds", start.elapsed().as_secs_f64());
    assert_eq!(ipvsadm(&["-Sn"]), rules, "ipvsadm -R left another table");
}

/// Reading a table the way P3 does, without the agent (for work on the
/// read path): `ipvsadm -R` of the rules, then `ipvsadm -Ln`, the dump in
/// a bare process, `ipvs-agent list -n` and the raw floors.
fn measure_read(rules: &str) {
    ipvsadm_restore(rules);
    read_baselines();
}

/// P3's baselines for reading the table now in the kernel, each the median
/// of 3: `ipvsadm -Ln`; for where a read goes, the same dump in a bare
/// process, the kernel's floor on 1 and 2 sockets, and `ipvs-agent list
/// -n` (the agent's runtime, dump and formatting).
fn read_baselines() {
    let mut listings: Vec<f64> = (0..3).map(|_| timed(&["ipvsadm", "-Ln"])).collect();
    result("p3_ipvsadm_list_seconds_median", median(&mut listings));
    // Where a resync's read goes: the same dump in a bare process, and
    // `ipvs-agent list` (the agent's runtime, dump and formatting).
    let mut dumps: Vec<f64> = (0..3).map(|_| dump_table_seconds()).collect();
    result(
        "p3_table_dump_in_process_seconds_median",
        median(&mut dumps),
    );
    for sockets in [1, 2] {
        let mut floors: Vec<f64> = (0..3).map(|_| raw_dump_floor_seconds(sockets)).collect();
        result(
            &format!("p3_raw_dump_floor_{sockets}_sockets_seconds_median"),
            median(&mut floors),
        );
    }
    let agent_path = agent_binary().display().to_string();
    let mut lists: Vec<f64> = (0..3)
        .map(|_| timed(&[&agent_path, "list", "-n"]))
        .collect();
    result("p3_agent_list_seconds_median", median(&mut lists));
}

/// P3's netfilter half of the baseline: `nft list table` of the agent's
/// table (left in place by the stopped agent), as an operator reads it.
/// Once, not the median of 3: nft's listing grows fast with the elements,
/// so it is bounded at 300 s and reported as a lower bound beyond.
fn nft_list_baseline() {
    const BOUND: &str = "300";
    let start = Instant::now();
    let output = Command::new("timeout")
        .args([BOUND, "nft", "list", "table", "ip", "ipvs-agent"])
        .output()
        .expect("run nft list");
    let elapsed = start.elapsed().as_secs_f64();
    if output.status.success() {
        result("p3_nft_list_seconds", elapsed);
        result(
            "p3_nft_list_lines",
            output.stdout.split(|b| *b == b'\n').count(),
        );
    } else {
        result("p3_nft_list_seconds_at_least", elapsed);
        result(
            "p3_nft_list_failed",
            format!(
                "{} {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        );
    }
}

/// The raw burst of the same operations, pre-encoded.
async fn measure_raw(rules: &str) {
    let operations = operations_of(rules);
    let handle = connect();
    let (elapsed, errors) = timed_raw_burst(
        handle.family_id(),
        &operations,
        &IpvsBatchOptions::default(),
    );
    result("p1_raw_floor_seconds", elapsed.as_secs_f64());
    assert_eq!(errors, 0, "the raw burst failed");
    assert_eq!(ipvsadm(&["-Sn"]), rules, "the raw burst left another table");

    // The other half of the node's work: each virtual server's address on
    // a down dummy link, as `ip -batch` adds them (one request at a time;
    // the kernel's cost per address grows with the addresses already on
    // the link).
    let addresses: std::collections::BTreeSet<&str> = rules
        .lines()
        .filter_map(|line| line.strip_prefix("-A -t "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|socket| socket.rsplit_once(':').map(|(address, _)| address))
        .collect();
    let batch: String = addresses
        .iter()
        .map(|address| format!("address add {address}/32 dev kube-ipvs0\n"))
        .collect();
    let path = std::env::temp_dir().join(format!("agent-bench-{}.ip", std::process::id()));
    std::fs::write(&path, batch).expect("write the ip batch");
    let added = Command::new("ip")
        .args(["link", "add", "kube-ipvs0", "type", "dummy"])
        .status()
        .expect("run ip");
    assert!(added.success(), "ip link add kube-ipvs0");
    let start = Instant::now();
    let status = Command::new("ip")
        .arg("-batch")
        .arg(&path)
        .status()
        .expect("run ip -batch");
    result(
        "p1_ip_batch_addresses_seconds",
        start.elapsed().as_secs_f64(),
    );
    assert!(status.success(), "ip -batch failed");
    result("p1_addresses", addresses.len());
    let _ = std::fs::remove_file(&path);
}

fn start_agent(standin: &Standin, sync_period: &str) -> (Agent, Instant) {
    let kubeconfig = standin.kubeconfig.display().to_string();
    let started = Instant::now();
    let agent = Agent::start(&[
        "run",
        "--kubeconfig",
        &kubeconfig,
        "--node-name",
        "node1",
        "--node-ip",
        "192.168.122.10",
        "--ipvs-sync-period",
        sync_period,
        "--healthz-bind-address",
        "",
        "--metrics-bind-address",
        "",
    ]);
    (agent, started)
}

/// The agent against the stand-in: P1, P4, P3, then P2 after a restart.
fn measure_agent(manifests: &Path, rules: &str, services: usize, resyncs: usize, changes: usize) {
    let _ = Command::new("ip")
        .args(["link", "add", "node0", "type", "dummy"])
        .status();
    let _ = Command::new("ip")
        .args(["addr", "add", "192.168.122.10/24", "dev", "node0"])
        .status();
    let standin = Standin::start(&[manifests]);

    // P1 and P4.
    let (mut agent, started) = start_agent(&standin, "5s");
    let first = agent.wait_for_syncs(1, WAIT)[0].clone();
    result(
        "p1_agent_start_to_synced_seconds",
        started.elapsed().as_secs_f64(),
    );
    result(
        "p1_agent_sync_seconds",
        first.count_f64("duration_ms") / 1e3,
    );
    result("p1_agent_writes", first.writes());
    for phase in PHASES {
        result(&format!("p1_agent_sync_{phase}"), first.count_f64(phase));
    }
    let pid = agent.pid().expect("the agent runs");
    result(
        "p4_agent_peak_rss_mib_after_sync",
        status_kib(pid, "VmHWM") as f64 / 1024.0,
    );
    assert!(
        ipvsadm(&["-Sn"]) == rules,
        "the agent's table differs from the rules"
    );

    // P3: periodic resyncs, nothing changed.
    let syncs = agent.wait_for_syncs(resyncs + 1, WAIT);
    let audited = &syncs[1..=resyncs];
    let mut audits: Vec<f64> = audited
        .iter()
        .map(|sync| {
            assert_eq!(sync.kind(), "full", "{sync:?}");
            sync.count_f64("duration_ms") / 1e3
        })
        .collect();
    let writes: u64 = audited.iter().map(|sync| sync.writes()).sum();
    result("p3_resync_writes_total", writes);
    result("p3_full_resync_seconds_median", median(&mut audits));
    for phase in PHASES {
        let mut values: Vec<f64> = audited.iter().map(|s| s.count_f64(phase)).collect();
        result(&format!("p3_resync_{phase}_median"), median(&mut values));
    }
    result(
        "p4_agent_peak_rss_mib_after_resyncs",
        status_kib(pid, "VmHWM") as f64 / 1024.0,
    );
    // The baselines with the agent stopped: its resyncs (every 5 s) would
    // otherwise run beside them.
    agent.stop();
    read_baselines();
    nft_list_baseline();

    // P2: restart (adoption), then single-endpoint changes.
    let (mut agent, started) = start_agent(&standin, "1h");
    let adopted = agent.wait_for_syncs(1, WAIT)[0].clone();
    result("p2_restart_writes", adopted.writes());
    result(
        "p2_restart_start_to_synced_seconds",
        started.elapsed().as_secs_f64(),
    );
    let endpoints = rules.lines().filter(|l| l.starts_with("-a ")).count() / services;
    let mut messages: BTreeMap<u64, usize> = BTreeMap::new();
    for change in 0..changes {
        let before = agent.syncs().len();
        let count = if change % 2 == 0 {
            endpoints + 1
        } else {
            endpoints
        };
        standin.apply(&service_slice(0, count));
        let syncs = agent.wait_for_syncs(before + 1, WAIT);
        *messages.entry(syncs[before].writes()).or_default() += 1;
    }
    result("p2_messages_per_change", format!("{messages:?}"));
    let mut latencies = agent.event_to_ack_ms();
    result("p2_changes_measured", latencies.len());
    result(
        "p2_event_to_ack_ms_p50",
        format!("{:.2}", percentile(&mut latencies, 0.5)),
    );
    result(
        "p2_event_to_ack_ms_p99",
        format!("{:.2}", percentile(&mut latencies, 0.99)),
    );
    agent.stop();
    let vip = format!("{}:80", integration::bulk::service_ip(1));
    let mut one_process: Vec<f64> = (0..20)
        .flat_map(|_| {
            let add = timed(&[
                "ipvsadm",
                "-a",
                "-t",
                &vip,
                "-r",
                "10.250.0.1:8080",
                "-m",
                "-w",
                "1",
            ]);
            let delete = timed(&["ipvsadm", "-d", "-t", &vip, "-r", "10.250.0.1:8080"]);
            [add, delete]
        })
        .collect();
    result(
        "p2_one_ipvsadm_process_ms_median",
        format!("{:.2}", median(&mut one_process) * 1e3),
    );
}

/// One `IpvsHandle::table()` on a fresh connection and a current-thread
/// runtime of its own.
fn dump_table_seconds() -> f64 {
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let handle = connect();
            let start = Instant::now();
            let table = handle.table().await.expect("dump the table");
            assert!(!table.is_empty());
            start.elapsed().as_secs_f64()
        })
    })
    .join()
    .expect("the dump thread")
}

/// The kernel's floor for a full read: the real-server dumps of every
/// virtual server, pre-encoded, run on `sockets` blocking sockets (one
/// thread each), nothing decoded. The virtual servers are listed first,
/// outside the time.
fn raw_dump_floor_seconds(sockets: usize) -> f64 {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (family_id, keys) = runtime.block_on(async {
            let handle = connect();
            let services = handle.services().await.expect("list virtual servers");
            let keys: Vec<IpvsServiceKey> = services.iter().map(|s| s.key).collect();
            (handle.family_id(), keys)
        });
        let (elapsed, received) = timed_raw_dumps(family_id, &keys, sockets);
        assert!(received > 0);
        elapsed.as_secs_f64()
    })
    .join()
    .expect("the dump thread")
}

/// Runs `agent-bench --measure WHAT ARGS...` in a fresh network namespace
/// with loopback up; returns its RESULT lines.
fn in_fresh_namespace(what: &str, args: &[&str]) -> Vec<(String, String)> {
    let namespace = format!("agent-bench-{}-{what}", std::process::id());
    let ok = |status: std::io::Result<std::process::ExitStatus>| status.is_ok_and(|s| s.success());
    assert!(ok(Command::new("ip")
        .args(["netns", "add", &namespace])
        .status()));
    assert!(ok(Command::new("ip")
        .args(["netns", "exec", &namespace, "ip", "link", "set", "lo", "up"])
        .status()));
    let output = Command::new("ip")
        .args(["netns", "exec", &namespace])
        .arg(std::env::current_exe().expect("own path"))
        .args(["--measure", what])
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run a measurement");
    let _ = Command::new("ip")
        .args(["netns", "exec", &namespace, "ipvsadm", "-C"])
        .status();
    let _ = Command::new("ip")
        .args(["netns", "delete", &namespace])
        .status();
    std::thread::sleep(Duration::from_secs(3));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    print!("{text}");
    assert!(output.status.success(), "the {what} measurement failed");
    text.lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("RESULT ")?.splitn(2, ' ');
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--measure") {
        let rules = |path: &str| std::fs::read_to_string(path).expect("read the rules");
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [_, "restore", rules_path] => measure_restore(&rules(rules_path)),
            [_, "read", rules_path] => measure_read(&rules(rules_path)),
            [_, "raw", rules_path] => measure_raw(&rules(rules_path)).await,
            [_, "agent", manifests, rules_path, services, resyncs, changes] => measure_agent(
                Path::new(manifests),
                &rules(rules_path),
                services.parse().expect("a number"),
                resyncs.parse().expect("a number"),
                changes.parse().expect("a number"),
            ),
            _ => panic!("{USAGE}"),
        }
        return;
    }
    let number = |text: &str| -> usize { text.parse().unwrap_or_else(|_| panic!("{USAGE}")) };
    let (mut resyncs, mut changes) = (10, 100);
    let mut positional = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--resyncs" => resyncs = number(words.next().unwrap_or_else(|| panic!("{USAGE}"))),
            "--changes" => changes = number(words.next().unwrap_or_else(|| panic!("{USAGE}"))),
            other => positional.push(number(other)),
        }
    }
    assert!(resyncs > 0 && changes > 0, "{USAGE}");
    let (services, endpoints) = match positional.as_slice() {
        [] => (20_000, 10),
        [s] => (*s, 10),
        [s, e] => (*s, *e),
        _ => panic!("{USAGE}"),
    };
    let work = std::env::temp_dir().join(format!("agent-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("a work folder");
    let manifests = work.join("cluster.yaml");
    std::fs::write(&manifests, many_services(services, endpoints)).expect("write the cluster");
    let plan = Command::new(agent_binary())
        .args(["plan", "--manifests"])
        .arg(&manifests)
        .args([
            "--node-name",
            "node1",
            "--node-ip",
            "192.168.122.10",
            "--output",
            "save",
        ])
        .output()
        .expect("run ipvs-agent plan");
    assert!(plan.status.success(), "plan failed");
    let rules_path = work.join("rules");
    std::fs::write(&rules_path, &plan.stdout).expect("write the rules");
    let operations = String::from_utf8_lossy(&plan.stdout).lines().count();
    println!(
        "cluster: {services} Services x {endpoints} endpoints = {operations} IPVS objects; \
         kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let rules_arg = rules_path.display().to_string();
    let manifests_arg = manifests.display().to_string();
    let mut results: BTreeMap<String, String> = BTreeMap::new();
    for (what, args) in [
        ("restore", vec![rules_arg.as_str()]),
        ("raw", vec![rules_arg.as_str()]),
        (
            "agent",
            vec![
                manifests_arg.as_str(),
                rules_arg.as_str(),
                &services.to_string(),
                &resyncs.to_string(),
                &changes.to_string(),
            ],
        ),
    ] {
        results.extend(in_fresh_namespace(what, &args));
    }
    let value = |key: &str| -> f64 {
        results
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let restore = value("p1_ipvsadm_restore_seconds");
    let raw = value("p1_raw_floor_seconds");
    let agent_sync = value("p1_agent_sync_seconds");
    let agent_total = value("p1_agent_start_to_synced_seconds");
    println!(
        "P1: ipvsadm -R {restore:.3} s | raw floor {raw:.3} s | agent sync {agent_sync:.3} s \
         ({:.1}x faster than ipvsadm -R, {:.2}x the floor) | agent start to synced {agent_total:.3} s \
         (incl. listing {} objects from the API)",
        restore / agent_sync,
        agent_sync / raw,
        services * 2
    );
    let addresses = value("p1_ip_batch_addresses_seconds");
    let apply = value("p1_agent_sync_apply_ms") / 1e3;
    let binding = value("p1_agent_sync_addresses_ms") / 1e3;
    println!(
        "P1 by part: IPVS apply {apply:.3} s = {:.2}x the raw floor | VIPs {binding:.3} s vs ip -batch \
         {addresses:.3} s = {:.2}x | agent sync vs ipvsadm -R + ip -batch ({:.3} s): {:.1}x faster; \
         vs raw floor + ip -batch ({:.3} s): {:.2}x",
        apply / raw,
        binding / addresses,
        restore + addresses,
        (restore + addresses) / agent_sync,
        raw + addresses,
        agent_sync / (raw + addresses),
    );
    println!(
        "P2: messages per change {} | event to ACK p50 {} ms, p99 {} ms | one ipvsadm process {} ms | \
         restart writes {}",
        results.get("p2_messages_per_change").map_or("?", String::as_str),
        results.get("p2_event_to_ack_ms_p50").map_or("?", String::as_str),
        results.get("p2_event_to_ack_ms_p99").map_or("?", String::as_str),
        results.get("p2_one_ipvsadm_process_ms_median").map_or("?", String::as_str),
        results.get("p2_restart_writes").map_or("?", String::as_str),
    );
    let audit = value("p3_full_resync_seconds_median");
    let listing = value("p3_ipvsadm_list_seconds_median");
    let nft_list = value("p3_nft_list_seconds");
    println!(
        "P3: writes in {resyncs} resyncs {} | full resync (dump + diff) {audit:.3} s vs ipvsadm -Ln {listing:.3} s = {:.2}x; \
         vs ipvsadm -Ln + nft list {nft_list:.3} s ({:.3} s) = {:.2}x",
        results.get("p3_resync_writes_total").map_or("?", String::as_str),
        audit / listing,
        listing + nft_list,
        audit / (listing + nft_list)
    );
    println!(
        "P4: agent peak RSS {:.1} MiB after the first sync, {:.1} MiB after {resyncs} resyncs",
        value("p4_agent_peak_rss_mib_after_sync"),
        value("p4_agent_peak_rss_mib_after_resyncs")
    );
    let _ = std::fs::remove_dir_all(&work);
}
