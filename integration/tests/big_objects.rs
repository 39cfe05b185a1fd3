//! Single objects far past the usual size (issue 15's fault matrix): one
//! Service with 10,000 endpoints (ten EndpointSlices of 1,000, the API's
//! limit per slice), one Service with 5,000 ports, one with 1,000
//! externalIPs. Each is programmed by one agent from a manifest on an
//! empty node: the first sync's time and the agent's peak memory
//! (VmHWM) are printed (`faults: big object ...` lines, the table in
//! RELIABILITY.md) and bounded, and the kernel's table and the agent's
//! nftables sets equal `plan` of the same objects. The bounds are loose on purpose (the guest is
//! emulated and noisy): they catch a quadratic path or a blow-up, the
//! printed figures are the claim.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use integration::agent::{status_kib, Agent};
use integration::ipvsadm;
use integration::node::{
    fresh_node, kernel_sets, kube_ipvs0_addresses, plan_save, plan_sets, NODE_ARGS,
};

/// The first sync must end within this, under emulation.
const SYNC_BOUND: Duration = Duration::from_secs(120);
/// The agent's peak RSS must stay below this (the DaemonSet's limit is
/// 512 MiB, sized for 20,000 Services: memory_limit.rs).
const MEMORY_BOUND_KIB: u64 = 192 * 1024;

fn service(name: &str, ip: &str, ports: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: big}}\n\
         spec:\n  clusterIP: {ip}\n  clusterIPs: [{ip}]\n  selector: {{app: {name}}}\n{extra}  ports:\n{ports}---\n"
    )
}

fn slice(name: &str, part: usize, ports: &str, endpoints: &[String]) -> String {
    let mut text = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{part}\n  \
         namespace: big\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\n\
         ports:\n{ports}endpoints:\n"
    );
    for address in endpoints {
        let _ = writeln!(
            text,
            "- {{addresses: [\"{address}\"], conditions: {{ready: true}}, nodeName: node1}}"
        );
    }
    text.push_str("---\n");
    text
}

/// Runs the agent on `manifest` and checks and prints its first sync.
fn programs_one_big_object(what: &str, manifest: &str) {
    fresh_node();
    let file = std::env::temp_dir().join(format!(
        "big-{}-{}.yaml",
        std::process::id(),
        what.replace(' ', "-")
    ));
    std::fs::write(&file, manifest).expect("write the manifest");
    let file_arg = file.display().to_string();
    let mut args = vec!["run", "--manifests", &file_arg];
    args.extend(NODE_ARGS);
    args.extend(["--ipvs-sync-period", "1h"]);
    let started = Instant::now();
    let mut agent = Agent::start(&args);
    let first = agent.wait_for_syncs(1, SYNC_BOUND)[0].clone();
    let elapsed = started.elapsed();
    let pid = agent.pid().expect("the agent runs");
    let (peak, now) = (status_kib(pid, "VmHWM"), status_kib(pid, "VmRSS"));
    let mut want: Vec<String> = plan_save(&[Path::new(&file)], &[])
        .lines()
        .map(str::to_owned)
        .collect();
    want.sort();
    let mut got: Vec<String> = ipvsadm(&["-Sn"]).lines().map(str::to_owned).collect();
    got.sort();
    eprintln!(
        "faults: big object {what}: first sync {:.2} s after start (its own duration_ms {:.0}), \
         {} ipvsadm rules, {} addresses on kube-ipvs0, agent VmHWM {} KiB / VmRSS {} KiB",
        elapsed.as_secs_f64(),
        first.count_f64("duration_ms"),
        got.len(),
        kube_ipvs0_addresses().len(),
        peak,
        now
    );
    assert_eq!(first.count("failed"), 0, "nothing refused: {first:?}");
    assert!(
        got == want,
        "{what}: the kernel differs from plan ({} rules against {})",
        got.len(),
        want.len()
    );
    // The sets too: a big object's elements go to the kernel in many
    // nfnetlink batches (more than 1,024 changes).
    let want_sets = plan_sets(&[Path::new(&file)]);
    let got_sets = kernel_sets(want_sets.keys().cloned());
    let elements: usize = want_sets.values().map(|set| set.len()).sum();
    eprintln!("faults: big object {what}: {elements} set elements");
    for (name, want) in &want_sets {
        let got = &got_sets[name];
        assert!(
            got == want,
            "{what}: set {name} differs from plan: {} missing, {} extra",
            want.difference(got).count(),
            got.difference(want).count()
        );
    }
    assert!(
        peak < MEMORY_BOUND_KIB,
        "{what}: peak RSS {peak} KiB, bound {MEMORY_BOUND_KIB} KiB"
    );
    agent.stop();
    let _ = std::fs::remove_file(&file);
}

#[test]
fn one_service_with_10000_endpoints() {
    let port = "- {name: http, protocol: TCP, port: 8080}\n";
    let mut text = service(
        "wide",
        "10.97.0.1",
        "  - {name: http, protocol: TCP, port: 80, targetPort: 8080}\n",
        "",
    );
    for part in 0..10 {
        let endpoints: Vec<String> = (0..1000)
            .map(|n| {
                let index = part * 1000 + n;
                format!(
                    "10.{}.{}.{}",
                    200 + index / 62_500,
                    index / 250 % 250,
                    index % 250 + 1
                )
            })
            .collect();
        text.push_str(&slice("wide", part, port, &endpoints));
    }
    programs_one_big_object("10,000 endpoints", &text);
}

#[test]
fn one_service_with_5000_ports() {
    let mut service_ports = String::new();
    let mut slice_ports = String::new();
    for n in 0..5000 {
        let port = 10_000 + n;
        let _ = writeln!(
            service_ports,
            "  - {{name: p{n}, protocol: TCP, port: {port}, targetPort: {port}}}"
        );
        let _ = writeln!(slice_ports, "- {{name: p{n}, protocol: TCP, port: {port}}}");
    }
    let mut text = service("many-ports", "10.97.0.2", &service_ports, "");
    text.push_str(&slice(
        "many-ports",
        0,
        &slice_ports,
        &["10.244.1.1".to_owned(), "10.244.1.2".to_owned()],
    ));
    programs_one_big_object("5,000 ports", &text);
}

#[test]
fn one_service_with_1000_external_ips() {
    let mut external = String::from("  externalIPs:\n");
    for n in 0..1000 {
        let _ = writeln!(external, "  - 198.18.{}.{}", n / 250, n % 250 + 1);
    }
    let mut text = service(
        "many-ips",
        "10.97.0.3",
        "  - {name: http, protocol: TCP, port: 80, targetPort: 8080}\n",
        &external,
    );
    text.push_str(&slice(
        "many-ips",
        0,
        "- {name: http, protocol: TCP, port: 8080}\n",
        &["10.244.1.1".to_owned(), "10.244.1.2".to_owned()],
    ));
    programs_one_big_object("1,000 externalIPs", &text);
}
